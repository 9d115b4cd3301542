import Foundation

/// A static scan of custom node code for what a reviewer should look at
/// before trusting a node: dynamic code execution, unsafe deserialisation,
/// shell-outs, raw-IP network endpoints, encoded payloads, install-time and
/// startup hooks, and writes outside the node's own directory. It is a
/// reviewer's aid: false positives are fine when the reason says why;
/// missing one of these patterns is not.
///
/// Files are walked by descriptor without following links (a node is
/// hostile input, possibly writable by the sandbox); `.git` is skipped,
/// files over 4 MiB are noted and skipped.
public enum NodeScanner {
    public enum Severity: String, Codable, Sendable, Comparable, CaseIterable {
        case low, medium, high
        var rank: Int { self == .low ? 0 : self == .medium ? 1 : 2 }
        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    public struct Finding: Codable, Sendable, Equatable {
        public var node: String
        /// Relative to the node's directory.
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
        var out: [Finding] = []
        walk(fd, relative: "", node: node, depth: 0, &out)
        return out.sorted { ($0.file, $0.line, $0.rule) < ($1.file, $1.line, $1.rule) }
    }

    static func walk(_ dfd: Int32, relative: String, node: String, depth: Int, _ out: inout [Finding]) {
        guard depth < 64 else { return }
        let dup = fcntl(dfd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let dir = fdopendir(dup) else { return }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name == "." || name == ".." || (depth == 0 && name == ".git") { continue }
            names.append(name)
        }
        for name in names.sorted() {
            let rel = relative.isEmpty ? name : relative + "/" + name
            var st = stat()
            guard fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                if name == "__pycache__" { continue }
                let sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard sub >= 0 else { continue }
                walk(sub, relative: rel, node: node, depth: depth + 1, &out)
                close(sub)
            case S_IFLNK:
                var buf = [UInt8](repeating: 0, count: 4096)
                let n = buf.withUnsafeMutableBufferPointer { p in
                    p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { readlinkat(dfd, name, $0, p.count - 1) }
                }
                let target = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : "?"
                if target.hasPrefix("/") || target.split(separator: "/").contains("..") {
                    out.append(Finding(node: node, file: rel, line: 0, rule: "symlink-outside", severity: .medium,
                                       reason: "a link pointing outside the node (\(target)); code could read or write there through it"))
                }
            case S_IFREG:
                if name.hasSuffix(".pth") {
                    out.append(Finding(node: node, file: rel, line: 0, rule: "pth-file", severity: .high,
                                       reason: ".pth files run their import lines at every Python start once they reach site-packages"))
                }
                let lower = name.lowercased()
                if depth == 0 && ["setup.py", "install.py", "prestartup_script.py"].contains(lower) {
                    let why = lower == "setup.py" ? "setup.py runs arbitrary code when the node is pip-installed"
                        : lower == "install.py" ? "install.py is run by node managers at install time"
                        : "prestartup_script.py runs before ComfyUI loads any node"
                    out.append(Finding(node: node, file: rel, line: 0, rule: "install-time-code", severity: .medium, reason: why))
                }
                guard name.hasSuffix(".py") || name.hasSuffix(".pyw") else { continue }
                if Int(st.st_size) > maxFileSize {
                    out.append(Finding(node: node, file: rel, line: 0, rule: "too-large", severity: .low,
                                       reason: "\(st.st_size) bytes of Python, not scanned; review by hand"))
                    continue
                }
                let f = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
                guard f >= 0 else { continue }
                let data = readAll(f)
                close(f)
                out += scanPython(String(decoding: data, as: UTF8.self), file: rel, node: node)
            default:
                continue
            }
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

    /// Immutable after construction (NSRegularExpression is thread-safe for matching).
    struct LineRule: @unchecked Sendable {
        var rule: String
        var severity: Severity
        var pattern: NSRegularExpression
        var reason: String
        /// Decides on the text of the call the match starts (nil: always a finding).
        var check: (@Sendable (String) -> (Severity, String)?)?
    }

    static func re(_ s: String) -> NSRegularExpression { try! NSRegularExpression(pattern: s, options: []) }

    static let rules: [LineRule] = [
        LineRule(rule: "dynamic-code", severity: .high, pattern: re(#"(?<![\w.])(eval|exec|compile)\s*\("#),
                 reason: "", check: { call in
                     // A literal string argument is static code; anything else is built at run time.
                     let arg = argumentText(call).trimmingCharacters(in: .whitespacesAndNewlines)
                     // compile(src, name, mode): only the first argument matters.
                     let first = arg.range(of: #"^[rRbBuU]?("([^"\\]|\\.)*"|'([^'\\]|\\.)*')"#, options: .regularExpression)
                     if let first {
                         let rest = arg[first.upperBound...].trimmingCharacters(in: .whitespaces)
                         if rest.isEmpty || rest.hasPrefix(",") { return nil }
                     }
                     return (.high, "runs code built at run time; what it runs cannot be reviewed here")
                 }),
        LineRule(rule: "dynamic-import", severity: .medium, pattern: re(#"(?<![\w.])__import__\s*\(|importlib\.import_module\s*\("#),
                 reason: "imports a module named at run time", check: nil),
        LineRule(rule: "pickle", severity: .high,
                 pattern: re(#"\b(c?[Pp]ickle|dill|joblib|cloudpickle|_pickle)\.(loads?|Unpickler)\s*\(|\bnumpy\.load\s*\([^)]*allow_pickle\s*=\s*True|\bnp\.load\s*\([^)]*allow_pickle\s*=\s*True"#),
                 reason: "unpickling runs whatever code the data names; a crafted model or cache file takes over the process", check: nil),
        LineRule(rule: "torch-load", severity: .high, pattern: re(#"\btorch\.load\s*\("#), reason: "", check: { call in
            if call.range(of: #"weights_only\s*=\s*True"#, options: .regularExpression) != nil { return nil }
            return (.high, "torch.load without weights_only=True unpickles arbitrary code from the file")
        }),
        LineRule(rule: "yaml-load", severity: .high, pattern: re(#"\byaml\.(load|load_all|unsafe_load|unsafe_load_all|full_load|full_load_all)\s*\("#), reason: "", check: { call in
            if call.hasPrefix("yaml.unsafe_load") { return (.high, "yaml.unsafe_load builds arbitrary Python objects") }
            if call.hasPrefix("yaml.full_load") { return (.medium, "yaml.full_load builds Python objects beyond plain data; use yaml.safe_load") }
            if call.range(of: #"Loader\s*=\s*(yaml\.)?(C?SafeLoader|BaseLoader|CBaseLoader)"#, options: .regularExpression) != nil { return nil }
            return (.high, "yaml.load without a safe loader can build arbitrary Python objects; use yaml.safe_load")
        }),
        LineRule(rule: "shell-out", severity: .medium,
                 pattern: re(#"\bsubprocess\.(run|call|Popen|check_call|check_output|getoutput|getstatusoutput)\s*\(|\bos\.(system|popen|exec[lv]p?e?|spawn[lv]p?e?|posix_spawnp?)\s*\(|\bpty\.spawn\s*\(|\bcommands\.getoutput\s*\("#),
                 reason: "", check: { call in
                     if call.range(of: #"shell\s*=\s*True"#, options: .regularExpression) != nil {
                         return (.high, "runs a shell command line (shell=True): anything interpolated into it is executed")
                     }
                     if call.hasPrefix("os.system") || call.hasPrefix("os.popen") || call.hasPrefix("subprocess.getoutput") || call.hasPrefix("subprocess.getstatusoutput") {
                         return (.high, "runs a command line through /bin/sh")
                     }
                     return (.medium, "starts another program")
                 }),
        LineRule(rule: "shell-true", severity: .high, pattern: re(#"\bshell\s*=\s*True"#),
                 reason: "shell=True runs the command through /bin/sh", check: nil),
        LineRule(rule: "raw-ip-url", severity: .high,
                 pattern: re(#"[A-Za-z][A-Za-z0-9+.-]*://(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\])"#),
                 reason: "", check: { m in
                     if m.contains("://127.") || m.contains("://[::1]") || m.contains("://0.0.0.0") {
                         return (.low, "a URL to a loopback address literal")
                     }
                     return (.high, "a URL to a raw IP address: no domain to vet, a common sign of a command-and-control or exfiltration endpoint")
                 }),
        LineRule(rule: "raw-ip-connect", severity: .high,
                 pattern: re(#"\(\s*['"](\d{1,3}(\.\d{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:]+)['"]\s*,\s*\d+\s*\)"#),
                 reason: "", check: { m in
                     if m.contains("127.") || m.contains("'::1'") || m.contains("\"::1\"") || m.contains("0.0.0.0") { return nil }
                     return (.high, "a (raw IP, port) address: a direct socket connection to a literal address")
                 }),
        LineRule(rule: "write-outside", severity: .high,
                 pattern: re(#"\bopen\s*\(\s*[rRbBuUfF]*['"](/|~|\.\./)[^'"]*['"]\s*,\s*[rRbBuUfF]*['"][^'"]*[wax+][^'"]*['"]|\.write_(text|bytes)\s*\("#),
                 reason: "", check: { m in
                     if m.hasPrefix(".write_") { return nil }   // decided by the Path(...) rule below
                     return (.high, "opens a file outside the node's directory for writing")
                 }),
        LineRule(rule: "write-outside", severity: .high,
                 pattern: re(#"\bPath\s*\(\s*['"](/|~|\.\./)[^'"]*['"]\s*\)[^\n]*\.(write_text|write_bytes|open\s*\(\s*['"][wax])"#),
                 reason: "writes a file outside the node's directory", check: nil),
        LineRule(rule: "home-directory", severity: .medium, pattern: re(#"\bos\.path\.expanduser\s*\(|\bPath\.home\s*\(|['"]~/"#),
                 reason: "reaches into a home directory (credentials, shell startup files, ssh keys live there)", check: nil),
        LineRule(rule: "site-packages", severity: .high,
                 pattern: re(#"site-packages|dist-packages|\bsite\.getsitepackages\s*\(|\bsite\.getusersitepackages\s*\(|\bsysconfig\.get_paths\s*\(|get_python_lib\s*\("#),
                 reason: "refers to the Python installation's package directories: writing there changes what every later import runs", check: nil),
        LineRule(rule: "pip-at-runtime", severity: .medium,
                 pattern: re(#"\bpip\s+install\b|\bpip\.main\s*\(|\bpip\._internal\b|['"]pip['"]\s*,\s*['"]install['"]"#),
                 reason: "installs packages at run time, outside any review or pin", check: nil),
    ]

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

    static let blobPattern = re(#"['"]([A-Za-z0-9+/=_-]{80,}|(?:[0-9a-fA-F]{2}){40,}|(?:\\x[0-9a-fA-F]{2}){30,})['"]"#)

    static let codeWords = ["import ", "exec(", "eval(", "subprocess", "os.system", "socket", "__import__", "def ", "lambda",
                            "urllib", "requests.", "base64", "marshal", "compile(", "open(", "popen", "/bin/sh", "powershell"]

    public static func scanPython(_ text: String, file: String, node: String) -> [Finding] {
        var out: [Finding] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (i, line) in lines.enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#") { continue }
            let ns = line as NSString
            // The call may continue on the next lines: look at up to 8 of them.
            let window = lines[i..<min(lines.count, i + 8)].joined(separator: "\n")
            let wns = window as NSString
            var seen = Set<String>()
            for rule in rules {
                for m in rule.pattern.matches(in: line, range: NSRange(location: 0, length: ns.length)) {
                    let fromMatch = wns.substring(from: m.range.location)
                    let matched = ns.substring(with: m.range)
                    var severity = rule.severity
                    var reason = rule.reason
                    if let check = rule.check {
                        let subject = rule.rule.hasPrefix("raw-ip") || rule.rule == "write-outside" ? matched : fromMatch
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
            for m in blobPattern.matches(in: line, range: NSRange(location: 0, length: ns.length)) {
                let blob = ns.substring(with: m.range(at: 1))
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
            let hex = s.replacingOccurrences(of: "\\x", with: "")
            if let d = hexData(hex) { candidates.append(d) }
        } else {
            if s.count % 2 == 0, s.allSatisfy({ $0.isHexDigit }), let d = hexData(s) { candidates.append(d) }
            var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
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
