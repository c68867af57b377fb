/*
 * room — see room.h.
 */
#include "chat/room.h"

#include "chat/protocol.h"
#include "util/json_text.h"
#include "util/log.h"
#include "util/mem.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[64];
    long holds;        /* chat_rooms_hold not yet released */
    GPtrArray *online; /* json_t* USER, one reference each */
    json_t *history;   /* array of MESSAGE objects, oldest first, <= CHAT_HISTORY_SIZE */
    /* user id -> sessions of that user in the room, so a whisper finds its
     * recipients without walking `online` */
    GHashTable *sessions_of;
} room;

struct chat_rooms {
    store *db;
    chat_bus *bus;
    long max;          /* rooms at once */
    GMutex lock;       /* the table and every room in it; never held across I/O */
    GHashTable *table; /* name -> room* */
    long loading;      /* new rooms whose history is being read (count against max) */
};

static void room_free(room *r)
{
    if (r->sessions_of)
        g_hash_table_destroy(r->sessions_of);
    g_ptr_array_unref(r->online);
    json_decref(r->history);
    mem_free(r);
}

json_t *chat_row_object(const store_message *row)
{
    if (row->source && strcmp(row->source, "announcement") == 0)
        return proto_announcement_object(
            row->id, strcmp(row->room, STORE_ROOM_EVERY) == 0 ? NULL : row->room, row->body,
            row->created_at);
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

chat_rooms *chat_rooms_new(store *db, chat_bus *bus, long max_rooms)
{
    chat_rooms *rooms = mem_calloc(1, sizeof *rooms);
    if (rooms == NULL)
        return NULL;
    rooms->db = db;
    rooms->bus = bus;
    rooms->max = max_rooms > 0 ? max_rooms : CHAT_DEFAULT_MAX_ROOMS;
    g_mutex_init(&rooms->lock);
    rooms->table = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)room_free);
    return rooms;
}

void chat_rooms_free(chat_rooms *rooms)
{
    if (rooms == NULL)
        return;
    g_hash_table_destroy(rooms->table);
    g_mutex_clear(&rooms->lock);
    mem_free(rooms);
}

/* A room with an empty history, not in the table yet. */
static room *room_new(const char *name)
{
    room *r = mem_calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->online = g_ptr_array_new_with_free_func((GDestroyNotify)json_decref);
    r->history = json_array();
    r->sessions_of = g_hash_table_new(g_direct_hash, g_direct_equal);
    if (r->history == NULL) {
        room_free(r);
        return NULL;
    }
    return r;
}

/* With rooms->lock held: the room, made with an empty history if missing
 * (a join without a hold); NULL when out of memory. No I/O. */
static room *room_get(chat_rooms *rooms, const char *name)
{
    room *r = g_hash_table_lookup(rooms->table, name);
    if (r == NULL && (r = room_new(name)) != NULL)
        g_hash_table_insert(rooms->table, r->name, r);
    return r;
}

/* With rooms->lock held: frees the room when nothing keeps it. */
static void room_maybe_free(chat_rooms *rooms, room *r)
{
    if (r->holds == 0 && r->online->len == 0)
        g_hash_table_remove(rooms->table, r->name);
}

/* Seeds a new room's history from the log; no lock held. */
static void room_load(chat_rooms *rooms, room *r)
{
    store_message *msgs = NULL;
    size_t n = 0;
    char err[256];
    if (store_recent_messages(rooms->db, r->name, CHAT_HISTORY_SIZE, 0, &msgs, &n, err,
                              sizeof err) != 0) {
        log_warn("chat", "room %s: history not loaded: %s", r->name, err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = chat_row_object(&msgs[i]);
        if (o)
            json_array_append_new(r->history, o);
    }
    store_messages_free(msgs);
}

int chat_rooms_hold(chat_rooms *rooms, const char *name)
{
    g_mutex_lock(&rooms->lock);
    room *r = g_hash_table_lookup(rooms->table, name);
    if (r) {
        r->holds++;
        g_mutex_unlock(&rooms->lock);
        return 0;
    }
    if ((long)g_hash_table_size(rooms->table) + rooms->loading >= rooms->max) {
        g_mutex_unlock(&rooms->lock);
        return CHAT_ROOMS_FULL;
    }
    rooms->loading++;
    g_mutex_unlock(&rooms->lock);

    /* The database read, with the lock released: event loops publishing,
     * joining and leaving in other rooms never wait for it. */
    room *fresh = room_new(name);
    if (fresh)
        room_load(rooms, fresh);

    g_mutex_lock(&rooms->lock);
    rooms->loading--;
    int status = 0;
    r = g_hash_table_lookup(rooms->table, name);
    if (r) { /* another offer made it meanwhile (or a join without a hold) */
        r->holds++;
    } else if (fresh) {
        fresh->holds = 1;
        g_hash_table_insert(rooms->table, fresh->name, fresh);
        fresh = NULL;
    } else {
        status = -1; /* out of memory */
    }
    g_mutex_unlock(&rooms->lock);
    if (fresh)
        room_free(fresh);
    return status;
}

void chat_rooms_release(chat_rooms *rooms, const char *name)
{
    g_mutex_lock(&rooms->lock);
    room *r = g_hash_table_lookup(rooms->table, name);
    if (r) {
        if (r->holds > 0)
            r->holds--;
        room_maybe_free(rooms, r);
    }
    g_mutex_unlock(&rooms->lock);
}

long chat_rooms_count(chat_rooms *rooms)
{
    g_mutex_lock(&rooms->lock);
    long n = (long)g_hash_table_size(rooms->table);
    g_mutex_unlock(&rooms->lock);
    return n;
}

/* The user id of a USER summary. */
static long member_id(const json_t *member)
{
    return (long)json_integer_value(json_object_get(member, "id"));
}

int64_t chat_message_id(const json_t *message)
{
    const char *id = json_string_value(json_object_get(message, "id"));
    return id ? strtoll(id, NULL, 10) : 0;
}

static int by_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

size_t chat_message_ids(const json_t *messages, int64_t *out, size_t cap)
{
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        if (n < cap)
            out[n++] = chat_message_id(m);
    }
    qsort(out, n, sizeof *out, by_id);
    return n;
}

chat_sub *chat_room_join(chat_rooms *rooms, const char *name, json_t *member, chat_deliver_fn fn,
                         void *subscriber, json_t **online, chat_sub **direct, char **history,
                         int64_t *history_ids, size_t *n_history_ids)
{
    *online = NULL;
    if (history) {
        *history = NULL;
        *n_history_ids = 0;
    }
    char topic[CHAT_TOPIC_MAX];
    chat_bus_user_topic(topic, sizeof topic, name, member_id(member));
    g_mutex_lock(&rooms->lock);
    room *r = room_get(rooms, name);
    chat_sub *sub = chat_bus_subscribe(rooms->bus, name, fn, subscriber);
    *direct = sub ? chat_bus_subscribe(rooms->bus, topic, fn, subscriber) : NULL;
    if (*direct == NULL) {
        chat_bus_unsubscribe(rooms->bus, sub);
        g_mutex_unlock(&rooms->lock);
        return NULL;
    }
    json_t *list = json_array();
    for (guint i = 0; r && i < r->online->len; i++)
        json_array_append(list, g_ptr_array_index(r->online, i));
    json_array_append(list, member);
    if (r) {
        if (history) {
            *history = proto_build_history(r->history);
            /* A message is added to the history before it is published
             * (with the lock released): the joiner may get it in both. */
            *n_history_ids = chat_message_ids(r->history, history_ids, CHAT_HISTORY_SIZE);
        }
        g_ptr_array_add(r->online, json_incref(member));
        gpointer key = GINT_TO_POINTER(member_id(member));
        long n = GPOINTER_TO_INT(g_hash_table_lookup(r->sessions_of, key));
        g_hash_table_insert(r->sessions_of, key, GINT_TO_POINTER(n + 1));
    }
    g_mutex_unlock(&rooms->lock);
    *online = list;
    return sub;
}

void chat_room_leave(chat_rooms *rooms, const char *name, json_t *member, chat_sub *sub,
                     chat_sub *direct)
{
    chat_bus_unsubscribe(rooms->bus, sub);
    chat_bus_unsubscribe(rooms->bus, direct);
    g_mutex_lock(&rooms->lock);
    room *r = g_hash_table_lookup(rooms->table, name);
    if (r) {
        if (g_ptr_array_remove(r->online, member)) {
            gpointer key = GINT_TO_POINTER(member_id(member));
            long n = GPOINTER_TO_INT(g_hash_table_lookup(r->sessions_of, key));
            if (n > 1)
                g_hash_table_insert(r->sessions_of, key, GINT_TO_POINTER(n - 1));
            else
                g_hash_table_remove(r->sessions_of, key);
        }
        room_maybe_free(rooms, r);
    }
    g_mutex_unlock(&rooms->lock);
}

/* Delivers a mem_alloc'd text (taken) as one shared frame. */
static int publish_text(chat_rooms *rooms, const char *name, char *text, const void *except)
{
    chat_frame *f = text ? chat_frame_take(text, strlen(text)) : NULL;
    if (f == NULL)
        return -1;
    chat_bus_publish(rooms->bus, name, f, except);
    chat_frame_unref(f);
    return 0;
}

/* A MESSAGE or announcement object as one frame carrying its id; NULL
 * when out of memory. */
static chat_frame *message_frame(const json_t *message)
{
    char *text = json_text_compact(message);
    chat_frame *f = text ? chat_frame_take(text, strlen(text)) : NULL;
    if (f)
        chat_frame_set_id(f, chat_message_id(message));
    return f;
}

/* A copy of `text` as one frame: message id `id` (0: none), `final`. NULL
 * when out of memory. */
static chat_frame *text_frame(const char *text, int64_t id, int final)
{
    char *copy = text ? mem_strdup(text) : NULL;
    chat_frame *f = copy ? chat_frame_take(copy, strlen(copy)) : NULL;
    if (f) {
        chat_frame_set_id(f, id);
        if (final)
            chat_frame_set_final(f);
    }
    return f;
}

/* Adds the message to the room's history (the last CHAT_HISTORY_SIZE), if
 * the room is in memory. */
static void record(chat_rooms *rooms, const char *name, json_t *message)
{
    g_mutex_lock(&rooms->lock);
    room *r = g_hash_table_lookup(rooms->table, name);
    if (r) {
        json_array_append(r->history, message);
        while (json_array_size(r->history) > CHAT_HISTORY_SIZE)
            json_array_remove(r->history, 0);
    }
    g_mutex_unlock(&rooms->lock);
}

int chat_room_publish(chat_rooms *rooms, const char *name, json_t *message, const void *except,
                      atomic_ulong *counter)
{
    /* The frame first: a message that cannot go out must not reach the
     * history either. */
    chat_frame *f = message_frame(message);
    if (f == NULL)
        return -1;
    record(rooms, name, message);
    if (counter)
        atomic_fetch_add(counter, 1);
    chat_bus_publish(rooms->bus, name, f, except);
    chat_frame_unref(f);
    return 0;
}

void chat_room_presence(chat_rooms *rooms, const char *name, const char *event,
                        const json_t *member, const void *except)
{
    publish_text(rooms, name, proto_build_presence(event, member), except);
}

size_t chat_room_find_users(chat_rooms *rooms, const char *name, const long *ids, size_t n,
                            long *found)
{
    size_t k = 0;
    g_mutex_lock(&rooms->lock);
    room *r = g_hash_table_lookup(rooms->table, name);
    for (size_t i = 0; r && i < n; i++)
        if (g_hash_table_contains(r->sessions_of, GINT_TO_POINTER(ids[i])))
            found[k++] = ids[i];
    g_mutex_unlock(&rooms->lock);
    return k;
}

size_t chat_room_publish_direct(chat_rooms *rooms, const char *name, const long *user_ids, size_t n,
                                const char *text, int64_t id, int final, const void *except)
{
    chat_frame *f = text_frame(text, id, final);
    if (f == NULL)
        return 0;
    size_t delivered = 0;
    char topic[CHAT_TOPIC_MAX];
    for (size_t i = 0; i < n; i++) {
        chat_bus_user_topic(topic, sizeof topic, name, user_ids[i]);
        delivered += chat_bus_publish(rooms->bus, topic, f, except);
    }
    chat_frame_unref(f);
    return delivered;
}

size_t chat_room_close(chat_rooms *rooms, const char *name, const char *text)
{
    /* What was said in it goes with it (the log retires its rows too). */
    g_mutex_lock(&rooms->lock);
    room *r = g_hash_table_lookup(rooms->table, name);
    if (r)
        json_array_clear(r->history);
    g_mutex_unlock(&rooms->lock);
    chat_frame *f = text_frame(text, 0, 1);
    if (f == NULL)
        return 0;
    size_t n = chat_bus_publish(rooms->bus, name, f, NULL);
    chat_frame_unref(f);
    return n;
}

long chat_room_online(chat_rooms *rooms, const char *name)
{
    g_mutex_lock(&rooms->lock);
    room *r = g_hash_table_lookup(rooms->table, name);
    long n = r ? (long)r->online->len : 0;
    g_mutex_unlock(&rooms->lock);
    return n;
}

void chat_rooms_each(chat_rooms *rooms, void (*fn)(void *arg, const char *name, long online),
                     void *arg)
{
    /* Names and counts are copied under the lock, fn runs after it. */
    g_mutex_lock(&rooms->lock);
    guint n = g_hash_table_size(rooms->table);
    typedef struct {
        char name[64];
        long online;
    } entry;
    entry *all = n ? mem_calloc(n, sizeof *all) : NULL;
    guint k = 0;
    if (all) {
        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, rooms->table);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
            const room *r = v;
            memcpy(all[k].name, r->name, sizeof all[k].name);
            all[k++].online = (long)r->online->len;
        }
    }
    g_mutex_unlock(&rooms->lock);
    for (guint i = 0; i < k; i++)
        fn(arg, all[i].name, all[i].online);
    mem_free(all);
}

typedef struct {
    chat_rooms *rooms;
    json_t *message;
    chat_frame *frame;
} publish_all;

static void publish_to_room(void *arg, const char *name, long online)
{
    (void)online;
    publish_all *p = arg;
    record(p->rooms, name, p->message);
    chat_bus_publish(p->rooms->bus, name, p->frame, NULL);
}

int chat_rooms_publish_all(chat_rooms *rooms, json_t *message, atomic_ulong *counter)
{
    chat_frame *f = message_frame(message);
    if (f == NULL)
        return -1;
    if (counter)
        atomic_fetch_add(counter, 1);
    publish_all p = {rooms, message, f};
    chat_rooms_each(rooms, publish_to_room, &p);
    chat_frame_unref(f);
    return 0;
}
