import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// The `provision` section of `status`: do the accounts exist as configured,
/// is each share's owner, group, setgid mode and default ACL right, and how
/// many changes would `provision` still make.
public enum ProvisionStatus {
    public static func items(_ config: Config) -> [StatusItem] {
        let section = "provision"
        var out: [StatusItem] = []
        let group = AccountLookup.group(config.sharedGroup.name)
        let user = AccountLookup.user(config.sandboxUser.name)
        if let group {
            let missing = config.sharedGroup.members.filter { m in
                !(group.members.contains(m) || AccountLookup.user(m)?.gid == group.gid)
            }
            out.append(StatusItem(section, "group \(group.name)",
                                  "gid \(group.gid)" + (missing.isEmpty ? "" : ", missing members: \(missing.joined(separator: ", "))"),
                                  ok: missing.isEmpty))
        } else {
            out.append(StatusItem(section, "group \(config.sharedGroup.name)", "missing", ok: false))
        }
        if let user {
            var drift: [String] = []
            if let problem = AccountsPlanner.conflict(user) { drift.append(problem) }
            if user.home != config.sandboxUser.home { drift.append("home \(user.home), config says \(config.sandboxUser.home)") }
            if let group, user.gid != group.gid { drift.append("primary group \(SafeFS.groupName(user.gid)), not \(group.name)") }
            out.append(StatusItem(section, "user \(user.name)", "uid \(user.uid)" + (drift.isEmpty ? "" : "; drifted: " + drift.joined(separator: "; ")),
                                  ok: drift.isEmpty))
        } else {
            out.append(StatusItem(section, "user \(config.sandboxUser.name)", "missing", ok: false))
        }
        for share in config.shares {
            out.append(shareItem(share, config: config, gid: group?.gid))
        }
        do {
            let pending = try Provisioner(config: config).plan()
            out.append(StatusItem(section, "pending changes", pending.isEmpty ? "none" : "\(pending.count) (run `comfy-sandbox plan` to see them)",
                                  ok: pending.isEmpty))
        } catch let e as SandboxError {
            out.append(StatusItem(section, "pending changes", "cannot plan: \(e.message)", ok: false))
        } catch {
            out.append(StatusItem(section, "pending changes", "cannot plan: \(error)", ok: false))
        }
        return out
    }

    static func shareItem(_ share: Config.Share, config: Config, gid: gid_t?) -> StatusItem {
        let key = "share \(share.name)"
        guard let st = SafeFS.lstat(share.path) else { return StatusItem("provision", key, "\(share.path) missing", ok: false) }
        guard SafeFS.isDirectory(st) else { return StatusItem("provision", key, "\(share.path) is \(SafeFS.kind(st))", ok: false) }
        let want = TreePlanner.shareMode(share.access)
        var drift: [String] = []
        if let p = AccountLookup.user(config.primaryUser), p.uid != st.st_uid { drift.append("owner \(SafeFS.userName(st.st_uid))") }
        if gid != st.st_gid { drift.append("group \(SafeFS.groupName(st.st_gid))") }
        if st.st_mode & 0o7777 != want {
            drift.append("mode \(SafeFS.octal(st.st_mode))" + (st.st_mode & 0o2000 == 0 ? " (no setgid)" : ""))
        }
        if let fd = try? SafeFS.openDirectory(share.path) {
            if share.access.writable, !(gid.map { ACL.hasRWDefault(fd: fd, gid: $0) } ?? false) { drift.append("default ACL missing or different") }
            if !share.access.writable, ACL.hasDefault(fd: fd) { drift.append("has a default ACL (read-only share)") }
            close(fd)
        }
        let base = "\(share.path) \(share.access.rawValue) \(SafeFS.octal(st.st_mode)) \(SafeFS.userName(st.st_uid)):\(SafeFS.groupName(st.st_gid))"
        return StatusItem("provision", key, drift.isEmpty ? base : base + "; drifted: " + drift.joined(separator: ", ") + " (run `comfy-sandbox provision --only tree`)",
                          ok: drift.isEmpty)
    }
}
