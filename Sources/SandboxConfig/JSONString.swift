import SandboxOS

/// A JSON string literal, read once for both JSON readers: the config's
/// fast path (ConfigJSON, which hands anything it does not take to
/// JSONDecoder) and the order-keeping Document parser of import-snapshot,
/// which names what is wrong. RFC 8259: the two-character escapes, \u with
/// surrogate pairs, no raw control character, valid UTF-8.
package enum JSONString {
    package enum Problem: Error, Equatable {
        case controlCharacter(UInt8)
        case unknownEscape(UInt8)
        case shortHex
        case halfSurrogate
        case notCharacter
        case invalidUTF8
        case unclosed

        package var description: String {
            switch self {
            case .controlCharacter(let b): "a control character (0x\(Format.hex(b))) inside a string; it must be escaped"
            case .unknownEscape(let e): "unknown escape \\\(String(decoding: [e], as: UTF8.self)) in a string"
            case .shortHex: "a \\u escape needs four hex digits"
            case .halfSurrogate: "a \\u escape holds half of a surrogate pair"
            case .notCharacter: "a \\u escape is not a character"
            case .invalidUTF8: "a string is not valid UTF-8"
            case .unclosed: "a string is not closed"
            }
        }
    }

    /// The string whose opening quote is at `i`; `i` ends past its closing quote.
    package static func scan(_ bytes: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> Result<String, Problem> {
        i += 1
        let start = i
        // Most strings have no escape: they are a slice of the input, and
        // ASCII needs no validation (String(validating:) is generic, and its
        // first use in a process costs witness-table lookups on `run`).
        var out: [UInt8] = []
        var plain = true
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                let raw = plain ? Array(UnsafeBufferPointer(rebasing: bytes[start..<i])) : out
                i += 1
                if !raw.contains(where: { $0 >= 0x80 }) { return .success(String(decoding: raw, as: UTF8.self)) }
                guard let s = String(validating: raw, as: UTF8.self) else { return .failure(.invalidUTF8) }
                return .success(s)
            }
            if b < 0x20 { return .failure(.controlCharacter(b)) }
            guard b == UInt8(ascii: "\\") else {
                if !plain { out.append(b) }
                i += 1
                continue
            }
            if plain { out = Array(UnsafeBufferPointer(rebasing: bytes[start..<i])); plain = false }
            guard i + 1 < bytes.count else { break }
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                guard var code = hex4(bytes, &i) else { return .failure(.shortHex) }
                if (0xD800...0xDBFF).contains(code) {
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                        return .failure(.halfSurrogate)
                    }
                    i += 2
                    guard let low = hex4(bytes, &i) else { return .failure(.shortHex) }
                    guard (0xDC00...0xDFFF).contains(low) else { return .failure(.halfSurrogate) }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(code) {
                    return .failure(.halfSurrogate)
                }
                guard let scalar = Unicode.Scalar(code) else { return .failure(.notCharacter) }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                return .failure(.unknownEscape(e))
            }
        }
        return .failure(.unclosed)
    }

    private static func hex4(_ bytes: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> UInt32? {
        guard i + 4 <= bytes.count else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            guard let d = hexValue(bytes[i + k]) else { return nil }
            v = v << 4 | d
        }
        i += 4
        return v
    }
}

/// The value of one hex digit.
package func hexValue(_ b: UInt8) -> UInt32? {
    switch b {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(b - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(b - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(b - UInt8(ascii: "A") + 10)
    default: nil
    }
}
