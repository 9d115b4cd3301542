import Foundation
import SandboxCore
import Testing
import SandboxOS

/// A world with a git daemon serving node repositories and ComfyUI's
/// directory made (root, 0755), so update-nodes has somewhere to put them.
final class NodesWorld: @unchecked Sendable {
    let world: World
    let git: GitDaemon
    var nodes: [[String: Any]] = []

    init(_ label: String) throws {
        world = try World(label)
        git = try GitDaemon()
        try World.sh("mkdir -p \(comfyPath) && chmod 755 \(world.opt)/comfy-sandbox \(comfyPath)")
    }

    var comfyPath: String { "\(world.opt)/comfy-sandbox/ComfyUI" }
    func nodeDir(_ name: String) -> String { "\(comfyPath)/custom_nodes/\(name)" }
    func recordPath(_ name: String) -> String { "\(world.state)/nodes/\(name).json" }

    func setNodes(_ list: [[String: Any]]) throws {
        nodes = list
        var c = world.defaultConfig()
        c["custom_nodes"] = list
        // The default config's ComfyUI URL is https; the nodes use git://.
        c["git"] = ["allowed_protocols": ["https", "git"]]
        try world.writeConfig(c)
    }

    func node(_ name: String, rev: String = "main", extra: [String: Any] = [:]) -> [String: Any] {
        var n: [String: Any] = ["name": name, "repo": git.url(name), "rev": rev]
        for (k, v) in extra { n[k] = v }
        return n
    }

    @discardableResult
    func comfy(_ args: [String]) throws -> HostCommand.Result { try world.comfy(args) }

    func record(_ name: String) throws -> CheckoutRecord {
        let data = try #require(FileManager.default.contents(atPath: recordPath(name)), "no record for \(name)")
        return try JSONDecoder().decode(CheckoutRecord.self, from: data)
    }

    func recordBytes(_ name: String) -> Data? { FileManager.default.contents(atPath: recordPath(name)) }
    func head(_ name: String) -> String? { GitFiles.detachedHead(nodeDir(name)) }

    /// Adds the sandbox user and shared group the config names to the world.
    func addSandboxAccounts() throws {
        let r = try world.sh("groupadd comfyshared && useradd --system -M -d \(world.home)/comfyui_sandbox -s /usr/sbin/nologin -g comfyshared comfyui_sandbox")
        guard r.succeeded else { throw SandboxError.failure("accounts: \(r.stderrText)") }
    }
}

@Suite("custom nodes", .serialized)
struct NodesTests {
    @Test("a new node is installed at its rev, root-owned, with a record; a re-run changes nothing", .requiresRoot)
    func addNodeThenNoop() throws {
        let w = try NodesWorld("nodes-add")
        let sha = try w.git.makeRepo("alpha")
        try w.setNodes([w.node("alpha")])
        let r = try w.comfy(["update-nodes"])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
        let rec = try w.record("alpha")
        #expect(rec.currentSHA == sha)
        #expect(rec.previousSHA == nil)
        #expect(rec.status == .installed)
        #expect(rec.repoURL == w.git.url("alpha"))
        #expect(rec.history.map(\.sha) == [sha])
        #expect(w.head("alpha") == sha)
        var st = stat()
        #expect(lstat(w.nodeDir("alpha"), &st) == 0 && st.st_uid == 0 && (st.st_mode & 0o022) == 0)
        #expect(lstat(w.nodeDir("alpha") + "/__init__.py", &st) == 0 && st.st_uid == 0 && (st.st_mode & 0o022) == 0)
        #expect(lstat(w.recordPath("alpha"), &st) == 0 && st.st_uid == 0 && (st.st_mode & 0o777) == 0o644)

        // A re-run: same bytes in the record, same commit, nothing moved, even after upstream moved on.
        let before = w.recordBytes("alpha")
        try w.git.commit("alpha", files: ["new.py": "x = 1\n"])
        let again = try w.comfy(["update-nodes"])
        #expect(again.status == 0)
        #expect(again.stdoutText.contains("alpha: up_to_date"), "\(again.stdoutText)")
        #expect(w.recordBytes("alpha") == before)
        #expect(w.head("alpha") == sha)
        // The same, for scripts.
        let json = try w.comfy(["update-nodes", "--json"])
        let parsed = try #require(try JSONSerialization.jsonObject(with: json.stdout) as? [String: Any])
        let outcomes = try #require(parsed["outcomes"] as? [[String: Any]])
        #expect(outcomes.count == 1 && outcomes[0]["name"] as? String == "alpha" && outcomes[0]["kind"] as? String == "up_to_date")
    }

    @Test("changing a node's rev moves it and records the previous commit", .requiresRoot)
    func revChangeMoves() throws {
        let w = try NodesWorld("nodes-rev")
        let first = try w.git.makeRepo("alpha")
        try w.git.tag("alpha", "v1")
        let second = try w.git.commit("alpha", files: ["b.py": "B = 2\n"])
        try w.setNodes([w.node("alpha", rev: "v1")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        #expect(w.head("alpha") == first)
        try w.setNodes([w.node("alpha", rev: "main")])
        let r = try w.comfy(["update-nodes"])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
        let rec = try w.record("alpha")
        #expect(rec.currentSHA == second)
        #expect(rec.previousSHA == first)
        #expect(rec.status == .updated)
        #expect(rec.history.map(\.sha) == [first, second])
        #expect(w.head("alpha") == second)
        // And to a full commit id.
        try w.setNodes([w.node("alpha", rev: first)])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        #expect(w.head("alpha") == first)
        #expect(try w.record("alpha").history.count == 3)
    }

    @Test("--pull moves a branch-tracking node after a new upstream commit; without --pull it stays", .requiresRoot)
    func pullMovesBranch() throws {
        let w = try NodesWorld("nodes-pull")
        let first = try w.git.makeRepo("alpha")
        try w.setNodes([w.node("alpha")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        let second = try w.git.commit("alpha", files: ["c.py": "C = 3\n"])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        #expect(w.head("alpha") == first)
        let r = try w.comfy(["update-nodes", "--pull"])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
        #expect(w.head("alpha") == second)
        let rec = try w.record("alpha")
        #expect(rec.currentSHA == second && rec.previousSHA == first)
        #expect(rec.history.last?.action == "pull")
    }

    @Test("rollback restores the previous commit and a second rollback toggles back", .requiresRoot)
    func rollbackToggles() throws {
        let w = try NodesWorld("nodes-rollback")
        let first = try w.git.makeRepo("alpha")
        try w.setNodes([w.node("alpha")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        let second = try w.git.commit("alpha", files: ["d.py": "D = 4\n"])
        #expect(try w.comfy(["update-nodes", "--pull"]).status == 0)
        // Upstream is unreachable from now on: rollback must not need it.
        w.git.stop()
        let r1 = try w.comfy(["rollback-nodes", "alpha"])
        #expect(r1.status == 0, "\(r1.stdoutText)\(r1.stderrText)")
        #expect(w.head("alpha") == first)
        var rec = try w.record("alpha")
        #expect(rec.currentSHA == first && rec.previousSHA == second && rec.status == .rolledBack)
        let r2 = try w.comfy(["rollback-nodes"])
        #expect(r2.status == 0)
        #expect(w.head("alpha") == second)
        rec = try w.record("alpha")
        #expect(rec.currentSHA == second && rec.previousSHA == first)
        #expect(rec.history.map(\.sha) == [first, second, first, second])
        // A plain update-nodes keeps a rolled-back node where it is.
        #expect(try w.comfy(["rollback-nodes"]).status == 0)
        #expect(try w.comfy(["update-nodes"]).status == 0)
        #expect(w.head("alpha") == first)
    }

    @Test("rollback of a node with no previous commit fails cleanly and changes nothing", .requiresRoot)
    func rollbackWithoutPrevious() throws {
        let w = try NodesWorld("nodes-noprev")
        let sha = try w.git.makeRepo("alpha")
        try w.setNodes([w.node("alpha")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        let before = w.recordBytes("alpha")
        let r = try w.comfy(["rollback-nodes", "alpha"])
        #expect(r.status == 1)
        #expect(r.stdoutText.contains("no previous commit"), "\(r.stdoutText)")
        #expect(w.recordBytes("alpha") == before)
        #expect(w.head("alpha") == sha)
    }

    @Test("a rev force-pushed away upstream fails clearly; checkout and record stay", .requiresRoot)
    func forcePushedAway() throws {
        let w = try NodesWorld("nodes-forced")
        let first = try w.git.makeRepo("alpha")
        try w.setNodes([w.node("alpha")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        // A commit that existed only briefly on a branch, then was force-pushed away and pruned.
        let doomed = try w.git.commit("alpha", files: ["e.py": "E = 5\n"], branch: "feature")
        try GitDaemon.sh("cd \(w.git.work("alpha")) && git reset -q --hard \(first) && git push -q -f \(w.git.served("alpha")) HEAD:refs/heads/feature && git -C \(w.git.served("alpha")) reflog expire --expire=now --all && git -C \(w.git.served("alpha")) gc -q --prune=now")
        let before = w.recordBytes("alpha")
        try w.setNodes([w.node("alpha", rev: doomed)])
        let r = try w.comfy(["update-nodes"])
        #expect(r.status == 1)
        #expect(r.stdoutText.contains("alpha: FAILED") && r.stdoutText.contains(doomed), "\(r.stdoutText)")
        #expect(r.stdoutText.contains("force-pushed"), "\(r.stdoutText)")
        #expect(w.recordBytes("alpha") == before)
        #expect(w.head("alpha") == first)
    }

    @Test("one node's fetch fails while the others update: they move, it stays, exit 1", .requiresRoot)
    func oneFetchFails() throws {
        let w = try NodesWorld("nodes-partial")
        try w.git.makeRepo("alpha")
        let b1 = try w.git.makeRepo("beta")
        try w.git.makeRepo("gamma")
        try w.setNodes([w.node("alpha"), w.node("beta"), w.node("gamma")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        let a2 = try w.git.commit("alpha", files: ["f.py": "F = 6\n"])
        try w.git.commit("beta", files: ["f.py": "F = 6\n"])
        let g2 = try w.git.commit("gamma", files: ["f.py": "F = 6\n"])
        // beta's repository disappears from the daemon.
        try GitDaemon.sh("mv \(w.git.served("beta")) \(w.git.base)/beta-gone.git")
        let betaBefore = w.recordBytes("beta")
        let r = try w.comfy(["update-nodes", "--pull"])
        #expect(r.status == 1)
        #expect(r.stdoutText.contains("beta: FAILED"), "\(r.stdoutText)")
        #expect(r.stdoutText.contains("1 of 3 failed"))
        let alphaRecord = try w.record("alpha"), gammaRecord = try w.record("gamma")
        #expect(w.head("alpha") == a2 && alphaRecord.currentSHA == a2)
        #expect(w.head("gamma") == g2 && gammaRecord.currentSHA == g2)
        #expect(w.head("beta") == b1)
        #expect(w.recordBytes("beta") == betaBefore)
    }

    @Test("hostile repos: hooks, .gitmodules and a committed fsmonitor config never run", .requiresRoot)
    func hostileRepos() throws {
        let w = try NodesWorld("nodes-hostile")
        let marker = "\(w.world.root)/PWNED"
        let payload = "#!/bin/sh\ntouch \(marker)-$(basename $0)\n"
        try w.git.makeRepo("other", files: ["x.py": "X = 1\n"])
        try w.git.makeRepo("evil", files: [
            "__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
            "hooks/post-checkout": payload,
            ".githooks/post-checkout": payload,
            "config": "[core]\n\tfsmonitor = \"touch \(marker)-fsmonitor\"\n\thooksPath = hooks\n",
            ".git-config": "[core]\n\tfsmonitor = \"touch \(marker)-fsmonitor2\"\n",
            ".gitmodules": "[submodule \"sub\"]\n\tpath = sub\n\turl = \(w.git.url("other"))\n[submodule \"ext\"]\n\tpath = ext\n\turl = ext::sh -c touch% \(marker)-ext\n",
            ".gitattributes": "* filter=evil\n",
        ])
        try GitDaemon.sh("chmod +x \(w.git.work("evil"))/hooks/post-checkout")
        // Hooks planted in the served repository itself, too (only client-side
        // names: the test's own pushes legitimately run receive-side hooks there).
        for hook in ["post-checkout", "post-merge", "pre-auto-gc", "fsmonitor-watchman"] {
            try payload.write(toFile: "\(w.git.served("evil"))/hooks/\(hook)", atomically: true, encoding: .utf8)
            chmod("\(w.git.served("evil"))/hooks/\(hook)", 0o755)
        }
        try w.setNodes([w.node("evil")])
        let r = try w.comfy(["update-nodes"])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
        // What an attacker with one foothold would leave in the checkout's own
        // .git: a live hook and an fsmonitor command. Root-owned, as if planted.
        let gitDir = w.nodeDir("evil") + "/.git"
        try FileManager.default.createDirectory(atPath: gitDir + "/hooks", withIntermediateDirectories: true)
        try payload.write(toFile: gitDir + "/hooks/post-checkout", atomically: true, encoding: .utf8)
        chmod(gitDir + "/hooks/post-checkout", 0o755)
        try GitDaemon.sh("git config -f \(gitDir)/config core.fsmonitor 'touch \(marker)-fsmonitor-config'")
        let second = try w.git.commit("evil", files: ["y.py": "Y = 2\n"])
        #expect(try w.comfy(["update-nodes", "--pull"]).status == 0)
        #expect(try w.comfy(["rollback-nodes"]).status == 0)
        #expect(w.head("evil") != second)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: w.world.root).filter { $0.hasPrefix("PWNED") }
        #expect(leftovers.isEmpty, "ran: \(leftovers)")
        // The submodule was not fetched, and the checkout's hooks dir is empty.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: w.nodeDir("evil") + "/sub"))?.isEmpty ?? true)
        // Control: the planted hook is live for a plain git, so the absence above means something.
        try GitDaemon.sh("cd \(w.nodeDir("evil")) && git -c safe.directory='*' checkout -q --detach \(second)")
        #expect(FileManager.default.fileExists(atPath: "\(marker)-post-checkout"), "the control hook did not run; the test proves nothing")
    }

    @Test("scan-nodes finds the planted patterns in a served hostile node and nothing in a clean one", .requiresRoot)
    func scanServedNodes() throws {
        let w = try NodesWorld("nodes-scan")
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/nodes").path
        for name in ["hostile-node", "clean-node"] {
            try GitDaemon.sh("git init -q --bare -b main \(w.git.served(name)) && cp -a \(fixtures)/\(name) \(w.git.work(name)) && cd \(w.git.work(name)) && git init -q -b main && git add -A && git -c user.name=t -c user.email=t@x commit -qm fixture && git push -q \(w.git.served(name)) HEAD:main")
        }
        try w.setNodes([w.node("hostile-node"), w.node("clean-node")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        let hostile = try w.comfy(["scan-nodes", "hostile-node", "--json", "--fail-on", "high"])
        #expect(hostile.status == 3, "\(hostile.stderrText)")
        let json = try #require(try JSONSerialization.jsonObject(with: hostile.stdout) as? [String: Any])
        let rules = Set((json["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String })
        #expect(rules.isSuperset(of: ["yaml-load", "pickle", "torch-load", "dynamic-code", "shell-true", "raw-ip-url", "encoded-code",
                                      "pth-file", "install-time-code", "write-outside", "home-directory", "site-packages"]), "\(rules)")
        let clean = try w.comfy(["scan-nodes", "clean-node", "--fail-on", "low"])
        #expect(clean.status == 0, "\(clean.stdoutText)")
        #expect(clean.stdoutText.contains("0 high, 0 medium, 0 low"))
    }

    @Test("a node that asks for submodules gets only those its allowed protocols reach; ext:: never runs", .requiresRoot)
    func submodulesOnlyWhenAsked() throws {
        let w = try NodesWorld("nodes-submodules")
        let marker = "\(w.world.root)/PWNED-ext"
        try w.git.makeRepo("other", files: ["x.py": "X = 1\n"])
        let otherSHA = try w.git.head("other")
        try w.git.makeRepo("withsub", files: ["__init__.py": "\n"])
        try GitDaemon.sh("cd \(w.git.work("withsub")) && git -c protocol.file.allow=always submodule add -q \(w.git.url("other")) sub && git -c user.name=t -c user.email=t@x commit -qm sub && git push -q \(w.git.served("withsub")) HEAD:main")
        try w.git.makeRepo("extsub", files: [".gitmodules": "[submodule \"e\"]\n\tpath = e\n\turl = ext::sh -c touch% \(marker)\n"])
        try GitDaemon.sh("cd \(w.git.work("extsub")) && git update-index --add --cacheinfo 160000,\(otherSHA),e && git -c user.name=t -c user.email=t@x commit -qm e && git push -q \(w.git.served("extsub")) HEAD:main")
        try w.setNodes([w.node("withsub", extra: ["submodules": true]), w.node("extsub", extra: ["submodules": true])])
        let r = try w.comfy(["update-nodes"])
        #expect(FileManager.default.fileExists(atPath: w.nodeDir("withsub") + "/sub/x.py"), "\(r.stdoutText)")
        #expect(r.stdoutText.contains("extsub: FAILED"), "\(r.stdoutText)")
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    @Test("option-like, ext:: and file:// URLs are rejected before git runs (exit 65)", .requiresRoot,
          arguments: ["-oProxyCommand=touch MARKER", "ext::sh -c touch% MARKER", "file:///MARKER-repo", "--upload-pack=touch MARKER"])
    func hostileURLs(url: String) throws {
        let w = try NodesWorld("nodes-urls")
        let marker = "\(w.world.root)/PWNED-url"
        try w.setNodes([["name": "bad", "repo": url.replacingOccurrences(of: "MARKER", with: marker), "rev": "main"]])
        let r = try w.comfy(["update-nodes"])
        #expect(r.status == 65, "\(r.stdoutText)\(r.stderrText)")
        #expect(r.stderrText.contains("custom_nodes[0].repo"))
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(!FileManager.default.fileExists(atPath: w.nodeDir("bad")))
    }

    @Test("the sandbox user cannot write, replace or add a record", .requiresRoot)
    func sandboxCannotWriteRecords() throws {
        let w = try NodesWorld("nodes-records")
        try w.addSandboxAccounts()
        try w.git.makeRepo("alpha")
        try w.setNodes([w.node("alpha")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        let uid = try #require(w.world.uid("comfyui_sandbox"))
        let gid = try #require(w.world.gid("comfyshared"))
        let asSandbox = "setpriv --reuid=\(uid) --regid=\(gid) --init-groups"
        let rec = w.recordPath("alpha")
        for attempt in ["echo '{}' > \(rec)", "echo x >> \(rec)", "echo '{}' > \(w.world.state)/nodes/beta.json",
                        "mv \(rec) \(rec).x", "rm -f \(rec)", "echo x > \(w.nodeDir("alpha"))/__init__.py",
                        "echo x > \(w.nodeDir("alpha"))/.git/HEAD", "touch \(w.nodeDir("alpha"))/planted.py"] {
            let r = try w.world.sh("\(asSandbox) /bin/sh -c \"\(attempt)\"")
            #expect(!r.succeeded, "the sandbox could: \(attempt)")
            #expect(r.stderrText.contains("Permission denied"), "\(attempt): \(r.stderrText)")
        }
        #expect(try w.record("alpha").name == "alpha")
    }

    @Test("a truncated record is reported and not trusted; the checkout stays", .requiresRoot)
    func truncatedRecord() throws {
        let w = try NodesWorld("nodes-truncated")
        let first = try w.git.makeRepo("alpha")
        try w.setNodes([w.node("alpha")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        try w.git.commit("alpha", files: ["g.py": "G = 7\n"])
        let full = try #require(w.recordBytes("alpha"))
        try full.prefix(full.count / 2).write(to: URL(fileURLWithPath: w.recordPath("alpha")))
        for args in [["update-nodes", "--pull"], ["rollback-nodes"]] {
            let r = try w.comfy(args)
            #expect(r.status == 1)
            #expect(r.stdoutText.contains("record not trusted"), "\(r.stdoutText)")
            #expect(r.stdoutText.contains(w.recordPath("alpha")))
        }
        #expect(w.head("alpha") == first)
    }

    @Test("kill -9 at random points during update-nodes: records parse, match HEAD or previous, rollback works", .requiresRoot)
    func killNineLoop() throws {
        let w = try NodesWorld("nodes-kill")
        let names = ["k1", "k2", "k3"]
        var shas: [String: [String]] = [:]
        for n in names {
            let a = try w.git.makeRepo(n, files: ["__init__.py": "A = 1\n", "big.py": String(repeating: "# filler\n", count: 20000)])
            let b = try w.git.commit(n, files: ["__init__.py": "B = 2\n", "big.py": String(repeating: "# other\n", count: 20000), "more.py": "M = 1\n"])
            shas[n] = [a, b]
        }
        // Both commits of every repo are fetched once; from then on moves need no network.
        try w.setNodes(names.map { w.node($0, rev: shas[$0]![0]) })
        #expect(try w.comfy(["update-nodes"]).status == 0)
        // Timed, as the loop runs it: the kills below land within this span,
        // so that most of them interrupt the work however fast it has become.
        try w.setNodes(names.map { w.node($0, rev: shas[$0]![1]) })
        let t0 = Date()
        #expect(try w.world.run([World.binary, "update-nodes"], environment: ["COMFY_SANDBOX_CONFIG": w.world.configPath]).status == 0)
        let span = max(0.01, Date().timeIntervalSince(t0))
        var killed = 0
        for i in 0..<50 {
            try w.setNodes(names.map { w.node($0, rev: shas[$0]![i % 2]) })
            let delay = Double.random(in: 0.0...span)
            let r = try w.world.run(["/usr/bin/timeout", "-s", "KILL", String(format: "%.3f", delay), World.binary, "update-nodes"],
                                    environment: ["COMFY_SANDBOX_CONFIG": w.world.configPath])
            if r.status == 137 { killed += 1 }
            for n in names {
                guard FileManager.default.fileExists(atPath: w.recordPath(n)) else { continue }
                let rec = try w.record(n)
                let head = w.head(n)
                #expect(head == rec.currentSHA || head == rec.previousSHA, "iteration \(i): \(n) HEAD \(head ?? "-") vs record \(rec.currentSHA)/\(rec.previousSHA ?? "-")")
            }
        }
        #expect(killed >= 10, "only \(killed) runs were killed mid-way (a move takes \(span) s)")
        // A normal run finishes whatever was interrupted; then rollback works.
        let fin = try w.comfy(["update-nodes"])
        #expect(fin.status == 0, "\(fin.stdoutText)\(fin.stderrText)")
        for n in names {
            let rec = try w.record(n)
            #expect(w.head(n) == rec.currentSHA)
            let rb = try w.comfy(["rollback-nodes", n])
            #expect(rb.status == 0, "\(rb.stdoutText)")
            #expect(w.head(n) == rec.previousSHA)
        }
    }

    @Test("disabled nodes move to NAME.disabled and come back; unknown entries are reported, never deleted", .requiresRoot)
    func disableAndUnmanaged() throws {
        let w = try NodesWorld("nodes-disable")
        let sha = try w.git.makeRepo("alpha")
        try w.setNodes([w.node("alpha")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        try World.sh("mkdir -p \(w.comfyPath)/custom_nodes/handmade && echo x > \(w.comfyPath)/custom_nodes/handmade/__init__.py")
        try w.setNodes([w.node("alpha", extra: ["enabled": false])])
        let r = try w.comfy(["update-nodes"])
        #expect(r.status == 0)
        #expect(r.stdoutText.contains("custom_nodes/handmade"), "\(r.stdoutText)")
        #expect(!FileManager.default.fileExists(atPath: w.nodeDir("alpha")))
        #expect(GitFiles.detachedHead(w.nodeDir("alpha") + ".disabled") == sha)
        #expect(try w.record("alpha").status == .disabled)
        try w.setNodes([w.node("alpha")])
        #expect(try w.comfy(["update-nodes"]).status == 0)
        #expect(w.head("alpha") == sha)
        #expect(try w.record("alpha").status == .upToDate)
        #expect(FileManager.default.fileExists(atPath: "\(w.comfyPath)/custom_nodes/handmade/__init__.py"))
    }

    @Test("a writable node is group-writable for the shared group, its .git stays root's", .requiresRoot)
    func writableNode() throws {
        let w = try NodesWorld("nodes-writable")
        try w.addSandboxAccounts()
        try w.git.makeRepo("alpha")
        try w.setNodes([w.node("alpha", extra: ["writable": true])])
        let r = try w.comfy(["update-nodes"])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
        let uid = try #require(w.world.uid("comfyui_sandbox"))
        let gid = try #require(w.world.gid("comfyshared"))
        let asSandbox = "setpriv --reuid=\(uid) --regid=\(gid) --init-groups"
        #expect(try w.world.sh("\(asSandbox) /bin/sh -c 'echo y >> \(w.nodeDir("alpha"))/__init__.py && touch \(w.nodeDir("alpha"))/new.py'").succeeded)
        let denied = try w.world.sh("\(asSandbox) /bin/sh -c 'echo x > \(w.nodeDir("alpha"))/.git/HEAD || mv \(w.nodeDir("alpha"))/.git \(w.nodeDir("alpha"))/g'")
        #expect(!denied.succeeded)
        // update-nodes still works on it (git runs: the worktree is root-owned and sticky).
        #expect(try w.comfy(["update-nodes", "--pull"]).status == 0)
        // Made read-only again: sealed back to root-only, and the sandbox can no longer write.
        try w.setNodes([w.node("alpha")])
        let sealed = try w.comfy(["update-nodes"])
        #expect(sealed.status == 0, "\(sealed.stdoutText)\(sealed.stderrText)")
        let after = try w.world.sh("\(asSandbox) /bin/sh -c 'echo z >> \(w.nodeDir("alpha"))/__init__.py'")
        #expect(!after.succeeded)
        let modes = try World.sh("find \(w.nodeDir("alpha")) -path '*/.git' -prune -o \\( ! -user root -o -perm /022 \\) -print")
        #expect(modes.stdoutText.isEmpty, "still writable: \(modes.stdoutText)")
    }

    @Test("ComfyUI is checked out at comfyui.rev with its own record, and rolls back", .requiresRoot)
    func comfyUICheckout() throws {
        let w = try NodesWorld("nodes-comfyui")
        let first = try w.git.makeRepo("ComfyUI", files: ["main.py": "print('hi')\n"])
        var c = w.world.defaultConfig()
        // No extra requirements: the default (requests) would need PyPI.
        c["comfyui"] = ["repo": w.git.url("ComfyUI"), "rev": "main", "path": w.comfyPath, "python": "/usr/bin/python3", "install_requirements": false,
                        "extra_requirements": [String]()]
        c["git"] = ["allowed_protocols": ["git"]]
        try w.world.writeConfig(c)
        let r = try w.comfy(["update-comfyui"])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
        #expect(GitFiles.detachedHead(w.comfyPath) == first)
        let data = try #require(FileManager.default.contents(atPath: "\(w.world.state)/comfyui.json"))
        #expect(try JSONDecoder().decode(CheckoutRecord.self, from: data).currentSHA == first)
        let second = try w.git.commit("ComfyUI", files: ["main.py": "print('v2')\n"])
        #expect(try w.comfy(["update-comfyui", "--pull"]).status == 0)
        #expect(GitFiles.detachedHead(w.comfyPath) == second)
        #expect(try w.comfy(["rollback-comfyui"]).status == 0)
        #expect(GitFiles.detachedHead(w.comfyPath) == first)
    }
}

@Suite("python environment", .serialized)
struct PythonEnvTests {
    @Test("requirements install as the sandbox user, then are sealed root-owned, byte-compiled and importable", .requiresRoot)
    func confinedInstall() throws {
        let w = try NodesWorld("nodes-python")
        try w.addSandboxAccounts()
        let sandboxUID = try #require(w.world.uid("comfyui_sandbox"))
        // An sdist whose build records the uid that built it: running code
        // at install time is exactly what must not happen as root.
        let index = try LocalIndex(w.world.data + "/wheels")
        try index.sdistRecordingBuilder("uidprobe", "1.0")
        try World.sh("chmod -R a+rX \(w.world.data)")
        try w.git.makeRepo("ComfyUI", files: ["main.py": "print('hi')\n", "requirements.txt": "uidprobe\n"])
        var c = w.world.defaultConfig()
        c["comfyui"] = ["repo": w.git.url("ComfyUI"), "rev": "main", "path": w.comfyPath, "python": "/usr/bin/python3",
                        "install_requirements": true, "pip_args": index.pipArgs, "extra_requirements": [] as [String]]
        c["git"] = ["allowed_protocols": ["https", "git"]]
        try w.world.writeConfig(c)
        let r = try w.comfy(["update-comfyui"])
        #expect(r.status == 0, "\((r.stdoutText + r.stderrText).replacingOccurrences(of: "\n", with: " | "))")
        let venv = "\(w.world.opt)/comfy-sandbox/venv"
        let sealedDirs = (try? FileManager.default.contentsOfDirectory(atPath: venv + "/cs-requirements")) ?? []
        let sealed = venv + "/cs-requirements/" + (try #require(sealedDirs.first))
        let probe = try String(contentsOfFile: sealed + "/uidprobe/__init__.py", encoding: .utf8)
        #expect(probe == "BUILT_BY_UID = \(sandboxUID)\n", "built by: \(probe)")
        #expect(sandboxUID != 0)
        // Sealed: everything root-owned, nothing group/other-writable, compiled.
        let walk = try World.sh("find \(sealed) \\( ! -user root -o -perm /022 \\) -print")
        #expect(walk.stdoutText.isEmpty, "not sealed: \(walk.stdoutText)")
        let pyc = try World.sh("find \(sealed)/uidprobe -name '*.pyc'")
        #expect(!pyc.stdoutText.isEmpty, "not byte-compiled")
        // Importable from the venv, as the sandbox user, who cannot write there.
        let gid = try #require(w.world.gid("comfyshared"))
        let asSandbox = "setpriv --reuid=\(sandboxUID) --regid=\(gid) --init-groups"
        let imp = try w.world.sh("cd / && \(asSandbox) \(venv)/bin/python -c 'import uidprobe; print(uidprobe.BUILT_BY_UID)'")
        #expect(imp.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "\(sandboxUID)", "\(imp.stderrText)")
        let write = try w.world.sh("\(asSandbox) /bin/sh -c 'echo x > \(sealed)/uidprobe/__init__.py'")
        #expect(!write.succeeded && write.stderrText.contains("Permission denied"))
        // Unchanged requirements: nothing reinstalled.
        let again = try w.comfy(["update-comfyui"])
        #expect(again.stdoutText.contains("python: up_to_date"), "\(again.stdoutText)")
    }
}
