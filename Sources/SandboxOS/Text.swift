import Glibc

// String work that Foundation's NSString API did and FoundationEssentials
// does not: trimming, scalar-level replacement and printf-style formatting.
// Each keeps the exact output the Foundation call had; tests compare them
// with Foundation.

extension Unicode.Scalar {
    /// A member of Foundation's `CharacterSet.whitespaces`: CoreFoundation's
    /// fixed list, which is general category Zs and the tab plus U+200B
    /// (ZERO WIDTH SPACE, a Zs in Unicode 3).
    public var isFoundationWhitespace: Bool {
        switch value {
        case 0x09, 0x20, 0xA0, 0x1680, 0x2000...0x200B, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// A member of Foundation's `CharacterSet.newlines`: U+000A to U+000D,
    /// NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR.
    public var isFoundationNewline: Bool {
        (0x0A...0x0D).contains(value) || value == 0x85 || value == 0x2028 || value == 0x2029
    }
}

extension StringProtocol {
    /// `trimmingCharacters(in: .whitespaces)`.
    public func trimmingWhitespace() -> String {
        trimmingScalars { $0.isFoundationWhitespace }
    }

    /// `trimmingCharacters(in: .whitespacesAndNewlines)`.
    public func trimmingWhitespaceAndNewlines() -> String {
        trimmingScalars { $0.isFoundationWhitespace || $0.isFoundationNewline }
    }

    /// Drops matching scalars from both ends. Foundation trims by scalar, not
    /// by Character: " \u{301}x" keeps its combining mark, "\r\n" goes whole.
    func trimmingScalars(where drop: (Unicode.Scalar) -> Bool) -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !drop($0) }),
              let last = scalars.lastIndex(where: { !drop($0) }) else { return "" }
        // A slice of self at scalar-aligned indices, not a rebuilt scalar
        // view: String.UnicodeScalarView(Slice<...>) is generic code that
        // instantiates its metadata at run time, a quarter of a million
        // instructions the first time (once in every `run`, for the config).
        return String(self[first...last])
    }

    /// `replacingOccurrences(of: String(target), with:)` for a single-scalar
    /// target. It matches by scalar as Foundation did, so "\n" inside a "\r\n"
    /// is replaced too; the stdlib's `replacing(_:with:)` compares Characters,
    /// and "\r\n" is one Character.
    public func replacingScalar(_ target: Unicode.Scalar, with replacement: String) -> String {
        var out = String.UnicodeScalarView()
        for s in unicodeScalars {
            if s == target { out.append(contentsOf: replacement.unicodeScalars) } else { out.append(s) }
        }
        return String(out)
    }
}

/// printf-style formatting that `String(format:)` did, one function per
/// conversion this tool uses, with byte-identical output.
public enum Format {
    /// `%.Nf`. Rounding a binary double to N decimals the way printf does
    /// (correctly rounded from the exact value, ties to even) is libc's job:
    /// String(format:) handed %f to snprintf too, so this calls vsnprintf.
    public static func fixed(_ value: Double, _ digits: Int) -> String {
        func render(_ buf: inout [CChar]) -> Int {
            withVaList([Int32(digits), value]) { Int(vsnprintf(&buf, buf.count, "%.*f", $0)) }
        }
        var buf = [CChar](repeating: 0, count: 64)
        let needed = render(&buf)
        if needed >= buf.count {
            buf = [CChar](repeating: 0, count: needed + 1)
            _ = render(&buf)
        }
        return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// `%0Nd`: zero-padded to `width` characters, the sign counted in it (printf: -5 -> "-5", "%03d" -> "-05").
    public static func zeroPadded(_ n: Int, _ width: Int) -> String {
        let digits = String(n.magnitude)
        let pad = String(repeating: "0", count: max(0, width - digits.count - (n < 0 ? 1 : 0)))
        return (n < 0 ? "-" : "") + pad + digits
    }

    /// `%0No` of a non-negative number.
    public static func octal<T: BinaryInteger>(_ n: T, width: Int) -> String {
        let digits = String(n, radix: 8)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// `%02x` of one byte.
    public static func hex(_ byte: UInt8) -> String {
        let digits = "0123456789abcdef".utf8
        let hi = digits[digits.index(digits.startIndex, offsetBy: Int(byte >> 4))]
        let lo = digits[digits.index(digits.startIndex, offsetBy: Int(byte & 0xf))]
        return String(decoding: [hi, lo], as: UTF8.self)
    }

    /// Lower-case hex of every byte, as `map { String(format: "%02x", $0) }.joined()`.
    public static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        bytes.map(hex).joined()
    }
}

extension Array where Element == UInt8 {
    /// Offset of the first occurrence of `needle`'s UTF-8 in these bytes: a
    /// plain byte search, for the checks that must see what git sees.
    package func firstOffset(of needle: String) -> Int? {
        let n = Array(needle.utf8)
        guard !n.isEmpty, n.count <= count else { return n.isEmpty ? 0 : nil }
        for i in 0...(count - n.count) where self[i] == n[0] && self[i..<(i + n.count)].elementsEqual(n) { return i }
        return nil
    }
}

extension Format {
    /// Bytes `escape` leaves as they are and that need no check: printable ASCII, no backslash.
    public static func isPlain(_ bytes: [UInt8]) -> Bool {
        !bytes.contains { $0 < 0x20 || $0 >= 0x7f || $0 == UInt8(ascii: "\\") }
    }

    /// A path (or a line of a log) for humans and JSON: valid UTF-8 stays; control characters,
    /// backslashes and bytes that are not UTF-8 become escapes (`\n`, `\xff`),
    /// so a name with a newline cannot forge an extra output line.
    public static func escape(_ bytes: [UInt8]) -> String {
        // Most names are printable ASCII without a backslash: nothing to escape.
        if isPlain(bytes) { return String(decoding: bytes, as: UTF8.self) }
        var out = ""
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\\") { out += "\\\\"; i += 1; continue }
            if b == 10 { out += "\\n"; i += 1; continue }
            if b == 9 { out += "\\t"; i += 1; continue }
            if b < 0x20 || b == 0x7f { out += "\\x" + Format.hex(b); i += 1; continue }
            if b < 0x80 { out.unicodeScalars.append(Unicode.Scalar(b)); i += 1; continue }
            // A multi-byte sequence: keep it when it decodes, else escape one byte.
            // C1 controls (U+0080-U+009F, e.g. U+009B, a one-character CSI on
            // some terminals) are escaped like C0 ones.
            let len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1
            if b == 0xc2, i + 1 < bytes.count, bytes[i + 1] < 0xa0 { out += "\\x" + Format.hex(b); i += 1; continue }
            if len > 1, i + len <= bytes.count, let s = String(validating: bytes[i..<(i + len)], as: UTF8.self) {
                out += s
                i += len
            } else {
                out += "\\x" + Format.hex(b)
                i += 1
            }
        }
        return out
    }
}
