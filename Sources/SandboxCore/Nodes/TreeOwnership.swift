import FoundationEssentials
import Glibc
import SandboxOS

/// Sets owner and mode across a tree the sandbox may have written (a
/// staging directory, a writable node), with `SafeFS.walk`: every directory
/// opened with openat2(RESOLVE_BENEATH|NO_SYMLINKS|NO_XDEV) from its
/// parent's fd and checked against the listing's (dev, ino), every entry
/// changed through an fd `WalkEntry.open` opened and checked the same way
/// (O_PATH for links, which are never followed and only have their owner
/// changed), bounded fds and no depth limit. A path string is never rebuilt
/// and reopened, so a link or rename swapped in mid-walk cannot send a chown
/// outside the tree. Regular files with more than one link are skipped: a
/// hard link the sandbox made to a file elsewhere must not get our mode.
/// Mounts inside the tree are not entered, FIFOs, sockets and devices not
/// changed; both are returned as skipped. Anything else the walk could not
/// do (an entry replaced mid-walk, one that cannot be opened or changed)
/// fails the whole call once the rest is done: a tree half sealed is not sealed.
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
        var v = Visitor(rule: rule, root: root, skipTop: Set(skipTop.map { Array($0.utf8) }))
        SafeFS.walk(fd, policy: SafeFS.WalkPolicy(visits: [.regular, .symlink], hardLinks: false), visitor: &v)
        if let first = v.failures.first {
            let more = v.failures.count > 1 ? " (and \(v.failures.count - 1) more)" : ""
            throw SandboxError.failure(first + more)
        }
        return v.skipped
    }

    /// `display` is only for a message: the path is built when one is needed.
    static func fix(_ fd: Int32, st: stat, isDir: Bool, _ rule: Rule, display: @autoclosure () -> String) throws {
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
        do {
            try SafeFS.setOwnerAndMode(fd, st: st, uid: rule.uid, gid: rule.gid, mode: want, display: "\u{0}")
        } catch let e as SandboxError {
            throw SandboxError.failure(e.message.replacing("\u{0}", with: display()))
        }
    }

    struct Visitor: WalkVisitor {
        let rule: Rule
        let root: String
        let skipTop: Set<[UInt8]>
        var skipped: [Skipped] = []
        var failures: [String] = []

        func display(_ rel: [UInt8]) -> String {
            rel.isEmpty ? root : root + "/" + Format.escape(rel)
        }

        mutating func enter(_ dir: SafeFS.WalkEntry) -> Bool {
            do {
                try fix(dir.fd, st: dir.st, isDir: true, rule, display: display(dir.path))
                return true
            } catch {
                failures.append("\(error)")
                return false
            }
        }

        mutating func include(_ dir: SafeFS.WalkEntry) -> Bool {
            !(dir.depth == 1 && skipTop.contains(Array(dir.nameBytes)))
        }

        mutating func visit(_ entry: SafeFS.WalkEntry) {
            if entry.depth == 1 && !skipTop.isEmpty && skipTop.contains(Array(entry.nameBytes)) { return }
            let st = entry.st
            if SafeFS.isSymlink(st) {
                // The link itself, never its target: an O_PATH fd of the
                // link (openat2 returns one for O_PATH|O_NOFOLLOW), checked, then chowned.
                if st.st_uid == rule.uid && st.st_gid == rule.gid { return }
                switch entry.open() {
                case .success(let (fd, _)):
                    defer { close(fd) }
                    if fchownat(fd, "", rule.uid, rule.gid, SafeFS.AT_EMPTY_PATH) != 0 {
                        failures.append("cannot chown link \(display(entry.path)): \(Errno.current)")
                    }
                case .failure(let why):
                    failed(entry.path, why)
                }
                return
            }
            if st.st_nlink > 1 {
                skipped.append(Skipped(path: display(entry.path), why: "has \(st.st_nlink) hard links", identity: FileIdentity(st)))
                return
            }
            if rule.isSatisfied(byFile: st) { return }
            switch entry.open() {
            case .success(let (fd, now)):
                defer { close(fd) }
                do { try fix(fd, st: now, isDir: false, rule, display: display(entry.path)) } catch { failures.append("\(error)") }
            case .failure(.hardLinked(let n)):
                skipped.append(Skipped(path: display(entry.path), why: "has \(n) hard links", identity: FileIdentity(st)))
            case .failure(let why):
                failed(entry.path, why)
            }
        }

        mutating func skipped(_ path: [UInt8], _ why: SafeFS.WalkSkip) {
            switch why {
            case .symlink, .fifo, .socket, .device, .unknownType:
                skipped.append(Skipped(path: display(path), why: "is not a file, directory or link"))
            case .mountPoint:
                skipped.append(Skipped(path: display(path), why: "is a mount point (another file system); not entered"))
            case .disappeared:
                break   // nothing left to seal
            default:
                failed(path, why)
            }
        }

        mutating func failed(_ path: [UInt8], _ why: SafeFS.WalkSkip) {
            failures.append("\(display(path)) \(why)")
        }
    }
}
