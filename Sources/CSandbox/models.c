// Models area (integrity): what Swift's Glibc module hides because it is in
// a header it does not import (sys/vfs.h), and the mmap SIGBUS guard.
#include "csandbox.h"

#include <fcntl.h>
#include <sys/vfs.h>


long cs_models_fs_type(int fd) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    return (long)s.f_type;
}

// MARK: hashing through mmap without dying of SIGBUS
//
// Reading a page-cached model through mmap skips the kernel's copy into a
// buffer (a fifth of the CPU time of hashing). The catch: if the file is
// truncated while mapped, touching a page past the new end raises SIGBUS,
// which would kill verify-models instead of letting it report "changed while
// it was being hashed". So each hashing thread registers the range it is
// reading; the handler maps a zero page over a faulting page inside that
// range and raises a flag (the digest is then garbage, and the caller reports
// the file as changed). A SIGBUS anywhere else gets the previous handler back
// and faults again under it, as if we had never been here.
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static struct sigaction cs_models_old_bus;
static __thread char *cs_models_lo, *cs_models_hi;
static __thread volatile sig_atomic_t cs_models_faulted;
static long cs_models_page;

static void cs_models_bus(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    char *a = (char *)si->si_addr;
    if (cs_models_lo && a >= cs_models_lo && a < cs_models_hi) {
        char *page = (char *)((uintptr_t)a & ~(uintptr_t)(cs_models_page - 1));
        void *r = mmap(page, (size_t)cs_models_page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (r != MAP_FAILED) {
            cs_models_faulted = 1;
            return;
        }
    }
    sigaction(SIGBUS, &cs_models_old_bus, NULL);
}

// Installed exactly once, whichever hashing thread gets here first: with a
// plain flag two threads could both install, and the second would save our
// own handler as the "previous" one, so a foreign SIGBUS would loop forever
// instead of reaching the real previous disposition.
static pthread_once_t cs_models_once = PTHREAD_ONCE_INIT;
static int cs_models_install_result = -1;

static void cs_models_install(void) {
    cs_models_page = sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = cs_models_bus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    cs_models_install_result = sigaction(SIGBUS, &sa, &cs_models_old_bus) == 0 ? 0 : -1;
}

int cs_models_sigbus_guard_install(void) {
    pthread_once(&cs_models_once, cs_models_install);
    return cs_models_install_result;
}

void cs_models_guard_begin(const void *base, size_t len) {
    cs_models_faulted = 0;
    cs_models_lo = (char *)base;
    cs_models_hi = (char *)base + len;
}

int cs_models_guard_end(void) {
    cs_models_lo = cs_models_hi = NULL;
    return cs_models_faulted;
}
