/*
 * session — see session.h.
 *
 * Why one file of about 850 lines: everything here runs on the session's
 * loop and reads the session struct under that one rule (the join gate and
 * the reference count are the only parts other threads touch); the
 * message budget, the post rules and the draw each take a screen, and the
 * pure parts they lean on are already apart (protocol, draw, ratelimit,
 * room, offer).
 *
 * Ready sooner (issue 10): identifying the user starts when the offer is
 * answered (chat_session_start), not when the channel opens, so the draw,
 * the directory's answer and the user row's commit overlap ICE, DTLS and
 * SCTP. Two things must then both have happened before the welcome: the
 * channel is open (`open`, set by on_open) and the user row is committed
 * (state S_READY); whichever comes second sends it. States:
 *
 *   S_CONNECTING   created; nothing started yet
 *   S_IDENTIFYING  a draw, its retry timer or the user row is under way
 *   S_READY        the user row is committed; waiting for the channel
 *   S_JOINED       welcome sent, in the room
 *   S_LEFT         out of the room after room_closed or kicked, the
 *                  channel closing: nothing more in or out of the room
 *   S_CLOSED       on_close has run; late work only drops its reference
 *
 * What identification tells the client before the channel is open (a
 * failed draw's USER_FETCH_FAILED, and the fatal USER_FETCH_FAILED or
 * UNAVAILABLE that ends it) cannot be sent yet, so it is kept, in order,
 * in `early`, and on_open sends it first thing; the draw does not wait
 * for that: it goes on retrying on its backoff meanwhile (each error's
 * retry_in_ms is the wait the server scheduled when the draw failed, so
 * by the time the client reads it the retry may already be done). A
 * fatal error before open marks the session to close gracefully right
 * after those frames are sent at open, so the client is always told why.
 * `early` holds at most --draw-attempts frames plus one (1..100, about
 * 250 bytes each); a peer that never opens is closed by the setup timeout
 * and its frames freed with it. The welcome is still the first frame
 * other than those errors, as before.
 */
#include "chat/session.h"

#include "auth/token.h"
#include "chat/draw.h"
#include "chat/link.h"
#include "chat/protocol.h"
#include "chat/service_int.h"
#include "util/clock.h"
#include "util/json_text.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <glib.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What a post refused by a full log queue is told to wait. */
#define POST_RETRY_WHEN_FULL_MS 1000

typedef enum { S_CONNECTING, S_IDENTIFYING, S_READY, S_JOINED, S_LEFT, S_CLOSED } session_state;

struct chat_session {
    atomic_int refs;
    atomic_int gone; /* on_close has run: what other threads may read of it */
    chat_service *svc;
    /* Set on the loop when identification starts (the offer path's
     * chat_session_start, or on_open if that comes first), reference held;
     * fixed from then on. */
    rtc_peer *peer;
    int open;            /* on_open has run (loop thread) */
    GPtrArray *early;    /* char*: frames said before open, sent by on_open */
    int close_when_open; /* a fatal error is among them: close after sending */
    char id[40];
    char room[64];
    char remote[96];
    char started[32];
    session_state state;
    long resume_user; /* from a bearer token; 0 = draw */
    time_t auth_time; /* the bearer token's login; 0 = this is a new login */
    draw_state draw;
    int drawn_index; /* 1-based id asked for in the current attempt */
    json_t *user;    /* the whole JSONPlaceholder user */
    json_t *summary; /* USER; also this session's member entry in its room */
    long user_id;
    /* draw retry or auto post: on the loop's timer heap (rtc_timer), not a
     * GLib source per session, which every iteration of the loop would
     * walk; while armed it holds a session reference */
    rtc_timer timer;
    void (*timer_fn)(struct chat_session *s);
    chat_sub *sub;
    chat_sub *direct; /* this user's own topic in the room: whispers, kicks */
    int session_logged;
    /* Catch-up (POST /api/rtc?since=ID): -1 = none. While the log is read
     * (`catching_up`, on the service's reader pool) the welcome waits in
     * `welcome` and the gate stays closed, so what arrives live meanwhile
     * is held and sent after the history, each message once. */
    int64_t since;
    int catching_up;
    char *welcome;
    /* The message budget (loop thread only): every client message takes
     * one token before anything else is done with it. */
    ratelimit_bucket budget;
    long over_budget;        /* messages refused since the last RATE_LIMITED */
    int64_t over_budget_ms;  /* when that RATE_LIMITED went out; 0 = never */
    int64_t token_log_ms;    /* last "post refused" log line; 0 = never */
    long token_logs_skipped; /* lines not written since */
    /* The join gate: the room's frames that reach the session between its
     * subscription and its welcome (another loop publishing meanwhile) are
     * held here and sent right after welcome and history, so the welcome
     * is always the first message. `gate` is taken by every delivery (on
     * the publisher's thread); the hold is bounded (JOIN_HOLD_MAX): past
     * it the session is closed, never silently short of a message. */
    GMutex gate;
    int gate_open;
    int gate_overflow;
    /* A final frame (room_closed, kicked) was sent: every later delivery
     * is dropped, and the loop takes the session out of the room. */
    int departing;
    GPtrArray *held; /* chat_frame*, a reference each */
};

#define JOIN_HOLD_MAX 1024

typedef chat_session session;

/* ---------- references, timers, sending ---------- */

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
    mem_free(s->welcome);
    if (s->held)
        g_ptr_array_unref(s->held);
    if (s->early)
        g_ptr_array_unref(s->early);
    g_mutex_clear(&s->gate);
    if (s->peer)
        rtc_peer_unref(s->peer);
    mem_free(s);
}

chat_session *chat_session_new(chat_service *svc, const char *room, const char *remote,
                               long resume_user)
{
    session *s = mem_calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    /* The peer callbacks' reference, dropped in on_close, and the offer
     * path's, handed to chat_session_start (or both to _discard). */
    atomic_init(&s->refs, 2);
    s->svc = svc;
    s->resume_user = resume_user;
    s->since = -1;
    s->draw =
        (draw_state){.max_attempts = svc->cfg.draw_attempts, .base_ms = svc->cfg.draw_backoff_ms};
    g_mutex_init(&s->gate);
    s->held = g_ptr_array_new_with_free_func((GDestroyNotify)chat_frame_unref);
    s->early = g_ptr_array_new_with_free_func(mem_free);
    snprintf(s->room, sizeof s->room, "%s", room);
    snprintf(s->remote, sizeof s->remote, "%s", remote ? remote : "");
    return s;
}

void chat_session_resume_login(chat_session *s, time_t auth_time) { s->auth_time = auth_time; }

void chat_session_catch_up(chat_session *s, int64_t since) { s->since = since; }

void chat_session_discard(chat_session *s)
{
    session_unref(s); /* the offer path's */
    session_unref(s); /* the peer's, which it never took */
}

static void drop_timer(session *s)
{
    if (rtc_timer_armed(&s->timer)) {
        rtc_timer_stop(&s->timer);
        session_unref(s);
    }
}

static void timer_expired(rtc_timer *t)
{
    session *s = (session *)((char *)t - offsetof(session, timer));
    s->timer_fn(s); /* may arm it again, with a reference of its own */
    session_unref(s);
}

/* Loop thread: fn(s) in ms milliseconds, replacing any armed timer. */
static void arm_timer(session *s, long ms, void (*fn)(session *s))
{
    drop_timer(s);
    s->timer_fn = fn;
    session_ref(s);
    if (rtc_timer_start(rtc_peer_loop(s->peer), &s->timer, ms < 0 ? 0 : ms, timer_expired) < 0) {
        log_error("chat", "session %s: no memory for a timer; closing", s->id);
        session_unref(s);
        rtc_peer_close(s->peer, "out of memory");
    }
}

/* Largest frame this session's remote accepts, and at most the
 * protocol's 64 KiB. */
static size_t max_frame(const session *s)
{
    size_t max = rtc_peer_max_send(s->peer);
    return max < PROTO_MAX_MESSAGE ? max : PROTO_MAX_MESSAGE;
}

/* Sends one frame. A frame over the remote's max-message-size is never
 * dropped silently (SPEC, version 2): the transport logs it and the client
 * gets a TOO_LARGE error saying so; a remote that cannot take even that
 * is closed. A slow reader is closed by offer_send. Any thread: it reads
 * only s->peer, fixed once identification has started. */
static int send_text(session *s, const char *text, size_t len)
{
    if (offer_send(s->peer, text, len) == 0)
        return 0;
    if (errno != EMSGSIZE)
        return -1;
    char msg[160];
    snprintf(msg, sizeof msg,
             "a %zu-byte message was not sent: it is over your %zu-byte max-message-size", len,
             rtc_peer_max_send(s->peer));
    char *e = proto_build_error("TOO_LARGE", msg, -1, 0, NULL);
    if (e == NULL || offer_send(s->peer, e, strlen(e)) < 0)
        rtc_peer_close(s->peer, "max-message-size too small for the chat protocol");
    mem_free(e);
    return -1;
}

/* Sends a mem_alloc'd JSON text and frees it. Before the channel is open
 * (identification runs during setup) the text is kept for on_open to send,
 * in order: the client is told, only later. */
static void send_owned(session *s, char *json)
{
    if (json == NULL)
        return;
    if (s->peer && s->state != S_CLOSED && !s->open) {
        g_ptr_array_add(s->early, json);
        return;
    }
    if (s->peer && s->state != S_CLOSED)
        send_text(s, json, strlen(json));
    mem_free(json);
}

/* Ends the session after what it was told is delivered: a graceful close
 * now when the channel is open, else right after on_open has sent the
 * frames kept for it (a close before open would lose them). */
static void close_when_told(session *s)
{
    if (s->open)
        rtc_peer_close_gracefully(s->peer);
    else
        s->close_when_open = 1;
}

static void post_to_loop(session *s, void (*fn)(session *, void *), void *data);
static void depart(session *s, void *unused);

/* With s->gate held, after a final frame went out: nothing more is
 * delivered, the loop takes the session out of the room now (it could
 * otherwise go on posting and receiving while its channel drains), and
 * the channel closes once the frame is sent (rtc_peer_close_gracefully is
 * safe from any thread). */
static void begin_departure(session *s)
{
    s->departing = 1;
    post_to_loop(session_ref(s), depart, NULL);
    rtc_peer_close_gracefully(s->peer);
}

/* chat_deliver_fn for the room: the subscriber is the session (the bus
 * stops delivering before on_close lets the session go). */
static void session_deliver(void *subscriber, chat_frame *f)
{
    session *s = subscriber;
    g_mutex_lock(&s->gate);
    if (s->departing) {
        /* kicked or its room closed: nothing after the final frame */
    } else if (s->gate_open) {
        send_text(s, chat_frame_data(f), chat_frame_len(f));
        if (chat_frame_final(f))
            begin_departure(s);
    } else if (s->held != NULL && s->held->len < JOIN_HOLD_MAX) {
        g_ptr_array_add(s->held, chat_frame_ref(f));
    } else {
        s->gate_overflow = 1;
    }
    g_mutex_unlock(&s->gate);
}

static int by_message_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Opens the join gate: welcome, history, then what was held, in order,
 * leaving out the messages whose ids are among the n_skip ascending ids of
 * `skip` (the history already holds them). A held final frame
 * (room_closed, kicked) ends the session once sent. */
static void open_gate(session *s, char *welcome, char *history, const int64_t *skip, size_t n_skip)
{
    int final = 0;
    g_mutex_lock(&s->gate);
    send_owned(s, welcome);
    send_owned(s, history);
    for (guint i = 0; s->held && i < s->held->len && !final; i++) {
        chat_frame *f = g_ptr_array_index(s->held, i);
        int64_t id = chat_frame_id(f);
        if (id > 0 && n_skip && bsearch(&id, skip, n_skip, sizeof id, by_message_id))
            continue;
        send_text(s, chat_frame_data(f), chat_frame_len(f));
        final = chat_frame_final(f);
    }
    if (s->held)
        g_ptr_array_set_size(s->held, 0);
    int overflow = s->gate_overflow;
    s->gate_open = 1;
    if (final)
        begin_departure(s);
    g_mutex_unlock(&s->gate);
    if (!final && overflow)
        rtc_peer_close(s->peer, "more messages arrived while joining than could be held");
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

/* Loop thread: a joined session leaves its room, and the room hears it. */
static void leave_room(session *s)
{
    chat_room_leave(s->svc->rooms, s->room, s->summary, s->sub, s->direct);
    s->sub = s->direct = NULL;
    chat_room_presence(s->svc->rooms, s->room, "leave", s->summary, s);
    if (s->svc->link)
        chat_link_left(s->svc->link, s->id);
}

/* Loop thread: out of the room after a final frame (begin_departure). */
static void depart(session *s, void *unused)
{
    (void)unused;
    if (s->state != S_JOINED)
        return;
    s->state = S_LEFT;
    drop_timer(s);
    leave_room(s);
}

/* ---------- identity: the draw ---------- */

static void start_identify(session *s);
static void user_ready(session *s, void *unused);
static void joined(session *s);

static void retry_draw_cb(session *s)
{
    if (s->state == S_IDENTIFYING)
        start_identify(s);
}

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
    post_to_loop(s, user_ready, NULL);
}

/* A failed fetch: tell the client, then retry after the backoff or give up. */
static void draw_failed(session *s)
{
    long retry = 0;
    atomic_fetch_add(&s->svc->draws_failed, 1);
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
        /* The channel closes once the error is delivered (after open, if
         * it is not open yet); on_close ends the session. No timer is
         * armed, so no further draw happens. */
        close_when_told(s);
        return;
    }
    log_info("chat", "session %s: %s; retrying in %ld ms", s->id, msg, retry);
    send_error(s, "USER_FETCH_FAILED", msg, retry, 0, NULL);
    arm_timer(s, retry, retry_draw_cb);
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
        draw_failed(s);
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
    g_mutex_lock(&svc->users_lock);
    json_t *cached = g_hash_table_lookup(svc->users, GINT_TO_POINTER(s->user_id));
    if (cached == NULL || !json_equal(cached, user))
        g_hash_table_insert(svc->users, GINT_TO_POINTER(s->user_id), json_incref(user));
    g_mutex_unlock(&svc->users_lock);

    char *profile = json_text_compact(user);
    store_user row = {.id = s->user_id,
                      .name = json_string_value(json_object_get(user, "name")),
                      .username = json_string_value(json_object_get(user, "username")),
                      .email = json_string_value(json_object_get(user, "email")),
                      .profile = profile};
    /* The welcome waits for the row: a message is delivered only after its
     * user row exists. */
    int queued =
        profile != NULL && store_put_user(svc->cfg.store, &row, user_stored, session_ref(s)) == 0;
    if (!queued) {
        if (profile != NULL)
            session_unref(s); /* the reference the refused put was given */
        send_error(s, "UNAVAILABLE", "the server cannot record users right now", -1, 1, NULL);
        close_when_told(s);
    }
    mem_free(profile);
}

/* Directory thread: a fetch finished. */
static void user_fetched(void *arg, const jp_result *r)
{
    session *s = arg;
    if (r->cancelled) {
        session_unref(s);
        return;
    }
    post_to_loop(s, identify_done, r->ok ? json_incref(r->user) : NULL);
}

static void start_identify(session *s)
{
    chat_service *svc = s->svc;
    char err[256];
    int id;
    if (s->resume_user) {
        g_mutex_lock(&svc->users_lock);
        json_t *cached = g_hash_table_lookup(svc->users, GINT_TO_POINTER(s->resume_user));
        if (cached)
            json_incref(cached);
        g_mutex_unlock(&svc->users_lock);
        if (cached) {
            identify_done(s, cached);
            return;
        }
        id = (int)s->resume_user;
    } else {
        int n = jp_user_count(svc->cfg.api);
        if (n < 1) {
            send_error(s, "UNAVAILABLE", "the user directory is not reachable; try again later", -1,
                       1, NULL);
            close_when_told(s);
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

static void refuse_post(session *s, const char *code, const char *message, long retry_in_ms,
                        const char *ref);

/* A message of this session's user, stamped now with the next id. */
static proto_message new_message(session *s, const char *source, const char *text, char ts[32])
{
    clock_iso8601_now(ts, 32);
    /* On a cluster the stream gives the id (chat/link.h). */
    return (proto_message){.id = s->svc->link ? 0 : store_next_message_id(s->svc->cfg.store),
                           .room = s->room,
                           .source = source,
                           .user_id = s->user_id,
                           .user_name = json_string_value(json_object_get(s->summary, "name")),
                           .user_username =
                               json_string_value(json_object_get(s->summary, "username")),
                           .text = text,
                           .ts = ts};
}

/* Queues the message's log row; 1 when queued (it may be delivered now:
 * "a delivered message is never lost"), else 0 with the sender told
 * (`tell`; auto posts are not). */
static int log_message(session *s, const proto_message *m, const char *recipients, int tell,
                       const char *ref)
{
    store_message row = {.id = m->id,
                         .room = m->room,
                         .user_id = m->user_id,
                         .source = m->source,
                         .recipients = recipients,
                         .post_id = m->post_id,
                         .title = m->title,
                         .body = m->text,
                         .created_at = m->ts,
                         .user_name = m->user_name,
                         .user_username = m->user_username};
    store_put_result put = store_put_message(s->svc->cfg.store, &row);
    if (put == STORE_PUT_FULL) {
        /* Refused, not dropped: the sender keeps the text and retries. The
         * store logs the episode once; no line per refused post. */
        if (tell)
            send_error(s, "UNAVAILABLE",
                       "the log is catching up; the message was not sent, try again shortly",
                       POST_RETRY_WHEN_FULL_MS, 0, ref);
        return 0;
    }
    if (put < 0) {
        log_error("chat", "session %s: message not queued for the log; not delivered", s->id);
        send_error(s, "UNAVAILABLE", "the message could not be recorded; it was not sent", -1, 0,
                   ref);
        return 0;
    }
    return 1;
}

/* On a cluster: the message goes to the stream, and every node (this one
 * too) delivers and this one logs it when it comes back (chat/link.h).
 * Refused at once when the log is full, as on one node, or when NATS is
 * unreachable: never delivered to some nodes only. */
static void post_to_cluster(session *s, const proto_message *m, int tell, session *sender,
                            const char *ref)
{
    chat_service *svc = s->svc;
    const char *why = NULL;
    long retry = POST_RETRY_WHEN_FULL_MS;
    if (store_full(svc->cfg.store))
        why = "the log is catching up; the message was not sent, try again shortly";
    else if (chat_link_post(svc->link, m, sender, ref) < 0)
        why = "the cluster is unreachable; the message was not sent, try again shortly";
    if (why && tell)
        refuse_post(s, "UNAVAILABLE", why, retry, ref);
}

/* Logs, records in the room's history and fans out one message. */
static void publish_message(session *s, int manual, const char *text, const char *title,
                            long post_id, const char *ref)
{
    chat_service *svc = s->svc;
    char ts[32];
    proto_message m = new_message(s, manual ? "manual" : "auto", text, ts);
    m.title = title;
    m.post_id = post_id;
    if (svc->link) {
        /* An auto post has no sender to answer: nobody is left out of
         * its frame. */
        post_to_cluster(s, &m, manual, manual ? s : NULL, ref);
        return;
    }
    if (!log_message(s, &m, NULL, manual, ref))
        return;
    json_t *obj = proto_message_object(&m, NULL);
    if (obj == NULL)
        return;
    /* The sender alone gets its ref back; everyone else shares one frame. */
    if (chat_room_publish(svc->rooms, s->room, obj, ref ? s : NULL,
                          manual ? &svc->messages_manual : &svc->messages_auto) == 0 &&
        ref)
        send_owned(s, proto_build_message(&m, ref));
    json_decref(obj);
}

static int by_id(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* USER of a user id: from another node's member entry when it is there
 * (this node may never have seen that user), else as this node knows it. */
static json_t *member_summary(chat_service *svc, json_t *remote, long user_id)
{
    size_t i;
    json_t *u;
    json_array_foreach(remote, i, u)
    {
        if ((long)json_integer_value(json_object_get(u, "id")) == user_id)
            return json_incref(u);
    }
    return chat_service_user_summary(svc, user_id);
}

/* A whisper: to the sessions of the recipients who are in the room and of
 * the sender, logged with its recipients, never in the room's history. */
static void whisper(session *s, const proto_request *req)
{
    chat_service *svc = s->svc;
    long others[PROTO_MAX_RECIPIENTS], found[PROTO_MAX_RECIPIENTS];
    size_t n = 0;
    for (size_t i = 0; i < req->n_to; i++)
        if (req->to[i] != s->user_id)
            others[n++] = req->to[i];
    if (n == 0) {
        send_error(s, "BAD_REQUEST", "a whisper needs someone other than you in \"to\"", -1, 0,
                   req->ref);
        return;
    }
    size_t k = chat_room_find_users(svc->rooms, s->room, others, n, found);
    json_t *remote = NULL; /* other nodes' members, for their names */
    if (svc->link && k < n) {
        long rest[PROTO_MAX_RECIPIENTS], there[PROTO_MAX_RECIPIENTS];
        size_t n_rest = 0;
        for (size_t i = 0; i < n; i++) {
            int here = 0;
            for (size_t j = 0; j < k && !here; j++)
                here = found[j] == others[i];
            if (!here)
                rest[n_rest++] = others[i];
        }
        size_t m = chat_link_find_users(svc->link, s->room, rest, n_rest, there);
        for (size_t i = 0; i < m; i++)
            found[k++] = there[i];
        if (m)
            remote = chat_link_members(svc->link, s->room);
    }
    if (k == 0) {
        send_error(s, "NOT_FOUND", "none of the users in \"to\" is in this room", -1, 0, req->ref);
        return;
    }
    qsort(found, k, sizeof found[0], by_id);
    json_t *to = json_array();
    GString *recipients = g_string_new(NULL);
    for (size_t i = 0; i < k; i++) {
        json_array_append_new(to, member_summary(svc, remote, found[i]));
        g_string_append_printf(recipients, i ? ",%ld" : "%ld", found[i]);
    }
    json_decref(remote);
    char ts[32];
    proto_message m = new_message(s, "whisper", req->text, ts);
    m.to = to;
    if (svc->link) {
        post_to_cluster(s, &m, 1, s, req->ref);
    } else if (log_message(s, &m, recipients->str, 1, req->ref)) {
        char *text = proto_build_message(&m, NULL);
        if (text) {
            atomic_fetch_add(&svc->whispers, 1);
            chat_room_publish_direct(svc->rooms, s->room, found, k, text, m.id, 0, NULL);
            /* the sender's other sessions in the room; this one gets its ref */
            chat_room_publish_direct(svc->rooms, s->room, &s->user_id, 1, text, m.id, 0, s);
            mem_free(text);
            send_owned(s, proto_build_message(&m, req->ref));
        }
    }
    g_string_free(recipients, TRUE);
    json_decref(to);
}

static void auto_post_cb(session *s)
{
    chat_service *svc = s->svc;
    if (s->state != S_JOINED)
        return;
    jp_post post;
    /* Auto posts pause while the log is catching up (store_full). */
    if (!store_full(svc->cfg.store) &&
        jp_random_post(svc->cfg.api, rng_next(svc->cfg.rng), &post) == 0) {
        publish_message(s, 0, post.body, post.title, post.id, NULL);
        jp_post_clear(&post);
    }
    arm_timer(s, (long)rng_range(svc->cfg.rng, 0, svc->cfg.auto_post_max_ms), auto_post_cb);
}

/* ---------- catch-up ---------- */

typedef struct {
    session *s; /* a reference */
    char room[64];
    long user_id;   /* whose whispers it may see; 0: public messages only */
    char login[32]; /* and only those logged from this ISO time on */
    int64_t since;
} catch_up_job;

/* Loop thread: the log's answer ({"messages":[…],"more":bool}, or NULL
 * when it could not be read). The welcome, the catch-up, then what
 * arrived meanwhile that the catch-up did not hold. */
static void catch_up_done(session *s, void *data)
{
    json_t *answer = data;
    if (s->state != S_JOINED || !s->catching_up) {
        json_decref(answer);
        return;
    }
    s->catching_up = 0;
    char *welcome = s->welcome;
    s->welcome = NULL;
    char *history = NULL;
    int64_t *skip = NULL;
    size_t n_skip = 0;
    if (answer) {
        json_t *messages = json_object_get(answer, "messages");
        history = proto_build_history_fit(messages, json_is_true(json_object_get(answer, "more")),
                                          max_frame(s));
        size_t n = json_array_size(messages);
        skip = n ? mem_alloc(n * sizeof *skip) : NULL;
        if (skip)
            n_skip = chat_message_ids(messages, skip, n);
    } else {
        /* The log could not be read: the client is told it may have missed
         * messages ("more") and pages them later. */
        json_t *none = json_array();
        history = proto_build_history_fit(none, 1, max_frame(s));
        json_decref(none);
    }
    json_decref(answer);
    open_gate(s, welcome, history, skip, n_skip);
    mem_free(skip);
}

/* Reader thread: reads what the session missed and posts it back. */
void chat_session_catch_up_read(void *data, void *pool_data)
{
    (void)pool_data;
    catch_up_job *job = data;
    chat_service *svc = job->s->svc;
    if (atomic_load(&job->s->gone)) { /* ended meanwhile (SIGTERM drains the pool) */
        session_unref(job->s);
        mem_free(job);
        return;
    }
    store_message *rows = NULL;
    size_t n = 0;
    int more = 0;
    char err[256];
    json_t *answer = NULL;
    int from_log = 1;
    if (svc->link) {
        /* The stream first: it holds what was delivered even when a
         * node died before its log row was written. */
        answer = chat_link_read_since(svc->link, job->room, job->since, job->user_id, job->login,
                                      &from_log);
    }
    if (!from_log) {
        /* answered (or failed) from the stream */
    } else if (store_messages_since(svc->cfg.store, job->room, job->user_id, job->since,
                                    STORE_SINCE_MAX, &rows, &n, &more, err, sizeof err) != 0) {
        log_warn("chat", "session %s: catch-up not read: %s", job->s->id, err);
    } else {
        json_t *messages = json_array();
        for (size_t i = 0; messages && i < n; i++) {
            if (rows[i].recipients && strcmp(rows[i].created_at, job->login) < 0)
                continue; /* a whisper from before this login */
            json_t *o = chat_row_object(&rows[i]);
            if (o && rows[i].recipients) {
                json_t *to = json_array();
                const char *p = rows[i].recipients;
                while (*p) {
                    char *end;
                    long id = strtol(p, &end, 10);
                    if (end == p)
                        break;
                    json_array_append_new(to, chat_service_user_summary(svc, id));
                    p = *end == ',' ? end + 1 : end;
                }
                /* in the live frame's order: "to" after "ts" */
                json_object_set_new(o, "to", to);
            }
            if (o)
                json_array_append_new(messages, o);
        }
        store_messages_free(rows);
        answer = messages ? json_pack("{s:o,s:b}", "messages", messages, "more", more) : NULL;
    }
    post_to_loop(job->s, catch_up_done, answer); /* the job's reference moves on */
    mem_free(job);
}

/* Loop thread: hands the catch-up read to the service's reader pool. 1
 * when it is under way. */
static int start_catch_up(session *s)
{
    catch_up_job *job = mem_alloc(sizeof *job);
    if (job == NULL)
        return 0;
    job->s = session_ref(s);
    snprintf(job->room, sizeof job->room, "%s", s->room);
    /* The whispers a catch-up may show are those of this login: a token's
     * user since its first login (auth_time), and none at all without a
     * token. Anyone may be drawn as any of the directory's users; what
     * that user was told before is not theirs. */
    job->user_id = s->resume_user ? s->user_id : 0;
    clock_iso8601((int64_t)s->auth_time * 1000, job->login, sizeof job->login);
    job->since = s->since;
    GThreadPool *readers = g_atomic_pointer_get(&s->svc->readers);
    if (readers == NULL || !g_thread_pool_push(readers, job, NULL)) {
        session_unref(s);
        mem_free(job);
        return 0;
    }
    return 1;
}

/* Loop thread: the user row exists and the channel is open; welcome,
 * history, presence. */
static void joined(session *s)
{
    chat_service *svc = s->svc;
    if (s->state != S_READY || !s->open)
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
                             .now = time(NULL),
                             .auth_time = s->auth_time,
                             .max_age_seconds = svc->cfg.jwt_max_age};
    char *token = NULL;
    if (auth_token_issue(svc->cfg.keys, &claims, &token, err, sizeof err) < 0) {
        log_error("chat", "session %s: cannot issue a token: %s", s->id, err);
        send_error(s, "UNAVAILABLE", "the server cannot issue a token right now", -1, 1, NULL);
        close_when_told(s);
        return;
    }
    json_t *online = NULL;
    char *history = NULL;
    int64_t history_ids[CHAT_HISTORY_SIZE];
    size_t n_history_ids = 0;
    /* A catch-up reads the log instead of the room's last messages. */
    int catch_up = s->since >= 0;
    s->sub = chat_room_join(svc->rooms, s->room, s->summary, session_deliver, s, &online,
                            &s->direct, catch_up ? NULL : &history, history_ids, &n_history_ids);
    if (s->sub == NULL) {
        mem_free(token);
        rtc_peer_close(s->peer, "out of memory");
        return;
    }
    s->state = S_JOINED;
    if (svc->link) { /* the other nodes' members first, the joiner last */
        json_t *all = chat_link_members(svc->link, s->room);
        if (all && json_array_extend(all, online) == 0) {
            json_decref(online);
            online = all;
        } else {
            json_decref(all);
        }
    }
    /* Both frames are made to fit what this remote accepts: the welcome
     * lists fewer users (online_count has them all), the history keeps
     * its newest messages ("more":true). */
    size_t max = max_frame(s);
    char *welcome = proto_build_welcome(s->id, s->room, token, s->user, online, max);
    json_decref(online);
    mem_free(token);
    if (history != NULL && strlen(history) > max) {
        char *fitted = proto_history_refit(history, strlen(history), max);
        mem_free(history);
        history = fitted;
    }
    if (welcome != NULL && strlen(welcome) > max) {
        log_warn("chat", "session %s: a %zu-byte welcome is over the remote's %zu-byte limit",
                 s->id, strlen(welcome), max);
        send_error(s, "TOO_LARGE", "your max-message-size is too small for the welcome", -1, 1,
                   NULL);
        mem_free(welcome);
        mem_free(history);
        /* Never welcomed: out of the room again, with no presence either way. */
        chat_room_leave(svc->rooms, s->room, s->summary, s->sub, s->direct);
        s->sub = s->direct = NULL;
        s->state = S_READY;
        close_when_told(s);
        return;
    }
    if (catch_up) {
        /* The welcome waits for the log's answer (catch_up_done); a read
         * that cannot start is answered as one that failed. */
        s->welcome = welcome;
        s->catching_up = 1;
        if (!start_catch_up(s))
            catch_up_done(s, NULL);
    } else {
        open_gate(s, welcome, history, history_ids, n_history_ids);
    }
    chat_room_presence(svc->rooms, s->room, "join", s->summary, s);
    if (svc->link)
        chat_link_joined(svc->link, s->id, s->room, s->summary);
    store_session_start(svc->cfg.store, s->id, s->user_id, s->remote, s->started);
    s->session_logged = 1;
    log_info("chat", "session %s: %s (user %ld) joined %s", s->id,
             json_string_value(json_object_get(s->summary, "name")), s->user_id, s->room);
    if (svc->cfg.auto_post_max_ms >= 0)
        arm_timer(s, (long)rng_range(svc->cfg.rng, 0, svc->cfg.auto_post_max_ms), auto_post_cb);
}

/* Loop thread: the user row is committed. The welcome goes now if the
 * channel is open, else on_open sends it. */
static void user_ready(session *s, void *unused)
{
    (void)unused;
    if (s->state != S_IDENTIFYING)
        return;
    s->state = S_READY;
    joined(s);
}

/* A refused post: counted, told to the client with the request's ref. */
static void refuse_post(session *s, const char *code, const char *message, long retry_in_ms,
                        const char *ref)
{
    atomic_fetch_add(&s->svc->posts_refused, 1);
    send_error(s, code, message, retry_in_ms, 0, ref);
}

/* A refused token is logged at most once a second per session, with the
 * count of the lines left out: a session sending forged tokens must not
 * cost a log line each. */
static void log_refused_token(session *s, const char *why)
{
    int64_t now = clock_mono_ms();
    if (s->token_log_ms != 0 && now - s->token_log_ms < 1000) {
        s->token_logs_skipped++;
        return;
    }
    if (s->token_logs_skipped > 0)
        log_info("chat", "session %s: post refused: %s (and %ld more refused tokens not logged)",
                 s->id, why, s->token_logs_skipped);
    else
        log_info("chat", "session %s: post refused: %s", s->id, why);
    s->token_log_ms = now;
    s->token_logs_skipped = 0;
}

/* A post or a whisper: joined, within the user's post rate, with a token
 * of the session's user. */
static void handle_post(session *s, proto_request *req)
{
    chat_service *svc = s->svc;
    char err[256];
    if (s->state == S_LEFT) {
        send_error(s, "BAD_REQUEST", "you are no longer in this room", -1, 0, req->ref);
        return;
    }
    if (s->state != S_JOINED || s->catching_up) {
        send_error(s, "BAD_REQUEST", "no user yet: wait for the welcome", -1, 0, req->ref);
        return;
    }
    /* The user's post rate before the token: the user is the session's,
     * and a refused post must not cost an ECDSA verify. A post with a bad
     * token takes its token from the bucket like any other. */
    long retry = 0;
    if (!ratelimit_take(svc->posts, s->user_id, clock_mono_ms(), &retry)) {
        refuse_post(s, "RATE_LIMITED", "too many posts; slow down", retry, req->ref);
        return;
    }
    auth_claims claims;
    if (auth_cache_verify(svc->tokens, svc->cfg.keys, req->token, svc->cfg.public_url, time(NULL),
                          &claims, err, sizeof err) < 0) {
        log_refused_token(s, err);
        refuse_post(s, "INVALID_TOKEN", err, -1, req->ref);
        return;
    }
    char sub[32];
    snprintf(sub, sizeof sub, "%ld", s->user_id);
    int same = strcmp(claims.sub, sub) == 0;
    auth_claims_clear(&claims);
    if (!same) {
        log_refused_token(s, "token of another user");
        refuse_post(s, "INVALID_TOKEN", "the token belongs to another user", -1, req->ref);
        return;
    }
    if (req->kind == PROTO_WHISPER)
        whisper(s, req);
    else
        publish_message(s, 1, req->text, NULL, 0, req->ref);
}

/* Takes one message from the session's budget (SPEC "Text rules (version
 * 2)"): 1 to go on. Over it, the message is dropped unread and the client
 * is told with one RATE_LIMITED a second at most, however many it sends,
 * so the answers to a flood are bounded too. */
static int within_budget(session *s)
{
    long rate =
        s->svc->cfg.post_rate > PROTO_SESSION_RATE ? s->svc->cfg.post_rate : PROTO_SESSION_RATE;
    double burst = (double)rate * PROTO_SESSION_BURST / PROTO_SESSION_RATE;
    int64_t now = clock_mono_ms();
    long retry = 0;
    if (ratelimit_bucket_take(&s->budget, (double)rate, burst, now, &retry))
        return 1;
    s->over_budget++;
    atomic_fetch_add(&s->svc->messages_over_budget, 1);
    if (s->over_budget_ms != 0 && now - s->over_budget_ms < 1000)
        return 0;
    char msg[160];
    snprintf(msg, sizeof msg,
             "over %ld messages a second: %ld message%s ignored since the last notice", rate,
             s->over_budget, s->over_budget == 1 ? "" : "s");
    s->over_budget = 0;
    s->over_budget_ms = now;
    send_error(s, "RATE_LIMITED", msg, retry, 0, NULL);
    return 0;
}

/* ---------- the start: at the offer, or at the latest at open ---------- */

/* Loop thread: identification starts with this peer, once. */
static void begin_identify(session *s, rtc_peer *p)
{
    if (s->state != S_CONNECTING)
        return; /* started already, or closed */
    if (s->peer == NULL) {
        s->peer = rtc_peer_ref(p);
        snprintf(s->id, sizeof s->id, "%s", rtc_peer_id(p));
    }
    s->state = S_IDENTIFYING;
    start_identify(s);
}

typedef struct {
    session *s;
    rtc_peer *p;
} start_call;

static void run_start(void *arg)
{
    start_call *c = arg;
    begin_identify(c->s, c->p); /* a no-op once on_close has run (S_CLOSED) */
    rtc_peer_unref(c->p);
    session_unref(c->s);
    mem_free(c);
}

void chat_session_start(chat_session *s, rtc_peer *p)
{
    start_call *c = mem_alloc(sizeof *c);
    if (c == NULL) { /* on_open starts it instead, only later */
        session_unref(s);
        return;
    }
    c->s = s; /* the offer path's reference moves here */
    c->p = rtc_peer_ref(p);
    rtc_loop_post(rtc_peer_loop(p), run_start, c);
}

/* ---------- for the cluster (chat/link.h) ---------- */

chat_session *chat_session_hold(chat_session *s) { return s ? session_ref(s) : NULL; }

void chat_session_drop(chat_session *s) { session_unref(s); }

void chat_session_send_copy(chat_session *s, const char *text)
{
    char *copy = mem_strdup(text);
    chat_frame *f = copy ? chat_frame_take(copy, strlen(copy)) : NULL;
    if (f) {
        session_deliver(s, f);
        chat_frame_unref(f);
    }
}

static void tell_refused(session *s, void *data)
{
    json_t *ref = data;
    refuse_post(s, "UNAVAILABLE", "the cluster did not store the message; it was not sent",
                POST_RETRY_WHEN_FULL_MS, json_string_value(ref));
    json_decref(ref);
}

void chat_session_refused(chat_session *s, const char *ref)
{
    if (s->peer == NULL)
        return;
    post_to_loop(session_ref(s), tell_refused, ref ? json_string(ref) : json_null());
}

/* ---------- peer callbacks ---------- */

static void on_open(rtc_peer *p, void *user)
{
    session *s = user;
    begin_identify(s, p); /* when the offer path's start has not run (yet) */
    s->open = 1;
    clock_iso8601_now(s->started, sizeof s->started);
    /* What identification said while the channel was being set up. */
    for (guint i = 0; i < s->early->len; i++) {
        const char *text = g_ptr_array_index(s->early, i);
        send_text(s, text, strlen(text));
    }
    g_ptr_array_set_size(s->early, 0);
    if (s->close_when_open) {
        rtc_peer_close_gracefully(p);
        return;
    }
    joined(s); /* when the user row is already committed (S_READY) */
}

static void on_message(rtc_peer *p, const uint8_t *data, size_t len, int binary, void *user)
{
    (void)p;
    session *s = user;
    if (!within_budget(s))
        return;
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
            send_owned(s, proto_build_pong(req.ref, clock_iso8601_now(ts, sizeof ts)));
        } else { /* post or whisper */
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
    if (!within_budget(user))
        return;
    char msg[128];
    snprintf(msg, sizeof msg, "a %zu-byte message is over the %d-byte limit", len,
             PROTO_MAX_MESSAGE);
    send_error(user, "TOO_LARGE", msg, -1, 0, NULL);
}

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    session *s = user;
    if (s->id[0] == '\0') /* closed before it opened */
        snprintf(s->id, sizeof s->id, "%s", rtc_peer_id(p));
    chat_service *svc = s->svc;
    int was_joined = s->state == S_JOINED;
    s->state = S_CLOSED;
    atomic_store(&s->gone, 1);
    drop_timer(s);
    if (was_joined)
        leave_room(s);
    char now[32];
    clock_iso8601_now(now, sizeof now);
    if (!s->session_logged && s->started[0])
        store_session_start(svc->cfg.store, s->id, 0, s->remote, s->started);
    if (s->started[0])
        store_session_end(svc->cfg.store, s->id, reason, now);
    log_info("chat", "session %s ended: %s", s->id, reason);
    /* The offer path held the room for this session (routes.c); the room
     * is freed with its last hold and member. */
    chat_rooms_release(svc->rooms, s->room);
    offer_slots_release(svc->slots);
    session_unref(s); /* the peer's reference */
}

const rtc_peer_callbacks chat_session_callbacks = {
    .on_open = on_open,
    .on_message = on_message,
    .on_oversize = on_oversize,
    .on_close = on_close,
};
