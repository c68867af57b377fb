/*
 * keys — see keys.h. OpenSSL 3 EVP_PKEY and provider-parameter APIs only
 * (no EC_KEY, deprecated since 3.0).
 *
 * Everything is derived once at load (PEM texts, coordinates, kid) and never
 * changed, which is what makes the structure safe to share between threads
 * without locks. The EVP_PKEY is kept for signing; OpenSSL 3 allows several
 * threads to sign with one key at once, each with its own EVP_MD_CTX.
 *
 * Every failure path clears OpenSSL's per-thread error queue: the DTLS code
 * on the same event-loop thread reads that queue, and a stale entry from here
 * would be reported there as its own error.
 */
#include "auth/keys.h"

#include "util/base64url.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/mkdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

/* A PEM P-256 key is about 250 bytes; anything near this cap is not one. */
#define COORD_LEN 32 /* bytes in a P-256 affine coordinate */

struct auth_keys {
    EVP_PKEY *pkey; /* private key, for auth_token_issue */
    char kid[AUTH_KID_LEN + 1];
    char x[AUTH_KID_LEN + 1]; /* base64url of 32 bytes is 43 chars too */
    char y[AUTH_KID_LEN + 1];
    unsigned char *priv_pem; /* mem_alloc, NUL-terminated, wiped on free */
    size_t priv_len;
    unsigned char *pub_pem; /* mem_alloc, NUL-terminated */
    size_t pub_len;
};

/* Refuses to prompt for a passphrase: chatd runs unattended, and OpenSSL's
 * default callback would read the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* Copies a memory BIO's contents into a NUL-terminated mem_alloc buffer. */
static unsigned char *bio_copy(BIO *bio, size_t *len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    unsigned char *copy;

    if (n <= 0 || data == NULL)
        return NULL;
    copy = mem_alloc((size_t)n + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, data, (size_t)n);
    copy[n] = '\0';
    *len = (size_t)n;
    return copy;
}

/* Writes a 32-byte big-endian coordinate, base64url, into out. */
static int coord_b64(const EVP_PKEY *pkey, const char *param, char *out, size_t outcap)
{
    BIGNUM *bn = NULL;
    unsigned char bytes[COORD_LEN];
    int ok;

    if (!EVP_PKEY_get_bn_param(pkey, param, &bn))
        return -1;
    ok = BN_bn2binpad(bn, bytes, sizeof(bytes)) == COORD_LEN;
    BN_free(bn);
    if (!ok)
        return -1;
    return b64url_encode(out, outcap, bytes, sizeof(bytes)) == AUTH_KID_LEN ? 0 : -1;
}

/* True when pkey is an EC key on P-256 (OpenSSL names it prime256v1). */
static int is_p256(const EVP_PKEY *pkey)
{
    char group[64];
    size_t glen = 0;

    if (!EVP_PKEY_is_a(pkey, "EC"))
        return 0;
    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        &glen))
        return 0;
    return OBJ_sn2nid(group) == NID_X9_62_prime256v1;
}

/* Builds the immutable auth_keys from a checked private key. */
static auth_keys *keys_from_pkey(EVP_PKEY *pkey, char *err, size_t errlen)
{
    auth_keys *keys = NULL;
    BIO *bio = NULL;
    EVP_PKEY_CTX *check = NULL;
    char thumb_json[160];
    unsigned char digest[32];
    unsigned int dlen = 0;
    int n;

    if (!is_p256(pkey)) {
        err_set(err, errlen, "signing key is not an EC P-256 key");
        goto fail;
    }
    /* A file edited by hand could pair a private scalar with a foreign
     * public point; the full check catches that before we publish it. */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL) {
        err_set(err, errlen, "out of memory");
        goto fail;
    }
    if (EVP_PKEY_check(check) != 1) {
        err_set(err, errlen, "signing key fails the EC key check");
        goto fail;
    }
    keys = mem_calloc(1, sizeof(*keys));
    if (keys == NULL) {
        err_set(err, errlen, "out of memory");
        goto fail;
    }
    if (coord_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_X, keys->x, sizeof(keys->x)) != 0 ||
        coord_b64(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, keys->y, sizeof(keys->y)) != 0) {
        err_set(err, errlen, "cannot read the public point of the signing key");
        goto fail;
    }
    /* RFC 7638: members in lexical order, no whitespace. */
    n = snprintf(thumb_json, sizeof(thumb_json),
                 "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", keys->x, keys->y);
    if (n < 0 || (size_t)n >= sizeof(thumb_json) ||
        !EVP_Digest(thumb_json, (size_t)n, digest, &dlen, EVP_sha256(), NULL) ||
        dlen != sizeof(digest) ||
        b64url_encode(keys->kid, sizeof(keys->kid), digest, dlen) != AUTH_KID_LEN) {
        err_set(err, errlen, "cannot compute the key id");
        goto fail;
    }

    /* Secure-heap BIO: its buffer is wiped when freed. */
    bio = BIO_new(BIO_s_secmem());
    if (bio == NULL || !PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) ||
        (keys->priv_pem = bio_copy(bio, &keys->priv_len)) == NULL) {
        err_set(err, errlen, "cannot serialize the private key (out of memory?)");
        goto fail;
    }
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || !PEM_write_bio_PUBKEY(bio, pkey) ||
        (keys->pub_pem = bio_copy(bio, &keys->pub_len)) == NULL) {
        err_set(err, errlen, "cannot serialize the public key (out of memory?)");
        goto fail;
    }
    BIO_free(bio);
    EVP_PKEY_CTX_free(check);
    if (!EVP_PKEY_up_ref(pkey)) {
        err_set(err, errlen, "cannot reference the key");
        bio = NULL;
        check = NULL;
        goto fail;
    }
    keys->pkey = pkey;
    return keys;

fail:
    BIO_free(bio);
    EVP_PKEY_CTX_free(check);
    auth_keys_free(keys);
    ERR_clear_error();
    return NULL;
}

auth_keys *auth_keys_from_pem(const char *pem, size_t len, char *err, size_t errlen)
{
    BIO *bio;
    EVP_PKEY *pkey;
    auth_keys *keys;

    if (pem == NULL || len == 0 || len > LIMIT_KEY_FILE_BYTES) {
        err_set(err, errlen, "signing key PEM is empty or too large");
        return NULL;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        err_set(err, errlen, "out of memory");
        ERR_clear_error();
        return NULL;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (pkey == NULL) {
        err_set(err, errlen, "no unencrypted private key PEM found");
        ERR_clear_error();
        return NULL;
    }
    keys = keys_from_pkey(pkey, err, errlen);
    EVP_PKEY_free(pkey);
    return keys;
}

auth_keys *auth_keys_generate(char *err, size_t errlen)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    auth_keys *keys;

    if (pkey == NULL) {
        err_set(err, errlen, "cannot generate a P-256 key");
        ERR_clear_error();
        return NULL;
    }
    keys = keys_from_pkey(pkey, err, errlen);
    EVP_PKEY_free(pkey);
    return keys;
}

/* Creates path with O_EXCL (never overwrites a key another process just
 * wrote) and writes a fresh key. Returns the keys, or NULL with *exists set
 * when the file appeared meanwhile. */
static auth_keys *create_key_file(const char *path, int *exists, char *err, size_t errlen)
{
    auth_keys *keys;
    const unsigned char *pem;
    size_t len, off = 0;
    int fd;

    *exists = 0;
    if (mkdir_parents(path, MKDIR_PRIVATE, err, errlen) != 0)
        return NULL;
    keys = auth_keys_generate(err, errlen);
    if (keys == NULL)
        return NULL;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            *exists = 1;
        err_set(err, errlen, "cannot create key file %s: %s", path, strerror(errno));
        auth_keys_free(keys);
        return NULL;
    }
    pem = auth_keys_private_pem(keys, &len);
    while (off < len) {
        ssize_t w = write(fd, pem + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (off != len || fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        if (off != len)
            close(fd);
        unlink(path);
        err_set(err, errlen, "cannot write key file %s: %s", path, strerror(e));
        auth_keys_free(keys);
        return NULL;
    }
    log_info("auth", "created signing key %s (kid %s)", path, keys->kid);
    return keys;
}

/* Reads an existing key file after checking its type, owner and mode.
 * Returns 1 when the file does not exist (the caller creates it), 0 with
 * *out set, or -1 with err set. O_NOFOLLOW: a symbolic link planted in the
 * data directory must not make chatd sign with a key someone else chose (or
 * read a file it should not); the owner check refuses a key another user
 * could have written even with a private mode. */
static int read_key_file(const char *path, auth_keys **out, char *err, size_t errlen)
{
    struct stat st;
    char *buf;
    size_t got = 0;
    int fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        if (errno == ELOOP)
            err_set(err, errlen, "key file %s is a symbolic link; give the real path", path);
        else
            err_set(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
        return -1;
    }
    /* fstat on the open descriptor: the file checked is the file read. */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err_set(err, errlen, "key file %s is not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_uid != geteuid()) {
        err_set(err, errlen,
                "key file %s belongs to uid %u, not to the user chatd runs as (uid %u); "
                "run chown on it",
                path, (unsigned)st.st_uid, (unsigned)geteuid());
        close(fd);
        return -1;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        err_set(err, errlen,
                "key file %s is accessible by group or others (mode %03o); "
                "run chmod 600 on it",
                path, (unsigned)(st.st_mode & 0777));
        close(fd);
        return -1;
    }
    if (st.st_size <= 0 || st.st_size > LIMIT_KEY_FILE_BYTES) {
        err_set(err, errlen, "key file %s is empty or too large", path);
        close(fd);
        return -1;
    }
    buf = mem_alloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        err_set(err, errlen, "out of memory");
        close(fd);
        return -1;
    }
    got = fdio_read_full(fd, buf, (size_t)st.st_size);
    close(fd);
    buf[got] = '\0';
    if (got != (size_t)st.st_size) {
        err_set(err, errlen, "cannot read key file %s", path);
    } else {
        char why[200] = "";
        *out = auth_keys_from_pem(buf, got, why, sizeof(why));
        if (*out == NULL)
            err_set(err, errlen, "key file %s: %s", path, why);
    }
    OPENSSL_cleanse(buf, (size_t)st.st_size + 1);
    mem_free(buf);
    return *out != NULL ? 0 : -1;
}

auth_keys *auth_keys_load_or_create(const char *path, char *err, size_t errlen)
{
    auth_keys *keys = NULL;
    int attempt;

    if (path == NULL || path[0] == '\0') {
        err_set(err, errlen, "no key file path given");
        return NULL;
    }
    /* Two rounds: if another process creates the file between our open and
     * our O_EXCL create, load what it wrote instead of failing. */
    for (attempt = 0; attempt < 2; attempt++) {
        int exists = 0;
        int rc = read_key_file(path, &keys, err, errlen);
        if (rc <= 0)
            return keys;
        keys = create_key_file(path, &exists, err, errlen);
        if (keys != NULL || !exists)
            return keys;
    }
    return NULL;
}

const char *auth_keys_kid(const auth_keys *keys) { return keys->kid; }

const unsigned char *auth_keys_private_pem(const auth_keys *keys, size_t *len)
{
    if (len != NULL)
        *len = keys->priv_len;
    return keys->priv_pem;
}

const unsigned char *auth_keys_public_pem(const auth_keys *keys, size_t *len)
{
    if (len != NULL)
        *len = keys->pub_len;
    return keys->pub_pem;
}

char *auth_keys_jwks_json(const auth_keys *keys)
{
    /* Every value is base64url or a fixed word, so no JSON escaping is
     * needed and printf is enough. */
    static const char fmt[] =
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\","
        "\"kid\":\"%s\",\"use\":\"sig\",\"alg\":\"ES256\"}]}";
    int n = snprintf(NULL, 0, fmt, keys->x, keys->y, keys->kid);
    char *out;

    if (n < 0)
        return NULL;
    out = mem_alloc((size_t)n + 1);
    if (out == NULL)
        return NULL;
    snprintf(out, (size_t)n + 1, fmt, keys->x, keys->y, keys->kid);
    return out;
}

EVP_PKEY *auth_keys_pkey(const auth_keys *keys) { return keys->pkey; }

void auth_keys_free(auth_keys *keys)
{
    if (keys == NULL)
        return;
    EVP_PKEY_free(keys->pkey);
    if (keys->priv_pem != NULL) {
        OPENSSL_cleanse(keys->priv_pem, keys->priv_len);
        mem_free(keys->priv_pem);
    }
    mem_free(keys->pub_pem);
    mem_free(keys);
}
