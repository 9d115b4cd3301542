import Crypto
import FoundationEssentials
import SandboxOS

/// `state_dir/models.manifest.idx`: the manifest again, in a flat binary
/// form that loads in about a millisecond for 10,000 files where decoding the
/// JSON takes tens (JSONDecoder dominates a no-op verify otherwise). It is a
/// cache, never the truth: it carries the stat stamp and the SHA-256 of the
/// JSON it was made from, and is used only when the JSON's stamp is unchanged
/// (then the JSON is not even read: both files are root's, written together
/// by replacing, so a new JSON is a new inode) or its SHA-256 matches;
/// otherwise the JSON is decoded. Same ownership rules as the manifest.
enum ManifestIndex {
    static let fileName = "models.manifest.idx"
    static let magic = Array("CSMIDX02".utf8)

    static func encode(_ m: ModelManifest, jsonDigest: [UInt8], jsonStamp: FileStamp) -> [UInt8] {
        var out = magic
        out += jsonDigest
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
        u64(jsonStamp.dev); u64(jsonStamp.inode); i64(jsonStamp.size); i64(jsonStamp.mtimeNs); i64(jsonStamp.ctimeNs)
        func str(_ s: String) {
            let b = Array(s.utf8)
            u64(UInt64(b.count))
            out += b
        }
        i64(Int64(m.version)); str(m.toolVersion); str(m.share); str(m.createdAt)
        i64(m.hashStartedNs); i64(m.timestampGranularityNs)
        u64(UInt64(m.files.count))
        for e in m.files {
            str(e.path); i64(e.size); i64(e.mtimeNs); i64(e.ctimeNs); u64(e.dev); u64(e.inode); str(e.sha256)
        }
        u64(UInt64(m.links.count))
        for l in m.links { str(l.path); str(l.target) }
        return out
    }

    /// Decodes an index made from the JSON whose stamp is `jsonStamp` now
    /// (or, when the stamp moved, whose SHA-256 `jsonDigest()` computes); nil
    /// when it is for other JSON, truncated or malformed.
    static func decode(_ data: Data, jsonStamp: FileStamp?, jsonDigest: () -> [UInt8]?) -> ModelManifest? {
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> ModelManifest? in
            var r = Reader(raw: raw)
            guard r.bytes(magic.count) == magic, let digest = r.bytes(32),
                  let dev = r.u64(), let ino = r.u64(), let size = r.i64(), let mtime = r.i64(), let ctime = r.i64() else { return nil }
            let recorded = FileStamp(dev: dev, inode: ino, size: size, mtimeNs: mtime, ctimeNs: ctime)
            guard recorded == jsonStamp || digest == jsonDigest() else { return nil }
            guard let version = r.i64(), let tool = r.str(), let share = r.str(), let created = r.str(),
                  let started = r.i64(), let granularity = r.i64(), let n = r.u64(), n <= UInt64(raw.count) else { return nil }
            var files: [ModelManifest.Entry] = []
            files.reserveCapacity(Int(n))
            for _ in 0..<n {
                guard let path = r.str(), let size = r.i64(), let mtime = r.i64(), let ctime = r.i64(),
                      let dev = r.u64(), let inode = r.u64(), let sha = r.str() else { return nil }
                files.append(ModelManifest.Entry(path: path, size: size, mtimeNs: mtime, ctimeNs: ctime, dev: dev, inode: inode, sha256: sha))
            }
            guard let nl = r.u64(), nl <= UInt64(raw.count) else { return nil }
            var links: [ModelManifest.Link] = []
            for _ in 0..<nl {
                guard let p = r.str(), let t = r.str() else { return nil }
                links.append(ModelManifest.Link(path: p, target: t))
            }
            guard r.offset == raw.count else { return nil }
            return ModelManifest(version: Int(version), toolVersion: tool, share: share, createdAt: created,
                                 hashStartedNs: started, timestampGranularityNs: granularity, files: files, links: links)
        }
    }

    static func digest(_ data: Data) -> [UInt8] { Array(SHA256.hash(data: data)) }

    struct Reader {
        let raw: UnsafeRawBufferPointer
        var offset = 0
        mutating func bytes(_ n: Int) -> [UInt8]? {
            guard n >= 0, raw.count - offset >= n else { return nil }
            defer { offset += n }
            return Array(raw[offset..<offset + n])
        }
        mutating func u64() -> UInt64? {
            guard raw.count - offset >= 8 else { return nil }
            defer { offset += 8 }
            return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        mutating func i64() -> Int64? { u64().map { Int64(bitPattern: $0) } }
        mutating func str() -> String? {
            guard let n = u64(), n <= UInt64(raw.count - offset) else { return nil }
            let s = String(decoding: UnsafeRawBufferPointer(rebasing: raw[offset..<offset + Int(n)]), as: UTF8.self)
            offset += Int(n)
            return s
        }
    }
}
