import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore
import SandboxOS

public struct Stop: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop the background ComfyUI: SIGTERM, then SIGKILL after --timeout seconds.",
        discussion: """
        The launcher passes SIGTERM on to ComfyUI. When ComfyUI has not exited after
        --timeout seconds it is killed, with every process it started; the launcher
        then removes the RAM temp and exits.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @Option(help: "Seconds to wait after SIGTERM before SIGKILL.") public var timeout: Int = 20
    @Argument(help: "Instances of launcher.instances to stop (default: all).")
    public var names: [String] = []
    public init() {}

    public func run() throws {
        try requireRoot("stop")
        let all = try options.load()
        for name in names.isEmpty ? all.instances.map(\.name) : names {
            let config = try all.forInstance(name)
            let label = config.instance.map { "ComfyUI \($0)" } ?? "ComfyUI"
            switch LauncherPidFile.stop(config, timeout: timeout) {
            case .notRunning:
                print("\(label) is not running (no live pid in \(LauncherPidFile.path(config)))")
            case .stopped(let pid):
                print("stopped \(label) (pid \(pid))")
            case .killedComfyUI(let pid):
                print("\(label) did not stop within \(timeout)s after SIGTERM; killed it (launcher pid \(pid) cleaned up and exited)")
            case .killed(let pid):
                print("the launcher of \(label) (pid \(pid)) did not stop; killed it")
            }
        }
    }
}
