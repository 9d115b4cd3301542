import ArgumentParser
import FoundationEssentials
import SandboxCore
import SandboxOS
import SandboxConfig

public struct RecordModels: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "record-models",
        abstract: "Write the SHA-256 manifest of the models share.",
        discussion: """
        Hashes every regular file in the share named "models" and writes
        state_dir/models.manifest.json (root-owned). Symlinks, FIFOs, sockets and
        devices are listed, never followed or opened. Exit 1 when a file could
        not be hashed (it is left out of the manifest).
        """
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    @Option(name: .long, help: "Files hashed at once (default: one per CPU).")
    public var jobs: Int?
    public init() {}

    public func run() throws {
        try requireRoot("record-models")
        let config = try options.load()
        let share = try ModelsShare.path(config)
        let lock = try StateLock.acquire(stateDir: config.stateDir, command: "record-models", onWait: { printError($0) })
        defer { lock.release() }
        let (_, result) = try Manifest.record(share: share, stateDir: config.stateDir,
                                              workers: jobs ?? FileHasher.defaultWorkers, progress: !output.json)
        if output.json {
            try printJSON(result)
        } else {
            for n in result.notHashed { print("note: \(n.path): \(n.reason)") }
            for u in result.unreadable { printError("not recorded: \(u.path): \(u.reason)") }
            let rate = result.seconds > 0 ? Double(result.bytes) / result.seconds : 0
            print("recorded \(result.files) files, \(ByteProgress.size(result.bytes)) in \(Format.fixed(result.seconds, 2)) s (\(ByteProgress.size(Int64(rate)))/s) -> \(result.manifest)")
        }
        if !result.ok {
            throw SandboxError.failure("\(result.unreadable.count) file(s) in \(share) could not be recorded",
                                       hint: "fix the files named above and run record-models again")
        }
    }
}

/// The models share of a config, shared by the model commands.
enum ModelsShare {
    static func path(_ config: Config) throws -> String {
        guard let s = config.share(named: "models") else {
            throw SandboxError.config("shares: no share named \"models\"", hint: "add { \"name\": \"models\", ... } to shares")
        }
        return s.path
    }
}
