/*
 * draw — see draw.h.
 */
#include "chat/draw.h"

#include "util/backoff.h"

#include <stddef.h>

int draw_pick(rng *r, int n_users)
{
    if (r == NULL || n_users < 0)
        return -1;
    /* rng_below rejects the biased tail, so each of the n_users + 1
     * outcomes has the same probability. */
    return (int)rng_below(r, (uint64_t)n_users + 1);
}

long draw_retry_delay_ms(int attempt, long base_ms)
{
    return backoff_delay_ms(base_ms, DRAW_MAX_DELAY_MS, attempt);
}

draw_result draw_next(draw_state *st, int failed, long *retry_in_ms)
{
    int max = st->max_attempts < 1 ? 1 : st->max_attempts;
    draw_result res;
    long retry = -1;

    st->attempt++;
    if (!failed)
        res = DRAW_DONE;
    else if (st->attempt >= max)
        res = DRAW_FATAL;
    else {
        res = DRAW_RETRY;
        retry = draw_retry_delay_ms(st->attempt, st->base_ms);
    }
    if (retry_in_ms != NULL)
        *retry_in_ms = retry;
    return res;
}
