import FoundationEssentials
import Glibc
import SandboxCore
import SandboxOS

/// check-sandbox, inside: the attacks the constructed root answers, modelled
/// on real malicious nodes (the LLMVISION stealer, the ultralytics XMRig
/// dropper, the litellm .pth harvester): the host's processes, its D-Bus and
/// journald sockets, the primary user's home, executing what the sandbox
/// wrote (directly, through the loader, a memfd, an mmap, a dlopen), the
/// host's /dev/shm, the memory limit. Where the kernel lacks a mechanism
/// the row says so.
extension SandboxCheck {
    static func rootAttacks(_ f: Facts) -> [Result] {
        var r: [Result] = []
        // Processes: only the session's own are in /proc.
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        r.append(Result("list the host's processes (/proc)", expected: "only the session's",
                        result: "\(pids.count) visible: \(pids.sorted().prefix(8).map(String.init).joined(separator: " "))",
                        pass: !pids.isEmpty && pids.count < 32 && (f.hostPidCount ?? 1000) > pids.count))
        if let marker = f.hostProcessArgument {
            // A host process whose argv holds a secret (`tool --password=...`).
            let seen = pids.contains { pid in
                (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).split(separator: 0)
                    .contains { String(decoding: $0, as: UTF8.self) == marker }
            }
            r.append(Result("read another process's argv (a --password=... on the host)", expected: "blocked",
                            result: seen ? "read it" : "not visible", pass: !seen))
        }
        // Another instance's GPUs: their nodes are not in this root.
        for node in f.otherGPUNodes ?? [] {
            r.append(blocked("open another instance's GPU (\(node))") { openResult(node, O_RDWR) })
        }
        // Unix sockets Landlock does not mediate on connect: not in this root.
        for (what, path) in [("the D-Bus system bus", "/run/dbus/system_bus_socket"), ("journald", "/run/systemd/journal/socket"),
                             ("syslog (/dev/log)", "/dev/log"), ("nscd", "/var/run/nscd/socket"), ("X11", "/tmp/.X11-unix/X0")] {
            r.append(blocked("connect to \(what) (\(path))") { unixConnect(path) })
        }
        // The primary user's home: not even a stat (the traverse ACL was
        // enough for stat(.aws/credentials) before).
        if let secret = f.primaryHomeFile {
            r.append(blocked("stat a file in the primary user's home") {
                var st = stat()
                let rc = stat(secret, &st)
                return (Int(rc), errno)
            })
        }
        // /dev/shm: the session's own, bounded.
        if let marker = f.hostShmMarker {
            r.append(blocked("read the host's /dev/shm (another user's file)") { openResult("/dev/shm/" + marker, O_RDONLY) })
        }
        var vfs = statvfs()
        let shmBytes = statvfs("/dev/shm", &vfs) == 0 ? UInt64(vfs.f_blocks) * UInt64(vfs.f_frsize) : 0
        r.append(Result("fill /dev/shm beyond launcher.limits.shm_size", expected: "bounded",
                        result: "a tmpfs of \(ByteProgress.size(Int64(shmBytes)))",
                        pass: shmBytes > 0 && (f.shmSize.map { shmBytes <= $0 + (4 << 20) } ?? false)))
        // Nothing the sandbox writes may run.
        var places: [(String, String)] = [("the temp dir", f.tempDir), ("/dev/shm", "/dev/shm"), ("/tmp", "/tmp")]
        if let home = f.home { places.append(("its home", home)) }
        for (name, path) in f.writablePaths.sorted(by: { $0.key < $1.key }) { places.append(("the \(name) share", path)) }
        let payload = (try? Data(contentsOf: URL(fileURLWithPath: "/bin/true"))) ?? Data()
        for (name, dir) in places {
            let file = dir + "/.cs-payload-\(getpid())"
            let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o700)
            guard fd >= 0 else { continue }
            _ = payload.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
            defer { unlink(file) }
            r.append(blocked("execute a binary written to \(name)") { runExit(file, []) })
            if name == "the temp dir" || name == "/dev/shm" {
                r.append(blocked("run it through the loader (ld.so \(name)/payload)") { runExit(loader(), [file]) })
                r.append(blocked("mmap(PROT_EXEC) a file written to \(name)") {
                    let fd = open(file, O_RDONLY | O_CLOEXEC)
                    defer { if fd >= 0 { close(fd) } }
                    let p = mmap(nil, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0)
                    let e = errno
                    if p != MAP_FAILED { munmap(p, 4096); return (0, 0) }
                    return (-1, e)
                })
                r.append(blocked("dlopen a library dropped in \(name)") {
                    let so = file + ".so"
                    guard let lib = try? Data(contentsOf: URL(fileURLWithPath: libraryToCopy())) else { return (-1, ENOENT) }
                    try? lib.write(to: URL(fileURLWithPath: so))
                    defer { unlink(so) }
                    guard let h = dlopen(so, RTLD_NOW | RTLD_LOCAL) else { return (-1, EACCES) }
                    dlclose(h)
                    return (0, 0)
                })
            }
        }
        // A memfd that is executed (fexecve): vm.memfd_noexec=2 (6.3+).
        let memfd = memfdExec(payload)
        if memfd.lacks {
            r.append(Result("execute a memfd (memfd_create + fexecve)", expected: "blocked",
                            result: "NOT blocked: this kernel has no vm.memfd_noexec (6.3+); noexec mounts still stop files", pass: true))
        } else {
            r.append(Result("execute a memfd (memfd_create + fexecve)", expected: "blocked", result: describe(memfd.rc, memfd.err), pass: memfd.rc < 0))
        }
        // The memory limit: a child that takes more is killed, not the host's processes.
        if let limit = f.memoryLimit {
            let exit = Probe.memoryHog(bytes: UInt64(limit) + (64 << 20))
            let killed = exit == .signaled(SIGKILL)
            r.append(Result("allocate more than launcher.limits.memory (\(ByteProgress.size(Int64(limit))))", expected: "killed",
                            result: killed ? "killed (SIGKILL)" : "\(exit)", pass: killed))
        }
        return r
    }

    static func spawnDetached(_ path: String, _ argv: [String]) { Probe.spawnDetached(path, argv) }

    static func unixConnect(_ path: String) -> (Int, Int32) {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return (-1, errno) }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.prefix(raw.count - 1).enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return (Int(rc), rc < 0 ? errno : 0)
    }

    /// Runs `path args` and returns (0, 0) when it ran and exited 0.
    static func runExit(_ path: String, _ args: [String]) -> (Int, Int32) {
        guard let r = try? HostCommand(path, args).run() else { return (-1, errno) }
        return r.succeeded ? (0, 0) : (-1, EACCES)
    }

    static func loader() -> String {
        for p in ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1", "/lib/ld-linux-x86-64.so.2"] where Paths.exists(p) { return p }
        return "/lib64/ld-linux-x86-64.so.2"
    }

    static func libraryToCopy() -> String {
        for p in ["/usr/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/aarch64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1"] where Paths.exists(p) {
            return p
        }
        return "/usr/lib/x86_64-linux-gnu/libm.so.6"
    }

    /// memfd_create(MFD_EXEC or none) + write + fexecve; `lacks` when the
    /// kernel has no memfd_noexec sysctl at all.
    static func memfdExec(_ payload: Data) -> (rc: Int, err: Int32, lacks: Bool) {
        let lacks = !Paths.exists("/proc/sys/vm/memfd_noexec")
        guard let refused = Probe.memfdExec(payload) else { return (0, 0, lacks) }
        return (-1, refused.rawValue, lacks)
    }
}
