import Foundation
import SandboxCore
import Testing
import SandboxOS
@testable import SandboxConfig

@Suite("record-models / verify-models through the binary", .serialized)
struct ModelsIntegrationTests {
    @Test("record, verify clean (0), flip a byte and restore the mtime with touch -d, verify reports it (3)", .requiresRoot)
    func recordVerifyTamper() throws {
        let world = try World("models")
        try world.addPrimaryUser()
        try world.writeConfig(world.defaultConfig())
        let share = "\(world.home)/alice/workspace/ai/models"
        let r0 = try world.sh("""
            mkdir -p \(share)/checkpoints \(share)/vae && \
            head -c 2000000 /dev/urandom > \(share)/checkpoints/a.safetensors && \
            echo vae > \(share)/vae/b.safetensors && sleep 0.05
            """)
        #expect(r0.succeeded)

        let rec = try world.comfy(["record-models"])
        #expect(rec.status == 0, "\(rec.stderrText)")
        #expect(rec.stdoutText.contains("recorded 2 files"))
        var st = stat()
        #expect(lstat("\(world.state)/models.manifest.json", &st) == 0)
        #expect(st.st_uid == 0 && st.st_mode & 0o7777 == 0o644)

        let clean = try world.comfy(["verify-models"])
        #expect(clean.status == 0, "\(clean.stdoutText)\(clean.stderrText)")
        #expect(clean.stdoutText.contains("ok: 2 files"))
        #expect(clean.stdoutText.contains("2 trusted by stat, 0 read"))

        let f = "\(share)/checkpoints/a.safetensors"
        let tamper = try world.sh("""
            sleep 0.02; old="$(stat -c %y \(f))"; \
            printf '\\377' | dd of=\(f) bs=1 seek=4096 conv=notrunc status=none && \
            touch -d "$old" \(f) && test "$(stat -c %y \(f))" = "$old"
            """)
        #expect(tamper.succeeded, "\(tamper.stderrText)")

        let bad = try world.comfy(["verify-models"])
        #expect(bad.status == 3, "\(bad.stdoutText)\(bad.stderrText)")
        #expect(bad.stdoutText.contains("changed: checkpoints/a.safetensors: content differs from the manifest; its mtime was left unchanged"))
        #expect(bad.stdoutText.contains("PROBLEM"))

        let json = try world.comfy(["verify-models", "--json", "--rehash"])
        #expect(json.status == 3)
        let obj = try JSONSerialization.jsonObject(with: json.stdout) as? [String: Any]
        #expect(obj?["ok"] as? Bool == false)
        #expect(obj?["files_read"] as? Int == 2)
        #expect((obj?["changed"] as? [[String: Any]])?.first?["path"] as? String == "checkpoints/a.safetensors")

        let last = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(world.state)/models.verify.json"))) as? [String: Any]
        #expect(last?["ok"] as? Bool == false)
        #expect(last?["changed"] as? Int == 1)
        let items = ModelsStatus.items(try ConfigLoader.load(path: world.configPath))
        #expect(items.contains { $0.key == "last verified" && !$0.ok })

        // Recording again accepts the new content; verify is clean again.
        #expect(try world.comfy(["record-models"]).status == 0)
        #expect(try world.comfy(["verify-models"]).status == 0)
    }

    @Test("verify-models without a manifest says to record first (exit 1)", .requiresRoot)
    func noManifest() throws {
        let world = try World("models")
        try world.addPrimaryUser()
        try world.writeConfig(world.defaultConfig())
        try world.sh("mkdir -p \(world.home)/alice/workspace/ai/models")
        let r = try world.comfy(["verify-models"])
        #expect(r.status == 1)
        #expect(r.stderrText.contains("record-models"))
    }
}
