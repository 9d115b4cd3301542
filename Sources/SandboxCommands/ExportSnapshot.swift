import ArgumentParser
import FoundationEssentials
import SandboxCore
import SandboxOS

public struct ExportSnapshot: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "export-snapshot",
        abstract: "Write the installed ComfyUI and nodes as a ComfyUI-Manager snapshot (JSON).",
        discussion: """
        From the records: ComfyUI's commit, each configured node's commit under its repo URL and \
        whether it is disabled; the pips of the sealed requirements install. ComfyUI-Manager's \
        Snapshot Manager restores it, and import-snapshot reads it back. Exit 1 when a record is not \
        trusted (that node is left out).
        """
    )
    @OptionGroup public var options: ConfigOptions
    @Option(name: .long, help: ArgumentHelp("Write the snapshot here (atomically) instead of to stdout.", valueName: "file"))
    public var output: String?
    public init() {}

    public func run() throws {
        let config = try options.load()
        let result = SnapshotExporter.export(config)
        let text = result.snapshot.renderJSON()
        if let output {
            try AtomicFile.write(Data(text.utf8), to: output, mode: 0o644, owner: nil)
            printError("wrote \(output): ComfyUI \(result.snapshot.comfyui.map { String($0.prefix(12)) } ?? "null"), \(result.snapshot.gitNodes.count) nodes, \(result.snapshot.pips?.count ?? 0) pips")
        } else {
            print(text, terminator: "")
        }
        for n in result.notes { printError("note: \(n)") }
        if !result.untrusted.isEmpty {
            throw SandboxError.failure(result.untrusted.joined(separator: "\n") + "\nthose were left out of the snapshot",
                                       hint: "move a bad record aside and run update-nodes to re-record the checkout")
        }
    }
}
