import CSandbox
import Glibc

extension ChildExit {
    /// Decodes a raw wait(2) status.
    public init(status: Int32) {
        self = cs_wifsignaled(status) != 0 ? .signaled(cs_wtermsig(status)) : .exited(cs_wexitstatus(status))
    }

    /// The child's exit if it has ended (reaped), nil while it runs.
    public static func poll(_ pid: pid_t) -> ChildExit? {
        var status: Int32 = 0
        guard cs_waitpid_nohang(pid, &status) == pid else { return nil }
        return ChildExit(status: status)
    }

    public static func wait(_ pid: pid_t) -> ChildExit {
        var status: Int32 = 0
        _ = cs_wait(pid, &status)
        return ChildExit(status: status)
    }

    /// Reaps any one child that has ended (waitpid(-1, WNOHANG)): its pid and
    /// exit, or nil when none has (or there are no children).
    public static func reapAny() -> (pid: pid_t, exit: ChildExit)? {
        var status: Int32 = 0
        let pid = cs_wait_any_nohang(&status)
        return pid > 0 ? (pid, ChildExit(status: status)) : nil
    }
}

/// The calling process's signals, children and descendants.
public enum ProcessControl {
    /// Blocks `signals` in the calling thread (threads made later inherit it).
    public static func blockSignals(_ signals: [Int32]) {
        _ = signals.withUnsafeBufferPointer { cs_block_signals($0.baseAddress, Int32($0.count)) }
    }

    /// Waits for one of the blocked `signals`; nil when interrupted otherwise.
    public static func waitSignal(_ signals: [Int32]) -> Int32? {
        var sig: Int32 = 0
        return signals.withUnsafeBufferPointer({ cs_sigwait_launcher($0.baseAddress, Int32($0.count), &sig) }) == 0 ? sig : nil
    }

    /// PR_SET_CHILD_SUBREAPER: orphans of descendants become our children.
    @discardableResult
    public static func becomeSubreaper() -> Bool { cs_become_subreaper() == 0 }

    /// SIGKILLs every process below this one and reaps it, until none is
    /// left; how many. Only for when the session is over.
    public static func killDescendants() -> Int { Int(cs_kill_descendants()) }

    /// SIGKILLs the live children of another process `parent`, each through
    /// a pidfd after checking it is still that parent's child (no pid reuse
    /// race). How many were signalled, 0 when none, -1 without /proc.
    public static func killChildren(of parent: pid_t) -> Int { Int(cs_kill_children_of(parent)) }
}
