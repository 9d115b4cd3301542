import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// The `tree` area: each share directory with its owner, group, setgid mode
/// and default ACL; a traverse-only ACL on the primary user's home (and the
/// share's ancestors below it) where the sandbox could not otherwise reach the
/// share; and ComfyUI's view of each share, `comfyui.path/<mount>`, a symlink
/// to the share.
///
/// Existing things are never clobbered: a file where a directory must be, a
/// symlink where a share must be, or a non-empty directory where a view link
/// must be is an error that names the path and says what to do.
public struct TreePlanner: Planner {
    public let area = Area.tree
    public init() {}

    public static func shareMode(_ access: Config.Access) -> mode_t { access.writable ? 0o2775 : 0o2755 }

    public func changes(for config: Config, context: PlanContext) throws -> [Change] {
        var out: [Change] = []
        let primary = AccountLookup.user(config.primaryUser)
        let group = AccountLookup.group(config.sharedGroup.name)
        let sandbox = AccountLookup.user(config.sandboxUser.name)
        let groupName = config.sharedGroup.name
        let primaryName = config.primaryUser

        // First: a view may live inside ComfyUI's user directory
        // (user/default/workflows), which must then already be the sandbox's.
        out += userDirectoryChanges(config, sandbox: sandbox, group: group)
        var traversePlanned = Set<String>()
        for (i, share) in config.shares.enumerated() {
            let key = "shares[\(i)].path"
            let mode = Self.shareMode(share.access)
            let wantACL = share.access.writable ? ACL.rwDefaultDescription(group: groupName) : nil

            // Ancestors: each existing one must be a directory (no symlinks: the
            // walk refuses them); missing ones are created with the share.
            var firstMissing: String? = nil
            var walked = ""
            for comp in SafeFS.components(share.path) {
                walked += "/" + comp
                guard let st = SafeFS.lstat(walked) else { firstMissing = walked; break }
                if SafeFS.isSymlink(st) {
                    throw SandboxError.failure("\(key): \(walked) is a symbolic link; comfy-sandbox never follows links as root",
                                               hint: "set \(key) to the real directory (`realpath \(walked)`) and run again")
                }
                if !SafeFS.isDirectory(st) {
                    throw SandboxError.failure("\(key): \(walked) is \(SafeFS.kind(st)) where a directory must be; not touching it",
                                               hint: "move it away or choose another \(key)")
                }
            }

            let path = share.path
            if firstMissing != nil {
                out.append(Change(.tree, "create directory", path,
                                  to: "\(primaryName):\(groupName) \(SafeFS.octal(mode))" + (wantACL.map { " + \($0)" } ?? "")) {
                    try Self.applyShare(config, share)
                })
            } else if let st = SafeFS.lstat(path) {
                if primary.map({ $0.uid != st.st_uid }) ?? true {
                    out.append(Change(.tree, "set owner", path, from: SafeFS.userName(st.st_uid), to: primaryName) {
                        try Self.applyShare(config, share)
                    })
                }
                if group.map({ $0.gid != st.st_gid }) ?? true {
                    out.append(Change(.tree, "set group", path, from: SafeFS.groupName(st.st_gid), to: groupName) {
                        try Self.applyShare(config, share)
                    })
                }
                if st.st_mode & 0o7777 != mode {
                    out.append(Change(.tree, "set mode", path, from: SafeFS.octal(st.st_mode), to: SafeFS.octal(mode)) {
                        try Self.applyShare(config, share)
                    })
                }
                if let fd = try SafeFS.openDirectory(path) {
                    defer { close(fd) }
                    if share.access.writable {
                        if group.map({ !ACL.hasRWDefault(fd: fd, gid: $0.gid) }) ?? true {
                            out.append(Change(.tree, "set default ACL", path, to: wantACL!) { try Self.applyShare(config, share) })
                        }
                    } else if ACL.hasDefault(fd: fd) {
                        out.append(Change(.tree, "remove default ACL", path, from: "read-only share") { try Self.applyShare(config, share) })
                    }
                }
            }

            // Reachability: below the primary user's home, every directory
            // from the home down to the share's parent must let the group pass.
            if let primary, ConfigValidator.isInside(share.path, [primary.home]) {
                var dirs = [primary.home]
                var p = primary.home
                let rest = share.path.dropFirst(primary.home.count + 1).split(separator: "/").dropLast()
                for c in rest { p += "/" + c; dirs.append(p) }
                for dir in dirs where !traversePlanned.contains(dir) {
                    guard let st = SafeFS.lstat(dir), SafeFS.isDirectory(st) else { continue }
                    if sandbox.map({ $0.uid == st.st_uid }) ?? false { continue }
                    if !ACL.groupCanTraverse(st, fd: nil, path: dir, gid: group?.gid) {
                        traversePlanned.insert(dir)
                        out.append(Change(.tree, "grant traverse", dir, to: "group \(groupName) --x (ACL)") {
                            try Self.applyTraverse(dir, groupName)
                        })
                    }
                }
            }

            // ComfyUI's view of the share.
            out += try viewChanges(config, share, index: i)
        }
        // The Hugging Face cache, read inside (HF_HUB_CACHE): the group must
        // pass the primary user's home and the directories down to it. Its
        // files are read with their own modes (usually 0644): nothing in it
        // is changed.
        if let cache = config.models.hfCache, let primary, ConfigValidator.isInside(cache, [primary.home]) {
            var dirs = [primary.home]
            var p = primary.home
            for c in cache.dropFirst(primary.home.count + 1).split(separator: "/") { p += "/" + c; dirs.append(p) }
            for dir in dirs where !traversePlanned.contains(dir) {
                guard let st = SafeFS.lstat(dir), SafeFS.isDirectory(st), !ACL.groupCanTraverse(st, fd: nil, path: dir, gid: group?.gid) else { continue }
                traversePlanned.insert(dir)
                out.append(Change(.tree, "grant traverse", dir, to: "group \(groupName) --x (ACL), for models.hf_cache") {
                    try Self.applyTraverse(dir, groupName)
                })
            }
        }
        // Several changes of one share run the same idempotent apply; keep
        // each plan line but let the apply after the first find nothing to do.
        return out
    }

    /// The symlink comfyui.path/<mount> -> share path, and its root-owned parents.
    func viewChanges(_ config: Config, _ share: Config.Share, index i: Int) throws -> [Change] {
        let link = config.comfyui.path + "/" + share.mount
        let target = share.path
        guard let st = SafeFS.lstat(link) else {
            return [Change(.tree, "link", link, to: target) { try Self.applyView(config, share) }]
        }
        if SafeFS.isSymlink(st) {
            let current = (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) ?? ""
            if current == target { return [] }
            return [Change(.tree, "relink", link, from: current, to: target) { try Self.applyView(config, share) }]
        }
        if SafeFS.isDirectory(st), (try? FileManager.default.contentsOfDirectory(atPath: link))?.isEmpty == true {
            return [Change(.tree, "replace empty directory with link", link, to: target) { try Self.applyView(config, share) }]
        }
        throw SandboxError.failure("shares[\(i)].mount: \(link) is \(SafeFS.kind(st)) where the link to the share \(share.name) must be; not touching it",
                                   hint: "move its contents into \(target), remove it, and run again")
    }

    /// ComfyUI's user directory (`--user-directory comfyui.path/user`, see
    /// Launcher.comfyArguments) and its `default/` profile: ComfyUI writes its
    /// settings and user data there, so they belong to the sandbox user (group
    /// shared, 2770: the primary user can read and edit them), unlike the rest
    /// of comfyui.path. Its `default/workflows` is still a view link root makes.
    public static let userDirectoryMode: mode_t = 0o2770

    /// Also `web/extensions`: nodes such as ComfyUI-Custom-Scripts make their
    /// folder there at import (older ComfyUI served extension scripts from
    /// it); it is the sandbox's so they can, while `web/` and the rest of
    /// ComfyUI's code stay root's. The checkout leaves it out (sparse), so
    /// git never writes there either.
    static func userDirectories(_ config: Config) -> [String] {
        [config.comfyui.path + "/user", config.comfyui.path + "/user/default", config.comfyui.path + "/web/extensions"]
    }

    func userDirectoryChanges(_ config: Config, sandbox: AccountLookup.User?, group: AccountLookup.Group?) -> [Change] {
        let owner = "\(config.sandboxUser.name):\(config.sharedGroup.name) \(SafeFS.octal(Self.userDirectoryMode))"
        var out: [Change] = []
        for dir in Self.userDirectories(config) {
            let what = dir.hasSuffix("/web/extensions") ? "ComfyUI web/extensions (nodes add their folder there)" : "ComfyUI user directory"
            guard let st = SafeFS.lstat(dir) else {
                out.append(Change(.tree, "create \(what)", dir, to: owner) { try Self.applyUserDirectories(config) })
                continue
            }
            let right = SafeFS.isDirectory(st) && st.st_uid == sandbox?.uid && st.st_gid == group?.gid
                && st.st_mode & 0o7777 == Self.userDirectoryMode
            if !right {
                out.append(Change(.tree, "set \(what)", dir,
                                  from: "\(SafeFS.userName(st.st_uid)):\(SafeFS.groupName(st.st_gid)) \(SafeFS.octal(st.st_mode))",
                                  to: owner) { try Self.applyUserDirectories(config) })
            }
        }
        return out
    }

    /// Walks by fd without following links (the sandbox owns these
    /// directories and may have put a link where one must be: then the walk
    /// fails, it never chowns through it).
    static func applyUserDirectories(_ config: Config) throws {
        let id = try AccountLookup.sandboxIdentity(config)
        for dir in userDirectories(config) {
            let fd = try SafeFS.ensureDirectory(dir) { p in
                userDirectories(config).contains(p) ? (id.user.uid, id.sharedGroup.gid, userDirectoryMode) : (0, 0, 0o755)
            }
            defer { close(fd) }
            try SafeFS.chown(fd, uid: id.user.uid, gid: id.sharedGroup.gid, display: dir)
            try SafeFS.chmod(fd, userDirectoryMode, display: dir)
        }
    }

    // MARK: apply

    /// Creates or fixes one share directory: owner, group, mode, default ACL,
    /// all on one fd opened without following symlinks.
    static func applyShare(_ config: Config, _ share: Config.Share) throws {
        guard let primary = AccountLookup.user(config.primaryUser), let group = AccountLookup.group(config.sharedGroup.name) else {
            throw SandboxError.failure("primary_user \(config.primaryUser) or the group \(config.sharedGroup.name) does not exist",
                                       hint: "run `comfy-sandbox provision` (accounts come first)")
        }
        let home = primary.home
        // Missing ancestors inside the primary user's home are theirs, 0711:
        // passable by everyone, listable only by them. Elsewhere: root, 0755.
        let fd = try SafeFS.ensureDirectory(share.path) { p in
            if p == share.path { return (primary.uid, group.gid, shareMode(share.access)) }
            return ConfigValidator.isInside(p, [home]) ? (primary.uid, primary.gid, 0o711) : (0, 0, 0o755)
        }
        defer { close(fd) }
        guard let st = SafeFS.fstat(fd) else { throw SandboxError.failure("cannot stat \(share.path): \(Errno.current)") }
        if st.st_uid != primary.uid || st.st_gid != group.gid {
            try SafeFS.chown(fd, uid: primary.uid, gid: group.gid, display: share.path)
        }
        try SafeFS.chmod(fd, shareMode(share.access), display: share.path)
        if share.access.writable {
            if !ACL.hasRWDefault(fd: fd, gid: group.gid) { try ACL.setRWDefault(fd: fd, gid: group.gid, display: share.path) }
        } else if ACL.hasDefault(fd: fd) {
            try ACL.removeDefault(fd: fd, display: share.path)
        }
    }

    static func applyTraverse(_ dir: String, _ groupName: String) throws {
        guard let group = AccountLookup.group(groupName) else {
            throw SandboxError.failure("the group \(groupName) does not exist", hint: "run `comfy-sandbox provision`")
        }
        guard let fd = try SafeFS.openDirectory(dir) else { throw SandboxError.failure("\(dir) disappeared") }
        defer { close(fd) }
        guard let st = SafeFS.fstat(fd), !ACL.groupCanTraverse(st, fd: fd, path: dir, gid: group.gid) else { return }
        try ACL.grantTraverse(fd: fd, gid: group.gid, display: dir)
    }

    /// Creates comfyui.path/<mount> as a symlink to the share. Parents are
    /// root-owned 0755 (installed code the sandbox must not write). A wrong
    /// link is replaced atomically (symlink to a temp name, rename over).
    static func applyView(_ config: Config, _ share: Config.Share) throws {
        let link = config.comfyui.path + "/" + share.mount
        let (parent, name) = SafeFS.split(link)
        let pfd = try SafeFS.ensureDirectory(parent) { _ in (0, 0, 0o755) }
        defer { close(pfd) }
        var st = stat()
        if fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            if SafeFS.isSymlink(st) {
                let tmp = ".\(name).link.\(getpid())"
                _ = unlinkat(pfd, tmp, 0)
                guard symlinkat(share.path, pfd, tmp) == 0 else { throw SandboxError.failure("cannot create a link in \(parent): \(Errno.current)") }
                guard renameat(pfd, tmp, pfd, name) == 0 else {
                    let e = Errno.current
                    _ = unlinkat(pfd, tmp, 0)
                    throw SandboxError.failure("cannot replace \(link): \(e)")
                }
                return
            }
            if SafeFS.isDirectory(st) {
                // Only an empty directory is replaced (rmdir fails otherwise).
                guard unlinkat(pfd, name, AT_REMOVEDIR) == 0 else {
                    throw SandboxError.failure("\(link) is a directory that is not empty; not touching it: \(Errno.current)",
                                               hint: "move its contents into \(share.path), remove it, and run again")
                }
            } else {
                throw SandboxError.failure("\(link) is \(SafeFS.kind(st)); not touching it", hint: "move it away and run again")
            }
        }
        guard symlinkat(share.path, pfd, name) == 0 else {
            throw SandboxError.failure("cannot create the link \(link): \(Errno.current)")
        }
    }
}
