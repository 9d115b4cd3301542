import FoundationEssentials
import Glibc
import RegexBuilder
import SandboxOS

/// A static scan of custom node code for what a reviewer should look at
/// before trusting a node: dynamic code execution, unsafe deserialisation,
/// shell-outs, raw-IP network endpoints, encoded payloads, install-time and
/// startup hooks, and writes outside the node's own directory. It is a
/// reviewer's aid: false positives are fine when the reason says why;
/// missing one of these patterns is not.
///
/// Files are walked with `SafeFS.walk` (by descriptor, no link followed, no
/// mount crossed, no depth limit; a node is hostile input, possibly
/// writable by the sandbox); `.git` at the top and `__pycache__` are left
/// out, files over 4 MiB are noted and skipped. Whatever the walk could not
/// enter or read (a mount point, an entry swapped mid-walk, an unreadable
/// file, a FIFO or socket) is a `not-scanned` finding: missing a pattern
/// silently is not fine.
public enum NodeScanner {
    public enum Severity: String, Codable, Sendable, Comparable, CaseIterable {
        case low, medium, high
        var rank: Int { self == .low ? 0 : self == .medium ? 1 : 2 }
        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    public struct Finding: Codable, Sendable, Equatable {
        public var node: String
        /// Relative to the node's directory, escaped (`Format.escape`):
        /// control bytes, backslashes and bytes that are not UTF-8 as `\\x1b`, `\\n`...
        public var file: String
        public var line: Int
        public var rule: String
        public var severity: Severity
        public var reason: String
        public var line_text: String?

        public var text: String { "\(node)/\(file):\(line): \(severity.rawValue) \(rule): \(reason)" }
    }

    static let maxFileSize = 4 << 20

    /// Scans one node directory.
    public static func scan(directory: String, node: String) throws -> [Finding] {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError.failure("cannot open \(directory): \(Errno.current)") }
        defer { close(fd) }
        // Reading a hard-linked file changes nothing: they are scanned.
        var v = Visitor(node: node)
        SafeFS.walk(fd, policy: SafeFS.WalkPolicy(visits: [.regular, .symlink], hardLinks: true), visitor: &v)
        return v.out.sorted { ($0.file, $0.line, $0.rule) < ($1.file, $1.line, $1.rule) }
    }

    /// A name as the directory holds it: raw bytes, NUL-terminated, for the
    /// *at() calls (a name that is not UTF-8 must still open), and its
    /// escaped form (`Format.escape`) for everything a report
    /// prints: a node's file names are the node author's, and one holding an
    /// escape sequence or a newline must not drive the reader's terminal or
    /// forge a line of the report.
    struct EntryName {
        var raw: [CChar]
        var bytes: [UInt8] { raw.dropLast().map { UInt8(bitPattern: $0) } }
        var shown: String { Format.escape(bytes) }
        func hasSuffix(_ s: String) -> Bool { bytes.count >= s.utf8.count && bytes.suffix(s.utf8.count).elementsEqual(s.utf8) }
        func equals(_ s: String) -> Bool { bytes.elementsEqual(s.utf8) }
    }

    struct Visitor: WalkVisitor {
        let node: String
        var out: [Finding] = []

        mutating func include(_ dir: SafeFS.WalkEntry) -> Bool {
            !(dir.nameIs("__pycache__") || (dir.depth == 1 && dir.nameIs(".git")))
        }

        mutating func visit(_ entry: SafeFS.WalkEntry) {
            let name = EntryName(raw: Array(UnsafeBufferPointer(start: entry.name, count: strlen(entry.name) + 1)))
            let rel = Format.escape(entry.path)
            if SafeFS.isSymlink(entry.st) {
                var buf = [UInt8](repeating: 0, count: 4096)
                let n = buf.withUnsafeMutableBufferPointer { p in
                    p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { readlinkat(entry.dirFD, entry.name, $0, p.count - 1) }
                }
                let target = n > 0 ? Array(buf[0..<n]) : Array("?".utf8)
                let parts = target.split(separator: UInt8(ascii: "/"))
                if target.first == UInt8(ascii: "/") || parts.contains(where: { $0.elementsEqual("..".utf8) }) {
                    out.append(Finding(node: node, file: rel, line: 0, rule: "symlink-outside", severity: .medium,
                                       reason: "a link pointing outside the node (\(Format.escape(target))); code could read or write there through it"))
                }
                return
            }
            if name.hasSuffix(".pth") {
                out.append(Finding(node: node, file: rel, line: 0, rule: "pth-file", severity: .high,
                                   reason: ".pth files run their import lines at every Python start once they reach site-packages"))
            }
            let lower = name.shown.lowercased()
            if entry.depth == 1 && ["setup.py", "install.py", "prestartup_script.py"].contains(lower) {
                let why = lower == "setup.py" ? "setup.py runs arbitrary code when the node is pip-installed"
                    : lower == "install.py" ? "install.py is run by node managers at install time"
                    : "prestartup_script.py runs before ComfyUI loads any node"
                out.append(Finding(node: node, file: rel, line: 0, rule: "install-time-code", severity: .medium, reason: why))
            }
            guard name.hasSuffix(".py") || name.hasSuffix(".pyw") else { return }
            if Int(entry.st.st_size) > maxFileSize {
                out.append(Finding(node: node, file: rel, line: 0, rule: "too-large", severity: .low,
                                   reason: "\(entry.st.st_size) bytes of Python, not scanned; review by hand"))
                return
            }
            switch entry.open(O_RDONLY) {
            case .success(let (f, _)):
                let data = readAll(f)
                close(f)
                out += scanPython(String(decoding: data, as: UTF8.self), file: rel, node: node)
            case .failure(let why):
                notScanned(rel, why)
            }
        }

        mutating func skipped(_ path: [UInt8], _ why: SafeFS.WalkSkip) {
            if why == .disappeared { return }
            notScanned(path.isEmpty ? "." : Format.escape(path), why)
        }

        /// What the scan could not look at is a finding: a reviewer must know.
        mutating func notScanned(_ rel: String, _ why: SafeFS.WalkSkip) {
            let special = why.isSpecialFile
            out.append(Finding(node: node, file: rel, line: 0, rule: "not-scanned", severity: special ? .low : .medium,
                               reason: special ? "a \(why == .fifo ? "FIFO" : why == .socket ? "socket" : why == .device ? "device node" : "special file") in the node's tree; not read"
                                               : "not scanned: \(why); review it by hand"))
        }
    }

    static func readAll(_ fd: Int32) -> Data {
        var d = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 { if errno == EINTR { continue }; break }
            if n == 0 { break }
            d.append(contentsOf: buf[0..<n])
            if d.count > maxFileSize { break }
        }
        return d
    }

    // MARK: rules

    /// Immutable after construction. Regex is not marked Sendable, but
    /// matching only reads it (its one lazy step, compiling the program, is
    /// an atomic initialization), as NSRegularExpression was thread-safe for matching.
    struct LineRule: @unchecked Sendable {
        var rule: String
        var severity: Severity
        var pattern: Regex<Substring>
        /// Every match holds one of these (ASCII) literals: a line with none
        /// of them cannot match and skips the regex. Most lines hold none, and
        /// on these rules Swift's Regex runs about ten times slower than ICU did.
        var needs: [String]
        var reason: String
        /// Decides on the text of the call the match starts (nil: always a finding).
        var check: (@Sendable (String) -> (Severity, String)?)?
    }

    // The rules were written for ICU (NSRegularExpression) and must keep
    // matching exactly what they matched there. Swift's Regex, used here
    // without Foundation, differs in four ways, each handled below:
    //  - it matches by Character by default; ICU matched code points, so
    //    every regex here uses .matchingSemantics(.unicodeScalar);
    //  - its `\d` takes any numeric scalar (², ½): ICU's is \p{Nd}, written so;
    //  - it has no lookbehind, for ICU's `(?<![\w.])`;
    //  - its `\b` counts digits as non-word characters and does not skip
    //    combining marks as ICU's does.
    // The last two are `Edge` checks at the ends of an alternative,
    // implemented with ICU's own definitions (RegexMatcher::isWordBoundary).

    /// A regex in ICU's syntax, matched by scalar as ICU did. Compiled once:
    /// every regex here is a static.
    static func re(_ s: String) -> Regex<AnyRegexOutput> {
        try! Regex(s).matchingSemantics(.unicodeScalar)
    }

    /// One alternative of a rule's pattern, with the ICU assertion it had at its start (and end).
    enum Alternative {
        /// No assertion.
        case plain(String)
        /// ICU's `\b` before it: it starts a word.
        case word(String)
        /// ICU's `\b` on both sides: a whole word.
        case wholeWord(String)
        /// ICU's `(?<![\w.])` before it: not preceded by a word character or a dot.
        case notAfterWordOrDot(String)
    }

    /// The alternatives as one regex: `a|b|c` in ICU's order, so the
    /// leftmost match wins and, at one position, the first alternative.
    static func pattern(_ alternatives: Alternative...) -> Regex<Substring> {
        let parts = alternatives.map { alt -> Regex<Substring> in
            switch alt {
            case .plain(let p): return Regex { Edge.none; re(p) }
            case .word(let p): return Regex { Edge.wordStart; re(p) }
            case .wholeWord(let p): return Regex { Edge.wordStart; re(p); Edge.wordEnd }
            case .notAfterWordOrDot(let p): return Regex { Edge.notAfterWordOrDot; re(p) }
            }
        }
        var choice = AlternationBuilder.buildPartialBlock(first: parts[0])
        for part in parts.dropFirst() { choice = AlternationBuilder.buildPartialBlock(accumulated: choice, next: part) }
        return choice.regex.matchingSemantics(.unicodeScalar)
    }

    /// A zero-width check of the scalars around the current position. It
    /// sees the whole line, so it can look behind, which Regex cannot.
    struct Edge: CustomConsumingRegexComponent {
        typealias RegexOutput = Substring
        let holds: @Sendable (String.UnicodeScalarView, String.Index, Range<String.Index>) -> Bool

        func consuming(_ input: String, startingAt index: String.Index,
                       in bounds: Range<String.Index>) throws -> (upperBound: String.Index, output: Substring)? {
            holds(input.unicodeScalars, index, bounds) ? (index, input[index..<index]) : nil
        }

        static let none = Edge { _, _, _ in true }

        /// ICU's `\b` where a word character follows: the nearest scalar
        /// before that is not a combining mark or a format character
        /// (Grapheme_Extend or Cf, which ICU skips) is not a word character.
        static let wordStart = Edge { scalars, i, bounds in
            var j = i
            while j > bounds.lowerBound {
                j = scalars.index(before: j)
                if !isSkippedByBoundary(scalars[j]) { return !isWordCharacter(scalars[j]) }
            }
            return true
        }

        /// ICU's `\b` after a word character: the end, or a scalar that is
        /// neither a word character nor a combining mark or format character.
        static let wordEnd = Edge { scalars, i, bounds in
            i == bounds.upperBound || (!isSkippedByBoundary(scalars[i]) && !isWordCharacter(scalars[i]))
        }

        /// ICU's `(?<![\w.])`: the one scalar before is neither a word character nor ".".
        static let notAfterWordOrDot = Edge { scalars, i, bounds in
            guard i > bounds.lowerBound else { return true }
            let before = scalars[scalars.index(before: i)]
            return before != "." && !isWordCharacter(before)
        }
    }

    /// ICU's `\w`: [\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\u200c\u200d].
    static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        // ASCII without the property tables (the common case, and they are slow).
        if s.isASCII {
            return ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s) || s == "_"
        }
        switch s.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return s.properties.isAlphabetic || s.value == 0x200C || s.value == 0x200D
        }
    }

    /// What ICU's `\b` steps over when it looks at the character before.
    static func isSkippedByBoundary(_ s: Unicode.Scalar) -> Bool {
        !s.isASCII && (s.properties.isGraphemeExtend || s.properties.generalCategory == .format)
    }

    /// Whether `line` holds `literal` (ASCII), compared byte by byte: the
    /// regexes match by scalar, and a scalar match may start inside a
    /// Character (after a prepended mark), where String.contains would not look.
    static func holds(_ line: UnsafeBufferPointer<UInt8>, _ literal: [UInt8]) -> Bool {
        guard let first = literal.first, literal.count <= line.count else { return literal.isEmpty }
        var i = 0
        while i <= line.count - literal.count {
            if line[i] == first {
                var j = 1
                while j < literal.count && line[i + j] == literal[j] { j += 1 }
                if j == literal.count { return true }
            }
            i += 1
        }
        return false
    }

    // The regexes the checks use; `nonisolated(unsafe)` for the reason LineRule is @unchecked Sendable.

    /// The string literal that starts a call's first argument (`r"..."`, `'...'`).
    nonisolated(unsafe) static let literalArgument = re(#"^[rRbBuU]?("([^"\\]|\\.)*"|'([^'\\]|\\.)*')"#)
    nonisolated(unsafe) static let weightsOnlyTrue = re(#"weights_only\s*=\s*True"#)
    nonisolated(unsafe) static let safeYAMLLoader = re(#"Loader\s*=\s*(yaml\.)?(C?SafeLoader|BaseLoader|CBaseLoader)"#)
    nonisolated(unsafe) static let shellTrue = re(#"shell\s*=\s*True"#)

    static let rules: [LineRule] = [
        LineRule(rule: "dynamic-code", severity: .high, pattern: pattern(.notAfterWordOrDot(#"(eval|exec|compile)\s*\("#)),
                 needs: ["eval", "exec", "compile"],
                 reason: "", check: { call in
                     // A literal string argument is static code; anything else is built at run time.
                     let arg = argumentText(call).trimmingWhitespaceAndNewlines()
                     // compile(src, name, mode): only the first argument matters.
                     if let first = arg.firstMatch(of: literalArgument) {
                         let rest = arg[first.range.upperBound...].trimmingWhitespace()
                         if rest.isEmpty || rest.hasPrefix(",") { return nil }
                     }
                     return (.high, "runs code built at run time; what it runs cannot be reviewed here")
                 }),
        LineRule(rule: "dynamic-import", severity: .medium,
                 pattern: pattern(.notAfterWordOrDot(#"__import__\s*\("#), .plain(#"importlib\.import_module\s*\("#)),
                 needs: ["__import__", "importlib.import_module"],
                 reason: "imports a module named at run time", check: nil),
        LineRule(rule: "pickle", severity: .high,
                 pattern: pattern(.word(#"(c?[Pp]ickle|dill|joblib|cloudpickle|_pickle)\.(loads?|Unpickler)\s*\("#),
                                  .word(#"numpy\.load\s*\([^)]*allow_pickle\s*=\s*True"#),
                                  .word(#"np\.load\s*\([^)]*allow_pickle\s*=\s*True"#)),
                 needs: [".load", ".Unpickler"],
                 reason: "unpickling runs whatever code the data names; a crafted model or cache file takes over the process", check: nil),
        LineRule(rule: "torch-load", severity: .high, pattern: pattern(.word(#"torch\.load\s*\("#)), needs: ["torch.load"],
                 reason: "", check: { call in
            if call.contains(weightsOnlyTrue) { return nil }
            return (.high, "torch.load without weights_only=True unpickles arbitrary code from the file")
        }),
        LineRule(rule: "yaml-load", severity: .high,
                 pattern: pattern(.word(#"yaml\.(load|load_all|unsafe_load|unsafe_load_all|full_load|full_load_all)\s*\("#)), needs: ["yaml."],
                 reason: "", check: { call in
            if call.hasPrefix("yaml.unsafe_load") { return (.high, "yaml.unsafe_load builds arbitrary Python objects") }
            if call.hasPrefix("yaml.full_load") { return (.medium, "yaml.full_load builds Python objects beyond plain data; use yaml.safe_load") }
            if call.contains(safeYAMLLoader) { return nil }
            return (.high, "yaml.load without a safe loader can build arbitrary Python objects; use yaml.safe_load")
        }),
        LineRule(rule: "shell-out", severity: .medium,
                 pattern: pattern(.word(#"subprocess\.(run|call|Popen|check_call|check_output|getoutput|getstatusoutput)\s*\("#),
                                  .word(#"os\.(system|popen|exec[lv]p?e?|spawn[lv]p?e?|posix_spawnp?)\s*\("#),
                                  .word(#"pty\.spawn\s*\("#), .word(#"commands\.getoutput\s*\("#)),
                 needs: ["subprocess.", "os.", "pty.spawn", "commands.getoutput"],
                 reason: "", check: { call in
                     if call.contains(shellTrue) {
                         return (.high, "runs a shell command line (shell=True): anything interpolated into it is executed")
                     }
                     if call.hasPrefix("os.system") || call.hasPrefix("os.popen") || call.hasPrefix("subprocess.getoutput") || call.hasPrefix("subprocess.getstatusoutput") {
                         return (.high, "runs a command line through /bin/sh")
                     }
                     return (.medium, "starts another program")
                 }),
        LineRule(rule: "shell-true", severity: .high, pattern: pattern(.word(#"shell\s*=\s*True"#)),
                 needs: ["shell"],
                 reason: "shell=True runs the command through /bin/sh", check: nil),
        LineRule(rule: "raw-ip-url", severity: .high,
                 pattern: pattern(.plain(#"[A-Za-z][A-Za-z0-9+.-]*://(\p{Nd}{1,3}(\.\p{Nd}{1,3}){3}|\[[0-9A-Fa-f:.]+\])"#)),
                 needs: ["://"],
                 reason: "", check: { m in
                     if m.contains("://127.") || m.contains("://[::1]") || m.contains("://0.0.0.0") {
                         return (.low, "a URL to a loopback address literal")
                     }
                     return (.high, "a URL to a raw IP address: no domain to vet, a common sign of a command-and-control or exfiltration endpoint")
                 }),
        LineRule(rule: "raw-ip-connect", severity: .high,
                 pattern: pattern(.plain(#"\(\s*['"](\p{Nd}{1,3}(\.\p{Nd}{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:]+)['"]\s*,\s*\p{Nd}+\s*\)"#)),
                 needs: [","],
                 reason: "", check: { m in
                     if m.contains("127.") || m.contains("'::1'") || m.contains("\"::1\"") || m.contains("0.0.0.0") { return nil }
                     return (.high, "a (raw IP, port) address: a direct socket connection to a literal address")
                 }),
        LineRule(rule: "write-outside", severity: .high,
                 pattern: pattern(.word(#"open\s*\(\s*[rRbBuUfF]*['"](/|~|\.\./)[^'"]*['"]\s*,\s*[rRbBuUfF]*['"][^'"]*[wax+][^'"]*['"]"#),
                                  .plain(#"\.write_(text|bytes)\s*\("#)),
                 needs: ["open", ".write_"],
                 reason: "", check: { m in
                     if m.hasPrefix(".write_") { return nil }   // decided by the Path(...) rule below
                     return (.high, "opens a file outside the node's directory for writing")
                 }),
        LineRule(rule: "write-outside", severity: .high,
                 pattern: pattern(.word(#"Path\s*\(\s*['"](/|~|\.\./)[^'"]*['"]\s*\)[^\n]*\.(write_text|write_bytes|open\s*\(\s*['"][wax])"#)),
                 needs: ["Path"],
                 reason: "writes a file outside the node's directory", check: nil),
        LineRule(rule: "home-directory", severity: .medium,
                 pattern: pattern(.word(#"os\.path\.expanduser\s*\("#), .word(#"Path\.home\s*\("#), .plain(#"['"]~/"#)),
                 needs: ["os.path.expanduser", "Path.home", "~/"],
                 reason: "reaches into a home directory (credentials, shell startup files, ssh keys live there)", check: nil),
        LineRule(rule: "site-packages", severity: .high,
                 pattern: pattern(.plain("site-packages"), .plain("dist-packages"), .word(#"site\.getsitepackages\s*\("#),
                                  .word(#"site\.getusersitepackages\s*\("#), .word(#"sysconfig\.get_paths\s*\("#),
                                  .plain(#"get_python_lib\s*\("#)),
                 needs: ["-packages", "site.get", "sysconfig.get_paths", "get_python_lib"],
                 reason: "refers to the Python installation's package directories: writing there changes what every later import runs", check: nil),
        LineRule(rule: "pip-at-runtime", severity: .medium,
                 pattern: pattern(.wholeWord(#"pip\s+install"#), .word(#"pip\.main\s*\("#), .wholeWord(#"pip\._internal"#),
                                  .plain(#"['"]pip['"]\s*,\s*['"]install['"]"#)),
                 needs: ["pip"],
                 reason: "installs packages at run time, outside any review or pin", check: nil),
    ]

    /// Each rule's `needs`, as bytes.
    static let ruleLiterals = rules.map { $0.needs.map { Array($0.utf8) } }

    /// Text of the argument list of the call starting at `call` (up to its closing parenthesis).
    static func argumentText(_ call: String) -> String {
        guard let open = call.firstIndex(of: "(") else { return "" }
        var depth = 0
        var i = open
        while i < call.endIndex {
            let c = call[i]
            if c == "(" { depth += 1 }
            if c == ")" { depth -= 1; if depth == 0 { return String(call[call.index(after: open)..<i]) } }
            i = call.index(after: i)
        }
        return String(call[call.index(after: open)...])
    }

    nonisolated(unsafe) static let blobPattern = try! Regex(#"['"]([A-Za-z0-9+/=_-]{80,}|(?:[0-9a-fA-F]{2}){40,}|(?:\\x[0-9a-fA-F]{2}){30,})['"]"#,
                                        as: (Substring, Substring).self).matchingSemantics(.unicodeScalar)

    static let codeWords = ["import ", "exec(", "eval(", "subprocess", "os.system", "socket", "__import__", "def ", "lambda",
                            "urllib", "requests.", "base64", "marshal", "compile(", "open(", "popen", "/bin/sh", "powershell"]

    public static func scanPython(_ text: String, file: String, node: String) -> [Finding] {
        var out: [Finding] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (i, line) in lines.enumerated() {
            let trimmed = line.trimmingWhitespace()
            if trimmed.hasPrefix("#") { continue }
            // The call may continue on the next lines: a check sees up to 8 of
            // them from where the match starts. Joined only when a check needs it.
            var following: String?
            var seen = Set<String>()
            let candidates = line.utf8.withContiguousStorageIfAvailable { bytes in
                ruleLiterals.map { literals in literals.contains { holds(bytes, $0) } }
            } ?? Array(repeating: true, count: rules.count)
            for (rule, candidate) in zip(rules, candidates) where candidate {
                for m in line.matches(of: rule.pattern) {
                    var severity = rule.severity
                    var reason = rule.reason
                    if let check = rule.check {
                        let subject: String
                        if rule.rule.hasPrefix("raw-ip") || rule.rule == "write-outside" {
                            subject = String(m.output)
                        } else {
                            if following == nil {
                                following = lines[(i + 1)..<min(lines.count, i + 8)].map { "\n" + $0 }.joined()
                            }
                            subject = String(line[m.range.lowerBound...]) + following!
                        }
                        guard let (s, r) = check(subject) else { continue }
                        severity = s
                        reason = r
                    }
                    let key = rule.rule + reason
                    if seen.insert(key).inserted {
                        out.append(Finding(node: node, file: file, line: i + 1, rule: rule.rule, severity: severity, reason: reason,
                                           line_text: String(trimmed.prefix(160))))
                    }
                }
            }
            // A blob match is at least 82 scalars, so at least 82 bytes.
            for m in line.utf8.count < 82 ? [] : line.matches(of: blobPattern) {
                let blob = String(m.output.1)
                switch decodeBlob(blob) {
                case .compressed:
                    out.append(Finding(node: node, file: file, line: i + 1, rule: "encoded-code", severity: .high,
                                       reason: "a \(blob.count)-character encoded string holding zlib-compressed data, a common way to hide code; decompress it and review",
                                       line_text: String(trimmed.prefix(80))))
                case .text(let decoded):
                    let hit = codeWords.filter { decoded.contains($0) }
                    if !hit.isEmpty {
                        out.append(Finding(node: node, file: file, line: i + 1, rule: "encoded-code", severity: .high,
                                           reason: "a \(blob.count)-character encoded string that decodes to code (\(hit.prefix(3).joined(separator: ", ")))",
                                           line_text: String(trimmed.prefix(160))))
                    } else if blob.count >= 200 {
                        out.append(Finding(node: node, file: file, line: i + 1, rule: "encoded-blob", severity: .low,
                                           reason: "a \(blob.count)-character encoded string; decoded it is not recognisable code, but check what uses it",
                                           line_text: String(trimmed.prefix(80))))
                    }
                case nil:
                    break
                }
            }
        }
        return out
    }

    enum Decoded { case text(String), compressed }

    /// base64 (standard or URL-safe), hex, or \x-escaped bytes; nil when it
    /// decodes to nothing textual. zlib-compressed bytes (78 01/5e/9c/da) are
    /// reported as such: Foundation on Linux has no inflate, and compressed
    /// code inside an encoded string is itself the obfuscation to flag.
    static func decodeBlob(_ s: String) -> Decoded? {
        var candidates: [Data] = []
        if s.hasPrefix("\\x") {
            let hex = s.replacing("\\x", with: "")
            if let d = hexData(hex) { candidates.append(d) }
        } else {
            if s.count % 2 == 0, s.allSatisfy({ $0.isHexDigit }), let d = hexData(s) { candidates.append(d) }
            var b = s.replacing("-", with: "+").replacing("_", with: "/")
            while b.count % 4 != 0 { b += "=" }
            if let d = Data(base64Encoded: b) { candidates.append(d) }
        }
        for d in candidates {
            if d.count > 2, d[d.startIndex] == 0x78, [0x01, 0x5e, 0x9c, 0xda].contains(d[d.startIndex + 1]) { return .compressed }
            let text = String(decoding: d, as: UTF8.self)
            let printable = text.unicodeScalars.filter { $0.value >= 0x20 || $0 == "\n" || $0 == "\t" }.count
            if printable * 10 >= text.unicodeScalars.count * 9 { return .text(text) }
        }
        return nil
    }

    static func hexData(_ s: String) -> Data? {
        var d = Data()
        var it = s.makeIterator()
        while let a = it.next() {
            guard let b = it.next(), let v = UInt8(String([a, b]), radix: 16) else { return nil }
            d.append(v)
        }
        return d
    }

}
