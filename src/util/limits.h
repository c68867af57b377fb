/*
 * limits — the sizes more than one module has to agree on, in one place.
 *
 * Each is named for what it limits. A module that enforces one keeps its
 * own name for it (PROTO_MAX_MESSAGE, HTTP_MAX_BODY, SDP_MAX_SIZE,
 * AUTH_TOKEN_MAX, ...) defined from here, so that its tests and fuzz
 * targets read naturally while the value lives once: the transport, the
 * protocol and the web client must never disagree about how large a
 * message may be, nor token verification and the protocol about a token.
 *
 * Threading and ownership: constants only.
 */
#ifndef CHATD_LIMITS_H
#define CHATD_LIMITS_H

/* Bytes of one data-channel message: the a=max-message-size chatd offers
 * and answers, the protocol's TOO_LARGE cap, and what RFC 8841 says a peer
 * accepts when its SDP has no a=max-message-size. */
#define LIMIT_MESSAGE_BYTES (64 * 1024)

/* Bytes of one HTTP request body (POST /api/rtc carries the SDP offer). */
#define LIMIT_HTTP_BODY_BYTES (64 * 1024)

/* Bytes of one HTTP response body built from the log (GET
 * /api/rooms/NAME/messages): the newest messages that fit, with
 * "more":true when older ones were left out. A slow reader then holds at
 * most this much per request, whatever ?limit= asks for. */
#define LIMIT_HTTP_RESPONSE_BYTES (256 * 1024)

/* Bytes of one SDP description; an offer arrives in an HTTP body, so no
 * more than LIMIT_HTTP_BODY_BYTES would ever be accepted anyway. */
#define LIMIT_SDP_BYTES (64 * 1024)

/* Bytes of the signing key's PEM file: a P-256 key takes about 250, so a
 * larger file is refused unread rather than parsed. */
#define LIMIT_KEY_FILE_BYTES (64 * 1024)

/* Bytes of one bearer token, whether it comes in an Authorization header
 * or in a post's "token": longer ones are refused unread. */
#define LIMIT_TOKEN_BYTES 8192

/* Unsent bytes chatd queues for one peer before closing it as too slow
 * (--peer-queue-bytes; usrsctp's own send buffer comes on top). */
#define LIMIT_PEER_QUEUE_BYTES (1024 * 1024)

/* Unsent bytes queued for all peers together: 256 MiB, or 4 peers' worth
 * when --peer-queue-bytes is larger. Without it --max-peers peers at
 * their own limit could hold 10,000 x 1 MiB. */
#define LIMIT_QUEUE_TOTAL_BYTES (256L * 1024 * 1024)

/* Bytes the database write queue may hold (store.h): what rows waiting for
 * the database (down, or slower than the traffic) may cost. A message row
 * takes about 500 bytes, so this holds about 130,000 rows: ten minutes of
 * auto posts from 1,000 sessions, a minute at 10,000. When it is full, posts
 * are refused with UNAVAILABLE until the log catches up; nothing queued is
 * dropped. */
#define LIMIT_STORE_QUEUE_BYTES ((size_t)64 * 1024 * 1024)

#endif
