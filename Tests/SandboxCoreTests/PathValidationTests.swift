import Testing
@testable import SandboxCore
@testable import SandboxOS
@testable import SandboxConfig

/// The byte-level path checks must say exactly what the split-based
/// definitions say: every string over {/, ., .., a, NUL} up to 6 characters.
@Suite struct PathValidationTests {
    static func referenceAbsolute(_ p: String) -> Bool {
        guard p.hasPrefix("/") else { return false }
        if p == "/" { return true }
        let parts = p.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        return !parts.contains { $0.isEmpty || $0 == "." || $0 == ".." } && !p.unicodeScalars.contains("\0")
    }

    static func referenceRelative(_ p: String) -> Bool {
        guard !p.isEmpty, !p.hasPrefix("/"), !p.unicodeScalars.contains("\0") else { return false }
        return !p.split(separator: "/", omittingEmptySubsequences: false).contains { $0.isEmpty || $0 == "." || $0 == ".." }
    }

    static var all: [String] {
        let alphabet = ["/", ".", "a", "\0"]
        var out = [""], layer = [""]
        for _ in 1...6 {
            layer = layer.flatMap { s in alphabet.map { s + $0 } }
            out += layer
        }
        return out + ["/usr/lib", "/a/./b", "/a/../b", "/a//b", "/a/", "a/b", "./a", "a/..", "/..a", "/a..", "/.hidden", "é/ß"]
    }

    @Test func sameAsTheDefinitions() {
        for p in Self.all {
            #expect(ConfigValidator.isNormalizedAbsolute(p) == Self.referenceAbsolute(p), "absolute \(p.debugDescription)")
            #expect(ConfigValidator.isSafeRelative(p) == Self.referenceRelative(p), "relative \(p.debugDescription)")
        }
    }
}
