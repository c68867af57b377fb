/*
 * bus — the publish/subscribe seam every room fans out through.
 *
 * A topic is a room name. Publishing hands one serialized frame (built
 * once, reference counted) to every subscriber of the topic; subscribers
 * decide how to deliver it (a data-channel send). Today the bus is in
 * process; carrying rooms across several chatd nodes means putting a
 * message bus behind these five functions and nothing else.
 *
 * Threading: all functions are safe from any thread. Deliveries run on the
 * publisher's thread, under a read lock: once chat_bus_unsubscribe() has
 * returned, that subscriber receives nothing more.
 *
 * Ownership: a frame is reference counted (the publisher's reference plus
 * one per delivery in flight); a subscriber that keeps a frame past its
 * deliver call takes chat_frame_ref. Subscriptions are the bus's, ended by
 * chat_bus_unsubscribe; the bus is the caller's (chat_bus_free).
 */
#ifndef CHATD_BUS_H
#define CHATD_BUS_H

#include <stddef.h>
#include <stdint.h>

typedef struct chat_bus chat_bus;
typedef struct chat_sub chat_sub;
typedef struct chat_frame chat_frame;

/* Takes ownership of a mem_alloc'd buffer of len bytes. NULL on no memory
 * (and the buffer is freed). */
chat_frame *chat_frame_take(char *data, size_t len);
chat_frame *chat_frame_ref(chat_frame *f);
void chat_frame_unref(chat_frame *f);
const char *chat_frame_data(const chat_frame *f);
size_t chat_frame_len(const chat_frame *f);
/* What a frame carries besides its text, set by the publisher before it
 * publishes (never after: deliveries read them without a lock):
 *   id    the message id of a MESSAGE or announcement (0: none), so a
 *         session that catches up from the log can skip a live copy of a
 *         message the log already gave it;
 *   final the receiver's session ends after this frame (room_closed,
 *         kicked). */
void chat_frame_set_id(chat_frame *f, int64_t id);
int64_t chat_frame_id(const chat_frame *f);
void chat_frame_set_final(chat_frame *f);
int chat_frame_final(const chat_frame *f);

typedef void (*chat_deliver_fn)(void *subscriber, chat_frame *f);

chat_bus *chat_bus_new(void);
void chat_bus_free(chat_bus *b);
/* NULL on no memory. */
chat_sub *chat_bus_subscribe(chat_bus *b, const char *topic, chat_deliver_fn fn, void *subscriber);
void chat_bus_unsubscribe(chat_bus *b, chat_sub *s);
/* Topics: a room's name carries what everyone in it gets; "ROOM@UID"
 * (chat_bus_user_topic) what one user's sessions in that room get
 * (whispers, kicks). Room names hold no '@'. */
#define CHAT_TOPIC_MAX 96
void chat_bus_user_topic(char *out, size_t cap, const char *room, long user_id);
/* Delivers f to every subscriber of topic except `except` (may be NULL).
 * Returns how many received it. */
size_t chat_bus_publish(chat_bus *b, const char *topic, chat_frame *f, const void *except);
size_t chat_bus_subscribers(chat_bus *b, const char *topic);

#endif
