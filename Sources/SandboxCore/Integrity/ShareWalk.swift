import Dispatch
import FoundationEssentials
import Glibc
import Synchronization
import SandboxOS

/// Lists the models share with `SafeFS.walk` (openat2 from the share's fd,
/// no symlink followed, no mount crossed, (dev, ino) re-checked, bounded
/// fds; see Tree/Walker.swift): every entry is lstat'ed through its
/// directory fd and nothing else is opened. A FIFO named `x.safetensors` is
/// therefore never opened (no hang), a symlink to /dev/zero is never
/// followed, and a directory swapped for a symlink mid-walk is reported
/// instead of leading out of the share. The cost is one getdents per
/// directory and one fstatat per entry: this is what makes a no-op verify
/// cheap.
///
/// Only the share's own fd stays open after the walk: a file is opened for
/// hashing by its relative path with openat2(RESOLVE_BENEATH|
/// RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV) from that fd (`job(for:)`), so no
/// fd per directory is held and RLIMIT_NOFILE need not grow with the share.
public final class ShareWalk: @unchecked Sendable {
    public struct File: Sendable {
        /// Path relative to the share root, '/'-separated, escaped
        /// (`Format.escape`: a name with a newline or an escape
        /// sequence cannot forge a line of the report).
        public var path: String
        /// The path as the file system holds it, NUL-terminated, when it
        /// differs from `path` (a name the escaping changed); else nil.
        var raw: [CChar]?
        public var stamp: FileStamp
    }

    public struct Other: Sendable, Equatable {
        public var path: String
        public var kind: String
        /// For a symlink: what it points to (never followed), escaped.
        public var target: String?
    }

    public private(set) var files: [File] = []
    public private(set) var others: [Other] = []
    /// Entries that could not be opened, listed or stat'ed: path and why.
    public private(set) var unreadable: [(path: String, why: String)] = []
    /// Mount points inside the share: never entered (path and why).
    public private(set) var notEntered: [(path: String, why: String)] = []
    public private(set) var stats = SafeFS.WalkStats()
    private var fd: Int32 = -1

    /// Walks the directory `rootPath` (its last component must not be a
    /// symlink) with `workers` threads, a top-level directory at a time each.
    /// `sorted` orders `files` and `others` by path (record wants that; a
    /// verify matching by path does not).
    public init(rootPath: String, sorted: Bool = true, workers: Int = FileHasher.defaultWorkers) throws {
        fd = open(rootPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw SandboxError.failure("cannot open the models share \(rootPath): \(Errno.current)",
                                       hint: "it must be a directory (not a symlink); run `comfy-sandbox provision` to create it")
        }
        // Hard links are fine here: nothing is changed, and the models
        // planner makes them (a Hugging Face cache blob linked into the share).
        let policy = SafeFS.WalkPolicy(visits: .all, hardLinks: true)
        let (parts, stats) = SafeFS.walk(fd, policy: policy, workers: max(1, workers)) { Part() }
        self.stats = stats
        for part in parts {
            files += part.files
            others += part.others
            unreadable += part.unreadable
            notEntered += part.notEntered
        }
        if sorted {
            files.sort { $0.path < $1.path }
            others.sort { $0.path < $1.path }
        }
        notEntered.sort { $0.path < $1.path }
    }

    deinit { close() }

    /// The fd of the share root, open for the walk's lifetime.
    public var rootFD: Int32 { fd }

    public func close() {
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
    }

    /// The hashing job for `f`: its path opened beneath the share's fd.
    public func job(for f: File) -> FileHasher.Job {
        FileHasher.Job(dirFD: fd, raw: f.raw ?? Array(f.path.utf8CString), size: f.stamp.size, beneath: true)
    }

    struct Part: WalkVisitor, Sendable {
        var files: [File] = []
        var others: [Other] = []
        var unreadable: [(path: String, why: String)] = []
        var notEntered: [(path: String, why: String)] = []

        mutating func visit(_ entry: SafeFS.WalkEntry) {
            let bytes = entry.path
            let plain = Format.isPlain(bytes)
            let path = plain ? String(decoding: bytes, as: UTF8.self) : Format.escape(bytes)
            switch entry.st.st_mode & S_IFMT {
            case S_IFREG:
                let raw: [CChar]? = plain || path.utf8.elementsEqual(bytes) ? nil : bytes.map { CChar(bitPattern: $0) } + [0]
                files.append(File(path: path, raw: raw, stamp: FileStamp(entry.st)))
            case S_IFLNK:
                others.append(Other(path: path, kind: "symlink", target: ShareWalk.readLink(entry.dirFD, entry.name)))
            default:
                others.append(Other(path: path, kind: FileKind.name(entry.st.st_mode), target: nil))
            }
        }

        mutating func skipped(_ path: [UInt8], _ why: SafeFS.WalkSkip) {
            let shown = path.isEmpty ? "." : Format.escape(path)
            if why == .mountPoint {
                notEntered.append((shown, "another file system (a mount point): not entered, nothing below it recorded or checked"))
            } else {
                unreadable.append((shown, why.description))
            }
        }
    }

    static func readLink(_ dirFD: Int32, _ name: String) -> String? {
        name.withCString { readLink(dirFD, $0) }
    }

    /// The target of the symlink `name` in `dirFD`, escaped.
    static func readLink(_ dirFD: Int32, _ name: UnsafePointer<CChar>) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlinkat(dirFD, name, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return Format.escape(buf[0..<n].map { UInt8(bitPattern: $0) })
    }
}
