import Foundation
import SandboxCore
import SandboxOS

/// Real repositories served by a real `git daemon` on 127.0.0.1: bare repos
/// under `base`, each with a work clone for making commits. The daemon is
/// stopped when this object goes.
final class GitDaemon: @unchecked Sendable {
    let base: String
    let port: Int
    private var pid: pid_t = 0

    init() throws {
        var template = Array("/tmp/cs-git-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SandboxError.failure("mkdtemp: \(Errno.current)") }
        base = String(cString: p)
        chmod(base, 0o755)
        try Self.sh("mkdir -p \(base)/served \(base)/work")
        port = try Self.freePort()
        try start()
    }

    deinit {
        stop()
        _ = try? Self.sh("rm -rf \(base)")
    }

    func start() throws {
        // git-daemon itself (not the `git` wrapper), so the pid we signal is the daemon.
        let argv = ["/usr/lib/git-core/git-daemon", "--listen=127.0.0.1", "--port=\(port)", "--base-path=\(base)/served",
                    "--export-all", "--enable=upload-pack", "--informative-errors", "--reuseaddr", "\(base)/served"]
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var env: [UnsafeMutablePointer<CChar>?] = ["PATH=/usr/bin:/bin", "HOME=/nonexistent"].map { (s: String) in strdup(s) } + [nil]
        defer { for e in env { free(e) } }
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0)
        defer { posix_spawn_file_actions_destroy(&fa) }
        // The test runner blocks most signals in its threads; the daemon must
        // not inherit that mask or SIGTERM would never reach it.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t(), all = sigset_t()
        sigemptyset(&empty)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        guard posix_spawn(&pid, argv[0], &fa, &attr, &cargs, &env) == 0 else { throw SandboxError.failure("cannot start git daemon") }
        // Wait until it accepts connections.
        for _ in 0..<100 {
            if Self.canConnect(port) { return }
            usleep(20_000)
        }
        throw SandboxError.failure("git daemon did not start on port \(port)")
    }

    func stop() {
        if pid > 0 {
            // The whole group: the daemon and any upload-pack it forked.
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            pid = 0
        }
    }

    func url(_ name: String) -> String { "git://127.0.0.1:\(port)/\(name).git" }
    func served(_ name: String) -> String { "\(base)/served/\(name).git" }
    func work(_ name: String) -> String { "\(base)/work/\(name)" }

    /// A new repository with one commit holding `files`; returns that commit.
    @discardableResult
    func makeRepo(_ name: String, files: [String: String] = ["__init__.py": "NODE_CLASS_MAPPINGS = {}\n"]) throws -> String {
        try Self.sh("git init -q --bare -b main \(served(name)) && git init -q -b main \(work(name))")
        return try commit(name, files: files, message: "initial")
    }

    /// Writes `files` into the work clone, commits and pushes to `branch`.
    @discardableResult
    func commit(_ name: String, files: [String: String], message: String = "change", branch: String = "main", force: Bool = false) throws -> String {
        for (path, text) in files {
            let full = work(name) + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: true, encoding: .utf8)
        }
        try Self.sh("cd \(work(name)) && git add -A && git -c user.name=t -c user.email=t@example.invalid commit -q -m '\(message)' && git push -q \(force ? "-f " : "")\(served(name)) HEAD:refs/heads/\(branch)")
        return try head(name)
    }

    func head(_ name: String) throws -> String {
        try Self.sh("git -C \(work(name)) rev-parse HEAD").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func tag(_ name: String, _ tag: String) throws {
        try Self.sh("cd \(work(name)) && git -c user.name=t -c user.email=t@example.invalid tag -a -m \(tag) \(tag) && git push -q \(served(name)) refs/tags/\(tag)")
    }

    @discardableResult
    static func sh(_ script: String) throws -> HostCommand.Result {
        var env = HostCommand.minimalEnvironment
        env["HOME"] = "/nonexistent"
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        let r = try HostCommand("/bin/sh", ["-c", script], environment: env).run()
        guard r.succeeded else { throw SandboxError.failure("\(script): \(r.stderrText)") }
        return r
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw SandboxError.failure("cannot find a free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    static func canConnect(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
