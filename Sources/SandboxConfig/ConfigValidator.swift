import FoundationEssentials
import Glibc
import SandboxOS

/// Semantic checks that types cannot express. Each problem is one line that
/// starts with the key path (`shares[1].path: ...`).
public enum ConfigValidator {
    /// Directories no share may be in or be: the system's own.
    package static let systemDirectories = ["/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
                                    "/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var", "/tmp/.X11-unix"]
    /// Protocols git may ever be allowed to use. `file` and `ext` never: a
    /// local path or a command line is not a remote.
    public static let knownProtocols: Set<String> = ["https", "http", "git", "ssh"]

    public static func problems(in c: Config) -> [String] {
        var out: [String] = []
        func bad(_ path: String, _ message: String) { out.append("\(path): \(message)") }

        if c.version != 1 { bad("version", "expected 1, got \(c.version)") }

        // Names
        if !isValidAccountName(c.primaryUser) { bad("primary_user", nameProblem(c.primaryUser)) }
        if c.primaryUser == "root" { bad("primary_user", "must be the human user, not root") }
        if !isValidAccountName(c.sandboxUser.name) { bad("sandbox_user.name", nameProblem(c.sandboxUser.name)) }
        if c.sandboxUser.name == c.primaryUser { bad("sandbox_user.name", "must differ from primary_user (\"\(c.primaryUser)\")") }
        if c.sandboxUser.name == "root" { bad("sandbox_user.name", "must not be root") }
        if !isValidAccountName(c.sharedGroup.name) { bad("shared_group.name", nameProblem(c.sharedGroup.name)) }
        if ["root", "wheel", "sudo", "adm", "shadow", "disk", "docker", "video", "render"].contains(c.sharedGroup.name) {
            bad("shared_group.name", "\"\(c.sharedGroup.name)\" is a system group; choose a dedicated one like \"comfyshared\"")
        }
        for (i, m) in c.sharedGroup.members.enumerated() where !isValidAccountName(m) {
            bad("shared_group.members[\(i)]", nameProblem(m))
        }
        if c.sharedGroup.members.contains(c.sandboxUser.name) {
            bad("shared_group.members", "lists the sandbox user; it is added to the group on its own")
        }

        // Paths
        checkAbsolute(c.sandboxUser.home, "sandbox_user.home", &out)
        checkAbsolute(c.stateDir, "state_dir", &out)
        checkAbsolute(c.comfyui.path, "comfyui.path", &out)
        checkAbsolute(c.comfyui.python, "comfyui.python", &out)
        if isSystemDirectory(c.comfyui.path) || c.comfyui.path == "/opt" {
            bad("comfyui.path", "\(c.comfyui.path) is a system directory; use a dedicated one like /opt/comfy-sandbox/ComfyUI")
        }
        if isSystemDirectory(c.stateDir) { bad("state_dir", "\(c.stateDir) is a system directory; use /var/lib/comfy-sandbox") }
        if isSystemDirectory(c.sandboxUser.home) || c.sandboxUser.home == "/home" {
            bad("sandbox_user.home", "\(c.sandboxUser.home) is a system directory; use a dedicated one like /home/comfyui_sandbox")
        }
        // Foundation: the group is shared, never someone's private group; the
        // installed code is root's, so neither the sandbox home nor the state may live in it.
        if c.sharedGroup.name == c.primaryUser {
            bad("shared_group.name", "must differ from primary_user (\"\(c.primaryUser)\" is that user's private group); use a dedicated one like \"comfyshared\"")
        }
        if c.sharedGroup.name == c.sandboxUser.name {
            bad("shared_group.name", "must differ from sandbox_user.name (\"\(c.sandboxUser.name)\")")
        }
        if c.sandboxUser.home == c.comfyui.path || isInside(c.sandboxUser.home, [c.comfyui.path]) {
            bad("sandbox_user.home", "\(c.sandboxUser.home) is inside comfyui.path (\(c.comfyui.path)), which is root's installed code")
        }
        if c.stateDir == c.comfyui.path || isInside(c.stateDir, [c.comfyui.path]) || isInside(c.comfyui.path, [c.stateDir]) {
            bad("state_dir", "\(c.stateDir) overlaps comfyui.path (\(c.comfyui.path)); keep them apart")
        }
        if isInside(c.stateDir, [c.sandboxUser.home]) || c.stateDir == c.sandboxUser.home {
            bad("state_dir", "\(c.stateDir) is inside the sandbox user's home; the sandbox could then write the records")
        }

        // Repos and revs
        checkRepo(c.comfyui.repo, "comfyui.repo", allowed: c.git.allowedProtocols, &out)
        checkRev(c.comfyui.rev, "comfyui.rev", &out)
        for (i, a) in c.comfyui.pipArgs.enumerated() {
            let flag = a.split(separator: Character("="), maxSplits: 1).first.map(String.init) ?? a
            if a.utf8.contains(0) {
                bad("comfyui.pip_args[\(i)]", "contains a NUL byte")
            } else if ["--target", "-t", "--prefix", "--root", "--user", "--src", "--editable", "-e", "--python", "--system", "--break-system-packages"].contains(flag) {
                bad("comfyui.pip_args[\(i)]", "\"\(a)\" would change where packages are installed; comfy-sandbox installs into its own sealed staging directory")
            }
        }
        for (i, r) in c.comfyui.extraRequirements.enumerated() {
            if let why = requirementLineProblem(r) { bad("comfyui.extra_requirements[\(i)]", why) }
        }
        if let prefer = c.comfyui.preferVersions {
            checkAbsolute(prefer, "comfyui.prefer_versions", &out)
            // Root reads it for an install: not a file the sandbox can write.
            let sandboxWritable = [c.sandboxUser.home, c.comfyui.path] + c.shares.filter(\.access.writable).map(\.path)
            if isInside(prefer, sandboxWritable) {
                bad("comfyui.prefer_versions", "\(prefer) is where the sandbox can write; keep it beside the config (root's)")
            }
        }
        for (i, p) in c.git.allowedProtocols.enumerated() where !knownProtocols.contains(p) {
            bad("git.allowed_protocols[\(i)]", "\"\(p)\" is not allowed; choose from \(knownProtocols.sorted().joined(separator: ", "))")
        }

        // Shares
        var shareNames = Set<String>(), mounts = Set<String>()
        for (i, s) in c.shares.enumerated() {
            let k = "shares[\(i)]"
            if s.name.isEmpty || !s.name.utf8.allSatisfy({ isASCIIAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") }) {
                bad("\(k).name", "\"\(s.name)\" must be letters, digits, - and _")
            }
            if !shareNames.insert(s.name).inserted { bad("\(k).name", "\"\(s.name)\" is used by another share") }
            checkAbsolute(s.path, "\(k).path", &out)
            if isSystemDirectory(s.path) || isInside(s.path, systemDirectories.filter { $0 != "/" }) {
                bad("\(k).path", "\(s.path) is in a system directory; shares hold user data, e.g. /home/\(c.primaryUser)/...")
            }
            if isInside(s.path, [c.comfyui.path]) || isInside(c.comfyui.path, [s.path]) || s.path == c.comfyui.path {
                bad("\(k).path", "\(s.path) overlaps comfyui.path (\(c.comfyui.path)); shares live outside the installed code")
            }
            if isInside(c.stateDir, [s.path]) || s.path == c.stateDir {
                bad("\(k).path", "\(s.path) contains state_dir; the sandbox could then write the records")
            }
            if s.path == c.sandboxUser.home || isInside(c.sandboxUser.home, [s.path]) {
                bad("\(k).path", "\(s.path) contains the sandbox user's home")
            }
            if isInside(s.path, [c.sandboxUser.home]) {
                bad("\(k).path", "\(s.path) is inside sandbox_user.home (\(c.sandboxUser.home)); the sandbox would own the share's parent")
            }
            for (j, o) in c.shares.enumerated() where j < i {
                if o.path == s.path || isInside(s.path, [o.path]) || isInside(o.path, [s.path]) {
                    bad("\(k).path", "\(s.path) nests with shares[\(j)].path (\(o.path)); shares may not contain each other")
                }
            }
            let m = s.mount
            if m.isEmpty || m.hasPrefix("/") || m.split(separator: Character("/"), omittingEmptySubsequences: false).contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) {
                bad("\(k).mount", "\"\(m)\" must be a relative path inside comfyui.path, without . or .. or empty parts")
            } else if m == "custom_nodes" || m.hasPrefix("custom_nodes/") || m == ".git" || m.hasPrefix(".git/") {
                bad("\(k).mount", "\"\(m)\" would replace ComfyUI's own \(m.hasPrefix(".git") ? ".git" : "custom_nodes") directory")
            } else if !mounts.insert(m).inserted {
                bad("\(k).mount", "\"\(m)\" is used by another share")
            }
        }

        // Custom nodes
        var nodeNames = Set<String>()
        for (i, n) in c.customNodes.enumerated() {
            let k = "custom_nodes[\(i)]"
            if !isValidNodeName(n.name) {
                bad("\(k).name", "\"\(n.name)\" must be a plain directory name: letters, digits, . _ -, not starting with . or -")
            }
            if !nodeNames.insert(n.name).inserted { bad("\(k).name", "\"\(n.name)\" is used by another node") }
            checkRepo(n.repo, "\(k).repo", allowed: c.git.allowedProtocols, &out)
            checkRev(n.rev, "\(k).rev", &out)
            for name in n.env.keys.sorted() {
                if let why = envNameProblem(name) { bad("\(k).env.\(name)", why) }
                if n.env[name]!.utf8.contains(0) { bad("\(k).env.\(name)", "contains a NUL byte") }
            }
        }

        // Launcher
        let l = c.launcher
        if !(1...65535).contains(l.port) { bad("launcher.port", "\(l.port) is not a TCP port (1-65535)") }
        if !isIPAddress(l.listen) {
            bad("launcher.listen", "\"\(l.listen)\" is not an IP address; use 127.0.0.1")
        } else if !isLoopback(l.listen) && !l.allowRemoteListen {
            bad("launcher.listen", "\(l.listen) would expose ComfyUI beyond this machine; keep 127.0.0.1 and use `ssh -L 8188:127.0.0.1:8188 HOST`, or set launcher.allow_remote_listen to true if you really mean it")
        }
        if l.limits.nofile < 64 { bad("launcher.limits.nofile", "\(l.limits.nofile) is too low for ComfyUI (at least 64)") }
        if l.limits.nproc < 16 { bad("launcher.limits.nproc", "\(l.limits.nproc) is too low for ComfyUI (at least 16)") }
        if let m = l.limits.memory, ByteSize.parse(m).map({ $0 < 256 << 20 }) ?? true {
            bad("launcher.limits.memory", "\"\(m)\" is not a size of at least 256m (like \"24g\"), or null for no limit")
        }
        if ByteSize.parse(l.limits.shmSize).map({ $0 < 16 << 20 }) ?? true {
            bad("launcher.limits.shm_size", "\"\(l.limits.shmSize)\" is not a size of at least 16m (like \"2g\")")
        }
        var instanceNames = Set<String>(), instancePorts = Set<Int>()
        for (i, inst) in l.instances.enumerated() {
            let k = "launcher.instances[\(i)]"
            if inst.name.isEmpty || inst.name.count > 32 || !inst.name.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" })
                || inst.name.hasPrefix("-") {
                bad("\(k).name", "\"\(inst.name)\" must be 1-32 of a-z, 0-9, - and _ (it names a systemd unit, a pid file and a log)")
            }
            if !instanceNames.insert(inst.name).inserted { bad("\(k).name", "\"\(inst.name)\" is used by another instance") }
            if !(1...65535).contains(inst.port) { bad("\(k).port", "\(inst.port) is not a TCP port (1-65535)") }
            if !instancePorts.insert(inst.port).inserted { bad("\(k).port", "\(inst.port) is another instance's port too") }
            if let m = inst.memory, ByteSize.parse(m).map({ $0 < 256 << 20 }) ?? true {
                bad("\(k).memory", "\"\(m)\" is not a size of at least 256m (like \"24g\")")
            }
            for (j, a) in inst.extraArgs.enumerated() where a.utf8.contains(0) { bad("\(k).extra_args[\(j)]", "contains a NUL byte") }
        }
        if let tasks = l.limits.tasks, tasks < 32 { bad("launcher.limits.tasks", "\(tasks) is too low for ComfyUI (at least 32)") }
        if !(1...10000).contains(l.limits.cpuWeight) { bad("launcher.limits.cpu_weight", "\(l.limits.cpuWeight) is not a CPU weight (1-10000, 100 = equal)") }
        for (i, a) in l.extraArgs.enumerated() where a.utf8.contains(0) {
            bad("launcher.extra_args[\(i)]", "contains a NUL byte")
        }
        for (i, u) in l.uiUsers.enumerated() {
            if u == "*" {
                if l.uiUsers.count > 1 { bad("launcher.ui_users[\(i)]", "\"*\" (anyone, other machines included) stands alone; list names or \"*\", not both") }
            } else if !isValidAccountName(u) {
                bad("launcher.ui_users[\(i)]", nameProblem(u))
            }
        }
        for (i, h) in l.uiHosts.enumerated() where UIAuthority.parse(h, defaultPort: 80) == nil {
            bad("launcher.ui_hosts[\(i)]", "\"\(h)\" is not a host name, IPv4 address or [IPv6] address, with an optional :port (as a browser's address bar shows it: localhost:9000, gpu-box.lan)")
        }
        if l.uiCSP.utf8.contains(where: { $0 < 0x20 || $0 > 0x7e }) || l.uiCSP.utf8.count > 4096 {
            bad("launcher.ui_csp", "must be one line of printable ASCII (at most 4096 characters), or \"\" for none")
        }
        for (i, entry) in l.egress.enumerated() {
            switch Egress.Rule.parse(entry) {
            case .failure(let e): bad("launcher.egress[\(i)]", e.message)
            case .success(let rule) where !rule.host.contains(".") && rule.wildcard:
                bad("launcher.egress[\(i)]", "\"\(entry)\" would allow a whole top-level domain; name the service's own domain (*.example.com)")
            case .success(let rule) where !rule.host.contains("."):
                bad("launcher.egress[\(i)]", "\"\(entry)\" is a single label: it names something on this network (localhost, a LAN host), not a service; use its full name")
            default: break
            }
        }
        if !l.egress.isEmpty {
            if l.network == .host {
                bad("launcher.egress", "lists \(l.egress.count) service(s), but launcher.network is host, which reaches everything anyway; use loopback-only with the list, or empty it")
            }
            let ports = [l.port] + l.instances.map(\.port)
            if ports.contains(Int(Egress.proxyPort)) {
                bad("launcher.port", "\(Egress.proxyPort) is where the egress proxy listens inside the sandbox when launcher.egress is set; pick another port")
            }
        }

        // Models
        if let cache = c.models.hfCache { checkAbsolute(cache, "models.hf_cache", &out) }
        for (i, link) in c.models.links.enumerated() {
            let k = "models.links[\(i)]"
            let parts = link.repo.split(separator: Character("/"), omittingEmptySubsequences: false)
            if parts.count != 2 || parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
                bad("\(k).repo", "\"\(link.repo)\" must look like \"org/name\"")
            }
            if !isSafeRelative(link.file) { bad("\(k).file", "\"\(link.file)\" must be a relative path without . or ..") }
            if !isSafeRelative(link.dir) { bad("\(k).dir", "\"\(link.dir)\" must be a relative path without . or ..") }
            if let r = link.rename, r.isEmpty || r.contains("/") || r == "." || r == ".." {
                bad("\(k).rename", "\"\(r)\" must be a plain file name")
            }
            if let r = link.revision, r.isEmpty || r.contains("/") || r.hasPrefix(".") {
                bad("\(k).revision", "\"\(r)\" must be a commit id or a ref name")
            }
        }
        if !c.models.links.isEmpty && c.models.hfCache == nil {
            bad("models.hf_cache", "is null but models.links names \(c.models.links.count) link(s); set it to your Hugging Face cache (e.g. /home/\(c.primaryUser)/.cache/huggingface/hub)")
        }
        if !c.models.links.isEmpty && c.share(named: "models") == nil {
            bad("models.links", "needs a share named \"models\" to link into")
        }
        return out
    }

    // MARK: rules, public for tests and other modules

    /// shadow-utils' default NAME_REGEX, and at most 32 bytes.
    public static func isValidAccountName(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 32, let first = s.unicodeScalars.first else { return false }
        guard first == "_" || ("a"..."z").contains(first) else { return false }
        let body = s.unicodeScalars.dropFirst()
        for (i, u) in body.enumerated() {
            let ok = ("a"..."z").contains(u) || ("0"..."9").contains(u) || u == "_" || u == "-" || (u == "$" && i == body.count - 1)
            if !ok { return false }
        }
        return true
    }

    package static func nameProblem(_ s: String) -> String {
        "\"\(s)\" is not a valid user or group name (lowercase letter or _ first, then lowercase letters, digits, _ or -, at most 32)"
    }

    public static func isValidNodeName(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 128, !s.hasPrefix("."), !s.hasPrefix("-") else { return false }
        return s.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-"
        } && !s.hasSuffix(".disabled")
    }

    /// A normalised absolute path: starts with /, no empty, . or .. parts, no trailing /.
    public static func isNormalizedAbsolute(_ p: String) -> Bool {
        let u = Array(p.utf8)
        guard u.first == UInt8(ascii: "/") else { return false }
        return u.count == 1 || componentsAreNormal(u[1...])
    }

    /// Every "/"-separated component of `path` is non-empty and neither "."
    /// nor "..", and no byte is NUL. On bytes rather than through
    /// split/Substring ==, whose first use costs more than all the rest of
    /// the validation on `run`'s start-up path.
    package static func componentsAreNormal(_ path: ArraySlice<UInt8>) -> Bool {
        let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")
        var start = path.startIndex
        for i in path.startIndex...path.endIndex {
            if i < path.endIndex && path[i] == 0 { return false }
            guard i == path.endIndex || path[i] == slash else { continue }
            switch i - start {
            case 0: return false
            case 1 where path[start] == dot: return false
            case 2 where path[start] == dot && path[start + 1] == dot: return false
            default: break
            }
            start = i + 1
        }
        return true
    }

    package static func checkAbsolute(_ p: String, _ key: String, _ out: inout [String]) {
        if !isNormalizedAbsolute(p) {
            out.append("\(key): \"\(p)\" must be an absolute path without . or .. parts or a trailing /")
        }
    }

    package static func isSafeRelative(_ p: String) -> Bool {
        let u = Array(p.utf8)
        guard let first = u.first, first != UInt8(ascii: "/") else { return false }
        return componentsAreNormal(u[...])
    }

    /// Is `path` strictly inside one of `dirs`?
    public static func isInside(_ path: String, _ dirs: [String]) -> Bool {
        dirs.contains { d in
            d == "/" ? path != "/" : path.hasPrefix(d + "/")
        }
    }

    package static func isSystemDirectory(_ p: String) -> Bool { systemDirectories.contains(p) }

    /// The protocol git would use for `url`: a scheme, or ssh for scp-like `host:path`, or file for a path.
    /// On UTF-8 bytes, as git reads the URL (and without _StringProcessing's
    /// firstRange, whose first use costs more than the whole validation).
    public static func gitProtocol(of url: String) -> String {
        let u = Array(url.utf8), slash = UInt8(ascii: "/")
        if let i = u.firstOffset(of: "::"), !u[..<i].contains(slash) { return "ext-or-transport-helper" }
        if let i = u.firstOffset(of: "://") { return String(decoding: u[..<i], as: UTF8.self).lowercased() }
        if url.hasPrefix("/") || url.hasPrefix(".") { return "file" }
        if let colon = u.firstIndex(of: UInt8(ascii: ":")), !u[..<colon].contains(slash) { return "ssh" }
        return "file"
    }

    package static func checkRepo(_ url: String, _ key: String, allowed: [String], _ out: inout [String]) {
        if url.isEmpty { out.append("\(key): is empty"); return }
        if url.hasPrefix("-") {
            out.append("\(key): \"\(url)\" starts with '-', which git would read as an option; refusing it")
            return
        }
        if url.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == " " || $0.value == 0x7f }) {
            out.append("\(key): contains whitespace or control characters")
            return
        }
        let proto = gitProtocol(of: url)
        guard knownProtocols.contains(proto) else {
            out.append("\(key): \"\(url)\" uses the \(proto) transport, which is never allowed; use an https:// URL")
            return
        }
        if !allowed.contains(proto) {
            out.append("\(key): \"\(url)\" uses \(proto), which git.allowed_protocols (\(allowed.joined(separator: ", "))) does not allow")
        }
    }

    /// A commit id, tag or branch name, as git check-ref-format would take it, never an option.
    public static func isValidRev(_ rev: String) -> Bool {
        let u = Array(rev.utf8)
        guard !rev.isEmpty, !rev.hasPrefix("-"), !rev.hasPrefix("/"), !rev.hasSuffix("/"), !rev.hasSuffix("."),
              !rev.hasSuffix(".lock"), u.firstOffset(of: "..") == nil, u.firstOffset(of: "@{") == nil,
              u.firstOffset(of: "//") == nil, rev != "@" else { return false }
        return !rev.unicodeScalars.contains { $0.value < 0x21 || $0.value == 0x7f || "~^:?*[\\".unicodeScalars.contains($0) }
    }

    package static func checkRev(_ rev: String, _ key: String, _ out: inout [String]) {
        if !isValidRev(rev) {
            out.append("\(key): \"\(rev)\" is not a commit id, tag or branch name" + (rev.hasPrefix("-") ? " (it starts with '-', which git would read as an option)" : ""))
        }
    }

    package static func isIPAddress(_ s: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, s, &v4) == 1 || inet_pton(AF_INET6, s, &v6) == 1
    }

    public static func isLoopback(_ s: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, s, &v4) == 1 { return (UInt32(bigEndian: v4.s_addr) >> 24) == 127 }
        return s == "::1"
    }

    /// A requirement line from the config: a requirement (name, name==1.2,
    /// name[extra]>=1, name @ https://...), never an option: `-r`, `-e`,
    /// `--index-url` and friends would change what or where is installed.
    package static func requirementLineProblem(_ r: String) -> String? {
        let t = r.trimmingWhitespace()
        if t.isEmpty { return "is empty" }
        if r.utf8.contains(where: { $0 < 0x20 }) { return "contains a control character (one requirement per entry)" }
        if t.hasPrefix("-") { return "\"\(t)\" is an installer option, not a requirement; put options in comfyui.pip_args" }
        // PEP 508: a name starts with an ASCII letter or digit. (ASCII by
        // byte, not Unicode.Scalar.Properties, whose tables every `run`
        // would otherwise load to read its config.)
        guard let first = t.utf8.first, isASCIIAlphanumeric(first) else {
            return "\"\(t)\" does not start with a package name"
        }
        return nil
    }

    package static func isASCIIAlphanumeric(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
    }

    /// Variables a node may set for ComfyUI: a plain name, not one the
    /// launcher sets itself (its confinement and paths depend on them) and
    /// not one that makes the loader or Python run other code.
    package static let reservedEnv: Set<String> = [
        "HOME", "PATH", "TMPDIR", "USER", "LOGNAME", "LANG", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE",
        "HF_HUB_CACHE", "PYTHONNOUSERSITE", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONPATH", "PYTHONHOME",
        "PYTHONSTARTUP", "PYTHONSAFEPATH", "PYTHONINSPECT", "PYTHONEXECUTABLE", "PYTHONUSERBASE", "PYTHONPLATLIBDIR",
        "NODE_DATA",
    ]
    package static func envNameProblem(_ name: String) -> String? {
        guard let first = name.unicodeScalars.first, first == "_" || ("A"..."Z").contains(first) || ("a"..."z").contains(first),
              name.unicodeScalars.allSatisfy({ $0 == "_" || ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0) }) else {
            return "\"\(name)\" is not a variable name (letters, digits and _, not starting with a digit)"
        }
        if reservedEnv.contains(name) || name.hasPrefix("LD_") || name.hasPrefix("GCONV_") {
            return "\(name) is set by the launcher or changes what code runs; it cannot be set per node"
        }
        return nil
    }
}

/// Sizes in the config: "512m", "24g", "1048576" (bytes), as tmpfs and
/// systemd write them (k, m, g, t: powers of 1024).
public enum ByteSize {
    public static func parse(_ text: String) -> UInt64? {
        // By byte: sizes are ASCII, and Character's case mapping and
        // properties would load Unicode tables on every `run`.
        let bytes = Array(text.utf8)
        guard let last = bytes.last else { return nil }
        let unit: UInt64? = switch last | 0x20 {
        case UInt8(ascii: "k"): 1 << 10
        case UInt8(ascii: "m"): 1 << 20
        case UInt8(ascii: "g"): 1 << 30
        case UInt8(ascii: "t"): 1 << 40
        default: nil
        }
        let digits = unit == nil ? bytes[...] : bytes.dropLast()
        guard !digits.isEmpty, digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              let n = UInt64(String(decoding: digits, as: UTF8.self)) else { return nil }
        let (v, overflow) = n.multipliedReportingOverflow(by: unit ?? 1)
        return overflow ? nil : v
    }
}
