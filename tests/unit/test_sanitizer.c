/*
 * test_sanitizer — proves that the unit-asan suite can fail: a use after
 * free must end its test with SIGABRT (ASAN_OPTIONS abort_on_error=1,
 * set by tests/run.py). Criterion 2.4.1 counts a test that ASan ends with
 * _exit(1) as passed, so without that option every memory error in a unit
 * test would pass silently; this test then fails, because the signal it
 * expects never comes. (A use after free, because UBSan, which reports on
 * its own and is counted, sees nothing wrong with it.) Skipped, and
 * reported as skipped, without ASan.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdlib.h>

#include "torture.h"

#ifdef TEST_LSAN
Test(sanitizer, use_after_free_fails_the_test, .signal = SIGABRT)
{
    volatile char *volatile p = malloc(4);
    free((void *)p);
    p[0] = 1;
}
#else
Test(sanitizer, use_after_free_fails_the_test) { cr_skip_test("not an ASan build"); }
#endif
