/*
 * token — see token.h for the checks and their order.
 *
 * Why libjwt is not used: libjwt 1.10 checks a signature with whatever
 * algorithm the header names (it accepts "none" without a key and HS256
 * keyed with our public PEM) and checks no claim, so every decision is made
 * here anyway. It also decoded our public key from PEM on every call, which
 * made a verification 7-11 times slower than the ECDSA arithmetic itself
 * (docs/BENCHMARKS.md, "jwt"). Signing and verifying use OpenSSL directly
 * with the key loaded once; see also auth_token_issue.
 *
 * The claims are read from our own strict decoding of the payload text, not
 * from libjwt's grants: the signature covers that exact text, and jansson
 * gives us the JSON types (libjwt's getters would turn "exp":"x" into 0).
 *
 * Threading: no static state; the OpenSSL 3 and jansson calls used here
 * are reentrant. Failures clear OpenSSL's per-thread error queue so that the
 * DTLS code on the same thread never sees our leftovers.
 */
#include "auth/token.h"

#include "util/base64url.h"
#include "util/err.h"
#include "util/json_text.h"
#include "util/mem.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define ES256_SIG_LEN 64 /* R || S, 32 bytes each (RFC 7518 §3.4) */
/* Time claims are kept far from INT64 limits so that adding the skew can
 * never overflow; 2^62 seconds is beyond any real date. */
#define TIME_LIMIT ((int64_t)1 << 62)

void auth_claims_clear(auth_claims *c)
{
    if (c == NULL)
        return;
    mem_free(c->sub);
    mem_free(c->name);
    mem_free(c->preferred_username);
    mem_free(c->email);
    mem_free(c->jti);
    memset(c, 0, sizeof(*c));
}

int auth_claims_copy(auth_claims *dst, const auth_claims *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->sub = mem_strdup(src->sub);
    dst->name = mem_strdup(src->name);
    dst->preferred_username = mem_strdup(src->preferred_username);
    dst->email = mem_strdup(src->email);
    dst->jti = mem_strdup(src->jti);
    dst->auth_time = src->auth_time;
    dst->iat = src->iat;
    dst->nbf = src->nbf;
    dst->exp = src->exp;
    if (dst->sub == NULL || dst->name == NULL || dst->preferred_username == NULL ||
        dst->email == NULL || dst->jti == NULL) {
        auth_claims_clear(dst);
        return -1;
    }
    return 0;
}

int auth_claims_check_time(const auth_claims *c, time_t now, char *err, size_t errlen)
{
    int64_t t = (int64_t)now;

    /* Keeps t + skew from overflowing; no real clock is near the limit. */
    if (t > TIME_LIMIT || t < -TIME_LIMIT) {
        err_set(err, errlen, "clock out of range");
        return -1;
    }
    if ((int64_t)c->nbf > t + AUTH_CLOCK_SKEW) {
        err_set(err, errlen, "token not yet valid (nbf in the future)");
        return -1;
    }
    if ((int64_t)c->iat > t + AUTH_CLOCK_SKEW) {
        err_set(err, errlen, "token issued in the future (iat)");
        return -1;
    }
    if (t >= (int64_t)c->exp + AUTH_CLOCK_SKEW) {
        err_set(err, errlen, "token expired");
        return -1;
    }
    return 0;
}

int auth_claims_check_age(const auth_claims *c, time_t now, long max_age, char *err, size_t errlen)
{
    if (max_age <= 0)
        return 0;
    if ((int64_t)now >= (int64_t)c->auth_time + max_age) {
        err_set(err, errlen,
                "the login this token continues is over %ld seconds old (--jwt-max-age); sign "
                "in again",
                max_age);
        return -1;
    }
    return 0;
}

/* ---- issuing ---------------------------------------------------------- */

/* Adds name: string value; a NULL value adds nothing. 0 or -1 (out of
 * memory, or value not UTF-8: json_string validates it). */
static int put_string(json_t *obj, const char *name, const char *value)
{
    if (value == NULL)
        return 0;
    return json_object_set_new(obj, name, json_string(value));
}

/* ES256 over input: SHA-256, ECDSA, then DER -> the fixed 64-byte R||S that
 * JWS requires (RFC 7518 §3.4). Returns base64url in a new string. */
static char *es256_sign(const auth_keys *keys, const char *input, size_t len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[80], raw[ES256_SIG_LEN];
    const unsigned char *p = der;
    size_t der_len = sizeof(der);
    ECDSA_SIG *sig = NULL;
    const BIGNUM *r = NULL, *s = NULL;
    char *out = NULL;

    if (md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, auth_keys_pkey(keys)) == 1 &&
        EVP_DigestSign(md, der, &der_len, (const unsigned char *)input, len) == 1 &&
        (sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len)) != NULL) {
        ECDSA_SIG_get0(sig, &r, &s);
        if (BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32)
            out = b64url_encode_alloc(raw, sizeof(raw));
    }
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    return out;
}

/* Checks a 64-byte R||S ES256 signature over input with our key. Returns 1
 * when it verifies, 0 otherwise. */
static int es256_verify(const auth_keys *keys, const char *input, size_t len,
                        const unsigned char raw[ES256_SIG_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    unsigned char *der = NULL;
    int der_len = -1, ok = 0;

    if (sig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(sig, r, s) == 1) {
        r = s = NULL; /* owned by sig now */
        der_len = i2d_ECDSA_SIG(sig, &der);
    }
    if (md != NULL && der_len > 0 &&
        EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, auth_keys_pkey(keys)) == 1 &&
        EVP_DigestVerify(md, der, (size_t)der_len, (const unsigned char *)input, len) == 1)
        ok = 1;
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    return ok;
}

int auth_token_issue(const auth_keys *keys, const auth_claims_in *in, char **out, char *err,
                     size_t errlen)
{
    unsigned char rnd[16];
    char jti[2 * sizeof(rnd) + 1];
    json_t *header = NULL, *claims = NULL;
    char *hjson = NULL, *cjson = NULL, *h64 = NULL, *c64 = NULL, *sig = NULL;
    char *tok = NULL;
    size_t i, hlen, clen, slen;
    int64_t now;
    int rc = -1;

    if (out != NULL)
        *out = NULL;
    if (keys == NULL || in == NULL || out == NULL) {
        err_set(err, errlen, "missing argument");
        return -1;
    }
    if (in->iss == NULL || in->iss[0] == '\0' || in->sub == NULL || in->sub[0] == '\0') {
        err_set(err, errlen, "iss and sub are required");
        return -1;
    }
    now = (int64_t)in->now;
    if (in->ttl_seconds <= 0 || in->ttl_seconds > TIME_LIMIT || now < 0 || now > TIME_LIMIT ||
        in->max_age_seconds < 0 || in->max_age_seconds > TIME_LIMIT) {
        err_set(err, errlen, "ttl, max age or time out of range");
        return -1;
    }
    int64_t auth_time = in->auth_time != 0 ? (int64_t)in->auth_time : now;
    int64_t exp = now + in->ttl_seconds;
    if (auth_time < 0) {
        err_set(err, errlen, "auth_time out of range");
        return -1;
    }
    /* A login "in the future" can only come from a clock stepped back
     * (verify allows 60 s of skew): it started now at the latest. */
    if (auth_time > now)
        auth_time = now;
    if (in->max_age_seconds > 0) {
        if (auth_time + in->max_age_seconds <= now) {
            err_set(err, errlen, "the login is over %ld seconds old; sign in again",
                    in->max_age_seconds);
            return -1;
        }
        if (exp > auth_time + in->max_age_seconds)
            exp = auth_time + in->max_age_seconds;
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        err_set(err, errlen, "no randomness for jti");
        ERR_clear_error();
        return -1;
    }
    for (i = 0; i < sizeof(rnd); i++)
        snprintf(jti + 2 * i, 3, "%02x", rnd[i]);

    /* Why not libjwt's jwt_encode_str: libjwt 1.10.2 passes a failed
     * json_dumps result (NULL) on to strlen, so an allocation failure while
     * encoding crashes the process. Building the JWS here costs ~40 lines
     * and keeps every failure an error return. */
    header = json_object();
    claims = json_object();
    if (header == NULL || claims == NULL || put_string(header, "alg", "ES256") != 0 ||
        put_string(header, "typ", "JWT") != 0 ||
        put_string(header, "kid", auth_keys_kid(keys)) != 0 ||
        put_string(claims, "iss", in->iss) != 0 || put_string(claims, "sub", in->sub) != 0 ||
        put_string(claims, "aud", AUTH_AUDIENCE) != 0 ||
        json_object_set_new(claims, "auth_time", json_integer((json_int_t)auth_time)) != 0 ||
        json_object_set_new(claims, "iat", json_integer((json_int_t)now)) != 0 ||
        json_object_set_new(claims, "nbf", json_integer((json_int_t)now)) != 0 ||
        json_object_set_new(claims, "exp", json_integer((json_int_t)exp)) != 0 ||
        put_string(claims, "jti", jti) != 0 || put_string(claims, "name", in->name) != 0 ||
        put_string(claims, "preferred_username", in->preferred_username) != 0 ||
        put_string(claims, "email", in->email) != 0) {
        err_set(err, errlen, "out of memory or a claim is not UTF-8");
        goto done;
    }
    hjson = json_text_compact(header);
    cjson = json_text_compact(claims);
    h64 = hjson != NULL ? b64url_encode_alloc(hjson, strlen(hjson)) : NULL;
    c64 = cjson != NULL ? b64url_encode_alloc(cjson, strlen(cjson)) : NULL;
    if (h64 == NULL || c64 == NULL) {
        err_set(err, errlen, "out of memory");
        goto done;
    }
    hlen = strlen(h64);
    clen = strlen(c64);
    /* Room for the signature now, so the input is signed in place. */
    tok = mem_alloc(hlen + clen + 2 + b64url_encoded_len(ES256_SIG_LEN) + 1);
    if (tok == NULL) {
        err_set(err, errlen, "out of memory");
        goto done;
    }
    memcpy(tok, h64, hlen);
    tok[hlen] = '.';
    memcpy(tok + hlen + 1, c64, clen);
    sig = es256_sign(keys, tok, hlen + 1 + clen);
    if (sig == NULL) {
        err_set(err, errlen, "signing failed");
        ERR_clear_error();
        goto done;
    }
    slen = strlen(sig);
    tok[hlen + 1 + clen] = '.';
    memcpy(tok + hlen + clen + 2, sig, slen + 1);
    if (strlen(tok) > AUTH_TOKEN_MAX) {
        err_set(err, errlen, "token would exceed %d bytes", AUTH_TOKEN_MAX);
        goto done;
    }
    *out = tok;
    tok = NULL;
    rc = 0;

done:
    json_decref(header);
    json_decref(claims);
    mem_free(hjson);
    mem_free(cjson);
    mem_free(h64);
    mem_free(c64);
    mem_free(sig);
    mem_free(tok);
    return rc;
}

/* ---- verifying -------------------------------------------------------- */

/* Decodes one base64url part and parses it as a JSON object. Returns the
 * object, or NULL with err set (what names the part in messages). */
static json_t *part_json(const char *p, size_t n, const char *what, char *err, size_t errlen)
{
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    json_error_t jerr;
    json_t *obj;
    int rc = b64url_decode_alloc(p, n, &raw, &raw_len);

    if (rc == B64URL_ENOMEM) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    if (rc != B64URL_OK) {
        err_set(err, errlen, "malformed token: %s is not base64url", what);
        return NULL;
    }
    /* Duplicate members are refused: another parser (libjwt's, a
     * verifier's) might pick the other copy of "alg" or "sub". */
    obj = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES, &jerr);
    mem_free(raw);
    if (obj == NULL || !json_is_object(obj)) {
        err_set(err, errlen, "malformed token: %s is not a JSON object", what);
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* A JSON string without embedded NUL (C code would see a shorter value than
 * a verifier in another language, e.g. sub "1\u0000..." read as "1").
 * jansson already refuses \u0000 without JSON_ALLOW_NUL; this check keeps
 * the guarantee should someone add that flag. */
static const char *clean_string(const json_t *v)
{
    const char *s;
    if (!json_is_string(v))
        return NULL;
    s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return NULL;
    return s;
}

/* Reads a numeric time claim. Fractions round toward the stricter side:
 * up for nbf/iat (round_up), down for exp. 0 ok, -1 absent, -2 bad. */
static int time_claim(json_t *claims, const char *name, int round_up, time_t *out)
{
    json_t *v = json_object_get(claims, name);
    int64_t t;

    if (v == NULL)
        return -1;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < -TIME_LIMIT || i > TIME_LIMIT)
            return -2;
        t = (int64_t)i;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= -(double)TIME_LIMIT && d <= (double)TIME_LIMIT))
            return -2;
        t = (int64_t)d; /* truncates toward zero */
        if (round_up && (double)t < d)
            t++;
        else if (!round_up && (double)t > d)
            t--;
    } else {
        return -2;
    }
    if ((int64_t)(time_t)t != t)
        return -2; /* a 32-bit time_t cannot hold it */
    *out = (time_t)t;
    return 0;
}

/* Optional string claim: "" when absent, NULL (and *bad) when of the wrong
 * type; the returned copy is the caller's. */
static char *optional_string(json_t *claims, const char *name, int *bad, int *nomem)
{
    json_t *v = json_object_get(claims, name);
    const char *s = "";
    char *copy;

    if (v != NULL) {
        s = clean_string(v);
        if (s == NULL) {
            *bad = 1;
            return NULL;
        }
    }
    copy = mem_strdup(s);
    if (copy == NULL)
        *nomem = 1;
    return copy;
}

/* The claim checks after the signature is known good. */
static int check_claims(json_t *claims, const char *expected_iss, time_t now, auth_claims *out,
                        char *err, size_t errlen)
{
    json_t *aud = json_object_get(claims, "aud");
    const char *iss = clean_string(json_object_get(claims, "iss"));
    const char *sub = clean_string(json_object_get(claims, "sub"));
    int aud_ok = 0, bad = 0, nomem = 0, r1, r2, r3;
    size_t i;

    if (iss == NULL) {
        err_set(err, errlen, "missing or malformed iss claim");
        return -1;
    }
    if (strcmp(iss, expected_iss) != 0) {
        err_set(err, errlen, "wrong issuer");
        return -1;
    }
    if (aud == NULL) {
        err_set(err, errlen, "missing aud claim");
        return -1;
    }
    if (json_is_string(aud)) {
        const char *a = clean_string(aud);
        aud_ok = a != NULL && strcmp(a, AUTH_AUDIENCE) == 0;
    } else if (json_is_array(aud)) {
        for (i = 0; i < json_array_size(aud) && !aud_ok; i++) {
            const char *a = clean_string(json_array_get(aud, i));
            aud_ok = a != NULL && strcmp(a, AUTH_AUDIENCE) == 0;
        }
    }
    if (!aud_ok) {
        err_set(err, errlen, "wrong audience");
        return -1;
    }
    r1 = time_claim(claims, "exp", 0, &out->exp);
    r2 = time_claim(claims, "nbf", 1, &out->nbf);
    r3 = time_claim(claims, "iat", 1, &out->iat);
    if (r1 == -1 || r2 == -1 || r3 == -1) {
        err_set(err, errlen, "missing exp, nbf or iat claim");
        return -1;
    }
    if (r1 != 0 || r2 != 0 || r3 != 0) {
        err_set(err, errlen, "exp, nbf or iat claim is not a number in range");
        return -1;
    }
    /* auth_time rounds down: an older login is the stricter reading. */
    int r4 = time_claim(claims, "auth_time", 0, &out->auth_time);
    if (r4 == -1) {
        out->auth_time = out->iat;
    } else if (r4 != 0 || out->auth_time > out->iat) {
        err_set(err, errlen, "auth_time claim is not a number in range, or after iat");
        return -1;
    }
    if (auth_claims_check_time(out, now, err, errlen) != 0)
        return -1;
    if (sub == NULL || sub[0] == '\0') {
        err_set(err, errlen, "missing or malformed sub claim");
        return -1;
    }
    out->sub = mem_strdup(sub);
    if (out->sub == NULL)
        nomem = 1;
    out->name = optional_string(claims, "name", &bad, &nomem);
    out->preferred_username = optional_string(claims, "preferred_username", &bad, &nomem);
    out->email = optional_string(claims, "email", &bad, &nomem);
    out->jti = optional_string(claims, "jti", &bad, &nomem);
    if (bad) {
        err_set(err, errlen, "a profile or jti claim is not a string");
        return -1;
    }
    if (nomem) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* The header checks made before the signature is checked. */
static int check_header(const auth_keys *keys, json_t *header, char *err, size_t errlen)
{
    const char *alg = clean_string(json_object_get(header, "alg"));
    json_t *kidv = json_object_get(header, "kid");
    const char *kid = auth_keys_kid(keys);

    /* An allow-list of one: "none", HS256 (keyed with our public PEM, the
     * algorithm-confusion attack), other curves all stop here. */
    if (alg == NULL || strcmp(alg, "ES256") != 0) {
        err_set(err, errlen, "unsupported alg (only ES256)");
        return -1;
    }
    /* RFC 7515 §4.1.11: an extension we do not understand must fail. */
    if (json_object_get(header, "crit") != NULL) {
        err_set(err, errlen, "unsupported crit header");
        return -1;
    }
    if (kidv == NULL) {
        err_set(err, errlen, "missing kid");
        return -1;
    }
    if (!json_is_string(kidv) || json_string_length(kidv) != strlen(kid) ||
        CRYPTO_memcmp(json_string_value(kidv), kid, strlen(kid)) != 0) {
        err_set(err, errlen, "unknown kid");
        return -1;
    }
    return 0;
}

int auth_token_verify(const auth_keys *keys, const char *token, const char *expected_iss,
                      time_t now, auth_claims *out, char *err, size_t errlen)
{
    const char *dot1, *dot2, *sig;
    size_t len, sig_len;
    unsigned char sig_raw[ES256_SIG_LEN + 3];
    json_t *header = NULL, *claims = NULL;
    int rc = -1;

    if (out == NULL) {
        err_set(err, errlen, "missing argument");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (keys == NULL || expected_iss == NULL) {
        err_set(err, errlen, "missing argument");
        return -1;
    }
    if (token == NULL || token[0] == '\0') {
        err_set(err, errlen, "empty token");
        return -1;
    }
    /* strnlen: never read past the cap of an unterminated giant. */
    len = strnlen(token, AUTH_TOKEN_MAX + 1);
    if (len > AUTH_TOKEN_MAX) {
        err_set(err, errlen, "token too large");
        return -1;
    }
    dot1 = memchr(token, '.', len);
    dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
        err_set(err, errlen, "malformed token: not three parts");
        return -1;
    }
    header = part_json(token, (size_t)(dot1 - token), "header", err, errlen);
    if (header == NULL)
        goto done;
    if (check_header(keys, header, err, errlen) != 0)
        goto done;
    claims = part_json(dot1 + 1, (size_t)(dot2 - dot1 - 1), "claims", err, errlen);
    if (claims == NULL)
        goto done;
    sig = dot2 + 1;
    sig_len = len - (size_t)(sig - token);
    {
        size_t got = 0;
        if (b64url_decode(sig, sig_len, sig_raw, sizeof(sig_raw), &got) != B64URL_OK ||
            got != ES256_SIG_LEN) {
            err_set(err, errlen, "bad signature");
            goto done;
        }
    }

    /* The signature covers "header.payload" exactly as sent. */
    if (!es256_verify(keys, token, (size_t)(dot2 - token), sig_raw)) {
        err_set(err, errlen, "bad signature");
        ERR_clear_error();
        goto done;
    }
    if (check_claims(claims, expected_iss, now, out, err, errlen) != 0)
        goto done;
    rc = 0;

done:
    if (rc != 0)
        auth_claims_clear(out);
    json_decref(header);
    json_decref(claims);
    return rc;
}
