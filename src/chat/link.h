/*
 * link — the chat service on a cluster (issue 12): what crosses between
 * nodes, written as events on cluster/cluster.h's stream, and what every
 * node does with each.
 *
 * One rule makes every node agree: a room's messages, whispers,
 * announcements, kicks and closes are not delivered where they are made;
 * they are published to the stream, and every node, the one that made
 * them included, delivers them when the stream gives them back, in the
 * stream's order. A message's id is then known everywhere at once: the
 * stream's sequence plus the cluster's id base. The node that made an
 * event writes its log row when it gets it back (so a row is written once,
 * and a publish whose acknowledgement was lost is still logged when the
 * event arrives); the session that posted gets its "ref" then too.
 *
 * Events (JSON, "k" the kind, "o" the node that made it):
 *   m      a message: auto, manual or whisper (with "to": USER…)
 *   a      an announcement ("room" null: every room)
 *   kick   a user's sessions in a room end ("kicked")
 *   close  a room's sessions end ("room_closed")
 *   room   a created room's definition changed ("def") or it went
 *          ("removed"); the other nodes apply it to their registries
 * Presence is the cluster's bucket: a session that joins is put there,
 * one that leaves is deleted; other nodes' joins and leaves come back as
 * presence frames for this node's sessions.
 *
 * Threading: every function is safe from any thread; chat_link_announce,
 * _kick, _close_room and _room_changed wait for the stream (HTTP threads);
 * chat_link_post never waits (event loops). Ownership: the service owns
 * the link (chat_link_close before the rooms go).
 */
#ifndef CHATD_CHAT_LINK_H
#define CHATD_CHAT_LINK_H

#include "chat/protocol.h"
#include "chat/registry.h"
#include "chat/service.h"
#include "chat/session.h"
#include "cluster/cluster.h"

#include <jansson.h>
#include <stdint.h>

typedef struct chat_link chat_link;

/* Joins the cluster at `urls` as `node_id`. NULL with err set. */
chat_link *chat_link_open(chat_service *svc, const char *urls, const char *node_id, char *err,
                          size_t errlen);
void chat_link_close(chat_link *l);
cluster *chat_link_cluster(chat_link *l);

/* A session's message (m->id unused: the stream gives it). 0 when it is
 * on its way (the sender gets it back with `ref` when delivered, or
 * chat_session_refused if the stream refuses it later); -1 when refused
 * now (the caller tells the sender). */
int chat_link_post(chat_link *l, const proto_message *m, chat_session *sender, const char *ref);
/* An announcement (room NULL: every room): its id, or 0 when the stream
 * did not take it. */
int64_t chat_link_announce(chat_link *l, const char *room, const char *text, const char *ts);
/* 0, or -1 when the stream did not take it. */
int chat_link_kick(chat_link *l, const char *room, long user_id);
int chat_link_close_room(chat_link *l, const char *room, const char *reason);
int chat_link_room_changed(chat_link *l, const chat_room_def *def, int removed);

/* The sessions of these users on other nodes' (see cluster_presence_*). */
json_t *chat_link_members(chat_link *l, const char *room);
long chat_link_online(chat_link *l, const char *room);
size_t chat_link_find_users(chat_link *l, const char *room, const long *ids, size_t n, long *found);
void chat_link_joined(chat_link *l, const char *session_id, const char *room, const json_t *member);
void chat_link_left(chat_link *l, const char *session_id);

/* A catch-up from the stream: {"messages":[…],"more":bool} after message
 * id `since`, as store_messages_since would answer it (user_id, login:
 * whose whispers, from when; 0 = none). NULL with *from_log set when the
 * stream no longer holds everything after `since`, or when its first
 * 4 × STORE_SINCE_MAX events after `since` do not fill the answer (read
 * the log instead); NULL with *from_log clear when it could not be read. Blocks:
 * reader threads only. */
json_t *chat_link_read_since(chat_link *l, const char *room, int64_t since, long user_id,
                             const char *login, int *from_log);

#endif
