import CSandbox
import FoundationEssentials
import Glibc

/// One resource limit for the confined child.
public struct ResourceLimit: Sendable, Equatable {
    public var resource: Int32
    public var soft: UInt64
    public var hard: UInt64
    public init(_ resource: Int32, soft: UInt64, hard: UInt64) {
        self.resource = resource
        self.soft = soft
        self.hard = hard
    }
    public static let infinity = UInt64.max
}

/// What the child becomes: identity, limits and filters. Built by the
/// launcher (full confinement) or by installers (at least the identity drop,
/// no capabilities, no_new_privs). Applied by `cs_spawn_confined` in the
/// documented order (see Sources/CSandbox/spawn.c).
public struct Confinement: Sendable {
    public var uid: uid_t
    public var gid: gid_t
    /// Exactly these supplementary groups (the shared group, nothing else).
    public var groups: [gid_t]
    public var rlimits: [ResourceLimit] = []
    public var noNewPrivileges = true
    public var landlockRuleset: OwnedFD?
    /// A compiled seccomp BPF program; nil for none.
    public var seccompProgram: [sock_filter]?
    /// Join this network namespace before dropping privileges.
    public var networkNamespace: OwnedFD?
    public var dieWithParent = true
    public var umask: mode_t? = 0o007
    /// false: the caller already is the target identity with no capabilities
    /// (the systemd unit runs the launcher as the sandbox user); the child
    /// skips the securebits/bounding-set/set*id steps, which would need
    /// capabilities, and keeps no_new_privs, Landlock and seccomp.
    public var dropIdentity = true
    /// With no `networkNamespace`: the child makes its own loopback-only
    /// namespace (unshare + lo up) before dropping privileges.
    public var newLoopbackNetwork = false
    /// New mount, PID, IPC, UTS and cgroup namespaces with this root, and an
    /// init as PID 1 that exits with the program's status (128+N for a
    /// signal N: a PID 1 cannot die of the program's signal itself).
    public var root: ConstructedRoot?
    /// With `root`: the session's cgroup (its limits), where the init is born.
    public var cgroup: (any CgroupPlacement)?

    public init(uid: uid_t, gid: gid_t, groups: [gid_t]) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }
}


/// Where a constructed root's init starts (Sources/CSandbox/spawn.c): cloned
/// into a cgroup v2 directory (CLONE_INTO_CGROUP), or, on v1, its pid written
/// to each hierarchy's cgroup.procs before it does anything else. What the
/// cgroup limits is the caller's business (SessionCgroup in SandboxCore).
public protocol CgroupPlacement: AnyObject, Sendable {
    /// v1: cgroup.procs of each hierarchy, open for writing.
    var procs: [OwnedFD] { get }
    /// v2: the directory, open.
    var directory: OwnedFD? { get }
    /// After the session: removes what was made (empty once the init has
    /// exited: the kernel ends every process of its PID namespace first).
    func remove()
}

/// A fully described child process.
public struct SpawnSpec {
    public var path: String
    /// argv, including argv[0].
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String?
    public var stdin: Int32 = -1
    public var stdout: Int32 = -1
    public var stderr: Int32 = -1
    /// Become fds 3, 4, ... in the child.
    public var passFDs: [Int32] = []
    public var newSession = true
    /// The new stdin is a pty slave the child takes as its controlling
    /// terminal (after `newSession`): `run` and `shell` on a terminal.
    public var controllingTerminal = false
    /// nil: stay root (root-side helpers such as git and useradd).
    public var confinement: Confinement?

    public init(path: String, arguments: [String], environment: [String: String], workingDirectory: String? = nil,
                stdin: Int32 = -1, stdout: Int32 = -1, stderr: Int32 = -1, passFDs: [Int32] = [],
                newSession: Bool = true, confinement: Confinement? = nil) {
        self.path = path
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.passFDs = passFDs
        self.newSession = newSession
        self.confinement = confinement
    }

    /// Forks, confines and execs. Returns the child's pid; throws a
    /// SandboxError naming the step of the drop that failed.
    public func spawn() throws -> pid_t {
        var cStrings: [UnsafeMutablePointer<CChar>?] = []
        defer { for p in cStrings { free(p) } }
        func cArray(_ list: [String]) -> [UnsafeMutablePointer<CChar>?] {
            let ptrs = list.map { strdup($0) }
            cStrings += ptrs
            return ptrs + [nil]
        }
        let argv = cArray(arguments)
        let envp = cArray(environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" })
        let c = confinement
        let groups = c?.groups ?? []
        let limits = (c?.rlimits ?? []).map { cs_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) }
        let filter = c?.seccompProgram ?? []
        var step: Int32 = 0, err: Int32 = 0, failedOp: Int32 = -1
        let cgroupFDs = c?.root == nil ? [] : (c?.cgroup?.procs.map(\.raw) ?? [])
        let spawnWith = { (rootSpec: UnsafePointer<cs_root_spec>?) -> pid_t in
          self.path.withCString { cPath in
            (workingDirectory ?? "").withCString { cCwd in
                argv.withUnsafeBufferPointer { argvBuf in
                    envp.withUnsafeBufferPointer { envBuf in
                        passFDs.withUnsafeBufferPointer { passBuf in
                            groups.withUnsafeBufferPointer { groupBuf in
                                limits.withUnsafeBufferPointer { limitBuf in
                                    filter.withUnsafeBufferPointer { filterBuf in
                                        var spec = cs_spawn_spec()
                                        spec.path = cPath
                                        spec.argv = UnsafePointer(argvBuf.baseAddress)
                                        spec.envp = UnsafePointer(envBuf.baseAddress)
                                        spec.cwd = workingDirectory == nil ? nil : cCwd
                                        spec.stdin_fd = stdin
                                        spec.stdout_fd = stdout
                                        spec.stderr_fd = stderr
                                        spec.pass_fds = passBuf.baseAddress
                                        spec.n_pass_fds = Int32(passFDs.count)
                                        spec.new_session = newSession ? 1 : 0
                                        spec.controlling_tty = controllingTerminal ? 1 : 0
                                        spec.die_with_parent = (c?.dieWithParent ?? false) ? 1 : 0
                                        spec.netns_fd = c?.networkNamespace?.raw ?? -1
                                        spec.new_loopback_netns = (c?.newLoopbackNetwork ?? false) ? 1 : 0
                                        spec.rlimits = limitBuf.baseAddress
                                        spec.n_rlimits = Int32(limits.count)
                                        spec.umask_value = c?.umask.map { Int32($0) } ?? -1
                                        spec.drop_privileges = (c?.dropIdentity ?? false) ? 1 : 0
                                        spec.uid = c?.uid ?? 0
                                        spec.gid = c?.gid ?? 0
                                        spec.groups = groupBuf.baseAddress
                                        spec.n_groups = Int32(groups.count)
                                        spec.no_new_privs = (c?.noNewPrivileges ?? false) ? 1 : 0
                                        spec.landlock_ruleset_fd = c?.landlockRuleset?.raw ?? -1
                                        spec.seccomp_filter = filter.isEmpty ? nil : filterBuf.baseAddress
                                        spec.seccomp_len = UInt16(filter.count)
                                        spec.root = rootSpec
                                        spec.cgroup_dir_fd = c?.root == nil ? -1 : (c?.cgroup?.directory?.raw ?? -1)
                                        return cgroupFDs.withUnsafeBufferPointer { cgBuf in
                                            spec.cgroup_procs = cgBuf.baseAddress
                                            spec.n_cgroup_procs = Int32(cgBuf.count)
                                            return cs_spawn_confined(&spec, &step, &err, &failedOp)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
          }
        }
        let pid: pid_t
        if let root = c?.root {
            pid = try root.withSpec(handled: Landlock.FS.handled(abi: Landlock.abi)) { spawnWith($0) }
        } else {
            pid = spawnWith(nil)
        }
        guard pid > 0 else {
            var stepName = String(cString: cs_spawn_step_name(step))
            if let root = c?.root, step == Int32(CS_STEP_ROOT.rawValue) { stepName += root.describe(failedOp) }
            let hint: String? = switch step {
            case Int32(CS_STEP_EXEC.rawValue): "check that \(path) exists and is executable by the user it runs as"
            case Int32(CS_STEP_LANDLOCK.rawValue): "set launcher.landlock to \"best-effort\" if this kernel cannot enforce Landlock"
            case Int32(CS_STEP_SECCOMP.rawValue): "set launcher.seccomp to false if this kernel has no seccomp"
            case Int32(CS_STEP_NAMESPACES.rawValue), Int32(CS_STEP_ROOT.rawValue):
                "the constructed root needs root, Linux 5.12 or later and mount, PID, IPC, UTS and cgroup namespaces"
            default: nil
            }
            throw SandboxError.failure("could not start \(path): \(stepName) failed: \(Errno(err))", hint: hint)
        }
        return pid
    }
}

/// The outcome of waiting on a child.
public enum ChildExit: Equatable, Sendable {
    case exited(Int32)
    case signaled(Int32)

    /// The shell convention: status, or 128 + signal.
    public var code: Int32 {
        switch self {
        case .exited(let s): s
        case .signaled(let sig): 128 + sig
        }
    }
}
