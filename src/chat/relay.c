/*
 * relay — see relay.h.
 */
#include "chat/relay.h"

#include "chat/bus.h"
#include "chat/service.h"
#include "rtc/peer.h"
#include "rtc/sctp.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <glib.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

struct relay {
    rtc_loops *loops;
    char *const *ice;
    long max_peers;
    chat_bus *bus;
    GMutex lock;
    GCond ended;
    long count; /* sessions created and not yet ended */
};

typedef struct {
    relay *r;
    rtc_peer *peer;
    chat_sub *sub;
    char room[64];
} session;

static void deliver(void *subscriber, chat_frame *f)
{
    session *s = subscriber;
    if (rtc_peer_send_text(s->peer, chat_frame_data(f), chat_frame_len(f)) < 0 &&
        errno == ENOBUFS)
        rtc_peer_close(s->peer, "too slow to keep up");
}

static void on_open(rtc_peer *p, void *user)
{
    session *s = user;
    s->peer = p; /* valid until on_close returns */
    s->sub = chat_bus_subscribe(s->r->bus, s->room, deliver, s);
    if (s->sub == NULL)
        rtc_peer_close(p, "out of memory");
    log_info("relay", "session %s open in room %s", rtc_peer_id(p), s->room);
}

static void on_message(rtc_peer *p, const uint8_t *data, size_t len, int binary, void *user)
{
    session *s = user;
    if (binary)
        return;
    char *copy = mem_alloc(len ? len : 1);
    if (copy == NULL)
        return;
    memcpy(copy, data, len);
    chat_frame *f = chat_frame_take(copy, len);
    if (f == NULL)
        return;
    chat_bus_publish(s->r->bus, s->room, f, s);
    chat_frame_unref(f);
    (void)p;
}

static void on_oversize(rtc_peer *p, size_t len, void *user)
{
    (void)user;
    char msg[200];
    snprintf(msg, sizeof msg,
             "{\"type\":\"error\",\"code\":\"TOO_LARGE\",\"message\":\"a %zu-byte message is over "
             "the 65536-byte limit\",\"fatal\":false}",
             len);
    rtc_peer_send_text(p, msg, strlen(msg));
}

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    session *s = user;
    relay *r = s->r;
    chat_bus_unsubscribe(r->bus, s->sub);
    log_info("relay", "session %s ended: %s", rtc_peer_id(p), reason);
    g_mutex_lock(&r->lock);
    r->count--;
    g_cond_broadcast(&r->ended);
    g_mutex_unlock(&r->lock);
    mem_free(s);
}

static const rtc_peer_callbacks peer_callbacks = {
    .on_open = on_open,
    .on_message = on_message,
    .on_oversize = on_oversize,
    .on_close = on_close,
};

static void http_offer(void *app, const http_request *req, http_reply *reply)
{
    relay *r = app;
    const char *room = req->room ? req->room : "lobby";
    if (!chat_room_name_valid(room)) {
        http_reply_error(reply, 400, "BAD_REQUEST",
                         "room names are 1-63 characters: letters, digits, '-', '_', '.'");
        return;
    }
    g_mutex_lock(&r->lock);
    int full = r->count >= r->max_peers;
    if (!full)
        r->count++;
    g_mutex_unlock(&r->lock);
    if (full) {
        http_reply_error(reply, 503, "AT_CAPACITY", "the server is at its peer limit");
        return;
    }
    session *s = mem_calloc(1, sizeof *s);
    if (s == NULL) {
        g_mutex_lock(&r->lock);
        r->count--;
        g_mutex_unlock(&r->lock);
        http_reply_error(reply, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    s->r = r;
    snprintf(s->room, sizeof s->room, "%s", room);
    rtc_peer_config cfg = {.loops = r->loops,
                           .ice_addresses = (const char *const *)r->ice,
                           .cb = &peer_callbacks,
                           .user = s};
    char err[256];
    char *answer = NULL;
    rtc_peer *p = NULL;
    /* From here the session belongs to the peer's callbacks (on_close frees
     * it); this thread only keeps its own reference to the peer. */
    int rc = rtc_peer_answer(&cfg, req->body, req->body_len, &p, &answer, err, sizeof err);
    if (rc != 0) {
        g_mutex_lock(&r->lock);
        r->count--;
        g_mutex_unlock(&r->lock);
        mem_free(s);
        if (rc == -2) {
            log_info("relay", "rejected an offer from %s: %s", req->remote, err);
            http_reply_error(reply, 400, "BAD_SDP", err);
        } else {
            log_warn("relay", "cannot answer an offer from %s: %s", req->remote, err);
            http_reply_error(reply, 503, "UNAVAILABLE", err);
        }
        return;
    }
    log_info("relay", "session %s created for %s", rtc_peer_id(p), req->remote);
    reply->status = 201;
    reply->content_type = "application/sdp";
    reply->body = answer;
    reply->body_len = strlen(answer);
    snprintf(reply->location, sizeof reply->location, "/api/rtc/%s", rtc_peer_id(p));
    rtc_peer_unref(p);
}

static void http_health(void *app, http_reply *reply)
{
    (void)app;
    http_reply_json(reply, 200, mem_strdup("{\"status\":\"ok\",\"database\":\"ok\",\"api\":\"ok\"}"));
}

static void http_metrics(void *app, http_reply *reply)
{
    relay *r = app;
    char buf[512];
    snprintf(buf, sizeof buf,
             "# HELP chatd_peers Connected peers.\n# TYPE chatd_peers gauge\nchatd_peers %ld\n"
             "# HELP chatd_peer_objects Peer objects alive (leak check).\n"
             "# TYPE chatd_peer_objects gauge\nchatd_peer_objects %ld\n"
             "# HELP chatd_sctp_associations SCTP associations alive (leak check).\n"
             "# TYPE chatd_sctp_associations gauge\nchatd_sctp_associations %ld\n",
             relay_sessions(r), rtc_peer_live_count(), rtc_sctp_live_count());
    reply->status = 200;
    reply->content_type = "text/plain; version=0.0.4";
    reply->body = mem_strdup(buf);
    reply->body_len = reply->body ? strlen(reply->body) : 0;
}

const http_app relay_http_app = {
    .rtc_offer = http_offer,
    .rtc_delete = chat_http_delete,
    .health = http_health,
    .metrics = http_metrics,
};

relay *relay_new(rtc_loops *loops, char *const *ice_addresses, long max_peers)
{
    relay *r = mem_calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->bus = chat_bus_new();
    if (r->bus == NULL) {
        mem_free(r);
        return NULL;
    }
    r->loops = loops;
    r->ice = ice_addresses;
    r->max_peers = max_peers;
    g_mutex_init(&r->lock);
    g_cond_init(&r->ended);
    return r;
}

long relay_sessions(relay *r)
{
    g_mutex_lock(&r->lock);
    long n = r->count;
    g_mutex_unlock(&r->lock);
    return n;
}

void relay_close_all(relay *r, int timeout_ms)
{
    rtc_peer_close_all("server shutting down");
    g_mutex_lock(&r->lock);
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    while (r->count > 0)
        if (!g_cond_wait_until(&r->ended, &r->lock, deadline))
            break;
    g_mutex_unlock(&r->lock);
}

void relay_free(relay *r)
{
    if (r == NULL)
        return;
    chat_bus_free(r->bus);
    g_mutex_clear(&r->lock);
    g_cond_clear(&r->ended);
    mem_free(r);
}
