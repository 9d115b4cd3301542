import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// The `comfyui` and `nodes` sections of `status`: which commit ComfyUI and
/// each node are on (from their root-owned records), each node's status,
/// whether the sandbox may write it, and whether its requirements are in the
/// sealed install the venv points at.
public enum InstallStatus {
    public static func items(_ config: Config) -> [StatusItem] {
        let env = PythonEnv(config)
        let settled = env.hasVenv && env.requirementsSettled()
        var out: [StatusItem] = []
        out.append(recordItem("comfyui", "commit", CheckoutSpec.comfyui(config)))
        let venv = !env.hasVenv ? StatusItem("comfyui", "python", "no venv at \(env.venv) (run `comfy-sandbox provision`)", ok: false)
            : StatusItem("comfyui", "python", env.venv)
        out.append(venv)
        let comfyReqs = requirementState(config.comfyui.installRequirements, file: config.comfyui.path + "/requirements.txt",
                                         key: "comfyui.install_requirements", settled: settled)
        out.append(StatusItem("comfyui", "requirements", comfyReqs.text, ok: comfyReqs.ok))
        if config.customNodes.isEmpty {
            out.append(StatusItem("nodes", "configured", "none (custom_nodes is empty)"))
        }
        let leftOut = Dictionary(env.currentRecord()?.leftOut.map { ($0.node, $0) } ?? [], uniquingKeysWith: { a, _ in a })
        for (i, n) in config.customNodes.enumerated() {
            let spec = CheckoutSpec.node(n, config)
            var item = recordItem("nodes", n.name, spec)
            var facts: [String] = []
            facts.append(n.enabled ? "enabled" : "disabled")
            facts.append(n.writable ? "writable by \(config.sharedGroup.name)" : "read-only")
            let reqs = requirementState(n.enabled && n.installRequirements, file: spec.dir + "/requirements.txt",
                                        key: "custom_nodes[\(i)].install_requirements", settled: settled)
            if let l = leftOut[n.name] {
                facts.append("requirements left out (could not be installed: \(l.error.last ?? "?")); "
                             + (l.policy == Config.RequirementsFailure.disable.rawValue ? "not loaded" : "loaded without them"))
                item.ok = false
            } else {
                facts.append("requirements " + reqs.text)
            }
            item.value += "; " + facts.joined(separator: ", ")
            item.ok = item.ok && reqs.ok
            out.append(item)
        }
        return out
    }

    /// "a1b2c3d4e5f6 (installed 2026-11-29T10:00:00Z)" from the record, or why there is none.
    static func recordItem(_ section: String, _ key: String, _ spec: CheckoutSpec) -> StatusItem {
        switch RecordStore.load(spec.recordPath, name: spec.name) {
        case .missing:
            return StatusItem(section, key, "not installed (no record at \(spec.recordPath); run `comfy-sandbox provision`)", ok: false)
        case .corrupt(let why):
            return StatusItem(section, key, "record not trusted: \(why)", ok: false)
        case .record(let r):
            let ok = r.status != .failed
            return StatusItem(section, key, "\(r.currentSHA.prefix(12)) \(r.status.rawValue) \(r.updatedAt)", ok: ok)
        }
    }

    /// What `status` says of one requirements file; not ok only when it
    /// should be installed and is not.
    static func requirementState(_ wanted: Bool, file: String, key: String, settled: Bool) -> (text: String, ok: Bool) {
        guard wanted else { return ("not installed (\(key) is false)", true) }
        guard SafeFS.lstat(file) != nil else { return ("none (no requirements.txt)", true) }
        return settled ? ("installed", true) : ("NOT installed (run `comfy-sandbox provision`)", false)
    }
}
