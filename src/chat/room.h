/*
 * room — the rooms of one chatd: who is online in each, the last messages
 * (history), and fan-out through the bus. Every message and presence event
 * of a room goes out through chat_bus_publish with the room name as the
 * topic, serialized once; this is the seam a message bus between nodes
 * plugs into.
 *
 * A room is created on first use and seeded from the log's most recent
 * messages. Members are USER summaries (json_t, one reference held while
 * the member is in the room), identified by pointer.
 *
 * Threading: every function is safe from any thread; one mutex guards the
 * table of rooms and their lists. Loading a new room's history reads the
 * database under that mutex (it happens on HTTP threads, before any of the
 * room's sessions exists); nothing else blocks there. Deliveries run on the
 * publisher's thread, after the mutex is released.
 *
 * Ownership: the rooms own their histories and a reference to each member;
 * chat_room_join's *online and *history are the caller's; a subscription
 * ends with chat_room_leave.
 */
#ifndef CHATD_CHAT_ROOM_H
#define CHATD_CHAT_ROOM_H

#include "chat/bus.h"
#include "store/store.h"

#include <jansson.h>
#include <stdatomic.h>

#define CHAT_HISTORY_SIZE 50 /* messages kept per room and sent to a joiner */

typedef struct chat_rooms chat_rooms;

/* db and bus are borrowed and must outlive the rooms. NULL on no memory. */
chat_rooms *chat_rooms_new(store *db, chat_bus *bus);
void chat_rooms_free(chat_rooms *rooms);

/* Makes sure the room exists, loading its history from the log the first
 * time. -1 when out of memory. */
int chat_rooms_open(chat_rooms *rooms, const char *room);

/* A member joins: adds `member` to the online list, subscribes
 * fn(subscriber, frame) to the room, and takes at the same instant the
 * welcome's online list (*online: the others, then the member; a new
 * reference) and the history message (*history: a mem_alloc'd text, NULL
 * when out of memory). Returns the subscription, NULL when out of memory
 * (then nothing changed). */
chat_sub *chat_room_join(chat_rooms *rooms, const char *room, json_t *member, chat_deliver_fn fn,
                         void *subscriber, json_t **online, char **history);
/* The member leaves: unsubscribes and takes it off the online list. */
void chat_room_leave(chat_rooms *rooms, const char *room, json_t *member, chat_sub *sub);

/* Adds a MESSAGE object to the room's history and delivers its text (one
 * frame for everyone) to every subscriber but `except` (may be NULL).
 * `counter` (may be NULL) is incremented once the message will go out and
 * before any delivery, so /metrics never lags a receiver. -1 when out of
 * memory (then nothing was recorded, counted or delivered). */
int chat_room_publish(chat_rooms *rooms, const char *room, json_t *message, const void *except,
                      atomic_ulong *counter);
/* Delivers a presence event ("join" or "leave") for a member to every
 * subscriber but `except`. */
void chat_room_presence(chat_rooms *rooms, const char *room, const char *event,
                        const json_t *member, const void *except);

/* A logged row as a MESSAGE object (history and GET .../messages); NULL
 * when out of memory. */
json_t *chat_row_object(const store_message *row);

#endif
