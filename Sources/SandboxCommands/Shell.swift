import ArgumentParser
import SandboxCore

public struct Shell: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "An interactive shell as the sandbox user, confined like ComfyUI."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("shell is not implemented yet")
    }
}
