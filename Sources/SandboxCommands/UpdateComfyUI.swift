import ArgumentParser
import SandboxCore
import SandboxOS

public struct UpdateComfyUI: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "update-comfyui",
        abstract: "Install ComfyUI at comfyui.rev, or move it when comfyui.rev changed (--pull: re-resolve the rev); then its Python environment.",
        discussion: "Records state_dir/comfyui.json like a node's record. Exit 1 on failure, with the checkout and record unchanged."
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    @Flag(name: .long, help: "Re-resolve comfyui.rev (branch tip, tag) and move when it changed.")
    public var pull = false
    public init() {}

    public func run() throws {
        let config = try options.load()
        let lock = try NodeOutput.prepare(config, command: "update-comfyui")
        defer { lock.release() }
        var outcomes = [ComfyUIInstall(config).update(pull: pull)]
        if outcomes[0].kind != .failed {
            outcomes.append(NodeOutput.syncPythonEnv(config, reresolve: pull))
        }
        try NodeOutput.emit(NodeManager.Report(outcomes: outcomes, unmanaged: []), json: output.json)
    }
}
