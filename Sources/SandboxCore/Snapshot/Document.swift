import FoundationEssentials
import SandboxOS
import SandboxConfig

/// A parsed JSON or YAML document that keeps what a Codable type throws away:
/// the order of an object's keys (a snapshot's nodes, a config the user
/// wrote) and a number's exact text. `import-snapshot` reads ComfyUI-Manager
/// snapshots into it and edits the user's config through it, so the parts of
/// the config a snapshot says nothing about are written back as they were.
public indirect enum Document: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The literal as written (JSON number grammar, checked by the parser).
    case number(String)
    case string(String)
    case array([Document])
    /// Members in document order; keys are unique (the parsers refuse duplicates).
    case object([Member])

    public struct Member: Equatable, Sendable {
        public var key: String
        public var value: Document
        public init(_ key: String, _ value: Document) {
            self.key = key
            self.value = value
        }
    }

    /// The member `key` of an object; nil for a missing key or a non-object.
    public subscript(key: String) -> Document? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    public var members: [Member]? {
        if case .object(let m) = self { return m }
        return nil
    }

    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// Sets `key` on an object: in place when present (its position kept),
    /// appended when not. A non-object becomes an object.
    public mutating func set(_ key: String, _ value: Document) {
        var m = members ?? []
        if let i = m.firstIndex(where: { $0.key == key }) {
            m[i].value = value
        } else {
            m.append(Member(key, value))
        }
        self = .object(m)
    }

    /// A short name for error messages: "a string", "an object", ...
    public var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "true or false"
        case .number: "a number"
        case .string: "a string"
        case .array: "a list"
        case .object: "an object"
        }
    }
}

/// A syntax error in a snapshot or config, with where it is.
public struct DocumentError: Error, Equatable, CustomStringConvertible, Sendable {
    public var line: Int
    public var message: String
    public init(line: Int, _ message: String) {
        self.line = line
        self.message = message
    }
    public var description: String { "line \(line): \(message)" }
}

// MARK: JSON

/// RFC 8259, all of it (unlike ConfigJSON's fast path): `\u` escapes with
/// surrogate pairs, numbers of any form (kept as text), strict about
/// everything else: no comments, no trailing commas, no duplicate keys, no
/// control characters in strings, valid UTF-8, one value per document.
public enum DocumentJSON {
    public static func parse(_ data: Data) throws(DocumentError) -> Document {
        var bytes = [UInt8](data)
        // A UTF-8 byte-order mark is tolerated (some editors on Windows write one).
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        var p = Parser(bytes: bytes)
        let v = try p.value(depth: 0)
        p.skipSpace()
        if p.i != bytes.count { throw p.error("unexpected text after the end of the document") }
        return v
    }

    struct Parser {
        let bytes: [UInt8]
        var i = 0

        func error(_ message: String) -> DocumentError {
            var line = 1
            for b in bytes[..<min(i, bytes.count)] where b == 0x0A { line += 1 }
            return DocumentError(line: line, message)
        }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }

        mutating func expectWord(_ word: String, _ v: Document) throws(DocumentError) -> Document {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else { throw error("expected a value") }
            i += w.count
            return v
        }

        mutating func value(depth: Int) throws(DocumentError) -> Document {
            guard depth < 100 else { throw error("nested more than 100 levels deep") }
            skipSpace()
            guard i < bytes.count else { throw error("unexpected end of the document") }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [Document.Member] = []
                var seen = Set<String>()
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                while true {
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a key in double quotes") }
                    let key = try string()
                    guard seen.insert(key).inserted else { throw error("the key \(quoted(key)) appears twice") }
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':' after the key \(quoted(key))") }
                    i += 1
                    members.append(Document.Member(key, try value(depth: depth + 1)))
                    skipSpace()
                    guard i < bytes.count else { throw error("unexpected end of the document inside an object") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                    throw error("expected ',' or '}' in an object")
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [Document] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    guard i < bytes.count else { throw error("unexpected end of the document inside a list") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                    throw error("expected ',' or ']' in a list")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): return try expectWord("true", .bool(true))
            case UInt8(ascii: "f"): return try expectWord("false", .bool(false))
            case UInt8(ascii: "n"): return try expectWord("null", .null)
            default:
                return try number()
            }
        }

        /// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
        mutating func number() throws(DocumentError) -> Document {
            let start = i
            func digits() -> Int {
                let s = i
                while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
                return i - s
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
            let intStart = i
            let n = digits()
            guard n > 0 else { throw error("expected a value") }
            if n > 1 && bytes[intStart] == UInt8(ascii: "0") { throw error("a number may not start with 0") }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard digits() > 0 else { throw error("expected digits after '.'") }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { throw error("expected digits in the exponent") }
            }
            return .number(String(decoding: bytes[start..<i], as: UTF8.self))
        }

        /// A string at `i` (on its opening quote).
        mutating func string() throws(DocumentError) -> String {
            var at = i
            let r = bytes.withUnsafeBufferPointer { JSONString.scan($0, &at) }
            i = at
            switch r {
            case .success(let s): return s
            case .failure(let problem): throw error(problem.description)
            }
        }
    }
}

/// `s` as a JSON string literal: what error messages and the diff print for
/// text that came from a file, so a control character or an escape sequence
/// in a hostile snapshot is shown, never sent to the terminal.
func quoted(_ s: String) -> String {
    DocumentPrinter.literal(s) { u in
        // Controls, C1, line separators and bidi overrides (which can make a
        // URL read as another on a terminal).
        u.value < 0x20 || u.value == 0x7F || (0x80...0x9F).contains(u.value)
            || u.value == 0x2028 || u.value == 0x2029 || (0x202A...0x202E).contains(u.value) || (0x2066...0x2069).contains(u.value)
    }
}

// MARK: printing

/// Writes a Document as JSON text.
public struct DocumentPrinter: Sendable {
    /// Spaces per level.
    public var indent: Int
    /// An object or list is printed on one line when that line fits in this
    /// many columns (0: never), as the example config writes its shares. Python's `json.dump(indent=4)`, which the Manager
    /// uses, is width 0 and indent 4.
    public var inlineWidth: Int

    public init(indent: Int = 2, inlineWidth: Int = 0) {
        self.indent = indent
        self.inlineWidth = inlineWidth
    }

    public func render(_ d: Document) -> String {
        var out = ""
        write(d, level: 0, into: &out)
        return out + "\n"
    }

    func write(_ d: Document, level: Int, into out: inout String) {
        switch d {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): out += Self.literal(s)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            if let line = inline(d), fits(line, level: level, out: out) { out += line; return }
            out += "[\n"
            for (k, item) in items.enumerated() {
                out += pad(level + 1)
                write(item, level: level + 1, into: &out)
                out += k == items.count - 1 ? "\n" : ",\n"
            }
            out += pad(level) + "]"
        case .object(let members):
            if members.isEmpty { out += "{}"; return }
            if let line = inline(d), fits(line, level: level, out: out) { out += line; return }
            out += "{\n"
            for (k, m) in members.enumerated() {
                out += pad(level + 1) + Self.literal(m.key) + ": "
                write(m.value, level: level + 1, into: &out)
                out += k == members.count - 1 ? "\n" : ",\n"
            }
            out += pad(level) + "}"
        }
    }

    func pad(_ level: Int) -> String { String(repeating: " ", count: level * indent) }

    /// The column the next character lands in, plus `line`, within the width.
    func fits(_ line: String, level: Int, out: String) -> Bool {
        let lineStart = out.lastIndex(of: "\n").map { out.index(after: $0) } ?? out.startIndex
        return out[lineStart...].count + line.count + 1 <= inlineWidth
    }

    /// The one-line form of a value (nil when inlining is off): `{ "k": v, ... }`, `[a, b]`.
    func inline(_ d: Document) -> String? {
        guard inlineWidth > 0 else { return nil }
        switch d {
        case .array(let items):
            if items.isEmpty { return "[]" }
            var parts: [String] = []
            for item in items { guard let s = inline(item) else { return nil }; parts.append(s) }
            return "[" + parts.joined(separator: ", ") + "]"
        case .object(let members):
            if members.isEmpty { return "{}" }
            var parts: [String] = []
            for m in members { guard let s = inline(m.value) else { return nil }; parts.append(Self.literal(m.key) + ": " + s) }
            return "{ " + parts.joined(separator: ", ") + " }"
        default:
            var s = ""
            write(d, level: 0, into: &s)
            return s
        }
    }

    /// A JSON string literal: UTF-8 as is, slashes unescaped, controls as \u.
    public static func literal(_ s: String) -> String {
        literal(s) { $0.value < 0x20 || $0.value == 0x7F }
    }

    /// A JSON string literal with `"`, `\`, newline, return and tab escaped
    /// by their short forms and every other scalar `escape` picks as `\uXXXX`.
    static func literal(_ s: String, escape: (Unicode.Scalar) -> Bool) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if escape(u) {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: max(0, 4 - h.count)) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
