import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore

public struct Launch: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Run ComfyUI in the foreground under the confinement.",
        discussion: """
        loopback-only (the default): ComfyUI runs in its own network namespace
        with only loopback; a relay without privileges serves it on the host's
        launcher.listen:launcher.port, to launcher.ui_users (and root) only,
        under the UI's own names (launcher.ui_hosts adds some) and from its
        own pages, one request per connection, at most 64 connections per
        user, with launcher.ui_csp on every response. host: ComfyUI binds it
        itself, and none of that applies.
        SIGTERM/SIGINT are passed to ComfyUI; the RAM temp is removed and the
        exit status is ComfyUI's.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @Option(help: "The instance of launcher.instances to run (default: the first; the systemd template passes %i).")
    public var instance: String?
    public init() {}

    public func run() throws {
        Launcher.blockSignals()
        let config = try options.load().forInstance(instance)
        if geteuid() == 0, let pid = LauncherPidFile.running(config) {
            throw SandboxError.failure("ComfyUI is already running under comfy-sandbox (pid \(pid))",
                                       hint: "comfy-sandbox stop")
        }
        let port = UInt16(clamping: config.launcher.port)
        // Bind the host side first: a busy port fails before anything starts.
        // Under the systemd unit the sockets come from comfy-sandbox.socket.
        let activated = Relay.activatedSockets()
        let listening = try activated?.listening
            ?? (config.launcher.network == .loopbackOnly ? Relay.listen(host: config.launcher.listen, port: port) : nil)
        // Who connects is asked of the host's kernel, through a netlink
        // socket opened here, in the host's namespace (the relay runs in the
        // sandbox's), or by systemd.
        var door: UIDoor?
        var diag: OwnedFD?
        if let listening {
            door = try Relay.door(config, listening: listening.raw)
            diag = activated != nil ? activated?.diag : try Relay.peerLookup()
            if diag == nil && door?.allowedUIDs != nil {
                throw SandboxError.failure("systemd passed no NETLINK_SOCK_DIAG socket, so the relay cannot tell who connects (launcher.ui_users)",
                                           hint: "reinstall the units (`comfy-sandbox install-service`): comfy-sandbox.socket needs ListenNetlink=inet-diag 0")
            }
        } else if config.launcher.network == .host {
            printError("comfy-sandbox: launcher.network is host: ComfyUI serves its port itself, without the relay, so launcher.ui_users, ui_hosts and ui_csp are not enforced")
        }
        let session = try Launcher.prepare(config, purpose: .launch)
        defer { session.cleanup() }
        session.printNotes()
        // Unprivileged under systemd, state_dir is not ours to write: systemd tracks the pid.
        if geteuid() == 0 { try LauncherPidFile.write(config) }
        defer { LauncherPidFile.remove(config) }

        let argv = Launcher.comfyArguments(config, session: session)
        printError("comfy-sandbox: starting ComfyUI as \(config.sandboxUser.name): \(argv.joined(separator: " "))")
        let spec = SpawnSpec(path: argv[0], arguments: argv, environment: session.environment,
                             workingDirectory: session.workingDirectory, newSession: true, confinement: session.confinement)
        let pid = try spec.spawn()
        var companions = session.companions
        if let listening, let door {
            do {
                companions[try Relay.spawn(listening: listening, diag: diag, door: door, targetPort: port,
                                           networkNamespace: session.confinement.networkNamespace, config: config)] = "the relay"
            } catch {
                kill(pid, SIGTERM)
                _ = ChildExit.wait(pid)
                session.stopEgressProxy()
                Launcher.killLeftovers()
                throw error
            }
            printError("comfy-sandbox: serving http://\(IPEndpoint.urlAuthority(config.launcher.listen, Int(Relay.boundPort(listening.raw))))/ through the relay (egress locked to the sandbox's loopback)")
        } else {
            printError("comfy-sandbox: ComfyUI listens on http://\(IPEndpoint.urlAuthority(config.launcher.listen, Int(port)))/ (launcher.network = host)")
        }
        if !config.launcher.egress.isEmpty && config.launcher.network == .loopbackOnly {
            printError("comfy-sandbox: egress proxy on 127.0.0.1:\(Egress.proxyPort) inside the sandbox for \(config.launcher.egress.joined(separator: ", ")); connections are logged to \(LauncherPidFile.logPath(config))")
        }
        let (exit, stopSignal) = Launcher.supervised(main: pid, companions: companions, throughInit: session.confinement.root != nil)
        session.companionsReaped()
        session.cleanup()
        LauncherPidFile.remove(config)
        printError("comfy-sandbox: ComfyUI exited (\(exit.code))")
        // Asked to stop (stop, systemctl stop, Ctrl-C) and ComfyUI died of
        // that signal: a clean stop, not a failure.
        if let stopSignal, exit == .signaled(stopSignal) { return }
        if exit.code != 0 { throw ExitCode(exit.code) }
    }
}
