import ArgumentParser
import SandboxCore

public struct RollbackNodes: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rollback-nodes",
        abstract: "Put each named node (all when none is named) back on its previous commit."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("rollback-nodes is not implemented yet")
    }
}
