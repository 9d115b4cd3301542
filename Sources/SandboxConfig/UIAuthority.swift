import Glibc
import SandboxOS

/// A `host:port` the UI is reached by, as a browser names it in the Host and
/// Origin headers: a DNS name (lowercased), an IPv4 address, or an IPv6
/// address in brackets (both canonical, as inet_ntop writes them), and a port.
public struct UIAuthority: Hashable, Sendable, CustomStringConvertible {
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { "\(host):\(port)" }

    /// `host`, `host:port`, `[v6]` or `[v6]:port`; nil for anything else
    /// (userinfo, paths, spaces, an empty or out-of-range port, a name that
    /// is not a DNS name). A missing port is `defaultPort` (80 for http).
    public static func parse(_ text: String, defaultPort: Int) -> UIAuthority? {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 300, bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { return nil }
        var host: String
        var rest: ArraySlice<UInt8>
        if bytes[0] == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            guard let v6 = canonicalIP(String(decoding: bytes[1..<close], as: UTF8.self), family: AF_INET6) else { return nil }
            host = "[\(v6)]"
            rest = bytes[(close + 1)...]
        } else {
            let colon = bytes.firstIndex(of: UInt8(ascii: ":")) ?? bytes.endIndex
            let name = String(decoding: bytes[..<colon], as: UTF8.self).lowercased()
            if let v4 = canonicalIP(name, family: AF_INET) {
                host = v4
            } else if isDNSName(name) {
                host = name
            } else {
                return nil
            }
            rest = bytes[colon...]
        }
        var port = defaultPort
        if !rest.isEmpty {
            guard rest.first == UInt8(ascii: ":") else { return nil }
            let digits = rest.dropFirst()
            guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy({ (0x30...0x39).contains($0) }),
                  let p = Int(String(decoding: digits, as: UTF8.self)), (1...65535).contains(p) else { return nil }
            port = p
        }
        return UIAuthority(host: host, port: port)
    }

    /// The listen address as an authority: IPv6 in brackets, canonical.
    public static func address(_ ip: String, port: Int) -> UIAuthority? {
        if let v4 = canonicalIP(ip, family: AF_INET) { return UIAuthority(host: v4, port: port) }
        if let v6 = canonicalIP(ip, family: AF_INET6) { return UIAuthority(host: "[\(v6)]", port: port) }
        return nil
    }

    /// `ip` as inet_ntop writes it, when it is an address of `family`.
    package static func canonicalIP(_ ip: String, family: Int32) -> String? {
        var addr = in6_addr()   // large enough for either family
        guard inet_pton(family, ip, &addr) == 1 else { return nil }
        var buf = [CChar](repeating: 0, count: 64)
        guard inet_ntop(family, &addr, &buf, socklen_t(buf.count)) != nil else { return nil }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Letters, digits, `-` and `_` in dot-separated labels of 1-63, at most
    /// 253 in all; not all digits and dots (a number is not a name: a
    /// browser would have made it an IPv4 address).
    package static func isDNSName(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard !u.isEmpty, u.count <= 253 else { return false }
        let labels = u.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.count), label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-") else { return false }
            for b in label where !((0x61...0x7a).contains(b) || (0x30...0x39).contains(b) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")) {
                return false
            }
        }
        return !u.allSatisfy { (0x30...0x39).contains($0) || $0 == UInt8(ascii: ".") }
    }
}
