/*
 * service — see service.h.
 *
 * Reference counting: a session is shared by its peer's callbacks, by
 * requests in flight on the API and store threads, and by timers. Each of
 * those holds one reference; the session is freed when the last goes. A
 * session never touches its peer after on_close; work that arrives later
 * finds state CLOSED and only drops its reference.
 */
#include "chat/service.h"

#include "auth/cache.h"
#include "auth/token.h"
#include "chat/bus.h"
#include "chat/draw.h"
#include "chat/protocol.h"
#include "chat/ratelimit.h"
#include "rtc/peer.h"
#include "rtc/sctp.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HISTORY_SIZE 50
#define DEFAULT_ROOM "lobby"

typedef struct room {
    char name[64];
    GPtrArray *online;  /* session* (joined) */
    json_t *history;    /* array of MESSAGE objects, oldest first, <= HISTORY_SIZE */
} room;

struct chat_service {
    chat_config cfg;
    chat_bus *bus;
    auth_cache *tokens;
    ratelimit *posts;
    GMutex lock; /* rooms, users, counters below */
    GCond ended;
    GHashTable *rooms; /* name -> room* */
    GHashTable *users; /* JSONPlaceholder id -> json_t* user (cache for resume) */
    long sessions;
    atomic_ulong messages_auto, messages_manual, draws, draws_failed, api_errors;
    atomic_ulong posts_refused;
};

typedef enum { S_CONNECTING, S_IDENTIFYING, S_JOINED, S_CLOSED } session_state;

typedef struct session {
    atomic_int refs;
    chat_service *svc;
    rtc_peer *peer; /* set in on_open (loop thread), reference held */
    char id[40];
    char room[64];
    char remote[96];
    char started[32];
    session_state state;
    long resume_user; /* from a bearer token; 0 = draw */
    draw_state draw;
    int drawn_index;  /* 1-based id asked for in the current attempt */
    json_t *user;     /* the whole JSONPlaceholder user */
    json_t *summary;  /* USER */
    long user_id;
    GSource *timer;   /* draw retry or auto post */
    chat_sub *sub;
    int session_logged;
} session;

/* ---------- sessions ---------- */

static session *session_ref(session *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

static void session_unref(session *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    json_decref(s->user);
    json_decref(s->summary);
    if (s->peer)
        rtc_peer_unref(s->peer);
    mem_free(s);
}

static void drop_timer(session *s)
{
    if (s->timer) {
        g_source_destroy(s->timer);
        g_source_unref(s->timer);
        s->timer = NULL;
    }
}

static void arm_timer(session *s, long ms, GSourceFunc fn)
{
    drop_timer(s);
    s->timer = g_timeout_source_new((guint)(ms < 0 ? 0 : ms));
    g_source_set_callback(s->timer, fn, session_ref(s), (GDestroyNotify)session_unref);
    g_source_attach(s->timer, rtc_loop_context(rtc_peer_loop(s->peer)));
}

/* Sends a mem_alloc'd JSON text and frees it. */
static void send_owned(session *s, char *json)
{
    if (json == NULL)
        return;
    if (s->peer && s->state != S_CLOSED &&
        rtc_peer_send_text(s->peer, json, strlen(json)) < 0 && errno == ENOBUFS)
        rtc_peer_close(s->peer, "too slow to keep up");
    mem_free(json);
}

static void send_error(session *s, const char *code, const char *message, long retry_in_ms,
                       int fatal, const char *ref)
{
    send_owned(s, proto_build_error(code, message, retry_in_ms, fatal, ref));
}

/* Posts fn(s) to the session's loop with a reference. */
typedef struct {
    session *s;
    void (*fn)(session *, void *);
    void *data;
} posted;

static void run_posted(void *arg)
{
    posted *p = arg;
    if (p->s->state != S_CLOSED)
        p->fn(p->s, p->data);
    else if (p->data)
        json_decref(p->data); /* every posted payload here is a json_t or NULL */
    session_unref(p->s);
    mem_free(p);
}

static void post_to_loop(session *s, void (*fn)(session *, void *), void *data)
{
    posted *p = mem_alloc(sizeof *p);
    if (p == NULL) { /* out of memory: the session cannot continue */
        if (data)
            json_decref(data);
        if (s->peer)
            rtc_peer_close(s->peer, "out of memory");
        session_unref(s);
        return;
    }
    p->s = s; /* the caller's reference moves to p */
    p->fn = fn;
    p->data = data;
    rtc_loop_post(rtc_peer_loop(s->peer), run_posted, p);
}

/* ---------- rooms ---------- */

static void room_free(room *r)
{
    g_ptr_array_unref(r->online);
    json_decref(r->history);
    mem_free(r);
}

/* A logged row as a MESSAGE object (history, GET .../messages). */
static json_t *row_object(const store_message *row)
{
    proto_message m = {.id = row->id,
                       .room = row->room,
                       .source = row->source,
                       .user_id = row->user_id,
                       .user_name = row->user_name,
                       .user_username = row->user_username,
                       .text = row->body,
                       .title = row->title,
                       .post_id = row->post_id,
                       .ts = row->created_at};
    return proto_message_object(&m, NULL);
}

/* With svc->lock held. Seeds a new room's history from the log. */
static room *room_get(chat_service *svc, const char *name)
{
    room *r = g_hash_table_lookup(svc->rooms, name);
    if (r)
        return r;
    r = mem_calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->online = g_ptr_array_new();
    r->history = json_array();
    store_message *msgs = NULL;
    size_t n = 0;
    char err[256];
    if (store_recent_messages(svc->cfg.store, name, HISTORY_SIZE, 0, &msgs, &n, err,
                              sizeof err) == 0) {
        for (size_t i = 0; i < n; i++) {
            json_t *o = row_object(&msgs[i]);
            if (o)
                json_array_append_new(r->history, o);
        }
        store_messages_free(msgs);
    } else {
        log_warn("chat", "room %s: history not loaded: %s", name, err);
    }
    g_hash_table_insert(svc->rooms, r->name, r);
    return r;
}

/* ---------- identity: the draw ---------- */

static void start_identify(session *s);

static gboolean retry_draw_cb(gpointer data)
{
    session *s = data;
    if (s->timer) {
        g_source_unref(s->timer);
        s->timer = NULL;
    }
    if (s->state == S_IDENTIFYING)
        start_identify(s);
    return G_SOURCE_REMOVE;
}

static void joined(session *s, void *unused);

static void user_stored(void *arg, int ok)
{
    session *s = arg; /* writer thread */
    if (!ok) {
        log_error("chat", "session %s: user row not written; ending the session", s->id);
        if (s->peer)
            rtc_peer_close(s->peer, "database refused the user");
        session_unref(s);
        return;
    }
    post_to_loop(s, joined, NULL);
}

/* Loop thread: a user arrived (or did not). `data` is the user or NULL. */
static void identify_done(session *s, void *data)
{
    json_t *user = data;
    chat_service *svc = s->svc;
    if (s->state != S_IDENTIFYING) {
        json_decref(user);
        return;
    }
    if (user == NULL) {
        long retry = 0;
        atomic_fetch_add(&svc->draws_failed, 1);
        char msg[256];
        int fatal = draw_next(&s->draw, 1, &retry) == DRAW_FATAL;
        if (s->resume_user)
            snprintf(msg, sizeof msg, "could not fetch your user (%ld) from the directory",
                     s->resume_user);
        else
            snprintf(msg, sizeof msg,
                     "could not fetch a random user (draw %d of %d asked for user %d, which the "
                     "directory does not have)",
                     s->draw.attempt, s->draw.max_attempts, s->drawn_index);
        if (fatal) {
            log_warn("chat", "session %s: %s; giving up after %d attempts", s->id, msg,
                     s->draw.attempt);
            send_error(s, "USER_FETCH_FAILED", msg, -1, 1, NULL);
            /* The channel closes once the error is delivered; on_close ends
             * the session. No timer is armed, so no further draw happens. */
            rtc_peer_close_gracefully(s->peer);
            return;
        }
        log_info("chat", "session %s: %s; retrying in %ld ms", s->id, msg, retry);
        send_error(s, "USER_FETCH_FAILED", msg, retry, 0, NULL);
        arm_timer(s, retry, retry_draw_cb);
        return;
    }
    json_decref(s->user);
    s->user = user;
    s->user_id = (long)json_integer_value(json_object_get(user, "id"));
    json_decref(s->summary);
    s->summary = proto_user_summary(user);
    if (s->summary == NULL) {
        rtc_peer_close(s->peer, "out of memory");
        return;
    }
    g_mutex_lock(&svc->lock);
    json_t *cached = g_hash_table_lookup(svc->users, GINT_TO_POINTER(s->user_id));
    if (cached == NULL || !json_equal(cached, user))
        g_hash_table_insert(svc->users, GINT_TO_POINTER(s->user_id), json_incref(user));
    g_mutex_unlock(&svc->lock);

    char *profile = json_dumps(user, JSON_COMPACT);
    store_user row = {.id = s->user_id,
                      .name = json_string_value(json_object_get(user, "name")),
                      .username = json_string_value(json_object_get(user, "username")),
                      .email = json_string_value(json_object_get(user, "email")),
                      .profile = profile};
    /* The welcome waits for the row: a message is delivered only after its
     * user row exists. */
    if (profile == NULL || store_put_user(svc->cfg.store, &row, user_stored, session_ref(s)) < 0) {
        session_unref(s);
        send_error(s, "UNAVAILABLE", "the server cannot record users right now", -1, 1, NULL);
        rtc_peer_close_gracefully(s->peer);
    }
    mem_free(profile);
}

/* API thread: a fetch finished. */
static void user_fetched(void *arg, const jp_result *r)
{
    session *s = arg;
    json_t *user = r->ok && !r->cancelled ? json_incref(r->user) : NULL;
    if (r->cancelled) {
        session_unref(s);
        return;
    }
    post_to_loop(s, identify_done, user);
}

static void start_identify(session *s)
{
    chat_service *svc = s->svc;
    char err[256];
    int id;
    if (s->resume_user) {
        g_mutex_lock(&svc->lock);
        json_t *cached = g_hash_table_lookup(svc->users, GINT_TO_POINTER(s->resume_user));
        if (cached)
            json_incref(cached);
        g_mutex_unlock(&svc->lock);
        if (cached) {
            identify_done(s, cached);
            return;
        }
        id = (int)s->resume_user;
    } else {
        int n = jp_user_count(svc->cfg.api);
        if (n < 1) {
            send_error(s, "UNAVAILABLE", "the user directory is not reachable; try again later",
                       -1, 1, NULL);
            rtc_peer_close_gracefully(s->peer);
            return;
        }
        /* k uniform in 0..N: k = N asks for a user that does not exist. */
        id = draw_pick(svc->cfg.rng, n) + 1;
        atomic_fetch_add(&svc->draws, 1);
    }
    s->drawn_index = id;
    if (jp_fetch_user(svc->cfg.api, id, user_fetched, session_ref(s), err, sizeof err) < 0) {
        session_unref(s);
        identify_done(s, NULL);
    }
}

/* ---------- messages ---------- */

static void deliver(void *subscriber, chat_frame *f)
{
    session *s = subscriber;
    if (rtc_peer_send_text(s->peer, chat_frame_data(f), chat_frame_len(f)) < 0 &&
        errno == ENOBUFS)
        rtc_peer_close(s->peer, "too slow to keep up");
}

/* Logs, records in the room's history and fans out one message. */
static void publish_message(session *s, int manual, const char *text, const char *title,
                            long post_id, const char *ref)
{
    const char *source = manual ? "manual" : "auto";
    chat_service *svc = s->svc;
    char ts[32];
    proto_now(ts, sizeof ts);
    proto_message m = {.id = store_next_message_id(svc->cfg.store),
                       .room = s->room,
                       .source = source,
                       .user_id = s->user_id,
                       .user_name = json_string_value(json_object_get(s->summary, "name")),
                       .user_username = json_string_value(json_object_get(s->summary, "username")),
                       .text = text,
                       .title = title,
                       .post_id = post_id,
                       .ts = ts};
    store_message row = {.id = m.id,
                         .room = m.room,
                         .user_id = m.user_id,
                         .source = source,
                         .post_id = post_id,
                         .title = title,
                         .body = text,
                         .created_at = ts,
                         .user_name = m.user_name,
                         .user_username = m.user_username};
    if (store_put_message(svc->cfg.store, &row) < 0) {
        log_error("chat", "session %s: message not queued for the log; not delivered", s->id);
        send_error(s, "UNAVAILABLE", "the message could not be recorded", -1, 0, ref);
        return;
    }
    json_t *obj = proto_message_object(&m, NULL);
    char *text_json = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    chat_frame *f = text_json ? chat_frame_take(text_json, strlen(text_json)) : NULL;
    if (f == NULL) {
        json_decref(obj);
        return;
    }
    g_mutex_lock(&svc->lock);
    room *r = g_hash_table_lookup(svc->rooms, s->room);
    if (r) {
        json_array_append(r->history, obj);
        while (json_array_size(r->history) > HISTORY_SIZE)
            json_array_remove(r->history, 0);
    }
    g_mutex_unlock(&svc->lock);
    json_decref(obj);
    /* Counted before it is delivered, so /metrics never lags a receiver. */
    atomic_fetch_add(manual ? &svc->messages_manual : &svc->messages_auto, 1);
    if (ref) {
        /* The sender alone gets its ref back; everyone else shares one frame. */
        chat_bus_publish(svc->bus, s->room, f, s);
        send_owned(s, proto_build_message(&m, ref));
    } else {
        chat_bus_publish(svc->bus, s->room, f, NULL);
    }
    chat_frame_unref(f);
}

static gboolean auto_post_cb(gpointer data)
{
    session *s = data;
    chat_service *svc = s->svc;
    if (s->timer) {
        g_source_unref(s->timer);
        s->timer = NULL;
    }
    if (s->state != S_JOINED)
        return G_SOURCE_REMOVE;
    jp_post post;
    if (jp_random_post(svc->cfg.api, rng_next(svc->cfg.rng), &post) == 0) {
        publish_message(s, 0, post.body, post.title, post.id, NULL);
        jp_post_clear(&post);
    }
    arm_timer(s, (long)rng_range(svc->cfg.rng, 0, svc->cfg.auto_post_max_ms), auto_post_cb);
    return G_SOURCE_REMOVE;
}

/* Loop thread: the user row exists; welcome, history, presence. */
static void joined(session *s, void *unused)
{
    (void)unused;
    chat_service *svc = s->svc;
    if (s->state != S_IDENTIFYING)
        return;
    char sub[32], err[256];
    snprintf(sub, sizeof sub, "%ld", s->user_id);
    auth_claims_in claims = {.iss = svc->cfg.public_url,
                             .sub = sub,
                             .name = json_string_value(json_object_get(s->user, "name")),
                             .preferred_username =
                                 json_string_value(json_object_get(s->user, "username")),
                             .email = json_string_value(json_object_get(s->user, "email")),
                             .ttl_seconds = svc->cfg.jwt_ttl,
                             .now = time(NULL)};
    char *token = NULL;
    if (auth_token_issue(svc->cfg.keys, &claims, &token, err, sizeof err) < 0) {
        log_error("chat", "session %s: cannot issue a token: %s", s->id, err);
        send_error(s, "UNAVAILABLE", "the server cannot issue a token right now", -1, 1, NULL);
        rtc_peer_close_gracefully(s->peer);
        return;
    }
    g_mutex_lock(&svc->lock);
    room *r = room_get(svc, s->room);
    json_t *online = json_array();
    for (guint i = 0; r && i < r->online->len; i++) {
        session *o = g_ptr_array_index(r->online, i);
        json_array_append(online, o->summary);
    }
    json_array_append(online, s->summary);
    char *welcome = proto_build_welcome(s->id, s->room, token, s->user, online);
    char *history = r ? proto_build_history(r->history) : NULL;
    if (r)
        g_ptr_array_add(r->online, s);
    s->state = S_JOINED;
    s->sub = chat_bus_subscribe(svc->bus, s->room, deliver, s);
    g_mutex_unlock(&svc->lock);
    json_decref(online);
    mem_free(token);
    send_owned(s, welcome);
    send_owned(s, history);

    char *presence = proto_build_presence("join", s->summary);
    if (presence) {
        chat_frame *f = chat_frame_take(presence, strlen(presence));
        if (f) {
            chat_bus_publish(svc->bus, s->room, f, s);
            chat_frame_unref(f);
        }
    }
    store_session_start(svc->cfg.store, s->id, s->user_id, s->remote, s->started);
    s->session_logged = 1;
    log_info("chat", "session %s: %s (user %ld) joined %s", s->id,
             json_string_value(json_object_get(s->summary, "name")), s->user_id, s->room);
    if (svc->cfg.auto_post_max_ms >= 0)
        arm_timer(s, (long)rng_range(svc->cfg.rng, 0, svc->cfg.auto_post_max_ms), auto_post_cb);
}

static void handle_post(session *s, proto_request *req)
{
    chat_service *svc = s->svc;
    char err[256];
    if (s->state != S_JOINED) {
        send_error(s, "BAD_REQUEST", "no user yet: wait for the welcome", -1, 0, req->ref);
        return;
    }
    auth_claims claims;
    if (auth_cache_verify(svc->tokens, svc->cfg.keys, req->token, svc->cfg.public_url, time(NULL),
                          &claims, err, sizeof err) < 0) {
        atomic_fetch_add(&svc->posts_refused, 1);
        log_info("chat", "session %s: post refused: %s", s->id, err);
        send_error(s, "INVALID_TOKEN", err, -1, 0, req->ref);
        return;
    }
    char sub[32];
    snprintf(sub, sizeof sub, "%ld", s->user_id);
    int same = strcmp(claims.sub, sub) == 0;
    auth_claims_clear(&claims);
    if (!same) {
        atomic_fetch_add(&svc->posts_refused, 1);
        log_info("chat", "session %s: post refused: token of another user", s->id);
        send_error(s, "INVALID_TOKEN", "the token belongs to another user", -1, 0, req->ref);
        return;
    }
    long retry = 0;
    if (!ratelimit_take(svc->posts, s->user_id, g_get_monotonic_time() / 1000, &retry)) {
        atomic_fetch_add(&svc->posts_refused, 1);
        send_error(s, "RATE_LIMITED", "too many posts; slow down", retry, 0, req->ref);
        return;
    }
    publish_message(s, 1, req->text, NULL, 0, req->ref);
}

/* ---------- peer callbacks ---------- */

static void on_open(rtc_peer *p, void *user)
{
    session *s = user;
    s->peer = rtc_peer_ref(p);
    s->state = S_IDENTIFYING;
    proto_now(s->started, sizeof s->started);
    start_identify(s);
}

static void on_message(rtc_peer *p, const uint8_t *data, size_t len, int binary, void *user)
{
    (void)p;
    session *s = user;
    if (binary) {
        send_error(s, "BAD_REQUEST", "messages are JSON text, not binary", -1, 0, NULL);
        return;
    }
    proto_request req;
    char *ref = NULL;
    char err[256];
    proto_status st = proto_parse_request((const char *)data, len, &req, &ref, err, sizeof err);
    if (st == PROTO_OK) {
        if (req.kind == PROTO_PING) {
            char ts[32];
            send_owned(s, proto_build_pong(req.ref, proto_now(ts, sizeof ts)));
        } else {
            handle_post(s, &req);
        }
        proto_request_clear(&req);
    } else {
        send_error(s, st == PROTO_TOO_LARGE ? "TOO_LARGE" : "BAD_REQUEST", err, -1, 0, ref);
    }
    mem_free(ref);
}

static void on_oversize(rtc_peer *p, size_t len, void *user)
{
    (void)p;
    char msg[128];
    snprintf(msg, sizeof msg, "a %zu-byte message is over the %d-byte limit", len,
             PROTO_MAX_MESSAGE);
    send_error(user, "TOO_LARGE", msg, -1, 0, NULL);
}

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    (void)p;
    session *s = user;
    chat_service *svc = s->svc;
    int was_joined = s->state == S_JOINED;
    s->state = S_CLOSED;
    drop_timer(s);
    chat_bus_unsubscribe(svc->bus, s->sub);
    s->sub = NULL;
    g_mutex_lock(&svc->lock);
    room *r = g_hash_table_lookup(svc->rooms, s->room);
    if (r)
        g_ptr_array_remove(r->online, s);
    g_mutex_unlock(&svc->lock);
    if (was_joined) {
        char *presence = proto_build_presence("leave", s->summary);
        if (presence) {
            chat_frame *f = chat_frame_take(presence, strlen(presence));
            if (f) {
                chat_bus_publish(svc->bus, s->room, f, s);
                chat_frame_unref(f);
            }
        }
    }
    char now[32];
    proto_now(now, sizeof now);
    if (!s->session_logged && s->started[0])
        store_session_start(svc->cfg.store, s->id, 0, s->remote, s->started);
    if (s->started[0])
        store_session_end(svc->cfg.store, s->id, reason, now);
    log_info("chat", "session %s ended: %s", s->id, reason);
    g_mutex_lock(&svc->lock);
    svc->sessions--;
    g_cond_broadcast(&svc->ended);
    g_mutex_unlock(&svc->lock);
    session_unref(s); /* the peer's reference */
}

static const rtc_peer_callbacks peer_callbacks = {
    .on_open = on_open,
    .on_message = on_message,
    .on_oversize = on_oversize,
    .on_close = on_close,
};

/* ---------- HTTP ---------- */

int chat_room_name_valid(const char *room)
{
    size_t n = strlen(room);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(g_ascii_isalnum(room[i]) || room[i] == '-' || room[i] == '_' || room[i] == '.'))
            return 0;
    return 1;
}

static void http_offer(void *app, const http_request *req, http_reply *reply)
{
    chat_service *svc = app;
    const char *room_name = req->room ? req->room : DEFAULT_ROOM;
    char err[256];
    if (!chat_room_name_valid(room_name)) {
        http_reply_error(reply, 400, "BAD_REQUEST",
                         "room names are 1-63 characters: letters, digits, '-', '_', '.'");
        return;
    }
    long resume = 0;
    if (req->bearer) {
        auth_claims claims;
        if (auth_token_verify(svc->cfg.keys, req->bearer, svc->cfg.public_url, time(NULL),
                              &claims, err, sizeof err) < 0) {
            log_info("chat", "offer from %s with a bad token: %s", req->remote, err);
            http_reply_error(reply, 401, "INVALID_TOKEN", err);
            return;
        }
        char *end;
        resume = strtol(claims.sub, &end, 10);
        int bad = *end != '\0' || resume <= 0 || resume > INT32_MAX;
        auth_claims_clear(&claims);
        if (bad) {
            http_reply_error(reply, 401, "INVALID_TOKEN", "the token's subject is not a user id");
            return;
        }
    } else if (!jp_ready(svc->cfg.api)) {
        http_reply_error(reply, 503, "UNAVAILABLE",
                         "the user directory (JSONPlaceholder) is not reachable yet; try again "
                         "shortly");
        return;
    }
    g_mutex_lock(&svc->lock);
    int full = svc->sessions >= svc->cfg.max_peers;
    if (!full)
        svc->sessions++;
    room_get(svc, room_name); /* load its history off the event loops */
    g_mutex_unlock(&svc->lock);
    if (full) {
        http_reply_error(reply, 503, "AT_CAPACITY", "the server is at its peer limit");
        return;
    }
    session *s = mem_calloc(1, sizeof *s);
    if (s == NULL) {
        g_mutex_lock(&svc->lock);
        svc->sessions--;
        g_mutex_unlock(&svc->lock);
        http_reply_error(reply, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    atomic_init(&s->refs, 1); /* the peer callbacks' reference, dropped in on_close */
    s->svc = svc;
    s->resume_user = resume;
    s->draw = (draw_state){.max_attempts = svc->cfg.draw_attempts,
                           .base_ms = svc->cfg.draw_backoff_ms};
    snprintf(s->room, sizeof s->room, "%s", room_name);
    snprintf(s->remote, sizeof s->remote, "%s", req->remote ? req->remote : "");
    rtc_peer_config pc = {.loops = svc->cfg.loops,
                          .ice_addresses = (const char *const *)svc->cfg.ice_addresses,
                          .cb = &peer_callbacks,
                          .user = s};
    char *answer = NULL;
    rtc_peer *p = NULL;
    int rc = rtc_peer_answer(&pc, req->body, req->body_len, &p, &answer, err, sizeof err);
    if (rc != 0) {
        g_mutex_lock(&svc->lock);
        svc->sessions--;
        g_mutex_unlock(&svc->lock);
        mem_free(s);
        if (rc == -2) {
            log_info("chat", "rejected an offer from %s: %s", req->remote, err);
            http_reply_error(reply, 400, "BAD_SDP", err);
        } else {
            log_warn("chat", "cannot answer an offer from %s: %s", req->remote, err);
            http_reply_error(reply, 503, "UNAVAILABLE", err);
        }
        return;
    }
    /* The id is copied before the peer can open: on_open reads it. */
    snprintf(s->id, sizeof s->id, "%s", rtc_peer_id(p));
    log_info("chat", "session %s created for %s in %s%s", rtc_peer_id(p), req->remote, room_name,
             resume ? " (resuming a token)" : "");
    reply->status = 201;
    reply->content_type = "application/sdp";
    reply->body = answer;
    reply->body_len = strlen(answer);
    snprintf(reply->location, sizeof reply->location, "/api/rtc/%s", rtc_peer_id(p));
    rtc_peer_unref(p);
}

void chat_http_delete(void *app, const char *id, http_reply *reply)
{
    (void)app;
    rtc_peer *p = rtc_peer_find(id);
    if (p == NULL) {
        http_reply_error(reply, 404, "NOT_FOUND", "no such session");
        return;
    }
    rtc_peer_close(p, "ended by DELETE");
    rtc_peer_unref(p);
    reply->status = 204;
}

static void http_health(void *app, http_reply *reply)
{
    chat_service *svc = app;
    store_stats st;
    store_get_stats(svc->cfg.store, &st);
    int api = jp_up(svc->cfg.api);
    char buf[128];
    snprintf(buf, sizeof buf, "{\"status\":\"%s\",\"database\":\"%s\",\"api\":\"%s\"}",
             st.db_up && api ? "ok" : "degraded", st.db_up ? "ok" : "down", api ? "ok" : "down");
    http_reply_json(reply, st.db_up && api ? 200 : 503, mem_strdup(buf));
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

static void http_room_messages(void *app, const char *room_name, const http_request *req,
                               http_reply *reply)
{
    chat_service *svc = app;
    if (!chat_room_name_valid(room_name)) {
        http_reply_error(reply, 400, "BAD_REQUEST", "bad room name");
        return;
    }
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
        before = strtoll(req->before, &end, 10);
        if (*end || before < 1) {
            http_reply_error(reply, 400, "BAD_REQUEST", "before must be a message id");
            return;
        }
    }
    store_message *msgs = NULL;
    size_t n = 0;
    char err[256];
    if (store_recent_messages(svc->cfg.store, room_name, (int)limit, before, &msgs, &n, err,
                              sizeof err) < 0) {
        http_reply_error(reply, 503, "UNAVAILABLE", err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = row_object(&msgs[i]);
        if (o)
            json_array_append_new(arr, o);
    }
    store_messages_free(msgs);
    json_t *doc = json_pack("{s:o}", "messages", arr);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
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
    g_mutex_lock(&svc->lock);
    long sessions = svc->sessions;
    g_mutex_unlock(&svc->lock);
    GString *m = g_string_new(NULL);
#define GAUGE(name, help, fmt, v)                                                                  \
    g_string_append_printf(m, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " " fmt "\n", v)
#define COUNTER(name, help, v)                                                                     \
    g_string_append_printf(m, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %lu\n",  \
                           (unsigned long)(v))
    GAUGE("chatd_peers", "Connected sessions.", "%ld", sessions);
    GAUGE("chatd_peer_objects", "Peer objects alive (leak check).", "%ld", rtc_peer_live_count());
    GAUGE("chatd_sctp_associations", "SCTP associations alive (leak check).", "%ld",
          rtc_sctp_live_count());
    g_string_append_printf(m, "# HELP chatd_messages_total Messages delivered.\n"
                              "# TYPE chatd_messages_total counter\n"
                              "chatd_messages_total{source=\"auto\"} %lu\n"
                              "chatd_messages_total{source=\"manual\"} %lu\n",
                           atomic_load(&svc->messages_auto), atomic_load(&svc->messages_manual));
    COUNTER("chatd_posts_refused_total", "Manual posts refused (token, rate).",
            atomic_load(&svc->posts_refused));
    COUNTER("chatd_draws_total", "User draws.", atomic_load(&svc->draws));
    COUNTER("chatd_draws_failed_total", "User fetches that failed.",
            atomic_load(&svc->draws_failed));
    COUNTER("chatd_api_errors_total", "Failed JSONPlaceholder calls.", atomic_load(&svc->api_errors));
    COUNTER("chatd_api_requests_total", "JSONPlaceholder calls.", js.requests);
    GAUGE("chatd_api_up", "JSONPlaceholder reachable.", "%d", jp_up(svc->cfg.api));
    GAUGE("chatd_db_up", "Database reachable.", "%d", st.db_up);
    GAUGE("chatd_db_queue_depth", "Log rows waiting for the writer.", "%zu", st.queue_depth);
    COUNTER("chatd_db_rows_written_total", "Log rows committed.", st.rows_written);
    GAUGE("chatd_db_write_latency_seconds", "Latency of the last committed batch.", "%.6f",
          st.last_batch_us / 1e6);
    GAUGE("chatd_db_write_latency_avg_seconds", "Mean batch latency.", "%.6f",
          st.avg_batch_us / 1e6);
#undef GAUGE
#undef COUNTER
    reply->status = 200;
    reply->content_type = "text/plain; version=0.0.4";
    reply->body_len = m->len;
    reply->body = mem_strdup(m->str);
    if (reply->body == NULL)
        reply->body_len = 0;
    g_string_free(m, TRUE);
}

const http_app chat_http_app = {
    .rtc_offer = http_offer,
    .rtc_delete = chat_http_delete,
    .health = http_health,
    .jwks = http_jwks,
    .room_messages = http_room_messages,
    .metrics = http_metrics,
};

/* ---------- life ---------- */

void chat_service_api_error(void *arg, const char *method, const char *url, int status,
                            const char *error)
{
    chat_service *svc = arg;
    /* api/ has logged the failure; here it is counted and recorded. */
    atomic_fetch_add(&svc->api_errors, 1);
    store_api_error(svc->cfg.store, method, url, status, error, NULL);
}

void chat_service_set_api(chat_service *svc, jp_client *api) { svc->cfg.api = api; }

chat_service *chat_service_new(const chat_config *cfg)
{
    chat_service *svc = mem_calloc(1, sizeof *svc);
    if (svc == NULL)
        return NULL;
    svc->cfg = *cfg;
    svc->bus = chat_bus_new();
    svc->tokens = auth_cache_new(4096);
    /* The contract: a burst of 5, then 1 post/s per user. --post-rate
     * raises it (the bench needs more than 10 users' worth of posts). */
    double rate = cfg->post_rate > 0 ? (double)cfg->post_rate : 1.0;
    svc->posts = ratelimit_new(rate, rate > 5.0 ? rate : 5.0);
    if (svc->bus == NULL || svc->tokens == NULL || svc->posts == NULL) {
        chat_service_free(svc);
        return NULL;
    }
    g_mutex_init(&svc->lock);
    g_cond_init(&svc->ended);
    svc->rooms = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)room_free);
    svc->users = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                       (GDestroyNotify)json_decref);
    return svc;
}

void chat_service_close_all(chat_service *svc, int timeout_ms)
{
    rtc_peer_close_all("server shutting down");
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    g_mutex_lock(&svc->lock);
    while (svc->sessions > 0)
        if (!g_cond_wait_until(&svc->ended, &svc->lock, deadline))
            break;
    g_mutex_unlock(&svc->lock);
}

void chat_service_free(chat_service *svc)
{
    if (svc == NULL)
        return;
    if (svc->rooms)
        g_hash_table_destroy(svc->rooms);
    if (svc->users)
        g_hash_table_destroy(svc->users);
    ratelimit_free(svc->posts);
    auth_cache_free(svc->tokens);
    chat_bus_free(svc->bus);
    if (svc->rooms) {
        g_mutex_clear(&svc->lock);
        g_cond_clear(&svc->ended);
    }
    mem_free(svc);
}
