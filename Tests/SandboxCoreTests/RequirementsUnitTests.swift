import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS
@testable import SandboxConfig

@Suite struct RequirementLockTests {
    @Test("a uv lock keeps its requirement, --hash and comment lines")
    func uvLock() throws {
        let text = """
        alpha==1.0 \\
            --hash=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
            # via -r requirements.txt
        beta==2.0 ; python_version >= "3.8" \\
            --hash=sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
        """
        let p = try RequirementLock.parse(text)
        #expect(p.packages == 2)
        #expect(p.fullyHashed)
        #expect(p.text.hasSuffix("\n"))
    }

    @Test("a lock written by the sandbox may not smuggle options or other files in", arguments: [
        "-r /etc/shadow", "-e git+https://x/y", "--index-url https://evil.example/simple", "--extra-index-url=http://x",
        "-c /root/constraints.txt", "alpha>=1.0", "--hash=sha256:zz", "alpha==1.0\u{1b}]52;c;eA==\u{07}",
        "--hash=sha256:0123",  // a hash before any package
    ])
    func hostile(_ line: String) {
        #expect(throws: SandboxError.self) { try RequirementLock.parse(line) }
    }

    @Test("a lock without hashes is not fully hashed (no --require-hashes then)")
    func unhashed() throws {
        let p = try RequirementLock.parse("alpha==1.0\nbeta @ file:///srv/wheels/beta-1.0-py3-none-any.whl\n")
        #expect(p.packages == 2)
        #expect(!p.fullyHashed)
    }

    @Test("pip's --report becomes a lock: name==version with the index's sha256, direct references as name @ url")
    func pipReport() throws {
        let report = """
        {"version": "1", "install": [
          {"metadata": {"name": "Zeta", "version": "3.1"}, "download_info": {"url": "https://files/z.whl", "archive_info": {"hashes": {"sha256": "ab12"}}}},
          {"metadata": {"name": "alpha", "version": "1.0"}, "is_direct": true, "download_info": {"url": "https://github.com/o/alpha", "vcs_info": {"vcs": "git", "commit_id": "c0ffee"}}}
        ]}
        """
        let lock = try RequirementLock.fromPipReport(Data(report.utf8))
        #expect(lock == "alpha @ git+https://github.com/o/alpha@c0ffee\nzeta==3.1 \\\n    --hash=sha256:ab12\n")
    }
}

@Suite struct PreferredVersionsTests {
    @Test("a preferences file gives only its name==version pins; options, URLs, ranges and markers are dropped")
    func pins() {
        let text = "# Manager snapshot\ntorch==2.5.1+cu124\n--index-url http://evil\n-r /etc/shadow\nnumpy>=1.26\nfoo @ git+https://x/y\n"
            + "Pillow==10.4.0\nbar==1.0; python_version<'3'\nbaz==1==2\n  spaced_name==0.1  \nwith space==1\n"
        #expect(RequirementLock.pins(text) == ["torch==2.5.1+cu124", "Pillow==10.4.0", "spaced_name==0.1"])
    }

    @Test("the lock in use wins; pins add only packages it does not hold, by normalized name")
    func preferences() {
        let lock = "numpy==1.26.4 \\\n    --hash=sha256:00\nPillow==11.0.0\n"
        let merged = RequirementLock.preferences(lock: lock, pins: ["pillow==10.4.0", "NumPy==1.24.0", "safetensors==0.4.5", "Safe_Tensors.Extra==1"])
        #expect(merged == lock + "safetensors==0.4.5\nSafe_Tensors.Extra==1\n")
        #expect(RequirementLock.preferences(lock: nil, pins: []) == nil)
        #expect(RequirementLock.preferences(lock: nil, pins: ["a==1"]) == "a==1\n")
        #expect(RequirementLock.preferences(lock: lock, pins: []) == lock)
    }
}

@Suite struct NodeEnvironmentTests {
    static let config: Config = {
        var c = Config(primaryUser: "alice")
        var aux = Config.CustomNode(name: "comfyui_controlnet_aux", repo: "https://github.com/Fannovel16/comfyui_controlnet_aux.git")
        aux.enabled = true
        var own = Config.CustomNode(name: "mine", repo: "https://example.org/mine")
        own.env = ["MY_CACHE": "$NODE_DATA/cache", "AUX_ANNOTATOR_CKPTS_PATH": "/srv/ckpts"]
        c.customNodes = [aux, own]
        return c
    }()

    @Test("known nodes get their variable pointed at their data directory; a node's env wins and expands $NODE_DATA")
    func variables() {
        let c = Self.config
        #expect(NodeEnvironment.variables(c, c.customNodes[0]) == ["AUX_ANNOTATOR_CKPTS_PATH": "/home/comfyui_sandbox/node-data/comfyui_controlnet_aux/ckpts"])
        #expect(NodeEnvironment.variables(c, c.customNodes[1])["MY_CACHE"] == "/home/comfyui_sandbox/node-data/mine/cache")
        // The later node's value wins for ComfyUI's one process.
        #expect(NodeEnvironment.variables(c)["AUX_ANNOTATOR_CKPTS_PATH"] == "/srv/ckpts")
    }

    @Test("the launcher's own variables win over any node's")
    func launcherWins() {
        var c = Self.config
        c.customNodes[1].env["TRITON_CACHE_DIR"] = "/tmp/elsewhere"
        let env = Launcher.environment(c, home: "/h", temp: "/t", gpu: GPUSelection(indexes: [], deviceNodes: [], cudaVisibleDevices: "", note: nil))
        #expect(env["TRITON_CACHE_DIR"] == "/h/.cache/triton")
        #expect(env["MY_CACHE"] == "/home/comfyui_sandbox/node-data/mine/cache")
    }

    @Test("a node cannot set the launcher's variables, the loader's or Python's", arguments: [
        "PATH", "HOME", "LD_PRELOAD", "PYTHONPATH", "PYTHONSTARTUP", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES", "1BAD", "A-B", "",
    ])
    func reserved(_ name: String) {
        var c = Self.config
        c.customNodes[1].env = [name: "x"]
        #expect(ConfigValidator.problems(in: c).contains { $0.contains("custom_nodes[1].env") }, "\(name)")
    }

    @Test("extra_requirements are requirements, never installer options", arguments: ["-r /etc/shadow", "--index-url=http://x", "", "a\nb"])
    func extraRequirements(_ line: String) {
        var c = Self.config
        c.comfyui.extraRequirements = [line]
        #expect(ConfigValidator.problems(in: c).contains { $0.contains("comfyui.extra_requirements[0]") })
    }
}
