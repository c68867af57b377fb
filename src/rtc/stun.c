/*
 * stun — see stun.h. Every field is network byte order (RFC 8489 §5).
 *
 * The parser walks the attributes once. Each attribute's header must fit,
 * and its value plus padding to 4 bytes must end inside the message; the
 * message length itself must be a multiple of 4 and match the datagram, so
 * no read can leave the buffer whatever the lengths say. Attributes after
 * MESSAGE-INTEGRITY are walked (they must still be well-formed, and
 * FINGERPRINT may follow) but not decoded: RFC 8489 §14.5 says to ignore
 * them, since the HMAC does not cover them. When an attribute appears
 * twice, the first one counts (§14).
 *
 * MESSAGE-INTEGRITY and FINGERPRINT both cover the header's length field,
 * which must then count the bytes up to the end of the attribute being
 * computed (§14.5, §14.7). FINGERPRINT is the last attribute, so the
 * length as received is already right for it; MESSAGE-INTEGRITY may be
 * followed by FINGERPRINT, so its check uses a copy of the header with
 * the length set to end at MESSAGE-INTEGRITY.
 */
#include "rtc/stun.h"
#include "util/bytes.h"

#include "util/err.h"

#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <string.h>

#define FINGERPRINT_XOR 0x5354554Eu
#define HMAC_SHA1_BYTES 20
/* The ICE bound (RFC 8445 §7.2.2): two ufrags of at most 256 characters
 * (RFC 8839) and the colon between them. */
#define USERNAME_MAX 513
/* ERROR-CODE's reason phrase: fewer than 128 characters, 763 bytes at most
 * (RFC 8489 §14.8). */
#define REASON_MAX 763

static size_t padded(size_t n) { return (n + 3) & ~(size_t)3; }

/* CRC-32 as in ISO 3309 / zlib (reflected polynomial 0xEDB88320), four
 * bits at a time: a 64-byte table, no initialisation, and messages of a
 * few hundred bytes. */
static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    static const uint32_t nibble[16] = {
        0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u,
        0x4db26158u, 0x5005713cu, 0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
        0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu,
    };
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        c = (c >> 4) ^ nibble[c & 15];
        c = (c >> 4) ^ nibble[c & 15];
    }
    return c ^ 0xffffffffu;
}

/* HMAC-SHA1 of head (the header with its length adjusted) followed by
 * body. Returns 0, or -1 when OpenSSL fails (it allocates). */
static int hmac_sha1(const uint8_t *key, size_t keylen, const uint8_t head[STUN_HEADER_BYTES],
                     const uint8_t *body, size_t bodylen, uint8_t out[HMAC_SHA1_BYTES])
{
    /* EVP_MAC_init needs a key pointer even for an empty key. */
    static const uint8_t empty_key[1] = {0};
    char digest[] = "SHA1";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    int rc = -1;
    size_t outlen = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    if (ctx && EVP_MAC_init(ctx, keylen ? key : empty_key, keylen, params) == 1 &&
        EVP_MAC_update(ctx, head, STUN_HEADER_BYTES) == 1 &&
        (bodylen == 0 || EVP_MAC_update(ctx, body, bodylen) == 1) &&
        EVP_MAC_final(ctx, out, &outlen, HMAC_SHA1_BYTES) == 1 && outlen == HMAC_SHA1_BYTES)
        rc = 0;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

int stun_is_stun(const uint8_t *data, size_t len)
{
    if (data == NULL || len < STUN_HEADER_BYTES || data[0] > 3)
        return 0;
    size_t body = get16(data + 2);
    return get32(data + 4) == STUN_MAGIC_COOKIE && body % 4 == 0 && STUN_HEADER_BYTES + body == len;
}

/* XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the port is XORed with the top half
 * of the magic cookie, an IPv4 address with the cookie, an IPv6 address
 * with the cookie and the transaction id. */
static int parse_xor_address(const uint8_t *v, size_t n, const uint8_t *header, stun_msg *m,
                             char *err, size_t errlen)
{
    if (n < 4) {
        err_set(err, errlen, "XOR-MAPPED-ADDRESS of %zu bytes is too short", n);
        return -1;
    }
    uint16_t port = (uint16_t)(get16(v + 2) ^ (STUN_MAGIC_COOKIE >> 16));
    if (v[1] == 0x01) {
        if (n != 8) {
            err_set(err, errlen, "XOR-MAPPED-ADDRESS for IPv4 must be 8 bytes, got %zu", n);
            return -1;
        }
        struct sockaddr_in *sin = (struct sockaddr_in *)&m->mapped;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        uint8_t *a = (uint8_t *)&sin->sin_addr;
        for (int i = 0; i < 4; i++)
            a[i] = v[4 + i] ^ header[4 + i];
    } else if (v[1] == 0x02) {
        if (n != 20) {
            err_set(err, errlen, "XOR-MAPPED-ADDRESS for IPv6 must be 20 bytes, got %zu", n);
            return -1;
        }
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&m->mapped;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        uint8_t *a = (uint8_t *)&sin6->sin6_addr;
        /* header + 4 is the cookie followed by the transaction id. */
        for (int i = 0; i < 16; i++)
            a[i] = v[4 + i] ^ header[4 + i];
    } else {
        err_set(err, errlen, "XOR-MAPPED-ADDRESS has unknown address family 0x%02x", v[1]);
        return -1;
    }
    m->has_mapped = 1;
    return 0;
}

/* One attribute before MESSAGE-INTEGRITY (or in a message without one). */
static int parse_attr(uint16_t type, const uint8_t *v, size_t n, const uint8_t *header, stun_msg *m,
                      char *err, size_t errlen)
{
    switch (type) {
    case STUN_ATTR_USERNAME:
        if (n > USERNAME_MAX) {
            err_set(err, errlen, "USERNAME of %zu bytes is over %d", n, USERNAME_MAX);
            return -1;
        }
        if (m->username == NULL) {
            m->username = v;
            m->username_len = n;
        }
        return 0;
    case STUN_ATTR_XOR_MAPPED_ADDRESS:
        if (m->has_mapped)
            return 0;
        return parse_xor_address(v, n, header, m, err, errlen);
    case STUN_ATTR_ERROR_CODE: {
        if (n < 4) {
            err_set(err, errlen, "ERROR-CODE of %zu bytes is too short", n);
            return -1;
        }
        int cls = v[2] & 7, number = v[3];
        if (cls < 3 || cls > 6 || number > 99) {
            err_set(err, errlen, "ERROR-CODE class %d number %d is out of range", cls, number);
            return -1;
        }
        if (m->error_code == 0)
            m->error_code = cls * 100 + number;
        return 0;
    }
    case STUN_ATTR_PRIORITY:
        if (n != 4) {
            err_set(err, errlen, "PRIORITY must be 4 bytes, got %zu", n);
            return -1;
        }
        if (!m->has_priority) {
            m->has_priority = 1;
            m->priority = get32(v);
        }
        return 0;
    case STUN_ATTR_USE_CANDIDATE:
        if (n != 0) {
            err_set(err, errlen, "USE-CANDIDATE must be empty, got %zu bytes", n);
            return -1;
        }
        m->use_candidate = 1;
        return 0;
    case STUN_ATTR_ICE_CONTROLLING:
    case STUN_ATTR_ICE_CONTROLLED:
        if (n != 8) {
            err_set(err, errlen, "ICE-%s must be 8 bytes, got %zu",
                    type == STUN_ATTR_ICE_CONTROLLING ? "CONTROLLING" : "CONTROLLED", n);
            return -1;
        }
        /* Both in one message is the sender's error; the caller sees both
         * flags, and the tiebreaker of the first. */
        if (!m->has_controlling && !m->has_controlled)
            m->tiebreaker = (uint64_t)get32(v) << 32 | get32(v + 4);
        if (type == STUN_ATTR_ICE_CONTROLLING)
            m->has_controlling = 1;
        else
            m->has_controlled = 1;
        return 0;
    default:
        return 0; /* SOFTWARE, MAPPED-ADDRESS, anything unknown */
    }
}

int stun_parse(const uint8_t *data, size_t len, stun_msg *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (data == NULL || len < STUN_HEADER_BYTES) {
        err_set(err, errlen, "STUN message of %zu bytes is shorter than its 20-byte header",
                data == NULL ? 0 : len);
        return -1;
    }
    if (data[0] > 3) {
        err_set(err, errlen, "not STUN: the first two bits are not zero");
        return -1;
    }
    if (get32(data + 4) != STUN_MAGIC_COOKIE) {
        err_set(err, errlen, "not STUN: no magic cookie");
        return -1;
    }
    size_t body = get16(data + 2);
    if (body % 4 != 0) {
        err_set(err, errlen, "STUN length %zu is not a multiple of 4", body);
        return -1;
    }
    if (STUN_HEADER_BYTES + body != len) {
        err_set(err, errlen, "STUN length %zu does not match the %zu bytes after the header", body,
                len - STUN_HEADER_BYTES);
        return -1;
    }
    m->type = get16(data);
    memcpy(m->txid, data + 8, STUN_TXID_BYTES);

    size_t pos = STUN_HEADER_BYTES;
    while (pos < len) {
        /* pos and len are both multiples of 4, so the 4-byte header fits. */
        uint16_t type = get16(data + pos);
        size_t n = get16(data + pos + 2);
        const uint8_t *v = data + pos + 4;
        if (padded(n) > len - pos - 4) {
            err_set(err, errlen, "STUN attribute 0x%04x of %zu bytes runs past the end", type, n);
            return -1;
        }
        if (type == STUN_ATTR_FINGERPRINT) {
            if (n != 4) {
                err_set(err, errlen, "FINGERPRINT must be 4 bytes, got %zu", n);
                return -1;
            }
            if (pos + 8 != len) {
                err_set(err, errlen, "FINGERPRINT is not the last attribute");
                return -1;
            }
            if ((crc32_of(data, pos) ^ FINGERPRINT_XOR) != get32(v)) {
                err_set(err, errlen, "FINGERPRINT is wrong");
                return -1;
            }
            m->has_fingerprint = 1; /* and the loop ends: it was the last */
        } else if (m->integrity_at != 0) {
            /* After MESSAGE-INTEGRITY: ignored (RFC 8489 §14.5). */
        } else if (type == STUN_ATTR_MESSAGE_INTEGRITY) {
            if (n != HMAC_SHA1_BYTES) {
                err_set(err, errlen, "MESSAGE-INTEGRITY must be %d bytes, got %zu", HMAC_SHA1_BYTES,
                        n);
                return -1;
            }
            m->integrity_at = pos;
        } else if (parse_attr(type, v, n, data, m, err, errlen) != 0) {
            return -1;
        }
        pos += 4 + padded(n);
    }
    return 0;
}

int stun_check_integrity(const uint8_t *data, size_t len, const stun_msg *m, const uint8_t *key,
                         size_t keylen)
{
    size_t at = m->integrity_at;
    /* m should come from stun_parse(data, len); a mismatch is a refusal. */
    if (data == NULL || key == NULL || at < STUN_HEADER_BYTES || len < 4 + HMAC_SHA1_BYTES ||
        at > len - 4 - HMAC_SHA1_BYTES)
        return 0;
    uint8_t head[STUN_HEADER_BYTES];
    memcpy(head, data, STUN_HEADER_BYTES);
    put16(head + 2, (uint16_t)(at + 4 + HMAC_SHA1_BYTES - STUN_HEADER_BYTES));
    uint8_t mac[HMAC_SHA1_BYTES];
    if (hmac_sha1(key, keylen, head, data + STUN_HEADER_BYTES, at - STUN_HEADER_BYTES, mac) != 0)
        return 0;
    return CRYPTO_memcmp(mac, data + at + 4, HMAC_SHA1_BYTES) == 0;
}

void stun_begin(stun_writer *w, uint8_t *buf, size_t cap, uint16_t type,
                const uint8_t txid[STUN_TXID_BYTES])
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = 0;
    if (buf == NULL || cap < STUN_HEADER_BYTES) {
        w->overflow = 1;
        return;
    }
    put16(buf, (uint16_t)(type & 0x3fff));
    put16(buf + 2, 0);
    put32(buf + 4, STUN_MAGIC_COOKIE);
    memcpy(buf + 8, txid, STUN_TXID_BYTES);
    w->len = STUN_HEADER_BYTES;
}

/* Appends an attribute header and zeroed room for n bytes of value (plus
 * padding); returns where the value goes, or NULL (and sets overflow) when
 * it does not fit the buffer or a STUN length. */
static uint8_t *reserve(stun_writer *w, uint16_t attr, size_t n)
{
    if (w->overflow)
        return NULL;
    size_t room = 4 + padded(n);
    if (n > 0xffff || room > w->cap - w->len || w->len + room - STUN_HEADER_BYTES > 0xffff) {
        w->overflow = 1;
        return NULL;
    }
    uint8_t *p = w->buf + w->len;
    put16(p, attr);
    put16(p + 2, (uint16_t)n);
    memset(p + 4, 0, padded(n));
    w->len += room;
    return p + 4;
}

void stun_add_bytes(stun_writer *w, uint16_t attr, const void *data, size_t len)
{
    /* What the parser would refuse is not written either. */
    if (attr == STUN_ATTR_USERNAME && len > USERNAME_MAX) {
        w->overflow = 1;
        return;
    }
    uint8_t *v = reserve(w, attr, len);
    if (v != NULL && len > 0)
        memcpy(v, data, len);
}

void stun_add_u32(stun_writer *w, uint16_t attr, uint32_t v)
{
    uint8_t *p = reserve(w, attr, 4);
    if (p != NULL)
        put32(p, v);
}

void stun_add_u64(stun_writer *w, uint16_t attr, uint64_t v)
{
    uint8_t *p = reserve(w, attr, 8);
    if (p != NULL) {
        put32(p, (uint32_t)(v >> 32));
        put32(p + 4, (uint32_t)v);
    }
}

void stun_add_flag(stun_writer *w, uint16_t attr) { reserve(w, attr, 0); }

void stun_add_xor_address(stun_writer *w, const struct sockaddr *addr)
{
    if (w->overflow)
        return;
    /* The cookie and transaction id, as written by stun_begin. */
    const uint8_t *mask = w->buf + 4;
    if (addr != NULL && addr->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
        uint8_t *p = reserve(w, STUN_ATTR_XOR_MAPPED_ADDRESS, 8);
        if (p == NULL)
            return;
        p[1] = 0x01;
        put16(p + 2, (uint16_t)(ntohs(sin->sin_port) ^ (STUN_MAGIC_COOKIE >> 16)));
        const uint8_t *a = (const uint8_t *)&sin->sin_addr;
        for (int i = 0; i < 4; i++)
            p[4 + i] = a[i] ^ mask[i];
    } else if (addr != NULL && addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;
        uint8_t *p = reserve(w, STUN_ATTR_XOR_MAPPED_ADDRESS, 20);
        if (p == NULL)
            return;
        p[1] = 0x02;
        put16(p + 2, (uint16_t)(ntohs(sin6->sin6_port) ^ (STUN_MAGIC_COOKIE >> 16)));
        const uint8_t *a = (const uint8_t *)&sin6->sin6_addr;
        for (int i = 0; i < 16; i++)
            p[4 + i] = a[i] ^ mask[i];
    } else {
        w->overflow = 1; /* no other family can be written */
    }
}

void stun_add_error(stun_writer *w, int code, const char *reason)
{
    size_t rlen = reason ? strlen(reason) : 0;
    if (code < 300 || code > 699 || rlen > REASON_MAX) {
        w->overflow = 1;
        return;
    }
    uint8_t *p = reserve(w, STUN_ATTR_ERROR_CODE, 4 + rlen);
    if (p == NULL)
        return;
    p[2] = (uint8_t)(code / 100);
    p[3] = (uint8_t)(code % 100);
    if (rlen > 0)
        memcpy(p + 4, reason, rlen);
}

int stun_finish(stun_writer *w, const uint8_t *key, size_t keylen)
{
    if (w->overflow)
        return -1;
    if (key != NULL) {
        /* The length covers MESSAGE-INTEGRITY while it is computed. */
        uint8_t *p = reserve(w, STUN_ATTR_MESSAGE_INTEGRITY, HMAC_SHA1_BYTES);
        if (p == NULL)
            return -1;
        put16(w->buf + 2, (uint16_t)(w->len - STUN_HEADER_BYTES));
        size_t at = w->len - 4 - HMAC_SHA1_BYTES;
        if (hmac_sha1(key, keylen, w->buf, w->buf + STUN_HEADER_BYTES, at - STUN_HEADER_BYTES, p) !=
            0) {
            w->overflow = 1;
            return -1;
        }
    }
    uint8_t *p = reserve(w, STUN_ATTR_FINGERPRINT, 4);
    if (p == NULL)
        return -1;
    put16(w->buf + 2, (uint16_t)(w->len - STUN_HEADER_BYTES));
    put32(p, crc32_of(w->buf, w->len - 8) ^ FINGERPRINT_XOR);
    return (int)w->len;
}
