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

long cs_personality(unsigned long persona) { return syscall(SYS_personality, persona); }

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

int cs_ioctl_int(int fd, unsigned long request, long arg) { return ioctl(fd, request, arg); }

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
const int CS_O_PATH = O_PATH;
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
