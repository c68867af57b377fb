/*
 * service_int — what the chat service's own files share (service.c,
 * session.c, routes.c); nothing outside src/chat includes it. The public
 * face is service.h.
 *
 * Threading: cfg is read-only after chat_service_new; the counters are
 * atomics; `users` is under users_lock, held for no I/O.
 */
#ifndef CHATD_CHAT_SERVICE_INT_H
#define CHATD_CHAT_SERVICE_INT_H

#include "app/addrrate.h"
#include "app/offer.h"
#include "auth/cache.h"
#include "chat/bus.h"
#include "chat/link.h"
#include "chat/ratelimit.h"
#include "chat/registry.h"
#include "chat/room.h"
#include "chat/service.h"

#include <glib.h>
#include <stdatomic.h>

struct chat_service {
    chat_config cfg;
    chat_bus *bus;
    chat_rooms *rooms;
    chat_registry *registry; /* the created rooms (version 2) */
    chat_link *link;         /* the cluster (issue 12); NULL: one node */
    /* Catch-up reads (session.c): a fixed pool of CHAT_READERS threads, so
     * the event loops never wait on the database. Its queue holds at most
     * one job per session, so --max-peers bounds it. */
    GThreadPool *readers;
    /* Requests that cost a slow hash or a full-text search (the rooms
     * API's secret, pin and admin-key checks, ?q=): --offer-rate a second
     * per remote address, burst 4x, in a bucket of their own (429 past it). */
    addr_rate *costly;
    offer_slots *slots; /* sessions against --max-peers */
    auth_cache *tokens; /* verified tokens, so a post costs no ECDSA verify */
    ratelimit *posts;   /* manual posts per user */
    GMutex users_lock;
    GHashTable *users; /* JSONPlaceholder id -> json_t* user (for a resume) */
    atomic_ulong messages_auto, messages_manual, draws, draws_failed, api_errors;
    atomic_ulong posts_refused;
    atomic_ulong messages_over_budget; /* client messages over the session budget */
    atomic_ulong whispers, announcements, kicks, rooms_closed;
};

#define CHAT_READERS 2
/* Takes one costly request of req's address: 1, or 0 after answering 429
 * RATE_LIMITED with Retry-After. */
int chat_costly_admit(chat_service *svc, const http_request *req, http_reply *r);

/* USER of a user id, from the users this chatd has seen (empty names for
 * one it has not). A new reference; never NULL but out of memory. */
json_t *chat_service_user_summary(chat_service *svc, long user_id);

#endif
