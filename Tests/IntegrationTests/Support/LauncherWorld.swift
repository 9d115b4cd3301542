import Foundation
import SandboxCore
import SandboxOS
@testable import SandboxUI

/// A world with what the launcher needs, made here with real useradd and
/// groupadd (no dependency on the accounts planner): the shared group, the
/// primary user with a 0700 home holding a secret, the sandbox user, the
/// shares with the contract's modes, the stand-in ComfyUI at comfyui.path
/// (root-owned, with a setuid-root copy of `id` in its bin/ to prove it gives
/// nothing) and a config on a free port.
final class LauncherWorld: @unchecked Sendable {
    let world: World
    let port: Int
    var config: [String: Any]
    var primaryHome: String { world.home + "/alice" }
    var workspace: String { primaryHome + "/workspace/ai" }
    var models: String { workspace + "/models" }
    var output: String { workspace + "/output" }
    var workflows: String { workspace + "/comfy/workflows" }
    var comfyPath: String { world.opt + "/comfy-sandbox/ComfyUI" }
    /// In a 0700 directory of the primary user (the home itself is 0711 so the
    /// sandbox can reach the shares below it, as provisioning does).
    var secret: String { primaryHome + "/private/secret.txt" }
    var setuidCopy: String { comfyPath + "/bin/id" }
    var sandboxHome: String { world.home + "/comfyui_sandbox" }

    static var standIn: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/comfyui-standin/main.py").path
    }

    /// A TCP port nothing listens on now (bound and released).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        return Int(Relay.boundPort(fd))
    }

    /// Shell lines that, run in the test's own mount namespace, put a tmpfs
    /// on /dev holding the usual nodes (bound from the real /dev, kept at
    /// `<world root>/realdev`) and empty shm and pts; the test adds the fake
    /// NVIDIA nodes it needs after them.
    var fakeDevScript: String {
        let real = world.root + "/realdev"
        return """
        mkdir -p \(real) && mount --bind /dev \(real)
        mount -t tmpfs -o mode=755 tmpfs /dev
        for n in null zero full random urandom tty; do touch /dev/$n; mount --bind \(real)/$n /dev/$n; done
        mkdir /dev/shm /dev/pts
        """
    }

    init(network: String = "loopback-only", seccomp: Bool = true) throws {
        world = try World("launcher")
        port = Self.freePort()
        config = world.defaultConfig()
        config["launcher"] = ["port": port, "network": network, "seccomp": seccomp, "gpu": "auto",
                              "landlock": TestKernel.landlockMode] as [String: Any]
        let w = world
        let setup = """
        set -e
        groupadd comfyshared
        useradd -m -d \(w.home)/alice -s /bin/bash -U alice
        chmod 0700 \(w.home)/alice
        usermod -aG comfyshared alice
        useradd -m -d \(w.home)/comfyui_sandbox -s /usr/sbin/nologin -U -G comfyshared comfyui_sandbox
        chmod 0700 \(w.home)/comfyui_sandbox
        mkdir -m 0700 \(primaryHome)/private && chown alice:alice \(primaryHome)/private
        echo secret > \(secret) && chown alice:alice \(secret) && chmod 600 \(secret)
        mkdir -p \(models) \(output) \(workflows) \(workspace)/input
        echo weights > \(models)/model.safetensors
        chown -R alice:comfyshared \(primaryHome)/workspace
        chmod 0711 \(primaryHome)
        chmod 0755 \(primaryHome)/workspace \(workspace) \(workspace)/comfy
        chmod 2755 \(models) && chmod 0644 \(models)/model.safetensors
        chmod 2775 \(output) \(workflows) \(workspace)/input
        mkdir -p \(comfyPath)/bin \(comfyPath)/user
        cp \(Self.standIn) \(comfyPath)/main.py
        cp /usr/bin/id \(setuidCopy) && chown root:root \(setuidCopy) && chmod 4755 \(setuidCopy)
        chown comfyui_sandbox:comfyui_sandbox \(comfyPath)/user
        chmod -R go-w \(comfyPath)
        """
        let r = try world.sh(setup)
        guard r.succeeded else { throw SandboxError.failure("launcher world setup: \(r.stderrText)") }
        try world.writeConfig(config)
    }

    /// `comfy-sandbox run -- ARGS` in the world.
    @discardableResult
    /// Sets `values` in the config's launcher section and writes the config.
    func setLauncher(_ values: [String: Any]) throws {
        var launcher = config["launcher"] as? [String: Any] ?? [:]
        launcher.merge(values) { _, new in new }
        config["launcher"] = launcher
        try world.writeConfig(config)
    }

    func run(_ args: [String], input: Data? = nil) throws -> HostCommand.Result {
        try world.comfy(["run", "--"] + args, input: input)
    }

    /// A Python snippet run confined. The prelude gives `sc(name, *args)`
    /// (a raw syscall returning (result, errno)) and `report(escaped, detail)`.
    @discardableResult
    func python(_ body: String) throws -> HostCommand.Result {
        try run(["/usr/bin/python3", "-c", Self.prelude + body])
    }

    static let syscallNumbers: String = {
        let names = ["capset", "unshare", "mount", "ptrace", "process_vm_readv", "bpf", "perf_event_open", "keyctl",
                     "userfaultfd", "io_uring_setup", "kexec_load", "init_module", "getpid", "personality", "clone",
                     "chroot", "setns", "get_mempolicy", "memfd_create", "clone3"]
        return "NR = {" + names.compactMap { n in Seccomp.number(n).map { "'\(n)': \($0)" } }.joined(separator: ", ") + "}\n"
    }()

    static var prelude: String {
        """
        import ctypes, os, socket, sys, errno, threading
        \(syscallNumbers)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        def sc(name, *args):
            ctypes.set_errno(0)
            r = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) for a in args])
            return r, ctypes.get_errno()
        def report(escaped, detail=''):
            print(('ESCAPED ' if escaped else 'BLOCKED ') + str(detail))
        def refused(name, *args):
            r, e = sc(name, *args)
            report(r >= 0, '%s -> %d %s' % (name, r, errno.errorcode.get(e, e)))
        def try_open(path, flags, mode=0o644):
            try:
                fd = os.open(path, flags, mode); os.close(fd); report(True, 'opened ' + path)
            except OSError as e:
                report(False, '%s: %s' % (path, errno.errorcode.get(e.errno, e.errno)))

        """
    }
}

extension HTTPProbe {
    /// GET `path` until it answers 200, for up to 5 s: a launcher just started
    /// takes a moment to be reachable. The last outcome either way.
    static func waitFor(host: String = "127.0.0.1", port: Int, path: String = "/status") -> Outcome {
        var outcome = get(host: host, port: UInt16(port), path: path)
        for _ in 0..<50 where !outcome.ok {
            usleep(100_000)
            outcome = get(host: host, port: UInt16(port), path: path)
        }
        return outcome
    }
}

extension World {
    /// The pid `start` wrote to state_dir/launcher.pid.
    func launcherPid() throws -> pid_t {
        let text = try String(contentsOfFile: state + "/launcher.pid", encoding: .utf8)
        guard let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw SandboxError.failure("launcher.pid holds no pid: \(text)")
        }
        return pid
    }
}
