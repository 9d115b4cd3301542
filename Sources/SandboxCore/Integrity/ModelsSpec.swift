import FoundationEssentials
import SandboxOS
import SandboxConfig

/// The `MODELS` string of the RunPod images: `RepoID:RemoteFilename:TargetDir[:LocalRename]`,
/// entries separated by commas, semicolons, spaces or newlines, e.g.
///
///     Comfy-Org/flux1-dev:split_files/vae/ae.safetensors:vae
///     city96/FLUX.1-dev-gguf:flux1-dev-Q8_0.gguf:unet:flux-q8.gguf
///
/// Each entry becomes one `models.links[]` element. A bad entry is an invalid
/// config (exit 65) naming its index and its text, so a user pasting a long
/// string sees which part to fix.
public enum ModelsSpec {
    /// Parses every entry of a MODELS string. Throws a config error naming every bad entry.
    public static func parse(_ spec: String) throws -> [Config.ModelLink] {
        // Split by scalar, as components(separatedBy: CharacterSet) did.
        let entries = spec.unicodeScalars
            .split(whereSeparator: { $0 == "," || $0 == ";" || $0.isFoundationWhitespace || $0.isFoundationNewline })
            .map { String(String.UnicodeScalarView($0)) }
        var links: [Config.ModelLink] = []
        var problems: [String] = []
        for (i, entry) in entries.enumerated() {
            switch parseEntry(entry) {
            case .success(let link): links.append(link)
            case .failure(let why): problems.append("MODELS entry \(i) \"\(entry)\": \(why)")
            }
        }
        guard problems.isEmpty else {
            throw SandboxError.config(problems.joined(separator: "\n"),
                                      hint: "each entry is RepoID:RemoteFilename:TargetDir[:LocalRename], e.g. Comfy-Org/flux1-dev:split_files/vae/ae.safetensors:vae; separate entries with commas, semicolons or spaces")
        }
        return links
    }

    static func parseEntry(_ entry: String) -> Result<Config.ModelLink, Problem> {
        let parts = entry.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 || parts.count == 4 else {
            return .failure(Problem("has \(parts.count) field\(parts.count == 1 ? "" : "s"); needs 3 or 4 separated by ':'"))
        }
        let (repo, file, dir) = (parts[0], parts[1], parts[2])
        let rename = parts.count == 4 ? parts[3] : nil
        let repoParts = repo.split(separator: "/", omittingEmptySubsequences: false)
        if repoParts.count != 2 || repoParts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            return .failure(Problem("RepoID \"\(repo)\" must look like org/name"))
        }
        if !ConfigValidator.isSafeRelative(file) {
            return .failure(Problem("RemoteFilename \"\(file)\" must be a relative path without empty, . or .. parts"))
        }
        if !ConfigValidator.isSafeRelative(dir) {
            return .failure(Problem("TargetDir \"\(dir)\" must be a relative path without empty, . or .. parts"))
        }
        if let rename, rename.isEmpty || rename.contains("/") || rename == "." || rename == ".." {
            return .failure(Problem("LocalRename \"\(rename)\" must be a plain file name"))
        }
        return .success(Config.ModelLink(repo: repo, file: file, dir: dir, rename: rename))
    }

    struct Problem: Error, Equatable {
        var text: String
        init(_ text: String) { self.text = text }
    }
}

extension ModelsSpec.Problem: CustomStringConvertible {
    var description: String { text }
}
