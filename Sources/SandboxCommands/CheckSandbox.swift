import ArgumentParser
import FoundationEssentials
import SandboxCore
import SandboxCheck
import SandboxOS

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
        WebSocket). Exit 3 on any escape or any must-work failure. An attempt
        that gets through only because this kernel lacks the Landlock rule
        that stops it (launcher.landlock "best-effort") is listed as NOT
        ENFORCED with the rule and the kernel that has it, not as a failure;
        with launcher.landlock true such a kernel is a refusal. Run it after
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
        let kernel = SandboxCheck.kernelReport(config)
        let results = try SandboxCheck.outside(config)
        let failed = results.filter(\.failed)
        let gaps = results.filter { $0.notEnforced != nil }
        if output.json {
            struct Report: Encodable {
                var attempts: Int
                var failed: Int
                var notEnforced: Int
                var kernel: SandboxCheck.KernelReport
                var results: [SandboxCheck.Result]
                enum CodingKeys: String, CodingKey {
                    case attempts, failed, kernel, results
                    case notEnforced = "not_enforced"
                }
            }
            try printJSON(Report(attempts: results.count, failed: failed.count, notEnforced: gaps.count, kernel: kernel, results: results))
        } else {
            print("kernel: Linux \(kernel.release), Landlock ABI \(kernel.landlockABI)")
            print(kernel.notEnforced.isEmpty ? "Landlock: every rule the launcher makes is enforced"
                                             : "NOT enforced on this kernel: " + kernel.notEnforced.joined(separator: "; "))
            let w0 = max(7, results.map(\.attempt.count).max() ?? 0)
            let w1 = max(8, results.map(\.expected.count).max() ?? 0)
            let w2 = results.contains { $0.notEnforced != nil } ? 12 : 7
            func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(0, w - s.count)) }
            print(pad("attempt", w0) + "  " + pad("expected", w1) + "  " + pad("verdict", w2) + "  result")
            for r in results {
                print(pad(r.attempt, w0) + "  " + pad(r.expected, w1) + "  " + pad(r.verdict, w2) + "  " + r.result
                      + (r.notEnforced.map { " (\($0))" } ?? ""))
            }
            var summary = "\(results.count) checks, \(failed.count) failed"
            if !gaps.isEmpty { summary += ", \(gaps.count) not enforced on this kernel (launcher.landlock = \"best-effort\")" }
            print(summary + (failed.isEmpty ? ": the sandbox holds" + (gaps.isEmpty ? "" : " as far as this kernel enforces it") : ""))
        }
        if !failed.isEmpty { throw ExitCode(3) }
    }
}
