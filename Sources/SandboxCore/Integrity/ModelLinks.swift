import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// Links `models.links[]` from the Hugging Face cache into the models share.
///
/// A hard link to the blob when the cache and the share are on one file
/// system: the sandbox then reads the model through the share alone and needs
/// no access to the cache. Otherwise a symlink to the blob's real path, and
/// the shared group gets an ACL to traverse the cache directories on the way
/// and read the blob (see `CacheAccess`).
///
/// The models share belongs to the primary user, who can rename things in it
/// while root works there: every directory is opened relative to its parent
/// with O_NOFOLLOW, and links are made with linkat/symlinkat relative to that
/// fd. An existing entry at the target that is not this blob is never
/// replaced.
public struct ModelLinksPlanner: Planner {
    public let area: Area = .models
    public init() {}

    public func changes(for config: Config, context: PlanContext) throws -> [Change] {
        guard !config.models.links.isEmpty else { return [] }
        guard let cache = config.models.hfCache, let share = config.share(named: "models") else { return [] }
        var changes: [Change] = []
        var conflicts: [Change] = []
        for (i, link) in config.models.links.enumerated() {
            let key = "models.links[\(i)]"
            let (resolved, fd) = try HFCache.open(link, key: key, cache: cache)
            var blob = stat()
            _ = fstat(fd.raw, &blob)
            let name = link.rename ?? Paths.lastComponent(link.file)
            let target = share.path + "/" + link.dir + "/" + name
            switch Self.targetState(share: share.path, dir: link.dir, name: name, blob: blob) {
            case .done:
                continue
            case .different(let what):
                // Applied last, so every other link is made first; it then
                // fails provision with the reason (exit 1), touching nothing.
                conflicts.append(Change(.models, "refuse to replace", target, from: what, to: nil) {
                    throw SandboxError.failure("\(key): \(target) already exists and is \(what), not \(resolved.snapshotPath); it was left alone",
                                               hint: "move it away (or set \(key).rename) and run provision again")
                })
            case .absent(let sameFS):
                let method = sameFS ? "hard-link" : "symlink"
                let mode = blob.st_mode & 0o7777
                let action = sameFS && mode != 0o644 ? "hard-link (mode \(String(mode, radix: 8)) -> 644)" : method
                changes.append(Change(.models, action, resolved.snapshotPath, from: nil, to: target) {
                    try Self.apply(link: link, key: key, cache: cache, config: config, shareRoot: share.path, name: name)
                })
            }
        }
        return changes + conflicts
    }

    enum TargetState: Equatable {
        case done
        case different(String)
        /// Nothing there yet; `sameFS` when a hard link can be made.
        case absent(sameFS: Bool)
    }

    /// What is at `share/dir/name` now, looked at fd-relative without following links.
    static func targetState(share: String, dir: String, name: String, blob: stat) -> TargetState {
        var fd = open(share, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        // The share may not exist yet under `plan`: judge the file system by
        // its nearest existing ancestor.
        guard fd >= 0 else { return .absent(sameFS: sameDevice(nearestExisting(share), blob)) }
        defer { close(fd) }
        for comp in dir.split(separator: "/") {
            let sub = openat(fd, String(comp), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if sub < 0 {
                if errno == ENOENT { return .absent(sameFS: fdSameDevice(fd, blob)) }
                return .different("\(dir) is not a directory (\(Errno.current))")
            }
            close(fd)
            fd = sub
        }
        var st = stat()
        guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return .absent(sameFS: fdSameDevice(fd, blob)) }
        if (st.st_mode & S_IFMT) == S_IFREG {
            return st.st_dev == blob.st_dev && st.st_ino == blob.st_ino ? .done : .different("a different file")
        }
        if (st.st_mode & S_IFMT) == S_IFLNK {
            // Only stat through it (no open): is it the same blob?
            var to = stat()
            if fstatat(fd, name, &to, 0) == 0, to.st_dev == blob.st_dev, to.st_ino == blob.st_ino { return .done }
            return .different("a symlink to \(ShareWalk.readLink(fd, name) ?? "?")")
        }
        return .different("a \(FileKind.name(st.st_mode))")
    }

    static func fdSameDevice(_ fd: Int32, _ blob: stat) -> Bool {
        var st = stat()
        return fstat(fd, &st) == 0 && st.st_dev == blob.st_dev
    }

    static func sameDevice(_ path: String, _ blob: stat) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_dev == blob.st_dev
    }

    static func nearestExisting(_ path: String) -> String {
        var p = path
        while p != "/" && !FileManager.default.fileExists(atPath: p) { p = Paths.deletingLastComponent(p) }
        return p
    }

    /// Makes one link. Re-resolves the cache (the plan's fds are gone) and
    /// works fd-relative throughout.
    static func apply(link: Config.ModelLink, key: String, cache: String, config: Config, shareRoot: String, name: String) throws {
        guard let owner = AccountLookup.user(config.primaryUser) else {
            throw SandboxError.failure("primary_user \(config.primaryUser) does not exist", hint: "create the account first")
        }
        guard let group = AccountLookup.group(config.sharedGroup.name) else {
            throw SandboxError.failure("shared_group.name \(config.sharedGroup.name) does not exist", hint: "run provision (the accounts area creates it)")
        }
        let (resolved, blobFD) = try HFCache.open(link, key: key, cache: cache)
        let dirFD = try openCreatingDirectories(shareRoot: shareRoot, dir: link.dir, uid: owner.uid, gid: group.gid, key: key)
        defer { close(dirFD) }
        let target = shareRoot + "/" + link.dir + "/" + name

        // Hard link the very inode resolved above (AT_EMPTY_PATH: root has
        // CAP_DAC_READ_SEARCH), so no path is looked up twice.
        if linkat(blobFD.raw, "", dirFD, name, AT_EMPTY_PATH_FLAG) == 0 {
            try fixBlobMode(blobFD.raw, resolved: resolved)
            return
        }
        let e = Errno.current
        if e == .fileExists {
            var blob = stat()
            _ = fstat(blobFD.raw, &blob)
            if case .done = targetStateAt(dirFD, name, blob) { return }
            throw SandboxError.failure("\(key): \(target) already exists and is not \(resolved.snapshotPath); it was left alone",
                                       hint: "move it away (or set \(key).rename) and run provision again")
        }
        guard e == .improperLink else {
            throw SandboxError.failure("\(key): cannot hard-link \(resolved.blobPath) to \(target): \(e)")
        }
        // Another file system: a symlink to the blob, and read access for the group.
        try CacheAccess.grant(blobPath: resolved.blobPath, cache: cache, gid: group.gid, key: key)
        guard symlinkat(resolved.blobPath, dirFD, name) == 0 else {
            let e2 = Errno.current
            var blob = stat()
            _ = fstat(blobFD.raw, &blob)
            if e2 == .fileExists, case .done = targetStateAt(dirFD, name, blob) { return }
            throw SandboxError.failure("\(key): cannot create the symlink \(target) -> \(resolved.blobPath): \(e2)")
        }
        // The link itself belongs to the share's owner like everything else there.
        _ = fchownat(dirFD, name, owner.uid, group.gid, AT_SYMLINK_NOFOLLOW)
    }

    static func targetStateAt(_ dirFD: Int32, _ name: String, _ blob: stat) -> TargetState {
        var st = stat()
        guard fstatat(dirFD, name, &st, 0) == 0 else { return .different("unreadable") }
        return st.st_dev == blob.st_dev && st.st_ino == blob.st_ino ? .done : .different("a different file")
    }

    /// Share files are 0644 (read-only share): a blob the sandbox could
    /// write, or could not read, is brought to 0644. Same inode as the cache
    /// file, so the cache copy changes with it; nothing else about it does.
    static func fixBlobMode(_ fd: Int32, resolved: HFCache.Resolved) throws {
        guard resolved.mode & 0o7777 != 0o644 else { return }
        guard SafeFS.fchmod(fd, 0o644) == 0 else {
            throw SandboxError.failure("\(resolved.key): cannot set mode 0644 on \(resolved.blobPath): \(SafeFS.modeErrorText(errno))")
        }
    }

    /// Opens `shareRoot/dir`, creating missing directories as primary_user,
    /// the shared group, 2755 (the read-only share rules). Never follows a link.
    static func openCreatingDirectories(shareRoot: String, dir: String, uid: uid_t, gid: gid_t, key: String) throws -> Int32 {
        var fd = open(shareRoot, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw SandboxError.failure("\(key): the models share \(shareRoot) cannot be opened: \(Errno.current)",
                                       hint: "it must be a real directory; provision creates it")
        }
        var path = shareRoot
        for comp in dir.split(separator: "/").map(String.init) {
            path += "/" + comp
            var created = false
            if mkdirat(fd, comp, 0o700) == 0 {
                created = true
            } else if errno != EEXIST {
                let e = Errno.current
                close(fd)
                throw SandboxError.failure("\(key): cannot create \(path): \(e)")
            }
            let sub = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let e = Errno.current
            close(fd)
            guard sub >= 0 else {
                throw SandboxError.failure("\(key): \(path) is not a directory (\(e)); refusing to link through it",
                                           hint: "move it away and run provision again")
            }
            fd = sub
            if created {
                // Made 0700 and only then opened to hand over: nobody else can
                // get in between mkdir and these calls.
                do { try SafeFS.setOwnerAndMode(fd, uid: uid, gid: gid, mode: 0o2755, display: path) } catch {
                    close(fd)
                    throw SandboxError.failure("\(key): \(error)")
                }
            }
        }
        return fd
    }
}

/// Read access for the shared group to a blob in a cache on another file
/// system (the symlink case). The sandbox reads the blob through the symlink,
/// so it must be able to traverse every directory from / down to `blobs/`
/// and read the blob. Only what is missing is granted, as named-group ACL
/// entries (the modes stay the user's):
///   - directories above the cache (e.g. a 0700 home): `--x` (traverse only,
///     no listing of the user's home),
///   - the cache, the repo directory and `blobs/`: `r-x`,
///   - the blob: `r--`.
/// Directories are opened one component at a time with O_NOFOLLOW, so a
/// symlink planted on the way cannot redirect the grant. The sandbox's
/// Landlock rules must also allow reading the cache (the launcher's part).
public enum CacheAccess {
    public static func grant(blobPath: String, cache: String, gid: gid_t, key: String) throws {
        let comps = blobPath.split(separator: "/").map(String.init)
        guard comps.count >= 2 else { return }
        let cacheDepth = cache.split(separator: "/").count
        var fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError.failure("\(key): cannot open /: \(Errno.current)") }
        var path = ""
        for (depth, comp) in comps.dropLast().enumerated() {
            path += "/" + comp
            let sub = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let e = Errno.current
            close(fd)
            guard sub >= 0 else { throw SandboxError.failure("\(key): cannot open \(path) to grant access: \(e)") }
            fd = sub
            // depth+1 components opened so far: inside the cache from cacheDepth on.
            let inCache = depth + 1 >= cacheDepth
            try ensure(fd: fd, gid: gid, read: inCache, execute: true, path: path, key: key)
        }
        defer { close(fd) }
        let blob = openat(fd, comps.last!, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard blob >= 0 else { throw SandboxError.failure("\(key): cannot open \(blobPath) to grant access: \(Errno.current)") }
        defer { close(blob) }
        var st = stat()
        guard fstat(blob, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw SandboxError.failure("\(key): \(blobPath) is not a regular file")
        }
        try ensure(fd: blob, gid: gid, read: true, execute: false, path: blobPath, key: key)
    }

    /// Adds the permissions the group lacks, unless "other" already has them.
    static func ensure(fd: Int32, gid: gid_t, read: Bool, execute: Bool, path: String, key: String) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return }
        let otherHas = (!read || st.st_mode & 0o004 != 0) && (!execute || st.st_mode & 0o001 != 0)
        let groupOwns = st.st_gid == gid && (!read || st.st_mode & 0o040 != 0) && (!execute || st.st_mode & 0o010 != 0)
        if otherHas || groupOwns { return }
        do {
            try ACL.grantGroup(fd: fd, gid: gid, read: read, execute: execute, display: path)
        } catch let e as SandboxError {
            throw SandboxError.failure("\(key): \(e.message)", hint: e.hint)
        }
    }
}
