import ArgumentParser
import SandboxCore
import SandboxOS

public struct RollbackNodes: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rollback-nodes",
        abstract: "Put each named node (all, when none is named) back on its previous_sha.",
        discussion: "Twice toggles. A node with no previous commit fails with a message (exit 1)."
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    @Argument(help: "Nodes to roll back (default: all).")
    public var names: [String] = []
    public init() {}

    public func run() throws {
        let config = try options.load()
        let lock = try NodeOutput.prepare(config, command: "rollback-nodes")
        defer { lock.release() }
        var report = try NodeManager(config).rollback(names: names, progress: NodeProgress(verb: "rollback"))
        // The nodes' requirement files are back as they were: the set sealed
        // for them (kept beside the one in use) is switched to, or installed
        // again from its lock.
        report.outcomes += NodeOutput.syncNodesEnvironment(config)
        try NodeOutput.emit(report, json: output.json)
    }
}
