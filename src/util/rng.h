/*
 * rng — chatd's seedable pseudo-random number generator.
 *
 * xoshiro256** (Blackman and Vigna), its 256-bit state filled from one
 * 64-bit seed with splitmix64, as the xoshiro authors recommend. The same
 * seed always gives the same sequence: that is what chatd's --seed promises
 * (user draws, auto-post delays, post picks). Not for secrets: tokens and
 * session ids come from OpenSSL, not from here.
 *
 * Threading: one rng is shared by the sessions of every event loop, so
 * each call takes the rng's mutex. With several threads drawing, the
 * sequence as a whole is still the seed's, but which thread gets which
 * value depends on scheduling.
 *
 * Ownership: rng_new / rng_new_from_os return an rng the caller frees with
 * rng_free (NULL on failure).
 */
#ifndef CHATD_RNG_H
#define CHATD_RNG_H

#include <stdint.h>

typedef struct rng rng;

/* A generator whose sequence is fixed by seed. NULL when out of memory. */
rng *rng_new(uint64_t seed);

/* A generator seeded from the kernel (getrandom). NULL when out of memory
 * or when the kernel gives no randomness; rng_seed tells the seed drawn, so
 * a run can be replayed with --seed. */
rng *rng_new_from_os(void);

/* The seed this generator started from. */
uint64_t rng_seed(rng *r);

/* The next 64 random bits. */
uint64_t rng_next(rng *r);

/* Uniform in [0, bound) without modulo bias; 0 when bound is 0. */
uint64_t rng_below(rng *r, uint64_t bound);

/* Uniform in [lo, hi], both ends included; lo when hi < lo. */
int64_t rng_range(rng *r, int64_t lo, int64_t hi);

void rng_free(rng *r);

#endif
