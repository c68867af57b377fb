/* Unit tests: the DTLS identity, the fingerprint check, and a full DTLS
 * handshake between two dtls_conn objects wired back to back in memory
 * (both roles), including a fingerprint mismatch. */
#include "rtc/dtls.h"

#include <criterion/criterion.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <string.h>

typedef struct {
    dtls_conn *self;
    dtls_conn *other;
    int connected;
    int failed;
    char why[256];
    char got[64];
    size_t got_len;
    int closed;
} side;

/* Datagrams are queued and delivered by pump(), outside the sender's
 * lock, as the network would. */
#define QMAX 256
static struct {
    dtls_conn *to;
    uint8_t data[2048];
    size_t len;
} queue[QMAX];
static int q_head, q_tail;

static void s_send(void *arg, const uint8_t *data, size_t len)
{
    side *s = arg;
    if (s->other == NULL || len > sizeof queue[0].data || (q_tail + 1) % QMAX == q_head)
        return;
    queue[q_tail].to = s->other;
    memcpy(queue[q_tail].data, data, len);
    queue[q_tail].len = len;
    q_tail = (q_tail + 1) % QMAX;
}

static void pump(void)
{
    for (int guard = 0; q_head != q_tail && guard < 1000; guard++) {
        int i = q_head;
        q_head = (q_head + 1) % QMAX;
        dtls_conn_input(queue[i].to, queue[i].data, queue[i].len);
    }
}

static void s_connected(void *arg) { ((side *)arg)->connected = 1; }
static void s_data(void *arg, const uint8_t *data, size_t len)
{
    side *s = arg;
    memcpy(s->got, data, len < sizeof s->got ? len : sizeof s->got);
    s->got_len = len;
}
static void s_failed(void *arg, const char *why)
{
    side *s = arg;
    s->failed = 1;
    snprintf(s->why, sizeof s->why, "%s", why);
}
static void s_closed(void *arg) { ((side *)arg)->closed = 1; }

static const dtls_callbacks cbs = {s_send, s_connected, s_data, s_failed, s_closed};

static void handshake(int a_is_client, int corrupt_fp)
{
    char err[256];
    dtls_identity *ia = dtls_identity_new(err, sizeof err);
    dtls_identity *ib = dtls_identity_new(err, sizeof err);
    cr_assert_not_null(ia, "%s", err);
    cr_assert_not_null(ib, "%s", err);
    uint8_t fpb[32];
    memcpy(fpb, dtls_identity_fingerprint(ib), 32);
    if (corrupt_fp)
        fpb[5] ^= 1;
    side a = {0}, b = {0};
    a.self = dtls_conn_new(ia, a_is_client, "sha-256", fpb, 32, &cbs, &a);
    b.self = dtls_conn_new(ib, !a_is_client, "sha-256", dtls_identity_fingerprint(ia), 32, &cbs, &b);
    a.other = b.self;
    b.other = a.self;
    cr_assert_not_null(a.self);
    cr_assert_not_null(b.self);
    cr_assert_eq(dtls_conn_write(a.self, (const uint8_t *)"x", 1), -1, "no data before handshake");
    q_head = q_tail = 0;
    dtls_conn_start(a.self);
    dtls_conn_start(b.self);
    pump();
    pump();
    if (corrupt_fp) {
        cr_assert(a.failed, "a must refuse b's certificate");
        cr_assert(strstr(a.why, "fingerprint") != NULL, "%s", a.why);
        cr_assert_not(a.connected);
    } else {
        cr_assert(a.connected && b.connected, "a=%d b=%d %s %s", a.connected, b.connected, a.why,
                  b.why);
        cr_assert_eq(dtls_conn_timeout_ms(a.self), -1);
        cr_assert_gt(dtls_conn_write(a.self, (const uint8_t *)"hello", 5), 0);
        pump();
        cr_assert_eq(b.got_len, 5);
        cr_assert_eq(memcmp(b.got, "hello", 5), 0);
        cr_assert_gt(dtls_conn_write(b.self, (const uint8_t *)"back", 4), 0);
        pump();
        cr_assert_eq(a.got_len, 4);
        dtls_conn_shutdown(a.self);
        pump();
        cr_assert(b.closed, "close_notify reaches the other side");
        cr_assert_eq(dtls_conn_write(a.self, (const uint8_t *)"x", 1), -1);
    }
    a.other = b.other = NULL;
    dtls_conn_free(a.self);
    dtls_conn_free(b.self);
    dtls_identity_free(ia);
    dtls_identity_free(ib);
}

Test(dtls, handshake_a_client) { handshake(1, 0); }
Test(dtls, handshake_a_server) { handshake(0, 0); }
Test(dtls, fingerprint_mismatch_refused_as_client) { handshake(1, 1); }
Test(dtls, fingerprint_mismatch_refused_as_server) { handshake(0, 1); }

Test(dtls, identity_fingerprint_is_sha256_of_cert)
{
    char err[256];
    dtls_identity *id = dtls_identity_new(err, sizeof err);
    cr_assert_not_null(id);
    const uint8_t *fp = dtls_identity_fingerprint(id);
    int nonzero = 0;
    for (int i = 0; i < 32; i++)
        nonzero |= fp[i];
    cr_assert(nonzero);
    dtls_identity_free(id);
    dtls_identity_free(NULL);
}

Test(dtls, fingerprint_matches_by_algorithm)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_pubkey(x, k);
    X509_sign(x, k, EVP_sha256());
    uint8_t d256[32], d1[20];
    unsigned int l = 0;
    X509_digest(x, EVP_sha256(), d256, &l);
    X509_digest(x, EVP_sha1(), d1, &l);
    cr_assert(dtls_fingerprint_matches(x, "sha-256", d256, 32));
    cr_assert(dtls_fingerprint_matches(x, "SHA-256", d256, 32));
    cr_assert(dtls_fingerprint_matches(x, "sha-1", d1, 20));
    cr_assert_not(dtls_fingerprint_matches(x, "sha-1", d256, 32));
    cr_assert_not(dtls_fingerprint_matches(x, "sha-256", d256, 31));
    d256[0] ^= 0x80;
    cr_assert_not(dtls_fingerprint_matches(x, "sha-256", d256, 32));
    cr_assert_not(dtls_fingerprint_matches(x, "md5", d256, 16));
    cr_assert_not(dtls_fingerprint_matches(NULL, "sha-256", d256, 32));
    X509_free(x);
    EVP_PKEY_free(k);
}
