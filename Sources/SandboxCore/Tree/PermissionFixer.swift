import Dispatch
import FoundationEssentials
import Glibc
import Synchronization
import SandboxOS
import SandboxConfig

/// `fix-permissions`: re-applies group, modes, setgid and the default ACL
/// across one share. It runs as root over a tree the sandbox user can write,
/// so it walks with `SafeFS.walk` (openat2 RESOLVE_BENEATH|NO_SYMLINKS|
/// NO_XDEV from the share's fd, (dev, ino) re-checked, bounded fds, no depth
/// limit; see Tree/Walker.swift), and on top of that:
///
/// - Every entry is lstat'ed through its directory fd by the walk. Entries
///   already right cost that one call and nothing else. Only what must
///   change is opened (O_PATH, `WalkEntry.open`) and refused when (dev, ino,
///   type) differ from the lstat: the entry was swapped between the two looks.
/// - Symlinks are never followed or changed; FIFOs, sockets and devices are
///   skipped; regular files with more than one link are skipped (a hard link
///   can name a file outside the share; fs.protected_hardlinks stops the
///   sandbox from making one to a file it cannot write, this stops the rest);
///   an entry on another device (a mount point) is skipped and never entered.
/// - Files lose setuid/setgid; changes go through fchownat(fd, "",
///   AT_EMPTY_PATH), fchmodat2(fd, "", AT_EMPTY_PATH) (before Linux 6.6:
///   chmod of /proc/self/fd/N, as systemd's fchmod_opath) and acl_set_file on
///   /proc/self/fd/N. When the group changes, the mode is lowered first.
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
        guard SafeFS.fstat(rootFD) != nil else { throw SandboxError.failure("cannot stat \(share.path): \(Errno.current)") }
        // The share's subdirectories are walked by a few threads at once: the
        // work is system calls on independent directories, and two walkers
        // keep two cores busy where one would wait.
        let policy = SafeFS.WalkPolicy(visits: .regular, hardLinks: false, maxOpen: maxOpen)
        let fixer = self
        let (visitors, stats) = SafeFS.walk(rootFD, policy: policy, workers: workerCount) {
            Walk(fixer: fixer, prefix: Array(fixer.share.path.utf8), report: Report(share: fixer.share.name, path: fixer.share.path))
        }
        var report = Report(share: share.name, path: share.path)
        for v in visitors {
            let r = v.report
            report.checked += r.checked
            report.changed += r.changed
            report.groupChanged += r.groupChanged
            report.modeChanged += r.modeChanged
            report.aclChanged += r.aclChanged
            report.setidCleared += r.setidCleared
            report.skipped += r.skipped
        }
        report.reopened = stats.reopened
        report.skipped.sort { $0.path < $1.path }
        return report
    }

    /// Threads for the walk: the CPUs, at most 4 (beyond that the disk, not the CPU, limits).
    public var workerCount = min(4, ProcessInfo.processInfo.activeProcessorCount)

    /// One thread's part of the walk: fixes what the walk passes on, counts, notes what it skipped.
    struct Walk: WalkVisitor, Sendable {
        let fixer: PermissionFixer
        /// Path bytes of the share.
        let prefix: [UInt8]
        var report: Report

        mutating func skip(_ path: String, _ reason: String) {
            report.skipped.append(Skip(path: path, reason: reason))
        }

        /// Display path of `rel` (relative to the share).
        func display(_ rel: [UInt8]) -> String {
            Format.escape(rel.isEmpty ? prefix : prefix + [UInt8(ascii: "/")] + rel)
        }

        mutating func count() {
            report.checked += 1
            if report.checked & 0x1fff == 0 { fixer.progress?(report.checked) }
        }

        mutating func enter(_ dir: SafeFS.WalkEntry) -> Bool {
            report.checked += 1
            fixDirectory(dir)
            return true
        }

        mutating func include(_ dir: SafeFS.WalkEntry) -> Bool {
            count()
            return true
        }

        mutating func visit(_ entry: SafeFS.WalkEntry) {
            count()
            fixFile(entry)
        }

        mutating func skipped(_ path: [UInt8], _ why: SafeFS.WalkSkip) {
            switch why {
            case .symlink, .fifo, .socket, .device, .unknownType, .mountPoint: count()
            default: break
            }
            skip(display(path), Self.reason(why))
        }

        /// The walk's reasons in this command's words.
        static func reason(_ why: SafeFS.WalkSkip) -> String {
            switch why {
            case .hardLinked(let n): "has \(n) hard links (one may be outside the share); left alone"
            case .becameSymlink: "became a symbolic link while the walk ran; not followed"
            default: why.description
            }
        }

        mutating func fixDirectory(_ dir: SafeFS.WalkEntry) {
            let fd = dir.fd, st = dir.st
            if case .handBack(let from) = fixer.policy {
                handBack(fd: fd, st: st, from: from, directory: true, display: display(dir.path))
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
                    guard SafeFS.fchmod(fd, lowered) == 0 else { skip(display(dir.path), "cannot change its mode (\(SafeFS.modeErrorText(errno)))"); return }
                    mode = lowered
                }
                guard fchownat(fd, "", uid_t.max, fixer.gid, SafeFS.AT_EMPTY_PATH) == 0 else {
                    skip(display(dir.path), "cannot change its group (\(Errno.current))")
                    return
                }
                report.groupChanged += 1
                changed = true
            }
            if mode != fixer.dirMode {
                if SafeFS.fchmod(fd, fixer.dirMode) == 0 {
                    if current != fixer.dirMode { report.modeChanged += 1 }
                    changed = true
                } else {
                    skip(display(dir.path), "cannot change its mode (\(SafeFS.modeErrorText(errno)))")
                }
            }
            if fixer.writable {
                if !ACL.hasRWDefault(fd: fd, gid: fixer.gid) {
                    do { try ACL.setRWDefault(fd: fd, gid: fixer.gid, display: display(dir.path)); report.aclChanged += 1; changed = true }
                    catch { skip(display(dir.path), "cannot set its default ACL (\(Errno.current))") }
                }
            } else if ACL.hasDefault(fd: fd) {
                do { try ACL.removeDefault(fd: fd, display: display(dir.path)); report.aclChanged += 1; changed = true }
                catch { skip(display(dir.path), "cannot remove its default ACL (\(Errno.current))") }
            }
            if changed { report.changed += 1 }
        }

        mutating func fixFile(_ entry: SafeFS.WalkEntry) {
            let st = entry.st
            let want = fixer.fileMode(st.st_mode)
            // Handing back must look at every file's ACL, which lstat cannot show.
            if fixer.policy == .share && st.st_gid == fixer.gid && st.st_mode & 0o7777 == want { return }
            if st.st_nlink > 1 {
                skip(display(entry.path), Self.reason(.hardLinked(links: UInt64(st.st_nlink))))
                return
            }
            // Open what we are about to change, without following anything,
            // and make sure it is the entry we looked at (and still has one link).
            let fd: Int32
            let now: stat
            switch entry.open() {
            case .success(let o): (fd, now) = o
            case .failure(let why):
                skip(display(entry.path), why == .replaced ? "replaced while the walk ran (not the file listed); left alone" : Self.reason(why))
                return
            }
            defer { close(fd) }
            if case .handBack(let from) = fixer.policy {
                handBack(fd: fd, st: now, from: from, directory: false, display: display(entry.path))
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
                    guard SafeFS.fchmod(fd, lowered) == 0 else {
                        skip(display(entry.path), "cannot change its mode (\(SafeFS.modeErrorText(errno)))")
                        return
                    }
                    mode = lowered
                }
                guard fchownat(fd, "", uid_t.max, fixer.gid, SafeFS.AT_EMPTY_PATH) == 0 else {
                    skip(display(entry.path), "cannot change its group (\(Errno.current))")
                    return
                }
                report.groupChanged += 1
            }
            if now.st_mode & 0o6000 != 0 { report.setidCleared += 1 }
            // chown only ever clears setuid/setgid, which neither `lowered`
            // nor `want` has: `mode` is what the file has now.
            if mode != want {
                guard SafeFS.fchmod(fd, want) == 0 else {
                    skip(display(entry.path), "cannot change its mode (\(SafeFS.modeErrorText(errno)))")
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
}
