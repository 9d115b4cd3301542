import FoundationEssentials
import Glibc
import SandboxOS

/// A checkout this tool owns, driven through `GitRunner`. The repository
/// keeps no remote in its config: every fetch names the URL from the
/// config, so a changed `repo` takes effect and nothing in `.git/config`
/// decides where git connects.
public struct Repository: Sendable {
    public let path: String
    public let git: GitRunner
    /// A writable node's worktree is group-writable (sticky); `.git` never is.
    public var groupWritableWorktree = false
    /// Paths (relative to the work tree) left out of every checkout with a
    /// non-cone sparse checkout. ComfyUI tracks `models/`, `input/` and
    /// `output/` as directories, but those are exactly where provisioning
    /// puts the links to the shares (`shares[].mount`): without this, a
    /// forced checkout would replace a link with the tracked directory.
    public var sparseExclude: [String] = []

    public init(path: String, git: GitRunner, groupWritableWorktree: Bool = false) {
        self.path = path
        self.git = git
        self.groupWritableWorktree = groupWritableWorktree
    }

    @discardableResult
    func run(_ args: [String], allowFailure: Bool = false) throws -> HostCommand.Result {
        try git.run(args, repo: path, allowGroupWritableWorktree: groupWritableWorktree, allowFailure: allowFailure)
    }

    /// A new, empty repository in `path` (which the caller created
    /// root-owned): exactly what `git init --template=` makes (HEAD, config,
    /// objects/, refs/), written directly so an install costs one git process
    /// less. No hooks directory, no remote, nothing from a template.
    public static func initialize(at path: String, git: GitRunner) throws -> Repository {
        let g = path + "/.git"
        for d in [g, g + "/objects", g + "/objects/info", g + "/objects/pack", g + "/refs", g + "/refs/heads", g + "/refs/tags"] {
            try SafeFS.makeDirectory(d, mode: 0o755)
        }
        try AtomicFile.write(Data("ref: refs/heads/main\n".utf8), to: g + "/HEAD", mode: 0o644, owner: (0, 0), durable: false)
        let config = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n"
        try AtomicFile.write(Data(config.utf8), to: g + "/config", mode: 0o644, owner: (0, 0), durable: false)
        return Repository(path: path, git: git)
    }

    /// Where fetched branches land: ours, never a remote the repo names.
    static let branchRefs = "refs/comfy-sandbox/heads/"

    /// Fetches every branch and tag of `url` (pruning those gone upstream),
    /// with no submodules and no tag auto-following beyond the refspec.
    public func fetchAll(url: String) throws {
        try run(["fetch", "-q", "--no-recurse-submodules", "--no-write-fetch-head", "--prune", "--force", "--no-tags",
                 "--", url, "+refs/heads/*:\(Self.branchRefs)*", "+refs/tags/*:refs/tags/*"])
    }

    /// Fetches one commit by id (servers that allow unadvertised wants).
    public func fetchCommit(url: String, sha: String) -> Bool {
        (try? run(["fetch", "-q", "--no-recurse-submodules", "--no-write-fetch-head", "--no-tags", "--", url, sha], allowFailure: true))?.succeeded ?? false
    }

    public func hasCommit(_ sha: String) -> Bool {
        guard GitFiles.isCommitID(sha) else { return false }
        return (try? run(["cat-file", "-e", "--end-of-options", "\(sha)^{commit}"], allowFailure: true))?.succeeded ?? false
    }

    /// The commit `rev` names among fetched refs: a full id present here, a
    /// tag (peeled), or a branch. Tags come first, as in git's own lookup.
    public func resolveLocally(_ rev: String) throws -> String? {
        if GitFiles.isCommitID(rev) { return hasCommit(rev) ? rev : nil }
        // The common case without a git process: no tag of that name and the
        // branch as a loose ref (what a fetch into our own namespace writes).
        // Anything else (annotated tags, packed refs) goes through for-each-ref.
        if !GitFiles.refExists(path, "refs/tags/\(rev)"), !GitFiles.packedRefsExist(path),
           let sha = GitFiles.looseRef(path, "\(Self.branchRefs)\(rev)") {
            return sha
        }
        let r = try run(["for-each-ref", "--format=%(refname) %(objectname) %(*objectname)", "--",
                         "refs/tags/\(rev)", "\(Self.branchRefs)\(rev)"])
        var tag: String?, branch: String?
        for line in r.stdoutText.split(separator: "\n") {
            let f = line.split(separator: " ").map(String.init)
            guard f.count >= 2 else { continue }
            let commit = f.count >= 3 ? f[2] : f[1]
            if f[0] == "refs/tags/\(rev)" { tag = commit }
            if f[0] == "\(Self.branchRefs)\(rev)" { branch = commit }
        }
        // The fetch that wrote these refs checked every object (fsckObjects).
        guard let sha = tag ?? branch, GitFiles.isCommitID(sha) else { return nil }
        return sha
    }

    /// Keeps `sha` reachable from a ref of ours so a later prune upstream or
    /// a manual gc cannot lose a commit the history may roll back to.
    ///
    /// Written as a loose ref file (the format git reads for every ref) into
    /// the root-owned .git, atomically: one git process less per move.
    public func pin(_ sha: String) throws {
        guard GitFiles.isCommitID(sha) else { throw SandboxError.failure("not a commit id: \(sha)") }
        let dir = path + "/.git/refs/comfy-sandbox/pins"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try AtomicFile.write(Data((sha + "\n").utf8), to: dir + "/" + sha, mode: 0o644, owner: (0, 0), durable: false)
    }

    /// Detached, forced checkout: a checkout interrupted earlier (files half
    /// written, a stale index.lock) is simply redone.
    public func checkout(_ sha: String) throws {
        try applySparseExclusions()
        let lock = path + "/.git/index.lock"
        var st = stat()
        if lstat(lock, &st) == 0 { _ = unlink(lock) }   // we hold the state lock: no git of ours runs here
        try run(["checkout", "-q", "--force", "--detach", "--no-recurse-submodules", sha, "--"])
    }

    /// Writes `.git/info/sparse-checkout` (everything but `sparseExclude`)
    /// and `.git/info/exclude` (so the links show as nothing at all) into the
    /// root-owned .git, and turns core.sparseCheckout on. Only when they
    /// differ from what is there: a no-op move costs no git process.
    func applySparseExclusions() throws {
        guard !sparseExclude.isEmpty else { return }
        let info = path + "/.git/info"
        var st = stat()
        if lstat(info, &st) != 0 {
            guard mkdir(info, 0o755) == 0 else { throw SandboxError.failure("cannot create \(info): \(Errno.current)") }
        } else if (st.st_mode & S_IFMT) != S_IFDIR || st.st_uid != 0 {
            throw SandboxError.failure("\(info) is not a root-owned directory; refusing to use this checkout")
        }
        let paths = sparseExclude.sorted()
        let sparse = "/*\n" + paths.map { "!/\($0)/\n" }.joined()
        let exclude = paths.map { "/\($0)\n" }.joined()
        for (name, text) in [("sparse-checkout", sparse), ("exclude", exclude)] {
            let file = info + "/" + name
            if FileManager.default.contents(atPath: file) != Data(text.utf8) {
                try AtomicFile.write(Data(text.utf8), to: file, mode: 0o644, owner: (0, 0), durable: false)
            }
        }
        let config = String(decoding: FileManager.default.contents(atPath: path + "/.git/config") ?? Data(), as: UTF8.self)
        if !config.contains("sparseCheckout = true") {
            try run(["config", "core.sparseCheckout", "true"])
        }
    }

    /// `git submodule update --init` under the same hardening, only for
    /// nodes that set `"submodules": true`.
    public func updateSubmodules() throws {
        try run(["submodule", "update", "--init", "--no-recommend-shallow", "--"])
    }

    public var head: String? { GitFiles.detachedHead(path) }
}
