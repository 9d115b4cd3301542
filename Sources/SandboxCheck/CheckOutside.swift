import FoundationEssentials
import Glibc
import SandboxCore
import SandboxOS
import SandboxEgress
import SandboxUI
import SandboxConfig

extension SandboxCheck {
    /// The outer (root) side of check-sandbox: prepares the exact session
    /// `launch` would, plus the attack fixtures, runs the inside, and checks
    /// reachability from the host.
    /// What this kernel gives the session, for the report's head: its
    /// release, the Landlock ABI, and each rule the launcher makes that the
    /// kernel cannot enforce.
    public struct KernelReport: Codable, Sendable {
        public var release: String
        public var landlockABI: Int
        public var openat2: Bool
        public var fchmodat2: Bool
        public var notEnforced: [String]

        enum CodingKeys: String, CodingKey {
            case release, openat2, fchmodat2
            case landlockABI = "landlock_abi"
            case notEnforced = "not_enforced"
        }
    }

    public static func kernelReport(_ config: Config) -> KernelReport {
        let abi = Landlock.abi
        let missing = config.launcher.landlock == .off ? ["Landlock is off (launcher.landlock = false)"]
            : Landlock.gaps(abi: abi, net: Launcher.netPolicy(config), scope: true).filter(\.weaker).map(\.description)
        return KernelReport(release: Kernel.release, landlockABI: abi, openat2: Kernel.hasOpenat2, fchmodat2: Kernel.hasFchmodat2,
                            notEnforced: missing)
    }

    public static func outside(_ config: Config) throws -> [Result] {
        let session = try Launcher.prepare(config, purpose: .check)
        defer { session.cleanup() }
        session.printNotes()
        let id = try AccountLookup.sandboxIdentity(config)
        let loopbackOnly = config.launcher.network == .loopbackOnly

        // A setuid-root copy of id, in a root-owned directory under state_dir
        // (not a nosuid mount, not writable by the sandbox), readable and
        // executable inside through one extra Landlock rule.
        try FileManager.default.createDirectory(atPath: config.stateDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        let (fixtureDir, fixtureFD) = try SafeFS.makeTemporaryDirectory(in: config.stateDir, prefix: "check.", mode: 0o755, uid: 0, gid: 0)
        close(fixtureFD)
        defer { FileTree.removeTree(fixtureDir) }
        let setuidCopy = fixtureDir + "/id"
        var copied = false
        if let data = FileManager.default.contents(atPath: "/usr/bin/id") {
            let fd = open(setuidCopy, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o700)
            if fd >= 0 {
                _ = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                copied = fchown(fd, 0, 0) == 0 && fchmod(fd, 0o4755) == 0
                close(fd)
            }
        }
        // Rebuild Landlock with the fixture allowed (same rules + one file).
        if config.launcher.landlock != .off {
            var rules = Launcher.rules(config, purpose: .check, temp: session.tempDir, gpu: session.gpu)
            if copied { rules.append(Landlock.PathRule(setuidCopy, [.readFile, .execute])) }
            let (ruleset, _) = try Landlock.ruleset(rules, net: Launcher.netPolicy(config))
            session.confinement.landlockRuleset = ruleset
        }

        // A listener on the host's loopback: the sandbox must not reach it.
        let hostListener = try Relay.listen(host: "127.0.0.1", port: 0)
        let hostPort = Relay.boundPort(hostListener.raw)

        // A private file of the primary user. Root writes in a directory that
        // user owns, so by fd: the home opened without following a link, the
        // file created O_EXCL|O_NOFOLLOW under a fresh name (a planted symlink
        // cannot redirect the write), chowned through its fd.
        var secret: String?
        var secretDir: Int32 = -1
        let secretName = ".comfy-sandbox-check-\(UInt64.random(in: 0...UInt64.max))"
        if let primary = AccountLookup.user(config.primaryUser) {
            secretDir = open(primary.home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if secretDir >= 0 {
                let fd = openat(secretDir, secretName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
                if fd >= 0 {
                    _ = "secret\n".withCString { write(fd, $0, 7) }
                    if fchown(fd, primary.uid, primary.gid) == 0 { secret = primary.home + "/" + secretName }
                    close(fd)
                }
            }
        }
        defer {
            if secretDir >= 0 {
                unlinkat(secretDir, secretName, 0)
                close(secretDir)
            }
        }

        // A process of the sandbox user outside the sandbox's Landlock domain
        // (same uid, nothing else): with signal scoping (ABI 6) the inside
        // cannot signal it; without, it can, and the table says so.
        let foreign = try SpawnSpec(path: "/bin/sleep", arguments: ["sleep", "60"], environment: [:], workingDirectory: "/",
                                    stdin: -1, stdout: -1, stderr: -1, confinement: SandboxConfinement.basic(config)).spawn()
        defer { kill(foreign, SIGKILL); _ = ChildExit.wait(foreign) }

        var writable: [String: String] = [:]
        for share in config.shares where share.access.writable && ["output", "workflows"].contains(share.name) {
            writable[share.name] = share.path
        }
        var facts = Facts(uid: id.user.uid, network: config.launcher.network.rawValue, listen: config.launcher.listen,
                          port: UInt16(clamping: config.launcher.port), launcherPid: getpid(),
                          hostListenerPort: hostPort, setuidCopy: copied ? setuidCopy : nil, primaryHomeFile: secret,
                          modelsPath: config.shares.first { $0.name == "models" }?.path,
                          writablePaths: writable, comfyPath: config.comfyui.path, tempDir: session.tempDir,
                          landlockABI: config.launcher.landlock == .off ? nil : session.landlock?.abi ?? 0, foreignPid: foreign,
                          egress: config.launcher.egress)
        // The constructed root's attacks: what is on the host for the inside
        // to (fail to) see: the host's process count, a process whose argv
        // holds a secret, a file in the host's /dev/shm.
        let tag = String(UInt32.random(in: 100_000...999_999))
        facts.leftoverTag = tag
        facts.home = config.sandboxUser.home
        // The GPUs of the other instances (launcher.instances) that this one does not have.
        let others = Set(config.launcher.instances.filter { $0.name != config.instance }.flatMap { i in
            GPUSelection.select(i.gpu, prepareNodes: false).indexes
        }).subtracting(session.gpu.indexes)
        if !others.isEmpty { facts.otherGPUNodes = others.sorted().map { "/dev/nvidia\($0)" } }
        facts.hostPidCount = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }.count
        facts.shmSize = ByteSize.parse(config.launcher.limits.shmSize)
        facts.memoryLimit = session.confinement.cgroup == nil ? nil : config.launcher.limits.memory.flatMap(ByteSize.parse)
        let secretArg = "--password=cs-check-\(tag)"
        let argvHolder = try? SpawnSpec(path: "/bin/sh", arguments: ["/bin/sh", "-c", "sleep 60", "sh", secretArg],
                                        environment: HostCommand.minimalEnvironment, newSession: true).spawn()
        if argvHolder != nil { facts.hostProcessArgument = secretArg }
        defer { if let argvHolder { kill(argvHolder, SIGKILL); _ = ChildExit.wait(argvHolder) } }
        let shmMarker = "cs-check-\(tag)"
        let shmFD = open("/dev/shm/" + shmMarker, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        if shmFD >= 0 { close(shmFD); facts.hostShmMarker = shmMarker }
        defer { if shmFD >= 0 { unlink("/dev/shm/" + shmMarker) } }
        // The setuid copy, inside the root (its bind is nosuid, as every one).
        if copied { try session.confinement.root?.bind(setuidCopy, .readOnly) }
        let factsJSON = String(decoding: try JSONEncoder().encode(facts), as: UTF8.self)

        // The relay, as `launch` runs it, on an ephemeral host port (the
        // configured one may be in use by a running ComfyUI).
        var relayPid: pid_t?
        var relayPort: UInt16 = facts.port
        if loopbackOnly {
            let relaySocket = try Relay.listen(host: "127.0.0.1", port: 0)
            relayPort = Relay.boundPort(relaySocket.raw)
            relayPid = try Relay.spawn(listening: relaySocket, diag: try Relay.peerLookup(),
                                       door: try Relay.door(config, listening: relaySocket.raw), targetPort: facts.port,
                                       networkNamespace: session.confinement.networkNamespace, config: config)
        }
        defer { if let relayPid { kill(relayPid, SIGTERM); _ = ChildExit.wait(relayPid) } }

        let out: (read: Int32, write: Int32)
        do { out = try makePipe() } catch { throw SandboxError.failure("pipe: \(error)") }
        let exe = Launcher.selfExecutable
        let spec = SpawnSpec(path: exe, arguments: [exe, "__internal", "check-inside", "--facts", factsJSON],
                             environment: session.environment, workingDirectory: session.workingDirectory,
                             stdout: out.write, newSession: true, confinement: session.confinement)
        let pid: pid_t
        do { pid = try spec.spawn() } catch { close(out.read); close(out.write); throw error }
        close(out.write)
        let reader = LineReader(fd: out.read)
        defer { close(out.read) }

        var results: [Result] = []
        var inner = false
        var abandoned: (sleeper: Bool, zombie: Bool)?
        while let line = reader.next(timeout: 60) {
            if line.hasPrefix("ABANDONED ") {
                let flags = line.dropFirst(10).split(separator: " ")
                abandoned = (flags.first == "1", flags.last == "1")
            } else if line.hasPrefix("RESULTS ") {
                results += (try? JSONDecoder().decode([Result].self, from: Data(line.dropFirst(8).utf8))) ?? []
                inner = true
            } else if line.hasPrefix("LISTEN-FAILED") {
                results.append(Result("bind launcher.listen:launcher.port inside", expected: "works", result: line, pass: false))
                break
            } else if line == "LISTENING" {
                results.append(Result("bind launcher.listen:launcher.port inside", expected: "works", result: "listening", pass: true))
                let via = loopbackOnly ? "through the relay" : "directly (host network)"
                let host = loopbackOnly ? "127.0.0.1" : config.launcher.listen
                let http = HTTPProbe.get(host: host, port: relayPort, path: "/")
                results.append(Result("reach it from the host \(via)", expected: "works", result: http.detail, pass: http.ok && http.body.contains("sandbox-ok")))
                let ws = HTTPProbe.websocketEcho(host: host, port: relayPort, message: "ping-\(getpid())")
                results.append(Result("WebSocket upgrade \(via)", expected: "works", result: ws.detail, pass: ws.ok))
                break
            }
        }
        let exit = ChildExit.wait(pid)
        if let relay = relayPid {
            kill(relay, SIGTERM)
            _ = ChildExit.wait(relay)
            relayPid = nil
        }
        session.stopEgressProxy()
        // Quiet: what it kills here is the check's own fixture (below).
        Launcher.killLeftovers(quiet: true)
        // The inside left a sleeper (setsid, double fork) and a zombie
        // leader running: the session's end must have taken them, on the
        // host too (found by argument and thread name: pids inside are the
        // session's PID namespace's).
        func leftover(_ attempt: String, started: Bool?, _ find: () -> [pid_t]) {
            guard let started else {
                if inner { results.append(Result(attempt, expected: "killed", result: "the inside did not report it", pass: false)) }
                return
            }
            guard started else {
                results.append(Result(attempt, expected: "killed", result: "the inside could not start it", pass: false))
                return
            }
            var left = find()
            for _ in 0..<50 where !left.isEmpty { usleep(20_000); left = find() }
            for pid in left { kill(pid, SIGKILL) }
            results.append(Result(attempt, expected: "killed", result: left.isEmpty ? "killed with the session" : "still running: \(left)",
                                  pass: left.isEmpty))
        }
        leftover("leave a process running after the session ends (setsid, double fork)", started: abandoned?.sleeper) {
            HostProcesses.withArgument("600.\(tag)")
        }
        leftover("leave a thread running after its thread-group leader exited (zombie leader)", started: abandoned?.zombie) {
            HostProcesses.withThreadNamed("cs-zl-\(tag)")
        }
        if !inner {
            results.append(Result("run the check inside the confinement", expected: "works",
                                  result: "the inside exited (\(exit.code)) without results", pass: false))
        }
        return results
    }
}

/// Host processes found by what they are, not by pid.
enum HostProcesses {
    static func all() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
    }
    static func withArgument(_ arg: String) -> [pid_t] {
        all().filter { pid in
            (FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()).split(separator: 0)
                .contains { String(decoding: $0, as: UTF8.self) == arg }
        }
    }
    static func withThreadNamed(_ name: String) -> [pid_t] {
        all().filter { pid in
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).contains { tid in
                (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8))?
                    .trimmingWhitespaceAndNewlines().hasPrefix(name) == true
            }
        }
    }
}

/// Reads lines from a pipe with a timeout.
final class LineReader {
    let fd: Int32
    var buffer = [UInt8]()
    init(fd: Int32) { self.fd = fd }
    func next(timeout: Int32) -> String? {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return line
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, timeout * 1000) > 0 else { return nil }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { return buffer.isEmpty ? nil : { let s = String(decoding: buffer, as: UTF8.self); buffer = []; return s }() }
            buffer += chunk[..<n]
        }
    }
}
