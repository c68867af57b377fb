/*
 * leakcheck — per-test leak assertion for Criterion suites.
 *
 * Criterion's runner itself leaks a little at exit, so ASan unit runs use
 * LSAN_OPTIONS=exitcode=0 and the exit-time report cannot fail a test. A
 * test that allocates ends with check_leaks() instead, which runs
 * LeakSanitizer now and fails this test on any leak. No-op without ASan.
 */
#ifndef CHATD_TEST_LEAKCHECK_H
#define CHATD_TEST_LEAKCHECK_H

#include <criterion/criterion.h>

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

#endif
