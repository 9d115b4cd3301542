/// The two NSString path helpers this tool uses, for String, without
/// Foundation (FoundationEssentials has no NSString). They follow
/// swift-corelibs-foundation's NSString exactly, including its edges:
/// runs of "/" count as one, one trailing "/" is ignored, "/" stays "/",
/// and a relative single name has the parent "". Tests compare them with
/// NSString on a table of paths.
public enum Paths {
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
