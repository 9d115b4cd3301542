import ArgumentParser
import SandboxCore

public struct CheckSandbox: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "check-sandbox",
        abstract: "Attack the confinement from inside and report what was blocked and what works."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("check-sandbox is not implemented yet")
    }
}
