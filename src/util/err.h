/*
 * err — the error-text convention shared by every module.
 *
 * Functions that can fail take (char *err, size_t errlen) and write one
 * readable line there; callers pass a stack buffer or NULL when they only
 * need the return value. Use err_set rather than snprintf(err, ...): it is
 * the one place that knows a NULL buffer means "not wanted".
 *
 * Threading: no state; safe from any thread. Ownership: err is the
 * caller's buffer; nothing is allocated.
 */
#ifndef CHATD_ERR_H
#define CHATD_ERR_H

#include <stddef.h>

/* printf into err; does nothing when err is NULL or errlen is 0. */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
