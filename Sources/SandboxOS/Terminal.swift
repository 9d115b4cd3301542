import CSandbox
import Glibc

/// pipe2(O_CLOEXEC): no end leaks into a child unless handed to it.
public func makePipe() throws(Errno) -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    guard cs_pipe_cloexec(&fds) == 0 else { throw Errno.current }
    return (fds[0], fds[1])
}

/// Pseudo-terminals for `run` and `shell`: the sandbox gets a pty of its
/// own, never the operator's terminal.
public enum Pty {
    /// A new pair, both close-on-exec and O_NOCTTY; the slave opened through
    /// the master (TIOCGPTPEER), not by a name in /dev/pts.
    public static func open() throws(Errno) -> (master: Int32, slave: Int32) {
        var m: Int32 = -1, s: Int32 = -1
        guard cs_open_pty(&m, &s) == 0 else { throw Errno.current }
        return (m, s)
    }

    /// Gives `to` the window size of `from` (on a pty master this also sends
    /// SIGWINCH to the slave's foreground process group).
    @discardableResult
    public static func copyWindowSize(from: Int32, to: Int32) -> Bool { cs_tty_copy_winsize(from, to) == 0 }
}
