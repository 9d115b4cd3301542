import FoundationEssentials
import Glibc
import SandboxOS

/// The seccomp policy every confined child gets (built by SeccompFilter and
/// installed by the spawn as the last step before execve).
///
/// Shape: default ALLOW (ComfyUI, PyTorch and CUDA use a large, changing set
/// of calls; an allow-list breaks them on the first driver update), with
/// refusals for everything that attacks the kernel or the host instead of
/// computing: Docker's never-allowed set, mounts, namespaces, tracing, module
/// loading, keyrings, io_uring, clock changes, terminal injection.
///
/// Architectures: the native one only. A syscall made through another ABI
/// (i386 via int 0x80, x32 via __X32_SYSCALL_BIT) is a different table where
/// our numbers mean other calls, so it kills the process
/// (SCMP_FLTATR_ACT_BADARCH = KILL_PROCESS). libseccomp's x86_64 filter
/// already routes every syscall number >= 0x40000000 (the x32 bit) to the
/// bad-arch action; check-sandbox and the tests prove it.
public enum Seccomp {
    /// Calls refused with EPERM whatever their arguments.
    public static let refused: [String] = [
        // Docker's never-allowed set and obsolete calls
        "kexec_load", "kexec_file_load", "add_key", "request_key", "keyctl", "userfaultfd",
        "io_uring_setup", "io_uring_enter", "io_uring_register", "swapon", "swapoff", "pivot_root",
        "move_pages", "migrate_pages", "uselib", "_sysctl", "nfsservctl", "vm86", "vm86old",
        "create_module", "get_kernel_syms", "query_module", "afs_syscall", "tuxcall", "security",
        "ustat", "sysfs", "lookup_dcookie",
        // mounts, old and new API
        "mount", "umount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
        "mount_setattr", "chroot",
        // namespaces
        "unshare", "setns",
        // kernel introspection and tracing
        "bpf", "perf_event_open", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "fanotify_init",
        // modules, power, accounting, logs
        "init_module", "finit_module", "delete_module", "reboot", "acct", "syslog",
        // handles that bypass path checks
        "open_by_handle_at", "name_to_handle_at",
        // quotas, host identity, port I/O, clocks
        "quotactl", "quotactl_fd", "sethostname", "setdomainname", "iopl", "ioperm",
        "clock_settime", "clock_settime64", "settimeofday", "stime", "adjtimex", "clock_adjtime", "clock_adjtime64",
    ]

    /// What CUDA and PyTorch need and a stricter filter would break; listed so
    /// the tests and the docs can show they stay allowed.
    public static let keptForCUDA: [String] = [
        "memfd_create", "mbind", "get_mempolicy", "set_mempolicy", "ioctl", "mmap", "clone", "pidfd_getfd",
    ]

    static let cloneNewFlags: [UInt64] = [
        0x0002_0000,   // CLONE_NEWNS
        0x0200_0000,   // CLONE_NEWCGROUP
        0x0400_0000,   // CLONE_NEWUTS
        0x0800_0000,   // CLONE_NEWIPC
        0x1000_0000,   // CLONE_NEWUSER
        0x2000_0000,   // CLONE_NEWPID
        0x4000_0000,   // CLONE_NEWNET
    ]
    static let allowedFamilies: Set<UInt64> = [1, 2, 10, 16]   // AF_UNIX, AF_INET, AF_INET6, AF_NETLINK
    static let TIOCSTI: UInt64 = 0x5412
    static let TIOCLINUX: UInt64 = 0x541C

    /// The BPF program. It depends on nothing but this binary's rules and
    /// libseccomp's tables, so a process builds it once (every child of a
    /// `launch` gets the same one); `run` builds it ahead, on a second thread,
    /// while it reads the config (see `Launcher.prepareAhead`).
    public static func program() throws -> [BPFInstruction] { try prepared.get().get() }

    static let prepared = Prepared<Result<[BPFInstruction], any Error>> { Result { try Seccomp.build() } }

    /// Builds the filter and returns the BPF program.
    static func build() throws -> [BPFInstruction] {
        let filter = try SeccompFilter()
        let eperm = SeccompFilter.Action.errno(EPERM)
        for name in refused { try filter.add(eperm, name) }

        // clone3 passes its flags in a struct seccomp cannot read: ENOSYS makes
        // glibc fall back to clone(2), whose flags we can check.
        try filter.add(.errno(ENOSYS), "clone3")
        // clone with any CLONE_NEW* flag: one masked compare per flag (rules OR).
        for flag in cloneNewFlags {
            try filter.add(eperm, "clone", [.init(0, .maskedEqual(mask: flag), flag)])
        }
        // Terminal injection: TIOCSTI pushes keystrokes into the terminal's
        // input, TIOCLINUX can do the same on a VT. The request is an int: mask
        // the upper half the kernel ignores.
        for request in [TIOCSTI, TIOCLINUX] {
            try filter.add(eperm, "ioctl", [.init(1, .maskedEqual(mask: 0xFFFF_FFFF), request)])
        }
        // socket(): only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK.
        let noFamily = SeccompFilter.Action.errno(EAFNOSUPPORT)
        for family in UInt64(0)...16 where !allowedFamilies.contains(family) {
            try filter.add(noFamily, "socket", [.init(0, .equal, family)])
        }
        try filter.add(noFamily, "socket", [.init(0, .greater, 16)])
        // personality(2): only PER_LINUX (0) and the query 0xffffffff.
        // libseccomp allows one comparison per argument per rule and no ALLOW
        // rule under an ALLOW default, so "anything else" is spelled as masked
        // compares on the low 32 bits the kernel reads (rules are OR'ed).
        // Going round the 32 bits of any other value there is a bit b that is
        // 1 followed by a bit b+1 (mod 32) that is 0 (READ_IMPLIES_EXEC,
        // ADDR_NO_RANDOMIZE, PER_LINUX32, high junk...), and rule b matches
        // exactly the values with that pair; 0 and 0xffffffff have no such
        // pair. A cycle of 32 two-bit compares is the fewest that cover every
        // such value: the 62 one-bit-per-side rules used before cost
        // libseccomp half a millisecond on every launch.
        for b in 0..<32 {
            let one = UInt64(1) << UInt64(b), next = UInt64(1) << UInt64((b + 1) % 32)
            try filter.add(eperm, "personality", [.init(0, .maskedEqual(mask: one | next), one)])
        }
        return try filter.program()
    }

    /// The syscall number of `name` on this machine's arch, or nil.
    public static func number(_ name: String) -> Int? { SeccompFilter.number(name) }
}
