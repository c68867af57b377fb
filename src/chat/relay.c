/*
 * relay — see relay.h.
 */
#include "chat/relay.h"

#include "app/offer.h"
#include "chat/bus.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/version.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

struct relay {
    rtc_loops *loops;
    char *const *ice;
    chat_bus *bus;
    offer_slots *slots;
};

typedef struct {
    relay *r;
    chat_sub *sub;
    char room[64];
} session;

static void on_open(rtc_peer *p, void *user)
{
    session *s = user;
    /* The peer is the subscriber: valid until on_close returns, which
     * unsubscribes first. */
    s->sub = chat_bus_subscribe(s->r->bus, s->room, offer_deliver, p);
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
    chat_bus_publish(s->r->bus, s->room, f, p);
    chat_frame_unref(f);
}

static void on_oversize(rtc_peer *p, size_t len, void *user)
{
    (void)user;
    char msg[200];
    snprintf(msg, sizeof msg,
             "{\"type\":\"error\",\"code\":\"TOO_LARGE\",\"message\":\"a %zu-byte message is over "
             "the %d-byte limit\",\"fatal\":false}",
             len, LIMIT_MESSAGE_BYTES);
    rtc_peer_send_text(p, msg, strlen(msg));
}

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    session *s = user;
    relay *r = s->r;
    chat_bus_unsubscribe(r->bus, s->sub);
    log_info("relay", "session %s ended: %s", rtc_peer_id(p), reason);
    offer_slots_release(r->slots);
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
    const char *room = offer_room(req, reply);
    if (room == NULL || !offer_admit(r->slots, req, reply))
        return;
    session *s = mem_calloc(1, sizeof *s);
    if (s == NULL) {
        offer_admit_cancel(r->slots);
        http_reply_error(reply, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    s->r = r;
    snprintf(s->room, sizeof s->room, "%s", room);
    rtc_peer_config cfg = {.loops = r->loops,
                           .ice_addresses = (const char *const *)r->ice,
                           .cb = &peer_callbacks,
                           .user = s};
    /* On success the session belongs to the peer's callbacks (on_close
     * frees it); this thread only keeps its own reference to the peer. */
    rtc_peer *p = offer_answer(r->slots, &cfg, req, reply, "relay");
    if (p == NULL) {
        mem_free(s);
        return;
    }
    log_info("relay", "session %s created for %s", rtc_peer_id(p), req->remote);
    rtc_peer_unref(p);
}

static void http_health(void *app, http_reply *reply)
{
    (void)app;
    char buf[160];
    snprintf(buf, sizeof buf,
             "{\"status\":\"ok\",\"database\":\"ok\",\"api\":\"ok\",\"version\":\"%s\"}",
             chatd_version);
    http_reply_json(reply, 200, mem_strdup(buf));
}

static void http_metrics(void *app, http_reply *reply)
{
    relay *r = app;
    GString *m = g_string_new(NULL);
    offer_metrics_gauges(m, relay_sessions(r));
    offer_metrics_admission(m, r->slots);
    offer_metrics_reply(reply, m);
}

const http_app relay_http_app = {
    .rtc_offer = http_offer,
    .rtc_delete = offer_http_delete,
    .health = http_health,
    .metrics = http_metrics,
};

relay *relay_new(rtc_loops *loops, char *const *ice_addresses, const offer_limits *limits)
{
    relay *r = mem_calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->bus = chat_bus_new();
    r->slots = offer_slots_new(limits);
    if (r->bus == NULL || r->slots == NULL) {
        relay_free(r);
        return NULL;
    }
    r->loops = loops;
    r->ice = ice_addresses;
    return r;
}

long relay_sessions(relay *r) { return offer_slots_used(r->slots); }

void relay_close_all(relay *r, int timeout_ms) { offer_slots_close_all(r->slots, timeout_ms); }

void relay_free(relay *r)
{
    if (r == NULL)
        return;
    chat_bus_free(r->bus);
    offer_slots_free(r->slots);
    mem_free(r);
}
