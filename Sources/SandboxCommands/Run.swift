import ArgumentParser
import SandboxCore

public struct Run: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command as the sandbox user under ComfyUI's exact confinement."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("run is not implemented yet")
    }
}
