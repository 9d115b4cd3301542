import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// One pinned checkout: a custom node or ComfyUI itself.
public struct CheckoutSpec: Sendable {
    public var name: String
    public var repo: String
    public var rev: String
    /// Where the checkout lives when enabled.
    public var dir: String
    /// Where it is moved when disabled (ComfyUI skips `custom_nodes/*.disabled`); nil for ComfyUI.
    public var disabledDir: String?
    public var recordPath: String
    public var submodules = false
    /// Group-writable for the shared group (see `Checkout.applyWritable`).
    public var writableGroup: gid_t?
    /// ComfyUI's directory may already exist (custom_nodes made first): check out in place.
    public var installInPlace = false
    /// `"writable": true` but the shared group does not exist (yet).
    public var writableGroupMissing: String?
    /// Paths (relative) git must never materialise in the work tree: where
    /// the shares' views live in ComfyUI's checkout (see `Repository.sparseExclude`).
    public var sparseExclude: [String] = []

    public init(name: String, repo: String, rev: String, dir: String, disabledDir: String?, recordPath: String) {
        self.name = name
        self.repo = repo
        self.rev = rev
        self.dir = dir
        self.disabledDir = disabledDir
        self.recordPath = recordPath
    }

    public static func node(_ n: Config.CustomNode, _ config: Config) -> CheckoutSpec {
        var s = CheckoutSpec(name: n.name, repo: n.repo, rev: n.rev, dir: config.customNodesDir + "/" + n.name,
                             disabledDir: config.customNodesDir + "/" + n.name + ".disabled",
                             recordPath: config.nodesStateDir + "/" + n.name + ".json")
        s.submodules = n.submodules
        if n.writable {
            s.writableGroup = AccountLookup.group(config.sharedGroup.name)?.gid
            s.writableGroupMissing = s.writableGroup == nil ? config.sharedGroup.name : nil
        }
        return s
    }

    public static func comfyui(_ config: Config) -> CheckoutSpec {
        var s = CheckoutSpec(name: "ComfyUI", repo: config.comfyui.repo, rev: config.comfyui.rev, dir: config.comfyui.path,
                             disabledDir: nil, recordPath: config.stateDir + "/comfyui.json")
        s.installInPlace = true
        s.sparseExclude = config.shares.map(\.mount) + ["web/extensions"]
        return s
    }
}

/// What happened to one checkout.
public struct Outcome: Sendable, Codable {
    public enum Kind: String, Sendable, Codable {
        case installed, updated, upToDate = "up_to_date", rolledBack = "rolled_back", disabled, enabled, repaired, failed
    }
    public var name: String
    public var kind: Kind
    public var sha: String?
    public var previous: String?
    public var message: String?

    public init(name: String, kind: Kind, sha: String? = nil, previous: String? = nil, message: String? = nil) {
        self.name = name
        self.kind = kind
        self.sha = sha
        self.previous = previous
        self.message = message
    }

    public var line: String {
        let short = { (s: String?) in s.map { String($0.prefix(12)) } ?? "-" }
        switch kind {
        case .failed: return "\(name): FAILED: \(message ?? "")"
        case .updated, .rolledBack, .repaired: return "\(name): \(kind.rawValue) \(short(previous)) -> \(short(sha))" + (message.map { " (\($0))" } ?? "")
        default: return "\(name): \(kind.rawValue)" + (sha.map { " \(short($0))" } ?? "") + (message.map { " (\($0))" } ?? "")
        }
    }
}

/// Moves checkouts between commits so that a crash at any instant leaves a
/// record that parses and names either the commit HEAD is on or, as
/// `previous_sha`, the one it is still on:
///
/// 1. fetch (objects only; HEAD and the record untouched),
/// 2. write the record naming the target as current and the old commit as
///    previous (atomic rename),
/// 3. `git checkout --force --detach` the target (HEAD moves last),
/// 4. verify HEAD, write the rev marker.
///
/// A crash between 2 and 4 leaves HEAD on `previous_sha`; the next run sees
/// HEAD != current_sha and finishes the checkout ("repaired"). In place was
/// chosen over check-out-elsewhere-and-swap because a swap copies the whole
/// tree every move and a rename cannot replace a non-empty directory
/// atomically without RENAME_EXCHANGE on the same filesystem anyway; the
/// forced checkout redoes any half-written files.
///
/// New checkouts are made in `.NAME.cs-new-XXXXXX` beside the target and
/// renamed into place when complete, then recorded; leftovers of a crash are
/// removed on the next run.
public struct Checkout: Sendable {
    public let spec: CheckoutSpec
    public let git: GitRunner

    public init(_ spec: CheckoutSpec, git: GitRunner) {
        self.spec = spec
        self.git = git
    }

    /// The configured rev a checkout was last resolved from, kept inside its
    /// root-owned `.git` (the record's fields are fixed by the contract).
    static let revMarker = "comfy-sandbox-rev"

    func readRevMarker(_ dir: String) -> String? {
        guard let d = FileManager.default.contents(atPath: dir + "/.git/" + Self.revMarker) else { return nil }
        return String(decoding: d, as: UTF8.self).trimmingWhitespaceAndNewlines()
    }

    func writeRevMarker(_ dir: String) throws {
        try AtomicFile.write(Data((spec.rev + "\n").utf8), to: dir + "/.git/" + Self.revMarker, mode: 0o644, owner: (0, 0),
                                 durable: false)   // a hint: lost, the rev is resolved again
    }

    func exists(_ path: String) -> Bool { SafeFS.lstat(path) != nil }

    func failed(_ message: String) -> Outcome { Outcome(name: spec.name, kind: .failed, message: message) }

    func loadRecord() -> (CheckoutRecord?, String?) {
        switch RecordStore.load(spec.recordPath, name: spec.name) {
        case .missing: return (nil, nil)
        case .record(let r): return (r, nil)
        case .corrupt(let why):
            return (nil, "record not trusted: \(why); move it aside (e.g. mv \(spec.recordPath) \(spec.recordPath).bad) and run update-nodes again to re-record the checkout at its configured rev")
        }
    }

    /// True when nothing needs doing and no git or network is needed to know
    /// it: the record matches HEAD (read from .git/HEAD) and the rev is the
    /// one last resolved. The no-op update-nodes path.
    public func isSettled() -> Bool {
        guard exists(spec.dir), !(spec.disabledDir.map(exists) ?? false) else { return false }
        guard case .record(let r) = RecordStore.load(spec.recordPath, name: spec.name), r.status != .disabled, r.status != .failed else { return false }
        guard (try? GitRunner.requireRootOwned(spec.dir, allowGroupWritableWorktree: spec.writableGroup != nil)) != nil else { return false }
        guard permissionsMatch() else { return false }
        return GitFiles.detachedHead(spec.dir) == r.currentSHA && readRevMarker(spec.dir) == spec.rev
    }

    // MARK: update

    /// Brings an enabled checkout to its pinned commit (see the type's doc).
    public func update(pull: Bool) -> Outcome {
        do { return try updateOrThrow(pull: pull) } catch { return failed("\(error)") }
    }

    /// The top of the checkout has the mode `writable` asks for.
    func permissionsMatch() -> Bool {
        var st = stat()
        guard lstat(spec.dir, &st) == 0 else { return false }
        if let g = spec.writableGroup { return st.st_gid == g && (st.st_mode & 0o7777) == 0o3775 }
        return (st.st_mode & 0o022) == 0
    }

    /// A node whose `writable` changed: re-apply the group-writable layout,
    /// or seal a formerly writable tree back to root-only (by descriptor,
    /// .git untouched) so git may run in it again. Anything not root-owned is
    /// left for requireRootOwned to refuse.
    func normalizePermissions() throws {
        var st = stat()
        guard lstat(spec.dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == 0, !permissionsMatch() else { return }
        if spec.writableGroup != nil {
            try applyPermissions()
        } else if (st.st_mode & 0o1000) != 0 {
            try TreeOwnership.apply(.sealed, to: spec.dir, skipTop: [".git"])
            try SafeFS.setMode(spec.dir, 0o755)
        }
    }

    func updateOrThrow(pull: Bool) throws -> Outcome {
        if let g = spec.writableGroupMissing {
            return failed("\"writable\": true needs the shared group \(g) (shared_group.name), which does not exist; run `comfy-sandbox provision` first")
        }
        let (record, corrupt) = loadRecord()
        if let corrupt { return failed(corrupt) }
        removeLeftovers()
        var enabledNow = false
        if let dis = spec.disabledDir, exists(dis) {
            if exists(spec.dir) {
                return failed("both \(spec.dir) and \(dis) exist; move one of them away")
            }
            guard rename(dis, spec.dir) == 0 else { return failed("cannot move \(dis) back to \(spec.dir): \(Errno.current)") }
            enabledNow = true
        }
        guard exists(spec.dir), !spec.installInPlace || exists(spec.dir + "/.git") else {
            return try install(record: record, pull: pull)
        }
        try normalizePermissions()
        var repo = Repository(path: spec.dir, git: git, groupWritableWorktree: spec.writableGroup != nil)
        repo.sparseExclude = spec.sparseExclude
        try GitRunner.requireRootOwned(spec.dir, allowGroupWritableWorktree: spec.writableGroup != nil)
        guard var record else { return try adopt(repo) }
        let head = repo.head
        var repaired: String?
        if head != record.currentSHA {
            // An interrupted move (HEAD still on previous_sha) or a changed
            // checkout: put it back on what the record names.
            if !repo.hasCommit(record.currentSHA) { try repo.fetchAll(url: spec.repo) }
            try repo.checkout(record.currentSHA)
            guard repo.head == record.currentSHA else { return failed("HEAD is \(repo.head ?? "unreadable") after checking out \(record.currentSHA)") }
            try applyPermissions()
            repaired = head
        }
        if enabledNow || record.status == .disabled {
            record.status = .upToDate
            record.updatedAt = Timestamp.now()
            record.history.append(.init(sha: record.currentSHA, at: record.updatedAt, action: "enable"))
            try RecordStore.write(record, to: spec.recordPath)
        }
        let markerRev = readRevMarker(spec.dir)
        guard pull || markerRev != spec.rev else {
            if let repaired { return Outcome(name: spec.name, kind: .repaired, sha: record.currentSHA, previous: repaired, message: "finished an interrupted checkout") }
            return Outcome(name: spec.name, kind: enabledNow ? .enabled : .upToDate, sha: record.currentSHA)
        }
        let target = try resolve(repo)
        if target == record.currentSHA {
            try writeRevMarker(spec.dir)
            if pull {
                record.status = .upToDate
                record.updatedAt = Timestamp.now()
                try RecordStore.write(record, to: spec.recordPath)
            }
            return Outcome(name: spec.name, kind: enabledNow ? .enabled : .upToDate, sha: target)
        }
        return try move(repo, record: record, to: target, status: .updated, action: pull ? "pull" : "update")
    }

    /// The commit the configured rev names. A full id already present needs
    /// no network (a pull would not change it either). `fetched`: the caller
    /// has just fetched every ref (a fresh install), so a second fetch would
    /// only repeat the negotiation and the connectivity check.
    func resolve(_ repo: Repository, fetched: Bool = false) throws -> String {
        if !fetched {
            if GitFiles.isCommitID(spec.rev), repo.hasCommit(spec.rev) { return spec.rev }
            try repo.fetchAll(url: spec.repo)
        }
        if let sha = try repo.resolveLocally(spec.rev) { return sha }
        if GitFiles.isCommitID(spec.rev), repo.fetchCommit(url: spec.repo, sha: spec.rev), repo.hasCommit(spec.rev) { return spec.rev }
        throw SandboxError.failure("rev \"\(spec.rev)\" is not a branch, tag or commit of \(spec.repo) (deleted or force-pushed away upstream?); the checkout and record are unchanged",
                                   hint: "set a rev that exists upstream")
    }

    /// Record first, then checkout, then verify (see the type's doc). On a
    /// failure after the record was written, the old record is restored and
    /// the old commit checked out again.
    func move(_ repo: Repository, record old: CheckoutRecord, to target: String, status: CheckoutRecord.Status, action: String,
              markRev: Bool = true) throws -> Outcome {
        try repo.pin(target)
        try repo.pin(old.currentSHA)
        var r = old
        r.previousSHA = old.currentSHA
        r.currentSHA = target
        r.status = status
        r.updatedAt = Timestamp.now()
        r.history.append(.init(sha: target, at: r.updatedAt, action: action))
        try RecordStore.write(r, to: spec.recordPath)
        do {
            try repo.checkout(target)
            guard repo.head == target else { throw SandboxError.failure("HEAD is \(repo.head ?? "unreadable") after checking out \(target)") }
            if spec.submodules { try repo.updateSubmodules() }
        } catch {
            try? RecordStore.write(old, to: spec.recordPath)
            try? repo.checkout(old.currentSHA)
            throw error
        }
        try applyPermissions()
        if markRev { try writeRevMarker(spec.dir) }
        let kind: Outcome.Kind = status == .rolledBack ? .rolledBack : .updated
        return Outcome(name: spec.name, kind: kind, sha: target, previous: old.currentSHA)
    }

    /// A checkout on disk with no record (a crash after the rename, or a
    /// record moved aside as corrupt): record it, at its configured rev.
    func adopt(_ repo: Repository) throws -> Outcome {
        let head = repo.head
        let target = try resolve(repo)
        let now = Timestamp.now()
        if head != target {
            try repo.pin(target)
            try repo.checkout(target)
            guard repo.head == target else { throw SandboxError.failure("HEAD is \(repo.head ?? "unreadable") after checking out \(target)") }
            if spec.submodules { try repo.updateSubmodules() }
        }
        try applyPermissions()
        var history: [CheckoutRecord.Event] = []
        if let head { history.append(.init(sha: head, at: now, action: "found")) }
        history.append(.init(sha: target, at: now, action: "install"))
        let r = CheckoutRecord(name: spec.name, repoURL: spec.repo, currentSHA: target,
                               previousSHA: head.flatMap { $0 == target ? nil : $0 },
                               installedAt: now, updatedAt: now, status: .installed, history: history)
        try RecordStore.write(r, to: spec.recordPath)
        try writeRevMarker(spec.dir)
        return Outcome(name: spec.name, kind: .installed, sha: target, message: "adopted the checkout already on disk")
    }

    /// A fresh checkout, built aside and renamed into place complete.
    func install(record: CheckoutRecord?, pull: Bool) throws -> Outcome {
        let parent = Paths.deletingLastComponent(spec.dir)
        try ensureRootDirectory(parent)
        let work: String
        if spec.installInPlace && exists(spec.dir) {
            work = spec.dir      // ComfyUI's path exists (custom_nodes made first) but has no .git yet
            try GitRunner.requireRootOwnedDirectory(work)
        } else {
            let (made, fd) = try SafeFS.makeTemporaryDirectory(in: parent, prefix: ".\(spec.name).cs-new-", mode: 0o755)
            close(fd)
            work = made
        }
        var renamed = false
        defer { if !renamed && work != spec.dir { SafeFS.removeTree(work) } }
        var repo = try Repository.initialize(at: work, git: git)
        repo.sparseExclude = spec.sparseExclude
        try repo.fetchAll(url: spec.repo)
        // Missing (never installed, or its directory was removed): the configured rev, resolved now.
        let target = try resolve(repo, fetched: true)
        try repo.pin(target)
        try repo.checkout(target)
        guard repo.head == target else { throw SandboxError.failure("HEAD is \(repo.head ?? "unreadable") after checking out \(target)") }
        if spec.submodules { try repo.updateSubmodules() }
        try writeRevMarker(work)
        try applyPermissions(at: work)
        if work != spec.dir {
            guard rename(work, spec.dir) == 0 else { throw SandboxError.failure("cannot move the new checkout to \(spec.dir): \(Errno.current)") }
            renamed = true
            _ = fsyncDirectory(parent)
        }
        let now = Timestamp.now()
        var r: CheckoutRecord
        if var old = record {
            if old.currentSHA != target { old.previousSHA = old.currentSHA }
            old.currentSHA = target
            old.status = .installed
            old.updatedAt = now
            old.repoURL = spec.repo
            old.history.append(.init(sha: target, at: now, action: "reinstall"))
            r = old
        } else {
            r = CheckoutRecord(name: spec.name, repoURL: spec.repo, currentSHA: target, previousSHA: nil,
                               installedAt: now, updatedAt: now, status: .installed,
                               history: [.init(sha: target, at: now, action: "install")])
        }
        try RecordStore.write(r, to: spec.recordPath)
        return Outcome(name: spec.name, kind: .installed, sha: target)
    }

    /// Removes `.NAME.cs-new-*` left by an install that was killed, by
    /// descriptor (`SafeFS.removeEntry`: no link followed, no mount crossed).
    func removeLeftovers() {
        let parent = Paths.deletingLastComponent(spec.dir)
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return }
        let pfd = open(parent, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard pfd >= 0 else { return }
        defer { close(pfd) }
        for e in entries where e.hasPrefix(".\(spec.name).cs-new-") {
            SafeFS.removeEntry(pfd, e)
        }
    }

    func ensureRootDirectory(_ path: String) throws {
        if !exists(path) {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }
        try GitRunner.requireRootOwnedDirectory(path)
    }

    /// Root-owned and read-only to the sandbox, or for `"writable": true`
    /// group-writable for the shared group: files root:GROUP 0664, dirs
    /// 2775, the top 3775 (sticky, so the group cannot rename `.git` away);
    /// `.git` stays root's. Root keeps ownership, so the sandbox can edit
    /// but never chmod or chown, and the primary user (a group member) can
    /// edit too.
    func applyPermissions(at dir: String? = nil) throws {
        let d = dir ?? spec.dir
        if let g = spec.writableGroup {
            let rule = TreeOwnership.Rule(uid: 0, gid: g, dirKeep: 0o775, dirAdd: 0o2775, fileKeep: 0o775, fileAdd: 0o664)
            try TreeOwnership.apply(rule, to: d, skipTop: [".git"])
            try SafeFS.setMode(d, 0o3775)
        } else if dir != nil {
            // A fresh checkout as root with umask 022 is already root-owned and
            // read-only to others; nothing to walk.
            try SafeFS.setMode(d, 0o755)
        }
    }

    // MARK: disable / rollback

    /// Moves an enabled checkout to NAME.disabled (ComfyUI skips those).
    public func disable() -> Outcome {
        do {
            let (record, corrupt) = loadRecord()
            if let corrupt { return failed(corrupt) }
            guard let dis = spec.disabledDir else { return failed("cannot disable this checkout") }
            if exists(spec.dir) {
                if exists(dis) { return failed("both \(spec.dir) and \(dis) exist; move one of them away") }
                guard rename(spec.dir, dis) == 0 else { return failed("cannot move \(spec.dir) to \(dis): \(Errno.current)") }
            }
            guard exists(dis) else { return Outcome(name: spec.name, kind: .disabled, message: "not installed") }
            if var r = record, r.status != .disabled {
                r.status = .disabled
                r.updatedAt = Timestamp.now()
                r.history.append(.init(sha: r.currentSHA, at: r.updatedAt, action: "disable"))
                try RecordStore.write(r, to: spec.recordPath)
            }
            return Outcome(name: spec.name, kind: .disabled, sha: record?.currentSHA)
        } catch {
            return failed("\(error)")
        }
    }

    /// Back to previous_sha; twice toggles. The rev marker is left alone, so
    /// a later update-nodes keeps the rolled-back commit until the
    /// configured rev changes or --pull is given.
    public func rollback() -> Outcome {
        do {
            let (record, corrupt) = loadRecord()
            if let corrupt { return failed(corrupt) }
            guard let record else { return failed("no record at \(spec.recordPath); nothing to roll back (run update-nodes first)") }
            guard let prev = record.previousSHA else {
                return failed("no previous commit recorded; \(spec.name) has only ever been at \(record.currentSHA.prefix(12))")
            }
            let dir = exists(spec.dir) ? spec.dir : (spec.disabledDir.flatMap { exists($0) ? $0 : nil } ?? spec.dir)
            var repo = Repository(path: dir, git: git, groupWritableWorktree: spec.writableGroup != nil)
            repo.sparseExclude = spec.sparseExclude
            try GitRunner.requireRootOwned(dir, allowGroupWritableWorktree: spec.writableGroup != nil)
            if !repo.hasCommit(prev) {
                try repo.fetchAll(url: spec.repo)
                if !repo.hasCommit(prev), !repo.fetchCommit(url: spec.repo, sha: prev) {
                    return failed("previous commit \(prev) is gone from the checkout and from \(spec.repo)")
                }
            }
            let spec2 = { var s = spec; s.dir = dir; return s }()
            return try Checkout(spec2, git: git).move(repo, record: record, to: prev, status: .rolledBack, action: "rollback", markRev: false)
        } catch {
            return failed("\(error)")
        }
    }
}

extension GitRunner {
    /// A directory root owns that nobody else can write (where new checkouts are made).
    public static func requireRootOwnedDirectory(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw SandboxError.failure("\(path) is not a directory")
        }
        guard st.st_uid == 0, (st.st_mode & 0o022) == 0 else {
            throw SandboxError.failure("\(path) is owned by uid \(st.st_uid) with mode \(String(st.st_mode & 0o7777, radix: 8)); checkouts are only made in directories root owns and nobody else can write")
        }
    }
}

func fsyncDirectory(_ path: String) -> Bool {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return fsync(fd) == 0
}
