import Glibc
import SystemPackage

/// Path helpers without Foundation (FoundationEssentials has no NSString):
/// the two component operations this tool needs, over swift-system's
/// FilePath, and stat(2)-based existence checks.
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

    /// The last component: "/a/b/" -> "b", "/" -> "/", "" -> "".
    /// swift-system's FilePath does the parsing, as the kernel reads a path:
    /// by bytes, runs of "/" counting as one, a trailing "/" ignored.
    public static func lastComponent(_ path: String) -> String {
        let p = FilePath(path)
        if let last = p.lastComponent { return last.string }
        return p.root?.string ?? ""
    }

    /// The path without its last component: "/a/b/" -> "/a", "/a" -> "/",
    /// "a" -> "", "/" -> "/".
    public static func deletingLastComponent(_ path: String) -> String {
        FilePath(path).removingLastComponent().string
    }
}
