/*
 * dtls — DTLS 1.2 over ICE with OpenSSL 3, for WebRTC (RFC 8827/8842).
 *
 * One identity per process: an ECDSA P-256 key and a self-signed
 * certificate whose SHA-256 fingerprint goes into every SDP. Each peer has
 * one dtls_conn. Datagrams come in through dtls_conn_input() and go out
 * through the `send` callback one record flight per datagram (a custom BIO
 * keeps datagram boundaries, which a memory BIO would lose). The remote
 * certificate is accepted only if its digest matches the fingerprint from
 * the remote SDP, in SHA-256, SHA-384 or SHA-512 (never SHA-1 or SHA-224);
 * until then no application data is delivered. Renegotiation is refused
 * (SSL_OP_NO_RENEGOTIATION): a stranger cannot make chatd redo handshakes.
 *
 * Threading: every call is safe from any thread (a mutex per connection
 * guards the SSL object). Callbacks are never invoked with that mutex held
 * except `send`, which must not call back into this connection.
 * Ownership: the caller owns the identity and each connection (the *_free
 * functions); free the identity only after its connections. Data passed in
 * is copied or consumed before the call returns.
 */
#ifndef CHATD_DTLS_H
#define CHATD_DTLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct dtls_identity dtls_identity;
typedef struct dtls_conn dtls_conn;

/* Creates the process certificate (valid 30 days). NULL + err on failure. */
dtls_identity *dtls_identity_new(char *err, size_t errlen);
void dtls_identity_free(dtls_identity *id);
/* SHA-256 digest of the certificate (32 bytes). */
const uint8_t *dtls_identity_fingerprint(const dtls_identity *id);

typedef struct {
    void (*send)(void *arg, const uint8_t *data, size_t len); /* one datagram out */
    void (*connected)(void *arg);                             /* handshake done, fingerprint ok */
    void (*data)(void *arg, const uint8_t *data, size_t len); /* one plaintext record */
    void (*failed)(void *arg, const char *why);               /* handshake or record failure */
    void (*closed)(void *arg);                                /* close_notify received */
} dtls_callbacks;

/* is_client: 1 = we send the ClientHello (a=setup:active). The remote
 * fingerprint is copied. NULL when out of memory or when remote_fp_alg is
 * not SHA-256 or stronger. */
dtls_conn *dtls_conn_new(dtls_identity *id, int is_client, const char *remote_fp_alg,
                         const uint8_t *remote_fp, size_t remote_fp_len, const dtls_callbacks *cb,
                         void *arg);
/* Client role: sends the first flight. No-op for the server role. */
void dtls_conn_start(dtls_conn *c);
/* Feeds one received datagram. */
void dtls_conn_input(dtls_conn *c, const uint8_t *data, size_t len);
/* Encrypts and sends application data; -1 before the handshake finished. */
int dtls_conn_write(dtls_conn *c, const uint8_t *data, size_t len);
/* Milliseconds until dtls_conn_handle_timeout() is due, or -1 for none. */
int dtls_conn_timeout_ms(dtls_conn *c);
void dtls_conn_handle_timeout(dtls_conn *c);
/* Sends close_notify (best effort). */
void dtls_conn_shutdown(dtls_conn *c);
int dtls_conn_is_connected(dtls_conn *c);
void dtls_conn_free(dtls_conn *c);

/* Compares an X509 DER digest (by SDP algorithm name) with `expected`.
 * Exposed for tests. Returns 1 on match; 0 for an algorithm weaker than
 * SHA-256, whatever the digest. */
int dtls_fingerprint_matches(const void *x509, const char *alg, const uint8_t *expected,
                             size_t expected_len);

#endif
