/*
 * test_store_rate — the log writer keeps up with 5 000 messages/s.
 *
 * A producer thread (this test) puts chat messages into the store on a
 * schedule of RATE per second for SECONDS seconds (catching up at once when
 * it was held up, as chatd's event loops would), sampling the queue depth
 * (store_get_stats) every 50 ms, while the store's own writer thread commits
 * them. Judged by counts and ratios, not wall-clock thresholds:
 *   - bounded backlog: the queue never holds more than one second of input
 *     (RATE rows), i.e. the writer is never a second behind;
 *   - no growth: the mean depth over the last quarter of the run is not
 *     above the mean over the first quarter plus one batch (STORE_BATCH_MAX);
 *   - nothing lost: afterwards the queue drains and rows_written counts
 *     every row, and the table holds every message.
 * Both backends: "sqlite" on a temporary file, "postgres" on a fresh
 * database of the server named by CHATD_TEST_PG_URL (skipped when unset).
 */
#include "scratch.h"
#include "store/store.h"
#include "torture.h"
#include "util/log.h"

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef RATE
#define RATE 5000 /* messages per second offered */
#endif
#define SECONDS 6
#define SAMPLE_MS 50

static char g_dir[256];
static char g_url[512];
static char g_pg_db[64];

static void quiet(void) { log_set_level(getenv("CHATD_TEST_LOG") ? LOGL_DEBUG : LOGL_OFF); }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sqlite_fini(void) { scratch_dir_remove(g_dir); }

static const char *pg_base(void)
{
    const char *base = getenv("CHATD_TEST_PG_URL");
    if (base == NULL || *base == '\0')
        cr_skip_test("CHATD_TEST_PG_URL is not set (start a server with scripts/pg.sh)");
    return base;
}

static void pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(pg_base());
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "admin connection: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static void pg_fini(void)
{
    if (g_pg_db[0] && getenv("CHATD_TEST_PG_URL")) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", g_pg_db);
        PGconn *c = PQconnectdb(getenv("CHATD_TEST_PG_URL"));
        PQclear(PQexec(c, sql));
        PQfinish(c);
    }
}

/* The number of rows in messages, read with the test's own connection. */
static long count_messages(const char *url)
{
    long n = -1;
    if (strncmp(url, "sqlite://", 9) == 0) {
        sqlite3 *db;
        sqlite3_stmt *st;
        cr_assert_eq(sqlite3_open_v2(url + 9, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM messages", -1, &st, NULL),
                     SQLITE_OK);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        n = (long)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
    } else {
        PGconn *c = PQconnectdb(url);
        PGresult *r = PQexec(c, "SELECT COUNT(*) FROM messages");
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
        n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        PQfinish(c);
    }
    return n;
}

static void drive(const char *url)
{
    char err[256];
    store *s = store_open(url, err, sizeof err);
    cr_assert_not_null(s, "store_open: %s", err);
    store_user u = {.id = 1, .name = "Leanne Graham", .username = "Bret", .profile = "{\"id\":1}"};
    cr_assert_eq(store_put_user(s, &u, NULL, NULL), 0);
    cr_assert_eq(store_flush(s, 30000), 0);

    enum { SAMPLES = SECONDS * 1000 / SAMPLE_MS };
    size_t depth[SAMPLES] = {0};
    size_t max_depth = 0;
    long sent = 0;
    const long total = (long)RATE * SECONDS;
    char body[160];
    double t0 = now_s();
    for (int k = 0; k < SAMPLES; k++) {
        /* Put what the schedule asks for up to the end of this sample. */
        double until = t0 + (double)(k + 1) * SAMPLE_MS / 1000.0;
        for (;;) {
            double t = now_s();
            long due = (long)((t - t0) * RATE);
            if (due > total)
                due = total;
            for (; sent < due; sent++) {
                snprintf(body, sizeof body,
                         "message %ld: the quick brown fox jumps over the "
                         "lazy dog",
                         sent);
                store_message m = {.id = store_next_message_id(s),
                                   .room = "lobby",
                                   .user_id = 1,
                                   .source = "manual",
                                   .body = body,
                                   .user_name = "Leanne Graham",
                                   .user_username = "Bret"};
                cr_assert_eq(store_put_message(s, &m), 0, "put %ld", sent);
            }
            if (t >= until)
                break;
            usleep(2000);
        }
        store_stats st;
        store_get_stats(s, &st);
        depth[k] = st.queue_depth;
        if (st.queue_depth > max_depth)
            max_depth = st.queue_depth;
    }
    for (; sent < total; sent++) { /* whatever the schedule still owes */
        snprintf(body, sizeof body, "message %ld", sent);
        store_message m = {.id = store_next_message_id(s),
                           .room = "lobby",
                           .user_id = 1,
                           .source = "manual",
                           .body = body};
        cr_assert_eq(store_put_message(s, &m), 0);
    }
    double produced_s = now_s() - t0;
    cr_assert_eq(store_flush(s, 60000), 0, "the queue drains");
    double drained_s = now_s() - t0;

    double first = 0, last = 0;
    int quarter = SAMPLES / 4;
    for (int k = 0; k < quarter; k++) {
        first += (double)depth[k];
        last += (double)depth[SAMPLES - 1 - k];
    }
    first /= quarter;
    last /= quarter;
    store_stats st;
    store_get_stats(s, &st);
    fprintf(stderr,
            "store_rate %s: %ld messages in %.2f s (%.0f/s offered), drained at %.2f s; "
            "queue depth max %zu, mean first quarter %.0f, last quarter %.0f; %llu batches, "
            "mean batch %.1f ms, max %.1f ms\n",
            url[0] == 's' ? "sqlite" : "postgres", total, produced_s, (double)total / produced_s,
            drained_s, max_depth, first, last, (unsigned long long)st.batches,
            (double)st.avg_batch_us / 1000.0, (double)st.max_batch_us / 1000.0);

    cr_assert_leq(max_depth, (size_t)RATE,
                  "backlog of %zu rows: the writer fell more than a second behind", max_depth);
    cr_assert_leq(last, first + STORE_BATCH_MAX,
                  "the queue grows: mean depth %.0f in the last quarter, %.0f in the first", last,
                  first);
    cr_assert_eq(st.queue_depth, 0);
    cr_assert_eq(st.rows_rejected, 0);
    cr_assert_eq(st.rows_written, (uint64_t)total + 1, "every row written (and the user)");
    store_close(s);
    cr_assert_eq(count_messages(url), total, "every message in the table");
    check_leaks();
}

Test(sqlite, writer_keeps_up_with_5000_per_second, .init = quiet, .fini = sqlite_fini)
{
    alarm(120);
    scratch_dir_make(g_dir, sizeof g_dir, "store-rate");
    snprintf(g_url, sizeof g_url, "sqlite://%s/chat.db", g_dir);
    drive(g_url);
}

Test(postgres, writer_keeps_up_with_5000_per_second, .init = quiet, .fini = pg_fini)
{
    alarm(120);
    const char *base = pg_base();
    snprintf(g_pg_db, sizeof g_pg_db, "chatd_rate_%d", (int)getpid());
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", g_pg_db);
    pg_admin(sql);
    /* base with its database name replaced */
    const char *host = strstr(base, "://");
    host = host ? host + 3 : base;
    const char *path = strchr(host, '/');
    const char *query = strchr(host, '?');
    size_t keep = path && (!query || path < query) ? (size_t)(path - base)
                  : query                          ? (size_t)(query - base)
                                                   : strlen(base);
    snprintf(g_url, sizeof g_url, "%.*s/%s%s", (int)keep, base, g_pg_db, query ? query : "");
    drive(g_url);
}
