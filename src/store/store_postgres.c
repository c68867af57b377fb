/*
 * store_postgres — the PostgreSQL backend of store (URL `postgresql://…` or
 * `postgres://…`, a libpq connection URI passed through unchanged, so
 * sslmode, host lists, passwords and the rest work as libpq documents).
 *
 * The URL is handed to PQconnectdbParams as its last keyword, after a few
 * defaults (connect timeout, TCP keepalives, application_name): the URL may
 * override each of them. The timeouts matter because the writer thread must
 * notice a dead server and report "down" instead of hanging in a read.
 *
 * A batch goes out in libpq pipeline mode: BEGIN, one prepared INSERT per
 * row, COMMIT, then one sync, so a batch of 1000 rows costs one round trip
 * instead of 1000. The blocking pipeline is safe because results are tiny
 * (about 20 bytes a row) and a batch is at most STORE_BATCH_MAX rows, far
 * below what the socket buffers hold, so the server never blocks on sending
 * while we are still sending.
 *
 * Error classes: integrity (23xxx) and data (22xxx) errors are the row's
 * fault and will not pass; anything else, and any broken connection, is
 * retried. A COMMIT whose answer was lost may have committed; the retry is
 * then harmless because message and session inserts are ON CONFLICT DO
 * NOTHING and the user insert is an upsert (an api_errors row could appear
 * twice, which is acceptable for a log of failures).
 */
#include "store/store_int.h"

#include "util/log.h"
#include "util/mem.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static const char *const stmt_name[ST_COUNT] = {
    "chatd_user",      "chatd_message",  "chatd_session_start", "chatd_session_end",
    "chatd_api_error", "chatd_room_put", "chatd_room_delete"};

static const char *const write_sql[ST_COUNT] = {
    [ST_USER] = "INSERT INTO users (id, name, username, email, profile, first_seen, last_seen)"
                " VALUES ($1, $2, $3, $4, $5, $6, $6)"
                " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
                " username = EXCLUDED.username, email = EXCLUDED.email,"
                " profile = EXCLUDED.profile, last_seen = EXCLUDED.last_seen",
    [ST_MESSAGE] = "INSERT INTO messages"
                   " (id, room, user_id, source, recipients, post_id, title, body, created_at)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
    [ST_SESSION_START] = "INSERT INTO sessions (id, user_id, remote, started_at)"
                         " VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
    [ST_SESSION_END] = "UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE id = $1",
    [ST_API_ERROR] = "INSERT INTO api_errors (at, method, url, status, error)"
                     " VALUES ($1, $2, $3, $4, $5)",
    [ST_ROOM_PUT] = "INSERT INTO rooms"
                    " (name, description, secret_hash, pin_hash, private, created_by, created_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description,"
                    " secret_hash = EXCLUDED.secret_hash, pin_hash = EXCLUDED.pin_hash,"
                    " private = EXCLUDED.private, created_by = EXCLUDED.created_by,"
                    " created_at = EXCLUDED.created_at",
    [ST_ROOM_DELETE] = "DELETE FROM rooms WHERE name = $1",
};

/* Timestamps come back in the same ISO-8601 form SQLite stores. */
#define ISO_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The reads: store_sqlite.c's queries (see there for their shape). */
#define MSG_COLS                                                                                   \
    "m.id, m.room, m.user_id, m.source, m.recipients, m.post_id, m.title, m.body, " ISO_TS(        \
        "m.created_at") ", u.name, u.username"
#define MSG_FROM(ids)                                                                              \
    " FROM (" ids ") x JOIN messages m ON m.id = x.id LEFT JOIN users u ON u.id = m.user_id"

static const char recent_sql[] = "SELECT " MSG_COLS MSG_FROM(
    "SELECT id FROM (SELECT id FROM messages WHERE room = $1 AND id < $2"
    " AND recipients IS NULL ORDER BY id DESC LIMIT $3) a"
    " UNION ALL"
    " SELECT id FROM (SELECT id FROM messages WHERE room = '*' AND $1 <> '*' AND id < $2"
    " AND recipients IS NULL ORDER BY id DESC LIMIT $3) b") " ORDER BY m.id DESC LIMIT $3";

#define SINCE_VISIBLE "(recipients IS NULL OR user_id = $4 OR (',' || recipients || ',') LIKE $5)"
static const char since_sql[] = "SELECT " MSG_COLS MSG_FROM(
    "SELECT id FROM (SELECT id FROM messages WHERE room = $1 AND id > $2"
    " AND " SINCE_VISIBLE " ORDER BY id DESC LIMIT $3) a"
    " UNION ALL"
    " SELECT id FROM (SELECT id FROM messages WHERE room = '*' AND $1 <> '*' AND id > $2"
    " AND " SINCE_VISIBLE " ORDER BY id DESC LIMIT $3) b") " ORDER BY m.id DESC LIMIT $3";

/* The expression of migration 2's messages_fts index, word for word (and
 * recipients IS NULL, its predicate), so that the planner can use it. $1
 * is the words joined by spaces: plainto_tsquery ANDs them and reads no
 * operators. Every run of characters that are not letters or digits
 * becomes a space first, in the index and in the query, so that
 * PostgreSQL's parser splits words where FTS5's unicode61 does: it would
 * otherwise keep an e-mail address, a URL, a path, a file name or a
 * decimal number whole. */
static const char search_sql[] =
    "SELECT " MSG_COLS " FROM messages m LEFT JOIN users u ON u.id = m.user_id"
    " WHERE to_tsvector('simple',"
    " regexp_replace(coalesce(m.title, '') || ' ' || m.body, '[^[:alnum:]]+', ' ', 'g'))"
    " @@ plainto_tsquery('simple', regexp_replace($1, '[^[:alnum:]]+', ' ', 'g'))"
    " AND m.recipients IS NULL AND m.source IN ('auto', 'manual')"
    " AND m.room = $2 AND m.id < $3"
    " ORDER BY m.id DESC LIMIT $4";

static const char rooms_sql[] = "SELECT name, description, secret_hash, pin_hash, private::int,"
                                " created_by, " ISO_TS("created_at") " FROM rooms";

struct store_conn {
    PGconn *pg;
};

/* libpq's messages end in a newline and may span lines; log lines and err
 * buffers want one line. */
static void set_pg_err(char *err, size_t errlen, const char *prefix, const char *msg)
{
    char line[512];
    size_t n = 0;
    int space = 0;
    for (const char *p = msg ? msg : "unknown error"; *p && n < sizeof line - 1; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r') {
            space = 1;
            continue;
        }
        if (space && n > 0)
            line[n++] = ' ';
        space = 0;
        if (n < sizeof line - 1)
            line[n++] = *p;
    }
    line[n] = '\0';
    err_set(err, errlen, "%s%s", prefix, line);
}

/* The error of a result as "message (detail) [SQLSTATE]", or the
 * connection's error when there is no result (connection lost). */
static void set_result_err(char *err, size_t errlen, PGconn *pg, const PGresult *r)
{
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (primary == NULL) {
        set_pg_err(err, errlen, "",
                   r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(pg));
        return;
    }
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    char msg[512];
    snprintf(msg, sizeof msg, "%s%s%s%s [%s]", primary, detail ? " (" : "", detail ? detail : "",
             detail ? ")" : "", state ? state : "?");
    set_pg_err(err, errlen, "", msg);
}

static void notice_processor(void *arg, const char *message)
{
    (void)arg;
    char q[2 * LOG_SAFE_LEN];
    log_debug("store", "postgresql: %s", log_safe(q, sizeof q, message));
}

static void pg_disconnect(store_conn *c)
{
    if (c == NULL)
        return;
    PQfinish(c->pg);
    mem_free(c);
}

static int pg_prepare_one(store_conn *c, const char *name, const char *sql, char *err,
                          size_t errlen)
{
    PGresult *r = PQprepare(c->pg, name, sql, 0, NULL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        set_result_err(err, errlen, c->pg, r);
    PQclear(r);
    return ok ? 0 : -1;
}

static int pg_exec(store_conn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        set_result_err(err, errlen, c->pg, r);
    PQclear(r);
    return ok ? 0 : -1;
}

static store_conn *pg_connect(const char *url, int reader, char *err, size_t errlen)
{
    store_conn *c = mem_calloc(1, sizeof *c);
    if (c == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    static const char *const keys[] = {"connect_timeout",
                                       "application_name",
                                       "keepalives_idle",
                                       "keepalives_interval",
                                       "keepalives_count",
                                       "dbname",
                                       NULL};
    const char *vals[] = {"5", "chatd", "10", "5", "3", url, NULL};
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (c->pg == NULL) {
        err_set(err, errlen, "out of memory");
        mem_free(c);
        return NULL;
    }
    if (PQstatus(c->pg) != CONNECTION_OK) {
        set_pg_err(err, errlen, "", PQerrorMessage(c->pg));
        pg_disconnect(c);
        return NULL;
    }
    /* Without this, NOTICEs (e.g. from CREATE TABLE IF NOT EXISTS) go
     * straight to stderr, around the log format. */
    PQsetNoticeProcessor(c->pg, notice_processor, NULL);
    if (reader && (pg_exec(c, "SET default_transaction_read_only = on", err, errlen) != 0 ||
                   pg_prepare_one(c, "chatd_recent", recent_sql, err, errlen) != 0 ||
                   pg_prepare_one(c, "chatd_since", since_sql, err, errlen) != 0 ||
                   pg_prepare_one(c, "chatd_search", search_sql, err, errlen) != 0 ||
                   pg_prepare_one(c, "chatd_rooms", rooms_sql, err, errlen) != 0)) {
        pg_disconnect(c);
        return NULL;
    }
    return c;
}

static int pg_prepare(store_conn *c, char *err, size_t errlen)
{
    for (int i = 0; i < ST_COUNT; i++)
        if (pg_prepare_one(c, stmt_name[i], write_sql[i], err, errlen) != 0)
            return -1;
    return 0;
}

static int pg_query_int(store_conn *c, const char *sql, int64_t *out, char *err, size_t errlen)
{
    PGresult *r = PQexec(c->pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        set_result_err(err, errlen, c->pg, r);
        PQclear(r);
        return -1;
    }
    *out = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return 0;
}

/* Text parameters for one item: values[] point into it or into nums. */
typedef struct params {
    const char *v[9];
    char nums[3][24];
    int n;
    int stmt;
} params;

static const char *num(params *p, int slot, int64_t v, int zero_is_null)
{
    if (v == 0 && zero_is_null)
        return NULL;
    snprintf(p->nums[slot], sizeof p->nums[slot], "%lld", (long long)v);
    return p->nums[slot];
}

static void item_params(const store_item *it, params *p)
{
    memset(p, 0, sizeof *p);
    switch (it->kind) {
    case STORE_ITEM_USER:
        p->stmt = ST_USER;
        p->n = 6;
        p->v[0] = num(p, 0, it->u.user.id, 0);
        p->v[1] = it->u.user.name;
        p->v[2] = it->u.user.username;
        p->v[3] = it->u.user.email;
        p->v[4] = it->u.user.profile;
        p->v[5] = it->u.user.seen_at;
        break;
    case STORE_ITEM_MESSAGE:
        p->stmt = ST_MESSAGE;
        p->n = 9;
        p->v[0] = num(p, 0, it->u.msg.id, 0);
        p->v[1] = it->u.msg.room;
        p->v[2] = num(p, 1, it->u.msg.user_id, 1);
        p->v[3] = it->u.msg.source;
        p->v[4] = it->u.msg.recipients;
        p->v[5] = num(p, 2, it->u.msg.post_id, 1);
        p->v[6] = it->u.msg.title;
        p->v[7] = it->u.msg.body;
        p->v[8] = it->u.msg.created_at;
        break;
    case STORE_ITEM_SESSION_START:
        p->stmt = ST_SESSION_START;
        p->n = 4;
        p->v[0] = it->u.sess_start.id;
        p->v[1] = num(p, 0, it->u.sess_start.user_id, 1);
        p->v[2] = it->u.sess_start.remote;
        p->v[3] = it->u.sess_start.ts;
        break;
    case STORE_ITEM_SESSION_END:
        p->stmt = ST_SESSION_END;
        p->n = 3;
        p->v[0] = it->u.sess_end.id;
        p->v[1] = it->u.sess_end.ts;
        p->v[2] = it->u.sess_end.reason;
        break;
    case STORE_ITEM_API_ERROR:
        p->stmt = ST_API_ERROR;
        p->n = 5;
        p->v[0] = it->u.api_err.ts;
        p->v[1] = it->u.api_err.method;
        p->v[2] = it->u.api_err.url;
        p->v[3] = num(p, 0, it->u.api_err.status, 1);
        p->v[4] = it->u.api_err.error;
        break;
    case STORE_ITEM_ROOM_PUT:
        p->stmt = ST_ROOM_PUT;
        p->n = 7;
        p->v[0] = it->u.room.name;
        p->v[1] = it->u.room.description;
        p->v[2] = it->u.room.secret_hash;
        p->v[3] = it->u.room.pin_hash;
        p->v[4] = it->u.room.is_private ? "true" : "false";
        p->v[5] = num(p, 0, it->u.room.created_by, 1);
        p->v[6] = it->u.room.created_at;
        break;
    case STORE_ITEM_ROOM_DELETE:
        p->stmt = ST_ROOM_DELETE;
        p->n = 1;
        p->v[0] = it->u.room.name;
        break;
    }
}

static store_wres classify(PGconn *pg, const PGresult *r)
{
    if (PQstatus(pg) != CONNECTION_OK)
        return STORE_W_RETRY;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0))
        return STORE_W_REJECT;
    return STORE_W_RETRY;
}

static store_wres pg_write_batch(store_conn *c, store_item *const *items, size_t n, char *err,
                                 size_t errlen)
{
    PGconn *pg = c->pg;
    if (PQenterPipelineMode(pg) != 1) {
        set_pg_err(err, errlen, "", PQerrorMessage(pg));
        return STORE_W_RETRY;
    }
    int sent = PQsendQueryParams(pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    for (size_t i = 0; i < n && sent; i++) {
        params p;
        item_params(items[i], &p);
        sent = PQsendQueryPrepared(pg, stmt_name[p.stmt], p.n, p.v, NULL, NULL, 0);
    }
    sent = sent && PQsendQueryParams(pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
    sent = sent && PQpipelineSync(pg);
    if (!sent) {
        set_pg_err(err, errlen, "", PQerrorMessage(pg));
        return STORE_W_RETRY; /* the caller drops this connection */
    }

    /* Read every result up to the sync. The first failure decides; the
     * queries after it come back as PGRES_PIPELINE_ABORTED. A NULL separates
     * one query's results from the next; two in a row mean nothing more will
     * come (connection lost). */
    store_wres res = STORE_W_OK;
    int nulls = 0;
    for (;;) {
        PGresult *r = PQgetResult(pg);
        if (r == NULL) {
            if (++nulls >= 2 || PQstatus(pg) != CONNECTION_OK) {
                if (res == STORE_W_OK) {
                    set_pg_err(err, errlen, "", PQerrorMessage(pg));
                    res = STORE_W_RETRY;
                }
                return res;
            }
            continue;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED &&
            res == STORE_W_OK) {
            set_result_err(err, errlen, pg, r);
            res = classify(pg, r);
        }
        PQclear(r);
    }
    if (PQexitPipelineMode(pg) != 1) {
        if (res == STORE_W_OK)
            set_pg_err(err, errlen, "", PQerrorMessage(pg));
        return STORE_W_RETRY;
    }
    /* After a failure inside BEGIN the session sits in an aborted
     * transaction until told to roll back. */
    if (PQtransactionStatus(pg) != PQTRANS_IDLE) {
        PGresult *r = PQexec(pg, "ROLLBACK");
        PQclear(r);
        if (res == STORE_W_OK) {
            err_set(err, errlen, "transaction did not end after COMMIT");
            res = STORE_W_RETRY;
        }
    }
    return res;
}

static int pg_ping(store_conn *c, char *err, size_t errlen)
{
    return pg_exec(c, "SELECT 1", err, errlen);
}

static int pg_broken(store_conn *c) { return PQstatus(c->pg) != CONNECTION_OK; }

static const char *val(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static long num_val(const PGresult *r, int row, int col)
{
    const char *v = val(r, row, col);
    return v ? strtol(v, NULL, 10) : 0;
}

static store_item *message_row(const PGresult *r, int i)
{
    store_message m = {
        .id = strtoll(PQgetvalue(r, i, 0), NULL, 10),
        .room = val(r, i, 1),
        .user_id = num_val(r, i, 2),
        .source = val(r, i, 3),
        .recipients = val(r, i, 4),
        .post_id = num_val(r, i, 5),
        .title = val(r, i, 6),
        .body = val(r, i, 7),
        .created_at = val(r, i, 8),
        .user_name = val(r, i, 9),
        .user_username = val(r, i, 10),
    };
    return store_item_message(&m);
}

static store_item *room_row(const PGresult *r, int i)
{
    store_room room = {
        .name = val(r, i, 0),
        .description = val(r, i, 1),
        .secret_hash = val(r, i, 2),
        .pin_hash = val(r, i, 3),
        .is_private = num_val(r, i, 4) != 0,
        .created_by = num_val(r, i, 5),
        .created_at = val(r, i, 6),
    };
    return store_item_room(STORE_ITEM_ROOM_PUT, &room);
}

/* Runs a prepared read and turns each row into an item with make. */
static int read_rows(store_conn *c, const char *stmt, int n, const char *const *v,
                     store_item *(*make)(const PGresult *r, int i), store_rows *out, char *err,
                     size_t errlen)
{
    PGresult *r = PQexecPrepared(c->pg, stmt, n, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        set_result_err(err, errlen, c->pg, r);
        PQclear(r);
        return -1;
    }
    int ret = 0;
    for (int i = 0, rows = PQntuples(r); i < rows; i++) {
        store_item *it = make(r, i);
        if (it == NULL || store_rows_push(out, it) != 0) {
            err_set(err, errlen, "out of memory");
            ret = -1;
            break;
        }
    }
    PQclear(r);
    return ret;
}

static int pg_read(store_conn *c, const store_read *q, store_rows *out, char *err, size_t errlen)
{
    char id[24], lim[16], user[24];
    snprintf(lim, sizeof lim, "%d", q->limit);
    switch (q->kind) {
    case STORE_READ_RECENT: {
        snprintf(id, sizeof id, "%lld", (long long)q->before_id);
        const char *v[3] = {q->room, id, lim};
        return read_rows(c, "chatd_recent", 3, v, message_row, out, err, errlen);
    }
    case STORE_READ_SINCE: {
        snprintf(id, sizeof id, "%lld", (long long)q->after_id);
        snprintf(user, sizeof user, "%ld", q->user_id);
        const char *v[5] = {q->room, id, lim, user, q->member_like};
        return read_rows(c, "chatd_since", 5, v, message_row, out, err, errlen);
    }
    case STORE_READ_SEARCH: {
        snprintf(id, sizeof id, "%lld", (long long)q->before_id);
        const char *v[4] = {q->plain, q->room, id, lim};
        return read_rows(c, "chatd_search", 4, v, message_row, out, err, errlen);
    }
    }
    err_set(err, errlen, "unknown read");
    return -1;
}

static int pg_rooms(store_conn *c, store_rows *out, char *err, size_t errlen)
{
    return read_rows(c, "chatd_rooms", 0, NULL, room_row, out, err, errlen);
}

const store_backend store_postgres_backend = {
    .name = "postgresql",
    .dialect = 1,
    /* The advisory lock (any constant will do, this one is "chatd") makes a
     * second chatd wait for the first one's migration instead of racing it. */
    .migrate_begin = "BEGIN; SELECT pg_advisory_xact_lock(63686174)",
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .prepare = pg_prepare,
    .exec = pg_exec,
    .query_int = pg_query_int,
    .write_batch = pg_write_batch,
    .ping = pg_ping,
    .broken = pg_broken,
    .read = pg_read,
    .rooms = pg_rooms,
};
