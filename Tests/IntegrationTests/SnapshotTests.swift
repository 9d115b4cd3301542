import Foundation
import SandboxCore
import Testing

/// import-snapshot and export-snapshot through the real binary, on the
/// fixtures in the Manager's format (Tests/SandboxCoreTests/Fixtures).
enum SnapshotCLI {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("SandboxCoreTests/Fixtures")
    static var classic: String { fixtures.appendingPathComponent("2025-03-14_18-22-05_snapshot.json").path }
    static var yaml: String { fixtures.appendingPathComponent("2025-06-02_09-41-37_snapshot.yaml").path }
    static var hostile: String { fixtures.appendingPathComponent("hostile_snapshot.json").path }
    static var exampleConfig: String {
        fixtures.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/comfy-sandbox.json").path
    }

    static func scratch() throws -> String {
        var template = Array("/tmp/cs-snapcli-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SandboxError.failure("mkdtemp") }
        let d = String(cString: p)
        try FileManager.default.copyItem(atPath: exampleConfig, toPath: d + "/config.json")
        return d
    }

    @discardableResult
    static func run(_ args: [String]) throws -> HostCommand.Result {
        try HostCommand(World.binary, args).run()
    }
}

@Suite("import-snapshot, the command")
struct ImportSnapshotCommandTests {
    @Test("without --write it prints the diff, exits 0 and writes nothing; with --write it saves the config and the pins")
    func previewThenWrite() throws {
        let d = try SnapshotCLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let before = try Data(contentsOf: URL(fileURLWithPath: d + "/config.json"))
        let r = try SnapshotCLI.run(["import-snapshot", SnapshotCLI.classic, "--config", d + "/config.json"])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("  + custom_nodes[0] ComfyUI-Impact-Pack: repo https://github.com/ltdrdata/ComfyUI-Impact-Pack rev 9c4fbb7c40f3a1b2d8e6f5a4c3b2a1908f7e6d5c"))
        #expect(r.stdoutText.contains("nothing written; to save it: comfy-sandbox import-snapshot \(SnapshotCLI.classic) --write \(d)/config.json"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/config.json")) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: d) == ["config.json"])

        // --config before the command's name, as the Makefile passes it.
        let w = try SnapshotCLI.run(["--config", d + "/config.json", "import-snapshot", SnapshotCLI.yaml, "--write", d + "/config.json"])
        #expect(w.status == 0, "\(w.stderrText)")
        #expect(w.stdoutText.contains("wrote \(d)/config.json"))
        #expect(w.stdoutText.contains("wrote \(d)/comfyui-snapshot-requirements.txt (5 pins)"))
        let c = try ConfigLoader.load(path: d + "/config.json", environment: [:])
        #expect(c.customNodes.map(\.name) == ["ComfyUI-GGUF", "ComfyUI-Custom-Scripts", "rgthree-comfy"])
        #expect(c.comfyui.rev == "6d9f3e1b2a4c5d7e8f90a1b2c3d4e5f6a7b8c9d0")
    }

    @Test("--json is the same plan for scripts")
    func json() throws {
        let d = try SnapshotCLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let r = try SnapshotCLI.run(["import-snapshot", SnapshotCLI.classic, "--config", d + "/config.json", "--json"])
        #expect(r.status == 0, "\(r.stderrText)")
        let obj = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        let nodes = try #require(obj["nodes"] as? [[String: Any]])
        #expect(nodes.filter { $0["action"] as? String == "add" }.count == 5)
        #expect((obj["comfyui_rev"] as? [String: String])?["to"] == "e00d22ab1f04f8d9f25cb4a70a2d09d9d0f3a6b6")
        #expect((obj["requirements"] as? [String])?.count == 10)
        #expect((obj["registry_nodes"] as? [Any])?.count == 2)
    }

    @Test("a hostile snapshot exits 65 naming each key path; the config is untouched")
    func hostile() throws {
        let d = try SnapshotCLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let before = try Data(contentsOf: URL(fileURLWithPath: d + "/config.json"))
        let r = try SnapshotCLI.run(["import-snapshot", SnapshotCLI.hostile, "--config", d + "/config.json", "--write", d + "/config.json"])
        #expect(r.status == 65)
        #expect(r.stdout.isEmpty)
        #expect(r.stderrText.contains(#"git_custom_nodes["file:///home/alice/.ssh"]"#))
        #expect(r.stderrText.contains(#"git_custom_nodes["ext::sh -c touch% /tmp/pwned"]"#))
        #expect(r.stderrText.contains(#"git_custom_nodes["https://evil.example/x/.."]"#))
        #expect(r.stderrText.contains(#"git_custom_nodes["https://github.com/kijai/ComfyUI-KJNodes"].hash"#))
        #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/config.json")) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: d) == ["config.json"])
    }

    @Test("usage: no snapshot is 64; a missing snapshot is 65 naming it")
    func usage() throws {
        #expect(try SnapshotCLI.run(["import-snapshot"]).status == 64)
        let d = try SnapshotCLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let r = try SnapshotCLI.run(["import-snapshot", d + "/nope.json", "--config", d + "/config.json"])
        #expect(r.status == 65)
        #expect(r.stderrText.contains("\(d)/nope.json: cannot read the snapshot"))
    }
}
