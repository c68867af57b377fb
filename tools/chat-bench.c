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
 *   capacity  idle peers added in steps: server RSS per peer, server CPU
 *   jwt       ES256 tokens signed and verified per second (chatd's code)
 *
 * Every result is one line of KEY=VALUE pairs on standard output (the
 * bench script turns them into tables); progress goes to standard error.
 *
 * Threads: connection workers do the HTTP signalling (one blocking curl
 * handle each); the event loops run the peers and count what arrives; the
 * main thread paces the senders.
 */
#include "bench/janus.h"
#include "bench/stats.h"
#include "common/http_client.h"

#include "auth/keys.h"
#include "auth/token.h"
#include "rtc/peer.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef enum { TARGET_CHATD, TARGET_JANUS } bench_target;

typedef enum { PS_IDLE, PS_CONNECTING, PS_OPEN, PS_READY, PS_FAILED, PS_CLOSED } peer_state;

typedef struct {
    int idx;
    rtc_peer *rtc;
    gint64 t_start, t_open;
    atomic_int state;
    char *token; /* chatd: the welcome's JWT, sent with every post */
    janus_ids jids;
    int has_janus;
} bench_peer;

static struct {
    bench_target target;
    const char *url;  /* chatd: base URL; janus: http://HOST:PORT/janus */
    const char *room; /* chatd room name, or TextRoom room id */
    const char *ice[17];
    rtc_loops *loops;
    int timeout_s;
    int server_pid;
    const char *tag; /* free text copied into every result line */

    bench_peer *peers;
    int n_peers;
    atomic_int next_connect;
    int connect_end;

    GMutex lock; /* with cond: peer state changes */
    GCond cond;

    bench_samples setup_open, setup_ready, latency;
    atomic_int phase;          /* fanout phase id carried in each message */
    atomic_long received;      /* this phase's messages at non-senders */
    atomic_long stale;         /* messages of an earlier phase */
    atomic_long refused;       /* posts the server refused (chatd: RATE_LIMITED) */
    atomic_long server_errors; /* other error replies */
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
    samples_add(&B.latency, (double)(now - sent_us) / 1000.0);
    atomic_fetch_add(&B.received, 1);
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
    const char *q = strchr(B.url, '?');
    size_t base = q ? (size_t)(q - B.url) : strlen(B.url);
    snprintf(url, sizeof url, "%.*s%sapi/rtc?room=%s", (int)base, B.url,
             base && B.url[base - 1] == '/' ? "" : "/", B.room);
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
    bp->has_janus = 1;
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
            if (B.peers[i].has_janus && atomic_load(&B.peers[i].state) == PS_READY)
                janus_keepalive(curl, B.url, &B.peers[i].jids);
    }
    curl_easy_cleanup(curl);
    return NULL;
}

/* ---------- the server process ---------- */

typedef struct {
    long rss_kb;
    double cpu_s; /* user + system */
} proc_sample;

static proc_sample server_sample(void)
{
    proc_sample ps = {-1, -1};
    if (B.server_pid <= 0)
        return ps;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/status", B.server_pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(buf, sizeof buf, f))
            if (sscanf(buf, "VmRSS: %ld", &ps.rss_kb) == 1)
                break;
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/stat", B.server_pid);
    f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        /* Fields after the command name (which may hold spaces): 14 and 15
         * of the line are utime and stime, in clock ticks. */
        const char *rp = strrchr(buf, ')');
        unsigned long ut, st;
        if (rp &&
            sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            ps.cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    return ps;
}

/* CPU seconds (user + system) this process has used: the load generator
 * shares the cores with the server, so its own use is reported too. */
static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* UDP datagrams sent in this network namespace so far (every packet of
 * the client and of the server, when both run in it as in make bench):
 * the packets each delivery costs tell how much SCTP bundles. -1 when
 * /proc/net/snmp cannot be read. */
static long long udp_datagrams_sent(void)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    if (f == NULL)
        return -1;
    char line[1024];
    long long out = -1;
    int seen_header = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Udp: ", 5) != 0)
            continue;
        if (!seen_header) { /* "Udp: InDatagrams NoPorts InErrors OutDatagrams ..." */
            seen_header = 1;
            continue;
        }
        long long in, noports, inerr;
        if (sscanf(line + 5, "%lld %lld %lld %lld", &in, &noports, &inerr, &out) != 4)
            out = -1;
        break;
    }
    fclose(f);
    return out;
}

/* ---------- results ---------- */

static const char *target_name(void) { return B.target == TARGET_CHATD ? "chatd" : "janus"; }

static void result_begin(const char *scenario)
{
    printf("scenario=%s target=%s", scenario, target_name());
    if (B.tag)
        printf(" tag=%s", B.tag);
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

/* M senders post `rate` messages/s each for `duration` s; then waits for
 * the deliveries to drain and prints one result line. */
static void run_fanout(int ready_peers, int senders, double rate, double duration, int phase)
{
    atomic_store(&B.phase, phase);
    atomic_store(&B.received, 0);
    atomic_store(&B.refused, 0);
    atomic_store(&B.server_errors, 0);
    atomic_store(&B.stale, 0);
    samples_reset(&B.latency);

    bench_peer **snd = calloc((size_t)senders, sizeof *snd);
    gint64 *due = calloc((size_t)senders, sizeof *due);
    int ns = 0;
    for (int i = 0; i < B.n_peers && ns < senders; i++)
        if (atomic_load(&B.peers[i].state) == PS_READY)
            snd[ns++] = &B.peers[i];
    gint64 interval = (gint64)(1e6 / rate);
    proc_sample p0 = server_sample();
    double c0 = self_cpu_s();
    long long u0 = udp_datagrams_sent();
    gint64 t0 = g_get_monotonic_time();
    atomic_store(&B.last_rx_us, t0);
    for (int i = 0; i < ns; i++) /* spread the senders over one interval */
        due[i] = t0 + interval * i / (ns ? ns : 1);
    gint64 t_end = t0 + (gint64)(duration * 1e6);
    long sent = 0, send_failed = 0, seq = 0;
    for (;;) {
        gint64 now = g_get_monotonic_time();
        if (now >= t_end)
            break;
        gint64 next = t_end;
        for (int i = 0; i < ns; i++) {
            while (due[i] <= now) {
                if (send_post(snd[i], phase, ++seq) < 0)
                    send_failed++;
                else
                    sent++;
                due[i] += interval;
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
    proc_sample p1 = server_sample();
    double c1 = self_cpu_s();
    long long u1 = udp_datagrams_sent();
    gint64 t_last = atomic_load(&B.last_rx_us);
    long got = atomic_load(&B.received);
    double span = (double)((t_last > t_sent ? t_last : t_sent) - t0) / 1e6;
    double wall = (double)(g_get_monotonic_time() - t0) / 1e6;

    result_begin("fanout");
    printf(" peers=%d senders=%d rate=%g duration=%g offered_per_s=%.1f sent=%ld send_failed=%ld"
           " refused=%ld server_errors=%ld expected=%ld delivered=%ld lost=%ld stale=%ld"
           " delivered_per_s=%.1f",
           ready_peers, ns, rate, duration, (double)ns * rate * (ready_peers - 1), sent,
           send_failed, atomic_load(&B.refused), atomic_load(&B.server_errors), expected, got,
           expected > got ? expected - got : 0, atomic_load(&B.stale), span > 0 ? got / span : 0);
    result_summary("lat", &B.latency);
    if (p0.cpu_s >= 0 && p1.cpu_s >= 0)
        printf(" server_cpu_pct=%.1f server_rss_kb=%ld", 100.0 * (p1.cpu_s - p0.cpu_s) / wall,
               p1.rss_kb);
    printf(" client_cpu_pct=%.1f", 100.0 * (c1 - c0) / wall);
    if (u0 >= 0 && u1 >= u0 && got > 0)
        printf(" udp_datagrams=%lld datagrams_per_delivery=%.2f", u1 - u0,
               (double)(u1 - u0) / (double)got);
    printf("\n");
    fflush(stdout);
    free(snd);
    free(due);
}

static void run_capacity(int max_peers, int step, int concurrency)
{
    proc_sample base = server_sample();
    int have = 0;
    while (have < max_peers) {
        int to = have + step > max_peers ? max_peers : have + step;
        int failed_before = atomic_load(&B.failures);
        samples_reset(&B.setup_open);
        samples_reset(&B.setup_ready);
        double secs = connect_range(have, to, concurrency);
        have = to;
        g_usleep(2 * G_USEC_PER_SEC); /* let the server settle */
        proc_sample a = server_sample();
        double ca = self_cpu_s();
        g_usleep(3 * G_USEC_PER_SEC);
        proc_sample b = server_sample();
        double cb = self_cpu_s();
        int ready = count_state(PS_READY, have);
        result_begin("capacity");
        printf(" peers=%d ready=%d failures=%d step_seconds=%.3f", have, ready, have - ready, secs);
        result_summary("ready", &B.setup_ready);
        if (base.rss_kb >= 0 && b.rss_kb >= 0)
            printf(" server_rss_kb=%ld base_rss_kb=%ld rss_per_peer_kb=%.1f idle_cpu_pct=%.1f",
                   b.rss_kb, base.rss_kb, ready ? (double)(b.rss_kb - base.rss_kb) / ready : 0,
                   100.0 * (b.cpu_s - a.cpu_s) / 3.0);
        printf(" client_idle_cpu_pct=%.1f\n", 100.0 * (cb - ca) / 3.0);
        fflush(stdout);
        if (atomic_load(&B.failures) > failed_before) {
            fprintf(stderr, "chat-bench: capacity: failures at %d peers (first: %s)\n", have,
                    B.first_failure);
            break;
        }
    }
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
        if (bp->has_janus)
            janus_destroy(curl, B.url, &bp->jids);
        if (bp->rtc && atomic_load(&bp->state) == PS_READY)
            rtc_peer_close_gracefully(bp->rtc);
        else if (bp->rtc)
            rtc_peer_close(bp->rtc, "bench over");
    }
    if (curl)
        curl_easy_cleanup(curl);
    gint64 deadline = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
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
}

static void usage(FILE *f)
{
    fprintf(f, "usage: chat-bench --url URL SCENARIO-OPTIONS...\n\n"
               "Load generator for chatd and Janus TextRoom (same client code for both).\n"
               "Each result is one line of KEY=VALUE pairs on standard output.\n\n"
               "  --target T          chatd (default) or janus\n"
               "  --url URL           chatd: base URL (http://HOST:PORT/);\n"
               "                      janus: the API root (http://HOST:PORT/janus)\n"
               "  --scenario S        connect, fanout, capacity or jwt (default connect)\n"
               "  --room R            chatd room name / TextRoom room id (default bench / 1234)\n"
               "  --peers N           peers (default 10); capacity: the most to try\n"
               "  --concurrency C     setups in flight (default 8)\n"
               "  --senders M         fanout: peers that post (default: all)\n"
               "  --rates R,R,...     fanout: messages/s per sender, one run each (default 1)\n"
               "  --duration S        fanout: seconds of sending per rate (default 10);\n"
               "                      jwt: seconds per operation (default 3)\n"
               "  --step K            capacity: peers added per step (default 100)\n"
               "  --loops L           event-loop threads for the peers (default 2)\n"
               "  --ice-address ADDR  local ICE address (repeatable)\n"
               "  --server-pid PID    report the server's CPU and RSS from /proc\n"
               "  --timeout S         setup limit per peer in seconds (default 20)\n"
               "  --tag TEXT          copied into every result line (no spaces)\n"
               "  -h, --help          this text\n\n"
               "Exit status: 0 when every peer connected, 1 otherwise, 2 on a bad option.\n");
}

int main(int argc, char **argv)
{
    const char *scenario = "connect";
    const char *rates = "1";
    int peers = 10, concurrency = 8, senders = -1, step = 100, n_loops = 2, n_ice = 0;
    double duration = -1;
    B.timeout_s = 20;
    static const struct option opts[] = {{"target", required_argument, 0, 'T'},
                                         {"url", required_argument, 0, 'u'},
                                         {"scenario", required_argument, 0, 's'},
                                         {"room", required_argument, 0, 'r'},
                                         {"peers", required_argument, 0, 'n'},
                                         {"concurrency", required_argument, 0, 'c'},
                                         {"senders", required_argument, 0, 'm'},
                                         {"rates", required_argument, 0, 'R'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"step", required_argument, 0, 'k'},
                                         {"loops", required_argument, 0, 'l'},
                                         {"ice-address", required_argument, 0, 'i'},
                                         {"server-pid", required_argument, 0, 'p'},
                                         {"timeout", required_argument, 0, 't'},
                                         {"tag", required_argument, 0, 'g'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
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
            B.url = optarg;
            break;
        case 's':
            scenario = optarg;
            break;
        case 'r':
            B.room = optarg;
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
        case 'i':
            if (n_ice >= 16) {
                fprintf(stderr, "chat-bench: too many --ice-address\n");
                return 2;
            }
            B.ice[n_ice++] = optarg;
            break;
        case 'p':
            B.server_pid = atoi(optarg);
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
        default:
            usage(stderr);
            return 2;
        }
    }
    int is_jwt = strcmp(scenario, "jwt") == 0;
    if (optind != argc || (!is_jwt && B.url == NULL) || peers < 1 || concurrency < 1 || step < 1 ||
        n_loops < 1 || B.timeout_s < 1 ||
        (strcmp(scenario, "connect") && strcmp(scenario, "fanout") &&
         strcmp(scenario, "capacity") && !is_jwt)) {
        fprintf(stderr, "chat-bench: bad arguments (see --help)\n");
        return 2;
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
    char err[512];
    if (rtc_init(err, sizeof err) < 0) {
        fprintf(stderr, "chat-bench: %s\n", err);
        return 1;
    }
    B.loops = rtc_loops_new(n_loops);
    B.n_peers = peers;
    B.peers = calloc((size_t)peers, sizeof *B.peers);
    for (int i = 0; i < peers; i++)
        B.peers[i].idx = i;
    pthread_t keepalive;
    int have_keepalive = 0;
    if (B.target == TARGET_JANUS)
        have_keepalive = pthread_create(&keepalive, NULL, keepalive_thread, NULL) == 0;

    int status = 0;
    if (strcmp(scenario, "capacity") == 0) {
        run_capacity(peers, step, concurrency);
    } else {
        double secs = connect_range(0, peers, concurrency);
        report_connect("connect", peers, concurrency, secs);
        int ready = count_state(PS_READY, peers);
        status = ready == peers ? 0 : 1;
        if (strcmp(scenario, "fanout") == 0 && ready >= 2) {
            int m = senders < 0 || senders > ready ? ready : senders;
            int phase = 0;
            /* Let the server finish the joins (presence to every peer, log
             * rows) before the first measurement. */
            g_usleep(2 * G_USEC_PER_SEC);
            char *list = strdup(rates), *save = NULL;
            for (char *r = strtok_r(list, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
                double rate = atof(r);
                if (rate > 0)
                    run_fanout(ready, m, rate, duration > 0 ? duration : 10, ++phase);
            }
            free(list);
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
    rtc_loops_free(B.loops);
    rtc_shutdown();
    curl_global_cleanup();
    samples_free(&B.setup_open);
    samples_free(&B.setup_ready);
    samples_free(&B.latency);
    return status;
}
