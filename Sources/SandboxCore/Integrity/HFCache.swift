import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// Finds files in a Hugging Face hub cache:
///
///     <hf_cache>/models--ORG--NAME/refs/main            (text: a commit id)
///     <hf_cache>/models--ORG--NAME/snapshots/<commit>/<file>  -> ../../blobs/<hash>
///     <hf_cache>/models--ORG--NAME/blobs/<hash>         (the content)
///
/// The cache belongs to the primary user, who can rearrange it while root
/// reads it, so every step is fd-relative through openat2 with
/// RESOLVE_BENEATH: the snapshot symlink may lead to the repo's blobs, never
/// out of the repo directory (a symlink to /etc/shadow fails with EXDEV).
public enum HFCache {
    public struct Resolved: Sendable {
        /// `models.links[i]`, for messages.
        public var key: String
        public var repoDirectory: String
        public var commit: String
        /// The path as the cache presents it (snapshots/...), for `plan`.
        public var snapshotPath: String
        /// The real path of the blob the snapshot entry leads to.
        public var blobPath: String
        public var dev: UInt64
        public var inode: UInt64
        public var mode: mode_t
        public var size: Int64
    }

    /// Resolves `link` and returns an O_PATH fd of the blob (the caller closes it).
    public static func open(_ link: Config.ModelLink, key: String, cache: String) throws -> (Resolved, OwnedFD) {
        let cacheFD = Glibc.open(cache, O_PATH_FLAG | O_DIRECTORY | O_CLOEXEC)
        guard cacheFD >= 0 else {
            throw SandboxError.failure("\(key): the Hugging Face cache models.hf_cache \(cache) cannot be opened: \(Errno.current)",
                                       hint: "set models.hf_cache to the hub cache directory (usually ~/.cache/huggingface/hub)")
        }
        defer { close(cacheFD) }
        let repoName = "models--" + link.repo.replacing("/", with: "--")
        let repoDir = cache + "/" + repoName
        let beneath: SafeFS.Resolve = [.beneath, .noMagicLinks]
        let repoFD = SafeFS.openat2(cacheFD, repoName, flags: O_PATH_FLAG | O_DIRECTORY | O_CLOEXEC, resolve: beneath.union(.noSymlinks))
        guard repoFD >= 0 else {
            let e = Errno.current
            if e.rawValue == ENOSYS { throw Kernel.openat2Missing("\(key): cannot open \(repoDir)") }
            if e == .noSuchFileOrDirectory {
                throw SandboxError.failure("\(key): repo \(link.repo) is not in the Hugging Face cache (no \(repoDir))",
                                           hint: "download it first: huggingface-cli download \(link.repo) \(link.file)")
            }
            throw SandboxError.failure("\(key): cannot open \(repoDir): \(e)")
        }
        defer { close(repoFD) }
        var repoSt = stat()
        guard fstat(repoFD, &repoSt) == 0 else { throw SandboxError.failure("\(key): cannot stat \(repoDir): \(Errno.current)") }

        let commit = try resolveRevision(link, key: key, repoFD: repoFD, repoDir: repoDir)
        let snapshotRel = "snapshots/\(commit)/\(link.file)"
        let snapshotPath = repoDir + "/" + snapshotRel
        // O_PATH without O_NOFOLLOW: the final symlink is followed, but only
        // to somewhere beneath the repo directory.
        let fd = SafeFS.openat2(repoFD, snapshotRel, flags: O_PATH_FLAG | O_CLOEXEC, resolve: beneath)
        guard fd >= 0 else {
            let e = Errno.current
            switch e {
            case .noSuchFileOrDirectory:
                throw SandboxError.failure("\(key): \(link.file) is not in \(link.repo) at revision \(commit) (no \(snapshotPath))",
                                           hint: "check models.links file name, or download it: huggingface-cli download \(link.repo) \(link.file)")
            case .improperLink, .tooManySymbolicLinkLevels:
                throw SandboxError.failure("\(key): \(snapshotPath) leads outside \(repoDir) (\(e)); refusing to link it",
                                           hint: "the cache entry is not what huggingface_hub writes; re-download it")
            default:
                throw SandboxError.failure("\(key): cannot open \(snapshotPath): \(e)")
            }
        }
        let owned = OwnedFD(fd)
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SandboxError.failure("\(key): cannot stat \(snapshotPath): \(Errno.current)") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SandboxError.failure("\(key): \(snapshotPath) is a \(FileKind.name(st.st_mode)), not a model file")
        }
        // A blob root could not have put there itself: only files of the
        // cache's owner are linked (no foreign hard link smuggled into the
        // cache), and nothing set-id.
        guard st.st_uid == repoSt.st_uid, (st.st_mode & 0o6000) == 0 else {
            throw SandboxError.failure("\(key): \(snapshotPath) is owned by uid \(st.st_uid), not by the cache's owner (uid \(repoSt.st_uid)), or is set-id; refusing to link it")
        }
        let blobPath = realPath(fd: fd) ?? snapshotPath
        let resolved = Resolved(key: key, repoDirectory: repoDir, commit: commit, snapshotPath: snapshotPath, blobPath: blobPath,
                                dev: UInt64(st.st_dev), inode: UInt64(st.st_ino), mode: st.st_mode, size: Int64(st.st_size))
        return (resolved, owned)
    }

    /// The commit to use: `revision` when it names a snapshot, else the
    /// content of refs/<revision> (default refs/main).
    static func resolveRevision(_ link: Config.ModelLink, key: String, repoFD: Int32, repoDir: String) throws -> String {
        let rev = link.revision ?? "main"
        if link.revision != nil, isPlainName(rev) {
            let fd = SafeFS.openat2(repoFD, "snapshots/\(rev)", flags: O_PATH_FLAG | O_DIRECTORY | O_CLOEXEC,
                                    resolve: [.beneath, .noSymlinks])
            if fd >= 0 {
                close(fd)
                return rev
            }
        }
        guard isPlainName(rev), let text = readSmallFile(repoFD, "refs/\(rev)") else {
            let known = listDirectory(repoFD, "snapshots") + listDirectory(repoFD, "refs").map { "refs/\($0)" }
            let what = link.revision == nil ? "has no refs/main" : "has no snapshot or ref named \(rev)"
            throw SandboxError.failure("\(key)\(link.revision == nil ? "" : ".revision"): \(link.repo) in the cache \(what) (\(repoDir))",
                                       hint: known.isEmpty ? "download it again with huggingface-cli"
                                           : "available: \(known.joined(separator: ", ")); set models.links revision to one of them")
        }
        let commit = text.trimmingWhitespaceAndNewlines()
        guard isPlainName(commit) else {
            throw SandboxError.failure("\(key): \(repoDir)/refs/\(rev) does not hold a commit id")
        }
        return commit
    }

    static func isPlainName(_ s: String) -> Bool {
        !s.isEmpty && !s.contains("/") && s != "." && s != ".." && !s.utf8.contains(0)
    }

    static func readSmallFile(_ dirFD: Int32, _ rel: String) -> String? {
        let fd = SafeFS.openat2(dirFD, rel, flags: O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, resolve: [.beneath, .noSymlinks])
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    static func listDirectory(_ dirFD: Int32, _ rel: String) -> [String] {
        let fd = SafeFS.openat2(dirFD, rel, flags: O_RDONLY | O_DIRECTORY | O_CLOEXEC, resolve: [.beneath, .noSymlinks])
        guard fd >= 0, let dir = fdopendir(fd) else {
            if fd >= 0 { close(fd) }
            return []
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = entryName(ent)
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// The path the kernel has for an open fd (for messages and symlink targets).
    static func realPath(fd: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/fd/\(fd)", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
