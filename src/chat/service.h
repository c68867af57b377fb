/*
 * service — the chat product on top of the transport: sessions, the user
 * draw, identity tokens, rooms, auto and manual posts, the log. This
 * header is what chatd's main sees; the work is in session.c (a session's
 * life), room.c (rooms, history, fan-out) and routes.c (HTTP), which share
 * service_int.h.
 *
 * A session is one peer connection. Its life:
 *   POST /api/rtc (optional bearer token) -> answered: draw a user from
 *   JSONPlaceholder (or resume the token's user) -> user row committed,
 *   while the channel is set up -> channel open and user ready: welcome +
 *   history -> presence join -> messages -> presence leave.
 * A failed draw is told to the client (USER_FETCH_FAILED with retry_in_ms;
 * held until the channel opens if it failed before that), logged
 * (api_errors) and retried with backoff; after the last attempt the client
 * gets fatal:true and the channel closes.
 *
 * Threading: HTTP callbacks run on libmicrohttpd's threads; everything of a
 * session runs on its peer's event loop. Work finished on the API client's
 * thread or the store's writer thread is posted back to that loop. Rooms
 * fan out through the bus (bus.h), serializing each message once.
 *
 * Ownership: everything in chat_config is borrowed; the service owns its
 * sessions, rooms and bus, and frees them in chat_service_free (after
 * chat_service_close_all and the event loops have stopped).
 */
#ifndef CHATD_SERVICE_H
#define CHATD_SERVICE_H

#include "api/jsonplaceholder.h"
#include "app/offer.h"
#include "auth/keys.h"
#include "http/server.h"
#include "rtc/peer.h"
#include "store/store.h"
#include "util/rng.h"

typedef struct chat_service chat_service;

typedef struct {
    rtc_loops *loops;
    char *const *ice_addresses; /* NULL-terminated, or NULL */
    long max_peers;
    const char *public_url; /* also the JWT issuer */
    long jwt_ttl;
    long jwt_max_age; /* a login's total age across resumes; 0 = no limit */
    long auto_post_max_ms;
    int draw_attempts;
    long draw_backoff_ms;
    long post_rate; /* manual posts/s per user; 0 = 1 (the contract's limit) */
    /* admission control (issue 9): offer rate, pending peers, setup
     * timeout (its max_peers, when 0, is the one above); rooms at once
     * (0 = CHAT_DEFAULT_MAX_ROOMS) */
    offer_limits admission;
    long max_rooms;
    const char *admin_key; /* --admin-key; NULL or "" = none (issue 11) */
    store *store;
    jp_client *api; /* may be NULL at creation: see chat_service_set_api */
    auth_keys *keys;
    rng *rng;
} chat_config;

/* Everything in cfg is borrowed and must outlive the service. */
chat_service *chat_service_new(const chat_config *cfg);
/* Closes every session and waits up to timeout_ms for them to end. */
void chat_service_close_all(chat_service *svc, int timeout_ms);
void chat_service_free(chat_service *svc);

/* The API client is created after the service (its error sink is the
 * service); hand it over before the first request. */
void chat_service_set_api(chat_service *svc, jp_client *api);

/* Joins the cluster of NATS servers `urls` as node `node_id` (issue 12;
 * chat/link.h): from then on rooms span every node. Before serving. 0, or
 * -1 with err set. The service leaves it in chat_service_free. */
int chat_service_join_cluster(chat_service *svc, const char *urls, const char *node_id, char *err,
                              size_t errlen);

/* jp_options.on_error: writes each failed JSONPlaceholder call to api_errors. */
void chat_service_api_error(void *svc, const char *method, const char *url, int status,
                            const char *error);

extern const http_app chat_http_app;

#endif
