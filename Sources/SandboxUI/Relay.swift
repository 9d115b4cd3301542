import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// The relay serves ComfyUI's UI on the host's listen:port while ComfyUI sits
/// in a network namespace that has only loopback. The launcher (root) binds
/// the host socket and opens a NETLINK_SOCK_DIAG socket in the host's
/// namespace, then runs `comfy-sandbox __internal relay` as `nobody` with
/// them as fds 3 and 4, inside the sandbox's namespace: it accepts on the
/// host socket (a socket keeps the namespace it was made in), asks the
/// kernel through fd 4 who owns the connecting socket, and connects to
/// 127.0.0.1:port in the sandbox's. It holds no capability, no_new_privs,
/// seccomp, and a Landlock domain with no file access beyond its own binary
/// and libraries and TCP connect only to the target port.
///
/// It is the one door from the host to the sandbox, so it keeps it (the
/// rules are `UIDoor`'s): only the users of `launcher.ui_users` (and root)
/// get in, only under the UI's own names and from its own pages, one
/// request per connection, within time limits and a per-user share of
/// connections; every response carries the relay's Content-Security-Policy.
public enum Relay {
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

    /// What systemd passed (socket activation: LISTEN_PID is us): the
    /// listening socket, and the NETLINK_SOCK_DIAG socket comfy-sandbox.socket
    /// opens in the host's namespace (`ListenNetlink=inet-diag 0`), told
    /// apart by their family. nil when not activated.
    public static func activatedSockets() -> (listening: OwnedFD, diag: OwnedFD?)? {
        guard ProcessEnvironment.value("LISTEN_PID").flatMap({ pid_t($0) }) == getpid(),
              let count = ProcessEnvironment.value("LISTEN_FDS").flatMap({ Int32($0) }), (1...2).contains(count) else { return nil }
        unsetenv("LISTEN_PID"); unsetenv("LISTEN_FDS"); unsetenv("LISTEN_FDNAMES")
        var listening: OwnedFD?, diag: OwnedFD?
        for fd in 3..<(3 + count) {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let domain = SocketInfo.domain(fd)
            if domain == AF_NETLINK && SocketInfo.protocol(fd) == SocketInfo.netlinkSockDiag {
                diag = OwnedFD(fd)
            } else if domain == AF_INET || domain == AF_INET6 {
                listening = OwnedFD(fd)
            } else {
                close(fd)
            }
        }
        guard let listening else { return nil }
        return (listening, diag)
    }

    /// A NETLINK_SOCK_DIAG socket in this process's network namespace (the
    /// host's: call it before anything moves into the sandbox's), proven to
    /// name the owner of a loopback connection made here and now.
    public static func peerLookup() throws -> OwnedFD {
        let fd = SocketInfo.openDiag()
        guard fd >= 0 else {
            throw SandboxError.failure("cannot open a NETLINK_SOCK_DIAG socket: \(Errno.current)",
                                       hint: "the relay needs it to tell who connects (launcher.ui_users); set launcher.ui_users to [\"*\"] to serve anyone")
        }
        let diag = OwnedFD(fd)
        // A connection to ourselves: the lookup must find it and name us.
        let server = try listen(host: "127.0.0.1", port: 0)
        let port = IPEndpoint.boundPort(server.raw)
        let probe = OwnedFD(IPEndpoint(host: "127.0.0.1", port: port)!.streamSocket())
        guard probe.raw >= 0, IPEndpoint(host: "127.0.0.1", port: port)!.withSockaddr({ connect(probe.raw, $0, $1) }) == 0 else {
            throw SandboxError.failure("the relay's self-check could not connect to 127.0.0.1:\(port): \(Errno.current)")
        }
        let accepted = OwnedFD(SocketInfo.accept(server.raw))
        guard accepted.raw >= 0, SocketInfo.peerUID(diag: diag.raw, connection: accepted.raw) == geteuid() else {
            throw SandboxError.failure("the kernel does not name the owner of a loopback connection (inet_diag: \(Errno.current)); the relay cannot tell who connects",
                                       hint: "load the tcp_diag module (modprobe tcp_diag), or set launcher.ui_users to [\"*\"] to serve anyone")
        }
        return diag
    }

    /// The door for `config`, served on the socket `listening` is bound to:
    /// `ui_users` resolved to uids on this system (root always), the names
    /// the UI answers to on the socket's own address and port.
    public static func door(_ config: Config, listening: Int32) throws -> UIDoor {
        var uids: Set<UInt32>? = []
        for (i, name) in config.launcher.uiUsers.enumerated() {
            if name == "*" { uids = nil; break }
            guard let user = AccountLookup.user(name) else {
                throw SandboxError.config("launcher.ui_users[\(i)]: there is no user \"\(name)\" on this system (ui_users defaults to [primary_user])",
                                          hint: "list the local users the UI is for in launcher.ui_users")
            }
            uids?.insert(user.uid)
        }
        let bound = IPEndpoint.boundAddress(listening)
        let port = Int(bound?.port ?? UInt16(clamping: config.launcher.port))
        let authorities = UIDoor.authorities(listen: bound?.host ?? config.launcher.listen, port: port, uiHosts: config.launcher.uiHosts)
        return UIDoor(allowedUIDs: uids, authorities: authorities, csp: config.launcher.uiCSP)
    }

    /// The port a bound socket got.
    public static func boundPort(_ fd: Int32) -> UInt16 { IPEndpoint.boundPort(fd) }

    /// The relay's own loop (runs confined). Never returns.
    public static func serve(listenFD: Int32 = 3, diagFD: Int32 = 4, targetPort: UInt16, door: UIDoor) -> Never {
        signal(SIGPIPE, SIG_IGN)
        let quota = ConnectionQuota(perKey: UIDoor.perUserConnections)
        let workers = Workers(keepIdle: UIDoor.idleWorkers)
        while true {
            let client = acceptNext(listenFD, who: "relay")
            // Who: the owner of the socket at the other end, asked of the
            // host's kernel before a byte is read. Only the accept loop uses
            // the netlink socket, so questions and answers never interleave.
            let uid: UInt32? = diagFD >= 0 ? SocketInfo.peerUID(diag: diagFD, connection: client) : nil
            guard door.admits(uid: uid) else {
                refuseNow(client, door.refusal(uid: uid))
                continue
            }
            let key = uid ?? UInt32.max
            guard quota.admit(key) else {
                refuseNow(client, UIDoor.busy(uid: uid))
                continue
            }
            let started = workers.run {
                handle(client, door: door, targetPort: targetPort)
                quota.release(key)
            }
            if !started {
                quota.release(key)
                close(client)
            }
        }
    }

    /// Threads for the connections: an idle one takes the next connection,
    /// else a new one starts (the per-uid cap bounds how many). A thread
    /// whose connection has ended waits for the next one, unless `keepIdle`
    /// already wait: creating a thread per connection was a measurable part
    /// of a request's latency.
    final class Workers: @unchecked Sendable {
        private let condition = Condition()
        private var jobs: [@Sendable () -> Void] = []   // guarded by condition
        private var idle = 0                            // guarded by condition
        let keepIdle: Int

        init(keepIdle: Int) { self.keepIdle = keepIdle }

        /// Runs `job` on an idle thread or a new one; false when no thread could start.
        func run(_ job: @escaping @Sendable () -> Void) -> Bool {
            condition.lock()
            if idle > jobs.count {
                jobs.append(job)
                condition.broadcast()
                condition.unlock()
                return true
            }
            condition.unlock()
            return detachThread { self.work(job) }
        }

        private func work(_ first: @escaping @Sendable () -> Void) {
            var job = first
            while true {
                job()
                condition.lock()
                guard idle < keepIdle else { condition.unlock(); return }
                idle += 1
                while jobs.isEmpty { condition.wait() }
                job = jobs.removeFirst()
                idle -= 1
                condition.unlock()
            }
        }
    }

    /// Answers a refused connection in the accept loop itself, without
    /// waiting for anything: what the client already sent is read (so the
    /// close does not reset the connection under the answer), the answer
    /// goes out if the socket takes it at once, and the connection is
    /// closed. A refused user's flood costs the relay no thread and no time.
    package static func refuseNow(_ client: Int32, _ refusal: UIDoor.Refusal) {
        _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
        var chunk = [UInt8](repeating: 0, count: 16384)
        func drain() { for _ in 0..<4 where read(client, &chunk, chunk.count) > 0 {} }
        drain()
        let response = refusal.response
        _ = response.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
        shutdown(client, Int32(SHUT_WR))
        drain()
        close(client)
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

    /// One exchange: the request head (within the header timeout), judged;
    /// the request as ComfyUI gets it and its body (exactly its
    /// Content-Length); the response head, rewritten; its body, or the
    /// WebSocket both ways after a 101. The thread ends when the client goes.
    static func handle(_ client: Int32, door: UIDoor, targetPort: UInt16) {
        defer { close(client) }
        var one: Int32 = 1
        setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var buffer: [UInt8] = []
        let headEnd: Int
        switch readHead(client, into: &buffer, max: UIDoor.maxRequestHead, timeoutMS: UIDoor.headerTimeoutMS) {
        case .complete(let end): headEnd = end
        case .timeout:
            answer(client, UIDoor.Refusal(status: 408, message: "Request timeout: the request head did not arrive within \(UIDoor.headerTimeoutMS / 1000) seconds."))
            return
        case .tooLarge:
            answer(client, UIDoor.Refusal(status: 431, message: "Request header fields too large (at most \(UIDoor.maxRequestHead / 1024) KiB)."))
            return
        case .closed, .watch:
            return
        }
        let request: UIDoor.Request
        switch door.judge(Array(buffer[..<headEnd])) {
        case .refuse(let refusal):
            answer(client, refusal)
            return
        case .forward(let r):
            request = r
        }
        let rest = buffer[headEnd...]
        if request.expectContinue { send(client, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8), timeoutMS: UIDoor.idleTimeoutMS) }
        let upstream = connectTarget(targetPort)
        guard upstream >= 0 else {
            answer(client, UIDoor.Refusal(status: 503, message: "ComfyUI is not reachable yet (nothing listens on 127.0.0.1:\(targetPort) in the sandbox); try again in a moment."))
            return
        }
        defer { close(upstream) }

        // The request, and as much of its body as came with the head.
        let bodyNow = rest.prefix(request.bodyLength)
        guard send(upstream, request.head + bodyNow, timeoutMS: UIDoor.idleTimeoutMS) else { return }
        let remaining = request.bodyLength - bodyNow.count
        if remaining > 0 {
            // The rest of the body, unless ComfyUI answers (or goes) first.
            let (end, moved) = Splice.oneWay(from: client, to: upstream, limit: Int64(remaining), idleMS: Int32(UIDoor.idleTimeoutMS),
                                             watch: upstream, events: Int16(POLLIN) | POLLRDHUP_EVENT)
            switch end {
            case .done: if moved < Int64(remaining) { return }
            case .watched: break
            case .idle, .failed: return
            }
        }

        // The response head; 1xx answers other than 101 are dropped (the
        // relay answered 100-continue itself; 103 could name what to preload).
        var upstreamBytes: [UInt8] = []
        var response: UIDoor.Response?
        var responseHead: [UInt8] = []
        while response == nil {
            switch readHead(upstream, into: &upstreamBytes, max: UIDoor.maxResponseHead, timeoutMS: UIDoor.idleTimeoutMS, watch: client) {
            case .complete(let end):
                responseHead = Array(upstreamBytes[..<end])
                guard let r = door.response(responseHead, to: request) else {
                    answer(client, UIDoor.Refusal(status: 502, message: "ComfyUI sent something that is not an HTTP/1.x response."))
                    return
                }
                if (100...199).contains(r.status) && !r.tunnel {
                    upstreamBytes.removeFirst(end)
                    continue
                }
                response = r
                upstreamBytes.removeFirst(end)
            case .tooLarge:
                answer(client, UIDoor.Refusal(status: 502, message: "ComfyUI's response head is too large."))
                return
            case .timeout:
                answer(client, UIDoor.Refusal(status: 502, message: "ComfyUI did not answer within \(UIDoor.idleTimeoutMS / 1000) seconds."))
                return
            case .closed, .watch:
                return
            }
        }
        guard var response else { return }
        // An HTML page: read whole, so that the policy can allow exactly the
        // inline scripts it came with (the frontend's import map) by hash.
        if response.plainHTML, !door.csp.isEmpty, case .length(let n) = response.body, n <= UIDoor.maxHashedHTML {
            guard readBody(upstream, into: &upstreamBytes, count: n, watch: client) else { return }
            let hashes = UIDoor.inlineScriptHashes(Array(upstreamBytes.prefix(n)))
            if !hashes.isEmpty, let r = door.response(responseHead, to: request, scriptHashes: hashes) { response = r }
        }
        if response.tunnel {
            // A WebSocket: whatever either side sent beyond the handshake, then both ways.
            guard send(client, response.head + upstreamBytes, timeoutMS: UIDoor.idleTimeoutMS),
                  send(upstream, Array(rest.dropFirst(request.bodyLength)), timeoutMS: UIDoor.idleTimeoutMS) else { return }
            if let e = Splice.bothWays(client, upstream, lingerMS: UIDoor.lingerMS), e == .invalidArgument || e == .noFunction {
                pump(client, upstream)
            }
            return
        }
        var limit: Int64 = -1
        switch response.body {
        case .none: limit = 0
        case .length(let n): limit = Int64(n)
        case .close: limit = -1
        }
        // The head and what came of the body with it, in one write.
        let first = limit < 0 ? upstreamBytes[...] : upstreamBytes.prefix(Int(limit))
        guard send(client, response.head + first, timeoutMS: UIDoor.idleTimeoutMS) else { return }
        if limit != 0 && (limit < 0 || Int64(first.count) < limit) {
            // The body; a client that leaves (FIN) ends it: its thread with it.
            let (end, _) = Splice.oneWay(from: upstream, to: client, limit: limit < 0 ? -1 : limit - Int64(first.count),
                                         idleMS: Int32(UIDoor.idleTimeoutMS), watch: client, events: POLLRDHUP_EVENT)
            if end != .done { return }
        }
        lingerClose(client)
    }

    /// Sends `refusal` and closes gently (the request may still be arriving).
    static func answer(_ client: Int32, _ refusal: UIDoor.Refusal) {
        send(client, refusal.response, timeoutMS: 1000)
        lingerClose(client)
    }

    package enum HeadRead: Equatable { case complete(Int), closed, timeout, tooLarge, watch }

    /// Reads into `buffer` until it holds a complete head (through the
    /// blank line), all within `timeoutMS`. `.watch` when `watch` (the
    /// client, while its answer is awaited) hangs up first.
    @discardableResult
    package static func readHead(_ fd: Int32, into buffer: inout [UInt8], max: Int, timeoutMS: Int32, watch: Int32 = -1) -> HeadRead {
        let deadline = now() + Int(timeoutMS)
        var chunk = [UInt8](repeating: 0, count: 16384)
        var scanned = 0
        while true {
            if let end = headEnd(buffer, from: scanned) { return .complete(end) }
            if buffer.count >= max { return .tooLarge }
            scanned = Swift.max(0, buffer.count - 3)
            let left = deadline - now()
            if left <= 0 { return .timeout }
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: watch, events: POLLRDHUP_EVENT, revents: 0)]
            let r = poll(&fds, watch >= 0 ? 2 : 1, Int32(left))
            if r < 0 { if errno == EINTR { continue }; return .closed }
            if r == 0 { return .timeout }
            if watch >= 0 && fds[1].revents != 0 { return .watch }
            let n = read(fd, &chunk, Swift.min(chunk.count, max - buffer.count + 4))
            if n > 0 {
                buffer += chunk[..<n]
            } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                return .closed
            }
        }
    }

    /// Reads until `buffer` holds `count` bytes, with the idle timeout
    /// between reads; false when the sender ends first, or `watch` (the
    /// client) hangs up.
    static func readBody(_ fd: Int32, into buffer: inout [UInt8], count: Int, watch: Int32) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while buffer.count < count {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: watch, events: POLLRDHUP_EVENT, revents: 0)]
            let r = poll(&fds, 2, UIDoor.idleTimeoutMS)
            if r < 0 { if errno == EINTR { continue }; return false }
            if r == 0 || fds[1].revents != 0 { return false }
            let n = read(fd, &chunk, Swift.min(chunk.count, count - buffer.count))
            if n > 0 { buffer += chunk[..<n] } else if n == 0 || (errno != EINTR && errno != EAGAIN) { return false }
        }
        return true
    }

    /// The index just past a head's blank line (LF LF or LF CR LF: any
    /// blank line ends a head; for a request, `UIDoor.judge` then refuses
    /// what is not CRLF throughout), from `start` on.
    package static func headEnd(_ b: [UInt8], from start: Int) -> Int? {
        var i = start
        while i + 1 < b.count {
            if b[i] == 10 {
                if b[i + 1] == 10 { return i + 2 }
                if b[i + 1] == 13 && i + 2 < b.count && b[i + 2] == 10 { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    /// Writes all of `bytes`, waiting (up to `timeoutMS` of no progress)
    /// where the socket is non-blocking and full.
    @discardableResult
    package static func send(_ fd: Int32, _ bytes: [UInt8], timeoutMS: Int32) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { off += n; continue }
            if n < 0 && errno == EINTR { continue }
            guard n < 0 && errno == EAGAIN else { return false }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, timeoutMS) <= 0 { return false }
        }
        return true
    }

    /// Ends our side, then reads what the client still sends until it
    /// closes (at most a second, at most 1 MiB): closing with unread bytes
    /// would reset the connection and could cut off the answer just sent.
    package static func lingerClose(_ fd: Int32) {
        shutdown(fd, Int32(SHUT_WR))
        let deadline = now() + 1000
        var chunk = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while total < 1 << 20 {
            let left = deadline - now()
            if left <= 0 { return }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32(left)) <= 0 { return }
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { return }
            total += n
        }
    }

    package static func now() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }

    /// Copies bytes both ways until both directions are closed; a half-close
    /// is passed on with shutdown(SHUT_WR). The fallback where splice(2) is
    /// not available.
    static func pump(_ a: Int32, _ b: Int32) {
        _ = fcntl(a, F_SETFL, fcntl(a, F_GETFL) & ~O_NONBLOCK)
        _ = fcntl(b, F_SETFL, fcntl(b, F_GETFL) & ~O_NONBLOCK)
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var buf = [UInt8](repeating: 0, count: 128 * 1024)
        var open = 2
        while open > 0 {
            let r = poll(&fds, 2, open < 2 ? UIDoor.lingerMS : -1)
            if r == 0 { return }
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
