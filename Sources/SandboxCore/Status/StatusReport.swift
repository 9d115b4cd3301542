import FoundationEssentials
import SandboxOS
import SandboxConfig

/// One line of `status`: a section, a key, its value and whether it is as it should be.
public struct StatusItem: Codable, Sendable, Equatable {
    public var section: String
    public var key: String
    public var value: String
    public var ok: Bool
    public init(_ section: String, _ key: String, _ value: String, ok: Bool = true) {
        self.section = section
        self.key = key
        self.value = value
        self.ok = ok
    }
}

/// `status` gathers its sections from each area: provisioning and drift,
/// ComfyUI and the nodes, the launcher and what it enforces, the models manifest.
public enum StatusReport {
    public static func gather(_ config: Config, instance: String? = nil) -> [StatusItem] {
        var launcher: [StatusItem] = []
        let names = instance.map { [$0] } ?? config.instances.map(\.name)
        for name in names {
            guard let view = try? config.forInstance(name) else {
                launcher.append(StatusItem("launcher", "instance \(name)", "not in launcher.instances", ok: false))
                continue
            }
            var items = LauncherStatus.items(view)
            // Several instances: a section each.
            if !config.launcher.instances.isEmpty { for i in items.indices { items[i].section = "instance \(name)" } }
            launcher += items
        }
        return ProvisionStatus.items(config) + InstallStatus.items(config) + launcher + ModelsStatus.items(config)
    }
}
