/*
 * link — see link.h.
 */
#include "chat/link.h"

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

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* "2,5": the ids of a whisper's "to", ascending (store.h's form). */
static int recipients_text(const json_t *to, long *ids, size_t cap, size_t *n, char *out,
                           size_t outcap)
{
    size_t k = 0, len = 0;
    size_t i;
    json_t *u;
    json_array_foreach(to, i, u)
    {
        json_int_t id = json_integer_value(json_object_get(u, "id"));
        if (id <= 0 || k == cap)
            return 0;
        ids[k++] = (long)id;
    }
    for (size_t a = 1; a < k; a++) /* a handful: insertion sort */
        for (size_t b = a; b > 0 && ids[b - 1] > ids[b]; b--) {
            long t = ids[b];
            ids[b] = ids[b - 1];
            ids[b - 1] = t;
        }
    out[0] = '\0';
    for (size_t a = 0; a < k; a++) {
        int w = snprintf(out + len, outcap - len, a ? ",%ld" : "%ld", ids[a]);
        if (w < 0 || (size_t)w >= outcap - len)
            return 0;
        len += (size_t)w;
    }
    *n = k;
    return k > 0;
}

/* A message event as a proto_message (borrowing from ev); 0 when it is
 * not one. */
static int message_of(const json_t *ev, int64_t id, proto_message *m)
{
    json_t *to = json_object_get(ev, "to");
    *m = (proto_message){.id = id,
                         .room = str(ev, "room"),
                         .source = str(ev, "src"),
                         .user_id = (long)json_integer_value(json_object_get(ev, "uid")),
                         .user_name = str(ev, "un"),
                         .user_username = str(ev, "uu"),
                         .text = str(ev, "text"),
                         .title = str(ev, "title"),
                         .post_id = (long)json_integer_value(json_object_get(ev, "pid")),
                         .ts = str(ev, "ts"),
                         .to = json_is_array(to) ? to : NULL};
    if (m->room == NULL || m->source == NULL || m->text == NULL || m->ts == NULL || m->user_id <= 0)
        return 0;
    if (m->user_name == NULL)
        m->user_name = "";
    if (m->user_username == NULL)
        m->user_username = "";
    int whisper = strcmp(m->source, "whisper") == 0;
    return whisper == (m->to != NULL);
}

static void log_row(chat_link *l, const store_message *row)
{
    if (store_put_message(l->svc->cfg.store, row) < 0)
        log_error("chat", "message %lld was delivered but not queued for the log",
                  (long long)row->id);
}

static void apply_message(chat_link *l, const json_t *ev, int64_t id, int mine, uint64_t tag)
{
    chat_service *svc = l->svc;
    proto_message m;
    if (!message_of(ev, id, &m)) {
        log_warn("chat", "cluster event %lld: not a message; ignored", (long long)id);
        return;
    }
    long to_ids[PROTO_MAX_RECIPIENTS];
    size_t n_to = 0;
    char recipients[PROTO_MAX_RECIPIENTS * 12];
    int whisper = m.to != NULL;
    if (whisper &&
        !recipients_text(m.to, to_ids, PROTO_MAX_RECIPIENTS, &n_to, recipients, sizeof recipients))
        return;
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
    pending_post *p = mine && tag ? pending_take(l, tag) : NULL;
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
    const char *room = str(ev, "room"), *text = str(ev, "text"), *ts = str(ev, "ts");
    if (text == NULL || ts == NULL)
        return;
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

static int def_of(const json_t *d, chat_room_def *def)
{
    memset(def, 0, sizeof *def);
    const char *name = str(d, "name");
    if (name == NULL || strlen(name) >= sizeof def->name)
        return 0;
    snprintf(def->name, sizeof def->name, "%s", name);
    snprintf(def->description, sizeof def->description, "%s",
             str(d, "description") ? str(d, "description") : "");
    snprintf(def->secret_hash, sizeof def->secret_hash, "%s",
             str(d, "secret_hash") ? str(d, "secret_hash") : "");
    snprintf(def->pin_hash, sizeof def->pin_hash, "%s",
             str(d, "pin_hash") ? str(d, "pin_hash") : "");
    snprintf(def->created_at, sizeof def->created_at, "%s",
             str(d, "created_at") ? str(d, "created_at") : "");
    def->is_private = json_is_true(json_object_get(d, "private"));
    def->created_by = (long)json_integer_value(json_object_get(d, "created_by"));
    return 1;
}

static void on_event(void *arg, int64_t id, const char *data, size_t len)
{
    chat_link *l = arg;
    chat_service *svc = l->svc;
    json_t *ev = json_loadb(data, len, 0, NULL);
    const char *kind = str(ev, "k"), *origin = str(ev, "o");
    if (kind == NULL || origin == NULL) {
        log_warn("chat", "cluster event %lld is not chatd's; ignored", (long long)id);
        json_decref(ev);
        return;
    }
    int mine = strcmp(origin, l->node) == 0;
    const char *room = str(ev, "room");
    if (strcmp(kind, "m") == 0) {
        apply_message(l, ev, id, mine, (uint64_t)json_integer_value(json_object_get(ev, "t")));
    } else if (strcmp(kind, "a") == 0) {
        apply_announcement(l, ev, id, mine);
    } else if (strcmp(kind, "kick") == 0 && room) {
        long user = (long)json_integer_value(json_object_get(ev, "uid"));
        char *frame = proto_build_farewell("kicked", room, "removed by the room's owner");
        size_t n =
            frame ? chat_room_publish_direct(svc->rooms, room, &user, 1, frame, 0, 1, NULL) : 0;
        mem_free(frame);
        if (n)
            log_info("chat", "user %ld kicked from %s: %zu sessions here", user, room, n);
    } else if (strcmp(kind, "close") == 0 && room) {
        const char *reason = str(ev, "reason");
        char *frame = proto_build_farewell("room_closed", room, reason ? reason : "closed");
        size_t n = frame ? chat_room_close(svc->rooms, room, frame) : 0;
        mem_free(frame);
        if (n)
            log_info("chat", "room %s closed: %zu sessions here", room, n);
    } else if (strcmp(kind, "room") == 0 && !mine) {
        chat_room_def def;
        if (!def_of(json_object_get(ev, "def"), &def))
            log_warn("chat", "cluster event %lld: a room without a name", (long long)id);
        else if (json_is_true(json_object_get(ev, "removed")))
            chat_registry_forget(svc->registry, def.name);
        else
            chat_registry_apply(svc->registry, &def);
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
} reading;

static int whisper_for(const json_t *ev, long user_id)
{
    if (user_id <= 0)
        return 0;
    if ((long)json_integer_value(json_object_get(ev, "uid")) == user_id)
        return 1;
    size_t i;
    json_t *u;
    json_array_foreach(json_object_get(ev, "to"), i, u)
    {
        if ((long)json_integer_value(json_object_get(u, "id")) == user_id)
            return 1;
    }
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
    const char *kind = str(ev, "k");
    json_t *obj = NULL;
    if (kind && strcmp(kind, "a") == 0 && str(ev, "text") && str(ev, "ts")) {
        obj = proto_announcement_object(id, str(ev, "room"), str(ev, "text"), str(ev, "ts"));
    } else if (kind && strcmp(kind, "m") == 0) {
        proto_message m;
        if (message_of(ev, id, &m) &&
            (m.to == NULL || (whisper_for(ev, r->user_id) && strcmp(m.ts, r->login) >= 0)))
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
    reading r = {.l = l, .user_id = user_id, .login = login, .messages = json_array()};
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
