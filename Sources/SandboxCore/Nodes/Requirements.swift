import Crypto
import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// Where a requirement comes from: ComfyUI's requirements.txt,
/// `comfyui.extra_requirements`, or an enabled node's requirements.txt.
/// ComfyUI's and the extra ones are the base: when they cannot be
/// installed nothing is. A node's can fail alone (it is then left out).
public struct RequirementSource: Sendable, Equatable {
    /// SHA-256 of the file's content, hex ("" when unreadable).
    public var contentHash: String {
        guard let data = FileManager.default.contents(atPath: file) else { return "" }
        return Format.hex(SHA256.hash(data: data))
    }

    public enum Kind: String, Sendable, Codable { case comfyui, extra, node }
    public var kind: Kind
    /// "ComfyUI", "comfyui.extra_requirements" or the node's name.
    public var name: String
    /// The requirements file (for `extra`, written into staging when installing).
    public var file: String
    /// `extra`'s lines; empty for the others.
    public var lines: [String] = []
    public var onFailure: Config.RequirementsFailure = .disable
    /// The config key to name in messages.
    public var key: String

    public var isBase: Bool { kind != .node }
}

/// The installer that runs as the sandbox user: uv when a root-owned one is
/// installed (make deps puts one in `toolDirectory`), else the venv's pip.
public enum RequirementInstaller: Sendable, Equatable {
    case uv(String)
    case pip

    /// Where `make deps` installs uv (a root-owned venv holding only uv).
    public static let toolDirectory = "/usr/local/lib/comfy-sandbox/uv"
    static let candidates = [toolDirectory + "/bin/uv", "/usr/local/bin/uv", "/usr/bin/uv"]

    /// uv when one of the candidates is a regular file root owns and nobody
    /// else can write, in a directory root owns and nobody else can write
    /// (the install runs it for root's purposes: it must be root's uv).
    public static func find(_ choice: Config.Installer = .auto) -> RequirementInstaller? {
        if choice == .pip { return .pip }
        for path in candidates {
            guard let st = SafeFS.lstat(path), SafeFS.isRegular(st), st.st_uid == 0, st.st_mode & 0o022 == 0,
                  let dir = SafeFS.lstat(Paths.deletingLastComponent(path)), dir.st_uid == 0, dir.st_mode & 0o022 == 0 else { continue }
            return .uv(path)
        }
        return choice == .auto ? .pip : nil
    }

    public var name: String {
        switch self {
        case .uv: "uv"
        case .pip: "pip"
        }
    }
}

/// What an install of one fingerprint left behind in `state_dir/requirements/`:
/// `<fp>.lock` (the resolved set, name==version with hashes where the
/// installer gives them: re-provisioning installs exactly this) and
/// `<fp>.json` (this record). Root's, 0644, like every record.
public struct RequirementsRecord: Codable, Sendable, Equatable {
    public struct LeftOut: Codable, Sendable, Equatable {
        public var node: String
        /// "disable" or "load-without" (custom_nodes[].on_requirements_failure).
        public var policy: String
        /// The installer's own error lines.
        public var error: [String]
        /// SHA-256 of the node's requirements.txt when it failed: while it is
        /// unchanged the node is left out again without another try (until --pull).
        public var requirements: String? = nil
    }
    public var fingerprint: String
    public var installer: String
    public var resolvedAt: String
    public var installedAt: String
    public var sources: [String]
    public var leftOut: [LeftOut]
    /// Lines in the lock (packages), for status.
    public var packages: Int

    enum CodingKeys: String, CodingKey {
        case fingerprint, installer, sources, packages
        case resolvedAt = "resolved_at"
        case installedAt = "installed_at"
        case leftOut = "left_out"
    }

    public static func directory(_ config: Config) -> String { config.stateDir + "/requirements" }
    public static func lockPath(_ config: Config, _ fp: String) -> String { directory(config) + "/\(fp).lock" }
    public static func recordPath(_ config: Config, _ fp: String) -> String { directory(config) + "/\(fp).json" }

    /// The record of `fp`, when there is one root wrote.
    public static func load(_ config: Config, _ fp: String) -> RequirementsRecord? {
        guard let data = RootFile.read(recordPath(config, fp)) else { return nil }
        return try? JSONDecoder().decode(RequirementsRecord.self, from: data)
    }

    public static func loadLock(_ config: Config, _ fp: String) -> String? {
        RootFile.read(lockPath(config, fp)).map { String(decoding: $0, as: UTF8.self) }
    }

    public func write(_ config: Config, lock: String) throws {
        try StateDirectory.ensure(Self.directory(config))
        try AtomicFile.write(Data(lock.utf8), to: Self.lockPath(config, fingerprint), mode: 0o644, owner: (0, 0))
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(try e.encode(self), to: Self.recordPath(config, fingerprint), mode: 0o644, owner: (0, 0))
    }
}

/// Reading files only root may have written (state, records): a regular
/// file, not a link, owned by root, writable by nobody else, at most 16 MiB.
enum RootFile {
    static func read(_ path: String) -> Data? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readChecked(fd, owner: 0)
    }

    /// The content of an open regular file of `owner` (nil: any owner) that
    /// nobody else can write, at most 16 MiB.
    static func readChecked(_ fd: Int32, owner: uid_t?) -> Data? {
        var st = stat()
        guard fstat(fd, &st) == 0, SafeFS.isRegular(st), st.st_size <= 16 << 20 else { return nil }
        if let owner, st.st_uid != owner || st.st_mode & 0o022 != 0 { return nil }
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data.append(contentsOf: buf[..<n])
            if data.count > 16 << 20 { return nil }
        }
        return data
    }
}

/// A lock: the resolved requirement set as a requirements file. Made by the
/// installer running as the sandbox user, so root reads it as hostile text
/// and keeps only what a lock may hold: `name==version` or `name @ url`
/// lines, their `--hash=` continuations and comments. Anything else (an
/// option such as `-r /etc/shadow`, `-e`, `--index-url`) refuses the lock.
public enum RequirementLock {
    public struct Parsed: Sendable, Equatable {
        public var text: String
        public var packages: Int
        /// Every package line has at least one --hash.
        public var fullyHashed: Bool
    }

    public static func parse(_ raw: String) throws -> Parsed {
        var out: [String] = []
        var packages = 0
        var hashed = 0
        var currentHashed = false
        for line in raw.split(separator: "\n", omittingEmptySubsequences: false) {
            let t = line.trimmingWhitespace()
            if t.isEmpty || t.hasPrefix("#") { out.append(String(line)); continue }
            if line.utf8.contains(where: { $0 < 0x20 && $0 != 9 }) { throw problem(t) }
            let body = t.hasSuffix("\\") ? String(t.dropLast()).trimmingWhitespace() : t
            if body.hasPrefix("--hash=sha256:") || body.hasPrefix("--hash=sha384:") || body.hasPrefix("--hash=sha512:") {
                guard packages > 0, body.dropFirst("--hash=sha256:".count).allSatisfy(\.isHexDigit) else { throw problem(t) }
                if !currentHashed { currentHashed = true; hashed += 1 }
                out.append(String(line))
                continue
            }
            guard ConfigValidator.requirementLineProblem(body) == nil,
                  body.contains("==") || body.contains(" @ ") else { throw problem(t) }
            packages += 1
            currentHashed = false
            out.append(String(line))
        }
        var text = out.joined(separator: "\n")
        if !text.hasSuffix("\n") { text += "\n" }
        return Parsed(text: text, packages: packages, fullyHashed: packages > 0 && hashed == packages)
    }

    /// The pins of a preferences file (`comfyui.prefer_versions`, e.g. a
    /// ComfyUI-Manager snapshot's pips): its `name==version` lines, nothing
    /// else (options, URLs, ranges and markers are dropped: a preference is
    /// a version, and the file is read as hostile text).
    public static func pins(_ raw: String) -> [String] {
        var out: [String] = []
        for line in raw.split(separator: "\n").prefix(100_000) {
            let t = line.trimmingWhitespace()
            let parts = t.components(separatedBy: "==")
            guard parts.count == 2, let name = parts.first, let version = parts.last, !name.isEmpty, !version.isEmpty,
                  name.utf8.allSatisfy({ ConfigValidator.isASCIIAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }),
                  version.utf8.allSatisfy({ ConfigValidator.isASCIIAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "!") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") })
            else { continue }
            out.append(t)
        }
        return out
    }

    /// A package name as the index compares them (PEP 503).
    static func normalizedName(_ name: Substring) -> String {
        var out = ""
        var lastSep = false
        for b in name.utf8 {
            if b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".") {
                if !lastSep { out.append("-") }
                lastSep = true
            } else {
                out.unicodeScalars.append(Unicode.Scalar(b | (b >= 0x41 && b <= 0x5A ? 0x20 : 0)))
                lastSep = false
            }
        }
        return out
    }

    /// The names a lock (or pins list) holds a line for.
    static func names(_ text: String) -> Set<String> {
        var out: Set<String> = []
        for line in text.split(separator: "\n") {
            let t = line.trimmingWhitespace()
            guard let first = t.utf8.first, ConfigValidator.isASCIIAlphanumeric(first) else { continue }
            let end = t.firstIndex { $0 == "=" || $0 == " " || $0 == "[" || $0 == "<" || $0 == ">" || $0 == "~" || $0 == "!" || $0 == ";" } ?? t.endIndex
            out.insert(normalizedName(t[..<end]))
        }
        return out
    }

    /// What a resolution should prefer: the lock in use, where there is one,
    /// and the preference pins for every package it does not hold. nil when
    /// there is neither.
    public static func preferences(lock: String?, pins: [String]) -> String? {
        let held = lock.map(names) ?? []
        let extra = pins.filter { !held.contains(normalizedName($0.split(separator: "=", maxSplits: 1)[0])) }
        if lock == nil && extra.isEmpty { return nil }
        var text = lock ?? ""
        if !extra.isEmpty {
            if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
            text += extra.joined(separator: "\n") + "\n"
        }
        return text
    }

    static func problem(_ line: String) -> SandboxError {
        SandboxError.failure("the installer's lock holds a line a lock may not hold: \"\(Format.escape(Array(line.prefix(200).utf8)))\"",
                             hint: "only name==version, name @ url, --hash= and comments are kept; nothing was installed")
    }

    /// A lock from pip's `install --dry-run --report` JSON: each package as
    /// name==version with the index's sha256, or `name @ url` for a direct
    /// reference (a VCS URL, a local directory), which has none.
    public static func fromPipReport(_ data: Data) throws -> String {
        struct Report: Decodable {
            struct Item: Decodable {
                struct Meta: Decodable { var name: String; var version: String }
                struct Download: Decodable {
                    struct Archive: Decodable { var hashes: [String: String]? }
                    struct VCS: Decodable { var vcs: String; var commit_id: String }
                    var url: String
                    var archive_info: Archive?
                    var vcs_info: VCS?
                }
                var metadata: Meta
                var download_info: Download?
                var is_direct: Bool?
            }
            var install: [Item]
        }
        let report = try JSONDecoder().decode(Report.self, from: data)
        var lines: [String] = []
        for item in report.install.sorted(by: { $0.metadata.name.lowercased() < $1.metadata.name.lowercased() }) {
            let name = item.metadata.name.lowercased()
            if item.is_direct == true, let d = item.download_info {
                if let vcs = d.vcs_info { lines.append("\(name) @ \(vcs.vcs)+\(d.url)@\(vcs.commit_id)") }
                else { lines.append("\(name) @ \(d.url)") }
                continue
            }
            var line = "\(name)==\(item.metadata.version)"
            if let sha = item.download_info?.archive_info?.hashes?["sha256"] { line += " \\\n    --hash=sha256:\(sha)" }
            lines.append(line)
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
