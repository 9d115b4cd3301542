import FoundationEssentials
import SandboxOS

/// The whole configuration, as ../shared/CONTRACT.md fixes it. Decoding
/// applies the contract's defaults and rejects unknown keys; `validate()`
/// then checks what types cannot (paths, names, nesting). Both run before
/// anything on disk changes.
public struct Config: Codable, Equatable, Sendable {
    public var version: Int
    public var primaryUser: String
    public var sandboxUser: SandboxUser
    public var sharedGroup: SharedGroup
    public var stateDir: String
    public var comfyui: ComfyUI
    public var shares: [Share]
    public var customNodes: [CustomNode]
    public var git: Git
    public var launcher: Launcher
    public var models: Models
    /// Set by `forInstance`: the instance this view of the config is for
    /// (nil: the one implicit instance). Not a key of the file.
    public var instance: String? = nil

    public struct SandboxUser: Codable, Equatable, Sendable {
        public var name: String = "comfyui_sandbox"
        public var home: String = "/home/comfyui_sandbox"
        public init() {}
    }

    public struct SharedGroup: Codable, Equatable, Sendable {
        public var name: String = "comfyshared"
        /// Defaults to `[primary_user]` (filled in by Config's decoder).
        public var members: [String] = []
        public init() {}
    }

    public struct ComfyUI: Codable, Equatable, Sendable {
        public var repo: String = "https://github.com/comfyanonymous/ComfyUI.git"
        public var rev: String = "v0.3.66"
        public var path: String = "/opt/comfy-sandbox/ComfyUI"
        public var python: String = "/usr/bin/python3"
        public var installRequirements: Bool = true
        /// Extra arguments for pip/uv when installing requirements (e.g.
        /// ["--no-index", "--find-links", "/srv/wheels"] for offline installs).
        public var pipArgs: [String] = []
        /// Requirement lines installed with ComfyUI's own (name, name==version,
        /// name>=version): what upstream imports without listing. The default
        /// goes with the default rev: ComfyUI 0.3.6x imports `requests`
        /// (app/frontend_management.py) without listing it, and current
        /// huggingface_hub no longer pulls it in.
        public var extraRequirements: [String] = ["requests"]
        /// What installs requirements as the sandbox user.
        public var installer: Installer = .auto
        /// A requirements file of `name==version` pins (what import-snapshot
        /// writes from a ComfyUI-Manager snapshot's pips): a resolution with
        /// no lock of its own to start from keeps these versions where they
        /// still fit (uv's preferences). null: none.
        public var preferVersions: String? = nil
        public init() {}
    }

    public enum Installer: String, Codable, Equatable, Sendable, CaseIterable {
        case auto, uv, pip
    }

    public enum Access: String, Codable, Equatable, Sendable, CaseIterable {
        case readOnly = "read-only"
        case readWrite = "read-write"
        public var writable: Bool { self == .readWrite }
    }

    public struct Share: Codable, Equatable, Sendable {
        public var name: String
        public var path: String
        /// Where ComfyUI sees the share, relative to `comfyui.path`.
        public var mount: String
        public var access: Access
        public init(name: String, path: String, mount: String, access: Access) {
            self.name = name
            self.path = path
            self.mount = mount
            self.access = access
        }
    }

    public enum RequirementsFailure: String, Codable, Equatable, Sendable, CaseIterable {
        /// ComfyUI does not load the node.
        case disable
        /// ComfyUI loads it anyway, without its requirements.
        case loadWithout = "load-without"
    }

    public struct CustomNode: Codable, Equatable, Sendable {
        public var name: String
        public var repo: String
        public var rev: String = "main"
        public var enabled: Bool = true
        public var writable: Bool = false
        public var installRequirements: Bool = false
        public var note: String? = nil
        /// Check out submodules too (off unless asked: a .gitmodules can name any URL).
        public var submodules: Bool = false
        /// Extra environment for ComfyUI (and this node's install script);
        /// `$NODE_DATA` in a value is this node's writable data directory.
        public var env: [String: String] = [:]
        /// Run the node's install.py at install time, confined like its
        /// requirements, and seal what it adds.
        public var installScript: Bool = false
        /// What happens when this node's requirements cannot be installed.
        public var onRequirementsFailure: RequirementsFailure = .disable
        public init(name: String, repo: String, rev: String = "main") {
            self.name = name
            self.repo = repo
            self.rev = rev
        }
    }

    public struct Git: Codable, Equatable, Sendable {
        public var allowedProtocols: [String] = ["https"]
        public init() {}
    }

    public enum Network: String, Codable, Equatable, Sendable, CaseIterable {
        case loopbackOnly = "loopback-only"
        case host
    }

    /// `launcher.gpu`: "auto", "none" or a list of GPU indexes.
    public enum GPU: Equatable, Sendable {
        case auto
        case none
        case indexes([Int])
    }

    /// `launcher.landlock`: true (refuse to start without it), false, or
    /// "best-effort" (start and say loudly what is not enforced).
    public enum LandlockMode: Equatable, Sendable {
        case enforce
        case bestEffort
        case off
    }

    public struct Limits: Codable, Equatable, Sendable {
        public var nofile: UInt64 = 65536
        public var nproc: UInt64 = 4096
        /// The session's memory ceiling (cgroup memory.max, systemd MemoryMax=),
        /// like "24g"; null: none.
        public var memory: String? = nil
        /// At most this many processes and threads in the session (pids.max,
        /// TasksMax=); null: none beyond `nproc`, the sandbox user's own
        /// RLIMIT_NPROC, which already counts threads too.
        public var tasks: UInt64? = nil
        /// CPU weight against the host's other work (cpu.weight, CPUWeight=; 1-10000, 100 = equal).
        public var cpuWeight: UInt64 = 100
        /// The private /dev/shm's size (ComfyUI's temp lives there), like "2g".
        public var shmSize: String = "2g"
        public init() {}
        /// The cgroup controllers whose limit is set (named alike in v1 and
        /// v2); nofile, nproc and shm_size need none.
        public var cgroupControllers: [String] {
            var out: [String] = []
            if memory != nil { out.append("memory") }
            if tasks != nil { out.append("pids") }
            if cpuWeight != 100 { out.append("cpu") }
            return out
        }
        /// Whether any limit asks for something a cgroup would enforce.
        public var needCgroup: Bool { !cgroupControllers.isEmpty }
    }

    public struct Launcher: Codable, Equatable, Sendable {
        public var listen: String = "127.0.0.1"
        public var port: Int = 8188
        public var network: Network = .loopbackOnly
        public var gpu: GPU = .auto
        public var seccomp: Bool = true
        public var landlock: LandlockMode = .enforce
        public var ramTemp: Bool = true
        public var limits: Limits = Limits()
        public var extraArgs: [String] = []
        /// A non-loopback `listen` is refused unless this is true (use `ssh -L` instead).
        public var allowRemoteListen: Bool = false
        /// One confined ComfyUI per entry, sharing the install; empty: one,
        /// "default", from `gpu` and `port`.
        public var instances: [Instance] = []
        /// The local users the UI port serves (root always), told apart by
        /// the uid owning the connecting socket. Default `[primary_user]`
        /// (set where the config is decoded); `["*"]` serves anyone,
        /// including peers on other machines.
        public var uiUsers: [String] = []
        /// Names the UI may be reached by besides the listen address,
        /// `localhost`, `127.0.0.1` and `[::1]` (with the port): `name` (on
        /// launcher.port) or `name:port`, e.g. the local end of an `ssh -L`.
        public var uiHosts: [String] = []
        /// The Content-Security-Policy the relay puts on every response; "" for none.
        public var uiCSP: String = Launcher.defaultCSP
        /// The services a loopback-only sandbox may reach through the egress
        /// proxy: `host`, `*.host` (subdomains only), optionally `:port`
        /// (else 443 and 80). Empty: loopback only.
        public var egress: [String] = []
        public init() {}

        /// Scripts, styles, images, fonts, media, workers, connections
        /// (WebSocket included: CSP 3's 'self' matches ws: to the same host
        /// and port) and frames only from the UI's own origin; images and
        /// media also from data: and blob: (previews), styles also inline
        /// (the frontend sets them); no plugins, no framing by other sites,
        /// forms only to itself.
        public static let defaultCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            + "img-src 'self' data: blob:; font-src 'self' data:; media-src 'self' data: blob:; "
            + "connect-src 'self'; worker-src 'self' blob:; frame-src 'self'; frame-ancestors 'self'; "
            + "object-src 'none'; base-uri 'self'; form-action 'self'"
    }

    /// One ComfyUI of several (a GPU each, typically): its own port, GPUs,
    /// device nodes, RAM temp, cgroup, pid file and log.
    public struct Instance: Codable, Equatable, Sendable {
        public var name: String
        public var gpu: GPU
        public var port: Int
        public var extraArgs: [String] = []
        /// Overrides launcher.limits.memory for this instance.
        public var memory: String? = nil
        /// "shared" (default): every instance writes the output share;
        /// "own": this one writes output/<name> in it.
        public var output: InstanceOutput = .shared
        public init(name: String, gpu: GPU, port: Int) {
            self.name = name
            self.gpu = gpu
            self.port = port
        }
    }

    public enum InstanceOutput: String, Codable, Equatable, Sendable, CaseIterable {
        case shared, own
    }

    public struct ModelLink: Codable, Equatable, Sendable {
        /// "org/name" on the Hugging Face hub.
        public var repo: String
        /// Path of the file inside the repository (nested paths are flattened).
        public var file: String
        /// Directory under the models share.
        public var dir: String
        public var rename: String? = nil
        /// A commit or ref under the cache's refs/; default the ref `main`.
        public var revision: String? = nil
        public init(repo: String, file: String, dir: String, rename: String? = nil, revision: String? = nil) {
            self.repo = repo
            self.file = file
            self.dir = dir
            self.rename = rename
            self.revision = revision
        }
    }

    public struct Models: Codable, Equatable, Sendable {
        public var hfCache: String? = nil
        public var links: [ModelLink] = []
        public init() {}
    }

    public static let defaultShares: [Share] = [
        Share(name: "models", path: "/home/alice/workspace/ai/models", mount: "models", access: .readOnly),
        Share(name: "workflows", path: "/home/alice/workspace/ai/comfy/workflows", mount: "user/default/workflows", access: .readWrite),
        Share(name: "input", path: "/home/alice/workspace/ai/input", mount: "input", access: .readWrite),
        Share(name: "output", path: "/home/alice/workspace/ai/output", mount: "output", access: .readWrite),
    ]

    public init(primaryUser: String) {
        version = 1
        self.primaryUser = primaryUser
        sandboxUser = SandboxUser()
        sharedGroup = SharedGroup()
        sharedGroup.members = [primaryUser]
        stateDir = "/var/lib/comfy-sandbox"
        comfyui = ComfyUI()
        shares = Config.defaultShares
        customNodes = []
        git = Git()
        launcher = Launcher()
        launcher.uiUsers = [primaryUser]
        models = Models()
    }

    // MARK: conveniences used across the core

    public func share(named name: String) -> Share? { shares.first { $0.name == name } }
    public var nodesStateDir: String { stateDir + "/nodes" }
    public var lockPath: String { stateDir + "/lock" }
    public var customNodesDir: String { comfyui.path + "/custom_nodes" }
    /// The Python environment ComfyUI runs in, beside its checkout.
    public var venvPath: String { Paths.deletingLastComponent(comfyui.path) + "/venv" }
}

extension Config {
    /// The configured instances, or the one implicit "default" from
    /// launcher.gpu and launcher.port.
    public var instances: [Instance] {
        launcher.instances.isEmpty ? [Instance(name: "default", gpu: launcher.gpu, port: launcher.port)] : launcher.instances
    }

    /// This config as one instance sees it: its port, GPUs, extra arguments
    /// and memory in `launcher`, `instance` set (pid file, log, output).
    /// nil or the implicit instance's name with no instances configured:
    /// the config as it is.
    public func forInstance(_ name: String?) throws -> Config {
        if launcher.instances.isEmpty {
            guard name == nil || name == "default" else {
                throw SandboxError(.usage, "no instance named \"\(name!)\": launcher.instances is empty (one instance, \"default\")")
            }
            return self
        }
        let chosen: Instance
        if let name {
            guard let i = launcher.instances.first(where: { $0.name == name }) else {
                throw SandboxError(.usage, "no instance named \"\(name)\" in launcher.instances",
                                   hint: "configured: \(launcher.instances.map(\.name).joined(separator: ", "))")
            }
            chosen = i
        } else {
            chosen = launcher.instances[0]
        }
        var c = self
        c.instance = chosen.name
        c.launcher.port = chosen.port
        c.launcher.gpu = chosen.gpu
        c.launcher.extraArgs += chosen.extraArgs
        if let m = chosen.memory { c.launcher.limits.memory = m }
        return c
    }

    /// The configured instance of this view, when it is one of launcher.instances.
    public var currentInstance: Instance? { instance.flatMap { n in launcher.instances.first { $0.name == n } } }

    /// Where this instance's ComfyUI writes its outputs.
    public var outputDirectory: String? {
        guard let out = shares.first(where: { $0.name == "output" })?.path else { return nil }
        if let i = currentInstance, i.output == .own { return out + "/" + i.name }
        return out
    }
}

