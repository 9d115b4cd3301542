import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// Lists a share without following anything: every directory is opened
/// relative to its parent's fd with O_NOFOLLOW|O_DIRECTORY, every entry is
/// lstat'ed with fstatat(AT_SYMLINK_NOFOLLOW) and nothing else is opened. A
/// FIFO named `x.safetensors` is therefore never opened (no hang), a symlink
/// to /dev/zero is never followed, and a directory swapped for a symlink
/// mid-walk fails with ELOOP instead of leading out of the share. The cost is
/// one getdents per directory and one fstatat per entry: this is what makes a
/// no-op verify cheap.
public final class ShareWalk: @unchecked Sendable {
    public struct File: Sendable {
        /// Path relative to the share root, '/'-separated.
        public var path: String
        /// The open directory it lies in (owned by the walk; valid until `close()`).
        public var dirFD: Int32
        /// Where the name starts in `path` (kept as an offset: one string
        /// per file instead of two, for the no-op verify's sake).
        var nameStart: Int
        public var stamp: FileStamp
        /// The name inside `dirFD`.
        public var name: String { String(path.utf8.dropFirst(nameStart))! }
    }

    public struct Other: Sendable, Equatable {
        public var path: String
        public var kind: String
        /// For a symlink: what it points to (never followed).
        public var target: String?
    }

    public private(set) var files: [File] = []
    public private(set) var others: [Other] = []
    /// Entries that could not be opened, listed or stat'ed: path and why.
    public private(set) var unreadable: [(path: String, why: String)] = []
    private var dirFDs: [Int32] = []

    /// Walks the directory `rootPath` (its last component must not be a
    /// symlink) with `workers` threads, a directory at a time each: the cost
    /// is one fstatat per entry, so on a no-op verify the walk is the work.
    /// `sorted` orders `files` and `others` by path (record wants that; a
    /// verify matching by path does not).
    public init(rootPath: String, sorted: Bool = true, workers: Int = FileHasher.defaultWorkers) throws {
        ShareWalk.raiseOpenFileLimit()
        let fd = open(rootPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw SandboxError.failure("cannot open the models share \(rootPath): \(Errno.current)",
                                       hint: "it must be a directory (not a symlink); run `comfy-sandbox provision` to create it")
        }
        let queue = Queue(root: fd)
        let parts = PartBox(count: max(1, workers))
        DispatchQueue.concurrentPerform(iterations: max(1, workers)) { w in
            var part = Part()
            while let (dirFD, prefix) = queue.next() {
                let subdirs = ShareWalk.list(fd: dirFD, prefix: prefix, into: &part)
                queue.finished(adding: subdirs)
            }
            parts.set(w, part)
        }
        dirFDs = queue.allFDs
        for part in parts.values {
            files += part.files
            others += part.others
            unreadable += part.unreadable
        }
        if sorted {
            files.sort { $0.path < $1.path }
            others.sort { $0.path < $1.path }
        }
    }

    deinit { close() }

    /// The fd of the share root, open for the walk's lifetime.
    public var rootFD: Int32 { dirFDs.first ?? -1 }

    public func close() {
        for fd in dirFDs { _ = Glibc.close(fd) }
        dirFDs = []
    }

    struct Part {
        var files: [File] = []
        var others: [Other] = []
        var unreadable: [(path: String, why: String)] = []
    }

    final class PartBox: Sendable {
        private let parts: Mutex<[Part]>
        init(count: Int) { parts = Mutex(Array(repeating: Part(), count: count)) }
        var values: [Part] { parts.withLock { $0 } }
        func set(_ i: Int, _ p: Part) { parts.withLock { $0[i] = p } }
    }

    /// Directories waiting to be listed; a worker that finds none waits
    /// while others are still listing (they may add more).
    final class Queue: @unchecked Sendable {
        private let cond = Condition()
        private var pending: [(Int32, String)]
        private var busy = 0
        private(set) var allFDs: [Int32]
        init(root: Int32) {
            pending = [(root, "")]
            allFDs = [root]
        }
        func next() -> (Int32, String)? {
            cond.lock(); defer { cond.unlock() }
            while pending.isEmpty {
                if busy == 0 { return nil }
                cond.wait()
            }
            busy += 1
            return pending.removeLast()
        }
        func finished(adding dirs: [(Int32, String)]) {
            cond.lock(); defer { cond.unlock() }
            busy -= 1
            pending += dirs
            allFDs += dirs.map(\.0)
            cond.broadcast()
        }
    }

    /// Lists one directory: files and others into `part`, subdirectories
    /// (opened O_NOFOLLOW) returned.
    static func list(fd: Int32, prefix: String, into part: inout Part) -> [(Int32, String)] {
        // fdopendir takes ownership of the fd it gets: give it a duplicate so
        // `fd` stays open for the hashing that follows.
        let dupFD = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard dupFD >= 0, let dir = fdopendir(dupFD) else {
            let e = Errno.current
            if dupFD >= 0 { _ = Glibc.close(dupFD) }
            part.unreadable.append((prefix.isEmpty ? "." : prefix, "cannot list: \(e)"))
            return []
        }
        defer { closedir(dir) }
        var subdirs: [(Int32, String)] = []
        while true {
            errno = 0
            guard let ent = readdir(dir) else {
                if errno != 0 { part.unreadable.append((prefix.isEmpty ? "." : prefix, "cannot list: \(Errno.current)")) }
                break
            }
            let name = entryName(ent)
            if name == "." || name == ".." { continue }
            let path = prefix.isEmpty ? name : prefix + "/" + name
            // A directory per d_type is opened straight away (O_NOFOLLOW: if it
            // was swapped for a symlink meanwhile, this fails and the fstatat
            // below classifies what is there now).
            if ent.pointee.d_type == UInt8(DT_DIR) {
                let sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if sub >= 0 {
                    subdirs.append((sub, path))
                    continue
                }
            }
            var st = stat()
            guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                part.unreadable.append((path, "cannot stat: \(Errno.current)"))
                continue
            }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                part.files.append(File(path: path, dirFD: fd, nameStart: path.utf8.count - name.utf8.count, stamp: FileStamp(st)))
            case S_IFDIR:
                let sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard sub >= 0 else {
                    part.unreadable.append((path, "cannot open directory: \(Errno.current)"))
                    continue
                }
                subdirs.append((sub, path))
            case S_IFLNK:
                part.others.append(Other(path: path, kind: "symlink", target: ShareWalk.readLink(fd, name)))
            default:
                part.others.append(Other(path: path, kind: FileKind.name(st.st_mode), target: nil))
            }
        }
        return subdirs
    }

    static func readLink(_ dirFD: Int32, _ name: String) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlinkat(dirFD, name, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Every directory stays open until hashing ends (files are opened
    /// relative to them): lift the soft fd limit to the hard one.
    static func raiseOpenFileLimit() {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0, rl.rlim_cur < rl.rlim_max else { return }
        rl.rlim_cur = rl.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    }
}
