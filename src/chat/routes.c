/*
 * routes — the chat service's HTTP side: the offer that starts a session
 * (a bearer token resumes its user), health, JWKS, a room's logged
 * messages and the Prometheus text of /metrics. The routing itself, body
 * limits and the error format are http/server's.
 *
 * Threading: every handler runs on an HTTP thread; none holds a lock across
 * I/O (the store is read through its own connection for reads).
 */
#include "auth/token.h"
#include "chat/rooms_api.h"
#include "chat/service_int.h"
#include "chat/session.h"
#include "util/json_text.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/version.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A bearer token's user id and login time, or 0 after replying 401. A
 * login older than --jwt-max-age cannot be resumed, however fresh its
 * token. */
static long resume_user(chat_service *svc, const http_request *req, http_reply *reply,
                        time_t *auth_time)
{
    char err[256];
    auth_claims claims;
    time_t now = time(NULL);
    if (auth_token_verify(svc->cfg.keys, req->bearer, svc->cfg.public_url, now, &claims, err,
                          sizeof err) < 0) {
        log_info("chat", "offer from %s with a bad token: %s", req->remote, err);
        http_reply_error(reply, 401, "INVALID_TOKEN", err);
        return 0;
    }
    if (auth_claims_check_age(&claims, now, svc->cfg.jwt_max_age, err, sizeof err) < 0) {
        char q[LOG_SAFE_LEN];
        log_info("chat", "offer from %s with a token of an expired login (user %s)", req->remote,
                 log_safe(q, sizeof q, claims.sub));
        auth_claims_clear(&claims);
        http_reply_error(reply, 401, "INVALID_TOKEN", err);
        return 0;
    }
    *auth_time = claims.auth_time;
    char *end;
    long user = strtol(claims.sub, &end, 10);
    int bad = *end != '\0' || user <= 0 || user > INT32_MAX;
    auth_claims_clear(&claims);
    if (bad) {
        http_reply_error(reply, 401, "INVALID_TOKEN", "the token's subject is not a user id");
        return 0;
    }
    return user;
}

/* A message id given as a query parameter (since, before): 1 with *out set
 * when `text` is a whole decimal of at least `min` and no minus sign, else 0. */
static int message_id_param(const char *text, long long min, long long *out)
{
    char *end;
    *out = strtoll(text, &end, 10);
    return end != text && *end == '\0' && *out >= min && text[0] != '-';
}

static void http_offer(void *app, const http_request *req, http_reply *reply)
{
    chat_service *svc = app;
    const char *room = offer_room(req, reply);
    if (room == NULL)
        return;
    /* Admission first: the rate per address and the caps are cheaper than
     * the token's signature check they protect. */
    if (!offer_admit(svc->slots, req, reply))
        return;
    long resume = 0;
    time_t auth_time = 0;
    long long since = -1;
    if (req->since) {
        if (!message_id_param(req->since, 0, &since)) {
            offer_admit_cancel(svc->slots);
            http_reply_error(reply, 400, "BAD_REQUEST", "since must be a message id (0 or more)");
            return;
        }
    }
    if (req->bearer) {
        resume = resume_user(svc, req, reply, &auth_time);
        if (resume == 0) {
            offer_admit_cancel(svc->slots);
            return;
        }
    } else if (!jp_ready(svc->cfg.api)) {
        offer_admit_cancel(svc->slots);
        http_reply_error(reply, 503, "UNAVAILABLE",
                         "the user directory (JSONPlaceholder) is not reachable yet; try again "
                         "shortly");
        return;
    }
    /* A room's pin after the token: a stranger's wrong pins cost a slow
     * hash each, bounded by the offer rate above and auth/secret.h's two
     * at once. */
    if (!chat_room_pin_check(svc, room, req->pin, reply)) {
        offer_admit_cancel(svc->slots);
        return;
    }
    /* The room is held (made, and its history read from the log, off the
     * event loops and outside the rooms lock) only for an offer admitted
     * and parsed; the session gives the hold back when it ends. */
    int held = chat_rooms_hold(svc->rooms, room);
    if (held != 0) {
        offer_admit_cancel(svc->slots);
        if (held == CHAT_ROOMS_FULL)
            http_reply_error(reply, 503, "AT_CAPACITY", "the server is at its room limit");
        else
            http_reply_error(reply, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    chat_session *s = chat_session_new(svc, room, req->remote, resume);
    if (s == NULL) {
        chat_rooms_release(svc->rooms, room);
        offer_admit_cancel(svc->slots);
        http_reply_error(reply, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    chat_session_resume_login(s, auth_time);
    if (since >= 0)
        chat_session_catch_up(s, (int64_t)since);
    rtc_peer_config pc = {.loops = svc->cfg.loops,
                          .ice_addresses = (const char *const *)svc->cfg.ice_addresses,
                          .cb = &chat_session_callbacks,
                          .user = s};
    rtc_peer *p = offer_answer(svc->slots, &pc, req, reply, "chat");
    if (p == NULL) { /* no on_close will come: the hold is given back here */
        chat_session_discard(s);
        chat_rooms_release(svc->rooms, room);
        return;
    }
    log_info("chat", "session %s created for %s in %s%s", rtc_peer_id(p), req->remote, room,
             resume ? " (resuming a token)" : "");
    /* The user is identified while ICE, DTLS and SCTP are set up; the
     * session may have ended already (it holds its own reference here). */
    chat_session_start(s, p);
    rtc_peer_unref(p);
}

static void http_health(void *app, http_reply *reply)
{
    chat_service *svc = app;
    store_stats st;
    store_get_stats(svc->cfg.store, &st);
    int api = jp_up(svc->cfg.api);
    /* A full write queue (posts refused until the log catches up) says
     * "degraded" whether the database is down or only slow. */
    int db_ok = st.db_up && !st.queue_full;
    const char *db = st.queue_full ? "degraded" : st.db_up ? "ok" : "down";
    /* On a cluster, NATS is a part too: posts are refused without it. */
    int cl = svc->link == NULL || cluster_up(chat_link_cluster(svc->link));
    int ok = db_ok && api && cl;
    char buf[224]; /* version.h: at most 64 bytes, no escaping needed */
    snprintf(buf, sizeof buf,
             "{\"status\":\"%s\",\"database\":\"%s\",\"api\":\"%s\"%s%s,\"version\":\"%s\"}",
             ok ? "ok" : "degraded", db, api ? "ok" : "down", svc->link ? ",\"cluster\":" : "",
             svc->link ? (cl ? "\"ok\"" : "\"down\"") : "", chatd_version);
    http_reply_json(reply, ok ? 200 : 503, mem_strdup(buf));
}

/* DELETE /api/rtc/ID: this node's peer, or on a cluster whichever node
 * holds it (asking the others costs a wait, so it counts as a costly
 * request of the address). */
static void http_rtc_delete(void *app, const http_request *req, const char *id, http_reply *reply)
{
    chat_service *svc = app;
    offer_http_delete(app, req, id, reply);
    if (svc->link == NULL || reply->status != 404 || strlen(id) > 64)
        return;
    http_reply asked = {0};
    if (!chat_costly_admit(svc, req, &asked)) {
        mem_free(reply->body);
        *reply = asked;
        return;
    }
    int rc = cluster_peer_delete(chat_link_cluster(svc->link), id);
    if (rc == 0)
        return; /* the 404 stands */
    mem_free(reply->body);
    *reply = (http_reply){0};
    if (rc > 0) {
        reply->status = 204;
        log_info("chat", "session %s ended by DELETE from %s, on another node", id, req->remote);
    } else {
        http_reply_error(reply, 503, "UNAVAILABLE",
                         rc == -2 ? "other nodes are being asked already; try again"
                                  : "the cluster is unreachable; try again");
        reply->retry_after = 1;
    }
}

static void http_jwks(void *app, http_reply *reply)
{
    chat_service *svc = app;
    char *jwks = auth_keys_jwks_json(svc->cfg.keys);
    if (jwks == NULL) {
        http_reply_error(reply, 500, "INTERNAL", "out of memory");
        return;
    }
    http_reply_json(reply, 200, jwks);
}

/* {"messages":[...]} of the newest rows (rows oldest first) whose text
 * fits in `cap` bytes, newest last, with "more":true when older rows were
 * left out: each row is serialized once, newest first, until the next one
 * would pass the cap. NULL when out of memory. */
static char *messages_body(const store_message *rows, size_t n, size_t cap)
{
    static const char head[] = "{\"messages\":[", tail[] = "]}", more[] = "],\"more\":true}";
    char **parts = n ? mem_calloc(n, sizeof *parts) : NULL;
    if (n && parts == NULL)
        return NULL;
    size_t total = sizeof head + sizeof more, first = n;
    int failed = 0;
    while (first > 0) {
        json_t *o = chat_row_object(&rows[first - 1]);
        char *t = o ? json_text_compact(o) : NULL;
        json_decref(o);
        if (t == NULL) {
            failed = 1;
            break;
        }
        size_t len = strlen(t) + 1; /* and a comma */
        if (total + len > cap && first < n) {
            mem_free(t);
            break;
        }
        parts[--first] = t;
        total += len;
    }
    char *out = failed ? NULL : mem_alloc(total + 1);
    if (out) {
        size_t at = 0;
        memcpy(out, head, sizeof head - 1);
        at += sizeof head - 1;
        for (size_t i = first; i < n; i++) {
            if (i > first)
                out[at++] = ',';
            size_t l = strlen(parts[i]);
            memcpy(out + at, parts[i], l);
            at += l;
        }
        const char *end = first > 0 ? more : tail;
        memcpy(out + at, end, strlen(end) + 1);
    }
    for (size_t i = first; i < n; i++)
        mem_free(parts[i]);
    mem_free(parts);
    return out;
}

/* Bytes of a search's words (?q=). */
#define SEARCH_MAX_BYTES 256

static void http_room_messages(void *app, const char *room_name, const http_request *req,
                               http_reply *reply)
{
    chat_service *svc = app;
    if (!offer_room_name_valid(room_name)) {
        http_reply_error(reply, 400, "BAD_REQUEST", "bad room name");
        return;
    }
    /* A room's pin guards what was said in it too. */
    if (!chat_room_pin_check(svc, room_name, req->pin, reply))
        return;
    long limit = 50;
    long long before = 0;
    char *end;
    if (req->limit) {
        limit = strtol(req->limit, &end, 10);
        if (*end || limit < 1 || limit > STORE_RECENT_MAX) {
            http_reply_error(reply, 400, "BAD_REQUEST", "limit must be 1..1000");
            return;
        }
    }
    if (req->before) {
        if (!message_id_param(req->before, 1, &before)) {
            http_reply_error(reply, 400, "BAD_REQUEST", "before must be a message id");
            return;
        }
    }
    store_message *msgs = NULL;
    size_t n = 0;
    char err[256];
    if (req->q && strlen(req->q) > SEARCH_MAX_BYTES) {
        http_reply_error(reply, 400, "BAD_REQUEST", "q is longer than 256 bytes");
        return;
    }
    if (req->q && store_search_words(req->q, NULL, NULL) > STORE_SEARCH_WORDS_MAX) {
        http_reply_error(reply, 400, "BAD_REQUEST", "q holds more than 32 words");
        return;
    }
    if (req->q && !chat_costly_admit(svc, req, reply))
        return;
    int rc = req->q ? store_search_messages(svc->cfg.store, room_name, req->q, (int)limit, before,
                                            &msgs, &n, err, sizeof err)
                    : store_recent_messages(svc->cfg.store, room_name, (int)limit, before, &msgs,
                                            &n, err, sizeof err);
    if (rc < 0) {
        http_reply_error(reply, 503, "UNAVAILABLE", err);
        return;
    }
    char *text = messages_body(msgs, n, LIMIT_HTTP_RESPONSE_BYTES);
    store_messages_free(msgs);
    if (text == NULL) {
        http_reply_error(reply, 500, "INTERNAL", "out of memory");
        return;
    }
    http_reply_json(reply, 200, text);
}

static void http_metrics(void *app, http_reply *reply)
{
    chat_service *svc = app;
    store_stats st;
    store_get_stats(svc->cfg.store, &st);
    jp_stats js;
    jp_get_stats(svc->cfg.api, &js);
    GString *m = g_string_new(NULL);
#define GAUGE(name, help, fmt, v)                                                                  \
    g_string_append_printf(                                                                        \
        m, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " " fmt "\n", v)
#define COUNTER(name, help, v)                                                                     \
    g_string_append_printf(m, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %lu\n", \
                           (unsigned long)(v))
    offer_metrics_gauges(m, offer_slots_used(svc->slots));
    offer_metrics_admission(m, svc->slots);
    GAUGE("chatd_rooms", "Rooms in memory.", "%ld", chat_rooms_count(svc->rooms));
    g_string_append_printf(m,
                           "# HELP chatd_messages_total Messages delivered.\n"
                           "# TYPE chatd_messages_total counter\n"
                           "chatd_messages_total{source=\"auto\"} %lu\n"
                           "chatd_messages_total{source=\"manual\"} %lu\n",
                           atomic_load(&svc->messages_auto), atomic_load(&svc->messages_manual));
    COUNTER("chatd_posts_refused_total", "Manual posts refused (token, rate).",
            atomic_load(&svc->posts_refused));
    COUNTER("chatd_messages_over_budget_total",
            "Client messages dropped unread over the session budget (20/s, burst 40).",
            atomic_load(&svc->messages_over_budget));
    COUNTER("chatd_draws_total", "User draws.", atomic_load(&svc->draws));
    COUNTER("chatd_whispers_total", "Private messages delivered.", atomic_load(&svc->whispers));
    COUNTER("chatd_announcements_total", "Announcements delivered.",
            atomic_load(&svc->announcements));
    COUNTER("chatd_kicks_total", "Kicks that closed sessions.", atomic_load(&svc->kicks));
    COUNTER("chatd_rooms_deleted_total", "Rooms deleted.", atomic_load(&svc->rooms_closed));
    GAUGE("chatd_rooms_created", "Created rooms (the rooms table).", "%ld",
          chat_registry_count(svc->registry));
    COUNTER("chatd_draws_failed_total", "User fetches that failed.",
            atomic_load(&svc->draws_failed));
    COUNTER("chatd_api_errors_total", "Failed JSONPlaceholder calls.",
            atomic_load(&svc->api_errors));
    COUNTER("chatd_api_requests_total", "JSONPlaceholder calls.", js.requests);
    GAUGE("chatd_api_up", "JSONPlaceholder reachable.", "%d", jp_up(svc->cfg.api));
    GAUGE("chatd_db_up", "Database reachable.", "%d", st.db_up);
    GAUGE("chatd_db_queue_depth", "Log rows waiting for the writer.", "%zu", st.queue_depth);
    GAUGE("chatd_db_queue_bytes", "Bytes of log rows waiting (budget 64 MiB).", "%zu",
          st.queue_bytes);
    COUNTER("chatd_db_rows_written_total", "Log rows committed.", st.rows_written);
    GAUGE("chatd_db_write_latency_seconds", "Latency of the last committed batch.", "%.6f",
          st.last_batch_us / 1e6);
    GAUGE("chatd_db_write_latency_avg_seconds", "Mean batch latency.", "%.6f",
          st.avg_batch_us / 1e6);
    if (svc->link) {
        cluster *cl = chat_link_cluster(svc->link);
        cluster_stats cs;
        cluster_get_stats(cl, &cs);
        GAUGE("chatd_cluster_up", "Connected to NATS.", "%d", cluster_up(cl));
        GAUGE("chatd_cluster_nodes", "Nodes heartbeating, this one included.", "%ld",
              cluster_nodes_alive(cl));
        COUNTER("chatd_cluster_published_total", "Events this node stored in the stream.",
                cs.published);
        COUNTER("chatd_cluster_received_total", "Events this node applied from the stream.",
                cs.received);
        COUNTER("chatd_cluster_refused_total", "Events refused at once (NATS unreachable).",
                cs.refused);
        COUNTER("chatd_cluster_failed_total", "Events the stream did not acknowledge.", cs.failed);
    }
#undef GAUGE
#undef COUNTER
    offer_metrics_reply(reply, m);
}

const http_app chat_http_app = {
    .rtc_offer = http_offer,
    .rtc_delete = http_rtc_delete,
    .health = http_health,
    .jwks = http_jwks,
    .room_messages = http_room_messages,
    .metrics = http_metrics,
    .rooms = chat_http_rooms,
    .announce = chat_http_announce,
};
