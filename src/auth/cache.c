/*
 * cache — see cache.h.
 *
 * Why a digest rather than the token text as key: it bounds memory per
 * entry (tokens run to 8 KiB) and the compare is over 32 bytes an attacker
 * cannot steer, so it leaks nothing about a cached token through timing.
 */
#include "auth/cache.h"

#include "util/err.h"
#include "util/mem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#define DIGEST_LEN 32

typedef struct {
    int used;
    unsigned char digest[DIGEST_LEN];
    auth_claims claims;
} cache_entry;

struct auth_cache {
    pthread_mutex_t lock;
    size_t slots;
    cache_entry *entries;
    unsigned long hits;
};

auth_cache *auth_cache_new(size_t slots)
{
    auth_cache *c;

    if (slots == 0 || slots > SIZE_MAX / sizeof(cache_entry))
        return NULL;
    c = mem_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->entries = mem_calloc(slots, sizeof(cache_entry));
    if (c->entries == NULL || pthread_mutex_init(&c->lock, NULL) != 0) {
        mem_free(c->entries);
        mem_free(c);
        return NULL;
    }
    c->slots = slots;
    return c;
}

void auth_cache_free(auth_cache *c)
{
    size_t i;

    if (c == NULL)
        return;
    for (i = 0; i < c->slots; i++)
        auth_claims_clear(&c->entries[i].claims);
    pthread_mutex_destroy(&c->lock);
    mem_free(c->entries);
    mem_free(c);
}

unsigned long auth_cache_hits(auth_cache *c)
{
    unsigned long h;
    pthread_mutex_lock(&c->lock);
    h = c->hits;
    pthread_mutex_unlock(&c->lock);
    return h;
}

/* SHA-256 over kid NUL iss NUL token: the NULs keep the fields apart. */
static int key_digest(const auth_keys *keys, const char *iss, const char *token, size_t token_len,
                      unsigned char *out)
{
    const char *kid = auth_keys_kid(keys);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok;

    if (md == NULL)
        return -1;
    ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, kid, strlen(kid) + 1) &&
         EVP_DigestUpdate(md, iss, strlen(iss) + 1) && EVP_DigestUpdate(md, token, token_len) &&
         EVP_DigestFinal_ex(md, out, &n) && n == DIGEST_LEN;
    EVP_MD_CTX_free(md);
    if (!ok)
        ERR_clear_error();
    return ok ? 0 : -1;
}

static size_t slot_of(const auth_cache *c, const unsigned char *digest)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; i++)
        v = v << 8 | digest[i];
    return (size_t)(v % c->slots);
}

int auth_cache_verify(auth_cache *c, const auth_keys *keys, const char *token,
                      const char *expected_iss, time_t now, auth_claims *out, char *err,
                      size_t errlen)
{
    unsigned char digest[DIGEST_LEN];
    cache_entry *e;
    size_t len;
    int rc;

    if (c == NULL || keys == NULL || token == NULL || expected_iss == NULL || out == NULL)
        return auth_token_verify(keys, token, expected_iss, now, out, err, errlen);
    len = strnlen(token, AUTH_TOKEN_MAX + 1);
    /* Oversize tokens and digest failures go the uncached way, which
     * rejects or verifies them fully. */
    if (len > AUTH_TOKEN_MAX || key_digest(keys, expected_iss, token, len, digest) != 0)
        return auth_token_verify(keys, token, expected_iss, now, out, err, errlen);
    e = &c->entries[slot_of(c, digest)];

    pthread_mutex_lock(&c->lock);
    if (e->used && CRYPTO_memcmp(e->digest, digest, DIGEST_LEN) == 0) {
        rc = auth_claims_check_time(&e->claims, now, err, errlen);
        if (rc != 0) {
            /* Expired (or not yet valid for this clock): answer from the
             * entry; drop it only when it can never become valid again. */
            if (now >= e->claims.exp + AUTH_CLOCK_SKEW) {
                auth_claims_clear(&e->claims);
                e->used = 0;
            }
            memset(out, 0, sizeof(*out));
        } else if (auth_claims_copy(out, &e->claims) != 0) {
            if (err != NULL && errlen > 0)
                err_set(err, errlen, "out of memory");
            rc = -1;
        } else {
            c->hits++;
        }
        pthread_mutex_unlock(&c->lock);
        return rc;
    }
    pthread_mutex_unlock(&c->lock);

    rc = auth_token_verify(keys, token, expected_iss, now, out, err, errlen);
    if (rc == 0) {
        auth_claims copy;
        /* Cache a private copy; when that fails we simply do not cache. */
        if (auth_claims_copy(&copy, out) == 0) {
            pthread_mutex_lock(&c->lock);
            auth_claims_clear(&e->claims);
            e->claims = copy;
            memcpy(e->digest, digest, DIGEST_LEN);
            e->used = 1;
            pthread_mutex_unlock(&c->lock);
        }
    }
    return rc;
}
