import FoundationEssentials
import SandboxOS

/// A fast path for decoding the JSON config: a strict parser for the plain
/// subset of JSON a config is written in, and a `Decoder` over its tree, so
/// the `init(from:)`s in ConfigDecoding.swift stay the one description of the
/// config's keys, defaults and checks.
///
/// Why: JSONDecoder was half of `run`'s own CPU time before the child starts.
/// On first use in a process it instantiates its generic containers by
/// demangling their names and asks, for every type it decodes, whether that
/// type conforms to its marker protocols, each question a scan of every
/// conformance record in the binary.
///
/// It is only a fast path. Anything it does not take exactly as JSONDecoder
/// would (a number with a fraction or exponent, a \u escape, a duplicate key,
/// invalid UTF-8, a byte-order mark...) and every error, including the
/// config's own checks, makes `ConfigLoader` decode the same bytes again with
/// JSONDecoder, which then gives the value or the error message. So a config
/// decodes to the same value, or fails with the same words, either way; a test
/// compares the two on every config the tests use and on damaged variants.
enum ConfigJSON {
    /// The decoded config, or nil where JSONDecoder must decide.
    package static func decode(_ data: Data, environment: [String: String]) -> Config? {
        guard let root = data.withUnsafeBytes({ raw -> Value? in
            var parser = Parser(bytes: raw.bindMemory(to: UInt8.self))
            return parser.document()
        }) else { return nil }
        return try? Config(from: TreeDecoder(value: root, codingPath: [], environment: environment))
    }

    /// A struct, not a (key:, value:) tuple: the array of tuples would have
    /// its metadata built at run time on first use.
    struct Member {
        var key: String
        var value: Value
    }

    indirect enum Value {
        case null
        case bool(Bool)
        /// The literal's text: -?digits only (anything else was refused).
        case integer(String)
        case string(String)
        case array([Value])
        /// Members in document order; keys are unique.
        case object([Member])
    }

    /// RFC 8259 for the subset above; nil for anything outside it.
    struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0

        mutating func document() -> Value? {
            guard let v = value(depth: 0) else { return nil }
            skipSpace()
            return i == bytes.count ? v : nil
        }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let n = word.utf8CodeUnitCount
            guard i + n <= bytes.count else { return false }
            for k in 0..<n where bytes[i + k] != word.utf8Start[k] { return false }
            i += n
            return true
        }

        mutating func value(depth: Int) -> Value? {
            guard depth < 64 else { return nil }
            skipSpace()
            guard i < bytes.count else { return nil }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [Member] = []
                var seen = Set<String>()
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                while true {
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\""), let key = string(),
                          seen.insert(key).inserted else { return nil }
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    guard let v = value(depth: depth + 1) else { return nil }
                    members.append(Member(key: key, value: v))
                    skipSpace()
                    guard i < bytes.count else { return nil }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                    return nil
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [Value] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    guard let v = value(depth: depth + 1) else { return nil }
                    items.append(v)
                    skipSpace()
                    guard i < bytes.count else { return nil }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                    return nil
                }
            case UInt8(ascii: "\""):
                return string().map(Value.string)
            case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
            case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
            case UInt8(ascii: "n"): return literal("null") ? .null : nil
            default:
                return integer()
            }
        }

        /// -?(0|[1-9][0-9]*) and nothing after it that would make it a fraction
        /// or an exponent.
        mutating func integer() -> Value? {
            let start = i
            if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
            let digits = i
            while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
            guard i > digits, i - digits == 1 || bytes[digits] != UInt8(ascii: "0") else { return nil }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                return nil
            }
            return .integer(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
        }

        /// A string at `i` (on its opening quote); nil for anything
        /// JSONString refuses (JSONDecoder then gives the message).
        mutating func string() -> String? {
            try? JSONString.scan(bytes, &i).get()
        }
    }

    /// Any mismatch: the message is never shown (JSONDecoder decodes again).
    struct Mismatch: Error {}

    struct TreeDecoder: Decoder {
        let value: Value
        let codingPath: [any CodingKey]
        let environment: [String: String]
        var userInfo: [CodingUserInfoKey: Any] { [.configEnvironment: environment] }

        func child(_ value: Value, _ key: any CodingKey) -> TreeDecoder {
            TreeDecoder(value: value, codingPath: codingPath + [key], environment: environment)
        }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            guard case .object(let members) = value else { throw Mismatch() }
            return KeyedDecodingContainer(Keyed<Key>(decoder: self, members: members))
        }

        func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
            guard case .array(let items) = value else { throw Mismatch() }
            return Unkeyed(decoder: self, items: items)
        }

        func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(decoder: self) }

        /// The member names of this object, in document order.
        func objectKeys() throws -> [String] {
            guard case .object(let members) = value else { throw Mismatch() }
            var keys: [String] = []
            for m in members { keys.append(m.key) }
            return keys
        }

        func decodeNil() -> Bool { if case .null = value { return true } else { return false } }

        func decode(_: Bool.Type) throws -> Bool {
            guard case .bool(let b) = value else { throw Mismatch() }
            return b
        }

        func decode(_: String.Type) throws -> String {
            guard case .string(let s) = value else { throw Mismatch() }
            return s
        }

        func decodeInteger<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard case .integer(let text) = value, T.isSigned || text.first != "-",
                  let n = T(text, radix: 10) else { throw Mismatch() }
            return n
        }

        func decode<T: Decodable>(_: T.Type) throws -> T { try T(from: self) }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let decoder: TreeDecoder
        let members: [Member]
        var codingPath: [any CodingKey] { decoder.codingPath }
        var allKeys: [Key] {
            // A loop, not compactMap: unspecialized, compactMap resolves the
            // element type of `members` by demangling it at run time.
            var keys: [Key] = []
            for m in members { if let k = Key(stringValue: m.key) { keys.append(k) } }
            return keys
        }

        func contains(_ key: Key) -> Bool { members.contains { $0.key == key.stringValue } }

        func at(_ key: Key) throws -> TreeDecoder {
            guard let m = members.first(where: { $0.key == key.stringValue }) else { throw Mismatch() }
            return decoder.child(m.value, key)
        }

        func decodeNil(forKey key: Key) throws -> Bool { try at(key).decodeNil() }
        func decode(_ t: Bool.Type, forKey key: Key) throws -> Bool { try at(key).decode(t) }
        func decode(_ t: String.Type, forKey key: Key) throws -> String { try at(key).decode(t) }
        func decode(_: Double.Type, forKey key: Key) throws -> Double { throw Mismatch() }
        func decode(_: Float.Type, forKey key: Key) throws -> Float { throw Mismatch() }
        func decode(_ t: Int.Type, forKey key: Key) throws -> Int { try at(key).decodeInteger(t) }
        func decode(_ t: Int8.Type, forKey key: Key) throws -> Int8 { try at(key).decodeInteger(t) }
        func decode(_ t: Int16.Type, forKey key: Key) throws -> Int16 { try at(key).decodeInteger(t) }
        func decode(_ t: Int32.Type, forKey key: Key) throws -> Int32 { try at(key).decodeInteger(t) }
        func decode(_ t: Int64.Type, forKey key: Key) throws -> Int64 { try at(key).decodeInteger(t) }
        func decode(_ t: UInt.Type, forKey key: Key) throws -> UInt { try at(key).decodeInteger(t) }
        func decode(_ t: UInt8.Type, forKey key: Key) throws -> UInt8 { try at(key).decodeInteger(t) }
        func decode(_ t: UInt16.Type, forKey key: Key) throws -> UInt16 { try at(key).decodeInteger(t) }
        func decode(_ t: UInt32.Type, forKey key: Key) throws -> UInt32 { try at(key).decodeInteger(t) }
        func decode(_ t: UInt64.Type, forKey key: Key) throws -> UInt64 { try at(key).decodeInteger(t) }
        func decode<T: Decodable>(_ t: T.Type, forKey key: Key) throws -> T { try at(key).decode(t) }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            try at(key).container(keyedBy: type)
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try at(key).unkeyedContainer() }
        func superDecoder() throws -> any Decoder { throw Mismatch() }
        func superDecoder(forKey key: Key) throws -> any Decoder { throw Mismatch() }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let decoder: TreeDecoder
        let items: [Value]
        var currentIndex = 0
        var codingPath: [any CodingKey] { decoder.codingPath }
        var count: Int? { items.count }
        var isAtEnd: Bool { currentIndex >= items.count }

        mutating func next() throws -> TreeDecoder {
            guard !isAtEnd else { throw Mismatch() }
            defer { currentIndex += 1 }
            return decoder.child(items[currentIndex], AnyKey(intValue: currentIndex))
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd else { throw Mismatch() }
            if case .null = items[currentIndex] { currentIndex += 1; return true }
            return false
        }
        mutating func decode(_ t: Bool.Type) throws -> Bool { try next().decode(t) }
        mutating func decode(_ t: String.Type) throws -> String { try next().decode(t) }
        mutating func decode(_: Double.Type) throws -> Double { throw Mismatch() }
        mutating func decode(_: Float.Type) throws -> Float { throw Mismatch() }
        mutating func decode(_ t: Int.Type) throws -> Int { try next().decodeInteger(t) }
        mutating func decode(_ t: Int8.Type) throws -> Int8 { try next().decodeInteger(t) }
        mutating func decode(_ t: Int16.Type) throws -> Int16 { try next().decodeInteger(t) }
        mutating func decode(_ t: Int32.Type) throws -> Int32 { try next().decodeInteger(t) }
        mutating func decode(_ t: Int64.Type) throws -> Int64 { try next().decodeInteger(t) }
        mutating func decode(_ t: UInt.Type) throws -> UInt { try next().decodeInteger(t) }
        mutating func decode(_ t: UInt8.Type) throws -> UInt8 { try next().decodeInteger(t) }
        mutating func decode(_ t: UInt16.Type) throws -> UInt16 { try next().decodeInteger(t) }
        mutating func decode(_ t: UInt32.Type) throws -> UInt32 { try next().decodeInteger(t) }
        mutating func decode(_ t: UInt64.Type) throws -> UInt64 { try next().decodeInteger(t) }
        mutating func decode<T: Decodable>(_ t: T.Type) throws -> T { try next().decode(t) }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            try next().container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
        mutating func superDecoder() throws -> any Decoder { throw Mismatch() }
    }

    struct Single: SingleValueDecodingContainer {
        let decoder: TreeDecoder
        var codingPath: [any CodingKey] { decoder.codingPath }

        func decodeNil() -> Bool { decoder.decodeNil() }
        func decode(_ t: Bool.Type) throws -> Bool { try decoder.decode(t) }
        func decode(_ t: String.Type) throws -> String { try decoder.decode(t) }
        func decode(_: Double.Type) throws -> Double { throw Mismatch() }
        func decode(_: Float.Type) throws -> Float { throw Mismatch() }
        func decode(_ t: Int.Type) throws -> Int { try decoder.decodeInteger(t) }
        func decode(_ t: Int8.Type) throws -> Int8 { try decoder.decodeInteger(t) }
        func decode(_ t: Int16.Type) throws -> Int16 { try decoder.decodeInteger(t) }
        func decode(_ t: Int32.Type) throws -> Int32 { try decoder.decodeInteger(t) }
        func decode(_ t: Int64.Type) throws -> Int64 { try decoder.decodeInteger(t) }
        func decode(_ t: UInt.Type) throws -> UInt { try decoder.decodeInteger(t) }
        func decode(_ t: UInt8.Type) throws -> UInt8 { try decoder.decodeInteger(t) }
        func decode(_ t: UInt16.Type) throws -> UInt16 { try decoder.decodeInteger(t) }
        func decode(_ t: UInt32.Type) throws -> UInt32 { try decoder.decodeInteger(t) }
        func decode(_ t: UInt64.Type) throws -> UInt64 { try decoder.decodeInteger(t) }
        func decode<T: Decodable>(_ t: T.Type) throws -> T { try decoder.decode(t) }
    }
}
