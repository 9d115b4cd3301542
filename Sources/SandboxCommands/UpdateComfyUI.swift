import ArgumentParser
import SandboxCore

public struct UpdateComfyUI: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "update-comfyui",
        abstract: "Move ComfyUI to its configured rev (--pull re-resolves a branch or tag)."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("update-comfyui is not implemented yet")
    }
}
