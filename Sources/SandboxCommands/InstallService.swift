import ArgumentParser
import FoundationEssentials
import SandboxCore
import SandboxService
import SandboxOS

public struct InstallService: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "install-service",
        abstract: "Write the systemd service and socket units for this config.",
        discussion: """
        Renders systemd/comfy-sandbox.service and .socket with the config's sandbox
        user, shared group, writable paths, limits and listen address, and writes them
        (root, 0644) into --dest. `make install-service` runs this, then reloads and
        enables the units when systemd is running.
        """
    )
    @OptionGroup public var options: ConfigOptions
    @Option(help: ArgumentHelp("Directory holding the unit templates.", valueName: "dir"))
    public var templates = "systemd"
    @Option(help: ArgumentHelp("Where to write the units.", valueName: "dir"))
    public var dest = "/etc/systemd/system"
    @Option(help: ArgumentHelp("The comfy-sandbox binary ExecStart runs.", valueName: "path"))
    public var binary = "/usr/local/bin/comfy-sandbox"
    @Flag(help: "Print the rendered units instead of writing them.")
    public var print = false
    public init() {}

    public func run() throws {
        let config = try options.load()
        let configPath = URL(fileURLWithPath: options.path).standardizedFileURL.path
        let units = try ServiceUnit.units(config, templates: templates, configPath: configPath, binary: binary)
        if print {
            for unit in units { Swift.print("# \(unit.name)\n\(unit.text)") }
            return
        }
        try requireRoot("install-service")
        try ServiceUnit.install(units, in: dest) { Swift.print("wrote \($0)") }
        Swift.print("units: " + ServiceUnit.enabled(config).joined(separator: " "))
    }
}
