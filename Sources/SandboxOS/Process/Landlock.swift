import CSandbox
import FoundationEssentials
import Glibc

/// Landlock: which files the confined child may touch and which TCP ports it
/// may bind or connect to, enforced by the kernel for the child and all its
/// descendants. The parent (root) builds the ruleset from fds it opens with
/// O_PATH|O_CLOEXEC; the child only calls landlock_restrict_self.
public enum Landlock {
    /// Filesystem access rights, by the ABI that introduced them.
    public struct FS: OptionSet, Sendable, Hashable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        public static let execute = FS(rawValue: 1 << 0)
        public static let writeFile = FS(rawValue: 1 << 1)
        public static let readFile = FS(rawValue: 1 << 2)
        public static let readDir = FS(rawValue: 1 << 3)
        public static let removeDir = FS(rawValue: 1 << 4)
        public static let removeFile = FS(rawValue: 1 << 5)
        public static let makeChar = FS(rawValue: 1 << 6)
        public static let makeDir = FS(rawValue: 1 << 7)
        public static let makeReg = FS(rawValue: 1 << 8)
        public static let makeSock = FS(rawValue: 1 << 9)
        public static let makeFifo = FS(rawValue: 1 << 10)
        public static let makeBlock = FS(rawValue: 1 << 11)
        public static let makeSym = FS(rawValue: 1 << 12)
        public static let refer = FS(rawValue: 1 << 13)       // ABI 2
        public static let truncate = FS(rawValue: 1 << 14)    // ABI 3
        public static let ioctlDev = FS(rawValue: 1 << 15)    // ABI 5

        /// Every right the given ABI knows: these are all handled, so anything
        /// not granted by a rule is refused.
        public static func handled(abi: Int) -> FS {
            var all = FS(rawValue: (1 << 13) - 1)
            if abi >= 2 { all.insert(.refer) }
            if abi >= 3 { all.insert(.truncate) }
            if abi >= 5 { all.insert(.ioctlDev) }
            return all
        }
        /// Rights that make sense on a regular file (the kernel rejects the others there).
        public static let fileRights: FS = [.execute, .writeFile, .readFile, .truncate, .ioctlDev]

        public static let read: FS = [.readFile, .readDir]
        public static let readExecute: FS = [.readFile, .readDir, .execute]
        /// Read-write for data: everything but exec and device nodes. Writable
        /// places are not executable: a payload dropped there cannot be run.
        public static let readWrite: FS = [.readFile, .readDir, .writeFile, .truncate, .removeDir, .removeFile,
                                           .makeDir, .makeReg, .makeSock, .makeFifo, .makeSym, .refer]
        public static let device: FS = [.readFile, .writeFile, .truncate]
        public static let gpuDevice: FS = [.readFile, .writeFile, .ioctlDev]
    }

    public static let netBindTCP: UInt64 = 1 << 0       // ABI 4
    public static let netConnectTCP: UInt64 = 1 << 1    // ABI 4
    public static let scopeAbstractUnixSocket: UInt64 = 1 << 0   // ABI 6
    public static let scopeSignal: UInt64 = 1 << 1               // ABI 6

    /// The kernel's Landlock ABI version, 0 when Landlock is absent or off.
    /// `COMFY_SANDBOX_LANDLOCK_ABI=N` lowers it (never raises it): how the
    /// tests show what `true` and `"best-effort"` do on an older kernel.
    public static var abi: Int {
        let kernel = Int(max(0, cs_landlock_abi()))
        if let cap = ProcessEnvironment.value("COMFY_SANDBOX_LANDLOCK_ABI").flatMap({ Int($0) }), cap >= 0 {
            return min(kernel, cap)
        }
        return kernel
    }

    /// One path rule, as asked for and as added.
    public struct PathRule: Sendable, Equatable {
        public var path: String
        public var access: FS
        /// A missing path is skipped with a note unless `required` (a share).
        public var required: Bool
        public init(_ path: String, _ access: FS, required: Bool = false) {
            self.path = path
            self.access = access
            self.required = required
        }
    }

    /// The network policy (ABI >= 4).
    public struct NetPolicy: Sendable, Equatable {
        /// nil: bind is not handled (any port); else only these ports.
        public var bindPorts: [UInt16]?
        /// nil: connect is not handled (anywhere); else only these ports.
        public var connectPorts: [UInt16]?
        public init(bindPorts: [UInt16]?, connectPorts: [UInt16]?) {
            self.bindPorts = bindPorts
            self.connectPorts = connectPorts
        }
    }

    /// The first Linux release with each Landlock ABI.
    public static func kernel(abi: Int) -> String {
        switch abi {
        case ...1: "5.13"
        case 2: "5.19"
        case 3: "6.2"
        case 4: "6.7"
        case 5: "6.10"
        case 6: "6.12"
        default: "6.15"
        }
    }

    /// Something the rules ask for that an older ABI does not have.
    public struct Gap: Sendable, Equatable, CustomStringConvertible {
        public var feature: String
        /// The ABI that brings it.
        public var abi: Int
        /// true: without it less is enforced. false: without it Landlock is
        /// stricter instead (ABI 1 refuses every rename or link across
        /// directories), which breaks things but weakens nothing.
        public var weaker: Bool
        /// What its absence means, when the name does not say it.
        public var detail: String? = nil
        public var description: String {
            "\(feature) (ABI \(abi), Linux \(Landlock.kernel(abi: abi))+)" + (detail.map { ": \($0)" } ?? "")
        }
    }

    /// What rules of this shape lack on a kernel with Landlock ABI `abi`.
    public static func gaps(abi: Int, net: NetPolicy?, scope: Bool) -> [Gap] {
        guard abi > 0 else { return [Gap(feature: "Landlock", abi: 1, weaker: true, detail: "no file, port or scope rule at all")] }
        var gaps: [Gap] = []
        if abi < 2 { gaps.append(Gap(feature: "REFER", abi: 2, weaker: false, detail: "renaming or linking across directories is refused altogether instead")) }
        if abi < 3 { gaps.append(Gap(feature: "TRUNCATE", abi: 3, weaker: true)) }
        if abi < 4, net != nil { gaps.append(Gap(feature: "TCP bind/connect rules", abi: 4, weaker: true)) }
        if abi < 5 { gaps.append(Gap(feature: "IOCTL_DEV", abi: 5, weaker: true)) }
        if abi < 6, scope { gaps.append(Gap(feature: "abstract-socket and signal scoping", abi: 6, weaker: true)) }
        return gaps
    }

    /// What a built ruleset does, and what it could not do on this kernel.
    public struct Summary: Sendable {
        public var abi: Int
        public var added: [PathRule] = []
        public var skipped: [String] = []
        public var gaps: [Gap] = []
        /// The gaps that leave something unenforced, for messages.
        public var notEnforced: [String] { gaps.filter(\.weaker).map(\.description) }
        public var net: NetPolicy?
        public var scoped: Bool = false
    }

    /// Builds a ruleset fd for `rules` and `net`. Throws when a required path
    /// is missing or the kernel refuses a rule. On ABI 0 returns nil (the
    /// caller decides whether that is acceptable).
    public static func ruleset(_ rules: [PathRule], net: NetPolicy?, scope: Bool = true,
                               abi: Int = Landlock.abi) throws -> (OwnedFD?, Summary) {
        var summary = Summary(abi: abi)
        summary.gaps = gaps(abi: abi, net: net, scope: scope)
        guard abi > 0 else { return (nil, summary) }
        let handled = FS.handled(abi: abi)

        var handledNet: UInt64 = 0
        if let net, abi >= 4 {
            if net.bindPorts != nil { handledNet |= netBindTCP }
            if net.connectPorts != nil { handledNet |= netConnectTCP }
            summary.net = net
        }
        var scoped: UInt64 = 0
        if scope && abi >= 6 {
            scoped = scopeAbstractUnixSocket | scopeSignal
            summary.scoped = true
        }

        let fd = cs_landlock_create_ruleset(handled.rawValue, handledNet, scoped)
        guard fd >= 0 else {
            throw SandboxError.failure("landlock_create_ruleset failed: \(Errno.current)",
                                       hint: "set launcher.landlock to \"best-effort\" to start without it")
        }
        let ruleset = OwnedFD(fd)
        // Every rule's path is opened from this trusted root fd with
        // openat2(RESOLVE_NO_SYMLINKS): a link anywhere on the way (one the
        // sandbox could swap in, in a directory it can write) is refused,
        // never followed to another place that would then get the rule.
        let root = open("/", CS_O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { throw SandboxError.failure("cannot open / for the Landlock rules: \(Errno.current)") }
        defer { close(root) }

        for rule in rules {
            // O_PATH: no read permission needed and nothing is opened for I/O;
            // the rule attaches to the inode this fd names, so what we checked
            // is what gets the rule.
            let rel = String(rule.path.drop(while: { $0 == "/" }))
            let pfd = rel.isEmpty ? dup(root) : cs_openat2(root, rel, UInt64(CS_O_PATH | O_CLOEXEC), 0, CS_RESOLVE_NO_SYMLINKS)
            if pfd < 0 {
                let e = Errno.current
                if rule.required {
                    throw SandboxError.failure("cannot open \(rule.path) for its Landlock rule: \(e)"
                                               + (e.rawValue == ELOOP ? " (a symbolic link on the way: rules are made for real paths only)" : ""),
                                               hint: "check the share's path in the config, or run `comfy-sandbox provision`")
                }
                summary.skipped.append("\(rule.path) (\(e))")
                continue
            }
            defer { close(pfd) }
            var st = stat()
            guard fstat(pfd, &st) == 0 else { throw SandboxError.failure("fstat \(rule.path): \(Errno.current)") }
            var access = rule.access.intersection(handled)
            if (st.st_mode & S_IFMT) != S_IFDIR { access = access.intersection(.fileRights) }
            guard !access.isEmpty else { continue }
            if cs_landlock_add_path_rule(fd, pfd, access.rawValue) != 0 {
                throw SandboxError.failure("landlock_add_rule for \(rule.path) failed: \(Errno.current)")
            }
            summary.added.append(PathRule(rule.path, access, required: rule.required))
        }
        if handledNet != 0, let net {
            for port in net.bindPorts ?? [] where cs_landlock_add_net_port_rule(fd, UInt64(port), netBindTCP) != 0 {
                throw SandboxError.failure("Landlock bind rule for port \(port) failed: \(Errno.current)")
            }
            for port in net.connectPorts ?? [] where cs_landlock_add_net_port_rule(fd, UInt64(port), netConnectTCP) != 0 {
                throw SandboxError.failure("Landlock connect rule for port \(port) failed: \(Errno.current)")
            }
        }
        if ProcessEnvironment.value("COMFY_SANDBOX_DEBUG") != nil {
            for rule in summary.added { printError("landlock: \(rule.path) 0x\(String(rule.access.rawValue, radix: 16))") }
            for skip in summary.skipped { printError("landlock: skipped \(skip)") }
        }
        return (ruleset, summary)
    }

    /// The files this process has mapped (its binary and shared libraries),
    /// read from /proc/self/maps: what a re-executed copy of it needs to
    /// read and execute to start under Landlock, and nothing else.
    public static func selfMappedFiles() -> [String] {
        // read(2) to EOF: procfs files report size 0, and a size-based read
        // (String(contentsOfFile:)) returns only the first page.
        let fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[..<n]
        }
        let maps = String(decoding: bytes, as: UTF8.self)
        var seen = Set<String>()
        var files: [String] = []
        for line in maps.split(separator: "\n") {
            guard let slash = line.firstIndex(of: "/") else { continue }
            let path = String(line[slash...])
            if path.hasSuffix(" (deleted)") || path.hasPrefix("/dev/") || path.hasPrefix("/memfd:") { continue }
            if seen.insert(path).inserted { files.append(path) }
        }
        return files
    }
}
