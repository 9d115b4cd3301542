import ArgumentParser
import FoundationEssentials
import SandboxCore
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
        func template(_ name: String) throws -> String {
            let path = templates + "/" + name
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SandboxError.failure("cannot read the unit template \(path)", hint: "run from the source tree or pass --templates DIR")
            }
            return String(decoding: data, as: UTF8.self)
        }
        let configPath = URL(fileURLWithPath: options.path).standardizedFileURL.path
        // One instance: comfy-sandbox.service and .socket. launcher.instances:
        // the template comfy-sandbox@.service, a socket and a drop-in each.
        let units: [(name: String, text: String)] = config.launcher.instances.isEmpty ? [
            ("comfy-sandbox.service", ServiceUnit.renderService(try template("comfy-sandbox.service"), config: config,
                                                               configPath: configPath, binary: binary)),
            ("comfy-sandbox.socket", ServiceUnit.renderSocket(try template("comfy-sandbox.socket"), config: config)),
        ] : ServiceUnit.renderInstances(service: try template("comfy-sandbox.service"), socket: try template("comfy-sandbox.socket"),
                                        config: config, configPath: configPath, binary: binary)
        if print {
            for (name, text) in units { Swift.print("# \(name)\n\(text)") }
            return
        }
        try requireRoot("install-service")
        try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
        for (name, text) in units {
            let dir = Paths.deletingLastComponent(dest + "/" + name)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            try AtomicFile.write(Data(text.utf8), to: dest + "/" + name, mode: 0o644, owner: (0, 0))
            Swift.print("wrote \(dest)/\(name)")
        }
        // What `make install-service` enables: the socket(s) and the service(s).
        let enable = config.launcher.instances.isEmpty ? ["comfy-sandbox.socket", "comfy-sandbox.service"]
            : config.launcher.instances.flatMap { ["comfy-sandbox@\($0.name).socket", "comfy-sandbox@\($0.name).service"] }
        Swift.print("units: " + enable.joined(separator: " "))
    }
}
