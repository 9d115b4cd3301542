import CSandbox
import FoundationEssentials
import Glibc

/// Sets owner and mode across a tree the sandbox may have written (a
/// staging directory, a writable node), by file descriptor: each directory
/// is opened relative to its parent with O_NOFOLLOW|O_DIRECTORY, each entry
/// is looked at with fstatat(AT_SYMLINK_NOFOLLOW) and changed through an fd
/// opened with O_NOFOLLOW (O_PATH for links, which are never followed and
/// only have their owner changed). A path string is never rebuilt and
/// reopened, so a link or rename swapped in mid-walk cannot send a chown
/// outside the tree. Regular files with more than one link are skipped: a
/// hard link the sandbox made to a file elsewhere must not get our mode.
public enum TreeOwnership {
    public struct Rule: Sendable {
        public var uid: uid_t
        public var gid: gid_t
        /// mode = (current & keep) | add, separately for dirs and files.
        public var dirKeep: mode_t, dirAdd: mode_t
        public var fileKeep: mode_t, fileAdd: mode_t
        /// When set, the executable bits of files are kept as they are.
        public init(uid: uid_t, gid: gid_t, dirKeep: mode_t, dirAdd: mode_t, fileKeep: mode_t, fileAdd: mode_t) {
            self.uid = uid; self.gid = gid
            self.dirKeep = dirKeep; self.dirAdd = dirAdd
            self.fileKeep = fileKeep; self.fileAdd = fileAdd
        }

        /// root:root, nobody else writes: dirs 0755, files 0644 (or 0755 when executable).
        public static let sealed = Rule(uid: 0, gid: 0, dirKeep: 0o755, dirAdd: 0o755, fileKeep: 0o755, fileAdd: 0o644)

        /// A regular file (lstat'ed) that already has this owner and mode.
        func isSatisfied(byFile st: stat) -> Bool {
            guard st.st_uid == uid, st.st_gid == gid else { return false }
            let cur = st.st_mode & 0o7777
            var want = (cur & fileKeep) | fileAdd
            if cur & 0o111 == 0 { want &= ~mode_t(0o111) }
            want &= ~mode_t(0o6000)
            return want == cur
        }
    }

    public struct Skipped: Sendable {
        public var path: String
        public var why: String
        /// For a multiply-linked file: which inode it is.
        public var identity: FileIdentity? = nil
    }

    /// Applies `rule` to `root` and everything below it. `skipTop` names
    /// entries directly under root to leave out (e.g. ".git").
    @discardableResult
    public static func apply(_ rule: Rule, to root: String, skipTop: Set<String> = []) throws -> [Skipped] {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError.failure("cannot open \(root): \(Errno.current)") }
        defer { close(fd) }
        var skipped: [Skipped] = []
        try fix(fd, isDir: true, rule, display: root)
        try walk(fd, display: root, rule, skipTop: skipTop, depth: 0, &skipped)
        return skipped
    }

    static func fix(_ fd: Int32, isDir: Bool, _ rule: Rule, display: String) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SandboxError.failure("cannot stat \(display): \(Errno.current)") }
        let cur = st.st_mode & 0o7777
        var want: mode_t
        if isDir {
            want = (cur & rule.dirKeep) | rule.dirAdd
        } else {
            want = (cur & rule.fileKeep) | rule.fileAdd
            if cur & 0o111 == 0 { want &= ~mode_t(0o111) }   // never make a file executable
        }
        // chown clears setuid/setgid on files; never keep them on files anyway.
        if !isDir { want &= ~mode_t(0o6000) }
        // Mode lowered first, then the owner, then the mode (SafeFS.setOwnerAndMode);
        // one already right costs nothing more: a sealed set of 100,000
        // files is walked on every install.
        try SafeFS.setOwnerAndMode(fd, st: st, uid: rule.uid, gid: rule.gid, mode: want, display: display)
    }

    static func walk(_ dfd: Int32, display: String, _ rule: Rule, skipTop: Set<String>, depth: Int, _ skipped: inout [Skipped]) throws {
        guard depth < 256 else { throw SandboxError.failure("\(display) is nested more than 256 levels deep; refusing") }
        let dup = fcntl(dfd, F_DUPFD_CLOEXEC, 0)
        guard dup >= 0, let dir = fdopendir(dup) else { throw SandboxError.failure("cannot read \(display): \(Errno.current)") }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name == "." || name == ".." { continue }
            if depth == 0 && skipTop.contains(name) { continue }
            names.append(name)
        }
        for name in names {
            let path = display + "/" + name
            var st = stat()
            guard fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                if errno == ENOENT { continue }
                throw SandboxError.failure("cannot stat \(path): \(Errno.current)")
            }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                let sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard sub >= 0 else { throw SandboxError.failure("cannot open \(path): \(Errno.current)") }
                defer { close(sub) }
                try fix(sub, isDir: true, rule, display: path)
                try walk(sub, display: path, rule, skipTop: [], depth: depth + 1, &skipped)
            case S_IFREG:
                if st.st_nlink > 1 {
                    skipped.append(Skipped(path: path, why: "has \(st.st_nlink) hard links", identity: FileIdentity(st)))
                    continue
                }
                if rule.isSatisfied(byFile: st) { continue }
                let f = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
                guard f >= 0 else { throw SandboxError.failure("cannot open \(path): \(Errno.current)") }
                defer { close(f) }
                try fix(f, isDir: false, rule, display: path)
            case S_IFLNK:
                // The link itself, never its target.
                guard fchownat(dfd, name, rule.uid, rule.gid, AT_SYMLINK_NOFOLLOW) == 0 else {
                    throw SandboxError.failure("cannot chown link \(path): \(Errno.current)")
                }
            default:
                skipped.append(Skipped(path: path, why: "is not a file, directory or link"))
            }
        }
    }
}
