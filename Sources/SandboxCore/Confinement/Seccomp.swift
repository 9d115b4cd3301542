import CSandbox
import CSeccomp
import FoundationEssentials
import Glibc

/// The seccomp filter every confined child gets, built with libseccomp and
/// exported as a classic BPF program that `cs_spawn_confined` installs as the
/// last step before execve.
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

    public enum Failure: Error, CustomStringConvertible {
        case libseccomp(String, Int32)
        public var description: String {
            switch self {
            case .libseccomp(let what, let rc): "libseccomp \(what) failed: \(Errno(-rc))"
            }
        }
    }

    /// The BPF program. It depends on nothing but this binary's rules and
    /// libseccomp's tables, so a process builds it once (every child of a
    /// `launch` gets the same one); `run` builds it ahead, on a second thread,
    /// while it reads the config (see `Launcher.prepareAhead`).
    public static func program() throws -> [sock_filter] { try prepared.get().get() }

    static let prepared = Prepared<Result<[sock_filter], any Error>> { Result { try Seccomp.build() } }

    /// Builds the filter and returns the BPF program.
    static func build() throws -> [sock_filter] {
        guard let ctx = seccomp_init(SCMP_ACT_ALLOW) else { throw Failure.libseccomp("seccomp_init", -ENOMEM) }
        defer { seccomp_release(ctx) }
        func check(_ what: String, _ rc: Int32) throws { if rc < 0 { throw Failure.libseccomp(what, rc) } }

        try check("ACT_BADARCH", seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS))
        // We set no_new_privs ourselves, in order, in the child; the export must
        // not depend on libseccomp doing it.
        try check("CTL_NNP", seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0))
        // A binary tree over syscall numbers instead of a linear chain: every
        // allowed call (read, write, futex...) pays a few comparisons, not ~90.
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)

        let eperm = cs_scmp_act_errno(UInt16(EPERM))
        func rule(_ action: UInt32, _ name: String, _ cmps: [scmp_arg_cmp] = []) throws {
            let nr = seccomp_syscall_resolve_name(name)
            // Unknown on this arch (e.g. vm86 on x86_64): libseccomp returns a
            // negative pseudo number it ignores for the native arch.
            guard nr != __NR_SCMP_ERROR else { return }
            let rc = cmps.withUnsafeBufferPointer { buf in
                seccomp_rule_add_array(ctx, action, nr, UInt32(cmps.count), buf.baseAddress)
            }
            try check("rule for \(name)", rc)
        }

        for name in refused { try rule(eperm, name) }

        // clone3 passes its flags in a struct seccomp cannot read: ENOSYS makes
        // glibc fall back to clone(2), whose flags we can check.
        try rule(cs_scmp_act_errno(UInt16(ENOSYS)), "clone3")
        // clone with any CLONE_NEW* flag: one masked compare per flag (rules OR).
        for flag in cloneNewFlags {
            try rule(eperm, "clone", [cs_scmp_arg(0, SCMP_CMP_MASKED_EQ, flag, flag)])
        }
        // Terminal injection: TIOCSTI pushes keystrokes into the terminal's
        // input, TIOCLINUX can do the same on a VT. The request is an int: mask
        // the upper half the kernel ignores.
        for request in [TIOCSTI, TIOCLINUX] {
            try rule(eperm, "ioctl", [cs_scmp_arg(1, SCMP_CMP_MASKED_EQ, 0xFFFF_FFFF, request)])
        }
        // socket(): only AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK.
        let noFamily = cs_scmp_act_errno(UInt16(EAFNOSUPPORT))
        for family in UInt64(0)...16 where !allowedFamilies.contains(family) {
            try rule(noFamily, "socket", [cs_scmp_arg(0, SCMP_CMP_EQ, family, 0)])
        }
        try rule(noFamily, "socket", [cs_scmp_arg(0, SCMP_CMP_GT, 16, 0)])
        try personalityRules(rule: rule, eperm: eperm)

        return try export(ctx)
    }

    /// personality(2): only PER_LINUX (0) and the query 0xffffffff. libseccomp
    /// allows one comparison per argument per rule and no ALLOW rule under an
    /// ALLOW default, so "anything else" is spelled as masked compares on the
    /// low 32 bits the kernel reads (rules are OR'ed). Going round the 32 bits
    /// of any other value there is a bit b that is 1 followed by a bit b+1
    /// (mod 32) that is 0 (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, PER_LINUX32,
    /// high junk...), and rule b matches exactly the values with that pair;
    /// 0 and 0xffffffff have no such pair. A cycle of 32 two-bit compares is
    /// the fewest that cover every such value: the 62 one-bit-per-side rules
    /// used before cost libseccomp half a millisecond on every launch.
    static func personalityRules(rule: (UInt32, String, [scmp_arg_cmp]) throws -> Void, eperm: UInt32) throws {
        for b in 0..<32 {
            let one = UInt64(1) << UInt64(b), next = UInt64(1) << UInt64((b + 1) % 32)
            try rule(eperm, "personality", [cs_scmp_arg(0, SCMP_CMP_MASKED_EQ, one | next, one)])
        }
    }

    /// seccomp_export_bpf writes to an fd; a memfd keeps it in memory.
    static func export(_ ctx: scmp_filter_ctx) throws -> [sock_filter] {
        let fd = cs_memfd("comfy-sandbox-seccomp")
        guard fd >= 0 else { throw SandboxError.failure("memfd_create for the seccomp filter failed: \(Errno.current)") }
        defer { close(fd) }
        let rc = seccomp_export_bpf(ctx, fd)
        if rc < 0 { throw Failure.libseccomp("seccomp_export_bpf", rc) }
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0, size % off_t(MemoryLayout<sock_filter>.stride) == 0 else {
            throw SandboxError.failure("libseccomp exported a BPF program of \(size) bytes")
        }
        var program = [sock_filter](repeating: sock_filter(), count: Int(size) / MemoryLayout<sock_filter>.stride)
        let got = program.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard got == Int(size) else { throw SandboxError.failure("reading the exported seccomp filter failed: \(Errno.current)") }
        guard program.count <= Int(UInt16.max) else { throw SandboxError.failure("seccomp filter too long: \(program.count) instructions") }
        return program
    }

    /// The syscall number of `name` on this machine's arch, or nil.
    public static func number(_ name: String) -> Int? {
        let nr = seccomp_syscall_resolve_name(name)
        return nr < 0 ? nil : Int(nr)
    }
}
