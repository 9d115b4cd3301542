import ArgumentParser
import SandboxCore

public struct FixPermissions: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "fix-permissions",
        abstract: "Re-apply group, modes, setgid and ACLs across the shares, safely."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("fix-permissions is not implemented yet")
    }
}
