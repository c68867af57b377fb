/*
 * session — one chat session's life, from an accepted offer to on_close:
 *
 *   chat_session_new (HTTP thread) -> on_open: draw a user from the
 *   directory (or take the bearer token's user) -> user row committed ->
 *   welcome + history -> presence join -> auto posts every 0..max ms and
 *   the client's own posts (token, rate limit) -> on_close: presence leave,
 *   session row ended.
 *
 * A failed draw is told to the client (USER_FETCH_FAILED with retry_in_ms)
 * and retried with backoff (draw.h); after the last attempt the client gets
 * fatal:true and the channel closes gracefully.
 *
 * Threading: everything of a session runs on its peer's event loop. Work
 * that finishes on the directory's thread (a fetched user) or the store's
 * writer thread (the user row) is posted back to that loop.
 *
 * Ownership: a session is reference counted: the peer's callbacks hold one
 * reference from chat_session_new until on_close, and so does each request
 * in flight and each armed timer. A session never touches its peer after
 * on_close; work that arrives later finds it closed and only drops its
 * reference.
 */
#ifndef CHATD_CHAT_SESSION_H
#define CHATD_CHAT_SESSION_H

#include "chat/service.h"
#include "rtc/peer.h"

#include <time.h>

typedef struct chat_session chat_session;

/* A session for an offer about to be answered in `room`; resume_user is the
 * bearer token's user id (0: draw one). NULL when out of memory. The
 * session takes one of svc's slots only through the offer path; its
 * on_close gives it back. */
chat_session *chat_session_new(chat_service *svc, const char *room, const char *remote,
                               long resume_user);
/* The login a bearer token continues (its auth_time; 0 = a new login): the
 * welcome's token keeps it, so resuming never extends a login past
 * --jwt-max-age. Call before the offer is answered. */
void chat_session_resume_login(chat_session *s, time_t auth_time);
/* The offer failed: the peer never took the session (a peer that is still
 * being answered calls no callback, see rtc_peer_answer). */
void chat_session_discard(chat_session *s);

/* The callbacks to give the peer, with the session as `user`. */
extern const rtc_peer_callbacks chat_session_callbacks;

#endif
