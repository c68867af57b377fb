/*
 * test_sdp_edges — the corners of src/rtc/sdp that test_sdp leaves: every
 * fingerprint algorithm, over-long attribute values, a bad SCTP port in an
 * old-dialect m-line, candidates of another component, a missing mid, and
 * formatting into a buffer of nothing. Each offer is a good one with one
 * line replaced, so each refusal is caused by that line alone.
 */
#include <criterion/criterion.h>

#include "rtc/sdp.h"

#include <stdio.h>
#include <string.h>

#define FP256 "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"

static const char *base[] = {
    "v=0",
    "o=- 1 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=mid:0",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " FP256,
    "a=setup:actpass",
    "a=sctp-port:5000",
    "a=max-message-size:262144",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
};
#define N_BASE (sizeof base / sizeof base[0])

/* The base offer with line `which` replaced by `with` (NULL drops it). */
static int parse_with(size_t which, const char *with, sdp_description *d, char *err)
{
    static char text[16384];
    size_t n = 0;
    for (size_t i = 0; i < N_BASE; i++) {
        const char *l = i == which ? with : base[i];
        if (l)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s\r\n", l);
    }
    return sdp_parse(text, n, d, err, 200);
}

static void refused(size_t which, const char *with, const char *want)
{
    sdp_description d;
    char err[200] = "";
    cr_assert_eq(parse_with(which, with, &d, err), -1, "accepted: %.80s", with);
    cr_assert_not_null(strstr(err, want), "'%s' lacks '%s' for %.60s", err, want, with);
}

/* A fingerprint of n bytes in "AB:..." form. */
static const char *fingerprint(const char *alg, int n)
{
    static char buf[400];
    int off = snprintf(buf, sizeof buf, "a=fingerprint:%s  ", alg);
    for (int i = 0; i < n; i++)
        off += snprintf(buf + off, sizeof buf - (size_t)off, i ? ":%02X" : "%02X", i);
    return buf;
}

Test(sdp_edges, every_fingerprint_algorithm)
{
    const struct {
        const char *alg;
        int len;
    } algs[] = {{"sha-1", 20}, {"SHA-224", 28}, {"sha-256", 32}, {"sha-384", 48}, {"sha-512", 64}};
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        sdp_description d;
        char err[200] = "";
        cr_assert_eq(parse_with(9, fingerprint(algs[i].alg, algs[i].len), &d, err), 0,
                     "%s: %s", algs[i].alg, err);
        cr_assert_eq(d.fingerprint_len, (size_t)algs[i].len);
        refused(9, fingerprint(algs[i].alg, algs[i].len - 1), "malformed");
    }
    refused(9, fingerprint("md5", 16), "unsupported fingerprint algorithm");
    refused(9, "a=fingerprint:sha-256", "malformed fingerprint");
    refused(9, "a=fingerprint:averyveryverylongalgorithmname AB", "malformed fingerprint");
    static char huge[600];
    snprintf(huge, sizeof huge, "a=fingerprint:sha-256 %0500d", 0);
    refused(9, huge, "fingerprint too long");
}

Test(sdp_edges, long_values_and_bad_numbers)
{
    static char mline[700], port[100], size[100];
    snprintf(mline, sizeof mline, "m=application 9 UDP/DTLS/SCTP %0600d", 0);
    refused(4, mline, "m-line too long");
    refused(4, "m=application 9 DTLS/SCTP 0", "bad SCTP port");
    refused(4, "m=application 9 DTLS/SCTP 70000", "bad SCTP port");
    refused(4, "m=application 9 DTLS/SCTP 50x", "bad SCTP port");
    snprintf(port, sizeof port, "a=sctp-port:%080d", 5);
    refused(11, port, "a=sctp-port");
    snprintf(size, sizeof size, "a=max-message-size:%080d", 5);
    refused(12, size, "a=max-message-size");
}

Test(sdp_edges, candidates_mid_and_old_dialect)
{
    sdp_description d;
    char err[200] = "";
    cr_assert_eq(parse_with(13, "a=candidate:1 2 udp 2130706431 127.0.0.1 40001 typ host", &d,
                            err),
                 0, "%s", err);
    cr_assert_eq(d.n_candidates, 0, "component 2 is not used by a data channel");
    cr_assert_eq(parse_with(6, NULL, &d, err), 0, "%s", err);
    cr_assert_str_eq(d.mid, "0", "a missing mid reads as \"0\"");
    cr_assert_eq(parse_with(4, "m=application 9 DTLS/SCTP 5001", &d, err), 0, "%s", err);
    cr_assert_eq(d.dialect, SDP_DIALECT_SCTPMAP);
}

Test(sdp_edges, format_fingerprint_into_nothing)
{
    uint8_t digest[2] = {0xab, 0xcd};
    char out[8] = "x";
    sdp_format_fingerprint(digest, 2, out, 0);
    cr_assert_eq(out[0], 'x', "a zero-size buffer is left alone");
    sdp_format_fingerprint(digest, 2, out, sizeof out);
    cr_assert_str_eq(out, "AB:CD");
}
