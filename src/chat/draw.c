/*
 * draw — see draw.h.
 */
#include "chat/draw.h"

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
    long delay = base_ms;

    if (base_ms <= 0)
        return 0;
    if (delay >= DRAW_MAX_DELAY_MS)
        return DRAW_MAX_DELAY_MS;
    /* Double step by step and stop at the cap: never overflows, whatever
     * the attempt number. */
    for (int i = 1; i < attempt; i++) {
        delay *= 2;
        if (delay >= DRAW_MAX_DELAY_MS)
            return DRAW_MAX_DELAY_MS;
    }
    return delay;
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
