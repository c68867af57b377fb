/*
 * secret — see secret.h.
 *
 * Why the parser is this strict: the parameters in a stored text decide
 * how much memory and CPU one verify costs, so they are bounded before
 * anything is derived, and the salt and key go into fixed buffers whatever
 * lengths the text claims. One accepted text per value (no leading zeros,
 * base64url without padding or stray bits) keeps the fuzz target's
 * round-trip check meaningful.
 *
 * Why slots rather than a thread pool: the derivation runs on the caller's
 * thread (the HTTP worker that asked), so all that needs bounding is how
 * many run at once; a counter under a mutex does that, and the condition
 * variable's monotonic deadline bounds the wait.
 */
#include "auth/secret.h"
#include "auth/secret_int.h"

#include "util/base64url.h"
#include "util/clock.h"
#include "util/err.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* What auth_secret_hash writes. */
#define HASH_N 16384u
#define HASH_R 8u
#define HASH_P 1u
#define HASH_SALT_LEN 16

#define PREFIX "scrypt$"
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define KEY_TEXT_LEN 43 /* b64url_encoded_len(AUTH_SECRET_KEY_LEN) */

/* ---- derivation slots ------------------------------------------------- */

static pthread_once_t slots_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_cv;
static unsigned slots_used;
static unsigned slots_used_max;
static unsigned slots_wait_ms = AUTH_SECRET_WAIT_MS;

static void slots_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&slots_cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* 0 with a slot taken, or -1 when none came free within the wait. */
static int slot_take(void)
{
    pthread_once(&slots_once, slots_init);
    pthread_mutex_lock(&slots_lock);
    int64_t deadline = clock_mono_ms() + slots_wait_ms;
    struct timespec ts = {.tv_sec = (time_t)(deadline / 1000),
                          .tv_nsec = (long)(deadline % 1000) * 1000000L};
    while (slots_used >= AUTH_SECRET_CONCURRENT) {
        int rc = pthread_cond_timedwait(&slots_cv, &slots_lock, &ts);
        if (rc == ETIMEDOUT && slots_used >= AUTH_SECRET_CONCURRENT) {
            pthread_mutex_unlock(&slots_lock);
            return -1;
        }
    }
    slots_used++;
    if (slots_used > slots_used_max)
        slots_used_max = slots_used;
    pthread_mutex_unlock(&slots_lock);
    return 0;
}

static void slot_give(void)
{
    pthread_mutex_lock(&slots_lock);
    slots_used--;
    pthread_cond_signal(&slots_cv);
    pthread_mutex_unlock(&slots_lock);
}

unsigned auth_secret_in_flight(void)
{
    pthread_mutex_lock(&slots_lock);
    unsigned n = slots_used;
    pthread_mutex_unlock(&slots_lock);
    return n;
}

unsigned auth_secret_in_flight_max(void)
{
    pthread_mutex_lock(&slots_lock);
    unsigned n = slots_used_max;
    pthread_mutex_unlock(&slots_lock);
    return n;
}

void auth_secret_set_wait_ms(unsigned ms)
{
    pthread_mutex_lock(&slots_lock);
    slots_wait_ms = ms;
    pthread_mutex_unlock(&slots_lock);
}

/* scrypt of secret under p's parameters and salt into key, in a slot.
 * AUTH_SECRET_OK, AUTH_SECRET_BUSY or AUTH_SECRET_ERROR. */
static auth_secret_result derive(const char *secret, size_t len, const auth_secret_params *p,
                                 unsigned char key[AUTH_SECRET_KEY_LEN])
{
    /* What OpenSSL checks against maxmem: B (128*r*p) and V (128*r*(N+2)).
     * The parser's cost cap keeps this near 1 GiB at most. */
    uint64_t maxmem = 128u * (uint64_t)p->r * ((uint64_t)p->n + p->p + 2);

    if (slot_take() != 0)
        return AUTH_SECRET_BUSY;
    int ok = EVP_PBE_scrypt(secret, len, p->salt, p->salt_len, p->n, p->r, p->p, maxmem, key,
                            AUTH_SECRET_KEY_LEN);
    slot_give();
    return ok == 1 ? AUTH_SECRET_OK : AUTH_SECRET_ERROR;
}

/* ---- the stored text -------------------------------------------------- */

/* A decimal number in [1, max] without sign or leading zero, ended by '$'.
 * Returns the character after the '$', or NULL. */
static const char *parse_number(const char *s, uint32_t max, uint32_t *out)
{
    uint32_t v = 0;

    if (*s < '1' || *s > '9')
        return NULL;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (uint32_t)(*s - '0');
        if (v > max)
            return NULL; /* also stops before the value could wrap */
        s++;
    }
    if (*s != '$')
        return NULL;
    *out = v;
    return s + 1;
}

int auth_secret_parse(const char *stored, auth_secret_params *out)
{
    const char *s, *end;
    size_t len, got;

    if (stored == NULL || out == NULL)
        return -1;
    len = strnlen(stored, AUTH_SECRET_HASH_LEN);
    if (len == AUTH_SECRET_HASH_LEN || len < PREFIX_LEN || memcmp(stored, PREFIX, PREFIX_LEN) != 0)
        return -1;
    s = stored + PREFIX_LEN;
    if ((s = parse_number(s, AUTH_SECRET_N_MAX, &out->n)) == NULL ||
        (s = parse_number(s, AUTH_SECRET_R_MAX, &out->r)) == NULL ||
        (s = parse_number(s, AUTH_SECRET_P_MAX, &out->p)) == NULL)
        return -1;
    if (out->n < AUTH_SECRET_N_MIN || (out->n & (out->n - 1)) != 0)
        return -1;
    if ((uint64_t)out->n * out->r * out->p > AUTH_SECRET_COST_MAX)
        return -1;

    end = strchr(s, '$');
    if (end == NULL || (size_t)(end - s) < b64url_encoded_len(AUTH_SECRET_SALT_MIN) ||
        (size_t)(end - s) > b64url_encoded_len(AUTH_SECRET_SALT_MAX))
        return -1;
    if (b64url_decode(s, (size_t)(end - s), out->salt, sizeof out->salt, &got) != B64URL_OK ||
        got < AUTH_SECRET_SALT_MIN || got > AUTH_SECRET_SALT_MAX)
        return -1;
    out->salt_len = got;

    /* The key is the last field: exactly its length up to the NUL, so a
     * further '$' (an extra field) fails the decode. */
    s = end + 1;
    if (strlen(s) != KEY_TEXT_LEN ||
        b64url_decode(s, KEY_TEXT_LEN, out->key, sizeof out->key, &got) != B64URL_OK ||
        got != AUTH_SECRET_KEY_LEN)
        return -1;
    return 0;
}

size_t auth_secret_format(const auth_secret_params *in, char *out, size_t cap)
{
    char salt[AUTH_SECRET_HASH_LEN], key[AUTH_SECRET_HASH_LEN];

    if (out == NULL || cap == 0)
        return 0;
    out[0] = '\0';
    if (in == NULL || in->salt_len > sizeof in->salt ||
        b64url_encode(salt, sizeof salt, in->salt, in->salt_len) == 0 ||
        b64url_encode(key, sizeof key, in->key, sizeof in->key) == 0)
        return 0;
    int n = snprintf(out, cap, PREFIX "%u$%u$%u$%s$%s", (unsigned)in->n, (unsigned)in->r,
                     (unsigned)in->p, salt, key);
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

/* ---- the API ---------------------------------------------------------- */

auth_secret_result auth_secret_hash(const char *secret, char *out, size_t cap, char *err,
                                    size_t errlen)
{
    auth_secret_params p = {.n = HASH_N, .r = HASH_R, .p = HASH_P, .salt_len = HASH_SALT_LEN};
    auth_secret_result rc;
    size_t len;

    if (out != NULL && cap > 0)
        out[0] = '\0';
    if (secret == NULL || out == NULL) {
        err_set(err, errlen, "no secret or no output buffer");
        return AUTH_SECRET_ERROR;
    }
    len = strnlen(secret, AUTH_SECRET_MAX + 1);
    if (len > AUTH_SECRET_MAX) {
        err_set(err, errlen, "secret longer than %d bytes", AUTH_SECRET_MAX);
        return AUTH_SECRET_ERROR;
    }
    /* Our own text has a fixed length: a dry run with the zeroed salt and
     * key refuses a short buffer before a derivation is spent on it. */
    if (auth_secret_format(&p, out, cap) == 0) {
        err_set(err, errlen, "hash buffer of %zu bytes is too small", cap);
        return AUTH_SECRET_ERROR;
    }
    out[0] = '\0';
    if (RAND_bytes(p.salt, HASH_SALT_LEN) != 1) {
        err_set(err, errlen, "no randomness for the salt (RAND_bytes failed)");
        return AUTH_SECRET_ERROR;
    }
    rc = derive(secret, len, &p, p.key);
    if (rc == AUTH_SECRET_BUSY) {
        err_set(err, errlen, "busy: %d secret derivations already running", AUTH_SECRET_CONCURRENT);
    } else if (rc != AUTH_SECRET_OK) {
        err_set(err, errlen, "scrypt failed");
    } else if (auth_secret_format(&p, out, cap) == 0) {
        err_set(err, errlen, "hash buffer of %zu bytes is too small", cap);
        rc = AUTH_SECRET_ERROR;
    }
    OPENSSL_cleanse(&p, sizeof p);
    return rc;
}

auth_secret_result auth_secret_verify(const char *secret, const char *stored)
{
    auth_secret_params p;
    unsigned char key[AUTH_SECRET_KEY_LEN];
    auth_secret_result rc;
    size_t len;

    if (secret == NULL || stored == NULL)
        return AUTH_SECRET_MISMATCH;
    len = strnlen(secret, AUTH_SECRET_MAX + 1);
    if (len > AUTH_SECRET_MAX || auth_secret_parse(stored, &p) != 0)
        return AUTH_SECRET_MISMATCH;
    rc = derive(secret, len, &p, key);
    if (rc == AUTH_SECRET_OK)
        rc = CRYPTO_memcmp(key, p.key, sizeof key) == 0 ? AUTH_SECRET_MATCH : AUTH_SECRET_MISMATCH;
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(&p, sizeof p);
    return rc;
}

int auth_secret_is_hash(const char *stored)
{
    auth_secret_params p;
    return auth_secret_parse(stored, &p) == 0;
}
