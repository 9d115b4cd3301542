import ArgumentParser
import FoundationEssentials
import SandboxCore

/// Hidden entry points the tool runs of itself: the relay and the inside half
/// of check-sandbox. Not part of the contract.
public struct Internal: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "__internal",
        abstract: "Entry points comfy-sandbox runs of itself.",
        shouldDisplay: false,
        subcommands: [RelayCommand.self, CheckInside.self, InstallProbe.self, InternalHash.self]
    )
    public init() {}

    /// The UI relay; runs as nobody inside the sandbox's network namespace
    /// with the host's listening socket as fd 3.
    public struct RelayCommand: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "relay", shouldDisplay: false)
        @Option(name: .customLong("target-port")) public var targetPort: UInt16
        @Option(name: .customLong("listen-fd")) public var listenFD: Int32 = 3
        public init() {}
        public func run() throws { Relay.serve(listenFD: listenFD, targetPort: targetPort) }
    }

    /// Runs a command under `SandboxConfinement.forInstall` (what the node
    /// and ComfyUI installers use for pip), for tests and debugging.
    public struct InstallProbe: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "install-probe", shouldDisplay: false)
        @OptionGroup public var options: ConfigOptions
        @Option(name: .customLong("writable")) public var writable: [String] = []
        @Argument(parsing: .captureForPassthrough) public var command: [String] = []
        public init() {}
        public func run() throws {
            var argv = command
            if argv.first == "--" { argv.removeFirst() }
            guard let path = argv.first else { throw ValidationError("install-probe needs a command") }
            let config = try options.load()
            let c = try SandboxConfinement.forInstall(config, writable: writable)
            let r = try HostCommand(path, Array(argv.dropFirst()), environment: ["PATH": "/usr/bin:/bin", "HOME": config.sandboxUser.home])
                .run(confinement: c)
            writeAll(1, r.stdout)
            writeAll(2, r.stderr)
            if r.status != 0 { throw ExitCode(r.status) }
        }
    }

    /// The inside half of check-sandbox: runs the attacks under the exact
    /// confinement and prints one JSON line of results, then serves the
    /// reachability checks.
    public struct CheckInside: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "check-inside", shouldDisplay: false)
        @Option(name: .customLong("facts")) public var facts: String
        public init() {}
        public func run() throws {
            let decoded = try JSONDecoder().decode(SandboxCheck.Facts.self, from: Data(facts.utf8))
            SandboxCheck.inside(decoded)
        }
    }
}
