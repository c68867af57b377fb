/*
 * dtls — see dtls.h.
 *
 * Why a custom write BIO: OpenSSL writes a handshake flight as several
 * records; through a memory BIO they would come out as one byte run and we
 * could not tell where datagrams end. The BIO below turns every BIO_write
 * into one datagram. Reads use a memory BIO fed one datagram at a time,
 * which OpenSSL then consumes whole.
 */
#include "rtc/dtls.h"

#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DTLS_MTU 1200

struct dtls_identity {
    EVP_PKEY *key;
    X509 *cert;
    SSL_CTX *ctx;
    uint8_t fingerprint[32];
};

struct dtls_conn {
    pthread_mutex_t lock;
    SSL *ssl;
    BIO *rbio;
    int is_client;
    int handshake_done;
    int failed;
    int connected;
    size_t min_record; /* shortest valid encrypted record; set at handshake */
    char remote_alg[16];
    uint8_t remote_fp[64];
    size_t remote_fp_len;
    dtls_callbacks cb;
    void *arg;
};

/* ---- the datagram-preserving write BIO ---- */

static BIO_METHOD *out_method;
static pthread_once_t out_method_once = PTHREAD_ONCE_INIT;

static int out_write(BIO *b, const char *data, int len)
{
    dtls_conn *c = BIO_get_data(b);
    if (c != NULL && len > 0)
        c->cb.send(c->arg, (const uint8_t *)data, (size_t)len);
    return len;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_DGRAM_QUERY_MTU:
    case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
        return DTLS_MTU;
    case BIO_CTRL_WPENDING:
    case BIO_CTRL_PENDING:
        return 0;
    default:
        return 0;
    }
}

static int out_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_out_method(void)
{
    out_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "chatd-dtls-out");
    if (out_method == NULL)
        return;
    BIO_meth_set_write(out_method, out_write);
    BIO_meth_set_ctrl(out_method, out_ctrl);
    BIO_meth_set_create(out_method, out_create);
}

/* ---- identity ---- */

/* Any certificate is acceptable to OpenSSL: WebRTC certificates are
 * self-signed. The real check is the SDP fingerprint after the handshake. */
static int accept_any_certificate(int ok, X509_STORE_CTX *ctx)
{
    (void)ok, (void)ctx;
    return 1;
}

static void openssl_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    err_set(err, errlen, "%s%s%s", what, e ? ": " : "", buf);
    ERR_clear_error();
}

dtls_identity *dtls_identity_new(char *err, size_t errlen)
{
    pthread_once(&out_method_once, make_out_method);
    if (out_method == NULL) {
        err_set(err, errlen, "cannot create the DTLS BIO method");
        return NULL;
    }
    dtls_identity *id = mem_calloc(1, sizeof *id);
    if (id == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    id->key = EVP_EC_gen("P-256");
    if (id->key == NULL) {
        openssl_error(err, errlen, "cannot generate the DTLS key");
        goto fail;
    }
    id->cert = X509_new();
    if (id->cert == NULL)
        goto ssl_fail;
    uint8_t serial[8];
    if (RAND_bytes(serial, sizeof serial) != 1)
        goto ssl_fail;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    if (bn == NULL)
        goto ssl_fail;
    BN_clear_bit(bn, 63); /* keep the serial positive */
    int serial_ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(id->cert)) != NULL;
    BN_free(bn);
    if (!serial_ok || X509_set_version(id->cert, 2) != 1)
        goto ssl_fail;
    /* Valid from a day ago (clock skew) for 30 days: a process restarts far sooner. */
    if (X509_gmtime_adj(X509_getm_notBefore(id->cert), -86400) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(id->cert), 30L * 86400) == NULL)
        goto ssl_fail;
    X509_NAME *name = X509_get_subject_name(id->cert);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"chatd", -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(id->cert, name) != 1 || X509_set_pubkey(id->cert, id->key) != 1 ||
        X509_sign(id->cert, id->key, EVP_sha256()) == 0)
        goto ssl_fail;
    unsigned int fplen = 0;
    if (X509_digest(id->cert, EVP_sha256(), id->fingerprint, &fplen) != 1 || fplen != 32)
        goto ssl_fail;

    id->ctx = SSL_CTX_new(DTLS_method());
    if (id->ctx == NULL)
        goto ssl_fail;
    if (SSL_CTX_set_min_proto_version(id->ctx, DTLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate(id->ctx, id->cert) != 1 ||
        SSL_CTX_use_PrivateKey(id->ctx, id->key) != 1 || SSL_CTX_check_private_key(id->ctx) != 1 ||
        SSL_CTX_set_cipher_list(id->ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1)
        goto ssl_fail;
    SSL_CTX_set_verify(id->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       accept_any_certificate);
    /* No renegotiation: a WebRTC peer never needs it, and each one costs a
     * full handshake a stranger could ask for again and again. */
    SSL_CTX_set_options(id->ctx, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_read_ahead(id->ctx, 1);
    /* An idle peer keeps no record buffers (about 34 KiB of its RSS). */
    SSL_CTX_set_mode(id->ctx, SSL_MODE_RELEASE_BUFFERS);
    return id;

ssl_fail:
    openssl_error(err, errlen, "cannot create the DTLS certificate");
fail:
    dtls_identity_free(id);
    return NULL;
}

void dtls_identity_free(dtls_identity *id)
{
    if (id == NULL)
        return;
    SSL_CTX_free(id->ctx);
    X509_free(id->cert);
    EVP_PKEY_free(id->key);
    mem_free(id);
}

const uint8_t *dtls_identity_fingerprint(const dtls_identity *id) { return id->fingerprint; }

/* ---- connections ---- */

/* SHA-256 or stronger only (sdp.c refuses weaker ones first): a SHA-1
 * fingerprint would let a certificate with a colliding digest pass. */
static const EVP_MD *digest_for(const char *alg)
{
    if (strcasecmp(alg, "sha-256") == 0)
        return EVP_sha256();
    if (strcasecmp(alg, "sha-384") == 0)
        return EVP_sha384();
    if (strcasecmp(alg, "sha-512") == 0)
        return EVP_sha512();
    return NULL;
}

int dtls_fingerprint_matches(const void *x509, const char *alg, const uint8_t *expected,
                             size_t expected_len)
{
    const EVP_MD *md = digest_for(alg);
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (md == NULL || x509 == NULL || X509_digest(x509, md, digest, &len) != 1)
        return 0;
    return len == expected_len && CRYPTO_memcmp(digest, expected, len) == 0;
}

/* DTLS retransmission: first after 100 ms, then doubling up to 3 s. A
 * flight lost on a LAN (typically the first one, sent the moment our side
 * of ICE is up and dropped by a peer whose side is not yet) then costs
 * 100 ms, not OpenSSL's default of 1 s; browsers start at 50 ms. */
static unsigned int retransmit_after_us(SSL *ssl, unsigned int previous_us)
{
    (void)ssl;
    if (previous_us == 0)
        return 100 * 1000;
    return previous_us >= 1500 * 1000 ? 3000 * 1000 : previous_us * 2;
}

dtls_conn *dtls_conn_new(dtls_identity *id, int is_client, const char *remote_fp_alg,
                         const uint8_t *remote_fp, size_t remote_fp_len, const dtls_callbacks *cb,
                         void *arg)
{
    if (remote_fp_len > 64 || strlen(remote_fp_alg) >= 16 || digest_for(remote_fp_alg) == NULL)
        return NULL; /* a weak algorithm could never be accepted: fail now */
    dtls_conn *c = mem_calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->is_client = is_client;
    c->cb = *cb;
    c->arg = arg;
    strcpy(c->remote_alg, remote_fp_alg);
    memcpy(c->remote_fp, remote_fp, remote_fp_len);
    c->remote_fp_len = remote_fp_len;
    c->ssl = SSL_new(id->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(out_method);
    if (c->ssl == NULL || c->rbio == NULL || wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(wbio);
        SSL_free(c->ssl);
        pthread_mutex_destroy(&c->lock);
        mem_free(c);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_mem_eof_return(c->rbio, -1); /* empty = "try again", not EOF */
    BIO_set_data(wbio, c);
    SSL_set_bio(c->ssl, c->rbio, wbio);
    SSL_set_options(c->ssl, SSL_OP_NO_QUERY_MTU);
    SSL_set_mtu(c->ssl, DTLS_MTU);
    DTLS_set_link_mtu(c->ssl, DTLS_MTU);
    DTLS_set_timer_cb(c->ssl, retransmit_after_us);
    if (is_client) {
        /* Offer a DTLS-SRTP profile as browsers do, although a data channel
         * uses no SRTP: some servers (Janus) drop a handshake without one.
         * As the server we do not ask for it, so nothing else changes. */
        SSL_set_tlsext_use_srtp(c->ssl, "SRTP_AES128_CM_SHA1_80");
        SSL_set_connect_state(c->ssl);
    } else
        SSL_set_accept_state(c->ssl);
    return c;
}

enum conn_event { EV_NONE, EV_CONNECTED, EV_FAILED, EV_CLOSED };

/* True when the datagram holds an encrypted record (epoch > 0) shorter
 * than the cipher's expansion. OpenSSL 3.0 does not drop such a record as
 * RFC 6347 §4.1.2.7 asks of invalid records: its read fails with an empty
 * error queue and the connection is dead, so one spoofed 16-byte datagram
 * would end a session. It never reaches OpenSSL. */
static int has_short_record(const dtls_conn *c, const uint8_t *d, size_t len)
{
    size_t off = 0;
    while (off + DTLS1_RT_HEADER_LENGTH <= len) {
        unsigned epoch = (unsigned)d[off + 3] << 8 | d[off + 4];
        size_t rlen = (size_t)d[off + 11] << 8 | d[off + 12];
        if (epoch != 0 && rlen < c->min_record)
            return 1;
        off += DTLS1_RT_HEADER_LENGTH + rlen;
    }
    return 0;
}

/* Runs the handshake one step; called with the lock held. */
static enum conn_event step_handshake(dtls_conn *c, char *why, size_t whylen)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->handshake_done = 1;
        X509 *peer = SSL_get1_peer_certificate(c->ssl);
        int ok = dtls_fingerprint_matches(peer, c->remote_alg, c->remote_fp, c->remote_fp_len);
        X509_free(peer);
        if (!ok) {
            err_set(why, whylen, "remote certificate does not match the SDP fingerprint");
            c->failed = 1;
            return EV_FAILED;
        }
        c->connected = 1;
        /* The AEAD's fixed expansion: AES-GCM sends an 8-byte explicit
         * nonce and a 16-byte tag, ChaCha20-Poly1305 the tag alone. */
        const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
        c->min_record =
            cipher && SSL_CIPHER_get_cipher_nid(cipher) == NID_chacha20_poly1305 ? 16 : 24;
        return EV_CONNECTED;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return EV_NONE;
    unsigned long code = ERR_get_error();
    char buf[200] = "handshake failed";
    if (code)
        ERR_error_string_n(code, buf, sizeof buf);
    ERR_clear_error();
    err_set(why, whylen, "DTLS handshake failed: %s", buf);
    c->failed = 1;
    return EV_FAILED;
}

static void fire(dtls_conn *c, enum conn_event ev, const char *why)
{
    if (ev == EV_CONNECTED)
        c->cb.connected(c->arg);
    else if (ev == EV_FAILED)
        c->cb.failed(c->arg, why);
    else if (ev == EV_CLOSED)
        c->cb.closed(c->arg);
}

void dtls_conn_start(dtls_conn *c)
{
    char why[256] = "";
    pthread_mutex_lock(&c->lock);
    enum conn_event ev = EV_NONE;
    if (c->is_client && !c->handshake_done && !c->failed)
        ev = step_handshake(c, why, sizeof why);
    pthread_mutex_unlock(&c->lock);
    fire(c, ev, why);
}

void dtls_conn_input(dtls_conn *c, const uint8_t *data, size_t len)
{
    char why[256] = "";
    uint8_t buf[16384 + 256];
    pthread_mutex_lock(&c->lock);
    if (c->failed || len > INT32_MAX) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    if (c->connected && has_short_record(c, data, len)) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    BIO_write(c->rbio, data, (int)len);
    if (!c->handshake_done) {
        enum conn_event ev = step_handshake(c, why, sizeof why);
        if (ev != EV_NONE) {
            pthread_mutex_unlock(&c->lock);
            fire(c, ev, why);
            if (ev == EV_FAILED)
                return;
            pthread_mutex_lock(&c->lock);
        }
        if (!c->connected) {
            pthread_mutex_unlock(&c->lock);
            return;
        }
    }
    /* Application records; a datagram may carry several. */
    for (;;) {
        if (c->failed)
            break;
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n > 0) {
            pthread_mutex_unlock(&c->lock);
            c->cb.data(c->arg, buf, (size_t)n);
            pthread_mutex_lock(&c->lock);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        enum conn_event ev = EV_FAILED;
        if (e == SSL_ERROR_ZERO_RETURN) {
            ev = EV_CLOSED;
        } else {
            unsigned long code = ERR_get_error();
            char ebuf[200] = "read failed";
            if (code)
                ERR_error_string_n(code, ebuf, sizeof ebuf);
            snprintf(why, sizeof why, "DTLS record error: %s", ebuf);
        }
        ERR_clear_error();
        c->failed = 1;
        pthread_mutex_unlock(&c->lock);
        fire(c, ev, why);
        return;
    }
    pthread_mutex_unlock(&c->lock);
}

int dtls_conn_write(dtls_conn *c, const uint8_t *data, size_t len)
{
    int r = -1;
    pthread_mutex_lock(&c->lock);
    if (c->connected && !c->failed && len <= INT32_MAX) {
        r = SSL_write(c->ssl, data, (int)len);
        if (r <= 0) {
            ERR_clear_error();
            r = -1;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

int dtls_conn_timeout_ms(dtls_conn *c)
{
    struct timeval tv;
    int ms = -1;
    pthread_mutex_lock(&c->lock);
    if (!c->handshake_done && !c->failed && DTLSv1_get_timeout(c->ssl, &tv) == 1)
        ms = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
    pthread_mutex_unlock(&c->lock);
    return ms;
}

void dtls_conn_handle_timeout(dtls_conn *c)
{
    char why[64] = "";
    enum conn_event ev = EV_NONE;
    pthread_mutex_lock(&c->lock);
    if (!c->handshake_done && !c->failed && DTLSv1_handle_timeout(c->ssl) < 0) {
        snprintf(why, sizeof why, "DTLS handshake timed out");
        c->failed = 1;
        ev = EV_FAILED;
        ERR_clear_error();
    }
    pthread_mutex_unlock(&c->lock);
    fire(c, ev, why);
}

void dtls_conn_shutdown(dtls_conn *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->connected && !c->failed) {
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    c->failed = 1; /* nothing more in or out */
    pthread_mutex_unlock(&c->lock);
}

int dtls_conn_is_connected(dtls_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int r = c->connected && !c->failed;
    pthread_mutex_unlock(&c->lock);
    return r;
}

void dtls_conn_free(dtls_conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl); /* frees both BIOs */
    pthread_mutex_destroy(&c->lock);
    mem_free(c);
}
