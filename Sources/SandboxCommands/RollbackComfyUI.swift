import ArgumentParser
import SandboxCore

public struct RollbackComfyUI: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rollback-comfyui",
        abstract: "Put ComfyUI back on its previous commit."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("rollback-comfyui is not implemented yet")
    }
}
