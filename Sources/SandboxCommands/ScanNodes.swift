import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore
import SandboxOS

public struct ScanNodes: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "scan-nodes",
        abstract: "Report risky code in custom nodes.",
        discussion: """
        A static scan for eval/exec/compile of built strings, pickle and torch.load without weights_only, \
        yaml.load without a safe loader, shell-outs, raw-IP URLs, encoded payloads that decode to code, \
        .pth files, install-time and prestartup scripts, and writes outside the node's directory. \
        A reviewer's aid: each finding says why. Exit 3 when --fail-on is given and a finding reaches it.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    @Option(name: .long, help: "Exit 3 when a finding of this severity or higher exists (high, medium, low).")
    public var failOn: NodeScanner.Severity?
    @Argument(help: "Nodes to scan (default: every configured node that is on disk).")
    public var names: [String] = []
    public init() {}

    public func run() throws {
        let config = try options.load()
        let nodes = try NodeManager(config).select(names)
        var findings: [NodeScanner.Finding] = []
        var scanned: [String] = []
        var missing: [String] = []
        for node in nodes {
            let spec = CheckoutSpec.node(node, config)
            var st = stat()
            let dir = lstat(spec.dir, &st) == 0 ? spec.dir : (spec.disabledDir.flatMap { lstat($0, &st) == 0 ? $0 : nil })
            guard let dir else { missing.append(node.name); continue }
            findings += try NodeScanner.scan(directory: dir, node: node.name)
            scanned.append(node.name)
        }
        if output.json {
            struct Out: Encodable { var scanned: [String]; var missing: [String]; var findings: [NodeScanner.Finding] }
            try printJSON(Out(scanned: scanned, missing: missing, findings: findings))
        } else {
            for f in findings { print(f.text) }
            for m in missing { print("\(m): not on disk (run update-nodes), not scanned") }
            let by = Dictionary(grouping: findings, by: \.severity)
            print("scanned \(scanned.count) node(s): \(by[.high]?.count ?? 0) high, \(by[.medium]?.count ?? 0) medium, \(by[.low]?.count ?? 0) low")
        }
        if let failOn, findings.contains(where: { $0.severity >= failOn }) { throw ExitCode(3) }
    }
}

extension NodeScanner.Severity: ExpressibleByArgument {}
