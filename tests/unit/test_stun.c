/*
 * test_stun — src/rtc/stun: the RFC 5769 test vectors (parse, integrity
 * with the right and a wrong password, fingerprint, mapped address), the
 * writer against bytes computed independently (Python's hmac and zlib, the
 * vectors with zero padding), round trips, and every malformed datagram
 * and writer misuse we could think of, each refused with a reason.
 */
#include <criterion/criterion.h>

#include "rtc/stun.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

static const char PASSWORD[] = "VOkJxbRl1RmTxUk/WvJxBt";
#define KEY ((const uint8_t *)PASSWORD)
#define KEYLEN (sizeof PASSWORD - 1)

static const uint8_t TXID[STUN_TXID_BYTES] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                              0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

/* RFC 5769 §2.1: sample request (SOFTWARE, PRIORITY, ICE-CONTROLLED,
 * USERNAME "evtj:h6vY" padded with spaces, MESSAGE-INTEGRITY, FINGERPRINT). */
static const uint8_t RFC5769_REQUEST[] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
};

/* RFC 5769 §2.2: IPv4 response, XOR-MAPPED-ADDRESS 192.0.2.1:32853. */
static const uint8_t RFC5769_IPV4[] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
};

/* RFC 5769 §2.3: IPv6 response, XOR-MAPPED-ADDRESS
 * [2001:db8:1234:5678:11:2233:4455:6677]:32853. */
static const uint8_t RFC5769_IPV6[] = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
};

/* The same three messages as the writer builds them (padding is zeros, so
 * MESSAGE-INTEGRITY and FINGERPRINT differ from the RFC's); the expected
 * bytes were computed with Python's hmac and zlib.crc32. */
static const uint8_t ZERO_PAD_REQUEST[] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x14,
    0x79, 0x07, 0xc2, 0xd2, 0xed, 0xbf, 0xea, 0x48, 0x0e, 0x4c, 0x76, 0xd8, 0x29, 0x62, 0xd5, 0xc3,
    0x74, 0x2a, 0xf9, 0xe3, 0x80, 0x28, 0x00, 0x04, 0xe3, 0x52, 0x92, 0x8d,
};

static const uint8_t ZERO_PAD_IPV4[] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x00, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x5d, 0x6b, 0x58, 0xbe, 0xad, 0x94, 0xe0, 0x7e, 0xef, 0x0d, 0xfc, 0x12,
    0x82, 0xa2, 0xbd, 0x08, 0x43, 0x14, 0x10, 0x28, 0x80, 0x28, 0x00, 0x04, 0x25, 0x16, 0x7a, 0x15,
};

static const uint8_t ZERO_PAD_IPV6[] = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x00, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xbd, 0x03, 0x6d, 0x6a, 0x33, 0x17, 0x50, 0xdf, 0xe2, 0xed, 0xc5, 0x8e, 0x64, 0x34, 0x55, 0xcf,
    0xf5, 0xc8, 0xe2, 0x64, 0x80, 0x28, 0x00, 0x04, 0x4f, 0x26, 0x02, 0x93,
};

static struct sockaddr_in v4(const char *ip, uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    cr_assert_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    return a;
}

static struct sockaddr_in6 v6(const char *ip, uint16_t port)
{
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    cr_assert_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
    return a;
}

static void assert_mapped_v4(const stun_msg *m, const char *ip, uint16_t port)
{
    cr_assert(m->has_mapped);
    const struct sockaddr_in *a = (const struct sockaddr_in *)&m->mapped;
    cr_assert_eq(a->sin_family, AF_INET);
    cr_assert_eq(ntohs(a->sin_port), port);
    char text[INET_ADDRSTRLEN];
    cr_assert_not_null(inet_ntop(AF_INET, &a->sin_addr, text, sizeof text));
    cr_assert_str_eq(text, ip);
}

static void assert_mapped_v6(const stun_msg *m, const char *ip, uint16_t port)
{
    cr_assert(m->has_mapped);
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&m->mapped;
    cr_assert_eq(a->sin6_family, AF_INET6);
    cr_assert_eq(ntohs(a->sin6_port), port);
    char text[INET6_ADDRSTRLEN];
    cr_assert_not_null(inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text));
    cr_assert_str_eq(text, ip);
}

/* Parsing must fail, with err containing `what`. */
static void assert_refused(const uint8_t *data, size_t len, const char *what)
{
    stun_msg m;
    char err[160] = "";
    cr_assert_eq(stun_parse(data, len, &m, err, sizeof err), -1, "accepted; wanted \"%s\"", what);
    cr_assert(strstr(err, what) != NULL, "err \"%s\" does not say \"%s\"", err, what);
}

/* A header with `body` bytes of attributes copied after it; the length
 * field says body_len. Returns the datagram length. */
static size_t raw(uint8_t *out, uint16_t type, const uint8_t *body, size_t body_len)
{
    out[0] = (uint8_t)(type >> 8);
    out[1] = (uint8_t)type;
    out[2] = (uint8_t)(body_len >> 8);
    out[3] = (uint8_t)body_len;
    out[4] = 0x21;
    out[5] = 0x12;
    out[6] = 0xa4;
    out[7] = 0x42;
    memcpy(out + 8, TXID, STUN_TXID_BYTES);
    if (body_len > 0)
        memcpy(out + STUN_HEADER_BYTES, body, body_len);
    return STUN_HEADER_BYTES + body_len;
}

Test(stun, rfc5769_request)
{
    stun_msg m;
    char err[128] = "";
    cr_assert(stun_is_stun(RFC5769_REQUEST, sizeof RFC5769_REQUEST));
    cr_assert_eq(stun_parse(RFC5769_REQUEST, sizeof RFC5769_REQUEST, &m, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(m.type, STUN_BINDING_REQUEST);
    cr_assert_eq(memcmp(m.txid, TXID, STUN_TXID_BYTES), 0);
    cr_assert_eq(m.username_len, 9);
    cr_assert_eq(memcmp(m.username, "evtj:h6vY", 9), 0);
    cr_assert(m.has_priority);
    cr_assert_eq(m.priority, 0x6e0001ffu);
    cr_assert(m.has_controlled);
    cr_assert_not(m.has_controlling);
    cr_assert_eq(m.tiebreaker, 0x932ff9b151263b36ull);
    cr_assert_not(m.use_candidate);
    cr_assert_not(m.has_mapped);
    cr_assert_eq(m.error_code, 0);
    cr_assert(m.has_fingerprint);
    cr_assert_eq(m.integrity_at, 76);
    cr_assert_eq(stun_check_integrity(RFC5769_REQUEST, sizeof RFC5769_REQUEST, &m, KEY, KEYLEN), 1);
    cr_assert_eq(stun_check_integrity(RFC5769_REQUEST, sizeof RFC5769_REQUEST, &m,
                                      (const uint8_t *)"VOkJxbRl1RmTxUk/WvJxBu", KEYLEN),
                 0);
    cr_assert_eq(stun_check_integrity(RFC5769_REQUEST, sizeof RFC5769_REQUEST, &m, KEY, KEYLEN - 1),
                 0);
    cr_assert_eq(stun_check_integrity(RFC5769_REQUEST, sizeof RFC5769_REQUEST, &m, NULL, 0), 0);
}

Test(stun, rfc5769_ipv4_response)
{
    stun_msg m;
    char err[128] = "";
    cr_assert_eq(stun_parse(RFC5769_IPV4, sizeof RFC5769_IPV4, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.type, STUN_BINDING_SUCCESS);
    cr_assert(m.has_fingerprint);
    cr_assert_null(m.username);
    assert_mapped_v4(&m, "192.0.2.1", 32853);
    cr_assert_eq(stun_check_integrity(RFC5769_IPV4, sizeof RFC5769_IPV4, &m, KEY, KEYLEN), 1);
    cr_assert_eq(
        stun_check_integrity(RFC5769_IPV4, sizeof RFC5769_IPV4, &m, (const uint8_t *)"wrong", 5),
        0);
}

Test(stun, rfc5769_ipv6_response)
{
    stun_msg m;
    char err[128] = "";
    cr_assert_eq(stun_parse(RFC5769_IPV6, sizeof RFC5769_IPV6, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.type, STUN_BINDING_SUCCESS);
    cr_assert(m.has_fingerprint);
    assert_mapped_v6(&m, "2001:db8:1234:5678:11:2233:4455:6677", 32853);
    cr_assert_eq(stun_check_integrity(RFC5769_IPV6, sizeof RFC5769_IPV6, &m, KEY, KEYLEN), 1);
    cr_assert_eq(
        stun_check_integrity(RFC5769_IPV6, sizeof RFC5769_IPV6, &m, (const uint8_t *)"wrong", 5),
        0);
}

Test(stun, writer_matches_independent_bytes)
{
    uint8_t buf[STUN_MAX_MESSAGE_BYTES];
    stun_writer w;

    stun_begin(&w, buf, sizeof buf, STUN_BINDING_REQUEST, TXID);
    stun_add_bytes(&w, 0x8022, "STUN test client", 16);
    stun_add_u32(&w, STUN_ATTR_PRIORITY, 0x6e0001ffu);
    stun_add_u64(&w, STUN_ATTR_ICE_CONTROLLED, 0x932ff9b151263b36ull);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, "evtj:h6vY", 9);
    int n = stun_finish(&w, KEY, KEYLEN);
    cr_assert_eq(n, (int)sizeof ZERO_PAD_REQUEST);
    cr_assert_eq(memcmp(buf, ZERO_PAD_REQUEST, sizeof ZERO_PAD_REQUEST), 0);

    struct sockaddr_in a4 = v4("192.0.2.1", 32853);
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_SUCCESS, TXID);
    stun_add_bytes(&w, 0x8022, "test vector", 11);
    stun_add_xor_address(&w, (const struct sockaddr *)&a4);
    n = stun_finish(&w, KEY, KEYLEN);
    cr_assert_eq(n, (int)sizeof ZERO_PAD_IPV4);
    cr_assert_eq(memcmp(buf, ZERO_PAD_IPV4, sizeof ZERO_PAD_IPV4), 0);

    struct sockaddr_in6 a6 = v6("2001:db8:1234:5678:11:2233:4455:6677", 32853);
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_SUCCESS, TXID);
    stun_add_bytes(&w, 0x8022, "test vector", 11);
    stun_add_xor_address(&w, (const struct sockaddr *)&a6);
    n = stun_finish(&w, KEY, KEYLEN);
    cr_assert_eq(n, (int)sizeof ZERO_PAD_IPV6);
    cr_assert_eq(memcmp(buf, ZERO_PAD_IPV6, sizeof ZERO_PAD_IPV6), 0);
}

Test(stun, round_trip_request)
{
    uint8_t buf[STUN_MAX_MESSAGE_BYTES];
    stun_writer w;
    const uint8_t txid[STUN_TXID_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_REQUEST, txid);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, "remoteufrag:localufrag", 22);
    stun_add_u32(&w, STUN_ATTR_PRIORITY, 1853824767u);
    stun_add_u64(&w, STUN_ATTR_ICE_CONTROLLING, 0x0123456789abcdefull);
    stun_add_flag(&w, STUN_ATTR_USE_CANDIDATE);
    int n = stun_finish(&w, (const uint8_t *)"pwd", 3);
    cr_assert_gt(n, 0);
    cr_assert_eq((size_t)n, w.len);
    cr_assert(stun_is_stun(buf, (size_t)n));

    stun_msg m;
    char err[128] = "";
    cr_assert_eq(stun_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.type, STUN_BINDING_REQUEST);
    cr_assert_eq(memcmp(m.txid, txid, sizeof txid), 0);
    cr_assert_eq(m.username_len, 22);
    cr_assert_eq(memcmp(m.username, "remoteufrag:localufrag", 22), 0);
    cr_assert(m.has_priority);
    cr_assert_eq(m.priority, 1853824767u);
    cr_assert(m.has_controlling);
    cr_assert_not(m.has_controlled);
    cr_assert_eq(m.tiebreaker, 0x0123456789abcdefull);
    cr_assert(m.use_candidate);
    cr_assert(m.has_fingerprint);
    cr_assert_eq(m.integrity_at, (size_t)n - 32);
    cr_assert_eq(stun_check_integrity(buf, (size_t)n, &m, (const uint8_t *)"pwd", 3), 1);
    cr_assert_eq(stun_check_integrity(buf, (size_t)n, &m, (const uint8_t *)"pwe", 3), 0);
}

Test(stun, round_trip_responses_and_errors)
{
    uint8_t buf[STUN_MAX_MESSAGE_BYTES];
    stun_writer w;
    stun_msg m;
    char err[128] = "";

    struct sockaddr_in a4 = v4("203.0.113.7", 1);
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_SUCCESS, TXID);
    stun_add_xor_address(&w, (const struct sockaddr *)&a4);
    int n = stun_finish(&w, KEY, KEYLEN);
    cr_assert_eq(stun_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    assert_mapped_v4(&m, "203.0.113.7", 1);
    cr_assert_eq(stun_check_integrity(buf, (size_t)n, &m, KEY, KEYLEN), 1);

    struct sockaddr_in6 a6 = v6("::ffff:10.0.0.1", 65535);
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_SUCCESS, TXID);
    stun_add_xor_address(&w, (const struct sockaddr *)&a6);
    n = stun_finish(&w, KEY, KEYLEN);
    cr_assert_eq(stun_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    assert_mapped_v6(&m, "::ffff:10.0.0.1", 65535);

    const int codes[] = {300, 400, 401, 420, 487, 500, 699};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        stun_begin(&w, buf, sizeof buf, STUN_BINDING_ERROR, TXID);
        stun_add_error(&w, codes[i], i % 2 ? "Role Conflict" : NULL);
        n = stun_finish(&w, KEY, KEYLEN);
        cr_assert_gt(n, 0);
        cr_assert_eq(stun_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
        cr_assert_eq(m.type, STUN_BINDING_ERROR);
        cr_assert_eq(m.error_code, codes[i]);
        cr_assert_eq(stun_check_integrity(buf, (size_t)n, &m, KEY, KEYLEN), 1);
    }

    /* No key: FINGERPRINT only; there is no integrity to check. */
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_INDICATION, TXID);
    n = stun_finish(&w, NULL, 0);
    cr_assert_eq(n, STUN_HEADER_BYTES + 8);
    cr_assert_eq(stun_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.type, STUN_BINDING_INDICATION);
    cr_assert(m.has_fingerprint);
    cr_assert_eq(m.integrity_at, 0);
    cr_assert_eq(stun_check_integrity(buf, (size_t)n, &m, KEY, KEYLEN), 0);

    /* An empty password is still a key. */
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_REQUEST, TXID);
    n = stun_finish(&w, (const uint8_t *)"", 0);
    cr_assert_eq(n, STUN_HEADER_BYTES + 24 + 8);
    cr_assert_eq(stun_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(stun_check_integrity(buf, (size_t)n, &m, (const uint8_t *)"", 0), 1);
    cr_assert_eq(stun_check_integrity(buf, (size_t)n, &m, (const uint8_t *)"x", 1), 0);
}

Test(stun, username_lengths_and_padding)
{
    uint8_t buf[STUN_MAX_MESSAGE_BYTES];
    char name[514];
    memset(name, 'u', sizeof name);
    const size_t lens[] = {0, 1, 2, 3, 4, 5, 7, 8, 255, 512, 513};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        stun_writer w;
        stun_begin(&w, buf, sizeof buf, STUN_BINDING_REQUEST, TXID);
        stun_add_bytes(&w, STUN_ATTR_USERNAME, name, lens[i]);
        stun_add_u32(&w, STUN_ATTR_PRIORITY, 7);
        int n = stun_finish(&w, KEY, KEYLEN);
        cr_assert_gt(n, 0, "length %zu", lens[i]);
        cr_assert_eq(n % 4, 0);
        stun_msg m;
        char err[128] = "";
        cr_assert_eq(stun_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%zu: %s", lens[i], err);
        cr_assert_not_null(m.username);
        cr_assert_eq(m.username_len, lens[i]);
        cr_assert_eq(m.priority, 7, "PRIORITY after a USERNAME of %zu", lens[i]);
        cr_assert_eq(stun_check_integrity(buf, (size_t)n, &m, KEY, KEYLEN), 1);
    }
}

Test(stun, is_stun)
{
    cr_assert(stun_is_stun(RFC5769_REQUEST, sizeof RFC5769_REQUEST));
    cr_assert_not(stun_is_stun(RFC5769_REQUEST, sizeof RFC5769_REQUEST - 4));
    cr_assert_not(stun_is_stun(RFC5769_REQUEST, 19));
    cr_assert_not(stun_is_stun(NULL, 0));
    uint8_t b[sizeof RFC5769_REQUEST];
    memcpy(b, RFC5769_REQUEST, sizeof b);
    b[0] = 22; /* a DTLS record */
    cr_assert_not(stun_is_stun(b, sizeof b));
    b[0] = 0x80; /* RTP */
    cr_assert_not(stun_is_stun(b, sizeof b));
    b[0] = 0x03;
    cr_assert(stun_is_stun(b, sizeof b));
    b[0] = 0x00;
    b[5] ^= 1; /* cookie */
    cr_assert_not(stun_is_stun(b, sizeof b));
    uint8_t h[24] = {0};
    size_t n = raw(h, STUN_BINDING_REQUEST, NULL, 0);
    cr_assert(stun_is_stun(h, n));
    h[3] = 2; /* length 2 with 2 bytes after the header */
    cr_assert_not(stun_is_stun(h, n + 2));
}

Test(stun, header_refusals)
{
    stun_msg m;
    char err[128];
    cr_assert_eq(stun_parse(NULL, 0, &m, NULL, 0), -1);
    assert_refused(NULL, 20, "shorter than its 20-byte header");
    assert_refused(RFC5769_REQUEST, 0, "0 bytes is shorter");
    assert_refused(RFC5769_REQUEST, 19, "shorter than its 20-byte header");
    /* Every truncation of a good message is refused. */
    for (size_t len = 0; len < sizeof RFC5769_REQUEST; len++)
        cr_assert_eq(stun_parse(RFC5769_REQUEST, len, &m, err, sizeof err), -1, "%zu", len);

    uint8_t b[sizeof RFC5769_REQUEST + 8] = {0};
    memcpy(b, RFC5769_REQUEST, sizeof RFC5769_REQUEST);
    b[0] = 0x40;
    assert_refused(b, sizeof RFC5769_REQUEST, "first two bits");
    b[0] = 0x00;
    b[7] = 0x43;
    assert_refused(b, sizeof RFC5769_REQUEST, "magic cookie");
    b[7] = 0x42;
    b[3] = 0x5a; /* 90: not a multiple of 4 */
    assert_refused(b, 20 + 90, "not a multiple of 4");
    b[3] = 0x5c; /* 92: says 4 more bytes than there are */
    assert_refused(b, sizeof RFC5769_REQUEST, "does not match");
    b[3] = 0x58; /* right length, but trailing bytes in the datagram */
    assert_refused(b, sizeof RFC5769_REQUEST + 4, "does not match");

    /* A header alone is a valid (empty) message. */
    uint8_t h[20];
    size_t n = raw(h, STUN_BINDING_REQUEST, NULL, 0);
    cr_assert_eq(stun_parse(h, n, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.integrity_at, 0);
    cr_assert_not(m.has_fingerprint);
}

Test(stun, attribute_bounds)
{
    uint8_t b[64];
    /* Value of 8 bytes claimed, 4 present. */
    const uint8_t past[] = {0x80, 0x22, 0x00, 0x08, 'a', 'b', 'c', 'd'};
    assert_refused(b, raw(b, STUN_BINDING_REQUEST, past, sizeof past), "runs past the end");
    /* Value of 5 bytes: its padding needs 8, 4 present. */
    const uint8_t pad[] = {0x80, 0x22, 0x00, 0x05, 'a', 'b', 'c', 'd'};
    assert_refused(b, raw(b, STUN_BINDING_REQUEST, pad, sizeof pad), "runs past the end");
    /* The largest length field. */
    const uint8_t huge[] = {0x00, 0x06, 0xff, 0xff, 'a', 'b', 'c', 'd'};
    assert_refused(b, raw(b, STUN_BINDING_REQUEST, huge, sizeof huge), "runs past the end");
    /* A good attribute, then one whose header fits but value does not. */
    const uint8_t second[] = {0x00, 0x25, 0x00, 0x00, 0x00, 0x24, 0x00, 0x04};
    assert_refused(b, raw(b, STUN_BINDING_REQUEST, second, sizeof second), "runs past the end");
}

Test(stun, attribute_values_refused)
{
    uint8_t b[700];
    const struct {
        uint8_t body[28];
        size_t len;
        const char *what;
    } cases[] = {
        {{0x00, 0x24, 0x00, 0x08, 0, 0, 0, 1, 0, 0, 0, 2}, 12, "PRIORITY must be 4"},
        {{0x00, 0x25, 0x00, 0x04, 0, 0, 0, 1}, 8, "USE-CANDIDATE must be empty"},
        {{0x80, 0x2a, 0x00, 0x04, 0, 0, 0, 1}, 8, "ICE-CONTROLLING must be 8"},
        {{0x80, 0x29, 0x00, 0x0c, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1},
         16,
         "ICE-CONTROLLED must be 8"},
        {{0x00, 0x09, 0x00, 0x02, 0x04, 0x01, 0, 0}, 8, "ERROR-CODE of 2 bytes"},
        {{0x00, 0x09, 0x00, 0x04, 0, 0, 0x07, 0x01}, 8, "ERROR-CODE class 7"},
        {{0x00, 0x09, 0x00, 0x04, 0, 0, 0x02, 0x00}, 8, "ERROR-CODE class 2"},
        {{0x00, 0x09, 0x00, 0x04, 0, 0, 0x04, 100}, 8, "number 100"},
        {{0x00, 0x20, 0x00, 0x02, 0x00, 0x01, 0, 0}, 8, "XOR-MAPPED-ADDRESS of 2 bytes"},
        {{0x00, 0x20, 0x00, 0x08, 0x00, 0x03, 0, 0, 1, 2, 3, 4}, 12, "unknown address family"},
        {{0x00, 0x20, 0x00, 0x08, 0x00, 0x00, 0, 0, 1, 2, 3, 4}, 12, "unknown address family"},
        {{0x00, 0x20, 0x00, 0x08, 0x00, 0x02, 0, 0, 1, 2, 3, 4}, 12, "IPv6 must be 20"},
        {{0x00, 0x20, 0x00, 0x14, 0x00, 0x01}, 24, "IPv4 must be 8"},
        {{0x00, 0x08, 0x00, 0x10}, 20, "MESSAGE-INTEGRITY must be 20 bytes, got 16"},
        {{0x00, 0x08, 0x00, 0x18}, 28, "MESSAGE-INTEGRITY must be 20 bytes, got 24"},
        {{0x80, 0x28, 0x00, 0x08}, 12, "FINGERPRINT must be 4"},
        {{0x80, 0x28, 0x00, 0x00}, 4, "FINGERPRINT must be 4"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_refused(b, raw(b, STUN_BINDING_REQUEST, cases[i].body, cases[i].len), cases[i].what);

    /* USERNAME: 513 bytes are accepted, 514 are not. */
    uint8_t body[4 + 516];
    memset(body, 'u', sizeof body);
    body[0] = 0x00;
    body[1] = 0x06;
    body[2] = 0x02;
    body[3] = 0x01; /* 513 */
    stun_msg m;
    char err[128] = "";
    cr_assert_eq(
        stun_parse(b, raw(b, STUN_BINDING_REQUEST, body, sizeof body), &m, err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(m.username_len, 513);
    body[3] = 0x02; /* 514 */
    assert_refused(b, raw(b, STUN_BINDING_REQUEST, body, sizeof body), "USERNAME of 514 bytes");
}

Test(stun, fingerprint)
{
    uint8_t b[sizeof RFC5769_REQUEST + 8];
    memcpy(b, RFC5769_REQUEST, sizeof RFC5769_REQUEST);
    b[sizeof RFC5769_REQUEST - 1] ^= 0x01;
    assert_refused(b, sizeof RFC5769_REQUEST, "FINGERPRINT is wrong");

    const size_t fp_at = sizeof RFC5769_REQUEST - 8;
    /* No one-bit change anywhere in a good message leaves a message with a
     * FINGERPRINT: the structure breaks, or the CRC sees it. The ways
     * through lose the FINGERPRINT altogether: any change to its type
     * makes it an attribute after MESSAGE-INTEGRITY, ignored; and a longer
     * USERNAME length (0x09 ^ 0x20 = 41 bytes, up to the end) swallows
     * MESSAGE-INTEGRITY and FINGERPRINT. So an ICE agent must require
     * has_fingerprint and integrity_at. */
    for (size_t i = 0; i < sizeof RFC5769_REQUEST; i++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(b, RFC5769_REQUEST, sizeof RFC5769_REQUEST);
            b[i] ^= (uint8_t)(1 << bit);
            stun_msg m;
            if (stun_parse(b, sizeof RFC5769_REQUEST, &m, NULL, 0) != 0)
                continue;
            cr_assert_not(m.has_fingerprint, "byte %zu bit %d", i, bit);
            cr_assert((i >= fp_at && i < fp_at + 2) || (i == 63 && m.integrity_at == 0),
                      "byte %zu bit %d", i, bit);
        }

    /* FINGERPRINT followed by another attribute (the length covers it). */
    memcpy(b, RFC5769_REQUEST, sizeof RFC5769_REQUEST);
    const uint8_t flag[] = {0x00, 0x25, 0x00, 0x00};
    memcpy(b + sizeof RFC5769_REQUEST, flag, 4);
    b[3] = 0x5c;
    assert_refused(b, sizeof RFC5769_REQUEST + 4, "FINGERPRINT is not the last");

    /* FINGERPRINT first, the rest after it. */
    uint8_t fp_first[64];
    const uint8_t body[] = {0x80, 0x28, 0x00, 0x04, 0, 0, 0, 0, 0x00, 0x25, 0x00, 0x00};
    assert_refused(fp_first, raw(fp_first, STUN_BINDING_REQUEST, body, sizeof body),
                   "FINGERPRINT is not the last");
}

Test(stun, after_integrity_only_fingerprint_counts)
{
    uint8_t buf[STUN_MAX_MESSAGE_BYTES];
    stun_writer w;
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_REQUEST, TXID);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, "a:b", 3);
    cr_assert_gt(stun_finish(&w, KEY, KEYLEN), 0);
    /* Drop the FINGERPRINT, add attributes after MESSAGE-INTEGRITY, then a
     * new FINGERPRINT over all of it. */
    w.len -= 8;
    stun_add_u32(&w, STUN_ATTR_PRIORITY, 99);
    stun_add_flag(&w, STUN_ATTR_USE_CANDIDATE);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, "c:d", 3);
    stun_add_bytes(&w, STUN_ATTR_MESSAGE_INTEGRITY, "short", 5); /* ignored, not refused */
    int n = stun_finish(&w, NULL, 0);
    cr_assert_gt(n, 0);

    stun_msg m;
    char err[128] = "";
    cr_assert_eq(stun_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    cr_assert_not(m.has_priority);
    cr_assert_not(m.use_candidate);
    cr_assert_eq(m.username_len, 3);
    cr_assert_eq(memcmp(m.username, "a:b", 3), 0);
    cr_assert(m.has_fingerprint);
    cr_assert_eq(m.integrity_at, 28);
    /* The HMAC covers up to MESSAGE-INTEGRITY, with the length adjusted. */
    cr_assert_eq(stun_check_integrity(buf, (size_t)n, &m, KEY, KEYLEN), 1);

    /* Attributes after MESSAGE-INTEGRITY must still be in bounds. */
    buf[STUN_HEADER_BYTES + 8 + 24 + 2] = 0x10; /* PRIORITY's length: 4096 */
    assert_refused(buf, (size_t)n, "runs past the end");
}

Test(stun, first_of_duplicates_and_unknown_attributes)
{
    uint8_t buf[STUN_MAX_MESSAGE_BYTES];
    stun_writer w;
    struct sockaddr_in a = v4("10.0.0.1", 1000), b = v4("10.0.0.2", 2000);
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_SUCCESS, TXID);
    stun_add_bytes(&w, 0x7fff, "required but unknown", 20);
    stun_add_bytes(&w, 0xc001, "optional", 8);
    stun_add_bytes(&w, STUN_ATTR_MAPPED_ADDRESS, "\0\1\0\1\1\2\3\4", 8);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, "first", 5);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, "second", 6);
    stun_add_u32(&w, STUN_ATTR_PRIORITY, 1);
    stun_add_u32(&w, STUN_ATTR_PRIORITY, 2);
    stun_add_xor_address(&w, (const struct sockaddr *)&a);
    stun_add_xor_address(&w, (const struct sockaddr *)&b);
    stun_add_u64(&w, STUN_ATTR_ICE_CONTROLLED, 5);
    stun_add_u64(&w, STUN_ATTR_ICE_CONTROLLING, 6);
    stun_add_error(&w, 487, "Role Conflict");
    stun_add_error(&w, 401, "Unauthorized");
    int n = stun_finish(&w, NULL, 0);
    cr_assert_gt(n, 0);
    stun_msg m;
    char err[128] = "";
    cr_assert_eq(stun_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.username_len, 5);
    cr_assert_eq(m.priority, 1);
    assert_mapped_v4(&m, "10.0.0.1", 1000);
    cr_assert(m.has_controlled && m.has_controlling);
    cr_assert_eq(m.tiebreaker, 5);
    cr_assert_eq(m.error_code, 487);
}

Test(stun, writer_overflow)
{
    uint8_t buf[STUN_MAX_MESSAGE_BYTES + 16];
    stun_writer w;

    /* Too small for the header. */
    stun_begin(&w, buf, 19, STUN_BINDING_REQUEST, TXID);
    cr_assert(w.overflow);
    stun_add_u32(&w, STUN_ATTR_PRIORITY, 1);
    cr_assert_eq(stun_finish(&w, NULL, 0), -1);
    stun_begin(&w, NULL, 0, STUN_BINDING_REQUEST, TXID);
    cr_assert_eq(stun_finish(&w, NULL, 0), -1);

    /* The exact sizes, and one byte less. */
    const struct {
        size_t cap;
        int with_key;
        int want;
    } sizes[] = {
        {27, 0, -1}, {28, 0, 28}, {43, 1, -1}, {51, 1, -1}, {52, 1, 52},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(buf, 0xee, sizeof buf);
        stun_begin(&w, buf, sizes[i].cap, STUN_BINDING_REQUEST, TXID);
        int n = stun_finish(&w, sizes[i].with_key ? KEY : NULL, KEYLEN);
        cr_assert_eq(n, sizes[i].want, "cap %zu", sizes[i].cap);
        for (size_t j = sizes[i].cap; j < sizeof buf; j++)
            cr_assert_eq(buf[j], 0xee, "cap %zu: byte %zu written", sizes[i].cap, j);
    }

    /* An attribute that does not fit: later adds do nothing, finish fails,
     * nothing past cap is written. */
    memset(buf, 0xee, sizeof buf);
    stun_begin(&w, buf, 64, STUN_BINDING_REQUEST, TXID);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, "0123456789012345678901234567890123456789", 40);
    stun_add_u32(&w, STUN_ATTR_PRIORITY, 1);
    cr_assert(w.overflow);
    size_t len = w.len;
    stun_add_flag(&w, STUN_ATTR_USE_CANDIDATE);
    struct sockaddr_in lo = v4("127.0.0.1", 9);
    stun_add_xor_address(&w, (const struct sockaddr *)&lo);
    stun_add_error(&w, 400, NULL);
    cr_assert_eq(w.len, len);
    cr_assert_eq(stun_finish(&w, KEY, KEYLEN), -1);
    for (size_t j = 64; j < sizeof buf; j++)
        cr_assert_eq(buf[j], 0xee);

    /* What the parser would refuse is refused by the writer. */
    char name[514];
    memset(name, 'u', sizeof name);
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_REQUEST, TXID);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, name, 514);
    cr_assert_eq(stun_finish(&w, NULL, 0), -1);

    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_SUCCESS, TXID);
    stun_add_xor_address(&w, (const struct sockaddr *)&un);
    cr_assert_eq(stun_finish(&w, NULL, 0), -1);
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_SUCCESS, TXID);
    stun_add_xor_address(&w, NULL);
    cr_assert_eq(stun_finish(&w, NULL, 0), -1);
    struct sockaddr_in6 a6 = v6("::1", 1);
    stun_begin(&w, buf, 20 + 23, STUN_BINDING_SUCCESS, TXID);
    stun_add_xor_address(&w, (const struct sockaddr *)&a6);
    cr_assert_eq(stun_finish(&w, NULL, 0), -1);
    struct sockaddr_in a4 = v4("127.0.0.1", 1);
    stun_begin(&w, buf, 20 + 11, STUN_BINDING_SUCCESS, TXID);
    stun_add_xor_address(&w, (const struct sockaddr *)&a4);
    cr_assert_eq(stun_finish(&w, NULL, 0), -1);

    const int bad_codes[] = {0, 200, 299, 700, -401};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        stun_begin(&w, buf, sizeof buf, STUN_BINDING_ERROR, TXID);
        stun_add_error(&w, bad_codes[i], "x");
        cr_assert_eq(stun_finish(&w, NULL, 0), -1, "code %d", bad_codes[i]);
    }
    char reason[765];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_ERROR, TXID);
    stun_add_error(&w, 400, reason); /* 764 bytes */
    cr_assert_eq(stun_finish(&w, NULL, 0), -1);
    reason[763] = '\0';
    stun_begin(&w, buf, sizeof buf, STUN_BINDING_ERROR, TXID);
    stun_add_error(&w, 400, reason); /* 763 bytes */
    cr_assert_gt(stun_finish(&w, NULL, 0), 0);
    stun_begin(&w, buf, 40, STUN_BINDING_ERROR, TXID);
    stun_add_error(&w, 400, "Bad Request, and a long explanation");
    cr_assert_eq(stun_finish(&w, NULL, 0), -1);
}

Test(stun, writer_length_limits)
{
    /* A value over 65535 bytes, and a message over 65535 bytes long, even
     * in a buffer big enough for either. */
    static uint8_t big[70000], value[66000];
    stun_writer w;
    stun_begin(&w, big, sizeof big, STUN_BINDING_INDICATION, TXID);
    stun_add_bytes(&w, 0x8022, value, 65536);
    cr_assert_eq(stun_finish(&w, NULL, 0), -1);

    stun_begin(&w, big, sizeof big, STUN_BINDING_INDICATION, TXID);
    stun_add_bytes(&w, 0x8022, value, 65000);
    cr_assert_not(w.overflow);
    stun_add_bytes(&w, 0x8022, value, 528); /* 65004 + 532 = 65536 */
    cr_assert(w.overflow);

    /* The largest message: a body of 65532 bytes (65535 rounded down). */
    stun_begin(&w, big, sizeof big, STUN_BINDING_INDICATION, TXID);
    stun_add_bytes(&w, 0x8022, value, 65000);
    stun_add_bytes(&w, 0x8022, value, 520); /* 65004 + 524 = 65528 */
    int n = stun_finish(&w, NULL, 0);
    cr_assert_eq(n, -1, "65528 + 8 is over 65535");
    stun_begin(&w, big, sizeof big, STUN_BINDING_INDICATION, TXID);
    stun_add_bytes(&w, 0x8022, value, 65000);
    stun_add_bytes(&w, 0x8022, value, 512); /* 65004 + 516 = 65520 */
    n = stun_finish(&w, NULL, 0);
    cr_assert_eq(n, STUN_HEADER_BYTES + 65528);
    stun_msg m;
    char err[128] = "";
    cr_assert_eq(stun_parse(big, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    cr_assert(m.has_fingerprint);
}

Test(stun, integrity_refuses_a_mismatched_msg)
{
    stun_msg m;
    cr_assert_eq(stun_parse(RFC5769_REQUEST, sizeof RFC5769_REQUEST, &m, NULL, 0), 0);
    /* A stun_msg that does not belong to the buffer: no read past it. */
    cr_assert_eq(stun_check_integrity(RFC5769_REQUEST, 80, &m, KEY, KEYLEN), 0);
    cr_assert_eq(stun_check_integrity(RFC5769_REQUEST, 10, &m, KEY, KEYLEN), 0);
    cr_assert_eq(stun_check_integrity(NULL, 0, &m, KEY, KEYLEN), 0);
    stun_msg forged = m;
    forged.integrity_at = 4;
    cr_assert_eq(
        stun_check_integrity(RFC5769_REQUEST, sizeof RFC5769_REQUEST, &forged, KEY, KEYLEN), 0);
    /* The MAC itself altered (the FINGERPRINT is not checked here). */
    uint8_t b[sizeof RFC5769_REQUEST];
    memcpy(b, RFC5769_REQUEST, sizeof b);
    b[m.integrity_at + 4 + 19] ^= 0x80;
    cr_assert_eq(stun_check_integrity(b, sizeof b, &m, KEY, KEYLEN), 0);
    /* A covered byte altered. */
    memcpy(b, RFC5769_REQUEST, sizeof b);
    b[STUN_HEADER_BYTES + 4] ^= 0x01;
    cr_assert_eq(stun_check_integrity(b, sizeof b, &m, KEY, KEYLEN), 0);
}
