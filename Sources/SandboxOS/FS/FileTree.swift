import CSandbox
import FoundationEssentials
import Glibc

/// Directory work the launcher does as root in places the sandbox can write.
package enum FileTree {
    /// Creates `path` (its parent must exist) owned by uid:gid with `mode`
    /// when missing. An existing entry is left as it is, but must be a
    /// directory and not a symlink.
    package static func ensureOwnedDirectory(_ path: String, uid: uid_t, gid: gid_t, mode: mode_t) throws {
        let parent = Paths.deletingLastComponent(path)
        let name = Paths.lastComponent(path)
        let pfd = open(parent, CS_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard pfd >= 0 else {
            throw SandboxError.failure("cannot open \(parent): \(Errno.current)", hint: "run `comfy-sandbox provision` first")
        }
        defer { close(pfd) }
        let made = mkdirat(pfd, name, mode) == 0
        if !made && errno != EEXIST { throw SandboxError.failure("cannot create \(path): \(Errno.current)") }
        // O_NOFOLLOW|O_DIRECTORY: a symlink planted in place of the directory is refused, not followed.
        let fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError.failure("\(path) is not a directory (or is a symlink): \(Errno.current)") }
        defer { close(fd) }
        if made { try SafeFS.setOwnerAndMode(fd, uid: uid, gid: gid, mode: mode, display: path) }
    }

    /// A fresh directory under `dir`, made and handed over by descriptor
    /// (`SafeFS.makeTemporaryDirectory`: never mkdtemp and a reopened path).
    package static func makeTempDirectory(in dir: String, prefix: String, uid: uid_t, gid: gid_t) throws -> String {
        let (path, fd) = try makeOpenTempDirectory(in: dir, prefix: prefix, uid: uid, gid: gid)
        close(fd)
        return path
    }

    /// `makeTempDirectory`, keeping the directory open: the fd it was handed
    /// over through.
    private static func makeOpenTempDirectory(in dir: String, prefix: String, uid: uid_t, gid: gid_t) throws -> (String, Int32) {
        do {
            return try SafeFS.makeTemporaryDirectory(in: dir, prefix: prefix, mode: 0o700, uid: uid, gid: gid)
        } catch let error as SandboxError {
            throw SandboxError.failure(error.message, hint: "set launcher.ram_temp to false to use a directory in the sandbox home")
        }
    }

    /// `makeTempDirectory`, plus an flock on the directory held through the
    /// returned fd: while it is open, `sweepStaleTemps` leaves the directory
    /// alone. The fd is close-on-exec and never reaches the sandbox.
    package static func makeLockedTempDirectory(in dir: String, prefix: String, uid: uid_t, gid: gid_t) throws -> (String, OwnedFD) {
        let (path, fd) = try makeOpenTempDirectory(in: dir, prefix: prefix, uid: uid, gid: gid)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = Errno.current
            close(fd)
            removeTree(path)
            throw SandboxError.failure("cannot lock the RAM temp \(path): \(e)")
        }
        return (path, OwnedFD(fd))
    }

    /// Removes the `prefix`* directories in `dir` that a launcher made and
    /// left behind: owned by `owner`, not locked by a live session, and
    /// untouched for `graceSeconds` (a launcher that has just made its
    /// directory takes the lock a moment later; the grace covers that gap).
    /// Anything else with the name (a symlink, another owner's directory)
    /// is not ours and stays. Returns the paths removed.
    package static func sweepStaleTemps(in dir: String, prefix: String, owner: uid_t, graceSeconds: Int = 10) -> [String] {
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { return [] }
        defer { close(dfd) }
        var names: [String] = []
        if let d = fdopendir(dup(dfd)) {
            while let entry = readdir(d) {
                let name = entryName(entry)
                if name.hasPrefix(prefix) { names.append(name) }
            }
            closedir(d)
        }
        let now = time(nil)
        var removed: [String] = []
        for name in names {
            // Decided on the opened directory, not the name: O_NOFOLLOW
            // refuses a symlink, and fstat describes what we will lock.
            let fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_uid == owner, now - st.st_mtim.tv_sec >= graceSeconds,
                  flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }
            // Emptied through the fd we checked and locked, not by name again.
            SafeFS.removeContents(of: fd)
            if unlinkat(dfd, name, AT_REMOVEDIR) == 0 { removed.append(dir + "/" + name) }
        }
        return removed
    }

    /// Removes a tree the sandbox wrote, walking by fd (`SafeFS.removeTree`):
    /// never follows a symlink, never crosses to another file system, no depth limit.
    @discardableResult
    package static func removeTree(_ path: String) -> SafeFS.RemovalReport {
        SafeFS.removeTree(path)
    }

    /// Removes `relative` (a/b/c) below the directory `root`, reaching its
    /// parent with openat2 beneath `root` (no link at any level, no mount
    /// crossed): a tree the sandbox may write (a writable node) cannot
    /// redirect the removal elsewhere.
    @discardableResult
    package static func removeTree(under root: String, relative: String) -> SafeFS.RemovalReport {
        let parts = relative.split(separator: "/").map(String.init)
        guard let last = parts.last, !parts.contains(where: { $0 == ".." || $0 == "." }) else { return SafeFS.RemovalReport() }
        let rfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard rfd >= 0 else { return SafeFS.RemovalReport() }
        defer { close(rfd) }
        let parentPath = parts.dropLast().joined(separator: "/")
        let fd = parentPath.isEmpty ? fcntl(rfd, F_DUPFD_CLOEXEC, 0)
                                    : SafeFS.openBeneath(rfd, parentPath, flags: O_RDONLY | O_DIRECTORY, noXDev: true)
        guard fd >= 0 else { return SafeFS.RemovalReport() }
        defer { close(fd) }
        return SafeFS.removeEntry(fd, last)
    }
}
