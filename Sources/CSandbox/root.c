// The constructed root: the confined child's own mount, PID, IPC, UTS and
// cgroup namespaces, and a root file system made of exactly what it needs,
// built the way bubblewrap builds one (bubblewrap.c: unshare, make every
// mount a slave, a tmpfs to build on, the binds, a fresh /proc of the new
// PID namespace, a minimal /dev, private tmpfs, pivot_root, the old root
// detached), then an init that is PID 1 of the namespace.
//
// What the launcher (Swift, root, in the host's namespaces) prepares:
// every bind source as a DETACHED mount tree (open_tree(OPEN_TREE_CLONE)
// on an fd it opened with openat2(RESOLVE_NO_SYMLINKS) from "/", its
// read-only / nosuid / nodev / noexec attributes already set with
// mount_setattr), so nothing here resolves a host path the sandbox could
// have changed: a tree is attached with move_mount(2) at a target in our
// own fresh tmpfs. Detached trees are anonymous, which is what lets a
// process in another mount namespace attach them (a clone of an attached
// mount of the host's namespace would be refused there).
//
// Everything in this file runs in the init child: a fork (copy-on-write,
// not the vfork of spawn.c: the init outlives the launcher's wait for an
// execve), single-threaded, raw system calls only.
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/mount.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

int cs_open_tree_clone(int dirfd, const char *path, int recursive) {
    unsigned int flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_SYMLINK_NOFOLLOW;
    if (recursive) flags |= AT_RECURSIVE;
    return (int)syscall(SYS_open_tree, dirfd, path, flags);
}

int cs_mount_setattr_tree(int fd, uint64_t set, uint64_t clear) {
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = set;
    attr.attr_clr = clear;
    return (int)syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
}

const uint64_t CS_MOUNT_ATTR_RDONLY = MOUNT_ATTR_RDONLY;
const uint64_t CS_MOUNT_ATTR_NOSUID = MOUNT_ATTR_NOSUID;
const uint64_t CS_MOUNT_ATTR_NODEV = MOUNT_ATTR_NODEV;
const uint64_t CS_MOUNT_ATTR_NOEXEC = MOUNT_ATTR_NOEXEC;

// mkdir -p of `rel` (no leading /) below dirfd, each component made 0755 and
// opened O_NOFOLLOW: only our own tmpfs and read-only binds of root-owned
// trees are on the way, but a link is still never followed.
static int open_dirs(int root, const char *rel, int create_last) {
    char buf[4096];
    size_t n = strlen(rel);
    if (n >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, rel, n + 1);
    int fd = fcntl(root, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return -1;
    char *p = buf;
    while (*p == '/') p++;
    while (*p) {
        char *slash = strchr(p, '/');
        if (slash) *slash = 0;
        if (*p && !(slash == NULL && !create_last)) {
            if (mkdirat(fd, p, 0755) != 0 && errno != EEXIST) { int e = errno; close(fd); errno = e; return -1; }
            int next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int e = errno;
            close(fd);
            if (next < 0) { errno = e; return -1; }
            fd = next;
        } else if (*p) {
            break;
        }
        if (!slash) break;
        p = slash + 1;
        while (*p == '/') p++;
    }
    return fd;
}

// The directory fd of rel's parent (made as needed) and rel's last name.
static int parent_of(int root, const char *rel, const char **name) {
    const char *last = strrchr(rel, '/');
    if (!last) { *name = rel; return fcntl(root, F_DUPFD_CLOEXEC, 0); }
    *name = last + 1;
    char buf[4096];
    size_t n = (size_t)(last - rel);
    if (n >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, rel, n);
    buf[n] = 0;
    return open_dirs(root, buf, 1);
}

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

// Bind `rel` onto itself and make that mount read-only (and nosuid, nodev,
// noexec): for paths inside a mount we made writable (/proc/sys...).
static int remount_readonly(int root, const char *rel) {
    int tree = (int)syscall(SYS_open_tree, root, rel, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW);
    if (tree < 0) return errno == ENOENT ? 0 : -1;
    int r = cs_mount_setattr_tree(tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, 0);
    if (r == 0) r = (int)syscall(SYS_move_mount, tree, "", root, rel, MOVE_MOUNT_F_EMPTY_PATH);
    int e = errno;
    close(tree);
    errno = e;
    return r;
}

static int apply(int root, const cs_mount_op *op) {
    const char *rel = op->target;
    while (*rel == '/') rel++;
    const char *name;
    int r = 0;
    switch (op->kind) {
    case CS_OP_DIR: {
        int fd = open_dirs(root, rel, 1);
        if (fd < 0) return -1;
        if (op->uid != (uid_t)-1 && fchown(fd, op->uid, op->gid) != 0) r = -1;
        if (r == 0 && fchmod(fd, op->mode) != 0) r = -1;
        int e = errno; close(fd); errno = e;
        return r;
    }
    case CS_OP_FILE: {
        int dir = parent_of(root, rel, &name);
        if (dir < 0) return -1;
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, op->mode);
        if (fd < 0) { int e = errno; close(dir); errno = e; return -1; }
        r = write_all(fd, op->data, op->data_len);
        if (r == 0) r = fchmod(fd, op->mode);
        int e = errno; close(fd); close(dir); errno = e;
        return r;
    }
    case CS_OP_SYMLINK: {
        int dir = parent_of(root, rel, &name);
        if (dir < 0) return -1;
        r = symlinkat(op->data, dir, name);
        int e = errno; close(dir); errno = e;
        return r;
    }
    case CS_OP_TREE: {
        // The mount point: an empty directory, or an empty file for a file bind.
        int dir = parent_of(root, rel, &name);
        if (dir < 0) return -1;
        if (op->is_file) {
            int fd = openat(dir, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0444);
            if (fd >= 0) close(fd);
            else if (errno != EEXIST) { int e = errno; close(dir); errno = e; return -1; }
        } else if (mkdirat(dir, name, 0755) != 0 && errno != EEXIST) {
            int e = errno; close(dir); errno = e; return -1;
        }
        r = (int)syscall(SYS_move_mount, op->fd, "", dir, name, MOVE_MOUNT_F_EMPTY_PATH);
        int e = errno; close(dir); errno = e;
        return r;
    }
    case CS_OP_TMPFS:
    case CS_OP_PROC:
    case CS_OP_CGROUP2: {
        int dir = parent_of(root, rel, &name);
        if (dir < 0) return -1;
        if (mkdirat(dir, name, 0755) != 0 && errno != EEXIST) { int e = errno; close(dir); errno = e; return -1; }
        // mount(2) wants a path: ours, through /proc/self/fd of the parent we
        // hold, so the target is exactly the directory just made.
        char target[64 + 256];
        int len = snprintf(target, sizeof target, "/proc/self/fd/%d/%s", dir, name);
        if (len < 0 || (size_t)len >= sizeof target) { close(dir); errno = ENAMETOOLONG; return -1; }
        const char *type = op->kind == CS_OP_TMPFS ? "tmpfs" : op->kind == CS_OP_PROC ? "proc" : "cgroup2";
        r = mount(type, target, type, op->flags, op->kind == CS_OP_TMPFS ? op->data : NULL);
        int e = errno; close(dir); errno = e;
        if (r == 0 && op->uid != (uid_t)-1) {
            int fd = open_dirs(root, rel, 1);
            if (fd < 0) return -1;
            if (fchown(fd, op->uid, op->gid) != 0 || fchmod(fd, op->mode) != 0) r = -1;
            e = errno; close(fd); errno = e;
        }
        return r;
    }
    case CS_OP_READONLY:
        return remount_readonly(root, rel);
    case CS_OP_WRITE: {
        // An existing file (a sysctl in our fresh /proc): written, never created.
        int dir = parent_of(root, rel, &name);
        if (dir < 0) return -1;
        int fd = openat(dir, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(dir);
        if (fd < 0) { errno = e; return (e == ENOENT && op->optional) ? 0 : -1; }
        r = write_all(fd, op->data, op->data_len);
        e = errno; close(fd); errno = e;
        return (r != 0 && op->optional) ? 0 : r;
    }
    }
    errno = EINVAL;
    return -1;
}

int cs_build_root(const cs_root_spec *spec, int *failed_op) {
    *failed_op = -1;
    // 1. Nothing mounted from here on propagates back to the host; mounts
    //    the host makes later still reach us (slave, as bubblewrap does).
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) return -1;
    // 2. A tmpfs to build the root on. Mounted over an existing directory of
    //    the host's tree in our private copy of it; the host never sees it.
    if (mount("tmpfs", spec->base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m") != 0) return -1;
    int root = open(spec->base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0) return -1;
    // 3. The operations, in order: binds, tmpfs, /proc, /dev, files.
    for (int i = 0; i < spec->n_ops; i++) {
        if (apply(root, &spec->ops[i]) != 0) {
            int e = errno;
            *failed_op = i;
            close(root);
            errno = e;
            return -1;
        }
    }
    // 4. The root becomes "/": pivot_root(".", ".") stacks the old root on
    //    top of the new one, and the lazy unmount takes it away, with every
    //    host mount under it. Nothing of the host remains but the binds.
    if (fchdir(root) != 0) { int e = errno; close(root); errno = e; return -1; }
    close(root);
    if (syscall(SYS_pivot_root, ".", ".") != 0) return -1;
    if (umount2(".", MNT_DETACH) != 0) return -1;
    if (chdir("/") != 0) return -1;
    // 5. The root tmpfs itself read-only: the sandbox gets exactly the
    //    writable mounts it was given, nothing at "/".
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0) return -1;
    return 0;
}

// The init: PID 1 of the new PID namespace. Forwards the signals the
// launcher sends (SIGTERM from stop, SIGINT, SIGHUP...) to the program,
// reaps whatever is reparented to it, and exits as soon as the program
// does, with its status; the kernel then SIGKILLs every other process of
// the namespace, whatever it did to hide (setsid, double fork, a zombie
// thread-group leader with a live thread).
__attribute__((noreturn))
void cs_init_loop(pid_t program) {
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    int code = 0;
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig < 0) continue;
        if (sig == SIGCHLD) {
            int status;
            pid_t p;
            while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
                if (p == program) {
                    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                    _exit(code);
                }
            }
            continue;
        }
        // Stop/continue signals are the kernel's to apply to us; the rest go on.
        if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) continue;
        kill(program, sig);
    }
}
