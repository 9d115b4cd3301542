import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS
@testable import SandboxConfig

/// ConfigJSON is a fast path in front of JSONDecoder: whatever it returns must
/// be exactly what JSONDecoder gives for the same bytes, and whatever it
/// refuses JSONDecoder decides. These tests hold it to that on a config using
/// every key and on thousands of damaged variants of it.
@Suite("config JSON fast path")
struct ConfigJSONTests {
    static let env = ["SUDO_USER": "alice"]

    /// A config that sets every key the model has, most away from the default.
    static let full = #"""
    {
      "version": 1,
      "primary_user": "jörg",
      "sandbox_user": { "name": "sb", "home": "/srv/sb home" },
      "shared_group": { "name": "grp", "members": ["jörg", "bob"] },
      "state_dir": "/var/lib/cs",
      "comfyui": { "repo": "ssh://git@example.org/c.git", "rev": "0123abcd", "path": "/opt/c",
                   "python": "/opt/py/bin/python3", "install_requirements": false, "pip_args": ["--index-url=https://x/simple", "-q"] },
      "shares": [
        { "name": "models", "path": "/data/models", "access": "read-only" },
        { "name": "out", "path": "/data/out \"quoted\" \\ back\/slash\ttab", "mount": "output/x", "access": "read-write" }
      ],
      "custom_nodes": [
        { "name": "a", "repo": "https://example.org/a.git", "rev": "v1", "enabled": false, "writable": true,
          "install_requirements": true, "note": "line\nbreak", "submodules": true },
        { "name": "b", "repo": "https://example.org/b.git" }
      ],
      "git": { "allowed_protocols": ["https", "ssh"] },
      "launcher": { "listen": "::1", "port": 0, "network": "host", "gpu": [0, 2], "seccomp": false,
                    "landlock": "best-effort", "ram_temp": false, "limits": { "nofile": 18446744073709551615, "nproc": 64 },
                    "extra_args": ["--lowvram"], "allow_remote_listen": true, "ui_users": ["jörg", "bob"],
                    "ui_hosts": ["comfy.test:9000", "[::1]:9001"], "ui_csp": "default-src 'none'" },
      "models": { "hf_cache": "/home/jörg/.cache/huggingface/hub",
                  "links": [ { "repo": "org/name", "file": "f.safetensors", "dir": "checkpoints", "rename": "g", "revision": "main" } ] }
    }
    """#

    func slow(_ data: Data) -> Config? {
        let d = JSONDecoder()
        d.userInfo[.configEnvironment] = Self.env
        return try? d.decode(Config.self, from: data)
    }

    func fast(_ data: Data) -> Config? { ConfigJSON.decode(data, environment: Self.env) }

    @Test("the fast path takes the example config, the full config and {} and gives JSONDecoder's value")
    func takesCommonConfigs() throws {
        let example = try Data(contentsOf: ExampleConfigTests.configDir.appendingPathComponent("comfy-sandbox.json"))
        for data in [example, Data(Self.full.utf8), Data("{}".utf8), Data(" {\n}\t".utf8)] {
            let f = try #require(fast(data), "fast path refused \(String(decoding: data, as: UTF8.self))")
            #expect(f == slow(data))
        }
        #expect(fast(Data(Self.full.utf8))?.primaryUser == "jörg")
        #expect(fast(Data("{}".utf8))?.primaryUser == "alice")
    }

    /// The string reader is the one import-snapshot's Document parser uses
    /// (JSONString), \u escapes and surrogate pairs included.
    @Test("\\u escapes give JSONDecoder's value", arguments: [
        #"{"primary_user": "\u0061lice"}"#,
        #"{"primary_user": "j\u00f6rg"}"#,
        #"{"primary_user": "a\ud83d\ude00b"}"#,
        #"{"primary_user": "\u00E9\n\t\/"}"#,
    ])
    func takesUnicodeEscapes(_ text: String) throws {
        let f = try #require(fast(Data(text.utf8)), "fast path refused \(text)")
        #expect(f == slow(Data(text.utf8)))
    }

    @Test("what the fast path leaves to JSONDecoder", arguments: [
        #"{"primary_user": "\ud83dx"}"#,              // half a surrogate pair
        #"{"primary_user": "\ude00"}"#,               // the other half alone
        #"{"primary_user": "\u00g1"}"#,               // not hex
        #"{"version": 1.0}"#,                          // fraction
        #"{"version": 1e0}"#,                          // exponent
        #"{"version": 01}"#,                           // leading zero (invalid JSON)
        #"{"version": 1, "version": 1}"#,              // duplicate key
        "\u{FEFF}{}",                                  // byte-order mark
        #"{"primary_user": "a\qb"}"#,                  // invalid escape
        #"{"primary_user": "a"#,                       // truncated
        #"{} {}"#,                                     // trailing content
        #"{"launcher": {"limits": {"nproc": -0}}}"#,   // minus on an unsigned field
        #"{"version": 99999999999999999999}"#,         // out of range
    ])
    func refuses(_ text: String) {
        #expect(fast(Data(text.utf8)) == nil)
    }

    @Test("invalid UTF-8 and raw control characters are left to JSONDecoder")
    func refusesBadBytes() {
        #expect(fast(Data([0x7B, 0x22, 0x70, 0x72, 0x69, 0x6D, 0x61, 0x72, 0x79, 0x5F, 0x75, 0x73, 0x65, 0x72, 0x22, 0x3A, 0x22, 0xC3, 0x28, 0x22, 0x7D])) == nil)
        #expect(fast(Data("{\"primary_user\": \"a\u{01}b\"}".utf8)) == nil)
    }

    /// Every value in the full config replaced, in turn, by each of a set of
    /// values of other shapes, and every key removed: wherever the fast path
    /// gives a config, JSONDecoder gives the same one.
    @Test("on damaged variants the fast path agrees with JSONDecoder whenever it answers")
    func agreesOnVariants() throws {
        let root = try JSONSerialization.jsonObject(with: Data(Self.full.utf8))
        let replacements: [Any] = [NSNull(), true, false, 0, -1, 65535, 1.5, "auto", "none", "best-effort",
                                   "read-write", "host", "", [Any](), [0, 1], ["x"], [String: Any](), ["name": "x"]]
        var variants: [Data] = []
        func paths(_ v: Any, _ at: [Any]) -> [[Any]] {
            var out: [[Any]] = [at]
            if let d = v as? [String: Any] { for (k, x) in d { out += paths(x, at + [k]) } }
            if let a = v as? [Any] { for (i, x) in a.enumerated() { out += paths(x, at + [i]) } }
            return out
        }
        func replacing(_ v: Any, _ at: ArraySlice<Any>, with new: Any?) -> Any? {
            guard let head = at.first else { return new }
            if var d = v as? [String: Any], let k = head as? String {
                d[k] = replacing(d[k]!, at.dropFirst(), with: new)
                return d
            }
            if var a = v as? [Any], let i = head as? Int {
                if let r = replacing(a[i], at.dropFirst(), with: new) { a[i] = r } else { a.remove(at: i) }
                return a
            }
            return v
        }
        for path in paths(root, []) where !path.isEmpty {
            for r in replacements + [nil] as [Any?] {
                if let v = replacing(root, path[...], with: r) {
                    variants.append(try JSONSerialization.data(withJSONObject: v, options: [.sortedKeys]))
                }
            }
        }
        #expect(variants.count > 1000)
        var answered = 0, refused = 0
        for data in variants {
            guard let f = fast(data) else {
                refused += 1
                continue
            }
            answered += 1
            #expect(f == slow(data), "differs on \(String(decoding: data, as: UTF8.self))")
        }
        // Both sides exercised: a fast path that always refused would pass the loop.
        #expect(answered > 100 && refused > 100, "answered \(answered), refused \(refused)")
        // And every refusal that JSONDecoder takes is one it is meant to leave:
        // the only values here outside its subset are fractions.
        for data in variants where fast(data) == nil && slow(data) != nil {
            #expect(String(decoding: data, as: UTF8.self).contains("1.5"), "refused \(String(decoding: data, as: UTF8.self))")
        }
    }

    /// Errors keep JSONDecoder's words (ConfigTests checks those words
    /// through ConfigLoader) because the fast path answers none of them.
    @Test("a config with an error is always left to JSONDecoder", arguments: [
        #"{"launcher": {"port": "x"}}"#, #"{"shares": [{"name": "m"}]}"#, #"{"bogus": 1}"#,
        #"{"launcher": {"gpu": [-1]}}"#, #"{"launcher": {"gpu": "all"}}"#, #"{"shares": [{"name": "m", "path": "/m", "access": "rw"}]}"#,
    ])
    func errorsLeftToJSONDecoder(_ text: String) {
        #expect(fast(Data(text.utf8)) == nil)
        #expect(slow(Data(text.utf8)) == nil)
    }
}
