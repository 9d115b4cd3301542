import Dispatch
import FoundationEssentials
import Glibc
import SandboxOS
import SandboxEgress
import SandboxConfig

/// The one path from root to a confined ComfyUI, shared by `run`, `launch`,
/// `shell` and `check-sandbox`:
///
///  1. as root, prepare: the sandbox home, a per-run RAM temp, the GPU device
///     nodes, the loopback-only network namespace;
///  2. build the confinement: identity, limits, the Landlock ruleset (from
///     O_PATH fds opened here), the seccomp program;
///  3. build the environment from nothing;
///  4. `SpawnSpec.spawn()` runs the ordered drop in C after fork
///     (Sources/CSandbox/spawn.c) and execs;
///  5. afterwards, `Session.cleanup()` removes the RAM temp; the namespace
///     goes with the last fd and process.
public enum Launcher {
    /// What the session is for: decides a few extra rules.
    public enum Purpose: Sendable, Equatable {
        case run, launch, shell
        /// check-sandbox: the tool re-executes itself inside, so its own
        /// binary and libraries must be readable and executable.
        case check
    }

    /// This executable, resolved once at start: /proc/self/exe can later
    /// point at a replaced file.
    public static let selfExecutable: String = {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }()
    /// The files mapped at start (binary + libraries), for self re-execution under Landlock.
    public static let selfMappedFiles: [String] = Landlock.selfMappedFiles()

    /// Prepared resources and the confinement built on them.
    public final class Session: @unchecked Sendable {
        public let config: Config
        public var confinement: Confinement
        public var environment: [String: String]
        public let tempDir: String
        let removeTempDir: Bool
        /// An flock on the RAM temp, held for as long as the session lives:
        /// what tells a later launcher's sweep that the directory is in use.
        var tempLock: OwnedFD?
        public var gpu: GPUSelection
        public var landlock: Landlock.Summary?
        public var seccompOn: Bool
        public var notes: [String] = []
        public var workingDirectory: String
        /// The egress proxy's pid while it runs (launcher.egress): a
        /// companion of the session, ended with it.
        public internal(set) var egressProxy: pid_t?

        init(config: Config, confinement: Confinement, environment: [String: String], tempDir: String, removeTempDir: Bool,
             gpu: GPUSelection, landlock: Landlock.Summary?, seccompOn: Bool, workingDirectory: String) {
            self.config = config
            self.confinement = confinement
            self.environment = environment
            self.tempDir = tempDir
            self.removeTempDir = removeTempDir
            self.gpu = gpu
            self.landlock = landlock
            self.seccompOn = seccompOn
            self.workingDirectory = workingDirectory
        }

        /// What `Launcher.supervised` must stop and reap with the session,
        /// and what to call each when it dies early.
        public var companions: [pid_t: String] { egressProxy.map { [$0: "the egress proxy"] } ?? [:] }

        /// Ends the egress proxy (SIGTERM, then reaped). Safe to call twice.
        public func stopEgressProxy() {
            guard let pid = egressProxy else { return }
            egressProxy = nil
            kill(pid, SIGTERM)
            _ = ChildExit.wait(pid)
        }

        /// `supervised` has stopped and reaped the companions.
        public func companionsReaped() { egressProxy = nil }

        /// Removes the per-run RAM temp. Safe to call twice.
        public func cleanup() {
            stopEgressProxy()
            if removeTempDir { FileTree.removeTree(tempDir) }
            // Empty once the init has exited (the kernel ends every process
            // of its PID namespace first); a live session's stays (rmdir fails).
            confinement.cgroup?.remove()
            tempLock = nil
            confinement.networkNamespace = nil
            confinement.landlockRuleset = nil
        }

        /// Writes the notes (what is not enforced, what is missing) to stderr.
        public func printNotes() {
            for note in notes { printError("comfy-sandbox: \(note)") }
        }
    }

    /// For `run`: the loopback-only network namespace (as root), made on a
    /// thread of its own while the main thread reads and checks the config
    /// and plans the root; `prepare` takes it last, just before the spawn.
    /// It is the longest step of a start (1 to 2 ms of the kernel's: every
    /// pernet init, the loopback device, and the previous session's
    /// namespace being torn down under the same locks), and nothing else
    /// depends on it. The seccomp program is made by whichever thread gets
    /// to it first: this one once the namespace is there, or the main
    /// thread when it needs it sooner (Prepared.get). What the config turns
    /// out not to want is not used.
    public static func prepareAhead() {
        guard geteuid() == 0, loopbackNamespace.claim() else { return }
        let started = detachThread(elsewhere: true) {
            // This moves the thread into the new namespace; it does nothing
            // with the network afterwards and ends.
            loopbackNamespace.make()
            if Seccomp.prepared.claim() { Seccomp.prepared.make() }
        }
        if !started {
            // Never on this thread: it would leave the launcher itself in
            // the new namespace. The child makes its own instead.
            loopbackNamespace.publish(-1)
        }
    }

    /// Where the per-session RAM temps go, and what they are called.
    static let ramTempParent = "/dev/shm"
    static func ramTempPrefix(_ user: AccountLookup.User) -> String { "comfy-sandbox.\(user.name)." }

    /// Removes `user`'s RAM temps that no live session holds; returns their paths.
    public static func sweepRAMTemps(user: AccountLookup.User, graceSeconds: Int = 10) -> [String] {
        FileTree.sweepStaleTemps(in: ramTempParent, prefix: ramTempPrefix(user), owner: user.uid, graceSeconds: graceSeconds)
    }

    /// An fd of a namespace with only `lo` up, or -1; made by `prepareAhead`.
    static let loopbackNamespace = Prepared<Int32> { LoopbackNamespace.enterNew() }

    /// Prepares everything as root and builds the confinement.
    public static func prepare(_ config: Config, purpose: Purpose) throws -> Session {
        let timing = ProcessEnvironment.value("COMFY_SANDBOX_TIMING") != nil
        var t0 = DispatchTime.now().uptimeNanoseconds
        func mark(_ what: String) {
            guard timing else { return }
            let now = DispatchTime.now().uptimeNanoseconds
            printError("timing: \(what) \(Format.fixed(Double(now - t0) / 1e6, 2)) ms")
            t0 = now
        }
        let id = try AccountLookup.sandboxIdentity(config)
        var confinement = try SandboxConfinement.basic(config, id: id)
        var notes: [String] = []
        // Root drops to the sandbox user itself. The systemd unit instead
        // starts us as the sandbox user with no capabilities and a private
        // network namespace (see systemd/comfy-sandbox.service): then there is
        // nothing to drop, and everything else below still applies.
        let privileged = geteuid() == 0
        if !privileged {
            try requireAlreadyDropped(id)
            confinement.dropIdentity = false
            confinement.groups = id.groups
        }

        mark("identity")
        // Everything the confined program leaves behind is reparented to us,
        // not to init, so that it ends with the session (`killLeftovers`).
        ProcessControl.becomeSubreaper()
        // Home: must exist (provision makes it); created here only when missing.
        let home = config.sandboxUser.home
        try FileTree.ensureOwnedDirectory(home, uid: id.user.uid, gid: id.user.gid, mode: 0o700)
        // Each enabled node's writable data directory (NODE_DATA), outside its sealed code.
        try NodeEnvironment.prepareDataDirectories(config, uid: id.user.uid, gid: id.user.gid)

        // RAM temp: a fresh directory per run, owned by the sandbox user, 0700.
        // As root the child gets a constructed root, whose private /dev/shm
        // holds it (gone with the session's mount namespace); unprivileged
        // (the systemd unit) it is made in the host's /dev/shm.
        let constructed = privileged
        let temp: String
        let removeTemp: Bool
        var tempLock: OwnedFD?
        // First the RAM temps of launchers that died without cleaning up
        // (SIGKILL, OOM, power cut of the session but not the machine; an
        // unprivileged launcher, or an older version): files there hold RAM
        // until reboot.
        if config.launcher.ramTemp {
            for stale in sweepRAMTemps(user: id.user) {
                notes.append("removed \(stale), left by a launcher that did not clean up")
            }
        }
        if constructed {
            temp = ConstructedRoot.tempDirectory
            removeTemp = false
        } else if config.launcher.ramTemp {
            (temp, tempLock) = try FileTree.makeLockedTempDirectory(in: ramTempParent, prefix: ramTempPrefix(id.user),
                                                                    uid: id.user.uid, gid: id.user.gid)
            removeTemp = true
        } else {
            temp = home + "/tmp"
            try FileTree.ensureOwnedDirectory(temp, uid: id.user.uid, gid: id.user.gid, mode: 0o700)
            removeTemp = false
        }

        mark("dirs")
        let gpu = GPUSelection.select(config.launcher.gpu, prepareNodes: privileged)
        mark("gpu")
        if let note = gpu.note { notes.append(note) }

        // Network: loopback-only gets its own namespace with only `lo`.
        var takeAheadLast = false
        let egress = config.launcher.network == .loopbackOnly && !config.launcher.egress.isEmpty
        if egress && !privileged {
            // The proxy must stand in the host's namespace; under the unit's
            // PrivateNetwork=yes there is no way out to serve it from.
            FileTree.removeTree(temp)
            throw SandboxError.failure("launcher.egress lists \(config.launcher.egress.count) service(s), but this launcher runs unprivileged (the systemd unit, PrivateNetwork=yes) and has no way out for the egress proxy",
                                       hint: "start it as root (`comfy-sandbox start`), or empty launcher.egress to run under the unit loopback-only")
        }
        if config.launcher.network == .loopbackOnly && !privileged {
            // Unprivileged (the systemd unit's PrivateNetwork=yes): the
            // namespace we are in must already be loopback-only.
            let names = networkInterfaces()
            guard names == ["lo"] else {
                FileTree.removeTree(temp)
                throw SandboxError.failure("launcher.network is loopback-only, but this unprivileged launcher sees the interfaces \(names) and cannot make a namespace",
                                           hint: "start it as root, or under the systemd unit (PrivateNetwork=yes)")
            }
        } else if config.launcher.network == .loopbackOnly && (purpose == .run || purpose == .shell) && !egress {
            // Nothing else joins it (no relay): made ahead on run's second
            // thread (prepareAhead) and taken last, below; else made by the
            // child itself.
            takeAheadLast = true
        } else if config.launcher.network == .loopbackOnly {
            // Made up front: the relay or the egress proxy's socket joins it.
            // `run` with egress may have made it ahead already.
            let ahead = loopbackNamespace.take(replacingWith: -1) ?? -1
            let fd = ahead >= 0 ? ahead : LoopbackNamespace.make()
            guard fd >= 0 else {
                FileTree.removeTree(temp)
                throw SandboxError.failure("cannot create the loopback-only network namespace: \(Errno.current)",
                                           hint: "the launcher needs CAP_SYS_ADMIN and CAP_NET_ADMIN; or set launcher.network to \"host\"")
            }
            confinement.networkNamespace = OwnedFD(fd)
        }

        // A namespace made ahead that this config does not use (network
        // "host"): closed now rather than held for the whole run.
        if !takeAheadLast, confinement.networkNamespace == nil, let fd = loopbackNamespace.take(replacingWith: -1), fd >= 0 { close(fd) }

        mark("network")
        // Landlock.
        var summary: Landlock.Summary?
        if config.launcher.landlock != .off {
            let (ruleset, s) = try Landlock.ruleset(rules(config, purpose: purpose, temp: temp, gpu: gpu),
                                                    net: netPolicy(config))
            summary = s
            if ruleset == nil {
                if config.launcher.landlock == .enforce {
                    FileTree.removeTree(temp)
                    throw SandboxError.failure("this kernel cannot enforce Landlock (ABI 0) and launcher.landlock is true",
                                               hint: "boot with lsm=...,landlock, or set launcher.landlock to \"best-effort\" to start without it")
                }
                notes.append("WARNING: Landlock is NOT enforced (kernel ABI 0, launcher.landlock = \"best-effort\"): no filesystem or port rules")
            } else {
                do { notes += try Landlock.enforcementNotes(s, mode: config.launcher.landlock, what: "refusing to start") } catch {
                    FileTree.removeTree(temp)
                    throw error
                }
            }
            confinement.landlockRuleset = ruleset
        } else {
            notes.append("WARNING: Landlock is OFF (launcher.landlock = false): the sandbox user's file permissions are the only file boundary")
        }

        mark("landlock")
        // Seccomp, last in the child.
        if config.launcher.seccomp {
            confinement.seccompProgram = try Seccomp.program()
        } else {
            notes.append("WARNING: seccomp is OFF (launcher.seccomp = false): mount/ptrace/bpf/keyctl/io_uring... are only stopped by the missing capabilities")
        }

        mark("seccomp")
        // An instance with output "own" writes output/<name>: made here,
        // by fd in the share, the primary user's like the share (its
        // default ACL applies), if it is not there yet.
        if let dir = config.outputDirectory, let share = config.shares.first(where: { $0.name == "output" }), dir != share.path {
            try Self.ensureInstanceOutput(share: share.path, name: Paths.lastComponent(dir), config: config)
        }
        if constructed {
            // /dev/tty: the session's own pty (OperatorTerminal), for a shell
            // and for a run whose stdin is a terminal.
            let terminal = purpose == .shell || (purpose == .run && isatty(0) == 1)
            confinement.root = try RootLayout.forSession(config, id: id, gpu: gpu, terminal: terminal,
                                                         extraReadOnly: purpose == .check ? selfMappedFiles : [])
            mark("root")
            var note: String?
            confinement.cgroup = SessionCgroup.make(config.launcher.limits, note: &note)
            if let note { notes.append("WARNING: " + note) }
            mark("cgroup")
        }
        if takeAheadLast {
            if let fd = loopbackNamespace.take(replacingWith: -1), fd >= 0 {
                confinement.networkNamespace = OwnedFD(fd)
            } else {
                confinement.newLoopbackNetwork = true
            }
            mark("netns")
        }
        let env = environment(config, home: home, temp: temp, gpu: gpu, jit: constructed ? ConstructedRoot.jitDirectory : nil)
        let cwd = Paths.exists(config.comfyui.path) && purpose == .launch ? config.comfyui.path : home
        let session = Session(config: config, confinement: confinement, environment: env, tempDir: temp, removeTempDir: removeTemp,
                              gpu: gpu, landlock: summary, seccompOn: config.launcher.seccomp, workingDirectory: cwd)
        session.notes = notes
        session.tempLock = tempLock
        if egress, let netns = session.confinement.networkNamespace {
            // Last, once nothing above can fail: a running proxy is a process
            // to end, which `cleanup` (and `supervised`) then do.
            do {
                var rules = Egress.rules(config.launcher.egress)
                // check-sandbox only: `localhost` on the list, so that its
                // "name resolving to 127.0.0.1" is refused by the address
                // check and not merely by the list.
                if purpose == .check { rules.append(Egress.Rule(host: "localhost", wildcard: false, ports: Egress.defaultPorts)) }
                let listening = try EgressProxy.listenInside(netns.raw)
                let (log, logNote) = EgressProxy.openLog(config)
                if let logNote { session.notes.append(logNote) }
                session.egressProxy = try EgressProxy.spawn(listening: listening, log: log, rules: rules, config: config)
            } catch {
                session.cleanup()
                throw error
            }
            mark("egress proxy")
        }
        return session
    }

    /// Unprivileged start: we must already be exactly the sandbox user, with
    /// no capability in any set (what systemd's User= and an empty
    /// CapabilityBoundingSet= give).
    static func requireAlreadyDropped(_ id: AccountLookup.SandboxIdentity) throws {
        let noCaps = Capabilities.current()?.isEmpty ?? false
        guard getuid() == id.user.uid, geteuid() == id.user.uid, noCaps else {
            throw SandboxError.failure("the launcher must start as root (it drops to \(id.user.name) itself) or as \(id.user.name) with no capabilities",
                                       hint: "run it with sudo")
        }
    }

    /// Names of the network interfaces in this process's namespace.
    public static func networkInterfaces() -> [String] {
        guard let list = if_nameindex() else { return [] }
        defer { if_freenameindex(list) }
        var names: [String] = []
        var p = list
        while p.pointee.if_index != 0, let name = p.pointee.if_name {
            names.append(String(cString: name))
            p += 1
        }
        return names.sorted()
    }
}
