import CACL
import FoundationEssentials
import Glibc

/// POSIX ACLs through libacl, always on an open descriptor. The default ACL
/// has no fd call in libacl, so it goes through "/proc/self/fd/N", which the
/// kernel resolves to the very inode the fd holds (systemd-tmpfiles does the
/// same); a path rebuilt from names is never used.
public enum ACL {
    /// The default ACL of a read-write share's directories: the owner and the
    /// group get rwx, the shared group by name too (so a file moved in with
    /// another owning group still inherits it), others r-x. New files then get
    /// 0664 and new directories 2775 whatever the creator's umask.
    public static func rwDefaultText(gid: gid_t) -> String {
        "u::rwx,g::rwx,g:\(gid):rwx,m::rwx,o::r-x"
    }

    /// Human form for plan lines.
    public static func rwDefaultDescription(group: String) -> String {
        "default ACL u::rwx,g::rwx,g:\(group):rwx,m::rwx,o::r-x"
    }

    static func procPath(_ fd: Int32) -> String { "/proc/self/fd/\(fd)" }

    /// Does the directory's default ACL equal the read-write one?
    public static func hasRWDefault(fd: Int32, gid: gid_t) -> Bool {
        guard let current = acl_get_file(procPath(fd), acl_type_t(ACL_TYPE_DEFAULT)) else { return false }
        defer { acl_free(UnsafeMutableRawPointer(current)) }
        guard let want = acl_from_text(rwDefaultText(gid: gid)) else { return false }
        defer { acl_free(UnsafeMutableRawPointer(want)) }
        return acl_cmp(current, want) == 0
    }

    /// Does the directory have any default ACL entries?
    public static func hasDefault(fd: Int32) -> Bool {
        guard let current = acl_get_file(procPath(fd), acl_type_t(ACL_TYPE_DEFAULT)) else { return false }
        defer { acl_free(UnsafeMutableRawPointer(current)) }
        return acl_entries(current) > 0
    }

    public static func setRWDefault(fd: Int32, gid: gid_t, display: String) throws {
        guard let want = acl_from_text(rwDefaultText(gid: gid)) else {
            throw SandboxError.failure("cannot build the default ACL for \(display): \(Errno.current)")
        }
        defer { acl_free(UnsafeMutableRawPointer(want)) }
        if acl_set_file(procPath(fd), acl_type_t(ACL_TYPE_DEFAULT), want) != 0 {
            throw SandboxError.failure("cannot set the default ACL of \(display): \(Errno.current)",
                                       hint: "the file system must support POSIX ACLs (mount option acl)")
        }
    }

    public static func removeDefault(fd: Int32, display: String) throws {
        if acl_delete_def_file(procPath(fd)) != 0 {
            throw SandboxError.failure("cannot remove the default ACL of \(display): \(Errno.current)")
        }
    }

    /// Can a process whose only relevant identity is group `gid` (not the
    /// owner) search (x) this directory? Follows the POSIX ACL check order.
    public static func groupCanTraverse(_ st: stat, fd: Int32?, path: String, gid: gid_t?) -> Bool {
        let acl: acl_t? = fd.map { acl_get_fd($0) } ?? acl_get_file(path, acl_type_t(ACL_TYPE_ACCESS))
        var named: Bool? = nil
        var mask: Bool = true
        if let acl {
            defer { acl_free(UnsafeMutableRawPointer(acl)) }
            var entry: acl_entry_t?
            var r = acl_get_entry(acl, ACL_FIRST_ENTRY, &entry)
            while r == 1, let e = entry {
                var tag = acl_tag_t(0)
                acl_get_tag_type(e, &tag)
                var ps: acl_permset_t?
                acl_get_permset(e, &ps)
                let x = ps.map { acl_get_perm($0, acl_perm_t(ACL_EXECUTE)) == 1 } ?? false
                if tag == acl_tag_t(ACL_MASK) { mask = x }
                if tag == acl_tag_t(ACL_GROUP), let gid, let q = acl_get_qualifier(e) {
                    if q.load(as: gid_t.self) == gid { named = x }
                    acl_free(q)
                }
                r = acl_get_entry(acl, ACL_NEXT_ENTRY, &entry)
            }
        }
        if let gid, st.st_gid == gid { return (st.st_mode & 0o010) != 0 && mask }
        if let named { return named && mask }
        return (st.st_mode & 0o001) != 0
    }

    /// Adds (or widens to include x) a named-group entry `g:gid:--x` on the
    /// directory's access ACL and recomputes the mask. Nothing but search is
    /// granted: the group can pass through, not list or write.
    public static func grantTraverse(fd: Int32, gid: gid_t, display: String) throws {
        var acl: acl_t? = acl_get_fd(fd)
        guard acl != nil else {
            throw SandboxError.failure("cannot read the ACL of \(display): \(Errno.current)")
        }
        defer { if let acl { acl_free(UnsafeMutableRawPointer(acl)) } }
        var entry: acl_entry_t?
        var found: acl_entry_t? = nil
        var r = acl_get_entry(acl, ACL_FIRST_ENTRY, &entry)
        while r == 1, let e = entry {
            var tag = acl_tag_t(0)
            acl_get_tag_type(e, &tag)
            if tag == acl_tag_t(ACL_GROUP), let q = acl_get_qualifier(e) {
                if q.load(as: gid_t.self) == gid { found = e }
                acl_free(q)
            }
            r = acl_get_entry(acl, ACL_NEXT_ENTRY, &entry)
        }
        if found == nil {
            var e: acl_entry_t?
            guard acl_create_entry(&acl, &e) == 0, let e else {
                throw SandboxError.failure("cannot extend the ACL of \(display): \(Errno.current)")
            }
            acl_set_tag_type(e, acl_tag_t(ACL_GROUP))
            var g = gid
            acl_set_qualifier(e, &g)
            var ps: acl_permset_t?
            acl_get_permset(e, &ps)
            if let ps { acl_clear_perms(ps) }
            found = e
        }
        var ps: acl_permset_t?
        acl_get_permset(found!, &ps)
        if let ps { acl_add_perm(ps, acl_perm_t(ACL_EXECUTE)) }
        guard acl_calc_mask(&acl) == 0, acl_set_fd(fd, acl!) == 0 else {
            throw SandboxError.failure("cannot set the ACL of \(display): \(Errno.current)",
                                       hint: "the file system must support POSIX ACLs (mount option acl)")
        }
    }

    /// Removes every entry naming group `gid` from the access ACL and, for a
    /// directory, the default ACL; an ACL left with no named entry loses its
    /// mask too (back to plain mode bits), and a default ACL left with none
    /// is removed whole. True when something changed, nil when it could not
    /// be read or written. Through /proc/self/fd/N, so an O_PATH fd will do.
    public static func dropGroup(fd: Int32, gid: gid_t, directory: Bool) -> Bool? {
        var changed = false
        for type in directory ? [ACL_TYPE_ACCESS, ACL_TYPE_DEFAULT] : [ACL_TYPE_ACCESS] {
            var acl: acl_t? = acl_get_file(procPath(fd), acl_type_t(type))
            guard acl != nil else { return nil }
            defer { if let acl { acl_free(UnsafeMutableRawPointer(acl)) } }
            var named = 0
            var dropped = false
            var mask: acl_entry_t? = nil
            var entry: acl_entry_t?
            var r = acl_get_entry(acl, ACL_FIRST_ENTRY, &entry)
            while r == 1, let e = entry {
                var tag = acl_tag_t(0)
                acl_get_tag_type(e, &tag)
                if tag == acl_tag_t(ACL_MASK) { mask = e }
                if tag == acl_tag_t(ACL_USER) { named += 1 }
                if tag == acl_tag_t(ACL_GROUP), let q = acl_get_qualifier(e) {
                    let match = q.load(as: gid_t.self) == gid
                    acl_free(q)
                    // Deleting the current entry is allowed; the walk goes on
                    // from the next one (libacl keeps its cursor valid).
                    if match { acl_delete_entry(acl, e); dropped = true } else { named += 1 }
                }
                r = acl_get_entry(acl, ACL_NEXT_ENTRY, &entry)
            }
            guard dropped else { continue }
            if type == ACL_TYPE_DEFAULT && named == 0 {
                guard acl_delete_def_file(procPath(fd)) == 0 else { return nil }
                changed = true
                continue
            }
            if named == 0, let mask {
                // The mask capped the group class; with no named entry left,
                // the group bits alone say what the owning group may do.
                acl_delete_entry(acl, mask)
            } else if acl_calc_mask(&acl) != 0 {
                return nil
            }
            guard acl_set_file(procPath(fd), acl_type_t(type), acl) == 0 else { return nil }
            changed = true
        }
        return changed
    }

    /// Adds a named-group entry for `gid` (or extends the one there) with
    /// read and/or execute, and recomputes the mask; on the open file `fd`,
    /// never by path.
    public static func grantGroup(fd: Int32, gid: gid_t, read: Bool, execute: Bool, display: String) throws {
        guard let current = acl_get_fd(fd) else { throw SandboxError.failure("cannot read the ACL of \(display): \(Errno.current)") }
        var acl: acl_t? = current
        defer { acl_free(UnsafeMutableRawPointer(acl)) }
        var entry: acl_entry_t?
        var found: acl_entry_t?
        var which = ACL_FIRST_ENTRY
        while acl_get_entry(acl, which, &entry) == 1 {
            which = ACL_NEXT_ENTRY
            var tag = acl_tag_t()
            guard let e = entry, acl_get_tag_type(e, &tag) == 0, tag == ACL_GROUP else { continue }
            if let q = acl_get_qualifier(e) {
                let g = q.assumingMemoryBound(to: gid_t.self).pointee
                acl_free(q)
                if g == gid { found = e; break }
            }
        }
        if found == nil {
            var e: acl_entry_t?
            guard acl_create_entry(&acl, &e) == 0, let e else {
                throw SandboxError.failure("cannot extend the ACL of \(display): \(Errno.current)")
            }
            var g = gid
            _ = acl_set_tag_type(e, ACL_GROUP)
            _ = acl_set_qualifier(e, &g)
            var ps: acl_permset_t?
            _ = acl_get_permset(e, &ps)
            _ = acl_clear_perms(ps)
            found = e
        }
        var ps: acl_permset_t?
        guard let e = found, acl_get_permset(e, &ps) == 0 else { return }
        if read { _ = acl_add_perm(ps, acl_perm_t(ACL_READ)) }
        if execute { _ = acl_add_perm(ps, acl_perm_t(ACL_EXECUTE)) }
        _ = acl_set_permset(e, ps)
        guard acl_calc_mask(&acl) == 0, acl_set_fd(fd, acl) == 0 else {
            throw SandboxError.failure("cannot set the ACL of \(display): \(Errno.current)",
                                       hint: "the file system must support POSIX ACLs (mount option acl)")
        }
    }
}
