import ArgumentParser
import SandboxCore

public struct Provision: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "provision",
        abstract: "Make the system match the config (idempotent)."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("provision is not implemented yet")
    }
}
