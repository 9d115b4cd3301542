import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// `uninstall`: removes, and says as it goes, the systemd unit, a running
/// launcher, stale RAM temps, the traverse ACL entries provision added, the
/// sandbox user and its home, the shared group (only when provision made it
/// and it has no other members; the shares handed back to the primary
/// user's group first), comfyui.path, its Python environment, the installer
/// cache and state_dir. The shares stay unless `purgeData`. Holds the state lock.
public struct Uninstaller {
    public var config: Config
    public var purgeData: Bool

    public init(config: Config, purgeData: Bool) {
        self.config = config
        self.purgeData = purgeData
    }

    public static let unit = "/etc/systemd/system/comfy-sandbox.service"

    public func run() throws {
        let lock = try StateLock.acquire(stateDir: config.stateDir, command: "uninstall", onWait: { printError($0) })
        defer { lock.release() }
        let record = AccountsRecord.load(stateDir: config.stateDir)

        if SafeFS.lstat(Self.unit) != nil {
            print("removing the systemd unit \(Self.unit)")
            if FileManager.default.fileExists(atPath: "/run/systemd/system") {
                _ = try? HostCommand("/usr/bin/systemctl", ["disable", "--now", "comfy-sandbox.service"]).run()
            }
            if unlink(Self.unit) != 0 { throw SandboxError.failure("cannot remove \(Self.unit): \(Errno.current)") }
            if FileManager.default.fileExists(atPath: "/run/systemd/system") {
                _ = try? HostCommand("/usr/bin/systemctl", ["daemon-reload"]).run()
            }
        }

        // A launcher started without systemd (`comfy-sandbox start`) runs as
        // root with ComfyUI as the sandbox user: userdel would refuse while it
        // runs, and its RAM temp would outlive the account.
        switch LauncherPidFile.stop(config, timeout: 20) {
        case .notRunning: break
        case .stopped(let pid): print("stopped the running launcher (pid \(pid))")
        case .killedComfyUI(let pid): print("stopped the running launcher (pid \(pid)); ComfyUI ignored SIGTERM and was killed")
        case .killed(let pid): print("killed the running launcher (pid \(pid)): it did not stop")
        }

        let group = AccountLookup.group(config.sharedGroup.name)
        // Traverse ACL entries provision may have added on the primary user's home and below.
        if let group, let primary = AccountLookup.user(config.primaryUser) {
            var dirs = Set<String>()
            for share in config.shares where ConfigValidator.isInside(share.path, [primary.home]) {
                var p = primary.home
                dirs.insert(p)
                for c in share.path.dropFirst(primary.home.count + 1).split(separator: "/").dropLast() { p += "/" + c; dirs.insert(p) }
            }
            if let cache = config.models.hfCache, ConfigValidator.isInside(cache, [primary.home]) {
                var p = primary.home
                dirs.insert(p)
                for c in cache.dropFirst(primary.home.count + 1).split(separator: "/") { p += "/" + c; dirs.insert(p) }
            }
            for d in dirs.sorted() {
                // By descriptor, the last component not followed (as setfacl --physical).
                guard let fd = try? SafeFS.openNoFollow(d, directory: true) else { continue }
                defer { close(fd) }
                if ACL.dropGroup(fd: fd, gid: group.gid, directory: true) == true {
                    print("removing the traverse ACL for \(group.name) on \(d)")
                }
            }
        }

        if let user = AccountLookup.user(config.sandboxUser.name) {
            if let problem = AccountsPlanner.conflict(user) {
                throw SandboxError.failure("the user \(user.name) \(problem); not removing an account comfy-sandbox would not have made",
                                           hint: "remove it yourself if it is a leftover (`userdel \(user.name)`)")
            }
            // RAM temps of this user that no live session holds (left by a
            // launcher that was killed): nothing else would remove them.
            for stale in Launcher.sweepRAMTemps(user: user) { print("removing \(stale)") }
            print("removing the user \(user.name)")
            try HostCommand("/usr/sbin/userdel", [user.name]).check("removing the user \(user.name)")
        }
        try remove(config.sandboxUser.home, "the sandbox home")

        if let group = AccountLookup.group(config.sharedGroup.name) {
            let allowed = Set(config.sharedGroup.members + [config.sandboxUser.name])
            let others = group.members.filter { !allowed.contains($0) }
            if !record.createdGroup {
                print("keeping the group \(group.name): comfy-sandbox did not create it")
            } else if !others.isEmpty {
                print("keeping the group \(group.name): it has other members (\(others.joined(separator: ", ")))")
            } else {
                if !purgeData { try handBack(config, from: group) }
                print("removing the group \(group.name)")
                try HostCommand("/usr/sbin/groupdel", [group.name]).check("removing the group \(group.name)")
            }
        }

        try remove(config.comfyui.path, "ComfyUI (comfyui.path)")
        try remove(config.venvPath, "the Python environment")
        try remove(PythonEnv(config).cacheParent, "the installer cache")
        if purgeData {
            for share in config.shares { try remove(share.path, "the share \(share.name) and its data") }
        } else {
            for share in config.shares where SafeFS.lstat(share.path) != nil { print("keeping the share \(share.name) (\(share.path))") }
        }
        try remove(config.stateDir, "state_dir")
    }

    /// Gives the shares back to the primary user's own group before the
    /// shared group goes: a gid left on files, setgid directories and ACL
    /// entries would pass to whatever group is created next with that number.
    func handBack(_ config: Config, from group: AccountLookup.Group) throws {
        guard let primary = AccountLookup.user(config.primaryUser), primary.gid != group.gid else { return }
        for share in config.shares where SafeFS.lstat(share.path) != nil {
            var fixer = PermissionFixer(share: share, gid: primary.gid)
            fixer.policy = .handBack(from: group.gid)
            let report = try fixer.run()
            print("handing the share \(share.name) back to group \(SafeFS.groupName(primary.gid)): "
                  + "\(report.groupChanged) regrouped, \(report.aclChanged) ACLs without \(group.name)")
            for skip in report.skipped { print("  skipped \(skip.path): \(skip.reason)") }
        }
    }

    /// Removes the tree at `path` with the one walker (`SafeFS.removeTree`):
    /// by descriptor, never following a symlink the sandbox planted, never
    /// entering a mount inside; what could not go is named.
    func remove(_ path: String, _ what: String) throws {
        guard SafeFS.lstat(path) != nil else { return }
        print("removing \(what): \(path)")
        let report = SafeFS.removeTree(path)
        guard report.complete else {
            let shown = report.left.prefix(5).map { "\($0.path): \($0.why)" }.joined(separator: "; ")
            throw SandboxError.failure("could not remove all of \(what) (\(path)): \(report.left.count) entr\(report.left.count == 1 ? "y" : "ies") left: \(shown)",
                                       hint: "a mount inside is never entered: unmount it, then run uninstall again")
        }
    }
}
