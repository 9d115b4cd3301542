import CSandbox
import FoundationEssentials
import Glibc

/// Runs a helper program as root (useradd, git, pip...) with an explicit
/// environment, capturing its output. Nothing is inherited implicitly: the
/// environment is exactly `environment`, fds beyond 0-2 are closed, and the
/// child gets its own session when `newSession` is set.
public struct HostCommand: Sendable {
    public var path: String
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String?
    /// Bytes written to the child's stdin (nil: /dev/null).
    public var input: Data?

    public init(_ path: String, _ arguments: [String], environment: [String: String] = HostCommand.minimalEnvironment,
                workingDirectory: String? = nil, input: Data? = nil) {
        self.path = path
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.input = input
    }

    public static let minimalEnvironment: [String: String] = [
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    ]

    public struct Result: Sendable {
        public var status: Int32
        public var signal: Int32?
        public var stdout: Data
        public var stderr: Data
        public var succeeded: Bool { signal == nil && status == 0 }
        public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    }

    /// Runs to completion. Throws only when the program could not be started.
    ///
    /// With a `confinement` the program is untrusted (a requirement's
    /// setup.py, say), and it may start something that outlives it: fork,
    /// setsid, exit, a miner left running after the install. So this process
    /// becomes a subreaper (orphans come to it, not to init), and when the
    /// program exits its orphans that run as the confinement's uid are
    /// killed and reaped, before the pipes are read to the end (a leftover
    /// holding them open cannot hang us). Other children of this process
    /// (a parallel git clone, another confined run) are left alone.
    @discardableResult
    public func run(confinement: Confinement? = nil) throws -> Result {
        let outPipe: (read: Int32, write: Int32), errPipe: (read: Int32, write: Int32)
        var inPipe: (read: Int32, write: Int32)
        do {
            outPipe = try makePipe()
            errPipe = try makePipe()
            inPipe = try makePipe()
        } catch {
            throw SandboxError.failure("cannot create a pipe to run \(path): \(error)")
        }
        defer { close(outPipe.read); close(errPipe.read) }
        var stdinFD = inPipe.read
        if input == nil {
            close(inPipe.read); close(inPipe.write); inPipe = (-1, -1)
            stdinFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
        }
        let spec = SpawnSpec(path: path, arguments: [path] + arguments, environment: environment,
                             workingDirectory: workingDirectory,
                             stdin: stdinFD, stdout: outPipe.write, stderr: errPipe.write,
                             newSession: true, confinement: confinement)
        if confinement != nil { ProcessControl.becomeSubreaper() }
        let pid: pid_t
        do {
            pid = try spec.spawn()
        } catch {
            close(stdinFD); close(outPipe.write); close(errPipe.write)
            if inPipe.write >= 0 { close(inPipe.write) }
            throw error
        }
        close(stdinFD); close(outPipe.write); close(errPipe.write)
        if let input, inPipe.write >= 0 {
            // Write stdin on a thread so a child that does not read it cannot deadlock us.
            let fd = inPipe.write
            let data = input
            detachThread {
                writeAll(fd, data)
                close(fd)
            }
        }
        let ended: ChildExit
        let out: Data, err: Data
        if let confinement {
            ConfinedRuns.started(pid)
            var polled: ChildExit?
            (out, err) = Self.drain(outPipe.read, errPipe.read, poll: 100) {
                // Once the program has exited, end what it left behind; the
                // pipes then close unless something else holds them.
                guard polled == nil else { return true }
                guard let exit = ChildExit.poll(pid) else { return false }
                polled = exit
                ConfinedRuns.ended(pid)
                let n = ConfinedRuns.endOrphans(uid: confinement.uid)
                if n > 0 {
                    printError("comfy-sandbox: killed \(n) process\(n == 1 ? "" : "es") \(Paths.lastComponent(path)) left running as the sandbox user")
                }
                return true
            }
            if let polled {
                ended = polled
            } else {
                ended = ChildExit.wait(pid)
                ConfinedRuns.ended(pid)
                ConfinedRuns.endOrphans(uid: confinement.uid)
            }
        } else {
            (out, err) = Self.drain(outPipe.read, errPipe.read)
            ended = ChildExit.wait(pid)
        }
        var signal: Int32?
        if case .signaled(let sig) = ended { signal = sig }
        return Result(status: ended.code, signal: signal, stdout: out, stderr: err)
    }

    /// Reads two pipes to EOF with poll(2), so neither can fill and block the
    /// child. With `tick`, calls it every `poll` ms; once it has returned
    /// true (the program is over), draining stops at EOF or 5 s later,
    /// whichever comes first.
    static func drain(_ a: Int32, _ b: Int32, poll interval: Int32 = -1, tick: (() -> Bool)? = nil) -> (Data, Data) {
        var bufs = [Data(), Data()]
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var chunk = [UInt8](repeating: 0, count: 65536)
        var open = 2
        var deadline: Int?
        while open > 0 {
            if let tick, tick(), deadline == nil { deadline = Self.monotonicMilliseconds() + 5000 }
            if let deadline, Self.monotonicMilliseconds() >= deadline { break }
            let r = poll(&fds, 2, tick == nil ? -1 : interval)
            if r < 0 { if errno == EINTR { continue }; break }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = read(fds[i].fd, &chunk, chunk.count)
                if n > 0 {
                    bufs[i].append(contentsOf: chunk[0..<n])
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
        return (bufs[0], bufs[1])
    }

    static func monotonicMilliseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
    }

    /// Runs and throws a failure naming the command and its stderr when it exits non-zero.
    @discardableResult
    public func check(_ what: String, confinement: Confinement? = nil) throws -> Result {
        let r = try run(confinement: confinement)
        guard r.succeeded else {
            let detail = r.stderrText.trimmingWhitespaceAndNewlines()
            throw SandboxError.failure("\(what) failed: \(([path] + arguments).joined(separator: " ")) exited \(r.status)"
                                       + (detail.isEmpty ? "" : ": \(detail)"))
        }
        return r
    }
}


/// The confined programs this process is running now (see `HostCommand.run`):
/// what ending one run's orphans must not touch.
enum ConfinedRuns {
    private static let lock = Condition()
    nonisolated(unsafe) private static var live: Set<pid_t> = []

    static func started(_ pid: pid_t) { lock.lock(); live.insert(pid); lock.unlock() }
    static func ended(_ pid: pid_t) { lock.lock(); live.remove(pid); lock.unlock() }

    /// Kills and reaps this process's children running as `uid` that are not
    /// a live confined program; returns how many were running.
    @discardableResult
    static func endOrphans(uid: uid_t) -> Int {
        lock.lock()
        let keep = Array(live)
        lock.unlock()
        return Int(keep.withUnsafeBufferPointer { cs_end_orphans_of_uid(uid, $0.baseAddress, Int32($0.count)) })
    }
}
