import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS

/// What an older kernel's missing system calls do, shown on this one:
/// COMFY_SANDBOX_WITHOUT_SYSCALLS makes the binary (and all it starts) get
/// ENOSYS for the named calls, as on Linux 6.1 (no fchmodat2) or before 5.6
/// (no openat2). `make test-kernels` runs the same suites on real old kernels.
@Suite("older kernels: missing system calls (simulated with seccomp ENOSYS)", .requiresRoot, .serialized)
struct OlderKernelSyscallTests {
    static func without(_ calls: String) -> [String: String] { [Kernel.withoutSyscallsVariable: calls] }

    func stat(_ path: String) -> (mode: mode_t, gid: gid_t)? {
        var st = Glibc.stat()
        return lstat(path, &st) == 0 ? (st.st_mode & 0o7777, st.st_gid) : nil
    }

    @Test("the knob works: fchmodat2 answers ENOSYS inside, and `status` names what the kernel lacks")
    func knobWorks() throws {
        let w = try World.provisioned("oldk-knob")
        let probe = try w.run([World.binary, "__internal", "kernel-probe"], environment: Self.without("fchmodat2,openat2"))
        #expect(probe.stdoutText.contains("openat2: missing") && probe.stdoutText.contains("fchmodat2: missing"), "\(probe.stdoutText) \(probe.stderrText)")
        let plain = try w.run([World.binary, "__internal", "kernel-probe"])
        #expect(plain.stdoutText.contains("openat2: present"), "\(plain.stdoutText)")
        let st = try w.comfy(["status"], environment: Self.without("fchmodat2"))
        #expect(st.stdoutText.contains("fchmodat2 no (Linux 6.6+)"), "\(st.stdoutText)")
    }

    @Test("without fchmodat2 (before 6.6) fix-permissions still sets every mode, through /proc/self/fd",
          arguments: ["fchmodat2", ""])
    func fixPermissionsWithoutFchmodat2(_ missing: String) throws {
        let w = try World.provisioned("oldk-chmod")
        let input = w.sharePath("input"), models = w.sharePath("models")
        try #require(try w.asSandbox("touch '\(input)/mine' && chmod 600 '\(input)/mine' && mkdir '\(input)/d' && chmod 700 '\(input)/d'").succeeded)
        // alice moves in files with her own group and private modes (mv keeps both).
        try #require(try w.asUser("alice", """
            umask 077 && cd '\(w.home)/alice' && echo x > moved && echo y > weights && chmod 660 weights && \
            mv moved '\(input)/moved' && mv weights '\(models)/weights.safetensors'
            """).succeeded)
        let r = try w.run([World.binary, "fix-permissions", "--json"],
                          environment: ["COMFY_SANDBOX_CONFIG": w.configPath].merging(missing.isEmpty ? [:] : Self.without(missing)) { a, _ in a })
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(!r.stdoutText.contains("cannot change its mode"), "\(r.stdoutText)")
        let gid = try #require(w.gid(World.group))
        #expect(stat("\(input)/mine")?.mode == 0o664)
        #expect(stat("\(input)/moved").map { $0.mode == 0o664 && $0.gid == gid } == true, "\(String(describing: stat("\(input)/moved")))")
        #expect(stat("\(input)/d")?.mode == 0o2775)
        #expect(stat("\(models)/weights.safetensors").map { $0.mode == 0o644 && $0.gid == gid } == true)
    }

    @Test("the mode is lowered before the group changes: a chgrp that fails leaves the 0660 file 0640, never the group's to write",
          arguments: ["fchownat", "fchownat,fchmodat2"])
    func modeLoweredFirst(_ missing: String) throws {
        let w = try World.provisioned("oldk-order")
        let models = w.sharePath("models")
        try #require(try w.asUser("alice", "cd '\(w.home)/alice' && echo y > w && chmod 660 w && mv w '\(models)/w.safetensors'").succeeded)
        let alice = try #require(w.gid("alice"))
        // With chown gone the group change fails; what happened before it stays visible.
        let r = try w.run([World.binary, "fix-permissions", "--json", "models"],
                          environment: ["COMFY_SANDBOX_CONFIG": w.configPath].merging(Self.without(missing)) { a, _ in a })
        #expect(r.stdoutText.contains("cannot change its group"), "\(r.stdoutText) \(r.stderrText)")
        let after = try #require(stat("\(models)/w.safetensors"))
        #expect(after.gid == alice, "the group did not change")
        #expect(after.mode == 0o640, "lowered to what 0660 and 0644 both allow before the chgrp: \(String(after.mode, radix: 8))")
    }

    @Test("without openat2 (before 5.6) fix-permissions refuses, naming the call and the kernel that has it; nothing changes")
    func fixPermissionsWithoutOpenat2() throws {
        let w = try World.provisioned("oldk-openat2")
        let input = w.sharePath("input")
        try #require(try w.asSandbox("touch '\(input)/mine' && chmod 600 '\(input)/mine'").succeeded)
        let r = try w.run([World.binary, "fix-permissions"], environment: ["COMFY_SANDBOX_CONFIG": w.configPath].merging(Self.without("openat2")) { a, _ in a })
        #expect(r.status == 1)
        #expect(r.stderrText.contains("has no openat2(2)") && r.stderrText.contains("Linux 5.6 or later"), "\(r.stderrText)")
        #expect(!r.stderrText.contains("Function not implemented"), "\(r.stderrText)")
        #expect(stat("\(input)/mine")?.mode == 0o600, "nothing was changed")
        // provision's tree area walks the same way and says the same.
        let p = try w.run([World.binary] + World.provisionFoundation, environment: ["COMFY_SANDBOX_CONFIG": w.configPath].merging(Self.without("openat2")) { a, _ in a })
        #expect(p.status == 1 && p.stderrText.contains("has no openat2(2)"), "\(p.stdoutText) \(p.stderrText)")
    }

    @Test("without fchmodat2 a model linked from the Hugging Face cache still becomes 0644")
    func modelLinkWithoutFchmodat2() throws {
        let w = try World.provisioned("oldk-models")
        let cache = "\(w.home)/alice/hf"
        let commit = String(repeating: "a", count: 40)
        let repo = "\(cache)/models--org--m"
        try #require(try w.asUser("alice", """
            set -e
            mkdir -p '\(repo)/blobs' '\(repo)/snapshots/\(commit)' '\(repo)/refs'
            echo weights > '\(repo)/blobs/b1' && chmod 664 '\(repo)/blobs/b1'
            ln -s ../../blobs/b1 '\(repo)/snapshots/\(commit)/m.safetensors'
            printf '\(commit)' > '\(repo)/refs/main'
            """).succeeded)
        var config = w.defaultConfig()
        config["models"] = ["hf_cache": cache, "links": [["repo": "org/m", "file": "m.safetensors", "dir": "checkpoints"]]]
        try w.writeConfig(config)
        let r = try w.run([World.binary, "provision", "--only", "tree,models"],
                          environment: ["COMFY_SANDBOX_CONFIG": w.configPath].merging(Self.without("fchmodat2")) { a, _ in a })
        #expect(r.status == 0, "\(r.stdoutText) \(r.stderrText)")
        #expect(stat("\(w.sharePath("models"))/checkpoints/m.safetensors")?.mode == 0o644, "\(r.stdoutText) \(r.stderrText)")
        #expect(stat("\(repo)/blobs/b1")?.mode == 0o644, "the same inode")
    }
}
