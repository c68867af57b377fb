/*
 * torture — the unit tests' leak check and allocation-failure loop, written
 * once for every Criterion binary in tests/unit.
 *
 * check_leaks(): Criterion's runner itself leaks a little at exit, so ASan
 * unit runs use LSAN_OPTIONS=exitcode=0 and the exit-time report cannot
 * fail a test. A test that allocates ends with check_leaks() instead, which
 * runs LeakSanitizer now and fails this test on any leak. The check is made
 * in the test body because Criterion ignores failures in .fini. No-op
 * without ASan (TEST_LSAN is then undefined).
 *
 * torture(): SQLite's and curl's habit. An operation is run with
 * allocation N failing (util/mem's mem_fail_at) for N = 1, 2, 3, ... until
 * a run meets no injected failure. The operation returns TORTURE_OK after
 * checking that its result is right, or TORTURE_ERROR after checking that
 * it failed cleanly (it said why, it returned nothing half-built); it frees
 * everything it allocated either way. Any other result fails the test, and
 * so does an error in the run that met no injected failure, and any leak
 * (under ASan the heap is checked after every leak_every-th run and after
 * the last; LeakSanitizer scans the whole heap, so long loops check less
 * often and a leak is then named to within leak_every values of N).
 *
 * Single-threaded use only (the failure counter is process-wide); every
 * Criterion test runs in its own process, so nothing carries over.
 */
#ifndef CHATD_TEST_TORTURE_H
#define CHATD_TEST_TORTURE_H

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "util/mem.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_LSAN 1
#endif
#endif
#ifdef TEST_LSAN
#include <sanitizer/lsan_interface.h>
#endif

static inline void check_leaks(void)
{
#ifdef TEST_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked (see stderr)");
#endif
}

#define TORTURE_OK 0
#define TORTURE_ERROR (-1)

/* An operation under torture; ctx is the caller's. */
typedef int (*torture_op)(void *ctx);

/* Enough for the longest loop (a DTLS handshake through OpenSSL). */
#define TORTURE_MAX_RUNS 100000UL

/* Runs op until a run meets no injected failure; returns the number of
 * runs (1 for an operation that allocates nothing). leak_every: see above
 * (0 is taken as 1). */
static inline unsigned long torture_ex(const char *what, torture_op op, void *ctx,
                                       unsigned long leak_every)
{
    unsigned long n, errors = 0;
    if (leak_every == 0)
        leak_every = 1;
    for (n = 1; n < TORTURE_MAX_RUNS; n++) {
        unsigned long before = mem_failures();
        mem_fail_at(n);
        int rc = op(ctx);
        mem_fail_at(0);
        int injected = mem_failures() != before;
        cr_assert(rc == TORTURE_OK || rc == TORTURE_ERROR, "%s: N=%lu: result %d", what, n, rc);
        if (n % leak_every == 0 || !injected)
            check_leaks();
        if (!injected) {
            cr_assert_eq(rc, TORTURE_OK, "%s: fails with no allocation failure", what);
            break;
        }
        errors += rc != TORTURE_OK;
    }
    cr_assert_lt(n, TORTURE_MAX_RUNS, "%s: never completed", what);
    cr_log_info("%s: %lu runs, %lu ended in an error", what, n, errors);
    return n;
}

/* torture_ex with a leak check after every run. */
static inline unsigned long torture(const char *what, torture_op op, void *ctx)
{
    return torture_ex(what, op, ctx, 1);
}

#endif
