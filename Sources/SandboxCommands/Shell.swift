import ArgumentParser
import SandboxCore

public struct Shell: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "An interactive shell as the sandbox user, confined like ComfyUI.",
        discussion: """
        The shell runs on a pty of its own in a new session (job control and
        line editing work there); comfy-sandbox relays it to your terminal,
        which the shell never gets: it cannot change your terminal's settings
        or write sequences that act beyond the screen (OSC 52 clipboard writes
        are dropped). Your terminal's settings are restored when it exits.
        """
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        let exit = try Launcher.runShell(try options.load())
        if exit.code != 0 { throw ExitCode(exit.code) }
    }
}

import FoundationEssentials
import SandboxOS
