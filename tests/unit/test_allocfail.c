/*
 * test_allocfail — allocation-failure injection ("torture", as SQLite and
 * curl do it) over every module that handles outside input or keeps data:
 * SDP and DCEP, tokens and the token cache, the JSONPlaceholder reply
 * parsers, and the store (SQLite; PostgreSQL too when CHATD_TEST_PG_URL is
 * set, reported as skipped otherwise). The data-channel protocol's loops
 * are in test_protocol; key creation, loading and JWKS are in
 * test_allocfail_ssl, where OpenSSL's allocations fail too.
 *
 * For each operation, torture() (tests/unit/torture.h) runs it with
 * allocation N failing for N = 1, 2, 3, ... until a run meets no injected
 * failure. Every run must end cleanly: the operation reports an error (and
 * says why) or, when the failed allocation had a fallback, its result is
 * checked to be exactly right; under ASan each run ends with a leak check,
 * so a path that leaks on failure fails the test at the N that shows it.
 * The run that meets no failure must succeed.
 *
 * What this covers is what goes through util/mem: chatd's own allocations,
 * jansson's (mem_install routes them) and, in this binary, SQLite's
 * (sqlite3_config before main). OpenSSL's are injected by
 * test_allocfail_ssl; libpq, libcurl, libmicrohttpd and GLib allocate with
 * their own allocators and are not injected. SDP and DCEP allocate
 * nothing: their tests prove that by completing at N = 1 with no failure
 * injected.
 */
#include <criterion/criterion.h>

#include "api/jsonplaceholder.h"
#include "auth/cache.h"
#include "auth/keys.h"
#include "auth/token.h"
#include "rtc/dcep.h"
#include "rtc/sdp.h"
#include "store/store.h"
#include "util/log.h"
#include "util/mem.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scratch.h"
#include "torture.h"

/* SQLite's allocator, routed through util/mem so that the store loops
 * below also fail SQLite's own allocations (SQLITE_NOMEM inside open,
 * migrate, prepare, the writer's batches and the reads). SQLite needs each
 * block's size: it is kept in a 16-byte header. */
static void *sq_malloc(int n)
{
    unsigned char *p = mem_alloc((size_t)n + 16);
    if (p == NULL)
        return NULL;
    memcpy(p, &n, sizeof n);
    return p + 16;
}

static void sq_free(void *p)
{
    if (p)
        mem_free((unsigned char *)p - 16);
}

static int sq_size(void *p)
{
    int n = 0;
    if (p)
        memcpy(&n, (unsigned char *)p - 16, sizeof n);
    return n;
}

static void *sq_realloc(void *p, int n)
{
    unsigned char *q = mem_realloc(p ? (unsigned char *)p - 16 : NULL, (size_t)n + 16);
    if (q == NULL)
        return NULL;
    memcpy(q, &n, sizeof n);
    return q + 16;
}

static int sq_roundup(int n) { return (n + 7) & ~7; }
static int sq_init(void *arg)
{
    (void)arg;
    return SQLITE_OK;
}
static void sq_shutdown(void *arg) { (void)arg; }

static int sqlite_hooked;

/* Before main: SQLite takes an allocator only before it initializes. */
__attribute__((constructor(101))) static void hook_sqlite(void)
{
    static const sqlite3_mem_methods methods = {sq_malloc,  sq_free, sq_realloc,  sq_size,
                                                sq_roundup, sq_init, sq_shutdown, NULL};
    sqlite_hooked = sqlite3_config(SQLITE_CONFIG_MALLOC, &methods) == SQLITE_OK;
}

static void setup(void)
{
    mem_install();
    log_set_level(getenv("CHATD_TEST_LOG") ? LOGL_DEBUG : LOGL_OFF);
}

TestSuite(allocfail, .init = setup, .timeout = 300);

/* ---- SDP and DCEP: no allocation at all ----------------------------------- */

static const char offer[] =
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 "
    "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:"
    "67:89\r\na=setup:actpass\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n";

static int op_sdp(void *ctx)
{
    (void)ctx;
    sdp_description d;
    char err[160], buf[4096];
    cr_assert_eq(sdp_parse(offer, strlen(offer), &d, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(d.ice_ufrag, "abcd");
    cr_assert_eq(d.n_candidates, 1);
    d.setup = SDP_SETUP_PASSIVE;
    snprintf(d.conn_address, sizeof d.conn_address, "127.0.0.1");
    d.conn_port = 40000;
    int n = sdp_write(&d, buf, sizeof buf);
    cr_assert_gt(n, 0);
    sdp_description back;
    cr_assert_eq(sdp_parse(buf, (size_t)n, &back, err, sizeof err), 0, "%s", err);
    cr_assert_eq(back.fingerprint_len, 32);
    d.dialect = SDP_DIALECT_SCTPMAP;
    cr_assert_gt(sdp_write(&d, buf, sizeof buf), 0);
    return 0;
}

Test(allocfail, sdp_allocates_nothing)
{
    cr_assert_eq(torture("sdp parse+write", op_sdp, NULL), 1);
}

static int op_dcep(void *ctx)
{
    (void)ctx;
    uint8_t buf[64];
    dcep_message m;
    char err[128];
    int n = dcep_write_open(buf, sizeof buf, DCEP_CHANNEL_RELIABLE, 0, 0, "chat", "");
    cr_assert_gt(n, 0);
    cr_assert_eq(dcep_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.label_len, 4);
    cr_assert_eq(dcep_write_ack(buf, sizeof buf), 1);
    return 0;
}

Test(allocfail, dcep_allocates_nothing)
{
    cr_assert_eq(torture("dcep parse+write", op_dcep, NULL), 1);
}

/* ---- tokens, keys, cache -------------------------------------------------- */

#define ISS "http://127.0.0.1:1/"
#define NOW ((time_t)1795000000)

typedef struct {
    auth_keys *keys;
    char *good;
} auth_ctx;

static int op_issue(void *ctx)
{
    auth_ctx *a = ctx;
    auth_claims_in in = {.iss = ISS,
                         .sub = "7",
                         .name = "N\xc3\xa9",
                         .email = "e@x",
                         .preferred_username = "u",
                         .ttl_seconds = 60,
                         .now = NOW};
    char err[200] = "", *tok = NULL;
    if (auth_token_issue(a->keys, &in, &tok, err, sizeof err) != 0) {
        cr_assert_null(tok);
        cr_assert_neq(err[0], '\0');
        return -1;
    }
    auth_claims c;
    int rc = auth_token_verify(a->keys, tok, ISS, NOW, &c, err, sizeof err);
    if (rc == 0)
        cr_assert_str_eq(c.sub, "7", "an issued token verifies");
    else
        cr_assert_neq(err[0], '\0'); /* the failure came after the issue */
    auth_claims_clear(&c);
    mem_free(tok);
    return rc;
}

static int op_verify(void *ctx)
{
    auth_ctx *a = ctx;
    auth_claims c;
    char err[200] = "";
    if (auth_token_verify(a->keys, a->good, ISS, NOW, &c, err, sizeof err) != 0) {
        cr_assert_null(c.sub);
        cr_assert_neq(err[0], '\0');
        return -1;
    }
    cr_assert_str_eq(c.sub, "7");
    cr_assert_str_eq(c.name, "N\xc3\xa9");
    cr_assert_str_eq(c.email, "e@x");
    auth_claims copy;
    int rc = auth_claims_copy(&copy, &c);
    auth_claims_clear(&c);
    if (rc != 0)
        return -1;
    cr_assert_str_eq(copy.preferred_username, "u");
    auth_claims_clear(&copy);
    return 0;
}

static int op_verify_forged(void *ctx)
{
    auth_ctx *a = ctx;
    /* the same token with the signature of another: must be refused,
     * whether or not memory runs out on the way */
    char *forged = mem_strdup(a->good);
    if (forged == NULL)
        return -1;
    char *last = strrchr(forged, '.');
    last[1] = last[1] == 'A' ? 'B' : 'A';
    auth_claims c;
    char err[200] = "";
    cr_assert_neq(auth_token_verify(a->keys, forged, ISS, NOW, &c, err, sizeof err), 0);
    cr_assert_null(c.sub);
    cr_assert_neq(err[0], '\0');
    mem_free(forged);
    return 0;
}

static int op_cache(void *ctx)
{
    auth_ctx *a = ctx;
    auth_cache *cache = auth_cache_new(4);
    if (cache == NULL)
        return -1;
    int rc = 0;
    for (int i = 0; i < 2; i++) { /* a miss, then a hit */
        auth_claims c;
        char err[200] = "";
        if (auth_cache_verify(cache, a->keys, a->good, ISS, NOW, &c, err, sizeof err) != 0) {
            cr_assert_neq(err[0], '\0');
            rc = -1;
            continue;
        }
        cr_assert_str_eq(c.sub, "7");
        auth_claims_clear(&c);
    }
    auth_cache_free(cache);
    return rc;
}

static void auth_setup(auth_ctx *a)
{
    char err[300];
    a->keys = auth_keys_generate(err, sizeof err);
    cr_assert_not_null(a->keys, "%s", err);
    auth_claims_in in = {.iss = ISS,
                         .sub = "7",
                         .name = "N\xc3\xa9",
                         .email = "e@x",
                         .preferred_username = "u",
                         .ttl_seconds = 60,
                         .now = NOW};
    cr_assert_eq(auth_token_issue(a->keys, &in, &a->good, err, sizeof err), 0, "%s", err);
}

static void auth_teardown(auth_ctx *a)
{
    mem_free(a->good);
    auth_keys_free(a->keys);
}

Test(allocfail, token_issue_and_verify)
{
    auth_ctx a;
    auth_setup(&a);
    torture("token issue", op_issue, &a);
    torture("token verify", op_verify, &a);
    torture("token verify forged", op_verify_forged, &a);
    torture("token cache", op_cache, &a);
    auth_teardown(&a);
    check_leaks();
}

/* ---- JSONPlaceholder replies ---------------------------------------------- */

static int op_api(void *ctx)
{
    (void)ctx;
    char err[256] = "";
    const char *users = "[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"address\":{\"geo\":{}}}]";
    const char *user = "{\"id\":3,\"name\":\"Le\xc3\xa9\",\"username\":\"u\",\"email\":\"e\","
                       "\"company\":{\"name\":\"c\"}}";
    const char *posts = "[{\"id\":1,\"userId\":1,\"title\":\"t1\",\"body\":\"b1\"},"
                        "{\"id\":2,\"userId\":2,\"title\":\"t2\",\"body\":\"b2\\nmore\"}]";
    int n = jp_parse_users(users, strlen(users), err, sizeof err);
    if (n < 0) {
        cr_assert_neq(err[0], '\0');
        return -1;
    }
    cr_assert_eq(n, 2);
    json_t *u = jp_parse_user(user, strlen(user), err, sizeof err);
    if (u == NULL) {
        cr_assert_neq(err[0], '\0');
        return -1;
    }
    cr_assert_str_eq(json_string_value(json_object_get(u, "name")), "Le\xc3\xa9");
    json_decref(u);
    jp_posts *p = jp_parse_posts(posts, strlen(posts), err, sizeof err);
    if (p == NULL) {
        cr_assert_neq(err[0], '\0');
        return -1;
    }
    cr_assert_eq(jp_posts_count(p), 2);
    cr_assert_str_eq(jp_posts_get(p, 1)->body, "b2\nmore");
    jp_posts_free(p);
    return 0;
}

Test(allocfail, api_reply_parsers) { torture("api reply parsers", op_api, NULL); }

/* ---- the store ------------------------------------------------------------ */

typedef struct {
    char url[512];
    int fresh; /* 1: a new SQLite file per run (the create-and-migrate path) */
    char dir[64];
    unsigned long run;
} store_ctx;

static int op_store(void *ctx)
{
    store_ctx *sc = ctx;
    char url[600], err[256] = "";
    if (sc->fresh)
        snprintf(url, sizeof url, "sqlite://%s/r%lu/chat.db", sc->dir, ++sc->run);
    else
        snprintf(url, sizeof url, "%s", sc->url);
    store *s = store_open(url, err, sizeof err);
    if (s == NULL) {
        cr_assert_neq(err[0], '\0');
        return -1;
    }
    int rc = 0;
    char room[32];
    snprintf(room, sizeof room, "room%lu", ++sc->run);
    store_user u = {.id = 1, .name = "N", .username = "u", .email = "e", .profile = "{}"};
    if (store_put_user(s, &u, NULL, NULL) != 0)
        rc = -1;
    store_message m = {.id = store_next_message_id(s),
                       .room = room,
                       .user_id = 1,
                       .source = "auto",
                       .post_id = 4,
                       .title = "t",
                       .body = "b",
                       .user_name = "N",
                       .user_username = "u"};
    int put = store_put_message(s, &m);
    if (put != 0)
        rc = -1;
    if (store_session_start(s, "sess", 1, "127.0.0.1:1", NULL) != 0 ||
        store_session_end(s, "sess", "closed", NULL) != 0 ||
        store_api_error(s, "GET", "http://x/users/1", 500, "e", NULL) != 0)
        rc = -1;
    cr_assert_eq(store_flush(s, 10000), 0,
                 "the queue drains (a writer that hit a failure "
                 "retries)");
    store_message *msgs = NULL;
    size_t count = 0;
    if (store_recent_messages(s, room, 10, 0, &msgs, &count, err, sizeof err) != 0) {
        cr_assert_null(msgs);
        cr_assert_neq(err[0], '\0');
        rc = -1;
    } else {
        /* a queued message is written, never lost (a message whose user
         * row was never queued may be refused for its content) */
        cr_assert_leq(count, 1u);
        if (put == 0 && rc == 0)
            cr_assert_eq(count, 1u, "the queued message was lost");
        if (count)
            cr_assert_str_eq(msgs[0].user_name, "N");
        store_messages_free(msgs);
    }
    store_stats st;
    store_get_stats(s, &st);
    cr_assert_eq(st.queue_depth, 0);
    store_close(s);
    return rc;
}

Test(allocfail, store_sqlite)
{
    cr_assert(sqlite_hooked, "SQLite initialized before main: its allocator is not hooked");
    store_ctx sc = {0};
    /* thousands of databases, each synced: tmpfs makes that cheap */
    scratch_dir_make_tmpfs(sc.dir, sizeof sc.dir, "allocfail");
    sc.fresh = 1;
    torture_ex("store sqlite (new file)", op_store, &sc, 50);
    sc.fresh = 0;
    snprintf(sc.url, sizeof sc.url, "sqlite://%s/shared.db", sc.dir);
    torture_ex("store sqlite (existing file)", op_store, &sc, 50);
    scratch_dir_remove(sc.dir);
}

static void no_notices(void *arg, const char *message) { (void)arg, (void)message; }

/* Runs one statement of administration on the server of base. */
static void pg_admin(const char *base, const char *sql)
{
    PGconn *c = PQconnectdb(base);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PQsetNoticeProcessor(c, no_notices, NULL);
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* A fresh database on the server of CHATD_TEST_PG_URL; its URL in out. */
static void pg_database(const char *base, const char *db, char *out, size_t len)
{
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", db);
    pg_admin(base, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    pg_admin(base, sql);
    /* the base URL with its database name replaced */
    const char *host = strstr(base, "://");
    host = host ? host + 3 : base;
    const char *path = strchr(host, '/'), *query = strchr(host, '?');
    size_t keep = path && (!query || path < query) ? (size_t)(path - base)
                  : query                          ? (size_t)(query - base)
                                                   : strlen(base);
    snprintf(out, len, "%.*s/%s%s", (int)keep, base, db, query ? query : "");
}

Test(allocfail, store_postgres)
{
    const char *base = getenv("CHATD_TEST_PG_URL");
    if (base == NULL || base[0] == '\0')
        cr_skip_test("CHATD_TEST_PG_URL is not set (start a server with scripts/pg.sh)");
    store_ctx sc = {0};
    char db[64];
    snprintf(db, sizeof db, "chatd_allocfail_%d", (int)getpid());
    pg_database(base, db, sc.url, sizeof sc.url);
    torture("store postgres", op_store, &sc);
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE %s", db);
    pg_admin(base, sql);
}
