import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// The GPUs a session may use.
public struct GPUSelection: Sendable {
    public var indexes: [Int]
    public var deviceNodes: [String]
    /// CUDA_VISIBLE_DEVICES: "" hides every GPU.
    public var cudaVisibleDevices: String
    public var note: String?

    static let sharedNodes = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset", "/dev/nvidia-caps"]

    /// Indexes of /dev/nvidiaN present now.
    public static func present() -> [Int] {
        // readdir, not FileManager: this runs on every start of `run`.
        guard let dir = opendir("/dev") else { return [] }
        defer { closedir(dir) }
        var found: [Int] = []
        while let entry = readdir(dir) {
            let name = entryName(entry)
            if name.hasPrefix("nvidia"), let n = Int(name.dropFirst("nvidia".count)) { found.append(n) }
        }
        return found.sorted()
    }

    /// Picks the GPUs for `setting`. With `prepareNodes`, runs nvidia-modprobe
    /// as root first when the nodes are missing: under no_new_privs the
    /// setuid helper CUDA would otherwise call cannot create them.
    public static func select(_ setting: Config.GPU, prepareNodes: Bool) -> GPUSelection {
        if setting == Config.GPU.none {
            return GPUSelection(indexes: [], deviceNodes: [], cudaVisibleDevices: "", note: nil)
        }
        if prepareNodes, !Paths.exists("/dev/nvidiactl") {
            for tool in ["/usr/bin/nvidia-modprobe", "/usr/sbin/nvidia-modprobe"] where Paths.isExecutableFile(tool) {
                var wanted: [Int] = [0]
                if case .indexes(let list) = setting { wanted = list }
                for i in wanted { _ = try? HostCommand(tool, ["-u", "-c=\(i)"]).run() }
                _ = try? HostCommand(tool, ["-m"]).run()
                break
            }
        }
        let found = present()
        var chosen: [Int]
        switch setting {
        case Config.GPU.none: chosen = []
        case .auto: chosen = found
        case .indexes(let list): chosen = list.filter { found.contains($0) }
        }
        var note: String?
        if chosen.isEmpty {
            note = "no NVIDIA GPU found (launcher.gpu = \(describe(setting))): running without a GPU"
        } else if case .indexes(let list) = setting, list.count != chosen.count {
            note = "launcher.gpu lists \(list) but only \(chosen) exist: running with those"
        }
        var nodes = chosen.map { "/dev/nvidia\($0)" }
        if !chosen.isEmpty { nodes += sharedNodes.filter { Paths.exists($0) } }
        // Joined by hand: the generic joined(separator:) looks its
        // associated types up by mangled name on first use, a fifth of a
        // millisecond of every `run`.
        var visible = ""
        for i in chosen { visible += visible.isEmpty ? String(i) : "," + String(i) }
        return GPUSelection(indexes: chosen, deviceNodes: nodes, cudaVisibleDevices: visible, note: note)
    }

    public static func describe(_ setting: Config.GPU) -> String {
        switch setting {
        case .auto: "auto"
        case .none: "none"
        case .indexes(let l): "[" + l.map(String.init).joined(separator: ", ") + "]"
        }
    }
}
