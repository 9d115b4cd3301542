import FoundationEssentials
import Glibc

/// `rm -rf --one-file-system` by descriptor, for trees the sandbox wrote
/// (RAM temps, staging directories, a failed checkout): `SafeFS.walk` in
/// post-order, so a directory is removed (unlinkat(parent fd, name,
/// AT_REMOVEDIR)) after its entries; every other entry is unlinked through
/// the fd of the directory it was listed in. A symlink is removed, never
/// followed; a hard link loses this name only (the file elsewhere stays as
/// it is); a mount inside is never entered (and so stays, reported); there
/// is no depth limit and the fds held stay bounded.
extension SafeFS {
    public struct RemovalReport: Sendable, Equatable {
        /// Entries removed (directories included).
        public var removed = 0
        /// What is still there: path (escaped, relative to what was being
        /// removed) and why.
        public var left: [Left] = []
        public var stats = WalkStats()
        public var complete: Bool { left.isEmpty }

        public struct Left: Sendable, Equatable {
            public var path: String
            public var why: String
        }
    }

    struct Remover: WalkVisitor {
        var report = RemovalReport()

        mutating func visit(_ entry: WalkEntry) {
            if unlinkat(entry.dirFD, entry.name, 0) == 0 {
                report.removed += 1
            } else if errno != ENOENT {
                report.left.append(.init(path: Format.escape(entry.path), why: "cannot be removed (\(Errno.current))"))
            }
        }

        mutating func leave(_ dir: WalkEntry) {
            guard dir.dirFD >= 0 else { return }   // the start: the caller's to remove
            if unlinkat(dir.dirFD, dir.name, AT_REMOVEDIR) == 0 {
                report.removed += 1
            } else if errno != ENOENT {
                report.left.append(.init(path: Format.escape(dir.path), why: "cannot be removed (\(Errno.current))"))
            }
        }

        mutating func skipped(_ path: [UInt8], _ why: WalkSkip) {
            if why == .disappeared { return }
            report.left.append(.init(path: path.isEmpty ? "." : Format.escape(path), why: why.description))
        }
    }

    static let removalPolicy = WalkPolicy(visits: .all, hardLinks: true, postOrder: true)

    /// Empties the directory open at `fd` (borrowed; left open and in place).
    @discardableResult
    public static func removeContents(of fd: Int32) -> RemovalReport {
        var v = Remover()
        v.report.stats = walk(fd, policy: removalPolicy, visitor: &v)
        return v.report
    }

    /// Removes `name` in the directory open at `parent`: a directory is
    /// opened beneath `parent` (no symlink, same file system), emptied and
    /// removed; anything else is unlinked. Nothing there is not an error.
    @discardableResult
    public static func removeEntry(_ parent: Int32, _ name: String) -> RemovalReport {
        var report = RemovalReport()
        var st = stat()
        guard fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno != ENOENT { report.left.append(.init(path: ".", why: WalkSkip.cannotStat(errno).description)) }
            return report
        }
        guard isDirectory(st) else {
            if unlinkat(parent, name, 0) == 0 { report.removed += 1 }
            else if errno != ENOENT { report.left.append(.init(path: ".", why: "cannot be removed (\(Errno.current))")) }
            return report
        }
        let fd = openBeneath(parent, name, flags: O_RDONLY | O_DIRECTORY, noXDev: true)
        guard fd >= 0 else {
            report.left.append(.init(path: ".", why: WalkSkip.openFailure(errno).description))
            return report
        }
        guard let now = fstat(fd), now.st_dev == st.st_dev, now.st_ino == st.st_ino else {
            close(fd)
            report.left.append(.init(path: ".", why: WalkSkip.replaced.description))
            return report
        }
        report = removeContents(of: fd)
        close(fd)
        if unlinkat(parent, name, AT_REMOVEDIR) == 0 {
            report.removed += 1
        } else if errno != ENOENT && report.left.isEmpty {
            report.left.append(.init(path: ".", why: "cannot be removed (\(Errno.current))"))
        }
        return report
    }

    /// Removes the tree at `path`. Its parent is opened as given (a path
    /// root chose: a temp parent, a checkout's parent); everything from the
    /// last component down is walked by fd.
    @discardableResult
    public static func removeTree(_ path: String) -> RemovalReport {
        let (parent, name) = split(path)
        let pfd = open(parent.isEmpty ? "/" : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard pfd >= 0 else {
            if errno == ENOENT { return RemovalReport() }
            return RemovalReport(left: [.init(path: ".", why: "cannot open \(parent) (\(Errno.current))")])
        }
        defer { close(pfd) }
        return removeEntry(pfd, name)
    }
}
