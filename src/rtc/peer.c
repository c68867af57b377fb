/*
 * peer — see peer.h.
 *
 * Life of a peer, all on its loop thread unless noted:
 *   create (ICE agent, gather host candidates, SDP) -> ICE connected ->
 *   DTLS handshake (fingerprint checked) -> SCTP association (both sides
 *   connect) -> DCEP OPEN/ACK -> on_open -> messages -> teardown -> on_close.
 *
 * Sending may come from any thread: it goes straight into usrsctp, or into
 * the peer's queue when usrsctp's buffer is full; the queue is drained when
 * usrsctp says there is room again (and by a short retry timer, in case that
 * signal is missed).
 *
 * That queue is bounded twice (rtc_set_send_limits): per peer, and for the
 * whole process. A send that would go over either closes the peer, with
 * the reason logged, and fails with ENOBUFS: a reader that does not keep
 * up is cut off, never silently skipped, and never allowed to make chatd
 * hold more than the process budget. Every queued byte is counted in
 * queued_total (an atomic, so no lock is shared between peers).
 *
 * Teardown order matters: SCTP first (after rtc_sctp_close no callback can
 * reach DTLS), then DTLS (nothing writes to ICE after that), then the ICE
 * agent, then on_close, then the registry.
 *
 * Why one file of about 1,100 lines: it is one state machine. The DTLS
 * and SCTP callbacks below all read and write the same peer fields under
 * the same rules (loop thread, send_lock, early_lock), and teardown must
 * see every one of them; split across files, those rules would live in a
 * shared header that every part could break. The ICE half is behind
 * rtc/ice.h, with two implementations (libnice per peer, and the shared
 * one-port socket of rtc/mux.c).
 */
#include "rtc/peer.h"

#include "rtc/dcep.h"
#include "rtc/dtls.h"
#include "rtc/ice.h"
#include "rtc/mux.h"
#include "rtc/sctp.h"
#include "rtc/sdp.h"
#include "util/err.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define LOCAL_SCTP_PORT 5000

typedef enum { ST_CONNECTING, ST_OPEN, ST_CLOSED } peer_state;

typedef struct queued {
    struct queued *next;
    uint32_t ppid;
    size_t len;
    uint8_t data[];
} queued;

struct rtc_peer {
    atomic_int refs;
    char id[33];
    rtc_loop *loop;
    GMainContext *ctx;
    rtc_peer_callbacks cb;
    void *user;
    int offerer;
    int opens_channel; /* sends DATA_CHANNEL_OPEN once SCTP is up */
    rtc_setup setup_pref;
    int dtls_client;
    char **ice_addresses;
    char label[64];
    rtc_transport transport;

    rtc_ice *ice;
    dtls_conn *dtls;
    int dtls_started;
    sdp_description *remote;
    size_t max_recv;
    size_t max_send;

    /* loop thread only */
    peer_state state;
    /* Set while rtc_peer_answer runs: a close then (shutdown's close_all,
     * a setup failure) calls no on_close, since the caller does not have
     * the peer yet and still owns its session; the answer fails instead. */
    int answering;
    int local_client;       /* see rtc_peer_config */
    int channel_stream;     /* -1 until a channel exists */
    int closing_gracefully; /* we reset our stream and sent SCTP SHUTDOWN */
    int reset_confirmed;    /* the remote performed that reset: it has all we sent */
    int in_input;           /* inside rtc_sctp_input: a wake drains right after it */
    rtc_timer dtls_timer;
    rtc_timer setup_timer;
    GSource *retry_timer;

    atomic_int drain_pending;
    atomic_int close_requested;
    /* 1 while this answering peer counts in pending_answers: from creation
     * to channel open or teardown, whichever comes first. */
    atomic_int counts_pending;

    /* send_lock guards these; taken before any SCTP lock */
    pthread_mutex_t send_lock;
    rtc_sctp *sctp;
    int channel_open;
    queued *q_head, *q_tail;
    size_t q_bytes;
    int retry_pending;
    int corked;                   /* in its sending loop's corked list (see cork()) */
    unsigned long oversize_sends; /* frames refused with EMSGSIZE (logged once) */

    /* DTLS datagrams produced before ICE has a selected pair (the server's
     * first flight can be ready before our own check succeeds): kept and
     * sent once ICE connects, instead of being lost until a retransmit. */
    pthread_mutex_t early_lock;
    int ice_connected;
    queued *early_head, *early_tail;
    int early_count;

    char close_reason[128];
};

static dtls_identity *identity;
static atomic_size_t peer_queue_limit = LIMIT_PEER_QUEUE_BYTES;
static atomic_size_t total_queue_limit = LIMIT_QUEUE_TOTAL_BYTES;
static atomic_size_t queued_total; /* every peer's q_bytes, summed */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static GHashTable *registry; /* id -> peer (no reference: removed at teardown) */
static atomic_long live_peers;
static atomic_long pending_answers; /* see rtc_stats */

static void pending_done(rtc_peer *p)
{
    if (atomic_exchange(&p->counts_pending, 0))
        atomic_fetch_sub(&pending_answers, 1);
}

static void flush_corked(void);

/* ---------- process-wide ---------- */

int rtc_init(char *err, size_t errlen)
{
    identity = dtls_identity_new(err, errlen);
    if (identity == NULL)
        return -1;
    pthread_mutex_lock(&registry_lock);
    registry = g_hash_table_new(g_str_hash, g_str_equal);
    pthread_mutex_unlock(&registry_lock);
    rtc_sctp_global_init();
    rtc_mux_set_batch_end(flush_corked);
    return 0;
}

void rtc_shutdown(void)
{
    rtc_sctp_global_finish();
    dtls_identity_free(identity);
    identity = NULL;
    pthread_mutex_lock(&registry_lock);
    if (registry)
        g_hash_table_destroy(registry);
    registry = NULL;
    pthread_mutex_unlock(&registry_lock);
}

void rtc_free(void *p) { mem_free(p); }

void rtc_transport_stop(void) { rtc_mux_stop(); }

/* A client's first MUX offer starts the shared sockets (no server port). */
static int client_transport_ready(rtc_loops *loops, char *err, size_t errlen)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&lock);
    int r = 0;
    if (!rtc_mux_running()) {
        rtc_mux_config mc = {.port = 0};
        r = rtc_mux_start(loops, &mc, err, errlen);
    }
    pthread_mutex_unlock(&lock);
    return r;
}

rtc_stats rtc_get_stats(void)
{
    rtc_mux_stats m = rtc_mux_get_stats();
    return (rtc_stats){.peer_objects = atomic_load(&live_peers),
                       .sctp_associations = rtc_sctp_live_count(),
                       .pending_answers = atomic_load(&pending_answers),
                       .udp_rx = m.rx_datagrams,
                       .udp_tx = m.tx_datagrams,
                       .udp_rx_calls = m.rx_calls,
                       .udp_tx_calls = m.tx_calls,
                       .udp_forwarded = m.forwarded,
                       .consent_expired = m.consent_expired,
                       .dropped_unknown_source = m.drop_unknown_source,
                       .dropped_bad_stun = m.drop_bad_stun,
                       .dropped_unknown_username = m.drop_unknown_username,
                       .dropped_bad_integrity = m.drop_bad_integrity,
                       .dropped_inbox_full = m.drop_inbox_full,
                       .tcp_accepted = m.tcp.accepted,
                       .tcp_open = m.tcp.open,
                       .tcp_strangers = m.tcp.strangers,
                       .tcp_handed_off = m.tcp.handed_off,
                       .tcp_rx_frames = m.tcp.rx_frames,
                       .tcp_tx_frames = m.tcp.tx_frames,
                       .tcp_refused_total = m.tcp.refused_total,
                       .tcp_refused_address = m.tcp.refused_address,
                       .tcp_closed_bad_stun = m.tcp.closed_bad_stun,
                       .tcp_closed_unknown_username = m.tcp.closed_unknown_username,
                       .tcp_closed_bad_integrity = m.tcp.closed_bad_integrity,
                       .tcp_closed_oversize = m.tcp.closed_oversize,
                       .tcp_closed_timeout = m.tcp.closed_timeout,
                       .tcp_closed_write_full = m.tcp.closed_write_full,
                       .tcp_dropped_frames = m.tcp.dropped_frames};
}

/* ---------- references ---------- */

rtc_peer *rtc_peer_ref(rtc_peer *p)
{
    atomic_fetch_add(&p->refs, 1);
    return p;
}

static void free_queue(rtc_peer *p)
{
    for (queued *q = p->q_head, *next; q; q = next) {
        next = q->next;
        mem_free(q);
    }
    p->q_head = p->q_tail = NULL;
    atomic_fetch_sub(&queued_total, p->q_bytes);
    p->q_bytes = 0;
}

void rtc_set_send_limits(size_t per_peer, size_t total)
{
    atomic_store(&peer_queue_limit, per_peer ? per_peer : LIMIT_PEER_QUEUE_BYTES);
    atomic_store(&total_queue_limit, total ? total : LIMIT_QUEUE_TOTAL_BYTES);
}

size_t rtc_queued_total(void) { return atomic_load(&queued_total); }

void rtc_peer_unref(rtc_peer *p)
{
    if (p == NULL || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    pending_done(p); /* a peer freed without a teardown (peer_new failed) */
    free_queue(p);
    for (queued *q = p->early_head, *next; q; q = next) {
        next = q->next;
        mem_free(q);
    }
    pthread_mutex_destroy(&p->send_lock);
    pthread_mutex_destroy(&p->early_lock);
    if (p->ice_addresses)
        g_strfreev(p->ice_addresses);
    mem_free(p->remote);
    mem_free(p);
    atomic_fetch_sub(&live_peers, 1);
}

rtc_peer *rtc_peer_find(const char *id)
{
    pthread_mutex_lock(&registry_lock);
    rtc_peer *p = registry ? g_hash_table_lookup(registry, id) : NULL;
    if (p)
        rtc_peer_ref(p);
    pthread_mutex_unlock(&registry_lock);
    return p;
}

void rtc_peer_close_all(const char *reason)
{
    GPtrArray *all = g_ptr_array_new_with_free_func((GDestroyNotify)rtc_peer_unref);
    pthread_mutex_lock(&registry_lock);
    GHashTableIter it;
    gpointer key, value;
    if (registry) {
        g_hash_table_iter_init(&it, registry);
        while (g_hash_table_iter_next(&it, &key, &value))
            g_ptr_array_add(all, rtc_peer_ref(value));
    }
    pthread_mutex_unlock(&registry_lock);
    for (guint i = 0; i < all->len; i++)
        rtc_peer_close(g_ptr_array_index(all, i), reason);
    g_ptr_array_unref(all);
}

const char *rtc_peer_id(const rtc_peer *p) { return p->id; }
rtc_loop *rtc_peer_loop(const rtc_peer *p) { return p->loop; }
void *rtc_peer_user(const rtc_peer *p) { return p->user; }
size_t rtc_peer_max_send(const rtc_peer *p) { return p->max_send; }

int rtc_peer_is_open(rtc_peer *p)
{
    pthread_mutex_lock(&p->send_lock);
    int open = p->channel_open;
    pthread_mutex_unlock(&p->send_lock);
    return open;
}

size_t rtc_peer_queued_bytes(rtc_peer *p)
{
    pthread_mutex_lock(&p->send_lock);
    size_t n = p->q_bytes;
    pthread_mutex_unlock(&p->send_lock);
    return n;
}

/* ---------- scheduling helpers ---------- */

static void attach(rtc_peer *p, GSource *s, GSourceFunc fn)
{
    g_source_set_callback(s, fn, rtc_peer_ref(p), (GDestroyNotify)rtc_peer_unref);
    g_source_attach(s, p->ctx);
}

static void drop_source(GSource **s)
{
    if (*s) {
        g_source_destroy(*s);
        g_source_unref(*s);
        *s = NULL;
    }
}

/* ---------- teardown ---------- */

static void teardown(rtc_peer *p)
{
    if (p->state == ST_CLOSED)
        return;
    p->state = ST_CLOSED;
    pending_done(p);
    rtc_timer_stop(&p->dtls_timer);
    rtc_timer_stop(&p->setup_timer);
    drop_source(&p->retry_timer);

    pthread_mutex_lock(&p->send_lock);
    rtc_sctp *s = p->sctp;
    p->sctp = NULL;
    p->channel_open = 0;
    free_queue(p);
    pthread_mutex_unlock(&p->send_lock);
    rtc_sctp_close(s);

    if (p->dtls) {
        dtls_conn_shutdown(p->dtls);
        dtls_conn_free(p->dtls);
        p->dtls = NULL;
    }
    /* Nothing sends any more (SCTP and DTLS are gone), so the ICE half
     * goes last. */
    rtc_ice_free(p->ice);
    p->ice = NULL;
    log_debug("rtc", "peer %s closed: %s", p->id, p->close_reason);
    if (p->cb.on_close && !p->answering)
        p->cb.on_close(p, p->close_reason, p->user);

    pthread_mutex_lock(&registry_lock);
    if (registry)
        g_hash_table_remove(registry, p->id);
    pthread_mutex_unlock(&registry_lock);
    rtc_loop_release(p->loop);
    rtc_peer_unref(p); /* the peer's own "alive" reference */
}

static gboolean teardown_cb(gpointer data)
{
    teardown(data);
    return G_SOURCE_REMOVE;
}

void rtc_peer_close(rtc_peer *p, const char *reason)
{
    if (atomic_exchange(&p->close_requested, 1))
        return;
    snprintf(p->close_reason, sizeof p->close_reason, "%s", reason ? reason : "closed");
    GSource *s = g_idle_source_new();
    g_source_set_priority(s, G_PRIORITY_DEFAULT);
    attach(p, s, teardown_cb);
    g_source_unref(s);
}

/* ---------- sending ---------- */

static int send_now(rtc_peer *p, uint32_t ppid, const uint8_t *data, size_t len)
{
    static const uint8_t zero = 0;
    if (len == 0) {
        /* RFC 8831: empty messages are one byte with the "empty" PPID. */
        ppid = ppid == DCEP_PPID_STRING ? DCEP_PPID_STRING_EMPTY : DCEP_PPID_BINARY_EMPTY;
        data = &zero;
        len = 1;
    }
    return rtc_sctp_send(p->sctp, (uint16_t)p->channel_stream, ppid, data, len);
}

static gboolean retry_cb(gpointer data);

/* Called with send_lock held. */
static void arm_retry(rtc_peer *p)
{
    if (p->retry_pending)
        return;
    p->retry_pending = 1;
    GSource *s = g_timeout_source_new(10);
    attach(p, s, retry_cb);
    g_source_unref(s);
}

/* Sends what the queue holds, as far as usrsctp takes it. Any thread.
 * Called with send_lock held. bundle: Nagle on for all but the last
 * message, so usrsctp packs them into as few packets as fit and the last
 * send (Nagle off again) pushes them out together. */
#define BUNDLE_MAX_MESSAGE 1000 /* bytes; below one SCTP packet (1200) */

static void flush_locked(rtc_peer *p, int bundle)
{
    bundle = bundle && p->q_head && p->q_head->next && p->sctp;
    /* Only small messages gain from bundling; a large one fills packets by
     * itself, and Nagle must not hold its tail. */
    for (queued *q = p->q_head; bundle && q; q = q->next)
        if (q->len > BUNDLE_MAX_MESSAGE)
            bundle = 0;
    if (bundle)
        rtc_sctp_set_nodelay(p->sctp, 0);
    while (p->q_head && p->sctp) {
        queued *q = p->q_head;
        if (bundle && q->next == NULL) {
            rtc_sctp_set_nodelay(p->sctp, 1);
            bundle = 0;
        }
        if (send_now(p, q->ppid, q->data, q->len) < 0) {
            if (errno == EWOULDBLOCK || errno == EAGAIN) {
                arm_retry(p);
                break;
            }
            free_queue(p);
            break;
        }
        p->q_head = q->next;
        if (p->q_head == NULL)
            p->q_tail = NULL;
        p->q_bytes -= q->len;
        atomic_fetch_sub(&queued_total, q->len);
        mem_free(q);
    }
    if (bundle && p->sctp) /* stopped early: never leave Nagle on */
        rtc_sctp_set_nodelay(p->sctp, 1);
}

static void flush_queue(rtc_peer *p)
{
    pthread_mutex_lock(&p->send_lock);
    flush_locked(p, 0);
    pthread_mutex_unlock(&p->send_lock);
}

/* Bundling. A loop that is handling a batch of input (rtc_mux_batching)
 * queues what it sends instead of handing each message to usrsctp, and
 * flushes each corked peer once: usrsctp packs the messages of one flush
 * into as few packets as fit (fewer packets, DTLS records, datagrams and
 * SACKs). (Several DTLS records in one datagram, which RFC 6347 allows,
 * would save more; but aiortc 1.4 reads one record per datagram and
 * stalls on the rest, so each record keeps its own datagram.) When is the flush? At the end of the batch while the loop is not
 * busy, so at low load nothing waits longer than it did. A busy loop (more
 * than BUSY_SENDS corked sends in the last BUSY_WINDOW_US, 30,000 a
 * second) holds them HOLD_MS more, the way TCP's autocorking trades a
 * little latency for far fewer packets once the link is full: there a
 * batch carries about one inbound message, so only time makes bundles.
 * Measured on one run (100 peers x 8 msg/s, unpinned): 1.24 datagrams
 * per delivery without the hold, 1.08 with 2 ms. */
#define BUSY_WINDOW_US 10000
#define BUSY_SENDS 300
#define HOLD_MS 2
static _Thread_local rtc_peer **corked_list;
static _Thread_local int corked_n, corked_cap;
static _Thread_local int64_t busy_window_start;
static _Thread_local int busy_window_sends, loop_busy;
static _Thread_local rtc_timer hold_timer;

/* Called with send_lock held. 0, or -1 when the list cannot grow (the
 * caller then sends at once). */
static int cork(rtc_peer *p)
{
    if (p->corked)
        return 0;
    if (corked_n == corked_cap) {
        int cap = corked_cap ? corked_cap * 2 : 256;
        rtc_peer **l = mem_realloc(corked_list, (size_t)cap * sizeof *l);
        if (l == NULL)
            return -1;
        corked_list = l;
        corked_cap = cap;
    }
    p->corked = 1;
    corked_list[corked_n++] = rtc_peer_ref(p);
    return 0;
}

static void flush_corked_now(void)
{
    for (int i = 0; i < corked_n; i++) {
        rtc_peer *p = corked_list[i];
        pthread_mutex_lock(&p->send_lock);
        p->corked = 0;
        flush_locked(p, 1);
        pthread_mutex_unlock(&p->send_lock);
        rtc_peer_unref(p);
    }
    corked_n = 0;
    /* Not kept between batches: a loop thread's list must not outlive it
     * (valgrind), and one allocation per batch is nothing beside its sends. */
    mem_free(corked_list);
    corked_list = NULL;
    corked_cap = 0;
}

static void hold_expired(rtc_timer *t) { rtc_mux_run_batched(t->loop, flush_corked_now); }

/* The end of a batch (rtc/mux.c). */
static void flush_corked(void)
{
    int64_t now = g_get_monotonic_time();
    if (now - busy_window_start > BUSY_WINDOW_US) {
        loop_busy = busy_window_sends > BUSY_SENDS;
        busy_window_start = now;
        busy_window_sends = 0;
    }
    rtc_loop *l = rtc_loop_current();
    if (corked_n == 0 || rtc_timer_armed(&hold_timer))
        return;
    if (!loop_busy || l == NULL || rtc_timer_start(l, &hold_timer, HOLD_MS, hold_expired) < 0)
        flush_corked_now();
}

static gboolean retry_cb(gpointer data)
{
    rtc_peer *p = data;
    pthread_mutex_lock(&p->send_lock);
    p->retry_pending = 0;
    pthread_mutex_unlock(&p->send_lock);
    if (p->state != ST_CLOSED)
        flush_queue(p);
    return G_SOURCE_REMOVE;
}

/* Called with send_lock held: may len more bytes be queued for p? If not,
 * `reason` says why (the caller closes the peer once the lock is released)
 * and errno is ENOBUFS. The process budget is reserved here; the caller
 * gives it back if it cannot queue after all. */
static int queue_admit(rtc_peer *p, size_t len, char *reason, size_t reasonlen)
{
    size_t per_peer = atomic_load(&peer_queue_limit);
    size_t total = atomic_load(&total_queue_limit);
    if (p->q_bytes + len > per_peer) {
        snprintf(reason, reasonlen,
                 "too slow to keep up: %zu bytes unsent, over the %zu-byte queue limit",
                 p->q_bytes + len, per_peer);
    } else if (atomic_fetch_add(&queued_total, len) + len > total) {
        atomic_fetch_sub(&queued_total, len);
        snprintf(reason, reasonlen,
                 "too slow to keep up: chatd's %zu-byte budget for unsent data is spent", total);
    } else {
        return 1;
    }
    errno = ENOBUFS;
    return 0;
}

static int peer_send(rtc_peer *p, uint32_t ppid, const uint8_t *data, size_t len)
{
    if (len > p->max_send) {
        /* The caller decides what the remote is told (chat: an error that
         * fits); the transport logs the first such frame of each peer, so a
         * remote that declares a tiny max-message-size cannot flood the log. */
        pthread_mutex_lock(&p->send_lock);
        unsigned long n = p->oversize_sends++;
        pthread_mutex_unlock(&p->send_lock);
        if (n == 0)
            log_warn("rtc",
                     "peer %s: a %zu-byte message is over the remote's %zu-byte "
                     "max-message-size; not sent",
                     p->id, len, p->max_send);
        errno = EMSGSIZE;
        return -1;
    }
    int r = 0;
    char reason[128] = "";
    int batching = rtc_mux_batching();
    pthread_mutex_lock(&p->send_lock);
    if (!p->channel_open || p->sctp == NULL || atomic_load(&p->close_requested)) {
        errno = ENOTCONN;
        r = -1;
    } else if (!batching && p->q_head == NULL && send_now(p, ppid, data, len) == 0) {
        r = 0;
    } else if (!batching && p->q_head == NULL && errno != EWOULDBLOCK && errno != EAGAIN) {
        r = -1;
    } else if (!queue_admit(p, len, reason, sizeof reason)) {
        r = -1;
    } else {
        queued *q = mem_alloc(sizeof *q + len);
        if (q == NULL) {
            atomic_fetch_sub(&queued_total, len);
            errno = ENOMEM;
            r = -1;
        } else {
            q->next = NULL;
            q->ppid = ppid;
            q->len = len;
            memcpy(q->data, data, len);
            if (p->q_tail)
                p->q_tail->next = q;
            else
                p->q_head = q;
            p->q_tail = q;
            p->q_bytes += len;
            if (!batching || cork(p) < 0)
                arm_retry(p);
            else
                busy_window_sends++;
        }
    }
    pthread_mutex_unlock(&p->send_lock);
    if (reason[0] != '\0' && !atomic_load(&p->close_requested)) {
        log_warn("rtc", "peer %s: closing: %s", p->id, reason);
        rtc_peer_close(p, reason);
        errno = ENOBUFS; /* log_warn may have changed it */
    }
    return r;
}

int rtc_peer_send_text(rtc_peer *p, const char *text, size_t len)
{
    return peer_send(p, DCEP_PPID_STRING, (const uint8_t *)text, len);
}

/* ---------- graceful close ---------- */

static gboolean graceful_cb(gpointer data)
{
    rtc_peer *p = data;
    if (p->state == ST_CLOSED)
        return G_SOURCE_REMOVE;
    if (rtc_peer_queued_bytes(p) > 0)
        return G_SOURCE_CONTINUE; /* poll until our own queue is in usrsctp */
    pthread_mutex_lock(&p->send_lock);
    rtc_sctp *s = p->sctp;
    if (s && p->channel_stream >= 0)
        rtc_sctp_reset_stream(s, (uint16_t)p->channel_stream);
    int ok = s && rtc_sctp_shutdown(s) == 0;
    p->channel_open = 0;
    p->closing_gracefully = ok;
    pthread_mutex_unlock(&p->send_lock);
    if (!ok)
        rtc_peer_close(p, "closed");
    /* else SCTP SHUTDOWN-COMPLETE arrives -> on_close("closed") */
    return G_SOURCE_REMOVE;
}

void rtc_peer_close_gracefully(rtc_peer *p)
{
    GSource *s = g_timeout_source_new(5);
    attach(p, s, graceful_cb);
    g_source_unref(s);
}

/* ---------- SCTP callbacks ---------- */

static void sctp_output(void *arg, const uint8_t *packet, size_t len)
{
    rtc_peer *p = arg;
    if (p->dtls)
        dtls_conn_write(p->dtls, packet, len);
}

static gboolean drain_cb(gpointer data)
{
    rtc_peer *p = data;
    atomic_store(&p->drain_pending, 0);
    if (p->state != ST_CLOSED && p->sctp)
        rtc_sctp_drain(p->sctp);
    return G_SOURCE_REMOVE;
}

static void sctp_wake(void *arg)
{
    rtc_peer *p = arg;
    if (p->in_input && rtc_loop_current() == p->loop) {
        /* Woken from inside our own rtc_sctp_input: dtls_data drains right
         * after it returns (usrsctp locks are still held here). */
        int none = 0;
        atomic_compare_exchange_strong(&p->drain_pending, &none, 2);
        return;
    }
    if (atomic_exchange(&p->drain_pending, 1))
        return;
    GSource *s = g_idle_source_new();
    g_source_set_priority(s, G_PRIORITY_DEFAULT);
    attach(p, s, drain_cb);
    g_source_unref(s);
}

static void channel_opened(rtc_peer *p)
{
    pthread_mutex_lock(&p->send_lock);
    p->channel_open = 1;
    pthread_mutex_unlock(&p->send_lock);
    p->state = ST_OPEN;
    pending_done(p);
    rtc_timer_stop(&p->setup_timer);
    /* The remote description (about 9 KiB, mostly candidate lines) was
     * needed for ICE, DTLS and SCTP setup only; an idle open peer should
     * not carry it. */
    mem_free(p->remote);
    p->remote = NULL;
    log_debug("rtc", "peer %s: channel open on stream %d", p->id, p->channel_stream);
    if (p->cb.on_open)
        p->cb.on_open(p, p->user);
}

static void sctp_connected(void *arg)
{
    rtc_peer *p = arg;
    if (!p->opens_channel || p->channel_stream >= 0)
        return;
    /* RFC 8832 §6: the DTLS client uses even stream ids, the server odd. */
    p->channel_stream = p->dtls_client ? 0 : 1;
    uint8_t buf[128];
    int n = dcep_write_open(buf, sizeof buf, DCEP_CHANNEL_RELIABLE, 0, 0, p->label, "");
    pthread_mutex_lock(&p->send_lock);
    int r = n > 0 ? rtc_sctp_send(p->sctp, (uint16_t)p->channel_stream, DCEP_PPID_CONTROL, buf,
                                  (size_t)n)
                  : -1;
    pthread_mutex_unlock(&p->send_lock);
    if (r < 0)
        rtc_peer_close(p, "could not send DATA_CHANNEL_OPEN");
}

static void handle_dcep(rtc_peer *p, uint16_t stream, const uint8_t *data, size_t len)
{
    dcep_message m;
    char err[128];
    if (dcep_parse(data, len, &m, err, sizeof err) < 0) {
        log_warn("rtc", "peer %s: bad DCEP message: %s", p->id, err);
        return;
    }
    if (m.type == DCEP_MSG_OPEN) {
        uint8_t ack[1];
        dcep_write_ack(ack, sizeof ack);
        pthread_mutex_lock(&p->send_lock);
        rtc_sctp_send(p->sctp, stream, DCEP_PPID_CONTROL, ack, 1);
        pthread_mutex_unlock(&p->send_lock);
        if (p->channel_stream >= 0) {
            log_debug("rtc", "peer %s: extra channel on stream %u ignored", p->id, stream);
            return;
        }
        p->channel_stream = stream;
        channel_opened(p);
    } else if (m.type == DCEP_MSG_ACK && p->opens_channel && stream == p->channel_stream &&
               p->state == ST_CONNECTING) {
        channel_opened(p);
    }
}

static void sctp_message(void *arg, uint16_t stream, uint32_t ppid, const uint8_t *data, size_t len)
{
    rtc_peer *p = arg;
    if (ppid == DCEP_PPID_CONTROL) {
        handle_dcep(p, stream, data, len);
        return;
    }
    if (p->state != ST_OPEN || stream != p->channel_stream || p->cb.on_message == NULL)
        return;
    switch (ppid) {
    case DCEP_PPID_STRING:
        p->cb.on_message(p, data, len, 0, p->user);
        break;
    case DCEP_PPID_BINARY:
        p->cb.on_message(p, data, len, 1, p->user);
        break;
    case DCEP_PPID_STRING_EMPTY:
        p->cb.on_message(p, (const uint8_t *)"", 0, 0, p->user);
        break;
    case DCEP_PPID_BINARY_EMPTY:
        p->cb.on_message(p, (const uint8_t *)"", 0, 1, p->user);
        break;
    default:
        log_debug("rtc", "peer %s: message with PPID %u ignored", p->id, ppid);
    }
}

static void sctp_oversize(void *arg, uint16_t stream, size_t len)
{
    rtc_peer *p = arg;
    log_warn("rtc", "peer %s: dropped a %zu-byte message over the %zu-byte limit", p->id, len,
             p->max_recv);
    if (p->state == ST_OPEN && stream == p->channel_stream && p->cb.on_oversize)
        p->cb.on_oversize(p, len, p->user);
}

static void sctp_stream_reset(void *arg, uint16_t stream)
{
    rtc_peer *p = arg;
    if ((int)stream != p->channel_stream)
        return;
    /* RFC 8831 §6.7: answer a reset of their stream with a reset of ours. */
    pthread_mutex_lock(&p->send_lock);
    if (p->sctp && p->channel_open)
        rtc_sctp_reset_stream(p->sctp, stream);
    p->channel_open = 0;
    pthread_mutex_unlock(&p->send_lock);
    rtc_peer_close(p, "closed");
}

static void sctp_writable(void *arg) { flush_queue(arg); }

static void sctp_reset_done(void *arg, uint16_t stream)
{
    rtc_peer *p = arg;
    if ((int)stream == p->channel_stream)
        p->reset_confirmed = 1;
}

static void sctp_closed(void *arg, const char *reason)
{
    rtc_peer *p = arg;
    /* Closing gracefully, the remote confirmed our stream reset, so it has
     * everything we sent; it may then end the association with an ABORT
     * before our SHUTDOWN handshake completes (chatd tears a peer down when
     * its channel is reset; browsers abort on close). The close was clean. */
    if (p->closing_gracefully && p->reset_confirmed)
        reason = "closed";
    rtc_peer_close(p, reason);
}

static const rtc_sctp_callbacks sctp_callbacks = {
    .output = sctp_output,
    .wake = sctp_wake,
    .connected = sctp_connected,
    .message = sctp_message,
    .oversize = sctp_oversize,
    .stream_reset = sctp_stream_reset,
    .reset_done = sctp_reset_done,
    .writable = sctp_writable,
    .closed = sctp_closed,
};

/* ---------- DTLS callbacks ---------- */

static void dtls_send(void *arg, const uint8_t *data, size_t len)
{
    rtc_peer *p = arg;
    pthread_mutex_lock(&p->early_lock);
    if (!p->ice_connected) {
        queued *q = p->early_count < 32 ? mem_alloc(sizeof *q + len) : NULL;
        if (q) {
            q->next = NULL;
            q->len = len;
            memcpy(q->data, data, len);
            if (p->early_tail)
                p->early_tail->next = q;
            else
                p->early_head = q;
            p->early_tail = q;
            p->early_count++;
        }
        pthread_mutex_unlock(&p->early_lock);
        return;
    }
    pthread_mutex_unlock(&p->early_lock);
    if (p->ice)
        rtc_ice_send(p->ice, data, len);
}

/* Loop thread: ICE has a pair now; send what DTLS wrote before. */
static void flush_early(rtc_peer *p)
{
    pthread_mutex_lock(&p->early_lock);
    p->ice_connected = 1;
    queued *q = p->early_head;
    p->early_head = p->early_tail = NULL;
    p->early_count = 0;
    pthread_mutex_unlock(&p->early_lock);
    while (q) {
        queued *next = q->next;
        if (p->ice)
            rtc_ice_send(p->ice, q->data, q->len);
        mem_free(q);
        q = next;
    }
}

static void dtls_connected(void *arg)
{
    rtc_peer *p = arg;
    char err[256];
    log_debug("rtc", "peer %s: DTLS connected (%s)", p->id, p->dtls_client ? "client" : "server");
    rtc_sctp *s = rtc_sctp_new(LOCAL_SCTP_PORT, p->remote->sctp_port, p->max_recv, &sctp_callbacks,
                               p, err, sizeof err);
    if (s == NULL) {
        rtc_peer_close(p, err);
        return;
    }
    pthread_mutex_lock(&p->send_lock);
    p->sctp = s;
    pthread_mutex_unlock(&p->send_lock);
}

static void dtls_data(void *arg, const uint8_t *data, size_t len)
{
    rtc_peer *p = arg;
    if (p->sctp == NULL)
        return;
    p->in_input = 1;
    rtc_sctp_input(p->sctp, data, len);
    p->in_input = 0;
    /* usrsctp woke us from inside that input (see sctp_wake): drain now,
     * without a trip through the loop. */
    int inline_drain = 2;
    if (atomic_compare_exchange_strong(&p->drain_pending, &inline_drain, 0) && p->sctp &&
        p->state != ST_CLOSED)
        rtc_sctp_drain(p->sctp);
}

static void dtls_failed(void *arg, const char *why)
{
    rtc_peer *p = arg;
    log_warn("rtc", "peer %s: %s", p->id, why);
    rtc_peer_close(p, why);
}

static void dtls_closed(void *arg) { rtc_peer_close(arg, "closed"); }

static const dtls_callbacks dtls_cbs = {
    .send = dtls_send,
    .connected = dtls_connected,
    .data = dtls_data,
    .failed = dtls_failed,
    .closed = dtls_closed,
};

#define PEER_OF(t, field) ((rtc_peer *)((char *)(t)-offsetof(rtc_peer, field)))

static void dtls_timer_cb(rtc_timer *t);

/* Re-arms the DTLS retransmission timer from OpenSSL's own deadline. */
static void arm_dtls_timer(rtc_peer *p)
{
    if (p->dtls == NULL || p->state == ST_CLOSED) {
        rtc_timer_stop(&p->dtls_timer);
        return;
    }
    int ms = dtls_conn_timeout_ms(p->dtls);
    if (ms < 0) {
        rtc_timer_stop(&p->dtls_timer);
        return;
    }
    rtc_timer_start(p->loop, &p->dtls_timer, ms > 0 ? ms : 1, dtls_timer_cb);
}

static void dtls_timer_cb(rtc_timer *t)
{
    rtc_peer *p = PEER_OF(t, dtls_timer);
    if (p->dtls && p->state != ST_CLOSED) {
        if (!dtls_conn_is_connected(p->dtls))
            log_debug("rtc", "peer %s: DTLS handshake timer (retransmission)", p->id);
        dtls_conn_handle_timeout(p->dtls);
        arm_dtls_timer(p);
    }
}

/* ---------- ICE ---------- */

static void ice_input(void *arg, const uint8_t *data, size_t len)
{
    rtc_peer *p = arg;
    /* RFC 7983: 20..63 is DTLS. */
    if (len == 0 || p->dtls == NULL || p->state == ST_CLOSED)
        return;
    if (data[0] < 20 || data[0] > 63)
        return;
    dtls_conn_input(p->dtls, data, len);
    if (!dtls_conn_is_connected(p->dtls) || rtc_timer_armed(&p->dtls_timer))
        arm_dtls_timer(p);
}

static void start_dtls_if_ready(rtc_peer *p)
{
    if (p->dtls_client && !p->dtls_started && p->dtls) {
        p->dtls_started = 1;
        log_debug("rtc", "peer %s: DTLS handshake started (client)", p->id);
        dtls_conn_start(p->dtls);
        arm_dtls_timer(p);
    }
}

static void ice_connected(void *arg)
{
    rtc_peer *p = arg;
    if (p->state == ST_CLOSED)
        return;
    flush_early(p);
    start_dtls_if_ready(p);
}

static void ice_failed(void *arg, const char *why)
{
    rtc_peer *p = arg;
    if (p->state != ST_CLOSED)
        rtc_peer_close(p, why);
}

static const rtc_ice_callbacks ice_cbs = {
    .connected = ice_connected,
    .failed = ice_failed,
    .input = ice_input,
};

static void setup_timeout_cb(rtc_timer *t)
{
    rtc_peer *p = PEER_OF(t, setup_timer);
    if (p->state == ST_CONNECTING)
        rtc_peer_close(p, "connection setup timed out");
}

typedef struct {
    rtc_peer *p;
    sdp_description *local; /* out */
    int timeout_ms;
    int ok;
    char err[256];
} ice_job;

/* Loop thread: the ICE half, its credentials and candidates. */
static void ice_setup(void *arg)
{
    ice_job *job = arg;
    rtc_peer *p = job->p;
    rtc_ice_config icfg = {.loop = p->loop,
                           .controlling = p->offerer,
                           .local_client = p->local_client,
                           .ice_addresses = (const char *const *)p->ice_addresses,
                           .peer_id = p->id,
                           .cb = &ice_cbs,
                           .arg = p};
    p->ice = rtc_ice_new(p->transport, &icfg, job->local, job->err, sizeof job->err);
    if (p->ice == NULL)
        return;
    if (rtc_timer_start(p->loop, &p->setup_timer, job->timeout_ms, setup_timeout_cb) < 0) {
        err_set(job->err, sizeof job->err, "out of memory");
        return;
    }
    job->ok = 1;
}

/* Loop thread: remote credentials and candidates, DTLS object. */
static void ice_remote(void *arg)
{
    ice_job *job = arg;
    rtc_peer *p = job->p;
    if (rtc_ice_set_remote(p->ice, p->remote, job->err, sizeof job->err) < 0)
        return;
    p->dtls = dtls_conn_new(identity, p->dtls_client, p->remote->fingerprint_alg,
                            p->remote->fingerprint, p->remote->fingerprint_len, &dtls_cbs, p);
    if (p->dtls == NULL) {
        err_set(job->err, sizeof job->err, "cannot create the DTLS connection");
        return;
    }
    /* ICE may already be connected (the answer came late): start now. */
    if (rtc_ice_is_connected(p->ice)) {
        flush_early(p);
        start_dtls_if_ready(p);
    }
    job->ok = 1;
}

/* Loop thread: the answer is ready; from now on a close reaches on_close.
 * Fails when the peer was closed while it was being answered. */
static void finish_answer(void *arg)
{
    ice_job *job = arg;
    rtc_peer *p = job->p;
    if (p->state == ST_CLOSED) {
        err_set(job->err, sizeof job->err, "closed while answering: %s", p->close_reason);
        return;
    }
    p->answering = 0;
    job->ok = 1;
}

static void abort_setup(void *arg)
{
    rtc_peer *p = arg;
    /* The caller never got this peer: no on_close for it. */
    p->cb.on_close = NULL;
    snprintf(p->close_reason, sizeof p->close_reason, "setup failed");
    atomic_store(&p->close_requested, 1);
    teardown(p);
}

static rtc_peer *peer_new(const rtc_peer_config *cfg, int offerer, char *err, size_t errlen)
{
    rtc_peer *p = mem_calloc(1, sizeof *p);
    if (p == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    atomic_fetch_add(&live_peers, 1);
    atomic_init(&p->refs, 1);
    pthread_mutex_init(&p->send_lock, NULL);
    pthread_mutex_init(&p->early_lock, NULL);
    uint8_t rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        err_set(err, errlen, "no randomness for the peer id");
        rtc_peer_unref(p);
        return NULL;
    }
    for (int i = 0; i < 16; i++)
        snprintf(p->id + 2 * i, 3, "%02x", rnd[i]);
    p->loop = rtc_loops_pick(cfg->loops);
    p->ctx = rtc_loop_context(p->loop);
    p->cb = *cfg->cb;
    p->user = cfg->user;
    p->offerer = offerer;
    p->transport = cfg->transport;
    p->answering = !offerer; /* before the registry makes the peer visible */
    if (!offerer) {
        atomic_init(&p->counts_pending, 1);
        atomic_fetch_add(&pending_answers, 1);
    }
    p->local_client = cfg->local_client;
    p->opens_channel = offerer || cfg->answerer_opens_channel;
    p->setup_pref = cfg->setup;
    p->channel_stream = -1;
    p->max_recv = cfg->max_message_size ? cfg->max_message_size : LIMIT_MESSAGE_BYTES;
    p->max_send = LIMIT_MESSAGE_BYTES;
    snprintf(p->label, sizeof p->label, "%s", cfg->label ? cfg->label : "chat");
    if (cfg->ice_addresses) {
        size_t n = 0;
        while (cfg->ice_addresses[n])
            n++;
        p->ice_addresses = g_new0(char *, n + 1);
        for (size_t i = 0; i < n; i++)
            p->ice_addresses[i] = g_strdup(cfg->ice_addresses[i]);
    }
    p->remote = mem_calloc(1, sizeof *p->remote);
    if (p->remote == NULL) {
        err_set(err, errlen, "out of memory");
        rtc_loop_release(p->loop);
        rtc_peer_unref(p);
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    g_hash_table_insert(registry, p->id, p);
    pthread_mutex_unlock(&registry_lock);
    return p;
}

/* Writes the local description; returns a mem_alloc'd string. */
static char *write_local(rtc_peer *p, sdp_description *local)
{
    memcpy(local->fingerprint, dtls_identity_fingerprint(identity), 32);
    local->fingerprint_len = 32;
    strcpy(local->fingerprint_alg, "sha-256");
    local->sctp_port = LOCAL_SCTP_PORT;
    local->max_message_size = (uint32_t)p->max_recv;
    uint64_t sid;
    RAND_bytes((unsigned char *)&sid, sizeof sid);
    local->session_id = sid & 0x7fffffffffffffffULL;
    size_t cap = 4096 + local->n_candidates * (SDP_MAX_CANDIDATE_LEN + 8);
    char *buf = mem_alloc(cap);
    if (buf && sdp_write(local, buf, cap) < 0) {
        mem_free(buf);
        buf = NULL;
    }
    return buf;
}

static void adopt_remote_limits(rtc_peer *p)
{
    uint32_t remote_max = p->remote->max_message_size;
    /* RFC 8841 §6: absent means 64 KiB; 0 means "no limit" - keep ours. */
    p->max_send = remote_max ? remote_max : LIMIT_MESSAGE_BYTES;
    if (p->max_send > LIMIT_MESSAGE_BYTES * 4)
        p->max_send = LIMIT_MESSAGE_BYTES * 4;
}

rtc_answer_status rtc_peer_answer(const rtc_peer_config *cfg, const char *offer, size_t len,
                                  rtc_peer **out, char **answer, char *err, size_t errlen)
{
    *out = NULL;
    *answer = NULL;
    sdp_description *local = mem_calloc(1, sizeof *local);
    if (local == NULL) {
        err_set(err, errlen, "out of memory");
        return RTC_ANSWER_FAILED;
    }
    /* The offer is parsed into `local` first (reused for our side below):
     * a bad offer costs no peer, no loop hop and no registry entry. */
    if (sdp_parse(offer, len, local, err, errlen) < 0) {
        mem_free(local);
        return RTC_ANSWER_BAD_OFFER;
    }
    rtc_peer *p = peer_new(cfg, 0, err, errlen);
    if (p == NULL) {
        mem_free(local);
        return RTC_ANSWER_FAILED;
    }
    memcpy(p->remote, local, sizeof *local);
    memset(local, 0, sizeof *local);
    adopt_remote_limits(p);
    /* Our role follows the offer's a=setup (RFC 8842 §5.2). */
    switch (p->remote->setup) {
    case SDP_SETUP_ACTIVE:
        p->dtls_client = 0;
        local->setup = SDP_SETUP_PASSIVE;
        break;
    case SDP_SETUP_PASSIVE:
        p->dtls_client = 1;
        local->setup = SDP_SETUP_ACTIVE;
        break;
    default:
        p->dtls_client = cfg->setup != RTC_SETUP_PASSIVE;
        local->setup = p->dtls_client ? SDP_SETUP_ACTIVE : SDP_SETUP_PASSIVE;
    }
    local->dialect = p->remote->dialect;
    strcpy(local->mid, p->remote->mid);

    ice_job job = {.p = p,
                   .local = local,
                   .timeout_ms =
                       cfg->setup_timeout_ms > 0 ? cfg->setup_timeout_ms : RTC_SETUP_TIMEOUT_MS};
    rtc_loop_run_sync(p->loop, ice_setup, &job);
    if (job.ok == 1) {
        job.ok = 0;
        rtc_loop_run_sync(p->loop, ice_remote, &job);
    }
    char *sdp = job.ok == 1 ? write_local(p, local) : NULL;
    mem_free(local);
    if (sdp != NULL) {
        job.ok = 0;
        rtc_loop_run_sync(p->loop, finish_answer, &job);
    }
    if (sdp == NULL || job.ok != 1) {
        err_set(err, errlen, "%s", job.err[0] ? job.err : "cannot write the answer");
        rtc_loop_run_sync(p->loop, abort_setup, p);
        mem_free(sdp);
        return RTC_ANSWER_FAILED;
    }
    *out = rtc_peer_ref(p);
    *answer = sdp;
    return RTC_ANSWER_OK;
}

rtc_answer_status rtc_offer_check(const char *offer, size_t len, char *err, size_t errlen)
{
    sdp_description *d = mem_alloc(sizeof *d);
    if (d == NULL) {
        err_set(err, errlen, "out of memory");
        return RTC_ANSWER_FAILED;
    }
    int r = sdp_parse(offer, len, d, err, errlen);
    mem_free(d);
    return r < 0 ? RTC_ANSWER_BAD_OFFER : RTC_ANSWER_OK;
}

int rtc_peer_offer(const rtc_peer_config *cfg, rtc_peer **out, char **offer, char *err,
                   size_t errlen)
{
    *out = NULL;
    *offer = NULL;
    if (cfg->transport == RTC_TRANSPORT_MUX && client_transport_ready(cfg->loops, err, errlen) < 0)
        return -1;
    sdp_description *local = mem_calloc(1, sizeof *local);
    if (local == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    rtc_peer *p = peer_new(cfg, 1, err, errlen);
    if (p == NULL) {
        mem_free(local);
        return -1;
    }
    local->setup = cfg->setup == RTC_SETUP_ACTIVE    ? SDP_SETUP_ACTIVE
                   : cfg->setup == RTC_SETUP_PASSIVE ? SDP_SETUP_PASSIVE
                                                     : SDP_SETUP_ACTPASS;
    local->dialect = SDP_DIALECT_MODERN;
    strcpy(local->mid, "0");
    ice_job job = {.p = p,
                   .local = local,
                   .timeout_ms =
                       cfg->setup_timeout_ms > 0 ? cfg->setup_timeout_ms : RTC_SETUP_TIMEOUT_MS};
    rtc_loop_run_sync(p->loop, ice_setup, &job);
    char *sdp = job.ok == 1 ? write_local(p, local) : NULL;
    mem_free(local);
    if (sdp == NULL) {
        err_set(err, errlen, "%s", job.err[0] ? job.err : "cannot write the offer");
        rtc_loop_run_sync(p->loop, abort_setup, p);
        return -1;
    }
    *out = rtc_peer_ref(p);
    *offer = sdp;
    return 0;
}

int rtc_peer_set_answer(rtc_peer *p, const char *answer, size_t len, char *err, size_t errlen)
{
    if (sdp_parse(answer, len, p->remote, err, errlen) < 0)
        return -1;
    adopt_remote_limits(p);
    switch (p->remote->setup) {
    case SDP_SETUP_PASSIVE:
        p->dtls_client = 1;
        break;
    case SDP_SETUP_ACTIVE:
    case SDP_SETUP_NONE: /* RFC 8842: an answer without a=setup means active */
        p->dtls_client = 0;
        break;
    default:
        err_set(err, errlen, "the answer must not say a=setup:actpass");
        return -1;
    }
    if ((p->setup_pref == RTC_SETUP_ACTIVE && !p->dtls_client) ||
        (p->setup_pref == RTC_SETUP_PASSIVE && p->dtls_client)) {
        err_set(err, errlen, "the answer's a=setup contradicts the offer");
        return -1;
    }
    ice_job job = {.p = p};
    rtc_loop_run_sync(p->loop, ice_remote, &job);
    if (!job.ok) {
        err_set(err, errlen, "%s", job.err);
        return -1;
    }
    return 0;
}
