import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

// What a session may reach: its Landlock rules, for paths and ports.
extension Launcher {
    /// The port policy: bind only on launcher.port. In loopback-only mode
    /// connect is also limited to launcher.port (and the egress proxy's
    /// port when launcher.egress is set): the namespace holds nothing
    /// else worth reaching, and if the namespace were ever escaped this still
    /// keeps TCP connects to the host's services closed. In host mode connect
    /// is not handled (ComfyUI and nodes may fetch over the network).
    package static func netPolicy(_ config: Config) -> Landlock.NetPolicy {
        let port = UInt16(clamping: config.launcher.port)
        switch config.launcher.network {
        case .loopbackOnly where !config.launcher.egress.isEmpty:
            // And the egress proxy's port (127.0.0.1:3128 in the namespace).
            return Landlock.NetPolicy(bindPorts: [port], connectPorts: [port, Egress.proxyPort])
        case .loopbackOnly: return Landlock.NetPolicy(bindPorts: [port], connectPorts: [port])
        case .host: return Landlock.NetPolicy(bindPorts: [port], connectPorts: nil)
        }
    }

    /// The Landlock path rules for a session.
    public static func rules(_ config: Config, purpose: Purpose, temp: String, gpu: GPUSelection) -> [Landlock.PathRule] {
        typealias R = Landlock.PathRule
        var rules: [R] = []
        // System: programs and libraries, read and execute; /etc read-only.
        for dir in ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32"] { rules.append(R(dir, .readExecute)) }
        rules.append(R("/etc", .read))
        // Python: its real prefix (may live outside /usr, e.g. /opt/conda) and the venv.
        for python in [config.comfyui.python, config.venvPath + "/bin/python"] {
            if let prefix = pythonPrefix(python), !prefix.hasPrefix("/usr/") && prefix != "/usr" {
                rules.append(R(prefix, .readExecute))
            }
            // comfyui.python may itself be a venv's (an existing torch venv):
            // its bin/python links to the base interpreter, so the real prefix
            // is the base's, and the venv's own site-packages must be named.
            if let venv = venvOf(python) { rules.append(R(venv, .readExecute)) }
        }
        rules.append(R(config.venvPath, .readExecute))
        // ComfyUI's code: read and execute, never write...
        rules.append(R(config.comfyui.path, .readExecute))
        // ...except its user directory (settings) and nodes marked writable.
        rules.append(R(config.comfyui.path + "/user", .readWrite))
        for node in config.customNodes where node.writable && node.enabled {
            rules.append(R(config.customNodesDir + "/" + node.name, .readWrite))
        }
        // ...and web/extensions, where nodes add their folder (TreePlanner).
        rules.append(R(config.comfyui.path + "/web/extensions", .readWrite))
        // The primary user's Hugging Face cache, read-only: hf_hub_download
        // finds weights the user already has (HF_HUB_CACHE, HF_HUB_OFFLINE).
        if let cache = config.models.hfCache { rules.append(R(cache, .read)) }
        // Shares at their real paths (ComfyUI reaches them through the
        // comfyui.path/<mount> links; Landlock checks the resolved file).
        for share in config.shares {
            rules.append(R(share.path, share.access.writable ? .readWrite : .read, required: true))
        }
        // The sandbox's own places.
        rules.append(R(config.sandboxUser.home, .readWrite))
        rules.append(R(temp, .readWrite))
        rules.append(R("/dev/shm", .readWrite))
        for dev in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"] {
            // IOCTL_DEV too: Landlock decides at open whether ioctl is allowed,
            // and with the right absent here it walks every ancestor up to /
            // looking for it, on every open of /dev/null (a fifth of a
            // syscall-heavy loop). Their ioctls are what any process has; the
            // entropy-changing ones on random need CAP_SYS_ADMIN anyway.
            rules.append(R(dev, Landlock.FS.device.union(.ioctlDev)))
        }
        // /dev/tty is the session's controlling terminal: its own pty when
        // stdin is a terminal (OperatorTerminal), never the operator's.
        if purpose == .shell {
            rules.append(R("/dev/tty", Landlock.FS.device.union(.ioctlDev)))
            rules.append(R("/dev/pts", Landlock.FS.device.union(.ioctlDev)))
        } else if purpose == .run && isatty(0) == 1 {
            rules.append(R("/dev/tty", Landlock.FS.device.union(.ioctlDev)))
        }
        // GPUs: each allowed node read-write plus device ioctls (the CUDA driver
        // talks to the kernel module only through ioctl and mmap).
        for node in gpu.deviceNodes { rules.append(R(node, .gpuDevice)) }
        // /proc: CUDA and PyTorch name their threads through (fopen "w": truncate too)
        // /proc/self/task/TID/comm and read /proc/driver/nvidia, /proc/self/maps,
        // /proc/cpuinfo. Landlock rules attach to inodes, not to "self", so the
        // narrowest rule that works is read + write_file on /proc; other
        // processes' files stay closed by ptrace access checks (different uid,
        // no capabilities) and /proc/sys by file modes.
        rules.append(R("/proc", [.readFile, .readDir, .writeFile, .truncate]))
        // /sys, read-only, only what torch and the CUDA driver read: CPU and
        // NUMA topology, PCI devices, the nvidia module's parameters, cgroup
        // CPU quota, transparent huge pages.
        for dir in ["/sys/devices", "/sys/bus", "/sys/module", "/sys/fs/cgroup", "/sys/kernel/mm/transparent_hugepage"] {
            rules.append(R(dir, .read))
        }
        if purpose == .check {
            // Exactly this binary and the libraries it has mapped.
            for file in selfMappedFiles { rules.append(R(file, [.readFile, .execute])) }
        }
        return rules
    }
}

extension Landlock {
    /// What `launcher.landlock` makes of a built ruleset: with `true`
    /// (`.enforce`) every rule must hold, so a kernel that lacks one is a
    /// refusal naming each missing piece and the kernel that has it; with
    /// `"best-effort"` the same list comes back as WARNING lines, printed at
    /// every start. Nothing is ever silently weaker.
    public static func enforcementNotes(_ summary: Summary, mode: Config.LandlockMode, what: String) throws -> [String] {
        let missing = summary.notEnforced
        var notes = summary.gaps.filter { !$0.weaker }.map { "note: Landlock ABI \(summary.abi): \($0)" }
        guard !missing.isEmpty, mode != .off else { return notes }
        let kernelText = "this kernel (Linux \(Kernel.release), Landlock ABI \(summary.abi))"
        if mode == .enforce {
            let needed = summary.gaps.filter(\.weaker).map(\.abi).max() ?? 1
            throw SandboxError.failure("\(what): \(kernelText) cannot enforce every Landlock rule, and launcher.landlock is true. Not enforced here: "
                                       + missing.joined(separator: "; "),
                                       hint: "set launcher.landlock to \"best-effort\" to run with what this kernel enforces (the rest is named at every start), "
                                           + "or boot Linux \(kernel(abi: needed)) or later")
        }
        notes.append("WARNING: Landlock NOT fully enforced on \(kernelText), launcher.landlock = \"best-effort\": " + missing.joined(separator: "; "))
        return notes
    }
}
