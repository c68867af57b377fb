/*
 * sdp — see sdp.h. A line-oriented parser: split on LF (tolerating CRLF),
 * look at "m=" and "a=" lines, ignore everything else. Session-level ICE
 * and DTLS attributes are accepted as defaults for the media section, as
 * RFC 8839 allows and Firefox does.
 */
#include "rtc/sdp.h"

#include "util/err.h"
#include "util/log.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Copies a value of at most cap-1 bytes; returns -1 if it is longer. */
static int copy_value(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        return -1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

static int starts_with(const char *line, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(line, prefix, n) == 0;
}

/* ICE ufrag/pwd characters (RFC 8839 ice-char): ALPHA / DIGIT / "+" / "/". */
static int valid_ice_chars(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '/')
            return 0;
    return 1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int sdp_parse_fingerprint(const char *text, uint8_t *out, size_t cap)
{
    size_t n = 0;
    const char *p = text;
    while (*p) {
        int hi = hexval((unsigned char)p[0]);
        int lo = hi < 0 ? -1 : hexval((unsigned char)p[1]);
        if (hi < 0 || lo < 0 || n >= cap)
            return -1;
        out[n++] = (uint8_t)(hi << 4 | lo);
        p += 2;
        if (*p == ':')
            p++;
        else if (*p != '\0')
            return -1;
    }
    return n == 0 ? -1 : (int)n;
}

void sdp_format_fingerprint(const uint8_t *digest, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    if (cap == 0)
        return;
    if (cap < 3 * len) { /* "XX:" per byte, the last ':' becomes the NUL */
        out[0] = '\0';
        return;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        out[o++] = hex[digest[i] >> 4];
        out[o++] = hex[digest[i] & 15];
        out[o++] = ':';
    }
    out[len ? o - 1 : 0] = '\0';
}

/* Digest length of an algorithm chatd accepts: SHA-256 or stronger. SHA-1
 * (collisions are practical) and SHA-224 are refused, as are MD5 and MD2,
 * which RFC 8122 still lists. */
static size_t digest_len_for(const char *alg)
{
    if (strcmp(alg, "sha-256") == 0)
        return 32;
    if (strcmp(alg, "sha-384") == 0)
        return 48;
    if (strcmp(alg, "sha-512") == 0)
        return 64;
    return 0;
}

/* "a=fingerprint:sha-256 AB:CD:..." value part. */
static int is_weak_alg(const char *alg)
{
    return strcmp(alg, "sha-1") == 0 || strcmp(alg, "sha-224") == 0 || strcmp(alg, "md5") == 0 ||
           strcmp(alg, "md2") == 0;
}

/* *weak is set (and nothing else) for a fingerprint in a known but weak
 * algorithm: an offer may list several (RFC 8122 §5), and a weak one beside
 * a strong one is no reason to refuse. */
static int parse_fingerprint_attr(const char *v, size_t len, sdp_description *d, int *weak,
                                  char *err, size_t errlen)
{
    char buf[256];
    if (copy_value(buf, sizeof buf, v, len) < 0) {
        err_set(err, errlen, "fingerprint too long");
        return -1;
    }
    char *sp = strchr(buf, ' ');
    if (sp == NULL || sp - buf >= (long)sizeof d->fingerprint_alg) {
        err_set(err, errlen, "malformed fingerprint");
        return -1;
    }
    *sp = '\0';
    for (char *c = buf; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (is_weak_alg(buf)) {
        *weak = 1;
        return 0;
    }
    size_t want = digest_len_for(buf);
    if (want == 0) {
        char q[LOG_SAFE_LEN];
        err_set(err, errlen, "unsupported fingerprint algorithm \"%s\"",
                log_safe(q, sizeof q, buf));
        return -1;
    }
    char *value = sp + 1;
    while (*value == ' ')
        value++;
    int n = sdp_parse_fingerprint(value, d->fingerprint, sizeof d->fingerprint);
    if (n < 0 || (size_t)n != want) {
        err_set(err, errlen, "malformed %s fingerprint", buf);
        return -1;
    }
    strcpy(d->fingerprint_alg, buf);
    d->fingerprint_len = (size_t)n;
    return 0;
}

/* Keeps a candidate unless it is one chatd cannot use: TCP, or an mDNS
 * hostname (browsers hide host addresses that way; ICE still learns a
 * peer-reflexive candidate from the browser's checks). */
static void add_candidate(sdp_description *d, const char *v, size_t len)
{
    if (d->n_candidates >= SDP_MAX_CANDIDATES || len >= SDP_MAX_CANDIDATE_LEN)
        return;
    char buf[SDP_MAX_CANDIDATE_LEN];
    memcpy(buf, v, len);
    buf[len] = '\0';
    /* candidate:foundation component transport priority address port typ ... */
    char *fields[6] = {0};
    char *save = NULL;
    char *tok = strtok_r(buf, " ", &save);
    for (int i = 0; i < 6 && tok; i++, tok = strtok_r(NULL, " ", &save))
        fields[i] = tok;
    if (fields[5] == NULL || strcasecmp(fields[2], "udp") != 0)
        return;
    size_t alen = strlen(fields[4]);
    if (alen > 6 && strcasecmp(fields[4] + alen - 6, ".local") == 0)
        return;
    if (strcmp(fields[1], "1") != 0)
        return; /* only component 1: data channels use rtcp-mux semantics */
    memcpy(d->candidates[d->n_candidates], v, len);
    d->candidates[d->n_candidates][len] = '\0';
    d->n_candidates++;
}

int sdp_parse(const char *text, size_t len, sdp_description *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->sctp_port = 5000;
    if (text == NULL || len == 0) {
        err_set(err, errlen, "empty SDP");
        return -1;
    }
    if (len > SDP_MAX_SIZE) {
        err_set(err, errlen, "SDP larger than %d bytes", SDP_MAX_SIZE);
        return -1;
    }
    if (memchr(text, '\0', len) != NULL) {
        err_set(err, errlen, "SDP contains a NUL byte");
        return -1;
    }
    if (!starts_with(text, len, "v=0")) {
        err_set(err, errlen, "SDP must start with v=0");
        return -1;
    }

    int in_media = 0; /* 0: session level, 1: our m-line, 2: another m-line */
    int have_app = 0;
    int have_sctp_attr = 0;
    int weak_fp = 0; /* a fingerprint in a refused algorithm was seen */
    const char *p = text;
    const char *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        if (le > p && le[-1] == '\r')
            le--;
        size_t ll = (size_t)(le - p);
        const char *line = p;
        p = next;
        if (ll < 2 || line[1] != '=')
            continue; /* blank or foreign lines are ignored, as RFC 8866 suggests */

        if (line[0] == 'm') {
            if (have_app) {
                err_set(err, errlen, "only one m-line is supported");
                return -1;
            }
            char mline[256];
            if (copy_value(mline, sizeof mline, line + 2, ll - 2) < 0) {
                err_set(err, errlen, "m-line too long");
                return -1;
            }
            char media[32], proto[64], fmt[64];
            unsigned port;
            if (sscanf(mline, "%31s %u %63s %63s", media, &port, proto, fmt) != 4 ||
                strcmp(media, "application") != 0 || port > 65535) {
                err_set(err, errlen, "the m-line must be an application section");
                return -1;
            }
            if (strcmp(proto, "UDP/DTLS/SCTP") == 0 || strcmp(proto, "TCP/DTLS/SCTP") == 0) {
                if (strcmp(fmt, "webrtc-datachannel") != 0) {
                    char q[LOG_SAFE_LEN];
                    err_set(err, errlen, "unsupported application format \"%s\"",
                            log_safe(q, sizeof q, fmt));
                    return -1;
                }
                d->dialect = SDP_DIALECT_MODERN;
            } else if (strcmp(proto, "DTLS/SCTP") == 0) {
                char *endp;
                unsigned long sp = strtoul(fmt, &endp, 10);
                if (*endp != '\0' || sp == 0 || sp > 65535) {
                    err_set(err, errlen, "bad SCTP port in m-line");
                    return -1;
                }
                d->dialect = SDP_DIALECT_SCTPMAP;
                d->sctp_port = (uint16_t)sp;
            } else {
                char q[LOG_SAFE_LEN];
                err_set(err, errlen, "unsupported transport \"%s\"", log_safe(q, sizeof q, proto));
                return -1;
            }
            d->conn_port = (uint16_t)port;
            have_app = 1;
            in_media = 1;
            continue;
        }
        if (line[0] != 'a')
            continue;
        const char *a = line + 2;
        size_t al = ll - 2;
        const char *colon = memchr(a, ':', al);
        size_t nl2 = colon ? (size_t)(colon - a) : al;
        const char *v = colon ? colon + 1 : a + al;
        size_t vl = colon ? al - nl2 - 1 : 0;
#define ATTR(name) (nl2 == strlen(name) && memcmp(a, name, nl2) == 0)
        if (ATTR("ice-lite")) {
            d->ice_lite = 1;
        } else if (ATTR("ice-ufrag")) {
            if (vl < 4 || vl > 256 || !valid_ice_chars(v, vl)) {
                err_set(err, errlen, "bad ice-ufrag");
                return -1;
            }
            copy_value(d->ice_ufrag, sizeof d->ice_ufrag, v, vl);
        } else if (ATTR("ice-pwd")) {
            if (vl < 22 || vl > 256 || !valid_ice_chars(v, vl)) {
                err_set(err, errlen, "bad ice-pwd");
                return -1;
            }
            copy_value(d->ice_pwd, sizeof d->ice_pwd, v, vl);
        } else if (ATTR("fingerprint")) {
            if (parse_fingerprint_attr(v, vl, d, &weak_fp, err, errlen) < 0)
                return -1;
        } else if (ATTR("setup")) {
            if (vl == 7 && memcmp(v, "actpass", 7) == 0)
                d->setup = SDP_SETUP_ACTPASS;
            else if (vl == 6 && memcmp(v, "active", 6) == 0)
                d->setup = SDP_SETUP_ACTIVE;
            else if (vl == 7 && memcmp(v, "passive", 7) == 0)
                d->setup = SDP_SETUP_PASSIVE;
            else {
                err_set(err, errlen, "bad a=setup value");
                return -1;
            }
        } else if (in_media == 1 && ATTR("mid")) {
            if (vl == 0 || copy_value(d->mid, sizeof d->mid, v, vl) < 0) {
                err_set(err, errlen, "bad a=mid");
                return -1;
            }
        } else if (in_media == 1 && ATTR("sctp-port")) {
            char num[16];
            char *endp;
            if (copy_value(num, sizeof num, v, vl) < 0) {
                err_set(err, errlen, "bad a=sctp-port");
                return -1;
            }
            unsigned long sp = strtoul(num, &endp, 10);
            if (*endp != '\0' || endp == num || sp == 0 || sp > 65535) {
                err_set(err, errlen, "bad a=sctp-port");
                return -1;
            }
            d->sctp_port = (uint16_t)sp;
            have_sctp_attr = 1;
        } else if (in_media == 1 && ATTR("sctpmap")) {
            have_sctp_attr = 1; /* "5000 webrtc-datachannel 65535": port already from m-line */
        } else if (in_media == 1 && ATTR("max-message-size")) {
            char num[16];
            char *endp;
            if (copy_value(num, sizeof num, v, vl) < 0) {
                err_set(err, errlen, "bad a=max-message-size");
                return -1;
            }
            unsigned long long mm = strtoull(num, &endp, 10);
            if (*endp != '\0' || endp == num) {
                err_set(err, errlen, "bad a=max-message-size");
                return -1;
            }
            d->max_message_size = mm > UINT32_MAX ? UINT32_MAX : (uint32_t)mm;
        } else if (in_media == 1 && ATTR("candidate")) {
            add_candidate(d, a, al); /* keep "candidate:..." for libnice */
        }
#undef ATTR
    }
    if (!have_app) {
        err_set(err, errlen, "no application m-line");
        return -1;
    }
    (void)have_sctp_attr; /* sctpmap dialect may omit it; modern defaults to 5000 */
    if (d->ice_ufrag[0] == '\0' || d->ice_pwd[0] == '\0') {
        err_set(err, errlen, "missing ICE credentials (a=ice-ufrag / a=ice-pwd)");
        return -1;
    }
    if (d->fingerprint_len == 0) {
        err_set(err, errlen,
                weak_fp ? "fingerprint algorithm too weak (sha-256 or stronger required)"
                        : "missing a=fingerprint");
        return -1;
    }
    if (d->mid[0] == '\0')
        strcpy(d->mid, "0");
    return 0;
}

const char *sdp_setup_name(sdp_setup s)
{
    switch (s) {
    case SDP_SETUP_ACTIVE:
        return "active";
    case SDP_SETUP_PASSIVE:
        return "passive";
    default:
        return "actpass";
    }
}

int sdp_write(const sdp_description *d, char *buf, size_t cap)
{
    char fp[SDP_MAX_FINGERPRINT * 3 + 1];
    sdp_format_fingerprint(d->fingerprint, d->fingerprint_len, fp, sizeof fp);
    const char *addr = d->conn_address[0] ? d->conn_address : "0.0.0.0";
    const char *ipver = strchr(addr, ':') ? "IP6" : "IP4";
    uint16_t port = d->conn_port ? d->conn_port : 9;
    size_t o = 0;
    int n;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        n = snprintf(buf + o, cap - o, __VA_ARGS__);                                               \
        if (n < 0 || (size_t)n >= cap - o)                                                         \
            return -1;                                                                             \
        o += (size_t)n;                                                                            \
    } while (0)
    if (cap == 0)
        return -1;
    PUT("v=0\r\no=- %" PRIu64 " 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", d->session_id);
    if (d->ice_lite)
        PUT("a=ice-lite\r\n"); /* session level, RFC 8839 §5.3 */
    PUT("a=group:BUNDLE %s\r\na=msid-semantic: WMS\r\n", d->mid);
    if (d->dialect == SDP_DIALECT_SCTPMAP)
        PUT("m=application %u DTLS/SCTP %u\r\n", port, d->sctp_port);
    else
        PUT("m=application %u UDP/DTLS/SCTP webrtc-datachannel\r\n", port);
    PUT("c=IN %s %s\r\n", ipver, addr);
    PUT("a=mid:%s\r\n", d->mid);
    PUT("a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", d->ice_ufrag, d->ice_pwd);
    PUT("a=fingerprint:%s %s\r\n", d->fingerprint_alg[0] ? d->fingerprint_alg : "sha-256", fp);
    PUT("a=setup:%s\r\n", sdp_setup_name(d->setup));
    if (d->dialect == SDP_DIALECT_SCTPMAP)
        PUT("a=sctpmap:%u webrtc-datachannel 65535\r\n", d->sctp_port);
    else
        PUT("a=sctp-port:%u\r\n", d->sctp_port);
    if (d->max_message_size)
        PUT("a=max-message-size:%" PRIu32 "\r\n", d->max_message_size);
    for (size_t i = 0; i < d->n_candidates; i++)
        PUT("a=%s\r\n", d->candidates[i]);
    PUT("a=end-of-candidates\r\n");
#undef PUT
    return (int)o;
}
