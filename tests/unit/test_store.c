/*
 * test_store — the storage layer (src/store) against real databases.
 *
 * Every case marked BOTH runs twice: suite "sqlite" on a file in a fresh
 * temporary directory, suite "postgres" on a fresh database created on the
 * server named by CHATD_TEST_PG_URL (e.g. from `scripts/pg.sh start`). When
 * that variable is unset the postgres cases are reported as SKIPPED. Each
 * test owns its database, so Criterion may run them in parallel. The outage
 * test starts a private server of its own (scripts/pg.sh, or $CHATD_PG_SH)
 * so that stopping it does not disturb the tests running beside it.
 *
 * Results are checked with the test's own connections (sqlite3, libpq), not
 * through the store, so a store bug cannot hide itself.
 */
#include "scratch.h"
#include "store/store.h"
#include "util/log.h"
#include "util/mem.h"

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- fixtures ---- */

static char g_dir[256];     /* the sqlite test's temp dir */
static char g_url[512];     /* the database under test */
static char g_pg_db[64];    /* the postgres test's database, dropped at fini */
static char g_pg_priv[256]; /* a private server's dir, stopped at fini */

static const char *pg_script(void)
{
    const char *s = getenv("CHATD_PG_SH");
    return s ? s : "scripts/pg.sh";
}

static void quiet(void) { log_set_level(getenv("CHATD_TEST_LOG") ? LOGL_DEBUG : LOGL_OFF); }

static void sqlite_fini(void) { scratch_dir_remove(g_dir); }

static const char *sqlite_setup(void)
{
    scratch_dir_make(g_dir, sizeof g_dir, "store");
    /* "sub" does not exist: the store must create it. */
    snprintf(g_url, sizeof g_url, "sqlite://%s/sub/chat.db", g_dir);
    return g_url;
}

/* base with its database name replaced by db. */
static void pg_url_with_db(const char *base, const char *db, char *out, size_t len)
{
    const char *host = strstr(base, "://");
    host = host ? host + 3 : base;
    const char *path = strchr(host, '/');
    const char *query = strchr(host, '?');
    if (path == NULL || (query && path > query)) {
        size_t n = query ? (size_t)(query - base) : strlen(base);
        snprintf(out, len, "%.*s/%s%s", (int)n, base, db, query ? query : "");
        return;
    }
    snprintf(out, len, "%.*s/%s%s", (int)(path - base), base, db, query ? query : "");
}

static void pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(getenv("CHATD_TEST_PG_URL"));
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "admin connection: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static const char *pg_setup(void)
{
    const char *base = getenv("CHATD_TEST_PG_URL");
    if (base == NULL || *base == '\0')
        cr_skip_test("CHATD_TEST_PG_URL is not set (start a server with scripts/pg.sh)");
    static atomic_int seq;
    snprintf(g_pg_db, sizeof g_pg_db, "chatd_test_%d_%d", (int)getpid(), atomic_fetch_add(&seq, 1));
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", g_pg_db);
    pg_admin(sql);
    pg_url_with_db(base, g_pg_db, g_url, sizeof g_url);
    return g_url;
}

static void pg_fini(void)
{
    if (g_pg_priv[0]) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "%s stop '%s' >/dev/null 2>&1", pg_script(), g_pg_priv);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot stop the private server in %s\n", g_pg_priv);
        scratch_dir_remove(g_pg_priv);
        g_pg_priv[0] = '\0';
    }
    if (g_pg_db[0] && getenv("CHATD_TEST_PG_URL")) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", g_pg_db);
        PGconn *c = PQconnectdb(getenv("CHATD_TEST_PG_URL"));
        PQclear(PQexec(c, sql));
        PQfinish(c);
        g_pg_db[0] = '\0';
    }
}

/* Runs each case on both backends. Each test bounds itself with alarm():
 * SIGALRM ends the test process, which Criterion reports as a crash.
 * (Criterion's own .timeout leaks memory in its runner, which fails the
 * ASan build whenever tests run in parallel.) */
#define BOTH(name, secs)                                                                           \
    static void case_##name(const char *url);                                                      \
    Test(sqlite, name, .init = quiet, .fini = sqlite_fini)                                         \
    {                                                                                              \
        alarm(secs);                                                                               \
        case_##name(sqlite_setup());                                                               \
    }                                                                                              \
    Test(postgres, name, .init = quiet, .fini = pg_fini)                                           \
    {                                                                                              \
        alarm(secs);                                                                               \
        case_##name(pg_setup());                                                                   \
    }                                                                                              \
    static void case_##name(const char *url)

/* ---- independent access to the database ---- */

static int is_sqlite(const char *url) { return strncmp(url, "sqlite://", 9) == 0; }

/* The first column of the first row of sql, as an integer (NULL = -1). */
static int64_t q_int(const char *url, const char *sql)
{
    int64_t v = -1;
    if (is_sqlite(url)) {
        sqlite3 *db;
        cr_assert_eq(sqlite3_open_v2(url + 9, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_stmt *st;
        cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                     sqlite3_errmsg(db));
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s: no row", sql);
        if (sqlite3_column_type(st, 0) != SQLITE_NULL)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
    } else {
        PGconn *c = PQconnectdb(url);
        cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
        PGresult *r = PQexec(c, sql);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
        cr_assert_gt(PQntuples(r), 0, "%s: no row", sql);
        if (!PQgetisnull(r, 0, 0))
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        PQfinish(c);
    }
    return v;
}

/* The first column of the first row of sql as text, into buf. */
static const char *q_text(const char *url, const char *sql, char *buf, size_t len)
{
    buf[0] = '\0';
    if (is_sqlite(url)) {
        sqlite3 *db;
        cr_assert_eq(sqlite3_open_v2(url + 9, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_stmt *st;
        cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sql);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s: no row", sql);
        snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(db);
    } else {
        PGconn *c = PQconnectdb(url);
        cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
        PGresult *r = PQexec(c, sql);
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
        cr_assert_gt(PQntuples(r), 0, "%s: no row", sql);
        snprintf(buf, len, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        PQfinish(c);
    }
    return buf;
}

/* A timestamp column rendered the way the store returns timestamps. */
static const char *ts_expr(const char *url, const char *col, char *buf, size_t len)
{
    if (is_sqlite(url))
        snprintf(buf, len, "%s", col);
    else
        snprintf(buf, len, "to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                 col);
    return buf;
}

/* ---- helpers over the store ---- */

static store *open_ok(const char *url)
{
    char err[256] = "";
    store *s = store_open(url, err, sizeof err);
    cr_assert_not_null(s, "store_open(%s): %s", url, err);
    return s;
}

static const char *profile_json = "{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"}";

static void put_user(store *s, long id, const char *name, const char *username, const char *ts)
{
    store_user u = {.id = id,
                    .name = name,
                    .username = username,
                    .email = "a@b.c",
                    .profile = profile_json,
                    .seen_at = ts};
    cr_assert_eq(store_put_user(s, &u, NULL, NULL), 0);
}

static int64_t put_msg(store *s, const char *room, long user_id, const char *body)
{
    store_message m = {.id = store_next_message_id(s),
                       .room = room,
                       .user_id = user_id,
                       .source = "manual",
                       .body = body,
                       .user_name = "Leanne Graham",
                       .user_username = "Bret"};
    cr_assert_eq(store_put_message(s, &m), 0);
    return m.id;
}

static void wait_stats(store *s, int want_up, int secs)
{
    store_stats st;
    for (int i = 0; i < secs * 100; i++) {
        store_get_stats(s, &st);
        if (st.db_up == want_up)
            return;
        usleep(10000);
    }
    cr_assert_fail("database never became %s", want_up ? "up" : "down");
}

/* Index of the first message whose id is not its predecessor's + 1, or 0.
 * One assertion instead of one per row keeps Criterion's event stream small. */
static size_t first_gap(const store_message *m, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (m[i].id != m[i - 1].id + 1)
            return i;
    return 0;
}

static void user_done(void *arg, int ok) { atomic_store((atomic_int *)arg, ok ? 1 : -1); }

/* ---- cases on both backends ---- */

BOTH(migrate_twice, 60)
{
    store_close(open_ok(url));
    store *s = open_ok(url);
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_eq(st.db_up, 1);
    cr_assert_str_eq(st.backend, is_sqlite(url) ? "sqlite" : "postgresql");
    store_close(s);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM schema_version"), 1);
    cr_assert_eq(q_int(url, "SELECT version FROM schema_version"), STORE_SCHEMA_VERSION);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 0);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM users"), 0);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM sessions"), 0);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM api_errors"), 0);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM rooms"), 1, "the lobby, once");
}

BOTH(user_then_messages, 60)
{
    store *s = open_ok(url);
    atomic_int done = 0;
    store_user u = {.id = 1,
                    .name = "Leanne Graham",
                    .username = "Bret",
                    .email = "Sincere@april.biz",
                    .profile = profile_json,
                    .seen_at = "2026-11-24T10:00:00.000Z"};
    cr_assert_eq(store_put_user(s, &u, user_done, &done), 0);
    cr_assert_eq(store_flush(s, 10000), 0);
    cr_assert_eq(atomic_load(&done), 1, "user callback after commit");

    store_message a = {.id = store_next_message_id(s),
                       .room = "lobby",
                       .user_id = 1,
                       .source = "auto",
                       .post_id = 7,
                       .title = "a title",
                       .body = "post body",
                       .created_at = "2026-11-24T10:00:01.123Z"};
    store_message b = {.id = store_next_message_id(s),
                       .room = "other",
                       .user_id = 1,
                       .source = "manual",
                       .body = "elsewhere",
                       .created_at = "2026-11-24T10:00:02.000Z"};
    store_message c = {.id = store_next_message_id(s),
                       .room = "lobby",
                       .user_id = 1,
                       .source = "manual",
                       .body = "héllo \"quoted\" 'x'",
                       .created_at = "2026-11-24T10:00:03.456Z"};
    cr_assert_eq(store_put_message(s, &a), 0);
    cr_assert_eq(store_put_message(s, &b), 0);
    cr_assert_eq(store_put_message(s, &c), 0);
    cr_assert_eq(store_flush(s, 10000), 0);

    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_recent_messages(s, "lobby", 10, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_eq(m[0].id, a.id);
    cr_assert_eq(m[1].id, c.id, "newest last");
    cr_assert_str_eq(m[0].source, "auto");
    cr_assert_eq(m[0].post_id, 7);
    cr_assert_str_eq(m[0].title, "a title");
    cr_assert_str_eq(m[0].body, "post body");
    cr_assert_str_eq(m[0].created_at, "2026-11-24T10:00:01.123Z");
    cr_assert_str_eq(m[0].user_name, "Leanne Graham");
    cr_assert_str_eq(m[0].user_username, "Bret");
    cr_assert_str_eq(m[1].room, "lobby");
    cr_assert_eq(m[1].user_id, 1);
    cr_assert_eq(m[1].post_id, 0);
    cr_assert_null(m[1].title);
    cr_assert_str_eq(m[1].body, "héllo \"quoted\" 'x'");
    cr_assert_str_eq(m[1].created_at, "2026-11-24T10:00:03.456Z");
    store_messages_free(m);

    /* Upsert: first_seen kept, the rest updated. */
    u.name = "Leanne G.";
    u.seen_at = "2026-11-25T11:00:00.500Z";
    cr_assert_eq(store_put_user(s, &u, NULL, NULL), 0);
    cr_assert_eq(store_flush(s, 10000), 0);
    char buf[128], expr[160], sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM users WHERE id = 1",
             ts_expr(url, "first_seen", expr, sizeof expr));
    cr_assert_str_eq(q_text(url, sql, buf, sizeof buf), "2026-11-24T10:00:00.000Z");
    snprintf(sql, sizeof sql, "SELECT %s FROM users WHERE id = 1",
             ts_expr(url, "last_seen", expr, sizeof expr));
    cr_assert_str_eq(q_text(url, sql, buf, sizeof buf), "2026-11-25T11:00:00.500Z");
    cr_assert_str_eq(q_text(url, "SELECT name FROM users WHERE id = 1", buf, sizeof buf),
                     "Leanne G.");
    cr_assert_str_eq(q_text(url, "SELECT profile FROM users WHERE id = 1", buf, sizeof buf),
                     profile_json);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM users"), 1);

    cr_assert_eq(store_recent_messages(s, "lobby", 1, 0, &m, &n, err, sizeof err), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(m[0].user_name, "Leanne G.", "names come from the users row");
    store_messages_free(m);
    cr_assert_eq(store_recent_messages(s, "nobody-here", 10, 0, &m, &n, err, sizeof err), 0);
    cr_assert_eq(n, 0);
    cr_assert_null(m);
    store_close(s);
}

BOTH(ids_continue_after_reopen, 60)
{
    store *s = open_ok(url);
    cr_assert_eq(store_next_message_id(s), 1);
    put_user(s, 3, "Clementine Bauch", "Samantha", NULL);
    int64_t last = 0;
    for (int i = 0; i < 5; i++)
        last = put_msg(s, "lobby", 3, "x");
    cr_assert_eq(last, 6);
    store_close(s); /* no flush first: close itself writes what is queued */

    s = open_ok(url);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 5);
    int64_t next = store_next_message_id(s);
    cr_assert_gt(next, last);
    cr_assert_eq(store_next_message_id(s), next + 1);
    store_close(s);
}

BOTH(paging_and_limit, 60)
{
    store *s = open_ok(url);
    put_user(s, 2, "Ervin Howell", "Antonette", NULL);
    int64_t ids[25];
    for (int i = 0; i < 25; i++) {
        char body[16];
        snprintf(body, sizeof body, "m%d", i);
        ids[i] = put_msg(s, "lobby", 2, body);
        put_msg(s, "noise", 2, body);
    }
    cr_assert_eq(store_flush(s, 10000), 0);

    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_recent_messages(s, "lobby", 10, 0, &m, &n, err, sizeof err), 0);
    cr_assert_eq(n, 10);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(m[i].id, ids[15 + i]);
    int64_t before = m[0].id;
    store_messages_free(m);

    cr_assert_eq(store_recent_messages(s, "lobby", 10, before, &m, &n, err, sizeof err), 0);
    cr_assert_eq(n, 10);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(m[i].id, ids[5 + i]);
    before = m[0].id;
    store_messages_free(m);

    cr_assert_eq(store_recent_messages(s, "lobby", 10, before, &m, &n, err, sizeof err), 0);
    cr_assert_eq(n, 5);
    cr_assert_eq(m[0].id, ids[0]);
    cr_assert_str_eq(m[4].body, "m4");
    store_messages_free(m);

    cr_assert_eq(store_recent_messages(s, "lobby", 10, ids[0], &m, &n, err, sizeof err), 0);
    cr_assert_eq(n, 0);

    cr_assert_eq(store_recent_messages(s, "lobby", 0, 0, &m, &n, err, sizeof err), -1);
    cr_assert_neq(err[0], '\0');
    cr_assert_eq(store_recent_messages(s, "lobby", 1000000, 0, &m, &n, err, sizeof err), 0);
    cr_assert_eq(n, 25, "a large limit is clamped, not refused");
    store_messages_free(m);
    store_close(s);
}

BOTH(sessions_and_api_errors, 60)
{
    store *s = open_ok(url);
    put_user(s, 4, "Patricia Lebsack", "Karianne", NULL);
    cr_assert_eq(store_session_start(s, "sess-1", 4, "127.0.0.1:50000", "2026-11-24T10:00:00.000Z"),
                 0);
    cr_assert_eq(store_session_start(s, "sess-2", 0, NULL, NULL), 0);
    cr_assert_eq(store_session_end(s, "sess-1", "closed", "2026-11-24T10:05:00.250Z"), 0);
    cr_assert_eq(store_api_error(s, "GET", "http://127.0.0.1:3999/users/11", 404, "HTTP 404",
                                 "2026-11-24T10:00:00.001Z"),
                 0);
    cr_assert_eq(
        store_api_error(s, "GET", "http://127.0.0.1:1/users", 0, "connection refused", NULL), 0);
    cr_assert_eq(store_session_start(s, NULL, 1, NULL, NULL), -1, "a session needs an id");
    cr_assert_eq(store_api_error(s, "GET", NULL, 0, "x", NULL), -1);
    cr_assert_eq(store_flush(s, 10000), 0);
    store_close(s);

    char buf[128], expr[160], sql[256];
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM sessions"), 2);
    cr_assert_eq(q_int(url, "SELECT user_id FROM sessions WHERE id = 'sess-1'"), 4);
    cr_assert_eq(q_int(url, "SELECT user_id FROM sessions WHERE id = 'sess-2'"), -1);
    cr_assert_str_eq(
        q_text(url, "SELECT end_reason FROM sessions WHERE id = 'sess-1'", buf, sizeof buf),
        "closed");
    cr_assert_str_eq(
        q_text(url, "SELECT remote FROM sessions WHERE id = 'sess-1'", buf, sizeof buf),
        "127.0.0.1:50000");
    snprintf(sql, sizeof sql, "SELECT %s FROM sessions WHERE id = 'sess-1'",
             ts_expr(url, "ended_at", expr, sizeof expr));
    cr_assert_str_eq(q_text(url, sql, buf, sizeof buf), "2026-11-24T10:05:00.250Z");
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL"), 1);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM api_errors"), 2);
    cr_assert_eq(q_int(url, "SELECT status FROM api_errors WHERE error = 'HTTP 404'"), 404);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM api_errors WHERE status IS NULL"), 1);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM api_errors WHERE method = 'GET' AND "
                            "url = 'http://127.0.0.1:3999/users/11'"),
                 1);
}

BOTH(batching_10000, 120)
{
    store *s = open_ok(url);
    put_user(s, 5, "Chelsey Dietrich", "Kamren", NULL);
    for (int i = 0; i < 10000; i++)
        put_msg(s, "bulk", 5, "a message body of moderate length, for batching");
    cr_assert_eq(store_flush(s, 60000), 0);
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_eq(st.queue_depth, 0);
    cr_assert_eq(st.rows_written, 10001);
    cr_assert_eq(st.rows_rejected, 0);
    cr_assert_geq(st.batches, 11, "at most STORE_BATCH_MAX rows a transaction");
    cr_assert_lt(st.batches, 2000, "rows written in batches, got %llu transactions",
                 (unsigned long long)st.batches);
    cr_assert_gt(st.avg_batch_us, 0);
    cr_assert_geq(st.max_batch_us, st.avg_batch_us);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages WHERE room = 'bulk'"), 10000);
    cr_assert_eq(q_int(url, "SELECT MAX(id) - MIN(id) FROM messages"), 9999);

    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_recent_messages(s, "bulk", 1000, 0, &m, &n, err, sizeof err), 0);
    cr_assert_eq(n, 1000);
    cr_assert_eq(first_gap(m, n), 0, "consecutive ids, oldest first");
    store_messages_free(m);
    store_close(s);
}

BOTH(flush_waits, 60)
{
    store *s = open_ok(url);
    put_user(s, 6, "Mrs. Dennis Schulist", "Leopoldo_Corkery", NULL);
    for (int i = 0; i < 3000; i++)
        put_msg(s, "lobby", 6, "flush me");
    cr_assert_eq(store_flush(s, 30000), 0);
    /* No sleep: flush returning means committed. */
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 3000);
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_eq(st.queue_depth, 0);
    cr_assert_eq(store_flush(s, 0), 0, "an empty queue flushes at once");
    store_close(s);
}

BOTH(queued_messages_are_visible, 60)
{
    store *s = open_ok(url);
    put_user(s, 7, "Kurtis Weissnat", "Elwyn.Skiles", NULL);
    int64_t first = 0, last = 0;
    for (int i = 0; i < 300; i++) {
        last = put_msg(s, "lobby", 7, "fresh");
        if (i == 0)
            first = last;
    }
    /* Immediately: some rows are written, some still queued; all are seen. */
    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_recent_messages(s, "lobby", 1000, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 300);
    cr_assert_eq(m[0].id, first);
    cr_assert_eq(m[299].id, last);
    cr_assert_eq(first_gap(m, n), 0, "no duplicates, no gaps");
    cr_assert_str_eq(m[299].user_username, "Bret");
    store_messages_free(m);
    store_close(s);
}

BOTH(refused_row_does_not_block_others, 60)
{
    store *s = open_ok(url);
    put_user(s, 8, "Nicholas Runolfsdottir V", "Maxime_Nienow", NULL);
    put_msg(s, "lobby", 8, "ok 1");
    put_msg(s, "lobby", 999, "user 999 has no row: refused by the foreign key");
    put_msg(s, "lobby", 8, "ok 2");
    cr_assert_eq(store_flush(s, 20000), 0);
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_eq(st.rows_rejected, 1);
    cr_assert_eq(st.rows_written, 3);
    cr_assert_eq(st.db_up, 1);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 2);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages WHERE body LIKE 'ok %'"), 2);

    /* Refused at the door instead: the same on both backends. */
    store_message bad_ts = {.id = store_next_message_id(s),
                            .room = "lobby",
                            .user_id = 8,
                            .source = "auto",
                            .body = "x",
                            .created_at = "not a time"};
    cr_assert_eq(store_put_message(s, &bad_ts), -1);
    bad_ts.created_at = "2026-11-24T10:00:00Z";
    cr_assert_eq(store_put_message(s, &bad_ts), -1, "milliseconds are required");
    bad_ts.created_at = "2026-11-24T10:00:00.123Z";
    cr_assert_eq(store_put_message(s, &bad_ts), 0);
    cr_assert_eq(store_session_end(s, "x", "r", "yesterday"), -1);
    store_message inv = {.id = 1000, .room = "lobby", .user_id = 8, .source = "robot", .body = "x"};
    cr_assert_eq(store_put_message(s, &inv), -1, "source must be auto or manual");
    inv.source = "auto";
    inv.body = NULL;
    cr_assert_eq(store_put_message(s, &inv), -1);
    store_user nouser = {.id = 9, .name = "x"};
    cr_assert_eq(store_put_user(s, &nouser, NULL, NULL), -1);
    store_close(s);
}

struct producer {
    store *s;
    long user;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < 1000; i++) {
        store_message m = {.id = store_next_message_id(p->s),
                           .room = "lobby",
                           .user_id = p->user,
                           .source = "auto",
                           .post_id = i + 1,
                           .title = "t",
                           .body = "b"};
        if (store_put_message(p->s, &m) != 0)
            return (void *)1;
    }
    return NULL;
}

BOTH(concurrent_producers, 60)
{
    store *s = open_ok(url);
    for (long u = 1; u <= 4; u++)
        put_user(s, u, "n", "u", NULL);
    pthread_t t[4];
    struct producer p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (struct producer){s, i + 1};
        cr_assert_eq(pthread_create(&t[i], NULL, produce, &p[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *rv;
        pthread_join(t[i], &rv);
        cr_assert_null(rv);
    }
    cr_assert_eq(store_flush(s, 30000), 0);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 4000);
    cr_assert_eq(q_int(url, "SELECT COUNT(DISTINCT id) FROM messages"), 4000);
    cr_assert_eq(q_int(url, "SELECT MAX(id) FROM messages"), 4000);
    store_close(s);
}

/* ---- errors at open ---- */

Test(errors, bad_scheme, .init = quiet)
{
    char err[256] = "";
    cr_assert_null(store_open("mysql://user:secret@host/db", err, sizeof err));
    cr_assert(strstr(err, "mysql") != NULL, "%s", err);
    cr_assert(strstr(err, "secret") == NULL, "no password in messages: %s", err);
    err[0] = '\0';
    cr_assert_null(store_open("chat.db", err, sizeof err));
    cr_assert_neq(err[0], '\0');
    cr_assert_null(store_open("", err, sizeof err));
    cr_assert_null(store_open("sqlite://", err, sizeof err));
    cr_assert_neq(err[0], '\0');
}

Test(errors, unopenable_sqlite_path, .init = quiet, .fini = sqlite_fini)
{
    sqlite_setup();
    /* A regular file where a directory must be: fails even for root. */
    char file[300], url[400], err[256] = "";
    snprintf(file, sizeof file, "%s/plain", g_dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    snprintf(url, sizeof url, "sqlite://%s/db/chat.db", file);
    cr_assert_null(store_open(url, err, sizeof err));
    cr_assert(strstr(err, "sqlite") != NULL, "%s", err);
    /* A directory where the file must be. */
    snprintf(url, sizeof url, "sqlite://%s", g_dir);
    err[0] = '\0';
    cr_assert_null(store_open(url, err, sizeof err));
    cr_assert_neq(err[0], '\0');
}

Test(errors, unreachable_postgres, .init = quiet)
{
    alarm(30);
    char err[256] = "";
    cr_assert_null(
        store_open("postgresql://chat@127.0.0.1:1/postgres?connect_timeout=3", err, sizeof err));
    cr_assert(strstr(err, "postgresql") != NULL, "%s", err);
    cr_assert(strchr(err, '\n') == NULL, "one line: %s", err);
    cr_assert_null(
        store_open("postgres://chat@127.0.0.1:1/postgres?connect_timeout=3", err, sizeof err));
}

Test(errors, allocation_failures, .init = quiet, .fini = sqlite_fini)
{
    alarm(60);
    const char *url = sqlite_setup();
    char err[256];
    store *s = NULL;
    int n;
    for (n = 1; n < 100 && s == NULL; n++) {
        err[0] = '\0';
        mem_fail_at((unsigned long)n);
        s = store_open(url, err, sizeof err);
        mem_fail_at(0);
        if (s == NULL)
            cr_assert_neq(err[0], '\0', "allocation %d: an error message", n);
    }
    cr_assert_not_null(s, "store_open succeeds once allocations stop failing");
    put_user(s, 1, "a", "b", NULL);
    mem_fail_at(1);
    cr_assert_eq(
        store_put_message(
            s, &(store_message){.id = 1, .room = "r", .user_id = 1, .source = "auto", .body = "b"}),
        -1);
    mem_fail_at(1);
    store_user u = {.id = 2, .name = "n", .username = "u", .profile = "{}"};
    cr_assert_eq(store_put_user(s, &u, NULL, NULL), -1);
    mem_fail_at(1);
    cr_assert_eq(store_session_start(s, "x", 1, NULL, NULL), -1);
    mem_fail_at(1);
    cr_assert_eq(store_session_end(s, "x", "r", NULL), -1);
    mem_fail_at(1);
    cr_assert_eq(store_api_error(s, "GET", "u", 0, "e", NULL), -1);
    mem_fail_at(0);
    for (int i = 0; i < 20; i++)
        put_msg(s, "r", 1, "b");
    cr_assert_eq(store_flush(s, 10000), 0);
    for (n = 1; n < 40; n++) {
        store_message *m = NULL;
        size_t cnt = 0;
        mem_fail_at((unsigned long)n);
        int rc = store_recent_messages(s, "r", 50, 0, &m, &cnt, err, sizeof err);
        mem_fail_at(0);
        if (rc == 0) {
            cr_assert_eq(cnt, 20);
            store_messages_free(m);
        } else {
            cr_assert_null(m);
        }
    }
    store_close(s);
}

/* ---- outages ---- */

/*
 * SQLite "down": as root, chmod cannot make the file unwritable, so another
 * connection takes the write lock (BEGIN EXCLUSIVE) and holds it. The
 * store's writes fail with SQLITE_BUSY; reads still work (WAL).
 */
Test(sqlite, locked_by_another_writer, .init = quiet, .fini = sqlite_fini)
{
    alarm(60);
    const char *url = sqlite_setup();
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    cr_assert_eq(store_flush(s, 10000), 0);

    sqlite3 *other;
    cr_assert_eq(sqlite3_open(url + 9, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);

    for (int i = 0; i < 100; i++)
        put_msg(s, "lobby", 1, "while locked");
    atomic_int done = 0;
    store_user u2 = {.id = 2, .name = "Ervin Howell", .username = "Antonette", .profile = "{}"};
    cr_assert_eq(store_put_user(s, &u2, user_done, &done), 0);
    wait_stats(s, 0, 10);
    cr_assert_eq(store_flush(s, 300), -1, "flush times out while the database is down");
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_eq(st.queue_depth, 101);
    cr_assert_geq(st.down_events, 1);
    cr_assert_geq(st.write_failures, 1);
    cr_assert_eq(atomic_load(&done), 0, "no welcome before the user row is written");

    /* Delivered messages are visible while still queued. */
    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_recent_messages(s, "lobby", 50, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 50);
    cr_assert_str_eq(m[49].body, "while locked");
    cr_assert_str_eq(m[49].user_name, "Leanne Graham");
    store_messages_free(m);

    cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    cr_assert_eq(store_flush(s, 20000), 0);
    store_get_stats(s, &st);
    cr_assert_eq(st.db_up, 1);
    cr_assert_eq(st.queue_depth, 0);
    cr_assert_eq(atomic_load(&done), 1);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 100);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM users"), 2);
    store_close(s);
}

/* Closing while the database stays down: close gives up after its bounded
 * wait, and the pending user's callback still runs, with ok = 0. */
Test(sqlite, close_while_locked, .init = quiet, .fini = sqlite_fini)
{
    alarm(60);
    const char *url = sqlite_setup();
    store *s = open_ok(url);
    sqlite3 *other;
    cr_assert_eq(sqlite3_open(url + 9, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    atomic_int done = 0;
    store_user u = {.id = 1, .name = "n", .username = "u", .profile = "{}"};
    cr_assert_eq(store_put_user(s, &u, user_done, &done), 0);
    time_t t0 = time(NULL);
    store_close(s);
    cr_assert_leq(time(NULL) - t0, STORE_CLOSE_FLUSH_MS / 1000 + 3);
    cr_assert_eq(atomic_load(&done), -1);
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void pg_ctl(const char *what, int port)
{
    char cmd[512];
    if (port)
        snprintf(cmd, sizeof cmd, "%s %s '%s' %d >/dev/null", pg_script(), what, g_pg_priv, port);
    else
        snprintf(cmd, sizeof cmd, "%s %s '%s'", pg_script(), what, g_pg_priv);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/*
 * PostgreSQL stopped mid-run, on a private server so that the tests running
 * beside this one keep theirs: rows queued while it is down are all written
 * after it comes back, and the stats show down, then up.
 */
Test(postgres, server_stopped_mid_run, .init = quiet, .fini = pg_fini)
{
    alarm(120);
    if (getenv("CHATD_TEST_PG_URL") == NULL)
        cr_skip_test("CHATD_TEST_PG_URL is not set (PostgreSQL tests are off)");
    scratch_dir_make(g_pg_priv, sizeof g_pg_priv, "pgout");
    int port = free_port();
    pg_ctl("start", port);
    char url[256];
    snprintf(url, sizeof url, "postgresql://chat@127.0.0.1:%d/postgres", port);

    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    for (int i = 0; i < 100; i++)
        put_msg(s, "lobby", 1, "before");
    cr_assert_eq(store_flush(s, 10000), 0);

    pg_ctl("stop", 0);
    atomic_int done = 0;
    store_user u2 = {.id = 2, .name = "Ervin Howell", .username = "Antonette", .profile = "{}"};
    cr_assert_eq(store_put_user(s, &u2, user_done, &done), 0);
    for (int i = 0; i < 500; i++)
        put_msg(s, "lobby", i % 2 ? 1 : 2, "during");
    wait_stats(s, 0, 20);
    cr_assert_eq(store_flush(s, 500), -1);
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_gt(st.queue_depth, 0);
    cr_assert_eq(atomic_load(&done), 0);
    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_recent_messages(s, "lobby", 10, 0, &m, &n, err, sizeof err), -1,
                 "reads fail while the server is down");
    cr_assert_neq(err[0], '\0');

    pg_ctl("start", port);
    cr_assert_eq(store_flush(s, 60000), 0);
    store_get_stats(s, &st);
    cr_assert_eq(st.db_up, 1);
    cr_assert_geq(st.down_events, 1);
    cr_assert_eq(st.queue_depth, 0);
    cr_assert_eq(st.rows_rejected, 0);
    cr_assert_eq(atomic_load(&done), 1);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 600, "nothing lost");
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages WHERE body = 'during'"), 500);

    /* The read connection comes back too. */
    cr_assert_eq(store_recent_messages(s, "lobby", 1000, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 600);
    cr_assert_eq(first_gap(m, n), 0, "all 600, in order");
    store_messages_free(m);
    store_close(s);
}

/* ---- schema, reads and refusals at the edges ---- */

/* One statement on the database under test, through the test's own
 * connection. */
static void q_exec(const char *url, const char *sql)
{
    if (is_sqlite(url)) {
        sqlite3 *db;
        char *msg = NULL;
        cr_assert_eq(sqlite3_open(url + 9, &db), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql, msg);
        sqlite3_close(db);
    } else {
        PGconn *c = PQconnectdb(url);
        cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
        PGresult *r = PQexec(c, sql);
        cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
    }
}

/* A database migrated by a newer chatd is refused, not downgraded. */
BOTH(newer_schema_is_refused, 60)
{
    store_close(open_ok(url));
    q_exec(url, "UPDATE schema_version SET version = 99");
    char err[256] = "";
    cr_assert_null(store_open(url, err, sizeof err));
    cr_assert_not_null(strstr(err, "newer than this chatd"), "%s", err);
    cr_assert_eq(q_int(url, "SELECT MAX(version) FROM schema_version"), 99, "left as it was");
}

/* The messages table gone behind the store's back: a read is a clean
 * error on one line, with nothing returned. */
BOTH(unreadable_messages_are_a_clean_error, 60)
{
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    put_msg(s, "lobby", 1, "written");
    cr_assert_eq(store_flush(s, 10000), 0);
    q_exec(url, "DROP TABLE messages");
    store_message *m = NULL;
    size_t n = 7;
    char err[256] = "";
    cr_assert_eq(store_recent_messages(s, "lobby", 10, 0, &m, &n, err, sizeof err), -1);
    cr_assert_null(m);
    cr_assert_eq(n, 0);
    cr_assert_not_null(strstr(err, "cannot read messages"), "%s", err);
    cr_assert_null(strchr(err, '\n'), "one line: %s", err);
    /* and a bad request is refused before any reading */
    cr_assert_eq(store_recent_messages(s, NULL, 10, 0, &m, &n, err, sizeof err), -1);
    cr_assert_eq(store_recent_messages(s, "lobby", 0, 0, &m, &n, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "limit"), "%s", err);
    store_close(s);
}

/* A session row of a user with no row is refused for its content, alone:
 * the rows around it are written. */
BOTH(refused_session_does_not_block_others, 60)
{
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    cr_assert_eq(store_session_start(s, "ghost", 999, "127.0.0.1:1", NULL), 0);
    cr_assert_eq(store_session_start(s, "real", 1, "127.0.0.1:2", NULL), 0);
    cr_assert_eq(store_session_end(s, "real", "closed", NULL), 0);
    cr_assert_eq(store_session_end(s, "never-started", "closed", NULL), 0);
    cr_assert_eq(store_flush(s, 20000), 0);
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_eq(st.rows_rejected, 1);
    cr_assert_eq(st.db_up, 1);
    cr_assert_eq(st.queue_depth, 0);
    store_close(s);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM sessions"), 1);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM sessions WHERE id = 'real' AND "
                            "end_reason = 'closed'"),
                 1);
}

/* Every put refuses a timestamp that is not exactly
 * "YYYY-MM-DDTHH:MM:SS.mmmZ", and queues nothing for it. */
Test(sqlite, malformed_timestamps_are_refused_at_the_door, .init = quiet, .fini = sqlite_fini)
{
    alarm(30);
    store *s = open_ok(sqlite_setup());
    const char *bad[] = {
        "",
        "2026-11-24",
        "2026-11-24T10:00:00.123",
        "2026-11-24T10:00:00.123Z ",
        "2026-11-24 10:00:00.123Z",
        "2026-1a-24T10:00:00.123Z",
        "2026-11-24T10:00:00,123Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *ts = bad[i];
        store_user u = {.id = 1, .name = "n", .username = "u", .profile = "{}", .seen_at = ts};
        store_message m = {.id = store_next_message_id(s),
                           .room = "r",
                           .user_id = 1,
                           .source = "auto",
                           .body = "b",
                           .created_at = ts};
        cr_assert_eq(store_put_user(s, &u, NULL, NULL), -1, "user '%s'", ts);
        cr_assert_eq(store_put_message(s, &m), -1, "message '%s'", ts);
        cr_assert_eq(store_session_start(s, "s", 0, NULL, ts), -1, "session start '%s'", ts);
        cr_assert_eq(store_session_end(s, "s", "closed", ts), -1, "session end '%s'", ts);
        cr_assert_eq(store_api_error(s, "GET", "http://x/", 500, "e", ts), -1, "'%s'", ts);
    }
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_eq(st.queue_depth, 0);
    cr_assert_eq(st.rows_written, 0);
    store_close(s);
}

/* While the database is locked, a read merges the written rows with the
 * queued ones: the room and before_id filter the queue too, the limit
 * keeps the newest, and a queued message put without names comes back
 * with "" rather than NULL. */
Test(sqlite, reads_merge_written_and_queued_rows, .init = quiet, .fini = sqlite_fini)
{
    alarm(60);
    const char *url = sqlite_setup();
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    int64_t id[14];
    for (int i = 1; i <= 5; i++)
        id[i] = put_msg(s, "lobby", 1, "written");
    cr_assert_eq(store_flush(s, 10000), 0);

    sqlite3 *other;
    cr_assert_eq(sqlite3_open(url + 9, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 6; i <= 10; i++)
        id[i] = put_msg(s, "lobby", 1, "queued");
    for (int i = 11; i <= 12; i++)
        id[i] = put_msg(s, "other", 1, "elsewhere");
    store_message nameless = {.id = store_next_message_id(s),
                              .room = "other",
                              .user_id = 1,
                              .source = "auto",
                              .post_id = 3,
                              .title = "t",
                              .body = "b"};
    cr_assert_eq(store_put_message(s, &nameless), 0);
    id[13] = nameless.id;

    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_recent_messages(s, "lobby", 4, id[9], &m, &n, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(n, 4);
    for (size_t k = 0; k < n; k++)
        cr_assert_eq(m[k].id, id[5 + k], "row %zu", k);
    cr_assert_str_eq(m[0].body, "written");
    cr_assert_str_eq(m[3].body, "queued");
    store_messages_free(m);

    cr_assert_eq(store_recent_messages(s, "other", 10, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_assert_eq(m[0].id, id[11]);
    cr_assert_eq(m[2].id, id[13]);
    cr_assert_str_eq(m[2].user_name, "");
    cr_assert_str_eq(m[2].user_username, "");
    cr_assert_str_eq(m[2].title, "t");
    cr_assert_eq(m[2].post_id, 3);
    store_messages_free(m);

    cr_assert_eq(store_recent_messages(s, "lobby", 2, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_eq(m[1].id, id[10]);
    store_messages_free(m);
    cr_assert_eq(store_recent_messages(s, "nobody", 5, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 0);
    cr_assert_null(m);

    cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    cr_assert_eq(store_flush(s, -1), 0, "a negative timeout waits as long as it takes");
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 13);
    cr_assert_eq(store_recent_messages(s, "lobby", 4, id[9], &m, &n, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(n, 4, "the same rows once written");
    cr_assert_eq(m[3].id, id[8]);
    store_messages_free(m);
    store_close(s);
}

/* The parent of the database file exists but is a file. */
Test(errors, sqlite_parent_is_a_file, .init = quiet, .fini = sqlite_fini)
{
    sqlite_setup();
    char file[300], url[400], err[256] = "";
    snprintf(file, sizeof file, "%s/plain", g_dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    snprintf(url, sizeof url, "sqlite://%s/chat.db", file);
    cr_assert_null(store_open(url, err, sizeof err));
    cr_assert_not_null(strstr(err, "is not a folder"), "%s", err);
}

/* A relative path names a file in the working directory: no directory to
 * create. */
Test(errors, sqlite_relative_path, .init = quiet, .fini = sqlite_fini)
{
    alarm(30);
    sqlite_setup();
    char cwd[1024];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(g_dir), 0);
    store *s = open_ok("sqlite://here.db");
    store_close(s);
    struct stat st;
    cr_assert_eq(stat("here.db", &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_eq(chdir(cwd), 0);
}

/* Sets the largest file this process may write (RLIMIT_FSIZE); writes
 * past it fail with EFBIG, which SQLite reports as a full disk. */
static void file_limit(rlim_t bytes)
{
    struct rlimit r;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &r), 0);
    r.rlim_cur = bytes;
    signal(SIGXFSZ, SIG_IGN);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &r), 0);
}

/* The disk fills: a new database cannot be created (a clean error), and
 * an open one goes down with every row kept in the queue, then writes
 * them all once there is room again. */
Test(sqlite, disk_full, .init = quiet, .fini = sqlite_fini)
{
    alarm(60);
    const char *url = sqlite_setup();
    char err[256] = "";
    file_limit(512);
    cr_assert_null(store_open(url, err, sizeof err));
    cr_assert_neq(err[0], '\0');
    file_limit(RLIM_INFINITY);

    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    cr_assert_eq(store_flush(s, 10000), 0);
    static char body[1024];
    memset(body, 'x', sizeof body - 1);
    file_limit(256 * 1024);
    for (int i = 0; i < 1000; i++)
        put_msg(s, "lobby", 1, body);
    wait_stats(s, 0, 20);
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_gt(st.queue_depth, 0);
    cr_assert_geq(st.write_failures, 1);
    cr_assert_eq(st.rows_rejected, 0, "a full disk is not the rows' fault");
    file_limit(RLIM_INFINITY);
    cr_assert_eq(store_flush(s, 30000), 0);
    store_get_stats(s, &st);
    cr_assert_eq(st.db_up, 1);
    cr_assert_eq(st.rows_rejected, 0);
    store_close(s);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 1000, "nothing lost");
}

/* ---- the queue's budget (issue 9, item 7) ---- */

static store_put_result try_msg(store *s, const char *room, int64_t id)
{
    store_message m = {.id = id,
                       .room = room,
                       .user_id = 1,
                       .source = "manual",
                       .body = "a post of some length, like the ones people write",
                       .user_name = "Leanne Graham",
                       .user_username = "Bret"};
    return store_put_message(s, &m);
}

/* With the database locked, the queue fills to its budget and then REFUSES
 * (STORE_PUT_FULL, store_full, queue_full) instead of growing; users and
 * sessions still fit in the reserve, then are refused too; every accepted
 * row is written once the database is back, and posting resumes. */
Test(sqlite, full_queue_refuses_and_loses_nothing, .init = quiet, .fini = sqlite_fini)
{
    alarm(60);
    const char *url = sqlite_setup();
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    cr_assert_eq(store_flush(s, 10000), 0);
    store_set_queue_limit(s, 16 * 1024);

    sqlite3 *other;
    cr_assert_eq(sqlite3_open(url + 9, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);

    int accepted = 0;
    store_put_result r = STORE_PUT_OK;
    for (int i = 0; i < 10000 && r == STORE_PUT_OK; i++) {
        r = try_msg(s, "lobby", store_next_message_id(s));
        accepted += r == STORE_PUT_OK;
    }
    cr_assert_eq(r, STORE_PUT_FULL, "a full queue refuses with its own result");
    cr_assert_gt(accepted, 10);
    cr_assert(store_full(s));
    store_stats st;
    store_get_stats(s, &st);
    cr_assert(st.queue_full);
    cr_assert_leq(st.queue_bytes, st.queue_limit, "%zu bytes queued over a %zu budget",
                  st.queue_bytes, st.queue_limit);
    cr_assert_eq(st.queue_depth, (size_t)accepted);
    cr_assert_eq(st.rows_refused, 1);
    cr_assert_eq(try_msg(s, "lobby", store_next_message_id(s)), STORE_PUT_FULL);
    /* A message delivered already (a cluster node logs its own when the
     * stream gives it back) uses the reserve: it is never refused for
     * the queue the other posts are refused for. */
    store_message delivered = {.id = store_next_message_id(s),
                               .room = "lobby",
                               .user_id = 1,
                               .source = "manual",
                               .body = "delivered on every node already",
                               .user_name = "Leanne Graham",
                               .user_username = "Bret"};
    cr_assert_eq(store_put_delivered_message(s, &delivered), STORE_PUT_OK);
    accepted++;

    /* Joins and leaves are still recorded, within the reserve, then not. */
    cr_assert_eq(store_session_start(s, "sess-1", 1, "127.0.0.1", NULL), STORE_PUT_OK);
    r = STORE_PUT_OK;
    int sessions = 1;
    for (int i = 0; i < 10000 && r == STORE_PUT_OK; i++) {
        r = store_session_end(s, "sess-1", "closed", NULL);
        sessions += r == STORE_PUT_OK;
    }
    cr_assert_eq(r, STORE_PUT_FULL);
    store_get_stats(s, &st);
    cr_assert_leq(st.queue_bytes, st.queue_limit + st.queue_limit / 8);

    /* Reads still see every queued row. */
    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_recent_messages(s, "lobby", 1000, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, (size_t)accepted);
    cr_assert_eq(first_gap(m, n - 1), 0); /* the refused posts took ids before the last */
    cr_assert_eq(m[n - 1].id, delivered.id);
    store_messages_free(m);

    cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    cr_assert_eq(store_flush(s, 30000), 0);
    cr_assert(!store_full(s), "posting resumes once the log caught up");
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), accepted,
                 "every accepted row was written");
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM sessions"), 1);
    cr_assert_eq(try_msg(s, "lobby", store_next_message_id(s)), STORE_PUT_OK);
    store_get_stats(s, &st);
    cr_assert_eq(st.queue_full, 0);
    store_close(s);
}

/* Queued rows arrive slightly out of id order (two event loops) and are
 * read through the per-room index: newest `limit` below `before`, sorted,
 * never another room's, and gone from the index once written. */
Test(sqlite, queued_reads_sorted_by_id_per_room, .init = quiet, .fini = sqlite_fini)
{
    alarm(60);
    const char *url = sqlite_setup();
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    cr_assert_eq(store_flush(s, 10000), 0);
    sqlite3 *other;
    cr_assert_eq(sqlite3_open(url + 9, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);

    int64_t id[300];
    for (int i = 0; i < 300; i++)
        id[i] = store_next_message_id(s);
    /* Pairs swapped, and every third row in another room. */
    for (int i = 0; i < 300; i += 2) {
        cr_assert_eq(try_msg(s, (i + 1) % 3 ? "lobby" : "b", id[i + 1]), STORE_PUT_OK);
        cr_assert_eq(try_msg(s, i % 3 ? "lobby" : "b", id[i]), STORE_PUT_OK);
    }
    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_recent_messages(s, "lobby", 20, id[250], &m, &n, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(n, 20);
    for (size_t k = 1; k < n; k++)
        cr_assert_lt(m[k - 1].id, m[k].id, "newest last, sorted");
    cr_assert_lt(m[n - 1].id, id[250]);
    for (size_t k = 0; k < n; k++)
        cr_assert_neq((m[k].id - id[0]) % 3, 0, "row %lld is room b's", (long long)m[k].id);
    /* id[249] is room b's (249 % 3 == 0): the newest of lobby below id[250]
     * is id[248]. */
    cr_assert_eq(m[n - 1].id, id[248]);
    store_messages_free(m);
    cr_assert_eq(store_recent_messages(s, "b", 1000, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 100);
    store_messages_free(m);

    cr_assert_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    cr_assert_eq(store_flush(s, 30000), 0);
    cr_assert_eq(store_recent_messages(s, "b", 1000, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 100, "written rows once, from the database");
    store_messages_free(m);
    store_close(s);
}

/* ---- file modes (issue 9, item 10) ---- */

static mode_t mode_of(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
    return st.st_mode & 0777;
}

/* chat.db and its -wal/-shm hold emails and addresses: 0600 even under a
 * permissive umask, in a 0700 folder; a file left 0644 by an older chatd is
 * narrowed. */
Test(sqlite, database_files_are_private, .init = quiet, .fini = sqlite_fini)
{
    alarm(60);
    const char *url = sqlite_setup(); /* sqlite://DIR/sub/chat.db */
    mode_t old = umask(0);
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    cr_assert_eq(store_flush(s, 10000), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/sub", g_dir);
    cr_assert_eq(mode_of(path), 0700, "data folder %o", mode_of(path));
    cr_assert_eq(mode_of(url + 9), 0600, "chat.db %o", mode_of(url + 9));
    snprintf(path, sizeof path, "%s-wal", url + 9);
    cr_assert_eq(mode_of(path), 0600, "-wal %o", mode_of(path));
    snprintf(path, sizeof path, "%s-shm", url + 9);
    cr_assert_eq(mode_of(path), 0600, "-shm %o", mode_of(path));
    store_close(s);

    cr_assert_eq(chmod(url + 9, 0644), 0);
    s = open_ok(url);
    cr_assert_eq(mode_of(url + 9), 0600, "an old world-readable chat.db is narrowed");
    store_close(s);
    umask(old);
}

/* ---- version 2: whispers, announcements, catch-up, search, rooms ---- */

/* Migration 1 exactly as released, per dialect: a database that an older
 * chatd left behind. */
static const char v1_sqlite[] =
    "CREATE TABLE schema_version (version INTEGER NOT NULL);"
    "INSERT INTO schema_version (version) VALUES (1);"
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, username TEXT NOT NULL,"
    " email TEXT, profile TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL);"
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, room TEXT NOT NULL,"
    " user_id INTEGER NOT NULL REFERENCES users(id),"
    " source TEXT NOT NULL CHECK (source IN ('auto', 'manual')), post_id INTEGER, title TEXT,"
    " body TEXT NOT NULL, created_at TEXT NOT NULL);"
    "CREATE INDEX messages_room_id ON messages(room, id);"
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id INTEGER REFERENCES users(id),"
    " remote TEXT, started_at TEXT NOT NULL, ended_at TEXT, end_reason TEXT);"
    "CREATE TABLE api_errors (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,"
    " method TEXT NOT NULL, url TEXT NOT NULL, status INTEGER, error TEXT NOT NULL);";
static const char v1_postgres[] =
    "CREATE TABLE schema_version (version INTEGER NOT NULL);"
    "INSERT INTO schema_version (version) VALUES (1);"
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, username TEXT NOT NULL,"
    " email TEXT, profile TEXT NOT NULL, first_seen TIMESTAMPTZ NOT NULL,"
    " last_seen TIMESTAMPTZ NOT NULL);"
    "CREATE TABLE messages (id BIGINT PRIMARY KEY, room TEXT NOT NULL,"
    " user_id INTEGER NOT NULL REFERENCES users(id),"
    " source TEXT NOT NULL CHECK (source IN ('auto', 'manual')), post_id INTEGER, title TEXT,"
    " body TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL);"
    "CREATE INDEX messages_room_id ON messages(room, id);"
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id INTEGER REFERENCES users(id),"
    " remote TEXT, started_at TIMESTAMPTZ NOT NULL, ended_at TIMESTAMPTZ, end_reason TEXT);"
    "CREATE TABLE api_errors (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " at TIMESTAMPTZ NOT NULL, method TEXT NOT NULL, url TEXT NOT NULL, status INTEGER,"
    " error TEXT NOT NULL);";

/* The ids of a result, for one assertion per list. */
static void ids_of(const store_message *m, size_t n, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? "," : "", (long long)m[i].id);
}

/* Expected ids as the same text. */
static const char *ids_text(char *buf, size_t len, size_t n, const int64_t *ids)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? "," : "", (long long)ids[i]);
    return buf;
}

#define IDS(...)                                                                                   \
    ids_text(want, sizeof want, sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t),                \
             (int64_t[]){__VA_ARGS__})

static int64_t put_row(store *s, const char *room, long user_id, const char *source,
                       const char *recipients, const char *title, const char *body)
{
    store_message m = {.id = store_next_message_id(s),
                       .room = room,
                       .user_id = user_id,
                       .source = source,
                       .recipients = recipients,
                       .title = title,
                       .body = body,
                       .user_name = user_id ? "Leanne Graham" : NULL,
                       .user_username = user_id ? "Bret" : NULL};
    cr_assert_eq(store_put_message(s, &m), STORE_PUT_OK, "%s row: %s", source, body);
    return m.id;
}

static void since_ids(store *s, const char *room, long user, int64_t since, int limit, char *got,
                      size_t len, int *more)
{
    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_messages_since(s, room, user, since, limit, &m, &n, more, err, sizeof err),
                 0, "%s", err);
    ids_of(m, n, got, len);
    for (size_t i = 1; i < n; i++)
        cr_assert_lt(m[i - 1].id, m[i].id, "oldest first");
    store_messages_free(m);
}

static void search_ids(store *s, const char *room, const char *words, int limit, int64_t before,
                       char *got, size_t len)
{
    store_message *m = NULL;
    size_t n = 0;
    char err[256];
    cr_assert_eq(store_search_messages(s, room, words, limit, before, &m, &n, err, sizeof err), 0,
                 "search '%s': %s", words, err);
    ids_of(m, n, got, len);
    if (n == 0)
        cr_assert_null(m);
    store_messages_free(m);
}

/* Holds the database's write locks through the test's own connection so
 * that the store's rows stay queued while reads still work: on SQLite
 * another writer (WAL readers go on), on PostgreSQL EXCLUSIVE table locks
 * (plain SELECTs go on; the store's writer waits in its INSERT). */
typedef struct held {
    sqlite3 *db;
    PGconn *pg;
} held;

static void hold_writes(const char *url, held *h)
{
    memset(h, 0, sizeof *h);
    if (is_sqlite(url)) {
        cr_assert_eq(sqlite3_open(url + 9, &h->db), SQLITE_OK);
        sqlite3_busy_timeout(h->db, 10000); /* the store may be writing */
        cr_assert_eq(sqlite3_exec(h->db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    } else {
        h->pg = PQconnectdb(url);
        cr_assert_eq(PQstatus(h->pg), CONNECTION_OK, "%s", PQerrorMessage(h->pg));
        PGresult *r = PQexec(h->pg, "BEGIN; LOCK TABLE users, messages, rooms IN EXCLUSIVE MODE");
        cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(h->pg));
        PQclear(r);
    }
}

static void release_writes(held *h)
{
    if (h->db) {
        cr_assert_eq(sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(h->db);
    }
    if (h->pg) {
        PQclear(PQexec(h->pg, "COMMIT"));
        PQfinish(h->pg);
    }
    memset(h, 0, sizeof *h);
}

/* A database that chatd 1 left (schema version 1 and its rows) is
 * migrated in place: rows and ids kept, the new column and table there,
 * the lobby row made, the old posts searchable. */
BOTH(migrate_from_version_1, 60)
{
    if (is_sqlite(url)) { /* the folder the store would make */
        char sub[300];
        snprintf(sub, sizeof sub, "%s/sub", g_dir);
        cr_assert_eq(mkdir(sub, 0700), 0);
    }
    q_exec(url, is_sqlite(url) ? v1_sqlite : v1_postgres);
    q_exec(url, "INSERT INTO users VALUES (1, 'Leanne Graham', 'Bret', NULL, '{}',"
                " '2026-11-24T10:00:00.000Z', '2026-11-24T10:00:00.000Z')");
    q_exec(url, "INSERT INTO messages VALUES"
                " (7, 'lobby', 1, 'auto', 3, 'Sunt aut facere', 'quia et suscipit',"
                "  '2026-11-24T10:00:01.000Z'),"
                " (9, 'lobby', 1, 'manual', NULL, NULL, 'hello old world',"
                "  '2026-11-24T10:00:02.000Z'),"
                " (12, 'other', 1, 'manual', NULL, NULL, 'elsewhere world',"
                "  '2026-11-24T10:00:03.000Z')");

    store *s = open_ok(url);
    cr_assert_eq(q_int(url, "SELECT version FROM schema_version"), 2);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM schema_version"), 1);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 3);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages WHERE recipients IS NULL"), 3);
    cr_assert_eq(q_int(url, "SELECT post_id FROM messages WHERE id = 7"), 3);
    char buf[256], expr[160], sql[256];
    cr_assert_str_eq(q_text(url, "SELECT title FROM messages WHERE id = 7", buf, sizeof buf),
                     "Sunt aut facere");
    snprintf(sql, sizeof sql, "SELECT %s FROM messages WHERE id = 9",
             ts_expr(url, "created_at", expr, sizeof expr));
    cr_assert_str_eq(q_text(url, sql, buf, sizeof buf), "2026-11-24T10:00:02.000Z");
    cr_assert_gt(store_next_message_id(s), 12, "ids continue after the old rows");

    /* The lobby row. */
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM rooms"), 1);
    cr_assert_str_eq(
        q_text(url, "SELECT description FROM rooms WHERE name = 'lobby'", buf, sizeof buf),
        "Everyone starts here");
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM rooms WHERE name = 'lobby' AND NOT private"
                            " AND created_by IS NULL AND secret_hash IS NULL"
                            " AND pin_hash IS NULL"),
                 1);

    /* Old rows read as before, and are found by a search. */
    store_message *m;
    size_t n;
    char err[256], got[256], want[256];
    cr_assert_eq(store_recent_messages(s, "lobby", 10, 0, &m, &n, err, sizeof err), 0, "%s", err);
    ids_of(m, n, got, sizeof got);
    cr_assert_str_eq(got, IDS(7, 9));
    cr_assert_null(m[0].recipients);
    cr_assert_str_eq(m[0].user_name, "Leanne Graham");
    store_messages_free(m);
    search_ids(s, "lobby", "world", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(9));
    search_ids(s, "lobby", "facere", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(7), "the title of an old row");
    search_ids(s, "other", "world", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(12));
    if (is_sqlite(url))
        cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH"
                                " 'world'"),
                     2, "the rebuild indexed the old rows");

    /* The new rules hold on the migrated table: a whisper and an
     * announcement without a sender are written, not refused. */
    put_row(s, "lobby", 1, "whisper", "1", NULL, "psst");
    put_row(s, "lobby", 0, "announcement", NULL, NULL, "hear ye");
    cr_assert_eq(store_flush(s, 10000), 0);
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_eq(st.rows_rejected, 0);
    store_close(s);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages WHERE source = 'whisper'"
                            " AND recipients = '1'"),
                 1);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages WHERE source = 'announcement'"
                            " AND user_id IS NULL"),
                 1);

    /* Opening again migrates nothing more. */
    store_close(open_ok(url));
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM rooms"), 1);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 5);
}

/* Whispers carry their recipients, announcements may have no sender; the
 * rules of store.h are checked at the door; recent history is public
 * only, with the room's announcements and those to every room. */
BOTH(whispers_and_announcements, 60)
{
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    put_user(s, 2, "Ervin Howell", "Antonette", NULL);
    put_user(s, 5, "Chelsey Dietrich", "Kamren", NULL);

    int64_t pub = put_row(s, "lobby", 1, "manual", NULL, NULL, "hello all");
    int64_t wh = put_row(s, "lobby", 1, "whisper", "2,5", NULL, "just you two");
    int64_t ann = put_row(s, "lobby", 0, "announcement", NULL, NULL, "lobby closes soon");
    int64_t every = put_row(s, STORE_ROOM_EVERY, 0, "announcement", NULL, NULL, "restart");
    int64_t signed_ann = put_row(s, "lobby", 2, "announcement", NULL, NULL, "topic changed");
    int64_t other = put_row(s, "other", 2, "auto", NULL, "t", "elsewhere");

    /* Refused at the door. */
    struct {
        const char *room, *source, *recipients;
        long user;
    } bad[] = {
        {"lobby", "whisper", NULL, 1},     {"lobby", "whisper", "", 1},
        {"lobby", "whisper", "2,", 1},     {"lobby", "whisper", ",2", 1},
        {"lobby", "whisper", "2 ,5", 1},   {"lobby", "whisper", "5,2", 1},
        {"lobby", "whisper", "2,2", 1},    {"lobby", "whisper", "02", 1},
        {"lobby", "whisper", "0", 1},      {"lobby", "whisper", "x", 1},
        {"lobby", "whisper", "-2", 1},     {"lobby", "whisper", "99999999999999999999999", 1},
        {"lobby", "whisper", "2", 0},      {"lobby", "manual", "2", 1},
        {"lobby", "auto", NULL, 0},        {"lobby", "manual", NULL, -1},
        {"lobby", "announcement", "2", 0}, {"lobby", "announcement", NULL, -1},
        {"*", "manual", NULL, 1},          {"*", "whisper", "2", 1},
        {"lobby", "robot", NULL, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        store_message m = {.id = store_next_message_id(s),
                           .room = bad[i].room,
                           .user_id = bad[i].user,
                           .source = bad[i].source,
                           .recipients = bad[i].recipients,
                           .body = "x"};
        cr_assert_eq(store_put_message(s, &m), STORE_PUT_FAILED, "case %zu: %s '%s' from %ld", i,
                     bad[i].source, bad[i].recipients ? bad[i].recipients : "(null)", bad[i].user);
    }

    /* Read while queued (the database held), then once written. */
    held h;
    hold_writes(url, &h);
    int64_t queued_wh = put_row(s, "lobby", 2, "whisper", "1", NULL, "queued whisper");
    int64_t queued_every = put_row(s, STORE_ROOM_EVERY, 0, "announcement", NULL, NULL, "queued");
    char got[256], want[256], err[256];
    for (int round = 0; round < 2; round++) {
        store_message *m;
        size_t n;
        cr_assert_eq(store_recent_messages(s, "lobby", 10, 0, &m, &n, err, sizeof err), 0, "%s",
                     err);
        ids_of(m, n, got, sizeof got);
        cr_assert_str_eq(got, IDS(pub, ann, every, signed_ann, queued_every), "round %d", round);
        (void)wh;
        (void)queued_wh;
        cr_assert_str_eq(m[1].source, "announcement");
        cr_assert_eq(m[1].user_id, 0);
        cr_assert_str_eq(m[1].user_name, "");
        cr_assert_str_eq(m[1].user_username, "");
        cr_assert_str_eq(m[2].room, STORE_ROOM_EVERY);
        cr_assert_str_neq(m[3].user_name, "", "a signed announcement has names");
        cr_assert_str_eq(m[4].user_name, "");
        for (size_t k = 0; k < n; k++)
            cr_assert_null(m[k].recipients);
        store_messages_free(m);

        cr_assert_eq(store_recent_messages(s, "other", 10, 0, &m, &n, err, sizeof err), 0);
        ids_of(m, n, got, sizeof got);
        cr_assert_str_eq(got, IDS(every, other, queued_every));
        store_messages_free(m);
        cr_assert_eq(store_recent_messages(s, "lobby", 2, every, &m, &n, err, sizeof err), 0);
        ids_of(m, n, got, sizeof got);
        cr_assert_str_eq(got, IDS(pub, ann), "before_id bounds both rooms");
        store_messages_free(m);
        cr_assert_eq(store_recent_messages(s, STORE_ROOM_EVERY, 10, 0, &m, &n, err, sizeof err), 0);
        ids_of(m, n, got, sizeof got);
        cr_assert_str_eq(got, IDS(every, queued_every), "the '*' room's rows once each");
        store_messages_free(m);
        if (round == 0) {
            store_stats st;
            store_get_stats(s, &st);
            cr_assert_geq(st.queue_depth, 2, "still queued");
            release_writes(&h);
            cr_assert_eq(store_flush(s, 20000), 0);
        }
    }
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_eq(st.rows_rejected, 0);
    store_close(s);

    char sql[128];
    snprintf(sql, sizeof sql, "SELECT recipients FROM messages WHERE id = %lld", (long long)wh);
    cr_assert_str_eq(q_text(url, sql, got, sizeof got), "2,5");
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM messages WHERE id = %lld AND user_id IS NULL",
             (long long)ann);
    cr_assert_eq(q_int(url, sql), 1);
    snprintf(sql, sizeof sql, "SELECT user_id FROM messages WHERE id = %lld",
             (long long)signed_ann);
    cr_assert_eq(q_int(url, sql), 2);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages WHERE recipients IS NOT NULL"), 2);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages WHERE room = '*'"), 2);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages"), 8);
}

/* Catch-up: the public rows and the reader's own private ones (sent or
 * received; "1" is not in "12"), newest `limit` with "more", queued rows
 * included once. */
BOTH(since_catch_up, 60)
{
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    put_user(s, 2, "Ervin Howell", "Antonette", NULL);
    put_user(s, 3, "Clementine Bauch", "Samantha", NULL);
    put_user(s, 12, "Twelve", "twelve", NULL);
    int64_t m1 = put_row(s, "lobby", 1, "manual", NULL, NULL, "public");
    int64_t m2 = put_row(s, "lobby", 1, "whisper", "2", NULL, "1 to 2");
    int64_t m3 = put_row(s, "lobby", 2, "whisper", "3", NULL, "2 to 3");
    int64_t m4 = put_row(s, "lobby", 3, "whisper", "1,2", NULL, "3 to 1 and 2");
    int64_t m5 = put_row(s, STORE_ROOM_EVERY, 0, "announcement", NULL, NULL, "everyone");
    int64_t m6 = put_row(s, "other", 1, "manual", NULL, NULL, "another room");
    int64_t m7 = put_row(s, "lobby", 0, "announcement", NULL, NULL, "lobby news");
    int64_t m8 = put_row(s, "lobby", 3, "whisper", "12", NULL, "3 to 12");
    int64_t m9 = put_row(s, "lobby", 12, "whisper", "3,21", NULL, "12 to 3 and 21");
    (void)m6;
    cr_assert_eq(store_flush(s, 10000), 0);

    char got[8192], want[8192];
    int more = -1;
    since_ids(s, "lobby", 1, 0, 100, got, sizeof got, &more);
    cr_assert_str_eq(got, IDS(m1, m2, m4, m5, m7));
    cr_assert_eq(more, 0);
    since_ids(s, "lobby", 2, 0, 100, got, sizeof got, &more);
    cr_assert_str_eq(got, IDS(m1, m2, m3, m4, m5, m7));
    since_ids(s, "lobby", 3, 0, 100, got, sizeof got, &more);
    cr_assert_str_eq(got, IDS(m1, m3, m4, m5, m7, m8, m9));
    since_ids(s, "lobby", 12, 0, 100, got, sizeof got, &more);
    cr_assert_str_eq(got, IDS(m1, m5, m7, m8, m9));
    since_ids(s, "lobby", 21, 0, 100, got, sizeof got, &more);
    cr_assert_str_eq(got, IDS(m1, m5, m7, m9), "the last of the recipients");
    since_ids(s, "lobby", 0, 0, 100, got, sizeof got, &more);
    cr_assert_str_eq(got, IDS(m1, m5, m7), "no user: public only");
    since_ids(s, "lobby", 1, m2, 100, got, sizeof got, &more);
    cr_assert_str_eq(got, IDS(m4, m5, m7), "after since_id only");
    since_ids(s, "lobby", 1, m9, 100, got, sizeof got, &more);
    cr_assert_str_eq(got, "");
    cr_assert_eq(more, 0);
    since_ids(s, "other", 1, 0, 100, got, sizeof got, &more);
    cr_assert_str_eq(got, IDS(m5, m6));

    store_message *m;
    size_t n;
    char err[256];
    cr_assert_eq(store_messages_since(s, "lobby", 2, m3, 10, &m, &n, &more, err, sizeof err), 0);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(m[0].recipients, "1,2");
    cr_assert_str_eq(m[0].source, "whisper");
    cr_assert_str_eq(m[0].user_name, "Clementine Bauch");
    cr_assert_str_eq(m[0].body, "3 to 1 and 2");
    cr_assert_null(m[1].recipients);
    cr_assert_str_eq(m[1].user_name, "");
    cr_assert_eq(m[1].user_id, 0);
    store_messages_free(m);
    cr_assert_eq(store_messages_since(s, "lobby", 2, 0, 0, &m, &n, &more, err, sizeof err), -1);
    cr_assert_eq(store_messages_since(s, NULL, 2, 0, 5, &m, &n, &more, err, sizeof err), -1);

    /* 600 rows: the newest 500 (the clamp), then the rest. */
    int64_t bulk[600];
    for (int i = 0; i < 600; i++)
        bulk[i] = i % 2 ? put_row(s, "bulk", 1, "manual", NULL, NULL, "b")
                        : put_row(s, "bulk", 2, "whisper", "1", NULL, "w");
    put_row(s, "bulk", 2, "whisper", "3", NULL, "not for 1");
    cr_assert_eq(store_flush(s, 20000), 0);
    cr_assert_eq(store_messages_since(s, "bulk", 1, 0, 100000, &m, &n, &more, err, sizeof err), 0);
    cr_assert_eq(n, STORE_SINCE_MAX);
    cr_assert_eq(more, 1);
    cr_assert_eq(m[0].id, bulk[100]);
    cr_assert_eq(m[n - 1].id, bulk[599]);
    cr_assert_eq(first_gap(m, n), 0);
    store_messages_free(m);
    cr_assert_eq(store_messages_since(s, "bulk", 1, bulk[99], 500, &m, &n, &more, err, sizeof err),
                 0);
    cr_assert_eq(n, 500);
    cr_assert_eq(more, 0, "exactly 500 left: no more");
    store_messages_free(m);
    cr_assert_eq(store_messages_since(s, "bulk", 1, bulk[98], 500, &m, &n, &more, err, sizeof err),
                 0);
    cr_assert_eq(more, 1);
    cr_assert_eq(m[0].id, bulk[100]);
    store_messages_free(m);
    cr_assert_eq(store_messages_since(s, "bulk", 1, 0, 10, &m, &n, &more, err, sizeof err), 0);
    cr_assert_eq(n, 10);
    cr_assert_eq(more, 1);
    cr_assert_eq(m[0].id, bulk[590]);
    store_messages_free(m);

    /* Queued rows count, once, and a public row of the database too. */
    held h;
    hold_writes(url, &h);
    int64_t q1 = put_row(s, "lobby", 2, "whisper", "1", NULL, "queued to 1");
    int64_t q2 = put_row(s, "lobby", 2, "whisper", "3", NULL, "queued to 3");
    int64_t q3 = put_row(s, STORE_ROOM_EVERY, 0, "announcement", NULL, NULL, "queued to all");
    int64_t q4 = put_row(s, "lobby", 3, "manual", NULL, NULL, "queued public");
    (void)q2;
    for (int round = 0; round < 2; round++) {
        since_ids(s, "lobby", 1, m4, 100, got, sizeof got, &more);
        cr_assert_str_eq(got, IDS(m5, m7, q1, q3, q4), "round %d", round);
        cr_assert_eq(more, 0);
        since_ids(s, "lobby", 1, m4, 3, got, sizeof got, &more);
        cr_assert_str_eq(got, IDS(q1, q3, q4), "round %d", round);
        cr_assert_eq(more, 1);
        since_ids(s, "lobby", 3, m9, 100, got, sizeof got, &more);
        cr_assert_str_eq(got, IDS(q2, q3, q4), "round %d", round);
        if (round == 0) {
            release_writes(&h);
            cr_assert_eq(store_flush(s, 20000), 0);
        }
    }
    store_close(s);
}

/* Search: whole words, any case, every word, title or body, public posts
 * only; the query is never syntax. The same expectations on both
 * backends: the same data gives the same rows. */
BOTH(search_words, 60)
{
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    int64_t a = put_row(s, "s", 1, "auto", NULL, "Quarterly Report", "numbers went up");
    int64_t b = put_row(s, "s", 1, "manual", NULL, NULL, "The report is ready, see the numbers.");
    int64_t c = put_row(s, "s", 1, "manual", NULL, NULL, "reporting live; reports later");
    put_row(s, "s", 1, "whisper", "2", NULL, "secret report numbers");
    put_row(s, "s", 0, "announcement", NULL, NULL, "report announcement");
    put_row(s, STORE_ROOM_EVERY, 0, "announcement", NULL, NULL, "report to all");
    put_row(s, "other", 1, "manual", NULL, NULL, "report elsewhere");
    int64_t g = put_row(s, "s", 1, "manual", NULL, NULL, "un café crème, s'il vous plaît");
    int64_t h = put_row(s, "s", 1, "manual", NULL, NULL, "a OR b near(x) \"quoted\" NOT c");
    int64_t k = put_row(s, "s", 1, "manual", NULL, NULL, "v2 build_42 ok-then x*y");
    /* what PostgreSQL's parser alone would keep whole */
    int64_t e = put_row(s, "s", 1, "manual", NULL, NULL,
                        "mail bob@example.com, see http://example.org/path/file.txt pi=3.14");
    cr_assert_eq(store_flush(s, 10000), 0);

    char got[1024], want[1024];
    search_ids(s, "s", "report", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(a, b), "whole words, title or body, public posts only");
    search_ids(s, "s", "REPORT", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(a, b), "any case");
    search_ids(s, "s", "  numbers,report!! ", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(a, b), "every word, in title or body");
    search_ids(s, "s", "report live", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, "", "all the words or nothing");
    search_ids(s, "s", "quarterly", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(a));
    search_ids(s, "s", "reporting", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(c), "no stemming");
    search_ids(s, "s", "reports", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(c));
    search_ids(s, "s", "secret", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, "", "never a whisper");
    search_ids(s, "s", "announcement", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, "", "nor an announcement");
    search_ids(s, "other", "report", 10, 0, got, sizeof got);
    cr_assert_eq(strchr(got, ',') == NULL && got[0] != '\0', 1, "one row: %s", got);
    search_ids(s, "s", "café", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(g), "non-ASCII words");
    search_ids(s, "s", "cafe", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, "", "diacritics are not folded");
    search_ids(s, "s", "plaît", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(g));

    /* Query syntax is only separators. */
    search_ids(s, "s", "a\" OR b", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(h), "a, OR and b as words");
    search_ids(s, "s", "*", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, "", "no word: no rows");
    search_ids(s, "s", "", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, "");
    search_ids(s, "s", "NEAR(", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(h), "NEAR as a word");
    search_ids(s, "s", "NOT c", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(h));
    search_ids(s, "s", "report*", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(a, b), "no prefix search");
    search_ids(s, "s", "report -numbers", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(a, b), "no negation");
    search_ids(s, "s", "quoted) NOT (\"x", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(h));
    search_ids(s, "s", "title:report", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, "", "no column filter: the words title and report, in no row");
    search_ids(s, "s", "build 42", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(k), "an underscore separates words");
    search_ids(s, "s", "then ok v2", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(k), "a hyphen separates words");
    /* e-mail addresses, URLs, file names and decimals are cut into words on
     * both backends (PostgreSQL's text goes through regexp_replace) */
    search_ids(s, "s", "example", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(e));
    search_ids(s, "s", "bob@example.com", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(e));
    search_ids(s, "s", "file txt path", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(e));
    search_ids(s, "s", "14", 10, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(e));

    /* Limit and before_id, newest last. */
    search_ids(s, "s", "report", 1, 0, got, sizeof got);
    cr_assert_str_eq(got, IDS(b));
    search_ids(s, "s", "report", 10, b, got, sizeof got);
    cr_assert_str_eq(got, IDS(a));

    /* Too many words is an error; a word longer than PostgreSQL indexes
     * matches nothing; bad arguments are refused. */
    char many[256] = "";
    for (int i = 0; i < 33; i++)
        strcat(many, "w ");
    store_message *m = NULL;
    size_t n = 9;
    char err[256];
    cr_assert_eq(store_search_messages(s, "s", many, 10, 0, &m, &n, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "words"), "%s", err);
    cr_assert_null(m);
    cr_assert_eq(n, 0);
    many[32 * 2] = '\0';
    search_ids(s, "s", many, 10, 0, got, sizeof got);
    cr_assert_str_eq(got, "", "32 words are fine");
    static char longword[3000];
    memset(longword, 'x', sizeof longword - 1);
    search_ids(s, "s", longword, 10, 0, got, sizeof got);
    cr_assert_str_eq(got, "");
    cr_assert_eq(store_search_messages(s, "s", NULL, 10, 0, &m, &n, err, sizeof err), -1);
    cr_assert_eq(store_search_messages(s, NULL, "x", 10, 0, &m, &n, err, sizeof err), -1);
    cr_assert_eq(store_search_messages(s, "s", "x", 0, 0, &m, &n, err, sizeof err), -1);
    store_close(s);

    if (is_sqlite(url)) {
        cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH"
                                " 'secret OR announcement OR all'"),
                     0, "whispers and announcements are not indexed at all");
        cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages_fts_docsize"), 8,
                     "the public posts alone are indexed");
        q_exec(url, "DELETE FROM messages WHERE source = 'auto'");
        cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH"
                                " 'quarterly'"),
                     0, "a deleted row leaves the index");
    }
}

/* Rooms: put, replace, delete, read back with queued changes applied,
 * written, and kept across a reopen. */
/* Deleting a room's row retires its messages: they stay in the log, under
 * "NAME~deleted-N", and the name's history starts empty. */
BOTH(deleting_a_room_retires_its_messages, 60)
{
    store *s = open_ok(url);
    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    cr_assert_eq(store_room_put(s, &(store_room){.name = "gone"}), STORE_PUT_OK);
    put_row(s, "gone", 1, "manual", NULL, NULL, "said in the deleted room");
    put_row(s, "kept", 1, "manual", NULL, NULL, "said elsewhere");
    cr_assert_eq(store_room_delete(s, "gone"), STORE_PUT_OK);
    cr_assert_eq(store_flush(s, 10000), 0);
    store_message *m = NULL;
    size_t n = 9;
    char err[256];
    cr_assert_eq(store_recent_messages(s, "gone", 10, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 0, "the deleted room's messages are not its name's history");
    store_messages_free(m);
    cr_assert_eq(store_recent_messages(s, "kept", 10, 0, &m, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 1);
    store_messages_free(m);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM messages WHERE room LIKE 'gone~deleted-%'"), 1,
                 "still in the log");
    store_close(s);
}

BOTH(rooms_roundtrip, 60)
{
    store *s = open_ok(url);
    store_room *r;
    size_t n;
    char err[256];
    cr_assert_eq(store_rooms_load(s, &r, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(r[0].name, "lobby");
    cr_assert_str_eq(r[0].description, "Everyone starts here");
    cr_assert_null(r[0].secret_hash);
    cr_assert_null(r[0].pin_hash);
    cr_assert_eq(r[0].is_private, 0);
    cr_assert_eq(r[0].created_by, 0);
    cr_assert_eq(strlen(r[0].created_at), strlen("2026-11-24T10:00:00.000Z"), "%s",
                 r[0].created_at);
    cr_assert_eq(r[0].created_at[23], 'Z');
    char lobby_at[32];
    snprintf(lobby_at, sizeof lobby_at, "%s", r[0].created_at);
    store_rooms_free(r);

    put_user(s, 1, "Leanne Graham", "Bret", NULL);
    cr_assert_eq(store_flush(s, 10000), 0);
    held h;
    hold_writes(url, &h);
    store_room zeta = {.name = "zeta",
                       .description = "first",
                       .secret_hash = "$argon2id$secret",
                       .pin_hash = "$argon2id$pin",
                       .is_private = 1,
                       .created_by = 1,
                       .created_at = "2026-11-24T10:00:00.123Z"};
    cr_assert_eq(store_room_put(s, &zeta), STORE_PUT_OK);
    cr_assert_eq(store_room_put(s, &(store_room){.name = "alpha"}), STORE_PUT_OK);
    cr_assert_eq(store_room_put(s, &(store_room){.name = "Beta", .description = "gone"}),
                 STORE_PUT_OK);
    cr_assert_eq(store_room_delete(s, "Beta"), STORE_PUT_OK);
    zeta.description = "second";
    cr_assert_eq(store_room_put(s, &zeta), STORE_PUT_OK);
    cr_assert_eq(store_room_put(s, NULL), STORE_PUT_FAILED);
    cr_assert_eq(store_room_put(s, &(store_room){.description = "no name"}), STORE_PUT_FAILED);
    cr_assert_eq(store_room_put(s, &(store_room){.name = "x", .created_at = "today"}),
                 STORE_PUT_FAILED);
    cr_assert_eq(store_room_put(s, &(store_room){.name = "x", .created_by = -1}), STORE_PUT_FAILED);
    cr_assert_eq(store_room_delete(s, NULL), STORE_PUT_FAILED);

    for (int round = 0; round < 3; round++) {
        cr_assert_eq(store_rooms_load(s, &r, &n, err, sizeof err), 0, "%s", err);
        cr_assert_eq(n, 3, "round %d", round);
        cr_assert_str_eq(r[0].name, "alpha", "by name, bytewise");
        cr_assert_str_eq(r[1].name, "lobby");
        cr_assert_str_eq(r[2].name, "zeta");
        cr_assert_str_eq(r[0].description, "");
        cr_assert_null(r[0].secret_hash);
        cr_assert_eq(r[0].is_private, 0);
        cr_assert_eq(r[0].created_by, 0);
        cr_assert_eq(strlen(r[0].created_at), 24);
        cr_assert_str_eq(r[1].created_at, lobby_at);
        cr_assert_str_eq(r[2].description, "second", "the later put wins");
        cr_assert_str_eq(r[2].secret_hash, "$argon2id$secret");
        cr_assert_str_eq(r[2].pin_hash, "$argon2id$pin");
        cr_assert_eq(r[2].is_private, 1);
        cr_assert_eq(r[2].created_by, 1);
        cr_assert_str_eq(r[2].created_at, "2026-11-24T10:00:00.123Z");
        store_rooms_free(r);
        if (round == 0) {
            cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM rooms"), 1, "still queued");
            release_writes(&h);
            cr_assert_eq(store_flush(s, 20000), 0);
        } else if (round == 1) {
            store_close(s);
            s = open_ok(url);
        }
    }
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM rooms"), 3);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM rooms WHERE private"), 1);
    cr_assert_eq(q_int(url, "SELECT COUNT(*) FROM rooms WHERE created_by IS NULL"), 2);
    cr_assert_eq(q_int(url, "SELECT created_by FROM rooms WHERE name = 'zeta'"), 1);

    /* Deleting the lobby is kept too: the migration made it once. */
    cr_assert_eq(store_room_delete(s, "lobby"), STORE_PUT_OK);
    store_close(s);
    s = open_ok(url);
    cr_assert_eq(store_rooms_load(s, &r, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(r[0].name, "alpha");
    cr_assert_str_eq(r[1].name, "zeta");
    store_rooms_free(r);
    store_close(s);
}

/* Every allocation of the new reads fails in turn: a clean -1 with nothing
 * returned, or the whole result. */
Test(errors, allocation_failures_v2, .init = quiet, .fini = sqlite_fini)
{
    alarm(60);
    const char *url = sqlite_setup();
    store *s = open_ok(url);
    put_user(s, 1, "a", "b", NULL);
    for (int i = 0; i < 10; i++) {
        put_row(s, "r", 1, "manual", NULL, NULL, "find me");
        put_row(s, "r", 1, "whisper", "2", NULL, "find me");
    }
    put_row(s, STORE_ROOM_EVERY, 0, "announcement", NULL, NULL, "all");
    cr_assert_eq(store_room_put(s, &(store_room){.name = "r"}), STORE_PUT_OK);
    cr_assert_eq(store_flush(s, 10000), 0);
    mem_fail_at(1);
    cr_assert_eq(store_room_put(s, &(store_room){.name = "q"}), STORE_PUT_FAILED);
    mem_fail_at(1);
    cr_assert_eq(store_room_delete(s, "q"), STORE_PUT_FAILED);
    mem_fail_at(0);
    char err[256];
    for (int n = 1; n < 60; n++) {
        store_message *m = NULL;
        size_t cnt = 0;
        int more = -1;
        mem_fail_at((unsigned long)n);
        int rc = store_messages_since(s, "r", 1, 0, 50, &m, &cnt, &more, err, sizeof err);
        mem_fail_at(0);
        if (rc == 0) {
            cr_assert_eq(cnt, 21, "posts, own whispers, the announcement");
            store_messages_free(m);
        } else {
            cr_assert_null(m);
        }
        m = NULL;
        mem_fail_at((unsigned long)n);
        rc = store_search_messages(s, "r", "find me", 50, 0, &m, &cnt, err, sizeof err);
        mem_fail_at(0);
        if (rc == 0) {
            cr_assert_eq(cnt, 10);
            store_messages_free(m);
        } else {
            cr_assert_null(m);
        }
        store_room *r = NULL;
        mem_fail_at((unsigned long)n);
        rc = store_rooms_load(s, &r, &cnt, err, sizeof err);
        mem_fail_at(0);
        if (rc == 0) {
            cr_assert_eq(cnt, 2);
            store_rooms_free(r);
        } else {
            cr_assert_null(r);
        }
    }
    store_close(s);
}
