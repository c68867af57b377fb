/*
 * offer — see offer.h.
 */
#include "app/offer.h"

#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct offer_slots {
    GMutex lock;
    GCond ended;
    long max;
    long used; /* sessions created and not yet ended */
};

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

offer_slots *offer_slots_new(long max)
{
    offer_slots *slots = mem_calloc(1, sizeof *slots);
    if (slots == NULL)
        return NULL;
    g_mutex_init(&slots->lock);
    g_cond_init(&slots->ended);
    slots->max = max;
    return slots;
}

void offer_slots_free(offer_slots *slots)
{
    if (slots == NULL)
        return;
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
    rtc_answer_status st =
        rtc_peer_answer(&cfg, req->body, req->body_len, &p, &answer, err, sizeof err);
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

void offer_http_delete(void *app, const char *id, http_reply *reply)
{
    (void)app;
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
    g_string_append_printf(out,
                           "# HELP chatd_peers Connected sessions.\n"
                           "# TYPE chatd_peers gauge\nchatd_peers %ld\n"
                           "# HELP chatd_peer_objects Peer objects alive (leak check).\n"
                           "# TYPE chatd_peer_objects gauge\nchatd_peer_objects %ld\n"
                           "# HELP chatd_sctp_associations SCTP associations alive (leak check).\n"
                           "# TYPE chatd_sctp_associations gauge\nchatd_sctp_associations %ld\n",
                           sessions, st.peer_objects, st.sctp_associations);
}

void offer_metrics_reply(http_reply *reply, GString *text)
{
    reply->status = 200;
    reply->content_type = "text/plain; version=0.0.4";
    reply->body = mem_strdup(text->str);
    reply->body_len = reply->body ? text->len : 0;
    g_string_free(text, TRUE);
}
