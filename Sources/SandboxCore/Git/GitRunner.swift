import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// The one way this tool runs git. Every invocation gets:
/// - the absolute /usr/bin/git, checked to be a root-owned file nobody else
///   can write (a PATH lookup could find a planted `git`);
/// - an environment cleared to exactly what `environment` lists: no
///   GIT_DIR/GIT_SSH/GIT_EXEC_PATH/... leaks in from the caller, no user or
///   system gitconfig, no prompts, the transports `git.allowed_protocols`
///   names and nothing else;
/// - `-c` overrides that switch off everything a repository's own content or
///   config could use to run a program: hooks, fsmonitor, file:// transport,
///   recursive submodules, automatic gc; object checks on every transfer;
/// - `--` before every URL and path it passes, so neither is read as an option.
///
/// As root it only runs inside repositories root owns, whose `.git` no other
/// user can write (`requireRootOwned`): a repository the sandbox can write
/// could carry a config (core.sshCommand, filter drivers, core.pager...) that
/// `-c` does not cover.
public struct GitRunner: Sendable {
    public static let gitPath = "/usr/bin/git"

    public var allowedProtocols: [String]

    public init(allowedProtocols: [String]) {
        self.allowedProtocols = allowedProtocols
    }

    public init(_ config: Config) {
        self.init(allowedProtocols: config.git.allowedProtocols)
    }

    /// HOME points at a directory that does not exist, so no ~/.gitconfig,
    /// ~/.config/git or ~/.ssh is ever read.
    public static let home = "/nonexistent/comfy-sandbox-git-home"

    public var environment: [String: String] {
        [
            "PATH": "/usr/bin:/bin",
            "HOME": Self.home,
            "XDG_CONFIG_HOME": Self.home,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ALLOW_PROTOCOL": allowedProtocols.joined(separator: ":"),
            "GIT_ASKPASS": "/bin/false",
            "SSH_ASKPASS": "/bin/false",
            "GIT_SSH_COMMAND": "/bin/false",
            "GIT_PROTOCOL_FROM_USER": "0",
            "LC_ALL": "C",
        ]
    }

    /// Config overrides on every command line. `safe.directory` names only
    /// the repository we run in.
    public static func hardening(repo: String?) -> [String] {
        var c = [
            "core.hooksPath=/dev/null",
            "core.fsmonitor=false",
            "core.untrackedCache=false",
            "core.symlinks=true",
            "core.sshCommand=/bin/false",
            "core.askPass=/bin/false",
            "credential.helper=",
            "protocol.file.allow=never",
            "protocol.ext.allow=never",
            "transfer.fsckObjects=true",
            "fetch.fsckObjects=true",
            "receive.fsckObjects=true",
            "submodule.recurse=false",
            "fetch.recurseSubmodules=false",
            "gc.auto=0",
            "maintenance.auto=false",
            "advice.detachedHead=false",
            "init.defaultBranch=main",
        ]
        if let repo { c.append("safe.directory=\(repo)") }
        return c.flatMap { ["-c", $0] }
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var message: String
        public var description: String { message }
    }

    /// Runs `git ARGS` inside `repo` (GIT_DIR and GIT_WORK_TREE set
    /// explicitly, so no discovery walks up or follows a `.git` file), or
    /// outside any repository when `repo` is nil.
    @discardableResult
    public func run(_ args: [String], repo: String?, allowGroupWritableWorktree: Bool = false,
                    allowFailure: Bool = false) throws -> HostCommand.Result {
        try Self.checkBinary()
        var env = environment
        if let repo {
            if geteuid() == 0 { try Self.requireRootOwned(repo, allowGroupWritableWorktree: allowGroupWritableWorktree) }
            env["GIT_DIR"] = repo + "/.git"
            env["GIT_WORK_TREE"] = repo
            env["GIT_CEILING_DIRECTORIES"] = Paths.deletingLastComponent(repo)
        } else {
            env["GIT_CEILING_DIRECTORIES"] = "/"
        }
        let argv = Self.hardening(repo: repo) + args
        let r = try HostCommand(Self.gitPath, argv, environment: env, workingDirectory: repo ?? "/").run()
        if !r.succeeded && !allowFailure {
            let detail = r.stderrText.trimmingWhitespaceAndNewlines()
                .split(separator: "\n").suffix(3).joined(separator: " | ")
            throw Failure(message: "git \(args.prefix(1).joined()) failed (exit \(r.status))" + (detail.isEmpty ? "" : ": \(detail)"))
        }
        return r
    }

    /// /usr/bin/git must be a regular root-owned file no one else can write.
    public static func checkBinary() throws {
        var st = stat()
        guard stat(gitPath, &st) == 0 else {
            throw SandboxError.failure("git is not installed at \(gitPath)", hint: "apt-get install git")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == 0, (st.st_mode & 0o022) == 0 else {
            throw SandboxError.failure("\(gitPath) is not a root-owned file that only root can write; refusing to run it",
                                       hint: "reinstall git: apt-get install --reinstall git")
        }
    }

    /// The worktree root and its `.git` directory must be real directories
    /// (not links), owned by root, and not writable by group or others. A
    /// writable node's worktree may be group-writable when it is sticky, so
    /// the group cannot rename `.git` away; `.git` itself never.
    public static func requireRootOwned(_ repo: String, allowGroupWritableWorktree: Bool = false) throws {
        func check(_ path: String, groupOK: Bool) throws {
            var st = stat()
            guard lstat(path, &st) == 0 else {
                throw SandboxError.failure("\(path) does not exist (\(Errno.current)); refusing to run git there")
            }
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw SandboxError.failure("\(path) is not a directory (a link or a file?); refusing to run git there as root",
                                           hint: "move it away; update-nodes will check the node out again")
            }
            let writableByOthers = groupOK ? ((st.st_mode & 0o002) != 0 || ((st.st_mode & 0o020) != 0 && (st.st_mode & 0o1000) == 0))
                                           : (st.st_mode & 0o022) != 0
            guard st.st_uid == 0, !writableByOthers else {
                throw SandboxError.failure("\(path) is owned by uid \(st.st_uid) with mode \(String(st.st_mode & 0o7777, radix: 8)); root only runs git in repositories root owns and nobody else can write",
                                           hint: "inspect it; move it away and run update-nodes to check it out afresh")
            }
        }
        try check(repo, groupOK: allowGroupWritableWorktree)
        try check(repo + "/.git", groupOK: false)
    }
}

/// What a repository's files say, read without running git: HEAD of a
/// detached checkout is the commit id itself in `.git/HEAD`.
public enum GitFiles {
    public static func isCommitID(_ s: String) -> Bool {
        s.utf8.count == 40 && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// A loose ref's commit id (`.git/<ref>` holding 40 hex digits), read
    /// with O_NOFOLLOW; nil when absent or not a plain id.
    public static func looseRef(_ repo: String, _ ref: String) -> String? {
        guard !ref.contains("..") else { return nil }
        return readID(repo + "/.git/" + ref)
    }

    public static func refExists(_ repo: String, _ ref: String) -> Bool {
        var st = stat()
        return lstat(repo + "/.git/" + ref, &st) == 0
    }

    public static func packedRefsExist(_ repo: String) -> Bool {
        var st = stat()
        return lstat(repo + "/.git/packed-refs", &st) == 0
    }

    static func readID(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 128)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return nil }
        let s = String(decoding: buf[0..<n], as: UTF8.self).trimmingWhitespaceAndNewlines()
        return isCommitID(s) ? s : nil
    }

    /// The commit HEAD names, when HEAD is detached (as every checkout this
    /// tool makes is); nil when it is symbolic or unreadable. Opens with
    /// O_NOFOLLOW so a link planted as HEAD is not followed.
    public static func detachedHead(_ repo: String) -> String? {
        readID(repo + "/.git/HEAD")
    }
}
