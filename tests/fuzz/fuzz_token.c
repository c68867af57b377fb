/*
 * fuzz_token — libFuzzer target for auth_token_verify (and the strict
 * base64url decoder and JSON handling below it).
 *
 * Two kinds of input:
 *  - anything not starting with '{' is verified as a token text, as it
 *    would arrive in an Authorization header or a post;
 *  - input starting with '{' is taken as a claims JSON text, which the
 *    harness signs with the real key under a correct ES256 header before
 *    verifying. Random bytes never carry a valid signature, so without this
 *    the claim checks after the signature would stay unreached.
 * Either way the only acceptable outcomes are 0 with a non-empty sub, or -1
 * with a message; the sanitizers catch everything else.
 *
 * The key is created once per process in a temporary folder and removed at
 * exit. Single-threaded, like libFuzzer's driver.
 */
#include "auth/cache.h"
#include "auth/keys.h"
#include "auth/token.h"
#include "util/base64url.h"
#include "util/log.h"
#include "util/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define ISS "https://chat.example"
#define NOW ((time_t)1700000000)

static auth_keys *keys;
static auth_cache *cache;
static EVP_PKEY *pkey;
static char dir[64];
static char path[128];

static void cleanup(void)
{
    auth_cache_free(cache);
    auth_keys_free(keys);
    EVP_PKEY_free(pkey);
    unlink(path);
    rmdir(dir);
}

static void setup_once(void)
{
    char err[256] = "";
    size_t len;
    const unsigned char *pem;
    BIO *bio;

    mem_install();
    log_set_level(LOGL_OFF);
    strcpy(dir, "/tmp/fuzz_token.XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof(path), "%s/key.pem", dir);
    keys = auth_keys_load_or_create(path, err, sizeof(err));
    cache = auth_cache_new(16);
    if (keys == NULL || cache == NULL) {
        fprintf(stderr, "fuzz_token: setup failed: %s\n", err);
        abort();
    }
    pem = auth_keys_private_pem(keys, &len);
    bio = BIO_new_mem_buf(pem, (int)len);
    pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (pkey == NULL)
        abort();
    atexit(cleanup);
}

/* header.claims.sig for the given claims text, signed with our key. */
static char *sign_claims(const uint8_t *claims, size_t n)
{
    char header[128], *h, *c, *s, *tok = NULL;
    unsigned char der[80], raw[64];
    const unsigned char *p = der;
    size_t der_len = sizeof(der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ECDSA_SIG *sig = NULL;
    const BIGNUM *r, *sv;
    size_t input_len;

    snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", auth_keys_kid(keys));
    h = b64url_encode_alloc(header, strlen(header));
    c = b64url_encode_alloc(claims, n);
    if (h == NULL || c == NULL || md == NULL)
        goto out;
    input_len = strlen(h) + 1 + strlen(c);
    tok = malloc(input_len + 1 + 87 + 1);
    if (tok == NULL)
        goto out;
    sprintf(tok, "%s.%s", h, c);
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestSign(md, der, &der_len, (unsigned char *)tok, input_len) != 1 ||
        (sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len)) == NULL) {
        free(tok);
        tok = NULL;
        goto out;
    }
    ECDSA_SIG_get0(sig, &r, &sv);
    BN_bn2binpad(r, raw, 32);
    BN_bn2binpad(sv, raw + 32, 32);
    s = b64url_encode_alloc(raw, sizeof(raw));
    if (s == NULL) {
        free(tok);
        tok = NULL;
        goto out;
    }
    tok[input_len] = '.';
    strcpy(tok + input_len + 1, s);
    mem_free(s);
out:
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    mem_free(h);
    mem_free(c);
    return tok;
}

static void check(const char *tok)
{
    char err[256];
    auth_claims out;

    err[0] = '\0';
    if (auth_token_verify(keys, tok, ISS, NOW, &out, err, sizeof(err)) == 0) {
        if (out.sub == NULL || out.sub[0] == '\0' || out.jti == NULL)
            abort();
    } else if (err[0] == '\0' || out.sub != NULL) {
        abort();
    }
    auth_claims_clear(&out);
    /* The cache must agree with the uncached path. */
    if (auth_cache_verify(cache, keys, tok, ISS, NOW, &out, err, sizeof(err)) == 0 &&
        (out.sub == NULL || out.sub[0] == '\0'))
        abort();
    auth_claims_clear(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *tok;

    if (keys == NULL)
        setup_once();
    if (size > 0 && data[0] == '{') {
        tok = sign_claims(data, size);
    } else {
        /* NUL-terminated copy: tokens arrive as C strings. */
        tok = malloc(size + 1);
        if (tok != NULL) {
            memcpy(tok, data, size);
            tok[size] = '\0';
        }
    }
    if (tok == NULL)
        return 0;
    check(tok);
    free(tok);
    return 0;
}
