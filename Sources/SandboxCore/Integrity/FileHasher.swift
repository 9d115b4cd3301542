import Crypto
import Dispatch
import FoundationEssentials
import Glibc
import Synchronization
import SandboxOS

/// The identity of a file's content as stat(2) sees it. When none of these
/// changed since a file was hashed, its content is trusted without reading it:
/// a rewrite that restores the mtime (touch -d) still moves the ctime, which
/// no unprivileged call can set back.
public struct FileStamp: Codable, Equatable, Sendable {
    public var dev: UInt64
    public var inode: UInt64
    public var size: Int64
    public var mtimeNs: Int64
    public var ctimeNs: Int64

    public init(dev: UInt64, inode: UInt64, size: Int64, mtimeNs: Int64, ctimeNs: Int64) {
        self.dev = dev
        self.inode = inode
        self.size = size
        self.mtimeNs = mtimeNs
        self.ctimeNs = ctimeNs
    }

    public init(_ st: stat) {
        dev = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        mtimeNs = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        ctimeNs = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
    }
}

/// SHA-256 of files: swift-crypto (BoringSSL, SHA-NI on x86-64); big files
/// mapped in 64 MiB chunks (no copy), small ones read into one reused 8 MiB
/// buffer per worker; files spread over the cores largest first.
public enum FileHasher {
    /// 8 MiB: few syscalls per GB (measured: 128 KiB to 8 MiB cost the same CPU).
    public static let bufferSize = 8 << 20

    public enum Outcome: Sendable, Equatable {
        /// Hashed; `stamp` is fstat before reading, which equals fstat after.
        case hashed(sha256: String, stamp: FileStamp)
        /// The file's stat moved while it was read (someone wrote to it).
        case changedWhileHashing(before: FileStamp, after: FileStamp)
        /// Not a regular file when opened (replaced by a FIFO, device, ...): never read.
        case notRegular(kind: String)
        /// open/read failed: the errno text.
        case unreadable(String)
    }

    /// Reads and hashes `name` relative to `dirFD`, never following a symlink
    /// and never blocking on a FIFO (O_NONBLOCK), refusing anything but a
    /// regular file once it is open. `buffer` is reused across calls.
    public static func hash(dirFD: Int32, name: String, buffer: UnsafeMutableRawBufferPointer,
                            onBytes: ((Int) -> Void)? = nil) -> (Outcome, bytesRead: Int64) {
        name.withCString { hash(dirFD: dirFD, name: $0, beneath: false, buffer: buffer, onBytes: onBytes) }
    }

    /// The same for a raw name; with `beneath`, `name` is a relative path
    /// opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV)
    /// from `dirFD` (the models walk keeps only the share's fd open).
    public static func hash(dirFD: Int32, name: UnsafePointer<CChar>, beneath: Bool, buffer: UnsafeMutableRawBufferPointer,
                            onBytes: ((Int) -> Void)? = nil) -> (Outcome, bytesRead: Int64) {
        let flags = O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC
        var fd: Int32
        if beneath {
            fd = SafeFS.openBeneath(dirFD, path: name, flags: flags, noXDev: true)
        } else {
            repeat {
                fd = openat(dirFD, name, flags)
            } while fd < 0 && errno == EINTR
        }
        guard fd >= 0 else {
            let e = Errno.current
            if e == .tooManySymbolicLinkLevels { return (.notRegular(kind: "symlink"), 0) }
            if e == .improperLink { return (.unreadable("on another file system (a mount point); not opened"), 0) }
            return (.unreadable(e.description), 0)
        }
        defer { close(fd) }
        return hash(fd: fd, buffer: buffer, onBytes: onBytes)
    }

    /// Files at least this big are read through mmap (no copy into a buffer).
    public static let mapThreshold: Int64 = 4 << 20
    /// How much is mapped at a time.
    public static let mapChunk = 64 << 20

    /// Hashes an open file descriptor from offset 0. Big files are mapped
    /// chunk by chunk (about 10% less CPU than read(): no copy), under a SIGBUS
    /// guard so a file truncated meanwhile is reported, not fatal; the rest
    /// (and anything the file grew by) is read into `buffer`.
    public static func hash(fd: Int32, buffer: UnsafeMutableRawBufferPointer, mapChunk: Int = mapChunk,
                            onBytes: ((Int) -> Void)? = nil) -> (Outcome, bytesRead: Int64) {
        var before = stat()
        guard fstat(fd, &before) == 0 else { return (.unreadable(Errno.current.description), 0) }
        guard (before.st_mode & S_IFMT) == S_IFREG else { return (.notRegular(kind: FileKind.name(before.st_mode)), 0) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        var sha = SHA256()
        var total: Int64 = 0
        // Only fully allocated files are mapped: a hole faults in the zero
        // page one 4 KiB page at a time (measured: 5x slower than read(),
        // which copies holes cheaply).
        let allocated = Int64(before.st_blocks) * 512 >= Int64(before.st_size)
        if Int64(before.st_size) >= mapThreshold, allocated, SigbusGuard.install() {
            let size = Int64(before.st_size)
            var truncated = false
            while total < size {
                let len = Int(min(Int64(mapChunk), size - total))
                guard let p = mmap(nil, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, off_t(total)),
                      p != UnsafeMutableRawPointer(bitPattern: -1) else { break }  // read() takes over
                _ = madvise(p, len, MADV_SEQUENTIAL)
                SigbusGuard.begin(p, len)
                sha.update(bufferPointer: UnsafeRawBufferPointer(start: p, count: len))
                truncated = SigbusGuard.end()
                munmap(p, len)
                if truncated { break }
                total += Int64(len)
                onBytes?(len)
            }
            if truncated {
                var after = stat()
                _ = fstat(fd, &after)
                return (.changedWhileHashing(before: FileStamp(before), after: FileStamp(after)), total)
            }
            guard lseek(fd, off_t(total), SEEK_SET) == off_t(total) else { return (.unreadable(Errno.current.description), total) }
        }
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                return (.unreadable(Errno.current.description), total)
            }
            if n == 0 { break }
            sha.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += Int64(n)
            onBytes?(n)
        }
        var after = stat()
        guard fstat(fd, &after) == 0 else { return (.unreadable(Errno.current.description), total) }
        let (b, a) = (FileStamp(before), FileStamp(after))
        // A write during the read shows as a moved size/mtime/ctime, or as a
        // byte count that is not the size we started with.
        guard a == b, total == b.size else { return (.changedWhileHashing(before: b, after: a), total) }
        return (.hashed(sha256: hex(sha.finalize()), stamp: b), total)
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// How many files to hash at once: the CPUs this process may run on.
    public static var defaultWorkers: Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// One unit of work for `hashAll`: a file relative to a directory fd that
    /// stays open for the duration.
    public struct Job: Sendable {
        public var dirFD: Int32
        /// NUL-terminated name (or, with `beneath`, relative path) as the file system holds it.
        public var name: [CChar]
        public var size: Int64
        /// Open `name` with openat2 beneath `dirFD` (no symlink, no mount crossed on the way).
        public var beneath: Bool
        public init(dirFD: Int32, name: String, size: Int64) {
            self.init(dirFD: dirFD, raw: Array(name.utf8CString), size: size, beneath: false)
        }
        public init(dirFD: Int32, raw: [CChar], size: Int64, beneath: Bool) {
            self.dirFD = dirFD
            self.name = raw
            self.size = size
            self.beneath = beneath
        }
    }

    /// Hashes every job on a bounded pool of `workers` threads, largest file
    /// first (so one big file does not start last and leave a core idle).
    /// Results come back in job order. `progress` sees every byte read.
    public static func hashAll(_ jobs: [Job], workers: Int = defaultWorkers, progress: ByteProgress? = nil,
                               bufferSize: Int = bufferSize) -> [(Outcome, bytesRead: Int64)] {
        let order = jobs.indices.sorted { jobs[$0].size > jobs[$1].size }
        let results = ResultBox(count: jobs.count)
        let n = max(1, min(workers, jobs.count))
        DispatchQueue.concurrentPerform(iterations: n) { _ in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 4096)
            defer { buffer.deallocate() }
            while let k = results.next() {
                let i = order[k]
                let r = jobs[i].name.withUnsafeBufferPointer {
                    hash(dirFD: jobs[i].dirFD, name: $0.baseAddress!, beneath: jobs[i].beneath, buffer: buffer,
                         onBytes: progress.map { p in { p.add($0) } })
                }
                progress?.fileDone()
                results.set(i, r)
            }
        }
        return results.values.map { $0! }
    }

    final class ResultBox: Sendable {
        private let state: Mutex<(cursor: Int, values: [(Outcome, bytesRead: Int64)?])>
        init(count: Int) { state = Mutex((0, Array(repeating: nil, count: count))) }
        var values: [(Outcome, bytesRead: Int64)?] { state.withLock { $0.values } }
        func next() -> Int? {
            state.withLock { s in
                guard s.cursor < s.values.count else { return nil }
                s.cursor += 1
                return s.cursor - 1
            }
        }
        func set(_ i: Int, _ v: (Outcome, bytesRead: Int64)) {
            state.withLock { $0.values[i] = v }
        }
    }
}

/// Names for st_mode file types, as reports print them.
public enum FileKind {
    public static func name(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: return "file"
        case S_IFDIR: return "directory"
        case S_IFLNK: return "symlink"
        case S_IFIFO: return "fifo"
        case S_IFSOCK: return "socket"
        case S_IFCHR: return "character device"
        case S_IFBLK: return "block device"
        default: return "unknown"
        }
    }
}

/// Bytes, rate and ETA on stderr while hashing, redrawn in place when stderr
/// is a terminal; silent otherwise (the command prints a plain summary).
public final class ByteProgress: @unchecked Sendable {
    private let counts = Mutex((bytes: Int64(0), files: 0))
    private let totalBytes: Int64
    private let totalFiles: Int
    private let label: String
    private let start = Date()
    private var timer: DispatchSourceTimer?
    private var drew = false

    public init(label: String, totalBytes: Int64, totalFiles: Int) {
        self.label = label
        self.totalBytes = totalBytes
        self.totalFiles = totalFiles
    }

    /// A progress line on stderr if it is a terminal, else nil.
    public static func onTerminal(label: String, totalBytes: Int64, totalFiles: Int) -> ByteProgress? {
        guard isatty(2) == 1, totalBytes > 0 else { return nil }
        let p = ByteProgress(label: label, totalBytes: totalBytes, totalFiles: totalFiles)
        p.startTimer()
        return p
    }

    func add(_ n: Int) {
        counts.withLock { $0.bytes += Int64(n) }
    }

    func fileDone() {
        counts.withLock { $0.files += 1 }
    }

    private func startTimer() {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "comfy-sandbox.progress"))
        t.schedule(deadline: .now() + 0.5, repeating: 0.5)
        t.setEventHandler { [weak self] in self?.draw() }
        t.resume()
        timer = t
    }

    private func draw() {
        let (b, f) = counts.withLock { ($0.bytes, $0.files) }
        let elapsed = max(Date().timeIntervalSince(start), 0.001)
        let rate = Double(b) / elapsed
        let eta = rate > 0 ? Double(totalBytes - b) / rate : 0
        let line = "\r\(label): \(Self.size(b)) / \(Self.size(totalBytes)) (\(f)/\(totalFiles) files)  \(Self.size(Int64(rate)))/s  ETA \(Self.duration(eta)) "
        printErrorRaw(line)
        drew = true
    }

    /// Stops redrawing and clears the line.
    public func finish() {
        timer?.cancel()
        timer = nil
        if drew { printErrorRaw("\r\u{1B}[K") }
    }

    public static func size(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), u = 0
        while v >= 1024, u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : Format.fixed(v, 1) + " " + units[u]
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600):\(Format.zeroPadded(t / 60 % 60, 2)):\(Format.zeroPadded(t % 60, 2))"
            : "\(t / 60):\(Format.zeroPadded(t % 60, 2))"
    }

    private func printErrorRaw(_ s: String) {
        writeAll(2, Data(s.utf8))
    }
}
