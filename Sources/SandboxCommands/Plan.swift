import ArgumentParser
import SandboxCore

public struct Plan: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Print every change provision would make, one line each; change nothing."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("plan is not implemented yet")
    }
}
