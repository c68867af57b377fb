/*
 * test_secret — unit tests for src/auth/secret (owner secrets and member
 * pins as scrypt hashes).
 *
 * Known answer: RFC 7914's third test vector ("pleaseletmein",
 * "SodiumChloride", N=16384, r=8, p=1; its first 32 bytes, PBKDF2 blocks
 * being independent of the output length) written as a stored text must
 * verify. Other stored texts with cheap parameters (N=1024, r=1) are built
 * here with OpenSSL directly, so the verifier is checked against an
 * independent derivation. Every malformed stored text must be a mismatch,
 * and must be refused before any derivation: the slot counter stays at 0.
 * The concurrency bound is checked with the module's test hooks.
 *
 * Criterion runs each test in its own process, so the slot counters and
 * the wait set by a test never carry over.
 */
#include <criterion/criterion.h>

#include "auth/secret.h"
#include "auth/secret_int.h"
#include "util/base64url.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/mem.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "torture.h"

static void setup(void)
{
    mem_install();
    log_set_level(LOGL_OFF);
}

/* A stored text for secret under the given parameters and salt, derived
 * here with OpenSSL (not through the module). */
static void make_stored(char *out, size_t cap, const char *secret, uint32_t n, uint32_t r,
                        uint32_t p, const char *salt, size_t salt_len)
{
    auth_secret_params prm = {.n = n, .r = r, .p = p, .salt_len = salt_len};
    memcpy(prm.salt, salt, salt_len);
    cr_assert_eq(EVP_PBE_scrypt(secret, strlen(secret), prm.salt, salt_len, n, r, p,
                                (uint64_t)256 * 1024 * 1024, prm.key, sizeof prm.key),
                 1);
    cr_assert_gt(auth_secret_format(&prm, out, cap), 0);
}

/* A cheap valid stored text (N=1024, r=1, p=1) for "pin". */
static void cheap_stored(char *out, size_t cap)
{
    make_stored(out, cap, "pin", 1024, 1, 1, "saltsalt", 8);
}

/* ---- hash and verify -------------------------------------------------- */

TestSuite(secret, .init = setup, .timeout = 60);

Test(secret, hash_then_verify)
{
    char h[AUTH_SECRET_HASH_LEN], err[128] = "";

    cr_assert_eq(auth_secret_hash("correct horse", h, sizeof h, err, sizeof err), AUTH_SECRET_OK,
                 "%s", err);
    cr_assert_eq(strncmp(h, "scrypt$16384$8$1$", 17), 0, "%s", h);
    /* 16-byte salt (22 characters) and 32-byte key (43). */
    cr_assert_eq(strlen(h), 17 + 22 + 1 + 43, "%s", h);
    cr_assert(auth_secret_is_hash(h));
    cr_assert_eq(auth_secret_verify("correct horse", h), AUTH_SECRET_MATCH);
    cr_assert_eq(auth_secret_verify("correct horsf", h), AUTH_SECRET_MISMATCH);
    cr_assert_eq(auth_secret_verify("correct hors", h), AUTH_SECRET_MISMATCH);
    cr_assert_eq(auth_secret_verify("", h), AUTH_SECRET_MISMATCH);
    cr_assert_eq(auth_secret_in_flight(), 0);
    cr_assert_eq(auth_secret_in_flight_max(), 1);
    check_leaks();
}

Test(secret, same_secret_hashes_differently)
{
    char a[AUTH_SECRET_HASH_LEN], b[AUTH_SECRET_HASH_LEN];
    auth_secret_params pa, pb;

    cr_assert_eq(auth_secret_hash("1234", a, sizeof a, NULL, 0), AUTH_SECRET_OK);
    cr_assert_eq(auth_secret_hash("1234", b, sizeof b, NULL, 0), AUTH_SECRET_OK);
    cr_assert_str_neq(a, b);
    cr_assert_eq(auth_secret_parse(a, &pa), 0);
    cr_assert_eq(auth_secret_parse(b, &pb), 0);
    cr_assert_neq(memcmp(pa.salt, pb.salt, 16), 0);
    cr_assert_neq(memcmp(pa.key, pb.key, 32), 0);
    cr_assert_eq(auth_secret_verify("1234", a), AUTH_SECRET_MATCH);
    cr_assert_eq(auth_secret_verify("1234", b), AUTH_SECRET_MATCH);
}

Test(secret, rfc7914_vector)
{
    static const unsigned char want[32] = {0x70, 0x23, 0xbd, 0xcb, 0x3a, 0xfd, 0x73, 0x48,
                                           0x46, 0x1c, 0x06, 0xcd, 0x81, 0xfd, 0x38, 0xeb,
                                           0xfd, 0xa8, 0xfb, 0xba, 0x90, 0x4f, 0x8e, 0x3e,
                                           0xa9, 0xb5, 0x43, 0xf6, 0x54, 0x5d, 0xa1, 0xf2};
    auth_secret_params p = {.n = 16384, .r = 8, .p = 1, .salt_len = 14};
    char stored[AUTH_SECRET_HASH_LEN];

    memcpy(p.salt, "SodiumChloride", 14);
    memcpy(p.key, want, sizeof want);
    cr_assert_gt(auth_secret_format(&p, stored, sizeof stored), 0);
    cr_assert_eq(auth_secret_verify("pleaseletmein", stored), AUTH_SECRET_MATCH, "%s", stored);
    cr_assert_eq(auth_secret_verify("pleaseletmeim", stored), AUTH_SECRET_MISMATCH);
}

Test(secret, empty_secret)
{
    char h[AUTH_SECRET_HASH_LEN];

    cr_assert_eq(auth_secret_hash("", h, sizeof h, NULL, 0), AUTH_SECRET_OK);
    cr_assert_eq(auth_secret_verify("", h), AUTH_SECRET_MATCH);
    cr_assert_eq(auth_secret_verify("a", h), AUTH_SECRET_MISMATCH);
    cr_assert_eq(auth_secret_verify(" ", h), AUTH_SECRET_MISMATCH);
}

Test(secret, max_length_secret)
{
    char s[AUTH_SECRET_MAX + 2], h[AUTH_SECRET_HASH_LEN], err[128] = "";

    memset(s, 'x', AUTH_SECRET_MAX);
    s[AUTH_SECRET_MAX] = '\0';
    cr_assert_eq(auth_secret_hash(s, h, sizeof h, err, sizeof err), AUTH_SECRET_OK, "%s", err);
    cr_assert_eq(auth_secret_verify(s, h), AUTH_SECRET_MATCH);
    s[AUTH_SECRET_MAX - 1] = 'y'; /* the last byte counts */
    cr_assert_eq(auth_secret_verify(s, h), AUTH_SECRET_MISMATCH);

    /* One byte more: refused by both, the verify without a derivation. */
    s[AUTH_SECRET_MAX - 1] = 'x';
    s[AUTH_SECRET_MAX] = 'x';
    s[AUTH_SECRET_MAX + 1] = '\0';
    unsigned before = auth_secret_in_flight_max();
    cr_assert_eq(auth_secret_verify(s, h), AUTH_SECRET_MISMATCH);
    cr_assert_eq(auth_secret_hash(s, h, sizeof h, err, sizeof err), AUTH_SECRET_ERROR);
    cr_assert(strstr(err, "longer than 256") != NULL, "%s", err);
    cr_assert_str_eq(h, "");
    cr_assert_eq(auth_secret_in_flight_max(), before);
}

Test(secret, hash_refuses_bad_arguments)
{
    char h[AUTH_SECRET_HASH_LEN], err[128] = "";

    cr_assert_eq(auth_secret_hash(NULL, h, sizeof h, err, sizeof err), AUTH_SECRET_ERROR);
    cr_assert_neq(err[0], '\0');
    cr_assert_eq(auth_secret_hash("x", NULL, 10, NULL, 0), AUTH_SECRET_ERROR);
    /* 83 characters need 84 bytes: 83 is refused before any derivation. */
    err[0] = '\0';
    cr_assert_eq(auth_secret_hash("x", h, 83, err, sizeof err), AUTH_SECRET_ERROR);
    cr_assert(strstr(err, "too small") != NULL, "%s", err);
    cr_assert_str_eq(h, "");
    cr_assert_eq(auth_secret_hash("x", h, 0, NULL, 0), AUTH_SECRET_ERROR);
    cr_assert_eq(auth_secret_in_flight_max(), 0);
    cr_assert_eq(auth_secret_hash("x", h, 84, NULL, 0), AUTH_SECRET_OK);
    cr_assert_eq(strlen(h), 83);
}

Test(secret, verify_null_arguments)
{
    char ok[AUTH_SECRET_HASH_LEN];
    cheap_stored(ok, sizeof ok);
    cr_assert_eq(auth_secret_verify(NULL, ok), AUTH_SECRET_MISMATCH);
    cr_assert_eq(auth_secret_verify("pin", NULL), AUTH_SECRET_MISMATCH);
    cr_assert_eq(auth_secret_verify(NULL, NULL), AUTH_SECRET_MISMATCH);
    cr_assert_eq(auth_secret_is_hash(NULL), 0);
    cr_assert_eq(auth_secret_parse(ok, NULL), -1);
    cr_assert_eq(auth_secret_in_flight_max(), 0);
    cr_assert_eq(auth_secret_verify("pin", ok), AUTH_SECRET_MATCH);
}

/* ---- the stored text -------------------------------------------------- */

Test(secret, parse_accepts_the_bounds)
{
    char s[AUTH_SECRET_HASH_LEN], t[AUTH_SECRET_HASH_LEN];
    auth_secret_params p = {.n = 1024, .r = 1, .p = 1, .salt_len = 8};
    static const struct {
        uint32_t n, r, p;
        size_t salt;
    } ok[] = {
        {1024, 1, 1, 8},     {1024, 16, 4, 64},  {16384, 8, 1, 16}, {1048576, 8, 1, 16},
        {1048576, 1, 4, 32}, {262144, 16, 2, 8}, {2048, 2, 3, 63},
    };

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        p.n = ok[i].n;
        p.r = ok[i].r;
        p.p = ok[i].p;
        p.salt_len = ok[i].salt;
        memset(p.salt, (int)i + 1, sizeof p.salt);
        memset(p.key, 0xa5, sizeof p.key);
        cr_assert_gt(auth_secret_format(&p, s, sizeof s), 0);
        cr_assert(auth_secret_is_hash(s), "%s", s);
        auth_secret_params q;
        cr_assert_eq(auth_secret_parse(s, &q), 0);
        cr_assert_eq(auth_secret_format(&q, t, sizeof t), strlen(s));
        cr_assert_str_eq(s, t);
    }
    /* The longest text accepted fits AUTH_SECRET_HASH_LEN with its NUL. */
    p.n = 1048576;
    p.r = 8;
    p.p = 1;
    p.salt_len = 64;
    cr_assert_eq(auth_secret_format(&p, s, sizeof s), AUTH_SECRET_HASH_LEN - 1);
    cr_assert(auth_secret_is_hash(s));
    cr_assert_eq(auth_secret_format(&p, s, 10), 0);
    cr_assert_str_eq(s, "");
}

/* Each must be refused by the parser: MISMATCH, is_hash 0, no derivation. */
static void refused(const char *stored)
{
    cr_assert_eq(auth_secret_is_hash(stored), 0, "accepted: %s", stored);
    cr_assert_eq(auth_secret_verify("pin", stored), AUTH_SECRET_MISMATCH, "%s", stored);
    cr_assert_eq(auth_secret_in_flight_max(), 0, "derived for: %s", stored);
}

Test(secret, malformed_stored_texts)
{
    char ok[AUTH_SECRET_HASH_LEN], buf[1024];
    const char *salt, *key;
    char head[64];

    cheap_stored(ok, sizeof ok);
    cr_assert(auth_secret_is_hash(ok));
    /* ok = "scrypt$1024$1$1$" SALT "$" KEY */
    salt = ok + strlen("scrypt$1024$1$1$");
    key = strrchr(ok, '$') + 1;
    cr_assert_eq(strlen(key), 43);
    snprintf(head, sizeof head, "%.*s", (int)(key - 1 - salt), salt); /* the salt text */

    static const char *const params[] = {
        /* prefix */
        "bcrypt$1024$1$1$", "SCRYPT$1024$1$1$", "scrypt1024$1$1$", "$scrypt$1024$1$1$",
        " scrypt$1024$1$1$", "scrypt$$1024$1$1$",
        /* N */
        "scrypt$01024$1$1$", "scrypt$+1024$1$1$", "scrypt$-1024$1$1$", "scrypt$1000$1$1$",
        "scrypt$1025$1$1$", "scrypt$512$1$1$", "scrypt$0$1$1$", "scrypt$2097152$1$1$",
        "scrypt$4294967296$1$1$", "scrypt$99999999999999999999$1$1$", "scrypt$$1$1$",
        "scrypt$1024 $1$1$", "scrypt$0x400$1$1$", "scrypt$1e3$1$1$", "scrypt$1024.0$1$1$",
        "scrypt$3072$1$1$", "scrypt$1048577$1$1$",
        /* r */
        "scrypt$1024$0$1$", "scrypt$1024$17$1$", "scrypt$1024$01$1$", "scrypt$1024$$1$",
        "scrypt$1024$-1$1$", "scrypt$1024$4294967297$1$",
        /* p */
        "scrypt$1024$1$0$", "scrypt$1024$1$5$", "scrypt$1024$1$01$", "scrypt$1024$1$$",
        /* missing fields */
        "scrypt$1024$1$", "scrypt$1024$", "scrypt$",
        /* N*r*p over 2^23: 2 GiB, 1 GiB with p=2 */
        "scrypt$1048576$16$1$", "scrypt$1048576$8$2$", "scrypt$524288$16$2$",
        "scrypt$1048576$16$4$"};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        snprintf(buf, sizeof buf, "%s%s$%s", params[i], head, key);
        refused(buf);
    }

    static const char *const salts[] = {
        "",             /* no salt */
        "c2FsdHNhbH",   /* 7 bytes */
        "c2FsdHNhbHQ=", /* padding */
        "c2FsdHNhbHR",  /* non-zero stray bits */
        "c2Fsd+NhbHQ",
        "c2Fsd/NhbHQ", /* plain base64's characters */
        "c2Fsd NhbHQ",
        "c2FsdH\nhbHQ",  /* whitespace */
        "c2FsdHNhbHQxc", /* 4n+1 characters */
        /* 65 bytes */
        "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhY"
        "Q",
    };
    for (size_t i = 0; i < sizeof salts / sizeof salts[0]; i++) {
        snprintf(buf, sizeof buf, "scrypt$1024$1$1$%s$%s", salts[i], key);
        refused(buf);
    }

    static const char *const keys[] = {
        "",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",       /* 31 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",     /* 33 bytes */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",      /* stray bits */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",      /* padding */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",      /* plain base64 */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$",      /* an empty field after it */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$",     /* one more field */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ",     /* trailing space */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",    /* trailing newline */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$AAAA", /* an extra field */
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        snprintf(buf, sizeof buf, "scrypt$1024$1$1$%s$%s", head, keys[i]);
        refused(buf);
    }
    /* The all-zero key itself is well-formed (and a mismatch by value). */
    snprintf(buf, sizeof buf, "scrypt$1024$1$1$%s$%s", head,
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    cr_assert(auth_secret_is_hash(buf));

    /* Every truncation of a valid text, and the text with an extra field. */
    for (size_t n = 0; n < strlen(ok); n++) {
        snprintf(buf, sizeof buf, "%.*s", (int)n, ok);
        refused(buf);
    }
    snprintf(buf, sizeof buf, "%s$", ok);
    refused(buf);
    snprintf(buf, sizeof buf, "%s$%s", ok, key);
    refused(buf);
    /* Salt and key swapped around an extra '$'. */
    snprintf(buf, sizeof buf, "scrypt$1024$1$1$%s$%s$%s", head, head, key);
    refused(buf);
    /* Longer than AUTH_SECRET_HASH_LEN: refused unread beyond it. */
    memset(buf, 'A', sizeof buf - 1);
    buf[sizeof buf - 1] = '\0';
    memcpy(buf, "scrypt$1024$1$1$", 16);
    refused(buf);

    /* And the valid one still matches. */
    cr_assert_eq(auth_secret_verify("pin", ok), AUTH_SECRET_MATCH);
    cr_assert_eq(auth_secret_verify("pim", ok), AUTH_SECRET_MISMATCH);
    check_leaks();
}

Test(secret, verify_against_openssl)
{
    char s[AUTH_SECRET_HASH_LEN];
    auth_secret_params p;

    make_stored(s, sizeof s, "hunter2", 2048, 2, 3, "0123456789abcdef0123456789abcdef", 32);
    cr_assert_eq(auth_secret_verify("hunter2", s), AUTH_SECRET_MATCH);
    cr_assert_eq(auth_secret_verify("hunter3", s), AUTH_SECRET_MISMATCH);
    /* One bit of the stored key flipped: a mismatch. */
    cr_assert_eq(auth_secret_parse(s, &p), 0);
    p.key[31] ^= 1;
    cr_assert_gt(auth_secret_format(&p, s, sizeof s), 0);
    cr_assert_eq(auth_secret_verify("hunter2", s), AUTH_SECRET_MISMATCH);
}

/* ---- the concurrency bound -------------------------------------------- */

typedef struct {
    pthread_barrier_t *start;
    const char *secret;
    const char *stored;
    auth_secret_result rc;
} verifier;

static void *verify_main(void *arg)
{
    verifier *v = arg;
    if (v->start != NULL)
        pthread_barrier_wait(v->start);
    v->rc = auth_secret_verify(v->secret, v->stored);
    return NULL;
}

Test(secret, six_verifiers_two_derivations)
{
    enum { THREADS = 6 };
    char h[AUTH_SECRET_HASH_LEN];
    pthread_t t[THREADS];
    verifier v[THREADS];
    pthread_barrier_t start;

    auth_secret_set_wait_ms(5000); /* slow builds (ASan, valgrind): nobody busy */
    cr_assert_eq(auth_secret_hash("room-owner", h, sizeof h, NULL, 0), AUTH_SECRET_OK);
    pthread_barrier_init(&start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        v[i] = (verifier){&start, i % 2 ? "room-owner" : "room-owneR", h, AUTH_SECRET_ERROR};
        cr_assert_eq(pthread_create(&t[i], NULL, verify_main, &v[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    /* Six derivations of tens of ms each, two at a time: well inside the
     * 5 s wait, so every one ran and none came back busy. */
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(v[i].rc, i % 2 ? AUTH_SECRET_MATCH : AUTH_SECRET_MISMATCH, "thread %d: %d", i,
                     v[i].rc);
    cr_assert_eq(auth_secret_in_flight_max(), AUTH_SECRET_CONCURRENT);
    cr_assert_eq(auth_secret_in_flight(), 0);
}

Test(secret, busy_when_every_slot_stays_taken)
{
    char slow[AUTH_SECRET_HASH_LEN], cheap[AUTH_SECRET_HASH_LEN], h[AUTH_SECRET_HASH_LEN];
    char err[128] = "";
    pthread_t t[AUTH_SECRET_CONCURRENT];
    verifier v[AUTH_SECRET_CONCURRENT];

    /* N=2^17, r=8: 128 MiB and a few hundred ms per derivation. */
    make_stored(slow, sizeof slow, "slow", 131072, 8, 1, "slowsaltslowsalt", 16);
    cheap_stored(cheap, sizeof cheap);
    for (int i = 0; i < AUTH_SECRET_CONCURRENT; i++) {
        v[i] = (verifier){NULL, "slow", slow, AUTH_SECRET_ERROR};
        cr_assert_eq(pthread_create(&t[i], NULL, verify_main, &v[i]), 0);
    }
    int64_t until = clock_mono_ms() + 5000;
    while (auth_secret_in_flight() < AUTH_SECRET_CONCURRENT && clock_mono_ms() < until)
        usleep(200);
    cr_assert_eq(auth_secret_in_flight(), AUTH_SECRET_CONCURRENT);

    auth_secret_set_wait_ms(20);
    int64_t t0 = clock_mono_ms();
    cr_assert_eq(auth_secret_verify("pin", cheap), AUTH_SECRET_BUSY);
    cr_assert_eq(auth_secret_hash("pin", h, sizeof h, err, sizeof err), AUTH_SECRET_BUSY);
    int64_t waited = clock_mono_ms() - t0;
    cr_assert(strstr(err, "busy") != NULL, "%s", err);
    cr_assert_str_eq(h, "");
    cr_assert(waited >= 40 && waited < 1000, "waited %lld ms", (long long)waited);
    /* A malformed text is still answered at once, busy or not. */
    cr_assert_eq(auth_secret_verify("pin", "scrypt$1024$1$1$x$y"), AUTH_SECRET_MISMATCH);

    for (int i = 0; i < AUTH_SECRET_CONCURRENT; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(v[i].rc, AUTH_SECRET_MATCH);
    }
    cr_assert_eq(auth_secret_in_flight(), 0);
    cr_assert_eq(auth_secret_in_flight_max(), AUTH_SECRET_CONCURRENT);
    /* Slots free again: the short wait is no obstacle. */
    cr_assert_eq(auth_secret_verify("pin", cheap), AUTH_SECRET_MATCH);
}

Test(secret, a_waiter_gets_the_next_free_slot)
{
    char slow[AUTH_SECRET_HASH_LEN], cheap[AUTH_SECRET_HASH_LEN];
    pthread_t t[AUTH_SECRET_CONCURRENT];
    verifier v[AUTH_SECRET_CONCURRENT];

    auth_secret_set_wait_ms(5000); /* longer than a slow derivation */
    make_stored(slow, sizeof slow, "slow", 65536, 8, 1, "slowsaltslowsalt", 16);
    cheap_stored(cheap, sizeof cheap);
    for (int i = 0; i < AUTH_SECRET_CONCURRENT; i++) {
        v[i] = (verifier){NULL, "slow", slow, AUTH_SECRET_ERROR};
        cr_assert_eq(pthread_create(&t[i], NULL, verify_main, &v[i]), 0);
    }
    int64_t until = clock_mono_ms() + 5000;
    while (auth_secret_in_flight() < AUTH_SECRET_CONCURRENT && clock_mono_ms() < until)
        usleep(200);
    cr_assert_eq(auth_secret_in_flight(), AUTH_SECRET_CONCURRENT);
    /* The default wait (2 s) outlasts a slow derivation: this one waits,
     * then runs. */
    cr_assert_eq(auth_secret_verify("pin", cheap), AUTH_SECRET_MATCH);
    for (int i = 0; i < AUTH_SECRET_CONCURRENT; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(v[i].rc, AUTH_SECRET_MATCH);
    }
    cr_assert_eq(auth_secret_in_flight_max(), AUTH_SECRET_CONCURRENT);
}
