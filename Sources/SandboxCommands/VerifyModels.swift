import ArgumentParser
import SandboxCore

public struct VerifyModels: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "verify-models",
        abstract: "Check the models share against its manifest."
    )
    @OptionGroup public var options: ConfigOptions
    public init() {}

    public func run() throws {
        throw SandboxError.failure("verify-models is not implemented yet")
    }
}
