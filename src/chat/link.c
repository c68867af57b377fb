/*
 * link — see link.h.
 */
#include "chat/link.h"

#include "chat/event.h"
#include "chat/room.h"
#include "chat/service_int.h"
#include "rtc/peer.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"

#include <glib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A post whose sender waits for it to come back: its ref, and the
 * session to exclude from the shared frame. Past this age it is dropped
 * (its event was lost with a stream that was wiped). */
#define PENDING_MAX_AGE_MS 60000
/* A catch-up from the stream reads at most this many events, shown or
 * not (whispers to others are not): past it, the log answers instead,
 * whose query filters them. Each event is one direct get, a round trip
 * to NATS on one of the two reader threads. */
#define CATCH_UP_SCAN_MAX (4 * STORE_SINCE_MAX)

typedef struct {
    chat_session *s; /* a reference */
    char *ref;       /* NULL: none */
    int64_t at_ms;
} pending_post;

struct chat_link {
    chat_service *svc;
    cluster *cl;
    char node[CLUSTER_NODE_ID_MAX + 1];
    atomic_ullong next_tag;
    GMutex lock;         /* pending; never held across I/O */
    GHashTable *pending; /* tag -> pending_post* */
    int64_t last_sweep_ms;
};

static void pending_free(void *p)
{
    pending_post *pp = p;
    chat_session_drop(pp->s);
    mem_free(pp->ref);
    mem_free(pp);
}

static pending_post *pending_take(chat_link *l, uint64_t tag)
{
    uint64_t key = tag;
    g_mutex_lock(&l->lock);
    pending_post *p = NULL;
    void *orig_key = NULL;
    if (g_hash_table_steal_extended(l->pending, &key, &orig_key, (void **)&p))
        g_free(orig_key);
    g_mutex_unlock(&l->lock);
    return p;
}

/* Posts older than PENDING_MAX_AGE_MS will not come back. */
static void pending_sweep(chat_link *l)
{
    int64_t now = clock_mono_ms();
    g_mutex_lock(&l->lock);
    if (now - l->last_sweep_ms >= 1000) {
        l->last_sweep_ms = now;
        GHashTableIter it;
        void *k, *v;
        g_hash_table_iter_init(&it, l->pending);
        while (g_hash_table_iter_next(&it, &k, &v))
            if (now - ((pending_post *)v)->at_ms > PENDING_MAX_AGE_MS)
                g_hash_table_iter_remove(&it);
    }
    g_mutex_unlock(&l->lock);
}

/* ---------- events in ---------- */

static void log_row(chat_link *l, const store_message *row)
{
    if (store_put_delivered_message(l->svc->cfg.store, row) < 0)
        log_error("chat", "message %lld was delivered but not queued for the log",
                  (long long)row->id);
}

static void apply_message(chat_link *l, const json_t *ev, int64_t id, int mine)
{
    chat_service *svc = l->svc;
    proto_message m;
    long to_ids[PROTO_MAX_RECIPIENTS];
    size_t n_to = 0;
    char recipients[CHAT_EVENT_RECIPIENTS_MAX];
    if (!chat_event_message(ev, id, &m, to_ids, &n_to, recipients)) {
        log_warn("chat", "cluster event %lld: a malformed message; ignored", (long long)id);
        return;
    }
    int whisper = m.to != NULL;
    if (mine) {
        store_message row = {.id = id,
                             .room = m.room,
                             .user_id = m.user_id,
                             .source = m.source,
                             .recipients = whisper ? recipients : NULL,
                             .post_id = m.post_id,
                             .title = m.title,
                             .body = m.text,
                             .created_at = m.ts,
                             .user_name = m.user_name,
                             .user_username = m.user_username};
        log_row(l, &row);
    }
    json_t *tag = json_object_get(ev, "t");
    pending_post *p =
        mine && json_is_integer(tag) ? pending_take(l, (uint64_t)json_integer_value(tag)) : NULL;
    void *except = p ? (void *)p->s : NULL;
    if (whisper) {
        char *text = proto_build_message(&m, NULL);
        if (text) {
            if (mine)
                atomic_fetch_add(&svc->whispers, 1);
            chat_room_publish_direct(svc->rooms, m.room, to_ids, n_to, text, id, 0, NULL);
            chat_room_publish_direct(svc->rooms, m.room, &m.user_id, 1, text, id, 0, except);
            mem_free(text);
        }
    } else {
        json_t *obj = proto_message_object(&m, NULL);
        int manual = strcmp(m.source, "manual") == 0;
        if (obj)
            chat_room_publish(svc->rooms, m.room, obj, except,
                              manual ? &svc->messages_manual : &svc->messages_auto);
        json_decref(obj);
    }
    if (p) {
        char *text = proto_build_message(&m, p->ref);
        if (text)
            chat_session_send_copy(p->s, text);
        mem_free(text);
        pending_free(p);
    }
}

static void apply_announcement(chat_link *l, const json_t *ev, int64_t id, int mine)
{
    chat_service *svc = l->svc;
    const char *room, *text, *ts;
    if (!chat_event_announcement(ev, &room, &text, &ts)) {
        log_warn("chat", "cluster event %lld: a malformed announcement; ignored", (long long)id);
        return;
    }
    if (mine) {
        store_message row = {.id = id,
                             .room = room ? room : STORE_ROOM_EVERY,
                             .source = "announcement",
                             .body = text,
                             .created_at = ts,
                             .user_name = "",
                             .user_username = ""};
        log_row(l, &row);
    }
    json_t *obj = proto_announcement_object(id, room, text, ts);
    if (obj == NULL)
        return;
    if (room)
        chat_room_publish(svc->rooms, room, obj, NULL, &svc->announcements);
    else
        chat_rooms_publish_all(svc->rooms, obj, &svc->announcements);
    json_decref(obj);
}

static void apply_kick(chat_link *l, const json_t *ev, int64_t id)
{
    const char *room;
    long user;
    if (!chat_event_kick(ev, &room, &user)) {
        log_warn("chat", "cluster event %lld: a malformed kick; ignored", (long long)id);
        return;
    }
    char *frame = proto_build_farewell("kicked", room, "removed by the room's owner");
    size_t n =
        frame ? chat_room_publish_direct(l->svc->rooms, room, &user, 1, frame, 0, 1, NULL) : 0;
    mem_free(frame);
    if (n)
        log_info("chat", "user %ld kicked from %s: %zu sessions here", user, room, n);
}

static void apply_close(chat_link *l, const json_t *ev, int64_t id)
{
    const char *room, *reason;
    if (!chat_event_close(ev, &room, &reason)) {
        log_warn("chat", "cluster event %lld: a malformed close; ignored", (long long)id);
        return;
    }
    char *frame = proto_build_farewell("room_closed", room, reason);
    size_t n = frame ? chat_room_close(l->svc->rooms, room, frame) : 0;
    mem_free(frame);
    if (n)
        log_info("chat", "room %s closed: %zu sessions here", room, n);
}

static void apply_room(chat_link *l, const json_t *ev, int64_t id)
{
    chat_room_def def;
    int removed;
    if (!chat_event_room(ev, &def, &removed))
        log_warn("chat", "cluster event %lld: a malformed room; ignored", (long long)id);
    else if (removed)
        chat_registry_forget(l->svc->registry, def.name);
    else
        chat_registry_apply(l->svc->registry, &def);
}

static void on_event(void *arg, int64_t id, const char *data, size_t len)
{
    chat_link *l = arg;
    json_t *ev = json_loadb(data, len, 0, NULL);
    const char *origin = NULL;
    chat_event_kind kind = chat_event_kind_of(ev, &origin);
    int mine = origin && strcmp(origin, l->node) == 0;
    switch (kind) {
    case CHAT_EVENT_MESSAGE:
        apply_message(l, ev, id, mine);
        break;
    case CHAT_EVENT_ANNOUNCEMENT:
        apply_announcement(l, ev, id, mine);
        break;
    case CHAT_EVENT_KICK:
        apply_kick(l, ev, id);
        break;
    case CHAT_EVENT_CLOSE:
        apply_close(l, ev, id);
        break;
    case CHAT_EVENT_ROOM:
        /* The node that made the change applied it at once, and applies it
         * again here, in the stream's order like every node: two changes
         * made at once on two nodes end the same everywhere (the later in
         * the stream wins). */
        apply_room(l, ev, id);
        break;
    case CHAT_EVENT_BAD:
        log_warn("chat", "cluster event %lld is not chatd's; ignored", (long long)id);
        break;
    }
    json_decref(ev);
    pending_sweep(l);
}

static void on_presence(void *arg, const char *room, json_t *member, int joined)
{
    chat_link *l = arg;
    chat_room_presence(l->svc->rooms, room, joined ? "join" : "leave", member, NULL);
}

static int on_peer_delete(void *arg, const char *peer_id)
{
    (void)arg;
    rtc_peer *p = rtc_peer_find(peer_id);
    if (p == NULL)
        return 0;
    rtc_peer_close(p, "ended by DELETE (through another node)");
    rtc_peer_unref(p);
    return 1;
}

static void on_publish_failed(void *arg, uint64_t tag)
{
    chat_link *l = arg;
    pending_post *p = pending_take(l, tag);
    if (p) {
        chat_session_refused(p->s, p->ref);
        pending_free(p);
    }
}

/* ---------- events out ---------- */

/* Publishes ev (consumed) and waits: its sequence, or 0. */
static uint64_t publish_wait(chat_link *l, cluster_scope scope, const char *room, json_t *ev)
{
    if (ev == NULL)
        return 0;
    json_object_set_new(ev, "o", json_string(l->node));
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    uint64_t seq = text ? cluster_publish_wait(l->cl, scope, room, text, strlen(text)) : 0;
    free(text);
    return seq;
}

int chat_link_post(chat_link *l, const proto_message *m, chat_session *sender, const char *ref)
{
    uint64_t tag = atomic_fetch_add(&l->next_tag, 1) + 1;
    json_t *ev = json_pack("{s:s,s:s,s:I,s:s,s:s,s:I,s:s,s:s,s:s,s:s}", "k", "m", "o", l->node, "t",
                           (json_int_t)tag, "room", m->room, "src", m->source, "uid",
                           (json_int_t)m->user_id, "un", m->user_name ? m->user_name : "", "uu",
                           m->user_username ? m->user_username : "", "text", m->text, "ts", m->ts);
    if (ev == NULL)
        return -1;
    if (m->title)
        json_object_set_new(ev, "title", json_string(m->title));
    if (m->post_id)
        json_object_set_new(ev, "pid", json_integer(m->post_id));
    if (m->to)
        json_object_set(ev, "to", (json_t *)m->to);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (text == NULL)
        return -1;
    if (sender) { /* it waits for its ref, or to be told of a failure */
        pending_post *p = mem_alloc(sizeof *p);
        if (p == NULL) {
            free(text);
            return -1;
        }
        p->s = chat_session_hold(sender);
        p->ref = ref ? mem_strdup(ref) : NULL;
        p->at_ms = clock_mono_ms();
        uint64_t *key = g_new(uint64_t, 1);
        *key = tag;
        g_mutex_lock(&l->lock);
        g_hash_table_insert(l->pending, key, p);
        g_mutex_unlock(&l->lock);
    }
    int rc = cluster_publish(l->cl, CLUSTER_TO_ROOM, m->room, text, strlen(text), tag);
    free(text);
    if (rc < 0 && sender) {
        pending_post *back = pending_take(l, tag);
        if (back)
            pending_free(back);
    }
    return rc;
}

int64_t chat_link_announce(chat_link *l, const char *room, const char *text, const char *ts)
{
    json_t *ev = json_pack("{s:s,s:s,s:s}", "k", "a", "text", text, "ts", ts);
    if (ev && room)
        json_object_set_new(ev, "room", json_string(room));
    else if (ev)
        json_object_set_new(ev, "room", json_null());
    uint64_t seq = publish_wait(l, room ? CLUSTER_TO_ROOM : CLUSTER_TO_EVERY, room, ev);
    return seq ? cluster_id_base(l->cl) + (int64_t)seq : 0;
}

int chat_link_kick(chat_link *l, const char *room, long user_id)
{
    json_t *ev = json_pack("{s:s,s:s,s:I}", "k", "kick", "room", room, "uid", (json_int_t)user_id);
    return publish_wait(l, CLUSTER_TO_CONTROL, NULL, ev) ? 0 : -1;
}

int chat_link_close_room(chat_link *l, const char *room, const char *reason)
{
    json_t *ev = json_pack("{s:s,s:s,s:s}", "k", "close", "room", room, "reason", reason);
    return publish_wait(l, CLUSTER_TO_CONTROL, NULL, ev) ? 0 : -1;
}

int chat_link_room_changed(chat_link *l, const chat_room_def *def, int removed)
{
    json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:b,s:I,s:s}", "name", def->name, "description",
                          def->description, "secret_hash", def->secret_hash, "pin_hash",
                          def->pin_hash, "private", def->is_private, "created_by",
                          (json_int_t)def->created_by, "created_at", def->created_at);
    json_t *ev = d ? json_pack("{s:s,s:o,s:b}", "k", "room", "def", d, "removed", removed) : NULL;
    return publish_wait(l, CLUSTER_TO_CONTROL, NULL, ev) ? 0 : -1;
}

/* ---------- presence ---------- */

json_t *chat_link_members(chat_link *l, const char *room)
{
    return cluster_presence_members(l->cl, room);
}

long chat_link_online(chat_link *l, const char *room)
{
    return cluster_presence_count(l->cl, room);
}

size_t chat_link_find_users(chat_link *l, const char *room, const long *ids, size_t n, long *found)
{
    return cluster_presence_find(l->cl, room, ids, n, found);
}

void chat_link_joined(chat_link *l, const char *session_id, const char *room, const json_t *member)
{
    cluster_presence_put(l->cl, session_id, room, member);
}

void chat_link_left(chat_link *l, const char *session_id)
{
    cluster_presence_delete(l->cl, session_id);
}

/* ---------- catch-up ---------- */

typedef struct {
    chat_link *l;
    long user_id;
    const char *login;
    json_t *messages;
    int more;
    size_t scanned;
    int too_sparse; /* CATCH_UP_SCAN_MAX read: the log answers */
    const char *room;
} reading;

static int whisper_for(const long *to_ids, size_t n_to, long sender, long user_id)
{
    if (user_id <= 0)
        return 0;
    if (sender == user_id)
        return 1;
    for (size_t i = 0; i < n_to; i++)
        if (to_ids[i] == user_id)
            return 1;
    return 0;
}

static int read_one(void *arg, int64_t id, const char *data, size_t len)
{
    reading *r = arg;
    if (json_array_size(r->messages) == STORE_SINCE_MAX) {
        r->more = 1;
        return 0;
    }
    if (++r->scanned > CATCH_UP_SCAN_MAX) {
        r->too_sparse = 1;
        return 0;
    }
    json_t *ev = json_loadb(data, len, 0, NULL);
    const char *origin;
    chat_event_kind kind = chat_event_kind_of(ev, &origin);
    json_t *obj = NULL;
    if (kind == CHAT_EVENT_ANNOUNCEMENT) {
        const char *room, *text, *ts;
        /* the room's subject holds the room's, chatd.every those to every
         * room: an event saying otherwise was not written by chatd */
        if (chat_event_announcement(ev, &room, &text, &ts) &&
            (room == NULL || strcmp(room, r->room) == 0))
            obj = proto_announcement_object(id, room, text, ts);
    } else if (kind == CHAT_EVENT_MESSAGE) {
        proto_message m;
        long to_ids[PROTO_MAX_RECIPIENTS];
        size_t n_to;
        char recipients[CHAT_EVENT_RECIPIENTS_MAX];
        if (chat_event_message(ev, id, &m, to_ids, &n_to, recipients) &&
            strcmp(m.room, r->room) == 0 &&
            (m.to == NULL ||
             (whisper_for(to_ids, n_to, m.user_id, r->user_id) && strcmp(m.ts, r->login) >= 0)))
            obj = proto_message_object(&m, NULL);
    }
    if (obj)
        json_array_append_new(r->messages, obj);
    json_decref(ev);
    return 1;
}

json_t *chat_link_read_since(chat_link *l, const char *room, int64_t since, long user_id,
                             const char *login, int *from_log)
{
    reading r = {
        .l = l, .user_id = user_id, .login = login, .messages = json_array(), .room = room};
    char err[256];
    *from_log = 0;
    if (r.messages == NULL)
        return NULL;
    int rc = cluster_read_since(l->cl, room, since, SIZE_MAX, read_one, &r, err, sizeof err);
    if (rc != 0) {
        if (rc < 0)
            log_warn("chat", "catch-up from the stream failed: %s", err);
        *from_log = rc > 0;
        json_decref(r.messages);
        return NULL;
    }
    if (r.too_sparse) { /* mostly events this reader may not see */
        *from_log = 1;
        json_decref(r.messages);
        return NULL;
    }
    return json_pack("{s:o,s:b}", "messages", r.messages, "more", r.more);
}

/* ---------- open and close ---------- */

chat_link *chat_link_open(chat_service *svc, const char *urls, const char *node_id, char *err,
                          size_t errlen)
{
    chat_link *l = mem_calloc(1, sizeof *l);
    if (l == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    l->svc = svc;
    snprintf(l->node, sizeof l->node, "%s", node_id);
    g_mutex_init(&l->lock);
    /* Tags name this run's publishes (MsgId NODE:TAG, which the stream
     * deduplicates for 2 min, and the "t" its own events come back with): a
     * node restarted under the same id starts past its last run's. */
    atomic_init(&l->next_tag, (unsigned long long)g_get_real_time());
    l->pending = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, pending_free);
    cluster_callbacks cb = {.on_event = on_event,
                            .on_presence = on_presence,
                            .on_peer_delete = on_peer_delete,
                            .on_publish_failed = on_publish_failed,
                            .arg = l};
    /* Ids above every logged one: the store's counter starts past them. */
    int64_t floor = store_next_message_id(svc->cfg.store) - 1;
    l->cl = cluster_open(urls, node_id, floor, &cb, err, errlen);
    if (l->cl == NULL) {
        chat_link_close(l);
        return NULL;
    }
    return l;
}

void chat_link_close(chat_link *l)
{
    if (l == NULL)
        return;
    cluster_close(l->cl);
    g_hash_table_destroy(l->pending);
    g_mutex_clear(&l->lock);
    mem_free(l);
}

cluster *chat_link_cluster(chat_link *l) { return l->cl; }
