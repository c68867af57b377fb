/*
 * ratelimit — a token bucket per key (a user id) for manual posts.
 *
 * Each key has a bucket of `burst` tokens that refills at rate_per_s; a
 * post takes one token. A key never seen, or idle long enough to be full
 * again, starts with a full bucket. The service uses burst 5, 1 post/s.
 *
 * Memory stays bounded by the keys active in the last burst/rate seconds:
 * a bucket idle that long is full, and a full bucket is the same as no
 * bucket, so such entries are dropped when the table is rebuilt.
 *
 * The same bucket is also usable on its own (ratelimit_bucket): a session
 * keeps one for its message budget (SPEC "Text rules (version 2)": 20
 * messages a second, burst 40, of any kind), with no table and no lock.
 *
 * Threading: every ratelimit_* call takes the limiter's mutex; one limiter
 * is shared by the sessions of all loops. A ratelimit_bucket has no lock:
 * its owner uses it from one thread. Time is the caller's (a monotonic
 * clock in milliseconds), so tests drive it by hand.
 *
 * Ownership: ratelimit_new returns a limiter freed with ratelimit_free; a
 * bucket is a plain struct the caller embeds (zeroed = full).
 */
#ifndef CHATD_RATELIMIT_H
#define CHATD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit;

/* One token bucket. All zero is a bucket never used, which starts full. */
typedef struct {
    int used;
    double tokens;   /* at last_ms */
    int64_t last_ms; /* last refill */
} ratelimit_bucket;

/* Takes one token of b at now_ms, refilling at rate_per_s up to burst.
 * 1: allowed. 0: refused, and *retry_in_ms (may be NULL) is how long until
 * a token is there (>= 1). rate_per_s > 0 and burst >= 1 are the caller's
 * to ensure. */
int ratelimit_bucket_take(ratelimit_bucket *b, double rate_per_s, double burst, int64_t now_ms,
                          long *retry_in_ms);

/* NULL when rate_per_s <= 0, burst < 1 (or either is not finite), or out
 * of memory. */
ratelimit *ratelimit_new(double rate_per_s, double burst);

/* Takes one token of key's bucket at now_ms. 1: allowed. 0: refused, and
 * *retry_in_ms (may be NULL) is how long until a token is there (>= 1).
 * When a new key cannot be stored for lack of memory the post is allowed:
 * the limiter protects the room from floods, it is not a reason to refuse
 * a user when the server is short of memory. */
int ratelimit_take(ratelimit *rl, long key, int64_t now_ms, long *retry_in_ms);

/* Keys currently tracked (for tests and metrics). */
size_t ratelimit_size(ratelimit *rl);

void ratelimit_free(ratelimit *rl);

#endif
