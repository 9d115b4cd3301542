import FoundationEssentials

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
            "TasksMax": String(config.launcher.limits.tasks),
            "CPUWeight": String(config.launcher.limits.cpuWeight),
        ]
        return replace(template, values)
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
