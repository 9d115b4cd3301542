import FoundationEssentials
import SandboxOS

/// A ComfyUI-Manager snapshot, as its `get_current_snapshot`
/// (glob/manager_core.py) makes it and `save_snapshot_with_postfix` saves it:
///
///     {"comfyui": "<commit or null>",
///      "git_custom_nodes": {"<url>": {"hash": "<commit>", "disabled": false}},
///      "cnr_custom_nodes": {"<registry id>": "<version>"},
///      "file_custom_nodes": [{"filename": "x.py", "disabled": false}],
///      "pips": {"name==1.0": "", "name": "git+https://...@commit"}}
///
/// as JSON (`json.dump(indent=4)`), or YAML with the same keys, either at the
/// top level or under `custom_nodes:` (the Manager's YAML writer wraps them;
/// both shapes are accepted). Reading checks the shape and the types only;
/// what the values may be (a commit id, an allowed URL) is the importer's
/// business, which reports every problem at once.
public struct ManagerSnapshot: Equatable, Sendable {
    public enum Format: String, Sendable { case json, yaml }

    public struct GitNode: Equatable, Sendable {
        public var url: String
        public var hash: String
        public var disabled: Bool
        public init(url: String, hash: String, disabled: Bool) {
            self.url = url
            self.hash = hash
            self.disabled = disabled
        }
    }

    /// A Comfy Registry node: an id and a version the registry serves as a zip.
    public struct RegistryNode: Equatable, Sendable {
        public var id: String
        public var version: String
    }

    /// A single .py file in custom_nodes (the snapshot holds only its name).
    public struct FileNode: Equatable, Sendable {
        public var filename: String
        public var disabled: Bool
    }

    /// One `pip freeze` line as the Manager stores it: `"name==1.0": ""`, or
    /// `"name": "<url>"` for a `name @ <url>` line.
    public struct Pip: Equatable, Sendable {
        public var spec: String
        public var url: String
        public init(spec: String, url: String = "") {
            self.spec = spec
            self.url = url
        }
    }

    public var comfyui: String?
    public var gitNodes: [GitNode] = []
    public var registryNodes: [RegistryNode] = []
    public var fileNodes: [FileNode] = []
    /// nil when the snapshot holds `"pips": null` or none (a custom-nodes-only snapshot).
    public var pips: [Pip]?
    /// Keys this reader does not know, ignored (a newer Manager may add some).
    public var ignoredKeys: [String] = []

    public init(comfyui: String? = nil, gitNodes: [GitNode] = [], pips: [Pip]? = nil) {
        self.comfyui = comfyui
        self.gitNodes = gitNodes
        self.pips = pips
    }

    static let knownKeys = ["comfyui", "git_custom_nodes", "cnr_custom_nodes", "file_custom_nodes", "pips"]

    /// The format a file is read as: by its extension, else by its first character.
    public static func format(of path: String, data: Data) -> Format {
        let lower = path.lowercased()
        if lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") { return .yaml }
        if lower.hasSuffix(".json") { return .json }
        let first = data.first { ![0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF].contains($0) }
        return first == UInt8(ascii: "{") ? .json : .yaml
    }

    /// Reads a snapshot file. Every error is exit 65 and names the file, and
    /// the line (syntax) or the key path (shape).
    public static func load(path: String) throws -> (ManagerSnapshot, Format) {
        let data: Data
        do {
            data = try readFile(path)
        } catch {
            throw SandboxError.config("\(path): cannot read the snapshot: \(error)",
                                      hint: "save one in ComfyUI-Manager (Snapshot Manager > Save snapshot, or `cm-cli save-snapshot`) and pass its path")
        }
        let format = format(of: path, data: data)
        return (try parse(data, format: format, file: path), format)
    }

    public static func parse(_ data: Data, format: Format, file: String = "<snapshot>") throws -> ManagerSnapshot {
        let doc: Document
        do {
            doc = format == .json ? try DocumentJSON.parse(data) : try YAMLSubset.parse(data)
        } catch {
            throw SandboxError.config("\(file): \(error)",
                                      hint: format == .yaml ? "the YAML a ComfyUI-Manager snapshot is written in is read strictly; save the snapshot again, or as JSON" : "the file is not valid JSON")
        }
        var problems: [String] = []
        let s = from(doc, problems: &problems)
        guard problems.isEmpty else {
            throw SandboxError.config(problems.map { "\(file): \($0)" }.joined(separator: "\n"),
                                      hint: "this does not look like a ComfyUI-Manager snapshot; nothing was changed")
        }
        return s
    }

    /// The snapshot in `doc`, appending each shape problem (with its key path) to `problems`.
    static func from(_ doc: Document, problems: inout [String]) -> ManagerSnapshot {
        var s = ManagerSnapshot()
        guard var top = doc.members else {
            problems.append("expected an object with comfyui, git_custom_nodes, ... at the top, found \(doc.kindName)")
            return s
        }
        var prefix = ""
        // The Manager's YAML writer: {"custom_nodes": {snapshot}}.
        if let inner = doc["custom_nodes"]?.members, !top.contains(where: { knownKeys.contains($0.key) }),
           inner.contains(where: { knownKeys.contains($0.key) }) {
            prefix = "custom_nodes."
            s.ignoredKeys = top.filter { $0.key != "custom_nodes" }.map(\.key)
            top = inner
        }
        guard top.contains(where: { knownKeys.contains($0.key) }) else {
            problems.append("none of the keys of a ComfyUI-Manager snapshot (\(knownKeys.joined(separator: ", "))) is there")
            return s
        }
        for m in top {
            let key = prefix + m.key
            switch m.key {
            case "comfyui":
                switch m.value {
                case .null: s.comfyui = nil
                case .string(let sha): s.comfyui = sha
                default: problems.append("\(key): expected a commit id or null, found \(m.value.kindName)")
                }
            case "git_custom_nodes":
                guard let nodes = objectOrNull(m.value, key, &problems) else { continue }
                for n in nodes {
                    let k = "\(key)[\(quoted(n.key))]"
                    guard let fields = n.value.members else {
                        problems.append("\(k): expected an object with hash and disabled, found \(n.value.kindName)")
                        continue
                    }
                    var node = GitNode(url: n.key, hash: "", disabled: false)
                    switch n.value["hash"] {
                    case .string(let h)?: node.hash = h
                    case nil: problems.append("\(k).hash: missing")
                    case let other?: problems.append("\(k).hash: expected a commit id, found \(other.kindName)")
                    }
                    switch n.value["disabled"] {
                    case .bool(let b)?: node.disabled = b
                    case nil, .null?: node.disabled = false
                    case let other?: problems.append("\(k).disabled: expected true or false, found \(other.kindName)")
                    }
                    for f in fields where f.key != "hash" && f.key != "disabled" { s.ignoredKeys.append("\(k).\(f.key)") }
                    s.gitNodes.append(node)
                }
            case "cnr_custom_nodes":
                guard let nodes = objectOrNull(m.value, key, &problems) else { continue }
                for n in nodes {
                    switch n.value {
                    case .string(let v): s.registryNodes.append(RegistryNode(id: n.key, version: v))
                    case .number(let v): s.registryNodes.append(RegistryNode(id: n.key, version: v))
                    default: problems.append("\(key)[\(quoted(n.key))]: expected a version, found \(n.value.kindName)")
                    }
                }
            case "file_custom_nodes":
                if case .null = m.value { continue }
                guard case .array(let items) = m.value else {
                    problems.append("\(key): expected a list, found \(m.value.kindName)")
                    continue
                }
                for (i, item) in items.enumerated() {
                    guard case .string(let name)? = item["filename"] else {
                        problems.append("\(key)[\(i)].filename: expected a file name")
                        continue
                    }
                    var disabled = false
                    switch item["disabled"] {
                    case .bool(let b)?: disabled = b
                    case nil, .null?: break
                    case let other?: problems.append("\(key)[\(i)].disabled: expected true or false, found \(other.kindName)")
                    }
                    s.fileNodes.append(FileNode(filename: name, disabled: disabled))
                }
            case "pips":
                guard let pips = objectOrNull(m.value, key, &problems) else { continue }
                var list: [Pip] = []
                for p in pips {
                    switch p.value {
                    case .string(let url): list.append(Pip(spec: p.key, url: url))
                    case .null: list.append(Pip(spec: p.key))
                    default: problems.append("\(key)[\(quoted(p.key))]: expected a string (\"\" or a URL), found \(p.value.kindName)")
                    }
                }
                s.pips = list
            default:
                s.ignoredKeys.append(key)
            }
        }
        return s
    }

    /// The members of an object value; nil (and no problem) for null.
    static func objectOrNull(_ v: Document, _ key: String, _ problems: inout [String]) -> [Document.Member]? {
        if case .null = v { return nil }
        guard let m = v.members else {
            problems.append("\(key): expected an object, found \(v.kindName)")
            return nil
        }
        return m
    }

    // MARK: writing

    /// The snapshot as the Manager's `json.dump(snapshot, indent=4)` writes
    /// it, keys in the Manager's order, so its Snapshot Manager can restore it.
    public func renderJSON() -> String {
        var git: [Document.Member] = []
        for n in gitNodes {
            git.append(.init(n.url, .object([.init("hash", .string(n.hash)), .init("disabled", .bool(n.disabled))])))
        }
        var cnr: [Document.Member] = []
        for n in registryNodes { cnr.append(.init(n.id, .string(n.version))) }
        var files: [Document] = []
        for f in fileNodes { files.append(.object([.init("filename", .string(f.filename)), .init("disabled", .bool(f.disabled))])) }
        var doc: [Document.Member] = [
            .init("comfyui", comfyui.map(Document.string) ?? .null),
            .init("git_custom_nodes", .object(git)),
            .init("cnr_custom_nodes", .object(cnr)),
            .init("file_custom_nodes", .array(files)),
        ]
        if let pips {
            var list: [Document.Member] = []
            for p in pips { list.append(.init(p.spec, .string(p.url))) }
            doc.append(.init("pips", .object(list)))
        } else {
            doc.append(.init("pips", .null))
        }
        return DocumentPrinter(indent: 4).render(.object(doc))
    }
}
