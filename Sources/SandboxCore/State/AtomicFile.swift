import FoundationEssentials
import Glibc
import SandboxOS

/// Writes a file so that a reader (or a crash) sees either the old content or
/// the new, never a mix: temp file in the same directory, fsync, rename over,
/// fsync the directory. The directory is opened once and everything happens
/// relative to its fd, so a path component swapped meanwhile cannot redirect it.
///
/// `durable: false` keeps the atomic replace but skips both fsyncs: for files
/// git itself writes that way (refs: a lock file renamed into place, which
/// git's default core.fsync leaves unsynced) and for files in a checkout still
/// being built aside. Records, manifests and state stay durable.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o644, owner: (uid_t, gid_t)? = (0, 0),
                             durable: Bool = true) throws {
        let dir = Paths.deletingLastComponent(path)
        let name = Paths.lastComponent(path)
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard dfd >= 0 else { throw SandboxError.failure("cannot open directory \(dir): \(Errno.current)") }
        defer { close(dfd) }
        try write(data, directoryFD: dfd, name: name, mode: mode, owner: owner, displayPath: path, durable: durable)
    }

    public static func write(_ data: Data, directoryFD dfd: Int32, name: String, mode: mode_t = 0o644,
                             owner: (uid_t, gid_t)? = (0, 0), displayPath: String, durable: Bool = true) throws {
        let tmp = ".\(name).tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw SandboxError.failure("cannot create \(displayPath) (temp file): \(Errno.current)") }
        var ok = false
        defer {
            if !ok { unlinkat(dfd, tmp, 0) }
        }
        do {
            defer { close(fd) }
            try data.withUnsafeBytes { raw in
                var off = 0
                while off < raw.count {
                    let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw SandboxError.failure("cannot write \(displayPath): \(Errno.current)")
                    }
                    off += n
                }
            }
            if let (uid, gid) = owner, fchown(fd, uid, gid) != 0 {
                throw SandboxError.failure("cannot set the owner of \(displayPath): \(Errno.current)")
            }
            if fchmod(fd, mode) != 0 { throw SandboxError.failure("cannot set the mode of \(displayPath): \(Errno.current)") }
            if durable, fsync(fd) != 0 { throw SandboxError.failure("cannot fsync \(displayPath): \(Errno.current)") }
        }
        guard renameat(dfd, tmp, dfd, name) == 0 else {
            throw SandboxError.failure("cannot replace \(displayPath): \(Errno.current)")
        }
        ok = true
        if durable { _ = fsync(dfd) }
    }
}
