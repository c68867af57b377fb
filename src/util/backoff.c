/*
 * backoff — see backoff.h.
 */
#include "util/backoff.h"

long backoff_delay_ms(long base_ms, long max_ms, int failures)
{
    long delay = base_ms;

    if (base_ms <= 0)
        return 0;
    if (delay >= max_ms)
        return max_ms;
    for (int i = 1; i < failures; i++) {
        /* delay > max_ms / 2 means 2 * delay > max_ms: cap without
         * computing a product that could overflow. */
        if (delay > max_ms / 2)
            return max_ms;
        delay *= 2;
    }
    return delay;
}
