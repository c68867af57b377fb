/*
 * test_allocfail_ssl — allocation-failure injection through OpenSSL too.
 *
 * test_allocfail injects failures into chatd's own and jansson's
 * allocations. Here OpenSSL's allocator is routed through util/mem as well
 * (CRYPTO_set_mem_functions, before OpenSSL allocates anything in the
 * test's process), so the Nth allocation may be one of OpenSSL's: inside
 * key generation, certificate signing, the DTLS handshake, ECDSA signing
 * and verification (src/auth/token.c calls OpenSSL directly), the STUN
 * HMAC. These are the failure paths of src/rtc/dtls.c, src/auth/keys.c,
 * src/auth/token.c and src/rtc/stun.c that nothing else can reach.
 *
 * The loop is torture.h's: N = 1, 2, ... until a run meets no injected
 * failure; each run ends in a clean error (a NULL with a reason, a failed
 * handshake reported through the failed callback, or a handshake that
 * simply does not finish) or in a checked success; under ASan every loop
 * is leak-checked (see LEAK_CHECK_EVERY). The run with no failure must
 * succeed.
 */
#include <criterion/criterion.h>

#include "auth/keys.h"
#include "auth/token.h"
#include "rtc/dtls.h"
#include "rtc/stun.h"
#include "util/log.h"
#include "util/mem.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scratch.h"
#include "torture.h"

/* The DTLS and key loops run thousands of times and LeakSanitizer's check
 * stops the process for a whole-heap scan, so there it runs every 100 runs
 * and after the last: a leak still fails the test, named to within 100
 * values of N. The token loops (about 150 runs) check after every run. */
#define LEAK_CHECK_EVERY 100

static void *ssl_alloc(size_t n, const char *file, int line)
{
    (void)file, (void)line;
    return mem_alloc(n);
}

static void *ssl_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file, (void)line;
    if (n == 0) { /* OpenSSL's own realloc frees in this case */
        mem_free(p);
        return NULL;
    }
    return mem_realloc(p, n);
}

static void ssl_free(void *p, const char *file, int line)
{
    (void)file, (void)line;
    mem_free(p);
}

/* OpenSSL takes a new allocator only before its first allocation, so the
 * hook goes in before main (and before Criterion forks the tests). */
static int hooked;

__attribute__((constructor(101))) static void hook_openssl(void)
{
    hooked = CRYPTO_set_mem_functions(ssl_alloc, ssl_realloc, ssl_free);
}

static void setup(void)
{
    cr_assert_eq(hooked, 1, "OpenSSL allocated before main: cannot route it through util/mem");
    mem_install();
    log_set_level(getenv("CHATD_TEST_LOG") ? LOGL_DEBUG : LOGL_OFF);
}

TestSuite(allocfail_ssl, .init = setup, .timeout = 600);

/* ---- DTLS: identity, then a handshake in memory, data, close ------------- */

typedef struct side {
    dtls_conn *self;
    struct side *other;
    int connected, failed, closed;
    char why[256];
    size_t got_len;
} side;

/* Datagrams wait in a queue and are delivered by pump(), as a network
 * would, outside the sender's call. */
#define QMAX 64
static struct {
    side *to;
    uint8_t data[2048];
    size_t len;
} queue[QMAX];
static int q_head, q_tail;

static void s_send(void *arg, const uint8_t *data, size_t len)
{
    side *s = arg;
    if (s->other == NULL || len > sizeof queue[0].data || (q_tail + 1) % QMAX == q_head)
        return; /* a lost datagram: the handshake then just does not finish */
    queue[q_tail].to = s->other;
    memcpy(queue[q_tail].data, data, len);
    queue[q_tail].len = len;
    q_tail = (q_tail + 1) % QMAX;
}

static void pump(void)
{
    for (int guard = 0; q_head != q_tail && guard < 200; guard++) {
        int i = q_head;
        q_head = (q_head + 1) % QMAX;
        if (queue[i].to->self)
            dtls_conn_input(queue[i].to->self, queue[i].data, queue[i].len);
    }
}

static void s_connected(void *arg) { ((side *)arg)->connected = 1; }
static void s_data(void *arg, const uint8_t *data, size_t len)
{
    (void)data;
    ((side *)arg)->got_len = len;
}
static void s_failed(void *arg, const char *why)
{
    side *s = arg;
    s->failed = 1;
    cr_assert(why != NULL && why[0] != '\0', "a failure says why");
    snprintf(s->why, sizeof s->why, "%s", why);
}
static void s_closed(void *arg) { ((side *)arg)->closed = 1; }

static const dtls_callbacks cbs = {s_send, s_connected, s_data, s_failed, s_closed};

static int op_identity(void *ctx)
{
    (void)ctx;
    char err[256] = "";
    dtls_identity *id = dtls_identity_new(err, sizeof err);
    if (id == NULL) {
        cr_assert_neq(err[0], '\0');
        return -1;
    }
    dtls_identity_free(id);
    return 0;
}

typedef struct {
    dtls_identity *ia, *ib;
    int a_is_client;
} dtls_ctx;

static int op_handshake(void *ctx)
{
    dtls_ctx *d = ctx;
    side a = {0}, b = {0};
    a.other = &b;
    b.other = &a;
    q_head = q_tail = 0;
    a.self = dtls_conn_new(d->ia, d->a_is_client, "sha-256", dtls_identity_fingerprint(d->ib), 32,
                           &cbs, &a);
    b.self = dtls_conn_new(d->ib, !d->a_is_client, "sha-256", dtls_identity_fingerprint(d->ia), 32,
                           &cbs, &b);
    int rc = -1;
    if (a.self && b.self) {
        dtls_conn_start(a.self);
        dtls_conn_start(b.self);
        for (int i = 0; i < 4 && !(a.connected && b.connected); i++) {
            pump();
            /* a flight lost to a failed allocation is sent again on timeout */
            if (!(a.connected && b.connected)) {
                dtls_conn_handle_timeout(a.self);
                dtls_conn_handle_timeout(b.self);
            }
        }
        if (a.connected && b.connected && dtls_conn_write(a.self, (const uint8_t *)"hi", 2) > 0) {
            pump();
            if (b.got_len == 2) {
                dtls_conn_shutdown(a.self);
                pump();
                rc = 0;
            }
        }
    }
    a.other = b.other = NULL;
    q_head = q_tail = 0;
    dtls_conn_free(a.self);
    dtls_conn_free(b.self);
    return rc;
}

Test(allocfail_ssl, dtls_identity)
{
    torture_ex("dtls identity", op_identity, NULL, LEAK_CHECK_EVERY);
}

Test(allocfail_ssl, dtls_handshake)
{
    char err[256];
    dtls_ctx d = {0};
    d.ia = dtls_identity_new(err, sizeof err);
    d.ib = dtls_identity_new(err, sizeof err);
    cr_assert(d.ia && d.ib, "%s", err);
    d.a_is_client = 1;
    torture_ex("dtls handshake", op_handshake, &d, LEAK_CHECK_EVERY);
    dtls_identity_free(d.ia);
    dtls_identity_free(d.ib);
    check_leaks();
}

/* ---- keys and tokens ------------------------------------------------------ */

#define ISS "http://127.0.0.1:1/"
#define NOW ((time_t)1795000000)

static char key_dir[64];

/* A key file is written and synced on creation: on tmpfs that costs
 * nothing, and this loop creates thousands. */
static void make_key_dir(void) { scratch_dir_make_tmpfs(key_dir, sizeof key_dir, "allocfail-ssl"); }

static void remove_key_dir(void) { scratch_dir_remove(key_dir); }

static int op_keys(void *ctx)
{
    (void)ctx;
    static unsigned long run;
    char path[128], err[300] = "";
    snprintf(path, sizeof path, "%s/k%lu/key.pem", key_dir, ++run);
    auth_keys *k = auth_keys_load_or_create(path, err, sizeof err); /* creates */
    if (k == NULL) {
        cr_assert_neq(err[0], '\0');
        return -1;
    }
    auth_keys *loaded = auth_keys_load_or_create(path, err, sizeof err); /* loads */
    char *jwks = auth_keys_jwks_json(k);
    int rc = loaded && jwks ? 0 : -1;
    if (loaded)
        cr_assert_str_eq(auth_keys_kid(loaded), auth_keys_kid(k), "the same key loads back");
    else
        cr_assert_neq(err[0], '\0', "a failed load says why");
    mem_free(jwks);
    auth_keys_free(loaded);
    auth_keys_free(k);
    return rc;
}

static int op_issue(void *ctx)
{
    auth_keys *k = ctx;
    char err[300] = "", *tok = NULL;
    auth_claims_in in = {.iss = ISS,
                         .sub = "7",
                         .name = "N",
                         .email = "e@x",
                         .preferred_username = "u",
                         .ttl_seconds = 60,
                         .now = NOW};
    if (auth_token_issue(k, &in, &tok, err, sizeof err) != 0) {
        cr_assert_null(tok);
        cr_assert_neq(err[0], '\0', "a failed issue says why");
        return -1;
    }
    mem_fail_at(0); /* the check below is not under test */
    auth_claims c;
    cr_assert_eq(auth_token_verify(k, tok, ISS, NOW, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.sub, "7");
    auth_claims_clear(&c);
    mem_free(tok);
    return 0;
}

typedef struct {
    auth_keys *keys;
    char *token;
} verify_ctx;

static int op_verify(void *ctx)
{
    verify_ctx *v = ctx;
    char err[300] = "";
    auth_claims c;
    if (auth_token_verify(v->keys, v->token, ISS, NOW, &c, err, sizeof err) != 0) {
        cr_assert_null(c.sub);
        cr_assert_neq(err[0], '\0', "a failed verify says why");
        return TORTURE_ERROR;
    }
    cr_assert_str_eq(c.sub, "7");
    auth_claims_clear(&c);
    return TORTURE_OK;
}

Test(allocfail_ssl, token_issue)
{
    char err[300];
    auth_keys *k = auth_keys_generate(err, sizeof err);
    cr_assert_not_null(k, "%s", err);
    torture("token issue (ES256 signing through OpenSSL)", op_issue, k);
    auth_keys_free(k);
    check_leaks();
}

/* ECDSA verification through OpenSSL: every error path of
 * auth_token_verify that an allocation can take, leak-checked. */
Test(allocfail_ssl, token_verify)
{
    char err[300];
    verify_ctx v = {0};
    v.keys = auth_keys_generate(err, sizeof err);
    cr_assert_not_null(v.keys, "%s", err);
    auth_claims_in in = {.iss = ISS,
                         .sub = "7",
                         .name = "N",
                         .email = "e@x",
                         .preferred_username = "u",
                         .ttl_seconds = 60,
                         .now = NOW};
    cr_assert_eq(auth_token_issue(v.keys, &in, &v.token, err, sizeof err), 0, "%s", err);
    torture("token verify (ECDSA through OpenSSL)", op_verify, &v);
    mem_free(v.token);
    auth_keys_free(v.keys);
    check_leaks();
}

/* Tokens auth_token_verify must refuse, each for its own reason; with
 * allocations failing on the way a refusal may give another reason (a
 * failed ECDSA check is "bad signature"), but it is still a refusal, and
 * leaks nothing. */
typedef struct {
    auth_keys *keys;
    char *forged, *expired, *foreign;
    char *mine;
} refused_ctx;

static int refused(const auth_keys *k, const char *tok, const char *iss, time_t now,
                   const char *want)
{
    char err[300] = "";
    auth_claims c;
    cr_assert_neq(auth_token_verify(k, tok, iss, now, &c, err, sizeof err), 0, "%s", want);
    cr_assert_null(c.sub);
    cr_assert_neq(err[0], '\0', "a refusal says why");
    return strcmp(err, want) == 0 ? TORTURE_OK : TORTURE_ERROR;
}

static int op_verify_refused(void *ctx)
{
    refused_ctx *r = ctx;
    int rc = TORTURE_OK;
    rc |= refused(r->keys, r->forged, ISS, NOW, "bad signature");
    rc |= refused(r->keys, r->mine, ISS, NOW + 3600, "token expired");
    rc |= refused(r->keys, r->mine, "http://elsewhere/", NOW, "wrong issuer");
    rc |= refused(r->keys, r->foreign, ISS, NOW, "unknown kid");
    return rc ? TORTURE_ERROR : TORTURE_OK;
}

Test(allocfail_ssl, token_verify_refusals)
{
    char err[300];
    refused_ctx r = {0};
    auth_keys *other = auth_keys_generate(err, sizeof err);
    r.keys = auth_keys_generate(err, sizeof err);
    cr_assert(r.keys && other, "%s", err);
    auth_claims_in in = {.iss = ISS,
                         .sub = "7",
                         .name = "N",
                         .email = "e@x",
                         .preferred_username = "u",
                         .ttl_seconds = 60,
                         .now = NOW};
    cr_assert_eq(auth_token_issue(r.keys, &in, &r.mine, err, sizeof err), 0, "%s", err);
    cr_assert_eq(auth_token_issue(other, &in, &r.foreign, err, sizeof err), 0, "%s", err);
    r.forged = mem_strdup(r.mine);
    cr_assert_not_null(r.forged);
    /* the first signature byte: changes R, keeps the base64url length */
    char *sig = strrchr(r.forged, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    torture("token verify refusals", op_verify_refused, &r);
    mem_free(r.forged);
    mem_free(r.mine);
    mem_free(r.foreign);
    auth_keys_free(other);
    auth_keys_free(r.keys);
    check_leaks();
}

Test(allocfail_ssl, keys_create_load)
{
    make_key_dir();
    torture_ex("keys create + load + jwks", op_keys, NULL, LEAK_CHECK_EVERY);
    remove_key_dir();
}

/* ---- STUN: MESSAGE-INTEGRITY written and checked (HMAC-SHA1) -------------- */

static const uint8_t STUN_KEY[] = "VOkJxbRl1RmTxUk/WvJxBt";

/* A failed HMAC fails stun_finish (never a message with a wrong MAC) and
 * makes stun_check_integrity say 0 (never a pass). */
static int op_stun(void *ctx)
{
    (void)ctx;
    static const uint8_t txid[STUN_TXID_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    uint8_t buf[STUN_MAX_MESSAGE_BYTES];
    stun_writer w;
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_REQUEST, txid);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, "abcd:efgh", 9);
    int n = stun_finish(&w, STUN_KEY, sizeof STUN_KEY - 1);
    if (n < 0) {
        cr_assert(w.overflow, "a failed stun_finish marks the writer");
        return TORTURE_ERROR;
    }
    stun_msg m;
    char err[128];
    cr_assert_eq(stun_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    return stun_check_integrity(buf, (size_t)n, &m, STUN_KEY, sizeof STUN_KEY - 1) == 1
               ? TORTURE_OK
               : TORTURE_ERROR;
}

Test(allocfail_ssl, stun_integrity)
{
    /* OpenSSL's providers are loaded once per process, outside the loop. */
    cr_assert_eq(op_stun(NULL), TORTURE_OK);
    torture("stun integrity (HMAC-SHA1 through OpenSSL)", op_stun, NULL);
}
