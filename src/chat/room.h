/*
 * room — the rooms of one chatd: who is online in each, the last messages
 * (history), and fan-out through the bus. Every message and presence event
 * of a room goes out through chat_bus_publish with the room name as the
 * topic, serialized once; this is the seam a message bus between nodes
 * plugs into.
 *
 * A room exists while a session holds it: the offer path takes a hold
 * (chat_rooms_hold, which creates the room and seeds its history from the
 * log's most recent messages) and the session gives it back when it ends
 * (chat_rooms_release). When the last hold is released and nobody is in
 * the room, it is freed; its history comes back from the log next time.
 * At most `max_rooms` exist at once: a hold on a new room past that is
 * refused (the offer gets 503 AT_CAPACITY), so strangers naming rooms
 * cannot grow memory without bound. Members are USER summaries (json_t, one
 * reference held while the member is in the room), identified by pointer.
 *
 * Threading: every function is safe from any thread; one mutex guards the
 * table of rooms and their lists, and event loops take it (join, leave,
 * publish), so it is never held across I/O: chat_rooms_hold reads a new
 * room's history from the database with the mutex released (on an HTTP
 * thread) and inserts the room after, unless another thread did first.
 * Deliveries run on the publisher's thread, after the mutex is released.
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

#define CHAT_DEFAULT_MAX_ROOMS 10000
#define CHAT_ROOMS_FULL (-2)

/* db and bus are borrowed and must outlive the rooms; max_rooms 0 means
 * CHAT_DEFAULT_MAX_ROOMS. NULL on no memory. */
chat_rooms *chat_rooms_new(store *db, chat_bus *bus, long max_rooms);
void chat_rooms_free(chat_rooms *rooms);

/* Holds the room for a session to come, creating it (its history loaded
 * from the log, outside the lock) when it does not exist. 0; CHAT_ROOMS_FULL
 * when it would be a room past max_rooms; -1 when out of memory. Blocks on
 * the database: HTTP threads only. */
int chat_rooms_hold(chat_rooms *rooms, const char *room);
/* Gives a hold back (the session ended, or its offer failed); the room is
 * freed when no hold and no member is left. */
void chat_rooms_release(chat_rooms *rooms, const char *room);
/* Rooms in memory (the /metrics gauge chatd_rooms). */
long chat_rooms_count(chat_rooms *rooms);

/* A member joins (the room should be held; if it is not, it is made with an
 * empty history rather than read the database under the lock): adds
 * `member` to the online list, subscribes
 * fn(subscriber, frame) to the room, and takes at the same instant the
 * welcome's online list (*online: the others, then the member; a new
 * reference) and the history message (*history: a mem_alloc'd text, NULL
 * when out of memory). Returns the subscription, NULL when out of memory
 * (then nothing changed). */
chat_sub *chat_room_join(chat_rooms *rooms, const char *room, json_t *member, chat_deliver_fn fn,
                         void *subscriber, json_t **online, char **history);
/* The member leaves: unsubscribes and takes it off the online list (the
 * room is freed if that was the last member and nobody holds it). */
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
