import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS

/// plan / provision / uninstall against real shadow-utils, in throwaway worlds.
@Suite("provision in a world", .requiresRoot, .serialized)
struct ProvisionTests {
    func passwdEntry(_ w: World, _ name: String) -> [String]? {
        guard let text = try? String(contentsOfFile: w.etc + "/passwd", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }
            .first { $0.first == name }
    }

    func shadowField(_ w: World, _ name: String) -> String? {
        guard let text = try? String(contentsOfFile: w.etc + "/shadow", encoding: .utf8) else { return nil }
        return text.split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }
            .first { $0.first == name }?[1]
    }

    func stat(_ path: String) throws -> stat {
        var st = Glibc.stat()
        try #require(lstat(path, &st) == 0, "\(path) missing")
        return st
    }

    @Test("provision from scratch creates the accounts, the shares with modes, setgid and ACLs, and the views")
    func fromScratch() throws {
        let w = try World.provisioned("prov-scratch")
        let gid = try #require(w.gid(World.group))
        let uid = try #require(w.uid(World.sandboxUser))
        let alice = try #require(w.uid("alice"))
        let pw = try #require(passwdEntry(w, World.sandboxUser))
        #expect(pw[6] == "/usr/sbin/nologin")
        #expect(UInt32(pw[3]) == gid, "primary group is the shared group")
        #expect(uid < 1000, "a system account")
        #expect(shadowField(w, World.sandboxUser)?.hasPrefix("!") == true, "no password")
        let groupLine = try String(contentsOfFile: w.etc + "/group", encoding: .utf8).split(separator: "\n").first { $0.hasPrefix("comfyshared:") }
        #expect(groupLine?.hasSuffix("alice") == true, "alice is a member: \(groupLine ?? "")")

        let home = try stat("\(w.home)/comfyui_sandbox")
        #expect(home.st_uid == uid && home.st_mode & 0o7777 == 0o700)

        for (name, mode) in [("models", 0o2755), ("workflows", 0o2775), ("input", 0o2775), ("output", 0o2775)] {
            let st = try stat(w.sharePath(name))
            #expect(st.st_uid == alice, "\(name) owner")
            #expect(st.st_gid == gid, "\(name) group")
            #expect(st.st_mode & 0o7777 == mode_t(mode), "\(name) mode \(String(st.st_mode & 0o7777, radix: 8))")
            let acl = try World.sh("getfacl -n -d -p '\(w.sharePath(name))'").stdoutText
            if mode == 0o2775 {
                #expect(acl.contains("\ngroup:\(gid):rwx\n") && acl.contains("\nother::r-x\n"), "\(name) default ACL: \(acl)")
            } else {
                #expect(!acl.contains("user::"), "read-only share has no default ACL: \(acl)")
            }
        }
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: "\(w.opt)/comfy-sandbox/ComfyUI/user/default/workflows")
        #expect(link == w.sharePath("workflows"))
        // The home got a traverse-only entry for the group: --x, nothing more.
        let homeACL = try World.sh("getfacl -n -p '\(w.home)/alice'").stdoutText
        #expect(homeACL.contains("group:\(gid):--x"), "\(homeACL)")
        // The sandbox can now write into a rw share and not into the ro one.
        #expect(try w.asSandbox("touch '\(w.sharePath("output"))/ok'").status == 0)
        #expect(try w.asSandbox("touch '\(w.sharePath("models"))/no'").status != 0)
        #expect(try w.asSandbox("ls '\(w.home)/alice'").status != 0, "the home is passable, not listable")
        let out = try stat("\(w.sharePath("output"))/ok")
        #expect(out.st_gid == gid && out.st_mode & 0o777 == 0o664, "new files inherit group and 0664")
        // The journal has one line per applied change.
        let journal = Journal(stateDir: w.state).lines()
        #expect(journal.count >= 10 && journal.allSatisfy { $0.contains(" provision ") })
        let jst = try stat(w.state + "/journal.log")
        #expect(jst.st_uid == 0 && jst.st_mode & 0o7777 == 0o644)
    }

    @Test("re-provision changes nothing and plan is empty afterwards")
    func idempotent() throws {
        let w = try World.provisioned("prov-idem")
        let before = try w.treeSnapshot()
        let journal = Journal(stateDir: w.state).lines().count
        let again = try w.comfy(World.provisionFoundation)
        #expect(again.status == 0)
        #expect(again.stdoutText.contains("provision: nothing to do"), "\(again.stdoutText)")
        let plan = try w.comfy(World.planFoundation)
        #expect(plan.status == 0)
        #expect(plan.stdoutText == "plan: nothing to do\n", "\(plan.stdoutText)")
        #expect(Journal(stateDir: w.state).lines().count == journal)
        // Only the lock file's holder line may differ.
        let strip = { (s: String) in s.split(separator: "\n").filter { !$0.contains("/lock") && !$0.contains("./state ") }.joined(separator: "\n") }
        #expect(strip(try w.treeSnapshot()) == strip(before))
    }

    @Test("plan lists the changes, changes nothing, and provision applies exactly those")
    func planMatchesProvision() throws {
        let w = try World.provisioned("prov-plan", provision: false)
        let before = try w.treeSnapshot()
        let plan = try w.comfy(World.planFoundation)
        #expect(plan.status == 0, "\(plan.stderrText)")
        #expect(try w.treeSnapshot() == before, "plan changed the world")
        let planned = plan.stdoutText.split(separator: "\n").dropLast().map(String.init)
        #expect(planned.contains("accounts: create group comfyshared -> system group"))
        let applied = try w.comfy(World.provisionFoundation).stdoutText.split(separator: "\n").dropLast().map(String.init)
        #expect(applied == planned)
        // Drift is planned and repaired.
        chmod(w.sharePath("input"), 0o755)
        let drift = try w.comfy(["plan", "--only", "tree"]).stdoutText
        #expect(drift.contains("tree: set mode \(w.sharePath("input")) 0755 -> 2775"), "\(drift)")
        #expect(try w.comfy(["provision", "--only", "tree"]).status == 0)
        #expect(try stat(w.sharePath("input")).st_mode & 0o7777 == 0o2775)
    }

    @Test("an existing group is adopted, not recreated")
    func adoptGroup() throws {
        let w = try World.provisioned("prov-adopt", provision: false)
        #expect(try w.sh("groupadd -g 1500 comfyshared").status == 0)
        let r = try w.comfy(World.provisionFoundation)
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(!r.stdoutText.contains("create group"))
        #expect(w.gid("comfyshared") == 1500)
        #expect(AccountsRecord.load(stateDir: w.state).createdGroup == false)
        #expect(try stat(w.sharePath("input")).st_gid == 1500)
    }

    @Test("a conflicting sandbox user is an error that says what to do, and nothing is created")
    func conflictingUser() throws {
        let w = try World.provisioned("prov-conflict", provision: false)
        #expect(try w.sh("useradd -m -s /bin/bash comfyui_sandbox && echo comfyui_sandbox:secret | chpasswd").status == 0)
        let r = try w.comfy(World.provisionFoundation)
        #expect(r.status == 1)
        #expect(r.stderrText.contains("sandbox_user.name"), "\(r.stderrText)")
        #expect(r.stderrText.contains("userdel comfyui_sandbox"), "\(r.stderrText)")
        #expect(w.gid("comfyshared") == nil, "nothing applied before the error")
        #expect(FileManager.default.fileExists(atPath: w.sharePath("input")) == false)
    }

    @Test("an invalid config exits 65 and leaves the world byte-identical")
    func invalidConfig() throws {
        let w = try World.provisioned("prov-invalid", provision: false)
        var c = w.defaultConfig()
        c["shares"] = [["name": "x", "path": "\(w.home)/alice/x", "mount": "../escape", "access": "read-write"]]
        try w.writeConfig(c)
        let before = try w.treeSnapshot()
        for cmd in [["provision"], ["plan"], ["fix-permissions"], ["uninstall"]] {
            let r = try w.comfy(cmd)
            #expect(r.status == 65, "\(cmd): \(r.stderrText)")
            #expect(r.stderrText.contains("shares[0].mount"))
        }
        #expect(try w.treeSnapshot() == before)
    }

    @Test("a second provision waits for the state lock, then finds nothing to do")
    func serialised() throws {
        let w = try World.provisioned("prov-lock")
        // Hold the lock from outside until provision says it waits, then a
        // second longer; provision must not finish before the lock is let go.
        // (No fixed sleeps: on a slow VM the binary may take seconds to start.)
        let script = """
            flock "$WORLD/state/lock" sh -c 'touch "$WORLD/held"; while [ ! -e "$WORLD/go" ]; do sleep 0.1; done' &
            holder=$!
            while [ ! -e "$WORLD/held" ]; do sleep 0.05; done
            ( "$CS" provision --only accounts,tree 2>"$WORLD/err"; echo $? >"$WORLD/rc" ) &
            for i in $(seq 1 1200); do grep -q waiting "$WORLD/err" 2>/dev/null && break; sleep 0.1; done
            sleep 1
            [ -e "$WORLD/rc" ] && echo "FINISHED WHILE LOCKED"
            touch "$WORLD/go"; wait
            cat "$WORLD/err"; echo "rc=$(cat "$WORLD/rc")"
            """
        let r = try w.run(["/bin/sh", "-c", script], environment: ["CS": World.binary, "COMFY_SANDBOX_CONFIG": w.configPath])
        #expect(r.stdoutText.contains("rc=0"), "\(r.stdoutText) \(r.stderrText)")
        #expect(r.stdoutText.contains("waiting for another comfy-sandbox command"), "\(r.stdoutText)")
        #expect(!r.stdoutText.contains("FINISHED WHILE LOCKED"), "\(r.stdoutText)")
        // Two at once from scratch: both succeed, each change applied once.
        let w2 = try World.provisioned("prov-lock2", provision: false)
        let both = try w2.run(["/bin/sh", "-c", "\"$CS\" provision --only accounts,tree > \"$WORLD/a.out\" 2>&1 & \"$CS\" provision --only accounts,tree > \"$WORLD/b.out\" 2>&1; wait; cat \"$WORLD/a.out\" \"$WORLD/b.out\""],
                              environment: ["CS": World.binary, "COMFY_SANDBOX_CONFIG": w2.configPath])
        #expect(both.status == 0)
        let lines = Journal(stateDir: w2.state).lines()
        #expect(lines.filter { $0.contains("create group") }.count == 1, "\(both.stdoutText)")
        #expect(try w2.comfy(World.planFoundation).stdoutText == "plan: nothing to do\n")
    }

    @Test("uninstall removes user, group, code and state but keeps the shares")
    func uninstall() throws {
        let w = try World.provisioned("prov-uninstall")
        let gid = try #require(w.gid(World.group))
        // What a session leaves in the shares: files and directories in the
        // group (setgid, default ACL inherited), and a symlink to a file the
        // hand-back must not touch.
        let input = w.sharePath("input")
        #expect(try w.sh("setpriv --reuid=comfyui_sandbox --regid=\(gid) --clear-groups sh -c 'umask 077; mkdir -p \(input)/a/b && echo x > \(input)/a/b/out.png && ln -s /etc/hostname \(input)/a/link'").succeeded)
        let before = try World.sh("stat -c '%g %a' /etc/hostname").stdoutText
        let r = try w.comfy(["uninstall"])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(w.uid(World.sandboxUser) == nil)
        #expect(w.gid(World.group) == nil)
        #expect(!FileManager.default.fileExists(atPath: "\(w.opt)/comfy-sandbox/ComfyUI"))
        #expect(!FileManager.default.fileExists(atPath: w.state))
        #expect(FileManager.default.fileExists(atPath: w.sharePath("models")))
        #expect(r.stdoutText.contains("removing the user comfyui_sandbox"))
        #expect(r.stdoutText.contains("keeping the share models"))
        let acl = try World.sh("getfacl -n -p '\(w.home)/alice'").stdoutText
        #expect(!acl.contains("group:\(gid):"), "the traverse ACL entry is gone: \(acl)")
        // The shares are handed back: nothing in them keeps the freed gid,
        // in its group or in an ACL entry (a group made later would get it).
        let alice = try #require(w.gid("alice"))
        let groups = try World.sh("find '\(w.home)/alice/workspace' -xdev ! -type l -printf '%G %p\\n'").stdoutText
        #expect(!groups.contains("\(gid) "), "\(groups)")
        #expect(try World.sh("stat -c %g '\(input)/a/b/out.png' '\(input)'").stdoutText == "\(alice)\n\(alice)\n")
        let acls = try World.sh("getfacl -R -n -p --physical '\(w.home)/alice/workspace'").stdoutText
        #expect(!acls.contains("group:\(gid):"), "\(acls)")
        #expect(!acls.contains("default:"), "a default ACL left with no named entry is removed: \(acls)")
        #expect(r.stdoutText.contains("handing the share input back to group alice"), "\(r.stdoutText)")
        #expect(try World.sh("stat -c '%g %a' /etc/hostname").stdoutText == before, "a symlink in a share is never followed")
    }

    @Test("uninstall stops a launcher started without systemd first (userdel would refuse while it runs)")
    func uninstallStopsLauncher() throws {
        let w = try World.provisioned("prov-uninstall-running", provision: false)
        var config = w.defaultConfig()
        config["launcher"] = ["port": LauncherWorld.freePort(), "gpu": "none", "landlock": TestKernel.landlockMode] as [String: Any]
        try w.writeConfig(config)
        #expect(try w.comfy(World.provisionFoundation).status == 0)
        let comfy = "\(w.opt)/comfy-sandbox/ComfyUI"
        #expect(try w.sh("mkdir -p \(comfy)/user && cp \(LauncherWorld.standIn) \(comfy)/main.py && chown comfyui_sandbox \(comfy)/user").succeeded)
        let start = try w.comfy(["start"])
        try #require(start.succeeded, "\(start.stdoutText) \(start.stderrText)")
        let launcherPid = try w.launcherPid()
        defer { kill(launcherPid, SIGKILL) }
        let r = try w.comfy(["uninstall"])
        #expect(r.status == 0, "\(r.stdoutText) \(r.stderrText)")
        #expect(r.stdoutText.contains("stopped the running launcher (pid \(launcherPid))"), "\(r.stdoutText)")
        // It removes its pid file just before it exits: give it that moment.
        func gone() -> Bool {
            let stat = (try? String(contentsOfFile: "/proc/\(launcherPid)/stat", encoding: .utf8)) ?? ""
            return stat.isEmpty || stat.contains(") Z")
        }
        for _ in 0..<50 where !gone() { usleep(50_000) }
        #expect(gone(), "the launcher is gone")
        #expect(w.uid(World.sandboxUser) == nil)
    }

    @Test("uninstall keeps an adopted group; --purge-data removes the shares")
    func uninstallAdoptedPurge() throws {
        let w = try World.provisioned("prov-purge", provision: false)
        #expect(try w.sh("groupadd comfyshared").status == 0)
        #expect(try w.comfy(World.provisionFoundation).status == 0)
        let r = try w.comfy(["uninstall", "--purge-data"])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("keeping the group comfyshared: comfy-sandbox did not create it"), "\(r.stdoutText)")
        #expect(w.gid("comfyshared") != nil)
        #expect(!FileManager.default.fileExists(atPath: w.sharePath("models")))
        #expect(FileManager.default.fileExists(atPath: "\(w.home)/alice"), "the home itself stays")
    }

    @Test("uninstall as the sandbox left things: its symlinks are removed, not followed; a mount inside is not entered and is named")
    func uninstallAttacked() throws {
        let w = try World.provisioned("prov-uninstall-attacked")
        let home = "\(w.home)/comfyui_sandbox"
        let user = "\(w.opt)/comfy-sandbox/ComfyUI/user"
        // What a node could plant where the sandbox writes: links to the
        // host's files and directories, in the home and in ComfyUI/user.
        #expect(try w.sh("setpriv --reuid=comfyui_sandbox --regid=\(try #require(w.gid(World.group))) --clear-groups sh -c "
                         + "'ln -s /etc \(home)/etc && mkdir -p \(home)/deep/a && ln -s /etc/hostname \(home)/deep/a/host && ln -s / \(user)/root'").succeeded)
        let hostBefore = try World.sh("stat -c '%i %h %a' /etc/hostname /etc/passwd").stdoutText
        // A mount inside comfyui.path: uninstall must not walk into it.
        let mnt = "\(user)/mnt"
        #expect(mkdir(mnt, 0o700) == 0)
        try #require(mount("tmpfs", mnt, "tmpfs", 0, "mode=0700") == 0, "mount tmpfs: \(Errno.current)")
        defer { umount2(mnt, Int32(MNT_DETACH)) }
        #expect(FileManager.default.createFile(atPath: mnt + "/precious", contents: Data("keep".utf8)))
        let r = try w.comfy(["uninstall"])
        #expect(r.status == 1, "\(r.stdoutText) \(r.stderrText)")
        #expect(r.stderrText.contains("mnt") && r.stderrText.contains("mount point"), "the mount is named: \(r.stderrText)")
        #expect((try? String(contentsOfFile: mnt + "/precious", encoding: .utf8)) == "keep", "the walk crossed into the mount")
        #expect(try World.sh("stat -c '%i %h %a' /etc/hostname /etc/passwd").stdoutText == hostBefore, "a link was followed")
        #expect(!FileManager.default.fileExists(atPath: home), "the sandbox home and its links are gone")
        #expect(SafeFS.lstat(user + "/root") == nil, "the link next to the mount is gone")
        // Unmounted, uninstall finishes what it left.
        umount2(mnt, Int32(MNT_DETACH))
        let again = try w.comfy(["uninstall"])
        #expect(again.status == 0, "\(again.stdoutText) \(again.stderrText)")
        #expect(!FileManager.default.fileExists(atPath: "\(w.opt)/comfy-sandbox/ComfyUI"))
    }

    @Test("status reports each share's drift and the pending plan, and exits 3")
    func statusDrift() throws {
        let w = try World.provisioned("prov-status")
        let clean = try w.comfy(["status", "--json"])
        let items = try JSONDecoder().decode([StatusItem].self, from: clean.stdout).filter { $0.section == "provision" }
        // (pending changes may include other areas this world does not serve)
        #expect(items.filter { $0.key != "pending changes" }.allSatisfy { $0.ok }, "\(items.filter { !$0.ok })")
        chmod(w.sharePath("output"), 0o775)
        let drift = try w.comfy(["status", "--json"])
        #expect(drift.status == 3)
        let bad = try JSONDecoder().decode([StatusItem].self, from: drift.stdout).filter { !$0.ok }
        #expect(bad.contains { $0.key == "share output" && $0.value.contains("no setgid") }, "\(bad)")
        #expect(bad.contains { $0.key == "pending changes" }, "\(bad)")
    }

    @Test("a sandbox home that exists and belongs to someone else is refused, not taken over")
    func foreignHome() throws {
        let w = try World.provisioned("prov-foreignhome", provision: false)
        var c = w.defaultConfig()
        c["sandbox_user"] = ["name": "comfyui_sandbox", "home": "\(w.home)/alice/notmine"]
        c["shares"] = [["name": "models", "path": "\(w.data)/models", "mount": "models", "access": "read-only"]]
        try w.writeConfig(c)
        try #require(try w.asUser("alice", "mkdir '\(w.home)/alice/notmine'").succeeded)
        let r = try w.comfy(World.provisionFoundation)
        #expect(r.status == 1)
        #expect(r.stderrText.contains("belongs to alice"), "\(r.stderrText)")
        var st = Glibc.stat()
        #expect(lstat("\(w.home)/alice/notmine", &st) == 0 && st.st_uid == w.uid("alice"))
    }
}
