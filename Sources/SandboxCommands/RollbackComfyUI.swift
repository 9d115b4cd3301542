import ArgumentParser
import SandboxCore
import SandboxOS

public struct RollbackComfyUI: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rollback-comfyui",
        abstract: "Put ComfyUI back on the previous_sha in state_dir/comfyui.json (twice toggles)."
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    public init() {}

    public func run() throws {
        let config = try options.load()
        let lock = try NodeOutput.prepare(config, command: "rollback-comfyui")
        defer { lock.release() }
        var outcomes = [ComfyUIInstall(config).rollback()]
        if outcomes[0].kind != .failed { outcomes.append(NodeOutput.syncPythonEnv(config)) }
        try NodeOutput.emit(NodeManager.Report(outcomes: outcomes, unmanaged: []), json: output.json)
    }
}
