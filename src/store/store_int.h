/*
 * store_int — what store.c shares with its backends; not for other modules.
 *
 * A queued row is one store_item: one allocation holding the struct and
 * copies of all its strings, so queuing costs one malloc and can fail in one
 * place. A backend is a vtable (store_backend) over an opaque connection;
 * store.c owns the queue, the writer thread and the retry policy, a backend
 * only turns items into SQL on a connection it was given. Each connection is
 * used by one thread at a time: the writer's by the writer thread (and by
 * store_open before that thread starts), the reader's under store.c's read
 * mutex.
 */
#ifndef CHATD_STORE_INT_H
#define CHATD_STORE_INT_H

#include "store/store.h"
#include "util/err.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    STORE_ITEM_USER,
    STORE_ITEM_MESSAGE,
    STORE_ITEM_SESSION_START,
    STORE_ITEM_SESSION_END,
    STORE_ITEM_API_ERROR,
    STORE_ITEM_ROOM_PUT,   /* u.room */
    STORE_ITEM_ROOM_DELETE /* u.room.name only */
} store_item_kind;

typedef struct store_item {
    struct store_item *next;
    store_item_kind kind;
    size_t size;      /* bytes it holds, counted against the queue's budget */
    int delivered;    /* a message already delivered elsewhere: may use the reserve */
    store_done_cb cb; /* STORE_ITEM_USER only */
    void *cb_arg;
    union {
        store_user user;
        store_message msg;
        struct {
            const char *id;
            long user_id; /* 0 = NULL */
            const char *remote;
            const char *ts;
        } sess_start;
        struct {
            const char *id;
            const char *reason;
            const char *ts;
        } sess_end;
        struct {
            const char *method;
            const char *url;
            int status; /* 0 = NULL */
            const char *error;
            const char *ts;
        } api_err;
        store_room room;
    } u;
    char data[]; /* the strings the union points into */
} store_item;

/* Copies a message (all strings, the user names included) into one new item
 * of kind STORE_ITEM_MESSAGE. NULL on allocation failure. */
store_item *store_item_message(const store_message *m);
/* Copies a room into one new item of the given kind (STORE_ITEM_ROOM_PUT,
 * or STORE_ITEM_ROOM_DELETE for a read row or a deletion). NULL on
 * allocation failure. */
store_item *store_item_room(store_item_kind kind, const store_room *r);

/* The queued message rows of each room, sorted by id (store_index.c), so
 * that a history read does not walk the whole queue under the store lock.
 * Called under that lock only; the index borrows the items. */
typedef struct store_index store_index;
store_index *store_index_new(void); /* NULL when out of memory */
void store_index_free(store_index *ix);
/* Adds a STORE_ITEM_MESSAGE item. 0, or -1 when out of memory. */
int store_index_add(store_index *ix, store_item *it);
/* Removes an item that store_index_add took; anything else is a no-op. */
void store_index_remove(store_index *ix, const store_item *it);
/* Which queued rows a read may see: 1 = keep. */
typedef int (*store_index_filter)(const store_message *m, void *arg);
/* Puts into out[] the newest `limit` queued rows of room with
 * after_id < id < before_id that keep (NULL keeps all), newest first;
 * returns how many. Rows the filter drops cost a step each. */
size_t store_index_range(store_index *ix, const char *room, int64_t after_id, int64_t before_id,
                         size_t limit, store_index_filter keep, void *arg, store_item **out);

/* What a batch write came to. */
typedef enum {
    STORE_W_OK,    /* committed */
    STORE_W_RETRY, /* rolled back for a reason that may pass: try later */
    STORE_W_REJECT /* rolled back because of a row's content */
} store_wres;

typedef struct store_conn store_conn; /* a backend's connection */

/* Rows of a read, newest first, each a STORE_ITEM_MESSAGE item. */
typedef struct store_rows {
    store_item **rows;
    size_t count;
    size_t cap;
} store_rows;

/* What a history read asks a backend for (store.c fills it in, limits
 * already checked). Every kind reads the public rows (recipients NULL) of
 * room and of STORE_ROOM_EVERY, except SEARCH, which reads only room's
 * public "auto" and "manual" rows. Rows come newest first. */
typedef enum {
    STORE_READ_RECENT, /* id < before_id, newest `limit` */
    STORE_READ_SINCE,  /* id > after_id, newest `limit`, plus user_id's private rows */
    STORE_READ_SEARCH  /* id < before_id, newest `limit` matching every word */
} store_read_kind;

/* Longest word PostgreSQL indexes (its MAXSTRLEN is 2048, the byte
 * included); a longer one can never match there, so it matches nothing on
 * either backend. */
#define STORE_SEARCH_WORD_BYTES 2047

typedef struct store_read {
    store_read_kind kind;
    const char *room;
    int64_t after_id;  /* SINCE */
    int64_t before_id; /* RECENT, SEARCH */
    int limit;         /* rows wanted, >= 1 */
    /* SINCE: the reader's private rows: ",ID," pattern for LIKE
     * ("%,5,%") and the id itself. */
    const char *member_like;
    long user_id;
    /* SEARCH: the words, each of ASCII letters and digits and bytes >= 0x80
     * only; fts = "\"w1\" \"w2\"" (an FTS5 query of quoted words, so no
     * word is syntax), plain = "w1 w2" (for plainto_tsquery). */
    const char *fts;
    const char *plain;
} store_read;

typedef struct store_backend {
    const char *name; /* for stats and logs */
    int dialect;      /* index into store_migration.sql */
    /* The statement that opens the migration transaction and serialises
     * concurrent migrators. */
    const char *migrate_begin;
    /* Connects; reader = 1 for a read-only connection for store_recent_*.
     * Prepares the backend's statements (the writer's after migration, see
     * prepare). NULL + err on failure. */
    store_conn *(*connect)(const char *url, int reader, char *err, size_t errlen);
    void (*disconnect)(store_conn *c);
    /* Prepares the write statements; called after migrations. */
    int (*prepare)(store_conn *c, char *err, size_t errlen);
    /* Runs SQL (may be several statements), no result. 0 or -1. */
    int (*exec)(store_conn *c, const char *sql, char *err, size_t errlen);
    /* Runs a query whose first row's first column is an integer; NULL or no
     * row gives 0. 0 or -1. */
    int (*query_int)(store_conn *c, const char *sql, int64_t *out, char *err, size_t errlen);
    /* Writes items[0..n) in one transaction. */
    store_wres (*write_batch)(store_conn *c, store_item *const *items, size_t n, char *err,
                              size_t errlen);
    /* Cheap liveness check. 0 = up. */
    int (*ping)(store_conn *c, char *err, size_t errlen);
    /* True when a failed read on c means the connection itself is broken and
     * should be replaced. */
    int (*broken)(store_conn *c);
    /* A history read (see store_read) on a reader connection; rows are
     * STORE_ITEM_MESSAGE items. 0, or -1 with err set. */
    int (*read)(store_conn *c, const store_read *q, store_rows *out, char *err, size_t errlen);
    /* Every row of rooms (any order), as STORE_ITEM_ROOM_PUT items. */
    int (*rooms)(store_conn *c, store_rows *out, char *err, size_t errlen);
} store_backend;

extern const store_backend store_sqlite_backend;
extern const store_backend store_postgres_backend;

/* Brings the schema on c to STORE_SCHEMA_VERSION (store_schema.c). */
int store_migrate(const store_backend *b, store_conn *c, char *err, size_t errlen);

void store_rows_free(store_rows *r);
/* Appends an item to r (takes it). -1 (and frees it) on allocation failure. */
int store_rows_push(store_rows *r, store_item *it);

#endif
