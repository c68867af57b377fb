/*
 * tls — see tls.h.
 *
 * Why a reference count rather than one fixed certificate in
 * libmicrohttpd (MHD_OPTION_HTTPS_MEM_CERT): that one is read once, at
 * daemon start, and changing it would mean a new daemon, so a reload would
 * drop every connection and briefly close the port. With the certificate
 * callback the daemon never changes; only the credentials behind a pointer
 * do. GnuTLS keeps the pointers the callback returned for the whole session
 * (retrieve_function2: the application owns them), so credentials may be
 * freed only when no connection that took them is left: each connection
 * holds a reference from accept to close. Files are small and reloads rare,
 * so a mutex around "take the current pointer and count it" is all the
 * synchronisation needed.
 */
#include "http/tls.h"

#include "util/err.h"
#include "util/fdio.h"
#include "util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A certificate or key file larger than this is not one. */
#define TLS_FILE_MAX (1024 * 1024)
/* Certificates in one chain file (leaf and intermediates). */
#define TLS_CHAIN_MAX 16

struct http_tls_creds {
    atomic_int refs;
    gnutls_pcert_st certs[TLS_CHAIN_MAX];
    unsigned n_certs;
    gnutls_privkey_t key;
    char about[512]; /* http_tls_describe's line */
};

struct http_tls {
    char *cert_path, *key_path;
    pthread_mutex_t lock; /* guards current */
    http_tls_creds *current;
};

/* The whole file at path into a mem_alloc'd buffer; -1 with err set. */
static int read_file(const char *path, const char *what, gnutls_datum_t *out, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        err_set(err, errlen, "cannot read the TLS %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size > TLS_FILE_MAX) {
        err_set(err, errlen, "the TLS %s %s is not a regular file of 1 byte to 1 MiB", what, path);
        close(fd);
        return -1;
    }
    unsigned char *buf = mem_alloc((size_t)st.st_size + 1);
    size_t got = buf ? fdio_read_full(fd, buf, (size_t)st.st_size) : 0;
    close(fd);
    if (buf == NULL || got == 0) {
        err_set(err, errlen, "cannot read the TLS %s %s: %s", what, path,
                buf ? "short read" : "out of memory");
        mem_free(buf);
        return -1;
    }
    buf[got] = '\0';
    out->data = buf;
    out->size = (unsigned)got;
    return 0;
}

static void creds_free(http_tls_creds *c)
{
    if (c == NULL)
        return;
    for (unsigned i = 0; i < c->n_certs; i++)
        gnutls_pcert_deinit(&c->certs[i]);
    if (c->key)
        gnutls_privkey_deinit(c->key);
    mem_free(c);
}

/* "CN=…, sha256 AB:CD:…, valid until 2027-01-01 00:00 UTC" of the leaf. */
static void describe_leaf(http_tls_creds *c)
{
    gnutls_x509_crt_t crt;
    char dn[256] = "?", fp[3 * 32] = "";
    unsigned char digest[32];
    size_t dl = sizeof digest, dnl = sizeof dn;
    time_t until = 0;
    if (gnutls_x509_crt_init(&crt) == 0) {
        if (gnutls_x509_crt_import(crt, &c->certs[0].cert, GNUTLS_X509_FMT_DER) == 0) {
            if (gnutls_x509_crt_get_dn(crt, dn, &dnl) != 0)
                snprintf(dn, sizeof dn, "?");
            until = gnutls_x509_crt_get_expiration_time(crt);
        }
        gnutls_x509_crt_deinit(crt);
    }
    if (gnutls_fingerprint(GNUTLS_DIG_SHA256, &c->certs[0].cert, digest, &dl) == 0)
        for (size_t i = 0; i < dl; i++)
            snprintf(fp + 3 * i, sizeof fp - 3 * i, "%02X%s", digest[i], i + 1 < dl ? ":" : "");
    char when[64] = "?";
    struct tm tm;
    if (until > 0 && gmtime_r(&until, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
    snprintf(c->about, sizeof c->about, "%s, sha256 %s, valid until %s%s", dn[0] ? dn : "(no DN)",
             fp, when, until > 0 && until < time(NULL) ? ", EXPIRED" : "");
}

/* Both files into new credentials with one reference; NULL + err. */
static http_tls_creds *creds_load(const char *cert_path, const char *key_path, char *err,
                                  size_t errlen)
{
    gnutls_datum_t cert = {0}, key = {0};
    gnutls_pubkey_t pub = NULL;
    http_tls_creds *c = mem_calloc(1, sizeof *c);
    if (c == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&c->refs, 1);
    if (read_file(cert_path, "certificate", &cert, err, errlen) < 0 ||
        read_file(key_path, "key", &key, err, errlen) < 0)
        goto fail;
    unsigned n = TLS_CHAIN_MAX;
    int rc = gnutls_pcert_list_import_x509_raw(c->certs, &n, &cert, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || n == 0) {
        err_set(err, errlen, "the TLS certificate %s holds no usable PEM certificate chain (%s)",
                cert_path, rc < 0 ? gnutls_strerror(rc) : "none found");
        goto fail;
    }
    c->n_certs = n;
    if (gnutls_privkey_init(&c->key) < 0) {
        err_set(err, errlen, "out of memory");
        goto fail;
    }
    rc = gnutls_privkey_import_x509_raw(c->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        err_set(err, errlen, "the TLS key %s is not an unencrypted PEM private key (%s)", key_path,
                gnutls_strerror(rc));
        goto fail;
    }
    /* A key that is not the certificate's would fail every handshake: say
     * so now, naming both files. */
    unsigned char id_key[64], id_crt[64];
    size_t lk = sizeof id_key, lc = sizeof id_crt;
    if (gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_privkey(pub, c->key, 0, 0) < 0 ||
        gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, id_key, &lk) < 0 ||
        gnutls_pubkey_get_key_id(c->certs[0].pubkey, GNUTLS_KEYID_USE_SHA256, id_crt, &lc) < 0 ||
        lk != lc || memcmp(id_key, id_crt, lk) != 0) {
        err_set(err, errlen, "the TLS key %s is not the key of the certificate in %s", key_path,
                cert_path);
        goto fail;
    }
    gnutls_pubkey_deinit(pub);
    gnutls_memset(key.data, 0, key.size);
    mem_free(key.data);
    mem_free(cert.data);
    describe_leaf(c);
    return c;
fail:
    if (pub)
        gnutls_pubkey_deinit(pub);
    if (key.data)
        gnutls_memset(key.data, 0, key.size);
    mem_free(key.data);
    mem_free(cert.data);
    creds_free(c);
    return NULL;
}

http_tls *http_tls_load(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
    http_tls_creds *c = creds_load(cert_path, key_path, err, errlen);
    if (c == NULL)
        return NULL;
    http_tls *t = mem_calloc(1, sizeof *t);
    if (t)
        t->cert_path = mem_strdup(cert_path);
    if (t)
        t->key_path = mem_strdup(key_path);
    if (t == NULL || t->cert_path == NULL || t->key_path == NULL) {
        err_set(err, errlen, "out of memory");
        if (t) {
            mem_free(t->cert_path);
            mem_free(t->key_path);
        }
        mem_free(t);
        creds_free(c);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->current = c;
    return t;
}

int http_tls_reload(http_tls *t, char *err, size_t errlen)
{
    http_tls_creds *c = creds_load(t->cert_path, t->key_path, err, errlen);
    if (c == NULL)
        return -1;
    pthread_mutex_lock(&t->lock);
    http_tls_creds *old = t->current;
    t->current = c;
    pthread_mutex_unlock(&t->lock);
    http_tls_release(old); /* freed now, or by its last connection */
    return 0;
}

void http_tls_describe(http_tls *t, char *out, size_t cap)
{
    http_tls_creds *c = http_tls_acquire(t);
    snprintf(out, cap, "%s", c->about);
    http_tls_release(c);
}

http_tls_creds *http_tls_acquire(http_tls *t)
{
    pthread_mutex_lock(&t->lock);
    http_tls_creds *c = t->current;
    atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&t->lock);
    return c;
}

void http_tls_release(http_tls_creds *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        creds_free(c);
}

void http_tls_creds_get(const http_tls_creds *c, struct gnutls_pcert_st **pcert, unsigned *n,
                        struct gnutls_privkey_st **key)
{
    *pcert = (gnutls_pcert_st *)c->certs;
    *n = c->n_certs;
    *key = c->key;
}

void http_tls_free(http_tls *t)
{
    if (t == NULL)
        return;
    http_tls_release(t->current);
    pthread_mutex_destroy(&t->lock);
    mem_free(t->cert_path);
    mem_free(t->key_path);
    mem_free(t);
}
