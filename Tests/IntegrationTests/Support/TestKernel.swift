import Foundation
import SandboxCore
import SandboxOS

/// The kernel the tests run on, as the tool sees it. On a kernel whose
/// Landlock lacks a rule the launcher makes (Linux 6.1: ABI 2, no TCP rules,
/// no scoping), `launcher.landlock: true` refuses to start; the worlds then
/// use "best-effort", and every test whose attack only a missing rule stops
/// asserts what the tool says about it instead (a NOT enforced line), while
/// `LandlockOnThisKernelTests` asserts the refusal. Nothing is skipped.
///
/// `COMFY_SANDBOX_LANDLOCK_ABI=N` and `COMFY_SANDBOX_WITHOUT_SYSCALLS=...` in
/// the test process's environment are passed to every command a world runs,
/// so the whole suite can play an older kernel on this one.
enum TestKernel {
    /// The ABI the tool sees (the simulation knob included).
    static var abi: Int { Landlock.abi }

    /// What this kernel's Landlock lacks for the launcher's rules (ports and scoping asked for).
    static var gaps: [Landlock.Gap] {
        Landlock.gaps(abi: abi, net: Landlock.NetPolicy(bindPorts: [1], connectPorts: [1]), scope: true).filter(\.weaker)
    }

    /// Does it lack the rule a feature needs? `abi` is the one that brings it.
    static func lacks(abi needed: Int) -> Bool { abi < needed }

    /// `launcher.landlock` for the worlds: true where the kernel enforces every rule.
    static var landlockMode: Any { gaps.isEmpty ? true : "best-effort" }

    /// The variables passed on to the commands a world runs.
    static let forwarded = ["COMFY_SANDBOX_LANDLOCK_ABI", Kernel.withoutSyscallsVariable]
}
