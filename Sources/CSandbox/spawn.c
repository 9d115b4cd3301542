// The privilege drop: one ordered sequence between the child's creation and
// execve(2).
//
// The parent (Swift, possibly multithreaded) prepares everything that may
// allocate or take locks: the argv/envp arrays, the seccomp BPF program, the
// Landlock ruleset fd, the network namespace fd. The child below then makes
// only raw system calls, which are async-signal-safe, and never returns into
// Swift. Each step says why it sits where it does.
//
// The child is created vfork-style (CLONE_VM | CLONE_VFORK), as posix_spawn
// does: it runs in our address space, on a stack of its own, while the
// calling thread waits for its execve or _exit. A fork(2) of this 45 MB,
// multithreaded process copies its page tables and leaves every page it
// writes afterwards to a copy-on-write fault, about a millisecond per
// spawn, paid by `run` and by every git process update-nodes starts. Sharing
// memory is safe only because the child writes none of it: no malloc, no
// stdio, no locks, nothing but its own stack and the kernel's per-task state
// (credentials, signal dispositions, fds are its own: no CLONE_SIGHAND, no
// CLONE_FILES).
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static const char *const step_names[] = {
    [CS_STEP_NONE] = "none",
    [CS_STEP_FORK] = "fork",
    [CS_STEP_SIGNALS] = "reset signals",
    [CS_STEP_SETSID] = "setsid",
    [CS_STEP_PDEATHSIG] = "PR_SET_PDEATHSIG",
    [CS_STEP_SETNS] = "setns(network)",
    [CS_STEP_STDIO] = "dup2 stdio",
    [CS_STEP_CTTY] = "TIOCSCTTY",
    [CS_STEP_PASS_FDS] = "pass fds",
    [CS_STEP_CLOSE_FDS] = "close other fds",
    [CS_STEP_CHDIR] = "chdir",
    [CS_STEP_RLIMITS] = "setrlimit",
    [CS_STEP_DUMPABLE] = "PR_SET_DUMPABLE",
    [CS_STEP_SECUREBITS] = "PR_SET_SECUREBITS",
    [CS_STEP_BOUNDING_SET] = "PR_CAPBSET_DROP",
    [CS_STEP_SETGROUPS] = "setgroups",
    [CS_STEP_SETRESGID] = "setresgid",
    [CS_STEP_SETRESUID] = "setresuid",
    [CS_STEP_CAPSET] = "capset",
    [CS_STEP_AMBIENT] = "PR_CAP_AMBIENT_CLEAR_ALL",
    [CS_STEP_VERIFY] = "verify identity",
    [CS_STEP_NO_NEW_PRIVS] = "PR_SET_NO_NEW_PRIVS",
    [CS_STEP_LANDLOCK] = "landlock_restrict_self",
    [CS_STEP_SECCOMP] = "seccomp(SET_MODE_FILTER)",
    [CS_STEP_EXEC] = "execve",
    [CS_STEP_NAMESPACES] = "clone(new mount, PID, IPC, UTS, cgroup namespaces)",
    [CS_STEP_ROOT] = "building the root (mounts, pivot_root)",
    [CS_STEP_ROOT_RULES] = "Landlock rules inside the root",
};

const char *cs_spawn_step_name(int step) {
    if (step < 0 || step > CS_STEP_ROOT_RULES) return "unknown";
    return step_names[step];
}

struct failure { int step; int err; int op; };

static int failed_op = -1;   // the root op that failed (init only)

static void fail(int fd, int step) {
    struct failure f = { step, errno, failed_op };
    ssize_t n;
    do { n = write(fd, &f, sizeof f); } while (n < 0 && errno == EINTR);
    _exit(127);
}

// Moves `fd` out of the way of the low numbers we are about to fill, keeping
// it open across the dup2s. F_DUPFD_CLOEXEC picks the lowest free fd >= min.
static int lift(int fd, int min) {
    if (fd < 0) return fd;
    return fcntl(fd, F_DUPFD_CLOEXEC, min);
}

// Every handler back to the default: the parent's are inherited and would
// run on memory the child may share with it.
static void default_handlers(void) {
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        (void)sigaction(sig, &sa, NULL);   // fails harmlessly for glibc-reserved signals
    }
}

__attribute__((noreturn))
static void child(const cs_spawn_spec *s, int report) {
    // 1. Signals: a clean slate. The parent's handlers are inherited (and
    //    would run on our shared memory), so every signal arrives blocked
    //    (see cs_spawn_confined) until each handler is back to default here;
    //    execve resets handlers but not the mask or ignored dispositions,
    //    and ComfyUI must see SIGTERM/SIGINT normally.
    sigset_t none;
    sigemptyset(&none);
    default_handlers();
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) fail(report, CS_STEP_SIGNALS);

    // 2. New session: the child loses the caller's controlling terminal, so it
    //    cannot push keystrokes into it (TIOCSTI is also refused by seccomp).
    //    An interactive `run` or `shell` gets a pty of its own instead (5b).
    if (s->new_session && setsid() < 0) fail(report, CS_STEP_SETSID);

    // 3. Die with the launcher: see step 12b. Noted here, set there.
    pid_t launcher = getppid();

    // 4. Network namespace: must happen while we still hold CAP_SYS_ADMIN.
    if (s->netns_fd >= 0 && syscall(SYS_setns, s->netns_fd, CLONE_NEWNET) != 0)
        fail(report, CS_STEP_SETNS);
    //    Or a namespace of its own, made here: when nothing else (no relay)
    //    has to join it, this spares the launcher a helper process.
    if (s->netns_fd < 0 && s->new_loopback_netns && (unshare(CLONE_NEWNET) != 0 || cs_loopback_up() != 0))
        fail(report, CS_STEP_SETNS);

    // 5. File descriptors. First lift every fd we must keep above the range
    //    we will fill (stdio and pass_fds), so a dup2 cannot clobber another.
    int top = 3 + (s->n_pass_fds > 0 ? s->n_pass_fds : 0) + 8;
    int in = lift(s->stdin_fd, top), out = lift(s->stdout_fd, top), err = lift(s->stderr_fd, top);
    if ((s->stdin_fd >= 0 && in < 0) || (s->stdout_fd >= 0 && out < 0) || (s->stderr_fd >= 0 && err < 0))
        fail(report, CS_STEP_STDIO);
    int lifted[64];
    int npass = s->n_pass_fds > 64 ? 64 : s->n_pass_fds;
    for (int i = 0; i < npass; i++) {
        lifted[i] = lift(s->pass_fds[i], top);
        if (lifted[i] < 0) fail(report, CS_STEP_PASS_FDS);
    }
    if ((in >= 0 && dup2(in, 0) < 0) || (out >= 0 && dup2(out, 1) < 0) || (err >= 0 && dup2(err, 2) < 0))
        fail(report, CS_STEP_STDIO);
    for (int i = 0; i < npass; i++)
        if (dup2(lifted[i], 3 + i) < 0) fail(report, CS_STEP_PASS_FDS);   // dup2 clears CLOEXEC
    // 5b. The session's own terminal: stdin is the slave of a pty the
    //     launcher made for this run and relays to the operator's terminal.
    //     A session leader without one (step 2) takes it with TIOCSCTTY, so
    //     job control, Ctrl-C and termios changes stay inside that pty.
    if (s->controlling_tty && ioctl(0, TIOCSCTTY, 0) != 0) fail(report, CS_STEP_CTTY);
    //    Everything else is marked close-on-exec rather than closed now: the
    //    Landlock ruleset fd and the failure pipe must live until execve, and
    //    execve then closes them all at once. The sandbox starts with 0-2 and
    //    the passed fds only; nothing of the launcher's leaks in.
    if (cs_close_range(3 + npass, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        // Pre-5.11 kernel: set the flag one fd at a time.
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = 3 + npass; fd < max; fd++) {
            int fl = fcntl(fd, F_GETFD);
            if (fl >= 0) (void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        }
    }

    // 6. Working directory, resolved while still root (the sandbox user may
    //    not be able to traverse its parents; that is fine once we are inside).
    if (s->cwd && chdir(s->cwd) != 0) fail(report, CS_STEP_CHDIR);

    // 7. Resource limits, before the uid change so hard limits can be raised
    //    to the configured value while we are still privileged.
    for (int i = 0; i < s->n_rlimits; i++) {
        struct rlimit rl = { (rlim_t)s->rlimits[i].soft, (rlim_t)s->rlimits[i].hard };
        if (setrlimit(s->rlimits[i].resource, &rl) != 0) fail(report, CS_STEP_RLIMITS);
    }
    if (s->umask_value >= 0) umask((mode_t)s->umask_value);

    if (s->drop_privileges) {
        // 8a. Not dumpable: from setresuid on, this task runs as the sandbox
        //     user in the launcher's address space (shared, see the top of
        //     the file). A same-uid process must not ptrace it or open its
        //     /proc/PID/mem meanwhile and write into root's memory. The kernel
        //     clears dumpable on the uid change only when fs.suid_dumpable is
        //     0; say it ourselves. The flag belongs to the shared mm, so the
        //     launcher is non-dumpable too (no core dump of a root process, no
        //     loss); execve gives the program a fresh, normally dumpable mm.
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail(report, CS_STEP_DUMPABLE);

        // 8. Securebits, locked: uid 0 regains nothing through execve of a
        //    setuid-root binary (NOROOT), and no one may raise ambient caps.
        //    Needs CAP_SETPCAP, so before the bounding set loses it. We leave
        //    NO_SETUID_FIXUP unset so that setresuid below clears caps.
        int bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
                   SECBIT_NO_SETUID_FIXUP_LOCKED |
                   SECBIT_KEEP_CAPS_LOCKED |
                   SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
        if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0) fail(report, CS_STEP_SECUREBITS);

        // 9. Bounding set: every capability the kernel knows, not just the
        //    low 32. Needs CAP_SETPCAP, so before setresuid.
        int last = cs_cap_last_cap();
        for (int cap = 0; cap <= last; cap++)
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
                fail(report, CS_STEP_BOUNDING_SET);

        // 10. Groups then gid then uid: setgroups and setresgid need
        //     CAP_SETGID, which setresuid takes away. Raw syscalls, because
        //     glibc's wrappers try to signal sibling threads that a forked
        //     child does not have.
        if (syscall(SYS_setgroups, (size_t)s->n_groups, s->groups) != 0) fail(report, CS_STEP_SETGROUPS);
        if (syscall(SYS_setresgid, s->gid, s->gid, s->gid) != 0) fail(report, CS_STEP_SETRESGID);
        if (syscall(SYS_setresuid, s->uid, s->uid, s->uid) != 0) fail(report, CS_STEP_SETRESUID);

        // 11. Leaving uid 0 cleared permitted and effective; inheritable
        //     survives it, so zero all three explicitly, then ambient.
        cs_capsets zero = { 0, 0, 0 };
        if (cs_capset_self(&zero) != 0) fail(report, CS_STEP_CAPSET);
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
            fail(report, CS_STEP_AMBIENT);

        // 12. Trust, but verify: no way back to root, no capability left.
        uid_t ru, eu, su;
        gid_t rg, eg, sg;
        cs_capsets now;
        if (syscall(SYS_getresuid, &ru, &eu, &su) != 0 || syscall(SYS_getresgid, &rg, &eg, &sg) != 0 ||
            ru != s->uid || eu != s->uid || su != s->uid || rg != s->gid || eg != s->gid || sg != s->gid ||
            cs_capget_self(&now) != 0 || now.effective || now.permitted || now.inheritable) {
            errno = EPERM;
            fail(report, CS_STEP_VERIFY);
        }
        if (s->uid != 0 && syscall(SYS_setresuid, 0, 0, 0) == 0) {
            errno = EPERM;
            fail(report, CS_STEP_VERIFY);
        }
    }

    // 12b. Die with the launcher, so a killed launcher leaves no orphan.
    //     Only now: the kernel clears the parent-death signal whenever the
    //     euid, egid, fsuid or fsgid change (commit_creds), so set before
    //     step 10 it would silently be gone. If the launcher died before
    //     this point the signal will never come: then do not start at all.
    if (s->die_with_parent) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(report, CS_STEP_PDEATHSIG);
        if (getppid() != launcher) {
            errno = ESRCH;
            fail(report, CS_STEP_PDEATHSIG);
        }
    }

    // 13. no_new_privs: execve can never grant privileges again (setuid bits,
    //     file capabilities). Landlock and an unprivileged seccomp need it.
    if (s->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(report, CS_STEP_NO_NEW_PRIVS);

    // 14. Landlock: the ruleset was built by the parent, from fds it opened.
    if (s->landlock_ruleset_fd >= 0 && cs_landlock_restrict_self(s->landlock_ruleset_fd) != 0)
        fail(report, CS_STEP_LANDLOCK);

    // 15. Seccomp last, so every step above could still use the syscalls the
    //     filter refuses (setns, prctl, setgroups...). The filter allows
    //     execve and the few calls between here and it.
    if (s->seccomp_filter) {
        struct sock_fprog prog = { s->seccomp_len, (struct sock_filter *)s->seccomp_filter };
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) fail(report, CS_STEP_SECCOMP);
    }

    // 16. Become the program. On success the failure pipe closes (CLOEXEC)
    //     and the parent reads EOF.
    execve(s->path, s->argv, s->envp);
    fail(report, CS_STEP_EXEC);
    _exit(127);
}

struct child_args { const cs_spawn_spec *spec; int report; };

static int child_entry(void *p) {
    const struct child_args *a = p;
    child(a->spec, a->report);
}

// The init of a constructed root (spec->root): PID 1 of new mount, PID, IPC,
// UTS and cgroup namespaces, forked (not vforked: it outlives the
// launcher's wait for an execve) from the launcher as root.
__attribute__((noreturn))
static void init_child(const cs_spawn_spec *s, int report) {
    // 1. Default handlers, every signal blocked: the init takes them with
    //    sigwaitinfo (a PID 1 gets no signal it has no handler for, unless
    //    it is blocked and waited for: then it is queued).
    sigset_t all;
    sigfillset(&all);
    default_handlers();
    if (sigprocmask(SIG_SETMASK, &all, NULL) != 0) fail(report, CS_STEP_SIGNALS);
    // 2. Die with the launcher, first: when the launcher is killed (SIGKILL
    //    included) the init dies, and with PID 1 the kernel kills every
    //    process of the namespace. Still root here, so nothing clears it.
    //    (getppid() is 0 for a PID 1: the launcher is outside the namespace;
    //    it is blocked reading the report pipe until our program runs.)
    if (s->die_with_parent && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(report, CS_STEP_PDEATHSIG);
    // 2b. Into the session's cgroup (its limits), then a cgroup namespace
    //     whose root it is: the sandbox sees only its own cgroup. In this
    //     order: a process may only move between cgroups its namespace sees.
    //     On cgroup v2 the init was born there (CLONE_INTO_CGROUP) and
    //     n_cgroup_procs is 0; on v1 it moves itself, one hierarchy at a time.
    for (int i = 0; i < s->n_cgroup_procs; i++) {
        ssize_t w;
        do { w = write(s->cgroup_procs[i], "0\n", 2); } while (w < 0 && errno == EINTR);
        if (w != 2) fail(report, CS_STEP_NAMESPACES);
    }
    if (unshare(CLONE_NEWCGROUP) != 0) fail(report, CS_STEP_NAMESPACES);
    // 3. New session: no controlling terminal for anything inside.
    if (s->new_session && setsid() < 0) fail(report, CS_STEP_SETSID);
    // 4. Network, while we hold CAP_SYS_ADMIN (the program inherits it).
    if (s->netns_fd >= 0 && syscall(SYS_setns, s->netns_fd, CLONE_NEWNET) != 0) fail(report, CS_STEP_SETNS);
    if (s->netns_fd < 0 && s->new_loopback_netns && (unshare(CLONE_NEWNET) != 0 || cs_loopback_up() != 0))
        fail(report, CS_STEP_SETNS);
    // 5. A host name of its own (UTS namespace): the host's is not its business.
    if (s->root->hostname && sethostname(s->root->hostname, strlen(s->root->hostname)) != 0) fail(report, CS_STEP_NAMESPACES);
    // 6. The root (root.c), then pivot into it.
    if (cs_build_root(s->root, &failed_op) != 0) fail(report, CS_STEP_ROOT);
    failed_op = -1;
    // 7. Landlock rules for what exists only in here (the private tmpfs,
    //    the fresh /proc): added to the ruleset the launcher built, which the
    //    program enforces on itself.
    if (s->landlock_ruleset_fd >= 0) {
        for (int i = 0; i < s->root->n_rules; i++) {
            int fd = open(s->root->rules[i].path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) { failed_op = i; fail(report, CS_STEP_ROOT_RULES); }
            if (cs_landlock_add_path_rule(s->landlock_ruleset_fd, fd, s->root->rules[i].access) != 0) {
                failed_op = i;
                fail(report, CS_STEP_ROOT_RULES);
            }
            close(fd);
        }
    }
    // 8. The program, PID 2: the same drop as without a root (child()), in
    //    the namespaces we are now in. vfork-style again: this copy of the
    //    launcher's memory is ours alone.
    cs_spawn_spec prog = *s;
    prog.netns_fd = -1;
    prog.new_loopback_netns = 0;
    // A session of its own, always: the kernel lets a process send SIGCONT
    // to anything in its session whatever the uid, and the init (root) must
    // not be reachable so; a pty also needs a session leader (step 5b).
    prog.new_session = 1;
    prog.root = NULL;
    const size_t stack_size = 256 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) fail(report, CS_STEP_FORK);
    struct child_args args = { &prog, report };
    pid_t pid = clone(child_entry, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
    if (pid < 0) fail(report, CS_STEP_FORK);
    // 9. The init holds nothing of the launcher's: every fd goes (the report
    //    pipe too, so the launcher reads EOF now that the program runs, or
    //    the failure the program wrote).
    if (cs_close_range(0, ~0U, 0) != 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = 0; fd < max; fd++) close(fd);
    }
    cs_init_loop(pid);
}

static int init_entry(void *p) {
    const struct child_args *a = p;
    init_child(a->spec, a->report);
}

pid_t cs_spawn_confined(const cs_spawn_spec *spec, int *fail_step, int *fail_errno, int *fail_op) {
    *fail_step = CS_STEP_NONE;
    *fail_errno = 0;
    *fail_op = -1;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        *fail_step = CS_STEP_FORK;
        *fail_errno = errno;
        return -1;
    }
    // The child's own stack: it must not run on this thread's, whose frames
    // we return through. 256 KiB is far more than child() needs.
    const size_t stack_size = 256 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        *fail_step = CS_STEP_FORK;
        *fail_errno = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    // Every signal blocked across the clone: a handler of ours must not run
    // in the child, on memory it shares with us, before child() has reset
    // them all. The child inherits this mask; we restore ours right after.
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    struct child_args args = { spec, pipefd[1] };
    // Without a root: the program itself, vfork-style; returns once it has
    // called execve (or _exited after a failure). With one: the init, forked
    // into its new namespaces (on its own copy of `stack`); the pipe below
    // then says when the program has called execve.
    const unsigned long root_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    pid_t pid = -1;
    int cgroup_procs_fd = -1;
    cs_spawn_spec with_procs;
    if (spec->root && spec->cgroup_dir_fd >= 0) {
        // cgroup v2: the init is born in the session's cgroup. Writing to
        // cgroup.procs instead would take the kernel's cgroup_threadgroup_rwsem
        // for writing, which waits for an RCU grace period (milliseconds,
        // paid by every `run`), and leaves a moment in which the init is
        // outside its limits. clone3 without CLONE_VM returns twice, like
        // fork: the child runs on its copy of this stack.
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = root_flags | CLONE_INTO_CGROUP;
        ca.exit_signal = SIGCHLD;
        ca.cgroup = (unsigned long long)spec->cgroup_dir_fd;
        pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
        if (pid == 0) init_child(spec, pipefd[1]);
        if (pid < 0 && (errno == ENOSYS || errno == EINVAL || errno == E2BIG)) {
            // Before 5.7 (no CLONE_INTO_CGROUP) or a seccomp filter of ours
            // (clone3 is refused with ENOSYS): the init moves itself in.
            cgroup_procs_fd = openat(spec->cgroup_dir_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
            if (cgroup_procs_fd >= 0) {
                with_procs = *spec;
                with_procs.cgroup_procs = &cgroup_procs_fd;
                with_procs.n_cgroup_procs = 1;
                args.spec = &with_procs;
                pid = clone(init_entry, (char *)stack + stack_size, root_flags | SIGCHLD, &args);
            }
        }
    } else if (spec->root) {
        pid = clone(init_entry, (char *)stack + stack_size, root_flags | SIGCHLD, &args);
    } else {
        pid = clone(child_entry, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
    }
    int clone_errno = errno;
    if (cgroup_procs_fd >= 0) close(cgroup_procs_fd);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    munmap(stack, stack_size);
    errno = clone_errno;
    if (pid < 0) {
        *fail_step = spec->root ? CS_STEP_NAMESPACES : CS_STEP_FORK;
        *fail_errno = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    close(pipefd[1]);
    struct failure f;
    ssize_t n;
    do { n = read(pipefd[0], &f, sizeof f); } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == (ssize_t)sizeof f) {
        int status;
        cs_wait(pid, &status);
        *fail_step = f.step;
        *fail_errno = f.err;
        *fail_op = f.op;
        errno = f.err;
        return -1;
    }
    return pid;
}
