import FoundationEssentials
import Glibc
import SandboxOS

/// Reads and writes checkout records (`state_dir/nodes/NAME.json`,
/// `state_dir/comfyui.json`). Writes go through AtomicFile (root:root 0644
/// in a root-owned 0755 directory), so the sandbox user can read a record
/// but never write or replace one. A record that does not parse, names
/// another node, holds something that is not a commit id, or is not a
/// root-owned file only root can write is reported as corrupt and not trusted.
public enum RecordStore {
    public enum Loaded: Sendable {
        case missing
        case record(CheckoutRecord)
        case corrupt(String)
    }

    public static func load(_ path: String, name: String) -> Loaded {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            if e == ENOENT { return .missing }
            return .corrupt("cannot open \(path): \(Errno(e))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return .corrupt("\(path) is not a regular file") }
        guard st.st_uid == 0, (st.st_mode & 0o022) == 0 else {
            return .corrupt("\(path) is owned by uid \(st.st_uid) with mode \(String(st.st_mode & 0o777, radix: 8)); only root may write records")
        }
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 { if errno == EINTR { continue }; return .corrupt("cannot read \(path): \(Errno.current)") }
            if n == 0 { break }
            data.append(contentsOf: buf[0..<n])
        }
        let r: CheckoutRecord
        do {
            r = try JSONDecoder().decode(CheckoutRecord.self, from: data)
        } catch {
            return .corrupt("\(path) does not parse as a record (\(data.isEmpty ? "empty file" : "truncated or edited?"))")
        }
        guard r.name == name else { return .corrupt("\(path) names \"\(r.name)\", not \"\(name)\"") }
        guard GitFiles.isCommitID(r.currentSHA) else { return .corrupt("\(path): current_sha \"\(r.currentSHA)\" is not a commit id") }
        if let p = r.previousSHA, !GitFiles.isCommitID(p) { return .corrupt("\(path): previous_sha \"\(p)\" is not a commit id") }
        if r.history.contains(where: { !GitFiles.isCommitID($0.sha) }) { return .corrupt("\(path): history holds something that is not a commit id") }
        return .record(r)
    }

    public static func write(_ record: CheckoutRecord, to path: String) throws {
        try StateDirectory.ensure(Paths.deletingLastComponent(path))
        try AtomicFile.write(try record.encoded(), to: path, mode: 0o644, owner: (0, 0))
    }
}
