import CSandbox
import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// `fix-permissions`: re-applies group, modes, setgid and the default ACL
/// across one share. It runs as root over a tree the sandbox user can write,
/// so it is built like systemd-tmpfiles after CVE-2017-18078:
///
/// - The walk is by file descriptor. Each directory is opened relative to its
///   parent's fd with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
///   RESOLVE_NO_XDEV) and O_NOFOLLOW; a path is never rebuilt and reopened.
/// - Every entry is first lstat'ed through the dir fd (fstatat
///   AT_SYMLINK_NOFOLLOW). Entries already right cost that one call and
///   nothing else. Only what must change is opened (O_PATH), fstat'ed again,
///   and refused when (dev, ino, type) differ from the lstat: the entry was
///   swapped between the two looks.
/// - Symlinks are never followed or changed; FIFOs, sockets and devices are
///   skipped; regular files with more than one link are skipped (a hard link
///   can name a file outside the share; fs.protected_hardlinks stops the
///   sandbox from making one to a file it cannot write, this stops the rest);
///   an entry on another device (a mount point) is skipped and never entered.
/// - Files lose setuid/setgid; changes go through fchownat(fd, "",
///   AT_EMPTY_PATH), fchmodat2(fd, "", AT_EMPTY_PATH) (before Linux 6.6:
///   chmod of /proc/self/fd/N, as systemd's fchmod_opath) and acl_set_file on
///   /proc/self/fd/N. When the group changes, the mode is lowered first.
///
/// Depth: the walk is iterative with an explicit stack, so a 5,000-deep tree
/// costs heap, not call stack. At most `maxOpen` directory fds are open: when
/// the stack is deeper, the fds of the shallowest frames are closed and their
/// (dev, ino) kept; a frame that still has subdirectories to visit is reopened
/// name by name from the nearest open ancestor with the same openat2 flags,
/// and each reopened level must have the remembered (dev, ino), else that
/// subtree is skipped and reported. A frame with nothing left to visit closes
/// its fd as soon as its last child is open, so a plain deep chain holds two
/// fds. We chose this over raising RLIMIT_NOFILE: the limit would have to grow
/// with a depth the sandbox chooses.
public struct PermissionFixer: Sendable {
    public struct Skip: Codable, Sendable, Equatable {
        public var path: String
        public var reason: String
    }

    public struct Report: Codable, Sendable {
        public var share: String
        public var path: String
        public var checked = 0
        public var changed = 0
        public var groupChanged = 0
        public var modeChanged = 0
        public var aclChanged = 0
        public var setidCleared = 0
        /// Directories reopened from a kept ancestor after their fd was closed to bound open fds.
        public var reopened = 0
        public var skipped: [Skip] = []

        enum CodingKeys: String, CodingKey {
            case share, path, checked, changed, skipped
            case groupChanged = "group_changed"
            case modeChanged = "mode_changed"
            case aclChanged = "acl_changed"
            case setidCleared = "setid_cleared"
            case reopened = "directories_reopened"
        }
    }

    /// What the walk makes right. `.share`: the share's group, modes, setgid
    /// and default ACL (fix-permissions). `.handBack(from:)`: for uninstall,
    /// when the shared group goes: whatever belongs to group `from` is given
    /// to `gid` (the primary user's own group) and every ACL entry naming
    /// `from` is removed, so no group made later with the freed gid inherits
    /// the files; modes are left as they are.
    public enum Policy: Sendable, Equatable {
        case share
        case handBack(from: gid_t)
    }

    public let share: Config.Share
    public let gid: gid_t
    public var policy: Policy = .share
    public var maxOpen = 64
    /// Called now and then with the number of entries checked so far.
    public var progress: (@Sendable (Int) -> Void)? = nil

    public init(share: Config.Share, gid: gid_t) {
        self.share = share
        self.gid = gid
    }

    struct Frame {
        var fd: Int32
        let dev: dev_t
        let ino: ino_t
        /// NUL-terminated name relative to the previous frame (empty for the root).
        let name: [CChar]
        var pending: [([CChar], ino_t)] = []
    }

    var writable: Bool { share.access.writable }
    var dirMode: mode_t { writable ? 0o2775 : 0o2755 }

    /// The mode a regular file should have: 0644 / 0664, executables keep x
    /// (0755 / 0775); setuid, setgid and sticky are cleared.
    func fileMode(_ current: mode_t) -> mode_t {
        var want: mode_t = writable ? 0o664 : 0o644
        if current & 0o100 != 0 { want |= 0o111 }
        return want
    }

    public func run() throws -> Report {
        guard let rootFD = try SafeFS.openDirectory(share.path) else {
            throw SandboxError.failure("the share \(share.name) (\(share.path)) does not exist", hint: "run `comfy-sandbox provision --only tree`")
        }
        defer { close(rootFD) }
        guard let rst = SafeFS.fstat(rootFD) else { throw SandboxError.failure("cannot stat \(share.path): \(Errno.current)") }
        let rootPath = Array(share.path.utf8)
        // The share's own directory and its entries, here.
        var top = Walk(fixer: self, rootDev: rst.st_dev, prefix: rootPath, report: Report(share: share.name, path: share.path))
        top.stack = [Frame(fd: rootFD, dev: rst.st_dev, ino: rst.st_ino, name: [0])]
        top.processDirectory(frame: 0, st: rst)
        let subdirs = top.stack[0].pending
        top.stack[0].pending = []

        // Its subdirectories, walked by a few threads at once: the work is
        // system calls on independent directories, and two walkers keep two
        // cores busy where one would wait. Each walker starts from an fd
        // opened below the share's fd and checked against the listed inode.
        let results = Results(top.report)
        let queue = WorkQueue(subdirs)
        let workers = max(1, min(workerCount, subdirs.count))
        let fixer = self
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while let (name, ino) = queue.next() {
                var path = rootPath
                path.append(UInt8(ascii: "/"))
                path += name.dropLast().map { UInt8(bitPattern: $0) }
                var walk = Walk(fixer: fixer, rootDev: rst.st_dev, prefix: path, report: Report(share: fixer.share.name, path: fixer.share.path))
                let fd = name.withUnsafeBufferPointer { SafeFS.openBeneath(rootFD, $0.baseAddress!, flags: O_RDONLY | O_DIRECTORY, noXDev: true) }
                if fd < 0 {
                    walk.skip(PermissionFixer.escape(path), Walk.openFailure(errno, directory: true))
                } else if let st = SafeFS.fstat(fd), SafeFS.isDirectory(st), st.st_ino == ino, st.st_dev == rst.st_dev {
                    walk.stack = [Frame(fd: fd, dev: st.st_dev, ino: st.st_ino, name: [0])]
                    walk.openCount = 1
                    walk.processDirectory(frame: 0, st: st)
                    walk.loop()
                } else {
                    close(fd)
                    walk.skip(PermissionFixer.escape(path), "replaced while the walk ran (not the directory listed); left alone")
                }
                results.add(walk.report)
            }
        }
        var report = results.total
        report.skipped.sort { $0.path < $1.path }
        return report
    }

    /// Threads for the walk: the CPUs, at most 4 (beyond that the disk, not the CPU, limits).
    public var workerCount = min(4, ProcessInfo.processInfo.activeProcessorCount)

    final class WorkQueue: Sendable {
        private let items: Mutex<[([CChar], ino_t)]>
        init(_ items: [([CChar], ino_t)]) { self.items = Mutex(items) }
        func next() -> ([CChar], ino_t)? { items.withLock { $0.popLast() } }
    }

    final class Results: Sendable {
        private let sum: Mutex<Report>
        init(_ r: Report) { sum = Mutex(r) }
        var total: Report { sum.withLock { $0 } }
        func add(_ r: Report) {
            sum.withLock { total in
                total.checked += r.checked
                total.changed += r.changed
                total.groupChanged += r.groupChanged
                total.modeChanged += r.modeChanged
                total.aclChanged += r.aclChanged
                total.setidCleared += r.setidCleared
                total.reopened += r.reopened
                total.skipped += r.skipped
            }
        }
    }

    struct Walk {
        let fixer: PermissionFixer
        let rootDev: dev_t
        /// Path bytes of frame 0.
        let prefix: [UInt8]
        var report: Report
        var stack: [Frame] = []
        var openCount = 0

        mutating func skip(_ path: String, _ reason: String) {
            report.skipped.append(Skip(path: path, reason: reason))
        }

        /// Display path of frame `k` (joined from the names on the stack), plus an optional child.
        func path(_ k: Int, _ child: UnsafePointer<CChar>? = nil) -> String {
            var bytes = prefix
            if k >= 1 {
                for f in stack[1...k] { bytes.append(UInt8(ascii: "/")); bytes += f.name.dropLast().map { UInt8(bitPattern: $0) } }
            }
            if let child {
                bytes.append(UInt8(ascii: "/"))
                bytes += UnsafeBufferPointer(start: child, count: strlen(child)).map { UInt8(bitPattern: $0) }
            }
            return PermissionFixer.escape(bytes)
        }

        mutating func loop() {
            while let top = stack.indices.last {
                if stack[top].pending.isEmpty {
                    if stack[top].fd >= 0 { close(stack[top].fd); openCount -= 1 }
                    stack.removeLast()
                    continue
                }
                guard ensureOpen(top) else { continue }
                let (name, ino) = stack[top].pending.removeLast()
                let pfd = stack[top].fd
                let cfd = name.withUnsafeBufferPointer { SafeFS.openBeneath(pfd, $0.baseAddress!, flags: O_RDONLY | O_DIRECTORY, noXDev: true) }
                if cfd < 0 {
                    let e = errno
                    name.withUnsafeBufferPointer { skip(path(top, $0.baseAddress!), Self.openFailure(e, directory: true)) }
                    continue
                }
                guard let st = SafeFS.fstat(cfd), SafeFS.isDirectory(st), st.st_ino == ino, st.st_dev == rootDev else {
                    close(cfd)
                    name.withUnsafeBufferPointer { skip(path(top, $0.baseAddress!), "replaced while the walk ran (not the directory listed); left alone") }
                    continue
                }
                // A frame with nothing else to visit never needs its fd again.
                if stack[top].pending.isEmpty && top != 0 {
                    close(stack[top].fd); stack[top].fd = -1; openCount -= 1
                }
                stack.append(Frame(fd: cfd, dev: st.st_dev, ino: st.st_ino, name: name))
                openCount += 1
                processDirectory(frame: stack.count - 1, st: st)
                trimWindow()
            }
        }

        /// Closes the fds of the shallowest frames (never the root's, never the top's) beyond `maxOpen`.
        mutating func trimWindow() {
            var i = 1
            while openCount > fixer.maxOpen && i < stack.count - 1 {
                if stack[i].fd >= 0 { close(stack[i].fd); stack[i].fd = -1; openCount -= 1 }
                i += 1
            }
        }

        /// Reopens frame `k` (and any closed frames between it and the nearest
        /// open ancestor), checking each level's (dev, ino). On a mismatch
        /// the frames from there down are abandoned and reported.
        mutating func ensureOpen(_ k: Int) -> Bool {
            if stack[k].fd >= 0 { return true }
            var j = k - 1
            while stack[j].fd < 0 { j -= 1 }
            for m in (j + 1)...k {
                let pfd = stack[m - 1].fd
                let fd = stack[m].name.withUnsafeBufferPointer {
                    SafeFS.openBeneath(pfd, $0.baseAddress!, flags: O_RDONLY | O_DIRECTORY, noXDev: true)
                }
                let st = fd >= 0 ? SafeFS.fstat(fd) : nil
                if fd < 0 || st?.st_ino != stack[m].ino || st?.st_dev != stack[m].dev {
                    if fd >= 0 { close(fd) }
                    skip(path(m), "moved or replaced while the walk ran; the rest of it was left alone")
                    for x in m...k { stack[x].pending = [] }
                    return false
                }
                stack[m].fd = fd
                openCount += 1
                report.reopened += 1
            }
            trimWindow()
            return true
        }

        static func openFailure(_ e: Int32, directory: Bool) -> String {
            switch e {
            case ELOOP: "became a symbolic link while the walk ran; not followed"
            case EXDEV: "is on another file system (a mount point); not entered"
            case ENOENT: "disappeared while the walk ran"
            case ENOTDIR: "is no longer a directory; left alone"
            case ENOSYS: "cannot be opened safely: this kernel has no openat2 (Linux \(Kernel.openat2Since)+); left alone"
            default: "cannot be opened safely (\(Errno(e))); left alone"
            }
        }

        /// Fixes directory `frame` itself, then checks every entry in it:
        /// files are fixed at once, subdirectories queued.
        mutating func processDirectory(frame k: Int, st: stat) {
            let fd = stack[k].fd
            report.checked += 1
            fixDirectory(fd: fd, st: st, frame: k)

            let dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)
            guard dupfd >= 0, let dir = fdopendir(dupfd) else {
                if dupfd >= 0 { close(dupfd) }
                skip(path(k), "cannot be listed (\(Errno.current)); its contents were left alone")
                return
            }
            defer { closedir(dir) }
            var est = stat()
            while let ent = readdir(dir) {
                let handled: Void? = withUnsafePointer(to: &ent.pointee.d_name) { raw in
                    raw.withMemoryRebound(to: CChar.self, capacity: 256) { name in
                        if name[0] == 46 && (name[1] == 0 || (name[1] == 46 && name[2] == 0)) { return () }
                        report.checked += 1
                        if report.checked & 0x1fff == 0 { fixer.progress?(report.checked) }
                        guard fstatat(fd, name, &est, AT_SYMLINK_NOFOLLOW) == 0 else {
                            skip(path(k, name), "disappeared while the walk ran")
                            return ()
                        }
                        if est.st_dev != rootDev {
                            skip(path(k, name), "is a mount point (another file system); not entered")
                            return ()
                        }
                        switch est.st_mode & S_IFMT {
                        case S_IFDIR:
                            stack[k].pending.append((Array(UnsafeBufferPointer(start: name, count: strlen(name) + 1)), est.st_ino))
                        case S_IFREG:
                            fixFile(dirfd: fd, name: name, st: est, frame: k)
                        case S_IFLNK:
                            skip(path(k, name), "symbolic link; never followed or changed")
                        case S_IFIFO:
                            skip(path(k, name), "FIFO; skipped")
                        case S_IFSOCK:
                            skip(path(k, name), "socket; skipped")
                        case S_IFCHR, S_IFBLK:
                            skip(path(k, name), "device node; skipped")
                        default:
                            skip(path(k, name), "unknown file type; skipped")
                        }
                        return ()
                    }
                }
                _ = handled
            }
        }

        mutating func fixDirectory(fd: Int32, st: stat, frame k: Int) {
            if case .handBack(let from) = fixer.policy {
                let display = path(k)
                handBack(fd: fd, st: st, from: from, directory: true, display: display)
                return
            }
            var changed = false
            let current = st.st_mode & 0o7777
            var mode = current
            if st.st_gid != fixer.gid {
                // The mode goes down first (to what both modes allow), then the
                // group changes: the shared group never holds, even for a moment,
                // what the old mode gave the old group.
                let lowered = current & fixer.dirMode & ~mode_t(0o6000)
                if lowered != current {
                    guard cs_fchmod_fd(fd, lowered) == 0 else { skip(path(k), "cannot change its mode (\(SafeFS.modeErrorText(errno)))"); return }
                    mode = lowered
                }
                guard fchownat(fd, "", uid_t.max, fixer.gid, SafeFS.AT_EMPTY_PATH) == 0 else {
                    skip(path(k), "cannot change its group (\(Errno.current))")
                    return
                }
                report.groupChanged += 1
                changed = true
            }
            if mode != fixer.dirMode {
                if cs_fchmod_fd(fd, fixer.dirMode) == 0 {
                    if current != fixer.dirMode { report.modeChanged += 1 }
                    changed = true
                } else {
                    skip(path(k), "cannot change its mode (\(SafeFS.modeErrorText(errno)))")
                }
            }
            if fixer.writable {
                if !ACL.hasRWDefault(fd: fd, gid: fixer.gid) {
                    do { try ACL.setRWDefault(fd: fd, gid: fixer.gid, display: path(k)); report.aclChanged += 1; changed = true }
                    catch { skip(path(k), "cannot set its default ACL (\(Errno.current))") }
                }
            } else if ACL.hasDefault(fd: fd) {
                do { try ACL.removeDefault(fd: fd, display: path(k)); report.aclChanged += 1; changed = true }
                catch { skip(path(k), "cannot remove its default ACL (\(Errno.current))") }
            }
            if changed { report.changed += 1 }
        }

        mutating func fixFile(dirfd: Int32, name: UnsafePointer<CChar>, st: stat, frame k: Int) {
            let want = fixer.fileMode(st.st_mode)
            // Handing back must look at every file's ACL, which lstat cannot show.
            if fixer.policy == .share && st.st_gid == fixer.gid && st.st_mode & 0o7777 == want { return }
            if st.st_nlink > 1 {
                skip(path(k, name), "has \(st.st_nlink) hard links (one may be outside the share); left alone")
                return
            }
            // Open what we are about to change, without following anything,
            // and make sure it is the entry we looked at.
            let fd = cs_openat2(dirfd, name, UInt64(SafeFS.O_PATH | O_NOFOLLOW | O_CLOEXEC), 0,
                                CS_RESOLVE_BENEATH | CS_RESOLVE_NO_SYMLINKS | CS_RESOLVE_NO_XDEV | CS_RESOLVE_NO_MAGICLINKS)
            if fd < 0 {
                skip(path(k, name), Self.openFailure(errno, directory: false))
                return
            }
            defer { close(fd) }
            guard let now = SafeFS.fstat(fd), now.st_dev == st.st_dev, now.st_ino == st.st_ino, SafeFS.isRegular(now) else {
                skip(path(k, name), "replaced while the walk ran (not the file listed); left alone")
                return
            }
            if now.st_nlink > 1 {
                skip(path(k, name), "has \(now.st_nlink) hard links (one may be outside the share); left alone")
                return
            }
            if case .handBack(let from) = fixer.policy {
                let display = path(k, name)
                handBack(fd: fd, st: now, from: from, directory: false, display: display)
                return
            }
            let current = now.st_mode & 0o7777
            var mode = current
            if now.st_gid != fixer.gid {
                // Mode down first, then the group (see fixDirectory): a 0660
                // file moved into a read-only share is never the sandbox's to
                // write, not even between the two calls.
                let lowered = current & want & ~mode_t(0o6000)
                if lowered != current {
                    guard cs_fchmod_fd(fd, lowered) == 0 else {
                        skip(path(k, name), "cannot change its mode (\(SafeFS.modeErrorText(errno)))")
                        return
                    }
                    mode = lowered
                }
                guard fchownat(fd, "", uid_t.max, fixer.gid, SafeFS.AT_EMPTY_PATH) == 0 else {
                    skip(path(k, name), "cannot change its group (\(Errno.current))")
                    return
                }
                report.groupChanged += 1
            }
            if now.st_mode & 0o6000 != 0 { report.setidCleared += 1 }
            // chown only ever clears setuid/setgid, which neither `lowered`
            // nor `want` has: `mode` is what the file has now.
            if mode != want {
                guard cs_fchmod_fd(fd, want) == 0 else {
                    skip(path(k, name), "cannot change its mode (\(SafeFS.modeErrorText(errno)))")
                    return
                }
            }
            if current != want { report.modeChanged += 1 }
            report.changed += 1
        }

        /// `.handBack(from:)` on one opened, re-checked entry: group `from`
        /// becomes `fixer.gid`; ACL entries naming `from` go.
        mutating func handBack(fd: Int32, st: stat, from: gid_t, directory: Bool, display: String) {
            var changed = false
            if st.st_gid == from {
                guard fchownat(fd, "", uid_t.max, fixer.gid, SafeFS.AT_EMPTY_PATH) == 0 else {
                    skip(display, "cannot change its group (\(Errno.current))")
                    return
                }
                report.groupChanged += 1
                changed = true
            }
            switch ACL.dropGroup(fd: fd, gid: from, directory: directory) {
            case .some(true): report.aclChanged += 1; changed = true
            case .some(false): break
            case nil: skip(display, "cannot remove the ACL entries naming gid \(from) (\(Errno.current))")
            }
            if changed { report.changed += 1 }
        }
    }

    /// A path (or a line of a log) for humans and JSON: valid UTF-8 stays; control characters,
    /// backslashes and bytes that are not UTF-8 become escapes (`\n`, `\xff`),
    /// so a name with a newline cannot forge an extra output line.
    public static func escape(_ bytes: [UInt8]) -> String {
        var out = ""
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\\") { out += "\\\\"; i += 1; continue }
            if b == 10 { out += "\\n"; i += 1; continue }
            if b == 9 { out += "\\t"; i += 1; continue }
            if b < 0x20 || b == 0x7f { out += "\\x" + Format.hex(b); i += 1; continue }
            if b < 0x80 { out.unicodeScalars.append(Unicode.Scalar(b)); i += 1; continue }
            // A multi-byte sequence: keep it when it decodes, else escape one byte.
            // C1 controls (U+0080-U+009F, e.g. U+009B, a one-character CSI on
            // some terminals) are escaped like C0 ones.
            let len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1
            if b == 0xc2, i + 1 < bytes.count, bytes[i + 1] < 0xa0 { out += "\\x" + Format.hex(b); i += 1; continue }
            if len > 1, i + len <= bytes.count, let s = String(validating: bytes[i..<(i + len)], as: UTF8.self) {
                out += s
                i += len
            } else {
                out += "\\x" + Format.hex(b)
                i += 1
            }
        }
        return out
    }
}
