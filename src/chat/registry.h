/*
 * registry — the created rooms (version 2): the rows of the `rooms` table,
 * held in memory and written through to the log.
 *
 * A created room has a description, an optional owner secret and member
 * pin (kept only as the slow hashes of auth/secret.h), a private flag and
 * its creator. `lobby` always exists. Rooms that nobody created ("open
 * rooms", as in version 1) are not here: they live in room.h while
 * someone is in them.
 *
 * The table is read once at start (chat_registry_load); every change goes
 * to memory at once and to the database through the store's FIFO queue
 * (store_room_put / store_room_delete), so it survives a restart once the
 * writer has committed it (SIGTERM flushes the queue). At most `max`
 * rooms (--max-rooms): a create past that is refused.
 *
 * Read-check-write: a route reads a room (chat_registry_get), checks a
 * secret with the lock released (it takes tens of milliseconds), then
 * writes. Each definition carries a generation; chat_registry_update and
 * chat_registry_remove with a generation act only if the room was not
 * changed or replaced meanwhile (CHAT_REGISTRY_CHANGED), so a slow check
 * never applies to a room it did not check.
 *
 * Threading: every function is safe from any thread; one mutex guards the
 * table and is never held across I/O (a store put only appends to the
 * queue). Ownership: definitions are copied in and out; the registry owns
 * its table.
 */
#ifndef CHATD_CHAT_REGISTRY_H
#define CHATD_CHAT_REGISTRY_H

#include "store/store.h"

#include <stdint.h>

#define CHAT_LOBBY "lobby"
#define CHAT_DESCRIPTION_MAX 200 /* characters of a room's description */
#define CHAT_HASH_MAX 192        /* bytes of a stored secret or pin hash, NUL included */
/* Rooms one user may create while no --admin-key guards creation: tokens
 * come with any draw, and created rooms outlive a restart. */
#define CHAT_ROOMS_PER_CREATOR 10
/* Rooms GET /api/rooms lists at most ("more":true past it). */
#define CHAT_ROOMS_LISTED 500

typedef struct {
    char name[64];
    char description[CHAT_DESCRIPTION_MAX * 4 + 1];
    char secret_hash[CHAT_HASH_MAX]; /* "" = no owner secret */
    char pin_hash[CHAT_HASH_MAX];    /* "" = no pin */
    int is_private;
    long created_by; /* 0 = chatd (lobby) */
    char created_at[32];
    uint64_t generation; /* set by the registry */
} chat_room_def;

typedef struct chat_registry chat_registry;

enum {
    CHAT_REGISTRY_EXISTS = -2,
    CHAT_REGISTRY_FULL = -3,
    CHAT_REGISTRY_MISSING = -4,
    CHAT_REGISTRY_CHANGED = -5,
    CHAT_REGISTRY_LOG_FULL = -6 /* the store's queue refused the row */
};

/* db is borrowed; max 0 = CHAT_DEFAULT_MAX_ROOMS. NULL on no memory. */
chat_registry *chat_registry_new(store *db, long max);
void chat_registry_free(chat_registry *reg);
/* Reads the rooms table (at start, before serving); lobby is added if the
 * table lacks it. 0, or -1 with err set. */
int chat_registry_load(chat_registry *reg, char *err, size_t errlen);

/* 1 and *out filled when the room is a created one, else 0. */
int chat_registry_get(chat_registry *reg, const char *name, chat_room_def *out);
/* Adds a new room (its generation set in the registry's copy and in
 * *def). 0, CHAT_REGISTRY_EXISTS, CHAT_REGISTRY_FULL, CHAT_REGISTRY_LOG_FULL
 * or -1 (out of memory). */
int chat_registry_add(chat_registry *reg, chat_room_def *def);
/* Replaces the definition of def->name if its generation is still
 * def->generation (then def->generation is the new one). 0,
 * CHAT_REGISTRY_MISSING, CHAT_REGISTRY_CHANGED, CHAT_REGISTRY_LOG_FULL. */
int chat_registry_update(chat_registry *reg, chat_room_def *def);
/* Removes the room if its generation is still `generation`. 0,
 * CHAT_REGISTRY_MISSING, CHAT_REGISTRY_CHANGED, CHAT_REGISTRY_LOG_FULL. */
int chat_registry_remove(chat_registry *reg, const char *name, uint64_t generation);
/* A copy of every definition, by name (*out mem_alloc'd; NULL when none
 * or out of memory, then *n is 0). */
void chat_registry_list(chat_registry *reg, chat_room_def **out, size_t *n);
long chat_registry_count(chat_registry *reg);

/* Another node's change (cluster, chat/link.h): the definition replaces
 * or adds the room, or the room goes, in memory only (the node that made
 * the change wrote the database). No limit applies: the room exists. */
void chat_registry_apply(chat_registry *reg, const chat_room_def *def);
void chat_registry_forget(chat_registry *reg, const char *name);
/* Rooms created by that user (a walk of the table: for creation only). */
long chat_registry_count_by(chat_registry *reg, long created_by);

#endif
