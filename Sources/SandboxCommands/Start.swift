import ArgumentParser
import SandboxCore
import SandboxOS

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
            try Launcher.startInBackground(config, configPath: options.path,
                                           instance: all.launcher.instances.isEmpty ? nil : name, wait: wait)
        }
    }
}
