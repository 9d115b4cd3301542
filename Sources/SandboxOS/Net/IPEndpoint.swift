import Glibc

/// An IPv4 or IPv6 address with a port, as the sockaddr bind(2) and
/// connect(2) take. `launcher.listen` may be either ("127.0.0.1", "::1");
/// "localhost" means 127.0.0.1.
public struct IPEndpoint: Sendable {
    public let host: String
    public let port: UInt16
    public let family: Int32
    private let v4: sockaddr_in
    private let v6: sockaddr_in6

    public init?(host: String, port: UInt16) {
        let literal = host == "localhost" ? "127.0.0.1" : host
        var a4 = sockaddr_in()
        var a6 = sockaddr_in6()
        if inet_pton(AF_INET, literal, &a4.sin_addr) == 1 {
            a4.sin_family = sa_family_t(AF_INET)
            a4.sin_port = port.bigEndian
            family = AF_INET
        } else if inet_pton(AF_INET6, literal, &a6.sin6_addr) == 1 {
            a6.sin6_family = sa_family_t(AF_INET6)
            a6.sin6_port = port.bigEndian
            family = AF_INET6
        } else {
            return nil
        }
        self.host = literal
        self.port = port
        v4 = a4
        v6 = a6
    }

    /// A stream socket of this endpoint's family, close-on-exec; -1 on failure.
    public func streamSocket() -> Int32 { socket(Int32(SOCK_STREAM.rawValue)) }

    /// A socket of `type` (SOCK_STREAM, SOCK_DGRAM) and this endpoint's
    /// family, close-on-exec; -1 on failure.
    public func socket(_ type: Int32) -> Int32 {
        let fd = Glibc.socket(family, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd >= 0 && family == AF_INET6 && host != "::" {
            // Exactly the address asked for: "::1" must not also take 127.0.0.1.
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        return fd
    }

    /// Calls `body` with the sockaddr and its length.
    public func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        if family == AF_INET {
            var a = v4
            return withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var a = v6
        return withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }

    /// host:port as it goes in a URL ("[::1]:8188" for IPv6).
    public static func urlAuthority(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The local address and port of a bound socket of either family, the
    /// address as inet_ntop writes it; nil when it is neither.
    public static func boundAddress(_ fd: Int32) -> (host: String, port: UInt16)? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { return nil }
        var buf = [CChar](repeating: 0, count: 64)
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { a in
                    var addr = a.pointee.sin_addr
                    guard inet_ntop(AF_INET, &addr, &buf, socklen_t(buf.count)) != nil else { return nil }
                    return (String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), UInt16(bigEndian: a.pointee.sin_port))
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { a in
                    var addr = a.pointee.sin6_addr
                    guard inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count)) != nil else { return nil }
                    return (String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), UInt16(bigEndian: a.pointee.sin6_port))
                }
            }
        default:
            return nil
        }
    }

    /// The local port of a bound socket of either family.
    public static func boundPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { return 0 }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) } }
        case AF_INET6:
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) } }
        default:
            return 0
        }
    }
}
