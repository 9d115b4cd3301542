import Crypto
import FoundationEssentials
import Glibc

/// ComfyUI's Python environment: a venv beside the checkout
/// (`config.venvPath`), made by root with `comfyui.python -m venv`, so the
/// interpreter and pip are root's and read-only to the sandbox.
///
/// Requirements (ComfyUI's `requirements.txt` when
/// `comfyui.install_requirements`, and each enabled node's with
/// `"install_requirements": true`) are never installed as root, because
/// installing runs code (setup.py, build backends):
///
/// 1. root makes `VENV_PARENT/.cs-staging-XXXXXX` (root, 0755) holding
///    `site/`, `home/` and `tmp/` owned by the sandbox user, so the sandbox
///    can fill them but cannot rename or swap the entries themselves;
/// 2. pip (`VENV/bin/python -m pip install --target site`) or uv when
///    installed runs as the sandbox user under
///    `SandboxConfinement.forInstall(config, writable: [staging])`: its
///    uid, no capabilities, no_new_privs, writable only there;
/// 3. root seals `site/` by descriptor (TreeOwnership: root:root, no
///    group/other write, links never followed, multiply-linked files
///    refused), then byte-compiles it as root (`python -I -S -m compileall`:
///    compiling runs no package code) so Python never writes next to code;
/// 4. root renames it to `VENV/cs-requirements/<fingerprint>` and points a
///    root-owned `comfy-sandbox-requirements.pth` in the venv's
///    site-packages at it (written atomically). The sealed directory is a
///    plain path entry, so `.pth` files inside it are NOT executed.
///
/// The fingerprint covers the interpreter, pip_args and every requirements
/// file's content, so a change installs afresh and an unchanged set is a no-op.
public struct PythonEnv: Sendable {
    public let config: Config

    public init(_ config: Config) { self.config = config }

    public var venv: String { config.venvPath }
    public var python: String { venv + "/bin/python" }
    var sealedRoot: String { venv + "/cs-requirements" }
    static let pthName = "comfy-sandbox-requirements.pth"

    func exists(_ p: String) -> Bool { SafeFS.lstat(p) != nil }

    /// The requirements files to install, in a stable order.
    public func requirementFiles() -> [String] {
        var files: [String] = []
        if config.comfyui.installRequirements { files.append(config.comfyui.path + "/requirements.txt") }
        for n in config.customNodes where n.enabled && n.installRequirements {
            files.append(config.customNodesDir + "/" + n.name + "/requirements.txt")
        }
        return files.filter { FileManager.default.isReadableFile(atPath: $0) }
    }

    public func fingerprint(_ files: [String]) -> String {
        var h = SHA256()
        h.update(data: Data((config.comfyui.python + "\0" + config.comfyui.pipArgs.joined(separator: "\0") + "\0").utf8))
        for f in files {
            h.update(data: Data((f + "\0").utf8))
            h.update(data: FileManager.default.contents(atPath: f) ?? Data())
            h.update(data: Data([0]))
        }
        return Format.hex(h.finalize()).prefix(24).description
    }

    /// The venv's site-packages (lib/pythonX.Y/site-packages).
    func sitePackages() -> String? {
        let lib = venv + "/lib"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: lib)) ?? []
        guard let py = entries.filter({ $0.hasPrefix("python") }).sorted().last else { return nil }
        return lib + "/" + py + "/site-packages"
    }

    public var hasVenv: Bool { FileManager.default.isExecutableFile(atPath: python) }

    /// `comfy-sandbox-stdio.pth` in the venv's site-packages, root's like the
    /// rest of the venv. ComfyUI replaces sys.stdout and sys.stderr with a
    /// LogInterceptor that copies `line_buffering` from the stream it wraps
    /// (app/logger.py); under `start` those are launcher.log, a file, so what
    /// a node print()ed sat in an 8 KiB buffer, out of order with the log,
    /// and was lost when ComfyUI was stopped (PYTHONUNBUFFERED does not reach
    /// a wrapper made later). Line-buffered streams make every line land.
    /// A .pth import line, because a sitecustomize.py in site-packages is
    /// shadowed by the distribution's own (Debian has one in the stdlib
    /// directory). Only the venv's own site-packages runs .pth lines: the
    /// sealed requirements are a plain path entry.
    static let stdioPthName = "comfy-sandbox-stdio.pth"
    static let stdioPth = """
    # comfy-sandbox (root-owned; provision rewrites it): line-buffered stdout and stderr, so every line ComfyUI and the nodes print reaches launcher.log as it is printed.
    import sys; [s.reconfigure(line_buffering=True) for s in (sys.stdout, sys.stderr) if s is not None and hasattr(s, "reconfigure")]

    """

    /// True when the venv's stdio .pth is ours, as written.
    public func stdioSettled() -> Bool {
        guard let sp = sitePackages(), let data = FileManager.default.contents(atPath: sp + "/" + Self.stdioPthName) else { return false }
        return data == Data(Self.stdioPth.utf8)
    }

    public func writeStdioPth() throws {
        guard let sp = sitePackages() else { throw SandboxError.failure("the venv at \(venv) has no lib/pythonX.Y/site-packages; remove it and provision again") }
        try AtomicFile.write(Data(Self.stdioPth.utf8), to: sp + "/" + Self.stdioPthName, mode: 0o644, owner: (0, 0))
    }

    /// True when the .pth already names the sealed install of exactly these requirements.
    public func requirementsSettled() -> Bool {
        let files = requirementFiles()
        if files.isEmpty { return true }
        guard let sp = sitePackages(), let pth = FileManager.default.contents(atPath: sp + "/" + Self.pthName) else { return false }
        let want = sealedRoot + "/" + fingerprint(files)
        return String(decoding: pth, as: UTF8.self).trimmingWhitespaceAndNewlines() == want && exists(want)
    }

    public func createVenv() throws {
        let parent = Paths.deletingLastComponent(venv)
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        umask(0o022)
        try HostCommand(config.comfyui.python, ["-m", "venv", "--", venv]).check("creating the Python environment (comfyui.python)")
    }

    /// The installer and its arguments: uv when a root-owned one is installed, else the venv's pip.
    func installer(target: String, files: [String]) -> (String, [String]) {
        let req = files.flatMap { ["-r", $0] }
        for uv in ["/usr/local/bin/uv", "/usr/bin/uv"] {
            var st = stat()
            if stat(uv, &st) == 0, st.st_uid == 0, (st.st_mode & 0o022) == 0 {
                return (uv, ["pip", "install", "--no-cache", "--python", python, "--target", target] + req + config.comfyui.pipArgs)
            }
        }
        return (python, ["-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--no-cache-dir", "--no-compile",
                         "--target", target] + req + config.comfyui.pipArgs)
    }

    /// Installs the requirements (steps 1-4 in the type's doc). Returns the sealed directory.
    @discardableResult
    public func installRequirements(progress: ((String) -> Void)? = nil) throws -> String? {
        let files = requirementFiles()
        guard !files.isEmpty else { return nil }
        guard let sp = sitePackages() else { throw SandboxError.failure("the venv at \(venv) has no lib/pythonX.Y/site-packages; remove it and provision again") }
        let id = try AccountLookup.sandboxIdentity(config)
        let fp = fingerprint(files)
        let dest = sealedRoot + "/" + fp

        // 1. staging: root-owned top, sandbox-owned site/home/tmp.
        let parent = Paths.deletingLastComponent(venv)
        var template = Array("\(parent)/.cs-staging-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SandboxError.failure("cannot create a staging directory in \(parent): \(Errno.current)") }
        let staging = String(cString: p)
        defer { _ = try? FileManager.default.removeItem(atPath: staging) }
        _ = chmod(staging, 0o755)
        for sub in ["site", "home", "tmp"] {
            let d = staging + "/" + sub
            guard mkdir(d, 0o700) == 0, chown(d, id.user.uid, id.user.gid) == 0 else {
                throw SandboxError.failure("cannot prepare \(d): \(Errno.current)")
            }
        }

        // 2. the install, as the sandbox user, confined.
        let (tool, args) = installer(target: staging + "/site", files: files)
        progress?("installing requirements as \(id.user.name): \(([tool] + args).joined(separator: " "))")
        let env = [
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": staging + "/home",
            "TMPDIR": staging + "/tmp",
            "PIP_NO_CACHE_DIR": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "UV_NO_CACHE": "1",
            "LC_ALL": "C.UTF-8",
        ]
        // Local paths the pip arguments name (--find-links DIR, -c FILE) must
        // be readable inside Landlock; nothing else beyond what ComfyUI reads.
        let named = config.comfyui.pipArgs.compactMap { arg -> String? in
            let value = arg.split(separator: "=", maxSplits: 1).last.map(String.init) ?? arg
            return value.hasPrefix("/") ? value : nil
        }
        let confinement = try SandboxConfinement.forInstall(config, writable: [staging], readable: named)
        let r = try HostCommand(tool, args, environment: env, workingDirectory: staging + "/tmp").run(confinement: confinement)
        guard r.succeeded else {
            let tail = r.stderrText.split(separator: "\n").suffix(6).joined(separator: "\n  ")
            throw SandboxError.failure("installing requirements (\(files.joined(separator: ", "))) as \(id.user.name) failed with exit \(r.status):\n  \(tail)",
                                       hint: "check the requirements files and comfyui.pip_args; nothing was changed in \(venv)")
        }

        // 3. seal by descriptor, then byte-compile as root.
        let skipped = try TreeOwnership.apply(.sealed, to: staging + "/site")
        if !skipped.isEmpty {
            throw SandboxError.failure("refusing to seal the install: \(skipped.map { "\($0.path) \($0.why)" }.joined(separator: "; "))")
        }
        let compile = try HostCommand(python, ["-I", "-S", "-m", "compileall", "-q", "-j", "0", "--", staging + "/site"]).run()
        if !compile.succeeded {
            progress?("note: some files did not byte-compile (\(compile.stdoutText.split(separator: "\n").count) messages); Python will compile them in memory")
        }
        // compileall wrote __pycache__ as root; make sure no write bit slipped in.
        try TreeOwnership.apply(.sealed, to: staging + "/site")

        // 4. into the venv, then point the .pth at it.
        if !exists(sealedRoot) {
            guard mkdir(sealedRoot, 0o755) == 0 else { throw SandboxError.failure("cannot create \(sealedRoot): \(Errno.current)") }
        }
        if exists(dest) { try FileManager.default.removeItem(atPath: dest) }
        guard rename(staging + "/site", dest) == 0 else { throw SandboxError.failure("cannot move the sealed install to \(dest): \(Errno.current)") }
        try AtomicFile.write(Data((dest + "\n").utf8), to: sp + "/" + Self.pthName, mode: 0o644, owner: (0, 0))
        for old in (try? FileManager.default.contentsOfDirectory(atPath: sealedRoot)) ?? [] where old != fp {
            _ = try? FileManager.default.removeItem(atPath: sealedRoot + "/" + old)
        }
        return dest
    }
}

/// Plans the venv and the confined requirement install for `provision`.
public struct PythonPlanner: Planner {
    public var area: Area { .python }
    public init() {}

    public func changes(for config: Config, context: PlanContext) throws -> [Change] {
        let env = PythonEnv(config)
        var out: [Change] = []
        if !env.hasVenv {
            out.append(Change(.python, "create venv", env.venv, to: config.comfyui.python) { try env.createVenv() })
        }
        if !env.hasVenv || !env.stdioSettled() {
            out.append(Change(.python, "write \(PythonEnv.stdioPthName) (line-buffered output for launcher.log)", env.venv) { try env.writeStdioPth() })
        }
        // ComfyUI may not be checked out yet (its area runs first, or this is
        // `plan`): its requirements.txt is then read when the change runs.
        let files = env.requirementFiles()
        let comfyPending = config.comfyui.installRequirements && !ComfyUIInstall(config).isSettled
        if (!files.isEmpty || comfyPending) && (!env.hasVenv || !env.requirementsSettled() || comfyPending) {
            out.append(Change(.python, "install requirements as \(config.sandboxUser.name)", env.venv,
                              to: files.isEmpty ? "after checkout" : env.fingerprint(files).prefix(12).description) {
                if !env.requirementsSettled() {
                    try env.installRequirements(progress: { printError($0) })
                }
            })
        }
        return out
    }
}
