import CSandbox
import Foundation
import SandboxCore
import Testing
import SandboxOS

/// The fork-time privilege drop, checked from inside the child it made.
@Suite("privilege drop", .serialized)
struct PrivilegeDropTests {
    static let nobody: (uid_t, gid_t) = (65534, 65534)

    /// Runs a shell snippet as nobody under `confinement` and returns its stdout.
    func inside(_ script: String, _ confinement: Confinement) throws -> HostCommand.Result {
        try HostCommand("/bin/sh", ["-c", script]).run(confinement: confinement)
    }

    @Test("all five capability sets are zero, all 64 bits", .requiresRoot)
    func capabilitiesGone() throws {
        let c = Confinement(uid: Self.nobody.0, gid: Self.nobody.1, groups: [Self.nobody.1])
        let r = try inside("grep -E '^(Cap|NoNewPrivs|Uid|Gid|Groups)' /proc/self/status", c)
        #expect(r.succeeded, "\(r.stderrText)")
        let lines = Dictionary(uniqueKeysWithValues: r.stdoutText.split(separator: "\n").map { line -> (String, String) in
            let parts = line.split(separator: ":", maxSplits: 1)
            return (String(parts[0]), parts[1].trimmingCharacters(in: .whitespaces))
        })
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            #expect(lines[set] == "0000000000000000", "\(set) = \(lines[set] ?? "missing")")
        }
        #expect(lines["NoNewPrivs"] == "1")
        #expect(lines["Uid"]?.split(separator: "\t").allSatisfy { $0 == "65534" } == true)
        #expect(lines["Gid"]?.split(separator: "\t").allSatisfy { $0 == "65534" } == true)
        #expect(lines["Groups"] == "65534")
    }

    @Test("no fd of the parent leaks into the child", .requiresRoot)
    func noLeakedDescriptors() throws {
        let leak = open("/etc/hostname", O_RDONLY)   // deliberately not CLOEXEC
        defer { close(leak) }
        let c = Confinement(uid: Self.nobody.0, gid: Self.nobody.1, groups: [])
        let r = try inside("ls /proc/self/fd", c)
        let fds = r.stdoutText.split(separator: "\n").compactMap { Int($0) }.filter { $0 > 2 }
        // ls itself opens one fd for the directory it lists.
        #expect(fds.count <= 1, "fds beyond 0-2: \(fds)")
    }

    @Test("a failing step is reported by name", .requiresRoot)
    func failingStepNamed() throws {
        let c = Confinement(uid: Self.nobody.0, gid: Self.nobody.1, groups: [])
        #expect(throws: SandboxError.self) {
            try HostCommand("/nonexistent/program", []).run(confinement: c)
        }
        do {
            try HostCommand("/nonexistent/program", []).run(confinement: c)
        } catch let e as SandboxError {
            #expect(e.message.contains("execve"))
        }
    }
}
