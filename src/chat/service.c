/*
 * service — see service.h. The pieces live beside it: session.c (a
 * session's life), room.c (rooms, history, fan-out), routes.c (HTTP).
 */
#include "chat/service_int.h"

#include "chat/protocol.h"
#include "chat/session.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/mem.h"

void chat_service_api_error(void *arg, const char *method, const char *url, int status,
                            const char *error)
{
    chat_service *svc = arg;
    /* api/ has logged the failure; here it is counted and recorded. */
    atomic_fetch_add(&svc->api_errors, 1);
    store_api_error(svc->cfg.store, method, url, status, error, NULL);
}

int chat_costly_admit(chat_service *svc, const http_request *req, http_reply *r)
{
    if (req->remote_addr == NULL) /* an in-process call (tests) */
        return 1;
    int wait = addr_rate_take(svc->costly, req->remote_addr, clock_mono_us());
    if (wait == 0)
        return 1;
    http_reply_error(r, 429, "RATE_LIMITED", "too many requests of this kind; slow down");
    r->retry_after = wait;
    return 0;
}

json_t *chat_service_user_summary(chat_service *svc, long user_id)
{
    g_mutex_lock(&svc->users_lock);
    json_t *user = g_hash_table_lookup(svc->users, GINT_TO_POINTER(user_id));
    json_t *summary = user ? proto_user_summary(user) : NULL;
    g_mutex_unlock(&svc->users_lock);
    if (summary == NULL) /* a recipient logged before a restart */
        summary = json_pack("{s:I,s:s,s:s}", "id", (json_int_t)user_id, "name", "", "username", "");
    return summary;
}

void chat_service_set_api(chat_service *svc, jp_client *api) { svc->cfg.api = api; }

int chat_service_join_cluster(chat_service *svc, const char *urls, const char *node_id, char *err,
                              size_t errlen)
{
    svc->link = chat_link_open(svc, urls, node_id, err, errlen);
    return svc->link ? 0 : -1;
}

chat_service *chat_service_new(const chat_config *cfg)
{
    chat_service *svc = mem_calloc(1, sizeof *svc);
    if (svc == NULL)
        return NULL;
    svc->cfg = *cfg;
    g_mutex_init(&svc->users_lock);
    svc->users =
        g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, (GDestroyNotify)json_decref);
    svc->bus = chat_bus_new();
    svc->rooms = svc->bus ? chat_rooms_new(cfg->store, svc->bus, cfg->max_rooms) : NULL;
    svc->registry = chat_registry_new(cfg->store, cfg->max_rooms);
    /* The rooms API's slow checks and searches share --offer-rate's figures
     * (another bucket): one knob for what one address may make chatd do. */
    double costly = cfg->admission.offer_rate > 0 ? (double)cfg->admission.offer_rate
                                                  : (double)OFFER_DEFAULT_RATE;
    svc->costly = addr_rate_new(costly, 4 * costly);
    svc->readers = g_thread_pool_new(chat_session_catch_up_read, NULL, CHAT_READERS, FALSE, NULL);
    char err[256];
    if (svc->registry && chat_registry_load(svc->registry, err, sizeof err) != 0) {
        log_error("chat", "cannot read the rooms: %s", err);
        chat_service_free(svc);
        return NULL;
    }
    offer_limits limits = cfg->admission;
    if (limits.max_peers <= 0)
        limits.max_peers = cfg->max_peers;
    svc->slots = offer_slots_new(&limits);
    svc->tokens = auth_cache_new(4096);
    /* The contract: a burst of 5, then 1 post/s per user. --post-rate
     * raises it (the bench needs more than 10 users' worth of posts). */
    double rate = cfg->post_rate > 0 ? (double)cfg->post_rate : 1.0;
    svc->posts = ratelimit_new(rate, rate > 5.0 ? rate : 5.0);
    if (svc->rooms == NULL || svc->costly == NULL || svc->registry == NULL ||
        svc->readers == NULL || svc->slots == NULL || svc->tokens == NULL || svc->posts == NULL) {
        chat_service_free(svc);
        return NULL;
    }
    return svc;
}

void chat_service_close_all(chat_service *svc, int timeout_ms)
{
    offer_slots_close_all(svc->slots, timeout_ms);
    /* Nothing from the cluster reaches the rooms, sessions or peers any
     * more: the event loops and RTC stop before chat_service_free. */
    if (svc->link)
        cluster_stop(chat_link_cluster(svc->link));
    /* Catch-up reads still running post to loops that are still up; the
     * queued ones of ended sessions return at once. */
    GThreadPool *readers = g_atomic_pointer_exchange(&svc->readers, NULL);
    if (readers)
        g_thread_pool_free(readers, FALSE, TRUE);
}

void chat_service_free(chat_service *svc)
{
    if (svc == NULL)
        return;
    if (svc->readers)
        g_thread_pool_free(svc->readers, FALSE, TRUE);
    /* no event arrives after this: the rooms can go */
    chat_link_close(svc->link);
    chat_registry_free(svc->registry);
    addr_rate_free(svc->costly);
    g_hash_table_destroy(svc->users);
    ratelimit_free(svc->posts);
    auth_cache_free(svc->tokens);
    offer_slots_free(svc->slots);
    chat_rooms_free(svc->rooms);
    chat_bus_free(svc->bus);
    g_mutex_clear(&svc->users_lock);
    mem_free(svc);
}
