import CSandbox
import FoundationEssentials
import Glibc

/// File-system operations for paths that lie under directories someone other
/// than root can write (the primary user's home, the shares). Every path is
/// walked from "/" by file descriptor with openat2(RESOLVE_NO_SYMLINKS), so a
/// component swapped for a symlink mid-walk makes the walk fail instead of
/// leading root somewhere else, and every change is made on the descriptor
/// (fchownat(fd, "", AT_EMPTY_PATH), fchmodat2, acl_set_fd), never on a
/// rebuilt path.
public enum SafeFS {
    /// <fcntl.h> hides these behind _GNU_SOURCE; the C seam exports them.
    public static let O_PATH = CS_O_PATH
    public static let AT_EMPTY_PATH = CS_AT_EMPTY_PATH

    /// What lstat(2) says about a path, or nil when it does not exist.
    public static func lstat(_ path: String) -> stat? {
        var st = stat()
        return Glibc.lstat(path, &st) == 0 ? st : nil
    }

    public static func isDirectory(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFDIR }
    public static func isSymlink(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFLNK }
    public static func isRegular(_ st: stat) -> Bool { (st.st_mode & S_IFMT) == S_IFREG }

    /// "a regular file", "a symbolic link"...: for messages.
    public static func kind(_ st: stat) -> String {
        switch st.st_mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFREG: "a regular file"
        case S_IFLNK: "a symbolic link"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFCHR, S_IFBLK: "a device"
        default: "a special file"
        }
    }

    package static func components(_ path: String) -> [String] {
        path.split(separator: "/").map(String.init)
    }

    /// openat2 of one name below `dirfd`, never following a symlink, never
    /// leaving `dirfd`. Retries EINTR/EAGAIN (openat2 returns EAGAIN when a
    /// concurrent rename makes the lookup unsafe).
    public static func openBeneath(_ dirfd: Int32, _ name: String, flags: Int32, noXDev: Bool = false) -> Int32 {
        name.withCString { openBeneath(dirfd, $0, flags: flags, noXDev: noXDev) }
    }

    /// The same for a raw name (bytes as the directory holds them, maybe not UTF-8).
    public static func openBeneath(_ dirfd: Int32, _ name: UnsafePointer<CChar>, flags: Int32, noXDev: Bool = false) -> Int32 {
        var resolve = CS_RESOLVE_BENEATH | CS_RESOLVE_NO_SYMLINKS | CS_RESOLVE_NO_MAGICLINKS
        if noXDev { resolve |= CS_RESOLVE_NO_XDEV }
        var tries = 0
        while true {
            let fd = cs_openat2(dirfd, name, UInt64(flags | O_CLOEXEC | O_NOFOLLOW), 0, resolve)
            if fd >= 0 { return fd }
            let e = errno
            if (e == EINTR || e == EAGAIN) && tries < 100 { tries += 1; continue }
            errno = e
            return -1
        }
    }

    /// Walks `path` from "/" one component at a time with `openBeneath` (no
    /// symlink anywhere on the way), closing each parent behind it. A
    /// component that does not exist goes to `missing`, which may make it and
    /// return its fd, or return nil to end the walk (the result is then nil).
    /// Throws what is in the way: a symlink, a file, an error.
    private static func walk(_ path: String,
                             missing: (_ parent: Int32, _ name: String, _ walked: String) throws -> Int32?) throws -> Int32? {
        var fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError.failure("cannot open /: \(Errno.current)") }
        var walked = ""
        for comp in components(path) {
            walked += "/" + comp
            var next = openBeneath(fd, comp, flags: O_RDONLY | O_DIRECTORY)
            let e = errno
            if next < 0 && e == ENOENT {
                let made: Int32?
                do { made = try missing(fd, comp, walked) } catch { close(fd); throw error }
                guard let made else { close(fd); return nil }
                next = made
            }
            close(fd)
            if next < 0 { throw pathError(walked, e) }
            fd = next
        }
        return fd
    }

    /// Opens an existing directory by absolute path, component by component
    /// from "/", refusing symlinks anywhere on the way. nil when it does not
    /// exist; throws when something else is in the way.
    public static func openDirectory(_ path: String) throws -> Int32? {
        try walk(path) { _, _, _ in nil }
    }

    package static func pathError(_ path: String, _ e: Int32) -> SandboxError {
        // O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR; name it right (lstat only for the message).
        var e = e
        if e == ENOTDIR, let st = lstat(path), isSymlink(st) { e = ELOOP }
        return switch e {
        case ELOOP:
            SandboxError.failure("\(path) is a symbolic link; refusing to follow it as root",
                                 hint: "replace it with a real directory (or fix the configured path) and run again")
        case ENOTDIR:
            SandboxError.failure("\(path) is a file where a directory must be; not touching it",
                                 hint: "move it away and run again")
        case ENOSYS:
            Kernel.openat2Missing("cannot open \(path)")
        default:
            SandboxError.failure("cannot open \(path): \(Errno(e))")
        }
    }

    /// Makes sure every component of `path` is a directory, creating the
    /// missing ones with `owner(depth-path)` and `mode`. Returns an fd of the
    /// final directory. Existing directories are left as they are.
    public static func ensureDirectory(_ path: String, created: (String) -> (uid: uid_t, gid: gid_t, mode: mode_t)) throws -> Int32 {
        let fd = try walk(path) { parent, comp, walked in
            let want = created(walked)
            if mkdirat(parent, comp, 0o700) != 0 && errno != EEXIST {
                throw SandboxError.failure("cannot create \(walked): \(Errno.current)")
            }
            let next = openBeneath(parent, comp, flags: O_RDONLY | O_DIRECTORY)
            guard next >= 0 else { throw pathError(walked, errno) }
            do { try setOwnerAndMode(next, uid: want.uid, gid: want.gid, mode: want.mode, display: walked) } catch {
                close(next)
                throw error
            }
            return next
        }
        // `missing` never ends the walk early, so there is always an fd.
        guard let fd else { throw SandboxError.failure("cannot open \(path)") }
        return fd
    }

    /// The parent directory of `path` and the last name.
    public static func split(_ path: String) -> (String, String) {
        (Paths.deletingLastComponent(path), Paths.lastComponent(path))
    }

    public static func fstat(_ fd: Int32) -> stat? {
        var st = stat()
        return Glibc.fstat(fd, &st) == 0 ? st : nil
    }

    /// fchown on the descriptor; -1 keeps that id.
    public static func chown(_ fd: Int32, uid: uid_t = uid_t.max, gid: gid_t = gid_t.max, display: String) throws {
        if fchownat(fd, "", uid, gid, SafeFS.AT_EMPTY_PATH) != 0 {
            throw SandboxError.failure("cannot change the owner of \(display): \(Errno.current)")
        }
    }

    /// The mode of the inode `fd` holds (O_PATH fds too; see `fchmod`).
    public static func chmod(_ fd: Int32, _ mode: mode_t, display: String) throws {
        if fchmod(fd, mode) != 0 {
            throw SandboxError.failure("cannot change the mode of \(display): \(modeErrorText(errno))")
        }
    }

    /// Why `fchmod` failed, for messages. ENOENT only comes from its
    /// /proc/self/fd fallback (before Linux 6.6): /proc is not mounted.
    public static func modeErrorText(_ e: Int32) -> String {
        e == ENOENT ? "/proc is not mounted, and this kernel has no fchmodat2 (Linux \(Kernel.fchmodat2Since)+) to do without it"
                    : Errno(e).description
    }

    /// Gives the inode `fd` holds to `uid`:`gid` (-1 keeps one) with `mode`,
    /// in the order that never hands anyone more than the old or the new
    /// state grants: the mode is first lowered to what both modes allow
    /// (setuid/setgid off), then the owner changes, then the mode is set.
    /// Chown first would, for a moment, give the new group whatever the old
    /// mode gave the old one (a 0660 file moved into a read-only share would
    /// be the sandbox's to write until the chmod).
    public static func setOwnerAndMode(_ fd: Int32, uid: uid_t = uid_t.max, gid: gid_t = gid_t.max, mode: mode_t, display: String) throws {
        guard let st = fstat(fd) else { throw SandboxError.failure("cannot stat \(display): \(Errno.current)") }
        try setOwnerAndMode(fd, st: st, uid: uid, gid: gid, mode: mode, display: display)
    }

    /// The same with the fstat the caller already made of `fd`: nothing
    /// more is called when owner and mode are already right.
    public static func setOwnerAndMode(_ fd: Int32, st: stat, uid: uid_t = uid_t.max, gid: gid_t = gid_t.max, mode: mode_t, display: String) throws {
        let current = st.st_mode & 0o7777
        var now = current
        if (uid != uid_t.max && st.st_uid != uid) || (gid != gid_t.max && st.st_gid != gid) {
            let lowered = current & mode & ~mode_t(0o6000)
            if lowered != current {
                try chmod(fd, lowered, display: display)
                now = lowered
            }
            try chown(fd, uid: uid, gid: gid, display: display)
        }
        if now != mode & 0o7777 { try chmod(fd, mode, display: display) }
    }

    /// Opens an existing `path` without following a link in its last
    /// component (earlier components are root's to choose: config paths
    /// under root-owned directories): a directory for reading, anything else
    /// O_PATH. What is opened is what every later change goes through.
    public static func openNoFollow(_ path: String, directory: Bool) throws -> Int32 {
        let fd = Glibc.open(path, (directory ? O_RDONLY | O_DIRECTORY : O_PATH) | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            if e == ELOOP || (directory && e == ENOTDIR && lstat(path).map(isSymlink) == true) {
                throw SandboxError.failure("\(path) is a symbolic link; refusing to change it as root")
            }
            throw SandboxError.failure("cannot open \(path): \(Errno(e))")
        }
        return fd
    }

    /// `chmod(path, mode)` done right: the directory (or file) opened without
    /// following a final link, its mode set through that descriptor.
    public static func setMode(_ path: String, _ mode: mode_t, directory: Bool = true) throws {
        let fd = try openNoFollow(path, directory: directory)
        defer { close(fd) }
        try setOwnerAndMode(fd, mode: mode, display: path)
    }

    /// `chown` + `chmod` of an existing path, through one descriptor, mode lowered first.
    public static func setOwnerAndMode(_ path: String, uid: uid_t, gid: gid_t, mode: mode_t, directory: Bool = true) throws {
        let fd = try openNoFollow(path, directory: directory)
        defer { close(fd) }
        try setOwnerAndMode(fd, uid: uid, gid: gid, mode: mode, display: path)
    }

    /// mkdir(path) with an owner and a mode that hold whatever the umask:
    /// the directory is made 0700 under its parent's descriptor, opened
    /// without following a link, and handed over through that descriptor
    /// (nothing can get in between: only root could enter it meanwhile).
    /// Returns false when it already existed (then, with `existingOK`, it is
    /// left exactly as it is; without, that is an error).
    @discardableResult
    public static func makeDirectory(_ path: String, mode: mode_t, uid: uid_t = uid_t.max, gid: gid_t = gid_t.max, existingOK: Bool = false) throws -> Bool {
        let (parent, name) = split(path)
        let pfd = Glibc.open(parent.isEmpty ? "/" : parent, O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard pfd >= 0 else { throw SandboxError.failure("cannot create \(path): cannot open \(parent): \(Errno.current)") }
        defer { close(pfd) }
        if mkdirat(pfd, name, 0o700) != 0 {
            if errno == EEXIST && existingOK { return false }
            throw SandboxError.failure("cannot create \(path): \(Errno.current)")
        }
        let fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError.failure("cannot open \(path) just made: \(Errno.current)") }
        defer { close(fd) }
        try setOwnerAndMode(fd, uid: uid, gid: gid, mode: mode, display: path)
        return true
    }

    /// mkdtemp(3) done through descriptors: `parent/prefixXXXXXX` made 0700
    /// with mkdirat under the parent's fd, opened O_NOFOLLOW (checked to be
    /// the directory this process just made), then owner and mode set through
    /// that fd. Returns the path and the open directory fd (the caller closes it).
    public static func makeTemporaryDirectory(in parent: String, prefix: String, mode: mode_t,
                                              uid: uid_t = uid_t.max, gid: gid_t = gid_t.max) throws -> (String, Int32) {
        let pfd = Glibc.open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard pfd >= 0 else { throw SandboxError.failure("cannot create a directory in \(parent): \(Errno.current)") }
        defer { close(pfd) }
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        for _ in 0..<100 {
            let name = prefix + String((0..<6).map { _ in letters[Int.random(in: 0..<letters.count)] })
            if mkdirat(pfd, name, 0o700) != 0 {
                if errno == EEXIST { continue }
                throw SandboxError.failure("cannot create a directory in \(parent): \(Errno.current)")
            }
            let path = parent + "/" + name
            let fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw SandboxError.failure("cannot open \(path) just made: \(Errno.current)") }
            guard let st = fstat(fd), isDirectory(st), st.st_uid == geteuid(), st.st_mode & 0o077 == 0 else {
                close(fd)
                throw SandboxError.failure("\(path) was replaced right after it was made; refusing to use it")
            }
            do { try setOwnerAndMode(fd, uid: uid, gid: gid, mode: mode, display: path) } catch { close(fd); throw error }
            return (path, fd)
        }
        throw SandboxError.failure("cannot create a directory in \(parent): no free name after 100 tries")
    }


    /// Name of a uid/gid for plan lines.
    public static func userName(_ uid: uid_t) -> String { AccountLookup.user(uid: uid)?.name ?? String(uid) }
    public static func groupName(_ gid: gid_t) -> String {
        var gr = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>?
        var buf = [CChar](repeating: 0, count: 65536)
        guard getgrgid_r(gid, &gr, &buf, buf.count, &result) == 0, result != nil else { return String(gid) }
        return String(cString: gr.gr_name)
    }

    public static func octal(_ mode: mode_t) -> String { Format.octal(mode & 0o7777, width: 4) }
}
