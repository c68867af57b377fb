/*
 * cluster — one chatd node's link to the others, over NATS JetStream
 * (issue 12). It knows streams, subjects and keys, not chat: the chat
 * layer (chat/link.h) decides what an event says.
 *
 * What NATS carries, and why each piece:
 *   - the stream CHATD (file storage) holds every event of every room in
 *     one total order: messages, whispers, announcements, kicks, room
 *     changes. Each node consumes it with an ordered push consumer from
 *     the moment it started, so every node applies the same events in the
 *     same order. A message's id is the stream's sequence plus a base
 *     (cluster_id_base) fixed when the stream was created, above every id
 *     already in the database: one sequence for the whole cluster, in
 *     delivery order, at no cost per message beyond the publish itself.
 *     Subjects: chatd.room.<room> (a room's events; '.' in a room name is
 *     written '~'), chatd.every (announcements to every room), chatd.ctl
 *     (kicks, room changes); a catch-up reads one room's and the every-room
 *     subjects back by sequence (cluster_read_since, direct gets).
 *   - the key-value bucket chatd_presence holds one key per session
 *     (s.<node>.<session> = {"room","user"}) and one heartbeat per node
 *     (hb.<node>, rewritten every CLUSTER_HEARTBEAT_MS). Every node watches
 *     the bucket; a node whose heartbeat is older than CLUSTER_DEAD_MS is
 *     dead: its sessions leave every room here (on_presence), and come
 *     back if it heartbeats again. A node clears its own keys of a
 *     previous run before its first heartbeat.
 *   - request/reply on chatd.rtc.delete: DELETE /api/rtc/ID sent to any
 *     node reaches the node that holds the peer.
 *
 * Failures: publishing never waits on an event loop (cluster_publish is
 * asynchronous) and is refused at once while NATS is unreachable (the
 * caller tells the client UNAVAILABLE): an event is in the stream, and
 * then reaches every node, or it is refused; never some nodes only. One
 * case tells a caller "failed" wrongly: a publish the server stored but
 * did not acknowledge within CLUSTER_ACK_WAIT_MS (a frozen server) is
 * reported to on_publish_failed and still reaches every node later.
 * nats.c reconnects forever; the consumers resume where they were.
 *
 * Threading: every function is safe from any thread. The callbacks run on
 * nats.c's threads: on_event on one thread, one event at a time, in
 * stream order; on_presence on the presence thread; on_peer_delete and
 * on_publish_failed on others. None holds a lock of this module while it
 * runs a callback. Ownership: the caller owns the cluster (cluster_close).
 */
#ifndef CHATD_CLUSTER_H
#define CHATD_CLUSTER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define CLUSTER_NODE_ID_MAX 32     /* [A-Za-z0-9_-], 1..32 */
#define CLUSTER_HEARTBEAT_MS 1000  /* a node's heartbeat period */
#define CLUSTER_DEAD_MS 5000       /* no heartbeat for this long: the node is dead */
#define CLUSTER_ACK_WAIT_MS 5000   /* a publish not acknowledged by then failed */
#define CLUSTER_MAX_IN_FLIGHT 8192 /* unacknowledged publishes: past it, refused */
#define CLUSTER_RPC_WAIT_MS 1000   /* DELETE /api/rtc/ID: how long to wait for the holder */
#define CLUSTER_RPC_MAX 1          /* such waits at once (of HTTP_THREADS): past it, busy */
#define CLUSTER_STREAM "CHATD"
#define CLUSTER_BUCKET "chatd_presence"

typedef struct cluster cluster;

typedef enum {
    CLUSTER_TO_ROOM,    /* one room's event */
    CLUSTER_TO_EVERY,   /* an announcement to every room */
    CLUSTER_TO_CONTROL, /* kicks, closes, room changes */
} cluster_scope;

typedef struct {
    /* An event of the stream, in stream order; id: cluster_id_base plus
     * its stream sequence. */
    void (*on_event)(void *arg, int64_t id, const char *data, size_t len);
    /* A session on another node is in `room` now (joined 1) or no longer
     * (0): its key was written or deleted, or its node died or came back.
     * member is borrowed. */
    void (*on_presence)(void *arg, const char *room, json_t *member, int joined);
    /* Another node asks for this peer to be closed: 1 if it was here. */
    int (*on_peer_delete)(void *arg, const char *peer_id);
    /* The publish with this tag was refused by the stream or never
     * acknowledged. */
    void (*on_publish_failed)(void *arg, uint64_t tag);
    void *arg;
} cluster_callbacks;

/* 1 when `id` is a valid --node-id. */
int cluster_node_id_ok(const char *id);

/* Connects to the NATS servers in `urls` (nats://HOST:PORT[,…]), creates
 * or binds the stream and the bucket, clears this node's keys of a
 * previous run and starts consuming. id_floor: the largest message id in
 * the database (a new stream's ids start above it; an existing stream
 * whose ids are not above it is refused). NULL with err set when NATS is
 * unreachable or refuses. Callbacks may run before this returns. */
cluster *cluster_open(const char *urls, const char *node_id, int64_t id_floor,
                      const cluster_callbacks *cb, char *err, size_t errlen);
/* No callback runs after it returns (one under way is waited for): the
 * presence thread ends, events, requests and acknowledgements are
 * ignored. Publishing still works. Idempotent. */
void cluster_stop(cluster *c);
/* cluster_stop, then deletes this node's keys and closes the
 * connection. */
void cluster_close(cluster *c);

const char *cluster_node_id(const cluster *c);
/* A message's id is this plus its stream sequence. */
int64_t cluster_id_base(const cluster *c);
/* 1 while connected to NATS. */
int cluster_up(cluster *c);
/* Nodes heartbeating now, this one included. */
long cluster_nodes_alive(cluster *c);

/* Publishes an event without waiting: 0 when it is on its way (tag comes
 * back in on_publish_failed if it then fails), -1 when refused now (NATS
 * unreachable, CLUSTER_MAX_IN_FLIGHT reached, no memory). room: the
 * room of CLUSTER_TO_ROOM, else ignored. */
int cluster_publish(cluster *c, cluster_scope scope, const char *room, const char *data, size_t len,
                    uint64_t tag);
/* Publishes and waits for the stream's acknowledgement (HTTP threads
 * only): the event's sequence, or 0 when it was not stored. */
uint64_t cluster_publish_wait(cluster *c, cluster_scope scope, const char *room, const char *data,
                              size_t len);

/* This node's sessions, as the other nodes see them (never blocks). */
void cluster_presence_put(cluster *c, const char *session_id, const char *room,
                          const json_t *member);
void cluster_presence_delete(cluster *c, const char *session_id);
/* The members of `room` on other live nodes: a new array of USER
 * (references), in no particular order. */
json_t *cluster_presence_members(cluster *c, const char *room);
long cluster_presence_count(cluster *c, const char *room);
/* Which of the n user ids have a session of another live node in `room`:
 * copied to found (room for n); returns how many. */
size_t cluster_presence_find(cluster *c, const char *room, const long *ids, size_t n, long *found);

/* fn(arg, room, sessions) for every room with sessions on other live
 * nodes, called with no lock held. */
void cluster_presence_rooms(cluster *c, void (*fn)(void *arg, const char *room, long online),
                            void *arg);

/* DELETE /api/rtc/ID for a peer this node does not hold: 1 when another
 * node closed it, 0 when none holds it, -1 when NATS is unreachable, -2
 * when CLUSTER_RPC_MAX such calls are under way already. Every live node
 * answers, so it returns after a round trip, but waits up to
 * CLUSTER_RPC_WAIT_MS for a node that does not (HTTP threads only). */
int cluster_peer_delete(cluster *c, const char *peer_id);

/* Reads back, in stream order, the events of `room` and of every room
 * after message id `after`: fn(arg, id, data, len) for each, until it
 * returns 0 or `limit` events were read. Blocks (reader threads only). 0;
 * 1 when the stream no longer holds every event after `after` (aged out,
 * or from before the stream: read the log instead); -1 with err set. */
int cluster_read_since(cluster *c, const char *room, int64_t after, size_t limit,
                       int (*fn)(void *arg, int64_t id, const char *data, size_t len), void *arg,
                       char *err, size_t errlen);

/* Counters for /metrics. */
typedef struct {
    uint64_t published, received, refused, failed;
} cluster_stats;
void cluster_get_stats(cluster *c, cluster_stats *out);

#endif
