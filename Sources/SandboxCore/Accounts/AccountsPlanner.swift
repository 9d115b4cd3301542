import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// The `accounts` area: the shared group, the sandbox user, the members of
/// the group, and the sandbox user's home. Everything goes through the real
/// shadow-utils (groupadd, useradd, usermod), so /etc/passwd, /etc/shadow,
/// /etc/group and /etc/gshadow stay consistent and locked the way the system
/// expects.
///
/// The sandbox user's primary group is the shared group. Files it creates
/// anywhere (its home, a temp dir, a share) then belong to the group the
/// primary user is in, so outputs are readable by that user without a chgrp,
/// and the sandbox holds exactly one group: no private group that would have
/// to be created, tracked and removed, and nothing else it could be a member of.
public struct AccountsPlanner: Planner {
    public let area = Area.accounts
    public init() {}

    /// Shells that do not allow an interactive login.
    static let nologinShells: Set<String> = ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"]
    static let shell = "/usr/sbin/nologin"

    public func changes(for config: Config, context: PlanContext) throws -> [Change] {
        var out: [Change] = []
        let groupName = config.sharedGroup.name
        let userName = config.sandboxUser.name
        let home = config.sandboxUser.home
        let stateDir = config.stateDir

        // The shared group: adopt it when it exists, create it otherwise.
        let group = AccountLookup.group(groupName)
        if let group {
            if group.gid == 0 {
                throw SandboxError.failure("the group \(groupName) (shared_group.name) has gid 0",
                                           hint: "choose another shared_group.name")
            }
        } else {
            out.append(Change(.accounts, "create group", groupName, to: "system group") {
                try HostCommand("/usr/sbin/groupadd", ["--system", groupName]).check("creating the group \(groupName)")
                // Uninstall removes the group only when we made it.
                try AccountsRecord.update(stateDir: stateDir) { $0.createdGroup = true }
            })
        }

        // The sandbox user: adopt a correct one, refuse a conflicting one.
        if let user = AccountLookup.user(userName) {
            if let problem = Self.conflict(user) {
                throw SandboxError.failure("the user \(userName) (sandbox_user.name) already exists and \(problem); it cannot serve as the sandbox account",
                                           hint: "set sandbox_user.name to an unused name, or remove that account (`userdel \(userName)`) if it is a leftover")
            }
            if user.home != home {
                out.append(Change(.accounts, "set home of", userName, from: user.home, to: home) {
                    try HostCommand("/usr/sbin/usermod", ["--home", home, userName]).check("setting the home of \(userName)")
                })
            }
            if group.map({ $0.gid != user.gid }) ?? true {
                out.append(Change(.accounts, "set primary group of", userName, from: SafeFS.groupName(user.gid), to: groupName) {
                    try HostCommand("/usr/sbin/usermod", ["--gid", groupName, userName]).check("setting the group of \(userName)")
                })
            }
        } else {
            out.append(Change(.accounts, "create user", userName,
                              to: "system user, group \(groupName), home \(home), shell \(Self.shell), no password") {
                // --system: no aging, uid below UID_MIN; --no-create-home: the
                // home is made below, by fd, with the mode we want rather
                // than useradd's skeleton copy. The password stays locked ("!").
                try HostCommand("/usr/sbin/useradd", ["--system", "--gid", groupName, "--home-dir", home, "--no-create-home",
                                                      "--shell", Self.shell, "--comment", "ComfyUI sandbox", userName])
                    .check("creating the user \(userName)")
                try AccountsRecord.update(stateDir: stateDir) { $0.createdUser = true }
            })
        }

        // Members of the shared group (the primary user, usually).
        for (i, member) in config.sharedGroup.members.enumerated() {
            guard let m = AccountLookup.user(member) else {
                throw SandboxError.failure("shared_group.members[\(i)]: the user \(member) does not exist",
                                           hint: "create that user first or fix shared_group.members / primary_user")
            }
            let isMember = group.map { $0.members.contains(member) || $0.gid == m.gid } ?? false
            if !isMember {
                out.append(Change(.accounts, "add member", groupName, to: member) {
                    try HostCommand("/usr/sbin/usermod", ["--append", "--groups", groupName, member]).check("adding \(member) to \(groupName)")
                })
            }
        }
        if AccountLookup.user(config.primaryUser) == nil {
            throw SandboxError.failure("primary_user: the user \(config.primaryUser) does not exist",
                                       hint: "set primary_user to the human user who owns the shares")
        }

        // The sandbox user's home: 0700, owned by the sandbox user. Only the
        // sandbox needs it (caches, ~/.config); the primary user reads outputs
        // through the shares instead.
        if let st = SafeFS.lstat(home) {
            guard SafeFS.isDirectory(st) else {
                throw SandboxError.failure("sandbox_user.home: \(home) is \(SafeFS.kind(st)), not a directory",
                                           hint: "move it away or set sandbox_user.home to another path")
            }
            let user = AccountLookup.user(userName)
            // Never take over somebody else's directory (a typo'd home could be a person's).
            if st.st_uid != 0 && st.st_uid != user?.uid {
                throw SandboxError.failure("sandbox_user.home: \(home) exists and belongs to \(SafeFS.userName(st.st_uid)); refusing to hand it to \(userName)",
                                           hint: "set sandbox_user.home to a new path such as /home/\(userName)")
            }
            if user.map({ $0.uid != st.st_uid || $0.gid != st.st_gid }) ?? true {
                out.append(Change(.accounts, "set owner", home, from: "\(SafeFS.userName(st.st_uid)):\(SafeFS.groupName(st.st_gid))",
                                  to: "\(userName):\(groupName)") {
                    try Self.fixHome(home, user: userName, group: groupName, create: false)
                })
            }
            if st.st_mode & 0o7777 != 0o700 {
                out.append(Change(.accounts, "set mode", home, from: SafeFS.octal(st.st_mode), to: "0700") {
                    try Self.fixHome(home, user: userName, group: groupName, create: false)
                })
            }
        } else {
            out.append(Change(.accounts, "create home", home, to: "\(userName):\(groupName) 0700") {
                try Self.fixHome(home, user: userName, group: groupName, create: true)
            })
        }
        return out
    }

    /// Why an existing account cannot be the sandbox user, or nil when it can.
    public static func conflict(_ user: AccountLookup.User) -> String? {
        if user.uid == 0 { return "has uid 0" }
        if user.uid >= loginDefsUIDMin() { return "is not a system account (uid \(user.uid) is at or above UID_MIN)" }
        if !nologinShells.contains(user.shell) { return "has the login shell \(user.shell)" }
        switch shadowPassword(user.name) {
        case .some(""): return "has an empty password in /etc/shadow (anyone could log in)"
        case .some(let p) where !p.hasPrefix("!") && !p.hasPrefix("*"): return "has a password set in /etc/shadow"
        default: return nil
        }
    }

    /// UID_MIN from /etc/login.defs (1000 when unset).
    static func loginDefsUIDMin() -> uid_t {
        guard let text = try? String(contentsOfFile: "/etc/login.defs", encoding: .utf8) else { return 1000 }
        for line in text.split(separator: "\n") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if f.count >= 2, f[0] == "UID_MIN", let v = uid_t(f[1]) { return v }
        }
        return 1000
    }

    /// The password field of /etc/shadow for `name`, nil when absent.
    static func shadowPassword(_ name: String) -> String? {
        guard let text = try? String(contentsOfFile: "/etc/shadow", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            if f.count > 1, f[0] == name { return String(f[1]) }
        }
        return nil
    }

    /// Creates (or fixes) the sandbox home by fd. Missing parents are made
    /// root-owned 0755; the home itself is opened without following symlinks,
    /// so an existing parent owned by someone else cannot redirect it.
    static func fixHome(_ home: String, user: String, group: String, create: Bool) throws {
        guard let u = AccountLookup.user(user), let g = AccountLookup.group(group) else {
            throw SandboxError.failure("the sandbox user \(user) or group \(group) does not exist yet")
        }
        let (parent, name) = SafeFS.split(home)
        let pfd = try SafeFS.ensureDirectory(parent) { _ in (0, 0, 0o755) }
        defer { close(pfd) }
        if create, mkdirat(pfd, name, 0o700) != 0, errno != EEXIST {
            throw SandboxError.failure("cannot create \(home): \(Errno.current)")
        }
        let fd = SafeFS.openBeneath(pfd, name, flags: O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw SafeFS.pathError(home, errno) }
        defer { close(fd) }
        try SafeFS.chown(fd, uid: u.uid, gid: g.gid, display: home)
        try SafeFS.chmod(fd, 0o700, display: home)
    }
}

/// What provisioning created (so uninstall removes only that):
/// `state_dir/accounts.json`.
public struct AccountsRecord: Codable, Equatable, Sendable {
    public var createdGroup: Bool = false
    public var createdUser: Bool = false

    enum CodingKeys: String, CodingKey {
        case createdGroup = "created_group"
        case createdUser = "created_user"
    }

    public init() {}

    public static func path(_ stateDir: String) -> String { stateDir + "/accounts.json" }

    public static func load(stateDir: String) -> AccountsRecord {
        guard let data = FileManager.default.contents(atPath: path(stateDir)),
              let r = try? JSONDecoder().decode(AccountsRecord.self, from: data) else { return AccountsRecord() }
        return r
    }

    public static func update(stateDir: String, _ change: (inout AccountsRecord) -> Void) throws {
        try StateDirectory.ensure(stateDir)
        var r = load(stateDir: stateDir)
        change(&r)
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try e.encode(r) + Data("\n".utf8), to: path(stateDir), mode: 0o644)
    }
}
