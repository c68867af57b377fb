/*
 * rng — see rng.h.
 *
 * xoshiro256** and splitmix64 are written here from their published
 * definitions (prng.di.unimi.it); both are a handful of shifts, rotations
 * and multiplications.
 */
#include "util/rng.h"

#include "util/mem.h"

#include <errno.h>
#include <pthread.h>
#include <sys/random.h>

struct rng {
    pthread_mutex_t lock;
    uint64_t s[4];
    uint64_t seed;
};

/* splitmix64: turns consecutive seeds into well-mixed words, so that even
 * seeds 0, 1, 2 give unrelated, never all-zero xoshiro states. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* One xoshiro256** step; the caller holds the lock. */
static uint64_t next_locked(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Rejection sampling: values below `threshold` would make the low residues
 * one more likely than the others (2^64 is rarely a multiple of bound), so
 * they are drawn again. threshold = 2^64 mod bound < bound, so a draw is
 * rejected with probability below bound / 2^64: almost never. */
static uint64_t below_locked(rng *r, uint64_t bound)
{
    uint64_t threshold, x;

    if (bound == 0)
        return 0;
    threshold = (0 - bound) % bound;
    do {
        x = next_locked(r);
    } while (x < threshold);
    return x % bound;
}

rng *rng_new(uint64_t seed)
{
    rng *r = mem_alloc(sizeof(*r));
    uint64_t x = seed;

    if (r == NULL)
        return NULL;
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        mem_free(r);
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    r->seed = seed;
    return r;
}

rng *rng_new_from_os(void)
{
    uint64_t seed;
    ssize_t n;

    do {
        n = getrandom(&seed, sizeof(seed), 0);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(seed))
        return NULL;
    return rng_new(seed);
}

uint64_t rng_seed(rng *r) { return r->seed; }

uint64_t rng_next(rng *r)
{
    uint64_t v;

    pthread_mutex_lock(&r->lock);
    v = next_locked(r);
    pthread_mutex_unlock(&r->lock);
    return v;
}

uint64_t rng_below(rng *r, uint64_t bound)
{
    uint64_t v;

    pthread_mutex_lock(&r->lock);
    v = below_locked(r, bound);
    pthread_mutex_unlock(&r->lock);
    return v;
}

int64_t rng_range(rng *r, int64_t lo, int64_t hi)
{
    uint64_t span, v;

    if (hi <= lo)
        return lo;
    /* Unsigned arithmetic: hi - lo can exceed INT64_MAX. */
    span = (uint64_t)hi - (uint64_t)lo;
    pthread_mutex_lock(&r->lock);
    v = span == UINT64_MAX ? next_locked(r) : below_locked(r, span + 1);
    pthread_mutex_unlock(&r->lock);
    return (int64_t)((uint64_t)lo + v);
}

void rng_free(rng *r)
{
    if (r == NULL)
        return;
    pthread_mutex_destroy(&r->lock);
    mem_free(r);
}
