import FoundationEssentials
import Glibc
import SandboxOS

/// The state lock (`state_dir/lock`), held with flock(2) by every command that
/// changes state. A second one waits (up to `timeout`) or fails with a message
/// saying who holds it. The kernel drops the lock when the process dies, so a
/// killed command never leaves it stuck.
public final class StateLock: @unchecked Sendable {
    public let path: String
    private var fd: Int32 = -1

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { release() }

    public func release() {
        if fd >= 0 {
            _ = flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }

    /// Takes the lock, creating `state_dir` (root, 0755) and the lock file
    /// (root, 0600) when missing. `timeout` nil waits forever, 0 fails at once.
    public static func acquire(stateDir: String, command: String, timeout: Double? = 600,
                               onWait: ((String) -> Void)? = nil) throws -> StateLock {
        try StateDirectory.ensure(stateDir)
        let path = stateDir + "/lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw SandboxError.failure("cannot open the state lock \(path): \(Errno.current)",
                                       hint: "state_dir must be a directory owned by root; run as root")
        }
        var announced = false
        let start = Date()
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            if e == EINTR { continue }
            guard e == EWOULDBLOCK else {
                close(fd)
                throw SandboxError.failure("cannot lock \(path): \(Errno(e))")
            }
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingWhitespaceAndNewlines() ?? ""
            if let timeout, Date().timeIntervalSince(start) >= timeout {
                close(fd)
                throw SandboxError.failure("another comfy-sandbox command holds the state lock \(path)" + (holder.isEmpty ? "" : " (\(holder))"),
                                           hint: "wait for it to finish and run this again")
            }
            if !announced {
                onWait?("waiting for another comfy-sandbox command to finish" + (holder.isEmpty ? "" : " (\(holder))") + "...")
                announced = true
            }
            usleep(50_000)
        }
        // Say who holds it, for the message a waiting command prints.
        let note = "pid \(getpid()): \(command)\n"
        _ = ftruncate(fd, 0)
        _ = note.withCString { pwrite(fd, $0, strlen($0), 0) }
        return StateLock(path: path, fd: fd)
    }
}

/// `state_dir` and its subdirectories: root-owned, 0755, never writable by the sandbox.
public enum StateDirectory {
    public static func ensure(_ dir: String) throws {
        if FileManager.default.fileExists(atPath: dir) {
            var st = stat()
            guard lstat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
                throw SandboxError.failure("state_dir \(dir) exists but is not a directory", hint: "move it away or choose another state_dir")
            }
            if st.st_uid != 0 || (st.st_mode & 0o022) != 0 {
                if geteuid() == 0 {
                    try SafeFS.setOwnerAndMode(dir, uid: 0, gid: 0, mode: 0o755)
                }
            }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        } catch {
            throw SandboxError.failure("cannot create state_dir \(dir): \(fileErrorText(error))", hint: "run as root")
        }
        try SafeFS.setMode(dir, 0o755)
    }
}
