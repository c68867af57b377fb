/*
 * test_cluster — src/cluster against a real NATS server with JetStream.
 *
 * Each test starts its own `nats-server -js -sd DIR -a 127.0.0.1 -p PORT`
 * (a fresh folder and a free port, so Criterion may run tests side by
 * side), opens one or more cluster nodes in this process (two cluster
 * objects are two nodes: two connections, two presence threads) with
 * callbacks that record what arrives, and checks it. What the server holds
 * is checked through the test's own libnats connection (raw_*), not
 * through the module. A missing nats-server fails the test (it is a
 * dependency of chatd's cluster, installed by scripts/deps.sh).
 *
 * The dead-node and restart cases need a node that dies without a
 * goodbye: a child process, forked before this process touches libnats,
 * opens that node and is killed with SIGKILL.
 *
 * Waits poll with generous bounds; where the time itself is the promise
 * (a goodbye seen at once, a dead node seen after CLUSTER_DEAD_MS, an
 * unknown peer answered in a round trip) the bound is asserted.
 * Each test bounds itself with alarm() (see test_store.c for why not
 * Criterion's .timeout).
 */
#include <criterion/criterion.h>

#include "cluster/cluster.h"
#include "scratch.h"
#include "torture.h"
#include "util/log.h"

#include <errno.h>
#include <glib.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------- the NATS server ---------- */

typedef struct {
    pid_t pid;
    int port;
    int js;
    char url[64];
} nats_proc;

static char g_dir[256];
static nats_proc g_nats, g_plain;

static int64_t now_ms(void) { return g_get_monotonic_time() / 1000; }

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

/* The last lines of the server's log, for a failure message. */
static const char *nats_log_tail(const char *name)
{
    static char buf[1024];
    char path[300];
    snprintf(path, sizeof path, "%s/%s.log", g_dir, name);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return "(no log)";
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* 1 when a client can use the server (with JetStream when it has it). */
static int nats_ready(const nats_proc *n)
{
    natsConnection *nc = NULL;
    if (natsConnection_ConnectTo(&nc, n->url) != NATS_OK)
        return 0;
    int ok = 1;
    if (n->js) {
        jsCtx *js = NULL;
        jsAccountInfo *ai = NULL;
        jsErrCode jerr = 0;
        ok = natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
             js_GetAccountInfo(&ai, js, NULL, &jerr) == NATS_OK;
        jsAccountInfo_Destroy(ai);
        jsCtx_Destroy(js);
    }
    natsConnection_Destroy(nc);
    return ok;
}

/* Starts (or starts again: same port, same storage) and waits until it
 * serves. name: its log file and storage folder below g_dir. */
static void nats_start(nats_proc *n, const char *name, int js)
{
    if (n->port == 0) {
        n->port = free_port();
        n->js = js;
        snprintf(n->url, sizeof n->url, "nats://127.0.0.1:%d", n->port);
    }
    char store[300], log[300], port[16];
    snprintf(store, sizeof store, "%s/%s", g_dir, name);
    snprintf(log, sizeof log, "%s/%s.log", g_dir, name);
    snprintf(port, sizeof port, "%d", n->port);
    n->pid = fork();
    cr_assert_neq(n->pid, -1, "fork: %s", strerror(errno));
    if (n->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives the test */
        FILE *f = freopen(log, "a", stdout);
        if (f)
            dup2(fileno(f), 2);
        if (n->js)
            execlp("nats-server", "nats-server", "-js", "-sd", store, "-a", "127.0.0.1", "-p", port,
                   (char *)NULL);
        else
            execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port, (char *)NULL);
        fprintf(stderr, "cannot run nats-server: %s\n", strerror(errno));
        _exit(127);
    }
    int64_t end = now_ms() + 20000;
    for (;;) {
        int status;
        pid_t w = waitpid(n->pid, &status, WNOHANG);
        if (w == n->pid) {
            n->pid = 0;
            cr_assert_fail("nats-server (needed by the cluster; scripts/deps.sh installs it) "
                           "exited with status %d: %s",
                           WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status),
                           nats_log_tail(name));
        }
        if (nats_ready(n))
            return;
        cr_assert_lt(now_ms(), end, "nats-server not ready in 20 s: %s", nats_log_tail(name));
        g_usleep(50 * 1000);
    }
}

static void nats_signal(nats_proc *n, int sig)
{
    cr_assert_gt(n->pid, 0);
    cr_assert_eq(kill(n->pid, sig), 0);
    if (sig == SIGKILL) {
        waitpid(n->pid, NULL, 0);
        n->pid = 0;
    }
}

static void quiet(void)
{
    log_set_level(getenv("CHATD_TEST_LOG") ? LOGL_DEBUG : LOGL_OFF);
    scratch_dir_make(g_dir, sizeof g_dir, "cluster");
}

static void fini(void)
{
    nats_proc *all[] = {&g_nats, &g_plain};
    for (size_t i = 0; i < 2; i++)
        if (all[i]->pid > 0) {
            kill(all[i]->pid, SIGCONT);
            kill(all[i]->pid, SIGKILL);
            waitpid(all[i]->pid, NULL, 0);
            all[i]->pid = 0;
        }
    scratch_dir_remove(g_dir);
}

/* ---------- the test's own view of the server ---------- */

typedef struct {
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
} raw_conn;

static void raw_open(raw_conn *r, const nats_proc *n, int with_kv)
{
    memset(r, 0, sizeof *r);
    cr_assert_eq(natsConnection_ConnectTo(&r->nc, n->url), NATS_OK);
    cr_assert_eq(natsConnection_JetStream(&r->js, r->nc, NULL), NATS_OK);
    if (with_kv)
        cr_assert_eq(js_KeyValue(&r->kv, r->js, CLUSTER_BUCKET), NATS_OK);
}

static void raw_close(raw_conn *r)
{
    kvStore_Destroy(r->kv);
    jsCtx_Destroy(r->js);
    natsConnection_Destroy(r->nc);
}

static void raw_put(raw_conn *r, const char *key, const char *value)
{
    cr_assert_eq(kvStore_PutString(NULL, r->kv, key, value), NATS_OK, "put %s", key);
}

/* ---------- a node's callbacks, recorded ---------- */

typedef struct {
    GMutex lock;
    GArray *ids;      /* int64_t, in arrival order */
    GPtrArray *data;  /* char*, the same order */
    GPtrArray *pres;  /* "join ROOM UID" / "leave ROOM UID" */
    GPtrArray *asked; /* peer ids asked to close */
    GArray *failed;   /* uint64_t tags */
    const char *here; /* the peer id this node holds */
} rec;

static void on_event(void *arg, int64_t id, const char *data, size_t len)
{
    rec *r = arg;
    g_mutex_lock(&r->lock);
    g_array_append_val(r->ids, id);
    g_ptr_array_add(r->data, g_strndup(data, len));
    g_mutex_unlock(&r->lock);
}

static void on_presence(void *arg, const char *room, json_t *member, int joined)
{
    rec *r = arg;
    g_mutex_lock(&r->lock);
    g_ptr_array_add(r->pres,
                    g_strdup_printf("%s %s %lld", joined ? "join" : "leave", room,
                                    (long long)json_integer_value(json_object_get(member, "id"))));
    g_mutex_unlock(&r->lock);
}

static int on_peer_delete(void *arg, const char *peer_id)
{
    rec *r = arg;
    g_mutex_lock(&r->lock);
    g_ptr_array_add(r->asked, g_strdup(peer_id));
    g_mutex_unlock(&r->lock);
    return r->here && strcmp(peer_id, r->here) == 0;
}

static void on_publish_failed(void *arg, uint64_t tag)
{
    rec *r = arg;
    g_mutex_lock(&r->lock);
    g_array_append_val(r->failed, tag);
    g_mutex_unlock(&r->lock);
}

static void rec_init(rec *r, const char *here)
{
    g_mutex_init(&r->lock);
    r->ids = g_array_new(FALSE, FALSE, sizeof(int64_t));
    r->data = g_ptr_array_new_with_free_func(g_free);
    r->pres = g_ptr_array_new_with_free_func(g_free);
    r->asked = g_ptr_array_new_with_free_func(g_free);
    r->failed = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    r->here = here;
}

static guint rec_count(rec *r, GPtrArray *which)
{
    g_mutex_lock(&r->lock);
    guint n = which->len;
    g_mutex_unlock(&r->lock);
    return n;
}

static guint rec_failed(rec *r)
{
    g_mutex_lock(&r->lock);
    guint n = r->failed->len;
    g_mutex_unlock(&r->lock);
    return n;
}

/* The presence events as one string "a|b|c" (the caller frees). */
static char *rec_pres(rec *r)
{
    g_mutex_lock(&r->lock);
    g_ptr_array_add(r->pres, NULL);
    char *s = g_strjoinv("|", (char **)r->pres->pdata);
    g_ptr_array_remove_index(r->pres, r->pres->len - 1);
    g_mutex_unlock(&r->lock);
    return s;
}

/* Whether the presence events are exactly `want` now. */
static int pres_is(rec *r, const char *want)
{
    char *s = rec_pres(r);
    int same = strcmp(s, want) == 0;
    g_free(s);
    return same;
}

#define WAIT_UNTIL(cond, ms, ...)                                                                  \
    do {                                                                                           \
        int64_t end_ = now_ms() + (ms);                                                            \
        while (!(cond) && now_ms() < end_)                                                         \
            g_usleep(20 * 1000);                                                                   \
        cr_assert(cond, __VA_ARGS__);                                                              \
    } while (0)

/* Waits until the presence events are `want`. */
#define WAIT_PRES(r, want, ms)                                                                     \
    do {                                                                                           \
        WAIT_UNTIL(pres_is(r, want), ms, "presence: want '%s', got '%s'", want, rec_pres(r));      \
    } while (0)

/* Every callback, recording into r. */
static cluster_callbacks recording(rec *r)
{
    return (cluster_callbacks){.on_event = on_event,
                               .on_presence = on_presence,
                               .on_peer_delete = on_peer_delete,
                               .on_publish_failed = on_publish_failed,
                               .arg = r};
}

static cluster *open_node(const char *node, int64_t floor, rec *r)
{
    cluster_callbacks cb = recording(r);
    char err[512] = "";
    cluster *c = cluster_open(g_nats.url, node, floor, &cb, err, sizeof err);
    cr_assert_not_null(c, "cluster_open %s: %s", node, err);
    return c;
}

static json_t *user(long id)
{
    return json_pack("{s:i,s:s,s:s}", "id", (int)id, "name", "N", "username", "u");
}

static void put(cluster *c, const char *session, const char *room, long uid)
{
    json_t *u = user(uid);
    cluster_presence_put(c, session, room, u);
    json_decref(u);
}

/* ---------- opening ---------- */

Test(cluster, node_ids)
{
    cr_assert_eq(cluster_node_id_ok("a"), 1);
    cr_assert_eq(cluster_node_id_ok("Node_1-b"), 1);
    cr_assert_eq(cluster_node_id_ok("0123456789abcdef0123456789abcdef"), 1, "32 characters");
    const char *bad[] = {
        NULL, "",   "0123456789abcdef0123456789abcdef0", "a.b", "a b", "a/b", "caf\xc3\xa9", "a*",
        "a>", "a~b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(cluster_node_id_ok(bad[i]), 0, "'%s'", bad[i] ? bad[i] : "(null)");
        char err[256] = "";
        cluster_callbacks cb = {0};
        cr_assert_null(cluster_open("nats://127.0.0.1:1", bad[i], 0, &cb, err, sizeof err));
        cr_assert_str_eq(err, "bad node id");
    }
}

Test(cluster, open_refusals, .init = quiet, .fini = fini)
{
    alarm(60);
    cluster_callbacks cb = {.on_event = on_event};
    char err[512] = "";
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", free_port());
    int64_t t0 = now_ms();
    cr_assert_null(cluster_open(url, "n1", 0, &cb, err, sizeof err));
    cr_assert(g_str_has_prefix(err, "cannot reach NATS at --cluster: "), "%s", err);
    cr_assert_lt(now_ms() - t0, 5000, "nobody there: refused at once");
    err[0] = '\0';
    cr_assert_null(cluster_open(",", "n1", 0, &cb, err, sizeof err));
    cr_assert(g_str_has_prefix(err, "--cluster: "), "no server in the list: %s", err);

    /* a server without JetStream */
    nats_start(&g_plain, "plain", 0);
    err[0] = '\0';
    cr_assert_null(cluster_open(g_plain.url, "n1", 0, &cb, err, sizeof err));
    cr_assert(g_str_has_prefix(err, "NATS JetStream stream CHATD: "), "%s", err);

    /* a stream CHATD that chatd did not make */
    nats_start(&g_nats, "nats", 1);
    raw_conn raw;
    raw_open(&raw, &g_nats, 0);
    const char *subjects[] = {"other.>"};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = CLUSTER_STREAM;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    jsErrCode jerr = 0;
    cr_assert_eq(js_AddStream(NULL, raw.js, &cfg, NULL, &jerr), NATS_OK);
    err[0] = '\0';
    cr_assert_null(cluster_open(g_nats.url, "n1", 0, &cb, err, sizeof err));
    cr_assert_str_eq(err, "stream CHATD exists but was not made by chatd (no id base)");
    cr_assert_eq(js_DeleteStream(raw.js, CLUSTER_STREAM, NULL, &jerr), NATS_OK);

    /* a stream made for a database whose ids were further on */
    rec r;
    rec_init(&r, NULL);
    cluster *c = open_node("n1", 10, &r);
    cr_assert_eq(cluster_id_base(c), 10);
    cr_assert_str_eq(cluster_node_id(c), "n1");
    cr_assert_eq(cluster_publish_wait(c, CLUSTER_TO_CONTROL, NULL, "{}", 2), 1);
    cluster_close(c);
    cb = (cluster_callbacks){.on_event = on_event, .arg = &r};
    err[0] = '\0';
    cr_assert_null(cluster_open(g_nats.url, "n1", 12, &cb, err, sizeof err));
    cr_assert_str_eq(err,
                     "stream CHATD's ids (up to 11) are behind the database's (12): it was made "
                     "for another database; remove it (nats stream rm CHATD) or use that database");
    c = open_node("n1", 11, &r); /* the database has the stream's last id: fine */
    cr_assert_eq(cluster_id_base(c), 10, "the base is the stream's, not the floor");
    cluster_close(c);
    raw_close(&raw);
}

/* ---------- events ---------- */

Test(cluster, events_reach_every_node_in_one_order, .init = quiet, .fini = fini)
{
    alarm(60);
    nats_start(&g_nats, "nats", 1);
    rec r1, r2;
    rec_init(&r1, NULL);
    rec_init(&r2, NULL);
    cluster *n1 = open_node("n1", 1000, &r1);
    cluster *n2 = open_node("n2", 5, &r2);
    cr_assert_eq(cluster_id_base(n1), 1000, "a new stream's ids continue after the floor");
    cr_assert_eq(cluster_id_base(n2), 1000, "a second node takes the stream's base");
    cr_assert_eq(cluster_up(n1), 1);
    WAIT_UNTIL(cluster_nodes_alive(n1) == 2 && cluster_nodes_alive(n2) == 2, 5000,
               "both nodes see each other alive");

    /* 10 events, from both nodes in turn, asynchronously */
    for (int i = 0; i < 10; i++) {
        char data[32];
        snprintf(data, sizeof data, "{\"i\":%d}", i);
        cr_assert_eq(cluster_publish(i % 2 ? n2 : n1, CLUSTER_TO_ROOM, "lobby", data, strlen(data),
                                     (uint64_t)i + 1),
                     0);
    }
    /* and waiting for the stream's sequence, to the other scopes */
    uint64_t every = cluster_publish_wait(n2, CLUSTER_TO_EVERY, NULL, "every", 5);
    uint64_t control = cluster_publish_wait(n1, CLUSTER_TO_CONTROL, "ignored", "ctl", 3);
    uint64_t dotted = cluster_publish_wait(n1, CLUSTER_TO_ROOM, "dev.ops", "dot", 3);
    WAIT_UNTIL(rec_count(&r1, r1.data) == 13 && rec_count(&r2, r2.data) == 13, 10000,
               "13 events on each node (n1 %u, n2 %u)", rec_count(&r1, r1.data),
               rec_count(&r2, r2.data));
    /* n1's asynchronous events may be stored after n2's "every" */
    cr_assert(every >= 6 && every <= 11, "every: %llu", (unsigned long long)every);
    cr_assert(control > every && control <= 12, "control: %llu", (unsigned long long)control);
    cr_assert_eq(dotted, control + 1);
    int last1 = -1, last2 = -1;
    for (guint i = 0; i < 13; i++) {
        int64_t id1 = g_array_index(r1.ids, int64_t, i), id2 = g_array_index(r2.ids, int64_t, i);
        const char *d1 = g_ptr_array_index(r1.data, i), *d2 = g_ptr_array_index(r2.data, i);
        cr_assert_eq(id1, 1000 + (int64_t)i + 1, "ids are base + sequence, in order");
        cr_assert_eq(id1, id2, "the same id on both nodes");
        cr_assert_str_eq(d1, d2, "the same event under id %lld", (long long)id1);
        int k;
        if (i + 1 != every && i + 1 != control && i + 1 != dotted) {
            cr_assert_eq(sscanf(d1, "{\"i\":%d}", &k), 1, "%s", d1);
            int *last = k % 2 ? &last2 : &last1;
            cr_assert_gt(k, *last, "each node's events in the order it published them");
            *last = k;
        }
    }
    cr_assert_str_eq(g_ptr_array_index(r1.data, every - 1), "every");
    cr_assert_str_eq(g_ptr_array_index(r1.data, control - 1), "ctl");
    cr_assert_str_eq(g_ptr_array_index(r1.data, dotted - 1), "dot");

    /* a retried publish (same tag) is stored once */
    cr_assert_eq(cluster_publish(n1, CLUSTER_TO_ROOM, "lobby", "again", 5, 77), 0);
    cr_assert_eq(cluster_publish(n1, CLUSTER_TO_ROOM, "lobby", "again", 5, 77), 0);
    cr_assert_eq(cluster_publish(n1, CLUSTER_TO_ROOM, "lobby", "marker", 6, 78), 0);
    WAIT_UNTIL(rec_count(&r2, r2.data) >= 15 &&
                   strcmp(g_ptr_array_index(r2.data, rec_count(&r2, r2.data) - 1), "marker") == 0,
               10000, "the marker arrives");
    cr_assert_eq(rec_count(&r2, r2.data), 15, "'again' once, then the marker");
    cr_assert_str_eq(g_ptr_array_index(r2.data, 13), "again");

    /* refused at once: a room that is no subject */
    const char *bad_rooms[] = {NULL, "", "a b", "a*", "a>", "a~b"};
    for (size_t i = 0; i < sizeof bad_rooms / sizeof bad_rooms[0]; i++) {
        cr_assert_eq(cluster_publish(n1, CLUSTER_TO_ROOM, bad_rooms[i], "x", 1, 0), -1);
        cr_assert_eq(cluster_publish_wait(n1, CLUSTER_TO_ROOM, bad_rooms[i], "x", 1), 0);
    }
    char long_room[200];
    memset(long_room, 'r', sizeof long_room - 1);
    long_room[sizeof long_room - 1] = '\0';
    cr_assert_eq(cluster_publish(n1, CLUSTER_TO_ROOM, long_room, "x", 1, 0), -1);

    cluster_stats st;
    WAIT_UNTIL((cluster_get_stats(n1, &st), st.published == 10), 5000, "n1: 10 acknowledged, %llu",
               (unsigned long long)st.published);
    cr_assert_eq(st.refused, 13);
    cr_assert_eq(st.failed, 0);
    cr_assert_eq(st.received, 15);
    cluster_get_stats(n2, &st);
    cr_assert_eq(st.published, 6);
    cr_assert_eq(st.refused, 0);
    cr_assert_eq(st.received, 15);

    cluster_close(n1);
    cluster_close(n2);
    /* after close no callback runs: nothing more was recorded */
    cr_assert_eq(rec_count(&r2, r2.data), 15);
}

/* The stream refuses an event (its size over the stream's limit, set from
 * outside): on_publish_failed with its tag; publish_wait says 0. */
Test(cluster, refused_by_the_stream, .init = quiet, .fini = fini)
{
    alarm(60);
    nats_start(&g_nats, "nats", 1);
    rec r;
    rec_init(&r, NULL);
    cluster *c = open_node("n1", 0, &r);
    raw_conn raw;
    raw_open(&raw, &g_nats, 0);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    cr_assert_eq(js_GetStreamInfo(&si, raw.js, CLUSTER_STREAM, NULL, &jerr), NATS_OK);
    si->Config->MaxMsgSize = 64;
    cr_assert_eq(js_UpdateStream(NULL, raw.js, si->Config, NULL, &jerr), NATS_OK, "jerr %d",
                 (int)jerr);
    jsStreamInfo_Destroy(si);

    char big[100];
    memset(big, 'x', sizeof big);
    cr_assert_eq(cluster_publish(c, CLUSTER_TO_ROOM, "lobby", big, sizeof big, 5), 0);
    cr_assert_eq(cluster_publish(c, CLUSTER_TO_ROOM, "lobby", big, sizeof big, 0), 0);
    cr_assert_eq(cluster_publish_wait(c, CLUSTER_TO_ROOM, "lobby", big, sizeof big), 0);
    cr_assert_eq(cluster_publish(c, CLUSTER_TO_ROOM, "lobby", "small", 5, 6), 0);
    cluster_stats st;
    WAIT_UNTIL((cluster_get_stats(c, &st), st.failed == 3 && st.published == 1), 10000,
               "3 failed (%llu), 1 stored (%llu)", (unsigned long long)st.failed,
               (unsigned long long)st.published);
    g_mutex_lock(&r.lock);
    cr_assert_eq(r.failed->len, 1, "a callback for the tagged one only");
    cr_assert_eq(g_array_index(r.failed, uint64_t, 0), 5);
    g_mutex_unlock(&r.lock);
    WAIT_UNTIL(rec_count(&r, r.data) == 1, 5000, "the small one arrives");
    cr_assert_str_eq(g_ptr_array_index(r.data, 0), "small");
    cr_assert_eq(g_array_index(r.ids, int64_t, 0), 1, "the refused took no sequence");
    cluster_close(c);
    raw_close(&raw);
}

/* ---------- presence ---------- */

static void count_room(void *arg, const char *room, long online)
{
    GString *s = arg;
    g_string_append_printf(s, "%s%s=%ld", s->len ? "," : "", room, online);
}

/* The rooms of cluster_presence_rooms, sorted: "dev=1,lobby=2". */
static char *rooms_of(cluster *c)
{
    GString *s = g_string_new(NULL);
    cluster_presence_rooms(c, count_room, s);
    gchar **parts = g_strsplit(s->str, ",", -1);
    g_string_free(s, TRUE);
    guint n = g_strv_length(parts);
    for (guint i = 1; i < n; i++)
        for (guint j = i; j > 0 && strcmp(parts[j - 1], parts[j]) > 0; j--) {
            gchar *t = parts[j];
            parts[j] = parts[j - 1];
            parts[j - 1] = t;
        }
    char *out = g_strjoinv(",", parts);
    g_strfreev(parts);
    return out;
}

static int rooms_are(cluster *c, const char *want)
{
    char *s = rooms_of(c);
    int same = strcmp(s, want) == 0;
    g_free(s);
    return same;
}

Test(cluster, presence_across_nodes, .init = quiet, .fini = fini)
{
    alarm(60);
    nats_start(&g_nats, "nats", 1);
    rec r1, r2;
    rec_init(&r1, NULL);
    rec_init(&r2, NULL);
    cluster *n1 = open_node("n1", 0, &r1);
    cluster *n2 = open_node("n2", 0, &r2);
    WAIT_UNTIL(cluster_nodes_alive(n2) == 2, 5000, "n2 sees n1");

    put(n1, "s1", "lobby", 7);
    WAIT_PRES(&r2, "join lobby 7", 5000);
    cr_assert_eq(cluster_presence_count(n2, "lobby"), 1);
    cr_assert_eq(cluster_presence_count(n2, "dev"), 0);
    cr_assert_eq(cluster_presence_count(n1, "lobby"), 0, "a node's own sessions are not listed");
    json_t *m = cluster_presence_members(n2, "lobby");
    json_t *want = user(7);
    cr_assert_eq(json_array_size(m), 1);
    cr_assert(json_equal(json_array_get(m, 0), want), "the member as put");
    json_decref(want);
    json_decref(m);
    m = cluster_presence_members(n2, "nobody-here");
    cr_assert(json_is_array(m) && json_array_size(m) == 0);
    json_decref(m);

    put(n1, "s2", "dev", 8);
    WAIT_PRES(&r2, "join lobby 7|join dev 8", 5000);
    cr_assert(rooms_are(n2, "dev=1,lobby=1"), "%s", rooms_of(n2));
    long ids[] = {8, 7, 99}, found[3] = {0};
    cr_assert_eq(cluster_presence_find(n2, "lobby", ids, 3, found), 1);
    cr_assert_eq(found[0], 7);
    cr_assert_eq(cluster_presence_find(n2, "nowhere", ids, 3, found), 0);

    /* said again (unchanged): nobody came or left; a marker shows it */
    put(n1, "s1", "lobby", 7);
    put(n1, "s3", "lobby", 9);
    WAIT_PRES(&r2, "join lobby 7|join dev 8|join lobby 9", 5000);
    /* moved: a leave, then a join */
    put(n1, "s1", "dev", 7);
    WAIT_PRES(&r2, "join lobby 7|join dev 8|join lobby 9|leave lobby 7|join dev 7", 5000);
    cr_assert(rooms_are(n2, "dev=2,lobby=1"), "%s", rooms_of(n2));
    /* deleted: a leave; deleting again or an unknown session says nothing */
    cluster_presence_delete(n1, "s1");
    cluster_presence_delete(n1, "s1");
    cluster_presence_delete(n1, "never");
    cluster_presence_delete(n1, "s3");
    WAIT_PRES(&r2,
              "join lobby 7|join dev 8|join lobby 9|leave lobby 7|join dev 7|leave dev 7|leave "
              "lobby 9",
              5000);
    cr_assert(rooms_are(n2, "dev=1"), "%s", rooms_of(n2));
    cr_assert_eq(cluster_presence_count(n2, "lobby"), 0);
    char *p1 = rec_pres(&r1);
    cr_assert_str_eq(p1, "", "n1 hears nothing of its own sessions");
    g_free(p1);

    /* keys written by someone else: malformed ones change nothing; a
     * node without a heartbeat is not alive, its sessions unseen until
     * it beats, and gone when it says goodbye */
    raw_conn raw;
    raw_open(&raw, &g_nats, 1);
    raw_put(&raw, "s.n9.bad1", "not json");
    raw_put(&raw, "s.n9.bad2", "{\"room\":\"lobby\"}");
    raw_put(&raw, "s.n9.bad3", "{\"room\":\"lobby\",\"user\":5}");
    raw_put(&raw, "s.n9.bad4", "{\"room\":7,\"user\":{\"id\":5}}");
    char key[128], value[256];
    snprintf(value, sizeof value, "{\"room\":\"%064d\",\"user\":{\"id\":5}}", 0);
    raw_put(&raw, "s.n9.bad5", value);
    raw_put(&raw, "s.nodot", "{\"room\":\"lobby\",\"user\":{\"id\":5}}");
    snprintf(key, sizeof key, "s.%033d.x", 0);
    raw_put(&raw, key, "{\"room\":\"lobby\",\"user\":{\"id\":5}}");
    raw_put(&raw, "hb.bad=id", "{}");
    raw_put(&raw, "other", "{}");
    raw_put(&raw, "s.n9.z", "{\"room\":\"lobby\",\"user\":{\"id\":11}}");
    raw_put(&raw, "s.n2.z", "{\"room\":\"lobby\",\"user\":{\"id\":12}}"); /* n2's own name */
    put(n1, "s4", "dev", 10);                                             /* the marker */
    const char *before = "join lobby 7|join dev 8|join lobby 9|leave lobby 7|join dev 7|leave "
                         "dev 7|leave lobby 9";
    char *after = g_strdup_printf("%s|join dev 10", before);
    WAIT_PRES(&r2, after, 5000);
    g_free(after);
    cr_assert_eq(cluster_presence_count(n2, "lobby"), 0, "n9 is not alive");
    cr_assert_eq(cluster_nodes_alive(n2), 2);
    raw_put(&raw, "hb.n9", "{}");
    after = g_strdup_printf("%s|join dev 10|join lobby 11", before);
    WAIT_PRES(&r2, after, 5000);
    g_free(after);
    cr_assert_eq(cluster_nodes_alive(n2), 3);
    cr_assert_eq(cluster_presence_count(n2, "lobby"), 1);
    cr_assert_eq(kvStore_Delete(raw.kv, "hb.n9"), NATS_OK);
    after = g_strdup_printf("%s|join dev 10|join lobby 11|leave lobby 11", before);
    WAIT_PRES(&r2, after, 5000);
    g_free(after);
    cr_assert_eq(cluster_nodes_alive(n2), 2);
    cr_assert_eq(cluster_presence_count(n2, "lobby"), 0);

    raw_close(&raw);
    cluster_close(n1);
    cluster_close(n2);
    check_leaks();
}

Test(cluster, goodbye_on_close, .init = quiet, .fini = fini)
{
    alarm(60);
    nats_start(&g_nats, "nats", 1);
    rec r1, r2;
    rec_init(&r1, NULL);
    rec_init(&r2, NULL);
    cluster *n1 = open_node("n1", 0, &r1);
    cluster *n2 = open_node("n2", 0, &r2);
    put(n1, "s1", "lobby", 7);
    put(n1, "s2", "dev", 8);
    WAIT_PRES(&r2, "join lobby 7|join dev 8", 5000);
    cr_assert_eq(cluster_nodes_alive(n2), 2);
    int64_t t0 = now_ms();
    cluster_close(n1);
    WAIT_PRES(&r2, "join lobby 7|join dev 8|leave lobby 7|leave dev 8", 5000);
    int64_t took = now_ms() - t0;
    cr_assert_lt(took, 2000, "the goodbye is seen at once, not after %d ms (%lld ms)",
                 CLUSTER_DEAD_MS, (long long)took);
    WAIT_UNTIL(cluster_nodes_alive(n2) == 1, 2000, "n1 gone");
    cr_assert(rooms_are(n2, ""), "%s", rooms_of(n2));
    /* the keys are gone from the bucket */
    raw_conn raw;
    raw_open(&raw, &g_nats, 1);
    kvEntry *e = NULL;
    cr_assert_eq(kvStore_Get(&e, raw.kv, "s.n1.s1"), NATS_NOT_FOUND);
    cr_assert_eq(kvStore_Get(&e, raw.kv, "hb.n1"), NATS_NOT_FOUND);
    raw_close(&raw);
    cluster_close(n2);
    check_leaks();
}

/* A second node started under a live node's id is refused (it would clear
 * the live node's keys and log its rows twice); once the first has said
 * goodbye the id is free again at once. */
Test(cluster, a_live_node_id_is_refused, .init = quiet, .fini = fini)
{
    alarm(60);
    nats_start(&g_nats, "nats", 1);
    rec r1, r2;
    rec_init(&r1, NULL);
    rec_init(&r2, NULL);
    cluster *n1 = open_node("twin", 0, &r1);
    put(n1, "s1", "lobby", 7);
    cluster_callbacks cb = recording(&r2);
    char err[512] = "";
    int64_t t0 = now_ms();
    cr_assert_null(cluster_open(g_nats.url, "twin", 0, &cb, err, sizeof err));
    cr_assert_not_null(strstr(err, "another live node runs as --node-id twin"), "%s", err);
    cr_assert_lt(now_ms() - t0, CLUSTER_DEAD_MS + 2 * CLUSTER_HEARTBEAT_MS + 1000,
                 "decided within a dead node's time");
    /* the live node's session is still there */
    raw_conn raw;
    raw_open(&raw, &g_nats, 1);
    kvEntry *e = NULL;
    cr_assert_eq(kvStore_Get(&e, raw.kv, "s.twin.s1"), NATS_OK, "its key was not cleared");
    kvEntry_Destroy(e);
    raw_close(&raw);
    cluster_close(n1);
    t0 = now_ms();
    cluster *again = open_node("twin", 0, &r2);
    cr_assert_lt(now_ms() - t0, CLUSTER_DEAD_MS, "after a goodbye nobody waits");
    cluster_close(again);
    check_leaks();
}

/* ---------- a node that dies ---------- */

/* A child process that waits for the server's URL on `go`, opens node
 * "n1" with a session s1 (user 7) in lobby, says 'r' on `ready` and waits
 * to be killed. Forked before this process touches libnats. */
static pid_t child_node(int *go_w, int *ready_r)
{
    int go[2], ready[2];
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(go[1]);
        close(ready[0]);
        char url[64] = "";
        ssize_t n = read(go[0], url, sizeof url - 1);
        if (n <= 0)
            _exit(1);
        url[n] = '\0';
        cluster_callbacks cb = {.on_event = on_event};
        rec r;
        rec_init(&r, NULL);
        cb.arg = &r;
        char err[256];
        cluster *c = cluster_open(url, "n1", 0, &cb, err, sizeof err);
        if (c == NULL) {
            if (write(ready[1], err, strlen(err)) < 0)
                _exit(3);
            _exit(2);
        }
        put(c, "s1", "lobby", 7);
        /* acknowledged after the presence key on the same connection */
        if (cluster_publish_wait(c, CLUSTER_TO_CONTROL, NULL, "{}", 2) == 0)
            _exit(4);
        if (write(ready[1], "r", 1) != 1)
            _exit(5);
        for (;;)
            pause();
    }
    close(go[0]);
    close(ready[1]);
    *go_w = go[1];
    *ready_r = ready[0];
    return pid;
}

static void child_wait_ready(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 30000), 1, "the child node did not start in 30 s");
    char buf[256] = "";
    ssize_t n = read(fd, buf, sizeof buf - 1);
    cr_assert(n == 1 && buf[0] == 'r', "the child node failed: %s", n > 0 ? buf : "(exited)");
}

Test(cluster, dead_node_leaves_then_restart_clears_its_keys, .init = quiet, .fini = fini)
{
    alarm(60);
    int go, ready;
    pid_t child = child_node(&go, &ready);
    nats_start(&g_nats, "nats", 1);
    cr_assert_eq(write(go, g_nats.url, strlen(g_nats.url)), (ssize_t)strlen(g_nats.url));
    child_wait_ready(ready);

    rec r2;
    rec_init(&r2, NULL);
    cluster *n2 = open_node("n2", 0, &r2);
    /* what was there before n2 started is in its table (no event for it) */
    WAIT_UNTIL(cluster_presence_count(n2, "lobby") == 1, 5000, "n1's session seen");
    cr_assert_eq(cluster_nodes_alive(n2), 2);

    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    int64_t t0 = now_ms();
    WAIT_PRES(&r2, "leave lobby 7", CLUSTER_DEAD_MS + 3000);
    int64_t took = now_ms() - t0;
    cr_assert_geq(took, CLUSTER_DEAD_MS - CLUSTER_HEARTBEAT_MS - 500,
                  "declared dead after %lld ms: too early", (long long)took);
    cr_assert_leq(took, CLUSTER_DEAD_MS + 1500, "declared dead after %lld ms", (long long)took);
    cr_assert_eq(cluster_nodes_alive(n2), 1);
    cr_assert_eq(cluster_presence_count(n2, "lobby"), 0);
    json_t *m = cluster_presence_members(n2, "lobby");
    cr_assert_eq(json_array_size(m), 0, "a dead node's member is not listed");
    json_decref(m);

    /* a heartbeat again: its sessions come back */
    raw_conn raw;
    raw_open(&raw, &g_nats, 1);
    raw_put(&raw, "hb.n1", "{}");
    WAIT_PRES(&r2, "leave lobby 7|join lobby 7", 5000);
    cr_assert_eq(cluster_presence_count(n2, "lobby"), 1);

    /* n1 starts again under the same id. The heartbeat just written is
     * fresh, so it first waits to see whether that n1 is alive (another
     * live node under its id): no more beats, so it was not. Then its
     * previous run's key is cleared before its first heartbeat, so n2
     * sees the leave now */
    rec r1;
    rec_init(&r1, NULL);
    t0 = now_ms();
    cluster *n1 = open_node("n1", 0, &r1);
    int64_t opened = now_ms() - t0;
    cr_assert_geq(opened, CLUSTER_DEAD_MS - 2 * CLUSTER_HEARTBEAT_MS,
                  "opened after %lld ms: it did not wait for the fresh heartbeat",
                  (long long)opened);
    WAIT_PRES(&r2, "leave lobby 7|join lobby 7|leave lobby 7", 5000);
    cr_assert_lt(now_ms() - t0, CLUSTER_DEAD_MS + 2 * CLUSTER_HEARTBEAT_MS + 2000);
    kvEntry *e = NULL;
    cr_assert_eq(kvStore_Get(&e, raw.kv, "s.n1.s1"), NATS_NOT_FOUND, "the stale key is deleted");
    cr_assert_eq(cluster_presence_count(n2, "lobby"), 0);
    WAIT_UNTIL(cluster_nodes_alive(n2) == 2, 3000, "n1 alive again");
    raw_close(&raw);
    cluster_close(n1);
    cluster_close(n2);
    check_leaks();
}

/* cluster_stop ends the heartbeats without a goodbye: the other node
 * declares this one dead. */
Test(cluster, stopped_node_declared_dead, .init = quiet, .fini = fini)
{
    alarm(60);
    nats_start(&g_nats, "nats", 1);
    rec r1, r2;
    rec_init(&r1, NULL);
    rec_init(&r2, NULL);
    cluster *n1 = open_node("n1", 0, &r1);
    cluster *n2 = open_node("n2", 0, &r2);
    put(n1, "s1", "lobby", 7);
    WAIT_PRES(&r2, "join lobby 7", 5000);
    cluster_stop(n1);
    cluster_stop(n1); /* idempotent */
    int64_t t0 = now_ms();
    /* stopped, it still publishes, but hears nothing */
    cr_assert_gt(cluster_publish_wait(n1, CLUSTER_TO_CONTROL, NULL, "x", 1), 0);
    WAIT_UNTIL(rec_count(&r2, r2.data) == 1, 5000, "n2 gets it");
    WAIT_PRES(&r2, "join lobby 7|leave lobby 7", CLUSTER_DEAD_MS + 3000);
    cr_assert_leq(now_ms() - t0, CLUSTER_DEAD_MS + 1500);
    cr_assert_eq(rec_count(&r1, r1.data), 0, "no callback after cluster_stop");
    cluster_close(n1);
    cluster_close(n2);
    check_leaks();
}

/* ---------- DELETE /api/rtc/ID through another node ---------- */

Test(cluster, peer_delete, .init = quiet, .fini = fini)
{
    alarm(60);
    nats_start(&g_nats, "nats", 1);
    rec r1, r2;
    rec_init(&r1, "p-1");
    rec_init(&r2, "p-2");
    cluster *n1 = open_node("n1", 0, &r1);
    cluster *n2 = open_node("n2", 0, &r2);
    WAIT_UNTIL(cluster_nodes_alive(n1) == 2, 5000, "n1 sees n2");

    cr_assert_eq(cluster_peer_delete(n1, "p-2"), 1, "n2 closed it");
    WAIT_UNTIL(rec_count(&r2, r2.asked) == 1, 2000, "n2 was asked");
    cr_assert_str_eq(g_ptr_array_index(r2.asked, 0), "p-2");

    int64_t t0 = now_ms();
    cr_assert_eq(cluster_peer_delete(n1, "p-unknown"), 0);
    int64_t took = now_ms() - t0;
    cr_assert_lt(took, CLUSTER_RPC_WAIT_MS / 2,
                 "every node answered: a round trip, not the wait (%lld ms)", (long long)took);
    WAIT_UNTIL(rec_count(&r2, r2.asked) == 2 && rec_count(&r1, r1.asked) == 2, 2000,
               "both nodes were asked");

    /* an id nobody will read (80 bytes and more): no answer, the wait */
    char longid[100];
    memset(longid, 'p', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    t0 = now_ms();
    cr_assert_eq(cluster_peer_delete(n1, longid), 0);
    took = now_ms() - t0;
    cr_assert_geq(took, CLUSTER_RPC_WAIT_MS - 100, "%lld ms", (long long)took);
    cr_assert_lt(took, CLUSTER_RPC_WAIT_MS + 1000, "%lld ms", (long long)took);
    cr_assert_eq(rec_count(&r2, r2.asked), 2, "nobody's callback ran");

    cluster_close(n1);
    cluster_close(n2);
    check_leaks();
}

/* ---------- catch-up ---------- */

typedef struct {
    GString *got; /* "101:a1,103:e1" */
    int stop_after;
} reader;

static int read_one(void *arg, int64_t id, const char *data, size_t len)
{
    reader *rd = arg;
    g_string_append_printf(rd->got, "%s%lld:%.*s", rd->got->len ? "," : "", (long long)id, (int)len,
                           data);
    return !(rd->stop_after && --rd->stop_after == 0);
}

/* cluster_read_since into a string; rc in *rc. */
static char *read_since(cluster *c, const char *room, int64_t after, size_t limit, int stop_after,
                        int *rc)
{
    reader rd = {.got = g_string_new(NULL), .stop_after = stop_after};
    char err[256] = "";
    *rc = cluster_read_since(c, room, after, limit, read_one, &rd, err, sizeof err);
    if (*rc < 0)
        g_string_printf(rd.got, "error: %s", err);
    return g_string_free(rd.got, FALSE);
}

#define READ_IS(c, room, after, limit, stop, want_rc, want)                                        \
    do {                                                                                           \
        int rc_;                                                                                   \
        char *got_ = read_since(c, room, after, limit, stop, &rc_);                                \
        cr_assert_eq(rc_, want_rc, "%s after %lld: rc %d (%s)", room, (long long)(after), rc_,     \
                     got_);                                                                        \
        cr_assert_str_eq(got_, want, "%s after %lld", room, (long long)(after));                   \
        g_free(got_);                                                                              \
    } while (0)

Test(cluster, read_since, .init = quiet, .fini = fini)
{
    alarm(60);
    nats_start(&g_nats, "nats", 1);
    rec r;
    rec_init(&r, NULL);
    cluster *c = open_node("n1", 100, &r);
    static const struct {
        cluster_scope scope;
        const char *room, *data;
    } evs[] = {
        {CLUSTER_TO_ROOM, "a", "a1"},   {CLUSTER_TO_ROOM, "b", "b1"},
        {CLUSTER_TO_EVERY, NULL, "e1"}, {CLUSTER_TO_CONTROL, NULL, "c1"},
        {CLUSTER_TO_ROOM, "a", "a2"},   {CLUSTER_TO_ROOM, "a.x", "ax1"},
        {CLUSTER_TO_EVERY, NULL, "e2"}, {CLUSTER_TO_ROOM, "a", "a3"},
    };
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        cr_assert_eq(
            cluster_publish_wait(c, evs[i].scope, evs[i].room, evs[i].data, strlen(evs[i].data)),
            i + 1);

    READ_IS(c, "a", 100, 100, 0, 0, "101:a1,103:e1,105:a2,107:e2,108:a3");
    READ_IS(c, "a", 100, 2, 0, 0, "101:a1,103:e1");
    READ_IS(c, "a", 103, 100, 0, 0, "105:a2,107:e2,108:a3");
    READ_IS(c, "a", 106, 100, 0, 0, "107:e2,108:a3");
    READ_IS(c, "a", 108, 100, 0, 0, "");
    READ_IS(c, "a", 100, 100, 1, 0, "101:a1");
    READ_IS(c, "a", 101, 100, 1, 0, "103:e1");
    READ_IS(c, "a.x", 100, 100, 0, 0, "103:e1,106:ax1,107:e2");
    READ_IS(c, "b", 104, 100, 0, 0, "107:e2");
    READ_IS(c, "nobody", 100, 100, 0, 0, "103:e1,107:e2");
    READ_IS(c, "a", 99, 100, 0, 1, ""); /* from before the stream: the log answers */
    READ_IS(c, "a b", 100, 100, 0, -1, "error: bad room name");

    /* the stream no longer holds what followed 100 */
    raw_conn raw;
    raw_open(&raw, &g_nats, 0);
    jsErrCode jerr = 0;
    cr_assert_eq(js_PurgeStream(raw.js, CLUSTER_STREAM, NULL, &jerr), NATS_OK);
    READ_IS(c, "a", 100, 100, 0, 1, "");
    READ_IS(c, "a", 108, 100, 0, 0, "");
    cr_assert_eq(cluster_publish_wait(c, CLUSTER_TO_ROOM, "a", "a4", 2), 9);
    READ_IS(c, "a", 108, 100, 0, 0, "109:a4");
    raw_close(&raw);
    cluster_close(c);
    check_leaks();
}

/* ---------- NATS goes away and comes back ---------- */

Test(cluster, nats_restart, .init = quiet, .fini = fini)
{
    alarm(60);
    nats_start(&g_nats, "nats", 1);
    rec r1, r2;
    rec_init(&r1, "p-1");
    rec_init(&r2, NULL);
    cluster *n1 = open_node("n1", 0, &r1);
    cluster *n2 = open_node("n2", 0, &r2);
    put(n1, "s1", "lobby", 7);
    WAIT_PRES(&r2, "join lobby 7", 5000);
    cr_assert_eq(cluster_publish_wait(n1, CLUSTER_TO_ROOM, "lobby", "before", 6), 1);
    WAIT_UNTIL(rec_count(&r2, r2.data) == 1, 5000, "n2 got 'before'");

    nats_signal(&g_nats, SIGKILL);
    WAIT_UNTIL(!cluster_up(n1) && !cluster_up(n2), 5000, "both see NATS down");
    cr_assert_eq(cluster_publish(n1, CLUSTER_TO_ROOM, "lobby", "down", 4, 9), -1);
    cr_assert_eq(cluster_publish_wait(n1, CLUSTER_TO_ROOM, "lobby", "down", 4), 0);
    cr_assert_eq(cluster_peer_delete(n1, "p-1"), -1);
    int rc;
    char *got = read_since(n1, "lobby", 0, 10, 0, &rc);
    cr_assert_eq(rc, -1, "%s", got);
    cr_assert(g_str_has_prefix(got, "error: stream info: "), "%s", got);
    g_free(got);
    cluster_stats st;
    cluster_get_stats(n1, &st);
    cr_assert_eq(st.refused, 2);
    /* nobody is declared dead while this node is cut off: every
     * heartbeat is late then, and nobody died */
    g_usleep((CLUSTER_DEAD_MS + 1000) * 1000);
    cr_assert_eq(cluster_nodes_alive(n2), 2);
    cr_assert(pres_is(&r2, "join lobby 7"), "%s", rec_pres(&r2));

    nats_start(&g_nats, "nats", 1);
    WAIT_UNTIL(cluster_up(n1) && cluster_up(n2), 10000, "both reconnect");
    /* publishing works again and the ordered consumers resume */
    uint64_t seq = 0;
    int64_t end = now_ms() + 15000;
    while (seq == 0 && now_ms() < end)
        seq = cluster_publish_wait(n1, CLUSTER_TO_ROOM, "lobby", "after", 5);
    cr_assert_eq(seq, 2, "'after' stored next to 'before'");
    WAIT_UNTIL(rec_count(&r2, r2.data) == 2 && rec_count(&r1, r1.data) == 2, 15000,
               "'after' reaches both nodes (n1 %u, n2 %u)", rec_count(&r1, r1.data),
               rec_count(&r2, r2.data));
    cr_assert_str_eq(g_ptr_array_index(r2.data, 1), "after");
    cr_assert_eq(g_array_index(r2.ids, int64_t, 1), 2);
    cr_assert_eq(cluster_peer_delete(n1, "p-1"), 1);
    /* the session was said again, and is the same: no leave, no join */
    cr_assert_eq(cluster_presence_count(n2, "lobby"), 1);
    cr_assert(pres_is(&r2, "join lobby 7"), "%s", rec_pres(&r2));
    cluster_close(n1);
    cluster_close(n2);
    check_leaks();
}

/* ---------- a server that stops answering ---------- */

typedef struct {
    cluster *c;
    int rc;
    int64_t took;
} rpc_call;

static gpointer rpc_thread(gpointer arg)
{
    rpc_call *call = arg;
    int64_t t0 = now_ms();
    call->rc = cluster_peer_delete(call->c, "p-x");
    call->took = now_ms() - t0;
    return NULL;
}

Test(cluster, frozen_server, .init = quiet, .fini = fini)
{
    alarm(60);
    nats_start(&g_nats, "nats", 1);
    rec r;
    rec_init(&r, NULL);
    cluster *c = open_node("n1", 0, &r);
    nats_signal(&g_nats, SIGSTOP);

    /* CLUSTER_MAX_IN_FLIGHT unacknowledged, then refused */
    for (uint64_t i = 1; i <= CLUSTER_MAX_IN_FLIGHT; i++)
        cr_assert_eq(cluster_publish(c, CLUSTER_TO_ROOM, "lobby", "x", 1, i), 0, "publish %llu",
                     (unsigned long long)i);
    cr_assert_eq(cluster_publish(c, CLUSTER_TO_ROOM, "lobby", "x", 1, 0), -1);
    cluster_stats st;
    cluster_get_stats(c, &st);
    cr_assert_eq(st.refused, 1);

    /* two DELETEs at once: one waits for answers that never come, the
     * other is refused as busy at once */
    rpc_call a = {.c = c}, b = {.c = c};
    GThread *ta = g_thread_new("rpc-a", rpc_thread, &a);
    GThread *tb = g_thread_new("rpc-b", rpc_thread, &b);
    g_thread_join(ta);
    g_thread_join(tb);
    rpc_call *waited = a.rc == 0 ? &a : &b, *busy = a.rc == 0 ? &b : &a;
    cr_assert_eq(waited->rc, 0, "rc %d and %d", a.rc, b.rc);
    cr_assert_eq(busy->rc, -2, "rc %d and %d", a.rc, b.rc);
    cr_assert_geq(waited->took, CLUSTER_RPC_WAIT_MS - 100);
    cr_assert_lt(busy->took, 200);

    /* never acknowledged: each tag comes back in on_publish_failed */
    WAIT_UNTIL(rec_failed(&r) == CLUSTER_MAX_IN_FLIGHT, CLUSTER_ACK_WAIT_MS + 5000,
               "%u of %d failed", rec_failed(&r), CLUSTER_MAX_IN_FLIGHT);
    cluster_get_stats(c, &st);
    cr_assert_eq(st.failed, CLUSTER_MAX_IN_FLIGHT);
    cr_assert_eq(cluster_publish(c, CLUSTER_TO_ROOM, "lobby", "x", 1, 0), 0, "room again");

    nats_signal(&g_nats, SIGCONT);
    cr_assert_gt(cluster_publish_wait(c, CLUSTER_TO_ROOM, "lobby", "y", 1), 0);
    cluster_close(c);
    check_leaks();
}
