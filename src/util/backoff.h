/*
 * backoff — the capped doubling delay every retry loop in chatd uses: the
 * user draw (chat/draw), the JSONPlaceholder client (api/) and the store's
 * writer reconnecting to its database.
 *
 * Pure arithmetic, so the retry policies stay one rule that can be tested
 * without waiting: delay n is base * 2^(n-1), never more than the cap.
 * Jitter, where wanted, is the caller's (api/ adds it; the draw's delays
 * are told to the client and must be exact).
 *
 * Threading: no state; safe from any thread. Ownership: nothing allocated.
 */
#ifndef CHATD_BACKOFF_H
#define CHATD_BACKOFF_H

/* The wait after `failures` failures in a row (1 = the first failure):
 * base_ms * 2^(failures-1), at most max_ms; base_ms (or max_ms if smaller)
 * for failures < 1; 0 when base_ms <= 0. Doubles step by step and stops at
 * the cap, so it never overflows, whatever failures is. */
long backoff_delay_ms(long base_ms, long max_ms, int failures);

#endif
