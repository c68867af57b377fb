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
#include <string.h>

typedef struct {
    char name[64];
    long holds;        /* chat_rooms_hold not yet released */
    GPtrArray *online; /* json_t* USER, one reference each */
    json_t *history;   /* array of MESSAGE objects, oldest first, <= CHAT_HISTORY_SIZE */
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
    g_ptr_array_unref(r->online);
    json_decref(r->history);
    mem_free(r);
}

json_t *chat_row_object(const store_message *row)
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

chat_sub *chat_room_join(chat_rooms *rooms, const char *name, json_t *member, chat_deliver_fn fn,
                         void *subscriber, json_t **online, char **history)
{
    *online = NULL;
    *history = NULL;
    g_mutex_lock(&rooms->lock);
    room *r = room_get(rooms, name);
    chat_sub *sub = chat_bus_subscribe(rooms->bus, name, fn, subscriber);
    if (sub == NULL) {
        g_mutex_unlock(&rooms->lock);
        return NULL;
    }
    json_t *list = json_array();
    for (guint i = 0; r && i < r->online->len; i++)
        json_array_append(list, g_ptr_array_index(r->online, i));
    json_array_append(list, member);
    if (r) {
        *history = proto_build_history(r->history);
        g_ptr_array_add(r->online, json_incref(member));
    }
    g_mutex_unlock(&rooms->lock);
    *online = list;
    return sub;
}

void chat_room_leave(chat_rooms *rooms, const char *name, json_t *member, chat_sub *sub)
{
    chat_bus_unsubscribe(rooms->bus, sub);
    g_mutex_lock(&rooms->lock);
    room *r = g_hash_table_lookup(rooms->table, name);
    if (r) {
        g_ptr_array_remove(r->online, member);
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

int chat_room_publish(chat_rooms *rooms, const char *name, json_t *message, const void *except,
                      atomic_ulong *counter)
{
    /* The frame first: a message that cannot go out must not reach the
     * history either. */
    char *text = json_text_compact(message);
    chat_frame *f = text ? chat_frame_take(text, strlen(text)) : NULL;
    if (f == NULL)
        return -1;
    g_mutex_lock(&rooms->lock);
    room *r = g_hash_table_lookup(rooms->table, name);
    if (r) {
        json_array_append(r->history, message);
        while (json_array_size(r->history) > CHAT_HISTORY_SIZE)
            json_array_remove(r->history, 0);
    }
    g_mutex_unlock(&rooms->lock);
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
