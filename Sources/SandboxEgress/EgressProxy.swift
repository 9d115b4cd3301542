import FoundationEssentials
import Glibc
import Synchronization
import SandboxOS
import SandboxUI
import SandboxConfig

/// The egress proxy: how a loopback-only sandbox reaches the services of
/// `launcher.egress` and nothing else.
///
/// The launcher (root) makes a TCP socket listening on 127.0.0.1:3128
/// *inside* the sandbox's network namespace (`LoopbackNamespace.listen`: a thread
/// joins the namespace, binds, and ends; a socket keeps the namespace it was
/// made in) and hands it to `comfy-sandbox __internal egress-proxy`, which
/// runs in the host's namespace as `nobody`: no capabilities, no_new_privs,
/// seccomp, and a Landlock domain with its binary and libraries, /etc (the
/// resolver's files), /proc read-only and TCP connect only to the ports the
/// list names and 53 (DNS). Where sandbox-runtime and Codex bridge a unix
/// socket to a loopback port with a helper process inside the sandbox, this
/// is one socket and no helper: nothing of the proxy runs in the sandbox,
/// and the sandbox's namespace still has nothing but `lo`.
///
/// For each connection: one request head (10 s, 16 KiB), a CONNECT or an
/// absolute-form http:// request; IP literals refused; the name checked
/// against the list; resolved here, on the host, and refused if any address
/// it resolves to is loopback, private, link-local, metadata...
/// (`Egress.forbidden`); connected to exactly an address that was checked
/// (never resolved again). A CONNECT then gets `200`, and its first bytes
/// must be a TLS ClientHello whose SNI is the CONNECT host, before a byte
/// goes on. A plain request goes on in origin form with `Connection: close`.
/// Every connection is one line in launcher.log.
public enum EgressProxy {
    public static let maxConnections = 64
    static let headTimeoutMS: Int32 = 10_000
    static let maxHead = 16384
    static let helloTimeoutMS: Int32 = 10_000
    static let connectTimeoutMS: Int32 = 10_000
    /// A tunnel or response in which no byte moves this long is ended.
    static let idleTimeoutMS: Int32 = 300_000
    static let lingerMS: Int32 = 10_000

    /// The proxy's listening socket, inside the sandbox's namespace.
    public static func listenInside(_ networkNamespace: Int32) throws -> OwnedFD {
        let fd = LoopbackNamespace.listen(in: networkNamespace, port: Egress.proxyPort)
        guard fd >= 0 else {
            throw SandboxError.failure("cannot listen on 127.0.0.1:\(Egress.proxyPort) in the sandbox's network namespace for the egress proxy: \(Errno.current)")
        }
        return OwnedFD(fd)
    }

    /// The proxy's loop (runs confined): the listening socket is fd 3, the
    /// log fd 4. Never returns.
    public static func serve(listenFD: Int32 = 3, logFD: Int32 = 4, rules: [Egress.Rule]) -> Never {
        signal(SIGPIPE, SIG_IGN)
        final class Count: Sendable { let n = Mutex(0) }
        let active = Count()
        while true {
            let client = acceptNext(listenFD, who: "egress proxy")
            guard active.n.withLock({ (n: inout Int) -> Bool in
                guard n < maxConnections else { return false }
                n += 1
                return true
            }) else {
                let r = Egress.Refusal(503, "more than \(maxConnections) connections at once")
                log(logFD, Entry(method: "-", target: "-", allowed: false, reason: r.reason))
                Relay.refuseNow(client, UIDoor.Refusal(status: 503, message: r.reason))
                continue
            }
            let started = detachThread {
                handle(client, rules: rules, logFD: logFD)
                active.n.withLock { $0 -= 1 }
            }
            if !started {
                active.n.withLock { $0 -= 1 }
                close(client)
            }
        }
    }

    /// One line of launcher.log.
    struct Entry {
        var method: String
        var target: String
        var address: String = "-"
        var allowed: Bool
        var reason: String? = nil
        var sent: Int64 = 0
        var received: Int64 = 0
        var started = Relay.now()

        var line: String {
            let seconds = Double(Relay.now() - started) / 1000
            var s = "\(Timestamp.now()) egress \(allowed ? "allowed" : "refused") \(method) \(target) address=\(address)"
                + " sent=\(sent) received=\(received) duration=\(Format.fixed(seconds, 2))s"
            if let reason { s += " reason=\"\(reason.replacing("\"", with: "'"))\"" }
            return Self.printable(s)
        }

        /// What the sandbox sent (a target, a server name) reaches the log
        /// only as printable ASCII: anything else is written \xHH, so no
        /// line can be split, forged or carry terminal sequences.
        static func printable(_ s: String) -> String {
            var out = ""
            for b in s.utf8 {
                if b >= 0x20 && b < 0x7f && b != 0x5c { out.unicodeScalars.append(Unicode.Scalar(b)) } else {
                    out += "\\x" + (b < 16 ? "0" : "") + String(b, radix: 16)
                }
            }
            return out
        }
    }

    static func log(_ fd: Int32, _ entry: Entry) {
        // One write per line: O_APPEND keeps it whole beside ComfyUI's lines.
        let bytes = Array((entry.line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    static func handle(_ client: Int32, rules: [Egress.Rule], logFD: Int32) {
        defer { close(client) }
        var entry = Entry(method: "-", target: "-", allowed: false)
        func refuse(_ r: Egress.Refusal, answer: Bool = true) {
            if answer { Relay.send(client, r.response, timeoutMS: 1000); Relay.lingerClose(client) }
            entry.allowed = false
            entry.reason = r.reason
            if entry.target == "-" { entry.target = r.target }
            log(logFD, entry)
        }
        var buffer: [UInt8] = []
        let headEnd: Int
        switch Relay.readHead(client, into: &buffer, max: maxHead, timeoutMS: headTimeoutMS) {
        case .complete(let end): headEnd = end
        case .timeout: return refuse(Egress.Refusal(408, "no request head within \(headTimeoutMS / 1000) s"))
        case .tooLarge: return refuse(Egress.Refusal(431, "a request head over \(maxHead / 1024) KiB"))
        case .closed, .watch: return refuse(Egress.Refusal(400, "closed before a request head"), answer: false)
        }
        let request: Egress.Request
        switch Egress.parseRequest(Array(buffer[..<headEnd])) {
        case .failure(let r):
            let word = buffer.prefix(while: { $0 >= 0x41 && $0 <= 0x5a }).prefix(16)
            if !word.isEmpty { entry.method = String(decoding: word, as: UTF8.self) }
            return refuse(r)
        case .success(let r): request = r
        }
        entry.method = request.method
        entry.target = "\(request.host):\(request.port)"
        guard Egress.allows(rules, host: request.host, port: request.port) else {
            return refuse(Egress.Refusal(403, "\(request.host):\(request.port) is not in launcher.egress"))
        }
        // Resolved here, once; every address judged; a name with any
        // forbidden address is refused whole (a rebinding answer mixes them).
        let addresses: [Egress.Address]
        switch resolve(request.host) {
        case .failure(let why): return refuse(Egress.Refusal(502, "cannot resolve \(request.host): \(why)"))
        case .success(let list): addresses = list
        }
        let own = Egress.hostAddresses()
        for a in addresses {
            if let why = Egress.forbidden(a) {
                entry.address = a.description
                return refuse(Egress.Refusal(403, "\(request.host) resolves to \(why)"))
            }
            if own.contains(a) {
                entry.address = a.description
                return refuse(Egress.Refusal(403, "\(request.host) resolves to \(a): an address of this host itself"))
            }
        }
        // Pinned: the socket connects to an address checked above.
        var upstream: Int32 = -1
        var lastError = "no address"
        for a in addresses {
            switch connectTo(a, port: request.port) {
            case .success(let fd):
                upstream = fd
                entry.address = a.description
            case .failure(let e):
                lastError = "\(a): \(e)"
                continue
            }
            break
        }
        guard upstream >= 0 else { return refuse(Egress.Refusal(502, "cannot connect to \(request.host):\(request.port) (\(lastError))")) }
        defer { close(upstream) }
        let rest = Array(buffer[headEnd...])

        switch request {
        case .connect(let host, _):
            guard Relay.send(client, Array("HTTP/1.1 200 Connection established\r\n\r\n".utf8), timeoutMS: 10_000) else {
                return refuse(Egress.Refusal(400, "the client left"), answer: false)
            }
            // The ClientHello, before a byte goes on: its SNI must be the
            // CONNECT host (else a tunnel to an allowed address could carry
            // a TLS session to any name the server there also serves).
            var hello = rest
            let deadline = Relay.now() + Int(helloTimeoutMS)
            var chunk = [UInt8](repeating: 0, count: 16384)
            var judged = Egress.clientHello(hello)
            while judged == .needMore {
                guard hello.count < Egress.maxHello + 1024 else { judged = .notTLS("a ClientHello over 64 KiB"); break }
                let left = deadline - Relay.now()
                var p = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
                guard left > 0, poll(&p, 1, Int32(left)) > 0 else { judged = .notTLS("no TLS ClientHello within \(helloTimeoutMS / 1000) s"); break }
                let n = read(client, &chunk, chunk.count)
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                guard n > 0 else { judged = .notTLS("the client closed before a complete ClientHello"); break }
                hello += chunk[..<n]
                judged = Egress.clientHello(hello)
            }
            switch judged {
            case .name(let sni):
                guard case .success(let n) = Egress.normalizeName(sni), n == host else {
                    return refuse(Egress.Refusal(403, "the TLS server name (SNI) \"\(sni.prefix(255))\" is not the CONNECT host \(host)"), answer: false)
                }
            case .noSNI:
                return refuse(Egress.Refusal(403, "the TLS ClientHello names no server (SNI)"), answer: false)
            case .notTLS(let why):
                return refuse(Egress.Refusal(403, "a tunnel must start with TLS: \(why)"), answer: false)
            case .needMore:
                return refuse(Egress.Refusal(403, "no complete ClientHello"), answer: false)
            }
            guard Relay.send(upstream, hello, timeoutMS: connectTimeoutMS) else {
                return refuse(Egress.Refusal(502, "the server closed at once"), answer: false)
            }
            let tunnel = Splice.bothWaysCounted(client, upstream, idleMS: idleTimeoutMS, lingerMS: lingerMS)
            entry.allowed = true
            entry.sent = Int64(hello.count) + tunnel.aToB
            entry.received = tunnel.bToA
            if tunnel.idle { entry.reason = "idle for \(idleTimeoutMS / 1000) s" }
            log(logFD, entry)

        case .http(_, _, _, let head, let bodyLength):
            let bodyNow = Array(rest.prefix(bodyLength))
            guard Relay.send(upstream, head + bodyNow, timeoutMS: connectTimeoutMS) else {
                return refuse(Egress.Refusal(502, "the server closed before taking the request"))
            }
            entry.sent = Int64(head.count + bodyNow.count)
            if bodyLength > bodyNow.count {
                let (end, moved) = Splice.oneWay(from: client, to: upstream, limit: Int64(bodyLength - bodyNow.count), idleMS: idleTimeoutMS)
                entry.sent += moved
                if end != .done || moved < Int64(bodyLength - bodyNow.count) {
                    return refuse(Egress.Refusal(400, "the request body ended early"), answer: false)
                }
            }
            // The response, as the server sends it, until it closes (it was
            // asked to: Connection: close).
            entry.received = Splice.oneWay(from: upstream, to: client, limit: -1, idleMS: idleTimeoutMS).moved
            entry.allowed = true
            log(logFD, entry)
            Relay.lingerClose(client)
        }
    }

    /// Why a name could not be resolved or connected to.
    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Every address `host` resolves to, through the host's resolver.
    static func resolve(_ host: String) -> Result<[Egress.Address], Failure> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &list)
        guard rc == 0 else { return .failure(Failure(String(cString: gai_strerror(rc)))) }
        defer { freeaddrinfo(list) }
        var out: [Egress.Address] = []
        var p = list
        while let ai = p {
            if let sa = ai.pointee.ai_addr, let a = Egress.Address(UnsafePointer(sa)), !out.contains(a) { out.append(a) }
            p = ai.pointee.ai_next
        }
        return out.isEmpty ? .failure(Failure("no address")) : .success(out)
    }

    /// A TCP connection to exactly `address`, within the connect timeout.
    static func connectTo(_ address: Egress.Address, port: UInt16) -> Result<Int32, Failure> {
        guard let endpoint = IPEndpoint(host: address.description, port: port) else { return .failure(Failure("not an address")) }
        let fd = endpoint.streamSocket()
        guard fd >= 0 else { return .failure(Failure("\(Errno.current)")) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        if endpoint.withSockaddr({ Glibc.connect(fd, $0, $1) }) != 0 {
            guard errno == EINPROGRESS else { let e = Errno.current; close(fd); return .failure(Failure("\(e)")) }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, connectTimeoutMS) > 0 else { close(fd); return .failure(Failure("timed out after \(connectTimeoutMS / 1000) s")) }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            guard err == 0 else { close(fd); return .failure(Failure("\(Errno(err))")) }
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return .success(fd)
    }
}
