/*
 * test_draw — unit tests for src/chat/draw: the user draw is uniform over
 * all N + 1 outcomes (k = N, the missing user, included), the waits double
 * up to their cap, and the retry/fatal state machine counts attempts as
 * the SPEC says. Seeds are fixed, so the statistics cannot flake.
 */
#include <criterion/criterion.h>

#include "chat/draw.h"
#include "util/rng.h"

#include "torture.h"

Test(draw, pick_uniform_including_n)
{
    rng *r = rng_new(20261124);
    int counts[11] = {0};

    for (int i = 0; i < 110000; i++) {
        int k = draw_pick(r, 10);
        cr_assert(k >= 0 && k <= 10, "k out of range: %d", k);
        counts[k]++;
    }
    for (int k = 0; k <= 10; k++)
        cr_assert(counts[k] >= 9500 && counts[k] <= 10500,
                  "k=%d drawn %d times, expected 10000 +-5%%", k, counts[k]);
    rng_free(r);
    check_leaks();
}

/* The same under other seeds, so the check is not one lucky seed. */
Test(draw, pick_uniform_other_seeds)
{
    for (uint64_t seed = 1; seed <= 3; seed++) {
        rng *r = rng_new(seed);
        int counts[11] = {0};
        for (int i = 0; i < 110000; i++)
            counts[draw_pick(r, 10)]++;
        for (int k = 0; k <= 10; k++)
            cr_assert(counts[k] >= 9500 && counts[k] <= 10500, "seed %llu k=%d: %d",
                      (unsigned long long)seed, k, counts[k]);
        rng_free(r);
    }
    check_leaks();
}

Test(draw, pick_reproducible_and_edges)
{
    rng *a = rng_new(8), *b = rng_new(8);
    int hit_n = 0;

    for (int i = 0; i < 1000; i++) {
        int k = draw_pick(a, 10);
        cr_assert_eq(k, draw_pick(b, 10));
        hit_n |= k == 10;
    }
    cr_assert(hit_n, "k = N (the 404 draw) must happen");
    cr_assert_eq(draw_pick(a, 0), 0, "N = 0: only k = 0");
    cr_assert_eq(draw_pick(a, -1), -1);
    cr_assert_eq(draw_pick(NULL, 10), -1);
    for (int i = 0; i < 100; i++) {
        int k = draw_pick(a, 2147483647);
        cr_assert(k >= 0);
    }
    rng_free(a);
    rng_free(b);
    check_leaks();
}

Test(draw, retry_delays)
{
    cr_assert_eq(draw_retry_delay_ms(1, 500), 500);
    cr_assert_eq(draw_retry_delay_ms(2, 500), 1000);
    cr_assert_eq(draw_retry_delay_ms(3, 500), 2000);
    cr_assert_eq(draw_retry_delay_ms(4, 500), 4000);
    cr_assert_eq(draw_retry_delay_ms(6, 500), 16000);
    cr_assert_eq(draw_retry_delay_ms(7, 500), 30000, "capped");
    cr_assert_eq(draw_retry_delay_ms(1000, 500), 30000, "no overflow");
    cr_assert_eq(draw_retry_delay_ms(1, 40000), 30000);
    cr_assert_eq(draw_retry_delay_ms(0, 500), 500, "attempt < 1 counts as 1");
    cr_assert_eq(draw_retry_delay_ms(3, 0), 0);
    cr_assert_eq(draw_retry_delay_ms(3, -5), 0);
    cr_assert_eq(draw_retry_delay_ms(62, 1), 30000);
}

Test(draw, state_machine_fails_then_fatal)
{
    draw_state st = {.max_attempts = 3, .base_ms = 500};
    long retry = 123;

    cr_assert_eq(draw_next(&st, 1, &retry), DRAW_RETRY);
    cr_assert_eq(retry, 500);
    cr_assert_eq(st.attempt, 1);
    cr_assert_eq(draw_next(&st, 1, &retry), DRAW_RETRY);
    cr_assert_eq(retry, 1000);
    cr_assert_eq(st.attempt, 2);
    cr_assert_eq(draw_next(&st, 1, &retry), DRAW_FATAL);
    cr_assert_eq(retry, -1, "no wait after the last attempt");
    cr_assert_eq(st.attempt, 3);
}

Test(draw, state_machine_success)
{
    draw_state st = {.max_attempts = 5, .base_ms = 100};
    long retry = 0;

    cr_assert_eq(draw_next(&st, 1, &retry), DRAW_RETRY);
    cr_assert_eq(retry, 100);
    cr_assert_eq(draw_next(&st, 0, &retry), DRAW_DONE);
    cr_assert_eq(retry, -1);
    cr_assert_eq(st.attempt, 2);
    cr_assert_eq(draw_next(&st, 0, NULL), DRAW_DONE, "retry_in_ms may be NULL");
}

Test(draw, state_machine_single_attempt)
{
    draw_state one = {.max_attempts = 1, .base_ms = 500};
    draw_state zero = {.max_attempts = 0, .base_ms = 500};
    long retry = 0;

    cr_assert_eq(draw_next(&one, 1, &retry), DRAW_FATAL);
    cr_assert_eq(retry, -1);
    cr_assert_eq(draw_next(&zero, 1, &retry), DRAW_FATAL, "max < 1 counts as 1");
    cr_assert_eq(draw_next(&zero, 1, NULL), DRAW_FATAL);
}

/* The whole SPEC story with the defaults (5 attempts, 500 ms): four
 * waits of 500, 1000, 2000, 4000 ms, then fatal. */
Test(draw, default_schedule)
{
    draw_state st = {.max_attempts = 5, .base_ms = 500};
    long expect[] = {500, 1000, 2000, 4000};
    long retry;

    for (int i = 0; i < 4; i++) {
        cr_assert_eq(draw_next(&st, 1, &retry), DRAW_RETRY);
        cr_assert_eq(retry, expect[i]);
    }
    cr_assert_eq(draw_next(&st, 1, &retry), DRAW_FATAL);
}
