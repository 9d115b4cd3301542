import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS

@Suite("YAML subset")
struct YAMLSubsetTests {
    func parse(_ s: String) throws(DocumentError) -> Document { try YAMLSubset.parse(Data(s.utf8)) }

    @Test("the Manager's YAML snapshot (PyYAML's yaml.dump) reads as the same document as its JSON form")
    func managerFile() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/2025-06-02_09-41-37_snapshot.yaml")
        let doc = try YAMLSubset.parse(try Data(contentsOf: file))
        let nodes = try #require(doc["custom_nodes"])
        #expect(nodes["comfyui"] == .string("6d9f3e1b2a4c5d7e8f90a1b2c3d4e5f6a7b8c9d0"))
        #expect(nodes["cnr_custom_nodes"]?["comfyui-kjnodes"] == .string("1.0"))   // quoted: a string
        #expect(nodes["cnr_custom_nodes"]?["comfyui-impact-pack"] == .string("8.8.1"))
        // An indentless list of mappings.
        #expect(nodes["file_custom_nodes"] == .array([.object([.init("disabled", .bool(false)), .init("filename", .string("websocket_image_save.py"))])]))
        // The all-digit commit stays a string; PyYAML left it plain.
        #expect(nodes["git_custom_nodes"]?["https://github.com/pythongosssss/ComfyUI-Custom-Scripts.git"]?["hash"]
                == .string("0123456789012345678901234567890123456789"))
        // `? key` / `: value`: PyYAML's form for a key over 128 characters.
        let pips = try #require(nodes["pips"]?.members)
        #expect(pips.first?.key.hasPrefix("-e git+https://github.com/example-org/") == true)
        #expect(pips.first?.value == .string(""))
        #expect(pips.map(\.key).contains("gguf==0.14.0"))
    }

    @Test("scalars: null, booleans, quotes, escapes, comments, empty collections, a document marker")
    func scalars() throws {
        let doc = try parse("""
        --- # a comment
        a: null
        b: ~
        c:
        d: true
        e: False
        f: 'it''s # not a comment'
        g: "tab\\there \\u00e9 \\x41"
        h: plain words  # a comment
        i: {}
        j: []
        k: 1.0
        "quoted key": x
        l:
        - one
        -   two
        - - nested
        ...
        """)
        #expect(doc["a"] == .null && doc["b"] == .null && doc["c"] == .null)
        #expect(doc["d"] == .bool(true) && doc["e"] == .bool(false))
        #expect(doc["f"] == .string("it's # not a comment"))
        #expect(doc["g"] == .string("tab\there é A"))
        #expect(doc["h"] == .string("plain words"))
        #expect(doc["i"] == .object([]) && doc["j"] == .array([]))
        #expect(doc["k"] == .string("1.0"))
        #expect(doc["quoted key"] == .string("x"))
        #expect(doc["l"] == .array([.string("one"), .string("two"), .array([.string("nested")])]))
    }

    @Test("what the subset does not take is an error naming the line", arguments: [
        ("a: 1\nb: &anchor x\n", 2, "anchor"),
        ("a: 1\nb: *ref\n", 2, "alias"),
        ("a: !!python/object:os.system x\n", 1, "tag"),
        ("a: |\n  text\n", 1, "block scalar"),
        ("a: >\n  text\n", 1, "folded"),
        ("a: {b: 1}\n", 1, "flow"),
        ("a: [1, 2]\n", 1, "flow"),
        ("a:\n\tb: 1\n", 2, "tab"),
        ("a: 1\na: 2\n", 2, "twice"),
        ("a: 'open\n  close'\n", 1, "not closed"),
        ("a: x\n  y\n", 2, "indentation"),
        ("a:\n  b: 1\n c: 2\n", 3, "indentation"),
        ("just a scalar\n", 1, "key: value"),
        ("a: 1\n---\nb: 2\n", 2, "second document"),
        ("%YAML 1.1\na: 1\n", 1, "directive"),
        ("a: \"\\q\"\n", 1, "escape"),
        ("- a\nb: 1\n", 2, "expected the document to end"),
    ])
    func rejects(text: String, line: Int, words: String) {
        do {
            _ = try parse(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.message.contains(words), "\(error)")
        }
    }
}

@Suite("JSON documents")
struct DocumentJSONTests {
    @Test("order, escapes and numbers are kept; the printer writes it back")
    func roundTrip() throws {
        let text = #"{"b": 1, "a": [true, null, -2.5e3], "c": "\u00e9\ud83d\ude00\n/"}"#
        let doc = try DocumentJSON.parse(Data(text.utf8))
        #expect(doc.members?.map(\.key) == ["b", "a", "c"])
        #expect(doc["a"] == .array([.bool(true), .null, .number("-2.5e3")]))
        #expect(doc["c"] == .string("é😀\n/"))
        let printed = DocumentPrinter(indent: 2, inlineWidth: 80).render(doc)
        #expect(try DocumentJSON.parse(Data(printed.utf8)) == doc)
        #expect(printed.contains(#""a": [true, null, -2.5e3]"#))
    }

    @Test("strict: duplicate keys, trailing commas, comments, bad escapes, lone surrogates", arguments: [
        #"{"a": 1, "a": 2}"#, #"{"a": 1,}"#, "{\"a\": 1} // c", #"{"a": "\x"}"#, #"{"a": "\ud800"}"#, #"{"a": 01}"#, "[1] [2]",
    ])
    func strict(text: String) {
        #expect(throws: DocumentError.self) { try DocumentJSON.parse(Data(text.utf8)) }
    }
}
