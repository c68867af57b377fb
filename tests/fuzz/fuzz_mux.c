/* libFuzzer target: the one-port transport's receive path (rtc/mux.c), as
 * a stranger reaches it. One chatd-side peer is answered at start; each
 * input is either (first byte even) a raw datagram from an address the
 * input picks, or (odd) a check with that peer's real credentials from
 * such an address, followed by the rest of the input as a datagram from
 * the same 5-tuple: the demultiplexer, STUN parsing, answering checks,
 * learning and evicting 5-tuples, and DTLS input for a peer that has a
 * path. Nothing may crash, leak or hang. */
#include "rtc/mux.h"
#include "rtc/peer.h"
#include "rtc/stun.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static rtc_loops *loops;
static rtc_peer *peer;
static char ufrag[64], pwd[64];

static const char OFFER[] =
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:fuzz\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
    "a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:"
    "1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n"
    "a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    (void)p, (void)reason, (void)user;
}
static const rtc_peer_callbacks callbacks = {.on_close = on_close};

static void attr(const char *answer, const char *name, char *out, size_t cap)
{
    const char *a = strstr(answer, name);
    if (a == NULL)
        abort();
    a += strlen(name);
    size_t n = strcspn(a, "\r\n");
    if (n >= cap)
        abort();
    memcpy(out, a, n);
    out[n] = '\0';
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char err[256];
    if (rtc_init(err, sizeof err) < 0)
        abort();
    loops = rtc_loops_new(1);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof sa;
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    static const char *const addrs[] = {"127.0.0.1", NULL};
    rtc_mux_config mc = {.port = ntohs(sa.sin_port), .ice_addresses = addrs};
    if (rtc_mux_start(loops, &mc, err, sizeof err) < 0)
        abort();
    rtc_peer_config pc = {.loops = loops,
                          .transport = RTC_TRANSPORT_MUX,
                          .local_client = 1,
                          .setup_timeout_ms = 3600 * 1000,
                          .cb = &callbacks};
    char *answer = NULL;
    if (rtc_peer_answer(&pc, OFFER, sizeof OFFER - 1, &peer, &answer, err, sizeof err) !=
        RTC_ANSWER_OK)
        abort();
    attr(answer, "a=ice-ufrag:", ufrag, sizeof ufrag);
    attr(answer, "a=ice-pwd:", pwd, sizeof pwd);
    rtc_free(answer);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    struct sockaddr_in from = {.sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(0x7f000001u + (data[1] & 7)),
                               .sin_port = htons((uint16_t)(40000 + data[2]))};
    uint32_t local = htonl(0x7f000001u);
    if ((data[0] & 1) == 0) {
        rtc_mux_inject(rtc_loops_get(loops, 0), &from, local, data + 3, size - 3);
        return 0;
    }
    uint8_t check[STUN_MAX_MESSAGE_BYTES], txid[STUN_TXID_BYTES] = {0};
    memcpy(txid, data, size < sizeof txid ? size : sizeof txid);
    char user[128];
    snprintf(user, sizeof user, "%s:fuzz", ufrag);
    stun_writer w;
    stun_begin(&w, check, sizeof check, STUN_BINDING_REQUEST, txid);
    stun_add_bytes(&w, STUN_ATTR_USERNAME, user, strlen(user));
    stun_add_u32(&w, STUN_ATTR_PRIORITY, 1);
    stun_add_u64(&w, STUN_ATTR_ICE_CONTROLLING, 1);
    if (data[0] & 2)
        stun_add_flag(&w, STUN_ATTR_USE_CANDIDATE);
    int n = stun_finish(&w, (const uint8_t *)pwd, strlen(pwd));
    if (n < 0)
        abort();
    rtc_mux_inject(rtc_loops_get(loops, 0), &from, local, check, (size_t)n);
    rtc_mux_inject(rtc_loops_get(loops, 0), &from, local, data + 3, size - 3);
    return 0;
}
