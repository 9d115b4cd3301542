import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// `launcher.egress`: the few services a loopback-only sandbox may reach,
/// through the egress proxy (EgressProxy.swift). This file is the judging:
/// which names the list allows, which names are not names (IP literals in
/// any spelling), which addresses are never a destination, what a client
/// asked for (CONNECT or an absolute-form HTTP request), and what name a TLS
/// ClientHello carries (SNI). All of it pure, so the unit tests take it apart.
extension Egress {
    // MARK: addresses

    /// An address as getaddrinfo gave it: 4 or 16 bytes.
    public struct Address: Equatable, Sendable, CustomStringConvertible {
        public var bytes: [UInt8]
        public init?(_ bytes: [UInt8]) {
            guard bytes.count == 4 || bytes.count == 16 else { return nil }
            self.bytes = bytes
        }
        public init?(_ text: String) {
            var a4 = in_addr(), a6 = in6_addr()
            if inet_pton(AF_INET, text, &a4) == 1 {
                self.bytes = withUnsafeBytes(of: a4) { Array($0) }
            } else if inet_pton(AF_INET6, text, &a6) == 1 {
                self.bytes = withUnsafeBytes(of: a6) { Array($0) }
            } else {
                return nil
            }
        }
        /// The address a socket address holds (AF_INET or AF_INET6; nil for
        /// any other family): getaddrinfo's answers, getifaddrs' addresses.
        public init?(_ sa: UnsafePointer<sockaddr>) {
            switch Int32(sa.pointee.sa_family) {
            case AF_INET: self.init(sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in withUnsafeBytes(of: s.pointee.sin_addr) { Array($0) } })
            case AF_INET6: self.init(sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in withUnsafeBytes(of: s.pointee.sin6_addr) { Array($0) } })
            default: return nil
            }
        }
        public var isV4: Bool { bytes.count == 4 }
        public var description: String {
            var buf = [CChar](repeating: 0, count: 64)
            let ok = bytes.withUnsafeBytes { inet_ntop(isV4 ? AF_INET : AF_INET6, $0.baseAddress, &buf, 64) } != nil
            guard ok, let end = buf.firstIndex(of: 0) else { return "?" }
            return String(decoding: buf[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// Why `address` is never a destination, or nil when it may be one: the
    /// host itself, its networks and its provider's, the cloud metadata
    /// service, multicast and what is reserved; IPv6 forms that carry an IPv4
    /// address (mapped, compatible, NAT64, 6to4) are judged by that address.
    /// Public addresses pass, and so do the documentation ranges
    /// (192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32): no real host
    /// or LAN has them, and the tests' fake internet lives there.
    public static func forbidden(_ address: Address) -> String? {
        let b = address.bytes
        if b.count == 4 { return forbiddenV4(b[0], b[1], b[2], b[3]) }
        let zero10 = b[0..<10].allSatisfy { $0 == 0 }
        if zero10 && b[10] == 0xff && b[11] == 0xff {
            return forbiddenV4(b[12], b[13], b[14], b[15]).map { "IPv4-mapped \($0)" }
        }
        if zero10 && b[10] == 0 && b[11] == 0 {
            if b[12..<16].allSatisfy({ $0 == 0 }) { return "the unspecified address" }
            if b[12..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return "loopback" }
            return "IPv4-compatible IPv6 (deprecated)"
        }
        // 64:ff9b::/96, NAT64 of an IPv4 address; 64:ff9b:1::/48, local NAT64.
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b {
            if b[4..<12].allSatisfy({ $0 == 0 }) { return forbiddenV4(b[12], b[13], b[14], b[15]).map { "NAT64 of \($0)" } }
            if b[4] == 0 && b[5] == 1 { return "local-use NAT64 (64:ff9b:1::/48)" }
        }
        // 2002::/16, 6to4: the IPv4 address in bits 16-47.
        if b[0] == 0x20 && b[1] == 0x02 { return forbiddenV4(b[2], b[3], b[4], b[5]).map { "6to4 of \($0)" } }
        if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0 { return "Teredo (2001::/32)" }
        if b[0] == 0x01 && b[1] == 0x00 && b[2..<8].allSatisfy({ $0 == 0 }) { return "discard-only (100::/64)" }
        if b[0] & 0xfe == 0xfc {
            if b == [0xfd, 0x00, 0x0e, 0xc2] + [UInt8](repeating: 0, count: 10) + [0x02, 0x54] { return "the cloud metadata address (fd00:ec2::254)" }
            return "unique local (fc00::/7)"
        }
        if b[0] == 0xfe && b[1] & 0xc0 == 0x80 { return "link-local (fe80::/10)" }
        if b[0] == 0xfe && b[1] & 0xc0 == 0xc0 { return "site-local (fec0::/10)" }
        if b[0] == 0xff { return "multicast (ff00::/8)" }
        return nil
    }

    /// The addresses of this host's own interfaces (getifaddrs, in the
    /// namespace the proxy runs in): a public address of the host itself
    /// reaches every service listening on 0.0.0.0 there, so a name that
    /// resolves to one is refused like loopback. Read per connection:
    /// addresses come and go (DHCP, VPNs).
    public static func hostAddresses() -> [Address] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var out: [Address] = []
        var p = list
        while let ifa = p {
            defer { p = ifa.pointee.ifa_next }
            if let sa = ifa.pointee.ifa_addr, let addr = Address(UnsafePointer(sa)) { out.append(addr) }
        }
        return out
    }

    static func forbiddenV4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> String? {
        let s = "\(a).\(b).\(c).\(d)"
        switch (a, b, c) {
        case (0, _, _): return "\(s): \"this network\" (0/8)"
        case (10, _, _): return "\(s): private (10/8)"
        case (100, 64...127, _): return "\(s): shared address space (100.64/10)"
        case (127, _, _): return "\(s): loopback (127/8)"
        case (169, 254, 169) where d == 254: return "\(s): the cloud metadata address"
        case (169, 254, _): return "\(s): link-local (169.254/16)"
        case (172, 16...31, _): return "\(s): private (172.16/12)"
        case (192, 0, 0): return "\(s): IETF protocol assignments (192.0.0/24)"
        case (192, 88, 99): return "\(s): 6to4 relay anycast (192.88.99/24)"
        case (192, 168, _): return "\(s): private (192.168/16)"
        case (198, 18...19, _): return "\(s): benchmarking (198.18/15)"
        case (224...239, _, _): return "\(s): multicast (224/4)"
        case (240...255, _, _): return "\(s): reserved or broadcast (240/4)"
        default: return nil
        }
    }

    // MARK: what the client asks

    /// A request the proxy takes: a CONNECT tunnel, or one plain-HTTP request
    /// in absolute form, with the head it will send on (origin form,
    /// hop-by-hop headers dropped, `Connection: close`).
    public enum Request: Equatable, Sendable {
        case connect(host: String, port: UInt16)
        case http(method: String, host: String, port: UInt16, head: [UInt8], bodyLength: Int)

        public var host: String {
            switch self { case .connect(let h, _), .http(_, let h, _, _, _): h }
        }
        public var port: UInt16 {
            switch self { case .connect(_, let p), .http(_, _, let p, _, _): p }
        }
        public var method: String {
            switch self { case .connect: "CONNECT"; case .http(let m, _, _, _, _): m }
        }
    }

    /// A refusal: the HTTP status to answer with, and why (logged and sent).
    public struct Refusal: Error, Equatable, Sendable {
        public var status: Int
        public var reason: String
        /// What the client asked for, as far as it was understood ("-" if not at all).
        public var target: String
        public init(_ status: Int, _ reason: String, target: String = "-") {
            self.status = status
            self.reason = reason
            self.target = target
        }

        public var response: [UInt8] {
            let phrase = [400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 408: "Request Timeout",
                          411: "Length Required", 431: "Request Header Fields Too Large", 502: "Bad Gateway",
                          503: "Service Unavailable", 504: "Gateway Timeout"][status] ?? "Error"
            let body = "comfy-sandbox egress proxy: \(reason)\n"
            return Array("HTTP/1.1 \(status) \(phrase)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)".utf8)
        }
    }

    /// Methods passed on in plain HTTP (CONNECT is the tunnel; TRACE and
    /// anything unknown are refused).
    static let httpMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
    /// Dropped from a forwarded request: hop-by-hop, the proxy's own, and
    /// Upgrade (no protocol switch through a plain-HTTP request).
    static let dropped: Set<String> = ["connection", "proxy-connection", "keep-alive", "proxy-authorization", "te", "trailer",
                                       "upgrade", "transfer-encoding"]

    /// Parses one request head (through its blank line). Strict: CRLF line
    /// ends only, no folded headers, one Content-Length at most, no
    /// Transfer-Encoding (chunked bodies are refused, 411), HTTP/1.0 or 1.1.
    /// Names are checked (IP literals refused) but not against the list.
    public static func parseRequest(_ head: [UInt8]) -> Result<Request, Refusal> {
        guard head.count >= 4, head.suffix(4).elementsEqual([13, 10, 13, 10]),
              let text = String(validating: head.dropLast(4), as: UTF8.self) else {
            return .failure(Refusal(400, "the request head is not text ending in a blank line"))
        }
        // "\r\n" is one Character in Swift: split on it as such, and any
        // lone "\r" or "\n" left inside a line is refused below.
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        guard !lines.contains(where: { $0.contains("\n") || $0.contains("\r") }) else {
            return .failure(Refusal(400, "bare LF or CR in the request head"))
        }
        let requestLine = lines.removeFirst()
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else {
            return .failure(Refusal(400, "not an HTTP/1.x request line"))
        }
        let method = String(parts[0]), target = String(parts[1])
        var headers: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                  !line[..<colon].contains(where: { $0 == " " || $0 == "\t" }), line.first != " ", line.first != "\t" else {
                return .failure(Refusal(400, "a malformed or folded header line"))
            }
            let value = line[line.index(after: colon)...].drop(while: { $0 == " " || $0 == "\t" })
            headers.append((String(line[..<colon]), String(value.reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())))
        }
        func values(_ name: String) -> [String] { headers.filter { $0.name.lowercased() == name }.map(\.value) }

        if method == "CONNECT" {
            guard let (host, port) = splitAuthority(target, defaultPort: nil) else {
                return .failure(Refusal(400, "CONNECT needs host:port, got \"\(target)\"", target: target))
            }
            return checkName(host, port: port).map { .connect(host: $0, port: port) }
        }
        guard httpMethods.contains(method) else {
            return .failure(Refusal(405, "\(method) is not passed on (CONNECT for HTTPS; GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH for http://)", target: target))
        }
        let lower = target.lowercased()
        guard lower.hasPrefix("http://") else {
            let why = lower.hasPrefix("https://") ? "an https:// URL goes through CONNECT, not a plain request" : "a proxy request needs an absolute http:// URL"
            return .failure(Refusal(400, why, target: target))
        }
        let afterScheme = target.dropFirst("http://".count)
        let slash = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? afterScheme.endIndex
        let authority = String(afterScheme[..<slash])
        var path = String(afterScheme[slash...])
        guard !authority.contains("@") else { return .failure(Refusal(400, "user information in the URL is refused", target: target)) }
        guard !path.contains("#") else { return .failure(Refusal(400, "a fragment in the request target", target: target)) }
        if path.isEmpty { path = "/" } else if path.hasPrefix("?") { path = "/" + path }
        guard let (rawHost, port) = splitAuthority(authority, defaultPort: 80) else {
            return .failure(Refusal(400, "no host:port in \"\(target)\"", target: target))
        }
        let host: String
        switch checkName(rawHost, port: port) {
        case .failure(let r): return .failure(r)
        case .success(let h): host = h
        }
        let hostHeaders = values("host")
        guard hostHeaders.count <= 1 else { return .failure(Refusal(400, "more than one Host header", target: "\(host):\(port)")) }
        if let h = hostHeaders.first {
            // The Host the server will route by must name what was checked.
            guard let (hh, hp) = splitAuthority(h, defaultPort: 80), case .success(let hn) = normalizeName(hh), hn == host, hp == port else {
                return .failure(Refusal(403, "the Host header \"\(h)\" does not name \(host):\(port) from the URL", target: "\(host):\(port)"))
            }
        }
        guard values("transfer-encoding").isEmpty else {
            return .failure(Refusal(411, "chunked request bodies are not passed on: send a Content-Length", target: "\(host):\(port)"))
        }
        let lengths = values("content-length")
        guard lengths.count <= 1, lengths.allSatisfy({ !$0.isEmpty && $0.count <= 15 && $0.allSatisfy { $0.isASCII && $0.isNumber } }) else {
            return .failure(Refusal(400, "a malformed or repeated Content-Length", target: "\(host):\(port)"))
        }
        let bodyLength = lengths.first.flatMap { Int($0) } ?? 0
        var out = "\(method) \(path) HTTP/1.1\r\n"
        if hostHeaders.isEmpty { out += "Host: \(port == 80 ? host : "\(host):\(port)")\r\n" }
        for (name, value) in headers where !dropped.contains(name.lowercased()) { out += "\(name): \(value)\r\n" }
        out += "Connection: close\r\n\r\n"
        return .success(.http(method: method, host: host, port: port, head: Array(out.utf8), bodyLength: bodyLength))
    }

    /// `host:port` or `[v6]:port` (the port optional when `defaultPort` is set).
    static func splitAuthority(_ s: String, defaultPort: UInt16?) -> (String, UInt16)? {
        var host = Substring(s), port = defaultPort
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[...close]
            let rest = s[s.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = UInt16(rest.dropFirst()), p > 0 else { return nil }
                port = p
            }
        } else if let colon = s.lastIndex(of: ":") {
            let p = s[s.index(after: colon)...]
            guard p.count <= 5, p.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt16(p), n > 0 else { return nil }
            host = s[..<colon]
            port = n
        }
        guard let port, !host.isEmpty else { return nil }
        return (String(host), port)
    }

    static func checkName(_ raw: String, port: UInt16) -> Result<String, Refusal> {
        switch normalizeName(raw) {
        case .success(let h): return .success(h)
        case .failure(.ipLiteral):
            return .failure(Refusal(403, "\(raw) is an IP address: only names in launcher.egress are reached, never an address", target: "\(raw):\(port)"))
        case .failure(.notAName(let why)):
            return .failure(Refusal(400, "\"\(raw)\" is not a host name (\(why))", target: "\(raw):\(port)"))
        }
    }

    // MARK: TLS

    /// What the start of a CONNECT tunnel says: the SNI host name of its TLS
    /// ClientHello (RFC 8446 4.1.2, RFC 6066 3), read across records.
    public enum Hello: Equatable, Sendable {
        case needMore
        case name(String)
        case noSNI
        case notTLS(String)
    }

    /// The largest ClientHello the proxy reads (a post-quantum key share
    /// makes them a few KiB; 64 KiB is ample and bounded).
    public static let maxHello = 65536

    public static func clientHello(_ bytes: [UInt8]) -> Hello {
        // Records: type 22 (handshake), version 3.x, length <= 2^14.
        var handshake: [UInt8] = []
        var i = 0
        var needed: Int?
        while needed.map({ handshake.count < $0 }) ?? true {
            guard i + 5 <= bytes.count else { return .needMore }
            guard bytes[i] == 22, bytes[i + 1] == 3 else { return .notTLS("not a TLS handshake record") }
            let length = Int(bytes[i + 3]) << 8 | Int(bytes[i + 4])
            guard length > 0, length <= 16384 else { return .notTLS("a TLS record of \(length) bytes") }
            guard i + 5 + length <= bytes.count else { return .needMore }
            handshake += bytes[(i + 5)..<(i + 5 + length)]
            i += 5 + length
            if needed == nil, handshake.count >= 4 {
                guard handshake[0] == 1 else { return .notTLS("the first handshake message is not a ClientHello") }
                let n = Int(handshake[1]) << 16 | Int(handshake[2]) << 8 | Int(handshake[3])
                guard n <= maxHello else { return .notTLS("a ClientHello of \(n) bytes") }
                needed = 4 + n
            }
        }
        return parseHelloBody(Array(handshake[4..<needed!]))
    }

    static func parseHelloBody(_ b: [UInt8]) -> Hello {
        var p = 0
        func take(_ n: Int) -> ArraySlice<UInt8>? {
            guard n >= 0, p + n <= b.count else { return nil }
            defer { p += n }
            return b[p..<(p + n)]
        }
        func u8() -> Int? { take(1).map { Int($0.first!) } }
        func u16() -> Int? { take(2).map { Int($0[$0.startIndex]) << 8 | Int($0[$0.startIndex + 1]) } }
        guard take(2 + 32) != nil, let sid = u8(), sid <= 32, take(sid) != nil,
              let suites = u16(), suites >= 2, suites % 2 == 0, take(suites) != nil,
              let comp = u8(), comp >= 1, take(comp) != nil else { return .notTLS("a malformed ClientHello") }
        if p == b.count { return .noSNI }
        guard let extLength = u16(), p + extLength == b.count else { return .notTLS("a malformed ClientHello extension block") }
        var name: String?
        var seen = Set<Int>()
        while p < b.count {
            guard let type = u16(), let length = u16(), let body = take(length) else { return .notTLS("a malformed extension") }
            guard seen.insert(type).inserted else { return .notTLS("extension \(type) twice") }
            guard type == 0 else { continue }
            let e = Array(body)
            guard e.count >= 2, Int(e[0]) << 8 | Int(e[1]) == e.count - 2 else { return .notTLS("a malformed server_name extension") }
            var q = 2
            while q < e.count {
                guard q + 3 <= e.count else { return .notTLS("a malformed server_name entry") }
                let kind = e[q], n = Int(e[q + 1]) << 8 | Int(e[q + 2])
                guard q + 3 + n <= e.count, n > 0 else { return .notTLS("a malformed server_name entry") }
                if kind == 0 {
                    guard name == nil else { return .notTLS("two host names in server_name") }
                    guard let s = String(validating: e[(q + 3)..<(q + 3 + n)], as: UTF8.self) else { return .notTLS("a server_name that is not text") }
                    name = s
                }
                q += 3 + n
            }
        }
        guard let name else { return .noSNI }
        return .name(name)
    }
}
