import FoundationEssentials
import Glibc

/// Reads the account database through NSS (getpwnam_r/getgrnam_r), so it sees
/// whatever /etc is in this mount namespace.
public enum AccountLookup {
    public struct User: Sendable, Equatable {
        public var name: String
        public var uid: uid_t
        public var gid: gid_t
        public var home: String
        public var shell: String
    }

    public struct Group: Sendable, Equatable {
        public var name: String
        public var gid: gid_t
        public var members: [String]
    }

    public static func user(_ name: String) -> User? {
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(name, &pw, &buf, buf.count, &result) == 0, result != nil else { return nil }
        return User(name: String(cString: pw.pw_name), uid: pw.pw_uid, gid: pw.pw_gid,
                    home: String(cString: pw.pw_dir), shell: String(cString: pw.pw_shell))
    }

    public static func user(uid: uid_t) -> User? {
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &pw, &buf, buf.count, &result) == 0, result != nil else { return nil }
        return User(name: String(cString: pw.pw_name), uid: pw.pw_uid, gid: pw.pw_gid,
                    home: String(cString: pw.pw_dir), shell: String(cString: pw.pw_shell))
    }

    public static func group(_ name: String) -> Group? {
        var gr = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>?
        var buf = [CChar](repeating: 0, count: 65536)
        guard getgrnam_r(name, &gr, &buf, buf.count, &result) == 0, result != nil else { return nil }
        var members: [String] = []
        if var p = gr.gr_mem {
            while let m = p.pointee {
                members.append(String(cString: m))
                p += 1
            }
        }
        return Group(name: String(cString: gr.gr_name), gid: gr.gr_gid, members: members)
    }

    /// The sandbox identity the confined processes take, resolved now.
    public struct SandboxIdentity: Sendable {
        public var user: User
        public var sharedGroup: Group
        /// The supplementary groups the sandbox gets: exactly the shared group.
        public var groups: [gid_t] { [sharedGroup.gid] }
    }

    public static func sandboxIdentity(_ config: Config) throws -> SandboxIdentity {
        guard let u = user(config.sandboxUser.name) else {
            throw SandboxError.failure("the sandbox user \(config.sandboxUser.name) (sandbox_user.name) does not exist",
                                       hint: "run `comfy-sandbox provision` first")
        }
        guard let g = group(config.sharedGroup.name) else {
            throw SandboxError.failure("the shared group \(config.sharedGroup.name) (shared_group.name) does not exist",
                                       hint: "run `comfy-sandbox provision` first")
        }
        guard u.uid != 0, u.gid != 0 else {
            throw SandboxError.failure("the sandbox user \(u.name) has uid or gid 0; refusing to run anything as it")
        }
        return SandboxIdentity(user: u, sharedGroup: g)
    }
}
