import Crypto
import Dispatch
import FoundationEssentials
import Glibc
import Synchronization
import SandboxCore
import SandboxOS
import SandboxUI
import SandboxConfig

/// check-sandbox: the tool re-executes itself inside the exact confinement
/// ComfyUI gets (`__internal check-inside`) and attacks it. The outer (root)
/// side prepares what the attacks need (a setuid-root copy of `id`, a TCP
/// listener on the host's loopback, the relay) and checks from the host that
/// the UI port is reachable through the relay, WebSocket included.
public enum SandboxCheck {
    /// What the inside needs to know, passed as JSON in argv.
    public struct Facts: Codable, Sendable {
        public var uid: UInt32
        public var network: String
        public var listen: String
        public var port: UInt16
        public var launcherPid: Int32
        public var hostListenerPort: UInt16?
        public var setuidCopy: String?
        public var primaryHomeFile: String?
        public var modelsPath: String?
        public var writablePaths: [String: String]   // name -> path (output, workflows)
        public var comfyPath: String
        public var tempDir: String
        // For the constructed root's checks (CheckRoot.swift).
        public var home: String? = nil
        public var hostPidCount: Int? = nil
        public var hostProcessArgument: String? = nil
        public var hostShmMarker: String? = nil
        public var shmSize: UInt64? = nil
        public var memoryLimit: UInt64? = nil
        /// Marks what the inside leaves running, for the outside to look for on the host.
        public var leftoverTag: String? = nil
        /// Device nodes of GPUs other instances use and this one does not.
        public var otherGPUNodes: [String]? = nil
        /// The Landlock ABI the session got (nil: launcher.landlock is false):
        /// an attack that works because this kernel lacks the rule is
        /// reported as not enforced here, not as an escape.
        public var landlockABI: Int? = nil
        /// A process of the sandbox user outside the sandbox (signal scoping).
        public var foreignPid: Int32? = nil
        /// launcher.egress (nil or empty: no proxy). The check's own proxy
        /// also has `localhost` on its list (Launcher.prepare).
        public var egress: [String]? = nil
    }

    /// One row of the table.
    public struct Result: Codable, Sendable, Equatable {
        public var attempt: String
        public var expected: String
        public var result: String
        public var pass: Bool
        /// Set when the attempt got through because this kernel lacks the
        /// Landlock rule that stops it (launcher.landlock "best-effort"):
        /// which rule, and the kernel that has it. Not counted as failed.
        public var notEnforced: String?
        public init(_ attempt: String, expected: String, result: String, pass: Bool, notEnforced: String? = nil) {
            self.attempt = attempt
            self.expected = expected
            self.result = result
            self.pass = pass
            self.notEnforced = notEnforced
        }

        enum CodingKeys: String, CodingKey {
            case attempt, expected, result, pass
            case notEnforced = "not_enforced"
        }

        /// PASS, FAIL, or NOT ENFORCED (the kernel lacks the rule).
        public var verdict: String { pass ? "PASS" : notEnforced != nil ? "NOT ENFORCED" : "FAIL" }
        public var failed: Bool { !pass && notEnforced == nil }
    }

    /// A blocked-expected result that got through: not enforced when the
    /// kernel's Landlock ABI is below `abi`, else a plain failure.
    static func needs(_ r: Result, abi: Int, feature: String, _ f: Facts) -> Result {
        guard !r.pass, let have = f.landlockABI, have < abi else { return r }
        var r = r
        r.notEnforced = "\(feature): Landlock ABI \(abi), Linux \(Landlock.kernel(abi: abi))+; this kernel has ABI \(have)"
        return r
    }

    // MARK: inside

    static func describe(_ rc: Int, _ err: Int32) -> String { rc < 0 ? "refused: \(Errno(err))" : "succeeded (\(rc))" }

    /// A call that must fail.
    static func blocked(_ attempt: String, _ call: () -> (Int, Int32)) -> Result {
        let (rc, err) = call()
        return Result(attempt, expected: "blocked", result: describe(rc, err), pass: rc < 0)
    }

    static func sys(_ name: String, _ a: Int = 0, _ b: Int = 0, _ c: Int = 0, _ d: Int = 0, _ e: Int = 0, _ f: Int = 0) -> (Int, Int32) {
        guard let nr = Seccomp.number(name) else { return (-1, ENOSYS) }
        return Probe.syscall(nr, a, b, c, d, e, f)
    }

    static func openResult(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) -> (Int, Int32) {
        let fd = open(path, flags | O_CLOEXEC, mode)
        let e = errno
        if fd >= 0 { close(fd) }
        return (Int(fd), fd < 0 ? e : 0)
    }

    /// A TCP bind or connect to `host:port` (IPv4 or IPv6, as launcher.listen may be).
    static func tcp(_ host: String, _ port: UInt16, bindOnly: Bool) -> (Int, Int32) {
        guard let endpoint = IPEndpoint(host: host, port: port) else { return (-1, EINVAL) }
        let fd = endpoint.streamSocket()
        guard fd >= 0 else { return (-1, errno) }
        defer { close(fd) }
        let rc = endpoint.withSockaddr { bindOnly ? bind(fd, $0, $1) : connect(fd, $0, $1) }
        return (Int(rc), rc < 0 ? errno : 0)
    }

    static func udp(_ host: String, _ port: UInt16) -> (Int, Int32) {
        guard let endpoint = IPEndpoint(host: host, port: port) else { return (-1, EINVAL) }
        let fd = endpoint.socket(Int32(SOCK_DGRAM.rawValue))
        guard fd >= 0 else { return (-1, errno) }
        defer { close(fd) }
        let payload: [UInt8] = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        let rc = endpoint.withSockaddr { sendto(fd, payload, payload.count, 0, $0, $1) }
        return (rc, rc < 0 ? errno : 0)
    }

    /// Every attack and every must-work check that runs inside.
    public static func attacks(_ f: Facts) -> [Result] {
        var r: [Result] = []
        let loopbackOnly = f.network == "loopback-only"
        // First, before any attack opens something of its own.
        let leaked = leakedFDs()
        r.append(Result("open fds beyond 0-2 at start", expected: "none", result: leaked.isEmpty ? "none" : "\(leaked)", pass: leaked.isEmpty))

        // Capabilities and identity
        r.append(blocked("capset: raise CAP_SYS_ADMIN") {
            let bit = UInt64(1) << UInt64(Capabilities.sysAdmin)
            let refused = Capabilities.set(Capabilities(effective: bit, permitted: bit))
            return refused.map { (-1, $0.rawValue) } ?? (0, 0)
        })
        if let copy = f.setuidCopy {
            // NNP and the empty bounding set: the setuid bit gives nothing.
            let res = try? HostCommand(copy, ["-u"]).run()
            let euid = res?.stdoutText.trimmingWhitespaceAndNewlines() ?? ""
            let gained = euid == "0"
            r.append(Result("exec a setuid-root copy of id", expected: "euid unchanged",
                            result: res.map { $0.succeeded ? "euid \(euid)" : "refused (exit \($0.status))" } ?? "refused", pass: !gained))
        }
        // In a throwaway child: if it worked, it would hand this process a
        // user namespace full of capabilities and spoil the checks after it.
        r.append(blocked("unshare(CLONE_NEWUSER)") {
            let (exit, err) = Probe.syscallInChild(Seccomp.number("unshare") ?? -1, 0x1000_0000)
            return exit == .exited(0) ? (0, 0) : (-1, err)
        })
        r.append(blocked("mount tmpfs on /tmp") {
            "tmpfs".withCString { t in "/tmp".withCString { p in sys("mount", Int(bitPattern: t), Int(bitPattern: p), Int(bitPattern: t)) } }
        })
        r.append(blocked("ptrace(PTRACE_ATTACH, parent)") { sys("ptrace", 16, Int(getppid())) })
        r.append(blocked("process_vm_readv(parent)") {
            var buf = [UInt8](repeating: 0, count: 16)
            return buf.withUnsafeMutableBytes { b in
                var local = iovec(iov_base: b.baseAddress, iov_len: 16)
                var remote = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: 0x400000), iov_len: 16)
                return sys("process_vm_readv", Int(getppid()), Int(bitPattern: withUnsafeMutablePointer(to: &local) { UnsafeMutableRawPointer($0) }), 1,
                           Int(bitPattern: withUnsafeMutablePointer(to: &remote) { UnsafeMutableRawPointer($0) }), 1, 0)
            }
        })
        r.append(blocked("bpf(BPF_PROG_LOAD)") { sys("bpf", 5, 0, 0) })
        r.append(blocked("perf_event_open") {
            var attr = [UInt8](repeating: 0, count: 128)
            attr[4] = 128   // size
            return attr.withUnsafeMutableBytes { sys("perf_event_open", Int(bitPattern: $0.baseAddress), 0, -1, -1, 0) }
        })
        r.append(blocked("keyctl(KEYCTL_JOIN_SESSION_KEYRING)") { sys("keyctl", 1, 0) })
        r.append(blocked("userfaultfd") { sys("userfaultfd", 0) })
        r.append(blocked("io_uring_setup") {
            var params = [UInt8](repeating: 0, count: 120)
            return params.withUnsafeMutableBytes { sys("io_uring_setup", 1, Int(bitPattern: $0.baseAddress)) }
        })
        r.append(blocked("kexec_load") { sys("kexec_load", 0, 0, 0, 0) })
        r.append(blocked("init_module") { "".withCString { sys("init_module", 0, 0, Int(bitPattern: $0)) } })
        r.append(blocked("finit_module(/dev/null)") { sys("finit_module", 0, 0, 0) })
        // x32: getpid with __X32_SYSCALL_BIT. libseccomp routes it to the
        // bad-arch action: the probing child must die of SIGSYS.
        if let getpid = Seccomp.number("getpid") {
            let (exit, err) = Probe.syscallInChild(getpid | Probe.x32SyscallBit)
            let desc = switch exit {
            case .signaled(let sig): "killed by signal \(sig)"
            case .exited(0): "succeeded"
            case .exited: "refused: \(Errno(err))"
            }
            r.append(Result("syscall via the x32 ABI (getpid|0x40000000)", expected: "killed", result: desc,
                            pass: exit != .exited(0)))
        }
        #if arch(x86_64)
        do {
            let exit = Probe.int80GetPID()
            let result = switch exit {
            case .signaled(let sig)?: "killed by signal \(sig)"
            case .exited(let code)?: "returned (exit \(code))"
            case nil: "no child to probe with"
            }
            var killed = false
            if case .signaled? = exit { killed = true }
            r.append(Result("syscall via the i386 ABI (int 0x80)", expected: "killed", result: result, pass: killed))
        }
        #endif
        if let personality = Seccomp.number("personality") {
            let (exit, err) = Probe.syscallInChild(personality, 0x0400000)   // READ_IMPLIES_EXEC
            let ok = exit == .exited(0)
            r.append(Result("personality(READ_IMPLIES_EXEC)", expected: "blocked",
                            result: ok ? "succeeded" : "refused: \(Errno(err))", pass: !ok))
        }
        r.append(blocked("clone(CLONE_NEWNS)") {
            Probe.clone(flags: 0x0002_0000)
        })
        r.append(blocked("chroot(/)") { sys("chroot", Int(bitPattern: ("/" as StaticString).utf8Start)) })
        r.append(blocked("setns(own netns)") {
            let fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)
            defer { if fd >= 0 { close(fd) } }
            return sys("setns", Int(fd), 0x4000_0000)
        })
        r.append(Result("clone3", expected: "ENOSYS (libc falls back to clone)", result: { let (rc, e) = sys("clone3", 0, 0); return describe(rc, e) }(),
                        pass: { let (rc, e) = sys("clone3", 0, 0); return rc < 0 && e == ENOSYS }()))

        // Files
        if let secret = f.primaryHomeFile {
            r.append(blocked("read the primary user's private file (0600, in their home)") { openResult(secret, O_RDONLY) })
        }
        r.append(blocked("read /etc/shadow") { openResult("/etc/shadow", O_RDONLY) })
        if let models = f.modelsPath {
            r.append(blocked("write into the read-only models share") { openResult(models + "/.cs-escape", O_WRONLY | O_CREAT | O_EXCL) })
        }
        r.append(blocked("write ComfyUI's code (main.py)") { openResult(f.comfyPath + "/main.py", O_WRONLY | O_APPEND) })
        r.append(blocked("create a file in ComfyUI's code") { openResult(f.comfyPath + "/.cs-escape.py", O_WRONLY | O_CREAT | O_EXCL) })
        r.append(blocked("write /etc") { openResult("/etc/cs-escape", O_WRONLY | O_CREAT | O_EXCL) })
        r.append(blocked("mknod a char device (1,3)") {
            let rc = mknod(f.tempDir + "/null", S_IFCHR | 0o666, dev_t((1 << 8) | 3))
            return (Int(rc), errno)
        })
        r.append(blocked("read /proc/1/environ") { openResult("/proc/1/environ", O_RDONLY) })
        r.append(blocked("execute a file written to the temp dir") {
            let path = f.tempDir + "/payload.sh"
            try? "#!/bin/sh\nexit 0\n".write(toFile: path, atomically: false, encoding: .utf8)
            chmod(path, 0o755)
            let res = try? HostCommand(path, []).run()
            unlink(path)
            return (res?.succeeded == true ? 0 : -1, EACCES)
        })

        // Devices and terminals
        r.append(blocked("socket(AF_PACKET)") {
            let fd = socket(17, Int32(SOCK_RAW.rawValue), 0)
            let e = errno
            if fd >= 0 { close(fd) }
            return (Int(fd), e)
        })
        r.append(blocked("ioctl(0, TIOCSTI)") { Probe.tiocsti(0, 0x41) })
        r.append(blocked("open /dev/tty") { openResult("/dev/tty", O_RDWR) })

        // Processes
        // SIGCONT: harmless even if it got through, and as good a probe as any.
        r.append(blocked("kill(1, SIGCONT) (a host process)") { let rc = kill(1, SIGCONT); return (Int(rc), errno) })
        r.append(blocked("kill(launcher, SIGCONT)") { let rc = kill(f.launcherPid, SIGCONT); return (Int(rc), errno) })
        if let pid = f.foreignPid {
            r.append(needs(blocked("kill(a sandbox-user process outside the sandbox, SIGCONT)") { let rc = kill(pid, SIGCONT); return (Int(rc), errno) },
                           abi: 6, feature: "signal scoping", f))
        }

        // Network
        if loopbackOnly, let port = f.hostListenerPort {
            r.append(blocked("TCP connect to a listener on the host's 127.0.0.1") { tcp("127.0.0.1", port, bindOnly: false) })
            r.append(blocked("UDP sendto 1.1.1.1:53") { udp("1.1.1.1", 53) })
            r.append(blocked("UDP sendto 127.0.0.53:53 (host resolver)") {
                // Inside the namespace this reaches nothing: no error on send
                // but nothing listens; a reply would prove a way out.
                let resolver = IPEndpoint(host: "127.0.0.53", port: 53)!
                let fd = resolver.socket(Int32(SOCK_DGRAM.rawValue))
                defer { close(fd) }
                let q: [UInt8] = [0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7] + Array("example".utf8) + [3] + Array("com".utf8) + [0, 0, 1, 0, 1]
                _ = resolver.withSockaddr { sendto(fd, q, q.count, 0, $0, $1) }
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, 500)
                var buf = [UInt8](repeating: 0, count: 512)
                let n = ready > 0 ? recv(fd, &buf, buf.count, 0) : -1
                return (n > 0 ? n : -1, n > 0 ? 0 : ECONNREFUSED)
            })
        }
        if loopbackOnly { r += egressAttacks(f) }
        r.append(needs(blocked("bind a port other than launcher.port") {
            tcp(loopbackOnly ? "127.0.0.1" : f.listen, f.port == 65535 ? 65534 : f.port + 1, bindOnly: true)
        }, abi: 4, feature: "TCP bind/connect rules", f))

        r += rootAttacks(f)

        // Must work
        func works(_ what: String, _ call: () -> (Bool, String)) {
            let (ok, detail) = call()
            r.append(Result(what, expected: "works", result: detail, pass: ok))
        }
        if let models = f.modelsPath {
            works("read the models share") {
                guard let names = try? FileManager.default.contentsOfDirectory(atPath: models) else { return (false, "cannot list: \(Errno.current)") }
                for n in names where !n.hasPrefix(".") {
                    let (fd, e) = openResult(models + "/" + n, O_RDONLY)
                    if fd < 0 && e != EISDIR { return (false, "cannot read \(n): \(Errno(e))") }
                }
                return (true, "listed \(names.count) entries, read them")
            }
        }
        for (name, path) in f.writablePaths.sorted(by: { $0.key < $1.key }) {
            works("write the \(name) share") {
                let file = path + "/.cs-check-\(getpid())"
                let (fd, e) = openResult(file, O_WRONLY | O_CREAT | O_EXCL)
                unlink(file)
                return (fd >= 0, fd >= 0 ? "wrote and removed a file" : "refused: \(Errno(e))")
            }
        }
        works("threads") {
            final class Box: Sendable { let n = Mutex(0) }
            let box = Box()
            let group = DispatchGroup()
            for _ in 0..<4 {
                group.enter()
                detachThread { box.n.withLock { $0 += 1 }; group.leave() }
            }
            let ok = group.wait(timeout: .now() + 5) == .success && box.n.withLock { $0 } == 4
            return (ok, ok ? "4 threads ran" : "threads did not run")
        }
        works("memfd_create") {
            let fd = Probe.memfd("check")
            let e = errno
            if fd >= 0 { close(fd) }
            return (fd >= 0, fd >= 0 ? "ok" : "refused: \(Errno(e))")
        }
        works("get_mempolicy") {
            let (rc, e) = sys("get_mempolicy", 0, 0, 0, 0, 0)
            return (rc == 0, rc == 0 ? "ok" : "refused: \(Errno(e))")
        }
        works("write /dev/shm") {
            let file = "/dev/shm/cs-check-\(getpid())"
            let (fd, e) = openResult(file, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            unlink(file)
            return (fd >= 0, fd >= 0 ? "ok" : "refused: \(Errno(e))")
        }
        works("write the RAM temp (TMPDIR)") {
            let file = f.tempDir + "/cs-check"
            let (fd, e) = openResult(file, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            unlink(file)
            return (fd >= 0, fd >= 0 ? "ok" : "refused: \(Errno(e))")
        }
        return r
    }

    // MARK: egress

    /// Sends `head` to the egress proxy; the status line and body of its
    /// answer ("" when it closed without one), and the still open socket
    /// after a 200 (the caller closes it).
    static func askProxy(_ head: String) -> (status: Int, text: String, socket: Int32) {
        guard let endpoint = IPEndpoint(host: "127.0.0.1", port: Egress.proxyPort) else { return (-1, "", -1) }
        let fd = endpoint.streamSocket()
        guard fd >= 0 else { return (-1, "socket: \(Errno.current)", -1) }
        guard endpoint.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            let err = Errno.current
            close(fd)
            return (-1, "cannot connect to the proxy: \(err)", -1)
        }
        writeAll(fd, Array(head.utf8))
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while data.count < 16384 {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 15_000) > 0 else { break }
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            data += chunk[..<n]
            if let end = Relay.headEnd(data, from: 0), data[..<end].starts(with: Array("HTTP/1.1 200".utf8)) { break }
        }
        let text = String(decoding: data, as: UTF8.self)
        let status = text.hasPrefix("HTTP/1.1 ") ? Int(text.dropFirst(9).prefix(3)) ?? -1 : -1
        let body = text.split(separator: "\r\n\r\n", maxSplits: 1).dropFirst().first.map { $0.trimmingWhitespaceAndNewlines() } ?? ""
        if status == 200 { return (200, "200", fd) }
        close(fd)
        return (status, status < 0 ? "closed without an answer" : "\(status) \(body)", -1)
    }

    /// A ClientHello naming `serverName` (TLS 1.3 shaped, one suite, SNI
    /// only): enough for the proxy to judge; no server would finish it.
    static func clientHello(serverName: String) -> [UInt8] {
        let name = Array(serverName.utf8)
        let entry: [UInt8] = [0, UInt8(name.count >> 8), UInt8(name.count & 0xff)] + name
        let list: [UInt8] = [UInt8(entry.count >> 8), UInt8(entry.count & 0xff)] + entry
        let ext: [UInt8] = [0, 0, UInt8(list.count >> 8), UInt8(list.count & 0xff)] + list
        let body: [UInt8] = [3, 3] + (0..<32).map { _ in UInt8.random(in: 0...255) } + [0, 0, 2, 0x13, 0x01, 1, 0]
            + [UInt8(ext.count >> 8), UInt8(ext.count & 0xff)] + ext
        let hs: [UInt8] = [1, 0, UInt8(body.count >> 8), UInt8(body.count & 0xff)] + body
        return [22, 3, 1, UInt8(hs.count >> 8), UInt8(hs.count & 0xff)] + hs
    }

    /// launcher.egress from inside: nothing at 127.0.0.1:3128 without a
    /// list; with one, an allowed host is not refused by the list (reached,
    /// or "not reachable from here"), and a host not listed, an IP literal,
    /// 169.254.169.254, a name resolving to 127.0.0.1 and an SNI that is not
    /// the CONNECT host are each refused for that reason.
    static func egressAttacks(_ f: Facts) -> [Result] {
        let rules = Egress.rules(f.egress ?? [])
        guard !rules.isEmpty else {
            return [blocked("connect to 127.0.0.1:\(Egress.proxyPort) (no egress proxy: launcher.egress is empty)") { tcp("127.0.0.1", Egress.proxyPort, bindOnly: false) }]
        }
        var r: [Result] = []
        func refused(_ attempt: String, _ head: String, because reason: String) {
            let a = askProxy(head)
            if a.socket >= 0 { close(a.socket) }
            r.append(Result(attempt, expected: "refused: \(reason)", result: a.text, pass: (a.status == 403 || a.status == 400) && a.text.contains(reason)))
        }
        // An allowed host: the first exact entry, else a name under the first wildcard.
        let pick = rules.first { !$0.wildcard } ?? rules[0]
        let host = pick.wildcard ? "www." + pick.host : pick.host
        let port = pick.ports.contains(443) ? 443 : pick.ports[0]
        let allowed = askProxy("CONNECT \(host):\(port) HTTP/1.1\r\nHost: \(host):\(port)\r\n\r\n")
        let listed = allowed.status == 200 || allowed.status == 502
        r.append(Result("egress: CONNECT \(host):\(port) (on launcher.egress)", expected: "allowed by the list",
                        result: allowed.status == 200 ? "allowed, connected" : allowed.status == 502 ? "allowed by the list; not reachable from here (\(allowed.text))" : allowed.text,
                        pass: listed))
        // The SNI check needs the allowed host reachable: with a 200, a
        // ClientHello naming another server must end the tunnel unanswered.
        if allowed.status == 200 {
            writeAll(allowed.socket, clientHello(serverName: "comfy-sandbox-check.invalid"))
            var p = pollfd(fd: allowed.socket, events: Int16(POLLIN), revents: 0)
            var byte: UInt8 = 0
            let closed = poll(&p, 1, 15_000) > 0 && read(allowed.socket, &byte, 1) <= 0
            r.append(Result("egress: TLS to \(host) with SNI comfy-sandbox-check.invalid", expected: "tunnel closed",
                            result: closed ? "closed before a byte went on" : "the tunnel stayed open", pass: closed))
            close(allowed.socket)
        } else {
            if allowed.socket >= 0 { close(allowed.socket) }
            r.append(Result("egress: TLS to \(host) with SNI comfy-sandbox-check.invalid", expected: "tunnel closed",
                            result: "not tried: \(host) is not reachable from here (the SNI check is in the egress tests)", pass: listed))
        }
        refused("egress: CONNECT comfy-sandbox-check.invalid:443 (not on the list)", "CONNECT comfy-sandbox-check.invalid:443 HTTP/1.1\r\n\r\n",
                because: "is not in launcher.egress")
        refused("egress: CONNECT 1.1.1.1:443 (an IP literal)", "CONNECT 1.1.1.1:443 HTTP/1.1\r\n\r\n", because: "is an IP address")
        refused("egress: GET http://169.254.169.254/latest/meta-data/ (cloud metadata)",
                "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n", because: "is an IP address")
        refused("egress: CONNECT localhost:443 (resolves to 127.0.0.1; on the check's list)", "CONNECT localhost:443 HTTP/1.1\r\n\r\n",
                because: "resolves to")
        r.append(blocked("egress: TCP 1.1.1.1:\(Egress.proxyPort) directly, without the proxy") { tcp("1.1.1.1", Egress.proxyPort, bindOnly: false) })
        return r
    }

    /// fds open beyond 0-2 (the directory stream used to list them excluded).
    static func leakedFDs() -> [Int32] {
        guard let dir = opendir("/proc/self/fd") else { return [-1] }
        defer { closedir(dir) }
        let own = dirfd(dir)
        var fds: [Int32] = []
        while let e = readdir(dir) {
            let name = withUnsafePointer(to: e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            if let fd = Int32(name), fd > 2, fd != own { fds.append(fd) }
        }
        return fds
    }

    /// The inside: attacks, then the reachability server. Never returns.
    public static func inside(_ f: Facts) -> Never {
        let results = attacks(f)
        // Processes meant to outlive the session, marked with the tag: a
        // sleeper double-forked into a session of its own, and a process
        // whose thread-group leader exited while a thread runs on (a zombie
        // leader, which a child list skipping state Z misses). The outer
        // side looks for them on the host once the session has ended; they
        // are reported only once they run, so a failed exec cannot pass.
        let tag = f.leftoverTag ?? "\(getpid())"
        spawnDetached("/bin/sleep", ["sleep", "600.\(tag)"])
        spawnDetached("/usr/bin/python3", ["python3", "-c", """
            import ctypes, threading, time
            def linger():
                ctypes.CDLL(None).prctl(15, b"cs-zl-\(tag)", 0, 0, 0)
                time.sleep(600)
            threading.Thread(target=linger).start()
            time.sleep(0.2)
            ctypes.CDLL(None).pthread_exit(None)
            """])
        var sleeper = false, zombie = false
        for _ in 0..<300 where !(sleeper && zombie) {
            for pid in ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap({ Int32($0) }) {
                let args = (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).split(separator: 0)
                if args.contains(where: { String(decoding: $0, as: UTF8.self) == "600.\(tag)" }) { sleeper = true }
                for tid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? [] {
                    if (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8))?.hasPrefix("cs-zl-\(tag)") == true { zombie = true }
                }
            }
            if !(sleeper && zombie) { usleep(10_000) }
        }
        emit("ABANDONED \(sleeper ? 1 : 0) \(zombie ? 1 : 0)")
        let line = (try? JSONEncoder().encode(results)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        emit("RESULTS " + line)
        // Bind listen:port (inside the namespace in loopback-only mode) and
        // answer the outer side's HTTP and WebSocket requests.
        let host = f.network == "loopback-only" ? "127.0.0.1" : f.listen
        guard let server = try? Relay.listen(host: host, port: f.port) else {
            emit("LISTEN-FAILED \(Errno.current)")
            exit(0)
        }
        emit("LISTENING")
        for _ in 0..<2 {
            var pfd = pollfd(fd: server.raw, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 15_000) > 0 else { break }
            let c = SocketInfo.accept(server.raw)
            guard c >= 0 else { break }
            serveOne(c)
            close(c)
        }
        exit(0)
    }

    /// One unbuffered line on stdout (the outer side reads it at once).
    static func emit(_ line: String) { writeAll(1, Array((line + "\n").utf8)) }

    static func serveOne(_ fd: Int32) {
        let head = HTTPProbe.readHead(fd)
        if head.lowercased().contains("upgrade: websocket"),
           let keyLine = head.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("sec-websocket-key:") }) {
            let key = keyLine.split(separator: ":", maxSplits: 1)[1].trimmingWhitespace()
            let accept = Data(Insecure.SHA1.hash(data: Data((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))).base64EncodedString()
            writeAll(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: \(accept)\r\n\r\n")
            // One masked client frame (< 126 bytes) echoed back unmasked.
            var hdr = [UInt8](repeating: 0, count: 2)
            guard read(fd, &hdr, 2) == 2 else { return }
            let len = Int(hdr[1] & 0x7f)
            var mask = [UInt8](repeating: 0, count: 4)
            guard read(fd, &mask, 4) == 4 else { return }
            var payload = [UInt8](repeating: 0, count: len)
            var got = 0
            while got < len { let n = payload[got...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }; if n <= 0 { return }; got += n }
            for i in 0..<len { payload[i] ^= mask[i % 4] }
            writeAll(fd, [0x81, UInt8(len)] + payload)
        } else {
            writeAll(fd, Array("HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nsandbox-ok\n".utf8))
        }
    }
}
