/*
 * relay — the transport-stage application: every text message a peer
 * sends is relayed to every other connected peer of its room, through the
 * bus. It exists so the transport can be tested end to end by several
 * clients before (and beside) the chat protocol; chatd runs it with
 * --mode relay.
 *
 * Threading: the HTTP entry points run on HTTP threads; peer callbacks on
 * event loops. The session count is app/offer's slots (one mutex).
 *
 * Ownership: a relay session belongs to its peer's callbacks from the
 * answered offer until on_close, which frees it; the relay is the caller's
 * (relay_free, after relay_close_all).
 */
#ifndef CHATD_RELAY_H
#define CHATD_RELAY_H

#include "app/offer.h"
#include "http/server.h"
#include "rtc/peer.h"

typedef struct relay relay;

relay *relay_new(rtc_loops *loops, char *const *ice_addresses, const offer_limits *limits);
void relay_free(relay *r);
/* Closes every session and waits (up to timeout_ms) for them to end. */
void relay_close_all(relay *r, int timeout_ms);
long relay_sessions(relay *r);
/* The routes this application answers. */
extern const http_app relay_http_app;

#endif
