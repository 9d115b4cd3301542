import FoundationEssentials
import Glibc

/// The session's own cgroup, made by the launcher when it runs without
/// systemd (under the unit, MemoryMax=, TasksMax= and CPUWeight= do the
/// same): `launcher.limits.memory`, `tasks` and `cpu_weight`, so a node
/// that eats memory is killed inside the session, not the host's other
/// processes, and cannot fork-bomb or starve the machine.
///
/// cgroup v2 (one hierarchy, /sys/fs/cgroup/cgroup.controllers):
/// /sys/fs/cgroup/comfy-sandbox/session-PID with memory.max, pids.max and
/// cpu.weight. cgroup v1 (a hierarchy per controller): the same directory
/// in the memory, pids and cpu hierarchies, with memory.limit_in_bytes,
/// pids.max and cpu.shares. The init moves itself in (it writes 0 to each
/// cgroup.procs it was handed, before anything else runs) and only then
/// makes its cgroup namespace, whose root the session cgroup becomes.
public final class SessionCgroup: @unchecked Sendable {
    public enum Version: String, Sendable { case v2, v1 }
    public let version: Version
    /// The session directories, one per hierarchy.
    public let directories: [String]
    /// cgroup.procs of each, open for writing: handed to the init.
    public let procs: [OwnedFD]

    static let v2Root = "/sys/fs/cgroup"
    static let group = "comfy-sandbox"

    init(version: Version, directories: [String], procs: [OwnedFD]) {
        self.version = version
        self.directories = directories
        self.procs = procs
    }

    public static var detectedVersion: Version? {
        if Paths.exists(v2Root + "/cgroup.controllers") { return .v2 }
        if Paths.exists(v2Root + "/memory/cgroup.procs") || Paths.exists(v2Root + "/pids/cgroup.procs") { return .v1 }
        return nil
    }

    /// Makes the session's cgroup with the configured limits; nil, with the
    /// reason in `note`, when this host has no cgroup the launcher may make.
    public static func make(_ limits: Config.Limits, note: inout String?) -> SessionCgroup? {
        guard let version = detectedVersion else {
            note = "no cgroup hierarchy at /sys/fs/cgroup: launcher.limits.memory, tasks and cpu_weight are NOT enforced"
            return nil
        }
        sweep(version)
        let name = "session-\(getpid())"
        var dirs: [String] = []
        var fds: [OwnedFD] = []
        func fail(_ why: String) -> SessionCgroup? {
            for d in dirs.reversed() { rmdir(d) }
            note = "cannot make the session's cgroup (\(why)): launcher.limits.memory, tasks and cpu_weight are NOT enforced"
            return nil
        }
        switch version {
        case .v2:
            let base = v2Root + "/" + group
            // The controllers must be enabled on the way down: in the root
            // (systemd does) and in our group directory, which holds no process.
            _ = write(v2Root + "/cgroup.subtree_control", "+memory +pids +cpu")
            if mkdir(base, 0o755) != 0 && errno != EEXIST { return fail("mkdir \(base): \(Errno.current)") }
            guard write(base + "/cgroup.subtree_control", "+memory +pids +cpu") else {
                return fail("enabling memory, pids and cpu in \(base): \(Errno.current)")
            }
            let dir = base + "/" + name
            if mkdir(dir, 0o755) != 0 && errno != EEXIST { return fail("mkdir \(dir): \(Errno.current)") }
            dirs.append(dir)
            guard write(dir + "/memory.max", limits.memory.flatMap(ByteSize.parse).map(String.init) ?? "max"),
                  write(dir + "/pids.max", String(limits.tasks)),
                  write(dir + "/cpu.weight", String(limits.cpuWeight)) else { return fail("setting the limits in \(dir): \(Errno.current)") }
        case .v1:
            for controller in ["memory", "pids", "cpu"] {
                let base = v2Root + "/" + controller + "/" + group
                guard Paths.exists(v2Root + "/" + controller + "/cgroup.procs") else { continue }
                if mkdir(base, 0o755) != 0 && errno != EEXIST { return fail("mkdir \(base): \(Errno.current)") }
                let dir = base + "/" + name
                if mkdir(dir, 0o755) != 0 && errno != EEXIST { return fail("mkdir \(dir): \(Errno.current)") }
                dirs.append(dir)
                let ok: Bool = switch controller {
                case "memory": write(dir + "/memory.limit_in_bytes", limits.memory.flatMap(ByteSize.parse).map(String.init) ?? "-1")
                case "pids": write(dir + "/pids.max", String(limits.tasks))
                default: write(dir + "/cpu.shares", String(max(2, limits.cpuWeight * 1024 / 100)))
                }
                if !ok { return fail("setting \(controller) limits in \(dir): \(Errno.current)") }
            }
        }
        for dir in dirs {
            let fd = open(dir + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { return fail("opening \(dir)/cgroup.procs: \(Errno.current)") }
            fds.append(OwnedFD(fd))
        }
        return SessionCgroup(version: version, directories: dirs, procs: fds)
    }

    /// Removes the session's directories once its processes are gone.
    public func remove() {
        for d in directories.reversed() { rmdir(d) }
    }

    /// Session directories of launchers that died without removing them
    /// (rmdir only succeeds on an empty cgroup, so a live session's stays).
    static func sweep(_ version: Version) {
        let bases = version == .v2 ? [v2Root + "/" + group] : ["memory", "pids", "cpu"].map { v2Root + "/" + $0 + "/" + group }
        for base in bases {
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where entry.hasPrefix("session-") {
                if let pid = pid_t(entry.dropFirst("session-".count)), pid != getpid(), kill(pid, 0) != 0 {
                    rmdir(base + "/" + entry)
                }
            }
        }
    }

    /// What `status` and the launcher say about the limits.
    public static func describe(_ limits: Config.Limits) -> String {
        let memory = limits.memory.map { "memory \($0)" } ?? "memory unlimited (launcher.limits.memory is null)"
        return "\(memory), \(limits.tasks) tasks, CPU weight \(limits.cpuWeight), /dev/shm \(limits.shmSize)"
    }

    static func write(_ path: String, _ value: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array((value + "\n").utf8)
        return Glibc.write(fd, bytes, bytes.count) == bytes.count
    }
}
