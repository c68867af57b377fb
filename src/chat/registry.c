/*
 * registry — see registry.h.
 */
#include "chat/registry.h"

#include "chat/room.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct chat_registry {
    store *db;
    long max;
    GMutex lock;       /* the table; never held across I/O */
    GHashTable *table; /* name -> chat_room_def* */
    uint64_t next_generation;
};

chat_registry *chat_registry_new(store *db, long max)
{
    chat_registry *reg = mem_calloc(1, sizeof *reg);
    if (reg == NULL)
        return NULL;
    reg->db = db;
    reg->max = max > 0 ? max : CHAT_DEFAULT_MAX_ROOMS;
    reg->next_generation = 1;
    g_mutex_init(&reg->lock);
    reg->table = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, mem_free);
    return reg;
}

void chat_registry_free(chat_registry *reg)
{
    if (reg == NULL)
        return;
    g_hash_table_destroy(reg->table);
    g_mutex_clear(&reg->lock);
    mem_free(reg);
}

/* The row of a definition, for the store (borrowed strings). */
static store_room row_of(const chat_room_def *d)
{
    return (store_room){.name = d->name,
                        .description = d->description,
                        .secret_hash = d->secret_hash[0] ? d->secret_hash : NULL,
                        .pin_hash = d->pin_hash[0] ? d->pin_hash : NULL,
                        .is_private = d->is_private,
                        .created_by = d->created_by,
                        .created_at = d->created_at[0] ? d->created_at : NULL};
}

/* With the lock held: inserts a copy of d under a new generation. */
static int insert_locked(chat_registry *reg, chat_room_def *d)
{
    chat_room_def *copy = mem_alloc(sizeof *copy);
    if (copy == NULL)
        return -1;
    d->generation = reg->next_generation++;
    *copy = *d;
    g_hash_table_replace(reg->table, copy->name, copy);
    return 0;
}

static void copy_field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

int chat_registry_load(chat_registry *reg, char *err, size_t errlen)
{
    store_room *rows = NULL;
    size_t n = 0;
    if (store_rooms_load(reg->db, &rows, &n, err, errlen) != 0)
        return -1;
    int have_lobby = 0, status = 0;
    g_mutex_lock(&reg->lock);
    for (size_t i = 0; i < n && status == 0; i++) {
        chat_room_def d = {0};
        if (strlen(rows[i].name) >= sizeof d.name ||
            (rows[i].secret_hash && strlen(rows[i].secret_hash) >= sizeof d.secret_hash) ||
            (rows[i].pin_hash && strlen(rows[i].pin_hash) >= sizeof d.pin_hash)) {
            log_warn("chat", "rooms table: a row with an over-long name or hash is ignored");
            continue;
        }
        copy_field(d.name, sizeof d.name, rows[i].name);
        copy_field(d.description, sizeof d.description, rows[i].description);
        copy_field(d.secret_hash, sizeof d.secret_hash, rows[i].secret_hash);
        copy_field(d.pin_hash, sizeof d.pin_hash, rows[i].pin_hash);
        d.is_private = rows[i].is_private;
        d.created_by = rows[i].created_by;
        copy_field(d.created_at, sizeof d.created_at, rows[i].created_at);
        have_lobby |= strcmp(d.name, CHAT_LOBBY) == 0;
        if (insert_locked(reg, &d) != 0)
            status = -1;
    }
    if (status == 0 && !have_lobby) {
        chat_room_def lobby = {.name = CHAT_LOBBY, .description = "Everyone starts here"};
        clock_iso8601_now(lobby.created_at, sizeof lobby.created_at);
        if (insert_locked(reg, &lobby) != 0)
            status = -1;
        else {
            store_room row = row_of(&lobby);
            store_room_put(reg->db, &row);
        }
    }
    g_mutex_unlock(&reg->lock);
    store_rooms_free(rows);
    if (status != 0)
        err_set(err, errlen, "out of memory loading the rooms");
    return status;
}

int chat_registry_get(chat_registry *reg, const char *name, chat_room_def *out)
{
    g_mutex_lock(&reg->lock);
    const chat_room_def *d = g_hash_table_lookup(reg->table, name);
    if (d)
        *out = *d;
    g_mutex_unlock(&reg->lock);
    return d != NULL;
}

int chat_registry_add(chat_registry *reg, chat_room_def *def)
{
    if (def->created_at[0] == '\0')
        clock_iso8601_now(def->created_at, sizeof def->created_at);
    g_mutex_lock(&reg->lock);
    int status = 0;
    if (g_hash_table_contains(reg->table, def->name)) {
        status = CHAT_REGISTRY_EXISTS;
    } else if ((long)g_hash_table_size(reg->table) >= reg->max) {
        status = CHAT_REGISTRY_FULL;
    } else {
        store_room row = row_of(def);
        store_put_result put = store_room_put(reg->db, &row);
        if (put < 0)
            status = CHAT_REGISTRY_LOG_FULL;
        else if (insert_locked(reg, def) != 0)
            status = -1;
    }
    g_mutex_unlock(&reg->lock);
    return status;
}

/* With the lock held: the room, when it is still at `generation`. */
static int check_locked(chat_registry *reg, const char *name, uint64_t generation)
{
    const chat_room_def *d = g_hash_table_lookup(reg->table, name);
    if (d == NULL)
        return CHAT_REGISTRY_MISSING;
    return d->generation == generation ? 0 : CHAT_REGISTRY_CHANGED;
}

int chat_registry_update(chat_registry *reg, chat_room_def *def)
{
    g_mutex_lock(&reg->lock);
    int status = check_locked(reg, def->name, def->generation);
    if (status == 0) {
        store_room row = row_of(def);
        if (store_room_put(reg->db, &row) < 0)
            status = CHAT_REGISTRY_LOG_FULL;
        else if (insert_locked(reg, def) != 0)
            status = -1;
    }
    g_mutex_unlock(&reg->lock);
    return status;
}

int chat_registry_remove(chat_registry *reg, const char *name, uint64_t generation)
{
    g_mutex_lock(&reg->lock);
    int status = check_locked(reg, name, generation);
    if (status == 0) {
        if (store_room_delete(reg->db, name) < 0)
            status = CHAT_REGISTRY_LOG_FULL;
        else
            g_hash_table_remove(reg->table, name);
    }
    g_mutex_unlock(&reg->lock);
    return status;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const chat_room_def *)a)->name, ((const chat_room_def *)b)->name);
}

void chat_registry_list(chat_registry *reg, chat_room_def **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    g_mutex_lock(&reg->lock);
    size_t count = g_hash_table_size(reg->table);
    chat_room_def *all = count ? mem_calloc(count, sizeof *all) : NULL;
    if (all) {
        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, reg->table);
        while (g_hash_table_iter_next(&it, NULL, &v))
            all[(*n)++] = *(const chat_room_def *)v;
    }
    g_mutex_unlock(&reg->lock);
    if (all)
        qsort(all, *n, sizeof *all, by_name);
    *out = all;
}

long chat_registry_count(chat_registry *reg)
{
    g_mutex_lock(&reg->lock);
    long n = (long)g_hash_table_size(reg->table);
    g_mutex_unlock(&reg->lock);
    return n;
}

long chat_registry_count_by(chat_registry *reg, long created_by)
{
    long n = 0;
    g_mutex_lock(&reg->lock);
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, reg->table);
    while (g_hash_table_iter_next(&it, NULL, &v))
        n += ((const chat_room_def *)v)->created_by == created_by;
    g_mutex_unlock(&reg->lock);
    return n;
}

void chat_registry_apply(chat_registry *reg, const chat_room_def *def)
{
    chat_room_def d = *def;
    g_mutex_lock(&reg->lock);
    if (insert_locked(reg, &d) < 0)
        log_error("chat", "room %s: no memory for another node's change", def->name);
    g_mutex_unlock(&reg->lock);
}

void chat_registry_forget(chat_registry *reg, const char *name)
{
    g_mutex_lock(&reg->lock);
    g_hash_table_remove(reg->table, name);
    g_mutex_unlock(&reg->lock);
}
