import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// ComfyUI itself: a checkout like a node's (same hardened git, same
/// crash-safe record-then-checkout, record at `state_dir/comfyui.json`),
/// root-owned and read-only to the sandbox, checked out in place because
/// `comfyui.path` may already hold `custom_nodes` and the venv's neighbours.
public struct ComfyUIInstall: Sendable {
    public let config: Config
    public let checkout: Checkout

    public init(_ config: Config) {
        self.config = config
        checkout = Checkout(CheckoutSpec.comfyui(config), git: GitRunner(config))
    }

    public var isSettled: Bool { checkout.isSettled() }

    public func update(pull: Bool) -> Outcome {
        if !pull && checkout.isSettled() {
            return Outcome(name: "ComfyUI", kind: .upToDate, sha: GitFiles.detachedHead(config.comfyui.path))
        }
        let o = checkout.update(pull: pull)
        if o.kind != .failed {
            // ComfyUI must never be writable by the sandbox, whatever the tree says.
            do { try SafeFS.setMode(config.comfyui.path, 0o755) } catch {
                return Outcome(name: "ComfyUI", kind: .failed, sha: o.sha, message: "\(error)")
            }
        }
        return o
    }

    public func rollback() -> Outcome { checkout.rollback() }
}

/// Plans ComfyUI's checkout for `provision`.
public struct ComfyUIPlanner: Planner {
    public var area: Area { .comfyui }
    public init() {}

    public func changes(for config: Config, context: PlanContext) throws -> [Change] {
        let install = ComfyUIInstall(config)
        if install.isSettled { return [] }
        let record: String
        if case .record(let r) = RecordStore.load(config.stateDir + "/comfyui.json", name: "ComfyUI") {
            record = String(r.currentSHA.prefix(12))
        } else {
            record = "none"
        }
        let action = record == "none" ? "clone" : "check out"
        return [Change(.comfyui, action, config.comfyui.path, from: record == "none" ? nil : record, to: config.comfyui.rev) {
            umask(0o022)
            let o = install.update(pull: false)
            if o.kind == .failed {
                throw SandboxError.failure("ComfyUI (comfyui.repo \(config.comfyui.repo) at comfyui.rev \(config.comfyui.rev)): \(o.message ?? "failed")")
            }
        }]
    }
}

/// Plans the custom nodes for `provision`: each node whose checkout does not
/// already match its record and rev gets one change (install, move, disable).
public struct NodesPlanner: Planner {
    public var area: Area { .nodes }
    public init() {}

    public func changes(for config: Config, context: PlanContext) throws -> [Change] {
        let git = GitRunner(config)
        var out: [Change] = []
        for node in config.customNodes {
            let c = Checkout(CheckoutSpec.node(node, config), git: git)
            var st = stat()
            if !node.enabled {
                if lstat(c.spec.dir, &st) == 0 {
                    out.append(Change(.nodes, "disable", node.name, to: "custom_nodes/\(node.name).disabled") {
                        let o = c.disable()
                        if o.kind == .failed { throw SandboxError.failure("custom node \(node.name): \(o.message ?? "failed")") }
                    })
                }
                continue
            }
            if c.isSettled() { continue }
            let installed = lstat(c.spec.dir, &st) == 0 || lstat(c.spec.disabledDir ?? "", &st) == 0
            out.append(Change(.nodes, installed ? "update" : "install", node.name, to: node.rev) {
                umask(0o022)
                var s = stat()
                if lstat(config.customNodesDir, &s) != 0 {
                    guard mkdir(config.customNodesDir, 0o755) == 0 || errno == EEXIST else {
                        throw SandboxError.failure("cannot create \(config.customNodesDir): \(Errno.current)")
                    }
                }
                try StateDirectory.ensure(config.nodesStateDir)
                let o = c.update(pull: false)
                if o.kind == .failed { throw SandboxError.failure("custom node \(node.name) (custom_nodes): \(o.message ?? "failed")") }
            })
        }
        // Nodes come after the python area: requirements of nodes checked
        // out just now are installed here, the same confined, sealed way.
        let env = PythonEnv(config)
        if config.customNodes.contains(where: { $0.enabled && $0.installRequirements }) && (!out.isEmpty || !env.requirementsSettled()) {
            out.append(Change(.nodes, "install requirements as \(config.sandboxUser.name)", env.venv) {
                try env.settleRequirements(progress: { printError($0) })
            })
        }
        // Then install scripts, which may import the requirements (Impact-Pack's does).
        if !InstallScript.nodes(config).isEmpty && (!out.isEmpty || !InstallScript.settled(config)) {
            out.append(Change(.nodes, "run install scripts as \(config.sandboxUser.name)", InstallScript.nodes(config).map(\.name).joined(separator: ", ")) {
                let failed = InstallScript.settle(config, progress: { printError($0) }).filter { $0.kind == .failed }
                if !failed.isEmpty { throw SandboxError.failure(failed.map(\.line).joined(separator: "\n  ")) }
            })
        }
        return out
    }
}
