import Foundation
@testable import SandboxCore
import Synchronization
import Testing
@testable import SandboxOS
@testable import SandboxConfig

/// One adversarial suite for every caller of the one walker (`SafeFS.walk`):
/// fix-permissions, node sealing, the models walk, RAM-temp/tree removal and
/// the scanner each run in-process, as root, over a tree laid out to attack
/// them, and each test checks what is on disk afterwards (inside and
/// outside the tree), not only that nothing threw.
@Suite("the one walker under attack, for every caller", .requiresRoot, .serialized)
struct WalkerAttackTests {
    enum Caller: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case fixPermissions = "fix-permissions"
        case sealing = "node sealing"
        case models = "models walk"
        case removal = "temp removal"
        case scanner = "scan-nodes"
        var testDescription: String { rawValue }
    }

    /// What a caller reported it did not enter or change, by escaped path
    /// relative to the tree, plus what it produced.
    struct Outcome {
        var reported: [String: String] = [:]
        var error: String?
        var manifest: ModelManifest?
        var findings: [NodeScanner.Finding] = []
        var stats: SafeFS.WalkStats?

        func mentions(_ rel: String) -> Bool {
            reported[rel] != nil || error?.contains(rel) == true
        }
    }

    /// `tree` is walked; `outside` must never change.
    final class Scratch {
        let base: String
        var tree: String { base + "/tree" }
        var outside: String { base + "/outside" }
        var mounts: [String] = []

        init(_ label: String) throws {
            var template = Array("/tmp/cs-walk-\(label)-XXXXXX".utf8CString)
            guard let p = mkdtemp(&template) else { throw SandboxError.failure("mkdtemp: \(Errno.current)") }
            base = String(cString: p)
            chmod(base, 0o755)
            for d in [tree, outside] {
                guard mkdir(d, 0o755) == 0 else { throw SandboxError.failure("mkdir \(d): \(Errno.current)") }
            }
        }

        deinit {
            for m in mounts { umount2(m, Int32(MNT_DETACH)) }
            _ = try? World.sh("rm -rf --one-file-system '\(base)'")
        }
    }

    static let owner: uid_t = 1234
    static let shared: gid_t = 4242
    static let code = "x = eval(input())\n"

    // MARK: running a caller

    func run(_ caller: Caller, _ s: Scratch) -> Outcome {
        var o = Outcome()
        let prefix = s.tree + "/"
        func rel(_ p: String) -> String { p == s.tree ? "." : p.hasPrefix(prefix) ? String(p.dropFirst(prefix.count)) : p }
        switch caller {
        case .fixPermissions:
            do {
                var fixer = PermissionFixer(share: Config.Share(name: "t", path: s.tree, mount: "t", access: .readWrite), gid: Self.shared)
                fixer.workerCount = 2
                for k in try fixer.run().skipped { o.reported[rel(k.path)] = k.reason }
            } catch { o.error = "\(error)" }
        case .sealing:
            do {
                for k in try TreeOwnership.apply(.sealed, to: s.tree) { o.reported[rel(k.path)] = k.why }
            } catch { o.error = "\(error)" }
        case .models:
            do {
                let (m, r) = try Manifest.record(share: s.tree, stateDir: s.base + "/state", workers: 2, progress: false)
                o.manifest = m
                for i in r.unreadable + r.notHashed { o.reported[i.path] = i.reason }
            } catch { o.error = "\(error)" }
        case .removal:
            let r = FileTree.removeTree(s.tree)
            for l in r.left { o.reported[l.path] = l.why }
            o.stats = r.stats
        case .scanner:
            do {
                o.findings = try NodeScanner.scan(directory: s.tree, node: "n")
                for f in o.findings where f.line == 0 { o.reported[f.file] = f.reason }
            } catch { o.error = "\(error)" }
        }
        return o
    }

    /// `run` on another thread; if it has not finished after `seconds`
    /// (blocked on a FIFO), the FIFOs are opened for writing to let it go,
    /// and the hang is recorded.
    func runGuarded(_ caller: Caller, _ s: Scratch, fifos: [String], seconds: Int = 60) -> Outcome {
        final class Box: @unchecked Sendable { var outcome = Outcome() }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let me = self
        nonisolated(unsafe) let scratch = s
        DispatchQueue.global().async {
            box.outcome = me.run(caller, scratch)
            done.signal()
        }
        if done.wait(timeout: .now() + .seconds(seconds)) == .timedOut {
            Issue.record("\(caller) hung on a FIFO")
            for f in fifos { _ = open(f, O_RDWR | O_NONBLOCK) }
            done.wait()
        }
        return box.outcome
    }

    // MARK: building trees

    static func makeFile(_ dir: String, _ name: [UInt8], _ content: String = code, mode: mode_t = 0o600) throws {
        let dfd = open(dir, O_RDONLY | O_DIRECTORY)
        guard dfd >= 0 else { throw SandboxError.failure("open \(dir): \(Errno.current)") }
        defer { close(dfd) }
        let fd = (name.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer {
            openat(dfd, $0.baseAddress!, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        }
        guard fd >= 0 else { throw SandboxError.failure("create \(dir)/\(Format.escape(name)): \(Errno.current)") }
        defer { close(fd) }
        _ = Array(content.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        fchown(fd, owner, owner)
        fchmod(fd, mode)
    }

    static func makeFile(_ path: String, _ content: String = code, mode: mode_t = 0o600) throws {
        try makeFile(Paths.deletingLastComponent(path), Array(Paths.lastComponent(path).utf8), content, mode: mode)
    }

    static func mkdirOwned(_ path: String, mode: mode_t = 0o700) throws {
        guard mkdir(path, mode) == 0 else { throw SandboxError.failure("mkdir \(path): \(Errno.current)") }
        chown(path, owner, owner)
        chmod(path, mode)
    }

    static func lstatOf(_ path: String) -> stat? { SafeFS.lstat(path) }

    /// Every entry under `dir` (one level deep and their children): type,
    /// mode, owner, link count, ctime and content. `loose` leaves out the
    /// link count and ctime (an unlink of another name moves both).
    static func snapshot(_ dir: String, loose: Bool = false) -> [String] {
        var out: [String] = []
        let names = ((try? FileManager.default.subpathsOfDirectory(atPath: dir)) ?? []).sorted()
        for n in names {
            let p = dir + "/" + n
            guard let st = lstatOf(p) else { out.append("\(n) gone"); continue }
            var line = "\(n) \(String(st.st_mode, radix: 8)) \(st.st_uid):\(st.st_gid)"
            if !loose { line += " n\(st.st_nlink) c\(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)" }
            if SafeFS.isRegular(st) { line += " " + ((try? String(contentsOfFile: p, encoding: .utf8)) ?? "?") }
            out.append(line)
        }
        return out
    }

    /// Open fds of this process.
    static func fdCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.count ?? -1
    }

    static func sha256(_ content: String) throws -> String {
        let r = try HostCommand("/bin/sh", ["-c", "printf '%s' \"$C\" | sha256sum"], environment: ["C": content, "PATH": "/usr/bin:/bin"]).run()
        return String(r.stdoutText.prefix(64))
    }

    // MARK: 5,000 deep

    /// `tree/d/d/.../d` (`depth` levels) with an empty sibling `e` at every
    /// level, so the walk goes down while a sibling waits and the fd window
    /// closes and reopens frames; `bottom.py` at the bottom.
    static func makeChain(_ root: String, depth: Int) throws {
        var fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        for _ in 0..<depth {
            guard mkdirat(fd, "e", 0o700) == 0, mkdirat(fd, "d", 0o700) == 0 else { throw SandboxError.failure("mkdirat: \(Errno.current)") }
            fchownat(fd, "d", owner, owner, 0)
            let next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            close(fd)
            guard next >= 0 else { throw SandboxError.failure("openat: \(Errno.current)") }
            fd = next
        }
        let f = openat(fd, "bottom.py", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        _ = Array(code.utf8).withUnsafeBytes { write(f, $0.baseAddress, $0.count) }
        fchown(f, owner, owner)
        fchmod(f, 0o600)
        close(f)
        close(fd)
    }

    /// fstat of every `d` on the chain and of `bottom.py` (nil when the chain is gone).
    static func chain(_ root: String, depth: Int) -> (dirs: [stat], bottom: stat?)? {
        var fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var dirs: [stat] = []
        for _ in 0..<depth {
            let next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            close(fd)
            guard next >= 0, let st = SafeFS.fstat(next) else { return nil }
            dirs.append(st)
            fd = next
        }
        var b = stat()
        let ok = fstatat(fd, "bottom.py", &b, AT_SYMLINK_NOFOLLOW) == 0
        close(fd)
        return (dirs, ok ? b : nil)
    }

    final class FDSampler: @unchecked Sendable {
        let state = Mutex((calls: 0, peak: 0))
        func sample() {
            let take = state.withLock { s -> Bool in s.calls += 1; return s.calls % 250 == 0 }
            if take {
                let n = WalkerAttackTests.fdCount()
                state.withLock { $0.peak = max($0.peak, n) }
            }
        }
        var peak: Int { state.withLock { $0.peak } }
    }

    @Test("a 5,000-deep chain is walked to the bottom, with the open fds bounded", arguments: Caller.allCases)
    func deepChain(_ caller: Caller) throws {
        let depth = 5000
        let s = try Scratch("deep")
        try Self.makeChain(s.tree, depth: depth)
        let sampler = FDSampler()
        let before = Self.fdCount()
        SafeFS.setBeforeEnteringHook { _, name in if strcmp(name, "d") == 0 { sampler.sample() } }
        let o = run(caller, s)
        SafeFS.setBeforeEnteringHook(nil)
        let after = Self.fdCount()
        // One fd per level would be 5,000 more; the walk holds at most 64
        // per thread (other suites in this process may hold a few more).
        #expect(sampler.peak > 0, "the fd count was never sampled")
        #expect(sampler.peak <= before + 2 * 64 + 32, "open fds during the walk: \(sampler.peak), before: \(before)")
        #expect(after <= before + 16, "fds leaked: \(before) before, \(after) after")
        #expect(o.error == nil, "\(o.error ?? "")")
        #expect(o.reported.isEmpty, "\(o.reported.prefix(3))")
        let bottom = String(repeating: "d/", count: depth) + "bottom.py"
        switch caller {
        case .fixPermissions:
            let c = try #require(Self.chain(s.tree, depth: depth))
            #expect(c.dirs.allSatisfy { $0.st_mode & 0o7777 == 0o2775 && $0.st_gid == Self.shared })
            #expect(c.bottom.map { $0.st_mode & 0o7777 } == 0o664)
            #expect(c.bottom?.st_gid == Self.shared)
        case .sealing:
            let c = try #require(Self.chain(s.tree, depth: depth))
            #expect(c.dirs.allSatisfy { $0.st_mode & 0o7777 == 0o755 && $0.st_uid == 0 && $0.st_gid == 0 })
            #expect(c.bottom.map { $0.st_mode & 0o7777 } == 0o644)
            #expect(c.bottom?.st_uid == 0)
        case .models:
            let f = try #require(o.manifest?.files.first { $0.path == bottom }, "the bottom file is not in the manifest")
            #expect(f.sha256 == (try Self.sha256(Self.code)))
        case .removal:
            #expect(Self.lstatOf(s.tree) == nil, "the chain was not removed completely")
            // Post-order needs every parent back: the closed ones came back as `..`.
            #expect(o.stats?.reopened ?? 0 > depth - 2 * 64, "\(String(describing: o.stats))")
            #expect(o.stats?.peakOpen ?? 99 <= 64)
        case .scanner:
            #expect(o.findings.contains { $0.file == bottom && $0.rule == "dynamic-code" }, "the bottom file was not scanned")
        }
    }

    // MARK: a symlink swapped in

    @Test("a directory swapped for a symlink to outside just before it is entered is not followed, and is reported",
          arguments: Caller.allCases)
    func swappedForSymlink(_ caller: Caller) throws {
        let s = try Scratch("swap")
        let victim = "victim-\(UInt32.random(in: 0...UInt32.max))"
        try Self.mkdirOwned(s.tree + "/a")
        try Self.mkdirOwned(s.tree + "/a/" + victim)
        try Self.makeFile(s.tree + "/a/" + victim + "/inner.py")
        try Self.makeFile(s.tree + "/a/plain.py")
        try Self.makeFile(s.outside + "/target.py")
        try Self.mkdirOwned(s.outside + "/sub")
        try Self.makeFile(s.outside + "/sub/deeper.py")
        let outsideBefore = Self.snapshot(s.outside)
        let swaps = Mutex(0)
        let outside = s.outside
        SafeFS.setBeforeEnteringHook { dirFD, name in
            guard String(cString: name) == victim else { return }
            renameat(dirFD, name, dirFD, victim + ".moved")
            symlinkat(outside, dirFD, name)
            swaps.withLock { $0 += 1 }
        }
        let o = run(caller, s)
        SafeFS.setBeforeEnteringHook(nil)
        #expect(swaps.withLock { $0 } == 1, "the hook never ran: the walk did not reach the victim")
        #expect(Self.snapshot(s.outside) == outsideBefore, "something outside the tree changed")
        #expect(o.mentions("a/" + victim), "not reported: \(o.reported) \(o.error ?? "")")
        switch caller {
        case .fixPermissions:
            #expect(Self.lstatOf(s.tree + "/a/plain.py").map { $0.st_mode & 0o7777 } == 0o664, "the rest of the tree was not fixed")
        case .sealing:
            #expect(o.error != nil, "a tree that could not be sealed whole must fail the call")
            #expect(Self.lstatOf(s.tree + "/a/plain.py").map { $0.st_uid } == 0, "the rest of the tree was not sealed")
        case .models:
            #expect(o.manifest?.files.contains { $0.path.contains("target.py") || $0.path.contains("deeper.py") } == false)
            #expect(o.manifest?.files.contains { $0.path == "a/plain.py" } == true)
        case .removal:
            #expect(Self.lstatOf(s.tree + "/a/plain.py") == nil)
            #expect(Self.lstatOf(s.outside + "/target.py") != nil)
        case .scanner:
            #expect(!o.findings.contains { $0.file.contains("target.py") || $0.file.contains("deeper.py") }, "\(o.findings)")
            #expect(o.findings.contains { $0.file == "a/plain.py" && $0.rule == "dynamic-code" })
        }
    }

    // MARK: hard links

    @Test("a hard link to a file outside is never changed or removed through", arguments: Caller.allCases)
    func hardLinkOutside(_ caller: Caller) throws {
        let s = try Scratch("hardlink")
        try Self.makeFile(s.outside + "/secret")
        try Self.mkdirOwned(s.tree + "/a")
        try Self.makeFile(s.tree + "/a/plain.py")
        guard link(s.outside + "/secret", s.tree + "/a/link.py") == 0 else { throw SandboxError.failure("link: \(Errno.current)") }
        let removal = caller == .removal
        let outsideBefore = Self.snapshot(s.outside, loose: removal)
        let o = run(caller, s)
        #expect(Self.snapshot(s.outside, loose: removal) == outsideBefore, "the file outside changed")
        #expect(o.error == nil, "\(o.error ?? "")")
        switch caller {
        case .fixPermissions:
            #expect(o.reported["a/link.py"]?.contains("hard links") == true, "\(o.reported)")
            #expect(Self.lstatOf(s.tree + "/a/plain.py").map { $0.st_mode & 0o7777 } == 0o664)
        case .sealing:
            #expect(o.reported["a/link.py"]?.contains("hard links") == true, "\(o.reported)")
            #expect(Self.lstatOf(s.tree + "/a/plain.py").map { $0.st_uid } == 0)
        case .models:
            // Read, never changed: model files are often hard links into a cache.
            #expect(o.manifest?.files.first { $0.path == "a/link.py" }?.sha256 == (try Self.sha256(Self.code)))
        case .removal:
            #expect(Self.lstatOf(s.tree) == nil)
            #expect(Self.lstatOf(s.outside + "/secret")?.st_nlink == 1)
        case .scanner:
            #expect(o.findings.contains { $0.file == "a/link.py" && $0.rule == "dynamic-code" })
        }
    }

    // MARK: a mount inside

    @Test("a tmpfs mounted inside the tree is not crossed, and is reported", arguments: Caller.allCases)
    func mountInside(_ caller: Caller) throws {
        let s = try Scratch("mount")
        try Self.mkdirOwned(s.tree + "/mnt")
        try Self.makeFile(s.tree + "/plain.py")
        guard mount("tmpfs", s.tree + "/mnt", "tmpfs", 0, "mode=0700") == 0 else {
            throw SandboxError.failure("mount tmpfs: \(Errno.current)")
        }
        s.mounts.append(s.tree + "/mnt")
        try Self.makeFile(s.tree + "/mnt/inside.py")
        let insideBefore = Self.snapshot(s.tree + "/mnt")
        let o = run(caller, s)
        #expect(Self.snapshot(s.tree + "/mnt") == insideBefore, "the walk crossed into the mount")
        #expect(o.mentions("mnt"), "not reported: \(o.reported) \(o.error ?? "")")
        #expect(o.reported["mnt"].map { $0.contains("mount point") } ?? true, "\(o.reported)")
        switch caller {
        case .models: #expect(o.manifest?.files.map(\.path) == ["plain.py"])
        case .scanner: #expect(!o.findings.contains { $0.file.hasPrefix("mnt/") })
        case .removal: #expect(Self.lstatOf(s.tree + "/plain.py") == nil)
        case .fixPermissions: #expect(Self.lstatOf(s.tree + "/plain.py").map { $0.st_mode & 0o7777 } == 0o664)
        case .sealing: #expect(Self.lstatOf(s.tree + "/plain.py").map { $0.st_uid } == 0)
        }
    }

    // MARK: FIFOs and sockets

    @Test("FIFOs (even named .py) are never opened for reading and sockets are skipped: no hang, reported",
          arguments: Caller.allCases)
    func fifosAndSockets(_ caller: Caller) throws {
        let s = try Scratch("fifo")
        let fifos = [s.tree + "/model.safetensors", s.tree + "/hook.py"]
        for f in fifos { guard mkfifo(f, 0o666) == 0 else { throw SandboxError.failure("mkfifo: \(Errno.current)") } }
        let sock = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(sock) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = Array((s.tree + "/vae.ckpt").utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.enumerated() { p[i] = b } }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        try #require(bound == 0, "bind: \(Errno.current)")
        try Self.makeFile(s.tree + "/plain.py")
        let o = runGuarded(caller, s, fifos: fifos)
        #expect(o.error == nil, "\(o.error ?? "")")
        if caller == .removal {
            #expect(Self.lstatOf(s.tree) == nil, "FIFOs and sockets are removed with the rest: \(o.reported)")
        } else {
            for name in ["model.safetensors", "hook.py", "vae.ckpt"] {
                #expect(o.reported[name] != nil, "\(name) not reported: \(o.reported)")
            }
            #expect(fifos.allSatisfy { Self.lstatOf($0).map { $0.st_mode & S_IFMT == S_IFIFO } == true })
        }
        if caller == .scanner { #expect(o.findings.contains { $0.file == "plain.py" && $0.rule == "dynamic-code" }) }
    }

    // MARK: names

    @Test("names with newlines, tabs, escape sequences and invalid UTF-8 are handled and reported escaped",
          arguments: Caller.allCases)
    func hostileNames(_ caller: Caller) throws {
        let s = try Scratch("names")
        let names: [[UInt8]] = [Array("new\nline.py".utf8), Array("tab\there.py".utf8), Array("esc\u{1b}[31m.py".utf8),
                                Array("bad".utf8) + [0xff, 0xfe] + Array(".py".utf8)]
        let shown = ["new\\nline.py", "tab\\there.py", "esc\\x1b[31m.py", "bad\\xff\\xfe.py"]
        for n in names { try Self.makeFile(s.tree, n) }
        try Self.mkdirOwned(s.tree + "/dir\nx")
        guard symlink("/etc/passwd", s.tree + "/dir\nx/l\u{1b}") == 0 else { throw SandboxError.failure("symlink: \(Errno.current)") }
        let o = run(caller, s)
        #expect(o.error == nil, "\(o.error ?? "")")
        let everything = Array(o.reported.keys) + o.reported.values + o.findings.map(\.file) + (o.manifest?.files.map(\.path) ?? [])
            + (o.manifest?.links.map(\.path) ?? [])
        for text in everything {
            #expect(!text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0xfffd }, "not escaped: \(text.debugDescription)")
        }
        func st(_ n: [UInt8]) -> stat? {
            var st = stat()
            let ok = (Array(s.tree.utf8) + [UInt8(ascii: "/")] + n).map { CChar(bitPattern: $0) }.withUnsafeBufferPointer {
                Array($0) + [0]
            }.withUnsafeBufferPointer { lstat($0.baseAddress!, &st) == 0 }
            return ok ? st : nil
        }
        switch caller {
        case .fixPermissions:
            #expect(names.allSatisfy { st($0).map { $0.st_mode & 0o7777 } == 0o664 })
            #expect(o.reported["dir\\nx/l\\x1b"]?.contains("symbolic link") == true, "\(o.reported)")
        case .sealing:
            #expect(names.allSatisfy { st($0).map { $0.st_mode & 0o7777 == 0o644 && $0.st_uid == 0 } == true })
            #expect(Self.lstatOf(s.tree + "/dir\nx/l\u{1b}")?.st_uid == 0, "the link itself is root's")
            #expect(Self.lstatOf("/etc/passwd")?.st_uid == 0)
        case .models:
            let sha = try Self.sha256(Self.code)
            for n in shown {
                #expect(o.manifest?.files.first { $0.path == n }?.sha256 == sha, "\(n): \(o.manifest?.files.map(\.path) ?? [])")
            }
            #expect(o.manifest?.links.map(\.path) == ["dir\\nx/l\\x1b"])
        case .removal:
            #expect(Self.lstatOf(s.tree) == nil, "\(o.reported)")
        case .scanner:
            for n in shown { #expect(o.findings.contains { $0.file == n && $0.rule == "dynamic-code" }, "\(n)") }
            #expect(o.findings.contains { $0.file == "dir\\nx/l\\x1b" && $0.rule == "symlink-outside" })
        }
    }
}
