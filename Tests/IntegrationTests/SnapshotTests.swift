import Foundation
import SandboxCore
import Testing
import SandboxOS
@testable import SandboxConfig

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

@Suite("export-snapshot", .serialized)
struct ExportSnapshotTests {
    /// A config under `d` (state, ComfyUI, venv, shares all inside it) with `nodes`.
    static func config(_ d: String, nodes: [[String: Any]]) throws -> String {
        let c: [String: Any] = [
            "primary_user": "alice",
            "state_dir": d + "/state",
            "comfyui": ["path": d + "/opt/ComfyUI", "install_requirements": false],
            "shares": [["name": "models", "path": d + "/models", "access": "read-only"]],
            "custom_nodes": nodes,
        ]
        let path = d + "/config.json"
        try JSONSerialization.data(withJSONObject: c, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func record(_ name: String, _ url: String, _ sha: String, _ status: CheckoutRecord.Status) -> CheckoutRecord {
        CheckoutRecord(name: name, repoURL: url, currentSHA: sha, previousSHA: nil, installedAt: "2026-11-29T10:00:00Z",
                       updatedAt: "2026-11-29T10:00:00Z", status: status, history: [.init(sha: sha, at: "2026-11-29T10:00:00Z", action: "install")])
    }

    @Test("from records written by the record code: commits, disabled, the sealed install's pips; import gives the same pins back", .requiresRoot)
    func recordsRoundTrip() throws {
        let d = try SnapshotCLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let a = String(repeating: "a1", count: 20), b = String(repeating: "b2", count: 20), c = String(repeating: "c3", count: 20)
        let comfy = String(repeating: "d4", count: 20)
        let nodes: [[String: Any]] = [
            ["name": "ComfyUI-Impact-Pack", "repo": "https://github.com/ltdrdata/ComfyUI-Impact-Pack.git", "rev": "main"],
            ["name": "was", "repo": "https://github.com/WASasquatch/was-node-suite-comfyui", "rev": "main", "enabled": false, "writable": true],
            ["name": "rgthree-comfy", "repo": "https://github.com/rgthree/rgthree-comfy", "rev": "v1.0.0"],
            ["name": "not-installed", "repo": "https://github.com/example/not-installed", "rev": "main"],
        ]
        let configPath = try Self.config(d, nodes: nodes)
        try RecordStore.write(Self.record("ComfyUI", "https://github.com/comfyanonymous/ComfyUI.git", comfy, .installed), to: d + "/state/comfyui.json")
        try RecordStore.write(Self.record("ComfyUI-Impact-Pack", "https://github.com/ltdrdata/ComfyUI-Impact-Pack.git", a, .updated), to: d + "/state/nodes/ComfyUI-Impact-Pack.json")
        try RecordStore.write(Self.record("was", "https://github.com/WASasquatch/was-node-suite-comfyui", b, .disabled), to: d + "/state/nodes/was.json")
        try RecordStore.write(Self.record("rgthree-comfy", "https://github.com/rgthree/rgthree-comfy", c, .rolledBack), to: d + "/state/nodes/rgthree-comfy.json")
        // A sealed requirements install, as PythonEnv leaves it.
        let sealed = d + "/opt/venv/cs-requirements/0123456789abcdef01234567"
        let site = d + "/opt/venv/lib/python3.11/site-packages"
        try World.sh("""
        mkdir -p \(site) \(sealed)/numpy-1.26.4.dist-info \(sealed)/pillow-11.1.0.dist-info \(sealed)/segment_anything-1.0.dist-info \(sealed)/numpy
        printf 'Metadata-Version: 2.1\\nName: numpy\\nVersion: 1.26.4\\n\\nName: not-this\\n' > \(sealed)/numpy-1.26.4.dist-info/METADATA
        printf 'Metadata-Version: 2.1\\nName: Pillow\\nVersion: 11.1.0\\n' > \(sealed)/pillow-11.1.0.dist-info/METADATA
        printf 'Metadata-Version: 2.1\\nName: segment_anything\\nVersion: 1.0\\n' > \(sealed)/segment_anything-1.0.dist-info/METADATA
        printf '{"url": "https://github.com/facebookresearch/segment-anything.git", "vcs_info": {"vcs": "git", "commit_id": "dca509fe793f601edb92606367a655c15ac00fdf"}}' > \(sealed)/segment_anything-1.0.dist-info/direct_url.json
        echo \(sealed) > \(site)/comfy-sandbox-requirements.pth
        """)

        let out = d + "/exported.json"
        let r = try SnapshotCLI.run(["export-snapshot", "--config", configPath, "--output", out])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stderrText.contains("note: not-installed: not installed (no record); left out"))
        let text = try String(contentsOfFile: out, encoding: .utf8)
        // The Manager's own layout: json.dump(indent=4), its key order.
        #expect(text.hasPrefix("{\n    \"comfyui\": \"\(comfy)\",\n    \"git_custom_nodes\": {\n        \"https://github.com/ltdrdata/ComfyUI-Impact-Pack.git\": {\n            \"hash\": \"\(a)\",\n            \"disabled\": false\n        },"), "\(text)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(json["cnr_custom_nodes"] as? [String: Any] != nil && (json["file_custom_nodes"] as? [Any])?.isEmpty == true)
        let pips = try #require(json["pips"] as? [String: String])
        #expect(pips == ["numpy==1.26.4": "", "Pillow==11.1.0": "",
                         "segment_anything": "git+https://github.com/facebookresearch/segment-anything.git@dca509fe793f601edb92606367a655c15ac00fdf"])
        #expect(text.range(of: "numpy==1.26.4")!.lowerBound < text.range(of: "Pillow==11.1.0")!.lowerBound)

        // Back in: the same config, every node pinned to its recorded commit.
        let (snap, _) = try ManagerSnapshot.load(path: out)
        #expect(snap.gitNodes.map(\.hash) == [a, b, c])
        #expect(snap.gitNodes.map(\.disabled) == [false, true, false])
        let plan = try SnapshotImporter.plan(snapshotPath: out, configPath: configPath, writePath: nil, environment: [:])
        #expect(plan.nodes.map(\.name) == ["ComfyUI-Impact-Pack", "was", "rgthree-comfy", "not-installed"])
        #expect(plan.nodes.map(\.action) == [.change, .change, .change, .keep])
        let imported = try ConfigLoader.decode(plan.newConfig, format: .json, environment: [:])
        #expect(imported.comfyui.rev == comfy)
        #expect(imported.customNodes.map(\.rev) == [a, b, c, "main"])
        #expect(imported.customNodes.map(\.enabled) == [true, false, true, true])
        #expect(imported.customNodes[1].writable)
        #expect(plan.requirements == ["numpy==1.26.4", "Pillow==11.1.0"])
        #expect(plan.pipsNotCarried.count == 1)
    }

    @Test("stdout by default; a record that is not trusted is left out and the exit is 1", .requiresRoot)
    func untrusted() throws {
        let d = try SnapshotCLI.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let configPath = try Self.config(d, nodes: [
            ["name": "good", "repo": "https://github.com/o/good", "rev": "main"],
            ["name": "bad", "repo": "https://github.com/o/bad", "rev": "main"],
        ])
        try RecordStore.write(Self.record("good", "https://github.com/o/good", String(repeating: "e", count: 40), .installed), to: d + "/state/nodes/good.json")
        try "{ truncated".write(toFile: d + "/state/nodes/bad.json", atomically: false, encoding: .utf8)
        let r = try SnapshotCLI.run(["export-snapshot", "--config", configPath])
        #expect(r.status == 1)
        #expect(r.stderrText.contains("bad: record not trusted"))
        #expect(r.stderrText.contains("note: ComfyUI has no record"))
        let snap = try ManagerSnapshot.parse(r.stdout, format: .json)
        #expect(snap.gitNodes.map(\.url) == ["https://github.com/o/good"])
        #expect(snap.comfyui == nil && snap.pips?.isEmpty == true)
    }

    @Test("real checkouts: export, import --write, update-nodes moves nothing, and a second export is identical", .requiresRoot)
    func realRoundTrip() throws {
        let w = try NodesWorld("snapshot-roundtrip")
        let alpha = try w.git.makeRepo("alpha")
        let beta = try w.git.makeRepo("beta")
        try w.setNodes([w.node("alpha"), w.node("beta")])
        var r = try w.comfy(["update-nodes"])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
        try w.setNodes([w.node("alpha"), w.node("beta", extra: ["enabled": false])])
        r = try w.comfy(["update-nodes"])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
        // Upstream moves on; the pins must not.
        try w.git.commit("alpha", files: ["later.py": "X = 1\n"])

        let snap1 = w.world.root + "/snap1.json"
        r = try w.comfy(["export-snapshot", "--output", snap1])
        #expect(r.status == 0, "\(r.stderrText)")
        let exported = try ManagerSnapshot.load(path: snap1).0
        #expect(exported.gitNodes == [.init(url: w.git.url("alpha"), hash: alpha, disabled: false),
                                      .init(url: w.git.url("beta"), hash: beta, disabled: true)])

        r = try w.comfy(["import-snapshot", snap1, "--write", w.world.configPath])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
        #expect(r.stdoutText.contains("~ custom_nodes[0] alpha: rev main -> \(alpha)"), "\(r.stdoutText)")
        let config = try ConfigLoader.load(path: w.world.configPath, environment: [:])
        #expect(config.customNodes.map(\.rev) == [alpha, beta])
        #expect(config.customNodes.map(\.enabled) == [true, false])

        r = try w.comfy(["update-nodes"])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
        #expect(w.head("alpha") == alpha)
        #expect(try w.record("alpha").currentSHA == alpha)
        #expect(try w.record("beta").status == .disabled)
        #expect(FileManager.default.fileExists(atPath: w.nodeDir("beta") + ".disabled"))

        let snap2 = w.world.root + "/snap2.json"
        #expect(try w.comfy(["export-snapshot", "--output", snap2]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: snap2)) == Data(contentsOf: URL(fileURLWithPath: snap1)))
    }
}
