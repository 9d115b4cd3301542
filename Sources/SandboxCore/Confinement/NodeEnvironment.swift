import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// What nodes that write get: a data directory of their own in the sandbox
/// home (`<home>/node-data/<name>`, outside their sealed code), the
/// variables known nodes read to find such a place, and each node's own
/// `env` (`$NODE_DATA` in a value is its data directory). ComfyUI is one
/// process, so every node's variables are set for all of it; a node's own
/// `env` wins over the known defaults, and the launcher's variables cannot
/// be set by a node at all (ConfigValidator.reservedEnv).
public enum NodeEnvironment {
    /// Variables known nodes read, by repository name (lowercased, no .git):
    /// where they otherwise write into their own (read-only) folder.
    public static let known: [String: [String: String]] = [
        // Annotator weights, downloaded on first use into its own ckpts/.
        "comfyui_controlnet_aux": ["AUX_ANNOTATOR_CKPTS_PATH": "$NODE_DATA/ckpts"],
        // was_suite_settings.json and was_history.json, next to its code.
        "was-node-suite-comfyui": ["WAS_CONFIG_DIR": "$NODE_DATA"],
    ]

    public static func dataDirectory(_ config: Config, _ node: Config.CustomNode) -> String {
        config.sandboxUser.home + "/node-data/" + node.name
    }

    static func repositoryName(_ url: String) -> String {
        var name = Paths.lastComponent(url.hasSuffix("/") ? String(url.dropLast()) : url)
        if name.hasSuffix(".git") { name.removeLast(4) }
        return name.lowercased()
    }

    /// The variables of one node: known defaults, then its `env`, with $NODE_DATA expanded.
    public static func variables(_ config: Config, _ node: Config.CustomNode) -> [String: String] {
        let data = dataDirectory(config, node)
        var out = known[repositoryName(node.repo)] ?? known[node.name.lowercased()] ?? [:]
        for (k, v) in node.env { out[k] = v }
        return out.mapValues { expand($0, data: data) }
    }

    /// `$NODE_DATA` replaced by `data` (bytewise: no _StringProcessing on the launcher's path).
    static func expand(_ value: String, data: String) -> String {
        let needle = Array("$NODE_DATA".utf8)
        let bytes = Array(value.utf8)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == needle[0], i + needle.count <= bytes.count, Array(bytes[i..<(i + needle.count)]) == needle {
                out += data.utf8
                i += needle.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Every enabled node's variables, in config order (a later node's value wins).
    public static func variables(_ config: Config) -> [String: String] {
        var out: [String: String] = [:]
        for n in config.customNodes where n.enabled {
            for (k, v) in variables(config, n) { out[k] = v }
        }
        return out
    }

    /// Makes each enabled node's data directory (the sandbox's, 0700) under
    /// the sandbox home, which must already be the sandbox user's.
    public static func prepareDataDirectories(_ config: Config, uid: uid_t, gid: gid_t) throws {
        let enabled = config.customNodes.filter(\.enabled)
        guard !enabled.isEmpty else { return }
        try FileTree.ensureOwnedDirectory(config.sandboxUser.home + "/node-data", uid: uid, gid: gid, mode: 0o700)
        for n in enabled {
            try FileTree.ensureOwnedDirectory(dataDirectory(config, n), uid: uid, gid: gid, mode: 0o700)
        }
    }
}
