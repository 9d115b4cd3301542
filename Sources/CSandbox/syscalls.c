// Thin fixed-arity wrappers over system calls Swift cannot reach directly.
// See csandbox.h for why each exists.
#include "csandbox.h"

#include <pthread.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <linux/openat2.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif
#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif

const int CS_O_PATH = O_PATH;
const int CS_AT_EMPTY_PATH = AT_EMPTY_PATH;
const uint64_t CS_RESOLVE_NO_XDEV = RESOLVE_NO_XDEV;
const uint64_t CS_RESOLVE_NO_MAGICLINKS = RESOLVE_NO_MAGICLINKS;
const uint64_t CS_RESOLVE_NO_SYMLINKS = RESOLVE_NO_SYMLINKS;
const uint64_t CS_RESOLVE_BENEATH = RESOLVE_BENEATH;
const uint64_t CS_RESOLVE_IN_ROOT = RESOLVE_IN_ROOT;
const long CS_X32_SYSCALL_BIT = __X32_SYSCALL_BIT;

// MARK: capabilities

int cs_capget_self(cs_capsets *out) {
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capget, &h, d) != 0) return -1;
    out->effective = (uint64_t)d[0].effective | ((uint64_t)d[1].effective << 32);
    out->permitted = (uint64_t)d[0].permitted | ((uint64_t)d[1].permitted << 32);
    out->inheritable = (uint64_t)d[0].inheritable | ((uint64_t)d[1].inheritable << 32);
    return 0;
}

int cs_capset_self(const cs_capsets *in) {
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    d[0].effective = (uint32_t)in->effective;
    d[1].effective = (uint32_t)(in->effective >> 32);
    d[0].permitted = (uint32_t)in->permitted;
    d[1].permitted = (uint32_t)(in->permitted >> 32);
    d[0].inheritable = (uint32_t)in->inheritable;
    d[1].inheritable = (uint32_t)(in->inheritable >> 32);
    return (int)syscall(SYS_capset, &h, d);
}

int cs_cap_last_cap(void) {
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return CAP_LAST_CAP;
    char buf[16] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return CAP_LAST_CAP;
    int v = atoi(buf);
    return v > 0 ? v : CAP_LAST_CAP;
}

// MARK: file system

int cs_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    long r;
    do {
        r = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    } while (r < 0 && errno == EINTR);
    return (int)r;
}

int cs_fchmodat2(int dirfd, const char *path, mode_t mode, int flags) {
    return (int)syscall(SYS_fchmodat2, dirfd, path, mode, flags);
}

// Set once fchmodat2 answered ENOSYS: the kernel will not grow it while we run.
static int fchmodat2_missing;

int cs_fchmod_fd(int fd, mode_t mode) {
    // 1. fchmodat2(fd, "", mode, AT_EMPTY_PATH) (Linux 6.6+) works on any
    //    descriptor, O_PATH ones included.
    if (!__atomic_load_n(&fchmodat2_missing, __ATOMIC_RELAXED)) {
        if (cs_fchmodat2(fd, "", mode, AT_EMPTY_PATH) == 0) return 0;
        // EPERM too: some container managers refuse calls they do not know with it.
        if (errno != ENOSYS && errno != EPERM && errno != EINVAL) return -1;
        if (errno == ENOSYS) __atomic_store_n(&fchmodat2_missing, 1, __ATOMIC_RELAXED);
    }
    // 2. Older kernels (systemd's fchmod_opath): fchmod refuses an O_PATH fd
    //    (EBADF), but chmod of /proc/self/fd/N reaches exactly the inode the
    //    fd holds, whatever happened to its name. chmod follows a symlink,
    //    and an O_PATH|O_NOFOLLOW fd may be one: never for a link.
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    if (S_ISLNK(st.st_mode)) { errno = ELOOP; return -1; }
    char path[32];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return chmod(path, mode);
}

int cs_fchmodat2_available(void) {
    if (__atomic_load_n(&fchmodat2_missing, __ATOMIC_RELAXED)) return 0;
    // An invalid flag: EINVAL from a kernel that has the call, ENOSYS otherwise.
    if (cs_fchmodat2(AT_FDCWD, "/", 0, -1) == 0) return 1;
    return errno != ENOSYS;
}

int cs_openat2_available(void) {
    int fd = cs_openat2(AT_FDCWD, "/", O_PATH | O_CLOEXEC, 0, 0);
    if (fd >= 0) { close(fd); return 1; }
    return errno != ENOSYS;
}

int cs_close_range(unsigned int first, unsigned int last, unsigned int flags) {
    return (int)syscall(SYS_close_range, first, last, flags);
}

int cs_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

// MARK: Landlock

int cs_landlock_abi(void) {
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : (int)v;
}

int cs_landlock_create_ruleset(uint64_t handled_fs, uint64_t handled_net, uint64_t scoped) {
    // The attr struct grew with each ABI; pass only as much as is needed so an
    // older kernel does not see (and reject) fields it does not know.
    struct {
        uint64_t handled_access_fs;
        uint64_t handled_access_net;
        uint64_t scoped;
    } attr = { handled_fs, handled_net, scoped };
    size_t size = scoped ? 24 : (handled_net ? 16 : 8);
    long fd = syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (fd >= 0) fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    return (int)fd;
}

int cs_landlock_add_path_rule(int ruleset_fd, int parent_fd, uint64_t allowed_access) {
    struct landlock_path_beneath_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.allowed_access = allowed_access;
    attr.parent_fd = parent_fd;
    return (int)syscall(SYS_landlock_add_rule, ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, &attr, 0);
}

int cs_landlock_add_net_port_rule(int ruleset_fd, uint64_t port, uint64_t allowed_access) {
    struct {
        uint64_t allowed_access;
        uint64_t port;
    } attr = { allowed_access, port };
    return (int)syscall(SYS_landlock_add_rule, ruleset_fd, 2 /* LANDLOCK_RULE_NET_PORT */, &attr, 0);
}

int cs_landlock_restrict_self(int ruleset_fd) {
    return (int)syscall(SYS_landlock_restrict_self, ruleset_fd, 0);
}

// MARK: network namespace

int cs_loopback_netns_here(void) {
    // unshare affects the calling task only: in a multithreaded process this
    // moves one thread, which must do nothing with the network afterwards
    // (it is meant to end). The fd keeps the namespace alive after it does.
    if (unshare(CLONE_NEWNET) != 0 || cs_loopback_up() != 0) return -1;
    return open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
}

int cs_thread_attr_away_from_here(pthread_attr_t *attr) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int here = sched_getcpu();
    if (here < 0 || !CPU_ISSET(here, &set) || CPU_COUNT(&set) < 2) return -1;
    CPU_CLR(here, &set);
    return pthread_attr_setaffinity_np(attr, sizeof set, &set) == 0 ? 0 : -1;
}

int cs_new_loopback_netns(void) {
    // A short-lived child makes the namespace (unshare affects only the
    // calling task, and our process may be multithreaded); we open its
    // /proc/PID/ns/net, which keeps the namespace alive after the child exits.
    int ready[2], hold[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return -1;
    if (pipe2(hold, O_CLOEXEC) != 0) { close(ready[0]); close(ready[1]); return -1; }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(ready[0]); close(ready[1]); close(hold[0]); close(hold[1]);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        int err = 0;
        if (unshare(CLONE_NEWNET) != 0 || cs_loopback_up() != 0) err = errno ? errno : EIO;
        (void)!write(ready[1], &err, sizeof err);
        char c;
        (void)!read(hold[0], &c, 1);   // wait until the parent has opened our namespace
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    int err = EIO;
    ssize_t n;
    do { n = read(ready[0], &err, sizeof err); } while (n < 0 && errno == EINTR);
    close(ready[0]);
    int fd = -1;
    if (n == (ssize_t)sizeof err && err == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) err = errno;
    } else if (n != (ssize_t)sizeof err) {
        err = EIO;
    }
    close(hold[1]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (fd < 0) errno = err;
    return fd;
}

// MARK: wait

int cs_wait(pid_t pid, int *status) {
    pid_t r;
    do { r = waitpid(pid, status, 0); } while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 0;
}
int cs_wexitstatus(int status) { return WEXITSTATUS(status); }
int cs_wifsignaled(int status) { return WIFSIGNALED(status); }
int cs_wtermsig(int status) { return WTERMSIG(status); }

// MARK: check-sandbox helpers

int cs_ioctl_tiocsti(int fd, char c) { return ioctl(fd, TIOCSTI, &c); }

long cs_syscall6(long nr, long a, long b, long c, long d, long e, long f) {
    return syscall(nr, a, b, c, d, e, f);
}
