/*
 * draw — which JSONPlaceholder user a new session gets, and what happens
 * when that fails.
 *
 * SPEC: chatd picks k uniformly in 0..N and fetches /users/{k+1}; k = N
 * asks for a user that does not exist (404) by design. The client is told
 * (USER_FETCH_FAILED with retry_in_ms), chatd waits and draws again, and
 * after the last allowed attempt sends fatal: true and closes.
 *
 * Pure logic: the I/O (fetching, timers, sending) is the service's.
 * draw_pick is as thread-safe as the rng; a draw_state belongs to one
 * session and is used from its loop only. Nothing is allocated.
 */
#ifndef CHATD_DRAW_H
#define CHATD_DRAW_H

#include "util/rng.h"

#define DRAW_MAX_DELAY_MS 30000L /* longest wait between two draws */

/* k uniform in [0, n_users], both ends included (n_users + 1 outcomes), so
 * that k = n_users, the missing user, is as likely as any other. -1 when
 * n_users < 0 or r is NULL. */
int draw_pick(rng *r, int n_users);

/* Wait before draw attempt + 1 after `attempt` (1-based) failed:
 * base_ms * 2^(attempt-1), at most DRAW_MAX_DELAY_MS; 0 when base_ms <= 0
 * (util/backoff.h, the rule of every retry loop). */
long draw_retry_delay_ms(int attempt, long base_ms);

/* One session's draws. Start with attempt = 0 and the configured
 * max_attempts (values below 1 count as 1) and base_ms. */
typedef struct {
    int attempt;      /* draws finished so far */
    int max_attempts; /* draws allowed in all */
    long base_ms;     /* wait after the first failure */
} draw_state;

typedef enum {
    DRAW_DONE,  /* the draw succeeded */
    DRAW_RETRY, /* it failed: wait *retry_in_ms and draw again */
    DRAW_FATAL  /* it failed and it was the last attempt: give up */
} draw_result;

/* Records the end of one draw (failed != 0 when it failed) and says what
 * comes next. *retry_in_ms (may be NULL) is the wait for DRAW_RETRY and -1
 * otherwise, the value that leaves retry_in_ms out of an error. */
draw_result draw_next(draw_state *st, int failed, long *retry_in_ms);

#endif
