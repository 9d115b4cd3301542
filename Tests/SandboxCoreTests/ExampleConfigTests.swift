import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS
@testable import SandboxConfig

@Suite("example config and schema")
struct ExampleConfigTests {
    static let configDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("config")

    func load(_ name: String) throws -> Config {
        try ConfigLoader.load(path: Self.configDir.appendingPathComponent(name).path, environment: [:])
    }

    @Test("config/comfy-sandbox.json and .plist decode to equal configs, and equal the contract's defaults")
    func examplesEqual() throws {
        let json = try load("comfy-sandbox.json")
        let plist = try load("comfy-sandbox.plist")
        #expect(json == plist)
        #expect(json == Config(primaryUser: "alice"))
        // The defaults are what an empty config with SUDO_USER=alice gives, too.
        #expect(try ConfigLoader.decode(Data("{}".utf8), format: .json, environment: ["SUDO_USER": "alice"]) == json)
    }

    /// Every key path the Config model decodes: `launcher.limits.nofile`, `shares[].access`.
    static var modelKeys: Set<String> {
        var keys = Set<String>()
        func add<K: CodingKey & CaseIterable>(_ prefix: String, _ type: K.Type) {
            for k in K.allCases { keys.insert(prefix + k.stringValue) }
        }
        add("", Config.CodingKeys.self)
        add("sandbox_user.", Config.SandboxUser.CodingKeys.self)
        add("shared_group.", Config.SharedGroup.CodingKeys.self)
        add("comfyui.", Config.ComfyUI.CodingKeys.self)
        add("shares[].", Config.Share.CodingKeys.self)
        add("custom_nodes[].", Config.CustomNode.CodingKeys.self)
        add("git.", Config.Git.CodingKeys.self)
        add("launcher.", Config.Launcher.CodingKeys.self)
        add("launcher.limits.", Config.Limits.CodingKeys.self)
        add("launcher.instances[].", Config.Instance.CodingKeys.self)
        add("models.", Config.Models.CodingKeys.self)
        add("models.links[].", Config.ModelLink.CodingKeys.self)
        return keys
    }

    /// Every key path the schema describes, and whether each object forbids others.
    static func schemaKeys(_ node: [String: Any], _ prefix: String, _ out: inout Set<String>, _ closed: inout [String]) {
        if let props = node["properties"] as? [String: Any] {
            if node["additionalProperties"] as? Bool != false { closed.append(prefix.isEmpty ? "(root)" : prefix) }
            for (k, v) in props {
                out.insert(prefix + k)
                if let sub = v as? [String: Any] { schemaKeys(sub, prefix + k + ".", &out, &closed) }
            }
        }
        if let items = node["items"] as? [String: Any], items["properties"] != nil {
            schemaKeys(items, String(prefix.dropLast()) + "[].", &out, &closed)
        }
    }

    @Test("the JSON Schema names every key of the Config model, no others, and closes every object")
    func schemaCoversModel() throws {
        let data = try Data(contentsOf: Self.configDir.appendingPathComponent("comfy-sandbox.schema.json"))
        let schema = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(schema["$schema"] as? String == "https://json-schema.org/draft/2020-12/schema")
        var keys = Set<String>(), open: [String] = []
        Self.schemaKeys(schema, "", &keys, &open)
        #expect(Self.modelKeys.subtracting(keys).isEmpty, "missing from the schema: \(Self.modelKeys.subtracting(keys).sorted())")
        #expect(keys.subtracting(Self.modelKeys).isEmpty, "in the schema but not the model: \(keys.subtracting(Self.modelKeys).sorted())")
        #expect(open.isEmpty, "objects without additionalProperties: false: \(open)")
    }

    @Test("validation rules added by the foundation", arguments: [
        (#"{"primary_user":"alice","shared_group":{"name":"alice"}}"#, "shared_group.name: must differ from primary_user"),
        (#"{"primary_user":"alice","shared_group":{"name":"comfyui_sandbox"}}"#, "shared_group.name: must differ from sandbox_user.name"),
        (#"{"primary_user":"alice","sandbox_user":{"home":"/opt/comfy-sandbox/ComfyUI/home"}}"#, "sandbox_user.home: "),
        (#"{"primary_user":"alice","state_dir":"/opt/comfy-sandbox/ComfyUI/state"}"#, "state_dir: "),
        (#"{"primary_user":"alice","shares":[{"name":"a","path":"/home/alice/a","mount":"x","access":"read-only"},{"name":"b","path":"/home/alice/b","mount":"x","access":"read-only"}]}"#, "shares[1].mount: \"x\" is used by another share"),
        (#"{"primary_user":"alice","shares":[{"name":"a","path":"/opt/comfy-sandbox/ComfyUI/a","access":"read-only"}]}"#, "shares[0].path: /opt/comfy-sandbox/ComfyUI/a overlaps comfyui.path"),
        (#"{"primary_user":"alice","shares":[{"name":"a","path":"/home/alice/a/","access":"read-only"}]}"#, "shares[0].path: \"/home/alice/a/\" must be an absolute path"),
        (#"{"primary_user":"alice","shares":[{"name":"a","path":"/usr/share/x","access":"read-only"}]}"#, "shares[0].path: /usr/share/x is in a system directory"),
        (#"{"primary_user":"alice","shared_group":{"members":["Bob"]}}"#, "shared_group.members[0]: \"Bob\" is not a valid"),
        (#"{"primary_user":"alice","sandbox_user":{"name":"alice"}}"#, "sandbox_user.name: must differ from primary_user"),
        (#"{"primary_user":"alice","sandbox_user":{"home":"/home/alice"}}"#, "shares[0].path: /home/alice/workspace/ai/models is inside sandbox_user.home"),
    ])
    func validationTable(json: String, expected: String) {
        do {
            _ = try ConfigLoader.decode(Data(json.utf8), format: .json, file: "t.json", environment: [:])
            Issue.record("no error for \(json)")
        } catch let e as SandboxError {
            #expect(e.status == .invalidConfig)
            #expect(e.message.contains(expected), "\(e.message)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
