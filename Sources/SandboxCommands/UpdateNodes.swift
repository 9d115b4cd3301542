import ArgumentParser
import SandboxCore

public struct UpdateNodes: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "update-nodes",
        abstract: "Install missing custom nodes and move those whose configured rev changed."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("update-nodes is not implemented yet")
    }
}
