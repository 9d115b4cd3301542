import ArgumentParser
import SandboxCore

public struct Launch: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Run ComfyUI in the foreground under the confinement."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("launch is not implemented yet")
    }
}
