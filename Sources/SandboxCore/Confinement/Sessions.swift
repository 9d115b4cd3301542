import FoundationEssentials
import Glibc
import SandboxOS
import SandboxEgress
import SandboxUI
import SandboxConfig

// The three ways a confined session runs, orchestrated here so that the
// commands only parse their arguments and map the outcome to an exit
// status: `run` (a command in the foreground), `shell` (an interactive
// bash) and `launch` (ComfyUI, with the relay and the egress proxy).
extension Launcher {
    /// `run`: `argv` (argv[0] looked up in the sandbox's PATH) under the
    /// confinement the config at `configPath` describes. 127 when the
    /// command is not in the sandbox's PATH, as a shell says it.
    public static func runCommand(configPath: String?, argv: [String]) throws -> ChildExit {
        var argv = argv
        blockSignals()
        prepareAhead()
        let config = try ConfigLoader.load(path: ConfigLoader.resolvePath(configPath))
        let session = try prepare(config, purpose: .run)
        defer { session.cleanup() }
        session.printNotes()
        guard let path = resolveCommand(argv[0], path: session.environment["PATH"] ?? "") else {
            printError("comfy-sandbox: \(argv[0]): command not found in the sandbox's PATH (\(session.environment["PATH"] ?? ""))")
            return .exited(127)
        }
        argv[0] = path
        let exit = try runForeground(session, argv: argv)
        session.cleanup()
        return exit
    }

    /// `shell`: an interactive bash on a pty of its own (job control, line
    /// editing), never the caller's terminal (see OperatorTerminal).
    public static func runShell(_ config: Config) throws -> ChildExit {
        blockSignals()
        let session = try prepare(config, purpose: .shell)
        defer { session.cleanup() }
        session.printNotes()
        if let term = ProcessEnvironment.value("TERM") { session.environment["TERM"] = term }
        session.environment["PS1"] = "[comfy-sandbox \\u \\W]\\$ "
        let exit = try runForeground(session, argv: ["/bin/bash", "--norc", "--noprofile", "-i"])
        session.cleanup()
        return exit
    }

    /// `launch`: ComfyUI in the foreground, served through the relay
    /// (loopback-only) or on its own port (host), until it exits or is
    /// asked to stop. Returns its exit and the signal, if any, that asked.
    public static func launchComfyUI(_ config: Config) throws -> (exit: ChildExit, stopSignal: Int32?) {
        blockSignals()
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
        return (exit, stopSignal)
    }
}
