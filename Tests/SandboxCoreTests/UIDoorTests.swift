import SandboxCore
import Testing
import SandboxOS
@testable import SandboxUI
@testable import SandboxConfig

@Suite("the UI door: Host, Origin, framing, CSP and the per-user cap")
struct UIDoorTests {
    static let port = 8188
    static let door = UIDoor(allowedUIDs: [1000],
                             authorities: UIDoor.authorities(listen: "127.0.0.1", port: port, uiHosts: ["comfy.test:9000", "GPU-Box.lan"]),
                             csp: "default-src 'self'")

    func request(_ lines: [String], body: String = "") -> [UInt8] {
        Array((lines.joined(separator: "\r\n") + "\r\n\r\n" + body).utf8)
    }

    func judge(_ lines: [String]) -> UIDoor.Verdict { Self.door.judge(request(lines)) }

    func status(_ lines: [String]) -> Int {
        switch judge(lines) {
        case .forward: 200
        case .refuse(let r): r.status
        }
    }

    @Test("authorities: names lowercased, IP literals canonical, ports explicit or defaulted; junk refused", arguments: [
        ("localhost:8188", "localhost:8188"), ("LOCALHOST:8188", "localhost:8188"), ("127.0.0.1", "127.0.0.1:80"),
        ("[::1]:8188", "[::1]:8188"), ("[0:0:0:0:0:0:0:1]:8188", "[::1]:8188"), ("gpu-box.lan", "gpu-box.lan:80"),
        ("my_host.internal:9000", "my_host.internal:9000"),
    ])
    func authorityParsing(_ text: String, _ expected: String) {
        #expect(UIAuthority.parse(text, defaultPort: 80)?.description == expected)
    }

    @Test("authorities that are not one refuse to parse", arguments: [
        "", "evil.example:", "evil.example:0", "evil.example:65536", "a:b:c", "::1", "[::1", "[zz]:80", "user@host:80",
        "host/path", "host name", "-lead.example", "127.1", "1.2.3.4.5", "host:+80", "h\u{0}st",
    ])
    func authorityJunk(_ text: String) {
        #expect(UIAuthority.parse(text, defaultPort: 80) == nil, "\(text.debugDescription)")
    }

    @Test("who: root and the listed uids; nobody else, and no unknown peer")
    func admits() {
        #expect(Self.door.admits(uid: 0))
        #expect(Self.door.admits(uid: 1000))
        #expect(!Self.door.admits(uid: 1001))
        #expect(!Self.door.admits(uid: nil), "a peer whose owner cannot be found is refused")
        let anyone = UIDoor(allowedUIDs: nil, authorities: [], csp: "")
        #expect(anyone.admits(uid: 1001) && anyone.admits(uid: nil))
        #expect(Self.door.refusal(uid: 1001).status == 403)
        #expect(String(decoding: Self.door.refusal(uid: 1001).response, as: UTF8.self).contains("launcher.ui_users"))
    }

    @Test("where from: the Host must name the UI (else 421)", arguments: [
        ("127.0.0.1:8188", 200), ("localhost:8188", 200), ("[::1]:8188", 200), ("comfy.test:9000", 200), ("gpu-box.lan:8188", 200),
        ("evil.example", 421), ("evil.example:8188", 421), ("127.0.0.1:1", 421), ("127.0.0.1", 421), ("comfy.test:8188", 421),
        ("localhost.:8188", 421), ("127.0.0.1:8188 ", 200),
    ])
    func host(_ host: String, _ expected: Int) {
        #expect(status(["GET /status HTTP/1.1", "Host: \(host)"]) == expected)
    }

    @Test("a missing or doubled Host is refused")
    func hostMissingOrDoubled() {
        #expect(status(["GET / HTTP/1.0"]) == 421)
        #expect(status(["GET / HTTP/1.1", "Host: 127.0.0.1:8188", "Host: evil.example"]) == 400)
    }

    @Test("Origin: requests that change things and WebSocket upgrades need none or one of the UI's (else 403)", arguments: [
        ("POST", nil, 200), ("POST", "http://127.0.0.1:8188", 200), ("POST", "http://comfy.test:9000", 200),
        ("POST", "http://evil.example", 403), ("POST", "null", 403), ("POST", "http://localhost:3000", 403),
        ("POST", "https://127.0.0.1:8188", 200), ("POST", "file://", 403), ("PUT", "http://evil.example", 403),
        ("DELETE", "http://evil.example", 403), ("PATCH", "http://evil.example", 403), ("PROPFIND", "http://evil.example", 403),
        ("GET", "http://evil.example", 200), ("OPTIONS", "http://evil.example", 200),
    ] as [(String, String?, Int)])
    func origin(_ method: String, _ origin: String?, _ expected: Int) {
        var lines = ["\(method) /prompt HTTP/1.1", "Host: 127.0.0.1:8188", "Content-Length: 0"]
        if let origin { lines.append("Origin: \(origin)") }
        #expect(status(lines) == expected)
    }

    @Test("a WebSocket upgrade from another page is refused; from the UI's own it passes unchanged")
    func websocket() throws {
        let ws = ["GET /ws HTTP/1.1", "Host: 127.0.0.1:8188", "Upgrade: websocket", "Connection: Upgrade",
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
        #expect(status(ws + ["Origin: http://evil.example:8188"]) == 403)
        guard case .forward(let r) = judge(ws + ["Origin: http://127.0.0.1:8188"]) else { Issue.record("refused"); return }
        #expect(r.upgrade)
        let head = String(decoding: r.head, as: UTF8.self)
        #expect(head.contains("Connection: Upgrade\r\n") && head.contains("Upgrade: websocket\r\n") && !head.contains("Connection: close"))
    }

    @Test("DNS rebinding: the page's own name in Host and Origin is refused at the Host")
    func rebinding() {
        #expect(status(["POST /prompt HTTP/1.1", "Host: evil.example:8188", "Origin: http://evil.example:8188", "Content-Length: 2"]) == 421)
    }

    @Test("fetch metadata: another site's page is refused unless it navigates to the UI", arguments: [
        ("GET", "cross-site", "no-cors", "image", 403), ("GET", "same-site", "cors", "empty", 403),
        ("GET", "cross-site", "navigate", "document", 200), ("POST", "cross-site", "navigate", "document", 403),
        ("GET", "same-origin", "cors", "empty", 200), ("GET", "none", "navigate", "document", 200),
        ("GET", "cross-site", "navigate", "iframe", 403),
    ])
    func fetchMetadata(_ method: String, _ site: String, _ mode: String, _ dest: String, _ expected: Int) {
        #expect(status(["\(method) / HTTP/1.1", "Host: 127.0.0.1:8188", "Sec-Fetch-Site: \(site)", "Sec-Fetch-Mode: \(mode)",
                        "Sec-Fetch-Dest: \(dest)", "Content-Length: 0"]) == expected)
    }

    @Test("framing the relay and ComfyUI could read differently is refused", arguments: [
        (["POST /prompt HTTP/1.1", "Host: 127.0.0.1:8188", "Transfer-Encoding: chunked"], 411),
        (["POST /prompt HTTP/1.1", "Host: 127.0.0.1:8188", "Content-Length: 5", "Transfer-Encoding: chunked"], 411),
        (["POST /prompt HTTP/1.1", "Host: 127.0.0.1:8188", "Content-Length: 5", "Content-Length: 5"], 400),
        (["POST /prompt HTTP/1.1", "Host: 127.0.0.1:8188", "Content-Length: +5"], 400),
        (["POST /prompt HTTP/1.1", "Host: 127.0.0.1:8188", "Content-Length: 5, 5"], 400),
        (["GET / HTTP/1.1", "Host : 127.0.0.1:8188"], 400),
        (["GET / HTTP/1.1", "Host: 127.0.0.1:8188", " folded: line"], 400),
        (["GET http://evil.example/ HTTP/1.1", "Host: 127.0.0.1:8188"], 400),
        (["CONNECT 127.0.0.1:8188 HTTP/1.1", "Host: 127.0.0.1:8188"], 400),
        (["GET / HTTP/2.0", "Host: 127.0.0.1:8188"], 400),
        (["GET /  HTTP/1.1", "Host: 127.0.0.1:8188"], 400),
        (["GET / HTTP/1.1", "Host: 127.0.0.1:8188", "X: a\u{0}b"], 400),
        (["GET / HTTP/1.1", "Host: 127.0.0.1:8188", "Expect: something"], 417),
    ])
    func framing(_ lines: [String], _ expected: Int) {
        #expect(status(lines) == expected)
    }

    @Test("bare LF line ends are refused, not guessed at")
    func bareLF() {
        let head = Array("GET / HTTP/1.1\nHost: 127.0.0.1:8188\r\n\r\n".utf8)
        guard case .refuse(let r) = Self.door.judge(head) else { Issue.record("passed"); return }
        #expect(r.status == 400)
    }

    @Test("what passes: one request per connection (Connection: close), Expect answered by the relay, the body's length known")
    func rewritten() throws {
        guard case .forward(let r) = judge(["POST /prompt HTTP/1.1", "Host: 127.0.0.1:8188", "Connection: keep-alive", "Keep-Alive: timeout=5",
                                            "Expect: 100-continue", "Content-Length: 12", "Origin: http://localhost:8188"]) else {
            Issue.record("refused"); return
        }
        let head = String(decoding: r.head, as: UTF8.self)
        #expect(head == "POST /prompt HTTP/1.1\r\nHost: 127.0.0.1:8188\r\nContent-Length: 12\r\nOrigin: http://localhost:8188\r\nConnection: close\r\n\r\n")
        #expect(r.bodyLength == 12 && r.expectContinue && !r.upgrade)
    }

    // MARK: responses

    func forwardGET(_ method: String = "GET") -> UIDoor.Request {
        guard case .forward(let r) = judge(["\(method) / HTTP/1.1", "Host: 127.0.0.1:8188"]) else { fatalError() }
        return r
    }

    func headers(_ r: UIDoor.Response) -> [String] {
        String(decoding: r.head, as: UTF8.self).components(separatedBy: "\r\n")
    }

    @Test("every response carries the relay's CSP, first, in place of any the sandbox sent; its reporting headers are dropped")
    func csp() throws {
        let upstream = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Security-Policy: script-src *\r\n"
            + "content-security-policy-report-only: default-src 'none'; report-uri http://evil.example/\r\n"
            + "Report-To: {\"url\":\"http://evil.example\"}\r\nReporting-Endpoints: a=\"http://evil.example\"\r\nNEL: {}\r\n"
            + "X-DNS-Prefetch-Control: on\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\n"
        let r = try #require(Self.door.response(Array(upstream.utf8), to: forwardGET()))
        let h = headers(r)
        #expect(h[0] == "HTTP/1.1 200 OK")
        #expect(h[1] == "Content-Security-Policy: default-src 'self'")
        #expect(h.filter { $0.lowercased().hasPrefix("content-security-policy") }.count == 1)
        for gone in ["report-to", "reporting-endpoints", "nel:", "connection: keep-alive", "x-dns-prefetch-control: on"] {
            #expect(!h.contains { $0.lowercased().hasPrefix(gone) }, "\(gone) still there: \(h)")
        }
        #expect(h.contains("Connection: close") && h.contains("X-DNS-Prefetch-Control: off") && h.contains("Content-Type: text/html"))
        #expect(r.body == .length(5) && !r.tunnel)
    }

    @Test("a head with bare LFs is read as a browser reads it, and the CSP still lands inside it")
    func bareLFResponse() throws {
        let upstream = "HTTP/1.1 200 OK\nContent-Type: text/html\nContent-Length: 3\n\n"
        let r = try #require(Self.door.response(Array(upstream.utf8), to: forwardGET()))
        let text = String(decoding: r.head, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\nContent-Security-Policy: default-src 'self'\r\n"))
        #expect(text.hasSuffix("Content-Type: text/html\r\nContent-Length: 3\r\n\r\n"))
        #expect(!text.contains("\n\n"))
    }

    @Test("header lines a browser could read otherwise (a CR inside, no colon, folded) are dropped")
    func hostileResponseLines() throws {
        let upstream = "HTTP/1.1 200 OK\r\nX-A: a\rContent-Security-Policy: none\r\nno colon here\r\n folded: x\r\nX-Ok: yes\r\n\r\n"
        let r = try #require(Self.door.response(Array(upstream.utf8), to: forwardGET()))
        let h = headers(r)
        #expect(h.contains("X-Ok: yes"))
        #expect(!h.contains { $0.contains("X-A") || $0.contains("no colon") || $0.contains("folded") })
    }

    @Test("body ends: length, none (HEAD, 204, 304, 1xx), or the close (chunked, no length, a bad length)")
    func bodyEnds() throws {
        func end(_ status: String, _ extra: String = "", method: String = "GET") throws -> UIDoor.BodyEnd {
            try #require(Self.door.response(Array("HTTP/1.1 \(status)\r\n\(extra)\r\n".utf8), to: forwardGET(method))).body
        }
        #expect(try end("200 OK", "Content-Length: 7\r\n") == .length(7))
        #expect(try end("200 OK", "Content-Length: 7\r\n", method: "HEAD") == .none)
        #expect(try end("204 No Content") == .none)
        #expect(try end("304 Not Modified", "Content-Length: 7\r\n") == .none)
        #expect(try end("100 Continue") == .none)
        #expect(try end("200 OK", "Transfer-Encoding: chunked\r\n") == .close)
        #expect(try end("200 OK", "Content-Length: 7\r\nTransfer-Encoding: chunked\r\n") == .close)
        #expect(try end("200 OK", "Content-Length: 7\r\nContent-Length: 8\r\n") == .close)
        #expect(try end("200 OK") == .close)
    }

    @Test("not a response, or a 101 nobody asked for: nil (502)")
    func notAResponse() {
        for text in ["", "garbage\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/2 200\r\n\r\n", "HTTP/1.1 20x OK\r\n\r\n"] {
            #expect(Self.door.response(Array(text.utf8), to: forwardGET()) == nil, "\(text.debugDescription)")
        }
        #expect(Self.door.response(Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".utf8), to: forwardGET()) == nil)
    }

    @Test("a 101 to an upgrade keeps its Connection and Upgrade and becomes a tunnel")
    func tunnel() throws {
        guard case .forward(let ws) = judge(["GET /ws HTTP/1.1", "Host: 127.0.0.1:8188", "Upgrade: websocket", "Connection: Upgrade"]) else {
            Issue.record("refused"); return
        }
        let r = try #require(Self.door.response(Array("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".utf8), to: ws))
        #expect(r.tunnel && r.body == .none)
        let h = headers(r)
        #expect(h.contains("Upgrade: websocket") && h.contains("Connection: Upgrade") && !h.contains("Connection: close"))
    }

    @Test("inline scripts are hashed as a browser hashes them; scripts with src, and script-like text, are not")
    func inlineHashes() {
        let html = """
        <!doctype html><head><script type="importmap">{"imports": {"vue": "./vue.js"}}</script>
        <SCRIPT>alert(1)</SCRIPT><script type="module" crossorigin src="./assets/index.js"></script>
        <script data-x="a>b" >x()</script><scripty>no</scripty><script>alert(1)</script>
        """
        let hashes = UIDoor.inlineScriptHashes(Array(html.utf8))
        // echo -n '{"imports": {"vue": "./vue.js"}}' | openssl dgst -sha256 -binary | base64, and so on.
        // Each once, in order: the import map, alert(1) (twice in the page), x().
        #expect(hashes == ["'sha256-j/TPfaHC1jBOkLAJovjOgw77vqgMJHaEgxHeOjrbASk='", "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='",
                           "'sha256-D6IGS8VMvCoyaR/l0h9tERrBTATY01CoPS7l6xDv0kI='"], "\(hashes)")
    }

    @Test("hashes join script-src (or a script-src made from default-src); a policy that allows inline or no scripts stays", arguments: [
        ("default-src 'self'; script-src 'self'; img-src 'self'", "default-src 'self'; script-src 'self' 'sha256-A'; img-src 'self'"),
        ("default-src 'self' data:", "default-src 'self' data:; script-src 'self' data: 'sha256-A'"),
        ("script-src 'self'; script-src-elem 'self'", "script-src 'self' 'sha256-A'; script-src-elem 'self' 'sha256-A'"),
        ("script-src 'self' 'unsafe-inline'", "script-src 'self' 'unsafe-inline'"),
        ("script-src 'none'", "script-src 'none'"),
        ("img-src 'self'", "img-src 'self'"),
    ])
    func policyWithHashes(_ policy: String, _ expected: String) {
        #expect(UIDoor.policy(policy, allowingScripts: ["'sha256-A'"]) == expected)
        #expect(UIDoor.policy(policy, allowingScripts: []) == policy)
    }

    @Test("the response to an HTML page says it may be read whole; a compressed one may not")
    func plainHTML() throws {
        let html = try #require(Self.door.response(Array("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 9\r\n\r\n".utf8), to: forwardGET()))
        #expect(html.plainHTML)
        let gz = try #require(Self.door.response(Array("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n\r\n".utf8), to: forwardGET()))
        #expect(!gz.plainHTML)
        let js = try #require(Self.door.response(Array("HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\n\r\n".utf8), to: forwardGET()))
        #expect(!js.plainHTML)
        let hashed = try #require(Self.door.response(Array("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n".utf8), to: forwardGET(),
                                                     scriptHashes: ["'sha256-A'"]))
        #expect(String(decoding: hashed.head, as: UTF8.self).contains("Content-Security-Policy: default-src 'self'; script-src 'self' 'sha256-A'\r\n"))
    }

    @Test("no CSP header at all when ui_csp is empty")
    func cspOff() throws {
        let door = UIDoor(allowedUIDs: nil, authorities: Self.door.authorities, csp: "")
        let r = try #require(door.response(Array("HTTP/1.1 200 OK\r\nContent-Security-Policy: x\r\n\r\n".utf8), to: forwardGET()))
        #expect(!headers(r).contains { $0.lowercased().hasPrefix("content-security-policy") })
    }

    @Test("the per-user cap: each uid its own share; a slot comes back when released")
    func quota() {
        let q = ConnectionQuota(perKey: 3)
        #expect((0..<3).allSatisfy { _ in q.admit(1001) })
        #expect(!q.admit(1001), "the fourth of one user is refused")
        #expect(q.admit(1000), "another user is not affected")
        q.release(1001)
        #expect(q.admit(1001))
        #expect(q.count(1001) == 3 && q.count(1000) == 1)
    }
}
