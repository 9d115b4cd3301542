import ArgumentParser
import SandboxCore

public struct Run: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command as the sandbox user under ComfyUI's exact confinement.",
        discussion: """
        The command gets a new session (no controlling terminal, so it cannot
        inject keystrokes into yours; seccomp refuses TIOCSTI as well), stdio
        inherited, and exits with the command's status (128+N when killed by
        signal N).
        """
    )
    @OptionGroup public var options: ConfigOptions
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.")
    public var command: [String] = []
    public init() {}

    public func validate() throws {
        if command.isEmpty || command == ["--"] {
            throw ValidationError("run needs a command: comfy-sandbox run -- CMD [ARG...]")
        }
    }

    public func run() throws {
        // Passthrough capture takes a leading --help as the command; only
        // after `--` is it the command's own.
        if let first = command.first, first == "--help" || first == "-h" {
            print(ComfySandbox.helpMessage(for: Run.self))
            return
        }
        Launcher.blockSignals()
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        let config = try options.load()
        let session = try Launcher.prepare(config, purpose: .run)
        defer { session.cleanup() }
        session.printNotes()
        guard let path = Launcher.resolveCommand(argv[0], path: session.environment["PATH"] ?? "") else {
            // 127, as a shell says "command not found".
            printError("comfy-sandbox: \(argv[0]): command not found in the sandbox's PATH (\(session.environment["PATH"] ?? ""))")
            session.cleanup()
            throw ExitCode(127)
        }
        argv[0] = path
        let exit = try Launcher.runForeground(session, argv: argv, newSession: true)
        session.cleanup()
        if exit.code != 0 { throw ExitCode(exit.code) }
    }
}
