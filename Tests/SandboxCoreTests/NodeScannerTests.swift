import Foundation
import SandboxCore
import Testing
import SandboxOS
@testable import SandboxConfig

@Suite("node scanner")
struct NodeScannerTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures/nodes").path

    @Test("every planted pattern in the hostile fixture is found, each with file, line, rule, severity and reason")
    func hostileFixture() throws {
        let findings = try NodeScanner.scan(directory: Self.fixtures + "/hostile-node", node: "hostile")
        let rules = Set(findings.map(\.rule))
        for rule in ["yaml-load", "pickle", "torch-load", "dynamic-code", "shell-out", "shell-true", "raw-ip-url",
                     "encoded-code", "pth-file", "install-time-code", "write-outside", "home-directory", "site-packages", "pip-at-runtime"] {
            #expect(rules.contains(rule), "missing \(rule); found \(rules.sorted())")
        }
        // Every line the fixture marks with a rule name is reported on that line.
        let text = try String(contentsOfFile: Self.fixtures + "/hostile-node/__init__.py", encoding: .utf8)
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            guard let r = line.range(of: "# ") , line.contains("    # ") else { continue }
            let marks = line[r.upperBound...].split(separator: "+").map { $0.trimmingCharacters(in: .whitespaces) }
            for mark in marks {
                #expect(findings.contains { $0.file == "__init__.py" && $0.line == i + 1 && $0.rule == mark },
                        "line \(i + 1) should be reported as \(mark): \(line)")
            }
        }
        #expect(findings.contains { $0.rule == "dynamic-code" && $0.severity == .high })
        #expect(findings.filter { $0.rule == "encoded-code" }.count == 2, "base64 and hex payloads")
        #expect(findings.contains { $0.rule == "pth-file" && $0.file == "lib/sneaky.pth" })
        #expect(Set(findings.filter { $0.rule == "install-time-code" }.map(\.file)) == ["install.py", "setup.py", "prestartup_script.py"])
        #expect(findings.allSatisfy { !$0.reason.isEmpty && !$0.file.isEmpty })
    }

    @Test("the clean fixture yields nothing")
    func cleanFixture() throws {
        let findings = try NodeScanner.scan(directory: Self.fixtures + "/clean-node", node: "clean")
        #expect(findings.isEmpty, "\(findings.map(\.text))")
    }

    @Test("links are reported, never followed")
    func symlinksNotFollowed() throws {
        let dir = NSTemporaryDirectory() + "scan-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let outside = dir + "-outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        try "eval(x)\n".write(toFile: outside + "/bad.py", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/linked", withDestinationPath: outside)
        try FileManager.default.createSymbolicLink(atPath: dir + "/linked.py", withDestinationPath: outside + "/bad.py")
        let findings = try NodeScanner.scan(directory: dir, node: "n")
        #expect(!findings.contains { $0.rule == "dynamic-code" })
        #expect(findings.filter { $0.rule == "symlink-outside" }.count == 2)
    }

    @Test("hostile file names are escaped in the report (no escape sequence, no forged line) and still scanned")
    func hostileNamesEscaped() throws {
        let dir = NSTemporaryDirectory() + "scan-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // OSC 52 (write the clipboard), a colour change, and a newline that
        // would start a forged finding; then a name that is not UTF-8.
        let forged: [UInt8] = Array("a\u{1b}]52;c;cm0gLXJmIH4=\u{07}\u{1b}[8m\nclean:1: low fake: all clear".utf8) + Array(".py".utf8)
        let notUTF8: [UInt8] = [0x62, 0xff, 0xfe] + Array(".py".utf8)
        for name in [forged, notUTF8] {
            let path = Array(dir.utf8) + [UInt8(ascii: "/")] + name + [0]
            let fd = path.withUnsafeBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { open($0, O_WRONLY | O_CREAT | O_EXCL, 0o644) }
            }
            try #require(fd >= 0, "create \(name): \(errno)")
            _ = "eval(payload)\n".withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        let findings = try NodeScanner.scan(directory: dir, node: "n").filter { $0.rule == "dynamic-code" }
        #expect(findings.count == 2, "both files are scanned: \(findings.map(\.text))")
        for f in findings {
            #expect(!f.text.unicodeScalars.contains { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) }, "raw control in \(f.text)")
            #expect(f.text.split(separator: "\n").count == 1)
        }
        #expect(findings.contains { $0.file.hasPrefix("a\\x1b]52;c;") && $0.file.contains("\\nclean:1:") })
        #expect(findings.contains { $0.file == "b\\xff\\xfe.py" })
    }

    @Test("dynamic strings are flagged, literals and method calls are not",
          arguments: [("eval(user_input)", true), ("exec(code + more)", true), ("eval(f\"{x}\")", true),
                      ("eval(\"1+1\")", false), ("re.compile(r'x')", false), ("self.compile(x)", false),
                      ("compile(src, 'f', 'exec')", true)])
    func dynamicCode(line: String, flagged: Bool) {
        let f = NodeScanner.scanPython(line + "\n", file: "a.py", node: "n")
        #expect(f.contains { $0.rule == "dynamic-code" } == flagged, "\(line): \(f.map(\.text))")
    }

    /// The rules were written for ICU (NSRegularExpression) and are now Swift
    /// Regexes; these are the places the two engines differ, as ICU decided
    /// them: `\b` counts digits as word characters and steps over combining
    /// marks and format characters, `(?<![\w.])` looks at one scalar, `\d` is
    /// \p{Nd}, and a later match may start inside an earlier rejected one.
    @Test("word edges, digits and overlaps match as they did under ICU",
          arguments: [("y = x2np.load(a, allow_pickle=True)", "pickle", false),
                      ("\u{301}pickle.loads(x)", "pickle", true),
                      ("a\u{301}pickle.loads(x)", "pickle", false),
                      ("\u{AD}subprocess.run(x)", "shell-out", true),
                      ("xnumpy.load(np.load(a, allow_pickle=True))", "pickle", true),
                      ("\u{200B}eval(x)", "dynamic-code", true),
                      ("\u{301}eval(x)", "dynamic-code", false),
                      ("run('pip install x')", "pip-at-runtime", true),
                      ("run('pip installer')", "pip-at-runtime", false),
                      ("run('pip install\u{301}x')", "pip-at-runtime", false),
                      ("url = 'http://\u{661}\u{662}\u{667}.0.0.1/'", "raw-ip-url", true),
                      ("url = 'http://1\u{B2}3.4.5.6/'", "raw-ip-url", false)])
    func icuEdges(line: String, rule: String, flagged: Bool) {
        let f = NodeScanner.scanPython(line + "\n", file: "a.py", node: "n")
        #expect(f.contains { $0.rule == rule } == flagged, "\(line.unicodeScalars.map { $0.escaped(asASCII: true) }.joined()): \(f.map(\.text))")
    }

    @Test("torch.load and yaml.load are judged by their arguments, across lines")
    func loaders() {
        #expect(NodeScanner.scanPython("m = torch.load(p,\n    weights_only=True)\n", file: "a.py", node: "n").isEmpty)
        #expect(NodeScanner.scanPython("m = torch.load(p,\n    map_location='cpu')\n", file: "a.py", node: "n").contains { $0.rule == "torch-load" })
        #expect(NodeScanner.scanPython("d = yaml.load(s, Loader=yaml.CSafeLoader)\n", file: "a.py", node: "n").isEmpty)
        #expect(NodeScanner.scanPython("d = yaml.load(s, Loader=yaml.Loader)\n", file: "a.py", node: "n").contains { $0.rule == "yaml-load" && $0.severity == .high })
        #expect(NodeScanner.scanPython("d = yaml.unsafe_load(s)\n", file: "a.py", node: "n").contains { $0.rule == "yaml-load" })
    }
}

@Suite("git URL and rev rejection")
struct GitInputRejectionTests {
    func problems(repo: String, rev: String = "main", allowed: [String] = ["https"]) -> [String] {
        var c = Config(primaryUser: "alice")
        c.git.allowedProtocols = allowed
        var n = Config.CustomNode(name: "n", repo: repo, rev: rev)
        n.rev = rev
        c.customNodes = [n]
        return ConfigValidator.problems(in: c).filter { $0.hasPrefix("custom_nodes[0]") }
    }

    @Test("URLs git would run or read as options are rejected",
          arguments: ["-oProxyCommand=touch /tmp/x", "--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/x",
                      "file:///etc", "/srv/repo.git", "../repo", "fd::3", "git://127.0.0.1/x.git", "ssh://h/x", "host:path",
                      "https://example.com/x y"])
    func badURLs(url: String) {
        #expect(!problems(repo: url).isEmpty, "\(url) accepted")
    }

    @Test("allowed transports pass")
    func goodURLs() {
        #expect(problems(repo: "https://github.com/a/b.git").isEmpty)
        #expect(problems(repo: "git://127.0.0.1:9418/x.git", allowed: ["git"]).isEmpty)
    }

    @Test("revs that are options or ref syntax are rejected",
          arguments: ["-b", "--upload-pack=x", "main..other", "HEAD@{1}", "a b", "x:y", "refs/heads/", "v1.lock", "^main", "~1"])
    func badRevs(rev: String) {
        #expect(!problems(repo: "https://example.com/x.git", rev: rev).isEmpty, "\(rev) accepted")
    }

    @Test("the git runner's environment and arguments are hardened")
    func runnerHardening() {
        let g = GitRunner(allowedProtocols: ["https"])
        let env = g.environment
        #expect(env["GIT_CONFIG_NOSYSTEM"] == "1" && env["GIT_CONFIG_GLOBAL"] == "/dev/null")
        #expect(env["GIT_TERMINAL_PROMPT"] == "0" && env["GIT_ALLOW_PROTOCOL"] == "https")
        #expect(env["GIT_ASKPASS"] == "/bin/false" && env["SSH_ASKPASS"] == "/bin/false" && env["LC_ALL"] == "C")
        #expect(env["HOME"].map { !FileManager.default.fileExists(atPath: $0) } == true)
        let args = GitRunner.hardening(repo: "/r")
        for c in ["core.hooksPath=/dev/null", "core.fsmonitor=false", "protocol.file.allow=never", "transfer.fsckObjects=true",
                  "submodule.recurse=false", "safe.directory=/r"] {
            #expect(args.contains(c), "missing -c \(c)")
        }
    }
}
