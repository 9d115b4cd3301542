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

        init(name: String, uid: uid_t, gid: gid_t, home: String, shell: String) {
            self.name = name
            self.uid = uid
            self.gid = gid
            self.home = home
            self.shell = shell
        }

        /// Copies the entry's strings (they point into the lookup's buffer).
        init(_ pw: passwd) {
            self.init(name: String(cString: pw.pw_name), uid: pw.pw_uid, gid: pw.pw_gid,
                      home: String(cString: pw.pw_dir), shell: String(cString: pw.pw_shell))
        }
    }

    public struct Group: Sendable, Equatable {
        public var name: String
        public var gid: gid_t
        public var members: [String]
    }

    public static func user(_ name: String) -> User? {
        var pw = passwd()
        return nssLookup({ getpwnam_r(name, &pw, $0, $1, $2) }) { User(pw) }
    }

    public static func user(uid: uid_t) -> User? {
        var pw = passwd()
        return nssLookup({ getpwuid_r(uid, &pw, $0, $1, $2) }) { User(pw) }
    }

    public static func group(_ name: String) -> Group? {
        var gr = Glibc.group()
        return nssLookup({ getgrnam_r(name, &gr, $0, $1, $2) }) {
            var members: [String] = []
            if var p = gr.gr_mem {
                while let m = p.pointee {
                    members.append(String(cString: m))
                    p += 1
                }
            }
            return Group(name: String(cString: gr.gr_name), gid: gr.gr_gid, members: members)
        }
    }

    /// A get*_r lookup with a scratch buffer, grown while the entry does not
    /// fit (ERANGE: a group with many members), and `read` of the entry
    /// while the buffer its strings point into still exists. The buffer is
    /// not zeroed: the call writes what it returns.
    static func nssLookup<Entry, T>(_ lookup: (UnsafeMutablePointer<CChar>, Int, UnsafeMutablePointer<UnsafeMutablePointer<Entry>?>) -> Int32,
                                    read: () -> T) -> T? {
        var size = 16384
        while size <= 1 << 24 {
            var result: UnsafeMutablePointer<Entry>?
            var rc: Int32 = 0
            let value: T? = withUnsafeTemporaryAllocation(of: CChar.self, capacity: size) { buf in
                rc = lookup(buf.baseAddress!, size, &result)
                return rc == 0 && result != nil ? read() : nil
            }
            if rc == ERANGE { size *= 4; continue }
            return value
        }
        return nil
    }

    /// The sandbox identity the confined processes take, resolved now.
}
