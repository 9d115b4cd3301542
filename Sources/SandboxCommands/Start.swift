import ArgumentParser
import SandboxCore

public struct Start: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start ComfyUI in the background (pid file)."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("start is not implemented yet")
    }
}
