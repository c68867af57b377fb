/*
 * store — chatd's log of users, messages, sessions and API errors.
 *
 * One interface, two backends chosen once by the URL scheme (Redis's ae_*
 * pattern): `sqlite://PATH` (embedded default, WAL journal) and
 * `postgresql://…` / `postgres://…` (a libpq connection URI, sslmode and all
 * as given). Both get the same schema from chatd's own numbered migrations,
 * recorded in a one-row `schema_version` table (see STORE_SCHEMA_VERSION).
 *
 * Writes never block the caller. store_put_* copy their arguments into an
 * in-memory FIFO queue and return; one writer thread per store takes
 * everything queued (up to STORE_BATCH_MAX rows) and writes it in ONE
 * transaction with prepared statements. A row leaves the queue only after its
 * transaction has committed, so:
 *   - when the database is down (server stopped, connection lost, file
 *     locked by someone else, disk full…) the batch is rolled back, rows stay
 *     at the head of the queue in order, the store is marked down, and the
 *     writer retries with backoff (100 ms doubling to 2 s), reconnecting each
 *     time, until it succeeds and marks the store up again;
 *   - FIFO order means a user's row is always written before the messages
 *     and sessions queued after it;
 *   - the queue is bounded in bytes (LIMIT_STORE_QUEUE_BYTES, 64 MiB by
 *     default, minutes of traffic even at --max-peers; see
 *     store_set_queue_limit). A full queue REFUSES, it never drops: from the
 *     moment a message row does not fit, store_put_message returns
 *     STORE_PUT_FULL (and store_full says so) until the writer has drained
 *     the queue to three quarters of its budget. Users, sessions and API
 *     errors may use a reserve of one eighth more, so that joins and leaves
 *     are still recorded while posts are refused; past that they get
 *     STORE_PUT_FULL too. The caller must then not deliver the message: "a
 *     delivered message is never lost" holds because nothing unlogged is
 *     delivered;
 *   - rows are never dropped once queued, with one exception: a row the
 *     database refuses for its content (a constraint or data error, which no
 *     retry can fix) is logged with log_error and counted in
 *     store_stats.rows_rejected, so that one bad row cannot hold up
 *     everything queued behind it.
 *
 * Message ids are allocated in memory (store_next_message_id, an atomic
 * counter seeded from MAX(messages.id) at open), so a message can be
 * delivered with its final id before its row is written; the id is its
 * messages.id.
 *
 * Timestamps are ISO-8601 UTC strings with milliseconds,
 * "2026-11-24T10:00:00.123Z": TEXT in SQLite, timestamptz in PostgreSQL, and
 * returned in that same format by either backend. A timestamp argument must
 * have exactly that form (the put is refused otherwise); NULL means "now".
 *
 * Threading: every function may be called from any thread, several at once,
 * except store_close (once, after every other call has returned). store_put_*
 * only take a mutex for a queue append. Callbacks (store_done_cb) run on the
 * writer thread, one at a time, in queue order; they must not block for long
 * and must not call store_close or store_flush. The reads
 * (store_recent_messages, store_messages_since, store_search_messages,
 * store_rooms_load) use their own read connection (one, shared under a
 * mutex), never the writer's.
 * The writer thread blocks every signal, so SIGTERM/SIGINT reach the
 * application's threads.
 *
 * Shutdown (SIGTERM): call store_flush with a generous timeout, then
 * store_close. Errors are returned as -1 or NULL with a one-line message in
 * the caller's err buffer.
 */
#ifndef CHATD_STORE_H
#define CHATD_STORE_H

#include "util/limits.h"

#include <stddef.h>
#include <stdint.h>

/* The schema version this chatd migrates databases to. */
#define STORE_SCHEMA_VERSION 2
/* Most rows the writer puts into one transaction. */
#define STORE_BATCH_MAX 1000
/* Most rows store_recent_messages returns (larger limits are clamped). */
#define STORE_RECENT_MAX 1000
/* Most rows store_messages_since returns (SPEC: catch-up, then "more"). */
#define STORE_SINCE_MAX 500
/* Most words one search may hold (store_search_messages): a word is a run
 * of ASCII letters and digits and bytes of 0x80 and up. */
#define STORE_SEARCH_WORDS_MAX 32
/* The room of an announcement to every room (not a valid room name). */
#define STORE_ROOM_EVERY "*"
/* How long store_close waits for the queue to drain. */
#define STORE_CLOSE_FLUSH_MS 5000

typedef struct store store;

/* What store_put_*, store_session_* and store_api_error return. Both
 * failures are negative, so `< 0` means "not queued". */
typedef enum {
    STORE_PUT_FULL = -2,   /* the queue is over its budget: refused, try later */
    STORE_PUT_FAILED = -1, /* bad row, out of memory or closing */
    STORE_PUT_OK = 0       /* queued */
} store_put_result;

/* A JSONPlaceholder user. Strings are borrowed for the duration of the call
 * only; the store copies what it keeps. */
typedef struct store_user {
    long id;              /* JSONPlaceholder id, > 0 */
    const char *name;     /* required */
    const char *username; /* required */
    const char *email;    /* NULL = none */
    const char *profile;  /* the whole user object as JSON text; required */
    const char *seen_at;  /* first_seen on insert, last_seen always; NULL = now */
} store_user;

/* A chat message. On store_put_message the strings are borrowed (the store
 * copies them). In the results of store_recent_messages every string lives
 * in the one block the caller frees with store_messages_free. */
typedef struct store_message {
    int64_t id;         /* from store_next_message_id */
    const char *room;   /* required; STORE_ROOM_EVERY for an announcement to every room */
    long user_id;       /* the users.id of the sender; its row comes first. 0 (NULL in
                       * the database) only for an announcement */
    const char *source; /* "auto", "manual", "whisper" or "announcement" */
    /* A private message's recipients: their user ids in ascending order,
     * comma-separated, no spaces ("2,5"); NULL for a public message. Only
     * "whisper" messages have them, and every whisper does. */
    const char *recipients;
    long post_id;           /* 0 = none (NULL in the database) */
    const char *title;      /* NULL = none */
    const char *body;       /* required */
    const char *created_at; /* NULL = now (on put) */
    /* The sender's users.name / users.username. Never NULL in results: from
     * the users table for written rows; for a row still waiting in the queue,
     * the values given on put ("" if none). Optional on put and not written
     * with the message (the users row has them), but set them so that queued
     * messages come back with names, e.g. while the database is down. */
    const char *user_name;
    const char *user_username;
} store_message;

/* Counters for /metrics and /api/health. A snapshot: each field is exact,
 * the set is taken under one lock. */
typedef struct store_stats {
    const char *backend;     /* "sqlite" or "postgresql" (static string) */
    int db_up;               /* 1 = last write/ping succeeded, 0 = down */
    uint64_t down_events;    /* times the database went from up to down */
    size_t queue_depth;      /* rows queued and not yet committed */
    size_t queue_bytes;      /* bytes those rows hold */
    size_t queue_limit;      /* the budget for queue_bytes */
    int queue_full;          /* 1 = message rows are being refused */
    uint64_t rows_refused;   /* puts refused because the queue was full */
    uint64_t rows_written;   /* rows committed */
    uint64_t rows_rejected;  /* rows refused by the database for content */
    uint64_t batches;        /* transactions committed */
    uint64_t write_failures; /* batch attempts rolled back for retry */
    uint64_t last_batch_us;  /* latency of the last committed batch */
    uint64_t avg_batch_us;   /* mean latency over all committed batches */
    uint64_t max_batch_us;   /* worst latency of a committed batch */
} store_stats;

/* Called once the user row is committed (ok = 1), or when it never will be
 * (ok = 0): refused by the database, or still queued when store_close gave
 * up waiting. Exactly one call per accepted put. It runs on the writer
 * thread, except for rows abandoned by store_close, where it runs on the
 * thread calling store_close. */
typedef void (*store_done_cb)(void *arg, int ok);

/* Opens the database named by url, creates the parent directory of a SQLite
 * file if missing, migrates the schema, and starts the writer thread.
 * Returns NULL with a one-line message in err when the scheme is unknown or
 * the database cannot be opened or migrated (chatd exits 1 then). The caller
 * owns the result and ends it with store_close. */
store *store_open(const char *url, char *err, size_t errlen);

/* Flushes (at most STORE_CLOSE_FLUSH_MS), stops the writer thread, closes
 * the connections and frees everything. Rows still queued after that wait
 * are logged as lost and their callbacks get ok = 0. NULL is a no-op. */
void store_close(store *s);

/* The next message id: unique and increasing within this store, larger than
 * every id in the database when it was opened. Never fails. */
int64_t store_next_message_id(store *s);

/* Queue an upsert of the user (first_seen kept, everything else updated);
 * cb (may be NULL) runs as described at store_done_cb. Returns 0 when
 * queued, -1 when not (allocation failure, missing field, store closing): cb
 * is then never called. */
store_put_result store_put_user(store *s, const store_user *u, store_done_cb cb, void *arg);

/* Queue a message row; m is copied. Returns STORE_PUT_OK when queued,
 * STORE_PUT_FULL when the queue is full (see above: do not deliver it, tell
 * the sender to retry), STORE_PUT_FAILED otherwise (allocation failure,
 * missing field, bad source or timestamp, store closing). Also refused:
 * a whisper without recipients in exactly the form above (ids > 0, no
 * leading zeros, strictly ascending: the catch-up query matches a reader's
 * id as text), recipients on any other source, user_id 0 on anything but
 * an announcement, and STORE_ROOM_EVERY on anything but an announcement.
 * An announcement with user_id 0 is stored and returned without names
 * (""), whatever user_name was given; one with a user_id > 0 gets that
 * user's names like any other row. */
store_put_result store_put_message(store *s, const store_message *m);

/* As store_put_message, for a message that was already delivered (on a
 * cluster a node logs its message when the stream gives it back, after
 * every node may have delivered it): it may use the reserve of the other
 * rows, so a queue that filled up meanwhile still takes it. */
store_put_result store_put_delivered_message(store *s, const store_message *m);

/* Queue a sessions row (user_id 0 = none) / set its ended_at and end_reason.
 * Returns 0 when queued, -1 when not. */
store_put_result store_session_start(store *s, const char *session_id, long user_id,
                                     const char *remote, const char *ts);
store_put_result store_session_end(store *s, const char *session_id, const char *reason,
                                   const char *ts);

/* Queue an api_errors row; status 0 = none (no HTTP answer). Returns 0 when
 * queued, -1 when not. */
store_put_result store_api_error(store *s, const char *method, const char *url, int status,
                                 const char *error, const char *ts);

/* The newest `limit` PUBLIC messages of `room` (recipients NULL; the
 * room's announcements and those to every room, STORE_ROOM_EVERY,
 * included) with id < before_id (0 = no bound),
 * newest LAST, with the sender's name and username. Includes messages still
 * waiting in the queue, so a delivered message is always visible. limit must
 * be >= 1 and is clamped to STORE_RECENT_MAX. On success returns 0 and sets
 * *out (one block; free it with store_messages_free; NULL when *count is 0)
 * and *count. Returns -1 with err set when the database cannot be read.
 * An announcement's user_name and user_username are "". */
int store_recent_messages(store *s, const char *room, int limit, int64_t before_id,
                          store_message **out, size_t *count, char *err, size_t errlen);
void store_messages_free(store_message *msgs);

/* Catch-up (SPEC: POST /api/rtc?since=ID): the messages of `room` with
 * id > since_id that user `user_id` may see: the public ones (as
 * store_recent_messages, announcements to every room included) and the
 * private ones it sent or is among the recipients of. The NEWEST `limit`
 * of them (limit >= 1, clamped to STORE_SINCE_MAX), oldest first;
 * *more = 1 when older ones after since_id were left out. Includes
 * messages still queued. Same ownership and errors as
 * store_recent_messages. */
int store_messages_since(store *s, const char *room, long user_id, int64_t since_id, int limit,
                         store_message **out, size_t *count, int *more, char *err, size_t errlen);

/* Full-text search (SPEC: GET /api/rooms/NAME/messages?q=WORDS) of the
 * room's public "auto" and "manual" messages (their body and title): a
 * message matches when it holds every word of `words` as a whole word,
 * case-insensitively, with no stemming (SQLite FTS5, unicode61 tokenizer
 * without diacritics folding; PostgreSQL to_tsvector('simple')). Words
 * are runs of letters and digits; anything else in `words` separates them
 * and is never query syntax. The newest `limit` matches (clamped to
 * STORE_RECENT_MAX) with id < before_id (0 = no bound), newest LAST.
 * Only committed rows are searched. No word at all: 0 rows. Same
 * ownership and errors as store_recent_messages; also -1 for more than 32
 * words, and 0 rows for a word over 2047 bytes (PostgreSQL indexes none
 * such, so SQLite does not find them either). Results come in id order,
 * not ranked. PostgreSQL's text is cut into words where anything but a
 * letter or digit stands (regexp_replace before to_tsvector, in the index
 * and in the query), as FTS5's unicode61 does, so the two agree on
 * e-mail addresses, URLs, file names, numbers ("3.14": 3 and 14),
 * hyphens, apostrophes and underscores, and on accented and CJK text (no
 * segmentation, no diacritics folding). What differs: case folding of a
 * few letters outside ASCII follows the database's locale on PostgreSQL
 * ("İstanbul" is found by "istanbul" there, not on SQLite), and a query
 * word holding punctuation outside ASCII ("foo—bar") is a phrase on SQLite
 * and two words anywhere in the text on PostgreSQL. */
/* The words of a search as store_search_messages counts them (runs of
 * ASCII letters and digits and bytes from 0x80 up), their bytes and the
 * longest's (both may be NULL): callers refuse too many words before
 * calling it. */
size_t store_search_words(const char *words, size_t *bytes, size_t *longest);
int store_search_messages(store *s, const char *room, const char *words, int limit,
                          int64_t before_id, store_message **out, size_t *count, char *err,
                          size_t errlen);

/* A room of the rooms table (version 2). On put the strings are borrowed
 * (copied); from store_rooms_load they live in the block freed by
 * store_rooms_free. */
typedef struct store_room {
    const char *name;        /* required */
    const char *description; /* "" when none */
    const char *secret_hash; /* NULL = no owner secret */
    const char *pin_hash;    /* NULL = no pin */
    int is_private;          /* left out of GET /api/rooms */
    long created_by;         /* users.id of the creator; 0 = chatd itself (lobby) */
    const char *created_at;  /* NULL = now (on put) */
} store_room;

/* Queue an insert-or-replace of the room's row / its deletion (FIFO with
 * every other row; same results as store_put_user). Rooms are read once,
 * at start, with store_rooms_load. */
store_put_result store_room_put(store *s, const store_room *r);
store_put_result store_room_delete(store *s, const char *name);
/* Every row of the rooms table (lobby included: the migration creates
 * it), by name (bytewise, strcmp order). Reads the database (and the rows
 * still queued, applied in order). 0, or -1 with err set. *out is NULL
 * when *count is 0. */
int store_rooms_load(store *s, store_room **out, size_t *count, char *err, size_t errlen);
void store_rooms_free(store_room *rooms);

/* Waits until the queue is empty: every row committed (or refused) and the
 * callbacks of those rows returned. Rows put by other threads while it waits
 * are waited for too. timeout_ms < 0 waits forever. Returns 0, or -1 when
 * the timeout passed first (e.g. the database is down: rows stay queued). */
int store_flush(store *s, int timeout_ms);

/* True while message rows are refused (the queue is full): callers pause
 * what they would post on their own, e.g. auto posts. Lock-free. */
int store_full(store *s);

/* Sets the queue's budget in bytes (default LIMIT_STORE_QUEUE_BYTES); for
 * tests and embedders. Any thread. */
void store_set_queue_limit(store *s, size_t bytes);

/* Fills *out; cheap (one lock), fine for every /metrics scrape. */
void store_get_stats(store *s, store_stats *out);

#endif
