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

#include "app/offer.h"
#include "auth/cache.h"
#include "chat/bus.h"
#include "chat/ratelimit.h"
#include "chat/room.h"
#include "chat/service.h"

#include <glib.h>
#include <stdatomic.h>

struct chat_service {
    chat_config cfg;
    chat_bus *bus;
    chat_rooms *rooms;
    offer_slots *slots; /* sessions against --max-peers */
    auth_cache *tokens; /* verified tokens, so a post costs no ECDSA verify */
    ratelimit *posts;   /* manual posts per user */
    GMutex users_lock;
    GHashTable *users; /* JSONPlaceholder id -> json_t* user (for a resume) */
    atomic_ulong messages_auto, messages_manual, draws, draws_failed, api_errors;
    atomic_ulong posts_refused;
    atomic_ulong messages_over_budget; /* client messages over the session budget */
};

#endif
