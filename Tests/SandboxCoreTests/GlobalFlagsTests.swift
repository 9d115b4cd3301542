import Testing
import SandboxCommands
import SandboxOS

/// `--config` before the command's name means the same as after it: the
/// Makefile calls every verb as `comfy-sandbox --config P VERB`.
@Suite struct GlobalFlagsTests {
    static func parse(_ line: [String]) throws -> ParsableCommandBox {
        ParsableCommandBox(try ComfySandbox.parseAsRoot(GlobalFlags.normalize(line)))
    }

    @Test("--config before the verb reaches the verb's options", arguments: [
        ["plan"], ["provision", "--only", "tree"], ["update-nodes", "--pull", "x"], ["rollback-nodes"],
        ["fix-permissions"], ["status", "--json"], ["check-sandbox"], ["start"], ["stop"],
        ["record-models"], ["verify-models"], ["uninstall"], ["scan-nodes"], ["shell"],
    ])
    func beforeTheVerb(_ verb: [String]) throws {
        for spelling in [["--config", "/etc/x.json"], ["--config=/etc/x.json"]] {
            let before = try Self.parse(spelling + verb)
            let after = try Self.parse(verb + spelling)
            #expect(before.config == "/etc/x.json", "\(spelling + verb)")
            #expect(before.typeName == after.typeName)
            #expect(after.config == "/etc/x.json")
        }
    }

    @Test("run: the option moves before `--`, the command's own words stay its own")
    func run() throws {
        let line = GlobalFlags.normalize(["--config", "/c.json", "run", "--", "sh", "--config", "y"])
        #expect(line == ["run", "--config", "/c.json", "--", "sh", "--config", "y"])
        let quick = try #require(Run.quickParse(line))
        #expect(quick.config == "/c.json")
        #expect(quick.argv == ["sh", "--config", "y"])
    }

    @Test("a two-word hidden command keeps both words together")
    func nested() {
        #expect(GlobalFlags.normalize(["--config", "/c", "__internal", "install-probe", "--", "id"])
                == ["__internal", "install-probe", "--config", "/c", "--", "id"])
    }

    @Test("lines without a leading --config, or without a verb, are left as given", arguments: [
        ["plan", "--config", "/c"], ["--config", "/c"], ["--config", "/c", "--help"], ["--config", "/c", "no-such-verb"],
        ["--version"], [],
    ])
    func untouched(_ line: [String]) {
        #expect(GlobalFlags.normalize(line) == line)
    }

    @Test("an unknown verb after --config is still a usage error")
    func unknownVerb() {
        #expect(throws: (any Error).self) { try ComfySandbox.parseAsRoot(GlobalFlags.normalize(["--config", "/c", "nope"])) }
    }
}

/// The config path of whichever command parsed, found through the
/// `options: ConfigOptions` every verb has (Mirror: the verbs share no protocol).
struct ParsableCommandBox {
    let typeName: String
    let config: String?
    init(_ command: Any) {
        typeName = String(describing: type(of: command))
        let options = Mirror(reflecting: command).children.first { $0.label == "options" || $0.label == "_options" }?.value
        var found: String?
        if let options {
            // @OptionGroup wraps the value; look one level down for ConfigOptions.
            func search(_ v: Any, depth: Int) {
                if let c = v as? ConfigOptions { found = c.config; return }
                guard depth < 4 else { return }
                for child in Mirror(reflecting: v).children { search(child.value, depth: depth + 1) }
            }
            search(options, depth: 0)
        }
        config = found
    }
}
