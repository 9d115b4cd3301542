import ArgumentParser
import FoundationEssentials
import Glibc
import SandboxCore
import SandboxCheck
import SandboxOS

/// The root command. The executable only calls `ComfySandbox.run()`.
public struct ComfySandbox: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "comfy-sandbox",
        abstract: "Run ComfyUI with untrusted custom nodes under a dedicated, confined account.",
        discussion: """
        Provisioning creates a sandbox user and a shared group, lays out the shared
        directory tree, installs ComfyUI and its custom nodes at pinned commits, and
        the launcher runs ComfyUI as that user with no capabilities, no_new_privs,
        seccomp, Landlock and network egress locked to loopback, at native GPU speed.

        Exit codes: 0 success, 1 failure, 3 a check found a problem, 64 usage error,
        65 invalid config (nothing on disk was changed).
        """,
        version: "0.1.0",
        subcommands: [
            Plan.self, Provision.self,
            UpdateNodes.self, RollbackNodes.self, UpdateComfyUI.self, RollbackComfyUI.self, ScanNodes.self,
            ImportSnapshot.self, ExportSnapshot.self,
            FixPermissions.self,
            Run.self, Launch.self, Start.self, Stop.self, Status.self, Shell.self, CheckSandbox.self,
            RecordModels.self, VerifyModels.self,
            InstallService.self, Uninstall.self,
            Internal.self,
        ]
    )

    public init() {}

    /// Parses the process arguments, runs the command and exits with the
    /// contract's code: a SandboxError's status, 64 for usage errors.
    public static func run(arguments: [String]? = nil) -> Never {
        // Before anything else: a test asking for an older kernel's system calls.
        Kernel.simulateMissingSyscalls()
        let arguments = GlobalFlags.normalize(arguments ?? Array(CommandLine.arguments.dropFirst()))
        do {
            if let quick = Run.quickParse(arguments) {
                try Run.execute(configPath: quick.config, argv: quick.argv)
                Glibc.exit(0)
            }
            var command = try parseAsRoot(arguments)
            try command.run()
            Glibc.exit(0)
        } catch let error as SandboxError {
            printError("comfy-sandbox: \(error.description)")
            Glibc.exit(error.status.rawValue)
        } catch let code as ExitCode {
            Glibc.exit(code.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            printError(fullMessage(for: error))
            // ArgumentParser reports usage errors as 64 (EX_USAGE), as the contract wants.
            Glibc.exit(code.rawValue)
        }
    }
}
