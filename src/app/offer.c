/*
 * offer — see offer.h.
 */
#include "app/offer.h"

#include "app/addrrate.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/version.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

enum { REFUSED_RATE, REFUSED_PENDING, REFUSED_FDS, REFUSED_PEERS, REFUSED_SDP, REFUSED_COUNT };
static const char *const refused_names[REFUSED_COUNT] = {"rate", "pending", "descriptors", "peers",
                                                         "sdp"};

struct offer_slots {
    GMutex lock;
    GCond ended;
    long max;
    long used;      /* sessions created and not yet ended */
    long admitting; /* admitted offers not yet answered (not in rtc's pending count yet) */
    offer_limits limits;
    addr_rate *rate;
    atomic_ulong refused[REFUSED_COUNT];
};

/* The descriptor reserve, set once at start (see offer_fd_limits_init). */
static long fd_reserve;
static int fd_probe = -1; /* /dev/null, dup'ed to find the lowest free descriptor */

int offer_room_name_valid(const char *room)
{
    size_t n = strlen(room);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(g_ascii_isalnum(room[i]) || room[i] == '-' || room[i] == '_' || room[i] == '.'))
            return 0;
    return 1;
}

const char *offer_room(const http_request *req, http_reply *reply)
{
    const char *room = req->room ? req->room : OFFER_DEFAULT_ROOM;
    if (!offer_room_name_valid(room)) {
        http_reply_error(reply, 400, "BAD_REQUEST",
                         "room names are 1-63 characters: letters, digits, '-', '_', '.'");
        return NULL;
    }
    return room;
}

offer_slots *offer_slots_new(const offer_limits *limits)
{
    offer_slots *slots = mem_calloc(1, sizeof *slots);
    if (slots == NULL)
        return NULL;
    slots->limits = *limits;
    if (slots->limits.max_pending <= 0)
        slots->limits.max_pending = OFFER_DEFAULT_MAX_PENDING;
    if (slots->limits.offer_rate <= 0)
        slots->limits.offer_rate = OFFER_DEFAULT_RATE;
    if (slots->limits.setup_timeout_ms <= 0)
        slots->limits.setup_timeout_ms = RTC_SETUP_TIMEOUT_MS;
    slots->rate = addr_rate_new((double)slots->limits.offer_rate,
                                (double)slots->limits.offer_rate * OFFER_RATE_BURST);
    if (slots->rate == NULL) {
        mem_free(slots);
        return NULL;
    }
    g_mutex_init(&slots->lock);
    g_cond_init(&slots->ended);
    slots->max = limits->max_peers;
    return slots;
}

void offer_slots_free(offer_slots *slots)
{
    if (slots == NULL)
        return;
    addr_rate_free(slots->rate);
    g_mutex_clear(&slots->lock);
    g_cond_clear(&slots->ended);
    mem_free(slots);
}

int offer_slots_take(offer_slots *slots, http_reply *reply)
{
    g_mutex_lock(&slots->lock);
    int free_slot = slots->used < slots->max;
    if (free_slot)
        slots->used++;
    g_mutex_unlock(&slots->lock);
    if (!free_slot)
        http_reply_error(reply, 503, "AT_CAPACITY", "the server is at its peer limit");
    return free_slot;
}

void offer_fd_limits_init(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) != 0)
            log_warn("chatd", "cannot raise the descriptor limit to %llu: %s",
                     (unsigned long long)rl.rlim_max, strerror(errno));
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    long limit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)LONG_MAX / 2
                     ? LONG_MAX / 2
                     : (long)rl.rlim_cur;
    /* An eighth of the limit, 32 to 1024: room for HTTP connections (32 per
     * address), the store, and the peers already admitted finishing setup. */
    fd_reserve = limit / 8;
    if (fd_reserve < 32)
        fd_reserve = 32;
    if (fd_reserve > 1024)
        fd_reserve = 1024;
    fd_probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
    log_info("chatd", "descriptors: limit %ld (hard %llu), offers refused with fewer than %ld free",
             limit, (unsigned long long)rl.rlim_max, fd_reserve);
}

long offer_fd_reserve(void) { return fd_reserve; }

int offer_fds_available(long reserve)
{
    if (fd_probe < 0 || reserve <= 0)
        return 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 1;
    int fd = fcntl(fd_probe, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return 0; /* EMFILE: none left at all */
    close(fd);
    return (rlim_t)fd + (rlim_t)reserve < rl.rlim_cur;
}

static int refuse(offer_slots *slots, int why, http_reply *reply, int status, const char *code,
                  const char *message, int retry_after)
{
    atomic_fetch_add(&slots->refused[why], 1);
    http_reply_error(reply, status, code, message);
    reply->retry_after = retry_after;
    return 0;
}

int offer_admit(offer_slots *slots, const http_request *req, http_reply *reply)
{
    const char *key = req->remote_addr && req->remote_addr[0] ? req->remote_addr : "unknown";
    int wait = addr_rate_take(slots->rate, key, clock_mono_us());
    if (wait > 0)
        return refuse(slots, REFUSED_RATE, reply, 429, "RATE_LIMITED",
                      "too many offers from this address; retry after the Retry-After seconds",
                      wait);
    if (!offer_fds_available(fd_reserve))
        return refuse(slots, REFUSED_FDS, reply, 503, "AT_CAPACITY",
                      "the server is out of connections for now", 1);
    g_mutex_lock(&slots->lock);
    /* rtc counts a peer from its creation, inside offer_answer; `admitting`
     * covers the offers between here and there, so the limit is exact
     * (briefly counting a peer twice errs on the side of refusing). */
    long pending = rtc_get_stats().pending_answers + slots->admitting;
    int why = pending >= slots->limits.max_pending ? REFUSED_PENDING
              : slots->used >= slots->max          ? REFUSED_PEERS
                                                   : -1;
    if (why < 0) {
        slots->used++;
        slots->admitting++;
    }
    g_mutex_unlock(&slots->lock);
    if (why == REFUSED_PENDING)
        return refuse(slots, why, reply, 503, "AT_CAPACITY",
                      "too many connections are being set up; try again shortly", 1);
    if (why == REFUSED_PEERS)
        return refuse(slots, why, reply, 503, "AT_CAPACITY", "the server is at its peer limit", 0);
    char err[256];
    rtc_answer_status st = rtc_offer_check(req->body, req->body_len, err, sizeof err);
    if (st != RTC_ANSWER_OK) {
        offer_admit_cancel(slots);
        if (st == RTC_ANSWER_BAD_OFFER) {
            log_info("offer", "rejected an offer from %s: %s", req->remote, err);
            return refuse(slots, REFUSED_SDP, reply, 400, "BAD_SDP", err, 0);
        }
        http_reply_error(reply, 503, "UNAVAILABLE", err);
        return 0;
    }
    return 1;
}

void offer_admit_cancel(offer_slots *slots)
{
    g_mutex_lock(&slots->lock);
    if (slots->admitting > 0)
        slots->admitting--;
    slots->used--;
    g_cond_broadcast(&slots->ended);
    g_mutex_unlock(&slots->lock);
}

void offer_slots_release(offer_slots *slots)
{
    g_mutex_lock(&slots->lock);
    slots->used--;
    g_cond_broadcast(&slots->ended);
    g_mutex_unlock(&slots->lock);
}

long offer_slots_used(offer_slots *slots)
{
    g_mutex_lock(&slots->lock);
    long n = slots->used;
    g_mutex_unlock(&slots->lock);
    return n;
}

void offer_slots_close_all(offer_slots *slots, int timeout_ms)
{
    rtc_peer_close_all("server shutting down");
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    g_mutex_lock(&slots->lock);
    while (slots->used > 0)
        if (!g_cond_wait_until(&slots->ended, &slots->lock, deadline))
            break;
    g_mutex_unlock(&slots->lock);
}

rtc_peer *offer_answer(offer_slots *slots, const rtc_peer_config *pc, const http_request *req,
                       http_reply *reply, const char *tag)
{
    char err[256];
    char *answer = NULL;
    rtc_peer *p = NULL;
    rtc_peer_config cfg = *pc;
    cfg.local_client = req->remote_is_loopback;
    cfg.setup_timeout_ms = slots->limits.setup_timeout_ms;
    cfg.transport = slots->limits.transport;
    rtc_answer_status st =
        rtc_peer_answer(&cfg, req->body, req->body_len, &p, &answer, err, sizeof err);
    g_mutex_lock(&slots->lock);
    if (slots->admitting > 0) /* the peer counts in rtc's pending figure now, or is gone */
        slots->admitting--;
    g_mutex_unlock(&slots->lock);
    if (st != RTC_ANSWER_OK) {
        offer_slots_release(slots);
        if (st == RTC_ANSWER_BAD_OFFER) {
            log_info(tag, "rejected an offer from %s: %s", req->remote, err);
            http_reply_error(reply, 400, "BAD_SDP", err);
        } else {
            log_warn(tag, "cannot answer an offer from %s: %s", req->remote, err);
            http_reply_error(reply, 503, "UNAVAILABLE", err);
        }
        return NULL;
    }
    reply->status = 201;
    reply->content_type = "application/sdp";
    reply->body = answer;
    reply->body_len = strlen(answer);
    snprintf(reply->location, sizeof reply->location, "/api/rtc/%s", rtc_peer_id(p));
    return p;
}

void offer_http_delete(void *app, const http_request *req, const char *id, http_reply *reply)
{
    (void)app;
    (void)req;
    rtc_peer *p = rtc_peer_find(id);
    if (p == NULL) {
        http_reply_error(reply, 404, "NOT_FOUND", "no such session");
        return;
    }
    rtc_peer_close(p, "ended by DELETE");
    rtc_peer_unref(p);
    reply->status = 204;
}

int offer_send(rtc_peer *p, const char *text, size_t len)
{
    if (rtc_peer_send_text(p, text, len) == 0)
        return 0;
    if (errno == ENOBUFS)
        rtc_peer_close(p, "too slow to keep up");
    return -1;
}

void offer_deliver(void *peer, chat_frame *f)
{
    offer_send(peer, chat_frame_data(f), chat_frame_len(f));
}

void offer_metrics_gauges(GString *out, long sessions)
{
    rtc_stats st = rtc_get_stats();
    /* version.h: the version needs no escaping in a label */
    g_string_append_printf(out,
                           "# HELP chatd_build_info chatd's version (the label); always 1.\n"
                           "# TYPE chatd_build_info gauge\nchatd_build_info{version=\"%s\"} 1\n",
                           chatd_version);
    g_string_append_printf(out,
                           "# HELP chatd_peers Connected sessions.\n"
                           "# TYPE chatd_peers gauge\nchatd_peers %ld\n"
                           "# HELP chatd_peer_objects Peer objects alive (leak check).\n"
                           "# TYPE chatd_peer_objects gauge\nchatd_peer_objects %ld\n"
                           "# HELP chatd_sctp_associations SCTP associations alive (leak check).\n"
                           "# TYPE chatd_sctp_associations gauge\nchatd_sctp_associations %ld\n",
                           sessions, st.peer_objects, st.sctp_associations);
    g_string_append_printf(
        out,
        "# HELP chatd_udp_datagrams_total UDP datagrams on the one RTC port, by direction.\n"
        "# TYPE chatd_udp_datagrams_total counter\n"
        "chatd_udp_datagrams_total{direction=\"in\"} %lu\n"
        "chatd_udp_datagrams_total{direction=\"out\"} %lu\n"
        "# HELP chatd_udp_syscalls_total recvmmsg and sendmmsg/sendmsg calls on the RTC port.\n"
        "# TYPE chatd_udp_syscalls_total counter\n"
        "chatd_udp_syscalls_total{direction=\"in\"} %lu\n"
        "chatd_udp_syscalls_total{direction=\"out\"} %lu\n"
        "# HELP chatd_udp_forwarded_total Datagrams read by one event loop for a peer of "
        "another.\n# TYPE chatd_udp_forwarded_total counter\nchatd_udp_forwarded_total %lu\n"
        "# HELP chatd_ice_consent_expired_total Peers closed because their ICE checks stopped.\n"
        "# TYPE chatd_ice_consent_expired_total counter\nchatd_ice_consent_expired_total %lu\n"
        "# HELP chatd_udp_dropped_total Datagrams dropped on the RTC port, by reason.\n"
        "# TYPE chatd_udp_dropped_total counter\n"
        "chatd_udp_dropped_total{reason=\"unknown_source\"} %lu\n"
        "chatd_udp_dropped_total{reason=\"bad_stun\"} %lu\n"
        "chatd_udp_dropped_total{reason=\"unknown_username\"} %lu\n"
        "chatd_udp_dropped_total{reason=\"bad_integrity\"} %lu\n"
        "chatd_udp_dropped_total{reason=\"inbox_full\"} %lu\n",
        st.udp_rx, st.udp_tx, st.udp_rx_calls, st.udp_tx_calls, st.udp_forwarded,
        st.consent_expired, st.dropped_unknown_source, st.dropped_bad_stun,
        st.dropped_unknown_username, st.dropped_bad_integrity, st.dropped_inbox_full);
    g_string_append_printf(
        out,
        "# HELP chatd_tcp_connections ICE-TCP connections open, and those without a valid "
        "check yet.\n# TYPE chatd_tcp_connections gauge\n"
        "chatd_tcp_connections{state=\"open\"} %lu\n"
        "chatd_tcp_connections{state=\"stranger\"} %lu\n"
        "# HELP chatd_tcp_accepted_total ICE-TCP connections accepted.\n"
        "# TYPE chatd_tcp_accepted_total counter\nchatd_tcp_accepted_total %lu\n"
        "# HELP chatd_tcp_handed_off_total ICE-TCP connections moved to their peer's loop.\n"
        "# TYPE chatd_tcp_handed_off_total counter\nchatd_tcp_handed_off_total %lu\n"
        "# HELP chatd_tcp_frames_total RFC 4571 frames on ICE-TCP connections, by direction.\n"
        "# TYPE chatd_tcp_frames_total counter\n"
        "chatd_tcp_frames_total{direction=\"in\"} %lu\n"
        "chatd_tcp_frames_total{direction=\"out\"} %lu\n"
        "# HELP chatd_tcp_refused_total ICE-TCP connections closed at accept, by the cap "
        "they were over.\n# TYPE chatd_tcp_refused_total counter\n"
        "chatd_tcp_refused_total{reason=\"strangers\"} %lu\n"
        "chatd_tcp_refused_total{reason=\"address\"} %lu\n"
        "# HELP chatd_tcp_closed_total ICE-TCP connections closed by chatd, by reason.\n"
        "# TYPE chatd_tcp_closed_total counter\n"
        "chatd_tcp_closed_total{reason=\"bad_stun\"} %lu\n"
        "chatd_tcp_closed_total{reason=\"unknown_username\"} %lu\n"
        "chatd_tcp_closed_total{reason=\"bad_integrity\"} %lu\n"
        "chatd_tcp_closed_total{reason=\"oversize\"} %lu\n"
        "chatd_tcp_closed_total{reason=\"timeout\"} %lu\n"
        "chatd_tcp_closed_total{reason=\"write_full\"} %lu\n"
        "# HELP chatd_tcp_dropped_frames_total Bad checks on accepted ICE-TCP connections.\n"
        "# TYPE chatd_tcp_dropped_frames_total counter\nchatd_tcp_dropped_frames_total %lu\n",
        st.tcp_open, st.tcp_strangers, st.tcp_accepted, st.tcp_handed_off, st.tcp_rx_frames,
        st.tcp_tx_frames, st.tcp_refused_total, st.tcp_refused_address, st.tcp_closed_bad_stun,
        st.tcp_closed_unknown_username, st.tcp_closed_bad_integrity, st.tcp_closed_oversize,
        st.tcp_closed_timeout, st.tcp_closed_write_full, st.tcp_dropped_frames);
}

void offer_metrics_admission(GString *out, offer_slots *slots)
{
    g_string_append_printf(out,
                           "# HELP chatd_pending_peers Answered peers whose channel is not open "
                           "yet.\n# TYPE chatd_pending_peers gauge\nchatd_pending_peers %ld\n"
                           "# HELP chatd_offers_refused_total Offers refused by admission "
                           "control.\n# TYPE chatd_offers_refused_total counter\n",
                           rtc_get_stats().pending_answers);
    for (int i = 0; i < REFUSED_COUNT; i++)
        g_string_append_printf(out, "chatd_offers_refused_total{reason=\"%s\"} %lu\n",
                               refused_names[i], atomic_load(&slots->refused[i]));
}

void offer_metrics_reply(http_reply *reply, GString *text)
{
    char *body = mem_strdup(text->str);
    size_t len = text->len;
    g_string_free(text, TRUE);
    if (body == NULL) { /* not a 200 with nothing in it */
        http_reply_error(reply, 500, "INTERNAL", "out of memory");
        return;
    }
    reply->status = 200;
    reply->content_type = "text/plain; version=0.0.4";
    reply->body = body;
    reply->body_len = len;
}
