/*
 * tls — the HTTPS certificate chain and private key of the HTTP server
 * (--tls-cert, --tls-key), loaded from PEM files with GnuTLS (the TLS
 * library Debian's libmicrohttpd is built with) and replaced on reload
 * without stopping the server.
 *
 * How a reload reaches connections: the server hands libmicrohttpd a
 * certificate callback (MHD_OPTION_HTTPS_CERT_CALLBACK, GnuTLS's retrieve
 * function) instead of a fixed certificate. Each accepted connection takes
 * a reference to the credentials current at accept (http_tls_acquire) and
 * its handshake is answered from them; http_tls_reload builds new
 * credentials from the files and swaps the current pointer under a mutex.
 * Connections already open keep theirs (GnuTLS holds pointers into them for
 * the session's life), new ones get the new ones, and the old credentials
 * are freed when their last connection closes (http_tls_release). A reload
 * that fails (a file missing, not PEM, a key that is not the
 * certificate's) changes nothing: the previous credentials stay current.
 *
 * Threading: acquire and release from any thread (libmicrohttpd's
 * workers); load, reload and free from one thread (main, on SIGHUP).
 * Ownership: the caller owns the http_tls (http_tls_free, after the server
 * that uses it is stopped); an acquired http_tls_creds is the acquirer's
 * reference until it releases it.
 */
#ifndef CHATD_HTTP_TLS_H
#define CHATD_HTTP_TLS_H

#include <stddef.h>

typedef struct http_tls http_tls;
typedef struct http_tls_creds http_tls_creds;

/* Reads the certificate chain (PEM, leaf first) at cert_path and the
 * private key (PEM, unencrypted) at key_path and checks that the key is the
 * leaf certificate's. NULL with one line naming the file in err otherwise. */
http_tls *http_tls_load(const char *cert_path, const char *key_path, char *err, size_t errlen);

/* Reads both files again; on success new connections get the new
 * credentials and 0 is returned. -1 with err set when they cannot be used:
 * the previous credentials stay in place. */
int http_tls_reload(http_tls *t, char *err, size_t errlen);

/* One line on the current certificate, for the log: its subject, SHA-256
 * fingerprint and expiry ("..., EXPIRED" when past it). */
void http_tls_describe(http_tls *t, char *out, size_t cap);

/* A reference to the current credentials (never NULL for a loaded t). */
http_tls_creds *http_tls_acquire(http_tls *t);
/* Drops a reference (NULL is a no-op); the last one frees. */
void http_tls_release(http_tls_creds *c);

/* The chain and key of c, for the server's certificate callback: *pcert,
 * *n and *key point into c (valid while the reference is held). */
struct gnutls_pcert_st;
struct gnutls_privkey_st;
void http_tls_creds_get(const http_tls_creds *c, struct gnutls_pcert_st **pcert, unsigned *n,
                        struct gnutls_privkey_st **key);

void http_tls_free(http_tls *t);

#endif
