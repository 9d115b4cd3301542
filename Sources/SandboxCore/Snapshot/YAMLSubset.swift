import FoundationEssentials
import SandboxConfig
import SandboxOS

/// The part of YAML that ComfyUI-Manager's snapshots are written in (PyYAML's
/// `yaml.dump` of plain dicts, lists, strings, booleans and None), and
/// nothing more, so no dependency is needed and nothing surprising is
/// accepted:
///
/// - block mappings (`key: value`), block sequences (`- item`, also at the
///   key's own indentation, as PyYAML writes them), `- key: value` items;
/// - `? key` / `: value` pairs (PyYAML writes a key longer than 128
///   characters that way: a long `git+https://...` pip line);
/// - plain, 'single-quoted' and "double-quoted" scalars on one line;
/// - the empty flow collections `{}` and `[]`;
/// - `null`, `~`, `true`, `false` (and their capitalised forms); every other
///   plain scalar is a string (`1.0` stays "1.0": a version, not a number);
/// - `#` comments, a leading `---` and a trailing `...`.
///
/// Anything else (anchors, aliases, tags, block scalars `|` `>`, flow
/// collections with content, multi-line scalars, tabs in indentation,
/// duplicate keys, more than one document) is an error naming the line.
public enum YAMLSubset {
    public static func parse(_ data: Data) throws(DocumentError) -> Document {
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw DocumentError(line: 1, "the file is not valid UTF-8")
        }
        var lines: [Line] = []
        var number = 0
        var sawStart = false, sawEnd = false
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            var s = Substring(raw)
            if s.hasSuffix("\r") { s = s.dropLast() }
            let indent = s.prefix { $0 == " " }.count
            let body = s.dropFirst(indent)
            if body.first == "\t" { throw DocumentError(line: number, "a tab in the indentation; YAML indents with spaces") }
            let trimmed = body.trimmingWhitespace()
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if sawEnd { throw DocumentError(line: number, "text after the document end marker '...'") }
            if indent == 0 && (trimmed == "---" || trimmed.hasPrefix("--- ")) {
                guard lines.isEmpty, !sawStart else {
                    throw DocumentError(line: number, "a second document ('---'); a snapshot is one document")
                }
                guard trimmed == "---" || trimmed.dropFirst(4).trimmingWhitespace().hasPrefix("#") else {
                    throw DocumentError(line: number, "content after '---'; put it on the next line")
                }
                sawStart = true
                continue
            }
            if indent == 0 && trimmed == "..." { sawEnd = true; continue }
            if indent == 0 && trimmed.hasPrefix("%") {
                throw DocumentError(line: number, "a YAML directive (\(quoted(String(trimmed)))) is not supported")
            }
            lines.append(Line(number: number, indent: indent, text: String(body)))
        }
        guard !lines.isEmpty else { throw DocumentError(line: number, "the document is empty") }
        var p = Parser(lines: lines)
        let doc = try p.block(indent: lines[0].indent)
        if p.pos < p.lines.count {
            throw DocumentError(line: p.lines[p.pos].number, "unexpected indentation or text; expected the document to end")
        }
        return doc
    }

    struct Line {
        var number: Int
        var indent: Int
        /// The line after its indentation (comments still in it).
        var text: String

        /// `- ...` or a lone `-`.
        var isSequenceEntry: Bool { text == "-" || text.hasPrefix("- ") || text.hasPrefix("-#") }
    }

    struct Parser {
        var lines: [Line]
        var pos = 0

        func error(_ message: String) -> DocumentError {
            DocumentError(line: pos < lines.count ? lines[pos].number : (lines.last?.number ?? 1), message)
        }

        /// The collection that starts on the current line, whose indent is `indent`.
        mutating func block(indent: Int) throws(DocumentError) -> Document {
            lines[pos].isSequenceEntry ? try sequence(indent: indent) : try mapping(indent: indent)
        }

        mutating func sequence(indent: Int) throws(DocumentError) -> Document {
            var items: [Document] = []
            while pos < lines.count, lines[pos].indent == indent, lines[pos].isSequenceEntry {
                let line = lines[pos]
                let afterDash = line.text.dropFirst()
                let spaces = afterDash.prefix { $0 == " " }.count
                let rest = String(afterDash.dropFirst(spaces))
                if rest.isEmpty || rest.hasPrefix("#") {
                    // `-` alone: the item is the block below it, or null.
                    pos += 1
                    if pos < lines.count, lines[pos].indent > indent {
                        items.append(try block(indent: lines[pos].indent))
                    } else {
                        items.append(.null)
                    }
                } else if Self.startsCollection(rest) {
                    // `- key: value` or `- - x`: the rest is a line of its own
                    // at the column it starts in.
                    lines[pos] = Line(number: line.number, indent: indent + 1 + spaces, text: rest)
                    items.append(try block(indent: indent + 1 + spaces))
                } else {
                    items.append(try inlineValue(rest, line: line.number))
                    pos += 1
                }
                if pos < lines.count, lines[pos].indent > indent {
                    throw error("unexpected indentation (a scalar cannot continue on the next line)")
                }
            }
            return .array(items)
        }

        mutating func mapping(indent: Int) throws(DocumentError) -> Document {
            var members: [Document.Member] = []
            var seen = Set<String>()
            while pos < lines.count, lines[pos].indent == indent {
                let line = lines[pos]
                if line.isSequenceEntry { throw error("a list item where a `key: value` line was expected") }
                let key: String
                var rest: String
                if line.text == "?" || line.text.hasPrefix("? ") {
                    // An explicit key: `? key` then `: value` at the same indentation.
                    let k = String(line.text.dropFirst(1).drop { $0 == " " })
                    guard case .string(let s) = try inlineValue(k, line: line.number, asKey: true) else {
                        throw error("a key must be a string")
                    }
                    key = s
                    pos += 1
                    guard pos < lines.count, lines[pos].indent == indent, lines[pos].text == ":" || lines[pos].text.hasPrefix(": ") else {
                        throw error("expected `: value` after the explicit key `? \(k)`")
                    }
                    rest = String(lines[pos].text.dropFirst(1).drop { $0 == " " })
                } else {
                    let split = try Self.splitKey(line.text, line: line.number)
                    key = split.key
                    rest = split.rest
                }
                guard seen.insert(key).inserted else { throw error("the key \(quoted(key)) appears twice") }
                if rest.hasPrefix("#") { rest = "" }
                let value: Document
                if rest.isEmpty {
                    pos += 1
                    if pos < lines.count, lines[pos].indent > indent {
                        value = try block(indent: lines[pos].indent)
                    } else if pos < lines.count, lines[pos].indent == indent, lines[pos].isSequenceEntry {
                        // PyYAML writes a mapping's list at the key's own indentation.
                        value = try sequence(indent: indent)
                    } else {
                        value = .null
                    }
                } else {
                    if Self.startsCollection(rest) && !rest.hasPrefix("- ") {
                        throw error("a mapping on the same line as its key is not supported; put it on the next lines, indented")
                    }
                    value = try inlineValue(rest, line: lines[pos].number)
                    pos += 1
                }
                members.append(Document.Member(key, value))
                if pos < lines.count, lines[pos].indent > indent {
                    throw error("unexpected indentation (a scalar cannot continue on the next line)")
                }
            }
            return .object(members)
        }

        /// Does `text` (an item's content) open a mapping (`key: ...`) or a nested list?
        static func startsCollection(_ text: String) -> Bool {
            if text == "-" || text.hasPrefix("- ") { return true }
            if text == "?" || text.hasPrefix("? ") { return true }
            return (try? splitKey(text, line: 0)) != nil
        }

        /// `key: rest` (or `key:`): the key's text and what follows the
        /// separator, spaces dropped.
        static func splitKey(_ text: String, line: Int) throws(DocumentError) -> (key: String, rest: String) {
            let u = Array(text.utf8)
            var end: Int
            let key: String
            if u.first == UInt8(ascii: "'") || u.first == UInt8(ascii: "\"") {
                let (s, after) = try quotedScalar(u, line: line)
                key = s
                end = after
                while end < u.count, u[end] == UInt8(ascii: " ") { end += 1 }
                guard end < u.count, u[end] == UInt8(ascii: ":"), end + 1 == u.count || u[end + 1] == UInt8(ascii: " ") else {
                    throw DocumentError(line: line, "expected ':' after the quoted key")
                }
            } else {
                // A plain key ends at the first ": " or a ':' that ends the line.
                var k = 0
                var found: Int? = nil
                while k < u.count {
                    if u[k] == UInt8(ascii: "#"), k > 0, u[k - 1] == UInt8(ascii: " ") { break }
                    if u[k] == UInt8(ascii: ":"), k + 1 == u.count || u[k + 1] == UInt8(ascii: " ") { found = k; break }
                    k += 1
                }
                guard let colon = found else { throw DocumentError(line: line, "expected `key: value`") }
                let raw = String(decoding: u[..<colon], as: UTF8.self).trimmingWhitespace()
                guard !raw.isEmpty else { throw DocumentError(line: line, "an empty key") }
                guard case .string(let s) = try plainScalar(raw, line: line, asKey: true) else {
                    throw DocumentError(line: line, "a key must be a string, not \(quoted(raw))")
                }
                key = s
                end = colon
            }
            let rest = String(decoding: u[(end + 1)...], as: UTF8.self).drop { $0 == " " }
            return (key, String(rest))
        }

        /// A value written on the line of its key or dash: a scalar, `{}` or `[]`.
        func inlineValue(_ text: String, line: Int, asKey: Bool = false) throws(DocumentError) -> Document {
            let u = Array(text.utf8)
            guard let first = u.first else { return .null }
            switch first {
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                let (s, after) = try Self.quotedScalar(u, line: line)
                try Self.onlyComment(u[after...], line: line)
                return .string(s)
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let close = first == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                var k = 1
                while k < u.count, u[k] == UInt8(ascii: " ") { k += 1 }
                guard k < u.count, u[k] == close else {
                    throw DocumentError(line: line, "flow collections (\(first == UInt8(ascii: "{") ? "{...}" : "[...]")) are only supported empty; write it as an indented block")
                }
                try Self.onlyComment(u[(k + 1)...], line: line)
                return first == UInt8(ascii: "{") ? .object([]) : .array([])
            default:
                // Up to a comment: '#' after a space.
                var end = u.count
                for k in 1..<max(1, u.count) where u[k] == UInt8(ascii: "#") && u[k - 1] == UInt8(ascii: " ") { end = k; break }
                let raw = String(decoding: u[..<end], as: UTF8.self).trimmingWhitespace()
                return try Self.plainScalar(raw, line: line, asKey: asKey)
            }
        }

        static func onlyComment(_ rest: ArraySlice<UInt8>, line: Int) throws(DocumentError) {
            let t = rest.drop { $0 == UInt8(ascii: " ") }
            guard t.isEmpty || (t.first == UInt8(ascii: "#") && rest.first == UInt8(ascii: " ")) else {
                throw DocumentError(line: line, "unexpected text after a quoted scalar")
            }
        }

        /// A plain scalar: null, a boolean, or a string. Indicators YAML gives
        /// a meaning this subset does not support are refused by name.
        static func plainScalar(_ raw: String, line: Int, asKey: Bool = false) throws(DocumentError) -> Document {
            guard let first = raw.unicodeScalars.first else { return .null }
            let unsupported: [Unicode.Scalar: String] = [
                "&": "an anchor (&)", "*": "an alias (*)", "!": "a tag (!)", "|": "a block scalar (|)",
                ">": "a folded scalar (>)", "%": "a directive (%)", "@": "'@' (reserved)", "`": "'`' (reserved)",
                "{": "a flow mapping", "[": "a flow sequence", "}": "'}'", "]": "']'", ",": "','",
            ]
            if let what = unsupported[first] {
                throw DocumentError(line: line, "\(what) is not supported in a snapshot: \(quoted(raw))")
            }
            if first == "#" { return .null }
            if raw.utf8.contains(UInt8(ascii: "\t")) {
                throw DocumentError(line: line, "a tab inside a plain scalar; quote it")
            }
            if !asKey && raw.contains(": ") {
                throw DocumentError(line: line, "': ' inside a plain value; quote it")
            }
            switch raw {
            case "null", "Null", "NULL", "~": return asKey ? .string(raw) : .null
            case "true", "True", "TRUE": return asKey ? .string(raw) : .bool(true)
            case "false", "False", "FALSE": return asKey ? .string(raw) : .bool(false)
            default: return .string(raw)
            }
        }

        /// A quoted scalar starting at u[0]; returns it and the index after its closing quote.
        static func quotedScalar(_ u: [UInt8], line: Int) throws(DocumentError) -> (String, Int) {
            let q = u[0]
            var out: [UInt8] = []
            var k = 1
            while k < u.count {
                let b = u[k]
                if q == UInt8(ascii: "'") {
                    if b == q {
                        if k + 1 < u.count, u[k + 1] == q { out.append(q); k += 2; continue }
                        return (try utf8(out, line: line), k + 1)
                    }
                    out.append(b)
                    k += 1
                    continue
                }
                if b == q { return (try utf8(out, line: line), k + 1) }
                guard b == UInt8(ascii: "\\") else { out.append(b); k += 1; continue }
                guard k + 1 < u.count else { break }
                let e = u[k + 1]
                k += 2
                func hex(_ n: Int) throws(DocumentError) -> [UInt8] {
                    guard k + n <= u.count else { throw DocumentError(line: line, "a \\x, \\u or \\U escape is cut short") }
                    var v: UInt32 = 0
                    for j in 0..<n {
                        guard let d = hexValue(u[k + j]) else { throw DocumentError(line: line, "a \\x, \\u or \\U escape needs hex digits") }
                        v = v << 4 | d
                    }
                    k += n
                    guard let s = Unicode.Scalar(v) else { throw DocumentError(line: line, "an escape names no character") }
                    return Array(String(Character(s)).utf8)
                }
                switch e {
                case UInt8(ascii: "0"): out.append(0)
                case UInt8(ascii: "a"): out.append(0x07)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "t"), 0x09: out.append(0x09)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "v"): out.append(0x0B)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "e"): out.append(0x1B)
                case UInt8(ascii: " "): out.append(0x20)
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "N"): out += [0xC2, 0x85]
                case UInt8(ascii: "_"): out += [0xC2, 0xA0]
                case UInt8(ascii: "L"): out += [0xE2, 0x80, 0xA8]
                case UInt8(ascii: "P"): out += [0xE2, 0x80, 0xA9]
                case UInt8(ascii: "x"): out += try hex(2)
                case UInt8(ascii: "u"): out += try hex(4)
                case UInt8(ascii: "U"): out += try hex(8)
                default:
                    throw DocumentError(line: line, "unknown escape \\\(String(decoding: [e], as: UTF8.self)) in a double-quoted scalar")
                }
            }
            throw DocumentError(line: line, "a quoted scalar is not closed on its line (multi-line scalars are not supported)")
        }

        static func utf8(_ bytes: [UInt8], line: Int) throws(DocumentError) -> String {
            guard let s = String(validating: bytes, as: UTF8.self) else { throw DocumentError(line: line, "a scalar is not valid UTF-8") }
            return s
        }
    }
}
