import Testing
import SandboxCommands
import SandboxOS

/// `run`'s quick parse must read exactly what ArgumentParser reads, or give
/// the line back to it (nil). Each accepted line is parsed both ways.
@Suite struct RunQuickParseTests {
    static let accepted: [[String]] = [
        ["run", "--", "/bin/true"],
        ["run", "--config", "/etc/x.json", "--", "python3", "-c", "print(1)"],
        ["run", "--config=/tmp/c.json", "--", "ls", "--", "-la"],
        ["run", "--", "--help"],
        ["run", "--", "sh", "--config", "y"],
    ]
    static let declined: [[String]] = [
        ["run"], ["run", "--"], ["run", "/bin/true"], ["run", "--help"], ["run", "-h", "--", "x"],
        ["run", "--config", "--", "x"], ["run", "--config=", "--", "x"],
        ["run", "--config", "a", "--config", "b", "--", "x"],
        ["run", "--json", "--", "x"], ["launch", "--", "x"], [],
    ]

    @Test(arguments: accepted)
    func agreesWithArgumentParser(_ line: [String]) throws {
        let quick = try #require(Run.quickParse(line))
        let parsed = try #require(try ComfySandbox.parseAsRoot(line) as? Run)
        var command = parsed.command
        if command.first == "--" { command.removeFirst() }
        #expect(quick.config == parsed.options.config)
        #expect(quick.argv == command)
    }

    @Test(arguments: declined)
    func leavesTheRestToArgumentParser(_ line: [String]) {
        #expect(Run.quickParse(line) == nil)
    }
}
