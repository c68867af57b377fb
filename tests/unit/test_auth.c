/*
 * test_auth — unit tests for src/util/base64url and src/auth (keys, token,
 * cache).
 *
 * Every attack of notes/jwt.md has its own test. Attack tokens are built
 * here with plain OpenSSL (sign_parts) so that header and claims can be any
 * JSON at all, not only what libjwt's builder allows; the HS256 confusion
 * token is built with libjwt itself, as an attacker would. Allocation
 * failures at every position of issue, verify, the cache, key creation and
 * JWKS output are test_allocfail's (and, through OpenSSL, test_allocfail_ssl's).
 *
 * Built with ASan, every test ends with a leak check (check_leaks).
 *
 * Criterion runs each test in its own process, so key files, the mem fault
 * counter and OpenSSL state never leak between tests.
 */
#include <criterion/criterion.h>

#include "auth/cache.h"
#include "auth/keys.h"
#include "auth/token.h"
#include "util/base64url.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <jwt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scratch.h"
#include "torture.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define ISS "https://chat.example"
#define NOW ((time_t)1700000000)

/* ---- helpers ---------------------------------------------------------- */

static char tmpdir[64];

static void setup(void)
{
    mem_install();
    log_set_level(LOGL_OFF);
    scratch_dir_make(tmpdir, sizeof tmpdir, "auth");
}

static void teardown(void)
{
    mem_fail_at(0);
    scratch_dir_remove(tmpdir);
}

static char *path_in_tmp(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
    return buf;
}

static void write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    cr_assert_eq(chmod(path, mode), 0);
}

/* PEM of a freshly generated key of any type OpenSSL knows. */
static char *pem_of_new_key(const char *type, const char *param, size_t *len)
{
    EVP_PKEY *pkey = param != NULL ? EVP_PKEY_Q_keygen(NULL, NULL, type, param)
                                   : EVP_PKEY_Q_keygen(NULL, NULL, type);
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *copy;
    long n;

    cr_assert_not_null(pkey);
    cr_assert(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL));
    n = BIO_get_mem_data(bio, &data);
    copy = strndup(data, (size_t)n);
    *len = (size_t)n;
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    return copy;
}

static auth_keys *new_keys(void)
{
    char err[200] = "";
    auth_keys *k = auth_keys_generate(err, sizeof(err));
    cr_assert_not_null(k, "generate: %s", err);
    return k;
}

static char *b64(const char *s)
{
    char *r = b64url_encode_alloc(s, strlen(s));
    cr_assert_not_null(r);
    return r;
}

/* header.claims.signature, ES256-signed with keys' private key over exactly
 * the given JSON texts (whatever they say). Caller frees with free(). */
static char *sign_parts(const auth_keys *keys, const char *header, const char *claims)
{
    size_t pem_len, der_len = 0;
    const unsigned char *pem = auth_keys_private_pem(keys, &pem_len);
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    char *h = b64(header), *c = b64(claims), *input, *sig_b64, *out;
    unsigned char der[128], raw[64];
    const unsigned char *p = der;
    ECDSA_SIG *sig;
    const BIGNUM *r, *s;

    cr_assert_not_null(pkey);
    cr_assert(asprintf(&input, "%s.%s", h, c) > 0);
    der_len = sizeof(der);
    cr_assert(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey));
    cr_assert(EVP_DigestSign(md, der, &der_len, (unsigned char *)input, strlen(input)));
    sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    cr_assert_not_null(sig);
    ECDSA_SIG_get0(sig, &r, &s);
    BN_bn2binpad(r, raw, 32);
    BN_bn2binpad(s, raw + 32, 32);
    sig_b64 = b64url_encode_alloc(raw, sizeof(raw));
    cr_assert(asprintf(&out, "%s.%s", input, sig_b64) > 0);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    mem_free(h);
    mem_free(c);
    mem_free(sig_b64);
    free(input);
    return out;
}

/* A header naming our kid and ES256. */
static char *good_header(const auth_keys *k)
{
    char *h;
    cr_assert(asprintf(&h, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", auth_keys_kid(k)) >
              0);
    return h;
}

/* Claims like chatd's, with exp/nbf/iat from the arguments. */
static char *claims_json(const char *iss, const char *aud_json, long iat, long nbf, long exp)
{
    char *c;
    cr_assert(asprintf(&c,
                       "{\"iss\":\"%s\",\"sub\":\"7\",\"aud\":%s,\"iat\":%ld,"
                       "\"nbf\":%ld,\"exp\":%ld,\"jti\":\"00ff\",\"name\":\"Kurtis\"}",
                       iss, aud_json, iat, nbf, exp) > 0);
    return c;
}

/* Signs our header + given claims with k and verifies with k at now. */
static int verify_claims(const auth_keys *k, const char *claims, time_t now, char *err,
                         size_t errlen)
{
    char *h = good_header(k);
    char *t = sign_parts(k, h, claims);
    auth_claims out;
    int rc = auth_token_verify(k, t, ISS, now, &out, err, errlen);
    auth_claims_clear(&out);
    free(h);
    free(t);
    return rc;
}

static char *issue(const auth_keys *k, time_t now, long ttl)
{
    auth_claims_in in = {.iss = ISS,
                         .sub = "7",
                         .name = "Kurtis Weissnat",
                         .preferred_username = "Elwyn.Skiles",
                         .email = "Telly.Hoeger@billy.biz",
                         .ttl_seconds = ttl,
                         .now = now};
    char err[200] = "", *tok = NULL;
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof(err)), 0, "issue: %s", err);
    cr_assert_not_null(tok);
    return tok;
}

/* Asserts verify fails with a message containing want. */
static void expect_reject(const auth_keys *k, const char *tok, time_t now, const char *want)
{
    char err[200] = "";
    auth_claims out;
    memset(&out, 0x5a, sizeof(out)); /* verify must zero it */
    cr_assert_eq(auth_token_verify(k, tok, ISS, now, &out, err, sizeof(err)), -1,
                 "accepted a token that should fail with '%s'", want);
    cr_assert_null(out.sub);
    cr_assert(strstr(err, want) != NULL, "error '%s' does not mention '%s'", err, want);
}

static void expect_claims_reject(const auth_keys *k, const char *claims, const char *want)
{
    char err[200] = "";
    cr_assert_eq(verify_claims(k, claims, NOW, err, sizeof(err)), -1, "accepted claims %s", claims);
    cr_assert(strstr(err, want) != NULL, "error '%s' does not mention '%s'", err, want);
}

/* Splits tok at its dots into three malloc'd parts. */
static void split3(const char *tok, char **h, char **p, char **s)
{
    const char *d1 = strchr(tok, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    cr_assert(d1 && d2);
    *h = strndup(tok, (size_t)(d1 - tok));
    *p = strndup(d1 + 1, (size_t)(d2 - d1 - 1));
    *s = strdup(d2 + 1);
}

/* ---- base64url ------------------------------------------------------- */

TestSuite(b64url, .init = setup, .fini = teardown, .timeout = 30);

Test(b64url, known_vectors)
{
    struct {
        const char *in;
        const char *out;
    } v[] = {
        {"", ""},
        {"f", "Zg"},
        {"fo", "Zm8"},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg"},
        {"fooba", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy"},
        {"\xfb\xff", "-_8"},
        {"\xff\xff\xfe", "___-"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *e = b64url_encode_alloc(v[i].in, strlen(v[i].in));
        unsigned char *d = NULL;
        size_t dl = 0;
        cr_assert_str_eq(e, v[i].out);
        cr_assert_eq(b64url_encoded_len(strlen(v[i].in)), strlen(v[i].out));
        cr_assert_eq(b64url_decode_alloc(v[i].out, strlen(v[i].out), &d, &dl), B64URL_OK);
        cr_assert_eq(dl, strlen(v[i].in));
        cr_assert_eq(memcmp(d, v[i].in, dl), 0);
        cr_assert_eq(d[dl], 0, "decode_alloc NUL-terminates");
        mem_free(e);
        mem_free(d);
    }
    check_leaks();
}

Test(b64url, round_trip_all_lengths)
{
    unsigned char in[200], out[200];
    char enc[300];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(in); n++) {
        size_t got = 0, elen = b64url_encode(enc, sizeof(enc), in, n);
        cr_assert_eq(elen, b64url_encoded_len(n));
        cr_assert_eq(strlen(enc) == elen || n == 0, 1);
        cr_assert_eq(b64url_decode(enc, elen, out, sizeof(out), &got), B64URL_OK, "n=%zu", n);
        cr_assert_eq(got, n);
        cr_assert_eq(memcmp(in, out, n), 0);
    }
    check_leaks();
}

Test(b64url, rejects_non_strict_input)
{
    const char *bad[] = {
        "Zg==",       /* padding */
        "Zm9v=", "Z", /* 4n+1 length */
        "Zh",         /* unused bits set */
        "Zm9",        /* unused bits set (3-char tail) */
        "Zm+v",       /* plain base64 alphabet */
        "Zm/v",  "Zm v", "Zm\nv", "Zm9\x80", "Zm.v", "Zm9v\t",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char out[16], *d = NULL;
        size_t got = 99;
        cr_assert_eq(b64url_decode(bad[i], strlen(bad[i]), out, sizeof(out), &got), B64URL_EINVAL,
                     "accepted '%s'", bad[i]);
        cr_assert_eq(b64url_decode_alloc(bad[i], strlen(bad[i]), &d, NULL), B64URL_EINVAL);
        cr_assert_null(d);
    }
    check_leaks();
}

Test(b64url, small_buffers)
{
    unsigned char out[2];
    char enc[4];
    size_t got;
    cr_assert_eq(b64url_decode("Zm9v", 4, out, sizeof(out), &got), B64URL_ENOSPC);
    cr_assert_eq(b64url_encode(enc, sizeof(enc), "foo", 3), 0, "needs room for the NUL");
    cr_assert_eq(b64url_encode(enc, 3, "fo", 2), 0);
    cr_assert_eq(b64url_encode(enc, 4, "fo", 2), 3);
    check_leaks();
}

Test(b64url, allocation_failure)
{
    unsigned char *d = (unsigned char *)"x";
    mem_fail_at(1);
    cr_assert_null(b64url_encode_alloc("foo", 3));
    mem_fail_at(1);
    cr_assert_eq(b64url_decode_alloc("Zm9v", 4, &d, NULL), B64URL_ENOMEM);
    cr_assert_null(d);
    check_leaks();
}

/* NULL where bytes are promised is refused, not read; a NULL outlen is
 * allowed; empty input is fine with NULL pointers. */
Test(b64url, null_arguments)
{
    char enc[16] = "x";
    unsigned char out[8], *d = (unsigned char *)"x";
    size_t got = 99;
    cr_assert_eq(b64url_encode(enc, sizeof enc, NULL, 3), 0);
    cr_assert_eq(b64url_encode(NULL, 16, "foo", 3), 0);
    cr_assert_eq(b64url_encode(enc, sizeof enc, NULL, 0), 0);
    cr_assert_str_eq(enc, "");
    cr_assert_null(b64url_encode_alloc(NULL, 3));
    char *e = b64url_encode_alloc(NULL, 0);
    cr_assert_not_null(e);
    cr_assert_str_eq(e, "");
    mem_free(e);
    cr_assert_eq(b64url_decode(NULL, 4, out, sizeof out, &got), B64URL_EINVAL);
    cr_assert_eq(got, 0);
    cr_assert_eq(b64url_decode("Zm9v", 4, NULL, 8, &got), B64URL_EINVAL);
    cr_assert_eq(b64url_decode("Zm9v", 4, NULL, 0, &got), B64URL_ENOSPC);
    cr_assert_eq(b64url_decode("Zm9v", 4, out, sizeof out, NULL), B64URL_OK);
    cr_assert_eq(memcmp(out, "foo", 3), 0);
    cr_assert_eq(b64url_decode(NULL, 0, NULL, 0, &got), B64URL_OK);
    cr_assert_eq(got, 0);
    cr_assert_eq(b64url_decode_alloc(NULL, 4, &d, &got), B64URL_EINVAL);
    cr_assert_null(d);
    cr_assert_eq(b64url_decode_alloc("Zm9v", 4, &d, NULL), B64URL_OK);
    cr_assert_str_eq((char *)d, "foo", "NUL-terminated");
    mem_free(d);
    check_leaks();
}

/* ---- keys ------------------------------------------------------------ */

TestSuite(keys, .init = setup, .fini = teardown, .timeout = 30);

Test(keys, create_mode_0600_and_reload_same_kid)
{
    char err[300] = "", path[256];
    struct stat st;
    auth_keys *a, *b;
    size_t la, lb;

    /* Missing parent folders are created. */
    snprintf(path, sizeof(path), "%s/data/sub/jwt-es256.pem", tmpdir);
    a = auth_keys_load_or_create(path, err, sizeof(err));
    cr_assert_not_null(a, "create: %s", err);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    cr_assert_eq(strlen(auth_keys_kid(a)), AUTH_KID_LEN);

    b = auth_keys_load_or_create(path, err, sizeof(err));
    cr_assert_not_null(b, "reload: %s", err);
    cr_assert_str_eq(auth_keys_kid(a), auth_keys_kid(b));
    cr_assert_str_eq((const char *)auth_keys_public_pem(a, &la),
                     (const char *)auth_keys_public_pem(b, &lb));
    cr_assert_eq(la, lb);
    cr_assert(strstr((const char *)auth_keys_private_pem(b, NULL), "BEGIN PRIVATE KEY"));
    cr_assert(strstr((const char *)auth_keys_public_pem(b, NULL), "BEGIN PUBLIC KEY"));
    auth_keys_free(a);
    auth_keys_free(b);
    check_leaks();
}

Test(keys, creation_keeps_0600_under_permissive_umask)
{
    char err[300] = "";
    struct stat st;
    mode_t old = umask(0);
    auth_keys *k = auth_keys_load_or_create(path_in_tmp("k.pem"), err, sizeof(err));
    umask(old);
    cr_assert_not_null(k, "%s", err);
    cr_assert_eq(stat(path_in_tmp("k.pem"), &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    auth_keys_free(k);
    check_leaks();
}

Test(keys, group_or_world_accessible_file_refused)
{
    const mode_t modes[] = {0640, 0604, 0660, 0620, 0602};
    char err[300] = "", *path = path_in_tmp("k.pem");
    auth_keys *k = auth_keys_load_or_create(path, err, sizeof(err));
    cr_assert_not_null(k, "%s", err);
    auth_keys_free(k);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        cr_assert_eq(chmod(path, modes[i]), 0);
        err[0] = '\0';
        cr_assert_null(auth_keys_load_or_create(path, err, sizeof(err)), "mode %o", modes[i]);
        cr_assert(strstr(err, "group or others") != NULL, "%s", err);
    }
    cr_assert_eq(chmod(path, 0400), 0);
    k = auth_keys_load_or_create(path, err, sizeof(err));
    cr_assert_not_null(k, "0400 is fine: %s", err);
    auth_keys_free(k);
    check_leaks();
}

Test(keys, non_p256_keys_refused)
{
    struct {
        const char *type, *param;
    } kinds[] = {
        {"EC", "P-384"},
        {"EC", "secp256k1"},
        {"ED25519", NULL},
        {"X25519", NULL},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t len;
        char err[300] = "", *pem = pem_of_new_key(kinds[i].type, kinds[i].param, &len);
        write_file(path_in_tmp("k.pem"), pem, len, 0600);
        cr_assert_null(auth_keys_load_or_create(path_in_tmp("k.pem"), err, sizeof(err)),
                       "%s accepted", kinds[i].type);
        cr_assert(strstr(err, "not an EC P-256") != NULL, "%s: %s", kinds[i].type, err);
        cr_assert_null(auth_keys_from_pem(pem, len, err, sizeof(err)));
        free(pem);
    }
    check_leaks();
}

Test(keys, garbage_and_wrong_pem_refused)
{
    const char *bad[] = {
        "not a pem at all\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
    };
    char err[300];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path_in_tmp("k.pem"), bad[i], strlen(bad[i]), 0600);
        err[0] = '\0';
        cr_assert_null(auth_keys_load_or_create(path_in_tmp("k.pem"), err, sizeof(err)));
        cr_assert(err[0] != '\0');
    }
    /* Empty file: refused, not silently replaced by a new key. */
    write_file(path_in_tmp("k.pem"), "", 0, 0600);
    cr_assert_null(auth_keys_load_or_create(path_in_tmp("k.pem"), err, sizeof(err)));
    cr_assert(strstr(err, "empty") != NULL, "%s", err);

    /* A public key alone is not a signing key. */
    {
        auth_keys *k = new_keys();
        size_t len;
        const unsigned char *pub = auth_keys_public_pem(k, &len);
        write_file(path_in_tmp("k.pem"), (const char *)pub, len, 0600);
        cr_assert_null(auth_keys_load_or_create(path_in_tmp("k.pem"), err, sizeof(err)));
        auth_keys_free(k);
    }
    /* A folder where the file should be. */
    cr_assert_eq(mkdir(path_in_tmp("dir.pem"), 0700), 0);
    cr_assert_null(auth_keys_load_or_create(path_in_tmp("dir.pem"), err, sizeof(err)));
    cr_assert(strstr(err, "not a regular file") != NULL, "%s", err);
    cr_assert_null(auth_keys_load_or_create("", err, sizeof(err)));
    check_leaks();
}

Test(keys, encrypted_pem_refused_without_prompting)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, err[300] = "";
    long n;
    cr_assert(PEM_write_bio_PrivateKey(bio, pkey, EVP_aes_256_cbc(), (unsigned char *)"secret", 6,
                                       NULL, NULL));
    n = BIO_get_mem_data(bio, &data);
    write_file(path_in_tmp("k.pem"), data, (size_t)n, 0600);
    cr_assert_null(auth_keys_load_or_create(path_in_tmp("k.pem"), err, sizeof(err)));
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    check_leaks();
}

Test(keys, external_p256_pem_accepted)
{
    size_t len;
    char err[300] = "", *pem = pem_of_new_key("EC", "P-256", &len);
    auth_keys *k;
    write_file(path_in_tmp("k.pem"), pem, len, 0600);
    k = auth_keys_load_or_create(path_in_tmp("k.pem"), err, sizeof(err));
    cr_assert_not_null(k, "%s", err);
    auth_keys_free(k);
    free(pem);
    check_leaks();
}

Test(keys, jwks_shape_and_thumbprint)
{
    auth_keys *k = new_keys();
    char *jwks = auth_keys_jwks_json(k);
    json_error_t jerr;
    json_t *doc, *keys, *jwk;
    const char *x, *y;
    unsigned char *xb = NULL, *yb = NULL, digest[32], want_x[32], want_y[32];
    size_t xl = 0, yl = 0;
    char thumb[200], *kid;
    unsigned int dl;
    BIGNUM *bx = NULL, *by = NULL;
    size_t pem_len;
    const unsigned char *pem = auth_keys_public_pem(k, &pem_len);
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

    cr_assert_not_null(jwks);
    doc = json_loads(jwks, JSON_REJECT_DUPLICATES, &jerr);
    cr_assert_not_null(doc, "JWKS is not JSON: %s", jerr.text);
    keys = json_object_get(doc, "keys");
    cr_assert(json_is_array(keys));
    cr_assert_eq(json_array_size(keys), 1);
    jwk = json_array_get(keys, 0);
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "kty")), "EC");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "crv")), "P-256");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "use")), "sig");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "alg")), "ES256");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "kid")), auth_keys_kid(k));
    cr_assert_null(json_object_get(jwk, "d"), "private scalar published");
    cr_assert_eq(json_object_size(jwk), 7);
    x = json_string_value(json_object_get(jwk, "x"));
    y = json_string_value(json_object_get(jwk, "y"));
    cr_assert_eq(b64url_decode_alloc(x, strlen(x), &xb, &xl), B64URL_OK);
    cr_assert_eq(b64url_decode_alloc(y, strlen(y), &yb, &yl), B64URL_OK);
    cr_assert_eq(xl, 32);
    cr_assert_eq(yl, 32);

    /* x and y are the public point of the PEM key. */
    cr_assert_not_null(pub);
    cr_assert(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_X, &bx));
    cr_assert(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_Y, &by));
    BN_bn2binpad(bx, want_x, 32);
    BN_bn2binpad(by, want_y, 32);
    cr_assert_eq(memcmp(xb, want_x, 32), 0);
    cr_assert_eq(memcmp(yb, want_y, 32), 0);

    /* RFC 7638 thumbprint recomputed from the JWKS members. */
    snprintf(thumb, sizeof(thumb), "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
             x, y);
    cr_assert(EVP_Digest(thumb, strlen(thumb), digest, &dl, EVP_sha256(), NULL));
    kid = b64url_encode_alloc(digest, dl);
    cr_assert_str_eq(kid, auth_keys_kid(k));

    mem_free(kid);
    mem_free(xb);
    mem_free(yb);
    BN_free(bx);
    BN_free(by);
    EVP_PKEY_free(pub);
    BIO_free(bio);
    json_decref(doc);
    mem_free(jwks);
    auth_keys_free(k);
    check_leaks();
}

/* ---- tokens: issue and verify ---------------------------------------- */

TestSuite(token, .init = setup, .fini = teardown, .timeout = 60);

Test(token, issue_then_verify)
{
    auth_keys *k = new_keys();
    char *tok = issue(k, NOW, 3600), *h, *p, *s, *hjson;
    char err[200] = "";
    auth_claims c;
    size_t hl;
    json_t *hdr;

    cr_assert_eq(auth_token_verify(k, tok, ISS, NOW + 10, &c, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(c.sub, "7");
    cr_assert_str_eq(c.name, "Kurtis Weissnat");
    cr_assert_str_eq(c.preferred_username, "Elwyn.Skiles");
    cr_assert_str_eq(c.email, "Telly.Hoeger@billy.biz");
    cr_assert_eq(c.iat, NOW);
    cr_assert_eq(c.nbf, NOW);
    cr_assert_eq(c.exp, NOW + 3600);
    cr_assert_eq(strlen(c.jti), 32);
    cr_assert_eq(strspn(c.jti, "0123456789abcdef"), 32);
    auth_claims_clear(&c);
    auth_claims_clear(&c); /* twice is harmless */

    /* Header: ES256 and our kid; the signature is raw R||S (64 bytes). */
    split3(tok, &h, &p, &s);
    cr_assert_eq(b64url_decode_alloc(h, strlen(h), (unsigned char **)&hjson, &hl), B64URL_OK);
    hdr = json_loads(hjson, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(hdr, "alg")), "ES256");
    cr_assert_str_eq(json_string_value(json_object_get(hdr, "kid")), auth_keys_kid(k));
    cr_assert_eq(b64url_decoded_max(strlen(s)), 64);
    json_decref(hdr);
    mem_free(hjson);
    free(h);
    free(p);
    free(s);
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(token, issued_signature_verifies_with_plain_openssl)
{
    /* Interop: what libjwt signs is standard JWS ES256 (R||S over
     * "header.payload" with SHA-256), checked here without libjwt. */
    auth_keys *k = new_keys();
    char *tok = issue(k, NOW, 60);
    const char *d2 = strrchr(tok, '.');
    unsigned char raw[64], der[80], *pd = der;
    size_t got = 0, pem_len;
    const unsigned char *pem = auth_keys_public_pem(k, &pem_len);
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ECDSA_SIG *sig = ECDSA_SIG_new();
    int der_len;

    cr_assert_eq(b64url_decode(d2 + 1, strlen(d2 + 1), raw, sizeof(raw), &got), B64URL_OK);
    cr_assert_eq(got, 64);
    ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    der_len = i2d_ECDSA_SIG(sig, &pd);
    cr_assert(der_len > 0);
    cr_assert(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub));
    cr_assert_eq(
        EVP_DigestVerify(md, der, (size_t)der_len, (unsigned char *)tok, (size_t)(d2 - tok)), 1);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pub);
    BIO_free(bio);
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(token, jti_is_fresh_each_time)
{
    auth_keys *k = new_keys();
    char *a = issue(k, NOW, 60), *b = issue(k, NOW, 60), err[200];
    auth_claims ca, cb;
    cr_assert_eq(auth_token_verify(k, a, ISS, NOW, &ca, err, sizeof(err)), 0);
    cr_assert_eq(auth_token_verify(k, b, ISS, NOW, &cb, err, sizeof(err)), 0);
    cr_assert_str_neq(ca.jti, cb.jti);
    auth_claims_clear(&ca);
    auth_claims_clear(&cb);
    mem_free(a);
    mem_free(b);
    auth_keys_free(k);
    check_leaks();
}

Test(token, optional_claims_absent_give_empty_strings)
{
    auth_keys *k = new_keys();
    auth_claims_in in = {.iss = ISS, .sub = "3", .ttl_seconds = 10, .now = NOW};
    char *tok = NULL, err[200];
    auth_claims c;
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(auth_token_verify(k, tok, ISS, NOW, &c, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(c.sub, "3");
    cr_assert_str_eq(c.name, "");
    cr_assert_str_eq(c.email, "");
    auth_claims_clear(&c);
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(token, issue_rejects_bad_input)
{
    auth_keys *k = new_keys();
    char *tok = (char *)"x", err[200];
    auth_claims_in in = {.iss = ISS, .sub = "", .ttl_seconds = 10, .now = NOW};
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof(err)), -1);
    cr_assert_null(tok);
    in.sub = "1";
    in.ttl_seconds = 0;
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof(err)), -1);
    in.ttl_seconds = 10;
    in.iss = NULL;
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof(err)), -1);
    cr_assert_eq(auth_token_issue(NULL, &in, &tok, err, sizeof(err)), -1);
    auth_keys_free(k);
    check_leaks();
}

Test(token, hand_built_valid_token_accepted)
{
    /* The attack tests below rely on sign_parts; this proves that a token
     * it builds is accepted when nothing is wrong. Also: aud as an array,
     * times as reals. */
    auth_keys *k = new_keys();
    char *c = claims_json(ISS, "[\"other\",\"chat\"]", NOW, NOW, NOW + 60), err[200] = "";
    cr_assert_eq(verify_claims(k, c, NOW, err, sizeof(err)), 0, "%s", err);
    free(c);
    cr_assert_eq(verify_claims(k,
                               "{\"iss\":\"" ISS "\",\"sub\":\"1\",\"aud\":\"chat\","
                               "\"iat\":1700000000.5,\"nbf\":1.7e9,\"exp\":1700000100.9}",
                               NOW, err, sizeof(err)),
                 0, "%s", err);
    auth_keys_free(k);
    check_leaks();
}

/* ---- tokens: every attack of notes/jwt.md ----------------------------- */

Test(attack, alg_none_with_and_without_signature_part, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *hj, *h, *c = claims_json(ISS, "\"chat\"", NOW, NOW, NOW + 600), *p = b64(c), *t;
    cr_assert(asprintf(&hj, "{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"%s\"}", auth_keys_kid(k)) >
              0);
    h = b64(hj);
    cr_assert(asprintf(&t, "%s.%s.", h, p) > 0);
    expect_reject(k, t, NOW, "unsupported alg");
    free(t);
    cr_assert(asprintf(&t, "%s.%s", h, p) > 0);
    expect_reject(k, t, NOW, "three parts");
    free(t);
    /* "None", "ES256 " and a missing alg are no better. */
    free(hj);
    mem_free(h);
    cr_assert(asprintf(&hj, "{\"typ\":\"JWT\",\"kid\":\"%s\"}", auth_keys_kid(k)) > 0);
    t = sign_parts(k, hj, c);
    expect_reject(k, t, NOW, "unsupported alg");
    free(t);
    free(hj);
    cr_assert(asprintf(&hj, "{\"alg\":\"es256\",\"kid\":\"%s\"}", auth_keys_kid(k)) > 0);
    t = sign_parts(k, hj, c);
    expect_reject(k, t, NOW, "unsupported alg");
    free(t);
    free(hj);
    mem_free(p);
    free(c);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, hs256_keyed_with_public_pem, .init = setup, .fini = teardown)
{
    /* The classic algorithm confusion: an attacker signs with HMAC using our
     * public PEM (which anyone can fetch) as the secret. */
    auth_keys *k = new_keys();
    size_t pem_len;
    const unsigned char *pem = auth_keys_public_pem(k, &pem_len);
    jwt_t *jwt = NULL;
    char *t;

    cr_assert_eq(jwt_new(&jwt), 0);
    cr_assert_eq(jwt_add_header(jwt, "kid", auth_keys_kid(k)), 0);
    cr_assert_eq(jwt_add_grant(jwt, "iss", ISS), 0);
    cr_assert_eq(jwt_add_grant(jwt, "sub", "1"), 0);
    cr_assert_eq(jwt_add_grant(jwt, "aud", "chat"), 0);
    cr_assert_eq(jwt_add_grant_int(jwt, "iat", NOW), 0);
    cr_assert_eq(jwt_add_grant_int(jwt, "nbf", NOW), 0);
    cr_assert_eq(jwt_add_grant_int(jwt, "exp", NOW + 600), 0);
    cr_assert_eq(jwt_set_alg(jwt, JWT_ALG_HS256, pem, (int)pem_len), 0);
    t = jwt_encode_str(jwt);
    cr_assert_not_null(t);
    expect_reject(k, t, NOW, "unsupported alg");
    free(t);
    jwt_free(jwt);
    auth_keys_free(k);
    check_leaks();
}

Test(token, es256_signed_by_libjwt_verifies)
{
    /* Verification is our own OpenSSL code now: a standard ES256 JWS made
     * by an independent signer (libjwt) with our key must pass, and the
     * same token with one signature byte changed must not. */
    auth_keys *k = new_keys();
    size_t pem_len;
    const unsigned char *pem = auth_keys_private_pem(k, &pem_len);
    jwt_t *jwt = NULL;
    auth_claims c;
    char err[256];
    char *t;

    cr_assert_eq(jwt_new(&jwt), 0);
    cr_assert_eq(jwt_add_header(jwt, "kid", auth_keys_kid(k)), 0);
    cr_assert_eq(jwt_add_grant(jwt, "iss", ISS), 0);
    cr_assert_eq(jwt_add_grant(jwt, "sub", "3"), 0);
    cr_assert_eq(jwt_add_grant(jwt, "aud", "chat"), 0);
    cr_assert_eq(jwt_add_grant_int(jwt, "iat", NOW), 0);
    cr_assert_eq(jwt_add_grant_int(jwt, "nbf", NOW), 0);
    cr_assert_eq(jwt_add_grant_int(jwt, "exp", NOW + 600), 0);
    cr_assert_eq(jwt_set_alg(jwt, JWT_ALG_ES256, pem, (int)pem_len), 0);
    t = jwt_encode_str(jwt);
    cr_assert_not_null(t);
    cr_assert_eq(auth_token_verify(k, t, ISS, NOW, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.sub, "3");
    auth_claims_clear(&c);
    char *last = t + strlen(t) - 2; /* inside the signature, not its padding bits */
    *last = *last == 'A' ? 'B' : 'A';
    expect_reject(k, t, NOW, "bad signature");
    free(t);
    jwt_free(jwt);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, payload_altered, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *tok = issue(k, NOW, 600), *h, *p, *s, *t;
    char *c = claims_json(ISS, "\"chat\"", NOW, NOW, NOW + 600); /* sub "7" -> same */
    char *c2 = strdup(c);
    char *p2;
    split3(tok, &h, &p, &s);
    /* Another user's id, same signature. */
    memcpy(strstr(c2, "\"sub\":\"7\""), "\"sub\":\"1\"", 9);
    p2 = b64(c2);
    cr_assert(asprintf(&t, "%s.%s.%s", h, p2, s) > 0);
    expect_reject(k, t, NOW, "bad signature");
    free(t);
    mem_free(p2);
    free(c);
    free(c2);
    free(h);
    free(p);
    free(s);
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, signature_altered, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *tok = issue(k, NOW, 600);
    char *sig = strrchr(tok, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    expect_reject(k, tok, NOW, "bad signature");
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    expect_reject(k, tok, NOW, "bad signature");
    /* Truncated and extended signatures. */
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    {
        char *t;
        cr_assert(asprintf(&t, "%sAAAA", tok) > 0);
        expect_reject(k, t, NOW, "bad signature");
        free(t);
    }
    sig[40] = '\0';
    expect_reject(k, tok, NOW, "bad signature");
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, der_encoded_signature_refused, .init = setup, .fini = teardown)
{
    /* JWS wants R||S; a DER ECDSA signature (what OpenSSL emits) is not a
     * JWS signature, even when it is mathematically right. */
    auth_keys *k = new_keys();
    char *tok = issue(k, NOW, 600), *t, *d;
    unsigned char raw[64], der[80], *pd = der;
    const char *s = strrchr(tok, '.') + 1;
    size_t got;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    int n;
    cr_assert_eq(b64url_decode(s, strlen(s), raw, sizeof(raw), &got), B64URL_OK);
    ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    n = i2d_ECDSA_SIG(sig, &pd);
    d = b64url_encode_alloc(der, (size_t)n);
    cr_assert(asprintf(&t, "%.*s.%s", (int)(s - 1 - tok), tok, d) > 0);
    expect_reject(k, t, NOW, "bad signature");
    free(t);
    mem_free(d);
    ECDSA_SIG_free(sig);
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, expired_beyond_skew, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *tok = issue(k, NOW - 7200, 3600);
    expect_reject(k, tok, NOW, "token expired");
    mem_free(tok);
    /* exp + 60 == now: the first second beyond the skew. */
    tok = issue(k, NOW - 100, 40);
    expect_reject(k, tok, NOW, "token expired");
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, within_skew_ok, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char err[200] = "";
    auth_claims c;
    /* exp = now - 59: expired by the clock, inside the 60 s skew. */
    char *tok = issue(k, NOW - 99, 40);
    cr_assert_eq(auth_token_verify(k, tok, ISS, NOW, &c, err, sizeof(err)), 0, "%s", err);
    auth_claims_clear(&c);
    mem_free(tok);
    /* Issued by a clock 60 s ahead of ours. */
    tok = issue(k, NOW + 60, 600);
    cr_assert_eq(auth_token_verify(k, tok, ISS, NOW, &c, err, sizeof(err)), 0, "%s", err);
    auth_claims_clear(&c);
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, nbf_in_future, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *c = claims_json(ISS, "\"chat\"", NOW, NOW + 61, NOW + 600);
    expect_claims_reject(k, c, "not yet valid");
    free(c);
    c = claims_json(ISS, "\"chat\"", NOW, NOW + 3600, NOW + 7200);
    expect_claims_reject(k, c, "not yet valid");
    free(c);
    /* A fraction beyond the skew is beyond it too. */
    expect_claims_reject(k,
                         "{\"iss\":\"" ISS "\",\"sub\":\"1\",\"aud\":\"chat\","
                         "\"iat\":1700000000,\"nbf\":1700000060.01,\"exp\":1700000600}",
                         "not yet valid");
    auth_keys_free(k);
    check_leaks();
}

Test(attack, iat_in_future, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *c = claims_json(ISS, "\"chat\"", NOW + 61, NOW, NOW + 600);
    expect_claims_reject(k, c, "issued in the future");
    free(c);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, wrong_iss, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *c = claims_json("https://evil.example", "\"chat\"", NOW, NOW, NOW + 600);
    char *tok = issue(k, NOW, 600), err[200] = "";
    auth_claims out;
    expect_claims_reject(k, c, "wrong issuer");
    free(c);
    c = claims_json(ISS "/", "\"chat\"", NOW, NOW, NOW + 600);
    expect_claims_reject(k, c, "wrong issuer");
    free(c);
    expect_claims_reject(k,
                         "{\"sub\":\"1\",\"aud\":\"chat\",\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":1700000600}",
                         "iss");
    /* A good token checked against another issuer. */
    cr_assert_eq(auth_token_verify(k, tok, "https://other", NOW, &out, err, sizeof(err)), -1);
    cr_assert(strstr(err, "wrong issuer") != NULL);
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, wrong_aud, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    const char *auds[] = {"\"chatx\"", "\"Chat\"", "[\"other\"]", "[]",
                          "[1,2]",     "1",        "null",        "{\"chat\":1}"};
    for (size_t i = 0; i < sizeof(auds) / sizeof(auds[0]); i++) {
        char *c = claims_json(ISS, auds[i], NOW, NOW, NOW + 600);
        expect_claims_reject(k, c, "wrong audience");
        free(c);
    }
    /* A NUL inside is refused by the parser already. */
    {
        char *c = claims_json(ISS, "\"chat\\u0000x\"", NOW, NOW, NOW + 600);
        expect_claims_reject(k, c, "claims is not a JSON object");
        free(c);
    }
    auth_keys_free(k);
    check_leaks();
}

Test(attack, missing_aud, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    expect_claims_reject(k,
                         "{\"iss\":\"" ISS "\",\"sub\":\"1\",\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":1700000600}",
                         "missing aud");
    auth_keys_free(k);
    check_leaks();
}

Test(attack, unknown_kid, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys(), *other = new_keys();
    /* A token from another chatd (other key, its own kid). */
    char *tok = issue(other, NOW, 600);
    expect_reject(k, tok, NOW, "unknown kid");
    mem_free(tok);
    {
        char *c = claims_json(ISS, "\"chat\"", NOW, NOW, NOW + 600), *h, *t;
        const char *kids[] = {"\"nope\"", "42", "null", "[\"x\"]", "\"\""};
        for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
            cr_assert(asprintf(&h, "{\"alg\":\"ES256\",\"kid\":%s}", kids[i]) > 0);
            t = sign_parts(k, h, c);
            expect_reject(k, t, NOW, "unknown kid");
            free(t);
            free(h);
        }
        /* Our kid with a suffix or a NUL inside is still unknown. */
        cr_assert(asprintf(&h, "{\"alg\":\"ES256\",\"kid\":\"%sA\"}", auth_keys_kid(k)) > 0);
        t = sign_parts(k, h, c);
        expect_reject(k, t, NOW, "unknown kid");
        free(t);
        free(h);
        cr_assert(asprintf(&h, "{\"alg\":\"ES256\",\"kid\":\"%.42s\\u0000\"}", auth_keys_kid(k)) >
                  0);
        t = sign_parts(k, h, c);
        expect_reject(k, t, NOW, "header is not a JSON object");
        free(t);
        free(h);
        free(c);
    }
    auth_keys_free(other);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, missing_kid, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *c = claims_json(ISS, "\"chat\"", NOW, NOW, NOW + 600);
    char *t = sign_parts(k, "{\"alg\":\"ES256\",\"typ\":\"JWT\"}", c);
    expect_reject(k, t, NOW, "missing kid");
    free(t);
    free(c);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, other_key_same_kid, .init = setup, .fini = teardown)
{
    /* A valid P-256 signature by a key we do not hold, claiming our kid. */
    auth_keys *k = new_keys(), *attacker = new_keys();
    char *h = good_header(k); /* our kid */
    char *c = claims_json(ISS, "\"chat\"", NOW, NOW, NOW + 600);
    char *t = sign_parts(attacker, h, c);
    expect_reject(k, t, NOW, "bad signature");
    free(t);
    free(h);
    free(c);
    auth_keys_free(attacker);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, wrong_number_of_parts, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *tok = issue(k, NOW, 600), *t;
    char *last = strrchr(tok, '.');
    cr_assert(asprintf(&t, "%.*s", (int)(last - tok), tok) > 0); /* 2 parts */
    expect_reject(k, t, NOW, "three parts");
    free(t);
    cr_assert(asprintf(&t, "%s.AAAA", tok) > 0); /* 4 parts */
    expect_reject(k, t, NOW, "three parts");
    free(t);
    cr_assert(asprintf(&t, "%s.", tok) > 0); /* 4 parts, last empty */
    expect_reject(k, t, NOW, "three parts");
    free(t);
    expect_reject(k, "abc", NOW, "three parts");
    expect_reject(k, "..", NOW, "header");
    expect_reject(k, "...", NOW, "three parts");
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, empty_and_null, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char err[200] = "";
    auth_claims out;
    expect_reject(k, "", NOW, "empty token");
    cr_assert_eq(auth_token_verify(k, NULL, ISS, NOW, &out, err, sizeof(err)), -1);
    cr_assert_eq(auth_token_verify(NULL, "a.b.c", ISS, NOW, &out, err, sizeof(err)), -1);
    cr_assert_eq(auth_token_verify(k, "a.b.c", NULL, NOW, &out, err, sizeof(err)), -1);
    cr_assert_eq(auth_token_verify(k, "a.b.c", ISS, NOW, NULL, err, sizeof(err)), -1);
    /* A NULL err buffer is allowed. */
    cr_assert_eq(auth_token_verify(k, "", ISS, NOW, &out, NULL, 0), -1);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, non_base64url_characters, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *tok = issue(k, NOW, 600), *h, *p, *s, *t;
    const char *inserts[] = {"+", "/", "=", " ", "$", "\xc3\xa9"};
    split3(tok, &h, &p, &s);
    for (size_t i = 0; i < sizeof(inserts) / sizeof(inserts[0]); i++) {
        /* Into the header, the claims, the signature. */
        cr_assert(asprintf(&t, "%s%s.%s.%s", h, inserts[i], p, s) > 0);
        expect_reject(k, t, NOW, "header");
        free(t);
        cr_assert(asprintf(&t, "%s.%s%s.%s", h, p, inserts[i], s) > 0);
        expect_reject(k, t, NOW, "claims");
        free(t);
        cr_assert(asprintf(&t, "%s.%s.%s%s", h, p, s, inserts[i]) > 0);
        expect_reject(k, t, NOW, "bad signature");
        free(t);
    }
    /* Padding on a signature that would otherwise decode. */
    cr_assert(asprintf(&t, "%s.%s.%s==", h, p, s) > 0);
    expect_reject(k, t, NOW, "bad signature");
    free(t);
    free(h);
    free(p);
    free(s);
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, oversize, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *big = malloc(AUTH_TOKEN_MAX + 2);
    char *tok = issue(k, NOW, 600);
    /* A valid token padded past the cap with a huge claim is refused
     * before any parsing; the cap is on the whole text. */
    memset(big, 'A', AUTH_TOKEN_MAX + 1);
    big[AUTH_TOKEN_MAX + 1] = '\0';
    memcpy(big, tok, strlen(tok));
    expect_reject(k, big, NOW, "too large");
    {
        char *pad = malloc(10000), *c, *t;
        memset(pad, 'x', 9000);
        pad[9000] = '\0';
        cr_assert(asprintf(&c,
                           "{\"iss\":\"" ISS "\",\"sub\":\"1\",\"aud\":\"chat\","
                           "\"iat\":%ld,\"nbf\":%ld,\"exp\":%ld,\"name\":\"%s\"}",
                           (long)NOW, (long)NOW, (long)NOW + 60, pad) > 0);
        {
            char *h = good_header(k);
            t = sign_parts(k, h, c);
            free(h);
        }
        expect_reject(k, t, NOW, "too large");
        free(t);
        free(c);
        free(pad);
    }
    free(big);
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, header_not_json, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *c = claims_json(ISS, "\"chat\"", NOW, NOW, NOW + 600);
    const char *headers[] = {"not json",
                             "[\"ES256\"]",
                             "\"ES256\"",
                             "{\"alg\":\"ES256\"",
                             "{\"alg\":\"ES256\",\"kid\":\"x\"} trailing",
                             ""};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *t = sign_parts(k, headers[i], c);
        expect_reject(k, t, NOW, "header is not a JSON object");
        free(t);
    }
    free(c);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, claims_not_json, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *h = good_header(k);
    const char *claims[] = {"not json", "[1]", "null", ""};
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        char *t = sign_parts(k, h, claims[i]);
        expect_reject(k, t, NOW, "claims is not a JSON object");
        free(t);
    }
    free(h);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, claims_of_wrong_type, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
#define BASE "\"iss\":\"" ISS "\",\"aud\":\"chat\""
    /* exp as a string, sub as a number, and friends. */
    expect_claims_reject(k,
                         "{" BASE ",\"sub\":\"1\",\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":\"1700000600\"}",
                         "not a number");
    expect_claims_reject(k,
                         "{" BASE ",\"sub\":\"1\",\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":true}",
                         "not a number");
    expect_claims_reject(k,
                         "{" BASE ",\"sub\":\"1\",\"iat\":1700000000,"
                         "\"nbf\":null,\"exp\":1700000600}",
                         "not a number");
    expect_claims_reject(k,
                         "{" BASE ",\"sub\":\"1\",\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":1e300}",
                         "not a number in range");
    expect_claims_reject(k,
                         "{" BASE ",\"sub\":7,\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":1700000600}",
                         "sub");
    expect_claims_reject(k,
                         "{" BASE ",\"sub\":\"\",\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":1700000600}",
                         "sub");
    expect_claims_reject(k,
                         "{" BASE ",\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":1700000600}",
                         "sub");
    expect_claims_reject(k,
                         "{" BASE ",\"sub\":\"1\\u0000admin\",\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":1700000600}",
                         "claims is not a JSON object");
    expect_claims_reject(k,
                         "{\"iss\":[\"" ISS "\"],\"aud\":\"chat\",\"sub\":\"1\","
                         "\"iat\":1700000000,\"nbf\":1700000000,\"exp\":1700000600}",
                         "iss");
    expect_claims_reject(k,
                         "{" BASE ",\"sub\":\"1\",\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":1700000600,\"name\":5}",
                         "not a string");
    expect_claims_reject(k,
                         "{" BASE ",\"sub\":\"1\",\"iat\":1700000000,"
                         "\"nbf\":1700000000,\"exp\":1700000600,\"jti\":{}}",
                         "not a string");
    /* Missing time claims. */
    expect_claims_reject(k, "{" BASE ",\"sub\":\"1\",\"iat\":1700000000,\"nbf\":1700000000}",
                         "missing exp");
    expect_claims_reject(k, "{" BASE ",\"sub\":\"1\",\"iat\":1700000000,\"exp\":1700000600}",
                         "missing exp");
    expect_claims_reject(k, "{" BASE ",\"sub\":\"1\",\"nbf\":1700000000,\"exp\":1700000600}",
                         "missing exp");
#undef BASE
    auth_keys_free(k);
    check_leaks();
}

Test(attack, duplicate_members_and_crit, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *c = claims_json(ISS, "\"chat\"", NOW, NOW, NOW + 600), *h, *t;
    /* Two "alg" members: parsers disagree on which wins. */
    cr_assert(
        asprintf(&h, "{\"alg\":\"HS256\",\"alg\":\"ES256\",\"kid\":\"%s\"}", auth_keys_kid(k)) > 0);
    t = sign_parts(k, h, c);
    expect_reject(k, t, NOW, "header is not a JSON object");
    free(t);
    free(h);
    h = good_header(k);
    t = sign_parts(k, h,
                   "{\"iss\":\"" ISS "\",\"sub\":\"1\",\"sub\":\"2\",\"aud\":\"chat\","
                   "\"iat\":1700000000,\"nbf\":1700000000,\"exp\":1700000600}");
    expect_reject(k, t, NOW, "claims is not a JSON object");
    free(t);
    free(h);
    cr_assert(asprintf(&h, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"crit\":[\"exp\"]}",
                       auth_keys_kid(k)) > 0);
    t = sign_parts(k, h, c);
    expect_reject(k, t, NOW, "crit");
    free(t);
    free(h);
    free(c);
    auth_keys_free(k);
    check_leaks();
}

Test(attack, token_from_reloaded_key_file_still_verifies, .init = setup, .fini = teardown)
{
    /* Not an attack: restarting chatd must not invalidate live tokens. */
    char err[300] = "";
    auth_keys *a = auth_keys_load_or_create(path_in_tmp("k.pem"), err, sizeof(err)), *b;
    char *tok;
    auth_claims c;
    cr_assert_not_null(a, "%s", err);
    tok = issue(a, NOW, 600);
    b = auth_keys_load_or_create(path_in_tmp("k.pem"), err, sizeof(err));
    cr_assert_not_null(b, "%s", err);
    cr_assert_eq(auth_token_verify(b, tok, ISS, NOW, &c, err, sizeof(err)), 0, "%s", err);
    auth_claims_clear(&c);
    mem_free(tok);
    auth_keys_free(a);
    auth_keys_free(b);
    check_leaks();
}

/* ---- faults and threads ----------------------------------------------- */

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 120);

struct verify_job {
    const auth_keys *keys;
    auth_cache *cache;
    const char *good;
    const char *bad;
    int failures;
};

static void *verify_many(void *arg)
{
    struct verify_job *j = arg;
    for (int i = 0; i < 150; i++) {
        char err[200];
        auth_claims c;
        int ok = j->cache != NULL
                     ? auth_cache_verify(j->cache, j->keys, j->good, ISS, NOW, &c, err, sizeof(err))
                     : auth_token_verify(j->keys, j->good, ISS, NOW, &c, err, sizeof(err));
        if (ok != 0 || strcmp(c.sub, "7") != 0)
            j->failures++;
        auth_claims_clear(&c);
        ok = j->cache != NULL
                 ? auth_cache_verify(j->cache, j->keys, j->bad, ISS, NOW, &c, err, sizeof(err))
                 : auth_token_verify(j->keys, j->bad, ISS, NOW, &c, err, sizeof(err));
        if (ok == 0)
            j->failures++;
    }
    return NULL;
}

static void run_threads(auth_cache *cache)
{
    auth_keys *k = new_keys();
    char *good = issue(k, NOW, 600), *bad = mem_strdup(good);
    pthread_t th[4];
    struct verify_job jobs[4];
    char *sig = strrchr(bad, '.') + 1;
    sig[5] = sig[5] == 'A' ? 'B' : 'A';
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct verify_job){k, cache, good, bad, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, verify_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(jobs[i].failures, 0, "thread %d", i);
    }
    mem_free(good);
    mem_free(bad);
    auth_keys_free(k);
}

Test(faults, concurrent_verify_on_shared_keys)
{
    run_threads(NULL);
    check_leaks();
}

/* ---- cache ------------------------------------------------------------- */

TestSuite(cache, .init = setup, .fini = teardown, .timeout = 60);

Test(cache, concurrent_cached_verify)
{
    auth_cache *c = auth_cache_new(64);
    cr_assert_not_null(c);
    run_threads(c);
    cr_assert(auth_cache_hits(c) > 0);
    auth_cache_free(c);
    check_leaks();
}

Test(cache, hit_rechecks_time_and_issuer)
{
    auth_keys *k = new_keys();
    auth_cache *cache = auth_cache_new(8);
    char *tok = issue(k, NOW, 600), err[200] = "";
    auth_claims c;

    cr_assert_eq(auth_cache_verify(cache, k, tok, ISS, NOW, &c, err, sizeof(err)), 0, "%s", err);
    auth_claims_clear(&c);
    cr_assert_eq(auth_cache_hits(cache), 0);
    cr_assert_eq(auth_cache_verify(cache, k, tok, ISS, NOW + 1, &c, err, sizeof(err)), 0);
    cr_assert_eq(auth_cache_hits(cache), 1);
    cr_assert_str_eq(c.sub, "7");
    cr_assert_str_eq(c.email, "Telly.Hoeger@billy.biz");
    auth_claims_clear(&c);

    /* Another issuer is not served from the entry. */
    cr_assert_eq(auth_cache_verify(cache, k, tok, "https://other", NOW, &c, err, sizeof(err)), -1);
    cr_assert(strstr(err, "wrong issuer") != NULL, "%s", err);
    /* Too early (clock went back) and expired, both from the cache. */
    cr_assert_eq(auth_cache_verify(cache, k, tok, ISS, NOW - 3600, &c, err, sizeof(err)), -1);
    cr_assert(strstr(err, "not yet valid") != NULL, "%s", err);
    cr_assert_eq(auth_cache_verify(cache, k, tok, ISS, NOW + 660, &c, err, sizeof(err)), -1);
    cr_assert(strstr(err, "expired") != NULL, "%s", err);
    cr_assert_null(c.sub);
    /* The expired entry is gone; the full path refuses it as well. */
    cr_assert_eq(auth_cache_verify(cache, k, tok, ISS, NOW + 660, &c, err, sizeof(err)), -1);
    cr_assert(strstr(err, "expired") != NULL, "%s", err);
    cr_assert_eq(auth_cache_hits(cache), 1);
    mem_free(tok);
    auth_cache_free(cache);
    auth_keys_free(k);
    check_leaks();
}

Test(cache, rejected_tokens_are_not_cached)
{
    auth_keys *k = new_keys(), *other = new_keys();
    auth_cache *cache = auth_cache_new(1); /* one slot: every token collides */
    char *tok = issue(k, NOW, 600), *foreign = issue(other, NOW, 600), err[200];
    auth_claims c;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(auth_cache_verify(cache, k, foreign, ISS, NOW, &c, err, sizeof(err)), -1);
        cr_assert(strstr(err, "unknown kid") != NULL);
        cr_assert_eq(auth_cache_verify(cache, k, tok, ISS, NOW, &c, err, sizeof(err)), 0);
        auth_claims_clear(&c);
    }
    cr_assert_eq(auth_cache_hits(cache), 2);
    /* The same text checked with another key is a different entry. */
    cr_assert_eq(auth_cache_verify(cache, other, tok, ISS, NOW, &c, err, sizeof(err)), -1);
    cr_assert_null(auth_cache_new(0));
    mem_free(tok);
    mem_free(foreign);
    auth_cache_free(cache);
    auth_keys_free(other);
    auth_keys_free(k);
    check_leaks();
}

/* ---- limits of issue and of the time claims ------------------------------ */

/* Issue and verify agree on the size cap: a token issue makes, verify
 * takes; one over the cap is refused by issue instead of being handed out
 * to fail every later verify. */
Test(token, issue_refuses_a_token_over_the_cap)
{
    auth_keys *k = new_keys();
    static char name[7001];
    char err[200] = "", *tok = (char *)"x";
    auth_claims c;
    memset(name, 'n', sizeof name - 1);
    auth_claims_in in = {.iss = ISS, .sub = "7", .name = name, .ttl_seconds = 60, .now = NOW};
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof(err)), -1);
    cr_assert_null(tok);
    cr_assert_not_null(strstr(err, "exceed 8192 bytes"), "%s", err);
    name[5000] = '\0'; /* about 6 900 bytes once encoded and signed */
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof(err)), 0, "%s", err);
    cr_assert_leq(strlen(tok), AUTH_TOKEN_MAX);
    cr_assert_eq(auth_token_verify(k, tok, ISS, NOW, &c, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(strlen(c.name), 5000);
    auth_claims_clear(&c);
    auth_claims_clear(NULL);
    mem_free(tok);
    auth_keys_free(k);
    check_leaks();
}

Test(token, issue_refuses_times_out_of_range)
{
    auth_keys *k = new_keys();
    char err[200] = "", *tok = NULL;
    const struct {
        time_t now;
        long ttl;
    } bad[] = {{-1, 60}, {(time_t)((int64_t)1 << 62) + 1, 60}, {NOW, -5}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        auth_claims_in in = {.iss = ISS, .sub = "7", .ttl_seconds = bad[i].ttl, .now = bad[i].now};
        err[0] = '\0';
        cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof(err)), -1, "case %zu", i);
        cr_assert_not_null(strstr(err, "out of range"), "%s", err);
    }
    auth_claims_in in = {.iss = ISS, .sub = "7", .ttl_seconds = 60, .now = NOW};
    cr_assert_eq(auth_token_issue(k, NULL, &tok, err, sizeof(err)), -1);
    cr_assert_eq(auth_token_issue(k, &in, NULL, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "missing argument"), "%s", err);
    in.iss = "";
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "required"), "%s", err);
    auth_keys_free(k);
    check_leaks();
}

/* exp rounds down and nbf/iat round up (the stricter side each); integers
 * beyond 2^62 and a clock beyond it are refused, never overflowed. */
Test(attack, time_claims_at_the_limits, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char err[200] = "";
#define CLAIMS(iat, nbf, exp)                                                                      \
    "{\"iss\":\"" ISS "\",\"sub\":\"1\",\"aud\":\"chat\",\"iat\":" iat ",\"nbf\":" nbf             \
    ",\"exp\":" exp "}"
    /* NOW = 1700000000: exp 1699999940.9 reads as ...940, and NOW is then
     * exactly exp + skew: expired; ...941 is not */
    expect_claims_reject(k, CLAIMS("1699999000", "1699999000", "1699999940.9"), "expired");
    cr_assert_eq(
        verify_claims(k, CLAIMS("1699999000", "1699999000", "1699999941"), NOW, err, sizeof err), 0,
        "%s", err);
    expect_claims_reject(k, CLAIMS("1700000060.5", "1700000000", "1700000600"),
                         "issued in the future");
    cr_assert_eq(verify_claims(k, CLAIMS("1700000059.5", "1700000000.5", "1700000600.5"), NOW, err,
                               sizeof err),
                 0, "%s", err);
    expect_claims_reject(k, CLAIMS("1700000000", "1700000000", "4611686018427387905"),
                         "not a number in range");
    expect_claims_reject(k, CLAIMS("1700000000", "-4611686018427387905", "1700000600"),
                         "not a number in range");
    expect_claims_reject(k, CLAIMS("1700000000", "-1e300", "1700000600"), "not a number in range");
#undef CLAIMS
    auth_claims c = {.iat = NOW, .nbf = NOW, .exp = NOW + 600};
    cr_assert_eq(auth_claims_check_time(&c, (time_t)(((int64_t)1 << 62) + 1), err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "clock out of range"), "%s", err);
    cr_assert_eq(auth_claims_check_time(&c, -(time_t)(((int64_t)1 << 62) + 1), err, sizeof err),
                 -1);
    cr_assert_eq(auth_claims_check_time(&c, NOW, err, sizeof err), 0, "%s", err);
    auth_keys_free(k);
    check_leaks();
}

/* aud as an array: any one string "chat" is enough, whatever else it
 * holds; the kid must be a string. */
Test(attack, audience_arrays_and_kid_types, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char err[200] = "";
    char *c = claims_json(ISS, "[1,null,\"other\",\"chat\"]", NOW, NOW, NOW + 600);
    cr_assert_eq(verify_claims(k, c, NOW, err, sizeof err), 0, "%s", err);
    free(c);
    c = claims_json(ISS, "[[\"chat\"]]", NOW, NOW, NOW + 600);
    expect_claims_reject(k, c, "wrong audience");
    free(c);
    c = claims_json(ISS, "\"chat\"", NOW, NOW, NOW + 600);
    const char *headers[] = {"{\"alg\":\"ES256\",\"kid\":7}", "{\"alg\":\"ES256\",\"kid\":null}",
                             "{\"alg\":\"ES256\",\"kid\":\"\"}"};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *t = sign_parts(k, headers[i], c);
        expect_reject(k, t, NOW, "unknown kid");
        free(t);
    }
    free(c);
    auth_keys_free(k);
    check_leaks();
}

/* What the cache cannot key goes the uncached way with the same answer:
 * no cache, a missing argument, an oversize token. Two good tokens in one
 * slot replace each other and each is still right. */
Test(cache, uncacheable_calls_and_collisions)
{
    auth_keys *k = new_keys();
    auth_cache *cache = auth_cache_new(1);
    char *a = issue(k, NOW, 600), *b = issue(k, NOW + 1, 600), err[200] = "";
    auth_claims c;

    cr_assert_null(auth_cache_new(SIZE_MAX), "slots * entry size overflows");
    auth_cache_free(NULL);
    cr_assert_eq(auth_cache_verify(NULL, k, a, ISS, NOW, &c, err, sizeof(err)), 0, "%s", err);
    auth_claims_clear(&c);
    cr_assert_eq(auth_cache_verify(cache, k, NULL, ISS, NOW, &c, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "empty token"), "%s", err);
    cr_assert_eq(auth_cache_verify(cache, k, a, NULL, NOW, &c, err, sizeof(err)), -1);
    cr_assert_eq(auth_cache_verify(cache, NULL, a, ISS, NOW, &c, err, sizeof(err)), -1);
    static char huge[AUTH_TOKEN_MAX + 2];
    memset(huge, 'A', sizeof huge - 1);
    cr_assert_eq(auth_cache_verify(cache, k, huge, ISS, NOW, &c, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "too large"), "%s", err);

    for (int round = 0; round < 2; round++) {
        cr_assert_eq(auth_cache_verify(cache, k, a, ISS, NOW + 2, &c, err, sizeof(err)), 0);
        cr_assert_eq(c.iat, NOW);
        auth_claims_clear(&c);
        cr_assert_eq(auth_cache_verify(cache, k, b, ISS, NOW + 2, &c, err, sizeof(err)), 0);
        cr_assert_eq(c.iat, NOW + 1);
        auth_claims_clear(&c);
    }
    cr_assert_eq(auth_cache_hits(cache), 0, "each replaced the other");
    cr_assert_eq(auth_cache_verify(cache, k, b, ISS, NOW + 2, &c, err, sizeof(err)), 0);
    auth_claims_clear(&c);
    cr_assert_eq(auth_cache_hits(cache), 1);
    mem_free(a);
    mem_free(b);
    auth_cache_free(cache);
    auth_keys_free(k);
    check_leaks();
}

/* ---- login age: auth_time and --jwt-max-age (issue 9, item 11) -------- */

#define WEEK 604800L

static char *issue_login(const auth_keys *k, time_t now, time_t auth_time, long max_age)
{
    auth_claims_in in = {.iss = ISS,
                         .sub = "7",
                         .ttl_seconds = 3600,
                         .now = now,
                         .auth_time = auth_time,
                         .max_age_seconds = max_age};
    char err[200] = "", *tok = NULL;
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof(err)), 0, "issue: %s", err);
    return tok;
}

static auth_claims verified(const auth_keys *k, const char *tok, time_t now)
{
    auth_claims c;
    char err[200] = "";
    cr_assert_eq(auth_token_verify(k, tok, ISS, now, &c, err, sizeof(err)), 0, "%s", err);
    return c;
}

/* A fresh login's token says when the login began; a token resumed from it
 * keeps that auth_time, and its exp never passes auth_time + max age. */
Test(token, auth_time_is_kept_across_resumes_and_caps_exp)
{
    auth_keys *k = new_keys();
    char *tok = issue_login(k, NOW, 0, WEEK);
    auth_claims c = verified(k, tok, NOW);
    cr_assert_eq(c.auth_time, NOW, "a new login starts now");
    cr_assert_eq(c.exp, NOW + 3600);
    mem_free(tok);

    /* Resumed every 50 minutes, as a client would: a week later it ends. */
    time_t t = NOW, first = c.auth_time, last_exp = 0;
    int resumes = 0;
    char err[200];
    for (;;) {
        t += 3000;
        auth_claims_in in = {.iss = ISS,
                             .sub = "7",
                             .ttl_seconds = 3600,
                             .now = t,
                             .auth_time = c.auth_time,
                             .max_age_seconds = WEEK};
        auth_claims_clear(&c);
        tok = NULL;
        if (auth_token_issue(k, &in, &tok, err, sizeof(err)) != 0)
            break;
        c = verified(k, tok, t);
        mem_free(tok);
        cr_assert_eq(c.auth_time, first, "resume %d kept the login's start", resumes);
        cr_assert_leq(c.exp, first + WEEK);
        last_exp = c.exp;
        resumes++;
        cr_assert_lt(resumes, 1000, "the login never ended");
    }
    cr_assert(strstr(err, "sign in again") != NULL, "%s", err);
    cr_assert_geq(t, first + WEEK, "refused only once the week was over");
    cr_assert_eq(last_exp, first + WEEK, "the last token ends exactly at the limit");
    auth_claims_clear(&c);
    auth_keys_free(k);
    check_leaks();
}

Test(token, login_age_check)
{
    auth_keys *k = new_keys();
    char *tok = issue_login(k, NOW, NOW - WEEK + 100, WEEK);
    auth_claims c = verified(k, tok, NOW);
    char err[200] = "";
    cr_assert_eq(c.exp, NOW + 100, "exp capped at auth_time + max age");
    cr_assert_eq(auth_claims_check_age(&c, NOW + 99, WEEK, err, sizeof err), 0);
    cr_assert_eq(auth_claims_check_age(&c, NOW + 100, WEEK, err, sizeof err), -1);
    cr_assert(strstr(err, "sign in again") != NULL, "%s", err);
    cr_assert_eq(auth_claims_check_age(&c, NOW + 100, 0, err, sizeof err), 0, "0 = no limit");
    /* A smaller --jwt-max-age after a restart applies to tokens already out. */
    cr_assert_eq(auth_claims_check_age(&c, NOW, 3600, err, sizeof err), -1);
    auth_claims_clear(&c);
    mem_free(tok);

    /* Refused at issue: a login already too old, or out of range. A login
     * from the future (a clock stepped back) counts as starting now. */
    auth_claims_in in = {
        .iss = ISS, .sub = "7", .ttl_seconds = 60, .now = NOW, .auth_time = NOW - WEEK};
    in.max_age_seconds = WEEK;
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof err), -1);
    cr_assert_null(tok);
    in.auth_time = -5;
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof err), -1);
    in.auth_time = NOW + 30;
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof err), 0, "%s", err);
    c = verified(k, tok, NOW);
    cr_assert_eq(c.auth_time, NOW);
    auth_claims_clear(&c);
    mem_free(tok);
    tok = NULL;
    in.auth_time = NOW;
    in.max_age_seconds = -1;
    cr_assert_eq(auth_token_issue(k, &in, &tok, err, sizeof err), -1);
    auth_keys_free(k);
    check_leaks();
}

/* Tokens issued before version 2 have no auth_time: iat stands in. One that
 * claims a login after its own issue, or a non-number, is refused. */
Test(attack, auth_time_claim_checked, .init = setup, .fini = teardown)
{
    auth_keys *k = new_keys();
    char *h = good_header(k), *claims, *t, err[200] = "";
    auth_claims c;

    claims = claims_json(ISS, "\"chat\"", NOW - 10, NOW - 10, NOW + 100);
    t = sign_parts(k, h, claims);
    cr_assert_eq(auth_token_verify(k, t, ISS, NOW, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.auth_time, NOW - 10);
    auth_claims_clear(&c);
    free(t);
    free(claims);

    cr_assert(asprintf(&claims,
                       "{\"iss\":\"%s\",\"sub\":\"7\",\"aud\":\"chat\",\"iat\":%ld,\"nbf\":%ld,"
                       "\"exp\":%ld,\"auth_time\":%ld}",
                       ISS, (long)NOW, (long)NOW, (long)NOW + 100, (long)NOW + 5) > 0);
    expect_claims_reject(k, claims, "auth_time");
    free(claims);
    cr_assert(asprintf(&claims,
                       "{\"iss\":\"%s\",\"sub\":\"7\",\"aud\":\"chat\",\"iat\":%ld,\"nbf\":%ld,"
                       "\"exp\":%ld,\"auth_time\":\"yesterday\"}",
                       ISS, (long)NOW, (long)NOW, (long)NOW + 100) > 0);
    expect_claims_reject(k, claims, "auth_time");
    free(claims);
    free(h);
    auth_keys_free(k);
    check_leaks();
}

/* The cache hands back auth_time on a hit as well. */
Test(cache, hit_keeps_auth_time)
{
    auth_keys *k = new_keys();
    auth_cache *cache = auth_cache_new(16);
    char *tok = issue_login(k, NOW, NOW - 500, WEEK);
    char err[200];
    auth_claims c;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(auth_cache_verify(cache, k, tok, ISS, NOW, &c, err, sizeof err), 0, "%s", err);
        cr_assert_eq(c.auth_time, NOW - 500, "round %d", i);
        auth_claims_clear(&c);
    }
    cr_assert_eq(auth_cache_hits(cache), 1);
    mem_free(tok);
    auth_cache_free(cache);
    auth_keys_free(k);
    check_leaks();
}
