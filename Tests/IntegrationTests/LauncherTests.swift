import CSandbox
import Foundation
import SandboxCore
import Testing
import SandboxOS
@testable import SandboxUI

/// One world for the attack suites: setting it up (accounts, shares, the
/// stand-in) costs more than the attacks. Removed at exit.
enum SharedLauncherWorld {
    nonisolated(unsafe) static var roots: [String] = []
    static let loopback: LauncherWorld = make()
    static func make(network: String = "loopback-only") -> LauncherWorld {
        let w = try! LauncherWorld(network: network)
        roots.append(w.world.root)
        if roots.count == 1 {
            atexit {
                for root in SharedLauncherWorld.roots { _ = try? World.sh("rm -rf --one-file-system \(root)") }
            }
        }
        return w
    }
}

/// An attack run from inside `comfy-sandbox run`, as Python using raw
/// syscalls where needed. It prints BLOCKED or ESCAPED.
struct Attack: Sendable, CustomTestStringConvertible {
    var name: String
    var script: String
    /// The Landlock ABI whose rule stops it (nil: something else does). On
    /// a kernel below it the worlds run "best-effort", and the run must say
    /// the rule is not enforced instead.
    var needsABI: Int?
    var testDescription: String { name }
    init(_ name: String, _ script: String, needsABI: Int? = nil) {
        self.name = name
        self.script = script
        self.needsABI = needsABI
    }
}

/// On a kernel without the rule `abi` brings, what the launcher must say
/// on every start in "best-effort" mode; nil on a kernel that has it.
func notEnforcedLine(_ abi: Int, in stderr: String) -> Bool? {
    guard TestKernel.lacks(abi: abi) else { return nil }
    let gap = Landlock.gaps(abi: TestKernel.abi, net: Landlock.NetPolicy(bindPorts: [], connectPorts: []), scope: true).first { $0.abi == abi }
    return stderr.contains("Landlock NOT fully enforced") && gap.map { stderr.contains($0.description) } == true
}

@Suite("launcher: escapes that must fail, from inside `run`", .serialized)
struct LauncherEscapeTests {
    static var attacks: [Attack] {
        let w = SharedLauncherWorld.loopback
        return [
            Attack("raise a capability (capset CAP_SYS_ADMIN)", """
            hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
            data = (ctypes.c_uint32 * 6)(1 << 21, 1 << 21, 0, 0, 0, 0)
            r, e = sc('capset', ctypes.addressof(hdr), ctypes.addressof(data))
            report(r == 0, (r, e))
            """),
            Attack("unshare a user namespace", "refused('unshare', 0x10000000)"),
            Attack("mount a tmpfs", "refused('mount', ctypes.addressof(ctypes.create_string_buffer(b'tmpfs')), ctypes.addressof(ctypes.create_string_buffer(b'/tmp')), ctypes.addressof(ctypes.create_string_buffer(b'tmpfs')), 0, 0)"),
            Attack("ptrace the parent (PTRACE_ATTACH)", "refused('ptrace', 16, os.getppid(), 0, 0)"),
            Attack("process_vm_readv the parent", """
            buf = ctypes.create_string_buffer(16)
            local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
            remote = (ctypes.c_void_p * 2)(0x400000, 16)
            refused('process_vm_readv', os.getppid(), ctypes.addressof(local), 1, ctypes.addressof(remote), 1, 0)
            """),
            Attack("bpf(BPF_PROG_LOAD)", "refused('bpf', 5, 0, 0)"),
            Attack("perf_event_open", """
            attr = ctypes.create_string_buffer(128); attr[4] = 128
            refused('perf_event_open', ctypes.addressof(attr), 0, -1, -1, 0)
            """),
            Attack("keyctl", "refused('keyctl', 1, 0)"),
            Attack("userfaultfd", "refused('userfaultfd', 0)"),
            Attack("io_uring_setup", "p = ctypes.create_string_buffer(120); refused('io_uring_setup', 1, ctypes.addressof(p))"),
            Attack("kexec_load", "refused('kexec_load', 0, 0, 0, 0)"),
            Attack("init_module", "refused('init_module', 0, 0, ctypes.addressof(ctypes.create_string_buffer(b'')))"),
            Attack("personality(READ_IMPLIES_EXEC)", "refused('personality', 0x0400000)"),
            Attack("clone with CLONE_NEWNS", "refused('clone', 0x00020000 | 17, 0, 0, 0, 0)"),
            Attack("chroot", "refused('chroot', ctypes.addressof(ctypes.create_string_buffer(b'/')))"),
            Attack("setns into its own netns", "fd = os.open('/proc/self/ns/net', os.O_RDONLY); refused('setns', fd, 0x40000000)"),
            Attack("read a file in the primary user's 0700 directory", "try_open('\(w.secret)', os.O_RDONLY)"),
            Attack("read /etc/shadow", "try_open('/etc/shadow', os.O_RDONLY)"),
            Attack("write the models share", "try_open('\(w.models)/evil.safetensors', os.O_WRONLY | os.O_CREAT)"),
            Attack("overwrite a model", "try_open('\(w.models)/model.safetensors', os.O_WRONLY)"),
            Attack("write ComfyUI's code", "try_open('\(w.comfyPath)/main.py', os.O_WRONLY | os.O_APPEND)"),
            Attack("add a file to ComfyUI's code", "try_open('\(w.comfyPath)/evil.py', os.O_WRONLY | os.O_CREAT)"),
            Attack("write /etc", "try_open('/etc/evil', os.O_WRONLY | os.O_CREAT)"),
            Attack("mknod a device", """
            try:
                os.mknod(os.environ['TMPDIR'] + '/mem', 0o20666, os.makedev(1, 1)); report(True, 'made /dev/mem twin')
            except OSError as e:
                report(False, errno.errorcode[e.errno])
            """),
            Attack("open an AF_PACKET socket", """
            try:
                socket.socket(17, socket.SOCK_RAW, 0); report(True, 'AF_PACKET socket')
            except OSError as e:
                report(False, errno.errorcode[e.errno])
            """),
            Attack("kill a host process (pid 1)", """
            try:
                os.kill(1, 18); report(True, 'signalled pid 1')
            except OSError as e:
                report(False, errno.errorcode[e.errno])
            """),
            Attack("kill the launcher", """
            try:
                os.kill(os.getppid(), 18); report(True, 'signalled the launcher')
            except OSError as e:
                report(False, errno.errorcode[e.errno])
            """),
            Attack("read /proc/1/environ", "try_open('/proc/1/environ', os.O_RDONLY)"),
            Attack("UDP sendto 1.1.1.1:53", """
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.sendto(b'x', ('1.1.1.1', 53)); report(True, 'sent')
            except OSError as e:
                report(False, errno.errorcode[e.errno])
            """),
            Attack("bind a port other than launcher.port", """
            s = socket.socket()
            try:
                s.bind(('127.0.0.1', \(w.port == 65535 ? 65534 : w.port + 1))); report(True, 'bound')
            except OSError as e:
                report(False, errno.errorcode[e.errno])
            """, needsABI: 4),
            Attack("execute a payload written to TMPDIR", """
            p = os.environ['TMPDIR'] + '/payload'
            open(p, 'w').write('#!/bin/sh\\necho ran\\n'); os.chmod(p, 0o755)
            try:
                os.execv(p, [p])
            except OSError as e:
                report(False, errno.errorcode[e.errno])
            """),
        ]
    }

    @Test("escape attempt fails", .requiresRoot, arguments: attacks)
    func attack(_ attack: Attack) throws {
        let r = try SharedLauncherWorld.loopback.python(attack.script)
        if let abi = attack.needsABI, let said = notEnforcedLine(abi, in: r.stderrText) {
            // This kernel lacks the rule: the launcher must have said so (and did start).
            #expect(said, "\(attack.name): no NOT enforced line for ABI \(abi): \(r.stderrText)")
            #expect(r.stdoutText.contains("BLOCKED") || r.stdoutText.contains("ESCAPED"), "\(attack.name) ran: \(r.stdoutText) \(r.stderrText)")
            return
        }
        #expect(r.stdoutText.contains("BLOCKED"), "\(attack.name): \(r.stdoutText) \(r.stderrText)")
        #expect(!r.stdoutText.contains("ESCAPED"), "\(attack.name): \(r.stdoutText)")
    }

    @Test("no open fd beyond 0-2 reaches the sandbox", .requiresRoot)
    func noExtraFDs() throws {
        // Plain Python (ctypes, in the prelude, opens a trampoline file of its own).
        // listdir's own fd is closed once it returns: what still exists was inherited.
        let script = "import os\nextra = [n for n in os.listdir('/proc/self/fd') if int(n) > 2 and os.path.exists('/proc/self/fd/' + n)]\nprint('ESCAPED' if extra else 'BLOCKED', extra)\n"
        let r = try SharedLauncherWorld.loopback.run(["/usr/bin/python3", "-c", script])
        #expect(r.stdoutText.hasPrefix("BLOCKED"), "\(r.stdoutText) \(r.stderrText)")
    }

    @Test("a syscall via the x32 ABI kills the process (SIGSYS)", .requiresRoot)
    func x32() throws {
        let r = try SharedLauncherWorld.loopback.python("libc.syscall(ctypes.c_long(NR['getpid'] | 0x40000000)); report(True, 'x32 getpid returned')")
        #expect(r.status == 128 + SIGSYS, "status \(r.status): \(r.stdoutText) \(r.stderrText)")
        #expect(!r.stdoutText.contains("ESCAPED"))
    }

    @Test("exec a setuid-root binary gains nothing (euid stays the sandbox user)", .requiresRoot)
    func setuidCopy() throws {
        let w = SharedLauncherWorld.loopback
        let r = try w.run([w.setuidCopy, "-u"])
        #expect(r.succeeded, "\(r.stderrText)")
        let euid = r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(euid == String(w.world.uid("comfyui_sandbox") ?? 0) && euid != "0", "euid \(euid)")
    }

    @Test("TIOCSTI on a terminal is refused (EPERM)", .requiresRoot)
    func tiocsti() throws {
        let w = SharedLauncherWorld.loopback
        // `script` gives the command a real pty on stdin, so the refusal is
        // seccomp's (EPERM), not ENOTTY from /dev/null.
        let code = "import fcntl, termios, os, errno\ntry:\n    fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('ESCAPED')\nexcept OSError as e:\n    print('BLOCKED', errno.errorcode[e.errno])\n"
        let inner = ([World.binary, "run", "--", "/usr/bin/python3", "-c", code]).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let r = try w.world.run(["/usr/bin/script", "-qec", inner, "/dev/null"], environment: ["COMFY_SANDBOX_CONFIG": w.world.configPath])
        // At the end of its stdin `script` types an end-of-file character
        // into the pty; the sandbox's terminal echoes it in caret notation
        // ("^@", "^D") wherever it lands, sometimes inside the line Python
        // writes. Those echoes are not the answer; drop them.
        let out = r.stdoutText.replacingOccurrences(of: "^@", with: "").replacingOccurrences(of: "^D", with: "")
        #expect(out.contains("BLOCKED EPERM"), "\(r.stdoutText) \(r.stderrText)")
        #expect(!out.contains("ESCAPED"))
    }

    @Test("TCP connect to a listener on the host's loopback fails (loopback-only)", .requiresRoot)
    func hostLoopback() throws {
        let w = SharedLauncherWorld.loopback
        let listener = try Relay.listen(host: "127.0.0.1", port: 0)
        let port = Relay.boundPort(listener.raw)
        // The listener is reachable from the host, so the test can fail.
        let direct = try HostCommand("/usr/bin/python3", ["-c", "import socket; socket.create_connection(('127.0.0.1', \(port)), 2); print('ok')"]).run()
        #expect(direct.stdoutText.contains("ok"))
        let r = try w.python("""
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(('127.0.0.1', \(port))); report(True, 'connected')
        except OSError as e:
            report(False, errno.errorcode.get(e.errno, e))
        """)
        #expect(r.stdoutText.contains("BLOCKED"), "\(r.stdoutText) \(r.stderrText)")
    }
}

/// The operator's terminal, attacked from inside `run` and `shell` as a
/// hostile program would: switch echo off on it (TCSETS on any fd that is
/// it), write the clipboard (OSC 52). `script` plays the operator's
/// terminal; its stty settings are compared before and after.
@Suite("launcher: the operator's terminal stays the operator's", .serialized)
struct LauncherTerminalTests {
    /// Turns echo off on every fd 0-2 that is a terminal, writes an OSC 52
    /// clipboard sequence and a DCS string, then says what it had.
    static let attack = """
    import os, sys, termios
    for fd in (0, 1, 2):
        try:
            a = termios.tcgetattr(fd); a[3] &= ~termios.ECHO; termios.tcsetattr(fd, termios.TCSANOW, a)
            print('TTY-ON-%d' % fd, flush=True)
        except termios.error:
            print('NOTTY-ON-%d' % fd, flush=True)
    sys.stdout.write('\\x1b]52;c;cHduZWQ=\\x07\\x1bP+q544e\\x1b\\\\\\x1b[31mRED\\x1b[0m MARK\\n'); sys.stdout.flush()
    try:
        print('CTTY-OWN' if os.tcgetpgrp(0) == os.getpgrp() and os.getsid(0) == os.getpid() else 'CTTY-OTHER', flush=True)
    except OSError:
        print('CTTY-NONE', flush=True)
    """

    /// `script` runs `inner` (shell) on a pty and prints what the terminal got.
    func underScript(_ w: LauncherWorld, _ inner: String, input: Data? = nil) throws -> HostCommand.Result {
        try w.world.run(["/usr/bin/script", "-qec", inner, "/dev/null"],
                        environment: ["COMFY_SANDBOX_CONFIG": w.world.configPath], input: input)
    }

    func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    @Test("run on a terminal: its own pty and session; echo stays on in ours, OSC 52 and DCS never reach it", .requiresRoot)
    func runGetsOwnPty() throws {
        let w = SharedLauncherWorld.loopback
        let run = "\(World.binary) run -- /usr/bin/python3 -c \(quoted(Self.attack))"
        let r = try underScript(w, "b=$(stty -g); \(run); a=$(stty -g); [ \"$a\" = \"$b\" ] && echo TERMINAL-UNCHANGED || echo TERMINAL-CHANGED")
        let out = r.stdoutText
        #expect(out.contains("TTY-ON-0") && out.contains("CTTY-OWN"), "the sandbox has a terminal, its own: \(out) \(r.stderrText)")
        #expect(out.contains("TERMINAL-UNCHANGED"), "echo was switched off on the operator's terminal: \(out)")
        #expect(out.contains("MARK") && out.contains("\u{1b}[31mRED"), "its output (colours too) still arrives: \(out)")
        #expect(!out.contains("]52;") && !out.contains("\u{1b}P"), "OSC 52 / DCS reached the terminal: \(out.debugDescription)")
    }

    @Test("run with stdin not a terminal: no terminal at all, stdout a filtered pipe", .requiresRoot)
    func runWithoutTerminal() throws {
        let w = SharedLauncherWorld.loopback
        let run = "\(World.binary) run -- /usr/bin/python3 -c \(quoted(Self.attack)) < /dev/null"
        let r = try underScript(w, "b=$(stty -g); \(run); a=$(stty -g); [ \"$a\" = \"$b\" ] && echo TERMINAL-UNCHANGED || echo TERMINAL-CHANGED")
        let out = r.stdoutText
        for fd in 0...2 { #expect(out.contains("NOTTY-ON-\(fd)"), "fd \(fd) is a terminal in the sandbox: \(out) \(r.stderrText)") }
        #expect(out.contains("CTTY-NONE"), "\(out)")
        #expect(out.contains("TERMINAL-UNCHANGED"), "\(out)")
        #expect(out.contains("MARK") && out.contains("\u{1b}[31mRED"), "\(out)")
        #expect(!out.contains("]52;") && !out.contains("\u{1b}P"), "OSC 52 / DCS reached the terminal: \(out.debugDescription)")
    }

    @Test("shell: a pty of its own; stty -echo inside leaves ours as it was", .requiresRoot)
    func shellGetsOwnPty() throws {
        let w = SharedLauncherWorld.loopback
        let shell = "\(World.binary) shell"
        let r = try underScript(w, "b=$(stty -g); \(shell); a=$(stty -g); [ \"$a\" = \"$b\" ] && echo TERMINAL-UNCHANGED || echo TERMINAL-CHANGED",
                                input: Data("stty -echo raw; printf '\\033]52;c;cHduZWQ=\\007'; test -t 0 && echo HAS-A-TTY; echo SHELL-DONE\nexit 7\n".utf8))
        let out = r.stdoutText
        #expect(out.contains("SHELL-DONE") && out.contains("\nHAS-A-TTY"), "\(out) \(r.stderrText)")
        #expect(out.contains("TERMINAL-UNCHANGED"), "\(out)")
        #expect(!out.contains("\u{1b}]52"), "\(out.debugDescription)")
    }
}

@Suite("launcher: what must keep working, from inside `run`", .serialized)
struct LauncherMustWorkTests {
    static let checks: [Attack] = [
        Attack("read the models share", "print('WORKS' if open(os.environ['MODELS'] + '/model.safetensors').read() == 'weights\\n' else 'BROKEN')"),
        Attack("write the output share", "p = os.environ['OUTPUT'] + '/img.png'; open(p, 'w').write('x'); os.unlink(p); print('WORKS')"),
        Attack("write the workflows share", "p = os.environ['WORKFLOWS'] + '/w.json'; open(p, 'w').write('{}'); os.unlink(p); print('WORKS')"),
        Attack("threads", "ts = [threading.Thread(target=lambda: None) for _ in range(8)]; [t.start() for t in ts]; [t.join() for t in ts]; print('WORKS')"),
        Attack("memfd_create", "fd = os.memfd_create('x'); os.write(fd, b'abc'); print('WORKS')"),
        Attack("get_mempolicy", "r, e = sc('get_mempolicy', 0, 0, 0, 0, 0); print('WORKS' if r == 0 else 'BROKEN %d' % e)"),
        Attack("/dev/shm", "p = '/dev/shm/cs-test-%d' % os.getpid(); open(p, 'w').write('x'); os.unlink(p); print('WORKS')"),
        Attack("TMPDIR in RAM", "p = os.environ['TMPDIR']; assert p.startswith('/dev/shm/'); open(p + '/t', 'w').write('x'); print('WORKS')"),
        Attack("bind launcher.port", "s = socket.socket(); s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen(); print('WORKS')"),
        Attack("write /proc/self/task/TID/comm (CUDA names threads)", "open('/proc/self/task/%d/comm' % threading.get_native_id(), 'w').write('worker'); print('WORKS')"),
    ]

    @Test("must work", .requiresRoot, arguments: checks)
    func mustWork(_ check: Attack) throws {
        let w = SharedLauncherWorld.loopback
        let env = "os.environ.update(MODELS='\(w.models)', OUTPUT='\(w.output)', WORKFLOWS='\(w.workflows)', PORT='\(w.port)')\n"
        let r = try w.python(env + check.script)
        #expect(r.stdoutText.contains("WORKS"), "\(check.name): \(r.stdoutText) \(r.stderrText)")
    }

    @Test("all five capability sets are zero, NoNewPrivs 1, Seccomp 2, only the shared group", .requiresRoot)
    func statusLines() throws {
        let w = SharedLauncherWorld.loopback
        let r = try w.run(["/bin/grep", "-E", "^(Cap|NoNewPrivs|Seccomp|Groups)", "/proc/self/status"])
        #expect(r.succeeded, "\(r.stderrText)")
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            #expect(r.stdoutText.contains("\(set):\t0000000000000000"), "\(set) in \(r.stdoutText)")
        }
        #expect(r.stdoutText.contains("NoNewPrivs:\t1"))
        #expect(r.stdoutText.contains("Seccomp:\t2"))
        let groups = r.stdoutText.split(separator: "\n").first { $0.hasPrefix("Groups:") }?.dropFirst(7).trimmingCharacters(in: .whitespaces)
        #expect(groups == String(w.world.gid("comfyshared") ?? 0), "Groups: \(groups ?? "none")")
    }

    @Test("run exits with the command's status and the environment is built from nothing", .requiresRoot)
    func exitStatusAndEnvironment() throws {
        let w = SharedLauncherWorld.loopback
        #expect(try w.run(["/bin/sh", "-c", "exit 7"]).status == 7)
        let r = try w.world.comfy(["run", "--", "/usr/bin/env"], environment: ["SECRET_TOKEN": "leak"])
        let env = r.stdoutText
        #expect(!env.contains("SECRET_TOKEN"))
        for key in ["HOME=\(w.sandboxHome)", "PYTHONNOUSERSITE=1", "DO_NOT_TRACK=1", "HF_HUB_OFFLINE=1", "TMPDIR=/dev/shm/", "CUDA_CACHE_PATH=/run/jit/", "TRITON_CACHE_DIR=/run/jit/"] {
            #expect(env.contains(key), "\(key) missing in \(env)")
        }
        #expect(r.stderrText.contains("no NVIDIA GPU found"), "says it runs without a GPU: \(r.stderrText)")
    }

    @Test("shell: an interactive bash as the sandbox user, confined, exits with its status", .requiresRoot)
    func shell() throws {
        let w = SharedLauncherWorld.loopback
        let cmd = "\(World.binary) shell --config \(w.world.configPath)"
        let r = try w.world.run(["/usr/bin/script", "-qec", cmd, "/dev/null"],
                                input: Data("id -u\ngrep -c 'Seccomp:.2' /proc/self/status\nexit 5\n".utf8))
        #expect(r.status == 5, "\(r.stdoutText) \(r.stderrText)")
        #expect(r.stdoutText.contains("\(w.world.uid("comfyui_sandbox") ?? 0)"))
    }

    @Test("the RAM temp is in the session's own /dev/shm: not the host's, gone with the session", .requiresRoot)
    func ramTempPrivate() throws {
        let w = SharedLauncherWorld.loopback
        let marker = "cs-shm-probe-\(getpid())"
        let r = try w.run(["/bin/sh", "-c", "echo $TMPDIR; touch $TMPDIR/a /dev/shm/\(marker) /tmp/\(marker); ls /dev/shm"])
        let lines = r.stdoutText.split(separator: "\n").map(String.init)
        #expect(lines.first == ConstructedRoot.tempDirectory, "\(r.stdoutText) \(r.stderrText)")
        // The host's /dev/shm and /tmp never saw it, and the sandbox saw none of the host's.
        #expect(!FileManager.default.fileExists(atPath: "/dev/shm/\(marker)"))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/\(marker)"))
        #expect(Set(lines.dropFirst()) == ["comfy-temp", marker], "\(lines)")
    }

    @Test("what the command leaves running (setsid, double fork, SIGTERM ignored) is killed when it exits", .requiresRoot)
    func leftoversKilled() throws {
        let w = SharedLauncherWorld.loopback
        // Each sleeper prints its pid, then lets go of stdout (else reading
        // the output would wait for it).
        // The pids inside are the session's PID namespace's: the sleepers are
        // found on the host by their unmistakable arguments.
        let tag = 300 + Int(getpid() % 500)
        let r = try w.run(["/bin/sh", "-c", """
            setsid sh -c 'trap "" TERM HUP; exec sleep \(tag).25 >/dev/null 2>&1' </dev/null &
            ( setsid sh -c 'exec sleep \(tag).75 >/dev/null 2>&1' </dev/null & )
            sleep 0.3; ps -e -o comm= | grep -c sleep
            """])
        #expect(r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "both ran: \(r.stdoutText) \(r.stderrText)")
        let left = World.processes(withArgument: ["\(tag).25", "\(tag).75"])
        for pid in left { kill(pid, SIGKILL) }
        #expect(left.isEmpty, "outlived the run: \(left)")
    }

    @Test("RAM temps left by a killed launcher are swept; locked, foreign, young and symlinked ones stay", .requiresRoot)
    func staleRAMTempsSwept() throws {
        let w = SharedLauncherWorld.loopback
        let uid = try #require(w.world.uid("comfyui_sandbox"))
        let base = "/dev/shm/comfy-sandbox.comfyui_sandbox.test\(getpid())"
        let keep = w.world.root + "/keep-me"
        let setup = """
            set -e
            mkdir -p \(keep) && echo precious > \(keep)/file
            mkdir -p \(base)-stale/d && echo x > \(base)-stale/d/f && ln -s \(keep) \(base)-stale/d/link
            mkdir \(base)-locked \(base)-young \(base)-root
            chown -R \(uid) \(base)-stale \(base)-locked \(base)-young
            ln -s \(keep) \(base)-link
            touch -h -d '1 hour ago' \(base)-stale \(base)-locked \(base)-root \(base)-link
            """
        try #require(try w.world.sh(setup).succeeded)
        defer { _ = try? w.world.sh("rm -rf \(base)-stale \(base)-locked \(base)-young \(base)-root \(base)-link \(keep)") }
        // A live session's lock, held by this process.
        let lockFD = open(base + "-locked", O_RDONLY | O_DIRECTORY)
        try #require(lockFD >= 0 && flock(lockFD, LOCK_EX) == 0)
        defer { close(lockFD) }

        // Every world's sandbox user has the same name and, often, uid: a
        // launcher that another test starts meanwhile may sweep the stale
        // directory first. Then it is made again, until this run is the one.
        var r = try w.run(["/bin/true"])
        for _ in 0..<3 where !r.stderrText.contains("removed \(base)-stale") && SafeFS.lstat(base + "-stale") == nil {
            try #require(try w.world.sh("mkdir -p \(base)-stale/d && chown -R \(uid) \(base)-stale && touch -h -d '1 hour ago' \(base)-stale").succeeded)
            r = try w.run(["/bin/true"])
        }
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stderrText.contains("removed \(base)-stale"), "\(r.stderrText)")
        #expect(SafeFS.lstat(base + "-stale") == nil)
        for kept in ["-locked", "-young", "-root", "-link"] {
            #expect(SafeFS.lstat(base + kept) != nil, "\(kept) must stay")
        }
        #expect((try? String(contentsOfFile: keep + "/file", encoding: .utf8)) == "precious\n", "the symlink's target is untouched")
    }
}

@Suite("launcher: launch, relay, check-sandbox, seccomp off", .serialized)
struct LauncherLaunchTests {
    @Test("launch runs the stand-in with ComfyUI's flags; /status and a WebSocket work through the relay", .requiresRoot)
    func launchThroughRelay() throws {
        let w = try LauncherWorld()
        let start = try w.world.comfy(["start"])
        #expect(start.succeeded, "\(start.stdoutText) \(start.stderrText)")
        defer { _ = try? w.world.comfy(["stop"]) }
        let status = HTTPProbe.waitFor(port: w.port)
        try #require(status.ok, "GET /status through the relay: \(status.detail)")
        let info = try #require(try JSONSerialization.jsonObject(with: Data(status.body.utf8)) as? [String: Any])
        let proc = try #require(info["status"] as? [String: String])
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] { #expect(proc[set] == "0000000000000000") }
        #expect(proc["NoNewPrivs"] == "1")
        #expect(proc["Seccomp"] == "2")
        let argv = (info["argv"] as? [String]) ?? []
        for flag in ["--listen", "--port", "--disable-auto-launch", "--input-directory", "--output-directory", "--user-directory", "--temp-directory"] {
            #expect(argv.contains(flag), "\(flag) in \(argv)")
        }
        #expect(info["output_directory"] as? String == w.output)
        #expect((info["temp_directory"] as? String)?.hasPrefix("/dev/shm/") == true)
        #expect(info["uid"] as? Int == Int(w.world.uid("comfyui_sandbox") ?? 0))
        let ws = HTTPProbe.websocketEcho(host: "127.0.0.1", port: UInt16(w.port), message: "hello through the relay")
        #expect(ws.ok, "\(ws.detail)")
        let st = try w.world.comfy(["status"])
        #expect(st.stdoutText.contains("running: yes"), "\(st.stdoutText)")
        let stop = try w.world.comfy(["stop"])
        #expect(stop.stdoutText.contains("stopped"), "\(stop.stdoutText)")
        #expect(!HTTPProbe.get(host: "127.0.0.1", port: UInt16(w.port), path: "/").ok)
    }

    @Test("launcher.listen ::1: the relay serves on [::1]:port (and only there); WebSocket works", .requiresRoot)
    func listenIPv6() throws {
        let w = try LauncherWorld()
        try w.setLauncher(["listen": "::1"])
        let start = try w.world.comfy(["start"])
        try #require(start.succeeded, "\(start.stdoutText) \(start.stderrText)")
        defer { _ = try? w.world.comfy(["stop"]) }
        let status = HTTPProbe.waitFor(host: "::1", port: w.port)
        #expect(status.ok, "GET /status on [::1] through the relay: \(status.detail)")
        #expect(HTTPProbe.websocketEcho(host: "::1", port: UInt16(w.port), message: "v6").ok)
        #expect(!HTTPProbe.get(host: "127.0.0.1", port: UInt16(w.port), path: "/").ok, "IPv4 loopback is not served")
        let st = try w.world.comfy(["status"])
        #expect(st.stdoutText.contains("http://[::1]:\(w.port)/"), "\(st.stdoutText)")
    }

    @Test("stop: a ComfyUI that ignores SIGTERM is killed with what it started; the launcher cleans up and exits", .requiresRoot)
    func stopStubborn() throws {
        let w = try LauncherWorld()
        try w.setLauncher(["extra_args": ["--standin-stubborn"]])
        let start = try w.world.comfy(["start"])
        try #require(start.succeeded, "\(start.stdoutText) \(start.stderrText)")
        defer { _ = try? w.world.comfy(["stop", "--timeout", "1"]) }
        let status = HTTPProbe.waitFor(port: w.port)
        try #require(status.ok, "GET /status through the relay: \(status.detail)")
        let info = try #require(try JSONSerialization.jsonObject(with: Data(status.body.utf8)) as? [String: Any])
        let temp = try #require(info["temp_directory"] as? String)
        let pidText = try String(contentsOfFile: w.output + "/standin-pids", encoding: .utf8)
        let pids = pidText.split(whereSeparator: \.isWhitespace).compactMap { pid_t($0) }
        try #require(pids.count == 2, "standin-pids: \(pidText)")
        let launcherPid = try w.world.launcherPid()
        let uid = try #require(w.world.uid("comfyui_sandbox"))

        let stop = try w.world.comfy(["stop", "--timeout", "1"])
        #expect(stop.stdoutText.contains("killed it (launcher pid \(launcherPid) cleaned up and exited)"), "\(stop.stdoutText)")
        // Its pids are the session's PID namespace's; on the host nothing of
        // the sandbox user may remain, nor the launcher.
        let cmdline = (try? String(contentsOfFile: "/proc/\(launcherPid)/cmdline", encoding: .utf8)) ?? ""
        #expect(!cmdline.contains("comfy-sandbox"), "the launcher \(launcherPid) survived stop")
        // (By their arguments: other tests' worlds run as the same uid.)
        _ = uid
        let left = World.processes(withArgument: ["601", "602"]).filter { pid in
            ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").hasPrefix("/bin/sleep")
        }
        for pid in left { kill(pid, SIGKILL) }
        #expect(left.isEmpty, "the stand-in's sleepers survived stop: \(left)")
        #expect(temp == ConstructedRoot.tempDirectory, "the temp was the session's own: \(temp)")
    }

    @Test("a SIGKILLed launcher takes ComfyUI and the relay with it (the parent-death signal survives the uid change)", .requiresRoot)
    func launcherKilled() throws {
        let w = try LauncherWorld()
        let start = try w.world.comfy(["start"])
        try #require(start.succeeded, "\(start.stdoutText) \(start.stderrText)")
        defer { _ = try? w.world.comfy(["stop", "--timeout", "1"]) }
        let status = HTTPProbe.waitFor(port: w.port)
        try #require(status.ok, "GET /status through the relay: \(status.detail)")
        let launcherPid = try w.world.launcherPid()
        var kids = [pid_t](repeating: 0, count: 16)
        let n = Int(cs_list_children(launcherPid, &kids, 16))
        try #require(n == 2, "ComfyUI and the relay are the launcher's children (\(n))")
        kill(launcherPid, SIGKILL)
        var alive = Array(kids[0..<n])
        for _ in 0..<50 where !alive.isEmpty {
            usleep(100_000)
            alive = alive.filter { kill($0, 0) == 0 && !((try? String(contentsOfFile: "/proc/\($0)/stat", encoding: .utf8)) ?? "").contains(") Z") }
        }
        #expect(alive.isEmpty, "still running after the launcher was killed: \(alive)")
        for pid in alive { kill(pid, SIGKILL) }
    }

    @Test("check-sandbox exits 0, reports at least 25 attempts, and names what this kernel does not enforce", .requiresRoot)
    func checkSandbox() throws {
        let w = SharedLauncherWorld.loopback
        let r = try w.world.comfy(["check-sandbox", "--json"])
        #expect(r.status == 0, "\(r.stdoutText) \(r.stderrText)")
        let report = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any])
        #expect((report["attempts"] as? Int ?? 0) >= 25)
        #expect(report["failed"] as? Int == 0)
        // The constructed root's classes of attack are each tried.
        let rows = (report["results"] as? [[String: Any]] ?? []).compactMap { $0["attempt"] as? String }
        for attempt in ["list the host's processes (/proc)", "read another process's argv (a --password=... on the host)",
                        "connect to the D-Bus system bus (/run/dbus/system_bus_socket)", "connect to journald (/run/systemd/journal/socket)",
                        "stat a file in the primary user's home", "read the host's /dev/shm (another user's file)",
                        "fill /dev/shm beyond launcher.limits.shm_size", "execute a binary written to the temp dir",
                        "run it through the loader (ld.so the temp dir/payload)", "mmap(PROT_EXEC) a file written to /dev/shm",
                        "dlopen a library dropped in the temp dir", "execute a memfd (memfd_create + fexecve)",
                        "leave a thread running after its thread-group leader exited (zombie leader)"] {
            #expect(rows.contains(attempt), "no row \(attempt): \(rows)")
        }
        let kernel = try #require(report["kernel"] as? [String: Any])
        #expect(kernel["landlock_abi"] as? Int == TestKernel.abi)
        #expect(kernel["not_enforced"] as? [String] == TestKernel.gaps.map(\.description), "\(kernel)")
        // Binding another port only Landlock's TCP rules stop: blocked, or
        // not enforced with the reason on a kernel without them.
        let results = (report["results"] as? [[String: Any]]) ?? []
        let bind = try #require(results.first { $0["attempt"] as? String == "bind a port other than launcher.port" })
        if TestKernel.lacks(abi: 4) {
            #expect(bind["pass"] as? Bool == false && (bind["not_enforced"] as? String)?.contains("Landlock ABI 4") == true, "\(bind)")
        } else {
            #expect(bind["pass"] as? Bool == true && bind["not_enforced"] == nil, "\(bind)")
        }
        // A signal to a sandbox-user process outside the session: the PID
        // namespace hides it on every kernel (signal scoping, ABI 6, too).
        let signal = try #require(results.first { $0["attempt"] as? String == "kill(a sandbox-user process outside the sandbox, SIGCONT)" })
        #expect(signal["pass"] as? Bool == true, "\(signal)")
        #expect(report["not_enforced"] as? Int == (TestKernel.lacks(abi: 4) ? 1 : 0))
    }

    @Test("seccomp: false turns the filter off and status says so", .requiresRoot)
    func seccompOff() throws {
        let w = try LauncherWorld(seccomp: false)
        // Without the simulation knob's own filter (a suite run playing an
        // older kernel), which the child would inherit.
        let r = try w.world.comfy(["run", "--", "/bin/grep", "^Seccomp:", "/proc/self/status"], environment: [Kernel.withoutSyscallsVariable: ""])
        #expect(r.stdoutText.contains("Seccomp:\t0"), "\(r.stdoutText)")
        #expect(r.stderrText.contains("seccomp is OFF"))
        let st = try w.world.comfy(["status"])
        #expect(st.stdoutText.contains("seccomp: OFF"), "\(st.stdoutText)")
        // check-sandbox must notice (clone3 no longer answers ENOSYS, x32 is not killed...).
        let check = try w.world.comfy(["check-sandbox", "--json"])
        #expect(check.status == 3, "\(check.stdoutText)")
    }

    @Test("comfyui.python inside an existing venv: the venv's site-packages are readable under Landlock", .requiresRoot)
    func existingVenvPython() throws {
        let w = try LauncherWorld()
        let venv = w.world.opt + "/torch-venv"
        let made = try w.world.sh("""
            set -e
            /usr/bin/python3 -m venv --without-pip \(venv)
            site=$(\(venv)/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
            mkdir -p "$site" && echo 'WHERE = "venv"' > "$site/cs_venv_probe.py"
            chmod -R a+rX \(venv)
            """)
        try #require(made.succeeded, "\(made.stderrText)")
        var comfy = w.config["comfyui"] as? [String: Any] ?? [:]
        comfy["python"] = venv + "/bin/python3"
        w.config["comfyui"] = comfy
        try w.world.writeConfig(w.config)
        let r = try w.run([venv + "/bin/python3", "-c", "import cs_venv_probe; print(cs_venv_probe.WHERE)"])
        #expect(r.status == 0 && r.stdoutText.contains("venv"), "\(r.stdoutText) \(r.stderrText)")
        // Only that venv: a sibling directory stays closed.
        let sibling = try w.world.sh("mkdir -p \(w.world.opt)/other && echo x > \(w.world.opt)/other/f && chmod -R a+rX \(w.world.opt)/other")
        try #require(sibling.succeeded)
        let closed = try w.run(["/bin/cat", w.world.opt + "/other/f"])
        #expect(closed.status != 0, "\(closed.stdoutText)")
    }

    @Test("host network mode: no namespace, bind still limited to launcher.port", .requiresRoot)
    func hostMode() throws {
        let w = try LauncherWorld(network: "host")
        let r = try w.python("""
        s = socket.socket()
        try:
            s.bind(('127.0.0.1', \(w.port == 65535 ? 65534 : w.port + 1))); report(True, 'bound')
        except OSError as e:
            report(False, errno.errorcode[e.errno])
        """)
        if let said = notEnforcedLine(4, in: r.stderrText) {
            #expect(said, "no NOT enforced line for the TCP rules: \(r.stderrText)")
        } else {
            #expect(r.stdoutText.contains("BLOCKED"), "\(r.stdoutText) \(r.stderrText)")
        }
        #expect(!r.stderrText.contains("HF_HUB_OFFLINE"))
    }
}

@Suite("launcher: the seccomp program")
struct SeccompProgramTests {
    @Test("builds, and refuses what the issue lists")
    func builds() throws {
        let program = try Seccomp.program()
        #expect(program.count > 50)
        for name in ["kexec_load", "keyctl", "userfaultfd", "io_uring_setup", "mount", "fsopen", "open_tree", "unshare", "setns",
                     "bpf", "perf_event_open", "ptrace", "process_vm_readv", "init_module", "reboot", "open_by_handle_at",
                     "clock_settime", "settimeofday", "adjtimex", "fanotify_init", "pivot_root", "move_pages", "chroot", "umount2"] {
            #expect(Seccomp.refused.contains(name), "\(name)")
        }
        for name in Seccomp.keptForCUDA { #expect(!Seccomp.refused.contains(name)) }
    }

    /// The exported program, run by a classic-BPF interpreter on the values
    /// the kernel would hand it: personality must refuse everything but 0 and
    /// the query 0xffffffff (on the low 32 bits it reads), socket everything
    /// but the four families, and let ordinary calls through.
    @Test("personality and socket rules decide exactly the values they should")
    func argumentRules() throws {
        let program = try Seccomp.program()
        let personality = UInt32(try #require(Seccomp.number("personality")))
        let socket = UInt32(try #require(Seccomp.number("socket")))
        let getpid = UInt32(try #require(Seccomp.number("getpid")))
        let allow: UInt32 = 0x7FFF_0000
        func verdict(_ nr: UInt32, _ arg0: UInt64) throws -> UInt32 {
            try BPF.run(program, nr: nr, arch: 0xC000_003E, args: [arg0, 0, 0, 0, 0, 0])
        }
        for value: UInt64 in [0, 0xFFFF_FFFF, 0x1_0000_0000, 0xAB_FFFF_FFFF] {
            #expect(try verdict(personality, value) == allow, "personality(\(String(value, radix: 16)))")
        }
        var refused: [UInt64] = [0x0040_0000, 0x0004_0000, 0x0008, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFE, 0x1_0040_0000]
        for b in 0..<32 {
            refused.append(UInt64(1) << UInt64(b))
            refused.append(0xFFFF_FFFF ^ (UInt64(1) << UInt64(b)))
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let v = UInt64(UInt32.random(in: 1...0xFFFF_FFFE, using: &rng)) | (UInt64(UInt32.random(in: 0...UInt32.max, using: &rng)) << 32)
            refused.append(v)
        }
        for value in refused {
            #expect(try verdict(personality, value) & 0xFFFF_0000 == 0x0005_0000, "personality(\(String(value, radix: 16))) allowed")
        }
        for family: UInt64 in 0...40 {
            let allowed = [1, 2, 10, 16].contains(family)
            #expect(try (verdict(socket, family) == allow) == allowed, "socket(\(family))")
        }
        #expect(try verdict(getpid, 0) == allow)
        #expect(try BPF.run(program, nr: getpid, arch: 0x4000_0003, args: [0, 0, 0, 0, 0, 0]) == 0x8000_0000, "i386 not killed")
    }
}

/// Just enough of a classic-BPF interpreter for libseccomp's output, over a
/// struct seccomp_data {nr, arch, ip, args[6]}.
enum BPF {
    struct Unsupported: Error { let code: UInt16 }

    static func run(_ program: [sock_filter], nr: UInt32, arch: UInt32, args: [UInt64]) throws -> UInt32 {
        var data = [UInt8](repeating: 0, count: 64)
        func put32(_ v: UInt32, _ at: Int) { for i in 0..<4 { data[at + i] = UInt8((v >> (8 * UInt32(i))) & 0xFF) } }
        put32(nr, 0); put32(arch, 4)
        for (i, a) in args.enumerated() { put32(UInt32(a & 0xFFFF_FFFF), 16 + 8 * i); put32(UInt32(a >> 32), 20 + 8 * i) }
        func load(_ k: UInt32) -> UInt32 {
            let o = Int(k)
            return UInt32(data[o]) | UInt32(data[o + 1]) << 8 | UInt32(data[o + 2]) << 16 | UInt32(data[o + 3]) << 24
        }
        var a: UInt32 = 0, x: UInt32 = 0, mem = [UInt32](repeating: 0, count: 16), pc = 0
        while pc < program.count {
            let ins = program[pc]
            pc += 1
            switch ins.code {
            case 0x20: a = load(ins.k)                       // ld  [k]
            case 0x60: a = mem[Int(ins.k)]                   // ld  M[k]
            case 0x61: x = mem[Int(ins.k)]                   // ldx M[k]
            case 0x00: a = ins.k                             // ld  #k
            case 0x01: x = ins.k                             // ldx #k
            case 0x02: mem[Int(ins.k)] = a                   // st  M[k]
            case 0x03: mem[Int(ins.k)] = x                   // stx M[k]
            case 0x54: a &= ins.k                            // and #k
            case 0x44: a |= ins.k                            // or  #k
            case 0x07: x = a                                 // tax
            case 0x87: a = x                                 // txa
            case 0x05: pc += Int(ins.k)                      // ja
            case 0x15, 0x25, 0x35, 0x45, 0x1D, 0x2D, 0x3D, 0x4D:
                let operand = ins.code & 0x08 != 0 ? x : ins.k
                let taken: Bool
                switch ins.code & 0xF0 {
                case 0x10: taken = a == operand
                case 0x20: taken = a > operand
                case 0x30: taken = a >= operand
                default: taken = a & operand != 0
                }
                pc += Int(taken ? ins.jt : ins.jf)
            case 0x06: return ins.k                          // ret #k
            case 0x16: return a                              // ret a
            default: throw Unsupported(code: ins.code)
            }
        }
        throw Unsupported(code: 0xFFFF)
    }
}

@Suite("launcher: the systemd unit", .serialized)
struct LauncherSystemdTests {
    static var repo: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    static let analyze = "/usr/bin/systemd-analyze"

    @Test("systemd-analyze verify is clean and security scores <= 1.5",
          .enabled(if: FileManager.default.isExecutableFile(atPath: analyze), "systemd-analyze is not installed"))
    func unitGate() throws {
        // verify wants ExecStart to exist: check a copy pointing at the built binary.
        let dir = try World.sh("mktemp -d /tmp/cs-unit-XXXXXX").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? World.sh("rm -rf \(dir)") }
        let unit = try String(contentsOf: Self.repo.appendingPathComponent("systemd/comfy-sandbox.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/comfy-sandbox launch"))
        try unit.replacingOccurrences(of: "/usr/local/bin/comfy-sandbox", with: World.binary)
            .write(toFile: dir + "/comfy-sandbox.service", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: Self.repo.appendingPathComponent("systemd/comfy-sandbox.socket").path,
                                         toPath: dir + "/comfy-sandbox.socket")
        let verify = try HostCommand(Self.analyze, ["verify", dir + "/comfy-sandbox.service", dir + "/comfy-sandbox.socket"]).run()
        #expect(verify.succeeded && verify.stderrText.isEmpty && verify.stdoutText.isEmpty,
                "verify: \(verify.stdoutText) \(verify.stderrText)")
        let security = try HostCommand(Self.analyze, ["security", "--offline=true", "--threshold=15",
                                                       Self.repo.appendingPathComponent("systemd/comfy-sandbox.service").path]).run()
        #expect(security.status == 0, "\(security.stdoutText.split(separator: "\n").last ?? "")")
    }

    /// What comfy-sandbox.socket gives the service, made as systemd makes
    /// it: the listening socket and (ListenNetlink=inet-diag 0) a
    /// NETLINK_SOCK_DIAG socket, both in the host's namespace, as fds 3 and 4
    /// with LISTEN_PID and LISTEN_FDS; then exec, so the pid stays.
    static let socketActivate = """
    import os, socket, sys
    port, netlink, argv = int(sys.argv[1]), sys.argv[2] == 'yes', sys.argv[3:]
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(('127.0.0.1', port)); l.listen(128)
    fds = [l]
    if netlink:
        n = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
        n.bind((0, 0))
        fds.append(n)
    # Out of the way first: a socket may already sit on 3 or 4, and dup2
    # onto itself would leave it close-on-exec.
    high = [os.dup2(s.fileno(), 100 + i) for i, s in enumerate(fds)]
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i)
        os.set_inheritable(3 + i, True)
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=':'.join(['comfy-sandbox.socket'] * len(fds)))
    os.execvp(argv[0], argv)
    """

    @Test("as the unit runs it: the sandbox user, no capabilities, PrivateNetwork, systemd's sockets; UI works through the relay, for the primary user only",
          .requiresRoot)
    func unprivilegedServiceMode() throws {
        let w = try LauncherWorld()
        let uid = try #require(w.world.uid("comfyui_sandbox")), gid = try #require(w.world.gid("comfyui_sandbox"))
        let shared = try #require(w.world.gid("comfyshared"))
        _ = try w.world.sh("useradd -M -N -s /bin/sh mallory")
        let alice = try #require(w.world.uid("alice")), mallory = try #require(w.world.uid("mallory"))
        let hostPort = LauncherWorld.freePort()
        chmod(w.world.configPath, 0o644)
        // The sockets as systemd makes them, then unshare --net
        // (PrivateNetwork=yes) and setpriv (User=, empty bounding set): the
        // pid, and so LISTEN_PID, stays the same through every exec.
        let inner = "ip link set lo up && exec setpriv --reuid=\(uid) --regid=\(gid) --groups=\(shared) --inh-caps=-all --bounding-set=-all \(World.binary) launch --config \(w.world.configPath)"
        let script = w.world.root + "/socket-activate.py"
        try Self.socketActivate.write(toFile: script, atomically: true, encoding: .utf8)
        let start = try w.world.sh("setsid python3 \(script) \(hostPort) yes unshare --net sh -c '\(inner)' > \(w.world.root)/svc.log 2>&1 < /dev/null & echo $! > \(w.world.root)/svc.pid")
        #expect(start.succeeded)
        let pid = pid_t((try? String(contentsOfFile: w.world.root + "/svc.pid", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        defer {
            if pid > 0 { kill(pid, SIGTERM); usleep(500_000); kill(pid, SIGKILL) }
        }
        let status = HTTPProbe.waitFor(port: hostPort)
        let log = (try? String(contentsOfFile: w.world.root + "/svc.log", encoding: .utf8)) ?? ""
        try #require(status.ok, "\(status.detail); log: \(log)")
        let info = try #require(try JSONSerialization.jsonObject(with: Data(status.body.utf8)) as? [String: Any])
        let proc = try #require(info["status"] as? [String: String])
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] { #expect(proc[set] == "0000000000000000") }
        #expect(proc["NoNewPrivs"] == "1")
        #expect(proc["Seccomp"] == "2")
        #expect(info["uid"] as? Int == Int(uid))
        #expect(HTTPProbe.websocketEcho(host: "127.0.0.1", port: UInt16(hostPort), message: "via systemd socket").ok)
        // Who: through systemd's netlink socket, alice gets in and mallory does not.
        let get = "import socket,sys; s=socket.create_connection(('127.0.0.1', \(hostPort))); s.sendall(b'GET /status HTTP/1.1\\r\\nHost: 127.0.0.1:\(hostPort)\\r\\n\\r\\n'); print(s.recv(100).split(b'\\r\\n')[0].decode())"
        for (user, want) in [(alice, "200"), (mallory, "403")] {
            let r = try w.world.run(["setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups", "/usr/bin/python3", "-c", get])
            #expect(r.stdoutText.contains("HTTP/1.1 \(want)"), "uid \(user): \(r.stdoutText) \(r.stderrText)")
        }
    }

    @Test("a socket unit without the netlink socket: launch refuses to start rather than serve everyone", .requiresRoot)
    func socketUnitWithoutNetlink() throws {
        let w = try LauncherWorld()
        let uid = try #require(w.world.uid("comfyui_sandbox")), gid = try #require(w.world.gid("comfyui_sandbox"))
        let shared = try #require(w.world.gid("comfyshared"))
        chmod(w.world.configPath, 0o644)
        let script = w.world.root + "/socket-activate.py"
        try Self.socketActivate.write(toFile: script, atomically: true, encoding: .utf8)
        let inner = "ip link set lo up && exec setpriv --reuid=\(uid) --regid=\(gid) --groups=\(shared) --inh-caps=-all --bounding-set=-all \(World.binary) launch --config \(w.world.configPath)"
        let r = try w.world.run(["python3", script, String(LauncherWorld.freePort()), "no", "unshare", "--net", "sh", "-c", inner], timeout: 60)
        #expect(r.status == 1, "\(r.stdoutText) \(r.stderrText)")
        #expect(r.stderrText.contains("ListenNetlink=inet-diag"), "\(r.stderrText)")
    }

    @Test("unprivileged but not in a loopback-only namespace: refuses to start", .requiresRoot)
    func unprivilegedWithoutPrivateNetwork() throws {
        let w = try LauncherWorld()
        let uid = try #require(w.world.uid("comfyui_sandbox")), gid = try #require(w.world.gid("comfyui_sandbox"))
        chmod(w.world.configPath, 0o644)
        let r = try w.world.run(["setpriv", "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                                 World.binary, "run", "--config", w.world.configPath, "--", "/bin/true"])
        #expect(r.status == 1, "\(r.stderrText)")
        #expect(r.stderrText.contains("loopback-only"), "\(r.stderrText)")
    }
}

@Suite("launcher: Landlock modes on older kernels", .serialized)
struct LauncherLandlockModeTests {
    func world(_ mode: Any) throws -> LauncherWorld {
        let w = try LauncherWorld()
        try w.setLauncher(["landlock": mode])
        return w
    }

    @Test("launcher.limits: more memory than the limit is killed inside the session; too many tasks are refused", .requiresRoot)
    func sessionLimits() throws {
        let w = try LauncherWorld()
        try w.setLauncher(["limits": ["memory": "256m", "tasks": 64] as [String: Any]])
        guard SessionCgroup.detectedVersion != nil else { return }
        let hog = try w.world.comfy(["run", "--", "/usr/bin/python3", "-c", "b = bytearray(512 << 20); print('survived')"])
        #expect(hog.status == 137 && !hog.stdoutText.contains("survived"), "\(hog.status) \(hog.stdoutText) \(hog.stderrText)")
        let small = try w.world.comfy(["run", "--", "/usr/bin/python3", "-c", "b = bytearray(64 << 20); print('fine')"])
        #expect(small.status == 0 && small.stdoutText.contains("fine"), "\(small.stderrText)")
        let forks = try w.world.comfy(["run", "--", "/bin/sh", "-c", "n=0; while [ $n -lt 100 ]; do sleep 5 & n=$((n+1)); done 2>/dev/null; echo started"])
        #expect(forks.stderrText.contains("fork") || forks.stderrText.contains("Resource temporarily unavailable") || forks.status != 0,
                "100 sleepers under tasks = 64: \(forks.status) \(forks.stdoutText) \(forks.stderrText)")
        let check = try w.world.comfy(["check-sandbox", "--json"])
        #expect(check.stdoutText.contains("allocate more than launcher.limits.memory"), "\(check.stdoutText)")
        #expect(check.status == 0, "\(check.stdoutText)")
    }

    @Test("cgroup v2: the init is born in the session's cgroup, which holds the session and goes with it", .requiresRoot,
          arguments: [false, true])
    func sessionCgroupV2(_ limited: Bool) throws {
        let w = try LauncherWorld()
        if limited {
            try w.setLauncher(["limits": ["tasks": 64] as [String: Any]])
        }
        // On a cgroup v1 host, its cgroup2 hierarchy in place of
        // /sys/fs/cgroup, in this test's mount namespace only.
        let script = """
        set -e
        if [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then mount -t cgroup2 none /sys/fs/cgroup; fi
        if [ "$LIMITED" = 1 ] && ! grep -qw pids /sys/fs/cgroup/cgroup.controllers; then echo SKIP; exit 0; fi
        "$CS" run --config "$CFG" -- /bin/sh -c 'echo inside; cat /proc/self/cgroup; exec sleep 3' &
        launcher=$!
        sleep 1.5
        dir=/sys/fs/cgroup/comfy-sandbox/session-$launcher
        echo "procs $(wc -l < $dir/cgroup.procs)"
        echo "pids.max $(cat $dir/pids.max 2>/dev/null || echo none)"
        grep -qx "0::/comfy-sandbox/session-$launcher" /proc/$(head -1 $dir/cgroup.procs)/cgroup && echo "host view ok"
        grep -qx "$launcher" $dir/cgroup.procs || echo "launcher outside"
        wait $launcher
        [ -e $dir ] && echo "left behind" || echo "removed"
        """
        let r = try w.world.sh(script, environment: ["CS": World.binary, "CFG": w.world.configPath, "LIMITED": limited ? "1" : "0"])
        #expect(r.status == 0, "\(r.stdoutText) \(r.stderrText)")
        if r.stdoutText.contains("SKIP") { return }
        let lines = Set(r.stdoutText.split(separator: "\n").map(String.init))
        // The init and the program: nothing else, and not the launcher.
        #expect(lines.contains("procs 2") && lines.contains("launcher outside") && lines.contains("host view ok"), "\(r.stdoutText) \(r.stderrText)")
        // Inside, the session's cgroup is the namespace's root.
        #expect(lines.contains("0::/"), "\(r.stdoutText)")
        #expect(lines.contains(limited ? "pids.max 64" : "pids.max none") || (!limited && lines.contains("pids.max max")), "\(r.stdoutText)")
        #expect(lines.contains("removed"), "\(r.stdoutText)")
    }

    @Test("the root holds the allowed GPUs' nodes and no other (fake NVIDIA character devices)", .requiresRoot,
          arguments: [("[1]", ["nvidia1"], ["nvidia0"], "1"), ("\"auto\"", ["nvidia0", "nvidia1"], [], "0,1"), ("\"none\"", [], ["nvidia0", "nvidia1", "nvidiactl"], "")])
    func gpuNodes(_ setting: String, _ present: [String], _ absent: [String], _ visible: String) throws {
        let w = try LauncherWorld()
        try w.setLauncher(["gpu": JSONSerialization.jsonObject(with: Data(setting.utf8), options: .fragmentsAllowed)])
        // In this test's own mount namespace, a /dev holding the usual nodes
        // and two fake GPUs with the driver's majors.
        let script = """
        set -e
        \(w.fakeDevScript)
        mkdir /dev/nvidia-caps
        mknod -m 666 /dev/nvidia0 c 195 0; mknod -m 666 /dev/nvidia1 c 195 1
        mknod -m 666 /dev/nvidiactl c 195 255; mknod -m 666 /dev/nvidia-uvm c 235 0
        exec "$CS" run --config "$CFG" -- /bin/sh -c 'ls /dev; echo "visible=$CUDA_VISIBLE_DEVICES"'
        """
        let r = try w.world.sh(script, environment: ["CS": World.binary, "CFG": w.world.configPath])
        #expect(r.status == 0, "\(r.stdoutText) \(r.stderrText)")
        let names = Set(r.stdoutText.split(separator: "\n").map(String.init))
        for n in present + (present.isEmpty ? [] : ["nvidiactl", "nvidia-uvm", "nvidia-caps"]) { #expect(names.contains(n), "\(n) missing: \(names.sorted())") }
        for n in absent { #expect(!names.contains(n), "\(n) must not be in the root: \(names.sorted())") }
        #expect(names.contains("visible=\(visible)"), "\(r.stdoutText)")
    }

    @Test("launcher.instances: a ComfyUI per GPU, each with only its own GPU; both answer; stopping one leaves the other", .requiresRoot)
    func instancesPerGPU() throws {
        let w = try LauncherWorld()
        let (pa, pb) = (LauncherWorld.freePort(), LauncherWorld.freePort())
        try w.setLauncher(["instances": [["name": "a", "gpu": [0], "port": pa],
                                         ["name": "b", "gpu": [1], "port": pb, "output": "own"]] as [[String: Any]]])
        let script = """
        set -e
        \(w.fakeDevScript)
        mknod -m 666 /dev/nvidia0 c 195 0; mknod -m 666 /dev/nvidia1 c 195 1; mknod -m 666 /dev/nvidiactl c 195 255
        get() { /usr/bin/python3 -c "import json,sys,urllib.request as u; d=json.load(u.urlopen('http://127.0.0.1:%s/status' % sys.argv[1], timeout=5)); print(sys.argv[2], 'ANSWERS', d.get('env', {}).get('CUDA_VISIBLE_DEVICES'), d.get('output_directory', ''))" "$1" "$2" 2>/dev/null || echo "$2 SILENT"; }
        "$CS" start --config "$CFG" >/dev/null
        get \(pa) a; get \(pb) b
        "$CS" status --config "$CFG" | grep -E '^instance|gpu:|ui:' || true
        "$CS" check-sandbox --config "$CFG" --instance a --json > \(w.world.root)/check-a.json || true
        "$CS" stop --config "$CFG" a >/dev/null
        get \(pa) a-after; get \(pb) b-after
        "$CS" stop --config "$CFG" >/dev/null
        """
        let r = try w.world.sh(script, environment: ["CS": World.binary, "CFG": w.world.configPath])
        let out = r.stdoutText
        #expect(out.contains("a ANSWERS 0"), "instance a sees GPU 0 only: \(out) \(r.stderrText)")
        #expect(out.contains("b ANSWERS 1"), "instance b sees GPU 1 only: \(out)")
        #expect(out.contains("a-after SILENT") && out.contains("b-after ANSWERS 1"), "stopping a leaves b: \(out)")
        #expect(out.contains("instance a:") && out.contains("instance b:"), "status has a section each: \(out)")
        let bOut = out.split(separator: "\n").first { $0.hasPrefix("b ANSWERS") } ?? ""
        #expect(bOut.hasSuffix("/output/b"), "b writes output/b: \(bOut)")
        let check = try #require(FileManager.default.contents(atPath: w.world.root + "/check-a.json"))
        let report = try #require(try JSONSerialization.jsonObject(with: check) as? [String: Any])
        let rows = report["results"] as? [[String: Any]] ?? []
        let other = rows.first { ($0["attempt"] as? String) == "open another instance's GPU (/dev/nvidia1)" }
        #expect(other?["pass"] as? Bool == true, "check-sandbox --instance a: nvidia1 absent: \(rows.filter { ($0["pass"] as? Bool) == false })")
        #expect(report["failed"] as? Int == 0, "\(rows.filter { ($0["pass"] as? Bool) == false })")
    }

    @Test("landlock: false runs but warns every time", .requiresRoot)
    func offWarns() throws {
        let w = try world(false)
        let r = try w.world.comfy(["run", "--", "/bin/true"])
        #expect(r.status == 0)
        #expect(r.stderrText.contains("Landlock is OFF"))
    }
}

/// launcher.landlock on this kernel and on each older ABI (simulated with
/// COMFY_SANDBOX_LANDLOCK_ABI, which can only lower the real one, so on an
/// old kernel the higher ones are that kernel): `true` starts only where
/// every rule holds and otherwise refuses naming each missing rule and the
/// kernel that has it; "best-effort" starts and names them on every start;
/// status says the same; the install confinement follows the same rule.
@Suite("launcher: Landlock on this kernel and on older ABIs", .serialized)
struct LandlockOnThisKernelTests {
    /// Every ABI up to this kernel's (higher ones would be this kernel again).
    static let abis = Array(0...max(0, TestKernel.abi))

    /// One world for the suite (it is serialized): each test sets the mode it needs.
    static let shared: LauncherWorld = SharedLauncherWorld.make()

    func world(_ mode: Any) throws -> LauncherWorld {
        let w = Self.shared
        try w.setLauncher(["landlock": mode])
        return w
    }

    /// The ABI a run told to act as `abi` gets (never above this kernel's),
    /// the variable that tells it so, and what that ABI lacks.
    func expected(_ abi: Int) -> (abi: Int, env: [String: String], missing: [Landlock.Gap]) {
        let effective = min(abi, TestKernel.abi)
        let loopback = Landlock.NetPolicy(bindPorts: [1], connectPorts: [1])
        return (effective, ["COMFY_SANDBOX_LANDLOCK_ABI": String(effective)], Landlock.gaps(abi: effective, net: loopback, scope: true).filter(\.weaker))
    }

    @Test("true: starts only when every rule holds, else refuses naming each missing one; status agrees", .requiresRoot, arguments: abis)
    func enforce(_ abi: Int) throws {
        let w = try world(true)
        let (effective, env, missing) = expected(abi)
        let r = try w.world.comfy(["run", "--", "/bin/true"], environment: env)
        let st = try w.world.comfy(["status"], environment: env)
        let line = st.stdoutText.split(separator: "\n").first { $0.contains("landlock:") }.map(String.init) ?? ""
        if missing.isEmpty {
            #expect(r.status == 0, "ABI \(effective): \(r.stderrText)")
            #expect(!r.stderrText.contains("NOT"), "\(r.stderrText)")
            #expect(!line.contains("NOT enforced"), "\(line)")
        } else if effective == 0 {
            #expect(r.status == 1 && r.stderrText.contains("cannot enforce Landlock (ABI 0)"), "\(r.stderrText)")
            #expect(line.contains("launch will refuse to start"), "\(line)")
        } else {
            #expect(r.status == 1, "ABI \(effective) must refuse: \(r.stderrText)")
            #expect(r.stderrText.contains("launcher.landlock is true"), "\(r.stderrText)")
            for gap in missing { #expect(r.stderrText.contains(gap.description), "ABI \(effective): \(gap) not named: \(r.stderrText)") }
            #expect(r.stderrText.contains("best-effort") && r.stderrText.contains("Linux \(Landlock.kernel(abi: missing.map(\.abi).max()!))"), "\(r.stderrText)")
            for gap in missing { #expect(line.contains(gap.description), "status: \(line)") }
            #expect(line.contains("launch refuses to start"), "\(line)")
        }
        // The install confinement follows the same rule.
        let install = try w.world.comfy(["__internal", "install-probe", "--", "/bin/true"], environment: env)
        #expect((install.status == 0) == missing.isEmpty, "install, ABI \(effective): \(install.stderrText)")
        if !missing.isEmpty && effective > 0 { #expect(install.stderrText.contains("refusing to install"), "\(install.stderrText)") }
    }

    @Test("best-effort: starts, names every missing rule on each start, and still enforces files", .requiresRoot, arguments: abis)
    func bestEffort(_ abi: Int) throws {
        let w = try world("best-effort")
        let (effective, env, missing) = expected(abi)
        // The root's /run is 0755 (anyone may list it): only Landlock refuses it.
        let r = try w.world.comfy(["run", "--", "/usr/bin/python3", "-c", "import os; os.listdir('/run')"], environment: env)
        if effective == 0 {
            #expect(r.status == 0 && r.stderrText.contains("Landlock is NOT enforced"), "\(r.stderrText)")
            return
        }
        #expect(r.stderrText.contains("PermissionError"), "files are still enforced on ABI \(effective): \(r.stderrText)")
        if missing.isEmpty {
            #expect(!r.stderrText.contains("NOT fully enforced"), "\(r.stderrText)")
        } else {
            #expect(r.stderrText.contains("WARNING: Landlock NOT fully enforced"), "\(r.stderrText)")
            for gap in missing { #expect(r.stderrText.contains(gap.description), "ABI \(effective): \(gap) not named: \(r.stderrText)") }
            let st = try w.world.comfy(["status"], environment: env)
            #expect(st.stdoutText.contains("launch starts without them"), "\(st.stdoutText)")
        }
        let install = try w.world.comfy(["__internal", "install-probe", "--", "/bin/true"], environment: env)
        #expect(install.status == 0, "\(install.stderrText)")
        #expect(install.stderrText.contains("NOT fully enforced") == !missing.isEmpty, "\(install.stderrText)")
    }

    @Test("check-sandbox on an older ABI: true refuses with the reason; best-effort lists each gap as NOT ENFORCED, fails nothing", .requiresRoot,
          arguments: Set([2, 4].map { min($0, TestKernel.abi) }).sorted())
    func checkSandboxOlder(_ abi: Int) throws {
        let (effective, env, missing) = expected(abi)
        let strict = try world(true)
        let refused = try strict.world.comfy(["check-sandbox"], environment: env)
        if missing.isEmpty {
            #expect(refused.status == 0, "\(refused.stdoutText) \(refused.stderrText)")
        } else {
            #expect(refused.status == 1 && refused.stderrText.contains("launcher.landlock is true"), "\(refused.stderrText)")
        }
        let w = try world("best-effort")
        let r = try w.world.comfy(["check-sandbox"], environment: env)
        #expect(r.status == 0, "\(r.stdoutText) \(r.stderrText)")
        #expect(r.stdoutText.contains("kernel: Linux \(Kernel.release), Landlock ABI \(effective)"), "\(r.stdoutText)")
        for gap in missing { #expect(r.stdoutText.contains(gap.description), "\(gap) not in the head: \(r.stdoutText)") }
        // Binding another port is the attack only a missing rule lets through
        // (the PID namespace hides every process outside the session).
        let rows = r.stdoutText.split(separator: "\n").filter { $0.contains("NOT ENFORCED") }
        #expect(rows.count == (effective < 4 ? 1 : 0), "\(r.stdoutText)")
        if effective < 4 { #expect(rows.contains { $0.contains("bind a port other than launcher.port") && $0.contains("Landlock ABI 4") }, "\(rows)") }
    }
}

@Suite("launcher: the install confinement")
struct InstallConfinementTests {
    @Test("forInstall: sandbox user, seccomp, writes only where told, host network", .requiresRoot)
    func forInstall() throws {
        let w = SharedLauncherWorld.loopback
        let staging = w.world.root + "/staging"
        let made = try w.world.sh("mkdir -p \(staging) && chown comfyui_sandbox \(staging)")
        #expect(made.succeeded)
        // Inside the world (its /etc), so the accounts resolve.
        let script = """
        import os, socket
        open('\(staging)/ok', 'w').write('x')
        try:
            open('/var/tmp/cs-install-escape', 'w'); print('ESCAPED')  # 1777: only Landlock refuses
        except OSError:
            print('BLOCKED')
        print(open('/proc/self/status').read().count('Seccomp:\\t2'))
        """
        let r = try w.world.run([World.binary, "__internal", "install-probe", "--config", w.world.configPath,
                                 "--writable", staging, "--", "/usr/bin/python3", "-c", script])
        #expect(r.succeeded, "\(r.stderrText)")
        #expect(r.stdoutText.contains("BLOCKED") && !r.stdoutText.contains("ESCAPED"), "\(r.stdoutText)")
        #expect(r.stdoutText.contains("1"), "seccomp on: \(r.stdoutText)")
        #expect(FileManager.default.fileExists(atPath: staging + "/ok"))
    }

    @Test("what an install leaves running (a double-forked sleeper, one holding the output pipe, one made non-dumpable) is killed", .requiresRoot)
    func installLeftovers() throws {
        let w = SharedLauncherWorld.loopback
        // What a hostile setup.py could do: detach processes that outlive pip.
        // One keeps stderr (the pipe we read) open; one turns non-dumpable,
        // which hands its /proc entry to root.
        // A third keeps running in a thread after its thread-group leader
        // exited: a zombie leader, which a child list skipping state Z misses.
        // Inside its PID namespace the pids mean nothing on the host: they
        // are found by their arguments and thread names.
        let tag = "\(400 + Int(getpid() % 500))"
        let script = """
        import ctypes, os, sys, threading, time
        def detach(keep_stderr, nondumpable, arg):
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    if nondumpable:
                        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)   # PR_SET_DUMPABLE 0
                    null = os.open('/dev/null', os.O_RDWR)
                    os.dup2(null, 0); os.dup2(null, 1)
                    if not keep_stderr: os.dup2(null, 2)
                    os.execv('/bin/sleep', ['sleep', arg])
                os._exit(0)
            os.wait()
        detach(True, False, '\(tag).25')
        detach(False, True, '\(tag).75')
        if os.fork() == 0:
            os.setsid()
            def linger():
                ctypes.CDLL(None).prctl(15, b'cs-zl-\(tag)', 0, 0, 0)   # PR_SET_NAME
                time.sleep(300)
            threading.Thread(target=linger).start()
            time.sleep(0.2)
            ctypes.CDLL(None).pthread_exit(None)   # the leader goes, the thread stays
        time.sleep(0.5)
        print('detached', flush=True)
        """
        let start = Date()
        let r = try w.world.run([World.binary, "__internal", "install-probe", "--config", w.world.configPath,
                                 "--", "/usr/bin/python3", "-c", script], timeout: 120)
        #expect(r.succeeded, "\(r.stderrText)")
        #expect(r.stdoutText.contains("detached"), "\(r.stdoutText) \(r.stderrText)")
        #expect(Date().timeIntervalSince(start) < 30, "a leftover holding the pipe must not hang the install")
        let left = World.processes(withArgument: ["\(tag).25", "\(tag).75"]) + World.processes(withThreadNamed: "cs-zl-\(tag)")
        for pid in left { kill(pid, SIGKILL) }
        #expect(left.isEmpty, "outlived the install: \(left)")
    }
}
