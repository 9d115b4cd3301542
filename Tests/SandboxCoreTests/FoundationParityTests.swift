import Foundation
import SandboxCore
import Testing
import SandboxOS

/// SandboxCore links only FoundationEssentials; these helpers replace the
/// Foundation calls it used to make. The tests still have Foundation, so
/// each helper is checked against the call it replaced.
@Suite("Foundation parity")
struct FoundationParityTests {
    static let paths = ["", "/", "/a", "/a/", "//a", "/a/b", "/a/b/", "/a//b//", "a/b", "a//b", "ab", "ab/",
                        "./x", "../x", "x/.", "/opt/ComfyUI", "/opt/ComfyUI/", "relative/dir/", "/é/ü", "/a b/c d"]

    /// Paths go over swift-system's FilePath, which reads them as the kernel
    /// does; on every path this tool makes or is given that is what NSString
    /// said.
    @Test("lastComponent and deletingLastComponent agree with NSString", arguments: paths)
    func pathComponents(_ path: String) {
        #expect(Paths.lastComponent(path) == (path as NSString).lastPathComponent)
        #expect(Paths.deletingLastComponent(path) == (path as NSString).deletingLastPathComponent)
    }

    /// Where NSString is not the kernel: it compares Characters, so a "/"
    /// carrying a combining mark was no separator to it, though open(2)
    /// splits there; and it made "//" and "///" empty, which the kernel reads as "/".
    @Test("bytes, not Characters: the kernel's reading where NSString differs")
    func kernelReading() {
        #expect(Paths.lastComponent("a/\u{301}b") == "\u{301}b")
        #expect(Paths.deletingLastComponent("a/\u{301}b") == "a")
        #expect(Paths.lastComponent("//") == "/")
        #expect(Paths.deletingLastComponent("//") == "/")
        #expect(Paths.lastComponent("///") == "/")
    }

    /// corelibs' NSString traps in deletingLastPathComponent when the path is
    /// one character after slash fixing ("a", "a/"): its precondition wants
    /// two. The helper gives what NSString gives for "ab": no parent.
    @Test("a one-character relative name has the parent \"\"", arguments: ["a", "a/", "a//", ".", "é"])
    func singleCharacterName(_ path: String) {
        #expect(Paths.deletingLastComponent(path) == "")
        #expect(Paths.lastComponent(path) == (path as NSString).lastPathComponent)
    }

    @Test("the whitespace and newline scalars are CharacterSet's")
    func characterSets() {
        for v in UInt32(0)...0x10FFFF {
            guard let u = Unicode.Scalar(v) else { continue }
            if u.isFoundationWhitespace != CharacterSet.whitespaces.contains(u) { Issue.record("whitespace U+\(String(v, radix: 16))") }
            if u.isFoundationNewline != CharacterSet.newlines.contains(u) { Issue.record("newline U+\(String(v, radix: 16))") }
        }
    }

    @Test("trimming agrees with trimmingCharacters(in:)",
          arguments: ["", " ", " \t\n ", "a", " a b ", "\r\n x \r\n", " \u{301}a\u{301} ", "\u{200B}a\u{2028}", "\u{A0}x\u{3000}", "\u{85}y\u{85}"])
    func trimming(_ s: String) {
        #expect(s.trimmingWhitespace() == s.trimmingCharacters(in: .whitespaces))
        #expect(s.trimmingWhitespaceAndNewlines() == s.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test("replacingScalar agrees with replacingOccurrences(of:with:)",
          arguments: ["", "a", "a\nb", "a\r\nb\n", "\n\n", "x\u{2028}y"])
    func replacingNewlines(_ s: String) {
        #expect(s.replacingScalar("\n", with: "\\n") == s.replacingOccurrences(of: "\n", with: "\\n"))
    }

    @Test("Format agrees with String(format:)")
    func formats() {
        var values: [Double] = [0, -0.0, 0.005, 0.015, 0.125, 0.375, 1.005, 2.675, 9.995, 99.95, 1023.95, 123456.789, 1e20, 1e300, -3.14159,
                                .nan, .infinity, -.infinity]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 { values.append(Double.random(in: -1e6...1e6, using: &rng)) }
        for v in values {
            for digits in 1...3 {
                #expect(Format.fixed(v, digits) == String(format: "%.\(digits)f", v), "\(v) to \(digits)")
            }
        }
        for n in -4000...4000 {
            #expect(Format.zeroPadded(n, 2) == String(format: "%02d", n))
        }
        for b in UInt8.min...UInt8.max {
            #expect(Format.hex(b) == String(format: "%02x", b))
        }
        #expect(Format.hex([0x00, 0x7f, 0xff]) == "007fff")
        for mode in stride(from: mode_t(0), through: 0o7777, by: 7) {
            #expect(Format.octal(mode, width: 4) == String(format: "%04o", mode))
        }
    }

    @Test("Timestamp writes what ISO8601DateFormatter wrote in UTC")
    func timestamps() {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        f.timeZone = TimeZone(identifier: "UTC")
        var dates = [Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: -1.5), Date(timeIntervalSince1970: 951_782_400.999),
                     Date(timeIntervalSince1970: 4_102_444_799.9999), Date()]
        for _ in 0..<500 { dates.append(Date(timeIntervalSince1970: Double.random(in: -2e9...5e9))) }
        for d in dates {
            #expect(Timestamp.format(d) == f.string(from: d), "\(d.timeIntervalSince1970)")
        }
    }
}
