import ArgumentParser
import FoundationEssentials
import SandboxCore

/// `--config`, shared by every command.
public struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Config file (JSON, or a property list when it ends in .plist).",
        discussion: "Default: $COMFY_SANDBOX_CONFIG, else /etc/comfy-sandbox/config.json.",
        valueName: "path"))
    public var config: String?

    public init() {}

    public var path: String { ConfigLoader.resolvePath(config) }

    /// Reads and validates the config; exit 65 on any problem.
    public func load() throws -> Config { try ConfigLoader.load(path: path) }
}

/// `--json` for commands a script would read.
public struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON instead of text.")
    public var json = false
    public init() {}
}

/// Prints `value` the way every `--json` output looks: pretty, keys sorted,
/// slashes unescaped (paths stay readable).
func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try e.encode(value), as: UTF8.self))
}

/// Commands that change the system need root; say so plainly instead of
/// failing halfway with EPERM.
func requireRoot(_ what: String) throws {
    guard geteuid() == 0 else {
        throw SandboxError.failure("\(what) changes the system and must run as root", hint: "run it with sudo")
    }
}

#if canImport(Glibc)
import Glibc
import SandboxOS
import SandboxConfig
#endif
