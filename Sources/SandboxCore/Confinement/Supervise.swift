import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

extension Launcher {
    /// Signals the launcher passes on to the confined child.
    static let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]

    /// Blocks the forwarded signals, SIGCHLD and SIGWINCH in the calling
    /// thread. Call it first thing in a command, before any thread exists, so
    /// every thread inherits the mask and the signals wait for `supervise`
    /// instead of killing the launcher (which would leave the RAM temp
    /// behind). SIGWINCH (ignored by default) waits there too, for a session
    /// on a pty of its own. The confined child resets its mask in spawn.c.
    public static func blockSignals() {
        let sigs = forwarded + [SIGCHLD, SIGWINCH]
        ProcessControl.blockSignals(sigs)
    }

    /// Waits for `main` to exit, forwarding SIGTERM/SIGINT/SIGHUP/SIGQUIT to
    /// it (and to `companions`, which are stopped when `main` ends). With a
    /// `terminal`, window-size changes are passed to its pty, and the
    /// operator's terminal gets its settings back as soon as `main` ends.
    public static func supervise(main: pid_t, companions: [pid_t: String] = [:], throughInit: Bool = false,
                                 terminal: OperatorTerminal? = nil) -> ChildExit {
        supervised(main: main, companions: companions, throughInit: throughInit, terminal: terminal).exit
    }

    /// As `supervise`, also saying which signal, if any, asked for the stop.
    /// When `main` has ended, whatever it left running is killed: the session
    /// is over (see `killLeftovers`).
    /// `throughInit`: `main` is the init of a constructed root, which exits
    /// with 128+N when the program died of signal N (a PID 1 cannot die of
    /// it itself): that is read back as the signal.
    /// `companions`: the relay, the egress proxy, each with what to call it
    /// when it dies before `main`.
    public static func supervised(main: pid_t, companions: [pid_t: String] = [:], throughInit: Bool = false,
                                  terminal: OperatorTerminal? = nil) -> (exit: ChildExit, stopSignal: Int32?) {
        var stopSignal: Int32?
        let sigs = forwarded + [SIGCHLD] + (terminal?.mode == .pty ? [SIGWINCH] : [])
        var exit: ChildExit?
        var alive = Set(companions.keys)
        while exit == nil {
            // Reap every child that has ended: `main`, a companion, or an
            // orphan of the session reparented to us (we are its subreaper,
            // see `prepare`), which would otherwise stay a zombie until we exit.
            while exit == nil, let (pid, ended) = ChildExit.reapAny() {
                if pid == main {
                    exit = ended
                    if throughInit, case .exited(let code) = exit!, code > 128, code < 128 + 65 { exit = .signaled(code - 128) }
                } else if alive.remove(pid) != nil {
                    let what = companions[pid] ?? "a companion"
                    printError("comfy-sandbox: \(what) (pid \(pid)) exited" + (what == "the relay" ? "; the UI is no longer served" : ""))
                }
            }
            if exit != nil { break }
            guard let sig = ProcessControl.waitSignal(sigs) else { continue }
            if sig == SIGCHLD { continue }
            if sig == SIGWINCH { terminal?.windowChanged(); continue }
            if sig == SIGTERM || sig == SIGINT { stopSignal = sig }
            kill(main, sig)
        }
        terminal?.restoreSettings()
        for pid in alive {
            kill(pid, SIGTERM)
            _ = ChildExit.wait(pid)
        }
        killLeftovers()
        return (exit!, stopSignal)
    }

    /// Ends what a finished session left running. A confined program can
    /// start a process that outlives it (fork, setsid, exit: a miner that
    /// should not survive `stop`). As the session's subreaper the launcher
    /// inherits every such orphan, so it can find and SIGKILL them all, as
    /// bwrap's PID namespace does when its init exits. Says so when it did.
    @discardableResult
    public static func killLeftovers(quiet: Bool = false) -> Int {
        let n = ProcessControl.killDescendants()
        if n > 0 && !quiet {
            printError("comfy-sandbox: killed \(n) process\(n == 1 ? "" : "es") the session left running")
        }
        return n
    }

    /// Runs `argv` confined in the foreground, in a session of its own, and
    /// returns its exit. It never gets the operator's terminal: a pty of its
    /// own when stdin is a terminal, none when not (see `OperatorTerminal`).
    public static func runForeground(_ session: Session, argv: [String], passFDs: [Int32] = []) throws -> ChildExit {
        let terminal = try OperatorTerminal.attach()
        defer { terminal?.finish() }
        var spec = SpawnSpec(path: argv[0], arguments: argv, environment: session.environment,
                             workingDirectory: session.workingDirectory,
                             stdin: terminal?.stdin ?? -1, stdout: terminal?.stdout ?? -1, stderr: terminal?.stderr ?? -1,
                             passFDs: passFDs, newSession: true, confinement: session.confinement)
        spec.controllingTerminal = terminal?.mode == .pty
        let pid = try spec.spawn()
        terminal?.started()
        defer { session.companionsReaped() }
        return supervise(main: pid, companions: session.companions, throughInit: session.confinement.root != nil, terminal: terminal)
    }
}

/// The launcher's pid file in state_dir: written by `launch` (whoever
/// started it), read by `stop` and `status`.
public enum LauncherPidFile {
    /// `launcher.pid` / `launcher.log`, or `launcher.NAME.pid` / `.log` for an instance of launcher.instances.
    public static func path(_ config: Config) -> String { config.stateDir + "/launcher" + suffix(config) + ".pid" }
    public static func logPath(_ config: Config) -> String { config.stateDir + "/launcher" + suffix(config) + ".log" }
    static func suffix(_ config: Config) -> String { config.currentInstance.map { "." + $0.name } ?? "" }

    /// The running launcher's pid, when the file names a live comfy-sandbox process.
    public static func running(_ config: Config) -> pid_t? {
        guard let text = try? String(contentsOfFile: path(config), encoding: .utf8),
              let pid = pid_t(text.trimmingWhitespaceAndNewlines()), pid > 0 else { return nil }
        guard let cmdline = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")) else { return nil }
        let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard args.contains("launch") else { return nil }
        return pid
    }

    public static func write(_ config: Config) throws {
        try FileManager.default.createDirectory(atPath: config.stateDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        try AtomicFile.write(Data("\(getpid())\n".utf8), to: path(config), mode: 0o644)
    }

    public enum StopOutcome: Equatable, Sendable {
        case notRunning
        /// Ended within the timeout after SIGTERM.
        case stopped(pid_t)
        /// ComfyUI ignored SIGTERM: killed, and the launcher then ended.
        case killedComfyUI(pid_t)
        /// The launcher itself did not end: SIGKILLed.
        case killed(pid_t)
    }

    /// Stops the launcher the pid file names: SIGTERM (it passes it on to
    /// ComfyUI, waits, ends what ComfyUI left running and removes the RAM
    /// temp). After `timeout` seconds, SIGKILL for the launcher's children
    /// (ComfyUI, the relay, orphans it reaps), not for the launcher: killing
    /// it would hand ComfyUI's own children to init, where they would keep
    /// running. The launcher then cleans up as usual; only if it has not
    /// ended 5 seconds later is it SIGKILLed itself.
    public static func stop(_ config: Config, timeout: Int) -> StopOutcome {
        guard let pid = running(config) else { return .notRunning }
        func ended(within seconds: Int) -> Bool {
            let deadline = Date().addingTimeInterval(TimeInterval(seconds))
            repeat {
                if kill(pid, 0) != 0 || running(config) == nil { return true }
                usleep(50_000)
            } while Date() < deadline
            return false
        }
        kill(pid, SIGTERM)
        if ended(within: timeout) { return .stopped(pid) }
        // Rounds: killing ComfyUI can hand the launcher new orphans to kill.
        for _ in 0..<20 {
            if ProcessControl.killChildren(of: pid) <= 0 { break }
            usleep(20_000)
        }
        if ended(within: 5) { return .killedComfyUI(pid) }
        kill(pid, SIGKILL)
        unlink(path(config))
        return .killed(pid)
    }

    /// The last `lines` lines the log got since byte `offset` (where this
    /// start began writing), for an error that says why ComfyUI died.
    public static func logTail(_ config: Config, from offset: off_t, lines: Int = 25) -> String {
        let fd = open(logPath(config), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return "" }
        // At most the last 64 KiB: enough for the lines, whatever the log's size.
        let start = max(offset, st.st_size - 65536)
        guard st.st_size > start else { return "" }
        var buf = [UInt8](repeating: 0, count: Int(st.st_size - start))
        let n = pread(fd, &buf, buf.count, start)
        guard n > 0 else { return "" }
        // Escaped line by line: what ComfyUI and the nodes printed reaches the
        // operator's terminal, and must not drive it (escape sequences, OSC 52).
        return buf[..<n].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).suffix(lines + 1)
            .map { Format.escape(Array($0)) }.joined(separator: "\n").trimmingWhitespaceAndNewlines()
    }

    public static func remove(_ config: Config) {
        if let text = try? String(contentsOfFile: path(config), encoding: .utf8),
           pid_t(text.trimmingWhitespaceAndNewlines()) == getpid() {
            unlink(path(config))
        }
    }
}
