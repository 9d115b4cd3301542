import ArgumentParser
import FoundationEssentials
import SandboxCore
import SandboxCheck
import SandboxOS
import SandboxEgress
import SandboxUI
import SandboxConfig

/// Hidden entry points the tool runs of itself: the relay and the inside half
/// of check-sandbox. Not part of the contract.
public struct Internal: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "__internal",
        abstract: "Entry points comfy-sandbox runs of itself.",
        shouldDisplay: false,
        subcommands: [RelayCommand.self, EgressProxyCommand.self, CheckInside.self, InstallProbe.self, InternalHash.self, KernelProbe.self]
    )
    public init() {}

    /// The UI relay; runs as nobody inside the sandbox's network namespace
    /// with the host's listening socket as fd 3 and a NETLINK_SOCK_DIAG
    /// socket of the host's namespace as fd 4 (`--diag-fd -1`: none).
    public struct RelayCommand: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "relay", shouldDisplay: false)
        @Option(name: .customLong("target-port")) public var targetPort: UInt16
        @Option(name: .customLong("listen-fd")) public var listenFD: Int32 = 3
        @Option(name: .customLong("diag-fd")) public var diagFD: Int32 = 4
        @Option(name: .customLong("allow-uid")) public var allowUIDs: [UInt32] = []
        @Flag(name: .customLong("allow-anyone")) public var allowAnyone = false
        @Option(name: .customLong("authority")) public var authorities: [String] = []
        @Option(name: .customLong("csp")) public var csp: String = ""
        public init() {}
        public func run() throws {
            let names = try authorities.map { text in
                guard let a = UIAuthority.parse(text, defaultPort: 80) else { throw ValidationError("--authority \(text): not host:port") }
                return a
            }
            let door = UIDoor(allowedUIDs: allowAnyone ? nil : Set(allowUIDs), authorities: Set(names), csp: csp)
            Relay.serve(listenFD: listenFD, diagFD: diagFD, targetPort: targetPort, door: door)
        }
    }

    /// The egress proxy; runs as nobody in the host's network namespace with
    /// its listening socket (made in the sandbox's namespace) as fd 3 and
    /// launcher.log as fd 4.
    public struct EgressProxyCommand: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "egress-proxy", shouldDisplay: false)
        @Option(name: .customLong("allow")) public var allow: [String] = []
        @Option(name: .customLong("listen-fd")) public var listenFD: Int32 = 3
        @Option(name: .customLong("log-fd")) public var logFD: Int32 = 4
        public init() {}
        public func run() throws {
            let rules = try allow.map { text in
                switch Egress.Rule.parse(text) {
                case .success(let r): return r
                case .failure(let e): throw ValidationError("--allow \(e.message)")
                }
            }
            EgressProxy.serve(listenFD: listenFD, logFD: logFD, rules: rules)
        }
    }

    /// What this kernel has of the calls comfy-sandbox builds on, one per
    /// line (`make test-kernels` and the tests read it).
    public struct KernelProbe: ParsableCommand {
        public static let configuration = CommandConfiguration(commandName: "kernel-probe", shouldDisplay: false)
        public init() {}
        public func run() throws {
            print("release: \(Kernel.release)")
            print("openat2: \(Kernel.hasOpenat2 ? "present" : "missing")")
            print("fchmodat2: \(Kernel.hasFchmodat2 ? "present" : "missing")")
            print("landlock abi: \(Landlock.abi)")
        }
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
