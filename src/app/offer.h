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
 *   ... its own cheap checks (a token, a ready directory) ...
 *   offer_admit(slots, req, reply)           429 / 503 / 400, see below
 *   ... its own admission (a room) ... on refusal: offer_admit_cancel
 *   s = its session (on no memory: offer_admit_cancel + 503)
 *   p = offer_answer(slots, &pc, req, reply, tag)
 *   p == NULL: free s (the slot is back, the reply is written)
 *   p != NULL: the session is the peer's; rtc_peer_unref(p)
 *
 * and its on_close gives the slot back with offer_slots_release().
 *
 * Admission control (docs/SECURITY.md): offer_admit checks, in this order
 * and before anything is allocated for the offer, each cheaper than what it
 * protects:
 *   1. the address's offer rate (--offer-rate N, burst 4×N): 429
 *      RATE_LIMITED with Retry-After (addrrate.h: a fixed table);
 *   2. peers still being set up (--max-pending): 503 AT_CAPACITY with
 *      Retry-After 1; a peer not open within --setup-timeout is closed;
 *   3. file descriptors: fewer than the reserve left (offer_fd_reserve):
 *      503 AT_CAPACITY, so HTTP keeps the descriptors it needs to answer;
 *   4. the peer slots (--max-peers): 503 AT_CAPACITY;
 *   5. the offer parses (rtc_offer_check): 400 BAD_SDP.
 * A peer then uses at most RTC_MAX_REMOTE_CANDIDATES of the offer's
 * candidates.
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

#define OFFER_DEFAULT_MAX_PENDING 512
#define OFFER_DEFAULT_RATE 5 /* offers a second per address */
#define OFFER_RATE_BURST 4   /* times the rate */

typedef struct {
    long max_peers;          /* sessions at once (--max-peers) */
    long max_pending;        /* 0 = OFFER_DEFAULT_MAX_PENDING (--max-pending) */
    long offer_rate;         /* 0 = OFFER_DEFAULT_RATE (--offer-rate) */
    int setup_timeout_ms;    /* 0 = RTC_SETUP_TIMEOUT_MS (--setup-timeout) */
    rtc_transport transport; /* the one-port transport (--rtc-port) or libnice per peer */
} offer_limits;

/* Room names: 1-63 of letters, digits, '-', '_', '.'. */
int offer_room_name_valid(const char *room);
/* The request's ?room= (or OFFER_DEFAULT_ROOM); NULL after replying 400
 * when the name is not valid. */
const char *offer_room(const http_request *req, http_reply *reply);

/* The limits of one application. NULL when out of memory. */
offer_slots *offer_slots_new(const offer_limits *limits);
void offer_slots_free(offer_slots *slots);
/* Admission control for one POST /api/rtc (the list above): 1 with a slot
 * taken (then offer_answer or offer_admit_cancel must follow), or 0 after
 * replying. */
int offer_admit(offer_slots *slots, const http_request *req, http_reply *reply);
/* The application refused an admitted offer itself: gives the slot back. */
void offer_admit_cancel(offer_slots *slots);
/* Takes a slot without the other checks (tests that drive sessions
 * without HTTP): 1, or 0 after replying 503 AT_CAPACITY. */
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

/* Descriptors kept free for HTTP and the store: with fewer than this left
 * below RLIMIT_NOFILE, offers are refused (503). Set once at start by
 * offer_fd_limits_init, which raises the soft limit to the hard one and
 * logs both. */
long offer_fd_reserve(void);
void offer_fd_limits_init(void);
/* Whether at least `reserve` descriptors are free: the lowest free
 * descriptor is probed with one dup (descriptors are handed out lowest
 * first, so the lowest free one is about how many are open). */
int offer_fds_available(long reserve);

/* DELETE /api/rtc/ID for any application: closes that peer (204) or 404. */
void offer_http_delete(void *app, const http_request *req, const char *id, http_reply *reply);

/* chat_deliver_fn for a subscriber that is an rtc_peer: sends the frame;
 * a peer whose queue is full is closed ("too slow to keep up") rather than
 * let its messages drop silently. */
void offer_deliver(void *peer, chat_frame *f);
/* Sends one text to a peer with the same policy; -1 when not sent. */
int offer_send(rtc_peer *p, const char *text, size_t len);

/* Appends the transport gauges in Prometheus text format: chatd_peers
 * (sessions), chatd_peer_objects, chatd_sctp_associations. */
void offer_metrics_gauges(GString *out, long sessions);
/* Appends the admission figures: chatd_pending_peers (gauge) and
 * chatd_offers_refused_total{reason=rate|pending|descriptors|peers|sdp}. */
void offer_metrics_admission(GString *out, offer_slots *slots);
/* Replies 200 with the Prometheus text in `text`, which it frees. */
void offer_metrics_reply(http_reply *reply, GString *text);

#endif
