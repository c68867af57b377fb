/*
 * offer — the one path from POST /api/rtc to a running peer, shared by the
 * two applications (the chat service and the relay): the room name rule,
 * the peer slots that --max-peers allows, answering the offer with the
 * reply that goes with each outcome (201 + Location, 400 BAD_SDP, 503),
 * DELETE /api/rtc/ID, closing every peer at shutdown, delivering a bus
 * frame to a peer, and the transport gauges of /metrics.
 *
 * An application's offer handler reads:
 *
 *   room = offer_room(req, reply)            400 on a bad ?room=
 *   ... its own checks (a token, a ready directory) ...
 *   offer_slots_take(slots, reply)           503 AT_CAPACITY
 *   s = its session (on no memory: offer_slots_release + 503)
 *   p = offer_answer(slots, &pc, req, reply, tag)
 *   p == NULL: free s (the slot is back, the reply is written)
 *   p != NULL: the session is the peer's; rtc_peer_unref(p)
 *
 * and its on_close gives the slot back with offer_slots_release().
 *
 * Threading: offer_room, offer_slots_take and offer_answer run on HTTP
 * threads, offer_slots_release on event loops; the slot count is under one
 * mutex that is never held across I/O. offer_deliver runs on the
 * publisher's thread. Ownership: the slots object is the application's;
 * offer_answer returns a peer reference the caller drops.
 */
#ifndef CHATD_APP_OFFER_H
#define CHATD_APP_OFFER_H

#include "chat/bus.h"
#include "http/server.h"
#include "rtc/peer.h"

#include <glib.h>

#define OFFER_DEFAULT_ROOM "lobby"

typedef struct offer_slots offer_slots;

/* Room names: 1-63 of letters, digits, '-', '_', '.'. */
int offer_room_name_valid(const char *room);
/* The request's ?room= (or OFFER_DEFAULT_ROOM); NULL after replying 400
 * when the name is not valid. */
const char *offer_room(const http_request *req, http_reply *reply);

/* At most `max` sessions at once. NULL when out of memory. */
offer_slots *offer_slots_new(long max);
void offer_slots_free(offer_slots *slots);
/* Takes a slot: 1, or 0 after replying 503 AT_CAPACITY. */
int offer_slots_take(offer_slots *slots, http_reply *reply);
/* Gives a slot back (a session ended, or its offer failed). */
void offer_slots_release(offer_slots *slots);
long offer_slots_used(offer_slots *slots);
/* Closes every peer of the process and waits up to timeout_ms for every
 * slot to come back. */
void offer_slots_close_all(offer_slots *slots, int timeout_ms);

/* Answers the offer in req with pc (pc->user is the caller's session).
 * Success: writes 201, the SDP answer and Location /api/rtc/ID, and returns
 * the new peer with a reference for the caller. Failure: writes 400 BAD_SDP
 * (the offer's fault) or 503 UNAVAILABLE, logs it under `tag`, releases
 * the slot taken for it and returns NULL; the session is the caller's to
 * free. */
rtc_peer *offer_answer(offer_slots *slots, const rtc_peer_config *pc, const http_request *req,
                       http_reply *reply, const char *tag);

/* DELETE /api/rtc/ID for any application: closes that peer (204) or 404. */
void offer_http_delete(void *app, const char *id, http_reply *reply);

/* chat_deliver_fn for a subscriber that is an rtc_peer: sends the frame;
 * a peer whose queue is full is closed ("too slow to keep up") rather than
 * let its messages drop silently. */
void offer_deliver(void *peer, chat_frame *f);
/* Sends one text to a peer with the same policy; -1 when not sent. */
int offer_send(rtc_peer *p, const char *text, size_t len);

/* Appends the transport gauges in Prometheus text format: chatd_peers
 * (sessions), chatd_peer_objects, chatd_sctp_associations. */
void offer_metrics_gauges(GString *out, long sessions);
/* Replies 200 with the Prometheus text in `text`, which it frees. */
void offer_metrics_reply(http_reply *reply, GString *text);

#endif
