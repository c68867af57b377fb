/*
 * base64url — see base64url.h. Table driven, no locale or libc ctype use,
 * no global state, so it is thread-safe and cannot be fooled by a locale.
 */
#include "util/base64url.h"

#include "util/mem.h"

#include <stdint.h>

static const char alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Value 0..63 of a base64url character, or -1 for anything else (padding,
 * '+', '/', whitespace and bytes >= 0x80 included). */
static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

size_t b64url_encoded_len(size_t n)
{
    /* 4 characters per 3 bytes; a tail of 1 or 2 bytes takes 2 or 3. */
    return (n / 3) * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

size_t b64url_decoded_max(size_t inlen) { return (inlen / 4) * 3 + (inlen % 4) * 3 / 4; }

size_t b64url_encode(char *out, size_t outcap, const void *in, size_t n)
{
    const unsigned char *p = in;
    size_t need = b64url_encoded_len(n);
    size_t i = 0, o = 0;

    if (out == NULL || need >= outcap || (n > 0 && in == NULL))
        return 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

char *b64url_encode_alloc(const void *in, size_t n)
{
    size_t need = b64url_encoded_len(n) + 1;
    char *out;

    if (n > 0 && in == NULL)
        return NULL;
    out = mem_alloc(need);
    if (out == NULL)
        return NULL;
    if (n == 0) {
        out[0] = '\0';
        return out;
    }
    b64url_encode(out, need, in, n);
    return out;
}

int b64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap, size_t *outlen)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t full = inlen / 4, rest = inlen % 4, o = 0, i;

    if (outlen != NULL)
        *outlen = 0;
    if (inlen > 0 && in == NULL)
        return B64URL_EINVAL;
    /* One leftover character carries 6 bits: less than a byte. */
    if (rest == 1)
        return B64URL_EINVAL;
    if (b64url_decoded_max(inlen) > outcap)
        return B64URL_ENOSPC;
    if (inlen > 0 && out == NULL)
        return B64URL_EINVAL;
    for (i = 0; i < full; i++) {
        int a = sextet(p[4 * i]), b = sextet(p[4 * i + 1]);
        int c = sextet(p[4 * i + 2]), d = sextet(p[4 * i + 3]);
        uint32_t v;
        if ((a | b | c | d) < 0)
            return B64URL_EINVAL;
        v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    if (rest >= 2) {
        const unsigned char *t = p + 4 * full;
        int a = sextet(t[0]), b = sextet(t[1]);
        int c = rest == 3 ? sextet(t[2]) : 0;
        uint32_t v;
        if ((a | b | c) < 0)
            return B64URL_EINVAL;
        /* Unused low bits must be zero, or two texts would decode alike. */
        if (rest == 2 && (b & 0x0f) != 0)
            return B64URL_EINVAL;
        if (rest == 3 && (c & 0x03) != 0)
            return B64URL_EINVAL;
        v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        out[o++] = (unsigned char)(v >> 16);
        if (rest == 3)
            out[o++] = (unsigned char)(v >> 8);
    }
    if (outlen != NULL)
        *outlen = o;
    return B64URL_OK;
}

int b64url_decode_alloc(const char *in, size_t inlen, unsigned char **out, size_t *outlen)
{
    size_t cap = b64url_decoded_max(inlen), got = 0;
    unsigned char *buf;
    int rc;

    *out = NULL;
    if (outlen != NULL)
        *outlen = 0;
    /* Validate before allocating so garbage costs no memory. */
    if (inlen % 4 == 1 || (inlen > 0 && in == NULL))
        return B64URL_EINVAL;
    buf = mem_alloc(cap + 1);
    if (buf == NULL)
        return B64URL_ENOMEM;
    rc = b64url_decode(in, inlen, buf, cap, &got);
    if (rc != B64URL_OK) {
        mem_free(buf);
        return rc;
    }
    buf[got] = '\0';
    *out = buf;
    if (outlen != NULL)
        *outlen = got;
    return B64URL_OK;
}
