import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS
@testable import SandboxConfig

@Suite("config decoding")
struct ConfigDecodingTests {
    func decode(_ json: String, env: [String: String] = [:]) throws -> Config {
        try ConfigLoader.decode(Data(json.utf8), format: .json, file: "test.json", environment: env)
    }

    func error(_ json: String, env: [String: String] = [:]) -> SandboxError? {
        do { _ = try decode(json, env: env); return nil } catch let e as SandboxError { return e } catch { return nil }
    }

    @Test("an empty object takes every default, primary_user from SUDO_USER")
    func defaults() throws {
        let c = try decode("{}", env: ["SUDO_USER": "alice"])
        #expect(c.primaryUser == "alice")
        #expect(c.sharedGroup.members == ["alice"])
        #expect(c.sandboxUser.name == "comfyui_sandbox")
        #expect(c.launcher.port == 8188)
        #expect(c.launcher.network == .loopbackOnly)
        #expect(c.launcher.gpu == .auto)
        #expect(c.launcher.landlock == .enforce)
        #expect(c.shares.count == 4)
        #expect(c.git.allowedProtocols == ["https"])
        #expect(c.models.hfCache == nil)
        #expect(c.launcher.uiUsers == ["alice"], "ui_users defaults to primary_user")
        #expect(c.launcher.uiHosts == [])
        #expect(c.launcher.uiCSP == Config.Launcher.defaultCSP)
        let explicit = try decode(#"{"launcher": {"ui_users": []}}"#, env: ["SUDO_USER": "alice"])
        #expect(explicit.launcher.uiUsers == [], "an explicit empty list stays empty (root only)")
    }

    @Test("launcher.ui_users, ui_hosts and ui_csp are checked", arguments: [
        (#"{"launcher": {"ui_users": ["alice", "*"]}}"#, "launcher.ui_users[1]: \"*\" (anyone"),
        (#"{"launcher": {"ui_users": ["Alice"]}}"#, "launcher.ui_users[0]: \"Alice\" is not a valid"),
        (#"{"launcher": {"ui_hosts": ["http://gpu-box:8188"]}}"#, "launcher.ui_hosts[0]: \"http://gpu-box:8188\" is not a host name"),
        (#"{"launcher": {"ui_hosts": ["gpu-box:0"]}}"#, "launcher.ui_hosts[0]:"),
        (#"{"launcher": {"ui_csp": "default-src 'self'\r\nX-Injected: 1"}}"#, "launcher.ui_csp: must be one line"),
    ])
    func uiKeys(_ json: String, _ expected: String) {
        let e = error(json, env: ["SUDO_USER": "alice"])
        #expect(e?.message.contains(expected) == true, "\(e?.message ?? "no error")")
    }

    @Test("no primary_user and no SUDO_USER is a clear error")
    func noPrimaryUser() {
        let e = error("{}")
        #expect(e?.status == .invalidConfig)
        #expect(e?.message.contains("primary_user") == true)
    }

    @Test("errors name the file and key path", arguments: [
        (#"{"primary_user":"alice","shares":[{"name":"m","path":"/home/alice/m","access":"read-only"},{"name":"o","path":"/home/alice/o","access":"rw"}]}"#,
         #"test.json: shares[1].access: expected "read-only" or "read-write", got "rw""#),
        (#"{"primary_user":"alice","bogus":1}"#, "test.json: bogus: unknown key"),
        (#"{"primary_user":"alice","launcher":{"port":"x"}}"#, "test.json: launcher.port: expected a whole number"),
        (#"{"primary_user":"alice","launcher":{"prot":1}}"#, "test.json: launcher.prot: unknown key"),
        (#"{"primary_user":"alice","custom_nodes":[{"name":"a","repo":"-oProxyCommand=x"}]}"#, "custom_nodes[0].repo"),
        (#"{"primary_user":"alice","custom_nodes":[{"name":"a","repo":"ext::sh -c x"}]}"#, "custom_nodes[0].repo"),
        (#"{"primary_user":"alice","custom_nodes":[{"name":"a","repo":"file:///etc"}]}"#, "never allowed"),
        (#"{"primary_user":"alice","custom_nodes":[{"name":"a","repo":"https://h/x.git","rev":"--upload-pack=x"}]}"#, "custom_nodes[0].rev"),
        (#"{"primary_user":"alice","shares":[{"name":"m","path":"/home/alice/m","mount":"../etc","access":"read-only"}]}"#, "shares[0].mount"),
        (#"{"primary_user":"alice","shares":[{"name":"m","path":"relative","access":"read-only"}]}"#, "shares[0].path: \"relative\" must be an absolute path"),
        (#"{"primary_user":"alice","shares":[{"name":"a","path":"/home/alice/a","access":"read-only"},{"name":"b","path":"/home/alice/a/b","access":"read-only"}]}"#, "shares[1].path"),
        (#"{"primary_user":"alice","shares":[{"name":"a","path":"/etc/x","access":"read-only"}]}"#, "system directory"),
        (#"{"primary_user":"Alice"}"#, "primary_user: \"Alice\" is not a valid"),
        (#"{"primary_user":"alice","launcher":{"listen":"0.0.0.0"}}"#, "ssh -L"),
        (#"{"primary_user":"alice","launcher":{"gpu":"all"}}"#, "launcher.gpu"),
        (#"{"primary_user":"alice","launcher":{"landlock":"maybe"}}"#, "launcher.landlock"),
        (#"{"primary_user":"alice","launcher":{"network":"none"}}"#, "launcher.network"),
        (#"{"primary_user":"alice","git":{"allowed_protocols":["file"]}}"#, "git.allowed_protocols[0]"),
        (#"{"primary_user":"alice","version":2}"#, "version: expected 1"),
    ])
    func errorMessages(json: String, expected: String) {
        let e = error(json)
        #expect(e?.status == .invalidConfig)
        #expect(e?.message.contains(expected) == true, "got: \(e?.message ?? "no error")")
    }

    @Test("plist and JSON with the same keys decode the same")
    func plist() throws {
        let json = #"{"primary_user":"alice","launcher":{"gpu":[0,1],"landlock":"best-effort","seccomp":false}}"#
        let a = try decode(json)
        let obj = try JSONSerialization.jsonObject(with: Data(json.utf8))
        let plist = try PropertyListSerialization.data(fromPropertyList: obj, format: .xml, options: 0)
        let b = try ConfigLoader.decode(plist, format: .plist, file: "t.plist", environment: [:])
        #expect(a == b)
        #expect(b.launcher.gpu == .indexes([0, 1]))
        #expect(b.launcher.landlock == .bestEffort)
        #expect(b.launcher.seccomp == false)
    }
}
