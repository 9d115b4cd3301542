import CSandbox
import Glibc

/// O_PATH: a descriptor that names an inode without opening it for I/O
/// (_GNU_SOURCE-only in fcntl.h, so Glibc's module lacks it).
public let O_PATH_FLAG: Int32 = CS_O_PATH
/// AT_EMPTY_PATH: act on the descriptor itself (linkat of an O_PATH fd).
public let AT_EMPTY_PATH_FLAG: Int32 = CS_AT_EMPTY_PATH

extension SafeFS {
    /// openat2(2)'s RESOLVE_* rules for the whole lookup.
    public struct Resolve: OptionSet, Sendable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        /// No component may leave the start directory ("..", an absolute link).
        public static let beneath = Resolve(rawValue: UInt64(CS_RESOLVE_BENEATH))
        /// No symbolic link anywhere on the way.
        public static let noSymlinks = Resolve(rawValue: UInt64(CS_RESOLVE_NO_SYMLINKS))
        /// No /proc magic link (/proc/self/fd/N, /proc/pid/root).
        public static let noMagicLinks = Resolve(rawValue: UInt64(CS_RESOLVE_NO_MAGICLINKS))
        /// No mount point crossed.
        public static let noXDev = Resolve(rawValue: UInt64(CS_RESOLVE_NO_XDEV))
    }

    /// openat2(dirfd, path, flags, resolve): the fd, or -1 with errno (ENOSYS
    /// before Linux 5.6: see `Kernel.openat2Missing`). `path` may have several
    /// components; `resolve` governs each.
    public static func openat2(_ dirfd: Int32, _ path: String, flags: Int32, resolve: Resolve) -> Int32 {
        cs_openat2(dirfd, path, UInt64(flags), 0, resolve.rawValue)
    }

    /// The mode of the inode `fd` holds, O_PATH fds too: fchmodat2(fd, "",
    /// AT_EMPTY_PATH) from Linux 6.6, else chmod of /proc/self/fd/N (as
    /// systemd's fchmod_opath). 0, or -1 with errno (ENOENT: no /proc; see
    /// `modeErrorText`).
    public static func fchmod(_ fd: Int32, _ mode: mode_t) -> Int32 { cs_fchmod_fd(fd, mode) }
}

/// fstatfs(fd).f_type, the file system's magic number, or -1 with errno
/// (statfs lives in a header Swift's Glibc does not import).
public func fileSystemType(_ fd: Int32) -> Int { Int(cs_models_fs_type(fd)) }

/// Reading a file through mmap when it may be truncated meanwhile: a SIGBUS
/// inside the guarded range maps a zero page there and is recorded, so the
/// shrinking is reported, not a crash. One range per thread at a time.
public enum SigbusGuard {
    /// Installs the handler (once per process); false when it cannot.
    public static func install() -> Bool { cs_models_sigbus_guard_install() == 0 }
    /// Guards `base..<base+len` on this thread.
    public static func begin(_ base: UnsafeRawPointer, _ len: Int) { cs_models_guard_begin(base, len) }
    /// Ends the range; true when a SIGBUS hit it (the file shrank).
    public static func end() -> Bool { cs_models_guard_end() != 0 }
}
