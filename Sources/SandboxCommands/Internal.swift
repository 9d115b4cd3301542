import ArgumentParser
import SandboxCore

/// Hidden entry points the tool runs of itself: the relay and the inside half
/// of check-sandbox. Not part of the contract.
public struct Internal: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "__internal",
        abstract: "Entry points comfy-sandbox runs of itself.",
        shouldDisplay: false,
        subcommands: [InternalHash.self]
    )
    public init() {}
}
