import ArgumentParser
import SandboxCore

public struct Shell: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "An interactive shell as the sandbox user, confined like ComfyUI."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        Launcher.blockSignals()
        let config = try options.load()
        let session = try Launcher.prepare(config, purpose: .shell)
        defer { session.cleanup() }
        session.printNotes()
        if let term = ProcessEnvironment.value("TERM") { session.environment["TERM"] = term }
        session.environment["PS1"] = "[comfy-sandbox \\u \\W]\\$ "
        // The shell keeps the caller's terminal (job control, line editing):
        // seccomp refuses TIOCSTI and TIOCLINUX, so it cannot type into it.
        let exit = try Launcher.runForeground(session, argv: ["/bin/bash", "--norc", "--noprofile", "-i"],
                                              newSession: false, forwardInterrupt: false)
        session.cleanup()
        if exit.code != 0 { throw ExitCode(exit.code) }
    }
}

import FoundationEssentials
