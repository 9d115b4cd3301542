import CSandbox
import FoundationEssentials
import Glibc
import Synchronization

/// The relay serves ComfyUI's UI on the host's listen:port while ComfyUI sits
/// in a network namespace that has only loopback. The launcher (root) binds
/// the host socket, then runs `comfy-sandbox __internal relay` as `nobody`
/// with the socket as fd 3, inside the sandbox's namespace: it accepts on the
/// host socket (a socket keeps the namespace it was made in) and connects to
/// 127.0.0.1:port in the sandbox's. It holds no capability, no_new_privs,
/// seccomp, and a Landlock domain with no file access beyond its own binary
/// and libraries and TCP connect only to the target port.
public enum Relay {
    public static let maxConnections = 256
    public static let nobody: (uid_t, gid_t) = (65534, 65534)

    /// Binds and listens on host:port (IPv4 or IPv6) as the caller (root, host namespace).
    public static func listen(host: String, port: UInt16) throws -> OwnedFD {
        guard let endpoint = IPEndpoint(host: host, port: port) else {
            throw SandboxError.config("launcher.listen \(host) is not an IP address")
        }
        let fd = endpoint.streamSocket()
        guard fd >= 0 else { throw SandboxError.failure("socket: \(Errno.current)") }
        let owned = OwnedFD(fd)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard endpoint.withSockaddr({ bind(fd, $0, $1) }) == 0 else {
            throw SandboxError.failure("cannot listen on \(IPEndpoint.urlAuthority(endpoint.host, Int(port))) (launcher.listen/launcher.port): \(Errno.current)",
                                       hint: "is ComfyUI already running? `comfy-sandbox stop`, or pick another launcher.port")
        }
        guard Glibc.listen(fd, 128) == 0 else { throw SandboxError.failure("listen: \(Errno.current)") }
        return owned
    }

    /// The listening socket systemd passed (socket activation: LISTEN_PID is
    /// us and LISTEN_FDS is 1, the socket is fd 3), or nil.
    public static func activatedSocket() -> OwnedFD? {
        guard ProcessEnvironment.value("LISTEN_PID").flatMap({ pid_t($0) }) == getpid(),
              ProcessEnvironment.value("LISTEN_FDS") == "1" else { return nil }
        unsetenv("LISTEN_PID"); unsetenv("LISTEN_FDS"); unsetenv("LISTEN_FDNAMES")
        _ = fcntl(3, F_SETFD, FD_CLOEXEC)
        return OwnedFD(3)
    }

    /// The port a bound socket got.
    public static func boundPort(_ fd: Int32) -> UInt16 { IPEndpoint.boundPort(fd) }

    /// Starts the relay process. Returns its pid.
    public static func spawn(listening: OwnedFD, targetPort: UInt16, networkNamespace: OwnedFD?, config: Config) throws -> pid_t {
        // As root: nobody, in the sandbox's namespace. Unprivileged (the
        // systemd unit): the same user, already without capabilities, in the
        // namespace we are in; its own Landlock domain still keeps ComfyUI
        // from signalling it, and seccomp from tracing it.
        var c = geteuid() == 0 ? Confinement(uid: nobody.0, gid: nobody.1, groups: [])
                               : Confinement(uid: getuid(), gid: getgid(), groups: [])
        if geteuid() != 0 { c.dropIdentity = false }
        c.rlimits = [
            ResourceLimit(Int32(RLIMIT_NOFILE.rawValue), soft: 4096, hard: 4096),
            ResourceLimit(Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0),
        ]
        c.networkNamespace = networkNamespace
        if config.launcher.landlock != .off {
            var rules = Launcher.selfMappedFiles.map { Landlock.PathRule($0, [.readFile, .execute]) }
            rules.append(Landlock.PathRule("/etc/ld.so.cache", .readFile))
            // The Swift runtime finds its arguments through /proc/self; Landlock
            // cannot name "self", so /proc read-only (nobody, no caps: other
            // processes' private files stay closed by ptrace access checks).
            rules.append(Landlock.PathRule("/proc", .read))
            let (ruleset, _) = try Landlock.ruleset(rules, net: Landlock.NetPolicy(bindPorts: [], connectPorts: [targetPort]))
            c.landlockRuleset = ruleset
        }
        if config.launcher.seccomp { c.seccompProgram = try Seccomp.program() }
        let exe = Launcher.selfExecutable
        let spec = SpawnSpec(path: exe, arguments: [exe, "__internal", "relay", "--target-port", String(targetPort)],
                             environment: ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"], workingDirectory: "/",
                             stdin: -1, stdout: -1, stderr: -1, passFDs: [listening.raw], newSession: true, confinement: c)
        return try spec.spawn()
    }

    /// The relay's own loop (runs confined). Never returns.
    public static func serve(listenFD: Int32 = 3, targetPort: UInt16) -> Never {
        signal(SIGPIPE, SIG_IGN)
        let active = Counter()
        while true {
            let client = cs_accept_cloexec(listenFD)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE {
                    if errno == EMFILE || errno == ENFILE { usleep(50_000) }
                    continue
                }
                printError("comfy-sandbox relay: accept failed: \(Errno.current)")
                exit(1)
            }
            guard active.increment(limit: maxConnections) else {
                respond503(client, "too many connections")
                close(client)
                continue
            }
            detachThread {
                handle(client, targetPort: targetPort)
                active.decrement()
            }
        }
    }

    final class Counter: Sendable {
        private let value = Mutex(0)
        func increment(limit: Int) -> Bool {
            value.withLock { value in
                guard value < limit else { return false }
                value += 1
                return true
            }
        }
        func decrement() { value.withLock { $0 -= 1 } }
    }

    static func connectTarget(_ port: UInt16) -> Int32 {
        let target = IPEndpoint(host: "127.0.0.1", port: port)!
        // ComfyUI takes a while to import torch: retry while it starts.
        for _ in 0..<50 {
            let fd = target.streamSocket()
            if fd < 0 { return -1 }
            if target.withSockaddr({ connect(fd, $0, $1) }) == 0 {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            close(fd)
            usleep(100_000)
        }
        return -1
    }

    static func respond503(_ fd: Int32, _ why: String) {
        let body = "ComfyUI is not reachable yet (\(why)); try again in a moment.\n"
        let text = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        _ = text.withCString { write(fd, $0, strlen($0)) }
    }

    static func handle(_ client: Int32, targetPort: UInt16) {
        defer { close(client) }
        var one: Int32 = 1
        setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let upstream = connectTarget(targetPort)
        guard upstream >= 0 else {
            respond503(client, "nothing listens on 127.0.0.1:\(targetPort) in the sandbox")
            return
        }
        defer { close(upstream) }
        // splice(2) through pipes: the bytes stay in the kernel (the copy
        // through user space halved the throughput); `pump` is the fallback.
        if cs_relay_splice(client, upstream) != 0 && (errno == EINVAL || errno == ENOSYS) {
            pump(client, upstream)
        }
    }

    /// Copies bytes both ways until both directions are closed; a half-close
    /// is passed on with shutdown(SHUT_WR). A WebSocket upgrade is just bytes.
    static func pump(_ a: Int32, _ b: Int32) {
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var buf = [UInt8](repeating: 0, count: 128 * 1024)
        var open = 2
        while open > 0 {
            let r = poll(&fds, 2, -1)
            if r < 0 { if errno == EINTR { continue }; return }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let from = fds[i].fd, to = i == 0 ? b : a
                let n = read(from, &buf, buf.count)
                if n > 0 {
                    var off = 0
                    while off < n {
                        let w = buf.withUnsafeBytes { write(to, $0.baseAddress! + off, n - off) }
                        if w < 0 { if errno == EINTR { continue }; return }
                        off += w
                    }
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    if n < 0 { return }
                    shutdown(to, Int32(SHUT_WR))
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
    }
}
