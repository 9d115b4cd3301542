import Foundation
@testable import SandboxCore
@testable import SandboxService
import Testing
@testable import SandboxOS
@testable import SandboxConfig

@Suite("systemd units rendered from the config")
struct ServiceUnitTests {
    static let analyze = "/usr/bin/systemd-analyze"
    static var repo: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func config() throws -> Config {
        let json = """
        {"primary_user": "bob", "sandbox_user": {"name": "cui", "home": "/srv/cui"},
         "shared_group": {"name": "aishare"},
         "shares": [{"name": "models", "path": "/data/ai models", "access": "read-only"},
                    {"name": "output", "path": "/data/out", "access": "read-write"}],
         "custom_nodes": [{"name": "Editable", "repo": "https://example.invalid/e.git", "writable": true}],
         "launcher": {"listen": "127.0.0.2", "port": 9999, "limits": {"nofile": 4096, "nproc": 512}}}
        """
        return try ConfigLoader.decode(Data(json.utf8), format: .json, file: "t.json", environment: [:])
    }

    func template(_ name: String) throws -> String {
        try String(contentsOf: Self.repo.appendingPathComponent("systemd/\(name)"), encoding: .utf8)
    }

    @Test("the config's user, group, writable paths, limits and listen address replace the defaults, and nothing else")
    func rendersConfig() throws {
        let c = try config()
        let t = try template("comfy-sandbox.service")
        let s = ServiceUnit.renderService(t, config: c, configPath: "/etc/cs.json", binary: "/opt/bin/comfy-sandbox")
        let lines = Set(s.split(separator: "\n").map(String.init))
        for want in ["User=cui", "Group=aishare", "SupplementaryGroups=aishare", "Environment=COMFY_SANDBOX_CONFIG=/etc/cs.json",
                     "ExecStart=/opt/bin/comfy-sandbox launch", "LimitNOFILE=4096", "LimitNPROC=512",
                     "ReadWritePaths=/srv/cui /opt/comfy-sandbox/ComfyUI/user /dev/shm /data/out /opt/comfy-sandbox/ComfyUI/custom_nodes/Editable"] {
            #expect(lines.contains(want), "missing \(want)")
        }
        #expect(!s.contains("ai models"), "a read-only share must not be writable")
        // The session's limits: no memory ceiling by default, then the configured one, without swap.
        #expect(lines.contains("MemoryMax=infinity") && lines.contains("TasksMax=512") && lines.contains("CPUWeight=100"))
        var limited = c
        limited.launcher.limits.memory = "24g"
        limited.launcher.limits.tasks = 300
        limited.launcher.limits.cpuWeight = 50
        let l = Set(ServiceUnit.renderService(t, config: limited, configPath: "/etc/cs.json", binary: "/b").split(separator: "\n").map(String.init))
        for want in ["MemoryMax=25769803776", "MemorySwapMax=0", "TasksMax=300", "CPUWeight=50"] { #expect(l.contains(want), "missing \(want)") }
        // Every other line is the checked-in one.
        let changedKeys: Set<String> = ["User", "Group", "SupplementaryGroups", "Environment", "ExecStart", "LimitNOFILE", "LimitNPROC", "ReadWritePaths",
                                        "MemoryMax", "MemorySwapMax", "TasksMax", "CPUWeight"]
        let untouched = t.split(separator: "\n").filter { line in
            guard let eq = line.firstIndex(of: "="), !line.hasPrefix("#") else { return true }
            return !changedKeys.contains(String(line[..<eq]))
        }
        for line in untouched { #expect(s.contains(line), "lost: \(line)") }
        let sock = ServiceUnit.renderSocket(try template("comfy-sandbox.socket"), config: c)
        #expect(sock.contains("ListenStream=127.0.0.2:9999\n"))
    }

    @Test("launcher.instances: a template service, a socket per instance on its port, a drop-in with only its GPUs")
    func rendersInstances() throws {
        var c = try config()
        c.launcher.instances = [Config.Instance(name: "gpu0", gpu: .indexes([0]), port: 8188), Config.Instance(name: "gpu1", gpu: .indexes([1]), port: 8189)]
        c.launcher.instances[1].memory = "40g"
        let units = ServiceUnit.renderInstances(service: try template("comfy-sandbox.service"), socket: try template("comfy-sandbox.socket"),
                                                config: c, configPath: "/etc/cs.json", binary: "/b")
        let byName = Dictionary(uniqueKeysWithValues: units.map { ($0.name, $0.text) })
        #expect(byName["comfy-sandbox@.service"]?.contains("ExecStart=/b launch --instance %i") == true)
        #expect(byName["comfy-sandbox@gpu0.socket"]?.contains("ListenStream=127.0.0.2:8188\n") == true)
        #expect(byName["comfy-sandbox@gpu1.socket"]?.contains("ListenStream=127.0.0.2:8189\n") == true)
        let d1 = try #require(byName["comfy-sandbox@gpu1.service.d/instance.conf"])
        #expect(d1.contains("DeviceAllow=\n") && d1.contains("DeviceAllow=/dev/nvidia1 rw") && !d1.contains("/dev/nvidia0 "), "\(d1)")
        #expect(d1.contains("MemoryMax=42949672960") && d1.contains("CUDA_VISIBLE_DEVICES=1"), "\(d1)")
    }

    @Test("the rendered units pass systemd-analyze verify and score <= 1.5",
          .enabled(if: FileManager.default.isExecutableFile(atPath: analyze), "systemd-analyze is not installed"))
    func renderedPassesGate() throws {
        let c = try config()
        let dir = try World.sh("mktemp -d /tmp/cs-render-XXXXXX").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? World.sh("rm -rf \(dir)") }
        try ServiceUnit.renderService(try template("comfy-sandbox.service"), config: c, configPath: "/etc/cs.json", binary: World.binary)
            .write(toFile: dir + "/comfy-sandbox.service", atomically: true, encoding: .utf8)
        try ServiceUnit.renderSocket(try template("comfy-sandbox.socket"), config: c)
            .write(toFile: dir + "/comfy-sandbox.socket", atomically: true, encoding: .utf8)
        let verify = try HostCommand(Self.analyze, ["verify", dir + "/comfy-sandbox.service", dir + "/comfy-sandbox.socket"]).run()
        #expect(verify.succeeded && verify.stdoutText.isEmpty && verify.stderrText.isEmpty, "verify: \(verify.stdoutText) \(verify.stderrText)")
        let security = try HostCommand(Self.analyze, ["security", "--offline=true", "--threshold=15", dir + "/comfy-sandbox.service"]).run()
        #expect(security.status == 0, "\(security.stdoutText.split(separator: "\n").last ?? "")")
    }
}
