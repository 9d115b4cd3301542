import Crypto
import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// ComfyUI's Python environment: a venv beside the checkout
/// (`config.venvPath`), made by root with `comfyui.python -m venv`, so the
/// interpreter and pip are root's and read-only to the sandbox.
///
/// Requirements (ComfyUI's `requirements.txt` when
/// `comfyui.install_requirements`, `comfyui.extra_requirements`, and each
/// enabled node's with `"install_requirements": true`) are never installed
/// as root, because installing runs code (setup.py, build backends):
///
/// 1. root makes `VENV_PARENT/.cs-staging-XXXXXX` (root, 0755) holding
///    `site/`, `home/`, `tmp/` and `cache/` owned by the sandbox user, so
///    the sandbox can fill them but cannot rename or swap the entries; the
///    installer's cache is lent into `cache/` (below);
/// 2. the set is resolved into a lock (`uv pip compile --generate-hashes`,
///    or pip's `install --dry-run --report`), unless a lock for this
///    fingerprint is already in state_dir (re-provisioning reproduces it)
///    and no `--pull` asked for a new one. A node whose requirements cannot
///    be resolved is left out, named with the installer's error lines;
///    the base (ComfyUI's and the extra ones) must resolve;
/// 3. the lock is installed into `site/` with hashes required
///    (`uv pip sync --target`, or pip `--no-deps --require-hashes`). With uv,
///    `site/` starts as a hard-link copy of the sealed set in use, so only
///    what changed is installed;
/// 4. every step runs as the sandbox user under
///    `SandboxConfinement.forInstall(config, writable: [staging])`;
/// 5. root seals `site/` by descriptor (TreeOwnership: root:root, no
///    group/other write, links never followed; a file with several links is
///    refused unless it is one of the sealed set's own files), byte-compiles
///    what is new (`python -I -S -m compileall`, which runs no package code);
/// 6. root renames it to `VENV/cs-requirements/<fingerprint>`, points a
///    root-owned `comfy-sandbox-requirements.pth` in the venv's
///    site-packages at it (atomically), and keeps the previous set beside it
///    for a rollback. The sealed directory is a plain path entry, so `.pth`
///    files inside it are NOT executed.
///
/// The installer's cache (`VENV_PARENT/.cs-cache/uv`) is root's between
/// installs, in a root-only 0700 directory: the launched sandbox can never
/// reach it. For an install it is lent: moved into staging and handed to the
/// sandbox user, then sealed and moved back.
public struct PythonEnv: Sendable {
    public let config: Config

    public init(_ config: Config) { self.config = config }

    public var venv: String { config.venvPath }
    public var python: String { venv + "/bin/python" }
    static let pthName = "comfy-sandbox-requirements.pth"

    func exists(_ p: String) -> Bool { SafeFS.lstat(p) != nil }

    /// Where requirements come from, in a stable order: the base first.
    public func sources() -> [RequirementSource] {
        var out: [RequirementSource] = []
        let comfyFile = config.comfyui.path + "/requirements.txt"
        if config.comfyui.installRequirements && FileManager.default.isReadableFile(atPath: comfyFile) {
            out.append(RequirementSource(kind: .comfyui, name: "ComfyUI", file: comfyFile, key: "comfyui.install_requirements"))
        }
        // The extra requirements go with ComfyUI's own: only when those are installed.
        if config.comfyui.installRequirements && !config.comfyui.extraRequirements.isEmpty {
            out.append(RequirementSource(kind: .extra, name: "comfyui.extra_requirements", file: "extra-requirements.txt",
                                         lines: config.comfyui.extraRequirements, key: "comfyui.extra_requirements"))
        }
        for (i, n) in config.customNodes.enumerated() where n.enabled && n.installRequirements {
            let f = config.customNodesDir + "/" + n.name + "/requirements.txt"
            guard FileManager.default.isReadableFile(atPath: f) else { continue }
            out.append(RequirementSource(kind: .node, name: n.name, file: f, onFailure: n.onRequirementsFailure,
                                         key: "custom_nodes[\(i)]"))
        }
        return out
    }

    /// The requirements files to install, in a stable order.
    public func requirementFiles() -> [String] { sources().filter { $0.kind != .extra }.map(\.file) }

    /// Covers the interpreter, pip_args, the extra requirements and every
    /// requirements file's path and content: an unchanged set is a no-op.
    public func fingerprint(_ sources: [RequirementSource]) -> String {
        var h = SHA256()
        h.update(data: Data((config.comfyui.python + "\0" + config.comfyui.pipArgs.joined(separator: "\0") + "\0").utf8))
        for s in sources {
            if s.kind == .extra {
                h.update(data: Data(("extra\0" + s.lines.joined(separator: "\0") + "\0").utf8))
                continue
            }
            h.update(data: Data((s.file + "\0").utf8))
            h.update(data: FileManager.default.contents(atPath: s.file) ?? Data())
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
        let sources = sources()
        if sources.isEmpty { return true }
        guard let current = currentFingerprint() else { return false }
        return current == fingerprint(sources)
    }

    /// The fingerprint the venv's .pth points at, when its sealed set exists.
    public func currentFingerprint() -> String? {
        guard let sp = sitePackages(), let pth = RootFile.read(sp + "/" + Self.pthName) else { return nil }
        let path = String(decoding: pth, as: UTF8.self).trimmingWhitespaceAndNewlines()
        guard path.hasPrefix(sealedRoot + "/"), exists(path) else { return nil }
        return Paths.lastComponent(path)
    }

    /// The record of the set in use: which nodes were left out and why.
    public func currentRecord() -> RequirementsRecord? {
        currentFingerprint().flatMap { RequirementsRecord.load(config, $0) }
    }

    public func createVenv() throws {
        let parent = Paths.deletingLastComponent(venv)
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        umask(0o022)
        try HostCommand(config.comfyui.python, ["-m", "venv", "--", venv]).check("creating the Python environment (comfyui.python)")
    }

    /// An enabled node that installs requirements is not checked out at its
    /// configured rev yet (provision's nodes area will do it).
    public func nodeRequirementsPending() -> Bool {
        let git = GitRunner(config)
        return config.customNodes.contains { n in
            n.enabled && n.installRequirements && !Checkout(CheckoutSpec.node(n, config), git: git).isSettled()
        }
    }

    /// Installs when the configured set is not the one in use; the venv is made first when missing.
    public func settleRequirements(reresolve: Bool = false, progress: ((String) -> Void)? = nil) throws {
        if !hasVenv { try createVenv() }
        if !stdioSettled() { try writeStdioPth() }
        if reresolve || !requirementsSettled() { try installRequirements(reresolve: reresolve, progress: progress) }
    }

    /// `settleRequirements` as one line of update-nodes' and
    /// update-comfyui's summary: failed when it failed or left a node out.
    public func syncOutcome(reresolve: Bool, progress: ((String) -> Void)?) -> Outcome {
        do {
            let before = currentFingerprint()
            try settleRequirements(reresolve: reresolve, progress: progress)
            if let e = leftOutError() { return Outcome(name: "python", kind: .failed, message: e.description) }
            let now = currentFingerprint()
            if before == now && !reresolve { return Outcome(name: "python", kind: .upToDate, message: venv) }
            let record = currentRecord()
            return Outcome(name: "python", kind: .installed,
                           message: "requirements \(now.map { String($0.prefix(12)) } ?? "none")" + (record.map { ", \($0.packages) packages with \($0.installer)" } ?? ""))
        } catch {
            return Outcome(name: "python", kind: .failed, message: "\(error)")
        }
    }

    /// Nodes the set in use left out (their requirements could not be
    /// installed), as one error naming each with the installer's lines; nil
    /// when none was.
    public func leftOutError() -> SandboxError? {
        guard requirementsSettled(), let record = currentRecord(), !record.leftOut.isEmpty else { return nil }
        var lines: [String] = []
        for l in record.leftOut {
            let what = l.policy == Config.RequirementsFailure.disable.rawValue ? "ComfyUI will not load it" : "ComfyUI loads it without them"
            lines.append("\(l.node): its requirements could not be installed; \(what) (on_requirements_failure = \(l.policy)):")
            lines += l.error.map { "    " + $0 }
        }
        return SandboxError.failure("\(record.leftOut.count) node(s) left out of the requirements, everything else is installed:\n  "
                                    + lines.joined(separator: "\n  "),
                                    hint: "fix or remove the requirement, then `comfy-sandbox update-nodes --pull` resolves again")
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
        // When nodes with requirements are still to be checked out, the nodes
        // area installs everything once, after them: one resolve and install
        // instead of ComfyUI's alone and then all again.
        let sources = env.sources()
        let comfyPending = config.comfyui.installRequirements && !ComfyUIInstall(config).isSettled
        if env.nodeRequirementsPending() { return out }
        if (!sources.isEmpty || comfyPending) && (!env.hasVenv || !env.requirementsSettled() || comfyPending) {
            out.append(Change(.python, "install requirements as \(config.sandboxUser.name)", env.venv,
                              to: sources.isEmpty ? "after checkout" : env.fingerprint(sources).prefix(12).description) {
                try env.settleRequirements(progress: { printError($0) })
            })
        }
        return out
    }
}
