import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS
@testable import SandboxEgress
@testable import SandboxConfig

@Suite("egress: the list, names, addresses, requests and ClientHellos")
struct EgressUnitTests {
    func rule(_ s: String) -> Egress.Rule? { try? Egress.Rule.parse(s).get() }

    @Test("entries: host is exact, *.host is subdomains only (not the apex), :port narrows; case and a trailing dot do not matter")
    func matching() throws {
        let rules = ["API.Comfy.org.", "*.huggingface.co", "llm.example.com:8443"].compactMap(rule)
        #expect(rules.count == 3)
        let allows = { (h: String, p: UInt16) in Egress.allows(rules, host: h, port: p) }
        #expect(allows("api.comfy.org", 443) && allows("api.comfy.org", 80))
        #expect(!allows("api.comfy.org", 8443), "default ports are 443 and 80 only")
        #expect(!allows("x.api.comfy.org", 443), "an exact entry does not take subdomains")
        #expect(!allows("evilapi.comfy.org", 443) && !allows("comfy.org", 443))
        #expect(allows("cdn-lfs.huggingface.co", 443) && allows("a.b.huggingface.co", 443))
        #expect(!allows("huggingface.co", 443), "*. does not match the apex")
        #expect(!allows("evilhuggingface.co", 443) && !allows("huggingface.co.evil.com", 443))
        #expect(allows("llm.example.com", 8443) && !allows("llm.example.com", 443))
        #expect(Egress.allowsHuggingFace(rules) == false)
        #expect(Egress.allowsHuggingFace(["huggingface.co"].compactMap(rule)))
    }

    @Test("config: launcher.egress entries are checked, with their key path", arguments: [
        (#"{"launcher": {"egress": ["1.2.3.4"]}}"#, "launcher.egress[0]: \"1.2.3.4\" is an IP address"),
        (#"{"launcher": {"egress": ["ok.example.com", "[::1]:443"]}}"#, "launcher.egress[1]:"),
        (#"{"launcher": {"egress": ["2130706433"]}}"#, "launcher.egress[0]: \"2130706433\" is an IP address"),
        (#"{"launcher": {"egress": ["exa mple.com"]}}"#, "launcher.egress[0]: \"exa mple.com\" is not a host name"),
        (#"{"launcher": {"egress": ["bücher.example"]}}"#, "punycode"),
        (#"{"launcher": {"egress": ["*"]}}"#, "launcher.egress[0]:"),
        (#"{"launcher": {"egress": ["*.com"]}}"#, "whole top-level domain"),
        (#"{"launcher": {"egress": ["localhost"]}}"#, "single label"),
        (#"{"launcher": {"egress": ["a.example.com:0"]}}"#, "the port after"),
        (#"{"launcher": {"egress": ["a.example.com:99999"]}}"#, "the port after"),
        (#"{"launcher": {"egress": ["-a.example.com"]}}"#, "hyphen"),
        (#"{"launcher": {"egress": ["a.example.com"], "network": "host"}}"#, "launcher.egress: lists 1 service(s), but launcher.network is host"),
        (#"{"launcher": {"egress": ["a.example.com"], "port": 3128}}"#, "launcher.port: 3128 is where the egress proxy listens"),
    ])
    func configErrors(json: String, message: String) {
        do {
            _ = try ConfigLoader.decode(Data(json.utf8), format: .json, file: "t.json", environment: ["SUDO_USER": "alice"])
            Issue.record("accepted \(json)")
        } catch let e as SandboxError {
            #expect(e.message.contains(message), "\(e.message)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test("config: a good list decodes; the default is empty")
    func configGood() throws {
        let c = try ConfigLoader.decode(Data(#"{"launcher": {"egress": ["api.comfy.org", "*.huggingface.co", "llm.example.com:8443", "xn--bcher-kva.example"]}}"#.utf8),
                                        format: .json, file: "t.json", environment: ["SUDO_USER": "alice"])
        #expect(c.launcher.egress.count == 4)
        #expect(try ConfigLoader.decode(Data("{}".utf8), format: .json, file: "t.json", environment: ["SUDO_USER": "alice"]).launcher.egress == [])
    }

    @Test("names: every IPv4 spelling inet_aton takes, IPv6 and numeric last labels are IP literals", arguments: [
        "1.2.3.4", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1", "[::1]", "::1", "[::ffff:127.0.0.1]", "1.2.3.999", "a.0x1f",
    ])
    func literals(_ s: String) {
        #expect(Egress.normalizeName(s) == .failure(.ipLiteral), "\(s)")
    }

    @Test("names: lowercased, one trailing dot dropped; garbage refused")
    func names() {
        #expect(Egress.normalizeName("Api.Comfy.ORG.") == .success("api.comfy.org"))
        for bad in ["", "a..b", "a b.com", "a_b.com", "-a.com", "a-.com", "é.com", "a.com..", String(repeating: "a", count: 64) + ".com", "a.com/x", "a.com\r\n"] {
            if case .success = Egress.normalizeName(bad) { Issue.record("accepted \(bad.debugDescription)") }
        }
    }

    @Test("addresses: the host's, its networks', the metadata service's and reserved ones are never destinations, in any IPv6 wrapping", arguments: [
        "0.0.0.0", "10.0.0.1", "100.64.0.1", "100.127.255.255", "127.0.0.1", "127.255.0.9", "169.254.169.254", "169.254.1.1", "172.16.0.1",
        "172.31.255.255", "192.0.0.8", "192.168.1.1", "198.18.0.1", "198.19.255.255", "224.0.0.1", "239.1.1.1", "240.0.0.1", "255.255.255.255",
        "::", "::1", "fc00::1", "fd00:ec2::254", "fe80::1", "fec0::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
        "::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "64:ff9b:1::1", "2002:7f00:1::1", "2002:a9fe:a9fe::1", "2001:0:4136:e378::1", "100::1",
    ])
    func forbidden(_ s: String) throws {
        let a = try #require(Egress.Address(s))
        #expect(Egress.forbidden(a) != nil, "\(s)")
    }

    @Test("addresses: public ones and the documentation ranges pass", arguments: [
        "1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.1", "172.15.255.255", "172.32.0.1", "192.0.1.1", "192.0.2.1", "198.17.255.255",
        "198.20.0.1", "198.51.100.7", "203.0.113.10", "223.255.255.255", "2606:4700::1111", "2001:db8::1", "64:ff9b::808:808", "2002:808:808::1",
        "::ffff:8.8.8.8",
    ])
    func allowed(_ s: String) throws {
        let a = try #require(Egress.Address(s))
        #expect(Egress.forbidden(a) == nil, "\(s): \(Egress.forbidden(a) ?? "")")
    }

    @Test("the metadata address is named as such, v4 and v6")
    func metadata() throws {
        #expect(Egress.forbidden(try #require(Egress.Address("169.254.169.254")))?.contains("metadata") == true)
        #expect(Egress.forbidden(try #require(Egress.Address("fd00:ec2::254")))?.contains("metadata") == true)
    }

    func parse(_ s: String) -> Result<Egress.Request, Egress.Refusal> { Egress.parseRequest(Array(s.utf8)) }

    @Test("requests: CONNECT host:port; an absolute http:// request rewritten to origin form with Connection: close")
    func requests() throws {
        #expect(try parse("CONNECT Api.Comfy.org:443 HTTP/1.1\r\n\r\n").get() == .connect(host: "api.comfy.org", port: 443))
        #expect(try parse("CONNECT api.comfy.org:443 HTTP/1.1\r\nHost: api.comfy.org:443\r\nProxy-Connection: keep-alive\r\n\r\n").get()
                == .connect(host: "api.comfy.org", port: 443))
        let r = try parse("GET http://Files.Example.com/a/b?c=d HTTP/1.1\r\nHost: files.example.com\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: x\r\nConnection: keep-alive\r\nUpgrade: websocket\r\nAccept: */*\r\n\r\n").get()
        guard case .http(let m, let h, let p, let head, let n) = r else { Issue.record("\(r)"); return }
        #expect(m == "GET" && h == "files.example.com" && p == 80 && n == 0)
        #expect(String(decoding: head, as: UTF8.self) == "GET /a/b?c=d HTTP/1.1\r\nHost: files.example.com\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        let q = try parse("POST http://x.example.com:8080 HTTP/1.0\r\nContent-Length: 5\r\n\r\n").get()
        guard case .http(_, _, 8080, let head2, 5) = q else { Issue.record("\(q)"); return }
        #expect(String(decoding: head2, as: UTF8.self) == "POST / HTTP/1.1\r\nHost: x.example.com:8080\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
    }

    @Test("requests: what is refused, and with which status", arguments: [
        ("CONNECT 1.2.3.4:443 HTTP/1.1\r\n\r\n", 403, "is an IP address"),
        ("CONNECT [::1]:443 HTTP/1.1\r\n\r\n", 403, "is an IP address"),
        ("CONNECT 017700000001:443 HTTP/1.1\r\n\r\n", 403, "is an IP address"),
        ("CONNECT a.example.com HTTP/1.1\r\n\r\n", 400, "CONNECT needs host:port"),
        ("GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n", 403, "is an IP address"),
        ("GET http://user@a.example.com/ HTTP/1.1\r\n\r\n", 400, "user information"),
        ("GET https://a.example.com/ HTTP/1.1\r\n\r\n", 400, "goes through CONNECT"),
        ("GET /relative HTTP/1.1\r\nHost: a.example.com\r\n\r\n", 400, "absolute http:// URL"),
        ("GET http://a.example.com/ HTTP/1.1\r\nHost: b.example.com\r\n\r\n", 403, "does not name a.example.com:80"),
        ("GET http://a.example.com/ HTTP/1.1\r\nHost: a.example.com\r\nHost: a.example.com\r\n\r\n", 400, "more than one Host"),
        ("POST http://a.example.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411, "Content-Length"),
        ("POST http://a.example.com/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "Content-Length"),
        ("TRACE http://a.example.com/ HTTP/1.1\r\n\r\n", 405, "TRACE is not passed on"),
        ("GET http://a.example.com/ HTTP/1.1\nHost: a.example.com\r\n\r\n", 400, "bare LF"),
        ("GET http://a.example.com/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400, "folded"),
        ("GET http://a.example.com/ HTTP/2\r\n\r\n", 400, "HTTP/1.x"),
    ])
    func refusals(_ head: String, status: Int, reason: String) {
        switch parse(head) {
        case .success(let r): Issue.record("accepted: \(r)")
        case .failure(let f):
            #expect(f.status == status && f.reason.contains(reason), "\(f)")
            #expect(String(decoding: f.response, as: UTF8.self).hasPrefix("HTTP/1.1 \(status) "))
        }
    }

    /// A ClientHello as OpenSSL (Python's ssl) sends it for huggingface.co.
    static let realHello: [UInt8] = {
        let hex = Array("1603010200010001fc0303527c67c1ec15f0730a9be861ec6de466acb2f9ab3ee1c15c236b767bf487a10f20a52f45b3dc51da4e1d13ff81ad93297138cb5b35b7352ce57d2c2ab79fd8c9280024130213031301c02cc030c02bc02fcca9cca8c024c028c023c027009f009e006b006700ff0100018f00000013001100000e68756767696e67666163652e636f000b000403000102000a00160014001d0017001e0019001801000101010201030104002300000016000000170000000d002a0028040305030603080708080809080a080b080408050806040105010601030303010302040205020602002b00050403040303002d00020101003300260024001d0020c13b069a8b1d598045e285bfa1acedb112d209a492f79e86ba7dd9c7abce690b001500df00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000".utf8)
        return stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }()

    /// A minimal ClientHello with the given server_name entries (nil: no extension), in records of at most  bytes.
    static func hello(_ names: [String]?, split: Int = 16384) -> [UInt8] {
        var body: [UInt8] = [3, 3] + [UInt8](repeating: 7, count: 32) + [0] + [0, 2, 0x13, 0x01] + [1, 0]
        if let names {
            var list: [UInt8] = []
            for n in names { list += [0, UInt8(n.utf8.count >> 8), UInt8(n.utf8.count & 0xff)] + Array(n.utf8) }
            let ext: [UInt8] = [UInt8(list.count >> 8), UInt8(list.count & 0xff)] + list
            let all: [UInt8] = [0, 0, UInt8(ext.count >> 8), UInt8(ext.count & 0xff)] + ext
            body += [UInt8(all.count >> 8), UInt8(all.count & 0xff)] + all
        }
        let hs: [UInt8] = [1, 0, UInt8(body.count >> 8), UInt8(body.count & 0xff)] + body
        var out: [UInt8] = []
        var i = 0
        while i < hs.count {
            let part = hs[i..<min(i + split, hs.count)]
            out += [22, 3, 1, UInt8(part.count >> 8), UInt8(part.count & 0xff)] + part
            i += split
        }
        return out
    }

    @Test("ClientHello: the SNI of a real one; across records; byte by byte it asks for more")
    func sni() {
        #expect(Egress.clientHello(Self.realHello) == .name("huggingface.co"))
        #expect(Egress.clientHello(Self.hello(["a.example.com"], split: 7)) == .name("a.example.com"))
        let whole = Self.realHello
        for n in [0, 1, 5, 100, whole.count - 1] { #expect(Egress.clientHello(Array(whole.prefix(n))) == .needMore, "\(n) bytes") }
    }

    @Test("ClientHello: no SNI, two names, not TLS, oversized and malformed ones are told apart")
    func badHellos() {
        #expect(Egress.clientHello(Self.hello(nil)) == .noSNI)
        if case .notTLS = Egress.clientHello(Self.hello(["a.example.com", "b.example.com"])) {} else { Issue.record("two names accepted") }
        if case .notTLS = Egress.clientHello(Array("GET / HTTP/1.1\r\n\r\n".utf8)) {} else { Issue.record("HTTP taken for TLS") }
        if case .notTLS = Egress.clientHello([22, 3, 1, 0x50, 0x00] + [UInt8](repeating: 0, count: 10)) {} else { Issue.record("a 20 KiB record") }
        var broken = Self.realHello
        broken[9] = 0xff   // the ClientHello's version/random shifted: lengths no longer add up
        broken[43] = 0xff  // session id length 255
        if case .notTLS = Egress.clientHello(broken) {} else { Issue.record("malformed accepted") }
    }
}
