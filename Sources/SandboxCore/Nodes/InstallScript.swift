import Crypto
import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// A node's install.py (`custom_nodes[].install_script: true`), run the way
/// its requirements are installed: never as root, never in the node's own
/// checkout.
///
/// 1. root copies the checkout (without .git) into a staging directory as
///    `custom_nodes/NAME` (root-owned top, 0755), beside a scratch
///    `models/` (COMFYUI_MODEL_PATH) and `custom_nodes/skip_download_model`
///    (models are the user's, in a read-only share: install scripts that
///    honour it, as Impact-Pack's does, download none), and hands the copy
///    to the sandbox user;
/// 2. `VENV/bin/python install.py` runs there as the sandbox user under
///    `SandboxConfinement.forInstall` (writable only in staging, the host's
///    network as pip has it), with COMFYUI_PATH, the node's variables and
///    the venv first on PATH; what it leaves running is killed;
/// 3. root seals the copy by descriptor (root:root, no group/other write,
///    multiply-linked files refused), then moves what install.py ADDED
///    (paths the checkout does not have: a cloned subpack, an .ini) into the
///    checkout. Changes to files the checkout already has are not carried
///    over (named in the output): the commit stays the commit;
/// 4. `state_dir/nodes/NAME.install.json` records the fingerprint (the
///    node's commit, install.py, its variables) and
///    the added paths, which are removed before the next run.
public enum InstallScript {
    public struct Record: Codable, Sendable, Equatable {
        public var fingerprint: String
        public var added: [String]
        public var ranAt: String
        public var status: Int32
        enum CodingKeys: String, CodingKey {
            case fingerprint, added, status
            case ranAt = "ran_at"
        }
    }

    static func recordPath(_ config: Config, _ node: Config.CustomNode) -> String {
        config.nodesStateDir + "/" + node.name + ".install.json"
    }

    static func load(_ config: Config, _ node: Config.CustomNode) -> Record? {
        RootFile.read(recordPath(config, node)).flatMap { try? JSONDecoder().decode(Record.self, from: $0) }
    }

    /// What the run depends on: a change of any reruns it.
    static func fingerprint(_ config: Config, _ node: Config.CustomNode, dir: String) -> String? {
        guard let head = GitFiles.detachedHead(dir), let script = FileManager.default.contents(atPath: dir + "/install.py") else { return nil }
        var h = SHA256()
        h.update(data: Data((head + "\0").utf8))
        h.update(data: script)
        for (k, v) in NodeEnvironment.variables(config, node).sorted(by: { $0.key < $1.key }) { h.update(data: Data("\0\(k)=\(v)".utf8)) }
        return Format.hex(h.finalize()).prefix(24).description
    }

    public static func nodes(_ config: Config) -> [Config.CustomNode] {
        config.customNodes.filter { $0.enabled && $0.installScript }
    }

    /// True when every node's install.py ran for what is installed now.
    public static func settled(_ config: Config) -> Bool {
        nodes(config).allSatisfy { n in
            let dir = config.customNodesDir + "/" + n.name
            guard let fp = fingerprint(config, n, dir: dir) else { return true }   // no install.py: nothing to run
            return load(config, n)?.fingerprint == fp
        }
    }

    /// Runs each node's install.py whose fingerprint changed; one outcome per node run.
    public static func settle(_ config: Config, progress: ((String) -> Void)?) -> [Outcome] {
        var out: [Outcome] = []
        for n in nodes(config) {
            let dir = config.customNodesDir + "/" + n.name
            guard let fp = fingerprint(config, n, dir: dir) else {
                if SafeFS.lstat(dir) != nil, SafeFS.lstat(dir + "/install.py") == nil {
                    out.append(Outcome(name: n.name, kind: .failed, message: "install_script is true but the node has no install.py"))
                }
                continue
            }
            if load(config, n)?.fingerprint == fp { continue }
            do {
                let r = try run(config, n, dir: dir, fingerprint: fp, progress: progress)
                out.append(Outcome(name: n.name, kind: r.status == 0 ? .installed : .failed,
                                   message: "install.py" + (r.status == 0 ? "" : " exited \(r.status)")
                                       + (r.added.isEmpty ? ", added nothing" : ", added \(r.added.joined(separator: ", "))")))
            } catch {
                out.append(Outcome(name: n.name, kind: .failed, message: "install.py: \(error)"))
            }
        }
        return out
    }

    static func run(_ config: Config, _ node: Config.CustomNode, dir: String, fingerprint fp: String,
                    progress: ((String) -> Void)?) throws -> Record {
        let id = try AccountLookup.sandboxIdentity(config)
        let env = PythonEnv(config)
        guard env.hasVenv else { throw SandboxError.failure("no venv at \(env.venv); run `comfy-sandbox provision`") }
        // What the last run added goes first: this run starts from the commit.
        if let old = load(config, node) { try removeAdded(old.added, from: dir) }

        let parent = Paths.deletingLastComponent(env.venv)
        let (staging, stagingFD) = try SafeFS.makeTemporaryDirectory(in: parent, prefix: ".cs-script-", mode: 0o755)
        close(stagingFD)
        defer { try? removeTree(staging) }
        let nodes = staging + "/custom_nodes"
        let copy = nodes + "/" + node.name
        guard mkdir(nodes, 0o755) == 0 else { throw SandboxError.failure("cannot create \(nodes): \(Errno.current)") }
        // Root copies root's checkout (nothing the sandbox can change yet), then lends it.
        try HostCommand("/bin/cp", ["-a", "--no-preserve=ownership", "--", dir, copy]).check("copying \(dir) for its install.py")
        try removeTree(copy + "/.git")
        try AtomicFile.write(Data(), to: nodes + "/skip_download_model", mode: 0o644, owner: (0, 0), durable: false)
        let lend = TreeOwnership.Rule(uid: id.user.uid, gid: id.user.gid, dirKeep: 0o755, dirAdd: 0o700, fileKeep: 0o755, fileAdd: 0o600)
        let refused = try TreeOwnership.apply(lend, to: copy)
        if !refused.isEmpty { throw SandboxError.failure("\(dir) holds entries that cannot be handed over: \(refused.map(\.path).prefix(3).joined(separator: ", "))") }
        for sub in ["home", "tmp", "models"] {
            let d = staging + "/" + sub
            try SafeFS.makeDirectory(d, mode: 0o700, uid: id.user.uid, gid: id.user.gid)
        }

        var environment = NodeEnvironment.variables(config, node)
        environment.merge([
            "PATH": env.venv + "/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": staging + "/home",
            "TMPDIR": staging + "/tmp",
            "VIRTUAL_ENV": env.venv,
            "COMFYUI_PATH": config.comfyui.path,
            "COMFYUI_MODEL_PATH": staging + "/models",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C.UTF-8",
        ]) { _, ours in ours }
        progress?("\(node.name): running install.py as \(id.user.name) on a copy of the node")
        let confinement = try SandboxConfinement.forInstall(config, writable: [staging])
        let r = try HostCommand(env.python, ["install.py"], environment: environment, workingDirectory: copy).run(confinement: confinement)
        for line in (r.stdoutText + r.stderrText).split(separator: "\n").suffix(r.succeeded ? 8 : 25) {
            progress?("  \(node.name) install.py: " + Format.escape(Array(line.utf8)))
        }

        // Sealed, then what it added moved into the checkout.
        let skipped = try TreeOwnership.apply(.sealed, to: copy)
        if !skipped.isEmpty {
            throw SandboxError.failure("refusing what \(node.name)'s install.py left: \(skipped.prefix(5).map { "\($0.path) \($0.why)" }.joined(separator: "; "))")
        }
        var added: [String] = []
        var changed: [String] = []
        try carryAdditions(from: copy, to: dir, relative: "", added: &added, changed: &changed)
        if !changed.isEmpty {
            progress?("\(node.name): install.py changed \(changed.count) file(s) the commit has; not carried over: \(changed.prefix(5).joined(separator: ", "))")
        }
        let record = Record(fingerprint: fp, added: added.sorted(), ranAt: Timestamp.now(), status: r.status)
        try StateDirectory.ensure(config.nodesStateDir)
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try e.encode(record), to: recordPath(config, node), mode: 0o644, owner: (0, 0))
        return record
    }

    /// Moves every entry of the sealed copy that `dest` lacks into `dest`
    /// (whole subtrees), by directory fd, never following a link in either
    /// tree; entries both have are compared only to be named when they differ.
    static func carryAdditions(from src: String, to dest: String, relative: String, added: inout [String], changed: inout [String]) throws {
        let sfd = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard sfd >= 0 else { throw SandboxError.failure("cannot open \(src): \(Errno.current)") }
        defer { close(sfd) }
        let dfd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dfd >= 0 else { throw SandboxError.failure("cannot open \(dest): \(Errno.current)") }
        defer { close(dfd) }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: src)) ?? []).sorted()
        for name in names {
            let rel = relative.isEmpty ? name : relative + "/" + name
            var sst = stat(), dst = stat()
            guard fstatat(sfd, name, &sst, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if fstatat(dfd, name, &dst, AT_SYMLINK_NOFOLLOW) != 0 {
                guard errno == ENOENT else { throw SandboxError.failure("cannot look at \(dest)/\(name): \(Errno.current)") }
                guard renameat(sfd, name, dfd, name) == 0 else {
                    throw SandboxError.failure("cannot move \(rel) into \(dest): \(Errno.current)")
                }
                added.append(rel)
                continue
            }
            if SafeFS.isDirectory(sst) && SafeFS.isDirectory(dst) {
                try carryAdditions(from: src + "/" + name, to: dest + "/" + name, relative: rel, added: &added, changed: &changed)
            } else if sst.st_size != dst.st_size || (sst.st_mode & S_IFMT) != (dst.st_mode & S_IFMT)
                        || FileManager.default.contents(atPath: src + "/" + name) != FileManager.default.contents(atPath: dest + "/" + name) {
                changed.append(rel)
            }
        }
    }

    /// Removes what an earlier run added. Each path is one the record names
    /// (relative, no `..`), reached by fd without following links (a
    /// writable node's tree is the sandbox's to rearrange).
    static func removeAdded(_ paths: [String], from dir: String) throws {
        for rel in paths where !rel.isEmpty && !rel.hasPrefix("/") {
            FileTree.removeTree(under: dir, relative: rel)
        }
    }
}
