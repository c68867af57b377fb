/*
 * sctp — see sctp.h.
 *
 * Lock order, outermost first: s->sock_lock (socket lifetime, held while
 * calling usrsctp_sendv/close) -> usrsctp's internal locks -> s->cb_lock
 * (held while calling output/wake) -> whatever output takes (DTLS, ICE).
 * Nothing ever takes them in the other order, and no usrsctp call is made
 * with cb_lock held.
 */
#include "rtc/sctp.h"

#include "util/err.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <usrsctp.h>

#define SCTP_STREAMS 16           /* each costs per-association memory; one channel needs one */
#define SCTP_BUFFER (1024 * 1024) /* socket send/receive buffers */
/* Bytes taken per usrsctp_recvv: a whole message of the default size in one
 * read; a larger one arrives in several and is reassembled in s->msg. */
#define SCTP_READ_CHUNK LIMIT_MESSAGE_BYTES

struct rtc_sctp {
    atomic_int refs;
    uintptr_t id; /* usrsctp's sconn_addr: never a pointer, so a stale one is harmless */
    pthread_mutex_t sock_lock;
    struct socket *sock;
    pthread_mutex_t cb_lock;
    int closed;
    rtc_sctp_callbacks cb;
    void *arg;
    size_t max_message;
    uint8_t *msg; /* reassembly of a message delivered in pieces */
    size_t msg_len;
    int msg_oversize;
    size_t msg_dropped;
    int ended;            /* `closed` callback already delivered */
    atomic_int all_acked; /* we sent SHUTDOWN or SHUTDOWN ACK (see carries_shutdown) */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static GHashTable *registry; /* id -> rtc_sctp* (holding a reference) */
static uintptr_t next_id = 1;
static atomic_long live_count;

static void sctp_unref(rtc_sctp *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&s->sock_lock);
    pthread_mutex_destroy(&s->cb_lock);
    mem_free(s->msg);
    mem_free(s);
    atomic_fetch_sub(&live_count, 1);
}

static rtc_sctp *registry_get(uintptr_t id)
{
    pthread_mutex_lock(&registry_lock);
    rtc_sctp *s = registry ? g_hash_table_lookup(registry, (gpointer)id) : NULL;
    if (s)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&registry_lock);
    return s;
}

/* Whether an outgoing SCTP packet holds a SHUTDOWN or SHUTDOWN ACK chunk.
 * An endpoint sends either only once the remote has acknowledged all the
 * data it sent (RFC 4960 §9.2), which usrsctp does not report otherwise. */
static int carries_shutdown(const uint8_t *packet, size_t len)
{
    enum { COMMON_HEADER = 12, CHUNK_SHUTDOWN = 7, CHUNK_SHUTDOWN_ACK = 8 };
    size_t off = COMMON_HEADER;
    while (off + 4 <= len) {
        uint8_t type = packet[off];
        size_t chunk_len = ((size_t)packet[off + 2] << 8) | packet[off + 3];
        if (type == CHUNK_SHUTDOWN || type == CHUNK_SHUTDOWN_ACK)
            return 1;
        if (chunk_len < 4)
            return 0;
        off += (chunk_len + 3) & ~(size_t)3; /* chunks are padded to 4 bytes */
    }
    return 0;
}

/* usrsctp: a packet for association `addr` is ready. */
static int conn_output(void *addr, void *buf, size_t len, uint8_t tos, uint8_t set_df)
{
    (void)tos, (void)set_df;
    rtc_sctp *s = registry_get((uintptr_t)addr);
    if (s == NULL)
        return 0; /* association already gone: drop, as a lost packet */
    if (carries_shutdown(buf, len))
        atomic_store(&s->all_acked, 1);
    pthread_mutex_lock(&s->cb_lock);
    if (!s->closed)
        s->cb.output(s->arg, buf, len);
    pthread_mutex_unlock(&s->cb_lock);
    sctp_unref(s);
    return 0;
}

static void upcall(struct socket *sock, void *arg, int flags)
{
    (void)sock, (void)flags;
    rtc_sctp *s = registry_get((uintptr_t)arg);
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->cb_lock);
    if (!s->closed)
        s->cb.wake(s->arg);
    pthread_mutex_unlock(&s->cb_lock);
    sctp_unref(s);
}

static void debug_printf(const char *format, ...) { (void)format; }

/* usrsctp's timers. Its own timer thread ticks every 10 ms and walks every
 * pending callout on each tick (every endpoint has at least one, its
 * cookie-secret timer): with 5,000 idle peers that walk was three quarters
 * of chatd's idle CPU. chatd starts usrsctp without threads and drives the
 * timers itself every TIMER_TICK_MS, a fifth as often; SCTP's own timers
 * (RTO at least 1 s, delayed SACK) need nothing finer. */
#define TIMER_TICK_MS 50
static pthread_t timer_thread;
static atomic_int timer_running;
static int timer_started;
/* Held around each tick and each usrsctp_finish attempt: a finish that
 * succeeds frees what a tick walks. */
static pthread_mutex_t timer_lock = PTHREAD_MUTEX_INITIALIZER;

static void *timer_main(void *arg)
{
    (void)arg;
    int64_t last = g_get_monotonic_time();
    while (atomic_load(&timer_running)) {
        g_usleep(TIMER_TICK_MS * 1000);
        int64_t now = g_get_monotonic_time();
        pthread_mutex_lock(&timer_lock);
        if (atomic_load(&timer_running))
            usrsctp_handle_timers((uint32_t)((now - last) / 1000));
        pthread_mutex_unlock(&timer_lock);
        last += (now - last) / 1000 * 1000;
    }
    return NULL;
}

int rtc_sctp_global_init(void)
{
    pthread_mutex_lock(&registry_lock);
    registry = g_hash_table_new(g_direct_hash, g_direct_equal);
    pthread_mutex_unlock(&registry_lock);
    usrsctp_init_nothreads(0, conn_output, debug_printf);
    atomic_store(&timer_running, 1);
    if (pthread_create(&timer_thread, NULL, timer_main, NULL) != 0) {
        atomic_store(&timer_running, 0);
        return -1;
    }
    timer_started = 1;
    usrsctp_sysctl_set_sctp_ecn_enable(0);
    /* Fewer retransmissions before giving up than the kernel default: ICE
     * consent and DTLS already watch the path. */
    usrsctp_sysctl_set_sctp_init_rtx_max_default(5);
    usrsctp_sysctl_set_sctp_delayed_sack_time_default(20);
    return 0;
}

void rtc_sctp_global_finish(void)
{
    /* usrsctp_finish fails while associations linger in TIME_WAIT-like
     * states; give it a moment, as its documentation suggests. */
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&timer_lock);
        int done = usrsctp_finish() == 0;
        if (done)
            atomic_store(&timer_running, 0);
        pthread_mutex_unlock(&timer_lock);
        if (done)
            break;
        g_usleep(10000);
    }
    atomic_store(&timer_running, 0);
    if (timer_started)
        pthread_join(timer_thread, NULL);
    timer_started = 0;
    pthread_mutex_lock(&registry_lock);
    if (registry)
        g_hash_table_destroy(registry);
    registry = NULL;
    pthread_mutex_unlock(&registry_lock);
}

long rtc_sctp_live_count(void) { return atomic_load(&live_count); }

static int set_opt(struct socket *sock, int level, int name, const void *val, socklen_t len,
                   const char *what, char *err, size_t errlen)
{
    if (usrsctp_setsockopt(sock, level, name, val, len) < 0) {
        err_set(err, errlen, "SCTP option %s: %s", what, strerror(errno));
        return -1;
    }
    return 0;
}

rtc_sctp *rtc_sctp_new(uint16_t local_port, uint16_t remote_port, size_t max_message,
                       const rtc_sctp_callbacks *cb, void *arg, char *err, size_t errlen)
{
    rtc_sctp *s = mem_calloc(1, sizeof *s);
    if (s == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&s->refs, 1);
    atomic_fetch_add(&live_count, 1);
    pthread_mutex_init(&s->sock_lock, NULL);
    pthread_mutex_init(&s->cb_lock, NULL);
    s->cb = *cb;
    s->arg = arg;
    s->max_message = max_message;

    pthread_mutex_lock(&registry_lock);
    s->id = next_id++;
    atomic_fetch_add(&s->refs, 1); /* the registry's reference */
    g_hash_table_insert(registry, (gpointer)s->id, s);
    pthread_mutex_unlock(&registry_lock);
    usrsctp_register_address((void *)s->id);

    struct socket *sock = usrsctp_socket(AF_CONN, SOCK_STREAM, IPPROTO_SCTP, NULL, NULL, 0, NULL);
    if (sock == NULL) {
        err_set(err, errlen, "usrsctp_socket: %s", strerror(errno));
        goto fail;
    }
    s->sock = sock;
    usrsctp_set_non_blocking(sock, 1);
    usrsctp_set_upcall(sock, upcall, (void *)s->id);

    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close = ABORT, never wait */
    int one = 1;
    int bufsize = SCTP_BUFFER;
    struct sctp_assoc_value reset = {.assoc_id = SCTP_FUTURE_ASSOC,
                                     .assoc_value = SCTP_ENABLE_RESET_STREAM_REQ |
                                                    SCTP_ENABLE_CHANGE_ASSOC_REQ};
    struct sctp_initmsg init = {.sinit_num_ostreams = SCTP_STREAMS,
                                .sinit_max_instreams = SCTP_STREAMS};
    if (set_opt(sock, SOL_SOCKET, SO_LINGER, &lg, sizeof lg, "SO_LINGER", err, errlen) ||
        set_opt(sock, IPPROTO_SCTP, SCTP_NODELAY, &one, sizeof one, "NODELAY", err, errlen) ||
        set_opt(sock, IPPROTO_SCTP, SCTP_RECVRCVINFO, &one, sizeof one, "RECVRCVINFO", err,
                errlen) ||
        set_opt(sock, IPPROTO_SCTP, SCTP_ENABLE_STREAM_RESET, &reset, sizeof reset,
                "ENABLE_STREAM_RESET", err, errlen) ||
        set_opt(sock, IPPROTO_SCTP, SCTP_INITMSG, &init, sizeof init, "INITMSG", err, errlen) ||
        set_opt(sock, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize, "SO_SNDBUF", err, errlen) ||
        set_opt(sock, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize, "SO_RCVBUF", err, errlen))
        goto fail;
    static const uint16_t events[] = {SCTP_ASSOC_CHANGE, SCTP_STREAM_RESET_EVENT,
                                      SCTP_SENDER_DRY_EVENT, SCTP_SHUTDOWN_EVENT,
                                      SCTP_REMOTE_ERROR};
    for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
        struct sctp_event ev = {.se_assoc_id = SCTP_FUTURE_ASSOC, .se_type = events[i], .se_on = 1};
        if (set_opt(sock, IPPROTO_SCTP, SCTP_EVENT, &ev, sizeof ev, "EVENT", err, errlen))
            goto fail;
    }

    struct sockaddr_conn local = {
        .sconn_family = AF_CONN, .sconn_port = htons(local_port), .sconn_addr = (void *)s->id};
    if (usrsctp_bind(sock, (struct sockaddr *)&local, sizeof local) < 0) {
        err_set(err, errlen, "usrsctp_bind: %s", strerror(errno));
        goto fail;
    }
    struct sockaddr_conn remote = local;
    remote.sconn_port = htons(remote_port);
    if (usrsctp_connect(sock, (struct sockaddr *)&remote, sizeof remote) < 0 &&
        errno != EINPROGRESS) {
        err_set(err, errlen, "usrsctp_connect: %s", strerror(errno));
        goto fail;
    }
    /* Path MTU discovery makes no sense inside DTLS over ICE: fix 1200.
     * No heartbeats either: ICE consent already proves the path alive, and
     * one heartbeat per association every 30 s was most of what an idle
     * chatd with thousands of peers sent. */
    struct sctp_paddrparams pp;
    memset(&pp, 0, sizeof pp);
    memcpy(&pp.spp_address, &remote, sizeof remote);
    pp.spp_flags = SPP_PMTUD_DISABLE | SPP_HB_DISABLE;
    pp.spp_pathmtu = 1200;
    if (usrsctp_setsockopt(sock, IPPROTO_SCTP, SCTP_PEER_ADDR_PARAMS, &pp, sizeof pp) < 0)
        log_debug("sctp", "SCTP_PEER_ADDR_PARAMS: %s", strerror(errno));
    return s;

fail:
    rtc_sctp_close(s);
    return NULL;
}

void rtc_sctp_input(rtc_sctp *s, const uint8_t *packet, size_t len)
{
    usrsctp_conninput((void *)s->id, packet, len, 0);
}

static void end(rtc_sctp *s, const char *reason)
{
    if (s->ended)
        return;
    s->ended = 1;
    s->cb.closed(s->arg, reason);
}

static void handle_notification(rtc_sctp *s, const uint8_t *buf, size_t len)
{
    const union sctp_notification *n = (const void *)buf;
    if (len < sizeof n->sn_header)
        return;
    switch (n->sn_header.sn_type) {
    case SCTP_ASSOC_CHANGE:
        if (len < sizeof n->sn_assoc_change)
            return;
        switch (n->sn_assoc_change.sac_state) {
        case SCTP_COMM_UP:
            s->cb.connected(s->arg);
            break;
        case SCTP_COMM_LOST:
            /* Lost (or aborted by the remote) after our SHUTDOWN went out:
             * everything we sent had arrived, so for us the close is clean. */
            end(s, atomic_load(&s->all_acked) ? "closed" : "SCTP association lost");
            break;
        case SCTP_SHUTDOWN_COMP:
            end(s, "closed");
            break;
        case SCTP_CANT_STR_ASSOC:
            end(s, "SCTP association could not start");
            break;
        default:
            break;
        }
        break;
    case SCTP_SHUTDOWN_EVENT:
        end(s, "closed");
        break;
    case SCTP_SENDER_DRY_EVENT:
        s->cb.writable(s->arg);
        break;
    case SCTP_STREAM_RESET_EVENT: {
        const struct sctp_stream_reset_event *e = &n->sn_strreset_event;
        if (len < sizeof *e)
            return;
        if (e->strreset_flags & (SCTP_STREAM_RESET_DENIED | SCTP_STREAM_RESET_FAILED))
            return;
        size_t count = (len - sizeof *e) / sizeof(uint16_t);
        for (size_t i = 0; i < count; i++) {
            if (e->strreset_flags & SCTP_STREAM_RESET_INCOMING_SSN)
                s->cb.stream_reset(s->arg, e->strreset_stream_list[i]);
            /* RFC 6525: the remote performs an outgoing reset only once it
             * has every TSN we sent before it. */
            if ((e->strreset_flags & SCTP_STREAM_RESET_OUTGOING_SSN) && s->cb.reset_done)
                s->cb.reset_done(s->arg, e->strreset_stream_list[i]);
        }
        break;
    }
    default:
        break;
    }
}

/* Appends a piece of a user message; delivers it at MSG_EOR. */
static void handle_data(rtc_sctp *s, const struct sctp_rcvinfo *rcv, const uint8_t *buf, size_t len,
                        int eor)
{
    if (!s->msg_oversize && s->msg_len + len > s->max_message) {
        s->msg_oversize = 1;
        s->msg_dropped = s->msg_len;
        s->msg_len = 0;
    }
    if (s->msg_oversize) {
        s->msg_dropped += len;
    } else {
        if (s->msg == NULL) {
            s->msg = mem_alloc(s->max_message ? s->max_message : 1);
            if (s->msg == NULL) {
                end(s, "out of memory");
                return;
            }
        }
        memcpy(s->msg + s->msg_len, buf, len);
        s->msg_len += len;
    }
    if (!eor)
        return;
    if (s->msg_oversize)
        s->cb.oversize(s->arg, rcv->rcv_sid, s->msg_dropped);
    else
        s->cb.message(s->arg, rcv->rcv_sid, ntohl(rcv->rcv_ppid), s->msg, s->msg_len);
    s->msg_len = 0;
    s->msg_oversize = 0;
    s->msg_dropped = 0;
}

void rtc_sctp_drain(rtc_sctp *s)
{
    uint8_t buf[SCTP_READ_CHUNK];
    while (s->sock != NULL && !s->ended) {
        struct sctp_rcvinfo rcv;
        socklen_t infolen = sizeof rcv;
        unsigned int infotype = 0;
        int flags = 0;
        struct sockaddr_conn from;
        socklen_t fromlen = sizeof from;
        memset(&rcv, 0, sizeof rcv);
        ssize_t n = usrsctp_recvv(s->sock, buf, sizeof buf, (struct sockaddr *)&from, &fromlen,
                                  &rcv, &infolen, &infotype, &flags);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN &&
                errno != EINPROGRESS)
                end(s, "SCTP receive failed");
            break;
        }
        if (n == 0) {
            end(s, "closed");
            break;
        }
        if (flags & MSG_NOTIFICATION)
            handle_notification(s, buf, (size_t)n);
        else
            handle_data(s, &rcv, buf, (size_t)n, (flags & MSG_EOR) != 0);
    }
    int ev = s->sock && !s->ended ? usrsctp_get_events(s->sock) : 0;
    if (ev & SCTP_EVENT_WRITE)
        s->cb.writable(s->arg);
}

int rtc_sctp_send(rtc_sctp *s, uint16_t stream, uint32_t ppid, const uint8_t *data, size_t len)
{
    struct sctp_sndinfo snd = {.snd_sid = stream, .snd_ppid = htonl(ppid)};
    int r;
    pthread_mutex_lock(&s->sock_lock);
    if (s->sock == NULL) {
        pthread_mutex_unlock(&s->sock_lock);
        errno = ENOTCONN;
        return -1;
    }
    ssize_t n = usrsctp_sendv(s->sock, data, len, NULL, 0, &snd, sizeof snd, SCTP_SENDV_SNDINFO, 0);
    int saved = errno;
    pthread_mutex_unlock(&s->sock_lock);
    r = n < 0 ? -1 : 0;
    errno = saved;
    return r;
}

int rtc_sctp_set_nodelay(rtc_sctp *s, int on)
{
    int v = on ? 1 : 0;
    pthread_mutex_lock(&s->sock_lock);
    int r = s->sock ? usrsctp_setsockopt(s->sock, IPPROTO_SCTP, SCTP_NODELAY, &v, sizeof v) : -1;
    pthread_mutex_unlock(&s->sock_lock);
    return r;
}

int rtc_sctp_reset_stream(rtc_sctp *s, uint16_t stream)
{
    uint8_t buf[sizeof(struct sctp_reset_streams) + sizeof(uint16_t)];
    struct sctp_reset_streams *rs = (void *)buf;
    memset(buf, 0, sizeof buf);
    rs->srs_assoc_id = SCTP_ALL_ASSOC;
    rs->srs_flags = SCTP_STREAM_RESET_OUTGOING;
    rs->srs_number_streams = 1;
    rs->srs_stream_list[0] = stream;
    pthread_mutex_lock(&s->sock_lock);
    int r = s->sock ? usrsctp_setsockopt(s->sock, IPPROTO_SCTP, SCTP_RESET_STREAMS, rs,
                                         (socklen_t)sizeof buf)
                    : -1;
    pthread_mutex_unlock(&s->sock_lock);
    return r;
}

int rtc_sctp_shutdown(rtc_sctp *s)
{
    pthread_mutex_lock(&s->sock_lock);
    int r = s->sock ? usrsctp_shutdown(s->sock, SHUT_WR) : -1;
    pthread_mutex_unlock(&s->sock_lock);
    return r;
}

void rtc_sctp_close(rtc_sctp *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->sock_lock);
    struct socket *sock = s->sock;
    s->sock = NULL;
    if (sock)
        usrsctp_close(sock); /* a late upcall finds the id and a closed flag */
    pthread_mutex_unlock(&s->sock_lock);
    usrsctp_deregister_address((void *)s->id);
    pthread_mutex_lock(&s->cb_lock);
    s->closed = 1; /* from here on no output or wake reaches the owner */
    pthread_mutex_unlock(&s->cb_lock);
    pthread_mutex_lock(&registry_lock);
    int was_registered = registry && g_hash_table_remove(registry, (gpointer)s->id);
    pthread_mutex_unlock(&registry_lock);
    if (was_registered)
        sctp_unref(s);
    sctp_unref(s);
}
