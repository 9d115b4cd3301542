import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// What goes into a session's constructed root (ConstructedRoot), for
/// ComfyUI and `run`/`shell`/`check-sandbox` (`forSession`) and for confined
/// installs (`forInstall`). The order is bubblewrap's: the read-only system,
/// the code, the writable places over it, then the private tmpfs, /dev,
/// /proc and /run, each with the reason it is there.
public enum RootLayout {
    /// The /etc entries a Python program, pip/uv and CUDA read; nothing else
    /// of /etc is there. passwd and group are written, not bound: the
    /// sandbox sees its own accounts, not the host's.
    static let etcEntries = [
        "hosts", "host.conf", "nsswitch.conf", "resolv.conf", "gai.conf", "localtime", "timezone",
        "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates", "ca-certificates.conf", "pki",
        "alternatives", "mime.types", "fonts", "protocols", "services", "os-release", "debian_version",
        "gitconfig", "OpenCL", "vulkan", "glvnd", "nvidia", "bash.bashrc", "inputrc", "profile", "terminfo",
        // The administrator's installer settings (an index mirror, a CA) for confined installs.
        "pip.conf", "xdg", "uv",
    ]

    /// Sizes of the private tmpfs (RAM): /tmp, /dev/shm (ComfyUI's temp lives
    /// there), the JIT directory, /run.
    public struct Sizes: Sendable {
        public var tmp = "1g"
        public var shm: String
        public var jit = "2g"
        public init(shm: String) { self.shm = shm }
    }

    /// The common base: system, Python, /etc, accounts, /dev, /proc, /sys, /run, /tmp.
    static func base(_ r: ConstructedRoot, _ config: Config, id: AccountLookup.SandboxIdentity, gpu: GPUSelection,
                     sizes: Sizes, terminal: Bool) throws {
        let uid = id.user.uid, gid = id.user.gid
        // System: programs and libraries, read-only. On a merged-/usr system
        // /bin, /lib... are links into /usr: the same links, not binds.
        try r.bind("/usr", .readOnly, required: true)
        for dir in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            if let st = SafeFS.lstat(dir) {
                if SafeFS.isSymlink(st), let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir) {
                    r.symlink(dir, to: target)
                } else if SafeFS.isDirectory(st) {
                    try r.bind(dir, .readOnly)
                }
            }
        }
        // The private mounts first: a bind below /tmp or /run (a venv in a
        // test's world) must land on them, not be hidden by them.
        // /tmp: private, in RAM, bounded, not executable.
        r.tmpfs("/tmp", size: sizes.tmp, mode: 0o1777, rule: .readWrite)
        // /dev: a tmpfs holding only the usual nodes (bound from the host's),
        // the allowed GPUs' and a private, bounded /dev/shm.
        // Listable (libraries glob /dev/nvidia*); each node has its own rule.
        r.tmpfs("/dev", size: "64k", mode: 0o755, rule: [.readDir])
        var nodes = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]
        if terminal { nodes.append("/dev/tty") }
        for node in nodes { try r.bind(node, .device) }
        for node in gpu.deviceNodes { try r.bind(node, .device) }
        r.symlink("/dev/fd", to: "/proc/self/fd")
        r.symlink("/dev/stdin", to: "/proc/self/fd/0")
        r.symlink("/dev/stdout", to: "/proc/self/fd/1")
        r.symlink("/dev/stderr", to: "/proc/self/fd/2")
        r.tmpfs("/dev/shm", size: sizes.shm, mode: 0o1777, rule: .readWrite)
        // /proc of the new PID namespace: only the session's processes.
        // memfd_noexec=2 (6.3+): no memfd can ever be executed in here.
        // /proc/sys and the other kernel knobs read-only, as bubblewrap does.
        r.proc()
        r.write("/proc/sys/vm/memfd_noexec", "2\n", optional: true)
        for knob in ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"] { r.readOnly(knob) }
        // CUDA and PyTorch name their threads through /proc/self/task/TID/comm
        // (opened for writing) and read /proc/driver/nvidia, /proc/cpuinfo.
        r.rule("/proc", [.readFile, .readDir, .writeFile, .truncate])
        // /sys, read-only, only what torch and the CUDA driver read: CPU and
        // NUMA topology, PCI devices, the nvidia module's parameters,
        // transparent huge pages; and a cgroup2 of the session's own cgroup
        // namespace (CPU quota), not the host's tree.
        for dir in ["/sys/devices", "/sys/bus", "/sys/module", "/sys/kernel/mm/transparent_hugepage", "/sys/class/drm"] {
            try r.bind(dir, .readOnly)
        }
        r.cgroup2("/sys/fs/cgroup")
        r.rule("/sys/fs/cgroup", .read)
        // /run: empty but for nvidia-persistenced's socket (CUDA asks it).
        r.tmpfs("/run", size: "1m", mode: 0o755)
        if let st = SafeFS.lstat("/run/nvidia-persistenced/socket"), (st.st_mode & S_IFMT) == S_IFSOCK {
            try r.bind("/run/nvidia-persistenced/socket", .device)
        }
        // Python's own prefix when it is not under /usr (pyenv, conda), and a
        // venv comfyui.python may itself be in.
        for python in [config.comfyui.python, config.venvPath + "/bin/python"] {
            if let prefix = Launcher.pythonPrefix(python), !prefix.hasPrefix("/usr/") && prefix != "/usr" {
                try r.bind(prefix, .readOnly)
            }
            if let venv = Launcher.venvOf(python), venv != config.venvPath { try r.bind(venv, .readOnly) }
        }
        // /etc: the entries needed, followed when they are links (resolv.conf
        // into /run, localtime into /usr/share): they are root's files.
        for name in etcEntries { try r.bind("/etc/" + name, .readOnly, follow: true) }
        for python in ((try? FileManager.default.contentsOfDirectory(atPath: "/etc")) ?? []).filter({ $0.hasPrefix("python3") }).sorted() {
            try r.bind("/etc/" + python, .readOnly, follow: true)
        }
        r.file("/etc/passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\n"
               + "\(id.user.name):x:\(uid):\(gid)::\(config.sandboxUser.home):/usr/sbin/nologin\n"
               + "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
        r.file("/etc/group", "root:x:0:\n\(id.sharedGroup.name):x:\(id.sharedGroup.gid):\(id.user.name)\nnogroup:x:65534:\n")
        r.file("/etc/hostname", r.hostname + "\n")
        // Landlock rules attach to inodes: this /etc is the root's own
        // directory, not the host's, so its rule is added inside.
        r.rule("/etc", .read)
    }

    /// The root for ComfyUI, `run`, `shell` and `check-sandbox`.
    public static func forSession(_ config: Config, id: AccountLookup.SandboxIdentity, gpu: GPUSelection, terminal: Bool,
                                  extraReadOnly: [String] = []) throws -> ConstructedRoot {
        let r = ConstructedRoot()
        let owner = (id.user.uid, id.user.gid)
        try base(r, config, id: id, gpu: gpu, sizes: Sizes(shm: config.launcher.limits.shmSize), terminal: terminal)
        // The JIT directory: the one writable place whose files may be
        // executed (Triton, TorchInductor and CUDA load the kernels they
        // compile from there), per session, in RAM.
        r.tmpfs(ConstructedRoot.jitDirectory, size: "2g", mode: 0o700, owner: owner, exec: true,
                rule: Landlock.FS.readWrite.union(.execute))
        r.directory(ConstructedRoot.tempDirectory, mode: 0o700, owner: owner)
        // The venv and ComfyUI with its nodes, read-only; over them what the
        // sandbox may write: ComfyUI's user directory, web/extensions and the
        // nodes marked writable (noexec).
        try r.bind(config.venvPath, .readOnly)
        try r.bind(config.comfyui.path, .readOnly)
        for dir in [config.comfyui.path + "/user", config.comfyui.path + "/web/extensions"] { try r.bind(dir, .readWrite) }
        for node in config.customNodes where node.writable && node.enabled {
            try r.bind(config.customNodesDir + "/" + node.name, .readWrite)
        }
        // Each share at its own path (ComfyUI reaches them through its
        // links and its --input/--output-directory), not recursively: a mount
        // someone made inside a share is not carried in.
        for share in config.shares {
            try r.bind(share.path, share.access.writable ? .readWrite : .readOnly, recursive: false, required: true)
        }
        if let cache = config.models.hfCache { try r.bind(cache, .readOnly) }
        // The sandbox's home (its node-data), writable, not executable.
        try r.bind(config.sandboxUser.home, .readWrite, recursive: false, required: true)
        // What a re-executed copy of this binary maps (check-sandbox): the
        // ones not already inside a bound directory.
        for path in extraReadOnly where !r.binds.contains(where: { !$0.writable && path.hasPrefix($0.target + "/") }) {
            try r.bind(path, .readOnly, follow: true)
        }
        return r
    }

    /// The root for a confined install: the system, the venv and ComfyUI
    /// read-only, the staging directory writable (and executable: builds run
    /// what they compile there; it is sealed before anything uses it), the
    /// host's network (pip), no GPU.
    public static func forInstall(_ config: Config, id: AccountLookup.SandboxIdentity, writable: [String],
                                  readable: [String]) throws -> ConstructedRoot {
        let r = ConstructedRoot()
        let none = GPUSelection(indexes: [], deviceNodes: [], cudaVisibleDevices: "", note: nil)
        try base(r, config, id: id, gpu: none, sizes: Sizes(shm: config.launcher.limits.shmSize), terminal: false)
        if Paths.exists(config.venvPath) { try r.bind(config.venvPath, .readOnly) }
        if Paths.exists(config.comfyui.path) { try r.bind(config.comfyui.path, .readOnly) }
        for path in readable { try r.bind(path, .readOnly, follow: true) }
        for path in writable { try r.bindExecutable(path) }
        return r
    }
}
