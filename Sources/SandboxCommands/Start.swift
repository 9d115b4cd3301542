import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore

public struct Start: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start ComfyUI in the background (pid file in state_dir, log in state_dir/launcher.log)."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        try requireRoot("start")
        let config = try options.load()
        if let pid = LauncherPidFile.running(config) {
            print("ComfyUI is already running (pid \(pid))")
            return
        }
        try FileManager.default.createDirectory(atPath: config.stateDir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        let log = LauncherPidFile.logPath(config)
        let logFD = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o640)
        guard logFD >= 0 else { throw SandboxError.failure("cannot open \(log): \(Errno.current)") }
        defer { close(logFD) }
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        // `launch` as root in a new session, detached from this terminal; it
        // writes the pid file itself, so start and systemd share one path.
        let exe = Launcher.selfExecutable
        let spec = SpawnSpec(path: exe, arguments: [exe, "launch", "--config", options.path],
                             environment: HostCommand.minimalEnvironment, workingDirectory: "/",
                             stdin: null, stdout: logFD, stderr: logFD, newSession: true, confinement: nil)
        let pid = try spec.spawn()
        for _ in 0..<100 {
            if LauncherPidFile.running(config) == pid {
                print("started ComfyUI (launcher pid \(pid)); log: \(log)")
                return
            }
            var status: Int32 = 0
            if cs_waitpid_nohang(pid, &status) == pid {
                throw SandboxError.failure("the launcher exited at once (status \(cs_wexitstatus(status)))", hint: "see \(log)")
            }
            usleep(50_000)
        }
        print("started ComfyUI (launcher pid \(pid)); log: \(log)")
    }
}

import CSandbox
