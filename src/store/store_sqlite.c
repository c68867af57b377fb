/*
 * store_sqlite — the SQLite backend of store (URL `sqlite://PATH`).
 *
 * The embedded default: one file, WAL journal so that the reader connection
 * never waits for the writer, synchronous=NORMAL (a commit survives a chatd
 * crash; an OS crash may lose the last few, which WAL keeps consistent),
 * foreign keys on so messages.user_id really references users. The writer
 * connection's busy timeout is short on purpose: while another process holds
 * the write lock the store should report "down" and keep rows queued rather
 * than stall in sqlite3_step.
 *
 * `sqlite://data/chat.db` is a path relative to the working directory,
 * `sqlite:///var/lib/chatd/chat.db` an absolute one. A missing parent
 * directory is created private (0700, util/mkdir.h), like the one the
 * signing key creates: the data directory is the same whichever is first.
 * The file itself is created 0600 before SQLite opens it (it holds emails
 * and addresses), and SQLite gives its -wal and -shm files the mode of the
 * database file; a file left wider by an older chatd is narrowed to 0600.
 *
 * Threading: a connection is used by one thread at a time (see
 * store_int.h), so it is opened with SQLITE_OPEN_NOMUTEX.
 */
#include "store/store_int.h"

#include "util/mem.h"
#include "util/mkdir.h"

#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WRITER_BUSY_MS 250
#define READER_BUSY_MS 2000

enum {
    ST_USER,
    ST_MESSAGE,
    ST_SESSION_START,
    ST_SESSION_END,
    ST_API_ERROR,
    ST_ROOM_PUT,
    ST_ROOM_DELETE,
    ST_COUNT
};

static const char *const write_sql[ST_COUNT] = {
    [ST_USER] = "INSERT INTO users (id, name, username, email, profile, first_seen, last_seen)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                " username = excluded.username, email = excluded.email,"
                " profile = excluded.profile, last_seen = excluded.last_seen",
    /* DO NOTHING: a batch retried after an unclear failure must not fail on
     * rows it already wrote. */
    [ST_MESSAGE] = "INSERT INTO messages"
                   " (id, room, user_id, source, recipients, post_id, title, body, created_at)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
    [ST_SESSION_START] = "INSERT INTO sessions (id, user_id, remote, started_at)"
                         " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
    [ST_SESSION_END] = "UPDATE sessions SET ended_at = ?2, end_reason = ?3 WHERE id = ?1",
    [ST_API_ERROR] = "INSERT INTO api_errors (at, method, url, status, error)"
                     " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_ROOM_PUT] = "INSERT INTO rooms"
                    " (name, description, secret_hash, pin_hash, private, created_by, created_at)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                    " ON CONFLICT (name) DO UPDATE SET description = excluded.description,"
                    " secret_hash = excluded.secret_hash, pin_hash = excluded.pin_hash,"
                    " private = excluded.private, created_by = excluded.created_by,"
                    " created_at = excluded.created_at",
    [ST_ROOM_DELETE] = "DELETE FROM rooms WHERE name = ?1",
};

/*
 * The reads, the same queries as store_postgres.c's (store_int.h's
 * store_read says what each returns). A room's rows and those to every
 * room are two index range scans (messages_room_id, newest first, each cut
 * at the limit) merged by the outer ORDER BY: `room IN (?, '*')` would
 * make SQLite sort every row of the room instead. `?1 <> '*'` keeps a read
 * of the '*' room itself from counting its rows twice.
 */
#define MSG_COLS                                                                                   \
    "m.id, m.room, m.user_id, m.source, m.recipients, m.post_id, m.title, m.body, m.created_at,"   \
    " u.name, u.username"
#define MSG_FROM(ids)                                                                              \
    " FROM (" ids ") x JOIN messages m ON m.id = x.id LEFT JOIN users u ON u.id = m.user_id"

static const char recent_sql[] = "SELECT " MSG_COLS MSG_FROM(
    "SELECT id FROM (SELECT id FROM messages WHERE room = ?1 AND id < ?2"
    " AND recipients IS NULL ORDER BY id DESC LIMIT ?3) a"
    " UNION ALL"
    " SELECT id FROM (SELECT id FROM messages WHERE room = '*' AND ?1 <> '*' AND id < ?2"
    " AND recipients IS NULL ORDER BY id DESC LIMIT ?3) b") " ORDER BY m.id DESC LIMIT ?3";

/* ?4 is the reader's id, ?5 the LIKE pattern ",ID," of it. */
#define SINCE_VISIBLE "(recipients IS NULL OR user_id = ?4 OR (',' || recipients || ',') LIKE ?5)"
static const char since_sql[] = "SELECT " MSG_COLS MSG_FROM(
    "SELECT id FROM (SELECT id FROM messages WHERE room = ?1 AND id > ?2"
    " AND " SINCE_VISIBLE " ORDER BY id DESC LIMIT ?3) a"
    " UNION ALL"
    " SELECT id FROM (SELECT id FROM messages WHERE room = '*' AND ?1 <> '*' AND id > ?2"
    " AND " SINCE_VISIBLE " ORDER BY id DESC LIMIT ?3) b") " ORDER BY m.id DESC LIMIT ?3";

/* ?1 is store.c's query of quoted words: never FTS5 syntax. The FTS5
 * table drives (CROSS JOIN keeps it first): it yields the matching rowids
 * below ?3 newest first, so the LIMIT stops the walk early. Led by
 * messages_room_id instead, SQLite would probe the index once for every
 * row of the room. */
static const char search_sql[] =
    "SELECT " MSG_COLS " FROM messages_fts CROSS JOIN messages m ON m.id = messages_fts.rowid"
    " LEFT JOIN users u ON u.id = m.user_id"
    " WHERE messages_fts MATCH ?1 AND messages_fts.rowid < ?3 AND m.room = ?2"
    " AND m.recipients IS NULL AND m.source IN ('auto', 'manual')"
    " ORDER BY messages_fts.rowid DESC LIMIT ?4";

static const char rooms_sql[] =
    "SELECT name, description, secret_hash, pin_hash, private, created_by, created_at FROM rooms";

struct store_conn {
    sqlite3 *db;
    sqlite3_stmt *write[ST_COUNT];
    sqlite3_stmt *begin, *commit;
    sqlite3_stmt *recent, *since, *search, *rooms;
};

static void sqlite_disconnect(store_conn *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->write[i]);
    sqlite3_finalize(c->begin);
    sqlite3_finalize(c->commit);
    sqlite3_finalize(c->recent);
    sqlite3_finalize(c->since);
    sqlite3_finalize(c->search);
    sqlite3_finalize(c->rooms);
    sqlite3_close(c->db);
    mem_free(c);
}

static int prep(store_conn *c, const char *sql, sqlite3_stmt **out, char *err, size_t errlen)
{
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL) != SQLITE_OK) {
        err_set(err, errlen, "%s", sqlite3_errmsg(c->db));
        return -1;
    }
    return 0;
}

static int sqlite_exec(store_conn *c, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(c->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        err_set(err, errlen, "%s", msg ? msg : sqlite3_errmsg(c->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Makes path (or, with create = 0, path if it exists) a file only its
 * owner may read: created 0600, or narrowed to 0600 when group or others
 * had access. 0, or -1 with err set. */
static int private_file(const char *path, int create, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK | (create ? O_CREAT : 0), 0600);
    if (fd < 0) {
        if (!create && errno == ENOENT)
            return 0;
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        err_set(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    } else if (S_ISREG(st.st_mode) && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        if (fchmod(fd, 0600) != 0) {
            err_set(err, errlen, "%s is readable by others and cannot be made private: %s", path,
                    strerror(errno));
            rc = -1;
        } else {
            log_warn("store", "%s was mode %03o; now 0600 (it holds emails and addresses)", path,
                     (unsigned)(st.st_mode & 0777));
        }
    }
    close(fd);
    return rc;
}

/* The database and its WAL files, private before SQLite touches them. */
static int private_files(const char *path, char *err, size_t errlen)
{
    char side[4096];
    if (private_file(path, 1, err, errlen) != 0)
        return -1;
    static const char *const suffix[] = {"-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        if ((size_t)snprintf(side, sizeof side, "%s%s", path, suffix[i]) >= sizeof side) {
            err_set(err, errlen, "database path too long");
            return -1;
        }
        if (private_file(side, 0, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static store_conn *sqlite_connect(const char *url, int reader, char *err, size_t errlen)
{
    const char *path = url + strlen("sqlite://");
    if (*path == '\0') {
        err_set(err, errlen, "sqlite:// URL without a file path");
        return NULL;
    }
    if (!reader && (mkdir_parents(path, MKDIR_PRIVATE, err, errlen) != 0 ||
                    private_files(path, err, errlen) != 0))
        return NULL;
    store_conn *c = mem_calloc(1, sizeof *c);
    if (c == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (reader ? 0 : SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        err_set(err, errlen, "%s: %s", path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite_disconnect(c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, reader ? READER_BUSY_MS : WRITER_BUSY_MS);
    char sub[256];
    /* journal_mode=WAL is persistent in the file; setting it again is a
     * no-op, and it is the first statement that touches the file, so an
     * unusable file fails here, at open. */
    const char *setup = reader ? "PRAGMA query_only = 1"
                               : "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                                 " PRAGMA foreign_keys = ON";
    if (sqlite_exec(c, setup, sub, sizeof sub) != 0 ||
        (reader && (prep(c, recent_sql, &c->recent, sub, sizeof sub) != 0 ||
                    prep(c, since_sql, &c->since, sub, sizeof sub) != 0 ||
                    prep(c, search_sql, &c->search, sub, sizeof sub) != 0 ||
                    prep(c, rooms_sql, &c->rooms, sub, sizeof sub) != 0))) {
        err_set(err, errlen, "%s: %s", path, sub);
        sqlite_disconnect(c);
        return NULL;
    }
    return c;
}

static int sqlite_prepare(store_conn *c, char *err, size_t errlen)
{
    for (int i = 0; i < ST_COUNT; i++)
        if (c->write[i] == NULL && prep(c, write_sql[i], &c->write[i], err, errlen) != 0)
            return -1;
    if ((c->begin == NULL && prep(c, "BEGIN IMMEDIATE", &c->begin, err, errlen) != 0) ||
        (c->commit == NULL && prep(c, "COMMIT", &c->commit, err, errlen) != 0))
        return -1;
    return 0;
}

static int sqlite_query_int(store_conn *c, const char *sql, int64_t *out, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK) {
        err_set(err, errlen, "%s", sqlite3_errmsg(c->db));
        return -1;
    }
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err_set(err, errlen, "%s", sqlite3_errmsg(c->db));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_long(sqlite3_stmt *st, int i, int64_t v, int zero_is_null)
{
    if (v == 0 && zero_is_null)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_int64(st, i, v);
}

/* Binds one item to its statement and runs it. Returns the step code. */
static int write_item(store_conn *c, const store_item *it)
{
    sqlite3_stmt *st;
    switch (it->kind) {
    case STORE_ITEM_USER:
        st = c->write[ST_USER];
        bind_long(st, 1, it->u.user.id, 0);
        bind_text(st, 2, it->u.user.name);
        bind_text(st, 3, it->u.user.username);
        bind_text(st, 4, it->u.user.email);
        bind_text(st, 5, it->u.user.profile);
        bind_text(st, 6, it->u.user.seen_at);
        break;
    case STORE_ITEM_MESSAGE:
        st = c->write[ST_MESSAGE];
        bind_long(st, 1, it->u.msg.id, 0);
        bind_text(st, 2, it->u.msg.room);
        bind_long(st, 3, it->u.msg.user_id, 1);
        bind_text(st, 4, it->u.msg.source);
        bind_text(st, 5, it->u.msg.recipients);
        bind_long(st, 6, it->u.msg.post_id, 1);
        bind_text(st, 7, it->u.msg.title);
        bind_text(st, 8, it->u.msg.body);
        bind_text(st, 9, it->u.msg.created_at);
        break;
    case STORE_ITEM_SESSION_START:
        st = c->write[ST_SESSION_START];
        bind_text(st, 1, it->u.sess_start.id);
        bind_long(st, 2, it->u.sess_start.user_id, 1);
        bind_text(st, 3, it->u.sess_start.remote);
        bind_text(st, 4, it->u.sess_start.ts);
        break;
    case STORE_ITEM_SESSION_END:
        st = c->write[ST_SESSION_END];
        bind_text(st, 1, it->u.sess_end.id);
        bind_text(st, 2, it->u.sess_end.ts);
        bind_text(st, 3, it->u.sess_end.reason);
        break;
    case STORE_ITEM_API_ERROR:
        st = c->write[ST_API_ERROR];
        bind_text(st, 1, it->u.api_err.ts);
        bind_text(st, 2, it->u.api_err.method);
        bind_text(st, 3, it->u.api_err.url);
        bind_long(st, 4, it->u.api_err.status, 1);
        bind_text(st, 5, it->u.api_err.error);
        break;
    case STORE_ITEM_ROOM_PUT:
        st = c->write[ST_ROOM_PUT];
        bind_text(st, 1, it->u.room.name);
        bind_text(st, 2, it->u.room.description);
        bind_text(st, 3, it->u.room.secret_hash);
        bind_text(st, 4, it->u.room.pin_hash);
        bind_long(st, 5, it->u.room.is_private != 0, 0);
        bind_long(st, 6, it->u.room.created_by, 1);
        bind_text(st, 7, it->u.room.created_at);
        break;
    case STORE_ITEM_ROOM_DELETE:
        st = c->write[ST_ROOM_DELETE];
        bind_text(st, 1, it->u.room.name);
        break;
    default:
        return SQLITE_MISUSE;
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

/* Only a row's own content makes a retry pointless; everything else (BUSY,
 * LOCKED, READONLY, IOERR, FULL, CANTOPEN, even a missing table) may pass. */
static store_wres classify(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
        return STORE_W_REJECT;
    default:
        return STORE_W_RETRY;
    }
}

static store_wres sqlite_write_batch(store_conn *c, store_item *const *items, size_t n, char *err,
                                     size_t errlen)
{
    int rc = run(c->begin);
    if (rc == SQLITE_DONE) {
        for (size_t i = 0; i < n && rc == SQLITE_DONE; i++)
            rc = write_item(c, items[i]);
        if (rc == SQLITE_DONE)
            rc = run(c->commit);
        if (rc == SQLITE_DONE)
            return STORE_W_OK;
    }
    err_set(err, errlen, "%s", sqlite3_errmsg(c->db));
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return classify(rc);
}

static int sqlite_ping(store_conn *c, char *err, size_t errlen)
{
    int64_t v;
    return sqlite_query_int(c, "SELECT version FROM schema_version", &v, err, errlen);
}

static int sqlite_broken(store_conn *c)
{
    (void)c;
    return 0;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Steps st to the end, turning each row into an item with make. Resets st
 * at once: a statement left mid-result holds a read transaction, which
 * would keep WAL checkpoints from finishing. */
static int read_rows(store_conn *c, sqlite3_stmt *st, store_item *(*make)(sqlite3_stmt *st),
                     store_rows *out, char *err, size_t errlen)
{
    int rc, ret = 0;
    for (;;) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        store_item *it = make(st);
        if (it == NULL || store_rows_push(out, it) != 0) {
            err_set(err, errlen, "out of memory");
            ret = -1;
            break;
        }
    }
    if (ret == 0 && rc != SQLITE_DONE) {
        err_set(err, errlen, "%s", sqlite3_errmsg(c->db));
        ret = -1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

static store_item *message_row(sqlite3_stmt *st)
{
    store_message m = {
        .id = sqlite3_column_int64(st, 0),
        .room = col_text(st, 1),
        .user_id = (long)sqlite3_column_int64(st, 2),
        .source = col_text(st, 3),
        .recipients = col_text(st, 4),
        .post_id = (long)sqlite3_column_int64(st, 5),
        .title = col_text(st, 6),
        .body = col_text(st, 7),
        .created_at = col_text(st, 8),
        .user_name = col_text(st, 9),
        .user_username = col_text(st, 10),
    };
    return store_item_message(&m);
}

static int sqlite_read(store_conn *c, const store_read *q, store_rows *out, char *err,
                       size_t errlen)
{
    sqlite3_stmt *st;
    switch (q->kind) {
    case STORE_READ_RECENT:
        st = c->recent;
        sqlite3_bind_text(st, 1, q->room, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, q->before_id);
        sqlite3_bind_int(st, 3, q->limit);
        break;
    case STORE_READ_SINCE:
        st = c->since;
        sqlite3_bind_text(st, 1, q->room, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, q->after_id);
        sqlite3_bind_int(st, 3, q->limit);
        sqlite3_bind_int64(st, 4, q->user_id);
        sqlite3_bind_text(st, 5, q->member_like, -1, SQLITE_STATIC);
        break;
    case STORE_READ_SEARCH:
        st = c->search;
        sqlite3_bind_text(st, 1, q->fts, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, q->room, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, q->before_id);
        sqlite3_bind_int(st, 4, q->limit);
        break;
    default:
        err_set(err, errlen, "unknown read");
        return -1;
    }
    return read_rows(c, st, message_row, out, err, errlen);
}

static store_item *room_row(sqlite3_stmt *st)
{
    store_room r = {
        .name = col_text(st, 0),
        .description = col_text(st, 1),
        .secret_hash = col_text(st, 2),
        .pin_hash = col_text(st, 3),
        .is_private = sqlite3_column_int(st, 4) != 0,
        .created_by = (long)sqlite3_column_int64(st, 5),
        .created_at = col_text(st, 6),
    };
    return store_item_room(STORE_ITEM_ROOM_PUT, &r);
}

static int sqlite_rooms(store_conn *c, store_rows *out, char *err, size_t errlen)
{
    return read_rows(c, c->rooms, room_row, out, err, errlen);
}

const store_backend store_sqlite_backend = {
    .name = "sqlite",
    .dialect = 0,
    .migrate_begin = "BEGIN IMMEDIATE",
    .connect = sqlite_connect,
    .disconnect = sqlite_disconnect,
    .prepare = sqlite_prepare,
    .exec = sqlite_exec,
    .query_int = sqlite_query_int,
    .write_batch = sqlite_write_batch,
    .ping = sqlite_ping,
    .broken = sqlite_broken,
    .read = sqlite_read,
    .rooms = sqlite_rooms,
};
