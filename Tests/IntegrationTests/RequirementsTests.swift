import Foundation
import SandboxCore
import Testing
import SandboxOS

/// Requirement installs with a lock, nodes left out alone, the lent cache,
/// incremental installs and install scripts; offline, from a package index
/// the test builds (LocalIndex), in throwaway worlds.
@Suite("requirements", .serialized)
struct RequirementsTests {
    /// A world with the sandbox accounts, a stand-in ComfyUI whose
    /// requirements are `comfyReqs`, and an index the config installs from.
    final class ReqWorld: @unchecked Sendable {
        let w: NodesWorld
        let index: LocalIndex
        var installer = "auto"
        var extra: [String] = []
        var prefer: String?

        init(_ label: String, comfyReqs: String) throws {
            w = try NodesWorld(label)
            try w.addSandboxAccounts()
            index = try LocalIndex(w.world.data + "/index")
            try w.git.makeRepo("ComfyUI", files: ["main.py": "print('hi')\n", "requirements.txt": comfyReqs])
        }

        var venv: String { "\(w.world.opt)/comfy-sandbox/venv" }
        var state: String { w.world.state }

        func configure(_ nodes: [[String: Any]]) throws {
            var c = w.world.defaultConfig()
            var comfy: [String: Any] = ["repo": w.git.url("ComfyUI"), "rev": "main", "path": w.comfyPath, "python": "/usr/bin/python3",
                                        "install_requirements": true, "pip_args": index.pipArgs, "extra_requirements": extra, "installer": installer]
            if let prefer { comfy["prefer_versions"] = prefer }
            c["comfyui"] = comfy
            c["custom_nodes"] = nodes
            c["git"] = ["allowed_protocols": ["git"]]
            try w.world.writeConfig(c)
            try World.sh("chmod -R a+rX \(w.world.data)")
        }

        func node(_ name: String, _ extra: [String: Any] = [:]) -> [String: Any] {
            w.node(name, extra: ["install_requirements": true].merging(extra) { _, b in b })
        }

        /// The sealed set the venv's .pth points at.
        func current() throws -> String {
            let sp = try #require(try World.sh("ls -d \(venv)/lib/python3*/site-packages").stdoutText.split(separator: "\n").first)
            return try String(contentsOfFile: "\(sp)/comfy-sandbox-requirements.pth", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func record(_ sealed: String) throws -> [String: Any] {
            let fp = URL(fileURLWithPath: sealed).lastPathComponent
            let data = try #require(FileManager.default.contents(atPath: "\(state)/requirements/\(fp).json"))
            return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        }

        func lock(_ sealed: String) -> String {
            let fp = URL(fileURLWithPath: sealed).lastPathComponent
            return (try? String(contentsOfFile: "\(state)/requirements/\(fp).lock", encoding: .utf8)) ?? ""
        }

        /// `python -c CODE` in the venv as the sandbox user.
        func python(_ code: String) throws -> String {
            let r = try w.world.sh("cd / && setpriv --reuid=comfyui_sandbox --regid=comfyshared --init-groups \(venv)/bin/python -c \"\(code)\"")
            return r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) + r.stderrText
        }
    }

    static var uvInstalled: Bool { RequirementInstaller.find(.uv) != nil }

    @Test("a node whose requirement cannot be found is left out with the installer's words; everything else installs; exit 1",
          .requiresRoot, arguments: ["uv", "pip"])
    func isolation(_ installer: String) throws {
        guard installer == "pip" || Self.uvInstalled else { return }
        let r = try ReqWorld("req-isolate-\(installer)", comfyReqs: "alpha\n")
        r.installer = installer
        r.extra = ["gamma"]
        try r.index.wheel("alpha", "1.0")
        try r.index.wheel("beta", "1.0")
        try r.index.wheel("gamma", "1.0")
        try r.w.git.makeRepo("good", files: ["__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "requirements.txt": "beta\n"])
        try r.w.git.makeRepo("bad", files: ["__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "requirements.txt": "beta\nno-such-package-anywhere==9.9\n"])
        try r.configure([r.node("bad"), r.node("good")])
        let p = try r.w.comfy(["provision", "--only", "comfyui,python,nodes"])
        #expect(p.status == 1, "\(p.stdoutText)\(p.stderrText)")
        #expect(p.stderrText.contains("bad: its requirements could not be installed"), "\(p.stderrText)")
        #expect(p.stderrText.contains("no-such-package-anywhere"), "the installer's own lines: \(p.stderrText)")
        #expect(!p.stderrText.contains("good: its requirements"))
        let sealed = try r.current()
        for pkg in ["alpha", "beta", "gamma"] {
            #expect(FileManager.default.fileExists(atPath: "\(sealed)/\(pkg)/__init__.py"), "\(pkg) installed")
        }
        let rec = try r.record(sealed)
        let left = try #require(rec["left_out"] as? [[String: Any]])
        #expect(left.map { $0["node"] as? String } == ["bad"])
        #expect(left.first?["policy"] as? String == "disable")
        #expect(rec["installer"] as? String == installer)
        // The lock pins what was resolved, with the index's hashes.
        let lock = r.lock(sealed)
        #expect(lock.contains("alpha==1.0") && lock.contains("beta==1.0") && lock.contains("gamma==1.0"), "\(lock)")
        // uv hashes what it resolves from a --find-links directory too; pip's
        // report has hashes only for what an index served.
        if installer == "uv" { #expect(lock.contains("--hash=sha256:"), "\(lock)") }
        // A later provision still says so (exit 1), and installs nothing.
        let again = try r.w.comfy(["provision", "--only", "python,nodes"])
        #expect(again.status == 1 && again.stdoutText.contains("nothing to do"), "\(again.stdoutText)\(again.stderrText)")
        let status = try r.w.comfy(["status"]).stdoutText
        #expect(status.contains("bad: ") && status.contains("left out"), "\(status)")
        // Another node added: the bad one, unchanged, stays out without a
        // resolution of its own; --pull tries it again.
        try r.index.wheel("delta", "1.0")
        try r.w.git.makeRepo("more", files: ["__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "requirements.txt": "delta\n"])
        try r.configure([r.node("bad"), r.node("good"), r.node("more")])
        let add = try r.w.comfy(["update-nodes"])
        #expect(add.status == 1, "still left out: \(add.stdoutText) \(add.stderrText)")
        #expect(add.stderrText.contains("bad stays left out"), "\(add.stderrText)")
        #expect(!add.stderrText.contains("requirements: bad left out"), "no new try: \(add.stderrText)")
        #expect(FileManager.default.fileExists(atPath: "\(try r.current())/delta/__init__.py"))
        let pull = try r.w.comfy(["update-nodes", "--pull"])
        #expect(pull.stderrText.contains("requirements: bad left out"), "--pull tries again: \(pull.stderrText)")
    }

    @Test("comfyui.prefer_versions (a Manager snapshot's pips): the first resolution keeps those versions where they fit; --pull does not",
          .requiresRoot, .enabled(if: RequirementsTests.uvInstalled))
    func preferVersions() throws {
        let r = try ReqWorld("req-prefer", comfyReqs: "alpha\n")
        r.installer = "uv"
        try r.index.wheel("alpha", "1.0")
        try r.index.wheel("alpha", "2.0")
        try r.index.wheel("delta", "1.0")
        try r.index.wheel("delta", "2.0")
        try r.w.git.makeRepo("node", files: ["__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "requirements.txt": "delta\n"])
        // What import-snapshot writes: alpha as the Manager had it, delta at
        // a version the index does not have (a preference, not a constraint),
        // and lines that are not pins.
        let pins = r.w.world.data + "/comfyui-snapshot-requirements.txt"
        try "Alpha==1.0\ndelta==9.9\n--index-url http://127.0.0.1:1/evil\n".write(toFile: pins, atomically: true, encoding: .utf8)
        r.prefer = pins
        try r.configure([r.node("node")])
        let p = try r.w.comfy(["provision", "--only", "comfyui,python,nodes"])
        #expect(p.status == 0, "\(p.stdoutText)\(p.stderrText)")
        #expect(p.stderrText.contains("preferring the 2 versions pinned in \(pins)"), "\(p.stderrText)")
        #expect(try r.python("import alpha; print(alpha.VERSION)").hasPrefix("1.0"))
        #expect(try r.python("import delta; print(delta.VERSION)").hasPrefix("2.0"))
        // --pull resolves afresh: the newest alpha.
        let pull = try r.w.comfy(["update-comfyui", "--pull"])
        #expect(pull.status == 0, "\(pull.stdoutText)\(pull.stderrText)")
        #expect(try r.python("import alpha; print(alpha.VERSION)").hasPrefix("2.0"))
        // A preferences file the sandbox could write is refused by name.
        r.prefer = r.w.world.home + "/comfyui_sandbox/pins.txt"
        try r.configure([r.node("node")])
        let bad = try r.w.comfy(["plan"])
        #expect(bad.status == 65 && bad.stderrText.contains("comfyui.prefer_versions"), "\(bad.status) \(bad.stderrText)")
    }

    @Test("the lock is reproduced exactly, --pull resolves again, and a rollback returns to the previous set without installing",
          .requiresRoot)
    func lockPullRollback() throws {
        let r = try ReqWorld("req-lock", comfyReqs: "alpha\n")
        try r.index.wheel("alpha", "1.0")
        try r.index.wheel("delta", "1.0")
        try r.w.git.makeRepo("node", files: ["__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "requirements.txt": "\n"])
        try r.configure([r.node("node")])
        #expect(try r.w.comfy(["provision", "--only", "comfyui,python,nodes"]).status == 0)
        let first = try r.current()
        #expect(r.lock(first).contains("alpha==1.0"))
        // Upstream publishes alpha 2.0; the sealed set is lost: provision
        // installs the lock again, exactly, not what resolves today.
        try r.index.wheel("alpha", "2.0")
        try World.sh("chmod -R a+rX \(r.index.dir) && rm -rf \(first) && rm -f \(r.venv)/lib/python3*/site-packages/comfy-sandbox-requirements.pth")
        let again = try r.w.comfy(["provision", "--only", "python,nodes"])
        #expect(again.status == 0, "\(again.stderrText)")
        #expect(again.stderrText.contains("installing the lock of"), "\(again.stderrText)")
        #expect(try r.python("import alpha; print(alpha.VERSION)").hasPrefix("1.0"))
        // --pull resolves afresh.
        let pull = try r.w.comfy(["update-comfyui", "--pull"])
        #expect(pull.status == 0, "\(pull.stdoutText)\(pull.stderrText)")
        #expect(try r.python("import alpha; print(alpha.VERSION)").hasPrefix("2.0"))
        let resolved = try r.current()
        // The node moves to a commit that needs delta: a new set...
        let before = try r.w.record("node").currentSHA
        try r.w.git.commit("node", files: ["requirements.txt": "delta\n"])
        #expect(try r.w.comfy(["update-nodes", "--pull"]).status == 0)
        #expect(try r.python("import delta; print(delta.VERSION)").hasPrefix("1.0"))
        #expect(try r.current() != resolved)
        // ...and rolling the node back switches to the kept set, installing nothing.
        let back = try r.w.comfy(["rollback-nodes", "node"])
        #expect(back.status == 0, "\(back.stdoutText)\(back.stderrText)")
        #expect(try r.w.record("node").currentSHA == before)
        #expect(back.stderrText.contains("back to the sealed set"), "\(back.stderrText)")
        #expect(try r.current() == resolved)
        #expect(try r.python("import delta").contains("ModuleNotFoundError"))
    }

    @Test("with uv: the cache is root's between installs and out of the sandbox's reach; adding a node reuses the sealed files",
          .requiresRoot)
    func cacheAndIncremental() throws {
        guard Self.uvInstalled else { return }
        let r = try ReqWorld("req-cache", comfyReqs: "alpha\n")
        try r.index.wheel("alpha", "1.0")
        try r.index.wheel("beta", "1.0")
        try r.w.git.makeRepo("one", files: ["__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "requirements.txt": "beta\n"])
        try r.configure([])
        #expect(try r.w.comfy(["provision", "--only", "comfyui,python,nodes"]).status == 0)
        let first = try r.current()
        let cacheParent = "\(r.w.world.opt)/comfy-sandbox/.cs-cache"
        #expect(try World.sh("stat -c '%U %a' \(cacheParent)").stdoutText == "root 700\n")
        let foreign = try World.sh("find \(cacheParent) ! -type l \\( ! -user root -o -perm /022 \\) | head -3").stdoutText
        #expect(foreign.isEmpty, "the cache is sealed between installs: \(foreign)")
        let reach = try r.w.world.sh("setpriv --reuid=comfyui_sandbox --regid=comfyshared --init-groups ls \(cacheParent)/uv")
        #expect(!reach.succeeded, "the sandbox user cannot reach the cache")
        // Add a node: alpha's files are the very same inodes in the new set.
        try r.configure([r.node("one")])
        let add = try r.w.comfy(["update-nodes"])
        #expect(add.status == 0, "\(add.stdoutText)\(add.stderrText)")
        let second = try r.current()
        #expect(second != first)
        let ino = { (p: String) in try World.sh("stat -c %i \(p)/alpha/__init__.py").stdoutText }
        #expect(try ino(first) == (try ino(second)), "shared by hard link, not reinstalled")
        #expect(FileManager.default.fileExists(atPath: "\(second)/beta/__init__.py"))
        let modes = try World.sh("find \(second) \\( ! -user root -o -perm /022 \\) -print | head -3").stdoutText
        #expect(modes.isEmpty, "sealed: \(modes)")
    }

    @Test("install_script: install.py runs as the sandbox user on a copy; what it adds is sealed into the checkout, once",
          .requiresRoot)
    func installScript() throws {
        let r = try ReqWorld("req-script", comfyReqs: "alpha\n")
        try r.index.wheel("alpha", "1.0")
        let script = """
        import os, alpha
        open("made-by-install.ini", "w").write("uid=%d alpha=%s env=%s\\n" % (os.getuid(), alpha.VERSION, os.environ.get("MY_SETTING")))
        os.makedirs("subpack/impact", exist_ok=True)
        open("subpack/impact/subpack_nodes.py", "w").write("NODE_CLASS_MAPPINGS = {}\\n")
        open("__init__.py", "a").write("# tampered\\n")
        print("skip file:", os.path.exists("../skip_download_model"), "models:", os.environ["COMFYUI_MODEL_PATH"])
        """
        let sha = try r.w.git.makeRepo("scripted", files: ["__init__.py": "NODE_CLASS_MAPPINGS = {}\n", "install.py": script])
        try r.configure([r.w.node("scripted", extra: ["install_script": true, "env": ["MY_SETTING": "$NODE_DATA/x"]])])
        let p = try r.w.comfy(["provision", "--only", "comfyui,python,nodes"])
        #expect(p.status == 0, "\(p.stdoutText)\(p.stderrText)")
        let dir = r.w.nodeDir("scripted")
        let uid = try #require(r.w.world.uid("comfyui_sandbox"))
        let ini = try String(contentsOfFile: dir + "/made-by-install.ini", encoding: .utf8)
        #expect(ini == "uid=\(uid) alpha=1.0 env=\(r.w.world.home)/comfyui_sandbox/node-data/scripted/x\n", "\(ini)")
        #expect(FileManager.default.fileExists(atPath: dir + "/subpack/impact/subpack_nodes.py"))
        #expect(try World.sh("find \(dir) -path '*/.git' -prune -o \\( ! -user root -o -perm /022 \\) -print").stdoutText.isEmpty, "sealed")
        #expect(try String(contentsOfFile: dir + "/__init__.py", encoding: .utf8) == "NODE_CLASS_MAPPINGS = {}\n", "tracked files stay the commit's")
        #expect(GitFiles.detachedHead(dir) == sha)
        #expect(p.stderrText.contains("skip file: True"), "\(p.stderrText)")
        let rec = try #require(FileManager.default.contents(atPath: "\(r.state)/nodes/scripted.install.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: rec) as? [String: Any])
        #expect(json["added"] as? [String] == ["made-by-install.ini", "subpack"])
        // Nothing changed: not run again.
        let again = try r.w.comfy(["update-nodes"])
        #expect(again.status == 0 && !again.stderrText.contains("running install.py"), "\(again.stderrText)")
        // The node moves: the old additions go, the script runs again on the new commit.
        try r.w.git.commit("scripted", files: ["install.py": "open('v2.txt', 'w').write('2')\n"])
        #expect(try r.w.comfy(["update-nodes", "--pull"]).status == 0)
        #expect(FileManager.default.fileExists(atPath: dir + "/v2.txt"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/made-by-install.ini"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/subpack"))
    }
}
