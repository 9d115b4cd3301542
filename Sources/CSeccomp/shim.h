#pragma once
#include <seccomp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/audit.h>

// Function-like macros Swift cannot import.
static inline uint32_t cs_scmp_act_errno(uint16_t e) { return SCMP_ACT_ERRNO(e); }
static inline uint32_t cs_scmp_act_trace(uint16_t m) { return SCMP_ACT_TRACE(m); }
static inline struct scmp_arg_cmp cs_scmp_arg(unsigned int arg, enum scmp_compare op,
                                              scmp_datum_t a, scmp_datum_t b) {
    struct scmp_arg_cmp c = { arg, op, a, b };
    return c;
}
