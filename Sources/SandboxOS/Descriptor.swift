import Glibc
import SystemPackage

/// A file descriptor owned by one object and closed exactly once when it
/// goes. swift-system's `FileDescriptor` is the typed value (a number with
/// typed operations, owning nothing); this is its one owner, shared by
/// reference where a ruleset, a namespace or a cgroup outlives the call that
/// opened it.
public final class OwnedFD: @unchecked Sendable {
    public let descriptor: FileDescriptor
    /// The number, for the C seam.
    @inline(__always)
    public var raw: Int32 { descriptor.rawValue }
    public init(_ raw: Int32) { descriptor = FileDescriptor(rawValue: raw) }
    public init(_ descriptor: FileDescriptor) { self.descriptor = descriptor }
    // close(2) once; not retried on EINTR (Linux has closed it either way).
    deinit { if raw >= 0 { try? descriptor.close() } }
}
