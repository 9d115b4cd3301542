import FoundationEssentials
import Glibc

// Whole-buffer reads and writes on raw descriptors, in place of Foundation's
// FileHandle (not in FoundationEssentials).

/// Writes all of `bytes` to `fd`: short writes continue, EINTR retries, any
/// other error stops (returns false).
@discardableResult
public func writeAll(_ fd: Int32, _ bytes: Data) -> Bool {
    bytes.withUnsafeBytes { writeAll(fd, $0) }
}

/// A string's UTF-8, written in place (no Data built from its UTF8View:
/// that generic initializer costs more than the write, once per process).
@discardableResult
public func writeAll(_ fd: Int32, _ text: String) -> Bool {
    var text = text
    return text.withUTF8 { writeAll(fd, UnsafeRawBufferPointer($0)) }
}

public func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer) -> Bool {
    guard var p = raw.baseAddress else { return true }
    var left = raw.count
    while left > 0 {
        let n = write(fd, p, left)
        if n < 0 {
            if errno == EINTR { continue }
            return false
        }
        p += n
        left -= n
    }
    return true
}

/// Reads `fd` to end of file; EINTR retries, another error throws its errno.
public func readToEnd(_ fd: Int32) throws(Errno) -> Data {
    var out = Data()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 {
            if errno == EINTR { continue }
            throw Errno.current
        }
        if n == 0 { return out }
        out.append(contentsOf: chunk[0..<n])
    }
}

/// The whole of the file at `path` (opened O_RDONLY|O_CLOEXEC, following
/// symlinks, as FileManager.contents(atPath:) did).
public func readFile(_ path: String) throws(Errno) -> Data {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Errno.current }
    defer { close(fd) }
    return try readToEnd(fd)
}

/// The name in a directory entry that readdir(3) returned.
public func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
    withUnsafePointer(to: &entry.pointee.d_name) {
        String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
    }
}
