import ArgumentParser
import SandboxCore

public struct RecordModels: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "record-models",
        abstract: "Write the SHA-256 manifest of the models share."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("record-models is not implemented yet")
    }
}
