import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS

/// Every area together, from an empty world: the places where one area's
/// result is another's input (the share views inside ComfyUI's checkout,
/// ComfyUI's user directory) are only tested here.
@Suite("full provision", .serialized)
struct FullProvisionTests {
    /// A ComfyUI repository laid out like the real one: models/, input/ and
    /// output/ are tracked directories.
    static let comfyFiles = [
        "main.py": "print('ComfyUI stand-in')\n",
        "models/checkpoints/put_checkpoints_here": "",
        "input/example.txt": "example\n",
        "output/_output_images_will_be_put_here": "",
    ]

    func isLink(_ path: String, to target: String) -> Bool {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) == target
    }

    @Test("views of the shares survive ComfyUI's checkout and its updates; plan is then empty", .requiresRoot)
    func viewsSurviveCheckouts() throws {
        let w = try NodesWorld("full-views")
        try w.world.addPrimaryUser()
        try w.git.makeRepo("ComfyUI", files: Self.comfyFiles)
        try w.git.makeRepo("NodeA")
        var c = w.world.defaultConfig()
        // No extra requirements: the default (requests) would need PyPI; this test is offline.
        c["comfyui"] = ["repo": w.git.url("ComfyUI"), "rev": "main", "path": w.comfyPath, "python": "/usr/bin/python3",
                        "install_requirements": false, "extra_requirements": [String]()]
        c["git"] = ["allowed_protocols": ["git"]]
        c["custom_nodes"] = [w.node("NodeA")]
        try w.world.writeConfig(c)

        let p = try w.comfy(["provision"])
        #expect(p.status == 0, "provision: \(p.stdoutText)\(p.stderrText)")
        let shares = ["models", "input", "output"].map { (w.comfyPath + "/" + $0, "\(w.world.home)/alice/workspace/ai/\($0)") }
        for (view, share) in shares { #expect(isLink(view, to: share), "\(view) is not the link to \(share)") }
        #expect(isLink(w.comfyPath + "/user/default/workflows", to: "\(w.world.home)/alice/workspace/ai/comfy/workflows"))
        #expect(FileManager.default.fileExists(atPath: w.comfyPath + "/main.py"))
        #expect(FileManager.default.fileExists(atPath: w.nodeDir("NodeA") + "/__init__.py"))

        // ComfyUI's user directory is the sandbox user's; the rest is root's.
        let sandboxUID = try #require(w.world.uid("comfyui_sandbox"))
        for dir in [w.comfyPath + "/user", w.comfyPath + "/user/default"] {
            var st = stat()
            #expect(lstat(dir, &st) == 0 && st.st_uid == sandboxUID && st.st_mode & 0o7777 == 0o2770, "\(dir)")
        }
        var top = stat()
        #expect(lstat(w.comfyPath, &top) == 0 && top.st_uid == 0 && top.st_mode & 0o022 == 0)

        // Upstream changes both code and the tracked model directory; the
        // move must update the code and leave the links alone.
        try w.git.commit("ComfyUI", files: ["main.py": "print('v2')\n", "models/vae/put_vae_here": ""])
        let u = try w.comfy(["update-comfyui", "--pull"])
        #expect(u.status == 0, "update-comfyui: \(u.stdoutText)\(u.stderrText)")
        #expect((try? String(contentsOfFile: w.comfyPath + "/main.py", encoding: .utf8)) == "print('v2')\n")
        for (view, share) in shares { #expect(isLink(view, to: share), "\(view) was replaced by the checkout") }
        #expect(!FileManager.default.fileExists(atPath: "\(w.world.home)/alice/workspace/ai/models/vae"),
                "the checkout wrote through the view into the models share")

        let plan = try w.comfy(["plan"])
        #expect(plan.status == 0 && plan.stdoutText.contains("nothing to do"), "plan after provision: \(plan.stdoutText)\(plan.stderrText)")
    }
}
