import CSandbox
import Dispatch
import FoundationEssentials
import Glibc

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
    static let loopbackNamespace = Prepared<Int32> { cs_loopback_netns_here() }

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
        _ = cs_become_subreaper()
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
            let fd = ahead >= 0 ? ahead : cs_new_loopback_netns()
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
        var caps = cs_capsets()
        let noCaps = cs_capget_self(&caps) == 0 && caps.effective == 0 && caps.permitted == 0 && caps.inheritable == 0
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

    /// The port policy: bind only on launcher.port. In loopback-only mode
    /// connect is also limited to launcher.port (and the egress proxy's
    /// port when launcher.egress is set): the namespace holds nothing
    /// else worth reaching, and if the namespace were ever escaped this still
    /// keeps TCP connects to the host's services closed. In host mode connect
    /// is not handled (ComfyUI and nodes may fetch over the network).
    static func netPolicy(_ config: Config) -> Landlock.NetPolicy {
        let port = UInt16(clamping: config.launcher.port)
        switch config.launcher.network {
        case .loopbackOnly where !config.launcher.egress.isEmpty:
            // And the egress proxy's port (127.0.0.1:3128 in the namespace).
            return Landlock.NetPolicy(bindPorts: [port], connectPorts: [port, Egress.proxyPort])
        case .loopbackOnly: return Landlock.NetPolicy(bindPorts: [port], connectPorts: [port])
        case .host: return Landlock.NetPolicy(bindPorts: [port], connectPorts: nil)
        }
    }

    /// Real path of a Python's installation prefix (…/bin/python → …).
    static func pythonPrefix(_ python: String) -> String? {
        guard let real = realpath(python, nil) else { return nil }
        defer { free(real) }
        let path = String(cString: real)
        let prefix = Paths.deletingLastComponent(Paths.deletingLastComponent(path))
        return prefix == "/" || prefix.isEmpty ? nil : prefix
    }

    /// The venv `python` belongs to (…/venv/bin/python, with …/venv/pyvenv.cfg),
    /// named as configured, not resolved: a venv's python is a symlink out of it.
    static func venvOf(_ python: String) -> String? {
        let dir = Paths.deletingLastComponent(Paths.deletingLastComponent(python))
        return !dir.isEmpty && dir != "/" && Paths.exists(dir + "/pyvenv.cfg") ? dir : nil
    }

    /// The Landlock path rules for a session.
    public static func rules(_ config: Config, purpose: Purpose, temp: String, gpu: GPUSelection) -> [Landlock.PathRule] {
        typealias R = Landlock.PathRule
        var rules: [R] = []
        // System: programs and libraries, read and execute; /etc read-only.
        for dir in ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32"] { rules.append(R(dir, .readExecute)) }
        rules.append(R("/etc", .read))
        // Python: its real prefix (may live outside /usr, e.g. /opt/conda) and the venv.
        for python in [config.comfyui.python, config.venvPath + "/bin/python"] {
            if let prefix = pythonPrefix(python), !prefix.hasPrefix("/usr/") && prefix != "/usr" {
                rules.append(R(prefix, .readExecute))
            }
            // comfyui.python may itself be a venv's (an existing torch venv):
            // its bin/python links to the base interpreter, so the real prefix
            // is the base's, and the venv's own site-packages must be named.
            if let venv = venvOf(python) { rules.append(R(venv, .readExecute)) }
        }
        rules.append(R(config.venvPath, .readExecute))
        // ComfyUI's code: read and execute, never write...
        rules.append(R(config.comfyui.path, .readExecute))
        // ...except its user directory (settings) and nodes marked writable.
        rules.append(R(config.comfyui.path + "/user", .readWrite))
        for node in config.customNodes where node.writable && node.enabled {
            rules.append(R(config.customNodesDir + "/" + node.name, .readWrite))
        }
        // ...and web/extensions, where nodes add their folder (TreePlanner).
        rules.append(R(config.comfyui.path + "/web/extensions", .readWrite))
        // The primary user's Hugging Face cache, read-only: hf_hub_download
        // finds weights the user already has (HF_HUB_CACHE, HF_HUB_OFFLINE).
        if let cache = config.models.hfCache { rules.append(R(cache, .read)) }
        // Shares at their real paths (ComfyUI reaches them through the
        // comfyui.path/<mount> links; Landlock checks the resolved file).
        for share in config.shares {
            rules.append(R(share.path, share.access.writable ? .readWrite : .read, required: true))
        }
        // The sandbox's own places.
        rules.append(R(config.sandboxUser.home, .readWrite))
        rules.append(R(temp, .readWrite))
        rules.append(R("/dev/shm", .readWrite))
        for dev in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"] {
            // IOCTL_DEV too: Landlock decides at open whether ioctl is allowed,
            // and with the right absent here it walks every ancestor up to /
            // looking for it, on every open of /dev/null (a fifth of a
            // syscall-heavy loop). Their ioctls are what any process has; the
            // entropy-changing ones on random need CAP_SYS_ADMIN anyway.
            rules.append(R(dev, Landlock.FS.device.union(.ioctlDev)))
        }
        // /dev/tty is the session's controlling terminal: its own pty when
        // stdin is a terminal (OperatorTerminal), never the operator's.
        if purpose == .shell {
            rules.append(R("/dev/tty", Landlock.FS.device.union(.ioctlDev)))
            rules.append(R("/dev/pts", Landlock.FS.device.union(.ioctlDev)))
        } else if purpose == .run && isatty(0) == 1 {
            rules.append(R("/dev/tty", Landlock.FS.device.union(.ioctlDev)))
        }
        // GPUs: each allowed node read-write plus device ioctls (the CUDA driver
        // talks to the kernel module only through ioctl and mmap).
        for node in gpu.deviceNodes { rules.append(R(node, .gpuDevice)) }
        // /proc: CUDA and PyTorch name their threads through (fopen "w": truncate too)
        // /proc/self/task/TID/comm and read /proc/driver/nvidia, /proc/self/maps,
        // /proc/cpuinfo. Landlock rules attach to inodes, not to "self", so the
        // narrowest rule that works is read + write_file on /proc; other
        // processes' files stay closed by ptrace access checks (different uid,
        // no capabilities) and /proc/sys by file modes.
        rules.append(R("/proc", [.readFile, .readDir, .writeFile, .truncate]))
        // /sys, read-only, only what torch and the CUDA driver read: CPU and
        // NUMA topology, PCI devices, the nvidia module's parameters, cgroup
        // CPU quota, transparent huge pages.
        for dir in ["/sys/devices", "/sys/bus", "/sys/module", "/sys/fs/cgroup", "/sys/kernel/mm/transparent_hugepage"] {
            rules.append(R(dir, .read))
        }
        if purpose == .check {
            // Exactly this binary and the libraries it has mapped.
            for file in selfMappedFiles { rules.append(R(file, [.readFile, .execute])) }
        }
        return rules
    }

    /// The environment, built from nothing.
    /// `jit`: the constructed root's executable RAM directory, where the
    /// kernel caches go (elsewhere nothing written is executable).
    public static func environment(_ config: Config, home: String, temp: String, gpu: GPUSelection, jit: String? = nil) -> [String: String] {
        var path = "/usr/local/bin:/usr/bin:/bin"
        // What nodes read to find a writable place (their data directories,
        // their `env`) first; the launcher's own variables win over them.
        var env = NodeEnvironment.variables(config)
        env.merge([
            "HOME": home,
            "LANG": "C.UTF-8",
            "TMPDIR": temp,
            "USER": config.sandboxUser.name,
            "LOGNAME": config.sandboxUser.name,
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            // What ComfyUI and the nodes print goes to launcher.log (a file,
            // so Python would block-buffer it and lose it on a crash, which is
            // when it matters), and a node's print() must land beside
            // ComfyUI's own log lines in the order they happened.
            "PYTHONUNBUFFERED": "1",
            "CUDA_CACHE_PATH": (jit ?? home + "/.cache") + "/nv/ComputeCache",
            "TRITON_CACHE_DIR": (jit ?? home + "/.cache") + "/triton",
            "TORCHINDUCTOR_CACHE_DIR": (jit ?? home + "/.cache") + "/torchinductor",
            "DO_NOT_TRACK": "1",
        ]) { _, launcher in launcher }
        if let cache = config.models.hfCache { env["HF_HUB_CACHE"] = cache }
        if config.launcher.network == .loopbackOnly {
            let rules = Egress.rules(config.launcher.egress)
            if !rules.isEmpty {
                // The egress proxy. Lowercase too: curl reads only
                // http_proxy (never HTTP_PROXY, a CGI hazard), and wget, git
                // and Python read either. ALL_PROXY names the same HTTP proxy
                // (no SOCKS is offered); loopback stays direct.
                for name in ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"] {
                    env[name] = Egress.proxyURL
                    env[name.lowercased()] = Egress.proxyURL
                }
                env["NO_PROXY"] = "localhost,127.0.0.1"
                env["no_proxy"] = "localhost,127.0.0.1"
            }
            // Hugging Face's hub stays offline unless the list lets it reach
            // huggingface.co: otherwise every lookup would wait for a timeout.
            if !Egress.allowsHuggingFace(rules) { env["HF_HUB_OFFLINE"] = "1" }
        }
        if Paths.isExecutableFile(config.venvPath + "/bin/python") {
            env["VIRTUAL_ENV"] = config.venvPath
            path = config.venvPath + "/bin:" + path
        }
        env["PATH"] = path
        env["CUDA_VISIBLE_DEVICES"] = gpu.cudaVisibleDevices
        return env
    }

    static func ensureInstanceOutput(share: String, name: String, config: Config) throws {
        guard let fd = try SafeFS.openDirectory(share) else {
            throw SandboxError.failure("the output share \(share) does not exist", hint: "run `comfy-sandbox provision`")
        }
        defer { close(fd) }
        if mkdirat(fd, name, 0o2775) == 0, let primary = AccountLookup.user(config.primaryUser),
           let group = AccountLookup.group(config.sharedGroup.name) {
            let sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if sub >= 0 {
                _ = fchown(sub, primary.uid, group.gid)
                _ = fchmod(sub, 0o2775)
                close(sub)
            }
        } else if errno != EEXIST {
            throw SandboxError.failure("cannot make \(share)/\(name) for the instance's outputs: \(Errno.current)")
        }
    }

    /// The Python that runs ComfyUI: the venv's when it exists, else comfyui.python.
    public static func python(_ config: Config) -> String {
        let venv = config.venvPath + "/bin/python"
        return Paths.isExecutableFile(venv) ? venv : config.comfyui.python
    }

    /// ComfyUI's command line from the config.
    public static func comfyArguments(_ config: Config, session: Session) -> [String] {
        let l = config.launcher
        func share(_ name: String) -> String? { config.shares.first { $0.name == name }?.path }
        // loopback-only: the host's listen address is the relay's; inside the
        // namespace only 127.0.0.1 exists, so that is where ComfyUI listens.
        let inside = l.network == .loopbackOnly ? "127.0.0.1" : l.listen
        var args = [python(config), config.comfyui.path + "/main.py",
                    "--listen", inside, "--port", String(l.port), "--disable-auto-launch"]
        args += ["--input-directory", share("input") ?? config.comfyui.path + "/input"]
        args += ["--output-directory", config.outputDirectory ?? config.comfyui.path + "/output"]
        args += ["--user-directory", config.comfyui.path + "/user"]
        args += ["--temp-directory", session.tempDir]
        return args + skipLeftOutNodes(config) + l.extraArgs
    }

    /// Nodes whose requirements could not be installed and whose
    /// `on_requirements_failure` is "disable": ComfyUI loads every other
    /// entry of custom_nodes (`--disable-all-custom-nodes` with a whitelist,
    /// which ComfyUI has since 0.3.2x; without it the node is loaded and
    /// fails at import, which launcher.log then shows).
    static func skipLeftOutNodes(_ config: Config) -> [String] {
        guard let record = PythonEnv(config).currentRecord() else { return [] }
        let skipped = Set(record.leftOut.filter { $0.policy == Config.RequirementsFailure.disable.rawValue }.map(\.node))
        guard !skipped.isEmpty,
              let cli = FileManager.default.contents(atPath: config.comfyui.path + "/comfy/cli_args.py"),
              String(decoding: cli, as: UTF8.self).contains("--whitelist-custom-nodes") else { return [] }
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: config.customNodesDir)) ?? [])
            .filter { !skipped.contains($0) && !$0.hasPrefix(".") }.sorted()
        return ["--disable-all-custom-nodes"] + (entries.isEmpty ? [] : ["--whitelist-custom-nodes"] + entries)
    }

    /// Resolves CMD against the sandbox's PATH (as the shell would).
    public static func resolveCommand(_ command: String, path: String) -> String? {
        if command.contains("/") { return command }
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(command)"
            if Paths.isExecutableFile(candidate) { return candidate }
        }
        return nil
    }
}

/// The GPUs a session may use.
public struct GPUSelection: Sendable {
    public var indexes: [Int]
    public var deviceNodes: [String]
    /// CUDA_VISIBLE_DEVICES: "" hides every GPU.
    public var cudaVisibleDevices: String
    public var note: String?

    static let sharedNodes = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/nvidia-caps"]

    /// Indexes of /dev/nvidiaN present now.
    public static func present() -> [Int] {
        // readdir, not FileManager: this runs on every start of `run`.
        guard let dir = opendir("/dev") else { return [] }
        defer { closedir(dir) }
        var found: [Int] = []
        while let entry = readdir(dir) {
            let name = entryName(entry)
            if name.hasPrefix("nvidia"), let n = Int(name.dropFirst("nvidia".count)) { found.append(n) }
        }
        return found.sorted()
    }

    /// Picks the GPUs for `setting`. With `prepareNodes`, runs nvidia-modprobe
    /// as root first when the nodes are missing: under no_new_privs the
    /// setuid helper CUDA would otherwise call cannot create them.
    public static func select(_ setting: Config.GPU, prepareNodes: Bool) -> GPUSelection {
        if setting == Config.GPU.none {
            return GPUSelection(indexes: [], deviceNodes: [], cudaVisibleDevices: "", note: nil)
        }
        if prepareNodes, !Paths.exists("/dev/nvidiactl") {
            for tool in ["/usr/bin/nvidia-modprobe", "/usr/sbin/nvidia-modprobe"] where Paths.isExecutableFile(tool) {
                var wanted: [Int] = [0]
                if case .indexes(let list) = setting { wanted = list }
                for i in wanted { _ = try? HostCommand(tool, ["-u", "-c=\(i)"]).run() }
                _ = try? HostCommand(tool, ["-m"]).run()
                break
            }
        }
        let found = present()
        var chosen: [Int]
        switch setting {
        case Config.GPU.none: chosen = []
        case .auto: chosen = found
        case .indexes(let list): chosen = list.filter { found.contains($0) }
        }
        var note: String?
        if chosen.isEmpty {
            note = "no NVIDIA GPU found (launcher.gpu = \(describe(setting))): running without a GPU"
        } else if case .indexes(let list) = setting, list.count != chosen.count {
            note = "launcher.gpu lists \(list) but only \(chosen) exist: running with those"
        }
        var nodes = chosen.map { "/dev/nvidia\($0)" }
        if !chosen.isEmpty { nodes += sharedNodes.filter { Paths.exists($0) } }
        // Joined by hand: the generic joined(separator:) looks its
        // associated types up by mangled name on first use, a fifth of a
        // millisecond of every `run`.
        var visible = ""
        for i in chosen { visible += visible.isEmpty ? String(i) : "," + String(i) }
        return GPUSelection(indexes: chosen, deviceNodes: nodes, cudaVisibleDevices: visible, note: note)
    }

    public static func describe(_ setting: Config.GPU) -> String {
        switch setting {
        case .auto: "auto"
        case .none: "none"
        case .indexes(let l): "[" + l.map(String.init).joined(separator: ", ") + "]"
        }
    }
}

/// Directory work the launcher does as root in places the sandbox can write.
enum FileTree {
    /// Creates `path` (its parent must exist) owned by uid:gid with `mode`
    /// when missing. An existing entry is left as it is, but must be a
    /// directory and not a symlink.
    static func ensureOwnedDirectory(_ path: String, uid: uid_t, gid: gid_t, mode: mode_t) throws {
        let parent = Paths.deletingLastComponent(path)
        let name = Paths.lastComponent(path)
        let pfd = open(parent, CS_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard pfd >= 0 else {
            throw SandboxError.failure("cannot open \(parent): \(Errno.current)", hint: "run `comfy-sandbox provision` first")
        }
        defer { close(pfd) }
        let made = mkdirat(pfd, name, mode) == 0
        if !made && errno != EEXIST { throw SandboxError.failure("cannot create \(path): \(Errno.current)") }
        // O_NOFOLLOW|O_DIRECTORY: a symlink planted in place of the directory is refused, not followed.
        let fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError.failure("\(path) is not a directory (or is a symlink): \(Errno.current)") }
        defer { close(fd) }
        if made { try SafeFS.setOwnerAndMode(fd, uid: uid, gid: gid, mode: mode, display: path) }
    }

    /// A fresh directory under `dir`, made and handed over by descriptor
    /// (`SafeFS.makeTemporaryDirectory`: never mkdtemp and a reopened path).
    static func makeTempDirectory(in dir: String, prefix: String, uid: uid_t, gid: gid_t) throws -> String {
        let (path, fd) = try makeOpenTempDirectory(in: dir, prefix: prefix, uid: uid, gid: gid)
        close(fd)
        return path
    }

    /// `makeTempDirectory`, keeping the directory open: the fd it was handed
    /// over through.
    private static func makeOpenTempDirectory(in dir: String, prefix: String, uid: uid_t, gid: gid_t) throws -> (String, Int32) {
        do {
            return try SafeFS.makeTemporaryDirectory(in: dir, prefix: prefix, mode: 0o700, uid: uid, gid: gid)
        } catch let error as SandboxError {
            throw SandboxError.failure(error.message, hint: "set launcher.ram_temp to false to use a directory in the sandbox home")
        }
    }

    /// `makeTempDirectory`, plus an flock on the directory held through the
    /// returned fd: while it is open, `sweepStaleTemps` leaves the directory
    /// alone. The fd is close-on-exec and never reaches the sandbox.
    static func makeLockedTempDirectory(in dir: String, prefix: String, uid: uid_t, gid: gid_t) throws -> (String, OwnedFD) {
        let (path, fd) = try makeOpenTempDirectory(in: dir, prefix: prefix, uid: uid, gid: gid)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = Errno.current
            close(fd)
            removeTree(path)
            throw SandboxError.failure("cannot lock the RAM temp \(path): \(e)")
        }
        return (path, OwnedFD(fd))
    }

    /// Removes the `prefix`* directories in `dir` that a launcher made and
    /// left behind: owned by `owner`, not locked by a live session, and
    /// untouched for `graceSeconds` (a launcher that has just made its
    /// directory takes the lock a moment later; the grace covers that gap).
    /// Anything else with the name (a symlink, another owner's directory)
    /// is not ours and stays. Returns the paths removed.
    static func sweepStaleTemps(in dir: String, prefix: String, owner: uid_t, graceSeconds: Int = 10) -> [String] {
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { return [] }
        defer { close(dfd) }
        var names: [String] = []
        if let d = fdopendir(dup(dfd)) {
            while let entry = readdir(d) {
                let name = entryName(entry)
                if name.hasPrefix(prefix) { names.append(name) }
            }
            closedir(d)
        }
        let now = time(nil)
        var removed: [String] = []
        for name in names {
            // Decided on the opened directory, not the name: O_NOFOLLOW
            // refuses a symlink, and fstat describes what we will lock.
            let fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_uid == owner, now - st.st_mtim.tv_sec >= graceSeconds,
                  flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }
            // Emptied through the fd we checked and locked, not by name again.
            SafeFS.removeContents(of: fd)
            if unlinkat(dfd, name, AT_REMOVEDIR) == 0 { removed.append(dir + "/" + name) }
        }
        return removed
    }

    /// Removes a tree the sandbox wrote, walking by fd (`SafeFS.removeTree`):
    /// never follows a symlink, never crosses to another file system, no depth limit.
    @discardableResult
    static func removeTree(_ path: String) -> SafeFS.RemovalReport {
        SafeFS.removeTree(path)
    }

    /// Removes `relative` (a/b/c) below the directory `root`, reaching its
    /// parent with openat2 beneath `root` (no link at any level, no mount
    /// crossed): a tree the sandbox may write (a writable node) cannot
    /// redirect the removal elsewhere.
    @discardableResult
    static func removeTree(under root: String, relative: String) -> SafeFS.RemovalReport {
        let parts = relative.split(separator: "/").map(String.init)
        guard let last = parts.last, !parts.contains(where: { $0 == ".." || $0 == "." }) else { return SafeFS.RemovalReport() }
        let rfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard rfd >= 0 else { return SafeFS.RemovalReport() }
        defer { close(rfd) }
        let parentPath = parts.dropLast().joined(separator: "/")
        let fd = parentPath.isEmpty ? fcntl(rfd, F_DUPFD_CLOEXEC, 0)
                                    : SafeFS.openBeneath(rfd, parentPath, flags: O_RDONLY | O_DIRECTORY, noXDev: true)
        guard fd >= 0 else { return SafeFS.RemovalReport() }
        defer { close(fd) }
        return SafeFS.removeEntry(fd, last)
    }
}

