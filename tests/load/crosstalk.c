/*
 * crosstalk — many shared-socket WebRTC peers against one chatd (relay
 * mode), in pairs, to prove that one UDP port keeps every peer's traffic
 * apart (tests/integration/test_mux.py, many_peers_one_port_no_crosstalk).
 *
 *   crosstalk --url URL --peers N [--messages K] [--loops L] [--workers W]
 *             [--inflight M] [--timeout S] [--room-prefix P]
 *
 * Peer i joins room P(i/2), so every room holds two peers. Each peer
 * connects with the client transport chat-client uses (RTC_TRANSPORT_MUX:
 * one UDP socket per peer, the controlling agent towards chatd's ICE-lite
 * port). Once every peer is open and chatd reports no pending peer, each
 * sends K numbered tokens unique to it and to this run (--messages, default
 * 3); relay mode gives a text to the room's other peers, so peer i must
 * receive exactly the K tokens of peer i^1, in order, and nothing else.
 * Then every peer closes gracefully.
 *
 * Output: progress on standard error; on standard output chatd's datagram
 * drop counters (/metrics) before the first offer and once the tokens are
 * delivered (before any peer closes), then one result line:
 *   crosstalk: chatd drops before: unknown_source=.. bad_stun=.. ... forwarded=..
 *   crosstalk: chatd drops delivered: ...
 *   crosstalk: peers=N messages=K opened=N exact=N missing=0 wrong=0 extra=0
 *              closed_clean=N connect_s=.. deliver_s=.. close_s=..
 * Exit status 0 when every peer opened, got exactly its partner's tokens
 * and closed cleanly; 1 otherwise (the first problems are printed); 2 on a
 * bad option.
 *
 * Threads: W connection workers (one curl handle each) post the offers,
 * at most M setups in flight; L event loops run the peers.
 */
#include "common/http_client.h"

#include "rtc/peer.h"
#include "util/log.h"
#include "util/mem.h"

#include <curl/curl.h>
#include <getopt.h>
#include <glib.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PS_CONNECTING, PS_OPEN, PS_FAILED, PS_CLOSED };

typedef struct {
    int idx;
    rtc_peer *rtc;
    atomic_int state;
    atomic_int settled; /* open or failed: counted out of the setups in flight */
    char token[64];     /* message k is "TOKEN #k" */
    /* the partner's tokens received in order / anything else */
    atomic_int received, right, other;
    char close_reason[96];
} xpeer;

static struct {
    const char *url;
    const char *prefix;
    int n, messages, loops_n, workers, inflight_max, timeout_s;
    rtc_loops *loops;
    xpeer *peers;
    atomic_int next;
    GMutex lock;
    GCond cond;
    int inflight, settled, opened, closed, failed;
    atomic_int problems;
    char nonce[17];
} X;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
    if (atomic_fetch_add(&X.problems, 1) >= 10)
        return; /* the first ten tell the story */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "crosstalk: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void settle(xpeer *xp, int opened)
{
    if (atomic_exchange(&xp->settled, 1))
        return;
    g_mutex_lock(&X.lock);
    X.inflight--;
    X.settled++;
    if (opened)
        X.opened++;
    else
        X.failed++;
    g_cond_broadcast(&X.cond);
    g_mutex_unlock(&X.lock);
}

static void on_open(rtc_peer *p, void *user)
{
    (void)p;
    xpeer *xp = user;
    atomic_store(&xp->state, PS_OPEN);
    settle(xp, 1);
}

static void on_message(rtc_peer *p, const uint8_t *data, size_t len, int binary, void *user)
{
    (void)p;
    xpeer *xp = user;
    /* on_message runs on the peer's loop: one at a time per peer */
    char want[96];
    snprintf(want, sizeof want, "%s #%d", X.peers[xp->idx ^ 1].token, atomic_load(&xp->right));
    int n = atomic_fetch_add(&xp->received, 1) + 1;
    if (!binary && len == strlen(want) && memcmp(data, want, len) == 0) {
        atomic_fetch_add(&xp->right, 1);
    } else {
        atomic_fetch_add(&xp->other, 1);
        problem("peer %d (room %s%d) received %s\"%.*s%s\" (want \"%s\")", xp->idx, X.prefix,
                xp->idx / 2, n > 1 ? "also " : "", (int)(len > 60 ? 60 : len), (const char *)data,
                len > 60 ? "..." : "", want);
    }
    g_mutex_lock(&X.lock);
    g_cond_broadcast(&X.cond);
    g_mutex_unlock(&X.lock);
}

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    (void)p;
    xpeer *xp = user;
    snprintf(xp->close_reason, sizeof xp->close_reason, "%s", reason);
    int was = atomic_exchange(&xp->state, PS_CLOSED);
    settle(xp, 0);
    if (was == PS_CONNECTING)
        problem("peer %d closed during setup: %s", xp->idx, reason);
    g_mutex_lock(&X.lock);
    X.closed++;
    g_cond_broadcast(&X.cond);
    g_mutex_unlock(&X.lock);
}

static const rtc_peer_callbacks callbacks = {
    .on_open = on_open, .on_message = on_message, .on_close = on_close};

static void connect_one(CURL *curl, xpeer *xp)
{
    char err[512] = "";
    rtc_peer_config cfg = {.loops = X.loops,
                           .transport = RTC_TRANSPORT_MUX,
                           .setup_timeout_ms = X.timeout_s * 1000,
                           .cb = &callbacks,
                           .user = xp};
    char *offer = NULL;
    if (rtc_peer_offer(&cfg, &xp->rtc, &offer, err, sizeof err) < 0) {
        problem("peer %d: no offer: %s", xp->idx, err);
        xp->rtc = NULL;
        atomic_store(&xp->state, PS_FAILED);
        settle(xp, 0);
        g_mutex_lock(&X.lock);
        X.closed++; /* no on_close will come */
        g_mutex_unlock(&X.lock);
        return;
    }
    char url[1024];
    snprintf(url, sizeof url, "%s%sapi/rtc?room=%s%d", X.url,
             X.url[strlen(X.url) - 1] == '/' ? "" : "/", X.prefix, xp->idx / 2);
    http_reply r;
    int rc = http_request(curl, "POST", url, "application/sdp", offer, NULL, X.timeout_s, &r, err,
                          sizeof err);
    rtc_free(offer);
    if (rc == 0 && (r.status != 201 || r.body == NULL)) {
        snprintf(err, sizeof err, "HTTP %ld: %.200s", r.status, r.body ? r.body : "");
        rc = -1;
    }
    if (rc == 0)
        rc = rtc_peer_set_answer(xp->rtc, r.body, r.len, err, sizeof err);
    if (rc == 0 || r.body)
        http_reply_free(&r);
    if (rc < 0) {
        problem("peer %d: %s", xp->idx, err);
        rtc_peer_close(xp->rtc, "setup failed"); /* on_close settles it */
    }
}

static void *connect_worker(void *arg)
{
    (void)arg;
    CURL *curl = curl_easy_init();
    for (;;) {
        int i = atomic_fetch_add(&X.next, 1);
        if (i >= X.n)
            break;
        g_mutex_lock(&X.lock);
        while (X.inflight >= X.inflight_max)
            g_cond_wait(&X.cond, &X.lock);
        X.inflight++;
        g_mutex_unlock(&X.lock);
        connect_one(curl, &X.peers[i]);
    }
    curl_easy_cleanup(curl);
    return NULL;
}

/* chatd's /metrics value of NAME (a gauge without labels); -1 when absent. */
static double metric(CURL *curl, const char *name)
{
    char url[1024], err[256];
    snprintf(url, sizeof url, "%s%smetrics", X.url, X.url[strlen(X.url) - 1] == '/' ? "" : "/");
    http_reply r;
    if (http_request(curl, "GET", url, NULL, NULL, NULL, 10, &r, err, sizeof err) < 0)
        return -1;
    double v = -1;
    size_t nl = strlen(name);
    for (const char *line = r.body; line && *line;) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, name, nl) == 0 && line[nl] == ' ')
            v = strtod(line + nl + 1, NULL);
        line = end ? end + 1 : NULL;
    }
    http_reply_free(&r);
    return v;
}

/* Prints chatd's datagram drop counters, by reason, as one line. */
static void print_drops(CURL *curl, const char *phase)
{
    static const char *const reasons[] = {"unknown_source", "bad_stun", "unknown_username",
                                          "bad_integrity", "inbox_full"};
    printf("crosstalk: chatd drops %s:", phase);
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "chatd_udp_dropped_total{reason=\"%s\"}", reasons[i]);
        printf(" %s=%.0f", reasons[i], metric(curl, name));
    }
    printf(" forwarded=%.0f\n", metric(curl, "chatd_udp_forwarded_total"));
    fflush(stdout);
}

/* Waits (on X.cond) until pred() or the deadline; returns pred(). */
static int wait_for(int (*pred)(void), gint64 deadline)
{
    g_mutex_lock(&X.lock);
    int ok;
    while (!(ok = pred()))
        if (!g_cond_wait_until(&X.cond, &X.lock, deadline))
            break;
    ok = pred();
    g_mutex_unlock(&X.lock);
    return ok;
}

static int all_settled(void) { return X.settled == X.n; }
static int all_closed(void) { return X.closed == X.n; }
static int all_received(void)
{
    for (int i = 0; i < X.n; i++)
        if (atomic_load(&X.peers[i].state) == PS_OPEN &&
            atomic_load(&X.peers[i].received) < X.messages)
            return 0;
    return 1;
}

static double secs_since(gint64 t0) { return (double)(g_get_monotonic_time() - t0) / 1e6; }

static void usage(FILE *f)
{
    fprintf(f, "usage: crosstalk --url URL --peers N [--messages K] [--loops L] [--workers W]\n"
               "                 [--inflight M] [--timeout S] [--room-prefix P]\n");
}

int main(int argc, char **argv)
{
    X.n = 0;
    X.messages = 3;
    X.loops_n = 2;
    X.workers = 8;
    X.inflight_max = 64;
    X.timeout_s = 60;
    X.prefix = "x";
    static const struct option opts[] = {
        {"url", required_argument, 0, 'u'},      {"peers", required_argument, 0, 'n'},
        {"messages", required_argument, 0, 'm'}, {"loops", required_argument, 0, 'l'},
        {"workers", required_argument, 0, 'w'},  {"inflight", required_argument, 0, 'i'},
        {"timeout", required_argument, 0, 't'},  {"room-prefix", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            X.url = optarg;
            break;
        case 'n':
            X.n = atoi(optarg);
            break;
        case 'm':
            X.messages = atoi(optarg);
            break;
        case 'l':
            X.loops_n = atoi(optarg);
            break;
        case 'w':
            X.workers = atoi(optarg);
            break;
        case 'i':
            X.inflight_max = atoi(optarg);
            break;
        case 't':
            X.timeout_s = atoi(optarg);
            break;
        case 'p':
            X.prefix = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (X.url == NULL || X.url[0] == '\0' || X.n < 2 || X.n % 2 || X.messages < 1 ||
        X.loops_n < 1 || X.workers < 1 || X.inflight_max < 1 || X.timeout_s < 1 || optind != argc) {
        usage(stderr);
        return 2;
    }

    log_set_level(getenv("CROSSTALK_DEBUG") ? LOGL_DEBUG : LOGL_ERROR);
    mem_install();
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_mutex_init(&X.lock);
    g_cond_init(&X.cond);
    char err[512];
    if (rtc_init(err, sizeof err) < 0) {
        fprintf(stderr, "crosstalk: %s\n", err);
        return 1;
    }
    X.loops = rtc_loops_new(X.loops_n);
    X.peers = calloc((size_t)X.n, sizeof *X.peers);
    uint8_t rnd[8];
    RAND_bytes(rnd, sizeof rnd);
    for (int i = 0; i < 8; i++)
        snprintf(X.nonce + 2 * i, 3, "%02x", rnd[i]);
    for (int i = 0; i < X.n; i++) {
        X.peers[i].idx = i;
        atomic_init(&X.peers[i].state, PS_CONNECTING);
        snprintf(X.peers[i].token, sizeof X.peers[i].token, "token %s peer %d room %s%d", X.nonce,
                 i, X.prefix, i / 2);
    }

    CURL *curl = curl_easy_init();
    print_drops(curl, "before");

    /* 1. connect every peer */
    gint64 t0 = g_get_monotonic_time();
    pthread_t *t = calloc((size_t)X.workers, sizeof *t);
    for (int i = 0; i < X.workers; i++)
        pthread_create(&t[i], NULL, connect_worker, NULL);
    for (int i = 0; i < X.workers; i++)
        pthread_join(t[i], NULL);
    free(t);
    wait_for(all_settled, g_get_monotonic_time() + (gint64)X.timeout_s * G_TIME_SPAN_SECOND);
    double connect_s = secs_since(t0);
    fprintf(stderr, "crosstalk: %d of %d peers open in %.1f s\n", X.opened, X.n, connect_s);

    /* 2. chatd has subscribed every open peer to its room (relay: on its
     * on_open) once no peer is pending */
    gint64 deadline = g_get_monotonic_time() + 15 * G_TIME_SPAN_SECOND;
    double pending = -1, sessions = -1;
    while (g_get_monotonic_time() < deadline) {
        pending = metric(curl, "chatd_pending_peers");
        sessions = metric(curl, "chatd_peers");
        if (pending == 0 && sessions == X.opened)
            break;
        g_usleep(100 * 1000);
    }
    if (pending != 0 || sessions != X.opened)
        problem("chatd reports %.0f sessions, %.0f pending, with %d peers open here", sessions,
                pending, X.opened);

    /* 3. every open peer sends its tokens, message k of every peer before
     * message k+1 of any */
    gint64 t1 = g_get_monotonic_time();
    for (int k = 0; k < X.messages; k++)
        for (int i = 0; i < X.n; i++) {
            char msg[96];
            int len = snprintf(msg, sizeof msg, "%s #%d", X.peers[i].token, k);
            if (atomic_load(&X.peers[i].state) == PS_OPEN &&
                rtc_peer_send_text(X.peers[i].rtc, msg, (size_t)len) < 0)
                problem("peer %d: send failed", i);
        }
    wait_for(all_received, g_get_monotonic_time() + 30 * G_TIME_SPAN_SECOND);
    double deliver_s = secs_since(t1);
    /* anything extra would come now */
    g_usleep(1000 * 1000);
    fprintf(stderr, "crosstalk: tokens delivered in %.2f s\n", deliver_s);
    print_drops(curl, "delivered");

    /* 4. graceful close of every peer */
    gint64 t2 = g_get_monotonic_time();
    for (int i = 0; i < X.n; i++)
        if (X.peers[i].rtc && atomic_load(&X.peers[i].state) == PS_OPEN)
            rtc_peer_close_gracefully(X.peers[i].rtc);
    wait_for(all_closed, g_get_monotonic_time() + 30 * G_TIME_SPAN_SECOND);
    double close_s = secs_since(t2);

    int exact = 0, missing = 0, wrong = 0, extra = 0, clean = 0;
    for (int i = 0; i < X.n; i++) {
        xpeer *xp = &X.peers[i];
        int right = atomic_load(&xp->right), other = atomic_load(&xp->other);
        int received = atomic_load(&xp->received);
        exact += right == X.messages && other == 0;
        missing += X.messages - right;
        wrong += other;
        extra += received > X.messages ? received - X.messages : 0;
        if (strcmp(xp->close_reason, "closed") == 0)
            clean++;
        else
            problem("peer %d closed: %s", i, xp->close_reason[0] ? xp->close_reason : "not at all");
    }
    g_mutex_lock(&X.lock);
    int opened = X.opened;
    g_mutex_unlock(&X.lock);
    printf("crosstalk: peers=%d messages=%d opened=%d exact=%d missing=%d wrong=%d extra=%d "
           "closed_clean=%d "
           "connect_s=%.2f deliver_s=%.2f close_s=%.2f\n",
           X.n, X.messages, opened, exact, missing, wrong, extra, clean, connect_s, deliver_s,
           close_s);
    fflush(stdout);

    curl_easy_cleanup(curl);
    for (int i = 0; i < X.n; i++)
        if (X.peers[i].rtc)
            rtc_peer_unref(X.peers[i].rtc);
    int ok = opened == X.n && exact == X.n && missing == 0 && wrong == 0 && extra == 0 &&
             clean == X.n && atomic_load(&X.problems) == 0;
    if (clean == X.n) { /* with a peer still alive the transport cannot stop */
        rtc_transport_stop();
        rtc_loops_free(X.loops);
        rtc_shutdown();
    }
    free(X.peers);
    curl_global_cleanup();
    return ok ? 0 : 1;
}
