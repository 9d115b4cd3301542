import Glibc
import SandboxOS
import SandboxConfig

/// The sandbox user and the shared group a config names, looked up and
/// checked (neither may be root's), for every command that runs as them.
extension AccountLookup {
    public struct SandboxIdentity: Sendable {
        public var user: User
        public var sharedGroup: Group
        /// The supplementary groups the sandbox gets: exactly the shared group.
        public var groups: [gid_t] { [sharedGroup.gid] }
    }

    public static func sandboxIdentity(_ config: Config) throws -> SandboxIdentity {
        guard let u = user(config.sandboxUser.name) else {
            throw SandboxError.failure("the sandbox user \(config.sandboxUser.name) (sandbox_user.name) does not exist",
                                       hint: "run `comfy-sandbox provision` first")
        }
        guard let g = group(config.sharedGroup.name) else {
            throw SandboxError.failure("the shared group \(config.sharedGroup.name) (shared_group.name) does not exist",
                                       hint: "run `comfy-sandbox provision` first")
        }
        guard u.uid != 0, u.gid != 0 else {
            throw SandboxError.failure("the sandbox user \(u.name) has uid or gid 0; refusing to run anything as it")
        }
        return SandboxIdentity(user: u, sharedGroup: g)
    }
}
