import FoundationEssentials
import Glibc
import SandboxConfig
import SandboxEgress
import SandboxOS
import SandboxUI

// The launcher's companions, each its own confined process started from the
// launcher's own binary: the relay (the UI's door on the host) and the
// egress proxy. What they do is in SandboxUI and SandboxEgress; how they are
// confined (identity, Landlock, seccomp, limits) is decided here.
extension Relay {
    /// Starts the relay process. Returns its pid.
    public static func spawn(listening: OwnedFD, diag: OwnedFD?, door: UIDoor, targetPort: UInt16,
                             networkNamespace: OwnedFD?, config: Config) throws -> pid_t {
        // As root: nobody, in the sandbox's namespace. Unprivileged (the
        // systemd unit): the same user, already without capabilities, in the
        // namespace we are in; its own Landlock domain still keeps ComfyUI
        // from signalling it, and seccomp from tracing it.
        var c = geteuid() == 0 ? Confinement(uid: nobody.0, gid: nobody.1, groups: [])
                               : Confinement(uid: getuid(), gid: getgid(), groups: [])
        if geteuid() != 0 { c.dropIdentity = false }
        c.rlimits = [
            // Each connection holds six fds at most (two sockets, two splice pipes).
            ResourceLimit(Int32(RLIMIT_NOFILE.rawValue), soft: 16384, hard: 16384),
            ResourceLimit(Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0),
        ]
        c.networkNamespace = networkNamespace
        if config.launcher.landlock != .off {
            var rules = Launcher.selfMappedFiles.map { Landlock.PathRule($0, [.readFile, .execute]) }
            rules.append(Landlock.PathRule("/etc/ld.so.cache", .readFile))
            // The Swift runtime finds its arguments through /proc/self; Landlock
            // cannot name "self", so /proc read-only (nobody, no caps: other
            // processes' private files stay closed by ptrace access checks).
            rules.append(Landlock.PathRule("/proc", .read))
            let (ruleset, _) = try Landlock.ruleset(rules, net: Landlock.NetPolicy(bindPorts: [], connectPorts: [targetPort]))
            c.landlockRuleset = ruleset
        }
        if config.launcher.seccomp { c.seccompProgram = try Seccomp.program() }
        let exe = Launcher.selfExecutable
        var args = [exe, "__internal", "relay", "--target-port", String(targetPort), "--diag-fd", diag == nil ? "-1" : "4"]
        if let uids = door.allowedUIDs {
            for uid in uids.sorted() { args += ["--allow-uid", String(uid)] }
        } else {
            args.append("--allow-anyone")
        }
        for a in door.authorities.sorted(by: { $0.description < $1.description }) { args += ["--authority", a.description] }
        args += ["--csp", door.csp]
        let spec = SpawnSpec(path: exe, arguments: args,
                             environment: ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"], workingDirectory: "/",
                             stdin: -1, stdout: -1, stderr: -1, passFDs: [listening.raw] + (diag.map { [$0.raw] } ?? []),
                             newSession: true, confinement: c)
        return try spec.spawn()
    }
}

extension EgressProxy {
    /// Where the proxy's lines go: state_dir/launcher.log (launcher.NAME.log
    /// for an instance), appended by every session (`run` and `check-sandbox`
    /// too); the launcher's stderr when it cannot be opened.
    public static func openLog(_ config: Config) -> (OwnedFD, String?) {
        let path = LauncherPidFile.logPath(config)
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o640)
        if fd >= 0 { return (OwnedFD(fd), nil) }
        let e = Errno.current
        return (OwnedFD(fcntl(2, F_DUPFD_CLOEXEC, 3)), "the egress proxy cannot open \(path) (\(e)): its log lines go to stderr")
    }

    /// Starts the proxy process. Returns its pid.
    public static func spawn(listening: OwnedFD, log: OwnedFD, rules: [Egress.Rule], config: Config) throws -> pid_t {
        var c = Confinement(uid: Relay.nobody.0, gid: Relay.nobody.1, groups: [])
        c.rlimits = [
            // A connection holds two sockets and, while tunnelling, two splice pipes.
            ResourceLimit(Int32(RLIMIT_NOFILE.rawValue), soft: 1024, hard: 1024),
            ResourceLimit(Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0),
        ]
        // The host's namespace: it stays where the launcher is.
        if config.launcher.landlock != .off {
            var rules2 = Launcher.selfMappedFiles.map { Landlock.PathRule($0, [.readFile, .execute]) }
            // The resolver: /etc/resolv.conf, hosts, nsswitch.conf, gai.conf;
            // NSS modules nsswitch.conf may name (libnss_*), from the lib dirs.
            rules2.append(Landlock.PathRule("/etc", .read))
            for dir in ["/lib", "/lib64", "/usr/lib", "/usr/lib64"] { rules2.append(Landlock.PathRule(dir, .readExecute, required: false)) }
            rules2.append(Landlock.PathRule("/proc", .read))
            let ports = Set(rules.flatMap(\.ports) + [53]).sorted()
            let (ruleset, _) = try Landlock.ruleset(rules2, net: Landlock.NetPolicy(bindPorts: [], connectPorts: ports))
            c.landlockRuleset = ruleset
        }
        if config.launcher.seccomp { c.seccompProgram = try Seccomp.program() }
        let exe = Launcher.selfExecutable
        var args = [exe, "__internal", "egress-proxy"]
        for r in rules { args += ["--allow", r.description] }
        let spec = SpawnSpec(path: exe, arguments: args,
                             environment: ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"], workingDirectory: "/",
                             stdin: -1, stdout: -1, stderr: -1, passFDs: [listening.raw, log.raw],
                             newSession: true, confinement: c)
        return try spec.spawn()
    }
}
