import FoundationEssentials
import Glibc
import SandboxOS

/// `state_dir/models.manifest.json`: the SHA-256 of every regular file in the
/// models share, with the stat fields that let `verify-models` trust a file
/// without reading it again.
public struct ModelManifest: Codable, Equatable, Sendable {
    public static let fileName = "models.manifest.json"
    public static let currentVersion = 1

    public struct Entry: Codable, Equatable, Sendable {
        public var path: String
        public var size: Int64
        public var mtimeNs: Int64
        public var ctimeNs: Int64
        public var dev: UInt64
        public var inode: UInt64
        public var sha256: String

        enum CodingKeys: String, CodingKey {
            case path, size, dev, inode, sha256
            case mtimeNs = "mtime_ns"
            case ctimeNs = "ctime_ns"
        }

        public var stamp: FileStamp { FileStamp(dev: dev, inode: inode, size: size, mtimeNs: mtimeNs, ctimeNs: ctimeNs) }
    }

    /// A symlink in the share (the models planner makes them when the cache
    /// is on another file system): recorded by target, never followed.
    public struct Link: Codable, Equatable, Sendable {
        public var path: String
        public var target: String
    }

    public var version: Int
    public var toolVersion: String
    /// The share this manifest describes.
    public var share: String
    public var createdAt: String
    /// Wall clock (ns) when hashing began. An entry whose mtime or ctime lies
    /// within `timestampGranularityNs` of it (or later) could have been
    /// rewritten in the same timestamp tick after it was read ("racy git"),
    /// so its stat is not trusted: verify re-reads it.
    public var hashStartedNs: Int64
    /// The file timestamp granularity assumed for the share's file system.
    public var timestampGranularityNs: Int64
    public var files: [Entry]
    public var links: [Link]

    enum CodingKeys: String, CodingKey {
        case version, share, files, links
        case toolVersion = "tool_version"
        case createdAt = "created_at"
        case hashStartedNs = "hash_started_ns"
        case timestampGranularityNs = "timestamp_granularity_ns"
    }

    public func isRacy(_ e: Entry) -> Bool {
        max(e.mtimeNs, e.ctimeNs) + timestampGranularityNs > hashStartedNs
    }

    public func encoded() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var d = try enc.encode(self)
        d.append(0x0A)
        return d
    }
}

/// One thing found wrong (or noted) about a path.
public struct ModelIssue: Codable, Equatable, Sendable {
    public var path: String
    public var reason: String
    public init(_ path: String, _ reason: String) {
        self.path = path
        self.reason = reason
    }
}

/// record-models and verify-models.
public enum Manifest {
    public static let toolVersion = "0.1.0"

    public static func manifestPath(stateDir: String) -> String { stateDir + "/" + ModelManifest.fileName }

    // MARK: record

    public struct RecordResult: Encodable, Sendable {
        public var manifest: String
        public var share: String
        public var files: Int
        public var bytes: Int64
        public var seconds: Double
        /// Files that could not be hashed (left out of the manifest): the command fails.
        public var unreadable: [ModelIssue]
        /// Symlinks, FIFOs, sockets, devices: noted, never followed or opened.
        public var notHashed: [ModelIssue]
        public var ok: Bool { unreadable.isEmpty }

        enum CodingKeys: String, CodingKey {
            case manifest, share, files, bytes, seconds, unreadable, ok
            case notHashed = "not_hashed"
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(manifest, forKey: .manifest)
            try c.encode(share, forKey: .share)
            try c.encode(files, forKey: .files)
            try c.encode(bytes, forKey: .bytes)
            try c.encode(seconds, forKey: .seconds)
            try c.encode(unreadable, forKey: .unreadable)
            try c.encode(notHashed, forKey: .notHashed)
            try c.encode(ok, forKey: .ok)
        }
    }

    /// Hashes every regular file of `share` and writes the manifest into
    /// `stateDir` atomically (root-owned 0644 when running as root). The
    /// caller holds the state lock.
    public static func record(share: String, stateDir: String, workers: Int = FileHasher.defaultWorkers,
                              progress: Bool = true) throws -> (ModelManifest, RecordResult) {
        let start = Date()
        let walk = try ShareWalk(rootPath: share, workers: workers)
        defer { walk.close() }
        let granularity = timestampGranularity(fd: walk.rootFD)
        let hashStarted = wallClockNs()
        let jobs = walk.files.map(walk.job(for:))
        let total = walk.files.reduce(Int64(0)) { $0 + $1.stamp.size }
        let bar = progress ? ByteProgress.onTerminal(label: "hashing", totalBytes: total, totalFiles: jobs.count) : nil
        let results = FileHasher.hashAll(jobs, workers: workers, progress: bar)
        bar?.finish()

        var entries: [ModelManifest.Entry] = []
        var unreadable = walk.unreadable.map { ModelIssue($0.path, $0.why) }
        var notHashed = walk.notEntered.map { ModelIssue($0.path, $0.why) }
        var links: [ModelManifest.Link] = []
        var bytes: Int64 = 0
        for (f, (outcome, _)) in zip(walk.files, results) {
            switch outcome {
            case .hashed(let sha, let stamp):
                entries.append(ModelManifest.Entry(path: f.path, size: stamp.size, mtimeNs: stamp.mtimeNs, ctimeNs: stamp.ctimeNs,
                                                   dev: stamp.dev, inode: stamp.inode, sha256: sha))
                bytes += stamp.size
            case .changedWhileHashing:
                unreadable.append(ModelIssue(f.path, "changed while it was being hashed; run record-models again when nothing writes to the share"))
            case .notRegular(let kind):
                notHashed.append(ModelIssue(f.path, "became a \(kind) while recording; not opened"))
            case .unreadable(let why):
                unreadable.append(ModelIssue(f.path, "cannot be read: \(why)"))
            }
        }
        for o in walk.others {
            if o.kind == "symlink", let t = o.target {
                links.append(ModelManifest.Link(path: o.path, target: t))
                notHashed.append(ModelIssue(o.path, "symlink to \(t): recorded by target, not followed"))
            } else {
                notHashed.append(ModelIssue(o.path, "\(o.kind): not a model file, never opened; remove it"))
            }
        }
        let manifest = ModelManifest(version: ModelManifest.currentVersion, toolVersion: toolVersion, share: share,
                                     createdAt: Timestamp.now(), hashStartedNs: hashStarted,
                                     timestampGranularityNs: granularity, files: entries, links: links)
        try StateDirectory.ensure(stateDir)
        let json = try manifest.encoded()
        let owner: (uid_t, gid_t)? = geteuid() == 0 ? (0, 0) : nil
        try AtomicFile.write(json, to: manifestPath(stateDir: stateDir), mode: 0o644, owner: owner)
        var st = stat()
        guard lstat(manifestPath(stateDir: stateDir), &st) == 0 else {
            throw SandboxError.failure("cannot stat \(manifestPath(stateDir: stateDir)) just written: \(Errno.current)")
        }
        let index = ManifestIndex.encode(manifest, jsonDigest: ManifestIndex.digest(json), jsonStamp: FileStamp(st))
        try AtomicFile.write(Data(index), to: stateDir + "/" + ManifestIndex.fileName, mode: 0o644, owner: owner)
        let result = RecordResult(manifest: manifestPath(stateDir: stateDir), share: share, files: entries.count, bytes: bytes,
                                  seconds: Date().timeIntervalSince(start), unreadable: unreadable, notHashed: notHashed)
        return (manifest, result)
    }

    // MARK: verify

    public struct VerifyReport: Codable, Sendable {
        public var manifest: String
        public var share: String
        public var recordedAt: String
        /// Files in the manifest.
        public var files: Int
        /// Trusted by their unchanged (dev, inode, size, mtime, ctime), not read.
        public var trusted: Int
        public var filesRead: Int
        public var bytesRead: Int64
        public var seconds: Double
        public var added: [ModelIssue] = []
        public var missing: [ModelIssue] = []
        public var changed: [ModelIssue] = []
        public var unreadable: [ModelIssue] = []
        /// Files whose stat moved but whose content is still the recorded one
        /// (a `touch`, a new hard link): fine, but re-read until record-models runs again.
        public var restamped: [String] = []
        /// Mount points inside the share: not entered by record or verify (a note, not a problem).
        public var notEntered: [ModelIssue] = []
        public var ok: Bool { added.isEmpty && missing.isEmpty && changed.isEmpty && unreadable.isEmpty }

        enum CodingKeys: String, CodingKey {
            case manifest, share, files, trusted, seconds, added, missing, changed, unreadable, restamped, ok
            case recordedAt = "recorded_at"
            case filesRead = "files_read"
            case bytesRead = "bytes_read"
            case notEntered = "not_entered"
        }
        public init(manifest: String, share: String, recordedAt: String, files: Int) {
            self.manifest = manifest
            self.share = share
            self.recordedAt = recordedAt
            self.files = files
            trusted = 0
            filesRead = 0
            bytesRead = 0
            seconds = 0
        }
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            manifest = try c.decode(String.self, forKey: .manifest)
            share = try c.decode(String.self, forKey: .share)
            recordedAt = try c.decode(String.self, forKey: .recordedAt)
            files = try c.decode(Int.self, forKey: .files)
            trusted = try c.decode(Int.self, forKey: .trusted)
            filesRead = try c.decode(Int.self, forKey: .filesRead)
            bytesRead = try c.decode(Int64.self, forKey: .bytesRead)
            seconds = try c.decode(Double.self, forKey: .seconds)
            added = try c.decode([ModelIssue].self, forKey: .added)
            missing = try c.decode([ModelIssue].self, forKey: .missing)
            changed = try c.decode([ModelIssue].self, forKey: .changed)
            unreadable = try c.decode([ModelIssue].self, forKey: .unreadable)
            restamped = try c.decode([String].self, forKey: .restamped)
            notEntered = try c.decodeIfPresent([ModelIssue].self, forKey: .notEntered) ?? []
        }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(manifest, forKey: .manifest)
            try c.encode(share, forKey: .share)
            try c.encode(recordedAt, forKey: .recordedAt)
            try c.encode(files, forKey: .files)
            try c.encode(trusted, forKey: .trusted)
            try c.encode(filesRead, forKey: .filesRead)
            try c.encode(bytesRead, forKey: .bytesRead)
            try c.encode(seconds, forKey: .seconds)
            try c.encode(added, forKey: .added)
            try c.encode(missing, forKey: .missing)
            try c.encode(changed, forKey: .changed)
            try c.encode(unreadable, forKey: .unreadable)
            try c.encode(restamped, forKey: .restamped)
            try c.encode(notEntered, forKey: .notEntered)
            try c.encode(ok, forKey: .ok)
        }
    }

    /// Reads the manifest (see `readTrusted` for who may have written it).
    public static func load(stateDir: String) throws -> ModelManifest {
        let path = manifestPath(stateDir: stateDir)
        let json: TrustedFile
        switch openTrusted(path) {
        case .success(let f): json = f
        case .failure(let e): throw e
        }
        // The binary index, when it was made from exactly this JSON, saves
        // reading and decoding it (the bulk of a no-op verify's time).
        var jsonData: Data?
        func readJSON() throws -> Data {
            if let jsonData { return jsonData }
            let d = try json.read()
            jsonData = d
            return d
        }
        if case .success(let idx) = openTrusted(stateDir + "/" + ManifestIndex.fileName), let idxData = try? idx.read(),
           let m = ManifestIndex.decode(idxData, jsonStamp: json.stamp, jsonDigest: { (try? readJSON()).map(ManifestIndex.digest) }) {
            return m
        }
        do {
            return try JSONDecoder().decode(ModelManifest.self, from: try readJSON())
        } catch let e as SandboxError {
            throw e
        } catch {
            throw SandboxError(.problem, "the models manifest \(path) cannot be parsed: \(error)",
                               hint: "run `comfy-sandbox record-models` to write a new one")
        }
    }

    /// A state file opened after checking who could have written it.
    final class TrustedFile {
        let path: String
        /// Owned: closed when the file is released.
        let fd: Int32
        let stamp: FileStamp
        init(path: String, fd: Int32, stamp: FileStamp) {
            self.path = path
            self.fd = fd
            self.stamp = stamp
        }
        deinit { close(fd) }
        func read() throws -> Data {
            do {
                return try readToEnd(fd)
            } catch {
                throw SandboxError.failure("cannot read \(path): \(error)")
            }
        }
    }

    /// Opens a state file, refusing one that someone other than root (or the
    /// caller) could have written: a manifest the sandbox could edit would
    /// vouch for anything.
    static func openTrusted(_ path: String) -> Result<TrustedFile, SandboxError> {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let e = Errno.current
            if e == .noSuchFileOrDirectory {
                return .failure(SandboxError.failure("no models manifest at \(path)", hint: "run `comfy-sandbox record-models` first"))
            }
            return .failure(SandboxError.failure("cannot open \(path): \(e)"))
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            return .failure(SandboxError.failure("\(path) is not a regular file"))
        }
        guard st.st_uid == 0 || st.st_uid == geteuid(), (st.st_mode & 0o022) == 0 else {
            close(fd)
            return .failure(SandboxError(.problem, "\(path) is owned by uid \(st.st_uid) or writable by others (mode \(String(st.st_mode & 0o7777, radix: 8))); it cannot be trusted",
                                         hint: "check who changed it, then run `comfy-sandbox record-models` as root"))
        }
        return .success(TrustedFile(path: path, fd: fd, stamp: FileStamp(st)))
    }

    /// Checks `share` against `manifest`. Reads only files whose stat moved,
    /// racy entries, and everything under `rehash`.
    public static func verify(manifest: ModelManifest, manifestPath: String, share: String, rehash: Bool = false,
                              workers: Int = FileHasher.defaultWorkers, progress: Bool = true) throws -> VerifyReport {
        let start = Date()
        var report = VerifyReport(manifest: manifestPath, share: share, recordedAt: manifest.createdAt, files: manifest.files.count)
        let walk = try ShareWalk(rootPath: share, sorted: false, workers: workers)
        defer { walk.close() }
        report.unreadable = walk.unreadable.map { ModelIssue($0.path, $0.why) }
        report.notEntered = walk.notEntered.map { ModelIssue($0.path, $0.why) }

        var present: [String: ShareWalk.File] = [:]
        present.reserveCapacity(walk.files.count)
        for f in walk.files { present[f.path] = f }
        var others: [String: ShareWalk.Other] = [:]
        for o in walk.others { others[o.path] = o }

        // Each recorded file takes its match out of `present`: what is left
        // there afterwards was added.
        var toRead: [(ModelManifest.Entry, ShareWalk.File)] = []
        var replaced = Set<String>()   // recorded files now something else, or gone
        for e in manifest.files {
            guard let f = present.removeValue(forKey: e.path) else {
                replaced.insert(e.path)
                if let o = others[e.path] {
                    report.changed.append(ModelIssue(e.path, "was a file, is now a \(o.kind)" + (o.target.map { " to \($0)" } ?? "") + "; not followed"))
                } else {
                    report.missing.append(ModelIssue(e.path, "missing (\(e.size) bytes recorded)"))
                }
                continue
            }
            if !rehash, f.stamp == e.stamp, !manifest.isRacy(e) {
                report.trusted += 1
            } else {
                toRead.append((e, f))
            }
        }
        let recordedLinks = Dictionary(manifest.links.map { ($0.path, $0.target) }, uniquingKeysWith: { a, _ in a })
        for f in present.values where recordedLinks[f.path] == nil {
            report.added.append(ModelIssue(f.path, "not in the manifest (\(f.stamp.size) bytes)"))
        }
        for o in walk.others where !replaced.contains(o.path) {
            if o.kind == "symlink" {
                switch recordedLinks[o.path] {
                case .some(let t) where t == o.target: continue
                case .some(let t): report.changed.append(ModelIssue(o.path, "symlink now points to \(o.target ?? "?") (recorded: \(t)); not followed"))
                case .none: report.added.append(ModelIssue(o.path, "symlink to \(o.target ?? "?") not in the manifest; not followed"))
                }
            } else {
                report.added.append(ModelIssue(o.path, "\(o.kind) in the models share; never opened"))
            }
        }
        for l in manifest.links where others[l.path] == nil && present[l.path] == nil {
            report.missing.append(ModelIssue(l.path, "symlink to \(l.target) missing"))
        }
        for l in manifest.links where present[l.path] != nil {
            report.changed.append(ModelIssue(l.path, "was a symlink to \(l.target), is now a regular file"))
        }

        let total = toRead.reduce(Int64(0)) { $0 + $1.1.stamp.size }
        let bar = progress ? ByteProgress.onTerminal(label: "verifying", totalBytes: total, totalFiles: toRead.count) : nil
        let results = FileHasher.hashAll(toRead.map { walk.job(for: $0.1) },
                                     workers: workers, progress: bar)
        bar?.finish()
        for ((e, _), (outcome, bytes)) in zip(toRead, results) {
            report.bytesRead += bytes
            switch outcome {
            case .hashed(let sha, let stamp):
                report.filesRead += 1
                if sha != e.sha256 || stamp.size != e.size {
                    var why = "content differs from the manifest"
                    if stamp.size != e.size { why += " (size \(e.size) -> \(stamp.size))" }
                    if stamp.mtimeNs == e.mtimeNs { why += "; its mtime was left unchanged" }
                    report.changed.append(ModelIssue(e.path, why))
                } else if stamp != e.stamp {
                    report.restamped.append(e.path)
                }
            case .changedWhileHashing:
                report.filesRead += 1
                report.changed.append(ModelIssue(e.path, "changed while it was being hashed"))
            case .notRegular(let kind):
                report.changed.append(ModelIssue(e.path, "became a \(kind); not opened"))
            case .unreadable(let why):
                report.unreadable.append(ModelIssue(e.path, "cannot be read: \(why)"))
            }
        }
        for kp in [\Manifest.VerifyReport.added, \.missing, \.changed, \.unreadable] {
            report[keyPath: kp].sort { $0.path < $1.path }
        }
        report.restamped.sort()
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    // MARK: helpers

    static func wallClockNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// The timestamp granularity assumed for the file system under `fd`.
    /// Linux file systems with nanosecond fields (ext4, xfs, btrfs, tmpfs...)
    /// still stamp from the coarse clock, one tick at a time: its resolution
    /// (a jiffy, 1-10 ms) is the granularity. FAT and unknown file systems
    /// get 2 s, the coarsest in common use.
    public static func timestampGranularity(fd: Int32) -> Int64 {
        let fsType = Int64(fileSystemType(fd))
        guard fsType >= 0 else { return 2_000_000_000 }
        let nanosecondFS: Set<Int64> = [
            0xEF53,       // ext2/3/4
            0x5846_5342,  // xfs
            0x9123_683E,  // btrfs
            0x0102_1994,  // tmpfs
            0x794C_7630,  // overlayfs
            0xF2F5_2010,  // f2fs
            0x2FC1_2FC1,  // zfs
            0xCA45_1A4E,  // bcachefs
            0x6969,       // nfs (server-side stamps; ns on Linux servers)
        ]
        guard nanosecondFS.contains(Int64(fsType)) else { return 2_000_000_000 }
        var res = timespec()
        guard clock_getres(CLOCK_REALTIME_COARSE, &res) == 0 else { return 10_000_000 }
        let tick = Int64(res.tv_sec) * 1_000_000_000 + Int64(res.tv_nsec)
        return max(tick, 1_000_000)
    }
}

/// `state_dir/models.verify.json`: when verify-models last ran and what it
/// found, for `status`. Root-owned 0644, written atomically.
public struct ModelsVerifyRecord: Codable, Equatable, Sendable {
    public static let fileName = "models.verify.json"
    public var verifiedAt: String
    public var ok: Bool
    public var rehash: Bool
    public var files: Int
    public var filesRead: Int
    public var added: Int
    public var missing: Int
    public var changed: Int
    public var unreadable: Int

    enum CodingKeys: String, CodingKey {
        case ok, rehash, files, added, missing, changed, unreadable
        case verifiedAt = "verified_at"
        case filesRead = "files_read"
    }

    public init(_ r: Manifest.VerifyReport, rehash: Bool, at: String = Timestamp.now()) {
        verifiedAt = at
        ok = r.ok
        self.rehash = rehash
        files = r.files
        filesRead = r.filesRead
        added = r.added.count
        missing = r.missing.count
        changed = r.changed.count
        unreadable = r.unreadable.count
    }

    public static func path(stateDir: String) -> String { stateDir + "/" + fileName }

    public func save(stateDir: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        var d = try enc.encode(self)
        d.append(0x0A)
        try StateDirectory.ensure(stateDir)
        try AtomicFile.write(d, to: Self.path(stateDir: stateDir), mode: 0o644, owner: geteuid() == 0 ? (0, 0) : nil)
    }

    public static func load(stateDir: String) -> ModelsVerifyRecord? {
        guard let d = FileManager.default.contents(atPath: path(stateDir: stateDir)) else { return nil }
        return try? JSONDecoder().decode(ModelsVerifyRecord.self, from: d)
    }
}
