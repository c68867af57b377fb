/* Unit tests: the DTLS identity, the fingerprint check, and a full DTLS
 * handshake between two dtls_conn objects wired back to back in memory
 * (both roles), including a fingerprint mismatch. */
#include "rtc/dtls.h"

#include <criterion/criterion.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <string.h>
#include <unistd.h>

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
    b.self =
        dtls_conn_new(ib, !a_is_client, "sha-256", dtls_identity_fingerprint(ia), 32, &cbs, &b);
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
    cr_assert_not(dtls_fingerprint_matches(x, "sha-1", d1, 20), "SHA-1 is never accepted");
    cr_assert_not(dtls_fingerprint_matches(x, "sha-1", d256, 32));
    cr_assert_not(dtls_fingerprint_matches(x, "sha-256", d256, 31));
    d256[0] ^= 0x80;
    cr_assert_not(dtls_fingerprint_matches(x, "sha-256", d256, 32));
    cr_assert_not(dtls_fingerprint_matches(x, "md5", d256, 16));
    cr_assert_not(dtls_fingerprint_matches(NULL, "sha-256", d256, 32));
    X509_free(x);
    EVP_PKEY_free(k);
}

Test(dtls, fingerprint_matches_every_sdp_algorithm)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_pubkey(x, k);
    X509_sign(x, k, EVP_sha256());
    const struct {
        const char *alg;
        const EVP_MD *md;
    } algs[] = {{"SHA-256", EVP_sha256()}, {"sha-384", EVP_sha384()}, {"Sha-512", EVP_sha512()}};
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        uint8_t d[EVP_MAX_MD_SIZE];
        unsigned int l = 0;
        cr_assert_eq(X509_digest(x, algs[i].md, d, &l), 1);
        cr_assert(dtls_fingerprint_matches(x, algs[i].alg, d, l), "%s", algs[i].alg);
        d[l - 1] ^= 1;
        cr_assert_not(dtls_fingerprint_matches(x, algs[i].alg, d, l), "%s", algs[i].alg);
    }
    X509_free(x);
    EVP_PKEY_free(k);
}

Test(dtls, conn_refuses_a_fingerprint_it_cannot_hold)
{
    char err[256];
    dtls_identity *id = dtls_identity_new(err, sizeof err);
    cr_assert_not_null(id, "%s", err);
    uint8_t fp[65] = {0};
    side s = {0};
    cr_assert_null(dtls_conn_new(id, 1, "sha-256", fp, 65, &cbs, &s), "65 bytes");
    cr_assert_null(dtls_conn_new(id, 1, "sha-256-and-more", fp, 32, &cbs, &s), "a long name");
    cr_assert_null(dtls_conn_new(id, 1, "sha-1", fp, 20, &cbs, &s), "SHA-1 is too weak");
    cr_assert_null(dtls_conn_new(id, 1, "sha-224", fp, 28, &cbs, &s), "SHA-224 is too weak");
    dtls_conn *c = dtls_conn_new(id, 1, "sha-512", fp, 64, &cbs, &s);
    cr_assert_not_null(c, "64 bytes (sha-512) fit");
    dtls_conn_free(c);
    dtls_conn_free(NULL);
    dtls_identity_free(id);
}

typedef struct {
    dtls_identity *ia, *ib;
    side a, b;
} pair;

/* a is the client; nothing is sent yet. */
static void pair_new(pair *p)
{
    char err[256];
    memset(p, 0, sizeof *p);
    p->ia = dtls_identity_new(err, sizeof err);
    p->ib = dtls_identity_new(err, sizeof err);
    cr_assert(p->ia && p->ib, "%s", err);
    p->a.self =
        dtls_conn_new(p->ia, 1, "sha-256", dtls_identity_fingerprint(p->ib), 32, &cbs, &p->a);
    p->b.self =
        dtls_conn_new(p->ib, 0, "sha-256", dtls_identity_fingerprint(p->ia), 32, &cbs, &p->b);
    cr_assert(p->a.self && p->b.self);
    p->a.other = p->b.self;
    p->b.other = p->a.self;
    q_head = q_tail = 0;
}

/* pair_new, then the whole handshake. */
static void pair_connect(pair *p)
{
    pair_new(p);
    dtls_conn_start(p->a.self);
    pump();
    pump();
    cr_assert(p->a.connected && p->b.connected, "%s %s", p->a.why, p->b.why);
}

static void pair_free(pair *p)
{
    p->a.other = p->b.other = NULL;
    q_head = q_tail = 0;
    dtls_conn_free(p->a.self);
    dtls_conn_free(p->b.self);
    dtls_identity_free(p->ia);
    dtls_identity_free(p->ib);
}

/* The client's first flight is lost: its timer is due in about 100 ms,
 * and handling it sends the flight again, which completes the handshake. */
Test(dtls, lost_first_flight_is_sent_again)
{
    pair p;
    pair_new(&p);
    cr_assert_eq(dtls_conn_timeout_ms(p.a.self), -1, "no timer before the first flight");
    dtls_conn_start(p.a.self);
    cr_assert_neq(q_head, q_tail, "a ClientHello was sent");
    q_head = q_tail; /* lost */
    int ms = dtls_conn_timeout_ms(p.a.self);
    cr_assert(ms >= 0 && ms <= 100, "first retransmission after %d ms", ms);
    dtls_conn_handle_timeout(p.a.self); /* not due yet: nothing happens */
    cr_assert_eq(q_head, q_tail);
    usleep((useconds_t)(ms + 20) * 1000);
    dtls_conn_handle_timeout(p.a.self);
    cr_assert_neq(q_head, q_tail, "the flight was sent again");
    cr_assert_not(p.a.failed);
    pump();
    pump();
    cr_assert(p.a.connected && p.b.connected, "%s %s", p.a.why, p.b.why);
    pair_free(&p);
}

/* A record altered on the way is dropped (DTLS discards what fails its
 * integrity check) and the association goes on: an injected datagram
 * cannot end a session. Data after a shutdown is ignored. */
Test(dtls, altered_record_is_dropped)
{
    pair p;
    pair_connect(&p);
    cr_assert_gt(dtls_conn_write(p.a.self, (const uint8_t *)"first", 5), 0);
    cr_assert_neq(q_head, q_tail);
    queue[q_head].data[queue[q_head].len - 1] ^= 0x55;
    pump();
    cr_assert_eq(p.b.got_len, 0, "the altered record was not delivered");
    cr_assert_not(p.b.failed, "%s", p.b.why);
    /* a forged record of the current epoch, long enough to be checked */
    uint8_t junk[13 + 40] = {23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 40};
    memset(junk + 13, 7, 40);
    dtls_conn_input(p.b.self, junk, sizeof junk);
    cr_assert_not(p.b.failed, "%s", p.b.why);
    static const uint8_t garbage[] = {1, 2, 3, 4, 5};
    dtls_conn_input(p.b.self, garbage, sizeof garbage);
    cr_assert_not(p.b.failed, "%s", p.b.why);
    cr_assert_gt(dtls_conn_write(p.a.self, (const uint8_t *)"second", 6), 0);
    pump();
    cr_assert_eq(p.b.got_len, 6);
    cr_assert_eq(memcmp(p.b.got, "second", 6), 0);
    cr_assert(dtls_conn_is_connected(p.b.self));
    dtls_conn_shutdown(p.b.self);
    cr_assert_not(dtls_conn_is_connected(p.b.self));
    p.b.got_len = 0;
    cr_assert_gt(dtls_conn_write(p.a.self, (const uint8_t *)"third", 5), 0);
    pump();
    cr_assert_eq(p.b.got_len, 0, "nothing is read after shutdown");
    pair_free(&p);
}

/* A forged record of the current epoch shorter than the AEAD's expansion
 * (AES-GCM: 24 bytes) made OpenSSL 3.0 fail the read with an empty error
 * queue, and the association ended: one spoofed datagram of 14 to 36 bytes
 * ended a session. RFC 6347 4.1.2.1: invalid records are dropped silently,
 * as the altered and the long forged record above are. Every short length,
 * and the first valid length, leave the association working. */
Test(dtls, short_forged_record_does_not_end_the_association)
{
    for (unsigned len = 0; len <= 24; len++) {
        pair p;
        pair_connect(&p);
        uint8_t junk[13 + 24] = {23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, (uint8_t)len};
        dtls_conn_input(p.b.self, junk, 13 + len);
        cr_assert_not(p.b.failed, "a %u-byte record ended it: %s", len, p.b.why);
        cr_assert_gt(dtls_conn_write(p.a.self, (const uint8_t *)"after", 5), 0);
        pump();
        cr_assert_eq(p.b.got_len, 5, "after a %u-byte record", len);
        pair_free(&p);
    }
}

/* ---- renegotiation: refused (issue 9, item 10) ---- */

/* A plain OpenSSL DTLS server on memory BIOs, for a peer chatd does not
 * control: it asks chatd's client to renegotiate. */
typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out;
    EVP_PKEY *key;
    X509 *cert;
    int handshakes; /* SSL_CB_HANDSHAKE_DONE seen */
} raw_server;

static raw_server *g_raw;

static int accept_any(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

static void raw_info(const SSL *ssl, int where, int ret)
{
    (void)ssl;
    (void)ret;
    if (where & SSL_CB_HANDSHAKE_DONE)
        g_raw->handshakes++;
}

/* chatd's client sends: into the raw server's input. */
static void raw_send(void *arg, const uint8_t *data, size_t len)
{
    (void)arg;
    BIO_write(g_raw->in, data, (int)len);
}

/* Runs the raw server and carries its output to chatd's client. */
static void raw_pump(raw_server *r, dtls_conn *client)
{
    for (int round = 0; round < 20; round++) {
        char buf[256];
        if (SSL_is_init_finished(r->ssl))
            SSL_read(r->ssl, buf, sizeof buf); /* processes alerts and handshakes */
        else
            SSL_do_handshake(r->ssl);
        ERR_clear_error();
        uint8_t out[16384];
        int n = BIO_read(r->out, out, sizeof out);
        if (n > 0)
            dtls_conn_input(client, out, (size_t)n);
        else if (BIO_ctrl_pending(r->in) == 0)
            break;
    }
}

Test(dtls, renegotiation_requested_by_the_peer_is_refused)
{
    char err[256];
    raw_server r = {0};
    g_raw = &r;
    r.key = EVP_EC_gen("P-256");
    r.cert = X509_new();
    cr_assert(r.key && r.cert);
    X509_set_version(r.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(r.cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(r.cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(r.cert), 3600);
    X509_set_pubkey(r.cert, r.key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(r.cert), "CN", MBSTRING_ASC,
                               (const unsigned char *)"raw", -1, -1, 0);
    X509_set_issuer_name(r.cert, X509_get_subject_name(r.cert));
    cr_assert(X509_sign(r.cert, r.key, EVP_sha256()) > 0);
    uint8_t fp[32];
    unsigned int fplen = 0;
    X509_digest(r.cert, EVP_sha256(), fp, &fplen);

    r.ctx = SSL_CTX_new(DTLS_server_method());
    cr_assert(r.ctx && SSL_CTX_use_certificate(r.ctx, r.cert) == 1 &&
              SSL_CTX_use_PrivateKey(r.ctx, r.key) == 1);
    SSL_CTX_set_verify(r.ctx, SSL_VERIFY_PEER, accept_any);
    r.ssl = SSL_new(r.ctx);
    r.in = BIO_new(BIO_s_mem());
    r.out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(r.in, -1);
    BIO_set_mem_eof_return(r.out, -1);
    SSL_set_bio(r.ssl, r.in, r.out);
    SSL_set_options(r.ssl, SSL_OP_NO_QUERY_MTU);
    SSL_set_mtu(r.ssl, 1400);
    SSL_set_accept_state(r.ssl);
    SSL_set_info_callback(r.ssl, raw_info);

    dtls_identity *id = dtls_identity_new(err, sizeof err);
    cr_assert_not_null(id, "%s", err);
    side c = {0};
    const dtls_callbacks rcbs = {raw_send, s_connected, s_data, s_failed, s_closed};
    c.self = dtls_conn_new(id, 1, "sha-256", fp, 32, &rcbs, &c);
    cr_assert_not_null(c.self);
    dtls_conn_start(c.self);
    raw_pump(&r, c.self);
    cr_assert(c.connected, "handshake with a plain OpenSSL server: %s", c.why);
    cr_assert_eq(r.handshakes, 1);

    /* The server asks for a new handshake (HelloRequest). */
    cr_assert_eq(SSL_renegotiate(r.ssl), 1);
    SSL_do_handshake(r.ssl);
    ERR_clear_error();
    for (int i = 0; i < 5; i++)
        raw_pump(&r, c.self);
    /* The server counts writing its HelloRequest as a handshake done (2);
     * a renegotiation chatd took part in would make 3 and clear pending. */
    cr_assert(SSL_renegotiate_pending(r.ssl) && r.handshakes == 2,
              "chatd's side renegotiated (%d handshakes, pending %d)", r.handshakes,
              (int)SSL_renegotiate_pending(r.ssl));

    dtls_conn_free(c.self);
    dtls_identity_free(id);
    SSL_free(r.ssl);
    SSL_CTX_free(r.ctx);
    X509_free(r.cert);
    EVP_PKEY_free(r.key);
}
