import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS

/// Tests that link with AT_EMPTY_PATH or chown need root.
extension Trait where Self == ConditionTrait {
    static var modelsNeedRoot: Self {
        .enabled(if: geteuid() == 0, "needs root (linkat AT_EMPTY_PATH, chown): run through `make test`")
    }
}

/// A temporary directory removed when the value goes away.
final class ModelsTempDir: @unchecked Sendable {
    let path: String
    init(_ label: String = "models", base: String = "/tmp") throws {
        var template = Array("\(base)/cs-\(label)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SandboxError.failure("mkdtemp: \(Errno.current)") }
        path = String(cString: p)
    }
    // rm, not FileManager: the trees hold FIFOs and links to /dev/zero.
    deinit { _ = try? HostCommand("/bin/rm", ["-rf", "--one-file-system", path]).run() }

    func sub(_ rel: String) -> String { path + "/" + rel }

    @discardableResult
    func write(_ rel: String, _ content: String) throws -> String {
        try write(rel, Data(content.utf8))
    }

    @discardableResult
    func write(_ rel: String, _ data: Data) throws -> String {
        let p = sub(rel)
        try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: p))
        return p
    }

    func mkdir(_ rel: String) throws {
        try FileManager.default.createDirectory(atPath: sub(rel), withIntermediateDirectories: true)
    }

    func symlink(_ rel: String, to target: String) throws {
        try FileManager.default.createDirectory(atPath: (sub(rel) as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: sub(rel), withDestinationPath: target)
    }

    func read(_ rel: String) -> String? {
        (try? Data(contentsOf: URL(fileURLWithPath: sub(rel)))).map { String(decoding: $0, as: UTF8.self) }
    }
}

func modelsLstat(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

/// A fake Hugging Face hub cache laid out as huggingface_hub writes it:
/// blobs named by content hash, snapshots/<commit>/<file> symlinks to them,
/// refs/<name> holding a commit id.
struct FakeHFCache {
    let dir: ModelsTempDir
    var root: String { dir.path }

    init(base: String = "/tmp") throws { dir = try ModelsTempDir("hub", base: base) }

    /// Adds `file` with `content` to repo `org/name` at `commit`; returns the blob path.
    @discardableResult
    func add(repo: String, commit: String, file: String, content: String) throws -> String {
        let repoDir = "models--" + repo.replacingOccurrences(of: "/", with: "--")
        let blob = String(content.utf8.reduce(UInt64(1469598103934665603)) { ($0 ^ UInt64($1)) &* 1099511628211 }, radix: 16)
        try dir.write("\(repoDir)/blobs/\(blob)", content)
        let depth = file.split(separator: "/").count + 1  // snapshots/<commit>/<file...>
        let up = Array(repeating: "..", count: depth).joined(separator: "/")
        try dir.symlink("\(repoDir)/snapshots/\(commit)/\(file)", to: "\(up)/blobs/\(blob)")
        return dir.sub("\(repoDir)/blobs/\(blob)")
    }

    func setRef(repo: String, _ ref: String, commit: String) throws {
        let repoDir = "models--" + repo.replacingOccurrences(of: "/", with: "--")
        try dir.write("\(repoDir)/refs/\(ref)", commit)
    }
}
