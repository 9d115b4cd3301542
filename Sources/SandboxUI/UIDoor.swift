import Crypto
import FoundationEssentials
import SandboxOS
import SandboxConfig

/// The rules of the one door from the host to the sandbox: the relay on
/// `launcher.listen:launcher.port`. ComfyUI has no authentication; whoever
/// reaches its port runs every installed node's code and reads the shares.
/// So the relay decides, before a byte reaches ComfyUI:
///
/// - **who**: the uid owning the connecting socket (found by the relay
///   through inet_diag) must be root or in `launcher.ui_users`;
/// - **where from**: the Host header must name the UI (the listen address,
///   `localhost`, `127.0.0.1`, `[::1]` with the port, or `launcher.ui_hosts`),
///   else 421: a DNS-rebinding page sends its own name. Requests that can
///   change something (every method but GET, HEAD and OPTIONS) and WebSocket
///   upgrades must carry no Origin or one of those, else 403; and a
///   browser's cross-site request (`Sec-Fetch-Site: cross-site` or
///   `same-site`) is refused unless it is a plain navigation (a link
///   followed, an address typed);
/// - **how much**: one request per connection, its head within
///   `headerTimeout`, a body only as long as its Content-Length (chunked
///   bodies are refused, so the relay and ComfyUI can never disagree on
///   where a request ends), at most `perUserConnections` at a time per uid;
/// - **what the browser may do with the answer**: every response gets the
///   relay's Content-Security-Policy (`launcher.ui_csp`) in place of any the
///   sandbox sent, and loses the headers that would let it send reports or
///   prefetches elsewhere.
///
/// This type is the rules, without I/O (Relay does the I/O), so each rule is
/// tested on its own.
public struct UIDoor: Sendable {
    /// nil: anyone (`ui_users: ["*"]`), peers on other machines included.
    public var allowedUIDs: Set<UInt32>?
    public var authorities: Set<UIAuthority>
    /// "" for none.
    public var csp: String

    public static let perUserConnections = 64
    /// Relay threads kept waiting for the next connection once theirs has ended.
    public static let idleWorkers = 8
    /// A request head must be complete this long after the connection.
    public static let headerTimeoutMS: Int32 = 10_000
    /// An exchange where no byte moved for this long is ended (a WebSocket
    /// that has been upgraded is not: the UI keeps one open and quiet).
    public static let idleTimeoutMS: Int32 = 300_000
    /// Once one side of a WebSocket has closed, the other has this long.
    public static let lingerMS: Int32 = 10_000
    public static let maxRequestHead = 32 * 1024
    public static let maxResponseHead = 64 * 1024

    public init(allowedUIDs: Set<UInt32>?, authorities: Set<UIAuthority>, csp: String) {
        self.allowedUIDs = allowedUIDs
        self.authorities = authorities
        self.csp = csp
    }

    /// The names the UI answers to on `port`: the listen address (unless a
    /// wildcard), the loopback names, and `ui_hosts` (a name without a port
    /// takes `port`; the ones the validator refused are left out).
    public static func authorities(listen: String, port: Int, uiHosts: [String]) -> Set<UIAuthority> {
        var set: Set<UIAuthority> = [UIAuthority(host: "localhost", port: port), UIAuthority(host: "127.0.0.1", port: port),
                                     UIAuthority(host: "[::1]", port: port)]
        if listen != "0.0.0.0" && listen != "::", let a = UIAuthority.address(listen, port: port) { set.insert(a) }
        for h in uiHosts { if let a = UIAuthority.parse(h, defaultPort: port) { set.insert(a) } }
        return set
    }

    public func admits(uid: UInt32?) -> Bool {
        guard let allowedUIDs else { return true }
        guard let uid else { return false }
        return uid == 0 || allowedUIDs.contains(uid)
    }

    // MARK: requests

    /// A request the relay passes on.
    public struct Request: Sendable, Equatable {
        /// The head as ComfyUI gets it: `Connection: close` (one request per
        /// connection), no Expect (the relay answered it).
        public var head: [UInt8]
        public var method: String
        public var bodyLength: Int
        public var upgrade: Bool
        /// Expect: 100-continue: the relay sends 100 Continue itself.
        public var expectContinue: Bool
    }

    /// A refusal and the response that says why.
    public struct Refusal: Sendable, Equatable, Error {
        public var status: Int
        public var message: String
        public var response: [UInt8] { UIDoor.plainResponse(status: status, message) }

        public init(status: Int, message: String) {
            self.status = status
            self.message = message
        }
    }

    public enum Verdict: Sendable, Equatable {
        case forward(Request)
        case refuse(Refusal)
    }

    /// The refusal for a connection whose owner is not let in.
    public func refusal(uid: UInt32?) -> Refusal {
        let who = uid.map { "your user (uid \($0))" } ?? "a peer this host cannot name (not a local socket)"
        return Refusal(status: 403, message: "This ComfyUI serves only the users listed in launcher.ui_users (and root); "
                       + "\(who) is not one of them. Ask whoever runs it to add you to launcher.ui_users in the comfy-sandbox config.")
    }

    public static func busy(uid: UInt32?) -> Refusal {
        Refusal(status: 503, message: "Too many connections to ComfyUI from your user (\(perUserConnections) at a time); close some and try again.")
    }

    /// Judges a complete request head (through its blank line).
    public func judge(_ head: [UInt8]) -> Verdict {
        switch parseRequest(head) {
        case .failure(let refusal): return .refuse(refusal)
        case .success(let request): return .forward(request)
        }
    }

    func parseRequest(_ head: [UInt8]) -> Result<Request, Refusal> {
        func bad(_ why: String) -> Result<Request, Refusal> { .failure(Refusal(status: 400, message: "Bad request: \(why).")) }
        // CRLF lines only: a bare LF is where two parsers can disagree on
        // where a header (or the head) ends.
        guard head.count >= 4, head.suffix(4).elementsEqual([13, 10, 13, 10]) else { return bad("the head must end with an empty line") }
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        var i = 0
        while i < head.count - 2 {
            if head[i] == 10 { return bad("a line ends with a bare LF") }
            if head[i] == 13 {
                guard head[i + 1] == 10 else { return bad("a bare CR") }
                lines.append(head[start..<i])
                i += 2
                start = i
                continue
            }
            i += 1
        }
        guard let requestLine = lines.first else { return bad("no request line") }
        let parts = requestLine.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(Self.isTokenByte) else { return bad("the request line is not METHOD TARGET HTTP/1.x") }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = parts[1]
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return bad("only HTTP/1.1 and HTTP/1.0 are served") }
        // Origin-form only ("/path?query"), or "*" for OPTIONS: an absolute
        // target names a host of its own, beside the Host header.
        let originForm = target.first == UInt8(ascii: "/") && target.allSatisfy { $0 > 0x20 && $0 < 0x7f }
        guard originForm || (method == "OPTIONS" && target.elementsEqual("*".utf8)) else {
            return bad("the request target must be a path (/...)")
        }
        if method == "CONNECT" { return bad("CONNECT is not served") }

        var host: [UInt8]?, origin: [UInt8]?, fetchSite: [UInt8]?, fetchMode: [UInt8]?, fetchDest: [UInt8]?
        var contentLength: Int?
        var connectionTokens: [String] = []
        var upgradeHeader = false
        var expectContinue = false
        var kept: [ArraySlice<UInt8>] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return bad("a header line without a colon") }
            let name = line[line.startIndex..<colon]
            // No space before the colon, no obs-fold: RFC 9112 has a server reject both.
            guard !name.isEmpty, name.allSatisfy(Self.isTokenByte) else { return bad("a header name that is not a token (space before the colon, or a folded line)") }
            let value = Self.trimmed(line[(colon + 1)...])
            guard value.allSatisfy({ $0 == 9 || ($0 >= 0x20 && $0 != 0x7f) }) else { return bad("a control byte in a header value") }
            let lower = String(decoding: name, as: UTF8.self).lowercased()
            func once(_ slot: inout [UInt8]?) -> Bool {
                if slot != nil { return false }
                slot = Array(value)
                return true
            }
            switch lower {
            case "host":
                guard once(&host) else { return bad("more than one Host header") }
            case "origin":
                guard once(&origin) else { return bad("more than one Origin header") }
            case "sec-fetch-site":
                guard once(&fetchSite) else { return bad("more than one Sec-Fetch-Site header") }
            case "sec-fetch-mode":
                guard once(&fetchMode) else { return bad("more than one Sec-Fetch-Mode header") }
            case "sec-fetch-dest":
                guard once(&fetchDest) else { return bad("more than one Sec-Fetch-Dest header") }
            case "content-length":
                guard contentLength == nil else { return bad("more than one Content-Length header") }
                guard !value.isEmpty, value.count <= 15, value.allSatisfy({ (0x30...0x39).contains($0) }),
                      let n = Int(String(decoding: value, as: UTF8.self)) else { return bad("a Content-Length that is not a number") }
                contentLength = n
            case "transfer-encoding":
                return .failure(Refusal(status: 411, message: "Length required: request bodies must come with a Content-Length (chunked transfer encoding is not passed on)."))
            case "expect":
                guard String(decoding: value, as: UTF8.self).lowercased() == "100-continue" else {
                    return .failure(Refusal(status: 417, message: "Expectation failed: only Expect: 100-continue is understood."))
                }
                expectContinue = true
                continue
            case "connection":
                connectionTokens += String(decoding: value, as: UTF8.self).lowercased().split(separator: ",")
                    .map { String($0).trimmingWhitespace() }
            case "upgrade":
                upgradeHeader = true
            default:
                break
            }
            kept.append(line)
        }

        // Where from: the Host must name the UI.
        guard let host, let authority = UIAuthority.parse(String(decoding: host, as: UTF8.self), defaultPort: 80),
              authorities.contains(authority) else {
            let shown = host.map { Self.shown($0) } ?? "(none)"
            return .failure(Refusal(status: 421, message: "Misdirected request: the Host \(shown) is not a name of this ComfyUI "
                                    + "(\(authoritiesList)). A page that reached it under another name (DNS rebinding) is refused; "
                                    + "if you reach it by another name yourself (ssh -L to another local port), add that name to launcher.ui_hosts."))
        }
        let upgrade = upgradeHeader && connectionTokens.contains("upgrade")
        let safe = method == "GET" || method == "HEAD" || method == "OPTIONS"
        if !safe || upgrade, let origin {
            let text = String(decoding: origin, as: UTF8.self)
            guard let o = Self.originAuthority(text), authorities.contains(o) else {
                return .failure(Refusal(status: 403, message: "Forbidden: a \(upgrade ? "WebSocket" : method) request from the page at \(Self.shown(origin)) "
                                        + "was refused: only pages of this ComfyUI (\(authoritiesList)) may send it. "
                                        + "If you reach the UI by another name, add it to launcher.ui_hosts."))
            }
        }
        // Fetch metadata: a browser says when another site made the request.
        if let site = fetchSite.map({ String(decoding: $0, as: UTF8.self).lowercased() }), site == "cross-site" || site == "same-site" {
            let mode = fetchMode.map { String(decoding: $0, as: UTF8.self).lowercased() }
            let dest = fetchDest.map { String(decoding: $0, as: UTF8.self).lowercased() } ?? "document"
            let navigation = (method == "GET" || method == "HEAD") && mode == "navigate" && !upgrade && dest == "document"
            if !navigation {
                return .failure(Refusal(status: 403, message: "Forbidden: another site's page made this request (Sec-Fetch-Site: \(site)); "
                                        + "only pages of this ComfyUI may, beyond following a link to it."))
            }
        }

        var out: [UInt8] = []
        out.reserveCapacity(head.count + 20)
        out += requestLine
        out += [13, 10]
        for line in kept {
            if !upgrade, let colon = line.firstIndex(of: UInt8(ascii: ":")) {
                let lower = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
                if lower == "connection" || lower == "keep-alive" || lower == "proxy-connection" || lower == "upgrade" { continue }
            }
            out += line
            out += [13, 10]
        }
        if !upgrade { out += Array("Connection: close\r\n".utf8) }
        out += [13, 10]
        return .success(Request(head: out, method: method, bodyLength: contentLength ?? 0, upgrade: upgrade, expectContinue: expectContinue))
    }

    var authoritiesList: String { authorities.map(\.description).sorted().joined(separator: ", ") }

    /// `scheme://authority` of an Origin header, for http and https; nil for
    /// "null" and anything else.
    static func originAuthority(_ origin: String) -> UIAuthority? {
        for (scheme, port) in [("http://", 80), ("https://", 443)] where origin.lowercased().hasPrefix(scheme) {
            return UIAuthority.parse(String(origin.dropFirst(scheme.count)), defaultPort: port)
        }
        return nil
    }

    // MARK: responses

    /// How a response's body ends.
    public enum BodyEnd: Sendable, Equatable {
        case none
        case length(Int)
        case close
    }

    /// A response head as the client gets it.
    public struct Response: Sendable, Equatable {
        public var status: Int
        public var head: [UInt8]
        public var body: BodyEnd
        /// 101 to an upgrade request: from here on, bytes both ways.
        public var tunnel: Bool
        /// An HTML document, not compressed: the relay may read it whole to
        /// allow its inline scripts by hash (`inlineScriptHashes`).
        public var plainHTML: Bool = false
    }

    /// Headers of the sandbox's response that never reach the browser: its
    /// own policies (the relay's replaces them; a report-only one would send
    /// reports to any address it names), the reporting and network-error
    /// endpoints (reports go where they say, around connect-src), and the
    /// hop-by-hop ones the relay sets itself.
    static let droppedResponseHeaders: Set<String> = [
        "content-security-policy", "content-security-policy-report-only", "report-to", "reporting-endpoints", "nel",
        "x-dns-prefetch-control", "connection", "keep-alive", "proxy-connection",
    ]

    /// Rewrites the head of the sandbox's response (through its blank line)
    /// to `request`: the relay's CSP first, `Connection: close`, DNS
    /// prefetching off, the sandbox's own headers after them minus
    /// `droppedResponseHeaders` and any line a browser might read otherwise
    /// than we do. nil for what is not an HTTP/1.x response (then 502).
    /// 1xx responses other than 101 are the caller's to drop.
    public func response(_ head: [UInt8], to request: Request, scriptHashes: [String] = []) -> Response? {
        // Lines end at LF, with or without CR, as browsers read them.
        var lines = head.split(separator: 10, omittingEmptySubsequences: false).map { $0.last == 13 ? $0.dropLast() : $0 }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let statusLine = lines.first, statusLine.count >= 12, statusLine.starts(with: "HTTP/1.".utf8),
              statusLine[statusLine.startIndex + 8] == 0x20 else { return nil }
        let codeBytes = statusLine[(statusLine.startIndex + 9)..<(statusLine.startIndex + 12)]
        guard codeBytes.allSatisfy({ (0x30...0x39).contains($0) }), let status = Int(String(decoding: codeBytes, as: UTF8.self)),
              statusLine.count == 12 || statusLine[statusLine.startIndex + 12] == 0x20,
              statusLine.allSatisfy({ $0 == 9 || ($0 >= 0x20 && $0 != 0x7f) }) else { return nil }
        let tunnel = status == 101
        if tunnel && !request.upgrade { return nil }
        var out = Array(statusLine) + [13, 10]
        if !csp.isEmpty { out += Array("Content-Security-Policy: \(Self.policy(csp, allowingScripts: scriptHashes))\r\n".utf8) }
        if !tunnel { out += Array("Connection: close\r\n".utf8) }
        out += Array("X-DNS-Prefetch-Control: off\r\n".utf8)
        var lengths: [Int] = []
        var chunked = false
        var html = false, encoded = false
        for line in lines.dropFirst() {
            // A line that is not `token: value` with plain bytes (a folded
            // line, a CR inside, a NUL) is dropped, not passed for a browser
            // to make something else of.
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = line[line.startIndex..<colon]
            guard !name.isEmpty, name.allSatisfy(Self.isTokenByte) else { continue }
            let value = Self.trimmed(line[(colon + 1)...])
            guard value.allSatisfy({ $0 == 9 || ($0 >= 0x20 && $0 != 0x7f) }) else { continue }
            let lower = String(decoding: name, as: UTF8.self).lowercased()
            if tunnel && (lower == "connection" || lower == "upgrade") {
                out += line + [13, 10]
                continue
            }
            if Self.droppedResponseHeaders.contains(lower) { continue }
            if lower == "content-length" { lengths.append(Int(String(decoding: value, as: UTF8.self)) ?? -1) }
            if lower == "transfer-encoding" { chunked = true }
            if lower == "content-type" {
                let type = String(decoding: value, as: UTF8.self).lowercased()
                html = type.hasPrefix("text/html") || type.hasPrefix("application/xhtml+xml")
            }
            if lower == "content-encoding" && String(decoding: value, as: UTF8.self).lowercased() != "identity" { encoded = true }
            out += line + [13, 10]
        }
        out += [13, 10]
        let body: BodyEnd
        if tunnel || request.method == "HEAD" || status == 204 || status == 304 || (100...199).contains(status) {
            body = .none
        } else if !chunked, lengths.count == 1, lengths[0] >= 0 {
            body = .length(lengths[0])
        } else {
            body = .close
        }
        return Response(status: status, head: out, body: body, tunnel: tunnel, plainHTML: html && !encoded)
    }

    // MARK: inline scripts

    /// The largest HTML body the relay reads whole to hash its inline scripts.
    public static let maxHashedHTML = 4 << 20

    /// CSP hash sources (`'sha256-...'`) of the inline `<script>` elements
    /// (no `src`) of an HTML document, in order, without repeats. The
    /// frontend's page holds one, its import map, which a policy without
    /// 'unsafe-inline' blocks; allowing exactly the inline scripts the page
    /// came with keeps blocking any a script or an injection adds later.
    public static func inlineScriptHashes(_ html: [UInt8]) -> [String] {
        var hashes: [String] = []
        var i = 0
        func lower(_ b: UInt8) -> UInt8 { (0x41...0x5a).contains(b) ? b + 32 : b }
        func matches(_ word: String, at k: Int) -> Bool {
            let w = Array(word.utf8)
            guard k + w.count <= html.count else { return false }
            for j in 0..<w.count where lower(html[k + j]) != w[j] { return false }
            return true
        }
        while i < html.count {
            guard html[i] == UInt8(ascii: "<"), matches("<script", at: i), i + 7 < html.count,
                  [0x20, 0x09, 0x0a, 0x0c, 0x0d, UInt8(ascii: ">"), UInt8(ascii: "/")].contains(html[i + 7]) else { i += 1; continue }
            // The start tag, to its `>` (quoted values may hold one).
            var k = i + 7
            var quote: UInt8 = 0
            var attributes: [UInt8] = []
            while k < html.count {
                let b = html[k]
                if quote != 0 { if b == quote { quote = 0 } } else if b == 0x22 || b == 0x27 { quote = b } else if b == UInt8(ascii: ">") { break }
                attributes.append(lower(b))
                k += 1
            }
            guard k < html.count else { break }
            let start = k + 1
            var end = start
            while end < html.count && !(html[end] == UInt8(ascii: "<") && matches("</script", at: end)) { end += 1 }
            if !Self.hasAttribute(attributes, "src") {
                let digest = SHA256.hash(data: html[start..<end])
                let source = "'sha256-\(Data(digest).base64EncodedString())'"
                if !hashes.contains(source) { hashes.append(source) }
            }
            i = end
        }
        return hashes
    }

    /// Whether a start tag's attribute text (lowercased, quotes kept) names `name`.
    static func hasAttribute(_ text: [UInt8], _ name: String) -> Bool {
        var quote: UInt8 = 0
        var word: [UInt8] = []
        var words: [[UInt8]] = []
        for b in text {
            if quote != 0 { if b == quote { quote = 0 }; continue }
            if b == 0x22 || b == 0x27 { quote = b; continue }
            if b == 0x20 || b == 0x09 || b == 0x0a || b == 0x0c || b == 0x0d || b == UInt8(ascii: "=") || b == UInt8(ascii: "/") {
                if !word.isEmpty { words.append(word); word = [] }
                continue
            }
            word.append(b)
        }
        if !word.isEmpty { words.append(word) }
        return words.contains { $0.elementsEqual(name.utf8) }
    }

    /// `policy` with `hashes` allowed as script sources: added to
    /// script-src (and script-src-elem), or, when scripts fall back to
    /// default-src, a script-src made of its sources and the hashes. A
    /// policy that already allows inline scripts ('unsafe-inline', which a
    /// hash would switch off) or none ('none') is left as it is.
    public static func policy(_ policy: String, allowingScripts hashes: [String]) -> String {
        guard !hashes.isEmpty else { return policy }
        var directives = policy.split(separator: ";").map { String($0).trimmingWhitespace() }.filter { !$0.isEmpty }
        func name(_ d: String) -> String { String(d.split(separator: " ").first ?? "").lowercased() }
        func open(_ d: String) -> Bool {
            let l = d.lowercased()
            return !l.contains("'unsafe-inline'") && !l.contains("'none'")
        }
        var found = false
        for i in directives.indices where ["script-src", "script-src-elem"].contains(name(directives[i])) {
            found = true
            if open(directives[i]) { directives[i] += " " + hashes.joined(separator: " ") }
        }
        if !found, let d = directives.first(where: { name($0) == "default-src" }), open(d) {
            directives.append("script-src" + d.dropFirst("default-src".count) + " " + hashes.joined(separator: " "))
        }
        return directives.joined(separator: "; ")
    }

    // MARK: helpers

    /// RFC 9110 tchar.
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
             UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
             UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): true
        default: false
        }
    }

    static func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var s = s
        while let f = s.first, f == 0x20 || f == 9 { s.removeFirst() }
        while let l = s.last, l == 0x20 || l == 9 { s.removeLast() }
        return s
    }

    /// A header value as a refusal may quote it: printable ASCII, at most 100 characters.
    static func shown(_ value: [UInt8]) -> String {
        let printable = value.prefix(100).map { $0 >= 0x20 && $0 < 0x7f ? Character(Unicode.Scalar($0)) : "?" }
        return String(printable) + (value.count > 100 ? "..." : "")
    }

    /// A complete short response: text/plain, never sniffed as anything else.
    public static func plainResponse(status: Int, _ message: String) -> [UInt8] {
        let reason = switch status {
        case 100: "Continue"
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 408: "Request Timeout"
        case 411: "Length Required"
        case 417: "Expectation Failed"
        case 421: "Misdirected Request"
        case 431: "Request Header Fields Too Large"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Error"
        }
        let body = "\(status) \(reason)\n\n\(message)\n"
        return Array(("HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"
                      + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)").utf8)
    }
}

/// How many connections each uid holds: a uid at its cap is refused, so no
/// local user can take the slots another one needs.
public final class ConnectionQuota: @unchecked Sendable {
    private let condition = Condition()
    private var counts: [UInt32: Int] = [:]
    public let perKey: Int

    public init(perKey: Int) { self.perKey = perKey }

    /// Takes a slot for `key` (a uid; `UInt32.max` for a peer without one).
    public func admit(_ key: UInt32) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let n = counts[key, default: 0]
        guard n < perKey else { return false }
        counts[key] = n + 1
        return true
    }

    public func release(_ key: UInt32) {
        condition.lock()
        defer { condition.unlock() }
        let n = counts[key, default: 0] - 1
        counts[key] = n > 0 ? n : nil
    }

    public func count(_ key: UInt32) -> Int {
        condition.lock()
        defer { condition.unlock() }
        return counts[key, default: 0]
    }
}
