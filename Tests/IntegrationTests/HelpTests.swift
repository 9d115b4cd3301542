import Foundation
import SandboxCore
import Testing
import SandboxOS

@Suite("help")
struct HelpTests {
    static let commands = ["plan", "provision", "update-nodes", "rollback-nodes", "update-comfyui", "rollback-comfyui",
                           "scan-nodes", "fix-permissions", "run", "launch", "start", "stop", "status", "shell",
                           "check-sandbox", "record-models", "verify-models", "install-service", "uninstall", "import-snapshot", "export-snapshot"]

    @Test("every command's --help prints its own usage and exits 0, with no config present", arguments: commands)
    func helpWorks(command: String) throws {
        let r = try HostCommand(World.binary, [command, "--help"],
                                environment: HostCommand.minimalEnvironment.merging(["COMFY_SANDBOX_CONFIG": "/nonexistent/config.json"]) { $1 }).run()
        #expect(r.status == 0, "\(command) --help exited \(r.status): \(r.stderrText)")
        #expect(r.stdoutText.contains("USAGE: comfy-sandbox \(command)"), "\(command): \(r.stdoutText.prefix(200))")
    }

    @Test("a usage error exits 64 and shows the command's own usage")
    func usageError() throws {
        let r = try HostCommand(World.binary, ["run"]).run()
        #expect(r.status == 64)
        #expect(r.stderrText.contains("Usage: comfy-sandbox run"))
    }
}
