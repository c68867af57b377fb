/*
 * test_backoff — unit tests for src/util/backoff: the delays of the three
 * retry loops that use it (draw, api, store writer), the cap, and the
 * edges (no base, huge attempt counts, a cap below the base).
 */
#include <criterion/criterion.h>

#include "util/backoff.h"

#include <limits.h>

Test(backoff, doubles_from_base)
{
    /* The store writer: 100 ms doubling to 2 s. */
    const long store[] = {100, 200, 400, 800, 1600, 2000, 2000};
    for (int i = 0; i < 7; i++)
        cr_assert_eq(backoff_delay_ms(100, 2000, i + 1), store[i], "failure %d", i + 1);
    /* The api client's defaults: 200 ms doubling to 5 s. */
    const long api[] = {200, 400, 800, 1600, 3200, 5000, 5000};
    for (int i = 0; i < 7; i++)
        cr_assert_eq(backoff_delay_ms(200, 5000, i + 1), api[i], "failure %d", i + 1);
}

Test(backoff, edges)
{
    cr_assert_eq(backoff_delay_ms(0, 2000, 3), 0, "no base, no wait");
    cr_assert_eq(backoff_delay_ms(-5, 2000, 3), 0);
    cr_assert_eq(backoff_delay_ms(100, 2000, 0), 100, "before any failure: the base");
    cr_assert_eq(backoff_delay_ms(100, 2000, -7), 100);
    cr_assert_eq(backoff_delay_ms(3000, 2000, 1), 2000, "a base over the cap is capped");
    cr_assert_eq(backoff_delay_ms(1000, 2000, 2), 2000, "reaching the cap exactly");
    cr_assert_eq(backoff_delay_ms(1, LONG_MAX, 63), LONG_MAX / 2 + 1, "2^62, not yet capped");
    cr_assert_eq(backoff_delay_ms(1, LONG_MAX, INT_MAX), LONG_MAX, "no overflow near LONG_MAX");
    cr_assert_eq(backoff_delay_ms(LONG_MAX / 2 + 1, LONG_MAX, 2), LONG_MAX);
    cr_assert_eq(backoff_delay_ms(100, 30000, INT_MAX), 30000);
}
