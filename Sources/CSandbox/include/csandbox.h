// CSandbox: the C seam of comfy-sandbox.
//
// Why each of these exists instead of a Swift call:
//  - prctl(2), ioctl(2) and syscall(2) are variadic; Swift cannot call
//    variadic C. What Swift needs of them gets one fixed-arity function.
//  - glibc has no wrappers for openat2, fchmodat2, landlock_*, and its
//    setresuid/setgroups broadcast to every thread (the "setxid" dance), which
//    is wrong in a freshly forked child: the drop (spawn.c) makes the raw
//    syscalls itself, and nothing else here changes identity.
//  - capget/capset need the v3 (64-bit) structures; libcap works, but the
//    forked child must not call into a library that may allocate.
//  - The privilege drop itself (cs_spawn_confined) runs between fork and
//    execve. Swift may have started threads (Dispatch, the concurrency pool),
//    so after fork only async-signal-safe work is allowed: that is C.
// Only what Swift, or another file of this seam, calls is declared here; a
// shim nobody calls is deleted.
#pragma once

#include <stdint.h>
#include <sys/types.h>
#include <pthread.h>
#include <linux/filter.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: capabilities, all 64 bits of each set (v3 ABI).
typedef struct {
    uint64_t effective;
    uint64_t permitted;
    uint64_t inheritable;
} cs_capsets;
int cs_capget_self(cs_capsets *out);
int cs_capset_self(const cs_capsets *in);
/// The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap).
int cs_cap_last_cap(void);

// MARK: file system
/// openat2(2). `resolve` takes RESOLVE_* flags.
int cs_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
/// fchmodat2(2) (Linux 6.6+); returns -1/ENOSYS on older kernels.
int cs_fchmodat2(int dirfd, const char *path, mode_t mode, int flags);
/// Sets the mode of the inode `fd` holds, O_PATH fds included: fchmodat2(fd,
/// "", AT_EMPTY_PATH) on Linux 6.6+, else chmod of /proc/self/fd/N (systemd's
/// fchmod_opath; ENOENT there means /proc is not mounted). A symlink is
/// refused (ELOOP) rather than followed.
int cs_fchmod_fd(int fd, mode_t mode);
/// 1 when the kernel has fchmodat2 (6.6+) / openat2 (5.6+), else 0.
int cs_fchmodat2_available(void);
int cs_openat2_available(void);
int cs_close_range(unsigned int first, unsigned int last, unsigned int flags);
/// pipe2(fds, O_CLOEXEC): glibc declares pipe2 only under _GNU_SOURCE.
int cs_pipe_cloexec(int fds[2]);

/// O_PATH and AT_EMPTY_PATH: glibc declares them only under _GNU_SOURCE,
/// which Swift's Glibc module does not define.
extern const int CS_O_PATH;
extern const int CS_AT_EMPTY_PATH;
extern const uint64_t CS_RESOLVE_NO_XDEV;
extern const uint64_t CS_RESOLVE_NO_MAGICLINKS;
extern const uint64_t CS_RESOLVE_NO_SYMLINKS;
extern const uint64_t CS_RESOLVE_BENEATH;
extern const uint64_t CS_RESOLVE_IN_ROOT;

// MARK: Landlock (raw syscalls, glibc has none)
/// The ABI version the kernel enforces, 0 when Landlock is off or absent.
int cs_landlock_abi(void);
int cs_landlock_create_ruleset(uint64_t handled_fs, uint64_t handled_net, uint64_t scoped);
int cs_landlock_add_path_rule(int ruleset_fd, int parent_fd, uint64_t allowed_access);
int cs_landlock_add_net_port_rule(int ruleset_fd, uint64_t port, uint64_t allowed_access);
int cs_landlock_restrict_self(int ruleset_fd);

// MARK: network namespace
/// Creates a new network namespace with only `lo`, brought up. Returns an
/// O_CLOEXEC fd referring to it (setns-able), or -1 with errno.
int cs_new_loopback_netns(void);
/// Moves the calling thread into a new network namespace with only `lo` up
/// and returns an fd for it (-1 and errno on failure). For a thread that
/// ends right after; the caller needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
int cs_loopback_netns_here(void);
/// Limits a new thread's attributes to the CPUs the caller may run on other
/// than the one it runs on now (no change when that is the only one): a new
/// thread is otherwise queued on its creator's CPU until the creator's slice
/// ends or the balancer moves it, up to milliseconds later. 0 when set.
int cs_thread_attr_away_from_here(pthread_attr_t *attr);
/// A TCP socket listening on 127.0.0.1:`port` inside the network namespace
/// `netns_fd` (close-on-exec; -1 and errno on failure). Made on a thread of
/// its own that joins the namespace and ends: a socket keeps the namespace it
/// was made in, so the launcher (root, in the host's) can hand it to the
/// egress proxy, which serves it from the host's side. Needs CAP_SYS_ADMIN.
int cs_listen_in_netns(int netns_fd, uint16_t port);

// MARK: the constructed root (Sources/CSandbox/root.c)
/// open_tree(dirfd, path, OPEN_TREE_CLONE|AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW
/// [|AT_RECURSIVE]): a detached copy of the mount(s) at path, as an fd.
int cs_open_tree_clone(int dirfd, const char *path, int recursive);
/// mount_setattr(fd, "", AT_EMPTY_PATH|AT_RECURSIVE, {set, clear}).
int cs_mount_setattr_tree(int fd, uint64_t set, uint64_t clear);
extern const uint64_t CS_MOUNT_ATTR_RDONLY;
extern const uint64_t CS_MOUNT_ATTR_NOSUID;
extern const uint64_t CS_MOUNT_ATTR_NODEV;
extern const uint64_t CS_MOUNT_ATTR_NOEXEC;

/// One step of building the root; `target` is absolute inside the new root.
typedef enum {
    CS_OP_DIR = 1,       // a directory (mode, and owner when uid != -1)
    CS_OP_FILE,          // a new file holding data/data_len (mode)
    CS_OP_SYMLINK,       // target -> data
    CS_OP_TREE,          // attach the detached tree `fd` (a file bind when is_file)
    CS_OP_TMPFS,         // tmpfs, mount flags `flags`, options in data ("size=...,mode=...")
    CS_OP_PROC,          // a proc of the new PID namespace
    CS_OP_CGROUP2,       // cgroup2 of the new cgroup namespace
    CS_OP_READONLY,      // bind target onto itself read-only (nosuid, nodev, noexec)
    CS_OP_WRITE,         // write data into an existing file (a sysctl); `optional`: absent is fine
} cs_op_kind;

typedef struct {
    int kind;
    const char *target;
    int fd;
    int is_file;
    const char *data;
    size_t data_len;
    unsigned long flags;
    uid_t uid;
    gid_t gid;
    mode_t mode;
    int optional;
} cs_mount_op;

/// A Landlock rule for a path that exists only inside the new root (a
/// tmpfs, the fresh /proc): added to the ruleset by the init.
typedef struct {
    const char *path;
    uint64_t access;
} cs_inside_rule;

typedef struct {
    const char *base;              // an existing host directory to build on (in our private namespace)
    const cs_mount_op *ops;
    int n_ops;
    const cs_inside_rule *rules;
    int n_rules;
    const char *hostname;
} cs_root_spec;

/// In the init child: builds the root and pivots into it. -1 and errno (and
/// *failed_op, the op's index, or -1 before or after the ops) on failure.
int cs_build_root(const cs_root_spec *spec, int *failed_op);
/// The init's loop (never returns): forwards signals to `program`, reaps,
/// exits with the program's status (128+N when a signal N ended it).
void cs_init_loop(pid_t program) __attribute__((noreturn));

// MARK: the confined spawn
typedef struct {
    int resource;      // RLIMIT_*
    uint64_t soft;
    uint64_t hard;
} cs_rlimit;

typedef struct {
    const char *path;              // absolute path of the program
    char *const *argv;             // NULL-terminated
    char *const *envp;             // NULL-terminated; the complete environment
    const char *cwd;               // NULL: keep
    int stdin_fd, stdout_fd, stderr_fd;   // -1: inherit the parent's 0/1/2
    const int *pass_fds;           // become fds 3, 4, ... in the child
    int n_pass_fds;
    int new_session;               // setsid(): no controlling terminal
    int die_with_parent;           // PR_SET_PDEATHSIG(SIGKILL)
    int netns_fd;                  // -1: stay in the caller's network namespace
    const cs_rlimit *rlimits;
    int n_rlimits;
    int umask_value;               // -1: keep
    int drop_privileges;           // 0: stay root (only for root-side helpers)
    uid_t uid;
    gid_t gid;
    const gid_t *groups;           // supplementary groups, exactly these
    int n_groups;
    int no_new_privs;
    int landlock_ruleset_fd;       // -1: none
    const struct sock_filter *seccomp_filter;   // NULL: none
    unsigned short seccomp_len;
    int new_loopback_netns;        // unshare(CLONE_NEWNET) + lo up in the child (when netns_fd is -1)
    const cs_root_spec *root;      // NULL: the host's file system; else new mount, PID, IPC, UTS and
                                   // cgroup namespaces, this root, and an init as PID 1
    const int *cgroup_procs;       // with root, cgroup v1: cgroup.procs files the init moves itself into first
    int n_cgroup_procs;
    int cgroup_dir_fd;             // with root, cgroup v2: the session cgroup's directory, which the init
                                   // is born in (clone3 CLONE_INTO_CGROUP); -1: none
    int controlling_tty;           // make the new stdin (a pty slave) the controlling terminal; needs new_session
} cs_spawn_spec;

/// The steps of the drop, reported when one fails.
typedef enum {
    CS_STEP_NONE = 0,
    CS_STEP_FORK,
    CS_STEP_SIGNALS,
    CS_STEP_SETSID,
    CS_STEP_PDEATHSIG,
    CS_STEP_SETNS,
    CS_STEP_STDIO,
    CS_STEP_CTTY,
    CS_STEP_PASS_FDS,
    CS_STEP_CLOSE_FDS,
    CS_STEP_CHDIR,
    CS_STEP_RLIMITS,
    CS_STEP_DUMPABLE,
    CS_STEP_SECUREBITS,
    CS_STEP_BOUNDING_SET,
    CS_STEP_SETGROUPS,
    CS_STEP_SETRESGID,
    CS_STEP_SETRESUID,
    CS_STEP_CAPSET,
    CS_STEP_AMBIENT,
    CS_STEP_VERIFY,
    CS_STEP_NO_NEW_PRIVS,
    CS_STEP_LANDLOCK,
    CS_STEP_SECCOMP,
    CS_STEP_EXEC,
    CS_STEP_NAMESPACES,
    CS_STEP_ROOT,
    CS_STEP_ROOT_RULES,
} cs_spawn_step;

const char *cs_spawn_step_name(int step);

/// fork(2)s and, in the child, applies the spec in the documented order, then
/// execve(2)s. Returns the child's pid (with `root`, the init's: PID 1 of the
/// new namespaces, which exits with the program's status). When any step fails the child reports
/// (step, errno) over a close-on-exec pipe and exits 127; this function then
/// reaps it and returns -1 with *fail_step and *fail_errno set (and
/// *fail_op, the root op that failed, or -1).
pid_t cs_spawn_confined(const cs_spawn_spec *spec, int *fail_step, int *fail_errno, int *fail_op);

/// Like waitpid(pid, &status, 0), retrying EINTR. Returns the raw status.
int cs_wait(pid_t pid, int *status);
int cs_wexitstatus(int status);
int cs_wifsignaled(int status);
int cs_wtermsig(int status);

/// ioctl(fd, TIOCSTI, &c): used by check-sandbox to prove it is refused.
int cs_ioctl_tiocsti(int fd, char c);
/// A raw syscall with up to six arguments (check-sandbox attacks).
long cs_syscall6(long nr, long a, long b, long c, long d, long e, long f);
/// The x32 ABI bit, for check-sandbox.
extern const long CS_X32_SYSCALL_BIT;


// MARK: launcher area (Sources/CSandbox/launcher.c)
/// memfd_create(name, MFD_CLOEXEC): where the seccomp BPF is exported to.
int cs_memfd(const char *name);
/// Runs syscall(nr, a..f) in a forked child (for calls that may kill the
/// caller). Returns the raw wait status; *out_errno is the call's errno or 0
/// (-1 when the child died before reporting).
int cs_probe_syscall_in_child(long nr, long a, long b, long c, long d, long e, long f, int *out_errno);
/// clone(flags|SIGCHLD); the child exits at once. 0 when it worked.
int cs_clone_probe(unsigned long flags, int *out_errno);
/// Blocks `sigs` in the calling thread / waits for one of them.
int cs_block_signals(const int *sigs, int n);
int cs_sigwait_launcher(const int *sigs, int n, int *out_sig);
/// waitpid(pid, status, WNOHANG): the pid when it exited, 0 when still running.
int cs_waitpid_nohang(pid_t pid, int *status);
/// PR_SET_CHILD_SUBREAPER: whatever a confined child leaves behind (a
/// double-forked, setsid'd process) is reparented to this process instead of
/// init, so the launcher can still find and end it.
int cs_become_subreaper(void);
/// waitpid(-1, status, WNOHANG): a child that ended, 0 when none has, -1
/// with ECHILD when there are no children at all.
int cs_wait_any_nohang(int *status);
/// SIGKILLs every process below this one (subreaper: every descendant is a
/// child sooner or later) and reaps it, until none is left. Returns how many
/// it killed. Only for when the session is over.
int cs_kill_descendants(void);
/// Up to `max` live children of `parent`, from /proc; -1 without /proc.
int cs_list_children(pid_t parent, pid_t *out, int max);
/// SIGKILLs the live children of another process `parent`, each through a
/// pidfd after checking it is still that parent's child (no pid reuse race).
/// Returns how many were signalled, 0 when none, -1 without /proc.
int cs_kill_children_of(pid_t parent);
/// SIGKILLs and reaps this process's children that run as `uid`, except
/// `keep`, round after round (their own children come to us as they die,
/// when we are a subreaper) until none is left. For a process that runs
/// other children at the same time: it ends one confined run's orphans
/// without touching the rest. Returns how many it signalled.
int cs_end_orphans_of_uid(uid_t uid, const pid_t *keep, int n_keep);
/// check-sandbox: a child touching `bytes` of memory; its raw wait status.
int cs_probe_memory_hog(uint64_t bytes);
/// check-sandbox: memfd_create + write `elf` + fexecve in a child; 0 when it
/// ran, -errno of the refused step.
int cs_probe_memfd_exec(const void *elf, size_t len);
/// check-sandbox: `path argv` double-forked into a session of its own.
int cs_spawn_detached(const char *path, char *const argv[]);
/// accept4(fd, NULL, NULL, SOCK_CLOEXEC).
int cs_accept_cloexec(int fd);
/// Forks a child that makes getpid through the i386 ABI (int 0x80); returns its raw wait status.
int cs_probe_int80_getpid(void);
/// Relays two connected sockets both ways with splice(2) until both
/// directions reached EOF (half-closes passed on), or, once one has, the
/// other is quiet for `linger_ms`. 0, or -1 on an error.
int cs_relay_splice(int a, int b, int linger_ms);
/// cs_relay_splice with an idle limit (`idle_ms`, -1: none: while both
/// directions are open, no byte for that long ends it, returning 1) and the
/// bytes delivered each way (either pointer may be NULL). The egress proxy's
/// tunnels: it logs how much went each way.
int cs_relay_splice_counted(int a, int b, int idle_ms, int linger_ms, int64_t *a_to_b, int64_t *b_to_a);
/// Moves bytes one way with splice(2): `limit` of them (-1: until `from`
/// ends). Returns 0 when done (*moved says how many went; fewer than `limit`
/// when `from` ended first), 1 when `watch` (-1: none) showed one of
/// `watch_events` or an error/hang-up first (the caller looks at it), -1
/// with errno on an error, ETIMEDOUT after `idle_ms` (-1: never) without an event.
int cs_relay_one_way(int from, int to, int64_t limit, int idle_ms, int watch, short watch_events, int64_t *moved);
/// Who is at the other end of a TCP connection accepted on this host: the
/// uid owning the socket whose source is `conn_fd`'s peer and whose
/// destination is `conn_fd`'s own address, found by an exact inet_diag
/// request (SOCK_DIAG_BY_FAMILY) on `diag_fd`. That socket lives in the
/// network namespace the connection came in on (the host's), and a
/// NETLINK_SOCK_DIAG socket only sees sockets of the namespace it was opened
/// in: so `diag_fd` is opened there (by the launcher, or systemd's
/// ListenNetlink=) and passed to the relay, which runs in the sandbox's. No
/// privilege is needed for the lookup. 0 and *uid set, or -1 with errno
/// (ENOENT: no such socket here, a peer on another machine or one that has
/// already gone).
int cs_tcp_peer_uid(int diag_fd, int conn_fd, uint32_t *uid);
/// POLLRDHUP (the peer shut down its sending side): _GNU_SOURCE-only in poll.h.
extern const short CS_POLLRDHUP;
/// socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_SOCK_DIAG).
int cs_sock_diag_socket(void);
/// getsockopt SO_DOMAIN / SO_PROTOCOL: which passed fd is which (socket activation).
int cs_socket_domain(int fd);
int cs_socket_protocol(int fd);
/// Brings `lo` up in the calling task's network namespace.
int cs_loopback_up(void);
// MARK: terminal (Sources/CSandbox/terminal.c): `run` and `shell` give the
// sandbox a pty of its own, never the operator's terminal. ioctl(2) is
// variadic, and posix_openpt/TIOCGPTPEER are _XOPEN/_GNU-only in glibc's headers.
/// A new pseudo-terminal pair: *master and *slave, both close-on-exec and
/// O_NOCTTY (the launcher must not take it as its own controlling terminal).
/// The slave is opened through the master (TIOCGPTPEER), not by a path name
/// in /dev/pts; ptsname_r and open where the kernel predates it (4.13).
int cs_open_pty(int *master, int *slave);
/// Gives `to` the window size of `from` (TIOCGWINSZ, TIOCSWINSZ). On a pty
/// master this also sends SIGWINCH to the slave's foreground process group.
int cs_tty_copy_winsize(int from, int to);
// MARK: models area (Integrity): statfs lives in a header Swift's Glibc does not import.
/// fstatfs(fd).f_type (the file system's magic number), or -1 with errno set.
long cs_models_fs_type(int fd);
/// A SIGBUS handler (installed once) that, for an address inside the calling
/// thread's guarded range, maps a zero page there and records the fault: a
/// file truncated under an mmap read is then reported, not a crash.
int cs_models_sigbus_guard_install(void);
void cs_models_guard_begin(const void *base, size_t len);
/// Ends the guarded range; 1 when a SIGBUS hit it (the file shrank).
int cs_models_guard_end(void);

#ifdef __cplusplus
}
#endif
