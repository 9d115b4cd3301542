import Glibc

/// Path helpers without Foundation. `lastComponent` and
/// `deletingLastComponent` are the two NSString path helpers this tool uses
/// (FoundationEssentials has no NSString). They follow
/// swift-corelibs-foundation's NSString exactly, including its edges:
/// runs of "/" count as one, one trailing "/" is ignored, "/" stays "/",
/// and a relative single name has the parent "". Tests compare them with
/// NSString on a table of paths.
public enum Paths {
    /// `FileManager.fileExists(atPath:)`: stat(2) succeeds (a dangling
    /// symlink does not exist). Without FileManager, whose first use costs
    /// `run` a tenth of a millisecond of type lookups.
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// `FileManager.isExecutableFile(atPath:)` for a regular file: it exists
    /// (following symlinks), is not a directory, and access(2) grants X_OK.
    public static func isExecutableFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    /// `(path as NSString).lastPathComponent`: "/a/b/" -> "b", "/" -> "/", "" -> "".
    public static func lastComponent(_ path: String) -> String {
        let p = fixingSlashes(path)
        guard p != "/", let slash = p.lastIndex(of: "/") else { return p }
        return String(p[p.index(after: slash)...])
    }

    /// `(path as NSString).deletingLastPathComponent`: "/a/b/" -> "/a",
    /// "/a" -> "/", "a" -> "", "/" -> "/".
    public static func deletingLastComponent(_ path: String) -> String {
        let p = fixingSlashes(path)
        guard p != "/", !p.isEmpty else { return p }
        guard let slash = p.lastIndex(of: "/") else { return "" }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }

    /// NSString's `_stringByFixingSlashes`: "/" is kept as is; otherwise each
    /// run of "/" becomes one and a trailing "/" is dropped (so "//" becomes "").
    /// Like NSString it compares Characters: a "/" carrying a combining mark
    /// is not a separator.
    static func fixingSlashes(_ path: String) -> String {
        if path == "/" { return path }
        // ASCII (every path this tool makes, and nearly every one it is
        // given): a byte is a Character there, so the same rule by byte,
        // without grapheme breaking.
        if path.utf8.allSatisfy({ $0 < 0x80 }) {
            let slash = UInt8(ascii: "/")
            var out: [UInt8] = []
            out.reserveCapacity(path.utf8.count)
            var afterSlash = false
            for b in path.utf8 {
                if b == slash {
                    if !afterSlash { out.append(b) }
                    afterSlash = true
                } else {
                    out.append(b)
                    afterSlash = false
                }
            }
            if out.last == slash { out.removeLast() }
            return String(decoding: out, as: UTF8.self)
        }
        var out = ""
        var afterSlash = false
        for c in path {
            if c == "/" {
                if !afterSlash { out.append(c) }
                afterSlash = true
            } else {
                out.append(c)
                afterSlash = false
            }
        }
        if out.last == "/" { out.removeLast() }
        return out
    }
}
