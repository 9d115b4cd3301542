import FoundationEssentials
import Glibc
import SandboxOS

/// `state_dir/journal.log`: one line per change provisioning applied, with
/// its time, appended and never rewritten. Root-owned 0644; opened with
/// O_APPEND so concurrent writers cannot interleave within a line, and
/// O_NOFOLLOW so a planted link cannot redirect it.
public struct Journal: Sendable {
    public let path: String

    public init(stateDir: String) { path = stateDir + "/journal.log" }

    /// Appends `2026-11-22T10:00:00Z provision tree: set mode /x 0755 -> 2755`.
    public func append(_ command: String, _ line: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw SandboxError.failure("cannot open the journal \(path): \(Errno.current)") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0, st.st_uid != 0 || st.st_mode & 0o7777 != 0o644 {
            try? SafeFS.setOwnerAndMode(fd, uid: 0, gid: 0, mode: 0o644, display: path)
        }
        // One write(2) per line: O_APPEND makes it atomic with respect to other appenders.
        let text = "\(Timestamp.now()) \(command) \(line.replacingScalar("\n", with: "\\n"))\n"
        let ok = text.withCString { p -> Bool in
            let n = strlen(p)
            while true {
                let w = write(fd, p, n)
                if w < 0 && errno == EINTR { continue }
                return w == n
            }
        }
        if !ok { throw SandboxError.failure("cannot append to the journal \(path): \(Errno.current)") }
    }

    public func lines() -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }
}
