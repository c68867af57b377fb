/* Unit tests: SDP parsing and writing in both dialects, and broken input. */
#include "rtc/sdp.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *browser_offer =
    "v=0\r\n"
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=extmap-allow-mixed\r\n"
    "a=msid-semantic: WMS\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=candidate:1 1 udp 2113937151 10.77.0.1 54321 typ host generation 0\r\n"
    "a=candidate:2 1 udp 2113937151 2c1f4f4a-2d1b-4bbd-9b22-0e0ee4a3f0c2.local 54322 typ host\r\n"
    "a=candidate:3 1 tcp 1518280447 10.77.0.1 9 typ host tcptype active\r\n"
    "a=ice-ufrag:abcd\r\n"
    "a=ice-pwd:0123456789abcdefghijkl\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 "
    "6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:"
    "08\r\n"
    "a=setup:actpass\r\n"
    "a=mid:0\r\n"
    "a=sctp-port:5000\r\n"
    "a=max-message-size:262144\r\n";

static const char *aiortc_offer = "v=0\n"
                                  "o=- 3889440520 3889440520 IN IP4 0.0.0.0\n"
                                  "s=-\n"
                                  "t=0 0\n"
                                  "a=group:BUNDLE 0\n"
                                  "a=msid-semantic:WMS *\n"
                                  "m=application 40000 DTLS/SCTP 5000\n"
                                  "c=IN IP4 127.0.0.1\n"
                                  "a=mid:0\n"
                                  "a=sctpmap:5000 webrtc-datachannel 65535\n"
                                  "a=max-message-size:65536\n"
                                  "a=candidate:a1 1 udp 2130706431 127.0.0.1 40000 typ host\n"
                                  "a=end-of-candidates\n"
                                  "a=ice-ufrag:Xy12\n"
                                  "a=ice-pwd:abcdefghijklmnopqrstuvwx\n"
                                  "a=fingerprint:sha-256 "
                                  "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:"
                                  "FF:00:11:22:33:44:55:66:77:88:99\n"
                                  "a=setup:actpass\n";

Test(sdp, parses_browser_offer)
{
    sdp_description d;
    char err[256];
    cr_assert_eq(sdp_parse(browser_offer, strlen(browser_offer), &d, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(d.dialect, SDP_DIALECT_MODERN);
    cr_assert_str_eq(d.ice_ufrag, "abcd");
    cr_assert_str_eq(d.ice_pwd, "0123456789abcdefghijkl");
    cr_assert_str_eq(d.fingerprint_alg, "sha-256");
    cr_assert_eq(d.fingerprint_len, 32);
    cr_assert_eq(d.fingerprint[0], 0x6B);
    cr_assert_eq(d.fingerprint[31], 0x08);
    cr_assert_eq(d.setup, SDP_SETUP_ACTPASS);
    cr_assert_str_eq(d.mid, "0");
    cr_assert_eq(d.sctp_port, 5000);
    cr_assert_eq(d.max_message_size, 262144);
    /* the .local and the TCP candidate are dropped */
    cr_assert_eq(d.n_candidates, 1);
    cr_assert(strstr(d.candidates[0], "10.77.0.1 54321") != NULL);
    cr_assert(strncmp(d.candidates[0], "candidate:", 10) == 0);
}

Test(sdp, parses_sctpmap_dialect_with_lf_only)
{
    sdp_description d;
    char err[256];
    cr_assert_eq(sdp_parse(aiortc_offer, strlen(aiortc_offer), &d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.dialect, SDP_DIALECT_SCTPMAP);
    cr_assert_eq(d.sctp_port, 5000);
    cr_assert_eq(d.max_message_size, 65536);
    cr_assert_eq(d.n_candidates, 1);
    cr_assert_eq(d.conn_port, 40000);
}

Test(sdp, session_level_attributes_are_defaults)
{
    const char *offer =
        "v=0\r\ns=-\r\na=ice-ufrag:sess\r\na=ice-pwd:0123456789012345678901\r\n"
        "a=fingerprint:sha-384 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:"
        "66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:data\r\n";
    sdp_description d;
    char err[256];
    cr_assert_eq(sdp_parse(offer, strlen(offer), &d, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(d.ice_ufrag, "sess");
    cr_assert_str_eq(d.fingerprint_alg, "sha-384");
    cr_assert_eq(d.fingerprint_len, 48);
    cr_assert_str_eq(d.mid, "data");
    cr_assert_eq(d.setup, SDP_SETUP_NONE);
}

/* Replaces the first occurrence of `what` in the browser offer. */
static char *mutate(const char *what, const char *with)
{
    const char *at = strstr(browser_offer, what);
    cr_assert_not_null(at, "test bug: '%s' not in offer", what);
    size_t pre = (size_t)(at - browser_offer);
    char *out = malloc(strlen(browser_offer) + strlen(with) + 1);
    memcpy(out, browser_offer, pre);
    strcpy(out + pre, with);
    strcat(out, at + strlen(what));
    return out;
}

static void expect_reject(const char *text, const char *reason_part)
{
    sdp_description d;
    char err[256] = "";
    cr_assert_eq(sdp_parse(text, strlen(text), &d, err, sizeof err), -1, "accepted: %s", text);
    cr_assert(strstr(err, reason_part) != NULL, "reason '%s' lacks '%s'", err, reason_part);
}

Test(sdp, rejects_missing_fingerprint)
{
    char *t = mutate("a=fingerprint:", "a=x-fingerprint:");
    expect_reject(t, "fingerprint");
    free(t);
}

Test(sdp, rejects_missing_credentials)
{
    char *t = mutate("a=ice-ufrag:abcd\r\n", "");
    expect_reject(t, "ICE credentials");
    free(t);
    t = mutate("a=ice-pwd:0123456789abcdefghijkl\r\n", "");
    expect_reject(t, "ICE credentials");
    free(t);
}

Test(sdp, rejects_missing_mline)
{
    char *t = mutate("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", "");
    expect_reject(t, "no application m-line");
    free(t);
}

Test(sdp, rejects_audio_and_second_mline)
{
    char *t = mutate("m=application 9", "m=audio 9");
    expect_reject(t, "application");
    free(t);
    char *two = malloc(strlen(browser_offer) * 2 + 1);
    strcpy(two, browser_offer);
    strcat(two, "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n");
    expect_reject(two, "only one m-line");
    free(two);
}

Test(sdp, rejects_bad_values)
{
    struct {
        const char *what, *with, *reason;
    } cases[] = {
        {"a=ice-ufrag:abcd", "a=ice-ufrag:ab", "ice-ufrag"},
        {"a=ice-ufrag:abcd", "a=ice-ufrag:ab<d", "ice-ufrag"},
        {"a=ice-pwd:0123456789abcdefghijkl", "a=ice-pwd:short", "ice-pwd"},
        {"a=setup:actpass", "a=setup:sideways", "setup"},
        {"a=sctp-port:5000", "a=sctp-port:70000", "sctp-port"},
        {"a=sctp-port:5000", "a=sctp-port:", "sctp-port"},
        {"a=max-message-size:262144", "a=max-message-size:big", "max-message-size"},
        {"sha-256 6B:8B", "md5 6B:8B", "too weak"},
        {"sha-256 6B:8B", "sha-256 6B8B", "fingerprint"},
        {"sha-256 6B:8B", "sha-256 ZZ:8B", "fingerprint"},
        {"UDP/DTLS/SCTP webrtc-datachannel", "RTP/SAVPF 111", "unsupported transport"},
        {"UDP/DTLS/SCTP webrtc-datachannel", "UDP/DTLS/SCTP other", "format"},
        {"a=mid:0", "a=mid:", "mid"},
        {"v=0", "v=1", "v=0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = mutate(cases[i].what, cases[i].with);
        expect_reject(t, cases[i].reason);
        free(t);
    }
}

Test(sdp, rejects_oversize_garbage_empty_and_nul)
{
    sdp_description d;
    char err[256];
    size_t big = SDP_MAX_SIZE + 1;
    char *huge = malloc(big + 1);
    memset(huge, 'a', big);
    memcpy(huge, "v=0\r\n", 5);
    huge[big] = '\0';
    cr_assert_eq(sdp_parse(huge, big, &d, err, sizeof err), -1);
    cr_assert(strstr(err, "larger") != NULL);
    free(huge);
    cr_assert_eq(sdp_parse("", 0, &d, err, sizeof err), -1);
    cr_assert_eq(sdp_parse(NULL, 10, &d, err, sizeof err), -1);
    const char garbage[] = "\x01\x02garbage\xff\xfe";
    cr_assert_eq(sdp_parse(garbage, sizeof garbage - 1, &d, err, sizeof err), -1);
    char with_nul[64] = "v=0\r\na=ice-ufrag:abcd";
    with_nul[8] = '\0';
    cr_assert_eq(sdp_parse(with_nul, 30, &d, err, sizeof err), -1);
    cr_assert(strstr(err, "NUL") != NULL);
}

Test(sdp, long_lines_are_capped)
{
    char line[600];
    memset(line, 'b', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    char *t = malloc(strlen(browser_offer) + 2 * sizeof line + 100);
    sprintf(t, "%sa=candidate:%s 1 udp 1 1.2.3.4 5 typ host\r\na=mid:%s\r\n", browser_offer, line,
            line);
    expect_reject(t, "mid"); /* the 599-byte mid is refused; the long candidate was skipped */
    free(t);
}

Test(sdp, write_then_parse_round_trip_both_dialects)
{
    for (int dialect = 0; dialect < 2; dialect++) {
        sdp_description w;
        memset(&w, 0, sizeof w);
        w.dialect = (sdp_dialect)dialect;
        w.setup = SDP_SETUP_ACTIVE;
        strcpy(w.mid, "data");
        strcpy(w.ice_ufrag, "uf12");
        strcpy(w.ice_pwd, "abcdefghijklmnopqrstuv");
        strcpy(w.fingerprint_alg, "sha-256");
        for (int i = 0; i < 32; i++)
            w.fingerprint[i] = (uint8_t)(i * 7);
        w.fingerprint_len = 32;
        w.sctp_port = 5000;
        w.max_message_size = 65536;
        strcpy(w.candidates[0], "candidate:1 1 udp 2130706431 127.0.0.1 4444 typ host");
        w.n_candidates = 1;
        strcpy(w.conn_address, "127.0.0.1");
        w.conn_port = 4444;
        w.session_id = 42;
        char buf[4096];
        int n = sdp_write(&w, buf, sizeof buf);
        cr_assert_gt(n, 0);
        cr_assert(strstr(buf, dialect ? "m=application 4444 DTLS/SCTP 5000\r\n"
                                      : "m=application 4444 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
        cr_assert(
            strstr(buf, dialect ? "a=sctpmap:5000 webrtc-datachannel 65535" : "a=sctp-port:5000"));
        cr_assert(strstr(buf, "a=setup:active\r\n"));
        cr_assert(strstr(buf, "a=end-of-candidates\r\n"));
        sdp_description r;
        char err[256];
        cr_assert_eq(sdp_parse(buf, (size_t)n, &r, err, sizeof err), 0, "%s", err);
        cr_assert_eq(r.dialect, w.dialect);
        cr_assert_str_eq(r.mid, "data");
        cr_assert_str_eq(r.ice_ufrag, "uf12");
        cr_assert_eq(memcmp(r.fingerprint, w.fingerprint, 32), 0);
        cr_assert_eq(r.setup, SDP_SETUP_ACTIVE);
        cr_assert_eq(r.max_message_size, 65536);
        cr_assert_eq(r.n_candidates, 1);
        /* too small a buffer fails cleanly */
        cr_assert_eq(sdp_write(&w, buf, 100), -1);
        cr_assert_eq(sdp_write(&w, buf, 0), -1);
    }
}

Test(sdp, fingerprint_format_and_parse)
{
    uint8_t d[3] = {0x0a, 0xbc, 0xff};
    char out[16];
    sdp_format_fingerprint(d, 3, out, sizeof out);
    cr_assert_str_eq(out, "0A:BC:FF");
    sdp_format_fingerprint(d, 3, out, 4); /* too small: empty, no overflow */
    cr_assert_str_eq(out, "");
    uint8_t back[4];
    cr_assert_eq(sdp_parse_fingerprint("0a:BC:ff", back, sizeof back), 3);
    cr_assert_eq(back[1], 0xbc);
    cr_assert_eq(sdp_parse_fingerprint("0a:BC:ff:00:11", back, sizeof back), -1);
    cr_assert_eq(sdp_parse_fingerprint("", back, sizeof back), -1);
    cr_assert_eq(sdp_parse_fingerprint("0a:B", back, sizeof back), -1);
    cr_assert_str_eq(sdp_setup_name(SDP_SETUP_PASSIVE), "passive");
    cr_assert_str_eq(sdp_setup_name(SDP_SETUP_ACTPASS), "actpass");
}
