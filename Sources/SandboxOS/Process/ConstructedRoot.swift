import CSandbox
import FoundationEssentials
import Glibc

/// The root file system a confined child gets (Sources/CSandbox/root.c
/// builds it in the init, between clone and the privilege drop): exactly
/// what Python, ComfyUI and CUDA need, bound read-only; each share at its
/// path with its access; private, size-limited tmpfs for /tmp, /dev/shm and
/// the JIT caches; a minimal /dev; a fresh /proc of its own PID namespace;
/// an empty /run; nothing of /home but the shares and the sandbox home.
/// Every writable mount is nosuid, nodev and noexec, except the per-session
/// JIT directory (`jitDirectory`).
///
/// Every bind source is opened here, as root in the host's namespaces, with
/// openat2(RESOLVE_NO_SYMLINKS) from "/" and turned into a detached mount
/// tree (open_tree(OPEN_TREE_CLONE)) whose attributes are set before the
/// child exists: no path the sandbox could change is resolved again later.
public final class ConstructedRoot: @unchecked Sendable {
    /// Inside the root: where the session's temp (ComfyUI's --temp-directory) lives.
    public static let tempDirectory = "/dev/shm/comfy-temp"
    /// Inside the root: the one writable place that may hold executable code
    /// (Triton, TorchInductor and CUDA's compiled kernels), per session, in RAM.
    public static let jitDirectory = "/run/jit"

    struct Op {
        var kind: cs_op_kind
        var target: String
        var fd: Int32 = -1
        var isFile = false
        var data: [UInt8] = []
        var flags: UInt = 0
        var uid: uid_t = uid_t.max
        var gid: gid_t = gid_t.max
        var mode: mode_t = 0o755
        var optional = false
    }

    private(set) var ops: [Op] = []
    /// What each tree op attaches: an O_PATH fd of the source and the mount
    /// attributes. A fresh detached tree is cloned from it for every spawn:
    /// a tree once attached belongs to that child's mount namespace, and an
    /// installer spawns several children from one confinement.
    struct Source {
        var fd: OwnedFD
        var recursive: Bool
        var set: UInt64
        var display: String
    }
    var sources: [Source] = []
    /// Landlock rules for paths that exist only inside (tmpfs, /proc).
    private(set) var insideRules: [(String, Landlock.FS)] = []
    /// Targets bound so far, for status and check-sandbox.
    public private(set) var binds: [(source: String, target: String, writable: Bool)] = []
    public var hostname = "comfy-sandbox"

    public init() {}

    public enum Access { case readOnly, readWrite, device }

    /// Binds `source` (a host path, opened without following any link
    /// unless `follow`) at `target` (default: the same path). Missing and
    /// not `required`: skipped. Writable binds are noexec; nothing is suid
    /// or (except devices) a device.
    public func bind(_ source: String, at target: String? = nil, _ access: Access, recursive: Bool = true,
                     required: Bool = false, follow: Bool = false) throws {
        let root = open("/", CS_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { throw SandboxError.failure("cannot open /: \(Errno.current)") }
        defer { close(root) }
        let rel = String(source.drop(while: { $0 == "/" }))
        let resolve = follow ? UInt64(0) : CS_RESOLVE_NO_SYMLINKS
        let fd = rel.isEmpty ? dup(root) : cs_openat2(root, rel, UInt64(CS_O_PATH | O_CLOEXEC), 0, resolve)
        guard fd >= 0 else {
            let e = errno
            if !required && (e == ENOENT || e == ELOOP || e == ENOTDIR) { return }
            throw SandboxError.failure("cannot open \(source) for the sandbox's root: \(Errno(e))"
                                       + (e == ELOOP ? " (a symbolic link on the way; comfy-sandbox binds real paths only)" : ""),
                                       hint: "check the path in the config")
        }
        let owned = OwnedFD(fd)
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SandboxError.failure("cannot stat \(source): \(Errno.current)") }
        var set = CS_MOUNT_ATTR_NOSUID
        switch access {
        case .readOnly: set |= CS_MOUNT_ATTR_RDONLY | CS_MOUNT_ATTR_NODEV
        case .readWrite: set |= CS_MOUNT_ATTR_NODEV | CS_MOUNT_ATTR_NOEXEC
        case .device: set |= CS_MOUNT_ATTR_NOEXEC
        }
        // The tree each spawn attaches is made from this fd (`withSpec`),
        // whose errors name the path: not made twice on `run`'s path.
        sources.append(Source(fd: owned, recursive: recursive, set: set, display: source))
        let isFile = (st.st_mode & S_IFMT) != S_IFDIR
        ops.append(Op(kind: CS_OP_TREE, target: target ?? source, fd: Int32(sources.count - 1), isFile: isFile))
        binds.append((source, target ?? source, access != .readOnly))
    }

    public func directory(_ target: String, mode: mode_t = 0o755, owner: (uid_t, gid_t)? = nil) {
        ops.append(Op(kind: CS_OP_DIR, target: target, uid: owner?.0 ?? uid_t.max, gid: owner?.1 ?? gid_t.max, mode: mode))
    }

    public func file(_ target: String, _ content: String, mode: mode_t = 0o644) {
        ops.append(Op(kind: CS_OP_FILE, target: target, data: Array(content.utf8), mode: mode))
    }

    public func symlink(_ target: String, to destination: String) {
        ops.append(Op(kind: CS_OP_SYMLINK, target: target, data: Array(destination.utf8)))
    }

    /// A private tmpfs, `size` like "1g" or "64m"; noexec unless `exec`.
    public func tmpfs(_ target: String, size: String, mode: mode_t, owner: (uid_t, gid_t)? = nil, exec: Bool = false,
                      rule: Landlock.FS? = nil) {
        var flags = UInt(MS_NOSUID | MS_NODEV)
        if !exec { flags |= UInt(MS_NOEXEC) }
        ops.append(Op(kind: CS_OP_TMPFS, target: target, data: Array("size=\(size),mode=\(String(mode, radix: 8))".utf8),
                      flags: flags, uid: owner?.0 ?? uid_t.max, gid: owner?.1 ?? gid_t.max, mode: mode))
        if let rule { insideRules.append((target, rule)) }
    }

    public func proc(_ target: String = "/proc") {
        ops.append(Op(kind: CS_OP_PROC, target: target, flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)))
    }

    public func cgroup2(_ target: String) {
        ops.append(Op(kind: CS_OP_CGROUP2, target: target, flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY), optional: true))
    }

    public func readOnly(_ target: String) { ops.append(Op(kind: CS_OP_READONLY, target: target)) }

    public func write(_ target: String, _ content: String, optional: Bool) {
        ops.append(Op(kind: CS_OP_WRITE, target: target, data: Array(content.utf8), optional: optional))
    }

    public func rule(_ path: String, _ access: Landlock.FS) { insideRules.append((path, access)) }

    /// A detached tree of the mount(s) at `fd`, with attributes `set`.
    static func tree(from fd: Int32, recursive: Bool, set: UInt64, display: String) throws -> OwnedFD {
        let tree = cs_open_tree_clone(fd, "", recursive ? 1 : 0)
        guard tree >= 0 else {
            throw SandboxError.failure("open_tree(\(display)) failed: \(Errno.current)",
                                       hint: "the constructed root needs Linux 5.12 or later (open_tree, move_mount, mount_setattr)")
        }
        let owned = OwnedFD(tree)
        guard cs_mount_setattr_tree(tree, set, 0) == 0 else {
            throw SandboxError.failure("mount_setattr(\(display)) failed: \(Errno.current)",
                                       hint: "the constructed root needs Linux 5.12 or later (mount_setattr)")
        }
        return owned
    }

    /// The spec for cs_spawn_confined, valid inside `body`, with fresh
    /// detached trees. Landlock access bits are cut to what `handled`
    /// covers (the ruleset refuses others).
    func withSpec<T>(handled: Landlock.FS, _ body: (UnsafePointer<cs_root_spec>) throws -> T) throws -> T {
        let trees = try sources.map { try Self.tree(from: $0.fd.raw, recursive: $0.recursive, set: $0.set, display: $0.display) }
        var strings: [UnsafeMutablePointer<CChar>] = []
        defer { for s in strings { free(s) } }
        func c(_ s: String) -> UnsafeMutablePointer<CChar> { let p = strdup(s)!; strings.append(p); return p }
        var buffers: [UnsafeMutablePointer<UInt8>] = []
        defer { for b in buffers { b.deallocate() } }
        var cOps: [cs_mount_op] = []
        for op in ops {
            var o = cs_mount_op()
            o.kind = Int32(op.kind.rawValue)
            o.target = UnsafePointer(c(op.target))
            o.fd = op.kind == CS_OP_TREE ? trees[Int(op.fd)].raw : -1
            o.is_file = op.isFile ? 1 : 0
            if !op.data.isEmpty || op.kind == CS_OP_FILE || op.kind == CS_OP_SYMLINK || op.kind == CS_OP_TMPFS || op.kind == CS_OP_WRITE {
                let buf = UnsafeMutablePointer<UInt8>.allocate(capacity: op.data.count + 1)
                buf.initialize(from: op.data, count: op.data.count)
                buf[op.data.count] = 0
                buffers.append(buf)
                o.data = UnsafeRawPointer(buf).assumingMemoryBound(to: CChar.self)
                o.data_len = op.data.count
            }
            o.flags = op.flags
            o.uid = op.uid
            o.gid = op.gid
            o.mode = op.mode
            o.optional = op.optional ? 1 : 0
            cOps.append(o)
        }
        var cRules: [cs_inside_rule] = []
        for (path, access) in insideRules {
            let a = access.intersection(handled)
            guard !a.isEmpty else { continue }
            cRules.append(cs_inside_rule(path: UnsafePointer(c(path)), access: a.rawValue))
        }
        let base = c("/tmp")
        let host = c(hostname)
        // The trees' fds must stay open until the spawn has attached them:
        // only their numbers are in cOps, and an optimized build would
        // otherwise release (close) them after their last use above.
        return try withExtendedLifetime(trees) { try cOps.withUnsafeBufferPointer { opBuf in
            try cRules.withUnsafeBufferPointer { ruleBuf in
                var spec = cs_root_spec()
                spec.base = UnsafePointer(base)
                spec.ops = opBuf.baseAddress
                spec.n_ops = Int32(opBuf.count)
                spec.rules = ruleBuf.baseAddress
                spec.n_rules = Int32(ruleBuf.count)
                spec.hostname = UnsafePointer(host)
                return try withUnsafePointer(to: &spec) { try body($0) }
            }
        } }
    }

    /// Describes op `index` for an error message.
    func describe(_ index: Int32) -> String {
        guard index >= 0, Int(index) < ops.count else { return "" }
        let op = ops[Int(index)]
        let what: String = switch op.kind {
        case CS_OP_TREE: "binding \(binds.first { $0.target == op.target }?.source ?? "?") at \(op.target)"
        case CS_OP_TMPFS: "a tmpfs at \(op.target)"
        case CS_OP_PROC: "/proc"
        case CS_OP_CGROUP2: "cgroup2 at \(op.target)"
        case CS_OP_READONLY: "making \(op.target) read-only"
        case CS_OP_WRITE: "writing \(op.target)"
        default: op.target
        }
        return " (\(what))"
    }
}

extension ConstructedRoot {
    /// A writable bind whose files may be executed: only for an install's staging.
    public func bindExecutable(_ path: String) throws {
        try bind(path, .readWrite, recursive: false, required: true)
        // Without the noexec bind() sets: builds execute what they compile.
        if !sources.isEmpty { sources[sources.count - 1].set &= ~CS_MOUNT_ATTR_NOEXEC }
    }
}
