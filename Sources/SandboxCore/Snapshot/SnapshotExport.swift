import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// `export-snapshot`: what is installed, from the root-owned records, as a
/// ComfyUI-Manager snapshot, so a user can take it back to a plain ComfyUI
/// (the Manager's Snapshot Manager restores it) or import it again.
///
/// - `comfyui`: `state_dir/comfyui.json`'s current_sha (null when ComfyUI has no record);
/// - `git_custom_nodes`: each configured node with a record, keyed by its
///   configured repo URL: `hash` is the record's current_sha, `disabled` its
///   status `disabled`;
/// - `cnr_custom_nodes`, `file_custom_nodes`: empty (comfy-sandbox installs git checkouts only);
/// - `pips`: the packages in the sealed requirements install the venv points
///   at, read from their `.dist-info` metadata the way `pip freeze` prints
///   them (no Python runs, nothing from the install is executed); empty when
///   there is none.
public enum SnapshotExporter {
    public struct Result: Sendable {
        public var snapshot: ManagerSnapshot
        /// Said on stderr: what was left out and why.
        public var notes: [String] = []
        /// Records that are not trusted (left out; the command exits 1).
        public var untrusted: [String] = []
    }

    public static func export(_ config: Config) -> Result {
        var r = Result(snapshot: ManagerSnapshot())
        switch RecordStore.load(config.stateDir + "/comfyui.json", name: "ComfyUI") {
        case .record(let rec): r.snapshot.comfyui = rec.currentSHA
        case .missing: r.notes.append("ComfyUI has no record (state_dir/comfyui.json): comfyui is null")
        case .corrupt(let why): r.untrusted.append("ComfyUI: record not trusted: \(why)")
        }
        for n in config.customNodes {
            switch RecordStore.load(config.nodesStateDir + "/" + n.name + ".json", name: n.name) {
            case .record(let rec):
                r.snapshot.gitNodes.append(.init(url: n.repo, hash: rec.currentSHA, disabled: rec.status == .disabled))
                if !SnapshotImporter.sameRepo(rec.repoURL, n.repo) {
                    r.notes.append("\(n.name): recorded from \(quoted(rec.repoURL)) but configured as \(quoted(n.repo)); the snapshot names the configured URL")
                }
            case .missing:
                r.notes.append("\(n.name): not installed (no record); left out")
            case .corrupt(let why):
                r.untrusted.append("\(n.name): record not trusted: \(why)")
            }
        }
        let (pips, note) = installedPackages(config)
        r.snapshot.pips = pips
        if let note { r.notes.append(note) }
        return r
    }

    /// The sealed requirements install the venv's .pth names, as pip freeze
    /// lines in the Manager's form; a note when there is none.
    static func installedPackages(_ config: Config) -> ([ManagerSnapshot.Pip], String?) {
        let env = PythonEnv(config)
        guard let sp = env.sitePackages(), let pth = try? readFile(sp + "/" + PythonEnv.pthName) else {
            return ([], "no requirements were installed by comfy-sandbox (no \(PythonEnv.pthName) in the venv): pips is empty")
        }
        let dir = String(decoding: pth, as: UTF8.self).trimmingWhitespaceAndNewlines()
        guard ConfigValidator.isInside(dir, [env.sealedRoot]), !dir.contains("/.."),
              let st = SafeFS.lstat(dir), SafeFS.isDirectory(st), st.st_uid == 0 else {
            return ([], "\(PythonEnv.pthName) does not name a sealed install under \(env.sealedRoot): pips is empty")
        }
        return (packages(in: dir), nil)
    }

    /// `Name==Version` (or `Name` with its URL, from direct_url.json) for
    /// every `*.dist-info` / `*.egg-info` in `dir`, sorted as pip freeze sorts.
    static func packages(in dir: String) -> [ManagerSnapshot.Pip] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        var out: [ManagerSnapshot.Pip] = []
        for e in entries {
            let meta: String
            if e.hasSuffix(".dist-info") { meta = "METADATA" } else if e.hasSuffix(".egg-info") { meta = "PKG-INFO" } else { continue }
            guard let st = SafeFS.lstat(dir + "/" + e), SafeFS.isDirectory(st),
                  let data = try? readFile(dir + "/" + e + "/" + meta) else { continue }
            var name: String?, version: String?
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
                if line.isEmpty || line == "\r" { break }
                if line.hasPrefix("Name:") { name = line.dropFirst(5).trimmingWhitespaceAndNewlines() }
                if line.hasPrefix("Version:") { version = line.dropFirst(8).trimmingWhitespaceAndNewlines() }
            }
            guard let name, let version, !name.isEmpty else { continue }
            if let url = directURL(dir + "/" + e + "/direct_url.json") {
                out.append(.init(spec: name, url: url))
            } else {
                out.append(.init(spec: "\(name)==\(version)"))
            }
        }
        return out.sorted { $0.spec.lowercased() < $1.spec.lowercased() }
    }

    struct DirectURL: Decodable {
        struct VCS: Decodable {
            var vcs: String
            var commitID: String?
            enum CodingKeys: String, CodingKey { case vcs, commitID = "commit_id" }
        }
        var url: String
        var vcsInfo: VCS?
        enum CodingKeys: String, CodingKey { case url, vcsInfo = "vcs_info" }
    }

    /// What pip freeze prints after `name @ ` for a package installed from a URL.
    static func directURL(_ path: String) -> String? {
        guard let data = try? readFile(path), let d = try? JSONDecoder().decode(DirectURL.self, from: data) else { return nil }
        if let v = d.vcsInfo { return "\(v.vcs)+\(d.url)" + (v.commitID.map { "@\($0)" } ?? "") }
        return d.url
    }
}
