import ArgumentParser
import SandboxCore

public struct Stop: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop the ComfyUI started by start."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("stop is not implemented yet")
    }
}
