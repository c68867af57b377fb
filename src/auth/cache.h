/*
 * cache — remembers tokens that auth_token_verify accepted, so a session
 * that posts often does not pay an ECDSA verify (~60 µs) per post.
 *
 * Keyed by SHA-256 over (kid, issuer, whole token): a hit means this exact
 * text already passed every check against the same key and issuer, so only
 * what changes with time is checked again (nbf, iat, exp against now, same
 * skew). Direct-mapped and bounded: a new token simply replaces whatever
 * shared its slot; an entry found expired is dropped. Nothing is skipped
 * that could differ between the first verify and a later one.
 *
 * Threading: one mutex per cache; any thread may call auth_cache_verify.
 * The ECDSA verify of a miss runs outside the lock.
 * Ownership: caller owns the cache (auth_cache_free) and the claims it
 * fills (auth_claims_clear).
 */
#ifndef CHATD_AUTH_CACHE_H
#define CHATD_AUTH_CACHE_H

#include "auth/keys.h"
#include "auth/token.h"

#include <stddef.h>
#include <time.h>

typedef struct auth_cache auth_cache;

/* A cache of at most slots entries (slots > 0); NULL when out of memory or
 * slots is 0. */
auth_cache *auth_cache_new(size_t slots);
void auth_cache_free(auth_cache *cache);

/* Same contract as auth_token_verify. */
int auth_cache_verify(auth_cache *cache, const auth_keys *keys, const char *token,
                      const char *expected_iss, time_t now, auth_claims *out, char *err,
                      size_t errlen);

/* Counters for tests and metrics. */
unsigned long auth_cache_hits(auth_cache *cache);

#endif
