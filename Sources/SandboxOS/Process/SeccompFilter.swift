import CSandbox
import CSeccomp
import FoundationEssentials
import Glibc

extension sock_filter: @retroactive @unchecked Sendable {}

/// One instruction of a classic BPF program (struct sock_filter).
public typealias BPFInstruction = sock_filter

/// A seccomp filter built with libseccomp and exported as the classic BPF
/// program `cs_spawn_confined` installs last before execve (a program, not a
/// loaded filter: the child loads it after no_new_privs). Default ALLOW;
/// rules refuse. What to refuse is the caller's policy (Seccomp in
/// SandboxCore); this is only the mechanism.
public final class SeccompFilter {
    /// What a matching call gets.
    public enum Action: Sendable {
        case errno(Int32)

        var raw: UInt32 {
            switch self {
            case .errno(let e): cs_scmp_act_errno(UInt16(e))
            }
        }
    }

    /// One comparison on a syscall argument (rules with several are AND'ed).
    public struct ArgumentCheck: Sendable {
        public enum Compare: Sendable { case equal, greater, maskedEqual(mask: UInt64) }
        public var index: UInt32
        public var compare: Compare
        public var value: UInt64

        public init(_ index: UInt32, _ compare: Compare, _ value: UInt64) {
            self.index = index
            self.compare = compare
            self.value = value
        }

        var raw: scmp_arg_cmp {
            switch compare {
            case .equal: cs_scmp_arg(index, SCMP_CMP_EQ, value, 0)
            case .greater: cs_scmp_arg(index, SCMP_CMP_GT, value, 0)
            case .maskedEqual(let mask): cs_scmp_arg(index, SCMP_CMP_MASKED_EQ, mask, value)
            }
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var what: String
        public var rc: Int32
        public var description: String { "libseccomp \(what) failed: \(Errno(-rc))" }
    }

    private let ctx: scmp_filter_ctx

    /// A filter for the native architecture only: a call through another ABI
    /// (i386 via int 0x80, x32 via __X32_SYSCALL_BIT) is a different table
    /// where our numbers mean other calls, so it kills the process. No
    /// no_new_privs from libseccomp (the child sets it itself, in order); the
    /// rules compiled as a binary tree over syscall numbers, so an allowed
    /// call pays a few comparisons, not one per rule.
    public init() throws {
        guard let ctx = seccomp_init(SCMP_ACT_ALLOW) else { throw Failure(what: "seccomp_init", rc: -ENOMEM) }
        self.ctx = ctx
        try check("ACT_BADARCH", seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS))
        try check("CTL_NNP", seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0))
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)
    }

    deinit { seccomp_release(ctx) }

    private func check(_ what: String, _ rc: Int32) throws {
        if rc < 0 { throw Failure(what: what, rc: rc) }
    }

    /// `action` for `name` when every check holds. A call this architecture
    /// does not have (vm86 on x86_64) is skipped.
    public func add(_ action: Action, _ name: String, _ checks: [ArgumentCheck] = []) throws {
        let nr = seccomp_syscall_resolve_name(name)
        guard nr != __NR_SCMP_ERROR else { return }
        let cmps = checks.map(\.raw)
        let rc = cmps.withUnsafeBufferPointer { buf in
            seccomp_rule_add_array(ctx, action.raw, nr, UInt32(cmps.count), buf.baseAddress)
        }
        try check("rule for \(name)", rc)
    }

    /// The BPF program. seccomp_export_bpf writes to an fd; a memfd keeps it in memory.
    public func program() throws -> [sock_filter] {
        let fd = cs_memfd("comfy-sandbox-seccomp")
        guard fd >= 0 else { throw SandboxError.failure("memfd_create for the seccomp filter failed: \(Errno.current)") }
        defer { close(fd) }
        let rc = seccomp_export_bpf(ctx, fd)
        if rc < 0 { throw Failure(what: "seccomp_export_bpf", rc: rc) }
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
