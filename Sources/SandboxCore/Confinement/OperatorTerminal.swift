import FoundationEssentials
import Glibc
import SandboxOS

/// What `run` and `shell` give the sandbox instead of the operator's terminal.
///
/// A terminal fd handed to the sandbox is the operator's terminal: through
/// it a confined program can switch echo off or change any other termios
/// setting (TCSETS needs no controlling terminal), resize it, and write
/// sequences that act beyond the screen (OSC 52 writes the clipboard). So it
/// never gets one:
///
/// - stdin is a terminal: the sandbox gets a pty of its own (new session,
///   the slave as its controlling terminal and as each of stdin/stdout/stderr
///   that is a terminal here). The launcher puts the operator's terminal in
///   raw mode, relays keystrokes to the pty and its output back through
///   `TerminalFilter(.interactive)`, passes window-size changes on, and
///   restores the terminal's settings when the session ends.
/// - stdin is not a terminal but stdout or stderr is: no terminal at all. The
///   terminal outputs become a pipe the launcher copies through
///   `TerminalFilter(.output)`.
/// - none of 0-2 is a terminal (scripts, the benchmarks): nothing here; the
///   sandbox inherits them as they are. `attach` costs three isatty calls.
public final class OperatorTerminal: @unchecked Sendable {
    public enum Mode: Sendable, Equatable { case pty, pipes }

    public let mode: Mode
    /// The child's 0, 1 and 2 (-1: ours, inherited as it is).
    public let stdin: Int32, stdout: Int32, stderr: Int32
    /// The child's ends, closed here once it has them.
    private var childEnds: [Int32]
    /// What the relay thread copies, filtered: from an fd we read to an fd of ours (-1: discard).
    private var copies: [(from: Int32, to: Int32)]
    private var master: Int32 = -1
    private var saved: termios?
    /// Written to when the relay must stop now.
    private let wake: (read: Int32, write: Int32)
    private let finished = Condition()
    private var running = false   // guarded by `finished`
    private var closed = false

    /// The terminal plan for this process's fds 0-2, or nil when none is a terminal.
    public static func attach() throws -> OperatorTerminal? {
        let tty = (isatty(0) == 1, isatty(1) == 1, isatty(2) == 1)
        if !tty.0 && !tty.1 && !tty.2 { return nil }
        return try OperatorTerminal(stdinTTY: tty.0, stdoutTTY: tty.1, stderrTTY: tty.2)
    }

    init(stdinTTY: Bool, stdoutTTY: Bool, stderrTTY: Bool) throws {
        let w: (read: Int32, write: Int32)
        do { w = try makePipe() } catch { throw SandboxError.failure("pipe: \(error)") }
        wake = w
        if stdinTTY {
            let m: Int32, s: Int32
            do { (m, s) = try Pty.open() } catch let e {
                close(w.read); close(w.write)
                throw SandboxError.failure("cannot make a pty for the sandbox: \(e)",
                                           hint: "run it with stdin not a terminal (`< /dev/null`) to give it none")
            }
            mode = .pty
            master = m
            // The pty starts as the operator's terminal is now (erase key,
            // size); raw mode on ours comes in `started`.
            var t = termios()
            if tcgetattr(0, &t) == 0 { _ = tcsetattr(s, TCSANOW, &t) }
            Pty.copyWindowSize(from: 0, to: s)
            stdin = s
            stdout = stdoutTTY ? s : -1
            stderr = stderrTTY ? s : -1
            childEnds = [s]
            copies = [(m, stdoutTTY ? 1 : stderrTTY ? 2 : -1)]
        } else {
            mode = .pipes
            let p: (read: Int32, write: Int32)
            do { p = try makePipe() } catch let e {
                close(w.read); close(w.write)
                throw SandboxError.failure("pipe: \(e)")
            }
            stdin = -1
            // Both to the terminal: one pipe, so their order is kept.
            stdout = stdoutTTY ? p.write : -1
            stderr = stderrTTY ? p.write : -1
            childEnds = [p.write]
            copies = [(p.read, stdoutTTY ? 1 : 2)]
        }
    }

    deinit { finish() }

    /// After the spawn: closes our copies of the child's ends, puts the
    /// operator's terminal in raw mode (pty) and starts the relay thread.
    public func started() {
        for fd in childEnds { close(fd) }
        childEnds = []
        if mode == .pty {
            var t = termios()
            if tcgetattr(0, &t) == 0 {
                saved = t
                cfmakeraw(&t)
                _ = tcsetattr(0, TCSANOW, &t)
            }
        }
        finished.lock()
        running = true
        finished.unlock()
        let ok = detachThread { [self] in
            relay()
            finished.lock()
            running = false
            finished.broadcast()
            finished.unlock()
        }
        if !ok {
            finished.lock()
            running = false
            finished.unlock()
        }
    }

    /// SIGWINCH: the operator's terminal changed size; so does the pty.
    public func windowChanged() {
        if mode == .pty && !closed { Pty.copyWindowSize(from: 0, to: master) }
    }

    /// Gives the operator's terminal its settings back (leaves raw mode), as
    /// soon as the main program has ended: what the launcher prints next
    /// must read normally. Safe to call twice.
    public func restoreSettings() {
        if var t = saved { _ = tcsetattr(0, TCSANOW, &t) }
        saved = nil
    }

    /// Once the session is over: lets the relay pass on what the sandbox
    /// wrote last (up to a second), stops it, restores the terminal's
    /// settings and closes everything. Safe to call twice.
    public func finish() {
        if closed { return }
        closed = true
        for fd in childEnds { close(fd) }
        childEnds = []
        // Every writer of the pty or pipe is gone (the session's processes
        // are dead), so the relay reaches the end on its own; a second wait
        // after waking it covers a writer that somehow is not.
        if !waitRelay(milliseconds: 1000) {
            var one: UInt8 = 1
            _ = write(wake.write, &one, 1)
            _ = waitRelay(milliseconds: 1000)
        }
        restoreSettings()
        finished.lock()
        let stillRunning = running
        finished.unlock()
        // A relay thread that has not ended still uses these; it goes with the process.
        if !stillRunning {
            for c in copies { close(c.from) }
            close(wake.read)
        }
        close(wake.write)
    }

    private func waitRelay(milliseconds: Int) -> Bool {
        let deadline = Self.now() + milliseconds
        finished.lock()
        defer { finished.unlock() }
        while running {
            if Self.now() >= deadline { return false }
            finished.unlock()
            usleep(10_000)
            finished.lock()
        }
        return true
    }

    static func now() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }

    /// The relay loop: keystrokes to the pty as they are, the sandbox's
    /// output back through the filter, until every output has ended.
    private func relay() {
        var filters = copies.map { _ in TerminalFilter(mode == .pty ? .interactive : .output) }
        var open = copies.map { _ in true }
        var readingStdin = mode == .pty
        var pending: [UInt8] = []   // keystrokes the pty has not taken yet
        var buf = [UInt8](repeating: 0, count: 16384)
        if mode == .pty { _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK) }
        while open.contains(true) {
            var fds: [pollfd] = copies.enumerated().map { i, c in
                // The pty master also takes keystrokes: POLLOUT while some wait.
                let events = Int16(POLLIN) | (mode == .pty && !pending.isEmpty ? Int16(POLLOUT) : 0)
                return pollfd(fd: open[i] ? c.from : -1, events: events, revents: 0)
            }
            fds.append(pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0))
            fds.append(pollfd(fd: readingStdin && pending.count < 65536 ? 0 : -1, events: Int16(POLLIN), revents: 0))
            let r = poll(&fds, nfds_t(fds.count), -1)
            if r < 0 { if errno == EINTR { continue }; return }
            if fds[copies.count].revents != 0 {
                // Stop: take what is already there, then end.
                for (i, c) in copies.enumerated() where open[i] {
                    _ = fcntl(c.from, F_SETFL, fcntl(c.from, F_GETFL) | O_NONBLOCK)
                    while case let n = read(c.from, &buf, buf.count), n > 0 { emit(filters[i].filter(buf[..<n]), to: c.to) }
                }
                return
            }
            // Keystrokes in.
            let stdinEvents = fds[copies.count + 1].revents
            if stdinEvents != 0 {
                let n = read(0, &buf, buf.count)
                if n > 0 { pending += buf[..<n] } else if n == 0 || (errno != EINTR && errno != EAGAIN) { readingStdin = false }
            }
            if mode == .pty && !pending.isEmpty {
                let n = pending.withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
                if n > 0 { pending.removeFirst(n) } else if n < 0 && errno != EAGAIN && errno != EINTR { pending = [] }
            }
            // Output out.
            for (i, c) in copies.enumerated() where open[i] && fds[i].revents != 0 {
                let n = read(c.from, &buf, buf.count)
                if n > 0 {
                    emit(filters[i].filter(buf[..<n]), to: c.to)
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    // EOF of a pipe, EIO of a pty master whose slave no one holds.
                    open[i] = false
                }
            }
        }
    }

    private func emit(_ bytes: [UInt8], to fd: Int32) {
        guard fd >= 0, !bytes.isEmpty else { return }
        writeAll(fd, Data(bytes))
    }
}
