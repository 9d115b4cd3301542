import ArgumentParser
import FoundationEssentials
import SandboxCore
import SandboxOS

public struct Status: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Report what is provisioned, what drifted, what runs and what is enforced."
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    @Argument(help: "One instance of launcher.instances (default: each).")
    public var name: String?
    public init() {}

    public func run() throws {
        let config = try options.load()
        if let name { _ = try config.forInstance(name) }
        let items = StatusReport.gather(config, instance: name)
        if output.json {
            try printJSON(items)
        } else {
            var section = ""
            for item in items {
                if item.section != section {
                    section = item.section
                    print("\(section):")
                }
                print("  \(item.ok ? " " : "!") \(item.key): \(item.value)")
            }
        }
        if items.contains(where: { !$0.ok }) { throw ExitCode(3) }
    }
}
