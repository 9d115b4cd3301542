import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS

/// fix-permissions runs as root over shares the sandbox user can write. Each
/// test lets a hostile sandbox user prepare the tree, then checks that the
/// walk did its job inside, changed nothing outside (uid, gid, mode, ctime of
/// the world's /etc and the host's account files), did not hang (each run has
/// a timeout), and reported every entry it skipped.
@Suite("fix-permissions on a hostile tree", .requiresRoot)
struct FixPermissionsTests {
    /// What must not change: the world's /etc (what a symlink to /etc
    /// reaches inside the world) and the host's own account files.
    func outside(_ w: World, _ extra: [String] = []) throws -> String {
        try World.statSnapshot([w.etc, "/etc/shadow", "/etc/passwd", "/etc/group"] + extra)
    }

    func mode(_ path: String) -> mode_t? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    func skipped(_ reports: [PermissionFixer.Report]) -> [String: String] {
        Dictionary(reports.flatMap(\.skipped).map { ($0.path, $0.reason) }, uniquingKeysWith: { a, _ in a })
    }

    @Test("a symlink to /etc/shadow in a rw share is skipped; a wrong-group file moved in is fixed")
    func symlinkToShadow() throws {
        let w = try World.provisioned("fix-shadow")
        let input = w.sharePath("input")
        try #require(try w.asSandbox("ln -s /etc/shadow '\(input)/evil.safetensors' && touch '\(input)/mine' && chmod 600 '\(input)/mine'").succeeded)
        // mv keeps the old group and mode: alice moves a private file in.
        try #require(try w.asUser("alice", "umask 077 && echo x > '\(w.home)/alice/moved' && mv '\(w.home)/alice/moved' '\(input)/moved'").succeeded)
        let before = try outside(w)
        let reports = try w.fixPermissions()
        #expect(try outside(w) == before, "something outside the share changed")
        #expect(skipped(reports)["\(input)/evil.safetensors"]?.contains("symbolic link") == true)
        let gid = try #require(w.gid(World.group))
        var st = stat()
        #expect(lstat("\(input)/moved", &st) == 0 && st.st_gid == gid && st.st_mode & 0o7777 == 0o664)
        #expect(mode("\(input)/mine") == 0o664)
        let input_ = try #require(reports.first { $0.share == "input" })
        #expect(input_.groupChanged == 1 && input_.changed == 2)
        #expect(Journal(stateDir: w.state).lines().last?.contains("fix-permissions input: 2 changed") == true)
        // A second run finds nothing to change.
        #expect(try w.fixPermissions().allSatisfy { $0.changed == 0 })
    }

    @Test("a symlinked directory to /etc is never entered")
    func symlinkedDirectory() throws {
        let w = try World.provisioned("fix-etcdir")
        let out = w.sharePath("output")
        try #require(try w.asSandbox("ln -s /etc '\(out)/etc' && ln -s / '\(out)/root' && mkdir '\(out)/real' && ln -s /etc '\(out)/real/etc2'").succeeded)
        let before = try outside(w)
        let reports = try w.fixPermissions()
        #expect(try outside(w) == before)
        let s = skipped(reports)
        for p in ["\(out)/etc", "\(out)/root", "\(out)/real/etc2"] {
            #expect(s[p]?.contains("symbolic link") == true, "\(p) not reported: \(s)")
        }
    }

    @Test("a hard link to the primary user's group-writable file is skipped, the file untouched")
    func hardlink() throws {
        let w = try World.provisioned("fix-hardlink")
        let notes = "\(w.home)/alice/notes.txt"
        try #require(try w.asUser("alice", "echo secret > '\(notes)' && chgrp comfyshared '\(notes)' && chmod 0660 '\(notes)'").succeeded)
        let input = w.sharePath("input")
        try #require(try w.asSandbox("ln '\(notes)' '\(input)/notes.ckpt'").succeeded, "the sandbox could not make the link")
        let before = try outside(w, [notes])
        let reports = try w.fixPermissions()
        #expect(try outside(w, [notes]) == before)
        #expect(mode(notes) == 0o660)
        #expect(skipped(reports)["\(input)/notes.ckpt"]?.contains("hard links") == true)
    }

    @Test("a FIFO and a socket named like models are skipped without blocking")
    func fifoAndSocket() throws {
        let w = try World.provisioned("fix-fifo")
        let input = w.sharePath("input")
        try #require(try w.asSandbox("""
            mkfifo '\(input)/model.safetensors' && python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.bind('\(input)/vae.ckpt')"
            """).succeeded)
        let before = try outside(w)
        let reports = try w.fixPermissions(timeout: 60)
        #expect(try outside(w) == before)
        let s = skipped(reports)
        #expect(s["\(input)/model.safetensors"]?.contains("FIFO") == true)
        #expect(s["\(input)/vae.ckpt"]?.contains("socket") == true)
    }

    @Test("a tmpfs mounted inside the tree is not entered")
    func tmpfsInside() throws {
        let w = try World.provisioned("fix-tmpfs")
        let input = w.sharePath("input")
        try #require(try w.asSandbox("mkdir '\(input)/mnt'").succeeded)
        // Mount, walk and look in one world command: they share the namespace.
        let script = """
            mount -t tmpfs -o mode=0700 tmpfs '\(input)/mnt' && touch '\(input)/mnt/inside' && chmod 600 '\(input)/mnt/inside' &&
            "$CS" fix-permissions --json > '\(w.root)/fix.json' &&
            stat -c '%a' '\(input)/mnt' '\(input)/mnt/inside' > '\(w.root)/modes'
            """
        let before = try outside(w)
        let r = try w.run(["/bin/sh", "-c", script], environment: ["CS": World.binary, "COMFY_SANDBOX_CONFIG": w.configPath], timeout: 60)
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(try outside(w) == before)
        let reports = try JSONDecoder().decode([PermissionFixer.Report].self, from: Data(contentsOf: URL(fileURLWithPath: w.root + "/fix.json")))
        #expect(skipped(reports)["\(input)/mnt"]?.contains("mount point") == true)
        #expect(try String(contentsOfFile: w.root + "/modes", encoding: .utf8) == "700\n600\n", "the tmpfs was changed")
    }

    @Test("5,000-deep nesting (with a sibling at every level, so the fd window closes and reopens) is walked to the bottom")
    func deepNesting() throws {
        let w = try World.provisioned("fix-deep")
        let input = w.sharePath("input")
        // The window only closes and reopens a frame when the walk goes down
        // while a sibling waits, which depends on the order readdir lists
        // the two: creation order (tmpfs since 6.6, most of ext4's hash
        // seeds) or the reverse (tmpfs before 6.6). A second, shorter chain
        // made the other way round covers whichever this file system uses.
        try #require(try w.asSandbox("""
            python3 -c "
            import os
            os.chdir('\(input)')
            os.mkdir('r', 0o700); os.chdir('r')
            for _ in range(200):
                os.mkdir('q', 0o700); os.mkdir('f', 0o700); os.chdir('q')
            os.chdir('\(input)')
            for _ in range(5000):
                os.mkdir('e', 0o700); os.mkdir('d', 0o700); os.chdir('d')
            open('bottom', 'w').close(); os.chmod('bottom', 0o600)
            "
            """).succeeded)
        let start = Date()
        let reports = try w.fixPermissions(timeout: 120)
        let took = Date().timeIntervalSince(start)
        #expect(reports.flatMap(\.skipped).isEmpty, "\(reports.flatMap(\.skipped).prefix(3))")
        #expect(reports.first { $0.share == "input" }?.checked ?? 0 > 10000)
        #expect(reports.first { $0.share == "input" }?.reopened ?? 0 > 0, "the fd window never closed and reopened a frame")
        let check = try World.sh("""
            python3 -c "
            import os
            os.chdir('\(input)')
            modes = set()
            for _ in range(5000):
                modes.add(os.stat('e').st_mode & 0o7777); os.chdir('d')
            print(oct(os.stat('bottom').st_mode & 0o7777), oct(os.stat('.').st_mode & 0o7777), sorted(oct(m) for m in modes))
            "
            """)
        #expect(check.stdoutText == "0o664 0o2775 ['0o2775']\n", "bottom: \(check.stdoutText) \(check.stderrText)")
        #expect(took < 60)
    }

    @Test("names with newlines, invalid UTF-8 and a leading '-' are fixed, and reported escaped")
    func oddNames() throws {
        let w = try World.provisioned("fix-names")
        let input = w.sharePath("input")
        try #require(try w.asSandbox("""
            python3 -c "
            import os
            os.chdir('\(input)')
            for n in [b'new\\nline', b'bad\\xff\\xfe', b'-rf', b'--help', b'tab\\there']:
                open(n, 'w').close(); os.chmod(n, 0o600)
            os.symlink('/etc/passwd', b'link\\nwith\\xffnewline')
            "
            """).succeeded)
        let reports = try w.fixPermissions()
        let check = try World.sh("""
            python3 -c "
            import os
            os.chdir('\(input)')
            print(sorted(oct(os.stat(n).st_mode & 0o777) for n in [b'new\\nline', b'bad\\xff\\xfe', b'-rf', b'--help', b'tab\\there']))
            "
            """)
        #expect(check.stdoutText == "['0o664', '0o664', '0o664', '0o664', '0o664']\n", "\(check.stdoutText + check.stderrText)")
        let s = reports.flatMap(\.skipped)
        #expect(s.count == 1)
        #expect(s.first?.path == "\(input)/link\\nwith\\xffnewline", "\(s)")
        // The text output cannot be forged by a name: one line per skipped entry.
        let text = try w.comfy(["fix-permissions", "input"]).stdoutText
        #expect(text.split(separator: "\n").filter { $0.contains("skipped \(input)") }.count == 1, "\(text)")
    }

    @Test("a directory swapped for a symlink to /etc while the walk runs never leads outside (looped)")
    func swapRace() throws {
        let w = try World.provisioned("fix-race")
        let input = w.sharePath("input")
        try #require(try w.asSandbox("""
            mkdir '\(input)/d' && cd '\(input)/d' && for i in $(seq 1 300); do touch f$i; chmod 600 f$i; mkdir -p s$((i % 10)); done
            """).succeeded)
        let before = try outside(w)
        // The sandbox flips d <-> a symlink to /etc as fast as it can while root walks 30 times.
        let script = """
            setpriv --reuid=comfyui_sandbox --regid=comfyshared --init-groups sh -c '
              cd "$IN"; while :; do mv d d.x; ln -s /etc d; rm d; mv d.x d; ln -sfn /etc s; rm -f s; done' &
            flipper=$!
            ok=0; for i in $(seq 1 30); do "$CS" fix-permissions --json input > /dev/null && ok=$((ok+1)); done
            kill $flipper; wait $flipper 2>/dev/null
            echo "runs ok: $ok"
            """
        let r = try w.run(["/bin/sh", "-c", script], environment: ["CS": World.binary, "COMFY_SANDBOX_CONFIG": w.configPath, "IN": input],
                          timeout: 150)
        #expect(r.signal == nil, "hung")
        #expect(r.stdoutText.contains("runs ok: 30"), "\(r.stdoutText + r.stderrText)")
        #expect(try outside(w) == before, "the race reached outside the share")
    }

    @Test("a share path that became a symlink is refused as a whole, nothing followed")
    func shareRootSymlink() throws {
        let w = try World.provisioned("fix-rootlink")
        let input = w.sharePath("input")
        try #require(try w.asUser("alice", "mv '\(input)' '\(input).real' && ln -s /etc '\(input)'").succeeded)
        let before = try outside(w)
        let r = try w.comfy(["fix-permissions", "input"])
        #expect(r.status == 1)
        #expect(r.stderrText.contains("\(input) is a symbolic link"), "\(r.stderrText)")
        #expect(try outside(w) == before)
    }
}
