/*
 * bus — see bus.h. Topics map to arrays of subscriptions; a GRWLock lets
 * many rooms publish at once while (un)subscribing takes the write side.
 */
#include "chat/bus.h"

#include "util/mem.h"

#include <glib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

struct chat_frame {
    atomic_int refs;
    int final;
    int64_t id;
    size_t len;
    char *data;
};

struct chat_sub {
    char *topic;
    chat_deliver_fn fn;
    void *subscriber;
};

struct chat_bus {
    GRWLock lock;
    GHashTable *topics; /* topic -> GPtrArray of chat_sub* */
};

chat_frame *chat_frame_take(char *data, size_t len)
{
    chat_frame *f = mem_alloc(sizeof *f);
    if (f == NULL) {
        mem_free(data);
        return NULL;
    }
    atomic_init(&f->refs, 1);
    f->final = 0;
    f->id = 0;
    f->data = data;
    f->len = len;
    return f;
}

chat_frame *chat_frame_ref(chat_frame *f)
{
    atomic_fetch_add(&f->refs, 1);
    return f;
}

void chat_frame_unref(chat_frame *f)
{
    if (f && atomic_fetch_sub(&f->refs, 1) == 1) {
        mem_free(f->data);
        mem_free(f);
    }
}

const char *chat_frame_data(const chat_frame *f) { return f->data; }
size_t chat_frame_len(const chat_frame *f) { return f->len; }
void chat_frame_set_id(chat_frame *f, int64_t id) { f->id = id; }
int64_t chat_frame_id(const chat_frame *f) { return f->id; }
void chat_frame_set_final(chat_frame *f) { f->final = 1; }
int chat_frame_final(const chat_frame *f) { return f->final; }

void chat_bus_user_topic(char *out, size_t cap, const char *room, long user_id)
{
    snprintf(out, cap, "%s@%ld", room, user_id);
}

chat_bus *chat_bus_new(void)
{
    chat_bus *b = mem_calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    g_rw_lock_init(&b->lock);
    b->topics =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_ptr_array_unref);
    return b;
}

void chat_bus_free(chat_bus *b)
{
    if (b == NULL)
        return;
    g_hash_table_destroy(b->topics);
    g_rw_lock_clear(&b->lock);
    mem_free(b);
}

chat_sub *chat_bus_subscribe(chat_bus *b, const char *topic, chat_deliver_fn fn, void *subscriber)
{
    chat_sub *s = mem_calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->topic = mem_strdup(topic);
    if (s->topic == NULL) {
        mem_free(s);
        return NULL;
    }
    s->fn = fn;
    s->subscriber = subscriber;
    g_rw_lock_writer_lock(&b->lock);
    GPtrArray *subs = g_hash_table_lookup(b->topics, topic);
    if (subs == NULL) {
        subs = g_ptr_array_new();
        g_hash_table_insert(b->topics, g_strdup(topic), subs);
    }
    g_ptr_array_add(subs, s);
    g_rw_lock_writer_unlock(&b->lock);
    return s;
}

void chat_bus_unsubscribe(chat_bus *b, chat_sub *s)
{
    if (s == NULL)
        return;
    g_rw_lock_writer_lock(&b->lock);
    GPtrArray *subs = g_hash_table_lookup(b->topics, s->topic);
    if (subs) {
        g_ptr_array_remove_fast(subs, s);
        if (subs->len == 0)
            g_hash_table_remove(b->topics, s->topic);
    }
    g_rw_lock_writer_unlock(&b->lock);
    mem_free(s->topic);
    mem_free(s);
}

size_t chat_bus_publish(chat_bus *b, const char *topic, chat_frame *f, const void *except)
{
    size_t n = 0;
    g_rw_lock_reader_lock(&b->lock);
    GPtrArray *subs = g_hash_table_lookup(b->topics, topic);
    for (guint i = 0; subs && i < subs->len; i++) {
        chat_sub *s = g_ptr_array_index(subs, i);
        if (s->subscriber == except)
            continue;
        s->fn(s->subscriber, f);
        n++;
    }
    g_rw_lock_reader_unlock(&b->lock);
    return n;
}

size_t chat_bus_subscribers(chat_bus *b, const char *topic)
{
    g_rw_lock_reader_lock(&b->lock);
    GPtrArray *subs = g_hash_table_lookup(b->topics, topic);
    size_t n = subs ? subs->len : 0;
    g_rw_lock_reader_unlock(&b->lock);
    return n;
}
