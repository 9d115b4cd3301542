import CSandbox
import Glibc

/// POLLRDHUP (the peer shut down its sending side): _GNU_SOURCE-only in
/// poll.h, so Glibc's module does not have it.
public let POLLRDHUP_EVENT: Int16 = CS_POLLRDHUP

/// Moving bytes between connected sockets in the kernel, with splice(2)
/// through a pipe, never through this process's memory (the relay's and the
/// egress proxy's bodies and tunnels).
public enum Splice {
    /// How a one-way move ended.
    public enum End: Equatable, Sendable {
        /// `limit` bytes moved, or `from` ended first (fewer moved).
        case done
        /// `watch` showed one of its events, an error or a hang-up first.
        case watched
        /// `idleMS` passed without a byte.
        case idle
        case failed(Errno)
    }

    /// Moves `limit` bytes (-1: until `from` ends) from `from` to `to`,
    /// watching `watch` (-1: nothing) for `events` meanwhile; what moved.
    public static func oneWay(from: Int32, to: Int32, limit: Int64, idleMS: Int32,
                              watch: Int32 = -1, events: Int16 = 0) -> (end: End, moved: Int64) {
        var moved: Int64 = 0
        let r = cs_relay_one_way(from, to, limit, idleMS, watch, events, &moved)
        switch r {
        case 0: return (.done, moved)
        case 1: return (.watched, moved)
        default:
            let e = Errno.current
            return (e == .timedOut ? .idle : .failed(e), moved)
        }
    }

    /// Both ways until both directions ended (half-closes passed on), or,
    /// once one has, the other is quiet for `lingerMS`. nil when done; the
    /// errno otherwise (EINVAL or ENOSYS: a socket splice cannot take).
    public static func bothWays(_ a: Int32, _ b: Int32, lingerMS: Int32) -> Errno? {
        cs_relay_splice(a, b, lingerMS) == 0 ? nil : Errno.current
    }

    /// `bothWays` with an idle limit (`idleMS`, -1: none: while both
    /// directions are open, no byte for that long ends it) and the bytes
    /// delivered each way.
    public static func bothWaysCounted(_ a: Int32, _ b: Int32, idleMS: Int32, lingerMS: Int32)
        -> (idle: Bool, aToB: Int64, bToA: Int64) {
        var up: Int64 = 0, down: Int64 = 0
        let rc = cs_relay_splice_counted(a, b, idleMS, lingerMS, &up, &down)
        return (rc == 1, up, down)
    }
}

/// What a socket is and who is at its other end.
public enum SocketInfo {
    /// SO_DOMAIN (AF_INET, AF_NETLINK...): which passed fd is which.
    public static func domain(_ fd: Int32) -> Int32 { cs_socket_domain(fd) }
    /// SO_PROTOCOL.
    public static func `protocol`(_ fd: Int32) -> Int32 { cs_socket_protocol(fd) }
    public static let netlinkSockDiag: Int32 = 4

    /// socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_SOCK_DIAG), or -1.
    public static func openDiag() -> Int32 { cs_sock_diag_socket() }

    /// The uid owning the socket at the other end of the TCP connection
    /// `connection` accepted on this host, by an exact inet_diag request on
    /// `diag` (opened in the namespace the connection came in on); nil when
    /// there is no such socket here (a peer elsewhere, or gone).
    public static func peerUID(diag: Int32, connection: Int32) -> uid_t? {
        var uid: UInt32 = 0
        return cs_tcp_peer_uid(diag, connection, &uid) == 0 ? uid : nil
    }

    /// accept4(fd, NULL, NULL, SOCK_CLOEXEC).
    public static func accept(_ fd: Int32) -> Int32 { cs_accept_cloexec(fd) }
}
