import FoundationEssentials
import Glibc
import SandboxOS
import SandboxConfig

/// The session's own cgroup, made by the launcher when it runs without
/// systemd (under the unit, MemoryMax=, TasksMax= and CPUWeight= do the
/// same): `launcher.limits.memory`, `tasks` and `cpu_weight`, so a node
/// that eats memory is killed inside the session, not the host's other
/// processes, and cannot fork-bomb or starve the machine.
///
/// cgroup v2 (one hierarchy, /sys/fs/cgroup/cgroup.controllers):
/// /sys/fs/cgroup/comfy-sandbox/session-PID with memory.max, pids.max and
/// cpu.weight (those that are set), made for every session, limits or not: the init is born in
/// it (clone3 CLONE_INTO_CGROUP, `directory`), which costs a mkdir, and the
/// sandbox's cgroup namespace then shows nothing but its own session.
/// cgroup v1 (a hierarchy per controller): the same directory in the
/// memory, pids and cpu hierarchies, with memory.limit_in_bytes, pids.max
/// and cpu.shares, only in those whose limit is set. There is no
/// CLONE_INTO_CGROUP on v1: the init moves itself in by writing 0 to each
/// cgroup.procs it was handed, and every such move takes the kernel's
/// cgroup_threadgroup_rwsem for writing (an RCU grace period) and, for
/// memory, drains the per-CPU page lists: 0.04 to 16 ms each, 7 ms typical
/// for memory on the 6.18 VM this was measured on. A hierarchy that would
/// enforce nothing (memory null, tasks null, cpu_weight 100) is not worth
/// that on every start. Only then does the init make its cgroup namespace,
/// whose root the session cgroup becomes.
public final class SessionCgroup: CgroupPlacement, @unchecked Sendable {
    public enum Version: String, Sendable { case v2, v1 }
    public let version: Version
    /// The session directories, one per hierarchy.
    public let directories: [String]
    /// v1: cgroup.procs of each, open for writing: handed to the init.
    public let procs: [OwnedFD]
    /// v2: the session directory, open: the init is cloned into it.
    public let directory: OwnedFD?

    static let v2Root = "/sys/fs/cgroup"
    static let group = "comfy-sandbox"

    init(version: Version, directories: [String], procs: [OwnedFD], directory: OwnedFD?) {
        self.version = version
        self.directories = directories
        self.procs = procs
        self.directory = directory
    }

    public static var detectedVersion: Version? {
        if Paths.exists(v2Root + "/cgroup.controllers") { return .v2 }
        if Paths.exists(v2Root + "/memory/cgroup.procs") || Paths.exists(v2Root + "/pids/cgroup.procs") { return .v1 }
        return nil
    }

    /// Makes the session's cgroup with the configured limits; nil, with the
    /// reason in `note`, when this host has no cgroup the launcher may make;
    /// nil with no note on cgroup v1 when no limit is set.
    public static func make(_ limits: Config.Limits, note: inout String?) -> SessionCgroup? {
        guard let version = detectedVersion else {
            if limits.needCgroup {
                note = "no cgroup hierarchy at /sys/fs/cgroup: launcher.limits.memory, tasks and cpu_weight are NOT enforced"
            }
            return nil
        }
        if version == .v1 && !limits.needCgroup { return nil }
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
            // Only the controllers a limit needs, enabled on the way down:
            // in the root (systemd does) and in our group directory, which
            // holds no process. With none, the session cgroup still gives
            // the sandbox's cgroup namespace a root of its own.
            let needed = limits.cgroupControllers
            var enable = ""
            for c in needed { enable += (enable.isEmpty ? "+" : " +") + c }
            if !needed.isEmpty { _ = write(v2Root + "/cgroup.subtree_control", enable) }
            if mkdir(base, 0o755) != 0 && errno != EEXIST { return fail("mkdir \(base): \(Errno.current)") }
            if !needed.isEmpty {
                guard write(base + "/cgroup.subtree_control", enable) else {
                    return fail("enabling \(enable) in \(base): \(Errno.current)")
                }
            }
            let dir = base + "/" + name
            if mkdir(dir, 0o755) != 0 && errno != EEXIST { return fail("mkdir \(dir): \(Errno.current)") }
            dirs.append(dir)
            for controller in needed {
                let ok: Bool = switch controller {
                case "memory": write(dir + "/memory.max", limits.memory.flatMap(ByteSize.parse).map(String.init) ?? "max")
                case "pids": write(dir + "/pids.max", limits.tasks.map(String.init) ?? "max")
                default: write(dir + "/cpu.weight", String(limits.cpuWeight))
                }
                if !ok { return fail("setting the \(controller) limit in \(dir): \(Errno.current)") }
            }
            let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { return fail("opening \(dir): \(Errno.current)") }
            return SessionCgroup(version: version, directories: dirs, procs: [], directory: OwnedFD(fd))
        case .v1:
            for controller in limits.cgroupControllers {
                let base = v2Root + "/" + controller + "/" + group
                guard Paths.exists(v2Root + "/" + controller + "/cgroup.procs") else {
                    return fail("no \(controller) hierarchy at \(v2Root)/\(controller)")
                }
                if mkdir(base, 0o755) != 0 && errno != EEXIST { return fail("mkdir \(base): \(Errno.current)") }
                let dir = base + "/" + name
                if mkdir(dir, 0o755) != 0 && errno != EEXIST { return fail("mkdir \(dir): \(Errno.current)") }
                dirs.append(dir)
                let ok: Bool = switch controller {
                case "memory": write(dir + "/memory.limit_in_bytes", limits.memory.flatMap(ByteSize.parse).map(String.init) ?? "-1")
                case "pids": write(dir + "/pids.max", limits.tasks.map(String.init) ?? "max")
                default: write(dir + "/cpu.shares", String(max(2, limits.cpuWeight * 1024 / 100)))
                }
                if !ok { return fail("setting \(controller) limits in \(dir): \(Errno.current)") }
            }
            for dir in dirs {
                let fd = open(dir + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { return fail("opening \(dir)/cgroup.procs: \(Errno.current)") }
                fds.append(OwnedFD(fd))
            }
            return SessionCgroup(version: version, directories: dirs, procs: fds, directory: nil)
        }
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
        let tasks = limits.tasks.map { "\($0) tasks" } ?? "tasks as many as launcher.limits.nproc (\(limits.nproc)) lets the sandbox user have"
        return "\(memory), \(tasks), CPU weight \(limits.cpuWeight), /dev/shm \(limits.shmSize)"
    }

    static func write(_ path: String, _ value: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array((value + "\n").utf8)
        return Glibc.write(fd, bytes, bytes.count) == bytes.count
    }
}
