import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS
@testable import SandboxConfig

/// Fixtures and a scratch directory for the import tests.
enum SnapshotFixtures {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static var classic: String { dir.appendingPathComponent("2025-03-14_18-22-05_snapshot.json").path }
    static var yaml: String { dir.appendingPathComponent("2025-06-02_09-41-37_snapshot.yaml").path }
    static var hostile: String { dir.appendingPathComponent("hostile_snapshot.json").path }
    static var exampleConfig: String {
        dir.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("config/comfy-sandbox.json").path
    }

    /// A fresh directory holding a copy of the example config as config.json.
    static func scratch() throws -> String {
        var template = Array("/tmp/cs-snapshot-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SandboxError.failure("mkdtemp") }
        let d = String(cString: p)
        try FileManager.default.copyItem(atPath: exampleConfig, toPath: d + "/config.json")
        return d
    }

    static func plan(_ snapshot: String, config: String, write: Bool = false) throws -> SnapshotImport {
        try SnapshotImporter.plan(snapshotPath: snapshot, configPath: config, writePath: write ? config : nil, environment: [:])
    }

    static func error(_ body: () throws -> Any) -> SandboxError? {
        do { _ = try body(); return nil } catch let e as SandboxError { return e } catch { return nil }
    }
}

@Suite("ComfyUI-Manager snapshots")
struct ManagerSnapshotTests {
    @Test("the classic JSON snapshot: every section, in the file's order")
    func classic() throws {
        let (s, format) = try ManagerSnapshot.load(path: SnapshotFixtures.classic)
        #expect(format == .json)
        #expect(s.comfyui == "e00d22ab1f04f8d9f25cb4a70a2d09d9d0f3a6b6")
        #expect(s.gitNodes.map(\.url) == [
            "https://github.com/ltdrdata/ComfyUI-Manager", "https://github.com/ltdrdata/ComfyUI-Impact-Pack",
            "https://github.com/rgthree/rgthree-comfy.git", "https://github.com/cubiq/ComfyUI_IPAdapter_plus/",
            "https://github.com/WASasquatch/was-node-suite-comfyui", "https://github.com/kijai/ComfyUI-KJNodes",
        ])
        #expect(s.gitNodes.map(\.disabled) == [false, false, false, false, true, false])
        #expect(s.registryNodes == [.init(id: "comfyui_controlnet_aux", version: "1.0.7"), .init(id: "comfyui-videohelpersuite", version: "1.5.2")])
        #expect(s.fileNodes.map(\.filename) == ["websocket_image_save.py", "my_prompt_tools.py"])
        #expect(s.pips?.count == 12)
        #expect(s.pips?.first { $0.spec == "segment_anything" }?.url.hasPrefix("git+https://") == true)
        #expect(s.ignoredKeys.isEmpty)
    }

    @Test("YAML: under custom_nodes (the Manager's writer) and at the top level read the same")
    func yamlShapes() throws {
        let (wrapped, format) = try ManagerSnapshot.load(path: SnapshotFixtures.yaml)
        #expect(format == .yaml)
        #expect(wrapped.gitNodes.count == 4 && wrapped.registryNodes.count == 2 && wrapped.pips?.count == 7)
        let text = try String(contentsOfFile: SnapshotFixtures.yaml, encoding: .utf8)
        let top = text.split(separator: "\n").dropFirst().map { String($0.dropFirst(2)) }.joined(separator: "\n")
        #expect(try ManagerSnapshot.parse(Data(top.utf8), format: .yaml) == wrapped)
        // And the JSON the same snapshot would have been saved as.
        #expect(try ManagerSnapshot.parse(Data(wrapped.renderJSON().utf8), format: .json) == wrapped)
    }

    @Test("a file that is not a snapshot is exit 65 with the key path", arguments: [
        (#"{"nodes": []}"#, "none of the keys"),
        (#"{"git_custom_nodes": {"https://h/x": "abc"}}"#, #"git_custom_nodes["https://h/x"]: expected an object"#),
        (#"{"git_custom_nodes": {"https://h/x": {"hash": 12}}}"#, #"git_custom_nodes["https://h/x"].hash: expected a commit id"#),
        (#"{"git_custom_nodes": {"https://h/x": {"hash": "a", "disabled": "no"}}}"#, ".disabled: expected true or false"),
        (#"{"comfyui": 5}"#, "comfyui: expected a commit id or null"),
        (#"{"pips": ["numpy==1"]}"#, "pips: expected an object"),
        ("[1, 2]", "expected an object"),
    ])
    func shapeErrors(text: String, words: String) {
        let e = SnapshotFixtures.error { try ManagerSnapshot.parse(Data(text.utf8), format: .json, file: "s.json") }
        #expect(e?.status == .invalidConfig)
        #expect(e?.message.contains("s.json: ") == true)
        #expect(e?.message.contains(words) == true, "\(e?.message ?? "no error")")
    }

    @Test("a YAML syntax error names the file and the line")
    func yamlLine() {
        let e = SnapshotFixtures.error { try ManagerSnapshot.parse(Data("custom_nodes:\n  comfyui: &a x\n".utf8), format: .yaml, file: "s.yaml") }
        #expect(e?.status == .invalidConfig)
        #expect(e?.message.hasPrefix("s.yaml: line 2: an anchor") == true, "\(e?.message ?? "")")
    }

    @Test("node names from URLs", arguments: [
        ("https://github.com/ltdrdata/ComfyUI-Impact-Pack", "ComfyUI-Impact-Pack"),
        ("https://github.com/rgthree/rgthree-comfy.git", "rgthree-comfy"),
        ("https://github.com/cubiq/ComfyUI_IPAdapter_plus/", "ComfyUI_IPAdapter_plus"),
        ("https://github.com/a/b.git//", "b"),
        ("git@github.com:owner/Repo.git", "Repo"),
        ("git@github.com:Repo.git", "Repo"),
        ("https://evil.example/x/..", ".."),
        ("https://host", "host"),
    ])
    func names(url: String, name: String) {
        #expect(SnapshotImporter.nodeName(fromURL: url) == name)
    }
}

@Suite("import-snapshot", .serialized)
struct ImportSnapshotTests {
    @Test("the classic snapshot against the example config: pins, names, enabled, the ComfyUI commit, what is left out")
    func classicPlan() throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let before = try Data(contentsOf: URL(fileURLWithPath: d + "/config.json"))
        let plan = try SnapshotFixtures.plan(SnapshotFixtures.classic, config: d + "/config.json")
        // Nothing written without --write.
        #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/config.json")) == before)
        #expect(!FileManager.default.fileExists(atPath: d + "/" + SnapshotImporter.requirementsName))

        #expect(plan.comfyuiRev?.from == "v0.3.66" && plan.comfyuiRev?.to == "e00d22ab1f04f8d9f25cb4a70a2d09d9d0f3a6b6")
        let added = plan.nodes.filter { $0.action == .add }
        #expect(added.map(\.name) == ["ComfyUI-Impact-Pack", "rgthree-comfy", "ComfyUI_IPAdapter_plus", "was-node-suite-comfyui", "ComfyUI-KJNodes"])
        #expect(added.map(\.index) == [0, 1, 2, 3, 4])
        #expect(added.first { $0.name == "was-node-suite-comfyui" }?.enabled == false)
        #expect(added.first { $0.name == "ComfyUI_IPAdapter_plus" }?.repo == "https://github.com/cubiq/ComfyUI_IPAdapter_plus")
        #expect(plan.nodes.first { $0.action == .skip }?.name == "ComfyUI-Manager")
        #expect(plan.registryNodes.map(\.name) == ["comfyui_controlnet_aux", "comfyui-videohelpersuite"])
        #expect(plan.registryNodes.allSatisfy { $0.advice.contains("no checksum") && $0.advice.contains("registry.comfy.org/nodes/") })
        #expect(plan.fileNodes.map(\.name) == ["websocket_image_save.py", "my_prompt_tools.py"])
        #expect(plan.requirements == ["accelerate==1.2.1", "aiohttp==3.11.11", "einops==0.8.0", "numpy==1.26.4",
                                      "opencv-python-headless==4.10.0.84", "pillow==11.1.0", "safetensors==0.5.2",
                                      "torch==2.5.1+cu124", "torchsde==0.2.6", "transformers==4.48.0"])
        #expect(plan.pipsNotCarried.map(\.spec) == [
            "segment_anything @ git+https://github.com/facebookresearch/segment-anything.git@dca509fe793f601edb92606367a655c15ac00fdf",
            "-e git+https://github.com/openai/CLIP.git@dcba3cb2e2827b402d2701e7e1c7d9fed8a20ef1#egg=clip",
        ])
        #expect(plan.pipNotes.count == 1 && plan.pipNotes[0].hasPrefix("torch==2.5.1+cu124"))

        // The new config decodes to the old one plus exactly the pins.
        let old = try ConfigLoader.decode(before, format: .json, environment: [:])
        var new = try ConfigLoader.decode(plan.newConfig, format: .json, environment: [:])
        #expect(new.customNodes.map(\.rev) == ["9c4fbb7c40f3a1b2d8e6f5a4c3b2a1908f7e6d5c", "5f2d7e8a1c3b4d6e9f0a2b4c6d8e0f1a3b5c7d9e",
                                               "b18a0f4e2d6c8a9b1c3d5e7f9a0b2c4d6e8f0a1b", "0a6f1b9d3e5c7a2b4d6f8e0c1a3b5d7f9e2c4a6b",
                                               "d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4b6c8d0e2"])
        #expect(new.customNodes.map(\.enabled) == [true, true, true, false, true])
        #expect(new.customNodes.allSatisfy { !$0.installRequirements && !$0.writable && $0.note?.contains("2025-03-14_18-22-05_snapshot.json") == true })
        // The pins file is the lock's starting point: the config names it.
        #expect(new.comfyui.preferVersions == plan.requirementsFile && plan.preferVersions?.to == plan.requirementsFile)
        new.customNodes = []
        new.comfyui.rev = old.comfyui.rev
        new.comfyui.preferVersions = old.comfyui.preferVersions
        #expect(new == old)
    }

    @Test("the report is the diff a user reviews, key by key")
    func report() throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let text = try SnapshotFixtures.plan(SnapshotFixtures.classic, config: d + "/config.json").report().joined(separator: "\n")
        #expect(text.contains("  ~ comfyui.rev: v0.3.66 -> e00d22ab1f04f8d9f25cb4a70a2d09d9d0f3a6b6\n"))
        #expect(text.contains("  + custom_nodes[0] ComfyUI-Impact-Pack: repo https://github.com/ltdrdata/ComfyUI-Impact-Pack rev 9c4fbb7c40f3a1b2d8e6f5a4c3b2a1908f7e6d5c\n"))
        #expect(text.contains("  + custom_nodes[3] was-node-suite-comfyui: repo https://github.com/WASasquatch/was-node-suite-comfyui rev 0a6f1b9d3e5c7a2b4d6f8e0c1a3b5d7f9e2c4a6b enabled false (disabled in the Manager)\n"))
        #expect(text.contains("  - ComfyUI-Manager (https://github.com/ltdrdata/ComfyUI-Manager): not imported"))
        #expect(text.contains("Comfy Registry nodes, not imported: the registry serves a version as a zip with no checksum"))
        #expect(text.contains("  comfyui_controlnet_aux 1.0.7: https://registry.comfy.org/nodes/comfyui_controlnet_aux\n"))
        #expect(text.contains("  websocket_image_save.py: ComfyUI's own example"))
        #expect(text.contains("pips: 10 name==version pins for \(d)/comfyui-snapshot-requirements.txt (written with --write)"))
        #expect(text.contains(#"    "-e git+https://github.com/openai/CLIP.git@dcba3cb2e2827b402d2701e7e1c7d9fed8a20ef1#egg=clip": an editable install"#))
    }

    @Test("--write replaces the config atomically, keeps its mode and every key the snapshot does not touch, writes the pins; again is a no-op")
    func write() throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let path = d + "/config.json"
        // A config with parts of its own: a node the snapshot does not name,
        // one it does (under another URL spelling) with keys the snapshot
        // does not know, and shares and launcher settings.
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: #""custom_nodes": [],"#, with: """
        "custom_nodes": [
            { "name": "my-own-node", "repo": "https://github.com/alice/my-own-node.git", "rev": "v2" },
            { "name": "impact", "repo": "https://github.com/ltdrdata/ComfyUI-Impact-Pack.git", "rev": "main",
              "writable": true, "install_requirements": true, "note": "reviewed 2025-02" }
          ],
        """)
        text = text.replacingOccurrences(of: #""port": 8188"#, with: #""port": 8288"#)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o640)
        let old = try ConfigLoader.load(path: path, environment: [:])
        var st = stat()
        stat(path, &st)
        let inode = st.st_ino

        let plan = try SnapshotFixtures.plan(SnapshotFixtures.classic, config: path, write: true)
        let impact = try #require(plan.nodes.first { $0.name == "impact" })
        #expect(impact.action == .change && impact.changes == ["rev main -> 9c4fbb7c40f3a1b2d8e6f5a4c3b2a1908f7e6d5c"])
        #expect(plan.nodes.first { $0.name == "my-own-node" }?.action == .keep)
        let written = try SnapshotImporter.write(plan)
        #expect(written.count == 2)

        stat(path, &st)
        #expect(st.st_ino != inode, "replaced by a rename, not rewritten in place")
        #expect(st.st_mode & 0o7777 == 0o640)
        let new = try ConfigLoader.load(path: path, environment: [:])
        #expect(new.shares == old.shares && new.launcher == old.launcher && new.models == old.models && new.git == old.git)
        #expect(new.launcher.port == 8288)
        #expect(new.customNodes.count == 6)
        #expect(new.customNodes[0] == old.customNodes[0])
        var expectedImpact = old.customNodes[1]
        expectedImpact.rev = "9c4fbb7c40f3a1b2d8e6f5a4c3b2a1908f7e6d5c"
        #expect(new.customNodes[1] == expectedImpact, "its name, repo spelling, writable, install_requirements and note are kept")
        #expect(new.comfyui.rev == "e00d22ab1f04f8d9f25cb4a70a2d09d9d0f3a6b6")
        let reqs = try String(contentsOfFile: d + "/" + SnapshotImporter.requirementsName, encoding: .utf8)
        let pins = reqs.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(pins.count == 10 && pins.allSatisfy { $0.contains("==") && !$0.contains("git+") })
        // No temp file left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: d).sorted() == ["comfyui-snapshot-requirements.txt", "config.json"])

        // Importing the same snapshot again changes nothing.
        let again = try SnapshotFixtures.plan(SnapshotFixtures.classic, config: path, write: true)
        #expect(!again.changesConfig)
        #expect(again.newConfig == (try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    @Test("the YAML snapshot imports like the JSON one")
    func yamlImport() throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let plan = try SnapshotFixtures.plan(SnapshotFixtures.yaml, config: d + "/config.json")
        #expect(plan.format == "yaml")
        #expect(plan.nodes.filter { $0.action == .add }.map(\.name) == ["ComfyUI-GGUF", "ComfyUI-Custom-Scripts", "rgthree-comfy"])
        #expect(plan.nodes.first { $0.name == "rgthree-comfy" }?.enabled == false)
        #expect(plan.nodes.first { $0.action == .skip }?.name == "ComfyUI-Manager")
        #expect(plan.requirements == ["gguf==0.14.0", "numpy==2.1.3", "sentencepiece==0.2.0", "spandrel==0.4.0", "torch==2.6.0"])
        #expect(plan.pipsNotCarried.count == 2)
    }

    @Test("a hostile snapshot is exit 65 naming every bad entry; nothing is written")
    func hostile() throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let before = try Data(contentsOf: URL(fileURLWithPath: d + "/config.json"))
        let e = SnapshotFixtures.error { try SnapshotFixtures.plan(SnapshotFixtures.hostile, config: d + "/config.json", write: true) }
        #expect(e?.status == .invalidConfig)
        let m = e?.message ?? ""
        #expect(m.contains(#"git_custom_nodes["file:///home/alice/.ssh"]: "file:///home/alice/.ssh" uses the file transport, which is never allowed"#), "\(m)")
        #expect(m.contains(#"git_custom_nodes["ext::sh -c touch% /tmp/pwned"]"#), "\(m)")
        #expect(m.contains(#"git_custom_nodes["https://evil.example/x/.."]: the directory name it gives, "..", is not a plain directory name"#), "\(m)")
        #expect(m.contains(#"git_custom_nodes["https://github.com/kijai/ComfyUI-KJNodes"].hash: "d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4b6c8d0e" is not a full commit id"#), "\(m)")
        #expect(!m.contains("Impact-Pack"))
        #expect(m.split(separator: "\n").allSatisfy { $0.hasPrefix(SnapshotFixtures.hostile + ": ") })
        #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/config.json")) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: d) == ["config.json"])
    }

    @Test("every URL must pass git.allowed_protocols; a control character is shown escaped")
    func protocols() throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let snap = d + "/s.json"
        let sha = String(repeating: "a", count: 40)
        try #"{"git_custom_nodes": {"git://example.org/x/node-a.git": {"hash": "\#(sha)", "disabled": false}, "git@github.com:o/node-b.git": {"hash": "\#(sha)", "disabled": false}, "https://h/\u001b[31mred": {"hash": "\#(sha)", "disabled": false}, "ext::/tmp/helper": {"hash": "\#(sha)", "disabled": false}}}"#
            .write(toFile: snap, atomically: false, encoding: .utf8)
        let e = SnapshotFixtures.error { try SnapshotFixtures.plan(snap, config: d + "/config.json") }
        #expect(e?.status == .invalidConfig)
        let m = e?.message ?? ""
        #expect(m.contains(#"git_custom_nodes["git://example.org/x/node-a.git"]: "git://example.org/x/node-a.git" uses git, which git.allowed_protocols (https) does not allow"#), "\(m)")
        #expect(m.contains(#"git_custom_nodes["git@github.com:o/node-b.git"]: "git@github.com:o/node-b.git" uses ssh"#), "\(m)")
        #expect(m.contains(#"git_custom_nodes["https://h/\u001b[31mred"]"#), "\(m)")
        #expect(!m.contains("\u{1b}"))
        #expect(m.contains(#"git_custom_nodes["ext::/tmp/helper"]: "ext::/tmp/helper" uses the ext-or-transport-helper transport, which is never allowed"#), "\(m)")
        // Allowed once the config allows them (the control character never is).
        var text = try String(contentsOfFile: d + "/config.json", encoding: .utf8)
        text = text.replacingOccurrences(of: #""allowed_protocols": ["https"]"#, with: #""allowed_protocols": ["https", "git", "ssh"]"#)
        try text.write(toFile: d + "/config.json", atomically: false, encoding: .utf8)
        try #"{"git_custom_nodes": {"git://example.org/x/node-a.git": {"hash": "\#(sha)", "disabled": false}, "git@github.com:o/node-b.git": {"hash": "\#(sha)", "disabled": false}}}"#
            .write(toFile: snap, atomically: false, encoding: .utf8)
        let plan = try SnapshotFixtures.plan(snap, config: d + "/config.json")
        #expect(plan.nodes.map(\.name) == ["node-a", "node-b"])
    }

    @Test("a config it cannot read is never overwritten (exit 65, file unchanged)", arguments: [
        "{ this is not json", #"{"primary_user": "alice", "bogus": 1}"#, #"{"primary_user": "alice", "custom_nodes": [{"name": "x"}]}"#,
    ])
    func badConfig(text: String) throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try text.write(toFile: d + "/config.json", atomically: false, encoding: .utf8)
        let e = SnapshotFixtures.error { try SnapshotFixtures.plan(SnapshotFixtures.classic, config: d + "/config.json", write: true) }
        #expect(e?.status == .invalidConfig)
        #expect(e?.message.contains(d + "/config.json") == true)
        #expect(e?.hint?.contains("never overwrites") == true)
        #expect(try String(contentsOfFile: d + "/config.json", encoding: .utf8) == text)
    }

    @Test("a snapshot that would make the config invalid is exit 65 with the config's key path; nothing is written")
    func invalidResult() throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        // An entry named like one snapshot node but holding another's
        // repository: it takes Impact-Pack's pin (same repo), and the
        // KJNodes node, added new, would need its name.
        var text = try String(contentsOfFile: d + "/config.json", encoding: .utf8)
        text = text.replacingOccurrences(of: #""custom_nodes": [],"#, with: """
        "custom_nodes": [ { "name": "ComfyUI-KJNodes", "repo": "https://github.com/ltdrdata/ComfyUI-Impact-Pack" } ],
        """)
        try text.write(toFile: d + "/config.json", atomically: false, encoding: .utf8)
        let e = SnapshotFixtures.error { try SnapshotFixtures.plan(SnapshotFixtures.classic, config: d + "/config.json", write: true) }
        #expect(e?.status == .invalidConfig)
        #expect(e?.message.contains(d + "/config.json: custom_nodes[4].name: \"ComfyUI-KJNodes\" is used by another node") == true, "\(e?.message ?? "")")
        #expect(e?.hint?.contains("nothing was changed") == true)
        #expect(try String(contentsOfFile: d + "/config.json", encoding: .utf8) == text)
    }

    @Test("no config yet: --write makes a new one with only what the snapshot sets")
    func newConfig() throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try FileManager.default.removeItem(atPath: d + "/config.json")
        let target = d + "/new.json"
        let plan = try SnapshotImporter.plan(snapshotPath: SnapshotFixtures.classic, configPath: d + "/config.json", writePath: target,
                                             environment: ["SUDO_USER": "alice"])
        #expect(plan.config == nil)
        _ = try SnapshotImporter.write(plan)
        let doc = try DocumentJSON.parse(try Data(contentsOf: URL(fileURLWithPath: target)))
        #expect(doc.members?.map(\.key) == ["version", "comfyui", "custom_nodes"])
        let c = try ConfigLoader.load(path: target, environment: ["SUDO_USER": "alice"])
        #expect(c.customNodes.count == 5 && c.comfyui.rev == "e00d22ab1f04f8d9f25cb4a70a2d09d9d0f3a6b6")
    }

    @Test("pips with no name==version pin: no requirements file is written, and the report says so")
    func noPins() throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try #"{"comfyui": null, "git_custom_nodes": {}, "pips": {"-e git+https://github.com/o/x.git@abc#egg=x": ""}}"#
            .write(toFile: d + "/s.json", atomically: false, encoding: .utf8)
        let plan = try SnapshotFixtures.plan(d + "/s.json", config: d + "/config.json", write: true)
        #expect(plan.report().contains("pips: no name==version pins, so no comfyui-snapshot-requirements.txt is written"))
        #expect(plan.report().contains(#"  = comfyui.rev: the snapshot records no ComfyUI commit; comfyui.rev stays v0.3.66"#))
        #expect(!plan.changesConfig)
        let before = try Data(contentsOf: URL(fileURLWithPath: d + "/config.json"))
        #expect(try SnapshotImporter.write(plan) == ["\(d)/config.json already matches the snapshot; left as it was"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/config.json")) == before, "not even reformatted")
        #expect(try FileManager.default.contentsOfDirectory(atPath: d).sorted() == ["config.json", "s.json"])
    }

    @Test("--write refuses a symlink in place of the config")
    func symlink() throws {
        let d = try SnapshotFixtures.scratch()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try FileManager.default.createSymbolicLink(atPath: d + "/link.json", withDestinationPath: d + "/config.json")
        let e = SnapshotFixtures.error {
            try SnapshotImporter.plan(snapshotPath: SnapshotFixtures.classic, configPath: d + "/config.json", writePath: d + "/link.json", environment: [:])
        }
        #expect(e?.status == .failure && e?.message.contains("symbolic link") == true)
    }
}
