import Foundation
@testable import SandboxCore
import Testing
@testable import SandboxOS

/// Helpers for the foundation's world tests: a world with alice, a config,
/// and (optionally) everything provisioned; running things as the hostile
/// sandbox user; and stat snapshots that prove nothing outside changed.
extension World {
    static let sandboxUser = "comfyui_sandbox"
    static let group = "comfyshared"
    /// The foundation's areas only: other areas (ComfyUI, nodes) need a
    /// repository these worlds do not serve, and are tested by their owners.
    static let provisionFoundation = ["provision", "--only", "accounts,tree"]
    static let planFoundation = ["plan", "--only", "accounts,tree"]

    /// A world with the primary user and a written config; provisioned unless told otherwise.
    static func provisioned(_ label: String, provision: Bool = true) throws -> World {
        let w = try World(label)
        try w.addPrimaryUser()
        try w.writeConfig(w.defaultConfig())
        if provision {
            let r = try w.comfy(World.provisionFoundation)
            #expect(r.status == 0, "provision: \(r.stderrText)")
        }
        return w
    }

    func sharePath(_ name: String) -> String {
        switch name {
        case "models": "\(home)/alice/workspace/ai/models"
        case "workflows": "\(home)/alice/workspace/ai/comfy/workflows"
        default: "\(home)/alice/workspace/ai/\(name)"
        }
    }

    /// Runs a shell script as the sandbox user (its uid, the shared group, no other groups) in the world.
    @discardableResult
    func asSandbox(_ script: String) throws -> HostCommand.Result {
        try run(["/usr/bin/setpriv", "--reuid=\(Self.sandboxUser)", "--regid=\(Self.group)", "--init-groups",
                 "--inh-caps=-all", "/bin/sh", "-c", script])
    }

    @discardableResult
    func asUser(_ user: String, _ script: String) throws -> HostCommand.Result {
        try run(["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups", "/bin/sh", "-c", script])
    }

    /// fix-permissions --json in the world, decoded; fails the test when it hangs (timeout) or fails.
    func fixPermissions(_ extra: [String] = [], script prefix: String? = nil, timeout: Int = 120) throws -> [PermissionFixer.Report] {
        let r: HostCommand.Result
        if let prefix {
            // One world command: the prefix (a mount, say) and the walk share the namespace.
            r = try run(["/bin/sh", "-c", "\(prefix) && exec \"$CS\" fix-permissions --json \"$@\"", "sh"] + extra,
                        environment: ["CS": World.binary, "COMFY_SANDBOX_CONFIG": configPath], timeout: timeout)
        } else {
            r = try run([World.binary, "fix-permissions", "--json"] + extra, environment: ["COMFY_SANDBOX_CONFIG": configPath], timeout: timeout)
        }
        try #require(r.signal == nil, "fix-permissions was killed (hung past \(timeout)s?)")
        try #require(r.status == 0, "fix-permissions exited \(r.status): \(r.stderrText)")
        return try JSONDecoder().decode([PermissionFixer.Report].self, from: r.stdout)
    }

    /// uid, gid, mode and ctime of every path under `dirs` (not following links), keyed by path.
    static func statSnapshot(_ dirs: [String]) throws -> String {
        let quoted = dirs.map { "'\($0)'" }.joined(separator: " ")
        let r = try World.sh("find \(quoted) -xdev -printf '%p %U %G %m %C@ %n\\n' 2>/dev/null | sort")
        return r.stdoutText
    }

    /// Everything in the world but the config and state lock: path, type, owner, mode, size, times, content hash.
    func treeSnapshot() throws -> String {
        let r = try World.sh("cd '\(root)' && find . -xdev -printf '%p %y %U %G %m %s %T@ %C@ %l\\n' | sort && find . -xdev -type f -exec sha256sum {} + | sort")
        return r.stdoutText
    }

    func statLine(_ path: String) throws -> String {
        try World.sh("stat -c '%u %g %a %Z' '\(path)'").stdoutText
    }
}
