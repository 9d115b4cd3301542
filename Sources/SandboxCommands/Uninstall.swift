import ArgumentParser
import SandboxCore

public struct Uninstall: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "uninstall",
        abstract: "Remove the service, sandbox user, installed code and state (shared data stays)."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("uninstall is not implemented yet")
    }
}
