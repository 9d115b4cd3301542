import Foundation
import SandboxCore
import Testing
import SandboxOS

/// launcher.egress against a fake internet (Support/FakeInternet.swift):
/// every attempt runs inside `comfy-sandbox run`, and every refusal must be
/// for its own reason, in the client's answer and in launcher.log.
@Suite("egress: the proxy to launcher.egress, against a fake internet", .serialized)
struct EgressTests {
    static let web = FakeInternet.webAddress
    /// What the fake DNS answers.
    static let table: [String: [String]] = [
        "allowed.test": [web], "other.test": [web], "a.cdn.test": [web], "b.a.cdn.test": [web], "cdn.test": [web],
        "plain.test": [web], "loop.test": ["127.0.0.1"], "private.test": ["10.1.2.3"], "metadata.test": ["169.254.169.254"],
        "mixed.test": [web, "127.0.0.1"], "cgnat.test": ["100.64.0.1"], "self.test": ["203.0.113.1"],
    ]
    static let egress = ["allowed.test", "*.cdn.test", "plain.test:80", "loop.test", "private.test", "metadata.test",
                         "mixed.test", "cgnat.test", "self.test"]

    /// Attempts made from inside: each prints `NAME<TAB>OUTCOME`.
    static let probe = #"""
    import json, os, socket, ssl, sys, urllib.request, urllib.error
    CA = sys.argv[1]
    P = ('127.0.0.1', 3128)
    out = {}
    def note(name, value): out[name] = str(value)
    def raw(head, name, then=None):
        try:
            s = socket.create_connection(P, timeout=10)
            s.sendall(head.encode())
            data = b''
            while b'\r\n\r\n' not in data:
                chunk = s.recv(4096)
                if not chunk: break
                data += chunk
            first = data.split(b'\r\n', 1)[0].decode(errors='replace')
            body = data.split(b'\r\n\r\n', 1)[1] if b'\r\n\r\n' in data else b''
            if then and first.startswith('HTTP/1.1 200'):
                note(name, then(s))
            else:
                try:
                    s.settimeout(5)
                    while True:
                        c = s.recv(4096)
                        if not c: break
                        body += c
                except Exception: pass
                note(name, first + ' | ' + body.decode(errors='replace').strip())
            s.close()
        except Exception as e:
            note(name, 'error ' + repr(e))
    def tls(server_name):
        def go(s):
            ctx = ssl.create_default_context(cafile=CA)
            ctx.check_hostname = False
            try:
                t = ctx.wrap_socket(s, server_hostname=server_name)
                t.sendall(b'GET / HTTP/1.1\r\nHost: ' + server_name.encode() + b'\r\nConnection: close\r\n\r\n')
                data = b''
                while True:
                    c = t.recv(4096)
                    if not c: break
                    data += c
                return 'TLS OK ' + data.decode(errors='replace').split('\r\n\r\n', 1)[-1].strip()
            except Exception as e:
                return 'TLS FAILED ' + type(e).__name__
        return go
    def plain_after_connect(s):
        s.sendall(b'GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n')
        s.settimeout(5)
        try:
            d = s.recv(4096)
            return 'answered ' + repr(d[:40]) if d else 'closed'
        except Exception as e:
            return 'closed ' + type(e).__name__
    def url(name, u):
        try:
            ctx = ssl.create_default_context(cafile=CA)
            with urllib.request.urlopen(u, timeout=15, context=ctx) as r:
                note(name, '%d %s' % (r.status, r.read().decode().strip()))
        except urllib.error.HTTPError as e:
            note(name, '%d %s' % (e.code, e.read().decode().strip()))
        except Exception as e:
            note(name, 'error ' + repr(e))
    for k in ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy', 'NO_PROXY', 'no_proxy', 'HF_HUB_OFFLINE']:
        note('env ' + k, os.environ.get(k))
    url('https allowed', 'https://allowed.test/x')
    url('https wildcard', 'https://a.cdn.test/')
    url('https wildcard deeper', 'https://b.a.cdn.test/')
    url('http allowed', 'http://plain.test/p?q=1')
    url('http not listed', 'http://other.test/')
    raw('CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n', 'sni match', tls('allowed.test'))
    raw('CONNECT allowed.test:443 HTTP/1.1\r\n\r\n', 'sni mismatch', tls('other.test'))
    raw('CONNECT allowed.test:443 HTTP/1.1\r\n\r\n', 'no tls', plain_after_connect)
    raw('CONNECT cdn.test:443 HTTP/1.1\r\n\r\n', 'wildcard apex')
    raw('CONNECT other.test:443 HTTP/1.1\r\n\r\n', 'not listed')
    raw('CONNECT plain.test:443 HTTP/1.1\r\n\r\n', 'listed on another port')
    raw('CONNECT 203.0.113.10:443 HTTP/1.1\r\n\r\n', 'ip literal')
    raw('CONNECT 3405803786:443 HTTP/1.1\r\n\r\n', 'decimal ip literal')
    raw('CONNECT 0xcb.0x0.0x71.0xa:443 HTTP/1.1\r\n\r\n', 'hex ip literal')
    raw('CONNECT [::1]:443 HTTP/1.1\r\n\r\n', 'ipv6 literal')
    raw('GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n', 'metadata literal')
    raw('CONNECT metadata.test:443 HTTP/1.1\r\n\r\n', 'name to metadata')
    raw('CONNECT loop.test:443 HTTP/1.1\r\n\r\n', 'name to loopback')
    raw('CONNECT private.test:443 HTTP/1.1\r\n\r\n', 'name to private')
    raw('CONNECT cgnat.test:443 HTTP/1.1\r\n\r\n', 'name to cgnat')
    raw('CONNECT mixed.test:443 HTTP/1.1\r\n\r\n', 'name to public and loopback')
    raw('CONNECT self.test:443 HTTP/1.1\r\n\r\n', 'name to this host')
    raw('GET http://plain.test/ HTTP/1.1\r\nHost: other.test\r\n\r\n', 'host header mismatch')
    raw('GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n', 'https absolute form')
    # Without the proxy: 443 is not a port the sandbox may connect to at
    # all (Landlock, ABI 4+); 3128 is, and there no route leads out.
    for name, port in (('direct 443', 443), ('direct', 3128)):
        try:
            socket.create_connection(('203.0.113.10', port), timeout=5)
            note(name, 'connected')
        except OSError as e:
            note(name, 'refused ' + (os.strerror(e.errno) if e.errno else repr(e)))
    for k, v in out.items(): print(k + '\t' + v)
    """#

    @Test("allowed names work end to end over HTTPS and HTTP; every other way out is refused for its own reason and logged", .requiresRoot)
    func fakeInternet() throws {
        let w = try LauncherWorld()
        try w.setLauncher(["egress": Self.egress])
        // launcher.log lives in state_dir, which provision makes.
        mkdir(w.world.state, 0o755)
        let net = try FakeInternet(world: w.world, table: Self.table, certNames: ["allowed.test", "other.test", "a.cdn.test", "b.a.cdn.test", "cdn.test"],
                                   caDirectory: w.models)
        defer { net.teardown() }
        try Self.probe.write(toFile: w.models + "/probe.py", atomically: false, encoding: .utf8)
        chmod(w.models + "/probe.py", 0o644)

        let r = try w.world.run(net.argv([World.binary, "run", "--", "/usr/bin/python3", w.models + "/probe.py", net.caPath]),
                                environment: ["COMFY_SANDBOX_CONFIG": w.world.configPath])
        #expect(r.succeeded, "\(r.stderrText)")
        var got: [String: String] = [:]
        for line in r.stdoutText.split(separator: "\n") {
            let parts = line.split(separator: "\t", maxSplits: 1).map(String.init)
            if parts.count == 2 { got[parts[0]] = parts[1] }
        }
        func expect(_ name: String, _ prefix: String, _ contains: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
            let v = got[name] ?? "(missing)"
            #expect(v.hasPrefix(prefix) && (contains.map { v.contains($0) } ?? true), "\(name): \(v)", sourceLocation: sourceLocation)
        }
        // The environment.
        for k in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] { expect("env \(k)", "http://127.0.0.1:3128") }
        expect("env NO_PROXY", "localhost,127.0.0.1")
        expect("env HF_HUB_OFFLINE", "1")
        // What the list allows, end to end (the server says what it was asked).
        expect("https allowed", "200 hello from allowed.test", "sni=allowed.test")
        expect("https wildcard", "200 hello from a.cdn.test", "sni=a.cdn.test")
        expect("https wildcard deeper", "200 hello from b.a.cdn.test")
        expect("http allowed", "200 hello from plain.test", "path=/p?q=1")
        expect("sni match", "TLS OK hello from allowed.test")
        // Refused, each for its reason.
        expect("http not listed", "403", "other.test:80 is not in launcher.egress")
        expect("sni mismatch", "TLS FAILED")
        expect("no tls", "closed")
        expect("wildcard apex", "HTTP/1.1 403", "cdn.test:443 is not in launcher.egress")
        expect("not listed", "HTTP/1.1 403", "other.test:443 is not in launcher.egress")
        expect("listed on another port", "HTTP/1.1 403", "plain.test:443 is not in launcher.egress")
        expect("ip literal", "HTTP/1.1 403", "is an IP address")
        expect("decimal ip literal", "HTTP/1.1 403", "is an IP address")
        expect("hex ip literal", "HTTP/1.1 403", "is an IP address")
        expect("ipv6 literal", "HTTP/1.1 403", "is an IP address")
        expect("metadata literal", "HTTP/1.1 403", "169.254.169.254 is an IP address")
        expect("name to metadata", "HTTP/1.1 403", "the cloud metadata address")
        expect("name to loopback", "HTTP/1.1 403", "127.0.0.1: loopback")
        expect("name to private", "HTTP/1.1 403", "10.1.2.3: private")
        expect("name to cgnat", "HTTP/1.1 403", "shared address space")
        expect("name to public and loopback", "HTTP/1.1 403", "127.0.0.1: loopback")
        // A public-looking address of the host itself (here its veth into
        // the fake internet): every service on 0.0.0.0 would be behind it.
        expect("name to this host", "HTTP/1.1 403", "203.0.113.1: an address of this host itself")
        expect("host header mismatch", "HTTP/1.1 403", "does not name plain.test:80")
        expect("https absolute form", "HTTP/1.1 400", "goes through CONNECT")
        expect("direct", "refused Network is unreachable")
        expect("direct 443", "refused")

        // launcher.log: one line per connection, with the pinned address,
        // the bytes and the reason.
        let log = (try? String(contentsOfFile: w.world.state + "/launcher.log", encoding: .utf8)) ?? ""
        let lines = log.split(separator: "\n").map(String.init).filter { $0.contains(" egress ") }
        func logged(_ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(lines.contains { l in fragments.allSatisfy { l.contains($0) } }, "no log line with \(fragments) in:\n\(lines.joined(separator: "\n"))",
                    sourceLocation: sourceLocation)
        }
        logged("egress allowed CONNECT allowed.test:443", "address=203.0.113.10")
        logged("egress allowed GET plain.test:80", "address=203.0.113.10")
        logged("egress refused CONNECT allowed.test:443", "address=203.0.113.10", "SNI", "other.test")
        logged("egress refused CONNECT allowed.test:443", "a tunnel must start with TLS")
        logged("egress refused CONNECT loop.test:443", "address=127.0.0.1", "loopback")
        logged("egress refused CONNECT other.test:443", "not in launcher.egress")
        logged("egress refused CONNECT 203.0.113.10:443", "IP address")
        #expect(lines.allSatisfy { $0.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ egress (allowed|refused) "#, options: .regularExpression) != nil },
                "\(lines)")
        let allowed = lines.first { $0.contains("allowed CONNECT allowed.test:443") } ?? ""
        #expect(allowed.range(of: #"sent=[1-9]\d* received=[1-9]\d* duration="#, options: .regularExpression) != nil, "\(allowed)")
        // The proxy is gone with the session.
        #expect(World.processes(withArgument: ["egress-proxy"]).isEmpty)
    }

    @Test("check-sandbox with launcher.egress: the allowed host is allowed, SNI mismatch, an unlisted host, an IP literal, 169.254.169.254 and a name resolving to 127.0.0.1 are refused", .requiresRoot)
    func checkSandbox() throws {
        let w = try LauncherWorld()
        try w.setLauncher(["egress": ["allowed.test"]])
        mkdir(w.world.state, 0o755)
        let net = try FakeInternet(world: w.world, table: ["allowed.test": [Self.web]], certNames: ["allowed.test"], caDirectory: w.models)
        defer { net.teardown() }
        let r = try w.world.run(net.argv([World.binary, "check-sandbox", "--json"]), environment: ["COMFY_SANDBOX_CONFIG": w.world.configPath])
        #expect(r.status == 0, "\(r.stdoutText) \(r.stderrText)")
        let report = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        let rows = (report["results"] as? [[String: Any]]) ?? []
        func row(_ attempt: String, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let found = rows.first { $0["attempt"] as? String == attempt }
            #expect(found?["pass"] as? Bool == true && (found?["result"] as? String)?.contains(fragment) == true, "\(attempt): \(String(describing: found))",
                    sourceLocation: sourceLocation)
        }
        row("egress: CONNECT allowed.test:443 (on launcher.egress)", "allowed, connected")
        row("egress: TLS to allowed.test with SNI comfy-sandbox-check.invalid", "closed before a byte went on")
        row("egress: CONNECT comfy-sandbox-check.invalid:443 (not on the list)", "is not in launcher.egress")
        row("egress: CONNECT 1.1.1.1:443 (an IP literal)", "is an IP address")
        row("egress: GET http://169.254.169.254/latest/meta-data/ (cloud metadata)", "is an IP address")
        row("egress: CONNECT localhost:443 (resolves to 127.0.0.1; on the check's list)", "localhost resolves to")
        row("egress: TCP 1.1.1.1:3128 directly, without the proxy", "refused")
        let log = (try? String(contentsOfFile: w.world.state + "/launcher.log", encoding: .utf8)) ?? ""
        #expect(log.contains("egress refused CONNECT allowed.test:443 address=203.0.113.10") && log.contains("comfy-sandbox-check.invalid"), "\(log)")
    }

    @Test("without launcher.egress nothing listens on 127.0.0.1:3128 and HF_HUB_OFFLINE is set; status shows the list", .requiresRoot)
    func withoutList() throws {
        let w = try LauncherWorld()
        let r = try w.python("""
            s = socket.socket()
            try:
                s.connect(('127.0.0.1', 3128)); report(True, 'connected')
            except OSError as e:
                report(False, errno.errorcode.get(e.errno, e.errno))
            print('PROXY', os.environ.get('HTTPS_PROXY'), os.environ.get('HF_HUB_OFFLINE'))
            """)
        #expect(r.stdoutText.contains("BLOCKED ") && r.stdoutText.contains("PROXY None 1"), "\(r.stdoutText) \(r.stderrText)")
        let none = try w.world.comfy(["status"])
        #expect(none.stdoutText.contains("none: loopback only (launcher.egress is empty)"), "\(none.stdoutText)")
        try w.setLauncher(["egress": ["api.comfy.org", "*.huggingface.co", "huggingface.co", "llm.example.com:8443"]])
        let listed = try w.world.comfy(["status"])
        #expect(listed.stdoutText.contains("only to: api.comfy.org:443,80, *.huggingface.co:443,80, huggingface.co:443,80, llm.example.com:8443"),
                "\(listed.stdoutText)")
        #expect(listed.stdoutText.contains("HF_HUB_OFFLINE unset (huggingface.co is listed)"))
    }

    @Test("under the systemd unit (unprivileged) a launcher with launcher.egress refuses to start, naming why", .requiresRoot)
    func unprivilegedRefuses() throws {
        let w = try LauncherWorld()
        try w.setLauncher(["egress": ["api.comfy.org"]])
        let uid = try #require(w.world.uid("comfyui_sandbox")), gid = try #require(w.world.gid("comfyui_sandbox"))
        chmod(w.world.configPath, 0o644)
        let inner = "ip link set lo up && exec setpriv --reuid=\(uid) --regid=\(gid) --clear-groups --inh-caps=-all --bounding-set=-all \(World.binary) run --config \(w.world.configPath) -- /bin/true"
        let r = try w.world.run(["unshare", "--net", "sh", "-c", inner])
        #expect(r.status == 1, "\(r.stderrText)")
        #expect(r.stderrText.contains("launcher.egress lists 1 service(s), but this launcher runs unprivileged"), "\(r.stderrText)")
    }
}
