import ArgumentParser
import FoundationEssentials
import SandboxCore

public struct CheckSandbox: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "check-sandbox",
        abstract: "Attack the confinement from inside and report what was blocked and what works.",
        discussion: """
        Re-executes comfy-sandbox inside the exact confinement ComfyUI gets and
        tries to escape it (capabilities, setuid, namespaces, mounts, ptrace,
        bpf, keyrings, io_uring, x32, files outside its rules, the host's
        network...), then checks what must keep working (models, outputs,
        threads, memfd, NUMA policy, /dev/shm, the UI port through the relay,
        WebSocket). Exit 3 on any escape or any must-work failure. Run it after
        every kernel upgrade.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @OptionGroup public var output: OutputOptions
    @Option(help: "The instance of launcher.instances to check (default: the first): its GPUs, port and limits; the others' GPU nodes must be absent.")
    public var instance: String?
    public init() {}

    public func run() throws {
        try requireRoot("check-sandbox")
        let config = try options.load().forInstance(instance)
        let results = try SandboxCheck.outside(config)
        let failed = results.filter { !$0.pass }
        if output.json {
            struct Report: Encodable { var attempts: Int; var failed: Int; var results: [SandboxCheck.Result] }
            try printJSON(Report(attempts: results.count, failed: failed.count, results: results))
        } else {
            let w0 = max(7, results.map(\.attempt.count).max() ?? 0)
            let w1 = max(8, results.map(\.expected.count).max() ?? 0)
            func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(0, w - s.count)) }
            print(pad("attempt", w0) + "  " + pad("expected", w1) + "  " + "verdict" + "  result")
            for r in results {
                print(pad(r.attempt, w0) + "  " + pad(r.expected, w1) + "  " + pad(r.pass ? "PASS" : "FAIL", 7) + "  " + r.result)
            }
            print("\(results.count) checks, \(failed.count) failed" + (failed.isEmpty ? ": the sandbox holds" : ""))
        }
        if !failed.isEmpty { throw ExitCode(3) }
    }
}
