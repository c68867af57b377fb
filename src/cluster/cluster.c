/*
 * cluster — see cluster.h.
 *
 * nats.c runs its own threads (a reader, one dispatcher per subscription,
 * a timer thread); this file adds one: the presence thread, which reads
 * the bucket's changes, writes this node's heartbeat and decides which
 * nodes are dead. The presence table (every session of every other node,
 * by room) is under one mutex, held for no I/O and no callback: events
 * are collected under it and handed to on_presence after.
 */
#include "cluster/cluster.h"

#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"

#include <glib.h>
#include <nats/nats.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBJECT_ROOM "chatd.room."
#define SUBJECT_EVERY "chatd.every"
#define SUBJECT_CONTROL "chatd.ctl"
#define SUBJECT_ALL "chatd.>"
#define SUBJECT_RPC_DELETE "chatd-rpc.rtc.delete"
#define KV_PREFIX "$KV." CLUSTER_BUCKET "."
#define BASE_PREFIX "chatd message ids: base "
/* A dead node's sessions are forgotten after this long (its keys are
 * cleared when it starts again). */
#define FORGET_DEAD_MS (10 * 60 * 1000)
/* Delete markers of sessions that left: purged every 10 minutes once older
 * than 10 minutes (a node that starts reads the whole bucket). */
#define PURGE_EVERY_MS (10 * 60 * 1000)
#define PURGE_OLDER_THAN_NS (10LL * 60 * 1000000000LL)
#define STREAM_MAX_AGE_NS (7LL * 24 * 3600 * 1000000000LL)
#define STREAM_MAX_BYTES (1LL << 30)
#define STREAM_DUPLICATES_NS (120LL * 1000000000LL)

typedef struct {
    char node[CLUSTER_NODE_ID_MAX + 1];
    int64_t last_seen_ms; /* monotonic; 0 = never */
    int alive;
} node_state;

typedef struct {
    char key[128]; /* s.<node>.<session> */
    char node[CLUSTER_NODE_ID_MAX + 1];
    char room[64];
    json_t *member;
    long user_id;
} member_entry;

struct cluster {
    cluster_callbacks cb;
    char node[CLUSTER_NODE_ID_MAX + 1];
    int64_t base;
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
    kvWatcher *watcher;
    natsSubscription *events;
    natsSubscription *rpc;
    GThread *presence_thread;
    atomic_int stop;
    atomic_int in_callback;      /* nats.c threads inside cb_enter/cb_leave */
    atomic_llong reconnected_ms; /* monotonic ms of the last (re)connect */
    int64_t own_beat_age_ms;     /* at open: age of a heartbeat under this id; -1 none */
    atomic_long in_flight;
    atomic_int rpc_busy; /* cluster_peer_delete calls under way */
    atomic_ullong published, received, refused, failed;
    GMutex lock;
    GHashTable *members; /* key -> member_entry* (owned) */
    GHashTable *rooms;   /* room -> GHashTable(key -> member_entry*, borrowed) */
    GHashTable *nodes;   /* node -> node_state* (owned) */
    GHashTable *local;   /* session id -> char* value text (this node's keys) */
};

typedef struct {
    char room[64];
    json_t *member; /* a reference */
    int joined;
} presence_event;

static int64_t now_ms(void) { return g_get_monotonic_time() / 1000; }

int cluster_node_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > CLUSTER_NODE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(g_ascii_isalnum(id[i]) || id[i] == '-' || id[i] == '_'))
            return 0;
    return 1;
}

/* chatd.room.<room>, '.' written '~' (room names hold no '~'). 0 when the
 * name holds a character no room name may. */
static int room_subject(char *out, size_t cap, const char *room)
{
    size_t k = strlen(SUBJECT_ROOM), n = strlen(room);
    if (n == 0 || k + n + 1 > cap)
        return 0;
    memcpy(out, SUBJECT_ROOM, k);
    for (size_t i = 0; i < n; i++) {
        char ch = room[i];
        if (!(g_ascii_isalnum(ch) || ch == '-' || ch == '_' || ch == '.'))
            return 0;
        out[k + i] = ch == '.' ? '~' : ch;
    }
    out[k + n] = '\0';
    return 1;
}

static int scope_subject(char *out, size_t cap, cluster_scope scope, const char *room)
{
    if (scope == CLUSTER_TO_ROOM)
        return room != NULL && room_subject(out, cap, room);
    snprintf(out, cap, "%s", scope == CLUSTER_TO_EVERY ? SUBJECT_EVERY : SUBJECT_CONTROL);
    return 1;
}

/* ---------- presence table (lock held) ---------- */

static node_state *node_get(cluster *c, const char *node)
{
    node_state *n = g_hash_table_lookup(c->nodes, node);
    if (n == NULL) {
        n = g_new0(node_state, 1);
        snprintf(n->node, sizeof n->node, "%s", node);
        g_hash_table_insert(c->nodes, n->node, n);
    }
    return n;
}

static void emit(GArray *events, const member_entry *e, int joined)
{
    presence_event ev = {.member = json_incref(e->member), .joined = joined};
    snprintf(ev.room, sizeof ev.room, "%s", e->room);
    g_array_append_val(events, ev);
}

static void member_remove(cluster *c, member_entry *e)
{
    GHashTable *room = g_hash_table_lookup(c->rooms, e->room);
    if (room) {
        g_hash_table_remove(room, e->key);
        if (g_hash_table_size(room) == 0)
            g_hash_table_remove(c->rooms, e->room);
    }
    g_hash_table_remove(c->members, e->key); /* frees e */
}

static void member_free(void *p)
{
    member_entry *e = p;
    json_decref(e->member);
    g_free(e);
}

/* Every entry of `node`: a join or leave each, or their removal. */
static void node_entries(cluster *c, const char *node, GArray *events, int joined, int forget)
{
    GPtrArray *mine = g_ptr_array_new();
    GHashTableIter it;
    void *k, *v;
    g_hash_table_iter_init(&it, c->members);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (strcmp(((member_entry *)v)->node, node) == 0)
            g_ptr_array_add(mine, v);
    for (guint i = 0; i < mine->len; i++) {
        member_entry *e = g_ptr_array_index(mine, i);
        if (events)
            emit(events, e, joined);
        if (forget)
            member_remove(c, e);
    }
    g_ptr_array_free(mine, TRUE);
}

/* A session key changed: s.<node>.<session>. */
static void apply_session_key(cluster *c, const char *key, kvOperation op, const char *value,
                              int len, GArray *events, GPtrArray *own_stale)
{
    const char *node_start = key + 2;
    const char *dot = strchr(node_start, '.');
    if (dot == NULL || (size_t)(dot - node_start) > CLUSTER_NODE_ID_MAX)
        return;
    char node[CLUSTER_NODE_ID_MAX + 1];
    memcpy(node, node_start, (size_t)(dot - node_start));
    node[dot - node_start] = '\0';
    if (strcmp(node, c->node) == 0) {
        /* our own key: only a previous run's, seen at start, matters */
        if (own_stale && op == kvOp_Put && !g_hash_table_contains(c->local, dot + 1))
            g_ptr_array_add(own_stale, g_strdup(key));
        return;
    }
    node_state *n = node_get(c, node);
    member_entry *old = g_hash_table_lookup(c->members, key);
    json_t *v = op == kvOp_Put ? json_loadb(value, (size_t)len, 0, NULL) : NULL;
    const char *room = json_string_value(json_object_get(v, "room"));
    json_t *user = json_object_get(v, "user");
    if (old && room && strcmp(old->room, room) == 0 && json_equal(old->member, user)) {
        /* the same session said again (a node re-announces its sessions
         * after a reconnect): nobody left or came */
        json_decref(v);
        return;
    }
    if (old) {
        if (n->alive)
            emit(events, old, 0);
        member_remove(c, old);
    }
    if (room == NULL || strlen(room) >= 64 || !json_is_object(user) || strlen(key) >= 128) {
        json_decref(v);
        return;
    }
    member_entry *e = g_new0(member_entry, 1);
    snprintf(e->key, sizeof e->key, "%s", key);
    snprintf(e->node, sizeof e->node, "%s", node);
    snprintf(e->room, sizeof e->room, "%s", room);
    e->member = json_incref(user);
    e->user_id = (long)json_integer_value(json_object_get(user, "id"));
    json_decref(v);
    g_hash_table_insert(c->members, e->key, e);
    GHashTable *r = g_hash_table_lookup(c->rooms, e->room);
    if (r == NULL) {
        r = g_hash_table_new(g_str_hash, g_str_equal);
        g_hash_table_insert(c->rooms, g_strdup(e->room), r);
    }
    g_hash_table_insert(r, e->key, e);
    if (n->alive)
        emit(events, e, 1);
}

/* A heartbeat key changed: hb.<node>. `age_ms`: how old the value is
 * (the initial snapshot holds old ones). */
static void apply_heartbeat(cluster *c, const char *node, kvOperation op, int64_t age_ms,
                            GArray *events)
{
    if (!cluster_node_id_ok(node) || strcmp(node, c->node) == 0)
        return;
    node_state *n = node_get(c, node);
    if (op != kvOp_Put) { /* a node that stops says goodbye */
        if (n->alive)
            node_entries(c, node, events, 0, 0);
        n->alive = 0;
        n->last_seen_ms = now_ms() - CLUSTER_DEAD_MS;
        return;
    }
    if (age_ms >= CLUSTER_DEAD_MS)
        return;
    n->last_seen_ms = now_ms() - age_ms;
    if (!n->alive) {
        n->alive = 1;
        node_entries(c, node, events, 1, 0);
    }
}

static void apply_entry(cluster *c, kvEntry *e, GArray *events, GPtrArray *own_stale)
{
    const char *key = kvEntry_Key(e);
    kvOperation op = kvEntry_Operation(e);
    if (key == NULL)
        return;
    if (strncmp(key, "s.", 2) == 0) {
        apply_session_key(c, key, op, kvEntry_Value(e), kvEntry_ValueLen(e), events, own_stale);
    } else if (strncmp(key, "hb.", 3) == 0) {
        int64_t age = (g_get_real_time() * 1000 - kvEntry_Created(e)) / 1000000;
        if (op == kvOp_Put && strcmp(key + 3, c->node) == 0)
            c->own_beat_age_ms = age < 0 ? 0 : age; /* open_bucket's question */
        apply_heartbeat(c, key + 3, op, age < 0 ? 0 : age, events);
    }
}

static void deliver_events(cluster *c, GArray *events)
{
    for (guint i = 0; i < events->len; i++) {
        presence_event *ev = &g_array_index(events, presence_event, i);
        if (c->cb.on_presence)
            c->cb.on_presence(c->cb.arg, ev->room, ev->member, ev->joined);
        json_decref(ev->member);
    }
    g_array_set_size(events, 0);
}

/* Nodes without a heartbeat for CLUSTER_DEAD_MS are dead; long-dead ones
 * are forgotten. Not while this node itself was cut off recently: then
 * every heartbeat is late, and nobody died. */
static void check_nodes(cluster *c, GArray *events)
{
    int64_t now = now_ms();
    if (!cluster_up(c) || now - atomic_load(&c->reconnected_ms) < CLUSTER_DEAD_MS)
        return;
    GHashTableIter it;
    void *k, *v;
    GPtrArray *forget = g_ptr_array_new();
    g_hash_table_iter_init(&it, c->nodes);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        node_state *n = v;
        if (n->alive && now - n->last_seen_ms > CLUSTER_DEAD_MS) {
            n->alive = 0;
            log_warn("cluster", "node %s: no heartbeat for %d ms; its sessions leave", n->node,
                     CLUSTER_DEAD_MS);
            node_entries(c, n->node, events, 0, 0);
        } else if (!n->alive && now - n->last_seen_ms > FORGET_DEAD_MS) {
            g_ptr_array_add(forget, n);
        }
    }
    for (guint i = 0; i < forget->len; i++) {
        node_state *n = g_ptr_array_index(forget, i);
        node_entries(c, n->node, NULL, 0, 1);
        g_hash_table_remove(c->nodes, n->node);
    }
    g_ptr_array_free(forget, TRUE);
}

/* ---------- callbacks ---------- */

/* nats.c may still run a subscription's handler after
 * natsSubscription_Unsubscribe returns ("the subscription will still be
 * valid until the callback returns"), and its threads outlive ours: every
 * handler that calls back into chat (or reads c's tables) runs between
 * these two, and cluster_stop waits for it. Count first, then look at
 * stop (cluster_stop does the reverse): no handler enters after
 * cluster_stop saw none inside. */
static int cb_enter(cluster *c)
{
    atomic_fetch_add(&c->in_callback, 1);
    if (atomic_load(&c->stop)) {
        atomic_fetch_sub(&c->in_callback, 1);
        return 0;
    }
    return 1;
}

static void cb_leave(cluster *c) { atomic_fetch_sub(&c->in_callback, 1); }

/* ---------- publishing ---------- */

static void kv_publish(cluster *c, const char *key, const char *value, int delete_op)
{
    char subject[192];
    snprintf(subject, sizeof subject, KV_PREFIX "%s", key);
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subject, NULL, value, value ? (int)strlen(value) : 0) != NATS_OK)
        return;
    if (delete_op)
        natsMsgHeader_Set(m, "KV-Operation", "DEL");
    natsConnection_PublishMsg(c->nc, m); /* buffered while reconnecting */
    natsMsg_Destroy(m);
}

static void heartbeat(cluster *c)
{
    char key[64];
    snprintf(key, sizeof key, "hb.%s", c->node);
    if (cluster_up(c))
        kv_publish(c, key, "{}", 0);
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pa;
    cluster *c = closure;
    atomic_fetch_sub(&c->in_flight, 1);
    if (pae == NULL) {
        atomic_fetch_add(&c->published, 1);
    } else {
        atomic_fetch_add(&c->failed, 1);
        const char *tag = NULL;
        uint64_t t = 0;
        if (natsMsgHeader_Get(msg, "Chatd-Tag", &tag) == NATS_OK && tag)
            t = strtoull(tag, NULL, 10);
        log_warn("cluster", "an event was not stored: %s",
                 pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
        if (t && c->cb.on_publish_failed && cb_enter(c)) {
            c->cb.on_publish_failed(c->cb.arg, t);
            cb_leave(c);
        }
    }
    natsMsg_Destroy(msg);
}

int cluster_publish(cluster *c, cluster_scope scope, const char *room, const char *data, size_t len,
                    uint64_t tag)
{
    char subject[128], tag_text[24], msg_id[64];
    if (!scope_subject(subject, sizeof subject, scope, room) || !cluster_up(c)) {
        atomic_fetch_add(&c->refused, 1);
        return -1;
    }
    if (atomic_fetch_add(&c->in_flight, 1) >= CLUSTER_MAX_IN_FLIGHT) {
        atomic_fetch_sub(&c->in_flight, 1);
        atomic_fetch_add(&c->refused, 1);
        return -1;
    }
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subject, NULL, data, (int)len) != NATS_OK) {
        atomic_fetch_sub(&c->in_flight, 1);
        atomic_fetch_add(&c->refused, 1);
        return -1;
    }
    snprintf(tag_text, sizeof tag_text, "%llu", (unsigned long long)tag);
    natsMsgHeader_Set(m, "Chatd-Tag", tag_text);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = CLUSTER_ACK_WAIT_MS;
    if (tag) { /* a retried publish is stored once */
        snprintf(msg_id, sizeof msg_id, "%s:%llu", c->node, (unsigned long long)tag);
        po.MsgId = msg_id;
    }
    natsStatus s = js_PublishMsgAsync(c->js, &m, &po);
    if (s != NATS_OK) {
        natsMsg_Destroy(m); /* NULL when the library took it */
        atomic_fetch_sub(&c->in_flight, 1);
        atomic_fetch_add(&c->refused, 1);
        return -1;
    }
    return 0;
}

uint64_t cluster_publish_wait(cluster *c, cluster_scope scope, const char *room, const char *data,
                              size_t len)
{
    char subject[128];
    if (!scope_subject(subject, sizeof subject, scope, room) || !cluster_up(c)) {
        atomic_fetch_add(&c->refused, 1);
        return 0;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = CLUSTER_ACK_WAIT_MS;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_Publish(&pa, c->js, subject, data, (int)len, &po, &jerr);
    uint64_t seq = s == NATS_OK && pa ? pa->Sequence : 0;
    jsPubAck_Destroy(pa);
    if (seq == 0) {
        atomic_fetch_add(&c->failed, 1);
        log_warn("cluster", "an event was not stored: %s", natsStatus_GetText(s));
    } else {
        atomic_fetch_add(&c->published, 1);
    }
    return seq;
}

/* ---------- consuming ---------- */

static void on_event_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    cluster *c = closure;
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        atomic_fetch_add(&c->received, 1);
        if (cb_enter(c)) {
            c->cb.on_event(c->cb.arg, c->base + (int64_t)meta->Sequence.Stream,
                           natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
            cb_leave(c);
        }
        jsMsgMetaData_Destroy(meta);
    }
    natsMsg_Destroy(msg);
}

static void on_rpc(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    cluster *c = closure;
    char id[80];
    int len = natsMsg_GetDataLength(msg);
    const char *reply = natsMsg_GetReply(msg);
    if (len > 0 && len < (int)sizeof id && reply && cb_enter(c)) {
        memcpy(id, natsMsg_GetData(msg), (size_t)len);
        id[len] = '\0';
        /* Every node answers, so the asker stops waiting as soon as every
         * live node has: a DELETE of an id nobody holds costs a round trip,
         * not CLUSTER_RPC_WAIT_MS of an HTTP thread. */
        int here = c->cb.on_peer_delete && c->cb.on_peer_delete(c->cb.arg, id);
        natsConnection_PublishString(nc, reply, here ? "closed" : "none");
        cb_leave(c);
    }
    natsMsg_Destroy(msg);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    cluster *c = closure;
    /* nats.c calls this for our own close too: not a loss then */
    if (!atomic_load(&c->stop))
        log_warn("cluster", "NATS connection lost; reconnecting (posts are refused meanwhile)");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    cluster *c = closure;
    if (!cb_enter(c))
        return;
    atomic_store(&c->reconnected_ms, now_ms());
    log_info("cluster", "NATS connection back");
    /* The bucket may have been lost with the server: say again who is here. */
    GPtrArray *keys = g_ptr_array_new_with_free_func(g_free);
    GPtrArray *values = g_ptr_array_new_with_free_func(g_free);
    g_mutex_lock(&c->lock);
    GHashTableIter it;
    void *k, *v;
    g_hash_table_iter_init(&it, c->local);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        g_ptr_array_add(keys, g_strdup_printf("s.%s.%s", c->node, (char *)k));
        g_ptr_array_add(values, g_strdup(v));
    }
    g_mutex_unlock(&c->lock);
    for (guint i = 0; i < keys->len; i++)
        kv_publish(c, g_ptr_array_index(keys, i), g_ptr_array_index(values, i), 0);
    g_ptr_array_free(keys, TRUE);
    g_ptr_array_free(values, TRUE);
    heartbeat(c);
    cb_leave(c);
}

static gpointer presence_main(gpointer arg)
{
    cluster *c = arg;
    GArray *events = g_array_new(FALSE, FALSE, sizeof(presence_event));
    int64_t last_beat = 0, last_purge = now_ms();
    while (!atomic_load(&c->stop)) {
        kvEntry *e = NULL;
        natsStatus s = kvWatcher_Next(&e, c->watcher, 250);
        if (atomic_load(&c->stop)) {
            kvEntry_Destroy(e);
            break;
        }
        g_mutex_lock(&c->lock);
        if (s == NATS_OK && e)
            apply_entry(c, e, events, NULL);
        check_nodes(c, events);
        g_mutex_unlock(&c->lock);
        kvEntry_Destroy(e);
        deliver_events(c, events);
        int64_t now = now_ms();
        if (now - last_beat >= CLUSTER_HEARTBEAT_MS) {
            heartbeat(c);
            last_beat = now;
        }
        if (now - last_purge >= PURGE_EVERY_MS && cluster_up(c)) {
            /* Every session that left left a delete marker: without this
             * the bucket, which every node reads at start, only grows. */
            kvPurgeOptions po;
            kvPurgeOptions_Init(&po);
            po.DeleteMarkersOlderThan = PURGE_OLDER_THAN_NS;
            natsStatus ps = kvStore_PurgeDeletes(c->kv, &po);
            if (ps != NATS_OK)
                log_warn("cluster", "old presence markers not purged: %s", natsStatus_GetText(ps));
            last_purge = now;
        }
        if (s != NATS_OK && s != NATS_TIMEOUT)
            g_usleep(100 * 1000); /* stopped watcher or connection trouble */
    }
    g_array_free(events, TRUE);
    return NULL;
}

/* ---------- open and close ---------- */

static int fail(char *err, size_t errlen, const char *what, natsStatus s)
{
    err_set(err, errlen, "%s: %s (%s)", what, natsStatus_GetText(s), nats_GetLastError(NULL));
    return -1;
}

static int parse_base(const char *description, int64_t *base)
{
    size_t k = strlen(BASE_PREFIX);
    if (description == NULL || strncmp(description, BASE_PREFIX, k) != 0)
        return 0;
    char *end;
    long long v = strtoll(description + k, &end, 10);
    if (end == description + k || v < 0)
        return 0;
    *base = v;
    return 1;
}

static int open_stream(cluster *c, int64_t id_floor, char *err, size_t errlen)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, c->js, CLUSTER_STREAM, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        char description[96];
        snprintf(description, sizeof description, BASE_PREFIX "%lld", (long long)id_floor);
        const char *subjects[] = {SUBJECT_ALL};
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        cfg.Name = CLUSTER_STREAM;
        cfg.Description = description;
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.Storage = js_FileStorage;
        cfg.MaxAge = STREAM_MAX_AGE_NS;
        cfg.MaxBytes = STREAM_MAX_BYTES;
        cfg.Duplicates = STREAM_DUPLICATES_NS;
        cfg.AllowDirect = true;
        s = js_AddStream(&si, c->js, &cfg, NULL, &jerr);
        if (s != NATS_OK) /* another node made it first? */
            s = js_GetStreamInfo(&si, c->js, CLUSTER_STREAM, NULL, &jerr);
        else
            log_info("cluster", "stream %s created; message ids continue after %lld",
                     CLUSTER_STREAM, (long long)id_floor);
    }
    if (s != NATS_OK)
        return fail(err, errlen, "NATS JetStream stream " CLUSTER_STREAM, s);
    int ok = parse_base(si->Config ? si->Config->Description : NULL, &c->base);
    uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    if (!ok) {
        err_set(err, errlen, "stream %s exists but was not made by chatd (no id base)",
                CLUSTER_STREAM);
        return -1;
    }
    if (c->base + (int64_t)last < id_floor) {
        err_set(err, errlen,
                "stream %s's ids (up to %lld) are behind the database's (%lld): it was made for "
                "another database; remove it (nats stream rm %s) or use that database",
                CLUSTER_STREAM, (long long)(c->base + (int64_t)last), (long long)id_floor,
                CLUSTER_STREAM);
        return -1;
    }
    return 0;
}

static int open_bucket(cluster *c, char *err, size_t errlen)
{
    natsStatus s = js_KeyValue(&c->kv, c->js, CLUSTER_BUCKET);
    if (s != NATS_OK) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = CLUSTER_BUCKET;
        kc.History = 1;
        kc.StorageType = js_FileStorage;
        s = js_CreateKeyValue(&c->kv, c->js, &kc);
        if (s != NATS_OK)
            s = js_KeyValue(&c->kv, c->js, CLUSTER_BUCKET);
    }
    if (s != NATS_OK)
        return fail(err, errlen, "NATS key-value bucket " CLUSTER_BUCKET, s);
    s = kvStore_WatchAll(&c->watcher, c->kv, NULL);
    if (s != NATS_OK)
        return fail(err, errlen, "watching " CLUSTER_BUCKET, s);
    /* The snapshot first: other nodes' sessions, and this node's keys of
     * a previous run, cleared before its first heartbeat. */
    GArray *events = g_array_new(FALSE, FALSE, sizeof(presence_event));
    GPtrArray *stale = g_ptr_array_new_with_free_func(g_free);
    for (;;) {
        kvEntry *e = NULL;
        s = kvWatcher_Next(&e, c->watcher, 5000);
        if (s != NATS_OK || e == NULL)
            break;
        g_mutex_lock(&c->lock);
        apply_entry(c, e, events, stale);
        g_mutex_unlock(&c->lock);
        kvEntry_Destroy(e);
    }
    /* A heartbeat under this id younger than CLUSTER_DEAD_MS: this node's
     * previous run, just killed, or another live node started with the
     * same --node-id, whose keys must not be cleared. Wait until it would
     * be dead (at most CLUSTER_DEAD_MS + a beat): a live one beats again. */
    int live = 0;
    if (s == NATS_OK && c->own_beat_age_ms >= 0 && c->own_beat_age_ms < CLUSTER_DEAD_MS) {
        int64_t deadline = now_ms() + CLUSTER_DEAD_MS - c->own_beat_age_ms + CLUSTER_HEARTBEAT_MS;
        c->own_beat_age_ms = -1;
        log_info("cluster", "a recent heartbeat of node %s: waiting to see whether it is alive",
                 c->node);
        while (!live && now_ms() < deadline) {
            kvEntry *e = NULL;
            natsStatus ws = kvWatcher_Next(&e, c->watcher, deadline - now_ms());
            if (ws != NATS_OK && ws != NATS_TIMEOUT)
                s = ws;
            if (ws != NATS_OK)
                break;
            if (e == NULL)
                continue;
            g_mutex_lock(&c->lock);
            apply_entry(c, e, events, NULL);
            g_mutex_unlock(&c->lock);
            kvEntry_Destroy(e);
            live = c->own_beat_age_ms >= 0;
        }
    }
    for (guint i = 0; i < events->len; i++)
        json_decref(g_array_index(events, presence_event, i).member);
    g_array_free(events, TRUE);
    if (live) {
        g_ptr_array_free(stale, TRUE);
        err_set(err, errlen,
                "another live node runs as --node-id %s (it heartbeats): give this one "
                "another id",
                c->node);
        return -1;
    }
    for (guint i = 0; i < stale->len; i++)
        kv_publish(c, g_ptr_array_index(stale, i), NULL, 1);
    if (stale->len)
        log_info("cluster", "cleared %u sessions of this node's previous run", stale->len);
    g_ptr_array_free(stale, TRUE);
    if (s != NATS_OK)
        return fail(err, errlen, "reading " CLUSTER_BUCKET, s);
    return 0;
}

static int set_servers(natsOptions *o, const char *urls, char *err, size_t errlen)
{
    gchar **list = g_strsplit(urls, ",", 16);
    const char *servers[16];
    int n = 0;
    for (int i = 0; list[i] && n < 16; i++)
        if (list[i][0])
            servers[n++] = list[i];
    natsStatus s = n ? natsOptions_SetServers(o, servers, n) : NATS_INVALID_ARG;
    g_strfreev(list);
    if (s != NATS_OK)
        return fail(err, errlen, "--cluster", s);
    return 0;
}

cluster *cluster_open(const char *urls, const char *node_id, int64_t id_floor,
                      const cluster_callbacks *cb, char *err, size_t errlen)
{
    if (!cluster_node_id_ok(node_id)) {
        err_set(err, errlen, "bad node id");
        return NULL;
    }
    cluster *c = mem_calloc(1, sizeof *c);
    if (c == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    c->cb = *cb;
    snprintf(c->node, sizeof c->node, "%s", node_id);
    g_mutex_init(&c->lock);
    c->members = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, member_free);
    c->rooms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify)g_hash_table_destroy);
    c->nodes = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
    c->local = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    atomic_store(&c->reconnected_ms, now_ms());
    c->own_beat_age_ms = -1;

    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    char name[64];
    snprintf(name, sizeof name, "chatd %s", node_id);
    if (s != NATS_OK || set_servers(o, urls, err, errlen) < 0) {
        if (s != NATS_OK)
            fail(err, errlen, "NATS options", s);
        natsOptions_Destroy(o);
        cluster_close(c);
        return NULL;
    }
    natsOptions_SetName(o, name);
    natsOptions_SetMaxReconnect(o, -1);
    natsOptions_SetReconnectWait(o, 250);
    natsOptions_SetDisconnectedCB(o, on_disconnected, c);
    natsOptions_SetReconnectedCB(o, on_reconnected, c);
    s = natsConnection_Connect(&c->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        fail(err, errlen, "cannot reach NATS at --cluster", s);
        cluster_close(c);
        return NULL;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = CLUSTER_ACK_WAIT_MS;
    jo.PublishAsync.MaxPending = CLUSTER_MAX_IN_FLIGHT * 2; /* never reached: ours refuses first */
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = c;
    s = natsConnection_JetStream(&c->js, c->nc, &jo);
    if (s != NATS_OK) {
        fail(err, errlen, "NATS JetStream", s);
        cluster_close(c);
        return NULL;
    }
    if (open_stream(c, id_floor, err, errlen) < 0 || open_bucket(c, err, errlen) < 0) {
        cluster_close(c);
        return NULL;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverNew;
    jsErrCode jerr = 0;
    s = js_Subscribe(&c->events, c->js, SUBJECT_ALL, on_event_msg, c, NULL, &so, &jerr);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&c->rpc, c->nc, SUBJECT_RPC_DELETE, on_rpc, c);
    if (s != NATS_OK) {
        fail(err, errlen, "subscribing to the cluster's events", s);
        cluster_close(c);
        return NULL;
    }
    heartbeat(c);
    c->presence_thread = g_thread_new("cluster-presence", presence_main, c);
    log_info("cluster", "node %s joined the cluster at %s (message ids from %lld)", c->node, urls,
             (long long)c->base + 1);
    return c;
}

void cluster_stop(cluster *c)
{
    if (c == NULL)
        return;
    atomic_store(&c->stop, 1);
    if (c->watcher)
        kvWatcher_Stop(c->watcher);
    if (c->presence_thread)
        g_thread_join(c->presence_thread);
    c->presence_thread = NULL;
    while (atomic_load(&c->in_callback) > 0)
        g_usleep(1000);
}

void cluster_close(cluster *c)
{
    if (c == NULL)
        return;
    cluster_stop(c);
    if (c->events) {
        natsSubscription_Unsubscribe(c->events);
        natsSubscription_Destroy(c->events);
    }
    if (c->rpc) {
        natsSubscription_Unsubscribe(c->rpc);
        natsSubscription_Destroy(c->rpc);
    }
    if (c->nc && cluster_up(c)) {
        /* goodbye: the other nodes drop this node's sessions now */
        GHashTableIter it;
        void *k, *v;
        char key[128];
        g_hash_table_iter_init(&it, c->local);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            snprintf(key, sizeof key, "s.%s.%s", c->node, (char *)k);
            kv_publish(c, key, NULL, 1);
        }
        snprintf(key, sizeof key, "hb.%s", c->node);
        kv_publish(c, key, NULL, 1);
        natsConnection_FlushTimeout(c->nc, 1000);
    }
    if (c->js)
        js_PublishAsyncComplete(c->js, NULL);
    kvWatcher_Destroy(c->watcher);
    kvStore_Destroy(c->kv);
    jsCtx_Destroy(c->js);
    if (c->nc) {
        natsConnection_Close(c->nc);
        natsConnection_Destroy(c->nc);
    }
    g_hash_table_destroy(c->rooms);
    g_hash_table_destroy(c->members);
    g_hash_table_destroy(c->nodes);
    g_hash_table_destroy(c->local);
    g_mutex_clear(&c->lock);
    mem_free(c);
}

/* ---------- queries ---------- */

const char *cluster_node_id(const cluster *c) { return c->node; }
int64_t cluster_id_base(const cluster *c) { return c->base; }

int cluster_up(cluster *c)
{
    return c->nc != NULL && natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
}

long cluster_nodes_alive(cluster *c)
{
    long n = 1;
    g_mutex_lock(&c->lock);
    GHashTableIter it;
    void *k, *v;
    g_hash_table_iter_init(&it, c->nodes);
    while (g_hash_table_iter_next(&it, &k, &v))
        n += ((node_state *)v)->alive;
    g_mutex_unlock(&c->lock);
    return n;
}

static int entry_alive(cluster *c, const member_entry *e)
{
    node_state *n = g_hash_table_lookup(c->nodes, e->node);
    return n && n->alive;
}

json_t *cluster_presence_members(cluster *c, const char *room)
{
    json_t *out = json_array();
    g_mutex_lock(&c->lock);
    GHashTable *r = g_hash_table_lookup(c->rooms, room);
    if (r && out) {
        GHashTableIter it;
        void *k, *v;
        g_hash_table_iter_init(&it, r);
        while (g_hash_table_iter_next(&it, &k, &v))
            if (entry_alive(c, v))
                json_array_append(out, ((member_entry *)v)->member);
    }
    g_mutex_unlock(&c->lock);
    return out;
}

long cluster_presence_count(cluster *c, const char *room)
{
    long n = 0;
    g_mutex_lock(&c->lock);
    GHashTable *r = g_hash_table_lookup(c->rooms, room);
    if (r) {
        GHashTableIter it;
        void *k, *v;
        g_hash_table_iter_init(&it, r);
        while (g_hash_table_iter_next(&it, &k, &v))
            n += entry_alive(c, v);
    }
    g_mutex_unlock(&c->lock);
    return n;
}

size_t cluster_presence_find(cluster *c, const char *room, const long *ids, size_t n, long *found)
{
    size_t k = 0;
    g_mutex_lock(&c->lock);
    GHashTable *r = g_hash_table_lookup(c->rooms, room);
    for (size_t i = 0; r && i < n; i++) {
        GHashTableIter it;
        void *key, *v;
        g_hash_table_iter_init(&it, r);
        while (g_hash_table_iter_next(&it, &key, &v)) {
            member_entry *e = v;
            if (e->user_id == ids[i] && entry_alive(c, e)) {
                found[k++] = ids[i];
                break;
            }
        }
    }
    g_mutex_unlock(&c->lock);
    return k;
}

void cluster_presence_rooms(cluster *c, void (*fn)(void *arg, const char *room, long online),
                            void *arg)
{
    GHashTable *counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_mutex_lock(&c->lock);
    GHashTableIter it;
    void *k, *v;
    g_hash_table_iter_init(&it, c->members);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        member_entry *e = v;
        if (!entry_alive(c, e))
            continue;
        long n = GPOINTER_TO_SIZE(g_hash_table_lookup(counts, e->room));
        g_hash_table_replace(counts, g_strdup(e->room), GSIZE_TO_POINTER((gsize)(n + 1)));
    }
    g_mutex_unlock(&c->lock);
    g_hash_table_iter_init(&it, counts);
    while (g_hash_table_iter_next(&it, &k, &v))
        fn(arg, k, (long)GPOINTER_TO_SIZE(v));
    g_hash_table_destroy(counts);
}

void cluster_presence_put(cluster *c, const char *session_id, const char *room,
                          const json_t *member)
{
    json_t *v = json_pack("{s:s,s:O}", "room", room, "user", member);
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (text == NULL)
        return;
    char key[128];
    snprintf(key, sizeof key, "s.%s.%s", c->node, session_id);
    g_mutex_lock(&c->lock);
    g_hash_table_replace(c->local, g_strdup(session_id), g_strdup(text));
    g_mutex_unlock(&c->lock);
    kv_publish(c, key, text, 0);
    free(text);
}

void cluster_presence_delete(cluster *c, const char *session_id)
{
    char key[128];
    snprintf(key, sizeof key, "s.%s.%s", c->node, session_id);
    g_mutex_lock(&c->lock);
    int had = g_hash_table_remove(c->local, session_id);
    g_mutex_unlock(&c->lock);
    if (had)
        kv_publish(c, key, NULL, 1);
}

int cluster_peer_delete(cluster *c, const char *peer_id)
{
    if (!cluster_up(c))
        return -1;
    /* At most CLUSTER_RPC_MAX at once: a wait (a node that died but is
     * not declared dead yet never answers) never holds every HTTP thread. */
    if (atomic_fetch_add(&c->rpc_busy, 1) >= CLUSTER_RPC_MAX) {
        atomic_fetch_sub(&c->rpc_busy, 1);
        return -2;
    }
    int rc = -1;
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    /* Every live node answers ("closed" or "none"), this one included. */
    long want = cluster_nodes_alive(c), got = 0;
    if (natsInbox_Create(&inbox) == NATS_OK &&
        natsConnection_SubscribeSync(&sub, c->nc, inbox) == NATS_OK &&
        natsConnection_PublishRequest(c->nc, SUBJECT_RPC_DELETE, inbox, peer_id,
                                      (int)strlen(peer_id)) == NATS_OK) {
        int64_t deadline = now_ms() + CLUSTER_RPC_WAIT_MS;
        rc = 0;
        while (got < want) {
            int64_t left = deadline - now_ms();
            natsMsg *m = NULL;
            natsStatus s = left > 0 ? natsSubscription_NextMsg(&m, sub, left) : NATS_TIMEOUT;
            if (s != NATS_OK) {
                rc = s == NATS_TIMEOUT ? 0 : -1;
                break;
            }
            int closed =
                natsMsg_GetDataLength(m) == 6 && memcmp(natsMsg_GetData(m), "closed", 6) == 0;
            natsMsg_Destroy(m);
            if (closed) {
                rc = 1;
                break;
            }
            got++;
        }
    }
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    atomic_fetch_sub(&c->rpc_busy, 1);
    return rc;
}

void cluster_get_stats(cluster *c, cluster_stats *out)
{
    out->published = atomic_load(&c->published);
    out->received = atomic_load(&c->received);
    out->refused = atomic_load(&c->refused);
    out->failed = atomic_load(&c->failed);
}

/* ---------- catch-up ---------- */

/* The next stored event of `subject` at or after seq: *msg and *at, or 0
 * when there is none; -1 on an error. */
static int next_of(cluster *c, const char *subject, uint64_t seq, natsMsg **msg, uint64_t *at)
{
    jsDirectGetMsgOptions o;
    jsDirectGetMsgOptions_Init(&o);
    o.Sequence = seq;
    o.NextBySubject = subject;
    *msg = NULL;
    natsStatus s = js_DirectGetMsg(msg, c->js, CLUSTER_STREAM, NULL, &o);
    if (s == NATS_NOT_FOUND)
        return 0;
    if (s != NATS_OK)
        return -1;
    const char *v = NULL;
    if (natsMsgHeader_Get(*msg, "Nats-Sequence", &v) != NATS_OK || v == NULL) {
        natsMsg_Destroy(*msg);
        *msg = NULL;
        return -1;
    }
    *at = strtoull(v, NULL, 10);
    return 1;
}

int cluster_read_since(cluster *c, const char *room, int64_t after_id, size_t limit,
                       int (*fn)(void *arg, int64_t id, const char *data, size_t len), void *arg,
                       char *err, size_t errlen)
{
    if (after_id < c->base)
        return 1;
    uint64_t after = (uint64_t)(after_id - c->base);
    char subject[128];
    if (!room_subject(subject, sizeof subject, room)) {
        err_set(err, errlen, "bad room name");
        return -1;
    }
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, c->js, CLUSTER_STREAM, NULL, &jerr);
    if (s != NATS_OK) {
        err_set(err, errlen, "stream info: %s", natsStatus_GetText(s));
        return -1;
    }
    uint64_t first = si->State.FirstSeq;
    jsStreamInfo_Destroy(si);
    if (first > after + 1)
        return 1;
    /* Two cursors, merged by sequence: the room's events and every room's. */
    natsMsg *a = NULL, *b = NULL;
    uint64_t at_a = 0, at_b = 0;
    int ra = next_of(c, subject, after + 1, &a, &at_a);
    int rb = next_of(c, SUBJECT_EVERY, after + 1, &b, &at_b);
    int rc = 0;
    for (size_t n = 0; n < limit && (ra > 0 || rb > 0);) {
        if (ra < 0 || rb < 0)
            break;
        int take_a = ra > 0 && (rb == 0 || at_a < at_b);
        natsMsg *m = take_a ? a : b;
        uint64_t at = take_a ? at_a : at_b;
        int go_on =
            fn(arg, c->base + (int64_t)at, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        natsMsg_Destroy(m);
        n++;
        if (take_a) {
            a = NULL;
            ra = go_on ? next_of(c, subject, at + 1, &a, &at_a) : 0;
        } else {
            b = NULL;
            rb = go_on ? next_of(c, SUBJECT_EVERY, at + 1, &b, &at_b) : 0;
        }
        if (!go_on)
            break;
    }
    if (ra < 0 || rb < 0) {
        err_set(err, errlen, "reading the stream failed");
        rc = -1;
    }
    natsMsg_Destroy(a);
    natsMsg_Destroy(b);
    return rc;
}
