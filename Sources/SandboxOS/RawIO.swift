import FoundationEssentials
import Glibc
import SystemPackage

// Whole-buffer reads and writes on raw descriptors, in place of Foundation's
// FileHandle (not in FoundationEssentials): swift-system's FileDescriptor
// does the work (short writes continued, EINTR retried); these only spell it
// for the `Int32` descriptors the C seam hands out, and a `Bool` where the
// callers have nothing to do with a failed write but stop.

/// Writes all of `bytes` to `fd`; false on an error.
@discardableResult
public func writeAll(_ fd: Int32, _ bytes: Data) -> Bool {
    bytes.withUnsafeBytes { writeAll(fd, $0) }
}

@discardableResult
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { writeAll(fd, $0) }
}

/// A string's UTF-8, written in place (no Data built from its UTF8View:
/// that generic initializer costs more than the write, once per process).
@discardableResult
public func writeAll(_ fd: Int32, _ text: String) -> Bool {
    var text = text
    return text.withUTF8 { writeAll(fd, UnsafeRawBufferPointer($0)) }
}

@discardableResult
public func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer) -> Bool {
    (try? FileDescriptor(rawValue: fd).writeAll(raw)) != nil
}

/// Reads `fd` to end of file; EINTR retries, another error throws its errno.
public func readToEnd(_ fd: Int32) throws(Errno) -> Data {
    let descriptor = FileDescriptor(rawValue: fd)
    var out = Data()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n: Int
        do {
            n = try chunk.withUnsafeMutableBytes { try descriptor.read(into: $0) }
        } catch {
            throw error as? Errno ?? .ioError
        }
        if n == 0 { return out }
        out.append(contentsOf: chunk[0..<n])
    }
}

/// The whole of the file at `path` (opened O_RDONLY|O_CLOEXEC, following
/// symlinks, as FileManager.contents(atPath:) did).
public func readFile(_ path: String) throws(Errno) -> Data {
    let fd: FileDescriptor
    do {
        fd = try FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec)
    } catch {
        throw error as? Errno ?? .ioError
    }
    defer { try? fd.close() }
    return try readToEnd(fd.rawValue)
}

/// The name in a directory entry that readdir(3) returned.
public func entryName(_ entry: UnsafeMutablePointer<dirent>) -> String {
    withUnsafePointer(to: &entry.pointee.d_name) {
        String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
    }
}
