import Foundation
import Testing
import SandboxOS

/// Root changes owners and modes only through descriptors: a path rebuilt
/// and handed to chmod/chown follows whatever link sits there by then, and
/// mkdtemp followed by open(path) reopens a name. This reads the sources and
/// fails on any such call, so one cannot come back unnoticed.
@Suite("privileged code changes files only through descriptors")
struct PrivilegedCallsTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources")

    /// The inside of check-sandbox runs as the sandbox user, confined: its
    /// chmod of a file it just wrote is no privileged change.
    static let unprivileged: Set<String> = ["SandboxCheck/CheckSandbox.swift"]

    @Test("no chmod, chown, lchown or mkdtemp by path in Sources (the sandbox-side check excepted)")
    func noPathCalls() throws {
        let root = Self.sources.path
        let files = try #require(FileManager.default.enumerator(atPath: root)).compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        #expect(files.count > 50, "found the sources at \(root)")
        // Glibc's calls, bare. `SafeFS.chmod(fd, ...)` and its siblings are
        // qualified, declared with `func`, or called with `try` (they throw).
        let pattern = try Regex(#"(^|[^A-Za-z0-9_. ]|[^y] |^ *)(chmod|chown|lchown|mkdtemp)\("#)
        var found: [String] = []
        for file in files where !Self.unprivileged.contains(file) {
            let text = try String(contentsOfFile: root + "/" + file, encoding: .utf8)
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                if code.contains(pattern) && !code.contains("func ") { found.append("\(file):\(n + 1): \(line.trimmingCharacters(in: .whitespaces))") }
            }
        }
        #expect(found.isEmpty, "by-path calls:\n\(found.joined(separator: "\n"))")
    }
}
