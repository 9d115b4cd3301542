import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// The confined requirement install (steps 1-6 in PythonEnv's doc).
extension PythonEnv {
    public struct Installed: Sendable {
        /// The sealed directory now in use.
        public var sealed: String
        public var record: RequirementsRecord
        /// Switched to a set already sealed (a rollback, an unchanged set): nothing was installed.
        public var reused: Bool
    }

    var sealedRoot: String { venv + "/cs-requirements" }
    var parentDir: String { Paths.deletingLastComponent(venv) }
    /// Root's, 0700: what is inside can be lent to an install, never reached by the launched sandbox.
    public var cacheParent: String { parentDir + "/.cs-cache" }
    var cacheDir: String { cacheParent + "/uv" }

    /// Brings the venv's requirements to the configured set. `reresolve`
    /// (--pull) resolves afresh even when a lock for this set exists.
    @discardableResult
    public func installRequirements(reresolve: Bool = false, progress: ((String) -> Void)? = nil) throws -> Installed? {
        let sources = sources()
        guard !sources.isEmpty else { return nil }
        guard let sp = sitePackages() else { throw SandboxError.failure("the venv at \(venv) has no lib/pythonX.Y/site-packages; remove it and provision again") }
        let fp = fingerprint(sources)
        let dest = sealedRoot + "/" + fp
        let previous = currentFingerprint()

        // An unchanged set, or one still sealed from before (a rollback): switch to it.
        if !reresolve, previous != fp, exists(dest), let record = RequirementsRecord.load(config, fp) {
            try point(sp, at: dest, keep: previous)
            progress?("requirements: back to the sealed set \(fp.prefix(12)) (\(record.packages) packages, installed \(record.installedAt))")
            return Installed(sealed: dest, record: record, reused: true)
        }
        if !reresolve, previous == fp, let record = RequirementsRecord.load(config, fp) {
            return Installed(sealed: dest, record: record, reused: true)
        }

        // Each phase's time, on the progress lines: where an install spends it.
        var lapStart = Date()
        func lap(_ what: String) {
            progress?("requirements: \(what) in \(Format.fixed(Date().timeIntervalSince(lapStart), 1)) s")
            lapStart = Date()
        }
        let id = try AccountLookup.sandboxIdentity(config)
        guard let installer = RequirementInstaller.find(config.comfyui.installer) else {
            throw SandboxError.failure("comfyui.installer is \"uv\" but no root-owned uv is installed (\(RequirementInstaller.toolDirectory)/bin/uv)",
                                       hint: "run `make deps`, or set comfyui.installer to \"auto\"")
        }
        let staging = try Staging(parent: parentDir, owner: id.user.uid, group: id.user.gid)
        defer { staging.remove() }
        try ensureRootDirectory(cacheParent, mode: 0o700)
        let cache = try CacheLoan(home: cacheDir, into: staging.path + "/cache", owner: id.user.uid, group: id.user.gid)
        defer { cache.giveBack(progress: progress) }
        lap("lent the cache")
        let confinement = try SandboxConfinement.forInstall(config, writable: [staging.path], readable: namedPaths())
        let run = InstallRun(env: self, installer: installer, staging: staging, confinement: confinement)

        // The extra requirements as a file the installer reads (root's, 0644).
        if let extra = sources.first(where: { $0.kind == .extra }) {
            try AtomicFile.write(Data((extra.lines.joined(separator: "\n") + "\n").utf8), to: staging.path + "/" + extra.file,
                                 mode: 0o644, owner: (0, 0), durable: false)
        }

        // 2. the lock.
        var lock: RequirementLock.Parsed
        var leftOut: [RequirementsRecord.LeftOut] = []
        var resolvedAt = Timestamp.now()
        if !reresolve, let saved = RequirementsRecord.loadLock(config, fp), let record = RequirementsRecord.load(config, fp) {
            lock = try RequirementLock.parse(saved)
            leftOut = record.leftOut
            resolvedAt = record.resolvedAt
            progress?("requirements: installing the lock of \(fp.prefix(12)) (\(lock.packages) packages, resolved \(resolvedAt)) with \(installer.name)")
        } else {
            // Nodes the set in use left out, whose requirements have not
            // changed since, stay out without another try: one resolution
            // instead of one per node. --pull tries them again.
            let previous = reresolve ? nil : currentRecord()
            let knownBad = sources.filter { src in
                src.kind == .node && previous?.leftOut.contains { $0.node == src.name && $0.requirements == src.contentHash } == true
            }
            for bad in knownBad {
                progress?("requirements: \(bad.name) stays left out: its requirements.txt is unchanged since they could not be installed (update-nodes --pull tries again)")
            }
            let trying = sources.filter { src in !knownBad.contains { $0.name == src.name && $0.kind == src.kind } }
            progress?("requirements: resolving \(trying.map(\.name).joined(separator: ", ")) with \(installer.name) as \(id.user.name)")
            var preferring: String?
            if !reresolve {
                let inUse = currentFingerprint().flatMap { RequirementsRecord.loadLock(config, $0) }
                let pins = try preferredPins(installer: installer, progress: progress)
                preferring = RequirementLock.preferences(lock: inUse, pins: pins)
            }
            (lock, leftOut) = try run.resolveIsolating(trying, preferring: preferring, progress: progress)
            leftOut += previous?.leftOut.filter { l in knownBad.contains { $0.name == l.node } } ?? []
            lap("resolved \(lock.packages) packages")
        }

        // 3. the install, into site/ (a hard-link copy of the set in use when uv can sync it).
        let reusable = previous.map { sealedRoot + "/" + $0 }.flatMap { exists($0) ? $0 : nil }
        var shared: Set<FileIdentity> = []
        if case .uv = installer, let reusable {
            shared = try staging.seedSite(from: reusable, owner: id.user.uid, group: id.user.gid)
            lap("copied the sealed set in use by hard link (\(shared.count) files)")
        }
        progress?("requirements: installing \(lock.packages) packages into staging as \(id.user.name)")
        try run.install(lock)
        lap("installed")

        // 5. seal by descriptor, byte-compile as root, seal again.
        try seal(staging.path + "/site", shared: shared)
        lap("sealed")
        let compile = try HostCommand(python, ["-I", "-S", "-m", "compileall", "-q", "-j", "0", "--", staging.path + "/site"]).run()
        if !compile.succeeded {
            progress?("note: some files did not byte-compile (\(compile.stdoutText.split(separator: "\n").count) messages); Python compiles them in memory")
        }
        try seal(staging.path + "/site", shared: shared)
        lap("byte-compiled and sealed again")

        // 6. into the venv, the .pth switched, the record written.
        try ensureRootDirectory(sealedRoot, mode: 0o755)
        if exists(dest) { try removeTree(dest) }
        guard rename(staging.path + "/site", dest) == 0 else { throw SandboxError.failure("cannot move the sealed install to \(dest): \(Errno.current)") }
        let record = RequirementsRecord(fingerprint: fp, installer: installer.name, resolvedAt: resolvedAt, installedAt: Timestamp.now(),
                                        sources: sources.map(\.name), leftOut: leftOut, packages: lock.packages)
        try record.write(config, lock: lock.text)
        try point(sp, at: dest, keep: previous)
        return Installed(sealed: dest, record: record, reused: false)
    }

    /// comfyui.prefer_versions' pins (a resolution keeps them where they
    /// still fit). uv takes them as the preferences of an existing output
    /// file; pip has no such thing, and hard constraints would fail the
    /// resolution wherever a node needs another version: with pip they are
    /// not used, and the progress says so.
    func preferredPins(installer: RequirementInstaller, progress: ((String) -> Void)?) throws -> [String] {
        guard let path = config.comfyui.preferVersions else { return [] }
        guard case .uv = installer else {
            progress?("requirements: comfyui.prefer_versions (\(path)) is used with uv only; pip resolves without it")
            return []
        }
        // Root reads a file named by the config: no link followed, a plain
        // file of bounded size, and only name==version lines kept.
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            throw SandboxError.failure("cannot read comfyui.prefer_versions, \(path): \(Errno.current)",
                                       hint: "write it with `comfy-sandbox import-snapshot FILE --write CONFIG`, or remove the key")
        }
        defer { close(fd) }
        guard let data = RootFile.readChecked(fd, owner: nil) else {
            throw SandboxError.failure("comfyui.prefer_versions, \(path), is not a plain file of at most 16 MiB")
        }
        let pins = RequirementLock.pins(String(decoding: data, as: UTF8.self))
        progress?("requirements: preferring the \(pins.count) versions pinned in \(path) (comfyui.prefer_versions) where they fit")
        return pins
    }

    /// Points the .pth at `dest` and removes every sealed set but it and `keep`.
    func point(_ sitePackages: String, at dest: String, keep: String?) throws {
        try AtomicFile.write(Data((dest + "\n").utf8), to: sitePackages + "/" + Self.pthName, mode: 0o644, owner: (0, 0))
        let current = Paths.lastComponent(dest)
        for old in (try? FileManager.default.contentsOfDirectory(atPath: sealedRoot)) ?? [] where old != current && old != keep {
            try? removeTree(sealedRoot + "/" + old)
        }
    }

    /// Local paths the pip arguments name (--find-links DIR, -c FILE) must be
    /// readable inside Landlock; nothing else beyond what ComfyUI reads.
    func namedPaths() -> [String] {
        config.comfyui.pipArgs.compactMap { arg -> String? in
            let value = arg.split(separator: "=", maxSplits: 1).last.map(String.init) ?? arg
            return value.hasPrefix("/") ? value : nil
        }
    }

    /// Seals `site` (root:root, no group/other write). Files with several
    /// links are refused, except the sealed set's own files that the
    /// hard-link copy shares (root's, read-only already): the sandbox cannot
    /// make a link to a file it cannot write (fs.protected_hardlinks), and
    /// these it never could.
    func seal(_ site: String, shared: Set<FileIdentity>) throws {
        let skipped = try TreeOwnership.apply(.sealed, to: site)
        let refused = skipped.filter { skip in
            guard let id = skip.identity, shared.contains(id), let st = SafeFS.lstat(skip.path), st.st_uid == 0, st.st_gid == 0,
                  st.st_mode & 0o022 == 0, FileIdentity(st) == id else { return true }
            return false
        }
        if !refused.isEmpty {
            throw SandboxError.failure("refusing to seal the install: \(refused.prefix(5).map { "\($0.path) \($0.why)" }.joined(separator: "; "))")
        }
    }

    func ensureRootDirectory(_ path: String, mode: mode_t) throws {
        if let st = SafeFS.lstat(path) {
            guard SafeFS.isDirectory(st), st.st_uid == 0 else {
                throw SandboxError.failure("\(path) is not a directory root owns", hint: "move it away; comfy-sandbox makes it")
            }
            if st.st_mode & 0o7777 != mode { try SafeFS.setMode(path, mode) }
            return
        }
        if try !SafeFS.makeDirectory(path, mode: mode, existingOK: true) { try SafeFS.setMode(path, mode) }
    }
}

/// A file's (device, inode): what a hard link shares.
public struct FileIdentity: Hashable, Sendable {
    public var dev: UInt64
    public var ino: UInt64
    public init(_ st: stat) { dev = UInt64(st.st_dev); ino = UInt64(st.st_ino) }
}

/// `rm -rf --one-file-system` by descriptor (`SafeFS.removeTree`): never
/// follows a link, never leaves the file system; fails when something stays.
func removeTree(_ path: String) throws {
    let r = SafeFS.removeTree(path)
    if let first = r.left.first {
        let more = r.left.count > 1 ? " (and \(r.left.count - 1) more)" : ""
        throw SandboxError.failure("cannot remove all of \(path): \(first.path) \(first.why)\(more)")
    }
}

/// The staging directory: root-owned top (0755), sandbox-owned site/home/tmp.
struct Staging {
    let path: String

    init(parent: String, owner: uid_t, group: gid_t) throws {
        let (made, fd) = try SafeFS.makeTemporaryDirectory(in: parent, prefix: ".cs-staging-", mode: 0o755)
        close(fd)
        path = made
        for sub in ["home", "tmp"] {
            try SafeFS.makeDirectory(path + "/" + sub, mode: 0o700, uid: owner, gid: group)
        }
    }

    func remove() { try? removeTree(path) }

    /// site/ as a hard-link copy of `sealed` (both root's while copying: the
    /// sandbox has no say yet), its directories then handed to the sandbox
    /// user so the installer can add and remove entries; the shared files
    /// stay root's and read-only. Returns their identities.
    func seedSite(from sealed: String, owner: uid_t, group: gid_t) throws -> Set<FileIdentity> {
        try HostCommand("/bin/cp", ["-al", "--", sealed, path + "/site"]).check("copying the sealed set \(sealed) by hard link")
        let lend = TreeOwnership.Rule(uid: owner, gid: group, dirKeep: 0o755, dirAdd: 0o700, fileKeep: 0o755, fileAdd: 0o600)
        let skipped = try TreeOwnership.apply(lend, to: path + "/site")
        return Set(skipped.compactMap(\.identity))
    }

    /// site/ empty, the sandbox's.
    func emptySite(owner: uid_t, group: gid_t) throws {
        let d = path + "/site"
        guard SafeFS.lstat(d) == nil else { return }
        try SafeFS.makeDirectory(d, mode: 0o700, uid: owner, gid: group)
    }
}

/// The installer's cache, lent to one install: moved from its root-only home
/// into staging and handed to the sandbox user; given back sealed
/// (root:root, read-only) whatever the install did.
final class CacheLoan {
    let home: String
    let lent: String

    init(home: String, into lent: String, owner: uid_t, group: gid_t) throws {
        self.home = home
        self.lent = lent
        if SafeFS.lstat(home) != nil {
            guard rename(home, lent) == 0 else { throw SandboxError.failure("cannot lend the installer cache \(home): \(Errno.current)") }
            let lend = TreeOwnership.Rule(uid: owner, gid: group, dirKeep: 0o755, dirAdd: 0o700, fileKeep: 0o755, fileAdd: 0o600)
            try TreeOwnership.apply(lend, to: lent)
        } else {
            try SafeFS.makeDirectory(lent, mode: 0o700, uid: owner, gid: group)
        }
    }

    func giveBack(progress: ((String) -> Void)?) {
        let start = Date()
        defer { progress?("requirements: gave the cache back in \(Format.fixed(Date().timeIntervalSince(start), 1)) s") }
        do {
            try TreeOwnership.apply(.sealed, to: lent)
            try SafeFS.setMode(lent, 0o755)
            guard rename(lent, home) == 0 else { throw SandboxError.failure("cannot move the installer cache back to \(home): \(Errno.current)") }
        } catch {
            progress?("note: the installer cache was dropped (\(error)); the next install downloads afresh")
        }
    }
}

/// One install's confined runs of the installer, as the sandbox user.
struct InstallRun {
    let env: PythonEnv
    let installer: RequirementInstaller
    let staging: Staging
    let confinement: Confinement
    var config: Config { env.config }

    var environment: [String: String] {
        [
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": staging.path + "/home",
            "TMPDIR": staging.path + "/tmp",
            "PIP_NO_CACHE_DIR": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "UV_CACHE_DIR": staging.path + "/cache",
            // uv reads no uv.toml/pyproject settings and fetches no Python of its own.
            "UV_NO_CONFIG": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            // The system's CA store (/etc/ssl/certs), as pip and git use it,
            // not uv's built-in roots: a site's own CA (a TLS-inspecting
            // proxy) is trusted the way the administrator set it up.
            "UV_NATIVE_TLS": "1",
            "LC_ALL": "C.UTF-8",
        ]
    }

    /// The requirement files: `-r FILE` for pip, plain source files for `uv pip compile`.
    func requirementArgs(_ sources: [RequirementSource]) -> [String] {
        let files = sources.map { $0.kind == .extra ? staging.path + "/" + $0.file : $0.file }
        switch installer {
        case .uv: return files
        case .pip: return files.flatMap { ["-r", $0] }
        }
    }

    func run(_ tool: String, _ args: [String]) throws -> HostCommand.Result {
        try HostCommand(tool, args, environment: environment, workingDirectory: staging.path + "/tmp").run(confinement: confinement)
    }

    /// The installer's last error lines, escaped (they reach the operator's terminal).
    static func errorLines(_ r: HostCommand.Result, count: Int = 12) -> [String] {
        let text = r.stderrText.isEmpty ? r.stdoutText : r.stderrText
        let lines = text.split(separator: "\n").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
        // From the first error line on (uv: "error:", then "cause:"/"hint:"
        // lines; pip: "ERROR:"), else the last lines.
        let first = lines.firstIndex { $0.lowercased().hasPrefix("error") || $0.hasPrefix("×") }
        let chosen = first.map { Array(lines[$0...].prefix(count)) } ?? Array(lines.suffix(count))
        return chosen.map { Format.escape(Array($0.utf8)) }
    }

    /// Resolves `sources` to a lock; the installer's error lines when it cannot.
    func resolve(_ sources: [RequirementSource], attempt: Int, preferring previous: String? = nil) throws -> Result<RequirementLock.Parsed, ResolveFailure> {
        let out = "lock-\(attempt).txt"
        let outPath = staging.path + "/tmp/" + out
        // uv keeps the versions an existing output file pins where they still
        // fit (its preferences): adding a node moves nothing else, and the
        // resolution starts from an answer. The sandbox's to rewrite.
        if case .uv = installer, let previous, let id = try? AccountLookup.sandboxIdentity(config) {
            try AtomicFile.write(Data(previous.utf8), to: outPath, mode: 0o644, owner: (id.user.uid, id.user.gid), durable: false)
        }
        let r: HostCommand.Result
        switch installer {
        case .uv(let uv):
            r = try run(uv, ["pip", "compile", "--python", env.python, "--quiet", "--no-header", "--generate-hashes",
                             "--output-file", outPath] + config.comfyui.pipArgs + requirementArgs(sources))
        case .pip:
            r = try run(env.python, ["-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-input", "--disable-pip-version-check",
                                     "--no-cache-dir", "--quiet", "--report", outPath] + config.comfyui.pipArgs + requirementArgs(sources))
        }
        guard r.succeeded else { return .failure(ResolveFailure(lines: Self.errorLines(r), status: r.status)) }
        // Written by the sandbox: opened without following links, a regular
        // file of the sandbox user's, then read as hostile text.
        let fd = open(outPath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw SandboxError.failure("the installer left no lock at \(outPath): \(Errno.current)") }
        defer { close(fd) }
        guard let data = RootFile.readChecked(fd, owner: nil) else { throw SandboxError.failure("the installer's lock \(outPath) is not a plain file of at most 16 MiB") }
        switch installer {
        case .uv: return .success(try RequirementLock.parse(String(decoding: data, as: UTF8.self)))
        case .pip: return .success(try RequirementLock.parse(try RequirementLock.fromPipReport(data)))
        }
    }

    struct ResolveFailure: Error { var lines: [String]; var status: Int32 }

    /// Resolves everything; when that fails, finds which nodes cannot be
    /// resolved: the base alone (it must resolve), then each node added in
    /// config order, leaving out any that fails (unfetchable, missing, or in
    /// conflict with what is already in). N+2 resolutions at worst, each
    /// against a warm cache.
    func resolveIsolating(_ sources: [RequirementSource], preferring previous: String? = nil, progress: ((String) -> Void)?) throws
        -> (RequirementLock.Parsed, [RequirementsRecord.LeftOut]) {
        var attempt = 0
        func next(_ s: [RequirementSource]) throws -> Result<RequirementLock.Parsed, ResolveFailure> {
            attempt += 1
            return try resolve(s, attempt: attempt, preferring: previous)
        }
        let all = try next(sources)
        if case .success(let lock) = all { return (lock, []) }
        let base = sources.filter(\.isBase)
        let nodes = sources.filter { !$0.isBase }
        var included = base
        var lock: RequirementLock.Parsed? = nil
        if !base.isEmpty {
            switch try next(base) {
            case .success(let l): lock = l
            case .failure(let f):
                let what = base.map { "\($0.name) (\($0.key))" }.joined(separator: " and ")
                throw SandboxError.failure("the requirements of \(what) cannot be resolved (\(installer.name) exit \(f.status)):\n  "
                                           + f.lines.joined(separator: "\n  "),
                                           hint: "nothing was installed; check comfyui.extra_requirements and comfyui.pip_args")
            }
        }
        var leftOut: [RequirementsRecord.LeftOut] = []
        for node in nodes {
            switch try next(included + [node]) {
            case .success(let l):
                included.append(node)
                lock = l
            case .failure(let f):
                progress?("requirements: \(node.name) left out: its requirements cannot be installed (\(node.key).on_requirements_failure = \(node.onFailure.rawValue)):\n  "
                          + f.lines.joined(separator: "\n  "))
                leftOut.append(.init(node: node.name, policy: node.onFailure.rawValue, error: f.lines, requirements: node.contentHash))
            }
        }
        guard let lock else {
            // Only nodes, and none resolved: an empty set.
            return (try RequirementLock.parse(""), leftOut)
        }
        return (lock, leftOut)
    }

    /// Installs exactly the lock into staging/site.
    func install(_ lock: RequirementLock.Parsed) throws {
        let lockPath = staging.path + "/lock.txt"
        try AtomicFile.write(Data(lock.text.utf8), to: lockPath, mode: 0o644, owner: (0, 0), durable: false)
        let site = staging.path + "/site"
        let id = try AccountLookup.sandboxIdentity(config)
        try staging.emptySite(owner: id.user.uid, group: id.user.gid)
        guard lock.packages > 0 else { return }
        let hashes = lock.fullyHashed ? ["--require-hashes"] : []
        let r: HostCommand.Result
        switch installer {
        case .uv(let uv):
            // sync: exactly the lock (what the copied set has beyond it is removed);
            // copies out of the cache, since a hard link into it would make the seal refuse.
            r = try run(uv, ["pip", "sync", "--python", env.python, "--target", site, "--link-mode", "copy", "--quiet"]
                             + hashes + config.comfyui.pipArgs + [lockPath])
        case .pip:
            r = try run(env.python, ["-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check", "--no-cache-dir",
                                     "--no-compile", "--target", site] + hashes + config.comfyui.pipArgs + ["-r", lockPath])
        }
        guard r.succeeded else {
            throw SandboxError.failure("installing the resolved requirements (\(lock.packages) packages) as \(config.sandboxUser.name) failed with exit \(r.status):\n  "
                                       + Self.errorLines(r).joined(separator: "\n  "),
                                       hint: "nothing was changed in \(env.venv); the set in use stays")
        }
    }
}
