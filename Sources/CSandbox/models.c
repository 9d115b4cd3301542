// Models area (integrity): what Swift's Glibc module hides because it is
// declared only under _GNU_SOURCE (O_PATH, AT_EMPTY_PATH) or in a header it
// does not import (sys/vfs.h).
#include "csandbox.h"

#include <fcntl.h>
#include <sys/vfs.h>

const int CS_MODELS_O_PATH = O_PATH;
const int CS_MODELS_AT_EMPTY_PATH = AT_EMPTY_PATH;

long cs_models_fs_type(int fd) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    return (long)s.f_type;
}
