import FoundationEssentials
import SandboxOS
import SandboxConfig

/// The `models` section of `status`: is there a manifest, how many files it
/// covers, when it was recorded, and when verify-models last ran and with
/// what result (state_dir/models.verify.json).
public enum ModelsStatus {
    public static func items(_ config: Config) -> [StatusItem] {
        let section = "models"
        var items: [StatusItem] = []
        let path = Manifest.manifestPath(stateDir: config.stateDir)
        guard FileManager.default.fileExists(atPath: path) else {
            items.append(StatusItem(section, "manifest", "none (run `comfy-sandbox record-models`)",
                                    ok: config.models.links.isEmpty))
            return items
        }
        do {
            let m = try Manifest.load(stateDir: config.stateDir)
            items.append(StatusItem(section, "manifest", path))
            items.append(StatusItem(section, "files", "\(m.files.count) (\(ByteProgress.size(m.files.reduce(0) { $0 + $1.size })))"))
            items.append(StatusItem(section, "recorded", m.createdAt))
        } catch {
            items.append(StatusItem(section, "manifest", "\(path): \(error)", ok: false))
        }
        if let v = ModelsVerifyRecord.load(stateDir: config.stateDir) {
            let what = v.ok ? "clean" : "\(v.added) added, \(v.missing) missing, \(v.changed) changed, \(v.unreadable) unreadable"
            items.append(StatusItem(section, "last verified", "\(v.verifiedAt): \(what)\(v.rehash ? " (full rehash)" : "")", ok: v.ok))
        } else {
            items.append(StatusItem(section, "last verified", "never (run `comfy-sandbox verify-models`)"))
        }
        return items
    }
}
