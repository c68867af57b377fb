/*
 * addrrate — see addrrate.h.
 */
#include "app/addrrate.h"

#include "util/mem.h"

#include <glib.h>
#include <math.h>
#include <openssl/rand.h>
#include <string.h>

typedef struct {
    uint64_t key; /* 0: free */
    double tokens;
    int64_t last_us;
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
        e->tokens = t->burst;
        e->last_us = now_us;
    }
    if (now_us > e->last_us) {
        e->tokens += (double)(now_us - e->last_us) / 1e6 * t->rate;
        if (e->tokens > t->burst)
            e->tokens = t->burst;
    }
    e->last_us = now_us;
    int wait = 0;
    if (e->tokens >= 1) {
        e->tokens -= 1;
    } else {
        double s = ceil((1 - e->tokens) / t->rate);
        wait = s < 1 ? 1 : s > 3600 ? 3600 : (int)s;
    }
    g_mutex_unlock(&t->lock);
    return wait;
}
