import ArgumentParser
import SandboxCore

public struct ScanNodes: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "scan-nodes",
        abstract: "Report risky code in custom nodes."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("scan-nodes is not implemented yet")
    }
}
