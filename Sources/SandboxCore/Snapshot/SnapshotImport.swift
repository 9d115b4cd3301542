import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// What `import-snapshot` would do to the config, and the config it would
/// write: ComfyUI-Manager's git nodes become `custom_nodes` entries pinned to
/// their commits, its ComfyUI commit becomes `comfyui.rev`, its registry and
/// file nodes are listed with what to do about each, and its `name==version`
/// pips become a requirements file beside the config (for the requirements
/// lock to start from; the lock does not read it yet).
public struct SnapshotImport: Sendable, Encodable {
    public enum NodeAction: String, Sendable, Encodable {
        /// A new custom_nodes entry.
        case add
        /// An entry the snapshot moves (rev, enabled or repo).
        case change
        /// An entry already pinned as the snapshot says.
        case same
        /// An entry the snapshot does not name: left as configured.
        case keep
        /// A snapshot node that is not imported (ComfyUI-Manager itself).
        case skip
    }

    public struct Node: Sendable, Encodable {
        public var action: NodeAction
        public var name: String
        public var repo: String
        public var rev: String?
        public var enabled: Bool?
        /// Its index in the new config's custom_nodes; nil for `skip`.
        public var index: Int?
        /// For `change`: each key that moves, as `key: old -> new`.
        public var changes: [String] = []
        public var reason: String?
    }

    /// A Comfy Registry node or a file node: listed, not imported.
    public struct Listed: Sendable, Encodable {
        public var name: String
        public var version: String?
        public var advice: String
    }

    public struct Pip: Sendable, Encodable {
        public var spec: String
        public var why: String
    }

    public var snapshot: String
    public var format: String
    /// The config compared against (nil: none exists yet).
    public var config: String?
    /// Where `--write` writes the config, nil without `--write`.
    public var target: String?
    public struct RevMove: Sendable, Encodable {
        public var from: String
        public var to: String
    }
    /// comfyui.rev before and after; nil when the snapshot records no commit.
    public var comfyuiRev: RevMove?
    public var comfyuiNote: String?
    /// comfyui.prefer_versions before and after: the requirements file,
    /// when the snapshot has pins to carry.
    public var preferVersions: RevMove?
    public var nodes: [Node] = []
    public var registryNodes: [Listed] = []
    public var fileNodes: [Listed] = []
    /// `name==version` lines for the requirements file.
    public var requirements: [String] = []
    /// Where the requirements file goes (beside the target config).
    public var requirementsFile: String
    public var pipsNotCarried: [Pip] = []
    public var pipNotes: [String] = []
    public var pipsRecorded: Bool = false
    public var notes: [String] = []

    /// The new config file's bytes (validated) and the bytes it replaces.
    public var newConfig = Data()
    var baseData: Data?

    enum CodingKeys: String, CodingKey {
        case snapshot, format, config, target, nodes, requirements, notes
        case comfyuiRev = "comfyui_rev", comfyuiNote = "comfyui_note", preferVersions = "prefer_versions"
        case registryNodes = "registry_nodes", fileNodes = "file_nodes"
        case requirementsFile = "requirements_file", pipsNotCarried = "pips_not_carried"
        case pipNotes = "pip_notes", pipsRecorded = "pips_recorded"
    }

    /// Does the new config differ from the one compared against?
    public var changesConfig: Bool {
        comfyuiRev.map { $0.from != $0.to } == true || preferVersions.map { $0.from != $0.to } == true
            || nodes.contains { $0.action == .add || $0.action == .change }
    }
}

public enum SnapshotImporter {
    /// Beside the config: the snapshot's pins, for the requirements lock to start from.
    public static let requirementsName = "comfyui-snapshot-requirements.txt"

    /// Reads the snapshot and the config and plans the import. The config
    /// compared against is the file `--write` would replace (`writePath` when
    /// it exists), else `configPath`, else none (a new config).
    public static func plan(snapshotPath: String, configPath: String, writePath: String?,
                            environment: [String: String] = ProcessEnvironment.forConfig) throws -> SnapshotImport {
        let (snapshot, format) = try ManagerSnapshot.load(path: snapshotPath)
        var base: (path: String, data: Data)? = nil
        if let w = writePath, let st = SafeFS.lstat(w) {
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                throw SandboxError.failure("\(w) is \((st.st_mode & S_IFMT) == S_IFLNK ? "a symbolic link" : "not a regular file"); --write replaces a regular file only",
                                           hint: "pass the path of the config file itself")
            }
        }
        for candidate in [writePath, configPath].compactMap({ $0 }) where SafeFS.lstat(candidate) != nil {
            do {
                base = (candidate, try readFile(candidate))
            } catch {
                throw SandboxError.failure("\(candidate): cannot read the config: \(error)")
            }
            break
        }
        return try plan(snapshot, snapshotPath: snapshotPath, format: format, base: base,
                        target: writePath ?? configPath, writes: writePath != nil, environment: environment)
    }

    public static func plan(_ snap: ManagerSnapshot, snapshotPath: String, format: ManagerSnapshot.Format,
                            base: (path: String, data: Data)?, target: String, writes: Bool,
                            environment: [String: String] = ProcessEnvironment.forConfig) throws -> SnapshotImport {
        var out = SnapshotImport(snapshot: snapshotPath, format: format.rawValue, config: base?.path, target: writes ? target : nil,
                                 requirementsFile: Paths.deletingLastComponent(target) + "/" + requirementsName)
        out.baseData = base?.data

        // The config it starts from: decoded (validated, exit 65 if it is not
        // a config) and as a document, whose untouched parts are kept.
        var doc: Document = .object([.init("version", .number("1"))])
        var config: Config? = nil
        if let base {
            if base.path.hasSuffix(".plist") {
                throw SandboxError(.usage, "\(base.path) is a property list; import-snapshot edits JSON configs",
                                   hint: "convert it to JSON (plutil -convert json) or pass --write with a .json path")
            }
            do {
                config = try ConfigLoader.decode(base.data, format: .json, file: base.path, environment: environment)
                doc = try DocumentJSON.parse(base.data)
            } catch var e as SandboxError {
                e.hint = "import-snapshot reads the config to compare and never overwrites one it cannot read; fix it first (nothing was changed)"
                throw e
            } catch {
                throw SandboxError.config("\(base.path): cannot be parsed: \(error)",
                                          hint: "import-snapshot never overwrites a config it cannot read; nothing was changed")
            }
        }
        let allowed = config?.git.allowedProtocols ?? Config.Git().allowedProtocols
        var problems: [String] = []

        // ComfyUI's commit.
        let oldRev = config?.comfyui.rev ?? Config.ComfyUI().rev
        if let sha = snap.comfyui {
            if GitFiles.isCommitID(sha) {
                out.comfyuiRev = .init(from: oldRev, to: sha)
                var comfy = doc["comfyui"] ?? .object([])
                comfy.set("rev", .string(sha))
                doc.set("comfyui", comfy)
            } else {
                problems.append("comfyui: \(quoted(sha)) is not a full commit id (40 lowercase hex digits)")
            }
        } else {
            out.comfyuiNote = "the snapshot records no ComfyUI commit; comfyui.rev stays \(shown(oldRev))"
        }

        // Git nodes: checked first, every problem at once.
        struct Candidate { var name: String; var url: String; var hash: String; var disabled: Bool }
        var candidates: [Candidate] = []
        var byName: [String: String] = [:]
        for n in snap.gitNodes {
            let key = "git_custom_nodes[\(quoted(n.url))]"
            var urlProblems: [String] = []
            ConfigValidator.checkRepo(n.url, key, allowed: allowed, &urlProblems)
            problems += urlProblems
            let url = trimmingTrailingSlashes(n.url)
            let name = nodeName(fromURL: url)
            if urlProblems.isEmpty && !ConfigValidator.isValidNodeName(name) {
                problems.append("\(key): the directory name it gives, \(quoted(name)), is not a plain directory name (letters, digits, . _ -, not starting with . or -)")
            }
            if !GitFiles.isCommitID(n.hash) {
                problems.append("\(key).hash: \(quoted(n.hash)) is not a full commit id (40 lowercase hex digits)")
            }
            if name.lowercased() == "comfyui-manager" {
                out.nodes.append(.init(action: .skip, name: name, repo: url, rev: n.hash, enabled: !n.disabled,
                                       reason: "not imported: ComfyUI-Manager installs nodes and packages while ComfyUI runs, which the sandbox cannot and should not do (read-only code, no network); comfy-sandbox takes its place"))
                continue
            }
            if let other = byName[name] {
                problems.append("\(key): its directory name \(quoted(name)) is also that of git_custom_nodes[\(quoted(other))]; two checkouts cannot share custom_nodes/\(name)")
            }
            byName[name] = n.url
            candidates.append(Candidate(name: name, url: url, hash: n.hash, disabled: n.disabled))
        }
        guard problems.isEmpty else {
            throw SandboxError.config(problems.map { "\(snapshotPath): \($0)" }.joined(separator: "\n"),
                                      hint: "nothing was changed; every git URL must pass git.allowed_protocols (\(allowed.joined(separator: ", "))) and every hash must be a full commit id")
        }

        // Merge: an entry for the same repository (or, failing that, the same
        // name) is moved in place with its other keys kept; the rest are added.
        var entries: [Document] = []
        if case .array(let a)? = doc["custom_nodes"] { entries = a }
        let existing = config?.customNodes ?? []
        var matched = Set<Int>()
        var lines: [Int: SnapshotImport.Node] = [:]
        let note = "imported from ComfyUI-Manager snapshot \(Paths.lastComponent(snapshotPath))"
        for c in candidates {
            let idx = existing.indices.first { !matched.contains($0) && sameRepo(existing[$0].repo, c.url) }
                ?? existing.indices.first { !matched.contains($0) && existing[$0].name == c.name }
            guard let i = idx, i < entries.count else {
                let obj: Document = .object([.init("name", .string(c.name)), .init("repo", .string(c.url)),
                                             .init("rev", .string(c.hash)), .init("enabled", .bool(!c.disabled)),
                                             .init("note", .string(note))])
                entries.append(obj)
                lines[entries.count - 1] = .init(action: .add, name: c.name, repo: c.url, rev: c.hash, enabled: !c.disabled,
                                                 index: entries.count - 1)
                continue
            }
            matched.insert(i)
            let e = existing[i]
            var obj = entries[i]
            var changes: [String] = []
            if !sameRepo(e.repo, c.url) {
                obj.set("repo", .string(c.url))
                changes.append("repo \(shown(e.repo)) -> \(shown(c.url))")
            }
            if e.rev != c.hash {
                obj.set("rev", .string(c.hash))
                changes.append("rev \(shown(e.rev)) -> \(shown(c.hash))")
            }
            if e.enabled == c.disabled {
                obj.set("enabled", .bool(!c.disabled))
                changes.append("enabled \(e.enabled) -> \(!c.disabled)")
            }
            entries[i] = obj
            lines[i] = .init(action: changes.isEmpty ? .same : .change, name: e.name, repo: changes.isEmpty ? e.repo : c.url,
                             rev: c.hash, enabled: !c.disabled, index: i, changes: changes)
        }
        for (i, e) in existing.enumerated() where !matched.contains(i) {
            lines[i] = .init(action: .keep, name: e.name, repo: e.repo, rev: e.rev, enabled: e.enabled, index: i,
                             reason: "not in the snapshot; kept as configured")
        }
        let skipped = out.nodes
        out.nodes = lines.keys.sorted().compactMap { lines[$0] } + skipped
        if !candidates.isEmpty || doc["custom_nodes"] != nil { doc.set("custom_nodes", .array(entries)) }

        // Registry and file nodes: what to do about each.
        for r in snap.registryNodes {
            out.registryNodes.append(.init(name: r.id, version: r.version, advice:
                "the Comfy Registry serves \(quoted(r.version)) as a zip with no checksum, so nothing could pin what is inside. " +
                "Find its git repository (https://registry.comfy.org/nodes/\(r.id.addingURLPathEscapes())), then add it to custom_nodes " +
                "with rev set to the commit or tag of that version; or install its nightly (git) version in ComfyUI-Manager and import a new snapshot"))
        }
        for f in snap.fileNodes {
            let advice = f.filename == "websocket_image_save.py"
                ? "ComfyUI's own example, part of its checkout: nothing to do"
                : "a single .py file has no repository or commit to pin, and the snapshot holds only its name: put it in a git repository you control and add that to custom_nodes, or leave it out" + (f.disabled ? " (it was disabled)" : "")
            out.fileNodes.append(.init(name: f.filename, advice: advice))
        }

        // pips: name==version pins carry over; the rest are listed with why.
        if let pips = snap.pips {
            out.pipsRecorded = true
            for p in pips {
                if !p.url.isEmpty {
                    out.pipsNotCarried.append(.init(spec: "\(p.spec) @ \(p.url)", why: "installed from a URL, not a version on an index; add it by hand after review"))
                } else if p.spec.hasPrefix("-e ") || p.spec.hasPrefix("--editable") {
                    out.pipsNotCarried.append(.init(spec: p.spec, why: "an editable install from a local checkout; not reproducible from here"))
                } else if let (_, version) = pin(p.spec) {
                    out.requirements.append(p.spec)
                    if version.contains("+") {
                        out.pipNotes.append("\(shown(p.spec)): a local version (+...), found only on the index it came from (e.g. PyTorch's); name that index in comfyui.pip_args")
                    }
                } else {
                    out.pipsNotCarried.append(.init(spec: p.spec, why: "not a name==version pin"))
                }
            }
        }
        // The lock's starting point: the config names the pins file, so the
        // first resolution prefers those versions (RequirementsInstall).
        if !out.requirements.isEmpty {
            out.preferVersions = .init(from: config?.comfyui.preferVersions ?? "null", to: out.requirementsFile)
            var comfy = doc["comfyui"] ?? .object([])
            comfy.set("prefer_versions", .string(out.requirementsFile))
            doc.set("comfyui", comfy)
        }
        if !snap.ignoredKeys.isEmpty {
            out.notes.append("ignored (not part of the snapshot format this reads): \(snap.ignoredKeys.map(quoted).joined(separator: ", "))")
        }

        // The new config, validated exactly as every command will load it.
        let text = DocumentPrinter(indent: 2, inlineWidth: 140).render(doc)
        out.newConfig = Data(text.utf8)
        do {
            _ = try ConfigLoader.decode(out.newConfig, format: .json, file: target, environment: environment)
        } catch var e as SandboxError {
            e.hint = "the snapshot would make the config invalid; nothing was changed"
            throw e
        }
        return out
    }

    /// Writes the config (atomically, keeping the replaced file's owner and
    /// mode; not at all when the snapshot changes nothing in it) and, when
    /// the snapshot has name==version pips, the requirements file beside it.
    /// Refuses when the config changed since it was read.
    /// Returns a line for each file written.
    public static func write(_ plan: SnapshotImport) throws -> [String] {
        guard let target = plan.target else { return [] }
        var mode: mode_t = 0o644
        var owner: (uid_t, gid_t)? = nil
        if let st = SafeFS.lstat(target) {
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                throw SandboxError.failure("\(target) is not a regular file; --write replaces a regular file only")
            }
            let now = try? readFile(target)
            if plan.config == target, now != plan.baseData {
                throw SandboxError.failure("\(target) changed while the snapshot was being imported; nothing was written",
                                           hint: "run import-snapshot again")
            }
            mode = st.st_mode & 0o7777
            owner = (st.st_uid, st.st_gid)
        } else if geteuid() == 0 {
            owner = (0, 0)
        }
        let dir = Paths.deletingLastComponent(target)
        guard let dst = SafeFS.lstat(dir), (dst.st_mode & S_IFMT) == S_IFDIR else {
            throw SandboxError.failure("\(dir) is not a directory; create it first (e.g. mkdir -p \(dir))")
        }
        var written: [String] = []
        if !plan.requirements.isEmpty {
            var text = "# The pip pins (name==version) of ComfyUI-Manager snapshot \(quoted(Paths.lastComponent(plan.snapshot))),\n"
            text += "# written by `comfy-sandbox import-snapshot`: what the Manager's environment held, for the\n"
            text += "# requirements lock to start from. The lock (state_dir/requirements) does not read it yet.\n"
            text += plan.requirements.joined(separator: "\n") + "\n"
            try AtomicFile.write(Data(text.utf8), to: plan.requirementsFile, mode: mode & 0o644, owner: owner)
            written.append("wrote \(plan.requirementsFile) (\(plan.requirements.count) pins)")
        }
        if plan.config == target && !plan.changesConfig {
            written.append("\(target) already matches the snapshot; left as it was")
        } else {
            try AtomicFile.write(plan.newConfig, to: target, mode: mode, owner: owner)
            written.append("wrote \(target)")
        }
        return written
    }

    // MARK: rules

    /// The directory a git URL checks out to: its last path component,
    /// without `.git` (after trailing slashes are dropped). For an scp-like
    /// `host:name.git`, the part after the colon.
    public static func nodeName(fromURL url: String) -> String {
        var last = trimmingTrailingSlashes(url).split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? ""
        if !url.contains("://"), let colon = last.lastIndex(of: ":") { last = String(last[last.index(after: colon)...]) }
        if last.hasSuffix(".git") { last.removeLast(4) }
        return last
    }

    static func trimmingTrailingSlashes(_ s: String) -> String {
        var s = s
        while s.count > 1, s.hasSuffix("/") { s.removeLast() }
        return s
    }

    /// Two URLs for the same repository: equal once case, trailing slashes and `.git` are dropped.
    public static func sameRepo(_ a: String, _ b: String) -> Bool {
        func norm(_ s: String) -> String {
            var t = trimmingTrailingSlashes(s).lowercased()
            if t.hasSuffix(".git") { t.removeLast(4) }
            return t
        }
        return norm(a) == norm(b)
    }

    /// `name==version` as pip freeze writes a pin: a PEP 508 name and a
    /// PEP 440-ish version (letters, digits, . + ! _ -).
    static func pin(_ spec: String) -> (String, String)? {
        let parts = spec.split(separator: "==", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let name = parts[0], version = parts[1]
        func ok(_ u: Unicode.Scalar, _ extra: String) -> Bool {
            ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u) || extra.unicodeScalars.contains(u)
        }
        guard let f = name.unicodeScalars.first, ok(f, ""), name.unicodeScalars.allSatisfy({ ok($0, "._-") }),
              !version.isEmpty, version.unicodeScalars.allSatisfy({ ok($0, ".+!_-") }) else { return nil }
        return (String(name), String(version))
    }
}

extension String {
    /// Percent-escapes everything but unreserved characters (RFC 3986), for
    /// putting a registry id into a URL path.
    func addingURLPathEscapes() -> String {
        var out = ""
        for b in utf8 {
            let u = Unicode.Scalar(b)
            if ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u) || "-._~".unicodeScalars.contains(u) {
                out.unicodeScalars.append(u)
            } else {
                out += "%" + Format.hex(b).uppercased()
            }
        }
        return out
    }
}

extension SnapshotImport {
    /// The import as a person reads it: the diff against the config, key by
    /// key, then what is not imported and why. Text from the snapshot that is
    /// not plain printable ASCII is printed quoted and escaped, so nothing in
    /// a hostile snapshot reaches the terminal raw.
    public func report() -> [String] {
        var out: [String] = []
        out.append("snapshot: \(snapshot) (ComfyUI-Manager, \(format == "yaml" ? "YAML" : "JSON"))")
        out.append("config:   \(config ?? "none yet (\(target ?? "the config") will be a new file)")")
        out.append("")
        out.append(changesConfig ? "changes to the config:" : "the config already matches the snapshot:")
        if let r = comfyuiRev {
            out.append(r.from == r.to ? "  = comfyui.rev \(shown(r.to))" : "  ~ comfyui.rev: \(shown(r.from)) -> \(shown(r.to))")
        } else if let comfyuiNote {
            out.append("  = comfyui.rev: \(comfyuiNote)")
        }
        if let p = preferVersions {
            out.append(p.from == p.to ? "  = comfyui.prefer_versions \(shown(p.to))" : "  ~ comfyui.prefer_versions: \(shown(p.from)) -> \(shown(p.to))")
        }
        for n in nodes {
            let at = n.index.map { "custom_nodes[\($0)] " } ?? ""
            switch n.action {
            case .add:
                out.append("  + \(at)\(shown(n.name)): repo \(shown(n.repo)) rev \(shown(n.rev ?? ""))" + (n.enabled == false ? " enabled false (disabled in the Manager)" : ""))
            case .change:
                out.append("  ~ \(at)\(shown(n.name)): " + n.changes.joined(separator: ", "))
            case .same:
                out.append("  = \(at)\(shown(n.name)): already rev \(shown(n.rev ?? ""))")
            case .keep:
                out.append("  . \(at)\(shown(n.name)): \(n.reason ?? "kept")")
            case .skip:
                out.append("  - \(shown(n.name)) (\(shown(n.repo))): \(n.reason ?? "not imported")")
            }
        }
        if nodes.contains(where: { $0.action == .add }) {
            out.append("  new entries have install_requirements false: review a node (comfy-sandbox scan-nodes NAME) before you set it")
        }
        if !registryNodes.isEmpty {
            out.append("")
            out.append("Comfy Registry nodes, not imported: the registry serves a version as a zip with no checksum, so nothing")
            out.append("could pin what is inside. For each, find its git repository (on its registry page) and add it to")
            out.append("custom_nodes with rev set to the commit or tag of that version, or install its nightly (git) version")
            out.append("in ComfyUI-Manager and import a new snapshot:")
            for r in registryNodes {
                out.append("  \(shown(r.name)) \(shown(r.version ?? "")): https://registry.comfy.org/nodes/\(r.name.addingURLPathEscapes())")
            }
        }
        if !fileNodes.isEmpty {
            out.append("")
            out.append("files in custom_nodes, not imported:")
            for f in fileNodes { out.append("  \(shown(f.name)): \(f.advice)") }
        }
        out.append("")
        if !pipsRecorded {
            out.append("pips: the snapshot records none")
        } else if requirements.isEmpty {
            out.append("pips: no name==version pins, so no \(SnapshotImporter.requirementsName) is written")
        } else {
            let whither = target == nil ? "for \(requirementsFile) (written with --write)" : "-> \(requirementsFile)"
            out.append("pips: \(requirements.count) name==version pins \(whither), named by comfyui.prefer_versions: a requirements resolution with no lock of its own keeps these versions where they fit (uv)")
            for n in pipNotes { out.append("  note: \(n)") }
            if !pipsNotCarried.isEmpty {
                out.append("  not carried over:")
                for p in pipsNotCarried { out.append("    \(shown(p.spec)): \(p.why)") }
            }
        }
        for n in notes { out.append("note: \(n)") }
        return out
    }
}

/// `s` as is when it is plain printable ASCII without quotes or spaces,
/// else quoted and escaped (see `quoted`).
func shown(_ s: String) -> String {
    !s.isEmpty && s.utf8.allSatisfy({ (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) ? s : quoted(s)
}
