/*
 * secret — rooms' owner secrets and member pins, kept only as salted, slow
 * hashes and compared in constant time (SPEC).
 *
 * A secret is hashed with scrypt (OpenSSL 3) at N=16384, r=8, p=1, the
 * scrypt paper's interactive parameters, over a fresh 16-byte salt from
 * RAND_bytes, into a 32-byte key. The stored text carries its parameters,
 * so they can be raised later without invalidating old rows:
 *
 *     scrypt$N$r$p$SALT$HASH        SALT, HASH: unpadded base64url
 *
 * auth_secret_verify treats the stored text as untrusted although it comes
 * from our own database. It is parsed strictly into fixed buffers, nothing
 * allocated by any size it names: decimal numbers without sign or leading
 * zeros, N a power of two in [1024, 1048576], r in 1..16, p in 1..4 and
 * N*r*p at most 2^23 (the paper's file-encryption cost: 1 GiB and about a
 * second; the separate maxima together would mean 2 GiB and 8 s), a salt of
 * 8..64 bytes, a hash of exactly 32, and nothing after it. Each byte string
 * has one accepted text. Anything else is a mismatch, never a crash. The
 * keys are compared with CRYPTO_memcmp.
 *
 * The cost a stranger can cause: one derivation takes about 16 MiB and
 * tens of milliseconds, and anyone may try a pin. At most
 * AUTH_SECRET_CONCURRENT derivations run at once in the whole process; a
 * caller that finds them all taken waits up to AUTH_SECRET_WAIT_MS for one
 * to finish and then gets AUTH_SECRET_BUSY, which the HTTP layer answers
 * with 429 or 503. The wait is short (a few derivations' time) so that
 * callers waiting for a slot never hold many of the HTTP server's threads:
 * a flood of wrong secrets gets BUSY, the server's other routes keep
 * answering. Only a derivation takes a slot: a malformed stored text or an
 * overlong secret is refused before any wait.
 *
 * Threading: any thread may call any function; the slot count is one
 * mutex and condition variable, held only to take or give back a slot
 * (never during a derivation). A caller may block up to
 * AUTH_SECRET_WAIT_MS plus one derivation, so event-loop threads should
 * hand the call to a worker.
 * Ownership: nothing is allocated for the caller; the hash is written into
 * the caller's buffer. Derived keys are wiped from the stack after use.
 */
#ifndef CHATD_AUTH_SECRET_H
#define CHATD_AUTH_SECRET_H

#include <stddef.h>

/* Bytes of a secret or pin accepted. Callers check the length first and
 * answer 400; longer ones are refused here without being hashed. */
#define AUTH_SECRET_MAX 256

/* Bytes of the longest stored text auth_secret_verify accepts, NUL
 * included ("scrypt$1048576$8$1$", 86 of salt, "$", 43 of hash: 149
 * characters): a buffer of this size holds any hash, and a longer stored
 * text is refused unread. */
#define AUTH_SECRET_HASH_LEN 150

/* Derivations running at once, process-wide, and how long a caller waits
 * for one of them to finish before it gets AUTH_SECRET_BUSY. */
#define AUTH_SECRET_CONCURRENT 2
#define AUTH_SECRET_WAIT_MS 200

typedef enum {
    AUTH_SECRET_MATCH = 1,    /* verify: the secret is the one hashed */
    AUTH_SECRET_MISMATCH = 0, /* verify: another secret, or a malformed stored text */
    AUTH_SECRET_OK = 0,       /* hash: done */
    AUTH_SECRET_ERROR = -1,   /* out of memory, no randomness, a refused input (hash) */
    AUTH_SECRET_BUSY = -2     /* every derivation slot stayed taken for AUTH_SECRET_WAIT_MS */
} auth_secret_result;

/* Hashes secret (NUL-terminated, at most AUTH_SECRET_MAX bytes; "" is
 * accepted, whether an empty pin is allowed is the caller's rule) into out,
 * a buffer of cap bytes (AUTH_SECRET_HASH_LEN is always enough). Returns
 * AUTH_SECRET_OK; AUTH_SECRET_BUSY; or AUTH_SECRET_ERROR with one line in
 * err (secret NULL or too long, cap too small, RAND_bytes or scrypt
 * failed). On any failure out holds "" when cap > 0. */
auth_secret_result auth_secret_hash(const char *secret, char *out, size_t cap, char *err,
                                    size_t errlen);

/* Whether secret is the one stored was made from. AUTH_SECRET_MATCH or
 * AUTH_SECRET_MISMATCH (also for NULL arguments, a secret longer than
 * AUTH_SECRET_MAX and any malformed stored text); AUTH_SECRET_BUSY;
 * AUTH_SECRET_ERROR when scrypt itself failed (out of memory). */
auth_secret_result auth_secret_verify(const char *secret, const char *stored);

/* 1 when stored would be accepted by auth_secret_verify's parser, else 0.
 * Cheap (no derivation, no slot): for checking rows as they are loaded. */
int auth_secret_is_hash(const char *stored);

#endif
