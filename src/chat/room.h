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
 * fn(subscriber, frame) to the room and (*direct) to the member's own
 * topic in it (whispers, kicks: chat_bus_user_topic), and takes at the
 * same instant the welcome's online list (*online: the others, then the
 * member; a new reference) and, unless `history` is NULL (a catch-up reads
 * the log instead), the history message (*history: a mem_alloc'd text,
 * NULL when out of memory) with its messages' ids (history_ids: room for
 * CHAT_HISTORY_SIZE, ascending; *n_history_ids of them): a message is
 * recorded before it is published, so the subscription may deliver one
 * the history holds, and the caller skips those. Returns the
 * subscription, NULL when out of memory (then nothing changed). */
chat_sub *chat_room_join(chat_rooms *rooms, const char *room, json_t *member, chat_deliver_fn fn,
                         void *subscriber, json_t **online, chat_sub **direct, char **history,
                         int64_t *history_ids, size_t *n_history_ids);
/* The member leaves: unsubscribes both and takes it off the online list (the
 * room is freed if that was the last member and nobody holds it). */
void chat_room_leave(chat_rooms *rooms, const char *room, json_t *member, chat_sub *sub,
                     chat_sub *direct);

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

/* Which of the n user ids have a session in the room: copied to found
 * (room for n), in the order given; returns how many. */
size_t chat_room_find_users(chat_rooms *rooms, const char *room, const long *ids, size_t n,
                            long *found);
/* One frame of `text` (copied; message id `id`, 0 = none; `final`: the
 * receivers' sessions end after it) to the sessions of each user in
 * user_ids in the room, except `except`. Not recorded in the room's
 * history: whispers and kicks. Returns the deliveries (0 also when out of
 * memory). */
size_t chat_room_publish_direct(chat_rooms *rooms, const char *room, const long *user_ids, size_t n,
                                const char *text, int64_t id, int final, const void *except);
/* `text` as a final frame to every session in the room (room_closed),
 * after its history is emptied; returns the deliveries. */
size_t chat_room_close(chat_rooms *rooms, const char *room, const char *text);
/* chat_room_publish to every room in memory, the frame serialized once
 * (an announcement to every room). -1 when out of memory. */
int chat_rooms_publish_all(chat_rooms *rooms, json_t *message, atomic_ulong *counter);
/* Sessions in the room now (0 when it is not in memory). */
long chat_room_online(chat_rooms *rooms, const char *room);
/* fn(arg, name, online) for every room in memory, called with no lock
 * held (on a copy taken under it). */
void chat_rooms_each(chat_rooms *rooms, void (*fn)(void *arg, const char *name, long online),
                     void *arg);

/* The message id of a MESSAGE or announcement object ("id", a decimal
 * string); 0 when it has none. */
int64_t chat_message_id(const json_t *message);
/* The ids of an array of them, at most cap, into out, ascending; returns
 * how many. */
size_t chat_message_ids(const json_t *messages, int64_t *out, size_t cap);

/* A logged row as a MESSAGE object for history and GET .../messages (an
 * announcement row as an announcement object; a whisper's "to" is the
 * caller's to add). NULL when out of memory. */
json_t *chat_row_object(const store_message *row);

#endif
