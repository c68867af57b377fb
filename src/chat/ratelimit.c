/*
 * ratelimit — see ratelimit.h.
 *
 * The buckets live in an open-addressing hash table (linear probing). It
 * is never deleted from in place; instead, when it is 3/4 full, it is
 * rebuilt with only the buckets that are not yet full again, at a size
 * fitting those. That one operation both evicts idle keys and grows or
 * shrinks the table, and needs no tombstones. A rebuild also happens once
 * per idle period, so a table that grew in a flood shrinks afterwards.
 */
#include "chat/ratelimit.h"

#include "util/mem.h"

#include <math.h>
#include <pthread.h>

#define MIN_SLOTS 16
#define TOKEN_EPS 1e-6

typedef struct {
    long key;
    ratelimit_bucket b; /* b.used marks a slot in use */
} bucket;

struct ratelimit {
    pthread_mutex_t lock;
    double rate_per_ms;
    double burst;
    int64_t idle_ms; /* after this long without a take a bucket is full */
    bucket *slots;
    size_t nslots; /* a power of two */
    size_t count;
    int64_t last_rebuild_ms;
};

static size_t hash_key(long key)
{
    /* Fibonacci hashing: user ids are small consecutive integers, which
     * this spreads over the table. */
    return (size_t)(((uint64_t)key * 0x9e3779b97f4a7c15ULL) >> 32);
}

static bucket *find_slot(bucket *slots, size_t nslots, long key)
{
    size_t i = hash_key(key) & (nslots - 1);

    while (slots[i].b.used && slots[i].key != key)
        i = (i + 1) & (nslots - 1);
    return &slots[i];
}

static int is_idle(const ratelimit *rl, const bucket *b, int64_t now_ms)
{
    return now_ms - b->b.last_ms >= rl->idle_ms;
}

/* The bucket arithmetic, shared by the table and by lone buckets. */
static int bucket_take(ratelimit_bucket *b, double rate_per_ms, double burst, int64_t now_ms,
                       long *retry_in_ms)
{
    long retry = 0;
    int allowed;

    if (!b->used) {
        b->used = 1;
        b->tokens = burst;
        b->last_ms = now_ms;
    } else if (now_ms > b->last_ms) {
        /* A clock that goes back (it should not: it is monotonic) refills
         * nothing rather than draining the bucket. */
        b->tokens = fmin(burst, b->tokens + (double)(now_ms - b->last_ms) * rate_per_ms);
        b->last_ms = now_ms;
    }
    /* TOKEN_EPS absorbs floating-point rounding: a bucket 1e-12 short of a
     * token counts as full, and retry_in_ms is computed against the same
     * threshold, so coming back exactly after it always succeeds. */
    if (b->tokens >= 1.0 - TOKEN_EPS) {
        b->tokens = fmax(0.0, b->tokens - 1.0);
        allowed = 1;
    } else {
        retry = (long)ceil((1.0 - TOKEN_EPS - b->tokens) / rate_per_ms);
        if (retry < 1)
            retry = 1;
        allowed = 0;
    }
    if (retry_in_ms != NULL)
        *retry_in_ms = retry;
    return allowed;
}

int ratelimit_bucket_take(ratelimit_bucket *b, double rate_per_s, double burst, int64_t now_ms,
                          long *retry_in_ms)
{
    return bucket_take(b, rate_per_s / 1000.0, burst, now_ms, retry_in_ms);
}

/* Rebuilds the table with the live buckets only, sized so that it is at
 * most half full afterwards. -1 (table unchanged) when out of memory. */
static int rebuild(ratelimit *rl, int64_t now_ms)
{
    size_t live = 0, n = MIN_SLOTS;
    bucket *slots;

    for (size_t i = 0; i < rl->nslots; i++)
        if (rl->slots[i].b.used && !is_idle(rl, &rl->slots[i], now_ms))
            live++;
    while (n < (live + 1) * 2)
        n *= 2;
    slots = mem_calloc(n, sizeof(*slots));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < rl->nslots; i++)
        if (rl->slots[i].b.used && !is_idle(rl, &rl->slots[i], now_ms))
            *find_slot(slots, n, rl->slots[i].key) = rl->slots[i];
    mem_free(rl->slots);
    rl->slots = slots;
    rl->nslots = n;
    rl->count = live;
    rl->last_rebuild_ms = now_ms;
    return 0;
}

ratelimit *ratelimit_new(double rate_per_s, double burst)
{
    ratelimit *rl;

    if (!isfinite(rate_per_s) || !isfinite(burst) || rate_per_s <= 0 || burst < 1)
        return NULL;
    rl = mem_calloc(1, sizeof(*rl));
    if (rl == NULL)
        return NULL;
    rl->slots = mem_calloc(MIN_SLOTS, sizeof(*rl->slots));
    if (rl->slots == NULL || pthread_mutex_init(&rl->lock, NULL) != 0) {
        mem_free(rl->slots);
        mem_free(rl);
        return NULL;
    }
    rl->nslots = MIN_SLOTS;
    rl->rate_per_ms = rate_per_s / 1000.0;
    rl->burst = burst;
    rl->idle_ms = (int64_t)ceil(burst / rl->rate_per_ms);
    return rl;
}

int ratelimit_take(ratelimit *rl, long key, int64_t now_ms, long *retry_in_ms)
{
    bucket *b;
    int allowed;

    pthread_mutex_lock(&rl->lock);
    if (now_ms - rl->last_rebuild_ms >= rl->idle_ms && rl->nslots > MIN_SLOTS)
        rebuild(rl, now_ms); /* on failure the old table simply stays */
    b = find_slot(rl->slots, rl->nslots, key);
    if (!b->b.used && (rl->count + 1) * 4 > rl->nslots * 3) {
        if (rebuild(rl, now_ms) < 0) {
            pthread_mutex_unlock(&rl->lock);
            if (retry_in_ms != NULL)
                *retry_in_ms = 0;
            return 1; /* fail open, see ratelimit.h */
        }
        b = find_slot(rl->slots, rl->nslots, key);
    }
    if (!b->b.used) {
        b->key = key;
        rl->count++;
    }
    allowed = bucket_take(&b->b, rl->rate_per_ms, rl->burst, now_ms, retry_in_ms);
    pthread_mutex_unlock(&rl->lock);
    return allowed;
}

size_t ratelimit_size(ratelimit *rl)
{
    size_t n;

    pthread_mutex_lock(&rl->lock);
    n = rl->count;
    pthread_mutex_unlock(&rl->lock);
    return n;
}

void ratelimit_free(ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    mem_free(rl->slots);
    mem_free(rl);
}
