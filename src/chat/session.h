/*
 * session — one chat session's life, from an accepted offer to on_close:
 *
 *   chat_session_new (HTTP thread) -> offer answered -> chat_session_start:
 *   draw a user from the directory (or take the bearer token's user) ->
 *   user row committed ... meanwhile ICE, DTLS, SCTP -> on_open ... ->
 *   both done: welcome + history -> presence join -> auto posts every
 *   0..max ms and the client's own posts (token, rate limit) -> on_close:
 *   presence leave, session row ended.
 *
 * Identification overlaps the connection setup: it starts when the offer
 * is answered, and the welcome goes as soon as the channel is open and the
 * user row is committed, whichever comes last. (on_open starts it if the
 * offer path's start has not run.)
 *
 * A failed draw is told to the client (USER_FETCH_FAILED with retry_in_ms)
 * and retried with backoff (draw.h); after the last attempt the client gets
 * fatal:true and the channel closes gracefully. Errors that happen before
 * the channel is open are kept and sent, in order, as soon as it opens
 * (the draw keeps retrying meanwhile); a fatal one then closes the channel
 * right after them. So the client is always told, and the welcome is still
 * the first frame after those errors.
 *
 * Threading: everything of a session runs on its peer's event loop. Work
 * that finishes on the directory's thread (a fetched user) or the store's
 * writer thread (the user row) is posted back to that loop, and so is the
 * start from the HTTP thread.
 *
 * Ownership: a session is reference counted: the peer's callbacks hold one
 * reference from chat_session_new until on_close, and so does each request
 * in flight and each armed timer, and the start posted by
 * chat_session_start until it has run. A session never touches its peer
 * after on_close; work that arrives later (a draw answered after a setup
 * timeout or a DELETE) finds it closed and only drops its reference: no
 * user row is written for it.
 */
#ifndef CHATD_CHAT_SESSION_H
#define CHATD_CHAT_SESSION_H

#include "chat/service.h"
#include "rtc/peer.h"

#include <time.h>

typedef struct chat_session chat_session;

/* A session for an offer about to be answered in `room`; resume_user is the
 * bearer token's user id (0: draw one). NULL when out of memory. It comes
 * with two references: the peer callbacks' (given to the peer as `user`,
 * dropped by on_close) and the offer path's, which goes to
 * chat_session_start once the offer is answered, or with the other to
 * chat_session_discard when it is not. The session takes one of svc's
 * slots only through the offer path; its on_close gives it back. */
chat_session *chat_session_new(chat_service *svc, const char *room, const char *remote,
                               long resume_user);
/* The login a bearer token continues (its auth_time; 0 = a new login): the
 * welcome's token keeps it, so resuming never extends a login past
 * --jwt-max-age. Call before the offer is answered. */
void chat_session_resume_login(chat_session *s, time_t auth_time);
/* Catch-up (POST /api/rtc?since=ID): the history after the welcome holds
 * the messages after `since` that this session's user may see, read from
 * the log, instead of the room's last ones. Call before the offer is
 * answered. */
void chat_session_catch_up(chat_session *s, int64_t since);
/* The reader pool's function (service.c makes the pool): reads one
 * session's catch-up, posts the answer to its loop. */
void chat_session_catch_up_read(void *job, void *unused);
/* The offer was answered with peer p (the caller's reference to p stays
 * the caller's): starts identifying the user on p's loop now, while the
 * connection is set up. Takes the offer path's reference to s; any
 * thread. Safe whatever p has done since the answer: a peer already
 * closed makes it a no-op, and one already open has started it itself. */
void chat_session_start(chat_session *s, rtc_peer *p);
/* The offer failed: the peer never took the session (a peer that is still
 * being answered calls no callback, see rtc_peer_answer). Drops both
 * references. */
void chat_session_discard(chat_session *s);

/* For the cluster (chat/link.h), from any thread: a reference; the text
 * of a frame for this session alone, in order with the room's frames (a
 * post's ref echo); a post the stream refused after it was accepted
 * (UNAVAILABLE, with its ref, NULL: none). */
chat_session *chat_session_hold(chat_session *s);
void chat_session_drop(chat_session *s);
void chat_session_send_copy(chat_session *s, const char *text);
void chat_session_refused(chat_session *s, const char *ref);

/* The callbacks to give the peer, with the session as `user`. */
extern const rtc_peer_callbacks chat_session_callbacks;

#endif
