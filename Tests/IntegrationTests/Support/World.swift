import Foundation
import SandboxCore
import Testing
import SandboxOS

/// Tests that need root: they create users, change ownership, or confine.
extension Trait where Self == ConditionTrait {
    static var requiresRoot: Self {
        .enabled(if: geteuid() == 0, "needs root: run through `make test`")
    }
}

/// A throwaway world: a directory with its own copy of /etc and room for
/// homes, shares, state and ComfyUI. Every command a test runs "in" the world
/// runs in a fresh private mount namespace where that /etc copy is
/// bind-mounted over /etc, so useradd and friends change the copy and the
/// host's accounts stay byte-identical. State persists between commands
/// because the copy is a real directory.
final class World: @unchecked Sendable {
    let root: String
    var etc: String { root + "/etc" }
    var home: String { root + "/home" }
    var data: String { root + "/data" }
    var state: String { root + "/state" }
    var opt: String { root + "/opt" }

    init(_ label: String = "world") throws {
        var template = Array("/tmp/cs-\(label)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SandboxError.failure("mkdtemp: \(Errno.current)") }
        root = String(cString: p)
        // The world root must be traversable by the sandbox and primary users.
        chmod(root, 0o755)
        try Self.sh("cp -a /etc \(root)/etc && mkdir -p \(root)/home \(root)/data \(root)/opt && chmod 755 \(root)/home \(root)/data \(root)/opt")
    }

    deinit {
        _ = try? Self.sh("rm -rf --one-file-system \(root)")
    }

    /// The comfy-sandbox binary built beside this test bundle.
    static var binary: String {
        if let b = ProcessInfo.processInfo.environment["COMFY_SANDBOX_BIN"] { return b }
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("comfy-sandbox").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug/comfy-sandbox").path
    }

    /// Runs `argv` inside the world (as root).
    @discardableResult
    func run(_ argv: [String], environment: [String: String] = [:], input: Data? = nil, timeout: Int = 600) throws -> HostCommand.Result {
        var env = HostCommand.minimalEnvironment
        env["WORLD"] = root
        for name in TestKernel.forwarded { env[name] = ProcessInfo.processInfo.environment[name] }
        for (k, v) in environment { env[k] = v }
        let script = "mount --make-rprivate / && mount --bind \"$WORLD/etc\" /etc && exec \"$@\""
        return try HostCommand("/usr/bin/timeout", ["-s", "KILL", String(timeout), "/usr/bin/unshare", "--mount", "--propagation", "private",
                                                    "/bin/sh", "-c", script, "sh"] + argv,
                               environment: env, input: input).run()
    }

    /// A shell snippet inside the world.
    @discardableResult
    func sh(_ script: String, environment: [String: String] = [:]) throws -> HostCommand.Result {
        try run(["/bin/sh", "-c", script], environment: environment)
    }

    /// `comfy-sandbox ARGS` inside the world with this world's config.
    @discardableResult
    func comfy(_ args: [String], config: String? = nil, environment: [String: String] = [:], input: Data? = nil) throws -> HostCommand.Result {
        var env = environment
        env["COMFY_SANDBOX_CONFIG"] = config ?? configPath
        return try run([Self.binary] + args, environment: env, input: input)
    }

    var configPath: String { root + "/config.json" }

    /// Creates a human user like the one the tool serves (home under the world).
    func addPrimaryUser(_ name: String = "alice") throws {
        let r = try sh("useradd -m -d \(home)/\(name) -s /bin/bash -U \(name) && chmod 0700 \(home)/\(name)")
        guard r.succeeded else { throw SandboxError.failure("useradd \(name) in world: \(r.stderrText)") }
    }

    /// A config whose every path lies inside the world.
    func defaultConfig(primary: String = "alice") -> [String: Any] {
        [
            "version": 1,
            "primary_user": primary,
            "sandbox_user": ["name": "comfyui_sandbox", "home": "\(home)/comfyui_sandbox"],
            "shared_group": ["name": "comfyshared"],
            "state_dir": "\(root)/state",
            "comfyui": ["repo": "https://example.invalid/ComfyUI.git", "rev": "main", "path": "\(opt)/comfy-sandbox/ComfyUI",
                        "python": "/usr/bin/python3", "install_requirements": false],
            "shares": [
                ["name": "models", "path": "\(home)/\(primary)/workspace/ai/models", "mount": "models", "access": "read-only"],
                ["name": "workflows", "path": "\(home)/\(primary)/workspace/ai/comfy/workflows", "mount": "user/default/workflows", "access": "read-write"],
                ["name": "input", "path": "\(home)/\(primary)/workspace/ai/input", "mount": "input", "access": "read-write"],
                ["name": "output", "path": "\(home)/\(primary)/workspace/ai/output", "mount": "output", "access": "read-write"],
            ],
            "custom_nodes": [] as [Any],
            "git": ["allowed_protocols": ["https", "git"]],
            "launcher": ["landlock": TestKernel.landlockMode],
        ]
    }

    func writeConfig(_ dict: [String: Any], to path: String? = nil) throws {
        let data = try JSONSerialization.data(withJSONObject: dict, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: path ?? configPath))
    }

    /// uid/gid of a name in this world's /etc (not the host's).
    func uid(_ user: String) -> uid_t? { idField(file: "passwd", name: user, field: 2).map { uid_t($0) } }
    func gid(_ group: String) -> gid_t? { idField(file: "group", name: group, field: 2).map { gid_t($0) } }

    private func idField(file: String, name: String, field: Int) -> UInt32? {
        guard let text = try? String(contentsOfFile: "\(etc)/\(file)", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            if f.count > field, f[0] == name { return UInt32(f[field]) }
        }
        return nil
    }

    @discardableResult
    static func sh(_ script: String) throws -> HostCommand.Result {
        try HostCommand("/bin/sh", ["-c", script]).run()
    }

    /// Host pids whose real uid is `uid` (from /proc/PID/status).
    static func processes(ofUID uid: uid_t) -> [pid_t] {
        procEntries().filter { pid in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return false }
            return line.split(whereSeparator: \.isWhitespace).dropFirst().first.map(String.init) == String(uid)
        }
    }

    /// Host pids one of whose arguments is in `args`.
    static func processes(withArgument args: Set<String>) -> [pid_t] {
        procEntries().filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return data.split(separator: 0).contains { args.contains(String(decoding: $0, as: UTF8.self)) }
        }
    }

    /// Host pids with a thread named `name` (/proc/PID/task/TID/comm): a
    /// process whose thread-group leader has exited still has its threads.
    static func processes(withThreadNamed name: String) -> [pid_t] {
        procEntries().filter { pid in
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            return tasks.contains { tid in
                (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) == name
            }
        }
    }

    private static func procEntries() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
    }
}
