import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore
import SandboxOS
import SandboxConfig

/// Shared by update-nodes, rollback-nodes, update-comfyui and rollback-comfyui:
/// the summary (text or JSON) and the exit status (1 when any checkout failed).
enum NodeOutput {
    static func emit(_ report: NodeManager.Report, json: Bool) throws {
        if json {
            try printJSON(report)
        } else {
            for o in report.outcomes { print(o.line) }
            for u in report.unmanaged {
                print("not in the config, left alone: custom_nodes/\(u)")
            }
            let failed = report.outcomes.filter { $0.kind == .failed }.count
            if failed > 0 { print("\(failed) of \(report.outcomes.count) failed") }
        }
        if report.failed { throw ExitCode(1) }
    }

    /// The venv and the confined, sealed requirement install (see PythonEnv),
    /// as one more line of the summary.
    static func syncPythonEnv(_ config: Config, reresolve: Bool = false) -> Outcome {
        PythonEnv(config).syncOutcome(reresolve: reresolve, progress: { printError($0) })
    }

    /// The requirements, then the install scripts that may import them.
    static func syncNodesEnvironment(_ config: Config, reresolve: Bool = false) -> [Outcome] {
        var out: [Outcome] = []
        if config.comfyui.installRequirements || config.customNodes.contains(where: { $0.enabled && $0.installRequirements }) {
            out.append(syncPythonEnv(config, reresolve: reresolve))
        }
        if out.last?.kind != .failed || out.last?.message?.contains("left out") == true {
            out += InstallScript.settle(config, progress: { printError($0) })
        }
        return out
    }

    /// Root, a sane umask (new files root-owned and read-only to others), the state lock.
    static func prepare(_ config: Config, command: String) throws -> StateLock {
        try requireRoot(command)
        umask(0o022)
        return try StateLock.acquire(stateDir: config.stateDir, command: command, onWait: { printError($0) })
    }
}
