/*
 * test_ratelimit — unit tests for src/chat/ratelimit: burst then refill,
 * retry_in_ms exact enough to come back on time, keys independent, idle
 * keys evicted (memory bounded), allocation failures, and concurrent use.
 * Time is given by hand, so nothing here sleeps.
 */
#include <criterion/criterion.h>

#include "chat/ratelimit.h"
#include "util/mem.h"

#include <math.h>
#include <pthread.h>

#include "torture.h"

#define T0 1000000 /* a monotonic clock does not start at 0 */

Test(ratelimit, new_rejects_bad_parameters)
{
    cr_assert_null(ratelimit_new(0, 5));
    cr_assert_null(ratelimit_new(-1, 5));
    cr_assert_null(ratelimit_new(1, 0.5));
    cr_assert_null(ratelimit_new(NAN, 5));
    cr_assert_null(ratelimit_new(1, INFINITY));
    ratelimit_free(NULL);
}

Test(ratelimit, burst_then_refused)
{
    ratelimit *rl = ratelimit_new(1.0, 5.0);
    long retry = -7;

    cr_assert_not_null(rl);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(ratelimit_take(rl, 1, T0, &retry), 1, "post %d of the burst", i + 1);
        cr_assert_eq(retry, 0);
    }
    cr_assert_eq(ratelimit_take(rl, 1, T0, &retry), 0);
    cr_assert_eq(retry, 1000);
    cr_assert_eq(ratelimit_take(rl, 1, T0 + 400, &retry), 0);
    cr_assert_eq(retry, 600);
    cr_assert_eq(ratelimit_take(rl, 1, T0 + 999, &retry), 0);
    cr_assert_eq(retry, 1);
    cr_assert_eq(ratelimit_take(rl, 1, T0 + 1000, &retry), 1);
    cr_assert_eq(ratelimit_take(rl, 1, T0 + 1000, NULL), 0, "retry_in_ms may be NULL");
    ratelimit_free(rl);
    check_leaks();
}

Test(ratelimit, steady_rate)
{
    ratelimit *rl = ratelimit_new(1.0, 5.0);
    int allowed = 0;

    /* One attempt every 100 ms for 60 s: 5 of the burst + 60 refilled. */
    for (int t = 0; t <= 60000; t += 100)
        allowed += ratelimit_take(rl, 9, T0 + t, NULL);
    cr_assert(allowed >= 64 && allowed <= 66, "allowed %d", allowed);
    ratelimit_free(rl);
    check_leaks();
}

Test(ratelimit, retry_in_ms_is_enough)
{
    ratelimit *rl = ratelimit_new(3.0, 2.0); /* a non-integer ms period */
    int64_t now = T0;
    long retry;

    cr_assert(ratelimit_take(rl, 1, now, NULL));
    cr_assert(ratelimit_take(rl, 1, now, NULL));
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(ratelimit_take(rl, 1, now, &retry), 0);
        cr_assert(retry >= 1 && retry <= 334, "retry %ld", retry);
        now += retry;
        cr_assert_eq(ratelimit_take(rl, 1, now, &retry), 1, "back after retry_in_ms (round %d)", i);
    }
    ratelimit_free(rl);
    check_leaks();
}

Test(ratelimit, keys_independent)
{
    ratelimit *rl = ratelimit_new(1.0, 2.0);

    cr_assert(ratelimit_take(rl, 1, T0, NULL));
    cr_assert(ratelimit_take(rl, 1, T0, NULL));
    cr_assert_not(ratelimit_take(rl, 1, T0, NULL));
    cr_assert(ratelimit_take(rl, 2, T0, NULL), "another user is not limited");
    cr_assert(ratelimit_take(rl, -1, T0, NULL));
    cr_assert(ratelimit_take(rl, 0, T0, NULL));
    cr_assert_eq(ratelimit_size(rl), 4);
    ratelimit_free(rl);
    check_leaks();
}

Test(ratelimit, refill_caps_at_burst)
{
    ratelimit *rl = ratelimit_new(1.0, 3.0);

    cr_assert(ratelimit_take(rl, 1, T0, NULL));
    /* An hour idle refills to 3, not 3600. */
    for (int i = 0; i < 3; i++)
        cr_assert(ratelimit_take(rl, 1, T0 + 3600000, NULL));
    cr_assert_not(ratelimit_take(rl, 1, T0 + 3600000, NULL));
    ratelimit_free(rl);
    check_leaks();
}

Test(ratelimit, clock_going_back)
{
    ratelimit *rl = ratelimit_new(1.0, 1.0);
    long retry;

    cr_assert(ratelimit_take(rl, 1, T0, NULL));
    cr_assert_not(ratelimit_take(rl, 1, T0 - 5000, &retry), "no refill from the past");
    cr_assert(retry > 0);
    cr_assert(ratelimit_take(rl, 1, T0 + 1000, NULL));
    ratelimit_free(rl);
    check_leaks();
}

/* A flood of distinct keys, then quiet: idle (full) buckets are dropped,
 * so the table does not keep every key ever seen. */
Test(ratelimit, idle_keys_evicted)
{
    ratelimit *rl = ratelimit_new(1.0, 5.0);
    int64_t now = T0;

    for (long k = 0; k < 100000; k++) {
        cr_assert(ratelimit_take(rl, k, now, NULL));
        if (k % 1000 == 999)
            now += 1000; /* 1000 new keys per second */
    }
    /* Only the keys of the last 5 s (one idle period) can be alive. */
    cr_assert(ratelimit_size(rl) <= 6000 + 1000, "%zu keys kept", ratelimit_size(rl));
    now += 10000;
    cr_assert(ratelimit_take(rl, -5, now, NULL));
    cr_assert_eq(ratelimit_size(rl), 1, "everything else was idle: %zu", ratelimit_size(rl));
    ratelimit_free(rl);
    check_leaks();
}

/* Evicting must not change any answer: an evicted key behaves like one
 * that stayed, since both are full. */
Test(ratelimit, eviction_keeps_limits)
{
    ratelimit *rl = ratelimit_new(1.0, 2.0);
    int64_t now = T0;

    cr_assert(ratelimit_take(rl, 7, now, NULL));
    cr_assert(ratelimit_take(rl, 7, now, NULL));
    cr_assert_not(ratelimit_take(rl, 7, now, NULL));
    /* Other keys arrive quickly, forcing rebuilds while 7 is empty. */
    for (long k = 100; k < 200; k++)
        ratelimit_take(rl, k, now + 10, NULL);
    cr_assert_not(ratelimit_take(rl, 7, now + 10, NULL), "key 7 must still be empty");
    cr_assert(ratelimit_take(rl, 7, now + 1000, NULL));
    ratelimit_free(rl);
    check_leaks();
}

static int op_new(void *ctx)
{
    (void)ctx;
    ratelimit *rl = ratelimit_new(1.0, 5.0);
    if (rl == NULL)
        return TORTURE_ERROR;
    cr_assert_eq(ratelimit_size(rl), 0);
    ratelimit_free(rl);
    return TORTURE_OK;
}

Test(ratelimit, out_of_memory)
{
    ratelimit *rl;
    int64_t now = T0;

    torture("ratelimit_new", op_new, NULL);
    rl = ratelimit_new(1.0, 5.0);
    cr_assert_not_null(rl);
    /* Fill the first table (16 slots, rebuilt at 12), failing the rebuild:
     * the new key is let through, and the table stays consistent. */
    for (long k = 0; k < 12; k++)
        cr_assert(ratelimit_take(rl, k, now, NULL));
    mem_fail_at(1);
    cr_assert(ratelimit_take(rl, 999, now, NULL), "fails open");
    mem_fail_at(0);
    cr_assert_eq(ratelimit_size(rl), 12);
    for (long k = 0; k < 12; k++)
        for (int i = 0; i < 4; i++)
            cr_assert(ratelimit_take(rl, k, now, NULL), "key %ld kept its bucket", k);
    cr_assert_not(ratelimit_take(rl, 0, now, NULL));
    ratelimit_free(rl);
    check_leaks();
}

typedef struct {
    ratelimit *rl;
    int allowed;
} worker;

static void *hammer(void *arg)
{
    worker *w = arg;

    for (int i = 0; i < 10000; i++)
        w->allowed += ratelimit_take(w->rl, i % 50, T0, NULL);
    return NULL;
}

/* Four threads on the same 50 keys at one instant: exactly the 50 full
 * bursts get through, no more, whatever the interleaving. */
Test(ratelimit, threads)
{
    ratelimit *rl = ratelimit_new(1.0, 5.0);
    worker w[4];
    pthread_t t[4];
    int total = 0;

    for (int i = 0; i < 4; i++) {
        w[i] = (worker){rl, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += w[i].allowed;
    }
    cr_assert_eq(total, 50 * 5);
    ratelimit_free(rl);
    check_leaks();
}

/* The lone bucket a session keeps for its message budget (issue 9): 20 a
 * second, burst 40, no table and no lock. */
Test(ratelimit, lone_bucket_is_the_session_budget)
{
    ratelimit_bucket b = {0};
    long retry = -1;
    for (int i = 0; i < 40; i++)
        cr_assert(ratelimit_bucket_take(&b, 20, 40, T0, &retry), "message %d", i);
    cr_assert_not(ratelimit_bucket_take(&b, 20, 40, T0, &retry));
    cr_assert_eq(retry, 50, "one message every 50 ms");
    cr_assert_not(ratelimit_bucket_take(&b, 20, 40, T0 + 49, NULL));
    cr_assert(ratelimit_bucket_take(&b, 20, 40, T0 + 50, NULL));
    /* A long pause refills to the burst, not beyond. */
    int n = 0;
    while (ratelimit_bucket_take(&b, 20, 40, T0 + 3600000, NULL))
        n++;
    cr_assert_eq(n, 40);
}
