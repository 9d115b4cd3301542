import ArgumentParser
import FoundationEssentials
import SandboxCore
import SandboxOS
import SandboxConfig

/// `--only` and `--models`, shared by plan and provision.
public struct ProvisionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Only these areas (comma list): accounts, tree, comfyui, python, nodes, models.", valueName: "areas"))
    public var only: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Also link these models: a MODELS spec, RepoID:RemoteFilename:TargetDir[:LocalRename] (several separated as MODELS allows).",
        discussion: "The environment variable MODELS is read the same way.", valueName: "spec"))
    public var models: [String] = []

    public init() {}

    /// The config with the MODELS specs applied, and the areas to run.
    func resolve(_ options: ConfigOptions) throws -> (Config, Set<Area>?) {
        var config = try options.load()
        var specs = models
        if let env = ProcessEnvironment.value("MODELS"), !env.isEmpty { specs.insert(env, at: 0) }
        if !specs.isEmpty { try Provisioner.addModels(specs, to: &config) }
        return (config, try Provisioner.parseAreas(only))
    }
}

public struct Provision: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "provision",
        abstract: "Make the system match the config (idempotent).",
        discussion: """
        Creates the shared group and the sandbox user (or adopts correct existing
        ones), lays out the shares with owner, group, setgid modes and default ACLs,
        links them into ComfyUI's directory, then installs ComfyUI, its Python
        environment, custom nodes and model links. Each area is planned against the
        system and applied before the next is planned. Every applied change is
        printed and appended to state_dir/journal.log. Holds the state lock.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var provision: ProvisionOptions
    public init() {}

    public func run() throws {
        let (config, only) = try provision.resolve(options)
        try requireRoot("provision")
        let lock = try StateLock.acquire(stateDir: config.stateDir, command: "provision", onWait: { printError($0) })
        defer { lock.release() }
        let applied = try Provisioner(config: config, only: only).provision(journal: Journal(stateDir: config.stateDir)) {
            print($0.line)
        }
        print(applied.isEmpty ? "provision: nothing to do" : "provision: \(applied.count) change\(applied.count == 1 ? "" : "s") applied")
        // Nodes whose requirements could not be installed were left out while
        // everything else went in: say which, with the installer's words, and
        // exit 1 (also on a later run, while they still are).
        if only == nil || only!.contains(.python) || only!.contains(.nodes), let e = PythonEnv(config).leftOutError() { throw e }
    }
}
