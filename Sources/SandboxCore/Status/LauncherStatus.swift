import FoundationEssentials
import SandboxOS
import SandboxConfig

/// `status`, launcher section: what the launcher enforces with this config
/// on this kernel right now, and whether ComfyUI runs.
public enum LauncherStatus {
    public static func items(_ config: Config) -> [StatusItem] {
        let s = "launcher"
        let l = config.launcher
        var items: [StatusItem] = []
        items.append(StatusItem(s, "kernel", Kernel.summary(), ok: Kernel.hasOpenat2))
        items.append(StatusItem(s, "capabilities", "all dropped (bounding, permitted, effective, inheritable, ambient), no_new_privs, securebits locked"))
        items.append(StatusItem(s, "seccomp", l.seccomp ? "on: \(Seccomp.refused.count) calls refused, clone(CLONE_NEW*), TIOCSTI/TIOCLINUX, socket families, personality flags; x32/i386 killed"
                                                        : "OFF (launcher.seccomp = false)", ok: l.seccomp))
        let abi = Landlock.abi
        let landlockValue: String
        var landlockOK = true
        switch l.landlock {
        case .off:
            landlockValue = "OFF (launcher.landlock = false)"
            landlockOK = false
        case .enforce, .bestEffort:
            if abi == 0 {
                landlockValue = l.landlock == .enforce ? "kernel has no Landlock: launch will refuse to start (launcher.landlock = true)"
                                                       : "NOT enforced: kernel has no Landlock (launcher.landlock = \"best-effort\")"
                landlockOK = false
            } else {
                // Exactly what the launcher gets on this kernel, then what it lacks.
                var parts = ["ABI \(abi) (Linux \(Kernel.release))",
                             "enforced: files (system r-x, /etc r, Python+venv r-x, ComfyUI r-x, shares per access, home+RAM temp+/dev/shm rw, no exec where writable)"]
                if abi >= 2 { parts.append("REFER") }
                if abi >= 3 { parts.append("TRUNCATE") }
                if abi >= 4 {
                    let connect = l.egress.isEmpty ? ":\(l.port)" : ":\(l.port) and the egress proxy's :\(Egress.proxyPort)"
                    parts.append("TCP bind only :\(l.port)" + (l.network == .loopbackOnly ? ", connect only \(connect)" : ""))
                }
                if abi >= 5 { parts.append("device ioctls only on GPU nodes and the terminal") }
                if abi >= 6 { parts.append("abstract sockets and signals scoped") }
                let gaps = Landlock.gaps(abi: abi, net: Launcher.netPolicy(config), scope: true)
                let missing = gaps.filter(\.weaker).map(\.description)
                if !missing.isEmpty {
                    parts.append("NOT enforced on this kernel: " + missing.joined(separator: ", "))
                    parts.append(l.landlock == .enforce ? "launch refuses to start (launcher.landlock = true; \"best-effort\" starts without them)"
                                                        : "launch starts without them (launcher.landlock = \"best-effort\")")
                    landlockOK = false
                }
                parts += gaps.filter { !$0.weaker }.map { "limit: \($0)" }
                landlockValue = parts.joined(separator: "; ")
            }
        }
        items.append(StatusItem(s, "landlock", landlockValue, ok: landlockOK))
        items.append(StatusItem(s, "network", l.network == .loopbackOnly
                                ? "loopback-only: own network namespace with only lo; UI relayed from the host's \(IPEndpoint.urlAuthority(l.listen, l.port))"
                                : "host: shares the host's network (Landlock limits binding)"))
        items.append(StatusItem(s, "egress", egressSummary(config)))
        let gpu = GPUSelection.select(l.gpu, prepareNodes: false)
        items.append(StatusItem(s, "gpu", gpu.indexes.isEmpty ? "none (launcher.gpu = \(GPUSelection.describe(l.gpu)))"
                                                            : "\(gpu.indexes.map { "nvidia\($0)" }.joined(separator: ", ")) (launcher.gpu = \(GPUSelection.describe(l.gpu)))"))
        // The constructed root and the session's limits (root starts them; the unit does without systemd).
        items.append(StatusItem(s, "root", "constructed: own mount, PID, IPC, UTS and cgroup namespaces; /usr, the venv and ComfyUI read-only; "
                                + "shares and the sandbox home bound; private /tmp, /dev/shm (\(l.limits.shmSize)) and /run; writable mounts noexec but /run/jit; "
                                + (Paths.exists("/proc/sys/vm/memfd_noexec") ? "vm.memfd_noexec=2" : "no vm.memfd_noexec on this kernel (6.3+): memfds stay executable")))
        let cgroup = SessionCgroup.detectedVersion
        items.append(StatusItem(s, "limits", SessionCgroup.describe(l.limits) + "; "
                                + (cgroup.map { "enforced by a session cgroup (\($0.rawValue)), or the unit's MemoryMax=/TasksMax=/CPUWeight=" }
                                   ?? (l.limits.needCgroup ? "NOT enforced: no cgroup hierarchy at /sys/fs/cgroup" : "none needs a cgroup")),
                                ok: cgroup != nil || !l.limits.needCgroup))
        items.append(StatusItem(s, "listen", "http://\(IPEndpoint.urlAuthority(l.listen, l.port))/"))
        if let pid = LauncherPidFile.running(config) {
            items.append(StatusItem(s, "running", "yes, launcher pid \(pid) (\(LauncherPidFile.path(config)))"))
            let ui = UIProbe.ask(config)
            items.append(StatusItem(s, "ui", "http://\(IPEndpoint.urlAuthority(l.listen, l.port))/ " + ui.detail, ok: ui.answers))
        } else {
            items.append(StatusItem(s, "running", "no"))
        }
        // Where `start` writes ComfyUI's output (`make logs` reads it).
        items.append(StatusItem(s, "log", LauncherPidFile.logPath(config)))
        return items
    }

    /// launcher.egress as the session gets it.
    static func egressSummary(_ config: Config) -> String {
        let l = config.launcher
        guard l.network == .loopbackOnly else { return "launcher.network is host: everything (launcher.egress does not apply)" }
        let rules = Egress.rules(l.egress)
        guard !rules.isEmpty else { return "none: loopback only (launcher.egress is empty); HF_HUB_OFFLINE=1" }
        return "through the proxy on 127.0.0.1:\(Egress.proxyPort) inside (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY), only to: "
            + rules.map { r in (r.wildcard ? "*." : "") + r.host + ":" + r.ports.map(String.init).joined(separator: ",") }.joined(separator: ", ")
            + "; names resolved on the host, IP addresses and private/loopback/link-local/metadata destinations refused, SNI must match; "
            + (Egress.allowsHuggingFace(rules) ? "HF_HUB_OFFLINE unset (huggingface.co is listed)" : "HF_HUB_OFFLINE=1")
            + "; each connection logged to \(LauncherPidFile.logPath(config)); not under the systemd unit (it refuses to start)"
    }
}
