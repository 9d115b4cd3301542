import Foundation
import SandboxCore
import SandboxOS

/// A fake internet made only of the test's own network namespaces: a "host"
/// namespace the launcher runs in (its world's /etc/resolv.conf names the
/// fake DNS server), joined by a veth pair to a "net" namespace holding
/// `fixtures/egress/fakenet.py` (DNS from a table, HTTPS with a certificate
/// from a CA made here by openssl, plain HTTP). Its addresses are in
/// 203.0.113.0/24 (TEST-NET-3, RFC 5737): the proxy's destination checks
/// allow the documentation ranges (no real host or LAN has them), so the
/// tests need no override of those checks, and nothing here can reach a
/// real outside address (the namespaces have no other link).
final class FakeInternet: @unchecked Sendable {
    static let dnsAddress = "203.0.113.53"
    static let webAddress = "203.0.113.10"
    let id = String(UInt32.random(in: 100_000...999_999))
    var hostNamespace: String { "csx-host-\(id)" }
    var netNamespace: String { "csx-net-\(id)" }
    let dir: String
    /// The CA certificate, for clients inside the sandbox (a readable path).
    let caPath: String

    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/egress/fakenet.py").path
    }

    /// `table`: name -> addresses the DNS server answers; `certNames`: the
    /// names the HTTPS server's certificate carries; `caDirectory`: where
    /// the CA goes (somewhere the sandbox can read).
    init(world: World, table: [String: [String]], certNames: [String], caDirectory: String) throws {
        dir = world.root + "/fakenet"
        caPath = caDirectory + "/fake-ca.pem"
        let tableText = table.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.joined(separator: ","))" }.joined(separator: ";")
        let san = certNames.map { "DNS:\($0)" }.joined(separator: ",")
        let h = hostNamespace, n = netNamespace
        let script = """
        set -e
        mkdir -p \(dir) && cd \(dir)
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=comfy-sandbox-test-CA -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=\(certNames[0]) -keyout web.key -out web.csr 2>/dev/null
        printf 'subjectAltName=\(san)\\n' > ext
        openssl x509 -req -in web.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out web.pem 2>/dev/null
        cp ca.pem \(caPath) && chmod 644 \(caPath)
        ip netns add \(h)
        ip netns add \(n)
        ip link add csh\(id) type veth peer name csn\(id)
        ip link set csh\(id) netns \(h)
        ip link set csn\(id) netns \(n)
        ip -n \(h) link set lo up
        ip -n \(n) link set lo up
        ip -n \(h) addr add 203.0.113.1/24 dev csh\(id)
        ip -n \(n) addr add \(Self.webAddress)/24 dev csn\(id)
        ip -n \(n) addr add \(Self.dnsAddress)/24 dev csn\(id)
        ip -n \(h) link set csh\(id) up
        ip -n \(n) link set csn\(id) up
        ip netns exec \(n) setsid python3 \(Self.script) \(Self.dnsAddress) \(Self.webAddress) web.pem web.key '\(tableText)' > server.log 2>&1 < /dev/null &
        for i in $(seq 50); do grep -q READY server.log && break; sleep 0.1; done
        grep -q READY server.log
        """
        let r = try World.sh(script)
        guard r.succeeded else {
            _ = try? World.sh("cat \(dir)/server.log >&2")
            teardown()
            throw SandboxError.failure("fake internet: \(r.stderrText)")
        }
        // The world resolves through the fake DNS server, by files then DNS only.
        try "nameserver \(Self.dnsAddress)\noptions timeout:2 attempts:1\n".write(toFile: world.etc + "/resolv.conf.cs", atomically: false, encoding: .utf8)
        _ = try World.sh("rm -f \(world.etc)/resolv.conf && mv \(world.etc)/resolv.conf.cs \(world.etc)/resolv.conf && printf 'hosts: files dns\\n' > \(world.etc)/nsswitch.conf.cs && cat \(world.etc)/nsswitch.conf | grep -v '^hosts:' >> \(world.etc)/nsswitch.conf.cs && mv \(world.etc)/nsswitch.conf.cs \(world.etc)/nsswitch.conf")
    }

    /// `argv` run in the world, in the fake host's network namespace.
    func argv(_ command: [String]) -> [String] {
        ["/usr/bin/nsenter", "--net=/run/netns/\(hostNamespace)"] + command
    }

    func teardown() {
        // Only what this test started: the processes of its own namespace.
        _ = try? World.sh("for p in $(ip netns pids \(netNamespace) 2>/dev/null); do kill -9 $p; done; ip netns del \(netNamespace) 2>/dev/null; ip netns del \(hostNamespace) 2>/dev/null; true")
    }

    deinit { teardown() }
}
