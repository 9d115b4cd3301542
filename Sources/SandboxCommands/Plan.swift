import ArgumentParser
import FoundationEssentials
import SandboxCore
import SandboxOS

public struct Plan: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Print every change provision would make, one line each; change nothing.",
        discussion: """
        Each line is `AREA: ACTION TARGET FROM -> TO`. Areas are planned against the
        system as it is now, so a change that depends on an earlier one (the tree on
        a group still to be created) is listed as well. Exit 0 whether or not there
        is something to do; with --json, a list of objects.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var provision: ProvisionOptions
    @OptionGroup public var output: OutputOptions
    public init() {}

    struct Line: Encodable {
        var area: String, action: String, target: String, from: String?, to: String?, line: String
    }

    public func run() throws {
        let (config, only) = try provision.resolve(options)
        let changes = try Provisioner(config: config, only: only).plan()
        if output.json {
            let lines = changes.map { Line(area: $0.area.rawValue, action: $0.action, target: $0.target, from: $0.from, to: $0.to, line: $0.line) }
            try printJSON(lines)
            return
        }
        for c in changes { print(c.line) }
        print(changes.isEmpty ? "plan: nothing to do" : "plan: \(changes.count) change\(changes.count == 1 ? "" : "s")")
    }
}
