import CSandbox
import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// The one tree walker for trees the sandbox can write: fix-permissions,
/// node sealing, the models walk, tree removal and the scanner all walk
/// with it, each with its own `WalkPolicy` and `WalkVisitor`.
///
/// The rules (systemd-tmpfiles' after CVE-2017-18078, the walk that was
/// PermissionFixer's):
///
/// - It starts from a directory fd the caller trusts and never resolves a
///   path string again. Every directory below is opened relative to its
///   parent's fd with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
///   RESOLVE_NO_XDEV|RESOLVE_NO_MAGICLINKS) and O_NOFOLLOW|O_CLOEXEC, and
///   its fstat must show the (dev, ino) the listing's lstat showed, on the
///   start's file system: a directory swapped for a symlink, another
///   directory or a mount between the two looks is reported, not entered.
/// - Every entry is lstat'ed once through its directory fd (fstatat
///   AT_SYMLINK_NOFOLLOW). A visitor that must change or read an entry
///   opens it with `WalkEntry.open`, which opens it the same way and
///   re-checks (dev, ino, type), and the link count when the policy refuses
///   hard links, on the opened fd. Nothing is opened for reading without
///   O_NONBLOCK, so a FIFO never hangs the walk.
/// - Entries on another device (mount points) are never passed on or
///   entered; symlinks, FIFOs, sockets and devices are passed on only when
///   the policy asks for that kind. Everything not entered or not passed on
///   goes to the visitor's `skipped` with a `WalkSkip` saying why.
///
/// Depth and fds: the walk is iterative with an explicit stack, so a
/// 5,000-deep tree costs heap, not call stack, and there is no depth limit.
/// At most `maxOpen` directory fds are open per walk: when the stack is
/// deeper, the fds of the shallowest frames (not the start's) are closed and
/// their (dev, ino) kept. Going back up, a closed parent is reopened as `..`
/// of the child we still hold, and must have the remembered (dev, ino), else
/// the frames up to the nearest open ancestor are abandoned and reported.
/// Why `..` and not a re-walk of names from the nearest open ancestor: it
/// costs one open per level instead of one per level per reopen (a 5,000
/// chain would need 5,000 x 5,000 / 64 opens), and it is as safe as having
/// kept the fd: both refer to the directory we entered, wherever it was
/// moved since, and the (dev, ino) check makes `..` refer to nothing else.
/// We chose this over raising RLIMIT_NOFILE: the limit would have to grow
/// with a depth the sandbox chooses.
extension SafeFS {
    /// Why an entry was not entered, not passed on, or could not be opened.
    public enum WalkSkip: Error, Sendable, Equatable, CustomStringConvertible {
        case symlink
        case fifo
        case socket
        case device
        case unknownType
        /// On another file system: a mount point (or something bind-mounted).
        case mountPoint
        /// A regular file with more than one link, where the policy refuses them.
        case hardLinked(links: UInt64)
        /// Something else (another inode or type) is at the name now.
        case replaced
        /// The name became a symbolic link after it was listed.
        case becameSymlink
        case disappeared
        /// A closed ancestor could not be reopened as the directory it was.
        case moved
        case cannotStat(Int32)
        case cannotOpen(Int32)
        case cannotList(Int32)
        /// The kernel has no openat2: nothing below can be opened safely.
        case noOpenat2

        public var description: String {
            switch self {
            case .symlink: "symbolic link; never followed or changed"
            case .fifo: "FIFO; skipped"
            case .socket: "socket; skipped"
            case .device: "device node; skipped"
            case .unknownType: "unknown file type; skipped"
            case .mountPoint: "is a mount point (another file system); not entered"
            case .hardLinked(let n): "has \(n) hard links (one may be outside the tree); left alone"
            case .replaced: "replaced while the walk ran (not what was listed); left alone"
            case .becameSymlink: "became a symbolic link while the walk ran; not followed"
            case .disappeared: "disappeared while the walk ran"
            case .moved: "moved or replaced while the walk ran; the rest of it was left alone"
            case .cannotStat(let e): "cannot be examined (\(Errno(e))); left alone"
            case .cannotOpen(let e): "cannot be opened safely (\(Errno(e))); left alone"
            case .cannotList(let e): "cannot be listed (\(Errno(e))); its contents were left alone"
            case .noOpenat2: "cannot be opened safely: this kernel has no openat2 (Linux \(Kernel.openat2Since)+); left alone"
            }
        }

        /// A FIFO, socket, device or unknown type: skipped for what it is, not for what happened.
        public var isSpecialFile: Bool {
            switch self {
            case .fifo, .socket, .device, .unknownType: true
            default: false
            }
        }

        /// What an openat2 failure on a listed entry means.
        static func openFailure(_ e: Int32, wasSymlink: Bool = false) -> WalkSkip {
            switch e {
            case ELOOP: wasSymlink ? .cannotOpen(e) : .becameSymlink
            case EXDEV: .mountPoint
            case ENOENT: .disappeared
            case ENOTDIR: .replaced
            case ENOSYS: .noOpenat2
            default: .cannotOpen(e)
            }
        }
    }

    /// Kinds of non-directory entries.
    public struct WalkKinds: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let regular = WalkKinds(rawValue: 1)
        public static let symlink = WalkKinds(rawValue: 2)
        public static let fifo = WalkKinds(rawValue: 4)
        public static let socket = WalkKinds(rawValue: 8)
        public static let device = WalkKinds(rawValue: 16)
        public static let other = WalkKinds(rawValue: 32)
        public static let all: WalkKinds = [.regular, .symlink, .fifo, .socket, .device, .other]

        static func of(_ mode: mode_t) -> (WalkKinds, WalkSkip) {
            switch mode & S_IFMT {
            case S_IFREG: (.regular, .unknownType)
            case S_IFLNK: (.symlink, .symlink)
            case S_IFIFO: (.fifo, .fifo)
            case S_IFSOCK: (.socket, .socket)
            case S_IFCHR, S_IFBLK: (.device, .device)
            default: (.other, .unknownType)
            }
        }
    }

    /// What a caller wants from a walk.
    public struct WalkPolicy: Sendable {
        /// Non-directory kinds passed to `visit`; the others are reported
        /// to `skipped` (as `.symlink`, `.fifo`...) and left alone.
        public var visits: WalkKinds
        /// Whether `WalkEntry.open` accepts a regular file with more than
        /// one link (a hard link can name a file outside the tree).
        public var hardLinks: Bool
        /// `leave` after a directory's entries (removal: children first).
        public var postOrder: Bool
        /// Most directory fds one walk holds at once (at least 3).
        public var maxOpen: Int

        public init(visits: WalkKinds, hardLinks: Bool, postOrder: Bool = false, maxOpen: Int = 64) {
            self.visits = visits
            self.hardLinks = hardLinks
            self.postOrder = postOrder
            self.maxOpen = max(3, maxOpen)
        }
    }

    /// What a walk did, beyond what its visitor saw.
    public struct WalkStats: Sendable, Equatable {
        public var directories = 0
        /// Directories reopened (as `..` of a child) after their fd was closed to bound open fds.
        public var reopened = 0
        /// The most directory fds one walk held at once.
        public var peakOpen = 0

        public init() {}

        package mutating func add(_ o: WalkStats) {
            directories += o.directories
            reopened += o.reopened
            peakOpen = max(peakOpen, o.peakOpen)
        }
    }

    /// One entry as the walk sees it, valid during the call it is passed to.
    public struct WalkEntry {
        /// The open directory the entry is listed in (-1 for the start directory).
        public let dirFD: Int32
        /// For a directory in `enter`/`leave`: its own open fd; else -1.
        public let fd: Int32
        /// The name in `dirFD`, NUL-terminated, as the directory holds it (maybe not UTF-8).
        public let name: UnsafePointer<CChar>
        /// lstat of the entry (for a directory in `enter`/`leave`: fstat of `fd`).
        public let st: stat
        /// 0 for the start directory, 1 for its entries...
        public let depth: Int
        let cursor: WalkCursor
        let frame: Int
        let isFrame: Bool

        /// The path bytes relative to the walk's root ('/'-separated; empty for the root).
        public var path: [UInt8] { cursor.path(frame, isFrame ? nil : name) }
        /// The name's bytes.
        public var nameBytes: UnsafeBufferPointer<UInt8> {
            UnsafeBufferPointer(start: UnsafeRawPointer(name).assumingMemoryBound(to: UInt8.self), count: strlen(name))
        }
        public func nameIs(_ s: StaticString) -> Bool {
            strcmp(name, UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)) == 0
        }

        /// Opens the entry (O_PATH, or O_RDONLY with O_NONBLOCK|O_NOCTTY
        /// added) under `dirFD` with the walk's openat2 rules, and checks
        /// that the fd holds the entry that was listed: same (dev, ino) and
        /// type, and one link when the policy refuses hard links. The caller
        /// closes the fd.
        public func open(_ flags: Int32 = SafeFS.O_PATH) -> Result<(fd: Int32, st: stat), WalkSkip> {
            let isPath = flags & SafeFS.O_PATH == SafeFS.O_PATH
            let fd = SafeFS.openBeneath(dirFD, name, flags: isPath ? flags : flags | O_NONBLOCK | O_NOCTTY, noXDev: true)
            guard fd >= 0 else { return .failure(.openFailure(errno, wasSymlink: SafeFS.isSymlink(st))) }
            var now = stat()
            guard Glibc.fstat(fd, &now) == 0 else {
                let e = errno
                close(fd)
                return .failure(.cannotStat(e))
            }
            guard now.st_dev == st.st_dev, now.st_ino == st.st_ino, now.st_mode & S_IFMT == st.st_mode & S_IFMT else {
                close(fd)
                return .failure(.replaced)
            }
            if !cursor.policy.hardLinks && SafeFS.isRegular(now) && now.st_nlink > 1 {
                close(fd)
                return .failure(.hardLinked(links: UInt64(now.st_nlink)))
            }
            return .success((fd, now))
        }
    }

    /// Runs the walk of the directory open at `start` (borrowed: not
    /// closed), reporting paths relative to it behind `prefix`.
    @discardableResult
    public static func walk<V: WalkVisitor>(_ start: Int32, policy: WalkPolicy, prefix: [UInt8] = [], visitor: inout V) -> WalkStats {
        guard let st = fstat(start) else {
            visitor.skipped(prefix, .cannotStat(errno))
            return WalkStats()
        }
        let c = WalkCursor(policy: policy, rootDev: st.st_dev, prefix: prefix, startDepth: 0)
        c.push(fd: start, st: st, name: [0])
        c.stats.directories += 1
        let entered = c.frames[0].name.withUnsafeBufferPointer {
            visitor.enter(WalkEntry(dirFD: -1, fd: start, name: $0.baseAddress!, st: st, depth: 0, cursor: c, frame: 0, isFrame: true))
        }
        if entered { list(c, 0, &visitor) }
        run(c, &visitor)
        return c.stats
    }

    /// The walk of `start` (borrowed), its subdirectories spread over
    /// `workers` threads: the start directory is listed with the first
    /// visitor, then each thread takes a subdirectory at a time (opened
    /// beneath `start` and checked as any other) and walks it with a visitor
    /// of its own from `make`. Pre-order only. Returns every visitor.
    public static func walk<V: WalkVisitor & Sendable>(_ start: Int32, policy: WalkPolicy, workers: Int,
                                                        make: @Sendable () -> V) -> (visitors: [V], stats: WalkStats) {
        precondition(!policy.postOrder, "a parallel walk cannot visit in post-order")
        var first = make()
        guard let st = fstat(start) else {
            first.skipped([], .cannotStat(errno))
            return ([first], WalkStats())
        }
        let c = WalkCursor(policy: policy, rootDev: st.st_dev, prefix: [], startDepth: 0)
        c.push(fd: start, st: st, name: [0])
        c.stats.directories += 1
        let entered = c.frames[0].name.withUnsafeBufferPointer {
            first.enter(WalkEntry(dirFD: -1, fd: start, name: $0.baseAddress!, st: st, depth: 0, cursor: c, frame: 0, isFrame: true))
        }
        if entered { list(c, 0, &first) }
        let subdirs = c.frames[0].pending
        c.frames[0].pending = []
        var stats = c.stats
        let queue = Mutex(subdirs)
        let results = Mutex<[(V, WalkStats)]>([])
        let n = max(1, min(workers, subdirs.count))
        let rootDev = st.st_dev
        DispatchQueue.concurrentPerform(iterations: n) { _ in
            var v = make()
            var s = WalkStats()
            while let (name, ino) = queue.withLock({ $0.popLast() }) {
                let sub = WalkCursor(policy: policy, rootDev: rootDev, prefix: Array(name.dropLast().map { UInt8(bitPattern: $0) }), startDepth: 1)
                callHook(start, name)
                let fd = name.withUnsafeBufferPointer { SafeFS.openBeneath(start, $0.baseAddress!, flags: O_RDONLY | O_DIRECTORY, noXDev: true) }
                if fd < 0 {
                    v.skipped(sub.prefix, .openFailure(errno))
                    continue
                }
                guard let dst = SafeFS.fstat(fd), SafeFS.isDirectory(dst), dst.st_ino == ino, dst.st_dev == rootDev else {
                    close(fd)
                    v.skipped(sub.prefix, .replaced)
                    continue
                }
                sub.push(fd: fd, st: dst, name: [0])
                sub.stats.directories += 1
                sub.ownsStart = true
                let entered = name.withUnsafeBufferPointer {
                    v.enter(WalkEntry(dirFD: start, fd: fd, name: $0.baseAddress!, st: dst, depth: 1, cursor: sub, frame: 0, isFrame: true))
                }
                if entered { list(sub, 0, &v) }
                run(sub, &v)
                s.add(sub.stats)
            }
            results.withLock { $0.append((v, s)) }
        }
        var visitors = [first]
        for (v, s) in results.withLock({ $0 }) {
            visitors.append(v)
            stats.add(s)
        }
        return (visitors, stats)
    }

    /// `openBeneath` of a relative path of any length: one longer than
    /// PATH_MAX (a file 5,000 directories down) is opened a piece at a
    /// time, split at '/', each directory on the way opened O_PATH beneath
    /// the one before with the same rules.
    public static func openBeneath(_ dirfd: Int32, path: UnsafePointer<CChar>, flags: Int32, noXDev: Bool) -> Int32 {
        let n = strlen(path)
        let limit = Int(PATH_MAX) - 1
        if n <= limit { return openBeneath(dirfd, path, flags: flags, noXDev: noXDev) }
        var fd = dirfd
        var start = 0
        func fail(_ e: Int32) -> Int32 {
            if fd != dirfd { close(fd) }
            errno = e
            return -1
        }
        while n - start > limit {
            var cut = start + limit
            while cut > start && path[cut] != 47 { cut -= 1 }
            guard cut > start else { return fail(ENAMETOOLONG) }
            var piece = Array(UnsafeBufferPointer(start: path + start, count: cut - start))
            piece.append(0)
            let next = piece.withUnsafeBufferPointer { openBeneath(fd, $0.baseAddress!, flags: SafeFS.O_PATH | O_DIRECTORY, noXDev: noXDev) }
            guard next >= 0 else { return fail(errno) }
            if fd != dirfd { close(fd) }
            fd = next
            start = cut + 1
        }
        let r = openBeneath(fd, path + start, flags: flags, noXDev: noXDev)
        let e = errno
        if fd != dirfd { close(fd) }
        errno = e
        return r
    }

    /// Test hook: called with the directory fd and the name just before a
    /// listed subdirectory is opened (tests swap it for a symlink there).
    public static let beforeEnteringHook = Mutex<(@Sendable (Int32, UnsafePointer<CChar>) -> Void)?>(nil)
    static let hookSet = Atomic<Bool>(false)

    public static func setBeforeEnteringHook(_ hook: (@Sendable (Int32, UnsafePointer<CChar>) -> Void)?) {
        beforeEnteringHook.withLock { $0 = hook }
        hookSet.store(hook != nil, ordering: .releasing)
    }

    static func callHook(_ fd: Int32, _ name: [CChar]) {
        if hookSet.load(ordering: .acquiring), let hook = beforeEnteringHook.withLock({ $0 }) {
            name.withUnsafeBufferPointer { hook(fd, $0.baseAddress!) }
        }
    }

    /// The loop: take the next subdirectory of the top frame, open and
    /// check it, enter and list it; a frame with nothing left is finished.
    static func run<V: WalkVisitor>(_ c: WalkCursor, _ v: inout V) {
        while let top = c.frames.indices.last {
            if c.frames[top].pending.isEmpty {
                finish(c, top, &v)
                continue
            }
            let (name, ino) = c.frames[top].pending.removeLast()
            let pfd = c.frames[top].fd
            callHook(pfd, name)
            c.trim(room: 1)
            let cfd = name.withUnsafeBufferPointer { SafeFS.openBeneath(pfd, $0.baseAddress!, flags: O_RDONLY | O_DIRECTORY, noXDev: true) }
            if cfd < 0 {
                let e = errno
                name.withUnsafeBufferPointer { v.skipped(c.path(top, $0.baseAddress!), .openFailure(e)) }
                continue
            }
            guard let st = SafeFS.fstat(cfd), SafeFS.isDirectory(st), st.st_ino == ino, st.st_dev == c.rootDev else {
                close(cfd)
                name.withUnsafeBufferPointer { v.skipped(c.path(top, $0.baseAddress!), .replaced) }
                continue
            }
            c.push(fd: cfd, st: st, name: name)
            c.stats.directories += 1
            let k = top + 1
            let entered = name.withUnsafeBufferPointer {
                v.enter(WalkEntry(dirFD: pfd, fd: cfd, name: $0.baseAddress!, st: st, depth: c.startDepth + k, cursor: c, frame: k, isFrame: true))
            }
            if entered { list(c, k, &v) }
        }
    }

    /// Done with frame `k` (the top): `leave` in post-order, with its
    /// parent's fd reopened as `..` when it was closed.
    static func finish<V: WalkVisitor>(_ c: WalkCursor, _ k: Int, _ v: inout V) {
        let f = c.frames[k]
        defer { c.pop() }
        if k == 0 {
            if c.policy.postOrder && !f.abandoned {
                f.name.withUnsafeBufferPointer {
                    v.leave(WalkEntry(dirFD: -1, fd: f.fd, name: $0.baseAddress!, st: f.st, depth: c.startDepth, cursor: c, frame: 0, isFrame: true))
                }
            }
            return
        }
        if f.abandoned || f.fd < 0 { return }
        let p = k - 1
        if c.frames[p].fd < 0 && !c.frames[p].abandoned {
            c.trim(room: 1)
            let pfd = openat(f.fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if pfd >= 0, let st = SafeFS.fstat(pfd), st.st_dev == c.frames[p].dev, st.st_ino == c.frames[p].ino {
                c.frames[p].fd = pfd
                c.openCount += 1
                c.stats.reopened += 1
                c.stats.peakOpen = max(c.stats.peakOpen, c.openCount)
            } else {
                if pfd >= 0 { close(pfd) }
                c.abandon(above: p, &v)
            }
        }
        if c.policy.postOrder && !c.frames[p].abandoned {
            let pfd = c.frames[p].fd
            f.name.withUnsafeBufferPointer {
                v.leave(WalkEntry(dirFD: pfd, fd: f.fd, name: $0.baseAddress!, st: f.st, depth: c.startDepth + k, cursor: c, frame: k, isFrame: true))
            }
        }
    }

    /// Lists frame `k`: lstat of each entry; subdirectories the visitor
    /// includes are queued, other kinds passed on or reported.
    static func list<V: WalkVisitor>(_ c: WalkCursor, _ k: Int, _ v: inout V) {
        let fd = c.frames[k].fd
        let dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard dupfd >= 0, let dir = fdopendir(dupfd) else {
            let e = errno
            if dupfd >= 0 { close(dupfd) }
            v.skipped(c.path(k, nil), .cannotList(e))
            return
        }
        defer { closedir(dir) }
        let depth = c.startDepth + k + 1
        var st = stat()
        while true {
            errno = 0
            guard let ent = readdir(dir) else {
                if errno != 0 { v.skipped(c.path(k, nil), .cannotList(errno)) }
                break
            }
            withUnsafePointer(to: &ent.pointee.d_name) { raw in
                raw.withMemoryRebound(to: CChar.self, capacity: 256) { name in
                    if name[0] == 46 && (name[1] == 0 || (name[1] == 46 && name[2] == 0)) { return }
                    guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                        let e = errno
                        v.skipped(c.path(k, name), e == ENOENT ? .disappeared : .cannotStat(e))
                        return
                    }
                    let entry = WalkEntry(dirFD: fd, fd: -1, name: name, st: st, depth: depth, cursor: c, frame: k, isFrame: false)
                    if st.st_dev != c.rootDev {
                        if SafeFS.isDirectory(st), !v.include(entry) { return }
                        v.skipped(c.path(k, name), .mountPoint)
                        return
                    }
                    if SafeFS.isDirectory(st) {
                        if v.include(entry) {
                            c.frames[k].pending.append((Array(UnsafeBufferPointer(start: name, count: strlen(name) + 1)), st.st_ino))
                        }
                        return
                    }
                    let (kind, why) = WalkKinds.of(st.st_mode)
                    if c.policy.visits.contains(kind) {
                        v.visit(entry)
                    } else {
                        v.skipped(c.path(k, name), why)
                    }
                }
            }
        }
    }
}

/// What a walk calls back. One visitor per thread of a walk.
public protocol WalkVisitor {
    /// A directory, opened and checked, before its entries are listed (the
    /// start directory too, at depth 0). false leaves its entries alone.
    mutating func enter(_ dir: SafeFS.WalkEntry) -> Bool
    /// A subdirectory found while listing: false leaves it out (not
    /// entered, not reported), as the sealing leaves `.git`.
    mutating func include(_ dir: SafeFS.WalkEntry) -> Bool
    /// A non-directory entry of a kind the policy visits.
    mutating func visit(_ entry: SafeFS.WalkEntry)
    /// Post-order walks: directory `dir` is done; `dir.dirFD` is its
    /// parent's fd (-1 for the start directory), `dir.fd` its own.
    mutating func leave(_ dir: SafeFS.WalkEntry)
    /// An entry not entered or not passed on, and why; `path` is relative
    /// to the walk's root, raw bytes (`Format.escape` for display).
    mutating func skipped(_ path: [UInt8], _ why: SafeFS.WalkSkip)
}

extension WalkVisitor {
    public mutating func enter(_ dir: SafeFS.WalkEntry) -> Bool { true }
    public mutating func include(_ dir: SafeFS.WalkEntry) -> Bool { true }
    public mutating func leave(_ dir: SafeFS.WalkEntry) {}
}

/// The stack of one walk. One thread owns it.
final class WalkCursor {
    struct Frame {
        var fd: Int32
        let dev: dev_t
        let ino: ino_t
        let st: stat
        /// NUL-terminated name relative to the previous frame ([0] for the start).
        let name: [CChar]
        /// Subdirectories still to visit: name and the inode listed.
        var pending: [([CChar], ino_t)] = []
        var abandoned = false
        /// Distinguishes frames pushed at the same depth, for the path cache.
        let serial: Int
    }

    let policy: SafeFS.WalkPolicy
    let rootDev: dev_t
    /// Path bytes of frame 0 relative to the root of the whole walk.
    let prefix: [UInt8]
    let startDepth: Int
    /// Whether frame 0's fd is this cursor's to close.
    var ownsStart = false
    var frames: [Frame] = []
    var openCount = 0
    var stats = SafeFS.WalkStats()
    private var serial = 0
    private var cache: (frame: Int, serial: Int, bytes: [UInt8])?

    init(policy: SafeFS.WalkPolicy, rootDev: dev_t, prefix: [UInt8], startDepth: Int) {
        self.policy = policy
        self.rootDev = rootDev
        self.prefix = prefix
        self.startDepth = startDepth
    }

    func push(fd: Int32, st: stat, name: [CChar]) {
        serial += 1
        frames.append(Frame(fd: fd, dev: st.st_dev, ino: st.st_ino, st: st, name: name, serial: serial))
        openCount += 1
        stats.peakOpen = max(stats.peakOpen, openCount)
    }

    func pop() {
        let f = frames.removeLast()
        if f.fd >= 0 {
            openCount -= 1
            if !frames.isEmpty || ownsStart { close(f.fd) }
        }
    }

    /// Closes the fds of the shallowest frames (never the start's, never
    /// the top's) until `room` more fit under `maxOpen`.
    func trim(room: Int) {
        var i = 1
        while openCount + room > policy.maxOpen && i < frames.count - 1 {
            if frames[i].fd >= 0 {
                close(frames[i].fd)
                frames[i].fd = -1
                openCount -= 1
            }
            i += 1
        }
    }

    /// Frame `p` could not be reopened: it and the closed frames above it
    /// up to the nearest open one are given up (reported when something
    /// was still to be done in them).
    func abandon<V: WalkVisitor>(above p: Int, _ v: inout V) {
        var j = p
        var lost = policy.postOrder
        while j > 0 && frames[j].fd < 0 {
            if !frames[j].pending.isEmpty { lost = true }
            frames[j].pending = []
            frames[j].abandoned = true
            j -= 1
        }
        if lost { v.skipped(path(p, nil), .moved) }
    }

    /// Path bytes of frame `k` plus an optional child name, relative to the
    /// walk's root. Frame paths are cached for the last frame asked about
    /// (the directory being listed), so a visitor wanting every entry's path
    /// pays for the frame's once.
    func path(_ k: Int, _ child: UnsafePointer<CChar>?) -> [UInt8] {
        var bytes: [UInt8]
        func append(_ name: [CChar], to bytes: inout [UInt8]) {
            if !bytes.isEmpty { bytes.append(UInt8(ascii: "/")) }
            name.withUnsafeBytes { bytes.append(contentsOf: $0.dropLast()) }
        }
        if let cache, cache.frame == k, cache.serial == frames[k].serial {
            bytes = cache.bytes
        } else if let cache, k >= 1, cache.frame == k - 1, cache.serial == frames[k - 1].serial {
            // Going down: the parent's path was the last asked for.
            bytes = cache.bytes
            append(frames[k].name, to: &bytes)
            self.cache = (k, frames[k].serial, bytes)
        } else {
            bytes = prefix
            if k >= 1 {
                for f in frames[1...k] { append(f.name, to: &bytes) }
            }
            cache = (k, frames[k].serial, bytes)
        }
        if let child {
            if !bytes.isEmpty { bytes.append(UInt8(ascii: "/")) }
            bytes.append(contentsOf: UnsafeBufferPointer(start: UnsafeRawPointer(child).assumingMemoryBound(to: UInt8.self), count: strlen(child)))
        }
        return bytes
    }
}
