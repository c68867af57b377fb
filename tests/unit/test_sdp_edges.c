/*
 * test_sdp_edges — the corners of src/rtc/sdp that test_sdp leaves: every
 * fingerprint algorithm, over-long attribute values, a bad SCTP port in an
 * old-dialect m-line, candidates of another component, a missing mid,
 * formatting into a buffer of nothing, sdp_write into every short buffer,
 * the candidates that are dropped (TCP, mDNS, short, past the limit, at
 * session level), line endings, and the limits of each attribute value. Each offer is a good one with one
 * line replaced, so each refusal is caused by that line alone.
 */
#include <criterion/criterion.h>

#include "rtc/sdp.h"

#include <stdio.h>
#include <string.h>

#define FP256                                                                                      \
    "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:"   \
    "67:89"

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
    } algs[] = {{"sha-256", 32}, {"SHA-384", 48}, {"sha-512", 64}};
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        sdp_description d;
        char err[200] = "";
        cr_assert_eq(parse_with(9, fingerprint(algs[i].alg, algs[i].len), &d, err), 0, "%s: %s",
                     algs[i].alg, err);
        cr_assert_eq(d.fingerprint_len, (size_t)algs[i].len);
        refused(9, fingerprint(algs[i].alg, algs[i].len - 1), "malformed");
    }
    refused(9, fingerprint("sha-3000", 16), "unsupported fingerprint algorithm");
    refused(9, "a=fingerprint:sha-256", "malformed fingerprint");
    refused(9, "a=fingerprint:averyveryverylongalgorithmname AB", "malformed fingerprint");
    static char huge[600];
    snprintf(huge, sizeof huge, "a=fingerprint:sha-256 %0500d", 0);
    refused(9, huge, "fingerprint too long");
}

/* SHA-1 and SHA-224 (and MD5, MD2) are weaker than SHA-256: alone they are
 * refused; beside a strong fingerprint they are ignored, not obeyed. */
Test(sdp_edges, weak_fingerprint_algorithms_refused)
{
    const struct {
        const char *alg;
        int len;
    } weak[] = {{"sha-1", 20}, {"SHA-224", 28}, {"md5", 16}, {"md2", 16}};
    for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++) {
        refused(9, fingerprint(weak[i].alg, weak[i].len), "too weak");
        sdp_description d;
        char err[200] = "";
        cr_assert_eq(parse_with(10, fingerprint(weak[i].alg, weak[i].len), &d, err), 0,
                     "%s beside sha-256: %s", weak[i].alg, err);
        cr_assert_str_eq(d.fingerprint_alg, "sha-256");
        cr_assert_eq(d.fingerprint_len, 32);
    }
}

/* Text from the offer quoted in an error is escaped: no raw control
 * character reaches the log (or the HTTP error) through sdp_parse. */
Test(sdp_edges, quoted_offer_text_is_escaped)
{
    sdp_description d;
    char err[200] = "";
    cr_assert_eq(parse_with(9, "a=fingerprint:\x1b[2K\x07x AB:CD", &d, err), -1);
    cr_assert_not_null(strstr(err, "\\x1b[2k\\x07x"), "%s", err); /* lower-cased */
    cr_assert_null(strchr(err, 0x1b));
    cr_assert_eq(parse_with(4, "m=application 9 \x1b]0;owned\x07 webrtc-datachannel", &d, err), -1);
    cr_assert_not_null(strstr(err, "\\x1b]0;owned\\x07"), "%s", err);
    cr_assert_eq(parse_with(4, "m=application 9 UDP/DTLS/SCTP web\xe2\x80\xaertc", &d, err), -1);
    cr_assert_not_null(strstr(err, "web\\xe2\\x80\\xaertc"), "%s", err);
    for (const char *c = err; *c; c++)
        cr_assert((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f, "raw byte in '%s'", err);
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
    cr_assert_eq(parse_with(13, "a=candidate:1 2 udp 2130706431 127.0.0.1 40001 typ host", &d, err),
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

/* ---- sdp_write into short buffers ----------------------------------------- */

/* A full description: IPv6 address, two candidates, a message size. */
static void full_description(sdp_description *w, sdp_dialect dialect)
{
    memset(w, 0, sizeof *w);
    w->dialect = dialect;
    w->setup = SDP_SETUP_PASSIVE;
    strcpy(w->mid, "0");
    strcpy(w->ice_ufrag, "uf+/");
    strcpy(w->ice_pwd, "abcdefghijklmnopqrstuv");
    strcpy(w->fingerprint_alg, "sha-256");
    for (int i = 0; i < 32; i++)
        w->fingerprint[i] = (uint8_t)(255 - i);
    w->fingerprint_len = 32;
    w->sctp_port = 5000;
    w->max_message_size = 262144;
    strcpy(w->candidates[0], "candidate:1 1 udp 2130706431 ::1 4444 typ host");
    strcpy(w->candidates[1], "candidate:2 1 udp 1694498815 2001:db8::1 4445 typ srflx");
    w->n_candidates = 2;
    strcpy(w->conn_address, "::1");
    w->conn_port = 4444;
    w->session_id = UINT64_MAX;
}

/* Every capacity short of the whole text is refused (-1), and nothing is
 * written at or past the capacity: a caller never gets a truncated
 * description that would parse as a different one. */
Test(sdp_edges, write_refuses_every_short_buffer)
{
    static char buf[4096];
    for (int dialect = 0; dialect < 2; dialect++) {
        sdp_description w;
        full_description(&w, (sdp_dialect)dialect);
        int n = sdp_write(&w, buf, sizeof buf);
        cr_assert_gt(n, 0);
        cr_assert_not_null(strstr(buf, "c=IN IP6 ::1\r\n"), "%s", buf);
        cr_assert_not_null(strstr(buf, "o=- 18446744073709551615 1 IN IP4"), "%s", buf);
        cr_assert_not_null(strstr(buf, "a=max-message-size:262144\r\n"));
        cr_assert_not_null(strstr(buf, "a=candidate:2 1 udp 1694498815 2001:db8::1"));
        for (size_t cap = 0; cap <= (size_t)n; cap++) {
            memset(buf, '#', sizeof buf);
            cr_assert_eq(sdp_write(&w, buf, cap), -1, "cap %zu of %d", cap, n);
            for (size_t i = cap; i < sizeof buf; i++)
                cr_assert_eq(buf[i], '#', "cap %zu: byte %zu written", cap, i);
        }
        cr_assert_eq(sdp_write(&w, buf, (size_t)n + 1), n);
        sdp_description r;
        char err[200] = "";
        cr_assert_eq(sdp_parse(buf, (size_t)n, &r, err, sizeof err), 0, "%s", err);
        cr_assert_eq(r.n_candidates, 2);
        cr_assert_str_eq(r.ice_ufrag, "uf+/");
        cr_assert_eq(r.setup, SDP_SETUP_PASSIVE);
    }
}

/* What sdp_write puts in for fields left empty. */
Test(sdp_edges, write_defaults)
{
    sdp_description w;
    full_description(&w, SDP_DIALECT_MODERN);
    w.conn_address[0] = '\0';
    w.conn_port = 0;
    w.fingerprint_alg[0] = '\0';
    w.max_message_size = 0;
    w.n_candidates = 0;
    w.setup = SDP_SETUP_NONE;
    char buf[2048];
    int n = sdp_write(&w, buf, sizeof buf);
    cr_assert_gt(n, 0);
    cr_assert_not_null(strstr(buf, "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
    cr_assert_not_null(strstr(buf, "c=IN IP4 0.0.0.0\r\n"));
    cr_assert_not_null(strstr(buf, "a=fingerprint:sha-256 FF:FE:"));
    cr_assert_not_null(strstr(buf, "a=setup:actpass\r\n"));
    cr_assert_null(strstr(buf, "max-message-size"));
    cr_assert_null(strstr(buf, "a=candidate"));
}

/* ---- candidates ------------------------------------------------------------ */

Test(sdp_edges, unusable_candidates_are_dropped)
{
    const char *dropped[] = {
        "a=candidate:1 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active",
        "a=candidate:1 1 udp 2130706431 0f1e2d3c-aaaa.local 40000 typ host",
        "a=candidate:1 1 udp 2130706431 ABCDEF.LOCAL 40000 typ host",
        "a=candidate:1 1 udp 2130706431 127.0.0.1",
        "a=candidate:",
    };
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++) {
        sdp_description d;
        char err[200] = "";
        cr_assert_eq(parse_with(13, dropped[i], &d, err), 0, "%s: %s", dropped[i], err);
        cr_assert_eq(d.n_candidates, 0, "%s was kept", dropped[i]);
    }
    /* a short name ending in "local" is an address, not mDNS */
    sdp_description d;
    char err[200] = "";
    cr_assert_eq(parse_with(13, "a=candidate:1 1 udp 1 local 40000 typ host", &d, err), 0);
    cr_assert_eq(d.n_candidates, 1);
}

Test(sdp_edges, candidates_past_the_limit_and_at_session_level_are_ignored)
{
    static char text[32768];
    size_t n = 0;
    for (size_t i = 0; i < N_BASE; i++) {
        n += (size_t)snprintf(text + n, sizeof text - n, "%s\r\n", base[i]);
        if (i == 3) /* before the m-line: a session-level candidate */
            n += (size_t)snprintf(text + n, sizeof text - n,
                                  "a=candidate:9 1 udp 1 192.0.2.9 9 typ host\r\n");
    }
    for (int i = 0; i < SDP_MAX_CANDIDATES + 8; i++)
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "a=candidate:%d 1 udp 1 10.0.0.%d 9 typ host\r\n", i + 2, i + 1);
    sdp_description d;
    char err[200] = "";
    cr_assert_eq(sdp_parse(text, n, &d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.n_candidates, SDP_MAX_CANDIDATES);
    cr_assert_not_null(strstr(d.candidates[0], "127.0.0.1"), "%s", d.candidates[0]);
    cr_assert_not_null(strstr(d.candidates[SDP_MAX_CANDIDATES - 1], "10.0.0.31 "), "%s",
                       d.candidates[SDP_MAX_CANDIDATES - 1]);
    for (size_t i = 0; i < d.n_candidates; i++)
        cr_assert_null(strstr(d.candidates[i], "192.0.2.9"), "the session-level one was kept");
}

/* ---- lines and attributes ---------------------------------------------------- */

Test(sdp_edges, line_endings_and_foreign_lines)
{
    /* LF only, a last line without a newline, blank and foreign lines */
    static char text[4096];
    size_t n = 0;
    for (size_t i = 0; i < N_BASE; i++) {
        n += (size_t)snprintf(text + n, sizeof text - n, "%s%s", base[i],
                              i + 1 == N_BASE ? "" : "\n");
        if (i == 5)
            n += (size_t)snprintf(text + n, sizeof text - n, "\n\r\nx\nxy\nzz:top\nb=AS:30\n");
    }
    sdp_description d;
    char err[200] = "";
    cr_assert_eq(sdp_parse(text, n, &d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.n_candidates, 1, "the last line, without a newline, is read");
    cr_assert_str_eq(d.ice_pwd, "abcdefghijklmnopqrstuvwx");
}

Test(sdp_edges, media_attributes_at_session_level_are_ignored)
{
    sdp_description d;
    char err[200] = "";
    /* line 2 (s=-) replaced: each media-only attribute before the m-line */
    const char *session[] = {"a=mid:other", "a=sctp-port:bad", "a=sctpmap:bad",
                             "a=max-message-size:bad"};
    for (size_t i = 0; i < sizeof session / sizeof session[0]; i++) {
        cr_assert_eq(parse_with(2, session[i], &d, err), 0, "%s: %s", session[i], err);
        cr_assert_str_eq(d.mid, "0");
        cr_assert_eq(d.sctp_port, 5000);
        cr_assert_eq(d.max_message_size, 262144);
    }
}

Test(sdp_edges, attribute_values)
{
    sdp_description d;
    char err[200] = "";
    static char longer[400];

    cr_assert_eq(parse_with(7, "a=ice-ufrag:a+b/", &d, err), 0, "%s", err);
    cr_assert_str_eq(d.ice_ufrag, "a+b/");
    snprintf(longer, sizeof longer, "a=ice-ufrag:%0256d", 0);
    cr_assert_eq(parse_with(7, longer, &d, err), 0, "256 characters: %s", err);
    snprintf(longer, sizeof longer, "a=ice-ufrag:%0257d", 0);
    refused(7, longer, "bad ice-ufrag");
    snprintf(longer, sizeof longer, "a=ice-pwd:%0257d", 0);
    refused(8, longer, "bad ice-pwd");
    refused(8, "a=ice-pwd:abcdefghijklmnopqrstuvw-", "bad ice-pwd");

    cr_assert_eq(parse_with(10, "a=setup:active", &d, err), 0);
    cr_assert_eq(d.setup, SDP_SETUP_ACTIVE);
    cr_assert_eq(parse_with(10, "a=setup:passive", &d, err), 0);
    cr_assert_eq(d.setup, SDP_SETUP_PASSIVE);
    cr_assert_eq(parse_with(10, NULL, &d, err), 0);
    cr_assert_eq(d.setup, SDP_SETUP_NONE);
    refused(10, "a=setup:activ", "a=setup");
    refused(10, "a=setup:abcdef", "a=setup");  /* the length of "active" */
    refused(10, "a=setup:abcdefg", "a=setup"); /* the length of "actpass", "passive" */
    refused(10, "a=setup", "a=setup");

    refused(11, "a=sctp-port:abc", "a=sctp-port");
    refused(11, "a=sctp-port:0", "a=sctp-port");
    refused(11, "a=sctp-port:5000x", "a=sctp-port");
    cr_assert_eq(parse_with(11, "a=sctp-port:65535", &d, err), 0);
    cr_assert_eq(d.sctp_port, 65535);
    cr_assert_eq(parse_with(11, NULL, &d, err), 0);
    cr_assert_eq(d.sctp_port, 5000, "the default");

    refused(12, "a=max-message-size:", "a=max-message-size");
    refused(12, "a=max-message-size:12k", "a=max-message-size");
    cr_assert_eq(parse_with(12, "a=max-message-size:99999999999", &d, err), 0);
    cr_assert_eq(d.max_message_size, UINT32_MAX, "clamped");
    cr_assert_eq(parse_with(12, "a=max-message-size:0", &d, err), 0);
    cr_assert_eq(d.max_message_size, 0);
}

Test(sdp_edges, m_lines)
{
    sdp_description d;
    char err[200] = "";
    refused(4, "m=application", "application section");
    refused(4, "m=application 9 UDP/DTLS/SCTP", "application section");
    refused(4, "m=application 70000 UDP/DTLS/SCTP webrtc-datachannel", "application section");
    refused(4, "m=video 9 UDP/DTLS/SCTP webrtc-datachannel", "application section");
    refused(4, "m=application 9 TCP/DTLS/SCTP other", "unsupported application format");
    cr_assert_eq(parse_with(4, "m=application 65535 TCP/DTLS/SCTP webrtc-datachannel", &d, err), 0,
                 "%s", err);
    cr_assert_eq(d.dialect, SDP_DIALECT_MODERN);
    cr_assert_eq(d.conn_port, 65535);
    refused(4, NULL, "no application m-line");
    cr_assert_eq(sdp_parse("v=", 2, &d, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "v=0"), "%s", err);
}
