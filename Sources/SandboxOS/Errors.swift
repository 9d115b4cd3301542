import FoundationEssentials
import Glibc
@_exported import SystemPackage

/// The process exit codes fixed by the contract.
public enum ExitStatus: Int32, Sendable {
    case success = 0
    case failure = 1
    /// A check found a problem: verify-models mismatch, check-sandbox escape,
    /// scan-nodes --fail-on finding.
    case problem = 3
    case usage = 64
    /// The config is invalid; nothing on disk was changed.
    case invalidConfig = 65
}

/// The one user-facing error type. `message` says what happened, `hint` what to
/// do about it, and `cause` keeps the low-level error for `--verbose` output.
public struct SandboxError: Error, CustomStringConvertible, Sendable {
    public var status: ExitStatus
    public var message: String
    public var hint: String?
    public var cause: String?

    public init(_ status: ExitStatus = .failure, _ message: String, hint: String? = nil, cause: (any Error)? = nil) {
        self.status = status
        self.message = message
        self.hint = hint
        self.cause = cause.map { String(describing: $0) }
    }

    public static func config(_ message: String, hint: String? = nil) -> SandboxError {
        SandboxError(.invalidConfig, message, hint: hint)
    }

    public static func failure(_ message: String, hint: String? = nil, cause: (any Error)? = nil) -> SandboxError {
        SandboxError(.failure, message, hint: hint, cause: cause)
    }

    public var description: String {
        var s = message
        if let hint { s += "\n  hint: \(hint)" }
        return s
    }
}

// Errno is swift-system's (a typed errno whose description is strerror's
// words). Two spellings it keeps to itself or lacks, used at every failing
// call here: the calling thread's errno read at once, and the bare init.
extension Errno {
    /// The calling thread's errno, read at once: save it right after the failing call.
    @inline(__always)
    public static var current: Errno { Errno(rawValue: errno) }
    @inline(__always)
    public init(_ rawValue: Int32) { self.init(rawValue: rawValue) }
}

/// The cause of a failed FileManager call in strerror's words ("Not a
/// directory") when it wraps an errno, else the error as Swift prints it.
/// FoundationEssentials has no `localizedDescription`, and Foundation's
/// ("The operation could not be completed. (NSCocoaErrorDomain error 512.)")
/// left the cause out.
public func fileErrorText(_ error: any Error) -> String {
    if let posix = (error as? CocoaError)?.underlying as? POSIXError { return "\(Errno(posix.code.rawValue))" }
    return String(describing: error)
}

/// Standard error, unbuffered.
public func printError(_ text: String) {
    writeAll(2, text.hasSuffix("\n") ? text : text + "\n")
}
