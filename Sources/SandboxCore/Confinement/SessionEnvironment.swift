import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

// What a session runs with: its environment, built from nothing, the
// Python and the command line ComfyUI starts with, and the PATH lookup of
// `run`'s command.
extension Launcher {
    /// Real path of a Python's installation prefix (…/bin/python → …).
    static func pythonPrefix(_ python: String) -> String? {
        guard let real = realpath(python, nil) else { return nil }
        defer { free(real) }
        let path = String(cString: real)
        let prefix = Paths.deletingLastComponent(Paths.deletingLastComponent(path))
        return prefix == "/" || prefix.isEmpty ? nil : prefix
    }

    /// The venv `python` belongs to (…/venv/bin/python, with …/venv/pyvenv.cfg),
    /// named as configured, not resolved: a venv's python is a symlink out of it.
    static func venvOf(_ python: String) -> String? {
        let dir = Paths.deletingLastComponent(Paths.deletingLastComponent(python))
        return !dir.isEmpty && dir != "/" && Paths.exists(dir + "/pyvenv.cfg") ? dir : nil
    }

    /// The environment, built from nothing.
    /// `jit`: the constructed root's executable RAM directory, where the
    /// kernel caches go (elsewhere nothing written is executable).
    public static func environment(_ config: Config, home: String, temp: String, gpu: GPUSelection, jit: String? = nil) -> [String: String] {
        var path = "/usr/local/bin:/usr/bin:/bin"
        // What nodes read to find a writable place (their data directories,
        // their `env`) first; the launcher's own variables win over them.
        var env = NodeEnvironment.variables(config)
        env.merge([
            "HOME": home,
            "LANG": "C.UTF-8",
            "TMPDIR": temp,
            "USER": config.sandboxUser.name,
            "LOGNAME": config.sandboxUser.name,
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            // What ComfyUI and the nodes print goes to launcher.log (a file,
            // so Python would block-buffer it and lose it on a crash, which is
            // when it matters), and a node's print() must land beside
            // ComfyUI's own log lines in the order they happened.
            "PYTHONUNBUFFERED": "1",
            "CUDA_CACHE_PATH": (jit ?? home + "/.cache") + "/nv/ComputeCache",
            "TRITON_CACHE_DIR": (jit ?? home + "/.cache") + "/triton",
            "TORCHINDUCTOR_CACHE_DIR": (jit ?? home + "/.cache") + "/torchinductor",
            "DO_NOT_TRACK": "1",
        ]) { _, launcher in launcher }
        if let cache = config.models.hfCache { env["HF_HUB_CACHE"] = cache }
        if config.launcher.network == .loopbackOnly {
            let rules = Egress.rules(config.launcher.egress)
            if !rules.isEmpty {
                // The egress proxy. Lowercase too: curl reads only
                // http_proxy (never HTTP_PROXY, a CGI hazard), and wget, git
                // and Python read either. ALL_PROXY names the same HTTP proxy
                // (no SOCKS is offered); loopback stays direct.
                for name in ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"] {
                    env[name] = Egress.proxyURL
                    env[name.lowercased()] = Egress.proxyURL
                }
                env["NO_PROXY"] = "localhost,127.0.0.1"
                env["no_proxy"] = "localhost,127.0.0.1"
            }
            // Hugging Face's hub stays offline unless the list lets it reach
            // huggingface.co: otherwise every lookup would wait for a timeout.
            if !Egress.allowsHuggingFace(rules) { env["HF_HUB_OFFLINE"] = "1" }
        }
        if Paths.isExecutableFile(config.venvPath + "/bin/python") {
            env["VIRTUAL_ENV"] = config.venvPath
            path = config.venvPath + "/bin:" + path
        }
        env["PATH"] = path
        env["CUDA_VISIBLE_DEVICES"] = gpu.cudaVisibleDevices
        return env
    }

    static func ensureInstanceOutput(share: String, name: String, config: Config) throws {
        guard let fd = try SafeFS.openDirectory(share) else {
            throw SandboxError.failure("the output share \(share) does not exist", hint: "run `comfy-sandbox provision`")
        }
        defer { close(fd) }
        if mkdirat(fd, name, 0o2775) == 0, let primary = AccountLookup.user(config.primaryUser),
           let group = AccountLookup.group(config.sharedGroup.name) {
            let sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if sub >= 0 {
                _ = fchown(sub, primary.uid, group.gid)
                _ = fchmod(sub, 0o2775)
                close(sub)
            }
        } else if errno != EEXIST {
            throw SandboxError.failure("cannot make \(share)/\(name) for the instance's outputs: \(Errno.current)")
        }
    }

    /// The Python that runs ComfyUI: the venv's when it exists, else comfyui.python.
    public static func python(_ config: Config) -> String {
        let venv = config.venvPath + "/bin/python"
        return Paths.isExecutableFile(venv) ? venv : config.comfyui.python
    }

    /// ComfyUI's command line from the config.
    public static func comfyArguments(_ config: Config, session: Session) -> [String] {
        let l = config.launcher
        func share(_ name: String) -> String? { config.shares.first { $0.name == name }?.path }
        // loopback-only: the host's listen address is the relay's; inside the
        // namespace only 127.0.0.1 exists, so that is where ComfyUI listens.
        let inside = l.network == .loopbackOnly ? "127.0.0.1" : l.listen
        var args = [python(config), config.comfyui.path + "/main.py",
                    "--listen", inside, "--port", String(l.port), "--disable-auto-launch"]
        args += ["--input-directory", share("input") ?? config.comfyui.path + "/input"]
        args += ["--output-directory", config.outputDirectory ?? config.comfyui.path + "/output"]
        args += ["--user-directory", config.comfyui.path + "/user"]
        args += ["--temp-directory", session.tempDir]
        return args + skipLeftOutNodes(config) + l.extraArgs
    }

    /// Nodes whose requirements could not be installed and whose
    /// `on_requirements_failure` is "disable": ComfyUI loads every other
    /// entry of custom_nodes (`--disable-all-custom-nodes` with a whitelist,
    /// which ComfyUI has since 0.3.2x; without it the node is loaded and
    /// fails at import, which launcher.log then shows).
    static func skipLeftOutNodes(_ config: Config) -> [String] {
        guard let record = PythonEnv(config).currentRecord() else { return [] }
        let skipped = Set(record.leftOut.filter { $0.policy == Config.RequirementsFailure.disable.rawValue }.map(\.node))
        guard !skipped.isEmpty,
              let cli = FileManager.default.contents(atPath: config.comfyui.path + "/comfy/cli_args.py"),
              String(decoding: cli, as: UTF8.self).contains("--whitelist-custom-nodes") else { return [] }
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: config.customNodesDir)) ?? [])
            .filter { !skipped.contains($0) && !$0.hasPrefix(".") }.sorted()
        return ["--disable-all-custom-nodes"] + (entries.isEmpty ? [] : ["--whitelist-custom-nodes"] + entries)
    }

    /// Resolves CMD against the sandbox's PATH (as the shell would).
    public static func resolveCommand(_ command: String, path: String) -> String? {
        if command.contains("/") { return command }
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(command)"
            if Paths.isExecutableFile(candidate) { return candidate }
        }
        return nil
    }
}
