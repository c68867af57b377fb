/*
 * event — reading a cluster event (chat/link.h) out of the JSON that NATS
 * carried. NATS is trusted, but its events are read as untrusted input
 * all the same (anyone who can publish on the server can write one):
 * every field is checked for its type, its size and its rule (room
 * names, user ids, a whisper's recipients), and an event that breaks one
 * is refused whole, never half applied. Pure functions; fuzzed
 * (tests/fuzz/fuzz_event.c).
 *
 * Events are objects with "k" (the kind) and "o" (the node that made it):
 *   m      a message: "room", "src" (auto|manual|whisper), "uid", "un",
 *          "uu", "text", "ts", "title"/"pid" (auto), "to" (whisper:
 *          USER…), "t" (the origin's tag for its sender's ref)
 *   a      an announcement: "room" (null: every room), "text", "ts"
 *   kick   "room", "uid"
 *   close  "room", "reason"
 *   room   "def" (a created room's definition), "removed"
 *
 * Ownership: what the functions fill borrows from the event object.
 */
#ifndef CHATD_CHAT_EVENT_H
#define CHATD_CHAT_EVENT_H

#include "chat/protocol.h"
#include "chat/registry.h"

#include <jansson.h>
#include <stdint.h>

typedef enum {
    CHAT_EVENT_BAD = 0, /* not chatd's, or malformed */
    CHAT_EVENT_MESSAGE,
    CHAT_EVENT_ANNOUNCEMENT,
    CHAT_EVENT_KICK,
    CHAT_EVENT_CLOSE,
    CHAT_EVENT_ROOM,
} chat_event_kind;

/* The event's kind and origin node (*origin borrowed). */
chat_event_kind chat_event_kind_of(const json_t *ev, const char **origin);

/* A message event with id `id`: *m filled (m->to: a whisper's USER
 * array); for a whisper also its recipients' ids, ascending, in to_ids
 * (PROTO_MAX_RECIPIENTS) and as text ("2,5") in recipients
 * (CHAT_EVENT_RECIPIENTS_MAX). 1, or 0 when it breaks a rule. */
#define CHAT_EVENT_RECIPIENTS_MAX (PROTO_MAX_RECIPIENTS * 12)
int chat_event_message(const json_t *ev, int64_t id, proto_message *m, long *to_ids, size_t *n_to,
                       char *recipients);
/* An announcement event: room (NULL: every room), text, ts. 1 or 0. */
int chat_event_announcement(const json_t *ev, const char **room, const char **text,
                            const char **ts);
/* A kick (user > 0) or close event's room (and user, reason). 1 or 0. */
int chat_event_kick(const json_t *ev, const char **room, long *user);
int chat_event_close(const json_t *ev, const char **room, const char **reason);
/* A room event's definition and whether the room went. 1 or 0. */
int chat_event_room(const json_t *ev, chat_room_def *def, int *removed);

#endif
