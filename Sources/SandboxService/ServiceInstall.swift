import FoundationEssentials
import Glibc
import SandboxCore
import SandboxOS
import SandboxConfig

// `install-service`: the units rendered from their templates, and written.
extension ServiceUnit {
    /// One instance: comfy-sandbox.service and .socket. launcher.instances:
    /// the template comfy-sandbox@.service, a socket and a drop-in each.
    public static func units(_ config: Config, templates: String, configPath: String, binary: String) throws -> [(name: String, text: String)] {
        func template(_ name: String) throws -> String {
            let path = templates + "/" + name
            guard let data = try? readFile(path) else {
                throw SandboxError.failure("cannot read the unit template \(path)", hint: "run from the source tree or pass --templates DIR")
            }
            return String(decoding: data, as: UTF8.self)
        }
        if config.launcher.instances.isEmpty {
            return [
                ("comfy-sandbox.service", renderService(try template("comfy-sandbox.service"), config: config, configPath: configPath, binary: binary)),
                ("comfy-sandbox.socket", renderSocket(try template("comfy-sandbox.socket"), config: config)),
            ]
        }
        return renderInstances(service: try template("comfy-sandbox.service"), socket: try template("comfy-sandbox.socket"),
                               config: config, configPath: configPath, binary: binary)
    }

    /// Writes each unit under `dest` (root:root 0644, atomically; drop-in
    /// directories 0755), calling `wrote` with each path.
    public static func install(_ units: [(name: String, text: String)], in dest: String, wrote: (String) -> Void) throws {
        try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
        for (name, text) in units {
            let path = dest + "/" + name
            try FileManager.default.createDirectory(atPath: Paths.deletingLastComponent(path), withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
            try AtomicFile.write(Data(text.utf8), to: path, mode: 0o644, owner: (0, 0))
            wrote(path)
        }
    }

    /// What `make install-service` enables: the socket(s) and the service(s).
    public static func enabled(_ config: Config) -> [String] {
        config.launcher.instances.isEmpty ? ["comfy-sandbox.socket", "comfy-sandbox.service"]
            : config.launcher.instances.flatMap { ["comfy-sandbox@\($0.name).socket", "comfy-sandbox@\($0.name).service"] }
    }
}
