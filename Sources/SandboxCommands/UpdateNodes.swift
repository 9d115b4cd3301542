import ArgumentParser
import SandboxCore
import SandboxOS

public struct UpdateNodes: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "update-nodes",
        abstract: "Install missing custom nodes and move those whose configured rev changed.",
        discussion: "Every other node stays at its recorded commit. --pull re-resolves branches and tags and moves what changed. Exit 1 when any node failed (the others are still updated)."
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    @Flag(name: .long, help: "Re-resolve every node's rev (branch tip, tag) and move those that changed.")
    public var pull = false
    @Argument(help: "Nodes to update (default: all).")
    public var names: [String] = []
    public init() {}

    public func run() throws {
        let config = try options.load()
        let lock = try NodeOutput.prepare(config, command: "update-nodes")
        defer { lock.release() }
        var report = try NodeManager(config).update(names: names, pull: pull, progress: NodeProgress(verb: "update"))
        report.outcomes += NodeOutput.syncNodesEnvironment(config, reresolve: pull)
        try NodeOutput.emit(report, json: output.json)
    }
}
