import ArgumentParser
import SandboxCore
import SandboxOS

public struct Uninstall: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "uninstall",
        abstract: "Remove the service, sandbox user, installed code and state (shared data stays).",
        discussion: """
        Removes, and lists as it goes: the systemd unit (stopped and disabled
        first), a launcher started without systemd (stopped as `stop` does),
        RAM temps in /dev/shm that no session holds, the sandbox user and its
        home, the traverse ACL entries provision added, the shared group (only
        when provision created it and it has no members beyond the configured
        ones), comfyui.path, its Python environment, the installer cache and
        state_dir. The shares and their data stay unless --purge-data; when the
        group goes, they are handed back to the primary user's own group first
        (files, setgid directories and ACL entries), so no group created later
        with the same gid inherits them. Holds the state lock.

        Every tree is removed by descriptor with the one tree walker, which
        never follows a symlink or enters a mount inside (what stays is named,
        and uninstall exits 1).
        """
    )
    @OptionGroup public var options: ConfigOptions
    @Flag(name: .long, help: "Also delete the shares and everything in them.")
    public var purgeData = false
    public init() {}

    public func run() throws {
        let config = try options.load()
        try requireRoot("uninstall")
        try Uninstaller(config: config, purgeData: purgeData).run()
    }
}
