import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

extension Launcher {
    /// `start`: the launcher (`launch`) as root in a new session, detached
    /// from this terminal, its output in state_dir/launcher.log; then waits
    /// until it has written its pid file and, unless `wait` is 0, until the
    /// UI answers through the relay (at most `wait` seconds). A launcher that
    /// dies on the way is a failure showing this start's lines of the log.
    public static func startInBackground(_ config: Config, configPath: String, instance instanceArgument: String?, wait: Int) throws {
        let label = config.instance.map { "ComfyUI \($0)" } ?? "ComfyUI"
        let url = "http://\(IPEndpoint.urlAuthority(config.launcher.listen, config.launcher.port))/"
        if let pid = LauncherPidFile.running(config) {
            print("\(label) is already running (pid \(pid)): \(url)")
            return
        }
        try FileManager.default.createDirectory(atPath: config.stateDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        let log = LauncherPidFile.logPath(config)
        let logFD = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o640)
        guard logFD >= 0 else { throw SandboxError.failure("cannot open \(log): \(Errno.current)") }
        defer { close(logFD) }
        // Where this start's lines begin, so a failure shows only its own.
        var st = stat()
        let logStart = fstat(logFD, &st) == 0 ? st.st_size : 0
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        // `launch` as root in a new session, detached from this terminal; it
        // writes the pid file itself, so start and systemd share one path.
        let exe = Launcher.selfExecutable
        let spec = SpawnSpec(path: exe, arguments: [exe, "launch", "--config", configPath] + (instanceArgument.map { ["--instance", $0] } ?? []),
                             environment: HostCommand.minimalEnvironment, workingDirectory: "/",
                             stdin: null, stdout: logFD, stderr: logFD, newSession: true, confinement: nil)
        let pid = try spec.spawn()
        let began = Date()
        func died(_ exit: ChildExit) -> SandboxError {
            let how = switch exit {
            case .signaled(let sig): "was killed by signal \(sig)"
            case .exited(let status): "exited with status \(status)"
            }
            let tail = LauncherPidFile.logTail(config, from: logStart)
            return SandboxError.failure("\(label) did not start: the launcher \(how) after \(seconds(since: began))"
                                        + (tail.isEmpty ? "" : "; the last lines of \(log):\n" + indent(tail)),
                                        hint: "the whole log: \(log)")
        }
        // 1. The launcher is up when it has written its pid file.
        while LauncherPidFile.running(config) != pid {
            if let exit = ChildExit.poll(pid) { throw died(exit) }
            if Date().timeIntervalSince(began) > 10 { break }
            usleep(20_000)
        }
        guard wait > 0 else {
            print("started \(label) (launcher pid \(pid)); log: \(log)")
            return
        }
        // 2. ComfyUI is up when its UI answers through the relay.
        let terminal = isatty(1) != 0
        if terminal { print("waiting for \(label) to answer on \(url) (log: \(log))") }
        var lastShown = 0
        while true {
            if let exit = ChildExit.poll(pid) { throw died(exit) }
            if UIProbe.ask(config, timeout: 2).answers {
                if terminal && lastShown > 0 { print("") }
                print("started \(label) (launcher pid \(pid)) in \(seconds(since: began)): \(url); log: \(log)")
                return
            }
            let elapsed = Int(Date().timeIntervalSince(began))
            if elapsed >= wait {
                if terminal && lastShown > 0 { print("") }
                let tail = LauncherPidFile.logTail(config, from: logStart, lines: 10)
                throw SandboxError.failure("\(label) has not answered on \(url) after \(wait) s; it is still starting or hung (launcher pid \(pid) runs on)"
                                           + (tail.isEmpty ? "" : "; the last lines of \(log):\n" + indent(tail)),
                                           hint: "`comfy-sandbox status` says when it answers; `comfy-sandbox stop` ends it; `start --wait N` waits longer")
            }
            if terminal && elapsed >= lastShown + 5 {
                lastShown = elapsed
                _ = writeAll(1, Data("\r  still starting (\(elapsed) s)".utf8))
            }
            usleep(250_000)
        }
    }

    private static func seconds(since start: Date) -> String {
        let s = Date().timeIntervalSince(start)
        return "\(Int(s)).\(Int(s * 10) % 10) s"
    }

    private static func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "  | " + $0 }.joined(separator: "\n")
    }
}
