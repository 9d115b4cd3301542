import ArgumentParser
import SandboxOS

/// `--config PATH` is global: the contract lets it stand before the command's
/// name (`comfy-sandbox --config P plan`, which is how the Makefile calls
/// every verb) as well as after it. ArgumentParser only knows options of the
/// command that is parsed, and the root command has none, so this pre-pass
/// moves every `--config` given before the command's name to just after the
/// command's full name (`__internal relay` is two words), as apple/container's
/// `normalizeGlobalFlags` does. Nothing after the command's name is touched:
/// `run -- CMD --config X` passes `--config X` to CMD.
public enum GlobalFlags {
    public static func normalize(_ args: [String]) -> [String] {
        var moved: [String] = []
        var rest: [String] = []
        var i = 0
        // Leading global options, up to the first word that is not one.
        while i < args.count {
            let a = args[i]
            if a == "--config", i + 1 < args.count {
                moved += [a, args[i + 1]]
                i += 2
            } else if a.hasPrefix("--config=") {
                moved.append(a)
                i += 1
            } else {
                break
            }
        }
        guard !moved.isEmpty else { return args }
        rest = Array(args[i...])
        // The command's name: one word per level of subcommands.
        var command: ParsableCommand.Type = ComfySandbox.self
        var nameLength = 0
        while nameLength < rest.count,
              let sub = command.configuration.subcommands.first(where: { $0._commandName == rest[nameLength] }) {
            command = sub
            nameLength += 1
        }
        // No command named (`--config P --help`, a typo): leave the options
        // where they were, so ArgumentParser reports the line as given.
        guard nameLength > 0 else { return args }
        return Array(rest[..<nameLength]) + moved + Array(rest[nameLength...])
    }
}
