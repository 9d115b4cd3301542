import FoundationEssentials
import SandboxCore
import SandboxOS
import SandboxConfig

/// The systemd units, rendered for a config. The checked-in files in
/// `systemd/` carry the contract's defaults and are what the unit gate
/// (`systemd-analyze verify` and `security`) checks; rendering replaces only
/// the lines that depend on the config, key by key, so everything that makes
/// the score stays exactly as checked.
public enum ServiceUnit {
    /// The service: who it runs as, where it may write, its limits, its config.
    public static func renderService(_ template: String, config: Config, configPath: String, binary: String) -> String {
        var writable = [config.sandboxUser.home, config.comfyui.path + "/user", "/dev/shm"]
        writable += config.shares.filter(\.access.writable).map(\.path)
        writable += config.customNodes.filter(\.writable).map { config.customNodesDir + "/" + $0.name }
        let values: [String: String] = [
            "ExecStart": "\(binary) launch",
            "Environment": "COMFY_SANDBOX_CONFIG=\(configPath)",
            "User": config.sandboxUser.name,
            "Group": config.sharedGroup.name,
            "SupplementaryGroups": config.sharedGroup.name,
            "ReadWritePaths": writable.map(quote).joined(separator: " "),
            "LimitNOFILE": String(config.launcher.limits.nofile),
            "LimitNPROC": String(config.launcher.limits.nproc),
            "MemoryMax": config.launcher.limits.memory.flatMap(ByteSize.parse).map(String.init) ?? "infinity",
            // A memory ceiling that swap could walk around is none: with one, no swap.
            "MemorySwapMax": config.launcher.limits.memory == nil ? "infinity" : "0",
            // No tasks limit of its own: as many as LimitNPROC lets the
            // sandbox user have, as without systemd.
            "TasksMax": String(config.launcher.limits.tasks ?? config.launcher.limits.nproc),
            "CPUWeight": String(config.launcher.limits.cpuWeight),
        ]
        return replace(template, values)
    }

    /// With launcher.instances: the service as a template,
    /// `comfy-sandbox@.service` (`launch --instance %i`), one socket per
    /// instance, `comfy-sandbox@NAME.socket`, on its port, and a drop-in per
    /// instance with its GPUs' device nodes only (another instance's
    /// /dev/nvidiaN is closed to it) and its memory.
    public static func renderInstances(service template: String, socket socketTemplate: String, config: Config, configPath: String,
                                       binary: String) -> [(name: String, text: String)] {
        var out: [(String, String)] = []
        var service = renderService(template, config: config, configPath: configPath, binary: binary)
        service = replace(service, ["ExecStart": "\(binary) launch --instance %i"])
        service = service.replacingFirst("Description=ComfyUI", with: "Description=ComfyUI instance %i")
        out.append(("comfy-sandbox@.service", service))
        for inst in config.launcher.instances {
            let view = (try? config.forInstance(inst.name)) ?? config
            out.append(("comfy-sandbox@\(inst.name).socket", renderSocket(socketTemplate, config: view)))
            var dropIn = "# comfy-sandbox: instance \(inst.name) of launcher.instances\n[Service]\n"
            dropIn += "MemoryMax=\(view.launcher.limits.memory.flatMap(ByteSize.parse).map(String.init) ?? "infinity")\n"
            dropIn += "MemorySwapMax=\(view.launcher.limits.memory == nil ? "infinity" : "0")\n"
            // An empty DeviceAllow= resets the template's list: this
            // instance's GPUs and the shared nodes, nothing else.
            dropIn += "DeviceAllow=\n"
            switch inst.gpu {
            case .none: break
            case .auto: dropIn += "DeviceAllow=char-nvidia-frontend rw\n"
            case .indexes(let list): for i in list { dropIn += "DeviceAllow=/dev/nvidia\(i) rw\n" }
            }
            if inst.gpu != .none {
                for node in ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"] { dropIn += "DeviceAllow=\(node) rw\n" }
                dropIn += "DeviceAllow=char-nvidia-uvm rw\nDeviceAllow=char-nvidia-caps rw\n"
                if case .indexes(let list) = inst.gpu { dropIn += "Environment=CUDA_VISIBLE_DEVICES=\(list.map(String.init).joined(separator: ","))\n" }
            }
            out.append(("comfy-sandbox@\(inst.name).service.d/instance.conf", dropIn))
        }
        return out
    }

    /// The socket: the host address the UI is served on.
    public static func renderSocket(_ template: String, config: Config) -> String {
        let host = config.launcher.listen.contains(":") ? "[\(config.launcher.listen)]" : config.launcher.listen
        return replace(template, ["ListenStream": "\(host):\(config.launcher.port)"])
    }

    /// Replaces the value of each `Key=` line named in `values` (the first of
    /// each key; later ones of the same key are dropped, so a list setting
    /// is written once, whole).
    static func replace(_ template: String, _ values: [String: String]) -> String {
        var seen = Set<String>()
        var out: [Substring] = []
        for line in template.split(separator: "\n", omittingEmptySubsequences: false) {
            guard let eq = line.firstIndex(of: "="), !line.hasPrefix("#") else { out.append(line); continue }
            let key = String(line[..<eq])
            guard let value = values[key] else { out.append(line); continue }
            if seen.insert(key).inserted { out.append(Substring("\(key)=\(value)")) }
        }
        return out.joined(separator: "\n")
    }

    /// systemd's quoting for a path in a space-separated list.
    static func quote(_ path: String) -> String {
        path.contains(where: { $0 == " " || $0 == "\"" || $0 == "\\" })
            ? "\"" + path.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
            : path
    }
}

extension String {
    /// The first occurrence of `target` replaced (bytewise, no _StringProcessing).
    func replacingFirst(_ target: String, with replacement: String) -> String {
        let hay = Array(utf8), needle = Array(target.utf8)
        guard !needle.isEmpty, hay.count >= needle.count else { return self }
        for i in 0...(hay.count - needle.count) where Array(hay[i..<(i + needle.count)]) == needle {
            return String(decoding: hay[..<i] + Array(replacement.utf8) + hay[(i + needle.count)...], as: UTF8.self)
        }
        return self
    }
}

