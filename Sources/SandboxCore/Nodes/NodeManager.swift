import Dispatch
import FoundationEssentials
import Glibc
import Synchronization
import SandboxOS
import SandboxConfig

/// update-nodes / rollback-nodes over every configured node (or the named
/// ones): up to `parallelism` at once, each node on its own checkout and
/// record, one summary at the end. A failing node leaves its checkout and
/// record as they were; the others proceed.
public struct NodeManager: Sendable {
    public let config: Config
    public let git: GitRunner
    public var parallelism = 8

    public init(_ config: Config) {
        self.config = config
        self.git = GitRunner(config)
    }

    public struct Report: Sendable, Codable {
        public var outcomes: [Outcome]
        /// Entries in custom_nodes the config does not name (left alone).
        public var unmanaged: [String]
        public var failed: Bool { outcomes.contains { $0.kind == .failed } }
        public init(outcomes: [Outcome], unmanaged: [String]) {
            self.outcomes = outcomes
            self.unmanaged = unmanaged
        }
    }

    /// The configured nodes `names` selects (all when empty); an unknown name is a usage error.
    public func select(_ names: [String]) throws -> [Config.CustomNode] {
        if names.isEmpty { return config.customNodes }
        let known = Set(config.customNodes.map(\.name))
        if let bad = names.first(where: { !known.contains($0) }) {
            throw SandboxError(.usage, "no custom node named \"\(bad)\" in the config",
                               hint: "configured: \(config.customNodes.map(\.name).joined(separator: ", "))")
        }
        return config.customNodes.filter { names.contains($0.name) }
    }

    /// Makes `comfyui.path/custom_nodes` (root, 0755) when ComfyUI is there.
    func ensureCustomNodesDir() throws {
        var st = stat()
        guard lstat(config.comfyui.path, &st) == 0 else {
            throw SandboxError.failure("ComfyUI is not installed at \(config.comfyui.path) (comfyui.path)",
                                       hint: "run `comfy-sandbox provision` or `comfy-sandbox update-comfyui` first")
        }
        if lstat(config.customNodesDir, &st) != 0 {
            try SafeFS.makeDirectory(config.customNodesDir, mode: 0o755, existingOK: true)
        }
        try GitRunner.requireRootOwnedDirectory(config.customNodesDir)
        try StateDirectory.ensure(config.nodesStateDir)
    }

    public func update(names: [String], pull: Bool, progress: NodeProgress? = nil) throws -> Report {
        let nodes = try select(names)
        try ensureCustomNodesDir()
        let outcomes = runAll(nodes, progress: progress) { node in
            let c = Checkout(CheckoutSpec.node(node, config), git: git)
            if !node.enabled { return c.disable() }
            // The no-op path: record, HEAD and rev agree, so no git runs at all.
            if !pull && c.isSettled() {
                return Outcome(name: node.name, kind: .upToDate, sha: GitFiles.detachedHead(c.spec.dir))
            }
            return c.update(pull: pull)
        }
        return Report(outcomes: outcomes, unmanaged: unmanaged())
    }

    public func rollback(names: [String], progress: NodeProgress? = nil) throws -> Report {
        let nodes = try select(names)
        try StateDirectory.ensure(config.nodesStateDir)
        let outcomes = runAll(nodes, progress: progress) { node in
            Checkout(CheckoutSpec.node(node, config), git: git).rollback()
        }
        return Report(outcomes: outcomes, unmanaged: [])
    }

    /// Runs `body` for each node on a bounded pool, keeping config order in the result.
    func runAll(_ nodes: [Config.CustomNode], progress: NodeProgress?, _ body: @escaping @Sendable (Config.CustomNode) -> Outcome) -> [Outcome] {
        let results = Results(count: nodes.count)
        let limit = DispatchSemaphore(value: max(1, parallelism))
        let group = DispatchGroup()
        progress?.start(total: nodes.count)
        for (i, node) in nodes.enumerated() {
            limit.wait()
            group.enter()
            DispatchQueue.global().async {
                let o = body(node)
                results.set(i, o)
                progress?.done(o)
                limit.signal()
                group.leave()
            }
        }
        group.wait()
        progress?.finish()
        return results.all
    }

    /// Directories and files in custom_nodes that no configured node owns.
    public func unmanaged() -> [String] {
        let names = Set(config.customNodes.flatMap { [$0.name, $0.name + ".disabled"] })
        let comfyOwn: Set<String> = ["__pycache__", "example_node.py.example", "websocket_image_save.py"]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: config.customNodesDir)) ?? []
        return entries.filter { !names.contains($0) && !comfyOwn.contains($0) && !$0.contains(".cs-new-") }.sorted()
    }
}

final class Results: Sendable {
    private let items: Mutex<[Outcome?]>
    init(count: Int) { items = Mutex(Array(repeating: nil, count: count)) }
    func set(_ i: Int, _ o: Outcome) { items.withLock { $0[i] = o } }
    var all: [Outcome] { items.withLock { $0.compactMap { $0 } } }
}

/// Progress for long multi-node work: a rewritten status line on a
/// terminal, one plain line per finished node otherwise.
public final class NodeProgress: Sendable {
    let verb: String
    let tty: Bool
    let counts = Mutex((total: 0, finished: 0))

    public init(verb: String) {
        self.verb = verb
        tty = isatty(2) == 1
    }

    func start(total: Int) { counts.withLock { $0.total = total } }

    func done(_ o: Outcome) {
        // The line is written under the lock so two finishing nodes cannot interleave it.
        counts.withLock { c in
            c.finished += 1
            if tty {
                printError("\r\u{1B}[K[\(c.finished)/\(c.total)] \(o.line)")
            }
        }
    }

    func finish() {}
}
