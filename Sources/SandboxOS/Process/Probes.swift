import CSandbox
import FoundationEssentials
import Glibc

/// The raw attempts `check-sandbox` makes from inside the sandbox to show
/// what is refused: each the bare system call, no wrapper that could fail
/// first for its own reasons; those that could kill the caller (a filter's
/// KILL, the OOM killer) run in a throwaway child.
public enum Probe {
    /// syscall(nr, a...f): its result, and errno when it is negative.
    public static func syscall(_ nr: Int, _ a: Int = 0, _ b: Int = 0, _ c: Int = 0, _ d: Int = 0, _ e: Int = 0, _ f: Int = 0) -> (rc: Int, errno: Int32) {
        let rc = cs_syscall6(nr, a, b, c, d, e, f)
        return (rc, rc < 0 ? Glibc.errno : 0)
    }

    /// __X32_SYSCALL_BIT: a number with it is a call through the x32 ABI.
    public static let x32SyscallBit = Int(CS_X32_SYSCALL_BIT)

    /// syscall(nr, a...f) in a forked child: how it ended and the call's
    /// errno (0 when it worked, -1 when the child died before saying).
    public static func syscallInChild(_ nr: Int, _ a: Int = 0, _ b: Int = 0, _ c: Int = 0, _ d: Int = 0, _ e: Int = 0,
                                      _ f: Int = 0) -> (exit: ChildExit, errno: Int32) {
        var err: Int32 = 0
        let status = cs_probe_syscall_in_child(nr, a, b, c, d, e, f, &err)
        return (ChildExit(status: status), err)
    }

    /// getpid through the i386 ABI (int 0x80) in a child; nil when no child could be made.
    public static func int80GetPID() -> ChildExit? {
        let status = cs_probe_int80_getpid()
        return status >= 0 ? ChildExit(status: status) : nil
    }

    /// clone(flags|SIGCHLD), the child exiting at once: 0 when it worked, else -1 and the errno.
    public static func clone(flags: UInt) -> (rc: Int, errno: Int32) {
        var err: Int32 = 0
        let rc = cs_clone_probe(flags, &err)
        return (Int(rc), err)
    }

    /// ioctl(fd, TIOCSTI, &c): pushing a keystroke into a terminal's input.
    public static func tiocsti(_ fd: Int32, _ c: CChar) -> (rc: Int, errno: Int32) {
        let rc = cs_ioctl_tiocsti(fd, c)
        return (Int(rc), rc < 0 ? Glibc.errno : 0)
    }

    /// memfd_create(name, MFD_CLOEXEC): the fd or -1 with errno.
    public static func memfd(_ name: String) -> Int32 { cs_memfd(name) }

    /// A child touching `bytes` of memory: how it ended (SIGKILL: a memory limit held).
    public static func memoryHog(bytes: UInt64) -> ChildExit { ChildExit(status: cs_probe_memory_hog(bytes)) }

    /// memfd_create + write `elf` + fexecve in a child: nil when it ran, else
    /// the errno of the step that was refused.
    public static func memfdExec(_ elf: Data) -> Errno? {
        let rc = elf.withUnsafeBytes { cs_probe_memfd_exec($0.baseAddress, $0.count) }
        return rc == 0 ? nil : Errno(-rc)
    }

    /// `path argv` double-forked into a session of its own (what a miner does to outlive its parent).
    public static func spawnDetached(_ path: String, _ argv: [String]) {
        var c = argv.map { strdup($0) } + [nil]
        defer { for p in c { free(p) } }
        _ = cs_spawn_detached(path, &c)
    }
}
