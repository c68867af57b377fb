/*
 * token — issue and verify chatd's ES256 JWTs, with OpenSSL for the
 * signature and jansson plus our own checks for everything else.
 *
 * libjwt 1.10 verifies a signature with whatever algorithm the token names
 * and checks no claim (see notes/jwt.md), so it is not used; and
 * auth_token_verify does, in this order: size cap (AUTH_TOKEN_MAX), exactly three strict base64url parts,
 * header JSON with alg exactly "ES256", no "crit", and a kid equal to ours
 * (constant-time compare); claims part a JSON object; a 64-byte signature;
 * an ECDSA P-256 / SHA-256 check of that signature with our key; then the claims:
 * iss equal to the expected issuer, aud "chat" (or an array holding it),
 * numeric exp/nbf/iat with nbf <= now+60, iat <= now+60, now < exp+60, a
 * numeric auth_time <= iat when present (absent in tokens of chatd before
 * version 2: iat stands in), and a non-empty string sub. Optional string claims must be strings when present.
 * Duplicate JSON members and strings holding NUL are refused.
 * auth/cache.h adds an optional cache of verified tokens on top.
 *
 * Threading: issue and verify keep no state; they may run concurrently on
 * the same auth_keys.
 * Ownership: the issued token is the caller's (mem_free); the strings in an
 * auth_claims are the caller's, released with auth_claims_clear.
 */
#ifndef CHATD_AUTH_TOKEN_H
#define CHATD_AUTH_TOKEN_H

#include "auth/keys.h"
#include "util/limits.h"

#include <stddef.h>
#include <time.h>

#define AUTH_TOKEN_MAX LIMIT_TOKEN_BYTES /* bytes; longer tokens are refused unread */
#define AUTH_CLOCK_SKEW 60               /* seconds of clock difference tolerated */
#define AUTH_AUDIENCE "chat"             /* the aud claim chatd issues and requires */

/* What auth_token_issue signs. iss and sub are required and non-empty; the
 * three profile claims are left out when NULL. The token is valid from now
 * (iat = nbf = now) to now + ttl_seconds (ttl_seconds > 0), but never past
 * auth_time + max_age_seconds: a resumed login keeps its first auth_time, so
 * resuming cannot make a stolen token a permanent identity. */
typedef struct {
    const char *iss;
    const char *sub; /* the user id, as a string */
    const char *name;
    const char *preferred_username;
    const char *email;
    long ttl_seconds;
    time_t now;
    time_t auth_time;     /* the login this token continues; 0 = a new login (now) */
    long max_age_seconds; /* a login's total age; 0 = no limit */
} auth_claims_in;

/* What a verified token says. After a successful verify every string is
 * non-NULL (an absent optional claim gives ""). */
typedef struct {
    char *sub;
    char *name;
    char *preferred_username;
    char *email;
    char *jti;
    time_t auth_time; /* the login's start; iat for a token issued without one */
    time_t iat;
    time_t nbf;
    time_t exp;
} auth_claims;

/* Signs a token with keys: header alg ES256 + kid, claims iss, sub, aud
 * "chat", auth_time, iat, nbf, exp, a random 128-bit hex jti, and the
 * profile claims. Returns 0 with *out set (owner: caller, mem_free), or -1,
 * *out NULL and err set; also when the login is already max_age old (the
 * user must sign in afresh). An auth_time after now counts as now. */
int auth_token_issue(const auth_keys *keys, const auth_claims_in *in, char **out, char *err,
                     size_t errlen);

/* Verifies token against keys, expected_iss and now (see the file comment).
 * Returns 0 and fills *out (cleared first; release with auth_claims_clear),
 * or -1 with *out zeroed and one reason in err, e.g. "token expired",
 * "bad signature", "unknown kid". */
int auth_token_verify(const auth_keys *keys, const char *token, const char *expected_iss,
                      time_t now, auth_claims *out, char *err, size_t errlen);

/* Frees the strings of c (safe on a zeroed or already cleared struct). */
void auth_claims_clear(auth_claims *c);

/* Checks only the time claims of c against now with AUTH_CLOCK_SKEW:
 * nbf <= now+skew, iat <= now+skew, now < exp+skew. 0 or -1 with err. */
int auth_claims_check_time(const auth_claims *c, time_t now, char *err, size_t errlen);

/* Checks the login's age: refused (-1, err says so) once auth_time +
 * max_age has passed (no skew: the limit is chatd's own, not a clock
 * difference). max_age 0 = no limit. */
int auth_claims_check_age(const auth_claims *c, time_t now, long max_age, char *err, size_t errlen);

/* Deep copy of src into dst (dst is overwritten, not freed). 0, or -1 when
 * out of memory with dst zeroed. */
int auth_claims_copy(auth_claims *dst, const auth_claims *src);

#endif
