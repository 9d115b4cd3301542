import CSandbox
import Glibc

/// The calling thread's capability sets, all 64 bits of each (v3 ABI).
public struct Capabilities: Sendable, Equatable {
    public var effective: UInt64
    public var permitted: UInt64
    public var inheritable: UInt64

    public init(effective: UInt64 = 0, permitted: UInt64 = 0, inheritable: UInt64 = 0) {
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
    }

    public static let sysAdmin = 21
    public static let sysResource = 24

    /// capget(2) of this thread; nil when it fails.
    public static func current() -> Capabilities? {
        var c = cs_capsets()
        guard cs_capget_self(&c) == 0 else { return nil }
        return Capabilities(effective: c.effective, permitted: c.permitted, inheritable: c.inheritable)
    }

    /// capset(2) of this thread; the errno when refused.
    public static func set(_ caps: Capabilities) -> Errno? {
        var c = cs_capsets(effective: caps.effective, permitted: caps.permitted, inheritable: caps.inheritable)
        return cs_capset_self(&c) == 0 ? nil : Errno.current
    }

    public var isEmpty: Bool { effective == 0 && permitted == 0 && inheritable == 0 }
    public func hasEffective(_ cap: Int) -> Bool { effective & (UInt64(1) << UInt64(cap)) != 0 }
}
