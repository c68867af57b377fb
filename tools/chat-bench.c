/*
 * chat-bench — load generator for chatd and, with the same client code,
 * for Janus's TextRoom plugin, so both can be measured side by side.
 *
 * Many WebRTC peers (src/rtc) live in this one process over a few event
 * loops. Scenarios:
 *   connect   N peers, C at a time: setup time (start to channel open, and
 *             to ready: chatd's welcome, TextRoom's join success)
 *   fanout    N peers in one room, M of them posting R messages/s each:
 *             delivered messages/s, send-to-receive latency, losses
 *   capacity  idle peers added in steps: server RSS per peer, server CPU,
 *             and the most peers held (within a time budget)
 *   seed      the largest room in which every member posts at random
 *             intervals (uniform in [0, 10 s], as chatd's automatic posts)
 *             with p99 under a bound and nothing lost: grown in steps,
 *             then bisected
 *   jwt       ES256 tokens signed and verified per second (chatd's code)
 *
 * Every result is one line of KEY=VALUE pairs on standard output (the
 * bench script turns them into tables); progress goes to standard error.
 *
 * Threads: connection workers do the HTTP signalling (one blocking curl
 * handle each); the event loops run the peers and count what arrives; the
 * main thread paces the senders.
 *
 * Every result line says which transport our peers used (--transport:
 * towards chatd one shared socket per loop by default, towards Janus, a
 * full-ICE server, always one libnice agent per peer) and on how many CPUs
 * chat-bench ran (client_cpus, its affinity), so that a run whose client
 * CPU is near client_cpus x 100 % can be marked as saturated by the
 * client rather than by the server.
 *
 * Over 600 lines: the scenarios share one state (the peers, the counters
 * the loops update) and one send/drain/report cycle; the helpers that do
 * not touch that state live in tools/bench/.
 */
#include "bench/janus.h"
#include "bench/proc.h"
#include "bench/stats.h"
#include "common/http_client.h"

#include "auth/keys.h"
#include "auth/token.h"
#include "rtc/peer.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/version.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef enum { TARGET_CHATD, TARGET_JANUS } bench_target;

#define MAX_URLS 9     /* --url, repeated */
#define MAX_SERVERS 32 /* --server-pid, repeated */

/* PS_CLOSING: we asked a ready peer to leave (a room shrinking). */
typedef enum {
    PS_IDLE,
    PS_CONNECTING,
    PS_OPEN,
    PS_READY,
    PS_CLOSING,
    PS_FAILED,
    PS_CLOSED
} peer_state;

typedef struct {
    int idx;
    rtc_peer *rtc;
    gint64 t_start, t_open;
    atomic_int state;
    char *token; /* chatd: the welcome's JWT, sent with every post */
    janus_ids jids;
    atomic_int has_janus; /* a Janus session to destroy */
} bench_peer;

static struct {
    bench_target target;
    const char *url;  /* chatd: base URL; janus: http://HOST:PORT/janus */
    const char *room; /* chatd room name, or TextRoom room id */
    int room_size;    /* chatd: peer i joins ROOM-(i / room_size); 0 = all in ROOM */
    /* chatd: peer i connects to urls[i % n_urls] (--url repeated: the
     * nodes of a cluster); url is urls[0]. */
    const char *urls[MAX_URLS];
    int n_urls;
    const char *ice[17];
    rtc_loops *loops;
    rtc_transport transport; /* towards chatd; Janus always gets RTC_TRANSPORT_NICE */
    int client_cpus;         /* CPUs we may run on */
    cpu_set_t bench_cpus;    /* ours and the server's */
    int timeout_s;
    int server_pid; /* the first --server-pid; 0: none */
    int server_pids[MAX_SERVERS];
    int n_server_pids;
    const char *tag; /* free text copied into every result line */

    bench_peer *peers;
    int n_peers;
    atomic_int next_connect;
    int connect_end;
    /* Connect workers start no further setup past connect_deadline (0:
     * none), nor, with connect_stop_on_failure, once failures has grown
     * past connect_fail_base: a step that is failing is not pushed on. */
    gint64 connect_deadline;
    int connect_stop_on_failure;
    int connect_fail_base;

    GMutex lock; /* with cond: peer state changes */
    GCond cond;

    bench_samples setup_open, setup_ready, latency;
    /* With several URLs, latency split by whether the sender's peer and
     * the receiver's connect to the same URL (node) or not. */
    bench_samples latency_same, latency_cross;
    atomic_int phase;                  /* fanout phase id carried in each message */
    atomic_long received;              /* this phase's messages at non-senders */
    atomic_long received_at[MAX_URLS]; /* the same, by the receiver's URL */
    atomic_long stale;                 /* messages of an earlier phase */
    atomic_long refused;               /* posts the server refused (chatd: RATE_LIMITED) */
    atomic_long server_errors;         /* other error replies */
    atomic_llong last_rx_us;
    atomic_int failures;
    char first_failure[256];

    atomic_int stop_keepalive;
} B;

/* ---------- peers ---------- */

static void set_state(bench_peer *bp, peer_state s)
{
    g_mutex_lock(&B.lock);
    atomic_store(&bp->state, s);
    g_cond_broadcast(&B.cond);
    g_mutex_unlock(&B.lock);
}

static void note_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_failure(const char *fmt, ...)
{
    g_mutex_lock(&B.lock);
    if (atomic_fetch_add(&B.failures, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(B.first_failure, sizeof B.first_failure, fmt, ap);
        va_end(ap);
    }
    g_mutex_unlock(&B.lock);
}

static int room_is_number(void)
{
    for (const char *c = B.room; *c; c++)
        if (*c < '0' || *c > '9')
            return 0;
    return B.room[0] != '\0';
}

static void janus_join(rtc_peer *p, bench_peer *bp)
{
    char msg[256];
    if (room_is_number())
        snprintf(msg, sizeof msg,
                 "{\"textroom\":\"join\",\"transaction\":\"join\",\"room\":%s,"
                 "\"username\":\"u%d\",\"display\":\"u%d\"}",
                 B.room, bp->idx, bp->idx);
    else
        snprintf(msg, sizeof msg,
                 "{\"textroom\":\"join\",\"transaction\":\"join\",\"room\":\"%s\","
                 "\"username\":\"u%d\",\"display\":\"u%d\"}",
                 B.room, bp->idx, bp->idx);
    if (rtc_peer_send_text(p, msg, strlen(msg)) < 0)
        rtc_peer_close(p, "join not sent");
}

static void on_open(rtc_peer *p, void *user)
{
    bench_peer *bp = user;
    bp->t_open = g_get_monotonic_time();
    samples_add(&B.setup_open, (double)(bp->t_open - bp->t_start) / 1000.0);
    set_state(bp, PS_OPEN);
    if (B.target == TARGET_JANUS)
        janus_join(p, bp);
}

static void became_ready(bench_peer *bp)
{
    samples_add(&B.setup_ready, (double)(g_get_monotonic_time() - bp->t_start) / 1000.0);
    set_state(bp, PS_READY);
}

/* The value of "key" in a flat JSON text, allowing a space after the colon
 * (Janus's non-compact formats have one). Returns a pointer just past the
 * opening quote of a string value, or NULL. */
static const char *find_string_value(const char *s, size_t len, const char *key)
{
    size_t kl = strlen(key);
    const char *end = s + len;
    const char *k = memmem(s, len, key, kl);
    if (k == NULL)
        return NULL;
    const char *v = k + kl;
    while (v < end && (*v == ' ' || *v == ':'))
        v++;
    return v < end && *v == '"' ? v + 1 : NULL;
}

/* A bench message's text is "B|PHASE|SENDER|SEQ|SENT_US". Returns 1 and
 * counts it when data carries one. */
static int count_bench_message(bench_peer *bp, const char *data, size_t len)
{
    const char *t = find_string_value(data, len, "\"text\"");
    if (t == NULL || data + len - t < 10 || t[0] != 'B' || t[1] != '|')
        return 0;
    char buf[80];
    size_t n = (size_t)(data + len - t);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, t, n);
    buf[n] = '\0';
    int phase, sender;
    long seq;
    long long sent_us;
    if (sscanf(buf, "B|%d|%d|%ld|%lld", &phase, &sender, &seq, &sent_us) != 4)
        return 0;
    if (sender == bp->idx)
        return 1; /* our own message back (chatd echoes it with its ref) */
    if (phase != atomic_load(&B.phase)) {
        atomic_fetch_add(&B.stale, 1);
        return 1;
    }
    gint64 now = g_get_monotonic_time();
    double ms = (double)(now - sent_us) / 1000.0;
    samples_add(&B.latency, ms);
    atomic_fetch_add(&B.received, 1);
    if (B.n_urls > 1) {
        int at = bp->idx % B.n_urls;
        samples_add(sender >= 0 && sender % B.n_urls == at ? &B.latency_same : &B.latency_cross,
                    ms);
        atomic_fetch_add(&B.received_at[at], 1);
    }
    atomic_store(&B.last_rx_us, now);
    return 1;
}

static void chatd_message(bench_peer *bp, json_t *m)
{
    const char *type = json_string_value(json_object_get(m, "type"));
    if (type == NULL)
        return;
    if (strcmp(type, "welcome") == 0 && atomic_load(&bp->state) == PS_OPEN) {
        const char *token = json_string_value(json_object_get(m, "token"));
        if (token == NULL)
            return;
        bp->token = strdup(token);
        became_ready(bp);
    } else if (strcmp(type, "error") == 0) {
        const char *code = json_string_value(json_object_get(m, "code"));
        if (code && strcmp(code, "RATE_LIMITED") == 0)
            atomic_fetch_add(&B.refused, 1);
        else
            atomic_fetch_add(&B.server_errors, 1);
        if (json_is_true(json_object_get(m, "fatal")))
            note_failure("chatd: %s", json_string_value(json_object_get(m, "message")) ?: "fatal");
    }
}

static void janus_message(bench_peer *bp, json_t *m)
{
    const char *verb = json_string_value(json_object_get(m, "textroom"));
    const char *tx = json_string_value(json_object_get(m, "transaction"));
    if (verb == NULL)
        return;
    if (strcmp(verb, "success") == 0 && tx && strcmp(tx, "join") == 0) {
        became_ready(bp);
    } else if (strcmp(verb, "error") == 0) {
        atomic_fetch_add(&B.server_errors, 1);
        if (tx && strcmp(tx, "join") == 0) {
            note_failure("janus: join refused: %s",
                         json_string_value(json_object_get(m, "error")) ?: "?");
            set_state(bp, PS_FAILED);
        }
    }
}

static void on_message(rtc_peer *p, const uint8_t *data, size_t len, int binary, void *user)
{
    (void)p;
    bench_peer *bp = user;
    if (binary)
        return;
    /* The hot path (a chat message) is read without a JSON parser, the same
     * way for both servers; everything else is rare and parsed in full. */
    if (count_bench_message(bp, (const char *)data, len))
        return;
    json_t *m = json_loadb((const char *)data, len, 0, NULL);
    if (m == NULL)
        return;
    if (B.target == TARGET_CHATD)
        chatd_message(bp, m);
    else
        janus_message(bp, m);
    json_decref(m);
}

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    (void)p;
    bench_peer *bp = user;
    int s = atomic_load(&bp->state);
    if (s == PS_CONNECTING || s == PS_OPEN)
        note_failure("peer %d closed during setup: %s", bp->idx, reason);
    set_state(bp, s == PS_CONNECTING || s == PS_OPEN ? PS_FAILED : PS_CLOSED);
}

static const rtc_peer_callbacks callbacks = {
    .on_open = on_open, .on_message = on_message, .on_close = on_close};

/* ---------- connecting ---------- */

static rtc_peer_config peer_config(bench_peer *bp)
{
    rtc_peer_config cfg = {.loops = B.loops,
                           .transport = B.target == TARGET_JANUS ? RTC_TRANSPORT_NICE : B.transport,
                           .ice_addresses = B.ice[0] ? B.ice : NULL,
                           .setup_timeout_ms = B.timeout_s * 1000,
                           .cb = &callbacks,
                           .user = bp};
    if (B.target == TARGET_JANUS) {
        /* Janus offers but waits for the client's channel (janus.js's label). */
        cfg.answerer_opens_channel = 1;
        cfg.label = "JanusDataChannel";
    }
    return cfg;
}

static int connect_chatd(CURL *curl, bench_peer *bp, char *err, size_t errlen)
{
    rtc_peer_config cfg = peer_config(bp);
    char *offer = NULL;
    if (rtc_peer_offer(&cfg, &bp->rtc, &offer, err, errlen) < 0)
        return -1;
    char url[1024];
    const char *burl = B.urls[bp->idx % B.n_urls];
    const char *q = strchr(burl, '?');
    size_t base = q ? (size_t)(q - burl) : strlen(burl);
    char room[128];
    if (B.room_size > 0)
        snprintf(room, sizeof room, "%s-%d", B.room, bp->idx / B.room_size);
    else
        snprintf(room, sizeof room, "%s", B.room);
    snprintf(url, sizeof url, "%.*s%sapi/rtc?room=%s", (int)base, burl,
             base && burl[base - 1] == '/' ? "" : "/", room);
    http_reply r;
    int rc = http_request(curl, "POST", url, "application/sdp", offer, NULL, B.timeout_s, &r, err,
                          errlen);
    rtc_free(offer);
    if (rc < 0)
        return -1;
    if (r.status != 201 || r.body == NULL) {
        err_set(err, errlen, "HTTP %ld: %.120s", r.status, r.body ? r.body : "");
        http_reply_free(&r);
        return -1;
    }
    rc = rtc_peer_set_answer(bp->rtc, r.body, r.len, err, errlen);
    http_reply_free(&r);
    return rc;
}

static int connect_janus(CURL *curl, bench_peer *bp, char *err, size_t errlen)
{
    char *offer = NULL;
    if (janus_start(curl, B.url, &bp->jids, &offer, B.timeout_s, err, errlen) < 0)
        return -1;
    atomic_store(&bp->has_janus, 1);
    rtc_peer_config cfg = peer_config(bp);
    char *answer = NULL;
    int rc = rtc_peer_answer(&cfg, offer, strlen(offer), &bp->rtc, &answer, err, errlen);
    free(offer);
    if (rc < 0)
        return -1;
    rc = janus_send_answer(curl, B.url, &bp->jids, answer, err, errlen);
    rtc_free(answer);
    return rc;
}

/* Connects one peer and waits until it is ready or has failed. */
static void connect_one(CURL *curl, bench_peer *bp)
{
    char err[512] = "";
    atomic_store(&bp->state, PS_CONNECTING);
    bp->t_start = g_get_monotonic_time();
    int rc = B.target == TARGET_CHATD ? connect_chatd(curl, bp, err, sizeof err)
                                      : connect_janus(curl, bp, err, sizeof err);
    if (rc < 0) {
        note_failure("peer %d: %s", bp->idx, err);
        if (bp->rtc)
            rtc_peer_close(bp->rtc, "setup failed");
        else
            set_state(bp, PS_FAILED);
        return;
    }
    gint64 deadline = bp->t_start + (gint64)B.timeout_s * G_TIME_SPAN_SECOND;
    g_mutex_lock(&B.lock);
    int s;
    while ((s = atomic_load(&bp->state)) == PS_CONNECTING || s == PS_OPEN)
        if (!g_cond_wait_until(&B.cond, &B.lock, deadline))
            break;
    g_mutex_unlock(&B.lock);
    if (s == PS_CONNECTING || s == PS_OPEN) {
        note_failure("peer %d: not ready after %d s (%s)", bp->idx, B.timeout_s,
                     s == PS_OPEN ? "channel open, no welcome/join" : "channel not open");
        rtc_peer_close(bp->rtc, "setup timed out");
    }
}

static void *connect_worker(void *arg)
{
    (void)arg;
    CURL *curl = curl_easy_init();
    for (;;) {
        if (B.connect_deadline && g_get_monotonic_time() >= B.connect_deadline)
            break;
        if (B.connect_stop_on_failure && atomic_load(&B.failures) > B.connect_fail_base)
            break;
        int i = atomic_fetch_add(&B.next_connect, 1);
        if (i >= B.connect_end)
            break;
        connect_one(curl, &B.peers[i]);
    }
    curl_easy_cleanup(curl);
    return NULL;
}

/* Connects peers [from, to) with `concurrency` setups in flight; returns
 * the wall time in seconds. */
static double connect_range(int from, int to, int concurrency)
{
    atomic_store(&B.next_connect, from);
    B.connect_end = to;
    if (concurrency > to - from)
        concurrency = to - from;
    if (concurrency < 1)
        return 0;
    pthread_t *t = calloc((size_t)concurrency, sizeof *t);
    gint64 t0 = g_get_monotonic_time();
    for (int i = 0; i < concurrency; i++)
        pthread_create(&t[i], NULL, connect_worker, NULL);
    for (int i = 0; i < concurrency; i++)
        pthread_join(t[i], NULL);
    free(t);
    return (double)(g_get_monotonic_time() - t0) / 1e6;
}

static int count_state(peer_state s, int upto)
{
    int n = 0;
    for (int i = 0; i < upto; i++)
        n += atomic_load(&B.peers[i].state) == (int)s;
    return n;
}

/* Janus ends sessions idle for session_timeout (60 s by default); a real
 * client keeps them alive, so the bench does too. */
static void *keepalive_thread(void *arg)
{
    (void)arg;
    CURL *curl = curl_easy_init();
    int waited = 0;
    while (!atomic_load(&B.stop_keepalive)) {
        g_usleep(200 * 1000);
        if (++waited < 100) /* every 20 s */
            continue;
        waited = 0;
        for (int i = 0; i < B.n_peers && !atomic_load(&B.stop_keepalive); i++)
            if (atomic_load(&B.peers[i].has_janus) && atomic_load(&B.peers[i].state) == PS_READY)
                janus_keepalive(curl, B.url, &B.peers[i].jids);
    }
    curl_easy_cleanup(curl);
    return NULL;
}

/* ---------- the server process ---------- */

/* Every --server-pid together: CPU and RSS summed (-1 when one is
 * unknown); with `each`, every process's CPU seconds in order. */
static proc_sample server_sample_each(double *each)
{
    proc_sample sum = {-1, -1};
    for (int i = 0; i < B.n_server_pids; i++) {
        proc_sample s = proc_server_sample(B.server_pids[i]);
        if (each)
            each[i] = s.cpu_s;
        if (i == 0) {
            sum = s;
            continue;
        }
        sum.rss_kb = sum.rss_kb >= 0 && s.rss_kb >= 0 ? sum.rss_kb + s.rss_kb : -1;
        sum.cpu_s = sum.cpu_s >= 0 && s.cpu_s >= 0 ? sum.cpu_s + s.cpu_s : -1;
    }
    return sum;
}

static proc_sample server_sample(void) { return server_sample_each(NULL); }

/* What other processes (a build, another test run) took of the bench's
 * CPUs between a and b, beside the server (server_s) and us (client_s):
 * on a shared machine a run with much of it measured a disturbed server
 * or client. Printed as % of one CPU, with the hypervisor's steal. */
static void print_others(proc_cpu_time a, proc_cpu_time b, double server_s, double client_s,
                         double wall)
{
    if (a.busy_s < 0 || b.busy_s < 0 || wall <= 0)
        return;
    double others = b.busy_s - a.busy_s - (server_s > 0 ? server_s : 0) - client_s;
    printf(" others_cpu_pct=%.1f steal_pct=%.1f", others > 0 ? 100 * others / wall : 0,
           100 * (b.steal_s - a.steal_s) / wall);
}

/* ---------- results ---------- */

static const char *target_name(void) { return B.target == TARGET_CHATD ? "chatd" : "janus"; }

static const char *transport_name(void)
{
    return B.target == TARGET_JANUS || B.transport == RTC_TRANSPORT_NICE ? "nice" : "mux";
}

static void result_begin(const char *scenario)
{
    printf("scenario=%s target=%s", scenario, target_name());
    if (B.tag)
        printf(" tag=%s", B.tag);
    printf(" transport=%s client_cpus=%d", transport_name(), B.client_cpus);
}

static void result_summary(const char *prefix, bench_samples *s)
{
    bench_summary r = samples_summary(s);
    printf(" %s_n=%zu %s_p50_ms=%.3f %s_p99_ms=%.3f %s_max_ms=%.3f %s_mean_ms=%.3f", prefix, r.n,
           prefix, r.p50, prefix, r.p99, prefix, r.max, prefix, r.mean);
}

/* ---------- scenarios ---------- */

static void report_connect(const char *scenario, int peers, int concurrency, double secs)
{
    int ready = count_state(PS_READY, peers);
    result_begin(scenario);
    printf(" peers=%d concurrency=%d ready=%d failures=%d seconds=%.3f connects_per_s=%.1f", peers,
           concurrency, ready, peers - ready, secs, secs > 0 ? ready / secs : 0);
    result_summary("open", &B.setup_open);
    result_summary("ready", &B.setup_ready);
    printf("\n");
    fflush(stdout);
    if (peers - ready > 0)
        fprintf(stderr, "chat-bench: %d of %d peers failed; first: %s\n", peers - ready, peers,
                B.first_failure);
}

static int send_post(bench_peer *bp, int phase, long seq)
{
    char text[96], msg[8192];
    gint64 now = g_get_monotonic_time();
    snprintf(text, sizeof text, "B|%d|%d|%ld|%lld", phase, bp->idx, seq, (long long)now);
    int n;
    if (B.target == TARGET_CHATD)
        n = snprintf(msg, sizeof msg, "{\"type\":\"post\",\"token\":\"%s\",\"text\":\"%s\"}",
                     bp->token, text);
    else if (room_is_number())
        n = snprintf(msg, sizeof msg,
                     "{\"textroom\":\"message\",\"transaction\":\"m%ld\",\"room\":%s,"
                     "\"text\":\"%s\",\"ack\":false}",
                     seq, B.room, text);
    else
        n = snprintf(msg, sizeof msg,
                     "{\"textroom\":\"message\",\"transaction\":\"m%ld\",\"room\":\"%s\","
                     "\"text\":\"%s\",\"ack\":false}",
                     seq, B.room, text);
    if (n < 0 || (size_t)n >= sizeof msg)
        return -1;
    return rtc_peer_send_text(bp->rtc, msg, (size_t)n);
}

/* What one load phase measured. */
typedef struct {
    long sent, lost, problems; /* problems: send failures, refusals, error replies */
    double delivered_per_s;
    bench_summary lat;
} load_result;

/* One load phase: `senders` of the ready peers post for `duration` s,
 * each `rate` messages/s evenly spaced, or, with interval_max_s > 0, each
 * after waits drawn uniformly from [0, interval_max_s] (mean rate
 * 2 / interval_max_s); then the deliveries drain. Prints the result line
 * without its end: the caller adds its own fields and the newline. */
static load_result run_load(const char *scenario, int ready_peers, int senders, double rate,
                            double interval_max_s, double duration, int phase)
{
    atomic_store(&B.phase, phase);
    atomic_store(&B.received, 0);
    atomic_store(&B.refused, 0);
    atomic_store(&B.server_errors, 0);
    atomic_store(&B.stale, 0);
    samples_reset(&B.latency);
    samples_reset(&B.latency_same);
    samples_reset(&B.latency_cross);
    for (int u = 0; u < MAX_URLS; u++)
        atomic_store(&B.received_at[u], 0);

    bench_peer **snd = calloc((size_t)senders, sizeof *snd);
    gint64 *due = calloc((size_t)senders, sizeof *due);
    int ns = 0;
    for (int i = 0; i < B.n_peers && ns < senders; i++)
        if (atomic_load(&B.peers[i].state) == PS_READY)
            snd[ns++] = &B.peers[i];
    GRand *rng = g_rand_new_with_seed((guint32)phase); /* the same draws on every server */
    gint64 interval = (gint64)(1e6 / rate);
    gint64 random_max = (gint64)(interval_max_s * 1e6);
    double each0[MAX_SERVERS], each1[MAX_SERVERS];
    proc_sample p0 = server_sample_each(each0);
    double c0 = proc_self_cpu_s();
    proc_cpu_time o0 = proc_cpus_time(&B.bench_cpus);
    long long u0 = proc_udp_datagrams_sent();
    gint64 t0 = g_get_monotonic_time();
    atomic_store(&B.last_rx_us, t0);
    /* Fixed rate: the senders spread over one interval. Random waits: the
     * first is drawn from the waits' residual life (density falling
     * linearly from 2/max at 0 to 0 at max), so that the run starts as if
     * the members had been posting for long: the mean rate is 2/max from
     * the first second, not only after the first few posts. */
    for (int i = 0; i < ns; i++)
        due[i] =
            t0 + (random_max > 0 ? (gint64)((double)random_max * (1 - sqrt(1 - g_rand_double(rng))))
                                 : interval * i / (ns ? ns : 1));
    gint64 t_end = t0 + (gint64)(duration * 1e6);
    long sent = 0, send_failed = 0, seq = 0, late = 0;
    for (;;) {
        gint64 now = g_get_monotonic_time();
        if (now >= t_end)
            break;
        gint64 next = t_end;
        for (int i = 0; i < ns; i++) {
            while (due[i] <= now) {
                if (now - due[i] > 20 * 1000) /* the sending thread fell behind */
                    late++;
                if (send_post(snd[i], phase, ++seq) < 0)
                    send_failed++;
                else
                    sent++;
                due[i] += random_max > 0
                              ? (gint64)g_rand_double_range(rng, 0, (double)random_max) + 1
                              : interval;
            }
            if (due[i] < next)
                next = due[i];
        }
        gint64 wait = next - g_get_monotonic_time();
        if (wait > 0)
            g_usleep((gulong)(wait > 2000 ? 2000 : wait));
    }
    gint64 t_sent = g_get_monotonic_time();
    /* Drain: until everything expected came or nothing came for 3 s. */
    long expected = 0;
    long last = -1;
    gint64 last_progress = t_sent;
    for (;;) {
        expected = (sent - atomic_load(&B.refused)) * (long)(ready_peers - 1);
        long got = atomic_load(&B.received);
        gint64 now = g_get_monotonic_time();
        if (got >= expected)
            break;
        if (got != last) {
            last = got;
            last_progress = now;
        } else if (now - last_progress > 3 * G_TIME_SPAN_SECOND ||
                   now - t_sent > 30 * G_TIME_SPAN_SECOND) {
            break;
        }
        g_usleep(20 * 1000);
    }
    proc_sample p1 = server_sample_each(each1);
    double c1 = proc_self_cpu_s();
    proc_cpu_time o1 = proc_cpus_time(&B.bench_cpus);
    long long u1 = proc_udp_datagrams_sent();
    gint64 t_last = atomic_load(&B.last_rx_us);
    long got = atomic_load(&B.received);
    double span = (double)((t_last > t_sent ? t_last : t_sent) - t0) / 1e6;
    double wall = (double)(g_get_monotonic_time() - t0) / 1e6;

    load_result r = {.sent = sent,
                     .lost = expected > got ? expected - got : 0,
                     .problems =
                         send_failed + atomic_load(&B.refused) + atomic_load(&B.server_errors),
                     .delivered_per_s = span > 0 ? got / span : 0,
                     .lat = samples_summary(&B.latency)};
    double mean_rate = random_max > 0 ? 2.0 / interval_max_s : rate;
    result_begin(scenario);
    printf(" peers=%d senders=%d rate=%g", ready_peers, ns, mean_rate);
    if (random_max > 0)
        printf(" interval_max_ms=%.0f", interval_max_s * 1000);
    printf(" duration=%g offered_per_s=%.1f", duration, (double)ns * mean_rate * (ready_peers - 1));
    /* planned (fixed rates): what the pacing should have sent; late: posts
     * sent over 20 ms after their time. Sent below planned, or many late,
     * means the sending thread fell behind (the client, not the server). */
    if (random_max <= 0)
        printf(" planned=%.0f", ns * rate * duration);
    printf(" late_sends=%ld sent=%ld send_failed=%ld refused=%ld server_errors=%ld expected=%ld"
           " delivered=%ld lost=%ld stale=%ld delivered_per_s=%.1f",
           late, sent, send_failed, atomic_load(&B.refused), atomic_load(&B.server_errors),
           expected, got, r.lost, atomic_load(&B.stale), r.delivered_per_s);
    printf(" lat_n=%zu lat_p50_ms=%.3f lat_p99_ms=%.3f lat_max_ms=%.3f lat_mean_ms=%.3f", r.lat.n,
           r.lat.p50, r.lat.p99, r.lat.max, r.lat.mean);
    if (B.n_urls > 1) {
        /* delivered_each: deliveries to the peers of each URL, in --url
         * order; lat_same / lat_cross: sender and receiver on the same URL
         * or on different ones. */
        printf(" urls=%d delivered_each=", B.n_urls);
        for (int u = 0; u < B.n_urls; u++)
            printf("%s%ld", u ? "," : "", atomic_load(&B.received_at[u]));
        result_summary("lat_same", &B.latency_same);
        result_summary("lat_cross", &B.latency_cross);
    }
    /* wall_s: from the first send to the end of the drain, the span of
     * every CPU figure; server_cpu_s over it is what a delivery cost. */
    printf(" wall_s=%.3f", wall);
    double server_s = p0.cpu_s >= 0 && p1.cpu_s >= 0 ? p1.cpu_s - p0.cpu_s : -1;
    if (server_s >= 0)
        printf(" server_cpu_s=%.2f server_cpu_pct=%.1f server_rss_kb=%ld", server_s,
               100.0 * server_s / wall, p1.rss_kb);
    if (server_s >= 0 && B.n_server_pids > 1) {
        /* each --server-pid's CPU seconds over the run, in order */
        printf(" server_cpu_each_s=");
        for (int i = 0; i < B.n_server_pids; i++)
            printf("%s%.2f", i ? "," : "", each1[i] - each0[i]);
    }
    printf(" client_cpu_pct=%.1f", 100.0 * (c1 - c0) / wall);
    print_others(o0, o1, server_s, c1 - c0, wall);
    if (u0 >= 0 && u1 >= u0 && got > 0)
        printf(" udp_datagrams=%lld datagrams_per_delivery=%.2f", u1 - u0,
               (double)(u1 - u0) / (double)got);
    g_rand_free(rng);
    free(snd);
    free(due);
    return r;
}

/* M senders post each rate of the list in turn; with half, one more run
 * at half of the highest delivered rate (the latency a server keeps with
 * room to spare). */
static void run_fanout(int ready, int senders, const char *rates, double duration, int half)
{
    int phase = 0;
    double best = 0;
    char *list = strdup(rates), *save = NULL;
    for (char *r = strtok_r(list, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
        double rate = atof(r);
        if (rate <= 0)
            continue;
        load_result lr = run_load("fanout", ready, senders, rate, 0, duration, ++phase);
        printf("\n");
        fflush(stdout);
        if (lr.delivered_per_s > best)
            best = lr.delivered_per_s;
    }
    free(list);
    if (half && best > 0) {
        int m = senders < ready ? senders : ready;
        double rate = best / 2 / ((double)m * (ready - 1));
        run_load("fanout", ready, senders, rate, 0, duration, ++phase);
        printf(" half_of_per_s=%.1f\n", best);
        fflush(stdout);
    }
}

/* Closes ready peers, the highest index first, until `target` of the
 * first `upto` remain (Janus: the session is destroyed first, as a
 * leaving janus.js client does), and waits up to 10 s for them to close. */
static void shrink_to(int target, int upto)
{
    int have = count_state(PS_READY, upto);
    CURL *curl = B.target == TARGET_JANUS ? curl_easy_init() : NULL;
    int low = upto;
    for (int i = upto - 1; i >= 0 && have > target; i--) {
        bench_peer *bp = &B.peers[i];
        if (atomic_load(&bp->state) != PS_READY)
            continue;
        set_state(bp, PS_CLOSING);
        if (atomic_exchange(&bp->has_janus, 0))
            janus_destroy(curl, B.url, &bp->jids);
        rtc_peer_close_gracefully(bp->rtc);
        have--;
        low = i;
    }
    if (curl)
        curl_easy_cleanup(curl);
    gint64 deadline = g_get_monotonic_time() + 10 * G_TIME_SPAN_SECOND;
    for (int i = low; i < upto; i++) {
        bench_peer *bp = &B.peers[i];
        g_mutex_lock(&B.lock);
        while (atomic_load(&bp->state) == PS_CLOSING)
            if (!g_cond_wait_until(&B.cond, &B.lock, deadline))
                break;
        g_mutex_unlock(&B.lock);
        if (atomic_load(&bp->state) == PS_CLOSING)
            rtc_peer_close(bp->rtc, "shrinking the room");
    }
}

/* Idle peers added up to each count of `at` in turn (8 setups at a time).
 * After each step: 2 s to settle, then the server's RSS and its CPU over 3
 * idle seconds. Stops at the first step where a setup failed or a peer
 * was lost, or when budget_s (> 0) is spent. The most peers held is the
 * last step that ended with every peer ready; after hold_s more seconds
 * with exactly those peers (a failed step's extra peers are closed first)
 * the count still ready says whether they stay held. */
static void run_capacity(const int *at, int n_at, int concurrency, double budget_s, double hold_s)
{
    proc_sample base = server_sample();
    gint64 t_begin = g_get_monotonic_time();
    int have = 0, held = 0;
    const char *stop = "all_steps";
    for (int k = 0; k < n_at; k++) {
        int to = at[k];
        if (to <= have)
            continue;
        if (budget_s > 0 && g_get_monotonic_time() - t_begin >= (gint64)(budget_s * 1e6)) {
            stop = "budget";
            break;
        }
        int failed_before = atomic_load(&B.failures);
        samples_reset(&B.setup_open);
        samples_reset(&B.setup_ready);
        B.connect_fail_base = failed_before;
        B.connect_stop_on_failure = 1;
        B.connect_deadline = budget_s > 0 ? t_begin + (gint64)(budget_s * 1e6) : 0;
        double secs = connect_range(have, to, concurrency);
        B.connect_deadline = 0;
        B.connect_stop_on_failure = 0;
        int not_started = count_state(PS_IDLE, to) - count_state(PS_IDLE, have);
        have = to;
        g_usleep(2 * G_USEC_PER_SEC); /* let the server settle */
        proc_sample a = server_sample();
        double ca = proc_self_cpu_s();
        proc_cpu_time oa = proc_cpus_time(&B.bench_cpus);
        g_usleep(3 * G_USEC_PER_SEC);
        proc_sample b = server_sample();
        double cb = proc_self_cpu_s();
        proc_cpu_time ob = proc_cpus_time(&B.bench_cpus);
        int ready = count_state(PS_READY, have);
        result_begin("capacity");
        printf(" peers=%d ready=%d failures=%d not_started=%d step_seconds=%.3f", have, ready,
               atomic_load(&B.failures) - failed_before, not_started, secs);
        result_summary("ready", &B.setup_ready);
        if (base.rss_kb >= 0 && b.rss_kb >= 0)
            printf(" server_rss_kb=%ld base_rss_kb=%ld rss_per_peer_kb=%.1f idle_cpu_pct=%.1f",
                   b.rss_kb, base.rss_kb, ready ? (double)(b.rss_kb - base.rss_kb) / ready : 0,
                   100.0 * (b.cpu_s - a.cpu_s) / 3.0);
        printf(" client_idle_cpu_pct=%.1f", 100.0 * (cb - ca) / 3.0);
        print_others(oa, ob, a.cpu_s >= 0 && b.cpu_s >= 0 ? b.cpu_s - a.cpu_s : -1, cb - ca, 3.0);
        printf("\n");
        fflush(stdout);
        if (ready < have) {
            stop = atomic_load(&B.failures) > failed_before ? "setup_failed"
                   : not_started > 0                        ? "budget"
                                                            : "peers_lost";
            fprintf(stderr, "chat-bench: capacity: %d of %d peers ready (%s; first failure: %s)\n",
                    ready, have, stop, B.first_failure[0] ? B.first_failure : "none");
            break;
        }
        held = have;
    }
    int still = held;
    if (hold_s > 0 && held > 0) {
        if (have > held)
            shrink_to(held, have);
        g_usleep((gulong)(hold_s * G_USEC_PER_SEC));
        still = count_state(PS_READY, held);
    }
    result_begin("capacity_max");
    printf(" peers_max=%d tried=%d hold_s=%g still_ready=%d stop=%s elapsed_s=%.1f\n", held, have,
           hold_s, still, stop, (double)(g_get_monotonic_time() - t_begin) / 1e6);
    fflush(stdout);
}

/* Makes the room exactly `target` ready peers: connects fresh slots from
 * *next_slot on, or closes the newest members. Returns the room's size. */
static int set_room_size(int target, int *next_slot, int concurrency)
{
    int have = count_state(PS_READY, *next_slot);
    if (target > have) {
        int need = target - have;
        if (*next_slot + need > B.n_peers)
            need = B.n_peers - *next_slot;
        B.connect_fail_base = atomic_load(&B.failures);
        B.connect_stop_on_failure = 1;
        connect_range(*next_slot, *next_slot + need, concurrency);
        B.connect_stop_on_failure = 0;
        *next_slot += need;
    } else if (target < have) {
        shrink_to(target, *next_slot);
    }
    g_usleep(2 * G_USEC_PER_SEC); /* joins and leaves settle on the server */
    return count_state(PS_READY, *next_slot);
}

/* The seed workload: every member of one room posts after waits uniform in
 * [0, interval_s]. A room size passes when p99 < p99_ms, nothing is lost
 * and nothing refused. The sizes of the list are tried in turn until one
 * fails; then the gap between the largest passing and the smallest failing
 * size is halved until it is at most `resolution`. */
static void run_seed(const int *sizes, int n_sizes, int resolution, double duration,
                     double interval_s, double p99_ms, double budget_s, int concurrency)
{
    gint64 t_begin = g_get_monotonic_time();
    int next_slot = 0, pass = 0, fail = 0, phase = 1000, k = 0;
    const char *stop = "all_sizes_passed";
    for (;;) {
        int size;
        if (fail == 0) {
            if (k >= n_sizes)
                break;
            size = sizes[k++];
        } else {
            if (fail - pass <= resolution || (pass + fail) / 2 < 2) {
                stop = "resolved";
                break;
            }
            size = (pass + fail) / 2;
        }
        if (budget_s > 0 && g_get_monotonic_time() - t_begin >= (gint64)(budget_s * 1e6)) {
            stop = "budget";
            break;
        }
        int got = set_room_size(size, &next_slot, concurrency);
        if (got < size) {
            result_begin("seed");
            printf(" peers=%d wanted=%d setup_failed=1 pass=0\n", got, size);
            fflush(stdout);
            fprintf(stderr,
                    "chat-bench: seed: room of %d not built (%d ready; first failure: %s)\n", size,
                    got, B.first_failure);
            fail = size;
            if (got < 2 || next_slot >= B.n_peers) {
                stop = "setup_failed";
                break;
            }
            continue;
        }
        load_result r = run_load("seed", size, size, 0, interval_s, duration, ++phase);
        int ok = r.sent > 0 && r.lost == 0 && r.problems == 0 && r.lat.p99 < p99_ms;
        printf(" p99_limit_ms=%g pass=%d\n", p99_ms, ok);
        fflush(stdout);
        if (ok)
            pass = size;
        else
            fail = size;
    }
    result_begin("seed_result");
    printf(" largest=%d smallest_failed=%d resolution=%d interval_max_ms=%.0f duration=%g"
           " p99_limit_ms=%g stop=%s elapsed_s=%.1f\n",
           pass, fail, resolution, interval_s * 1000, duration, p99_ms, stop,
           (double)(g_get_monotonic_time() - t_begin) / 1e6);
    fflush(stdout);
}

static int run_jwt(double duration)
{
    char err[256];
    auth_keys *keys = auth_keys_generate(err, sizeof err);
    if (keys == NULL) {
        fprintf(stderr, "chat-bench: %s\n", err);
        return 1;
    }
    auth_claims_in in = {.iss = "http://127.0.0.1:8080",
                         .sub = "7",
                         .name = "Kurtis Weissnat",
                         .preferred_username = "Elwyn.Skiles",
                         .email = "Telly.Hoeger@billy.biz",
                         .ttl_seconds = 3600};
    char *token = NULL;
    long signed_n = 0, verified_n = 0;
    gint64 t0 = g_get_monotonic_time(), end = t0 + (gint64)(duration * 1e6);
    while (g_get_monotonic_time() < end) {
        free(token);
        token = NULL;
        in.now = time(NULL);
        if (auth_token_issue(keys, &in, &token, err, sizeof err) < 0) {
            fprintf(stderr, "chat-bench: sign: %s\n", err);
            return 1;
        }
        signed_n++;
    }
    double sign_s = (double)(g_get_monotonic_time() - t0) / 1e6;
    t0 = g_get_monotonic_time();
    end = t0 + (gint64)(duration * 1e6);
    while (g_get_monotonic_time() < end) {
        auth_claims c;
        if (auth_token_verify(keys, token, in.iss, time(NULL), &c, err, sizeof err) < 0) {
            fprintf(stderr, "chat-bench: verify: %s\n", err);
            return 1;
        }
        auth_claims_clear(&c);
        verified_n++;
    }
    double verify_s = (double)(g_get_monotonic_time() - t0) / 1e6;
    printf("scenario=jwt target=chatd signed_per_s=%.1f verified_per_s=%.1f threads=1\n",
           signed_n / sign_s, verified_n / verify_s);
    free(token);
    auth_keys_free(keys);
    return 0;
}

/* ---------- main ---------- */

static void close_all(void)
{
    atomic_store(&B.stop_keepalive, 1);
    CURL *curl = B.target == TARGET_JANUS ? curl_easy_init() : NULL;
    for (int i = 0; i < B.n_peers; i++) {
        bench_peer *bp = &B.peers[i];
        if (atomic_exchange(&bp->has_janus, 0))
            janus_destroy(curl, B.url, &bp->jids);
        if (bp->rtc && atomic_load(&bp->state) == PS_READY)
            rtc_peer_close_gracefully(bp->rtc);
        else if (bp->rtc)
            rtc_peer_close(bp->rtc, "bench over");
    }
    if (curl)
        curl_easy_cleanup(curl);
    /* Graceful closes get 5 s and 1 s per 200 peers (thousands of them
     * close slowly on a busy CPU); then whatever is left is aborted, and
     * every peer must have closed before the loops and the SCTP stack go
     * away (a live association's timer would fire into freed memory). */
    gint64 deadline = g_get_monotonic_time() + (5 + B.n_peers / 200) * G_TIME_SPAN_SECOND;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < B.n_peers; i++) {
            bench_peer *bp = &B.peers[i];
            if (bp->rtc == NULL)
                continue;
            g_mutex_lock(&B.lock);
            int s;
            while ((s = atomic_load(&bp->state)) != PS_CLOSED && s != PS_FAILED)
                if (!g_cond_wait_until(&B.cond, &B.lock, deadline))
                    break;
            g_mutex_unlock(&B.lock);
            if (s != PS_CLOSED && s != PS_FAILED)
                rtc_peer_close(bp->rtc, "bench over");
        }
        deadline = g_get_monotonic_time() + 10 * G_TIME_SPAN_SECOND;
    }
}

/* "N,N,..." of positive counts; returns how many (into a new array), or
 * -1 when a part is not a positive number. */
static int parse_counts(const char *text, int **out)
{
    int n = 0, cap = 8;
    int *v = malloc((size_t)cap * sizeof *v);
    const char *c = text;
    while (v && *c) {
        char *end;
        long x = strtol(c, &end, 10);
        if (end == c || x < 1 || x > 1000000 || (*end != ',' && *end != '\0'))
            break;
        if (n == cap) {
            int *nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (nv == NULL)
                break;
            v = nv;
        }
        v[n++] = (int)x;
        c = *end == ',' ? end + 1 : end;
    }
    if (v == NULL || *c || n == 0) {
        free(v);
        return -1;
    }
    *out = v;
    return n;
}

static int max_of(const int *v, int n)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: chat-bench --url URL SCENARIO-OPTIONS...\n\n"
               "Load generator for chatd and Janus TextRoom (same client code for both).\n"
               "Each result is one line of KEY=VALUE pairs on standard output.\n\n"
               "  --target T          chatd (default) or janus\n"
               "  --url URL           chatd: base URL (http://HOST:PORT/);\n"
               "                      janus: the API root (http://HOST:PORT/janus).\n"
               "                      chatd: repeatable (the nodes of a cluster): peer i\n"
               "                      connects to the (i mod K)-th URL; fanout lines then\n"
               "                      add delivered_each (deliveries to each URL's peers)\n"
               "                      and lat_same_* / lat_cross_* (sender and receiver on\n"
               "                      the same URL / on different ones; one clock)\n"
               "  --scenario S        connect, fanout, capacity, seed or jwt (default connect)\n"
               "  --transport T       towards chatd: mux (default: one UDP socket per loop,\n"
               "                      for chatd's one-port ICE-lite transport) or nice (a\n"
               "                      libnice agent per peer, for chatd --rtc-port 0);\n"
               "                      towards Janus (full ICE) always nice\n"
               "  --room R            chatd room name / TextRoom room id (default bench / 1234)\n"
               "  --room-size N       chatd: peers in rooms of N (R-0, R-1, ...) instead of one\n"
               "  --peers N           peers (default 10); capacity: the most to try\n"
               "  --concurrency C     setups in flight (default 8)\n"
               "  --senders M         fanout: peers that post (default: all)\n"
               "  --rates R,R,...     fanout: messages/s per sender, one run each (default 1)\n"
               "  --half              fanout: one more run at half the highest delivered rate\n"
               "  --duration S        fanout: seconds of sending per rate (default 10);\n"
               "                      seed: seconds per room size (default 20);\n"
               "                      jwt: seconds per operation (default 3)\n"
               "  --step K            capacity: peers added per step (default 100)\n"
               "  --at N,N,...        capacity: the peer counts to reach, in order (instead\n"
               "                      of --peers and --step)\n"
               "  --budget S          capacity, seed: start no step after S seconds (0: none)\n"
               "  --hold S            capacity: then hold the most peers reached S seconds\n"
               "                      more and count those still ready (default 0)\n"
               "  --sizes N,N,...     seed: room sizes tried in turn until one fails\n"
               "                      (default 50,100,200,300,400,500,600,800,1000)\n"
               "  --resolution N      seed: bisect until the gap is at most N (default 25)\n"
               "  --interval-ms MS    seed: each post follows a wait uniform in [0, MS]\n"
               "                      (default 10000, as chatd's automatic posts)\n"
               "  --p99-ms MS         seed: a size passes with p99 under MS (default 100)\n"
               "  --loops L           event-loop threads for the peers (default 2)\n"
               "  --ice-address ADDR  local ICE address (repeatable)\n"
               "  --server-pid PID    report the server's CPU and RSS from /proc; repeatable:\n"
               "                      summed, and each one's CPU in server_cpu_each_s\n"
               "  --timeout S         setup limit per peer in seconds (default 20)\n"
               "  --tag TEXT          copied into every result line (no spaces)\n"
               "  -h, --help          this text\n"
               "  --version           print the version and exit\n\n"
               "Exit status: 0 when every peer connected, 1 otherwise, 2 on a bad option.\n");
}

int main(int argc, char **argv)
{
    const char *scenario = "connect";
    const char *rates = "1";
    const char *at = NULL, *sizes = "50,100,200,300,400,500,600,800,1000";
    int peers = 10, concurrency = 8, senders = -1, step = 100, n_loops = 2, n_ice = 0;
    int half = 0, resolution = 25, transport_set = 0;
    double duration = -1, budget = 0, hold = 0, interval_ms = 10000, p99_ms = 100;
    B.transport = RTC_TRANSPORT_MUX;
    B.timeout_s = 20;
    static const struct option opts[] = {
        {"target", required_argument, 0, 'T'},      {"url", required_argument, 0, 'u'},
        {"scenario", required_argument, 0, 's'},    {"room", required_argument, 0, 'r'},
        {"room-size", required_argument, 0, 'Z'},   {"peers", required_argument, 0, 'n'},
        {"concurrency", required_argument, 0, 'c'}, {"senders", required_argument, 0, 'm'},
        {"rates", required_argument, 0, 'R'},       {"duration", required_argument, 0, 'd'},
        {"step", required_argument, 0, 'k'},        {"loops", required_argument, 0, 'l'},
        {"transport", required_argument, 0, 'X'},   {"half", no_argument, 0, 'H'},
        {"at", required_argument, 0, 'A'},          {"budget", required_argument, 0, 'B'},
        {"hold", required_argument, 0, 'o'},        {"sizes", required_argument, 0, 'S'},
        {"resolution", required_argument, 0, 'z'},  {"interval-ms", required_argument, 0, 'I'},
        {"p99-ms", required_argument, 0, 'P'},      {"ice-address", required_argument, 0, 'i'},
        {"server-pid", required_argument, 0, 'p'},  {"timeout", required_argument, 0, 't'},
        {"tag", required_argument, 0, 'g'},         {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},           {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'T':
            if (strcmp(optarg, "chatd") == 0)
                B.target = TARGET_CHATD;
            else if (strcmp(optarg, "janus") == 0)
                B.target = TARGET_JANUS;
            else {
                fprintf(stderr, "chat-bench: --target is chatd or janus\n");
                return 2;
            }
            break;
        case 'u':
            if (B.n_urls >= MAX_URLS) {
                fprintf(stderr, "chat-bench: at most %d --url\n", MAX_URLS);
                return 2;
            }
            B.urls[B.n_urls++] = optarg;
            B.url = B.urls[0];
            break;
        case 's':
            scenario = optarg;
            break;
        case 'r':
            B.room = optarg;
            break;
        case 'Z':
            B.room_size = atoi(optarg);
            if (B.room_size < 1) {
                fprintf(stderr, "chat-bench: bad --room-size '%s'\n", optarg);
                return 2;
            }
            break;
        case 'n':
            peers = atoi(optarg);
            break;
        case 'c':
            concurrency = atoi(optarg);
            break;
        case 'm':
            senders = atoi(optarg);
            break;
        case 'R':
            rates = optarg;
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'k':
            step = atoi(optarg);
            break;
        case 'l':
            n_loops = atoi(optarg);
            break;
        case 'X':
            if (strcmp(optarg, "mux") == 0)
                B.transport = RTC_TRANSPORT_MUX;
            else if (strcmp(optarg, "nice") == 0)
                B.transport = RTC_TRANSPORT_NICE;
            else {
                fprintf(stderr, "chat-bench: --transport is nice or mux\n");
                return 2;
            }
            transport_set = 1;
            break;
        case 'H':
            half = 1;
            break;
        case 'A':
            at = optarg;
            break;
        case 'B':
            budget = atof(optarg);
            break;
        case 'o':
            hold = atof(optarg);
            break;
        case 'S':
            sizes = optarg;
            break;
        case 'z':
            resolution = atoi(optarg);
            break;
        case 'I':
            interval_ms = atof(optarg);
            break;
        case 'P':
            p99_ms = atof(optarg);
            break;
        case 'i':
            if (n_ice >= 16) {
                fprintf(stderr, "chat-bench: too many --ice-address\n");
                return 2;
            }
            B.ice[n_ice++] = optarg;
            break;
        case 'p':
            if (B.n_server_pids >= MAX_SERVERS || atoi(optarg) <= 0) {
                fprintf(stderr, "chat-bench: bad or too many --server-pid '%s'\n", optarg);
                return 2;
            }
            B.server_pids[B.n_server_pids++] = atoi(optarg);
            B.server_pid = B.server_pids[0];
            break;
        case 't':
            B.timeout_s = atoi(optarg);
            break;
        case 'g':
            B.tag = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("chat-bench (chatd) %s\n", chatd_version);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    int is_jwt = strcmp(scenario, "jwt") == 0;
    int is_capacity = strcmp(scenario, "capacity") == 0, is_seed = strcmp(scenario, "seed") == 0;
    int *counts = NULL, n_counts = 0;
    if (is_capacity && at != NULL)
        n_counts = parse_counts(at, &counts);
    else if (is_seed)
        n_counts = parse_counts(sizes, &counts);
    if (optind != argc || (!is_jwt && B.url == NULL) || peers < 1 || concurrency < 1 || step < 1 ||
        n_loops < 1 || B.timeout_s < 1 || n_counts < 0 || resolution < 1 || interval_ms <= 0 ||
        p99_ms <= 0 || budget < 0 || hold < 0 ||
        (strcmp(scenario, "connect") && strcmp(scenario, "fanout") && !is_capacity && !is_seed &&
         !is_jwt)) {
        fprintf(stderr, "chat-bench: bad arguments (see --help)\n");
        free(counts);
        return 2;
    }
    if (B.target == TARGET_JANUS && B.n_urls > 1) {
        fprintf(stderr, "chat-bench: one --url towards Janus\n");
        free(counts);
        return 2;
    }
    if (B.target == TARGET_JANUS && transport_set && B.transport != RTC_TRANSPORT_NICE) {
        fprintf(stderr, "chat-bench: Janus is a full-ICE server: --transport nice only\n");
        free(counts);
        return 2;
    }
    if (is_capacity && counts == NULL) { /* --peers and --step: step, 2 step, ..., peers */
        n_counts = (peers + step - 1) / step;
        counts = malloc((size_t)n_counts * sizeof *counts);
        for (int i = 0; counts && i < n_counts; i++)
            counts[i] = (i + 1) * step < peers ? (i + 1) * step : peers;
        if (counts == NULL)
            return 1;
    }
    if (B.room == NULL)
        B.room = B.target == TARGET_JANUS ? "1234" : "bench";
    log_set_level(getenv("CHAT_BENCH_DEBUG") ? LOGL_DEBUG : LOGL_ERROR);
    if (is_jwt)
        return run_jwt(duration > 0 ? duration : 3);

    mem_install();
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_mutex_init(&B.lock);
    g_cond_init(&B.cond);
    samples_init(&B.setup_open);
    samples_init(&B.setup_ready);
    samples_init(&B.latency);
    samples_init(&B.latency_same);
    samples_init(&B.latency_cross);
    char err[512];
    if (rtc_init(err, sizeof err) < 0) {
        fprintf(stderr, "chat-bench: %s\n", err);
        return 1;
    }
    B.client_cpus = proc_self_cpus();
    proc_bench_cpus(B.server_pid, &B.bench_cpus);
    for (int i = 1; i < B.n_server_pids; i++) {
        cpu_set_t more;
        proc_bench_cpus(B.server_pids[i], &more);
        CPU_OR(&B.bench_cpus, &B.bench_cpus, &more);
    }
    /* Each peer may hold a socket or more (one libnice agent per peer). */
    long nofile = proc_raise_nofile();
    B.loops = rtc_loops_new(n_loops);
    if (is_capacity)
        peers = max_of(counts, n_counts);
    else if (is_seed) /* growing, then bisecting: every size gets fresh peers */
        peers = 3 * max_of(counts, n_counts);
    if (nofile >= 0 && nofile < (long)peers + 64)
        fprintf(stderr, "chat-bench: %d peers and only %ld descriptors (hard limit)\n", peers,
                nofile);
    B.n_peers = peers;
    B.peers = calloc((size_t)peers, sizeof *B.peers);
    for (int i = 0; i < peers; i++)
        B.peers[i].idx = i;
    pthread_t keepalive;
    int have_keepalive = 0;
    if (B.target == TARGET_JANUS)
        have_keepalive = pthread_create(&keepalive, NULL, keepalive_thread, NULL) == 0;

    int status = 0;
    if (is_capacity) {
        run_capacity(counts, n_counts, concurrency, budget, hold);
    } else if (is_seed) {
        run_seed(counts, n_counts, resolution, duration > 0 ? duration : 20, interval_ms / 1000,
                 p99_ms, budget, concurrency);
    } else {
        double secs = connect_range(0, peers, concurrency);
        report_connect("connect", peers, concurrency, secs);
        int ready = count_state(PS_READY, peers);
        status = ready == peers ? 0 : 1;
        if (strcmp(scenario, "fanout") == 0 && ready >= 2) {
            int m = senders < 0 || senders > ready ? ready : senders;
            /* Let the server finish the joins (presence to every peer, log
             * rows) before the first measurement. */
            g_usleep(2 * G_USEC_PER_SEC);
            run_fanout(ready, m, rates, duration > 0 ? duration : 10, half);
        }
    }

    close_all();
    if (have_keepalive)
        pthread_join(keepalive, NULL);
    for (int i = 0; i < peers; i++) {
        if (B.peers[i].rtc)
            rtc_peer_unref(B.peers[i].rtc);
        free(B.peers[i].token);
    }
    free(B.peers);
    for (int i = 0; i < 500 && rtc_get_stats().peer_objects > 0; i++)
        g_usleep(20 * 1000); /* the last references go on the loops */
    rtc_transport_stop();    /* the shared sockets of --transport mux, if started */
    rtc_loops_free(B.loops);
    rtc_shutdown();
    curl_global_cleanup();
    samples_free(&B.setup_open);
    samples_free(&B.setup_ready);
    samples_free(&B.latency);
    samples_free(&B.latency_same);
    samples_free(&B.latency_cross);
    free(counts);
    return status;
}
