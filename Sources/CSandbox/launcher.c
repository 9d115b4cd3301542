// Helpers for the launcher area: things Swift cannot call directly (variadic
// syscall, function-like macros, fork-then-syscall probes) or must not do
// itself (fork without exec in a possibly multithreaded process).
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int cs_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int cs_probe_syscall_in_child(long nr, long a, long b, long c, long d, long e, long f, int *out_errno) {
    // A syscall that may kill the caller (seccomp KILL_PROCESS) or change it
    // for good runs in a throwaway child: only raw calls between fork and _exit.
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) { close(pfd[0]); close(pfd[1]); return -1; }
    if (pid == 0) {
        long r = syscall(nr, a, b, c, d, e, f);
        int err = r < 0 ? errno : 0;
        (void)!write(pfd[1], &err, sizeof err);
        _exit(r < 0 ? 1 : 0);
    }
    close(pfd[1]);
    int err = -1;
    ssize_t n;
    do { n = read(pfd[0], &err, sizeof err); } while (n < 0 && errno == EINTR);
    close(pfd[0]);
    if (n != (ssize_t)sizeof err) err = -1;
    *out_errno = err;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

int cs_clone_probe(unsigned long flags, int *out_errno) {
    // clone(2) with exactly `flags` (plus SIGCHLD); the child exits at once.
    long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r < 0) { *out_errno = errno; return -1; }
    int status;
    while (waitpid((pid_t)r, &status, 0) < 0 && errno == EINTR) {}
    *out_errno = 0;
    return 0;
}

int cs_sigwait_launcher(const int *sigs, int n, int *out_sig) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++) sigaddset(&set, sigs[i]);
    return sigwait(&set, out_sig);
}

int cs_block_signals(const int *sigs, int n) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++) sigaddset(&set, sigs[i]);
    return pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int cs_waitpid_nohang(pid_t pid, int *status) {
    pid_t r;
    do { r = waitpid(pid, status, WNOHANG); } while (r < 0 && errno == EINTR);
    return (int)r;
}

// O_PATH and accept4 are _GNU_SOURCE-only in glibc's headers, which Swift's
// Glibc module does not see.
int cs_accept_cloexec(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

int cs_probe_int80_getpid(void) {
    // The i386 ABI from a 64-bit process: `int 0x80` with eax = 20 (getpid
    // there). The seccomp filter sees AUDIT_ARCH_I386 and must kill; a kernel
    // without IA32 emulation answers SIGSEGV. Either way: not a syscall.
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
#if defined(__x86_64__)
        long ret;
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "rcx", "r11");
        _exit(ret > 0 ? 0 : 1);
#else
        _exit(3);
#endif
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

// MARK: relay

#include <poll.h>

// One direction of a relayed connection: bytes from `from` to `to` through a
// pipe with splice(2), so they never cross into user space.
struct half {
    int from, to;
    int pipe_r, pipe_w;
    size_t pending;   // bytes sitting in the pipe
    int reading;      // `from` has not reached EOF yet
    int64_t moved;    // bytes delivered to `to`
};

static int half_step(struct half *h, short from_rev, short to_rev) {
    if (h->reading && (from_rev & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = splice(h->from, NULL, h->pipe_w, NULL, 1 << 20, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) h->pending += (size_t)n;
        else if (n == 0) h->reading = 0;
        else if (errno != EAGAIN && errno != EINTR) return -1;
    }
    if (h->pending && (to_rev & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = splice(h->pipe_r, NULL, h->to, NULL, h->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) { h->pending -= (size_t)n; h->moved += n; }
        else if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
    }
    return 0;
}

int cs_relay_splice(int a, int b, int linger_ms) {
    return cs_relay_splice_counted(a, b, -1, linger_ms, NULL, NULL);
}

int cs_relay_splice_counted(int a, int b, int idle_ms, int linger_ms, int64_t *a_to_b, int64_t *b_to_a) {
    int p1[2], p2[2];
    if (pipe2(p1, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    if (pipe2(p2, O_CLOEXEC | O_NONBLOCK) != 0) { close(p1[0]); close(p1[1]); return -1; }
    (void)fcntl(p1[1], F_SETPIPE_SZ, 1 << 20);
    (void)fcntl(p2[1], F_SETPIPE_SZ, 1 << 20);
    // Non-blocking sockets: a full receiver on one side must never stall
    // the other direction (a WebSocket talks both ways at once).
    (void)fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK);
    (void)fcntl(b, F_SETFL, fcntl(b, F_GETFL) | O_NONBLOCK);
    struct half ab = { a, b, p1[0], p1[1], 0, 1, 0 }, ba = { b, a, p2[0], p2[1], 0, 1, 0 };
    int shut_b = 0, shut_a = 0, rc = 0;
    const size_t cap = 1 << 20;
    while (ab.reading || ab.pending || ba.reading || ba.pending) {
        struct pollfd fds[2] = {
            { a, (short)((ab.reading && ab.pending < cap ? POLLIN : 0) | (ba.pending ? POLLOUT : 0)), 0 },
            { b, (short)((ba.reading && ba.pending < cap ? POLLIN : 0) | (ab.pending ? POLLOUT : 0)), 0 },
        };
        // Once one side has finished sending, the other has `linger_ms` of
        // quiet before the relay gives up on it: a peer that never closes
        // must not hold the connection (and its thread) for ever.
        int half_closed = (!ab.reading && !ab.pending) || (!ba.reading && !ba.pending);
        int n = poll(fds, 2, half_closed ? linger_ms : idle_ms);
        if (n == 0) { rc = half_closed ? 0 : 1; break; }
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = -1;
            break;
        }
        if (half_step(&ab, fds[0].revents, fds[1].revents) != 0 || half_step(&ba, fds[1].revents, fds[0].revents) != 0) {
            rc = -1;
            break;
        }
        // A side that finished sending: pass the half-close on once drained.
        if (!ab.reading && !ab.pending && !shut_b) { shutdown(b, SHUT_WR); shut_b = 1; }
        if (!ba.reading && !ba.pending && !shut_a) { shutdown(a, SHUT_WR); shut_a = 1; }
        // Both peers gone: stop even if a pipe still holds bytes no one can take.
        if ((fds[0].revents & (POLLERR)) || (fds[1].revents & (POLLERR))) {
            if (!ab.reading && !ba.reading) break;
        }
    }
    int saved = errno;
    close(p1[0]); close(p1[1]); close(p2[0]); close(p2[1]);
    if (a_to_b) *a_to_b = ab.moved;
    if (b_to_a) *b_to_a = ba.moved;
    errno = saved;
    return rc;
}

int cs_relay_one_way(int from, int to, int64_t limit, int idle_ms, int watch, short watch_events, int64_t *moved) {
    *moved = 0;
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    (void)fcntl(from, F_SETFL, fcntl(from, F_GETFL) | O_NONBLOCK);
    (void)fcntl(to, F_SETFL, fcntl(to, F_GETFL) | O_NONBLOCK);
    const size_t cap = 1 << 20;
    size_t pending = 0;
    int reading = limit != 0, rc = 0;
    int64_t left = limit;
    while (reading || pending) {
        struct pollfd fds[3] = {
            { from, (short)(reading && pending < cap ? POLLIN : 0), 0 },
            { to, (short)(pending ? POLLOUT : 0), 0 },
            { watch, watch_events, 0 },
        };
        int n = poll(fds, watch >= 0 ? 3 : 2, idle_ms);
        if (n == 0) { errno = ETIMEDOUT; rc = -1; break; }
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = -1;
            break;
        }
        if (watch >= 0 && fds[2].revents) { rc = 1; break; }
        if (reading && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            size_t want = cap - pending;
            if (left >= 0 && (int64_t)want > left) want = (size_t)left;
            ssize_t r = splice(from, NULL, p[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (r > 0) {
                pending += (size_t)r;
                if (left >= 0) { left -= r; if (left == 0) reading = 0; }
            } else if (r == 0) {
                reading = 0;
            } else if (errno != EAGAIN && errno != EINTR) {
                rc = -1;
                break;
            }
        }
        if (pending && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = splice(p[0], NULL, to, NULL, pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (w > 0) {
                pending -= (size_t)w;
                *moved += w;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                rc = -1;
                break;
            }
        }
    }
    int saved = errno;
    close(p[0]);
    close(p[1]);
    errno = saved;
    return rc;
}

// MARK: the peer's owner (inet_diag)

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>

int cs_tcp_peer_uid(int diag_fd, int conn_fd, uint32_t *uid) {
    struct sockaddr_storage local, peer;
    socklen_t llen = sizeof local, plen = sizeof peer;
    if (getsockname(conn_fd, (struct sockaddr *)&local, &llen) != 0) return -1;
    if (getpeername(conn_fd, (struct sockaddr *)&peer, &plen) != 0) return -1;
    if (local.ss_family != peer.ss_family || (local.ss_family != AF_INET && local.ss_family != AF_INET6)) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    // The client's socket: its source is our peer, its destination is us.
    // An exact lookup (no NLM_F_DUMP): the kernel finds that one socket by
    // its 4-tuple, as it routes a packet, and answers with its owner.
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg;
    memset(&msg, 0, sizeof msg);
    static __thread uint32_t seq;
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.nlh.nlmsg_seq = ++seq;
    msg.req.sdiag_family = (uint8_t)local.ss_family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0U;
    msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (local.ss_family == AF_INET) {
        struct sockaddr_in *l = (struct sockaddr_in *)&local, *p = (struct sockaddr_in *)&peer;
        msg.req.id.idiag_sport = p->sin_port;
        msg.req.id.idiag_dport = l->sin_port;
        memcpy(msg.req.id.idiag_src, &p->sin_addr, 4);
        memcpy(msg.req.id.idiag_dst, &l->sin_addr, 4);
    } else {
        struct sockaddr_in6 *l = (struct sockaddr_in6 *)&local, *p = (struct sockaddr_in6 *)&peer;
        msg.req.id.idiag_sport = p->sin6_port;
        msg.req.id.idiag_dport = l->sin6_port;
        memcpy(msg.req.id.idiag_src, &p->sin6_addr, 16);
        memcpy(msg.req.id.idiag_dst, &l->sin6_addr, 16);
    }
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    ssize_t n;
    do {
        n = sendto(diag_fd, &msg, sizeof msg, 0, (struct sockaddr *)&kernel, sizeof kernel);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    // The kernel answers an exact request before sendto returns, so the
    // answer is read at once; the poll only guards against a socket that
    // somehow has nothing to read yet.
    long buf[2048];
    for (;;) {
        do { n = recv(diag_fd, buf, sizeof buf, MSG_DONTWAIT); } while (n < 0 && errno == EINTR);
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = { diag_fd, POLLIN, 0 };
            int r = poll(&pfd, 1, 1000);
            if (r == 0) { errno = ETIMEDOUT; return -1; }
            if (r < 0 && errno != EINTR) return -1;
            continue;
        }
        if (n < 0) return -1;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != msg.nlh.nlmsg_seq) continue;   // an answer to an earlier question
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                errno = e->error ? -e->error : ENOENT;
                return -1;
            }
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) continue;
            struct inet_diag_msg *m = NLMSG_DATA(h);
            if (m->id.idiag_sport != msg.req.id.idiag_sport || m->id.idiag_dport != msg.req.id.idiag_dport) continue;
            *uid = m->idiag_uid;
            return 0;
        }
    }
}

const short CS_POLLRDHUP = POLLRDHUP;

int cs_sock_diag_socket(void) {
    return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
}

int cs_socket_domain(int fd) {
    int domain = -1;
    socklen_t len = sizeof domain;
    return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 ? domain : -1;
}

int cs_socket_protocol(int fd) {
    int protocol = -1;
    socklen_t len = sizeof protocol;
    return getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 ? protocol : -1;
}

#include <net/if.h>

int cs_loopback_up(void) {
    // Only raw calls: this runs in the forked child of cs_spawn_confined.
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(s);
    errno = saved;
    return rc;
}

// MARK: a listening socket in another network namespace

struct netns_listen { int netns_fd; uint16_t port; int fd; int err; };

static void *listen_in_netns_thread(void *p) {
    struct netns_listen *l = p;
    // setns(CLONE_NEWNET) moves only this thread, which ends right after:
    // the launcher's other threads stay in the host's namespace.
    if (setns(l->netns_fd, CLONE_NEWNET) != 0) { l->err = errno; return NULL; }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { l->err = errno; return NULL; }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(l->port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 128) != 0) {
        l->err = errno;
        close(fd);
        return NULL;
    }
    l->fd = fd;
    return NULL;
}

int cs_listen_in_netns(int netns_fd, uint16_t port) {
    struct netns_listen l = { netns_fd, port, -1, 0 };
    pthread_t t;
    int rc = pthread_create(&t, NULL, listen_in_netns_thread, &l);
    if (rc != 0) { errno = rc; return -1; }
    pthread_join(t, NULL);
    if (l.fd < 0) errno = l.err ? l.err : EIO;
    return l.fd;
}

// MARK: descendants

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>

int cs_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int cs_wait_any_nohang(int *status) {
    pid_t r;
    do { r = waitpid(-1, status, WNOHANG); } while (r < 0 && errno == EINTR);
    return (int)r;
}

// A child found in /proc: its pid, real uid, and whether it has already
// exited (a zombie, to be reaped rather than killed).
struct child { pid_t pid; long uid; int zombie; };

// Children of `parent`, from /proc/PID/status (State, PPid, Uid). Not
// /proc/PID/task/*/children: that needs CONFIG_PROC_CHILDREN. Not the owner
// of /proc/PID for the uid: that turns to root when a process makes itself
// non-dumpable. The callers scan only when a child is known to be left, so
// never on a clean exit.
static int scan_children(pid_t parent, struct child *out, int max) {
    DIR *d = opendir("/proc");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) continue;
        char path[64], buf[2048];
        snprintf(path, sizeof path, "/proc/%ld/status", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0) continue;
        buf[len] = '\0';
        // The Name line comes first and is escaped by the kernel, so a
        // process name cannot fake the lines looked for here.
        char *sp = strstr(buf, "\nState:\t"), *pp = strstr(buf, "\nPPid:"), *up = strstr(buf, "\nUid:");
        if (!sp || !pp || !up || strtol(pp + 6, NULL, 10) != parent) continue;
        out[n].pid = (pid_t)pid;
        out[n].uid = strtol(up + 5, NULL, 10);
        out[n].zombie = sp[8] == 'Z' || sp[8] == 'X';
        n++;
    }
    closedir(d);
    return n;
}

int cs_list_children(pid_t parent, pid_t *out, int max) {
    struct child found[512];
    int n = scan_children(parent, found, max < 512 ? max : 512), live = 0;
    for (int i = 0; i < n; i++)
        if (!found[i].zombie) out[live++] = found[i].pid;
    return n < 0 ? -1 : live;
}

int cs_kill_descendants(void) {
    int killed = 0, unseen = 0;
    for (;;) {
        // Reap what has already ended; stop when no child is left at all.
        int status;
        pid_t r;
        while ((r = (pid_t)cs_wait_any_nohang(&status)) > 0) {}
        if (r < 0) return killed;   // ECHILD
        // Live children remain: kill them all, then wait for each. Their own
        // children are reparented to us as they die and are found next round.
        // PIDs from the scan cannot be reused under us: a child's pid stays
        // ours until we reap it.
        pid_t kids[512];
        int n = cs_list_children(getpid(), kids, 512);
        if (n <= 0) {
            // A child between dying and being reapable, or one just being
            // reparented: look again shortly. Without /proc (n < 0), or after
            // a second of not finding it, give up rather than hang the
            // launcher; the caller says what it could not stop.
            if (n < 0 || ++unseen > 1000) return killed;
            usleep(1000);
            continue;
        }
        for (int i = 0; i < n; i++)
            if (kill(kids[i], SIGKILL) == 0) killed++;
        for (int i = 0; i < n; i++)
            while (waitpid(kids[i], &status, 0) < 0 && errno == EINTR) {}
    }
}

int cs_end_orphans_of_uid(uid_t uid, const pid_t *keep, int n_keep) {
    int killed = 0;
    for (int round = 0; round < 1000; round++) {
        // Zombies included, so that they are reaped.
        struct child kids[512];
        int found = scan_children(getpid(), kids, 512), n = 0;
        for (int i = 0; i < found; i++) {
            int kept = kids[i].uid != (long)uid;
            for (int j = 0; j < n_keep; j++) kept |= kids[i].pid == keep[j];
            if (!kept) kids[n++] = kids[i];
        }
        if (n <= 0) return killed;
        // A zombie is only reaped; a live one is killed first. Its children
        // come to us as it dies, and to the next round.
        for (int i = 0; i < n; i++)
            if (!kids[i].zombie && kill(kids[i].pid, SIGKILL) == 0) killed++;
        for (int i = 0; i < n; i++) {
            int status;
            while (waitpid(kids[i].pid, &status, 0) < 0 && errno == EINTR) {}
        }
    }
    return killed;
}

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

int cs_kill_children_of(pid_t parent) {
    // For a process that is not the parent (stop): between listing a child
    // and signalling it, the parent may reap it and its pid be reused. So
    // pin the process with a pidfd, check it is still `parent`'s child, and
    // signal through the pidfd: if the listed process is gone, the signal
    // goes nowhere (ESRCH) instead of to whoever has the number now.
    pid_t kids[512];
    int n = cs_list_children(parent, kids, 512), killed = 0;
    for (int i = 0; i < n; i++) {
        int pidfd = (int)syscall(SYS_pidfd_open, kids[i], 0);
        if (pidfd < 0) {
            if (errno == ENOSYS && kill(kids[i], SIGKILL) == 0) killed++;
            continue;
        }
        pid_t again[512];
        int m = cs_list_children(parent, again, 512), still = 0;
        for (int j = 0; j < m; j++) still |= again[j] == kids[i];
        if (still && syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) == 0) killed++;
        close(pidfd);
    }
    return n < 0 ? -1 : killed;
}

int cs_probe_memory_hog(uint64_t bytes) {
    // A child that touches `bytes` of anonymous memory, 16 MiB at a time:
    // under the session's memory limit the kernel must kill it (SIGKILL).
    pid_t p = fork();
    if (p < 0) return -1;
    if (p == 0) {
        const size_t chunk = (size_t)16 << 20;
        for (uint64_t done = 0; done < bytes; done += chunk) {
            char *m = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) _exit(2);
            for (size_t i = 0; i < chunk; i += 4096) m[i] = 1;
        }
        _exit(0);
    }
    int status = 0;
    while (waitpid(p, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

int cs_probe_memfd_exec(const void *elf, size_t len) {
    // memfd_create (asking for MFD_EXEC where the kernel knows it), the
    // program written in, fexecve. 0 when it ran; -errno of the step that
    // was refused.
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) return -errno;
    pid_t p = fork();
    if (p < 0) { int e = errno; close(pfd[0]); close(pfd[1]); return -e; }
    if (p == 0) {
        close(pfd[0]);
        int fd = (int)syscall(SYS_memfd_create, "cs-check", 1U /* MFD_CLOEXEC */ | 0x10U /* MFD_EXEC */);
        if (fd < 0 && errno == EINVAL) fd = (int)syscall(SYS_memfd_create, "cs-check", 1U);
        int e = errno;
        if (fd >= 0) {
            const char *b = elf;
            size_t left = len;
            while (left > 0) { ssize_t w = write(fd, b, left); if (w <= 0) break; b += w; left -= (size_t)w; }
            char *const argv[] = { "true", NULL };
            char *const envp[] = { NULL };
            syscall(SYS_execveat, fd, "", argv, envp, 0x1000 /* AT_EMPTY_PATH */);
            e = errno;
        }
        (void)!write(pfd[1], &e, sizeof e);
        _exit(127);
    }
    close(pfd[1]);
    int e = 0;
    ssize_t n;
    do { n = read(pfd[0], &e, sizeof e); } while (n < 0 && errno == EINTR);
    close(pfd[0]);
    int status = 0;
    while (waitpid(p, &status, 0) < 0 && errno == EINTR) {}
    if (n == (ssize_t)sizeof e) return -(e ? e : EACCES);
    return (WIFEXITED(status) && WEXITSTATUS(status) == 0) ? 0 : -EACCES;
}

int cs_spawn_detached(const char *path, char *const argv[]) {
    // fork, setsid, fork again, the middle exits: nobody's child, in a
    // session of its own (what a hostile node does to outlive ComfyUI).
    pid_t mid = fork();
    if (mid < 0) return -1;
    if (mid == 0) {
        setsid();
        if (fork() == 0) {
            int null = open("/dev/null", O_RDWR);
            if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }
            char *const envp[] = { "PATH=/usr/bin:/bin", NULL };
            execve(path, argv, envp);
            _exit(127);
        }
        _exit(0);
    }
    int status;
    while (waitpid(mid, &status, 0) < 0 && errno == EINTR) {}
    return 0;
}
