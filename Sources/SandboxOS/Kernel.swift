import CSandbox
import CSeccomp
import FoundationEssentials
import Glibc

/// What the running kernel has of the system calls comfy-sandbox builds on,
/// and the first Linux release that has each, so that a missing one is named
/// with the kernel that brings it instead of surfacing as a bare ENOSYS.
///
/// - openat2 (5.6): every change root makes in a tree someone else can write
///   walks with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS. There is no safe
///   substitute, so without it those commands refuse.
/// - fchmodat2 (6.6): modes are set on O_PATH descriptors; before 6.6 the same
///   is done through /proc/self/fd/N (`cs_fchmod_fd`), so nothing is lost.
/// - Landlock: see `Landlock.kernel(abi:)`.
public enum Kernel {
    public static let openat2Since = "5.6"
    public static let fchmodat2Since = "6.6"

    /// uname -r.
    public static var release: String {
        var u = utsname()
        guard uname(&u) == 0 else { return "unknown" }
        return withUnsafePointer(to: &u.release) { $0.withMemoryRebound(to: CChar.self, capacity: 65) { String(cString: $0) } }
    }

    public static var hasOpenat2: Bool { cs_openat2_available() == 1 }
    public static var hasFchmodat2: Bool { cs_fchmodat2_available() == 1 }

    /// The refusal when openat2 is missing: what is missing, since when it
    /// exists, and why there is no way around it.
    public static func openat2Missing(_ what: String) -> SandboxError {
        SandboxError.failure("\(what): this kernel (Linux \(release)) has no openat2(2), which comfy-sandbox needs to change files as root "
                             + "in trees other users can write without following a link they planted (RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS); refusing",
                             hint: "boot Linux \(openat2Since) or later (Debian 11, Ubuntu 20.10 and later have it)")
    }

    /// One line for `status`: the kernel and what it lacks.
    public static func summary() -> String {
        var parts = ["Linux \(release)"]
        parts.append(hasOpenat2 ? "openat2 yes" : "openat2 MISSING (Linux \(openat2Since)+): provision, fix-permissions and model links refuse")
        parts.append(hasFchmodat2 ? "fchmodat2 yes"
                                  : "fchmodat2 no (Linux \(fchmodat2Since)+): modes are set through /proc/self/fd instead, same effect")
        let abi = Landlock.abi
        parts.append(abi > 0 ? "Landlock ABI \(abi)" : "no Landlock")
        return parts.joined(separator: "; ")
    }

    // MARK: simulating an older kernel

    /// The variable that makes named system calls fail with ENOSYS in this
    /// process and everything it starts, as on a kernel that predates them.
    public static let withoutSyscallsVariable = "COMFY_SANDBOX_WITHOUT_SYSCALLS"

    /// `COMFY_SANDBOX_WITHOUT_SYSCALLS=fchmodat2,openat2`: installs a seccomp
    /// filter answering ENOSYS for those calls before anything else runs, so
    /// the tests (and anyone curious) see on a new kernel what an old one does.
    /// It can only take calls away. Called first thing by the executable.
    public static func simulateMissingSyscalls() {
        guard let value = ProcessEnvironment.value(withoutSyscallsVariable), !value.isEmpty else { return }
        let names = value.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
        do {
            try installENOSYSFilter(names)
        } catch {
            printError("comfy-sandbox: \(withoutSyscallsVariable)=\(value): \(error)")
            exit(1)
        }
    }

    static func installENOSYSFilter(_ names: [String]) throws {
        guard let ctx = seccomp_init(SCMP_ACT_ALLOW) else { throw SandboxError.failure("seccomp_init failed") }
        defer { seccomp_release(ctx) }
        // Root needs no no_new_privs to install a filter; leave setuid programs as they are.
        if geteuid() == 0 { _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) }
        // Every thread, should any exist yet.
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)
        for name in names {
            let nr = seccomp_syscall_resolve_name(name)
            guard nr != __NR_SCMP_ERROR else { throw SandboxError.failure("\(name) is not a system call libseccomp knows") }
            let rc = seccomp_rule_add_array(ctx, cs_scmp_act_errno(UInt16(ENOSYS)), nr, 0, nil)
            guard rc == 0 else { throw SandboxError.failure("cannot add a rule for \(name): \(Errno(-rc))") }
        }
        let rc = seccomp_load(ctx)
        guard rc == 0 else { throw SandboxError.failure("seccomp_load: \(Errno(-rc))") }
    }
}
