import ArgumentParser
import SandboxCore

public struct Status: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Report what is provisioned, what drifted, what runs and what is enforced."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("status is not implemented yet")
    }
}
