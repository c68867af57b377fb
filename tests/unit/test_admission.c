/*
 * test_admission — admission control in front of POST /api/rtc (issue 9):
 * the per-address token buckets (addrrate: burst, refill, Retry-After, a
 * full set replacing its least recently used entry with no allocation),
 * offer_admit's checks in order (rate, pending peers, descriptors, peer
 * slots, SDP), the descriptor reserve, and the HTTP side's per-address key
 * and body deadline.
 */
#include <criterion/criterion.h>

#include "app/addrrate.h"
#include "app/offer.h"
#include "http/server.h"
#include "util/mem.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "torture.h"

static void setup(void) { mem_install(); }

TestSuite(admission, .init = setup);

#define S 1000000LL /* one second in µs */

Test(admission, bucket_allows_the_burst_then_says_when_to_retry)
{
    addr_rate *t = addr_rate_new(5, 20);
    cr_assert_not_null(t);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(addr_rate_take(t, "192.0.2.1", 100 * S), 0, "offer %d of the burst", i);
    cr_assert_eq(addr_rate_take(t, "192.0.2.1", 100 * S), 1, "over: retry after 1 s");
    cr_assert_eq(addr_rate_take(t, "192.0.2.2", 100 * S), 0, "another address has its own");
    /* 0.2 s later one token (rate 5/s) is back, and only one. */
    cr_assert_eq(addr_rate_take(t, "192.0.2.1", 100 * S + S / 5), 0);
    cr_assert_neq(addr_rate_take(t, "192.0.2.1", 100 * S + S / 5), 0);
    /* A slow rate gives a longer Retry-After. */
    addr_rate *slow = addr_rate_new(0.1, 1);
    cr_assert_eq(addr_rate_take(slow, "a", 0), 0);
    cr_assert_eq(addr_rate_take(slow, "a", 0), 10);
    addr_rate_free(slow);
    addr_rate_free(t);
    check_leaks();
}

Test(admission, a_request_allocates_nothing_and_a_full_table_evicts_the_oldest)
{
    addr_rate *t = addr_rate_new(1, 1);
    cr_assert_not_null(t);
    /* Every further allocation fails: taking tokens must not need one. */
    mem_fail_at(1);
    char key[32];
    int64_t now = 1000 * S;
    for (int i = 0; i < ADDR_RATE_SETS * ADDR_RATE_WAYS * 4; i++) {
        snprintf(key, sizeof key, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        cr_assert_eq(addr_rate_take(t, key, now + i), 0);
    }
    mem_fail_at(0);
    /* "victim" spends its token; then far more addresses than the table
     * holds pass by, all later than it: its entry is the least recently
     * used of its set and is replaced, so it starts with a full bucket
     * again (the documented policy) a microsecond later. */
    now += 10 * S;
    cr_assert_eq(addr_rate_take(t, "victim", now), 0);
    cr_assert_neq(addr_rate_take(t, "victim", now), 0);
    for (int i = 0; i < ADDR_RATE_SETS * ADDR_RATE_WAYS * 8; i++) {
        snprintf(key, sizeof key, "172.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        addr_rate_take(t, key, now + 1);
    }
    cr_assert_eq(addr_rate_take(t, "victim", now + 1), 0, "evicted: a fresh bucket");
    addr_rate_free(t);
    check_leaks();
}

/* ---- offer_admit -------------------------------------------------------- */

static const char *offer_sdp = "v=0\n"
                               "o=- 1 1 IN IP4 0.0.0.0\n"
                               "s=-\n"
                               "t=0 0\n"
                               "m=application 40000 DTLS/SCTP 5000\n"
                               "c=IN IP4 127.0.0.1\n"
                               "a=mid:0\n"
                               "a=sctpmap:5000 webrtc-datachannel 65535\n"
                               "a=candidate:a1 1 udp 2130706431 127.0.0.1 40000 typ host\n"
                               "a=ice-ufrag:Xy12\n"
                               "a=ice-pwd:abcdefghijklmnopqrstuvwx\n"
                               "a=fingerprint:sha-256 "
                               "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:"
                               "FF:00:11:22:33:44:55:66:77:88:99\n"
                               "a=setup:actpass\n";

static int admit(offer_slots *slots, const char *addr, const char *body, int *status, char *code,
                 int *retry_after)
{
    http_request req = {
        .remote = addr, .remote_addr = addr, .body = body, .body_len = strlen(body)};
    http_reply r = {0};
    int ok = offer_admit(slots, &req, &r);
    *status = r.status;
    code[0] = '\0';
    if (r.body) {
        const char *c = strstr(r.body, "\"code\":\"");
        if (c)
            sscanf(c + 8, "%31[A-Z_]", code);
    }
    *retry_after = r.retry_after;
    mem_free(r.body);
    return ok;
}

Test(admission, offer_admit_checks_rate_then_pending_then_slots_then_sdp)
{
    offer_limits lim = {.max_peers = 3, .max_pending = 2, .offer_rate = 1}; /* burst 4 */
    offer_slots *slots = offer_slots_new(&lim);
    cr_assert_not_null(slots);
    int st, ra;
    char code[32];
    /* A bad offer is 400 and gives its slot back; it still costs a token. */
    cr_assert_eq(admit(slots, "198.51.100.1", "x", &st, code, &ra), 0);
    cr_assert_eq(st, 400);
    cr_assert_str_eq(code, "BAD_SDP");
    cr_assert_eq(offer_slots_used(slots), 0);
    /* Two admitted offers are pending (not answered yet): the third is
     * refused before any peer exists, from any address. */
    cr_assert_eq(admit(slots, "198.51.100.1", offer_sdp, &st, code, &ra), 1);
    cr_assert_eq(admit(slots, "198.51.100.2", offer_sdp, &st, code, &ra), 1);
    cr_assert_eq(admit(slots, "198.51.100.3", offer_sdp, &st, code, &ra), 0);
    cr_assert_eq(st, 503);
    cr_assert_str_eq(code, "AT_CAPACITY");
    cr_assert_eq(ra, 1, "Retry-After 1 for a transient cap");
    offer_admit_cancel(slots);
    cr_assert_eq(offer_slots_used(slots), 1);
    /* Address 1 spent 2 of its 4; two more pass, the fifth is 429. */
    cr_assert_eq(admit(slots, "198.51.100.1", "x", &st, code, &ra), 0);
    cr_assert_eq(admit(slots, "198.51.100.1", "x", &st, code, &ra), 0);
    cr_assert_eq(st, 400);
    cr_assert_eq(admit(slots, "198.51.100.1", offer_sdp, &st, code, &ra), 0);
    cr_assert_eq(st, 429);
    cr_assert_str_eq(code, "RATE_LIMITED");
    cr_assert_geq(ra, 1);
    /* The peer slots: one used; after the pending one is cancelled two
     * more fit (max_peers 3), then 503 without Retry-After. */
    offer_admit_cancel(slots);
    http_reply r = {0};
    cr_assert(offer_slots_take(slots, &r));
    cr_assert(offer_slots_take(slots, &r));
    cr_assert(offer_slots_take(slots, &r));
    cr_assert_eq(admit(slots, "198.51.100.4", offer_sdp, &st, code, &ra), 0);
    cr_assert_eq(st, 503);
    cr_assert_str_eq(code, "AT_CAPACITY");
    GString *m = g_string_new(NULL);
    offer_metrics_admission(m, slots);
    cr_assert(strstr(m->str, "chatd_offers_refused_total{reason=\"rate\"} 1\n"), "%s", m->str);
    cr_assert(strstr(m->str, "chatd_offers_refused_total{reason=\"pending\"} 1\n"), "%s", m->str);
    cr_assert(strstr(m->str, "chatd_offers_refused_total{reason=\"peers\"} 1\n"), "%s", m->str);
    cr_assert(strstr(m->str, "chatd_offers_refused_total{reason=\"sdp\"} 3\n"), "%s", m->str);
    g_string_free(m, TRUE);
    offer_slots_free(slots);
    check_leaks();
}

Test(admission, offers_are_refused_before_the_descriptors_run_out)
{
    struct rlimit rl = {.rlim_cur = 128, .rlim_max = 128};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    offer_fd_limits_init();
    long reserve = offer_fd_reserve();
    cr_assert_eq(reserve, 32, "an eighth of 128, at least 32");
    cr_assert(offer_fds_available(reserve));
    int fds[128], n = 0;
    while (offer_fds_available(reserve)) {
        cr_assert_lt(n, 128);
        fds[n] = open("/dev/null", O_RDONLY);
        cr_assert_geq(fds[n], 0);
        n++;
    }
    /* Refused with about `reserve` still free: HTTP can still answer. */
    int spare[16], k = 0;
    for (; k < 16; k++) {
        spare[k] = open("/dev/null", O_RDONLY);
        cr_assert_geq(spare[k], 0, "descriptors remain after the refusal");
    }
    for (int i = 0; i < k; i++)
        close(spare[i]);
    offer_limits lim = {.max_peers = 10};
    offer_slots *slots = offer_slots_new(&lim);
    int st, ra;
    char code[32];
    cr_assert_eq(admit(slots, "192.0.2.9", offer_sdp, &st, code, &ra), 0);
    cr_assert_eq(st, 503);
    cr_assert_str_eq(code, "AT_CAPACITY");
    for (int i = 0; i < n; i++)
        close(fds[i]);
    cr_assert(offer_fds_available(reserve));
    cr_assert_eq(admit(slots, "192.0.2.9", offer_sdp, &st, code, &ra), 1);
    offer_admit_cancel(slots);
    offer_slots_free(slots);
}

/* ---- the HTTP side ------------------------------------------------------ */

Test(admission, per_address_key_is_the_ipv4_address_or_the_ipv6_slash_64)
{
    char key[64];
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(5000)};
    inet_pton(AF_INET, "203.0.113.7", &a4.sin_addr);
    http_remote_key((struct sockaddr *)&a4, key, sizeof key);
    cr_assert_str_eq(key, "203.0.113.7");
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "2001:db8:1:2:aaaa:bbbb:cccc:dddd", &a6.sin6_addr);
    http_remote_key((struct sockaddr *)&a6, key, sizeof key);
    cr_assert_str_eq(key, "2001:db8:1:2::/64");
    inet_pton(AF_INET6, "2001:db8:1:2::99", &a6.sin6_addr);
    char key2[64];
    http_remote_key((struct sockaddr *)&a6, key2, sizeof key2);
    cr_assert_str_eq(key, key2, "one /64, one key");
    inet_pton(AF_INET6, "::ffff:203.0.113.7", &a6.sin6_addr);
    http_remote_key((struct sockaddr *)&a6, key, sizeof key);
    cr_assert_str_eq(key, "203.0.113.7", "a mapped IPv4 client counts as itself");
}

Test(admission, a_body_trickled_past_the_deadline_is_late)
{
    http_body b = {.started_us = 50 * S};
    cr_assert_not(http_body_late(&b, 50 * S + (HTTP_BODY_DEADLINE_S - 1) * S));
    cr_assert(http_body_late(&b, 50 * S + (HTTP_BODY_DEADLINE_S + 1) * S));
}
