import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore

public struct Stop: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop the background ComfyUI: SIGTERM, then SIGKILL after --timeout seconds."
    )
    @OptionGroup public var options: ConfigOptions
    @Option(help: "Seconds to wait after SIGTERM before SIGKILL.") public var timeout: Int = 20
    public init() {}

    public func run() throws {
        try requireRoot("stop")
        let config = try options.load()
        guard let pid = LauncherPidFile.running(config) else {
            print("ComfyUI is not running (no live pid in \(LauncherPidFile.path(config)))")
            return
        }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(TimeInterval(timeout))
        while Date() < deadline {
            if kill(pid, 0) != 0 || LauncherPidFile.running(config) == nil {
                print("stopped ComfyUI (pid \(pid))")
                return
            }
            usleep(100_000)
        }
        kill(pid, SIGKILL)
        unlink(LauncherPidFile.path(config))
        print("ComfyUI did not stop within \(timeout)s; killed pid \(pid)")
    }
}
