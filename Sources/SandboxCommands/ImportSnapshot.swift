import ArgumentParser
import SandboxCore
import SandboxOS

public struct ImportSnapshot: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "import-snapshot",
        abstract: "Read a ComfyUI-Manager snapshot (JSON or YAML) and show the config it implies.",
        discussion: """
        Git nodes become custom_nodes entries pinned to the snapshot's commits (named after the URL, \
        enabled unless disabled in the Manager), ComfyUI's commit becomes comfyui.rev, registry and \
        file nodes are listed with what to do about each, and name==version pips go to \
        comfyui-snapshot-requirements.txt beside the config, which comfyui.prefer_versions then \
        names: requirement resolutions keep those versions where they fit (uv). Prints the diff \
        against the config; \
        writes only with --write. A bad snapshot is exit 65 and changes nothing.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    @Argument(help: ArgumentHelp("The snapshot file the Manager saved.", valueName: "file"))
    public var snapshot: String
    @Option(name: .long, help: ArgumentHelp("Write the new config to this path (atomically) and the pip pins beside it.", valueName: "path"))
    public var write: String?
    public init() {}

    public func run() throws {
        let plan = try SnapshotImporter.plan(snapshotPath: snapshot, configPath: options.path, writePath: write)
        let written = try SnapshotImporter.write(plan)
        if output.json {
            try printJSON(plan)
            return
        }
        for line in plan.report() { print(line) }
        print("")
        if write == nil {
            print("nothing written; to save it: comfy-sandbox import-snapshot \(snapshot) --write \(options.path)")
        } else {
            for line in written { print(line) }
            print("next: sudo make update-comfyui update-nodes CONFIG=\(plan.target ?? options.path)   (or comfy-sandbox provision)")
        }
    }
}
