import ArgumentParser
import CSandbox
import FoundationEssentials
import Glibc
import SandboxCore

public struct Start: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start ComfyUI in the background and wait until its UI answers.",
        discussion: """
        The launcher runs detached (pid file state_dir/launcher.pid, output of ComfyUI
        and every node in state_dir/launcher.log). start then waits until ComfyUI answers
        on launcher.listen:launcher.port through the relay. When ComfyUI exits during
        start-up, start exits 1 and prints the log's last lines; when it has not answered
        after --wait seconds, start exits 1 and leaves it running.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @Option(help: "Seconds to wait for the UI to answer (0: return once the launcher runs).")
    public var wait: Int = 300
    @Argument(help: "Instances of launcher.instances to start (default: all).")
    public var names: [String] = []
    public init() {}

    public func run() throws {
        try requireRoot("start")
        let all = try options.load()
        let chosen = names.isEmpty ? all.instances.map(\.name) : names
        for name in chosen {
            let config = try all.forInstance(name)
            try start(config, instanceArgument: all.launcher.instances.isEmpty ? nil : name)
        }
    }

    func start(_ config: Config, instanceArgument: String?) throws {
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
        let spec = SpawnSpec(path: exe, arguments: [exe, "launch", "--config", options.path] + (instanceArgument.map { ["--instance", $0] } ?? []),
                             environment: HostCommand.minimalEnvironment, workingDirectory: "/",
                             stdin: null, stdout: logFD, stderr: logFD, newSession: true, confinement: nil)
        let pid = try spec.spawn()
        let began = Date()
        func died(_ status: Int32) -> SandboxError {
            let how = cs_wifsignaled(status) != 0 ? "was killed by signal \(cs_wtermsig(status))" : "exited with status \(cs_wexitstatus(status))"
            let tail = LauncherPidFile.logTail(config, from: logStart)
            return SandboxError.failure("\(label) did not start: the launcher \(how) after \(Self.seconds(since: began))"
                                        + (tail.isEmpty ? "" : "; the last lines of \(log):\n" + Self.indent(tail)),
                                        hint: "the whole log: \(log)")
        }
        // 1. The launcher is up when it has written its pid file.
        var status: Int32 = 0
        while LauncherPidFile.running(config) != pid {
            if cs_waitpid_nohang(pid, &status) == pid { throw died(status) }
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
            if cs_waitpid_nohang(pid, &status) == pid { throw died(status) }
            if UIProbe.ask(config, timeout: 2).answers {
                if terminal && lastShown > 0 { print("") }
                print("started \(label) (launcher pid \(pid)) in \(Self.seconds(since: began)): \(url); log: \(log)")
                return
            }
            let elapsed = Int(Date().timeIntervalSince(began))
            if elapsed >= wait {
                if terminal && lastShown > 0 { print("") }
                let tail = LauncherPidFile.logTail(config, from: logStart, lines: 10)
                throw SandboxError.failure("\(label) has not answered on \(url) after \(wait) s; it is still starting or hung (launcher pid \(pid) runs on)"
                                           + (tail.isEmpty ? "" : "; the last lines of \(log):\n" + Self.indent(tail)),
                                           hint: "`comfy-sandbox status` says when it answers; `comfy-sandbox stop` ends it; `start --wait N` waits longer")
            }
            if terminal && elapsed >= lastShown + 5 {
                lastShown = elapsed
                _ = writeAll(1, Data("\r  still starting (\(elapsed) s)".utf8))
            }
            usleep(250_000)
        }
    }

    static func seconds(since start: Date) -> String {
        let s = Date().timeIntervalSince(start)
        return "\(Int(s)).\(Int(s * 10) % 10) s"
    }

    static func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "  | " + $0 }.joined(separator: "\n")
    }
}
