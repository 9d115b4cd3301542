import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// The entry points every part of the tool uses to confine a child.
/// `forInstall` is what requirement installs (pip/uv) run under: the sandbox
/// identity, no capabilities, no_new_privs, and as much of the launcher's
/// confinement (seccomp, Landlock limited to `writable`) as the network
/// access an install needs allows.
public enum SandboxConfinement {
    /// Identity drop only: the sandbox user, the shared group, no
    /// capabilities, no_new_privs, limits. The floor every confined child gets.
    public static func basic(_ config: Config, id known: AccountLookup.SandboxIdentity? = nil) throws -> Confinement {
        let id = try known ?? AccountLookup.sandboxIdentity(config)
        var c = Confinement(uid: id.user.uid, gid: id.user.gid, groups: id.groups)
        c.rlimits = [
            limit(Int32(RLIMIT_NOFILE.rawValue), config.launcher.limits.nofile),
            limit(Int32(__RLIMIT_NPROC.rawValue), config.launcher.limits.nproc),
            // No core dumps: a core file of ComfyUI would hold model weights
            // and whatever secrets a node had in memory.
            ResourceLimit(Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0),
            // No RLIMIT_AS: CUDA reserves terabytes of virtual address space.
        ]
        return c
    }

    /// `wanted` as soft and hard limit, clamped to the current hard limit
    /// when we cannot raise it (no CAP_SYS_RESOURCE, e.g. inside a
    /// container): setrlimit would otherwise fail the whole drop.
    static func limit(_ resource: Int32, _ wanted: UInt64) -> ResourceLimit {
        let canRaise = Capabilities.current()?.hasEffective(Capabilities.sysResource) ?? false
        var current = rlimit()
        var value = wanted
        if !canRaise, getrlimit(__rlimit_resource_t(UInt32(resource)), &current) == 0, UInt64(current.rlim_max) < wanted {
            value = UInt64(current.rlim_max)
        }
        return ResourceLimit(resource, soft: value, hard: value)
    }

    /// For pip/uv installs into a staging directory: writable only there (and
    /// the sandbox's temp), network as the host has it.
    ///
    /// Writable paths get read, write and execute (a venv's bin/, build
    /// tools run from a staging temp); the rest of the file system is what
    /// ComfyUI itself may read. The network is the host's (pip downloads),
    /// and Landlock leaves TCP unhandled. Landlock follows launcher.landlock
    /// as for the launcher (`true` refuses on a kernel that lacks a rule it
    /// makes, `"best-effort"` prints what is missing); seccomp follows
    /// launcher.seccomp.
    public static func forInstall(_ config: Config, writable: [String], readable: [String] = []) throws -> Confinement {
        var c = try basic(config)
        if config.launcher.landlock != .off {
            var rules = Launcher.rules(config, purpose: .run, temp: config.sandboxUser.home,
                                       gpu: GPUSelection(indexes: [], deviceNodes: [], cudaVisibleDevices: "", note: nil))
            // Shares are not needed for an install and may not exist yet.
            let sharePaths = Set(config.shares.map(\.path))
            rules.removeAll { sharePaths.contains($0.path) }
            for path in writable { rules.append(Landlock.PathRule(path, Landlock.FS.readWrite.union(.execute))) }
            for path in readable { rules.append(Landlock.PathRule(path, Landlock.FS.read)) }
            let (ruleset, summary) = try Landlock.ruleset(rules, net: nil)
            // launcher.landlock as for the launcher: true refuses on a kernel
            // that lacks a rule, "best-effort" says what is missing.
            for note in try Landlock.enforcementNotes(summary, mode: config.launcher.landlock, what: "refusing to install") {
                printError("comfy-sandbox: install confinement: \(note)")
            }
            c.landlockRuleset = ruleset
        }
        if config.launcher.seccomp { c.seccompProgram = try Seccomp.program() }
        // Its own root and PID namespace, as every confined child: what a
        // setup.py leaves running (setsid, a double fork, a zombie
        // thread-group leader) dies with the installer, so nothing can keep
        // root's provision waiting or the state lock held.
        if geteuid() == 0 {
            let id = try AccountLookup.sandboxIdentity(config)
            c.root = try RootLayout.forInstall(config, id: id, writable: writable, readable: readable)
        }
        return c
    }
}
