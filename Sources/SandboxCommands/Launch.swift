import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore
import SandboxOS

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
        let (exit, stopSignal) = try Launcher.launchComfyUI(try options.load().forInstance(instance))
        // Asked to stop (stop, systemctl stop, Ctrl-C) and ComfyUI died of
        // that signal: a clean stop, not a failure.
        if let stopSignal, exit == .signaled(stopSignal) { return }
        if exit.code != 0 { throw ExitCode(exit.code) }
    }
}
