/*
 * addrrate — see addrrate.h.
 */
#include "app/addrrate.h"

#include "chat/ratelimit.h"
#include "util/mem.h"

#include <glib.h>
#include <openssl/rand.h>
#include <string.h>

typedef struct {
    uint64_t key;       /* 0: free */
    int64_t last_us;    /* last use, for the least-recently-used choice */
    ratelimit_bucket b; /* the arithmetic is ratelimit's, in milliseconds */
} bucket;

struct addr_rate {
    GMutex lock;
    double rate, burst;
    uint64_t seed;
    bucket b[ADDR_RATE_SETS][ADDR_RATE_WAYS];
};

addr_rate *addr_rate_new(double rate, double burst)
{
    addr_rate *t = mem_calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    g_mutex_init(&t->lock);
    t->rate = rate > 0 ? rate : 1;
    t->burst = burst >= 1 ? burst : 1;
    if (RAND_bytes((unsigned char *)&t->seed, sizeof t->seed) != 1)
        t->seed = (uint64_t)g_get_monotonic_time() * 0x9e3779b97f4a7c15ULL;
    return t;
}

void addr_rate_free(addr_rate *t)
{
    if (t == NULL)
        return;
    g_mutex_clear(&t->lock);
    mem_free(t);
}

/* FNV-1a over the key, seeded, then a 64-bit finalizer (splitmix64's) so
 * that both the set index and the stored key use well-mixed bits. */
static uint64_t key_hash(uint64_t seed, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h ? h : 1;
}

int addr_rate_take(addr_rate *t, const char *key, int64_t now_us)
{
    uint64_t h = key_hash(t->seed, key);
    g_mutex_lock(&t->lock);
    bucket *set = t->b[h % ADDR_RATE_SETS];
    bucket *e = NULL, *victim = &set[0];
    for (int i = 0; i < ADDR_RATE_WAYS; i++) {
        if (set[i].key == h) {
            e = &set[i];
            break;
        }
        if (set[i].key == 0 || (victim->key != 0 && set[i].last_us < victim->last_us))
            victim = &set[i];
    }
    if (e == NULL) {
        e = victim;
        e->key = h;
        e->b = (ratelimit_bucket){0}; /* unused: starts full */
    }
    e->last_us = now_us;
    long retry_ms = 0;
    int wait = 0;
    if (!ratelimit_bucket_take(&e->b, t->rate, t->burst, now_us / 1000, &retry_ms)) {
        long s = (retry_ms + 999) / 1000;
        wait = s < 1 ? 1 : s > 3600 ? 3600 : (int)s;
    }
    g_mutex_unlock(&t->lock);
    return wait;
}
