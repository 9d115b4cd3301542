import ArgumentParser
import SandboxCore
import SandboxOS

public struct Run: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command as the sandbox user under ComfyUI's exact confinement.",
        discussion: """
        The command gets a new session and never your terminal: when stdin is
        a terminal, a pty of its own that comfy-sandbox relays to yours (raw
        mode, restored on exit; window size passed on; sequences that act
        beyond the screen, such as OSC 52 clipboard writes, dropped); when
        stdin is not a terminal, no terminal at all (stdout/stderr that are
        one reach it through a filtered pipe). Files and pipes are inherited
        as they are. It exits with the command's status (128+N when killed by
        signal N). Whatever the command leaves running in the background is
        killed when it exits.
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
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        try Run.execute(configPath: options.config, argv: argv)
    }

    /// The common spelling, `run [--config PATH] -- CMD [ARG...]`, read
    /// without ArgumentParser. `run` is the one command whose start-up time
    /// is the product (every `comfy-sandbox run` of a short command pays it),
    /// and ArgumentParser's first parse of a process costs milliseconds of
    /// reflection and protocol-conformance lookups. Anything else (--help,
    /// an unknown or repeated option, no `--`) returns nil and goes through
    /// ArgumentParser as before, so the two can never disagree on a command
    /// line this accepts: the tests parse the same lines both ways.
    public static func quickParse(_ args: [String]) -> (config: String?, argv: [String])? {
        guard args.first == "run" else { return nil }
        var config: String?
        var i = 1
        while i < args.count {
            let a = args[i]
            if a == "--" {
                let argv = Array(args[(i + 1)...])
                return argv.isEmpty ? nil : (config, argv)
            }
            guard config == nil else { return nil }
            if a == "--config", i + 1 < args.count, !args[i + 1].hasPrefix("-") {
                config = args[i + 1]
                i += 2
            } else if a.hasPrefix("--config="), a.count > "--config=".count {
                config = String(a.dropFirst("--config=".count))
                i += 1
            } else {
                return nil
            }
        }
        return nil
    }

    /// Runs `argv` (argv[0] looked up in the sandbox's PATH) under the
    /// confinement the config at `configPath` describes; exits with its status.
    public static func execute(configPath: String?, argv: [String]) throws {
        let exit = try Launcher.runCommand(configPath: configPath, argv: argv)
        if exit.code != 0 { throw ExitCode(exit.code) }
    }
}
