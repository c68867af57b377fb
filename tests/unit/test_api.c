/*
 * test_api — the JSONPlaceholder client against the real server and the
 * fault stand-in.
 *
 * Normal behaviour is tested against the real npm `jsonplaceholder` server
 * (scripts/jsonplaceholder.sh, one per test on a free 127.0.0.1 port); only
 * faults it cannot produce (500, truncated or huge or wrongly shaped
 * bodies, hangs, a one-user list) come from tests/fault/faultapi.py. A
 * refused connection is an unused port. Every wait is bounded (condition
 * variable with a deadline), and each test runs in its own process with a
 * timeout, so a bug fails one test instead of hanging the run. Servers get
 * the test's pid as their parent and exit by themselves if it crashes.
 *
 * Run from the repository root (or set CHATD_ROOT): the helpers call
 * scripts/jsonplaceholder.sh and tests/fault/faultapi.py by relative path.
 */
#include "api/jsonplaceholder.h"
#include "util/log.h"
#include "util/mem.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "torture.h"

/* ---- servers ------------------------------------------------------------ */

static char root[1024] = ".";

static void find_root(void)
{
    const char *env = getenv("CHATD_ROOT");
    snprintf(root, sizeof root, "%s", env != NULL && env[0] != '\0' ? env : ".");
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct {
    int port;
    char pidfile[256];
    int running;
} real_server;

/* Starts the real server on `port` (0: a free one). */
static void real_start(real_server *s, int port)
{
    s->port = port != 0 ? port : free_port();
    snprintf(s->pidfile, sizeof s->pidfile, "%s/chatd-test-api-%d-%d.pid",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp", (int)getpid(), s->port);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "JP_PARENT_PID=%d %s/scripts/jsonplaceholder.sh start %d %s >/dev/null", (int)getpid(),
             root, s->port, s->pidfile);
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "scripts/jsonplaceholder.sh start %d failed (rc %d)", s->port, rc);
    s->running = 1;
}

static void real_stop(real_server *s)
{
    if (!s->running)
        return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/scripts/jsonplaceholder.sh stop %s", root, s->pidfile);
    int rc = system(cmd);
    (void)rc;
    s->running = 0;
}

typedef struct {
    pid_t pid;
    int port;
} fault_server;

static void fault_start(fault_server *s, const char *mode)
{
    int fds[2];
    cr_assert(pipe(fds) == 0);
    char script[1200], parent[32];
    snprintf(script, sizeof script, "%s/tests/fault/faultapi.py", root);
    snprintf(parent, sizeof parent, "%d", (int)getpid());
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl("/usr/bin/python3", "python3", script, "--mode", mode, "--port", "0", "--parent",
              parent, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    s->pid = pid;
    /* the first line is the port, printed once the socket listens */
    char line[32] = {0};
    size_t got = 0;
    while (got < sizeof line - 1 && strchr(line, '\n') == NULL) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int n = poll(&p, 1, 10000);
        cr_assert(n > 0, "faultapi.py --mode %s did not start", mode);
        ssize_t r = read(fds[0], line + got, sizeof line - 1 - got);
        cr_assert(r > 0, "faultapi.py --mode %s exited", mode);
        got += (size_t)r;
    }
    close(fds[0]);
    s->port = atoi(line);
    cr_assert(s->port > 0);
}

static void fault_stop(fault_server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

/* ---- recording callbacks ------------------------------------------------ */

#define MAX_ERRORS 256

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int errors;
    int error_status[MAX_ERRORS];
    char last_error[512];
    char last_url[512];
    int states;
    int last_state;
} recorder;

typedef struct {
    recorder *rec;
    int done;
    int ok, status, not_found, cancelled, attempts;
    json_t *user;
    char error[512];
} slot;

static recorder rec;

static void rec_init(recorder *r)
{
    memset(r, 0, sizeof *r);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&r->mu, NULL);
    r->last_state = -1;
}

static void on_error(void *arg, const char *method, const char *url, int status, const char *error)
{
    recorder *r = arg;
    pthread_mutex_lock(&r->mu);
    if (r->errors < MAX_ERRORS)
        r->error_status[r->errors] = status;
    r->errors++;
    snprintf(r->last_error, sizeof r->last_error, "%s %s", method, error);
    snprintf(r->last_url, sizeof r->last_url, "%s", url);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void on_state(void *arg, int up)
{
    recorder *r = arg;
    pthread_mutex_lock(&r->mu);
    r->states++;
    r->last_state = up;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void on_user(void *arg, const jp_result *res)
{
    slot *s = arg;
    pthread_mutex_lock(&s->rec->mu);
    s->done++;
    s->ok = res->ok;
    s->status = res->status;
    s->not_found = res->not_found;
    s->cancelled = res->cancelled;
    s->attempts = res->attempts;
    if (res->user != NULL)
        s->user = json_incref(res->user);
    snprintf(s->error, sizeof s->error, "%s", res->error != NULL ? res->error : "");
    pthread_cond_broadcast(&s->rec->cv);
    pthread_mutex_unlock(&s->rec->mu);
}

/* Waits until COND (evaluated under rec.mu) holds or MS pass; OUT gets its
 * final value. Wakes at least every 20 ms, for conditions (jp_ready) that
 * no callback signals. */
#define WAIT_UNTIL(COND, MS, OUT)                                                                  \
    do {                                                                                           \
        struct timespec dl_, step_;                                                                \
        clock_gettime(CLOCK_MONOTONIC, &dl_);                                                      \
        long long end_ = dl_.tv_sec * 1000LL + dl_.tv_nsec / 1000000 + (MS);                       \
        pthread_mutex_lock(&rec.mu);                                                               \
        for (;;) {                                                                                 \
            if (COND)                                                                              \
                break;                                                                             \
            clock_gettime(CLOCK_MONOTONIC, &step_);                                                \
            long long now_ = step_.tv_sec * 1000LL + step_.tv_nsec / 1000000;                      \
            if (now_ >= end_)                                                                      \
                break;                                                                             \
            long long next_ = now_ + 20 < end_ ? now_ + 20 : end_;                                 \
            step_.tv_sec = next_ / 1000;                                                           \
            step_.tv_nsec = (next_ % 1000) * 1000000;                                              \
            pthread_cond_timedwait(&rec.cv, &rec.mu, &step_);                                      \
        }                                                                                          \
        OUT = (COND);                                                                              \
        pthread_mutex_unlock(&rec.mu);                                                             \
    } while (0)

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* ---- fixtures ----------------------------------------------------------- */

static real_server real;
static fault_server fault;
static jp_client *client;

static int curl_ready;

static void setup_curl(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    curl_ready = 1;
}

static void setup(void)
{
    find_root();
    setup_curl();
    mem_install();
    log_set_level(getenv("TEST_API_LOG") != NULL ? LOGL_DEBUG : LOGL_OFF);
    rec_init(&rec);
    memset(&real, 0, sizeof real);
    memset(&fault, 0, sizeof fault);
    client = NULL;
}

/* Idempotent: the end of each test calls it through finish(), and the
 * suite's .fini again for a test that failed half-way. */
static void teardown(void)
{
    mem_fail_at(0);
    jp_free(client);
    client = NULL;
    real_stop(&real);
    fault_stop(&fault);
    if (curl_ready)
        curl_global_cleanup();
    curl_ready = 0;
}

/* Ends a test: everything freed, then no leak allowed. The check is here,
 * in the test body, because Criterion ignores failures in .fini and what
 * LeakSanitizer reports at exit. */
static void finish(void)
{
    teardown();
    check_leaks();
}

/* Options for tests: short backoff so retries happen within the test. */
static jp_options test_options(int port)
{
    static char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    jp_options o = {
        .base_url = url,
        .connect_timeout_ms = 1000,
        .total_timeout_ms = 3000,
        .max_attempts = 3,
        .backoff_base_ms = 20,
        .backoff_max_ms = 200,
        .on_error = on_error,
        .error_arg = &rec,
        .on_state = on_state,
        .state_arg = &rec,
    };
    return o;
}

static jp_client *make_client(const jp_options *o)
{
    char err[256] = "";
    jp_client *c = jp_new(o, err, sizeof err);
    cr_assert_not_null(c, "jp_new: %s", err);
    return c;
}

static void fetch(jp_client *c, int id, slot *s)
{
    char err[256] = "";
    memset(s, 0, sizeof *s);
    s->rec = &rec;
    cr_assert_eq(jp_fetch_user(c, id, on_user, s, err, sizeof err), 0, "jp_fetch_user: %s", err);
}

static void slot_clear(slot *s)
{
    json_decref(s->user);
    s->user = NULL;
}

TestSuite(api, .init = setup, .fini = teardown, .timeout = 60);

/* ---- against the real server ------------------------------------------- */

Test(api, loads_users_and_posts)
{
    real_start(&real, 0);
    jp_options o = test_options(real.port);
    client = make_client(&o);
    cr_assert_eq(jp_ready(client), 0);
    cr_assert_eq(jp_user_count(client), -1);
    jp_post p;
    cr_assert_eq(jp_random_post(client, 1, &p), -1, "no cache before the load");

    jp_start(client);
    int ok;
    WAIT_UNTIL(jp_ready(client) && rec.last_state == 1, 10000, ok);
    cr_assert(ok, "not ready after 10 s");
    cr_assert_eq(jp_user_count(client), 10);
    cr_assert_eq(jp_post_count(client), 100);
    cr_assert_eq(jp_up(client), 1);
    cr_assert_eq(rec.errors, 0, "unexpected error: %s", rec.last_error);
    cr_assert_eq(rec.states, 1);

    cr_assert_eq(jp_random_post(client, 0, &p), 0);
    cr_assert_eq(p.id, 1);
    cr_assert_eq(p.user_id, 1);
    cr_assert_str_eq(p.title,
                     "sunt aut facere repellat provident occaecati excepturi optio reprehenderit");
    cr_assert(strlen(p.body) > 0);
    jp_post_clear(&p);
    cr_assert_eq(jp_random_post(client, 199, &p), 0);
    cr_assert_eq(p.id, 100);
    cr_assert_eq(p.user_id, 10);
    jp_post_clear(&p);

    jp_stats st;
    jp_get_stats(client, &st);
    cr_assert_eq(st.requests, 2);
    cr_assert_eq(st.failures, 0);
    cr_assert_eq(st.retries, 0);
    finish();
}

Test(api, fetches_every_user)
{
    real_start(&real, 0);
    jp_options o = test_options(real.port);
    client = make_client(&o);
    slot s[10];
    for (int i = 0; i < 10; i++)
        fetch(client, i + 1, &s[i]);
    int ok;
    WAIT_UNTIL(s[0].done && s[1].done && s[2].done && s[3].done && s[4].done && s[5].done &&
                   s[6].done && s[7].done && s[8].done && s[9].done,
               10000, ok);
    cr_assert(ok, "not all users fetched within 10 s");
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(s[i].done, 1, "callback called %d times", s[i].done);
        cr_assert(s[i].ok, "user %d: %s", i + 1, s[i].error);
        cr_assert_eq(s[i].status, 200);
        cr_assert_eq(s[i].attempts, 1);
        cr_assert_eq(json_integer_value(json_object_get(s[i].user, "id")), i + 1);
        cr_assert(json_is_string(json_object_get(s[i].user, "name")));
        cr_assert(json_is_string(json_object_get(s[i].user, "username")));
        cr_assert(json_is_string(json_object_get(s[i].user, "email")));
        slot_clear(&s[i]);
    }
    cr_assert_eq(rec.errors, 0);
    finish();
}

Test(api, user_11_is_404_and_not_retried)
{
    real_start(&real, 0);
    jp_options o = test_options(real.port);
    client = make_client(&o);
    slot s;
    fetch(client, 11, &s);
    int ok;
    WAIT_UNTIL(s.done, 10000, ok);
    cr_assert(ok);
    cr_assert_eq(s.ok, 0);
    cr_assert_eq(s.not_found, 1);
    cr_assert_eq(s.status, 404);
    cr_assert_eq(s.attempts, 1);
    cr_assert_null(s.user);
    /* longer than any backoff: a retry would show up here */
    usleep(500 * 1000);
    pthread_mutex_lock(&rec.mu);
    cr_assert_eq(rec.errors, 1);
    cr_assert_eq(rec.error_status[0], 404);
    cr_assert(strstr(rec.last_url, "/users/11") != NULL, "%s", rec.last_url);
    cr_assert(strncmp(rec.last_error, "GET ", 4) == 0);
    pthread_mutex_unlock(&rec.mu);
    jp_stats st;
    jp_get_stats(client, &st);
    cr_assert_eq(st.requests, 1);
    cr_assert_eq(st.failures, 1);
    cr_assert_eq(st.retries, 0);
    cr_assert_eq(s.done, 1);
    finish();
}

/* The chat layer's draw retries from the callback: a callback may start
 * the next fetch. */
static slot chained;

static void on_user_then_fetch(void *arg, const jp_result *res)
{
    on_user(arg, res);
    char err[256];
    memset(&chained, 0, sizeof chained);
    chained.rec = &rec;
    int rc = jp_fetch_user(client, 1, on_user, &chained, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
}

Test(api, fetch_from_a_callback)
{
    real_start(&real, 0);
    jp_options o = test_options(real.port);
    client = make_client(&o);
    slot s;
    memset(&s, 0, sizeof s);
    s.rec = &rec;
    char err[256];
    cr_assert_eq(jp_fetch_user(client, 11, on_user_then_fetch, &s, err, sizeof err), 0);
    int ok;
    WAIT_UNTIL(s.done && chained.done, 10000, ok);
    cr_assert(ok);
    cr_assert_eq(s.not_found, 1);
    cr_assert(chained.ok, "%s", chained.error);
    slot_clear(&chained);
    finish();
}

Test(api, down_while_reload_fails_then_up_again)
{
    real_start(&real, 0);
    jp_options o = test_options(real.port);
    o.posts_refresh_ms = 300;
    client = make_client(&o);
    jp_start(client);
    int ok;
    WAIT_UNTIL(jp_up(client), 10000, ok);
    cr_assert(ok);
    int port = real.port;
    real_stop(&real);
    WAIT_UNTIL(rec.last_state == 0 && rec.errors > 0, 10000, ok);
    cr_assert(ok, "a failing reload must report down");
    cr_assert_eq(jp_up(client), 0);
    cr_assert_eq(jp_ready(client), 1, "the cache stays usable");
    cr_assert_eq(jp_post_count(client), 100);
    cr_assert_eq(jp_user_count(client), 10);
    real_start(&real, port);
    WAIT_UNTIL(rec.last_state == 1, 10000, ok);
    cr_assert(ok, "up again once reloads succeed");
    cr_assert_eq(jp_up(client), 1);
    finish();
}

/* ---- faults ------------------------------------------------------------- */

Test(api, http_500_is_retried_then_reported)
{
    fault_start(&fault, "500");
    jp_options o = test_options(fault.port);
    client = make_client(&o);
    slot s;
    long long t0 = mono_ms();
    fetch(client, 1, &s);
    int ok;
    WAIT_UNTIL(s.done, 10000, ok);
    /* backoff 20 ms doubling, half of it jitter: at least 10 + 20 ms */
    cr_assert(mono_ms() - t0 >= 30, "retries without backoff");
    cr_assert(ok);
    cr_assert_eq(s.ok, 0);
    cr_assert_eq(s.not_found, 0);
    cr_assert_eq(s.status, 500);
    cr_assert_eq(s.attempts, 3);
    cr_assert_str_eq(s.error, "HTTP 500");
    cr_assert_eq(rec.errors, 3, "one on_error per attempt");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rec.error_status[i], 500);
    jp_stats st;
    jp_get_stats(client, &st);
    cr_assert_eq(st.requests, 3);
    cr_assert_eq(st.failures, 3);
    cr_assert_eq(st.retries, 2);
    finish();
}

Test(api, truncated_body_is_an_error)
{
    fault_start(&fault, "truncated");
    jp_options o = test_options(fault.port);
    o.max_attempts = 2;
    client = make_client(&o);
    slot s;
    fetch(client, 1, &s);
    int ok;
    WAIT_UNTIL(s.done, 10000, ok);
    cr_assert(ok);
    cr_assert_eq(s.ok, 0);
    cr_assert_eq(s.attempts, 2);
    cr_assert(strstr(s.error, "partial") != NULL, "%s", s.error);
    cr_assert_eq(rec.errors, 2);
    finish();
}

Test(api, wrong_shape_is_an_error)
{
    fault_start(&fault, "wrongshape");
    jp_options o = test_options(fault.port);
    client = make_client(&o);
    slot s;
    fetch(client, 1, &s);
    int ok;
    WAIT_UNTIL(s.done, 10000, ok);
    cr_assert(ok);
    cr_assert_eq(s.ok, 0);
    cr_assert_eq(s.status, 200);
    cr_assert_eq(s.attempts, 3);
    cr_assert(strstr(s.error, "bad reply: user: expected an object") != NULL, "%s", s.error);

    /* the background load rejects the shapes and keeps trying */
    jp_start(client);
    WAIT_UNTIL(rec.errors >= 9, 10000, ok);
    cr_assert(ok);
    cr_assert_eq(jp_ready(client), 0);
    cr_assert_eq(jp_up(client), 0);
    cr_assert_eq(jp_user_count(client), -1);
    cr_assert_eq(jp_post_count(client), 0);
    finish();
}

Test(api, invalid_json_is_an_error)
{
    fault_start(&fault, "badjson");
    jp_options o = test_options(fault.port);
    o.max_attempts = 1;
    client = make_client(&o);
    slot s;
    fetch(client, 1, &s);
    int ok;
    WAIT_UNTIL(s.done, 10000, ok);
    cr_assert(ok);
    cr_assert_eq(s.ok, 0);
    cr_assert(strstr(s.error, "invalid JSON") != NULL, "%s", s.error);
    /* one printable line, whatever the reply held */
    for (const char *p = s.error; *p != '\0'; p++)
        cr_assert(*p >= 0x20 && *p < 0x7f);
    finish();
}

Test(api, huge_body_is_capped)
{
    fault_start(&fault, "huge");
    jp_options o = test_options(fault.port);
    o.max_attempts = 1;
    client = make_client(&o);
    slot s;
    fetch(client, 1, &s);
    int ok;
    WAIT_UNTIL(s.done, 10000, ok);
    cr_assert(ok);
    cr_assert_eq(s.ok, 0);
    cr_assert(strstr(s.error, "larger than 1048576 bytes") != NULL, "%s", s.error);
    cr_assert_eq(rec.errors, 1);
    finish();
}

Test(api, hang_fails_after_total_timeout)
{
    fault_start(&fault, "hang");
    jp_options o = test_options(fault.port);
    o.connect_timeout_ms = 200;
    o.total_timeout_ms = 300;
    o.max_attempts = 2;
    client = make_client(&o);
    slot s;
    long long t0 = mono_ms();
    fetch(client, 1, &s);
    cr_assert(mono_ms() - t0 < 100, "jp_fetch_user must not wait for the network");
    /* the caller's thread is free meanwhile */
    cr_assert_eq(jp_user_count(client), -1);
    int ok;
    WAIT_UNTIL(s.done, 5000, ok);
    long long took = mono_ms() - t0;
    cr_assert(ok, "the callback must still arrive");
    cr_assert_eq(s.ok, 0);
    cr_assert_eq(s.status, 0);
    cr_assert_eq(s.attempts, 2);
    cr_assert(strstr(s.error, "imeout") != NULL || strstr(s.error, "timed out") != NULL, "%s",
              s.error);
    cr_assert(took >= 550 && took < 3000, "took %lld ms", took);
    cr_assert_eq(rec.errors, 2);
    cr_assert_eq(rec.error_status[0], 0);
    finish();
}

Test(api, refused_then_server_appears)
{
    int port = free_port();
    jp_options o = test_options(port);
    client = make_client(&o);
    jp_start(client);
    int ok;
    WAIT_UNTIL(rec.errors >= 6, 10000, ok);
    cr_assert(ok, "background load must keep retrying");
    cr_assert_eq(jp_ready(client), 0);
    cr_assert_eq(jp_up(client), 0);
    cr_assert_eq(rec.error_status[0], 0);
    cr_assert(strstr(rec.last_error, "onnect") != NULL, "%s", rec.last_error);

    slot s;
    fetch(client, 1, &s);
    WAIT_UNTIL(s.done, 10000, ok);
    cr_assert(ok);
    cr_assert_eq(s.ok, 0);
    cr_assert_eq(s.status, 0);
    cr_assert_eq(s.attempts, 3);

    real_start(&real, port);
    WAIT_UNTIL(jp_ready(client) && rec.last_state == 1, 10000, ok);
    cr_assert(ok, "ready once the server appears");
    cr_assert_eq(jp_user_count(client), 10);
    cr_assert_eq(jp_post_count(client), 100);
    finish();
}

Test(api, one_user_list)
{
    fault_start(&fault, "oneuser");
    jp_options o = test_options(fault.port);
    client = make_client(&o);
    jp_start(client);
    int ok;
    WAIT_UNTIL(jp_ready(client), 10000, ok);
    cr_assert(ok);
    cr_assert_eq(jp_user_count(client), 1);
    cr_assert_eq(jp_post_count(client), 3);
    slot a, b;
    fetch(client, 1, &a);
    fetch(client, 2, &b);
    WAIT_UNTIL(a.done && b.done, 10000, ok);
    cr_assert(ok);
    cr_assert(a.ok, "%s", a.error);
    cr_assert_str_eq(json_string_value(json_object_get(a.user, "username")), "Bret");
    cr_assert_eq(b.ok, 0);
    cr_assert_eq(b.not_found, 1);
    cr_assert_eq(b.attempts, 1);
    slot_clear(&a);
    jp_post p;
    cr_assert_eq(jp_random_post(client, 5, &p), 0);
    cr_assert_eq(p.id, 3);
    cr_assert_str_eq(p.title, "title 3");
    jp_post_clear(&p);
    finish();
}

Test(api, free_with_requests_in_flight)
{
    fault_start(&fault, "hang");
    jp_options o = test_options(fault.port);
    client = make_client(&o);
    jp_start(client);
    slot s[6];
    for (int i = 0; i < 6; i++)
        fetch(client, i + 1, &s[i]);
    /* 2 loads + 6 fetches: all are in flight and hanging */
    jp_stats st = {0};
    for (long long end = mono_ms() + 5000; mono_ms() < end;) {
        jp_get_stats(client, &st);
        if (st.requests >= 8)
            break;
        usleep(10 * 1000);
    }
    cr_assert_eq(st.requests, 8);
    usleep(100 * 1000); /* let the requests reach the server */
    long long t0 = mono_ms();
    jp_free(client);
    client = NULL;
    cr_assert(mono_ms() - t0 < 1000, "jp_free must not wait for the timeouts");
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(s[i].done, 1, "slot %d: callback called %d times", i, s[i].done);
        cr_assert_eq(s[i].cancelled, 1);
        cr_assert_eq(s[i].ok, 0);
        cr_assert_str_eq(s[i].error, "cancelled");
    }
    cr_assert_eq(rec.errors, 0, "cancelling is not an API failure");
    finish();
}

Test(api, free_right_after_queueing)
{
    /* requests still in the hand-over queue are cancelled as well */
    jp_options o = test_options(free_port());
    client = make_client(&o);
    slot s[4];
    for (int i = 0; i < 4; i++)
        fetch(client, i + 1, &s[i]);
    jp_free(client);
    client = NULL;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(s[i].done, 1);
        /* a refused attempt may have ended one before the stop */
        cr_assert(s[i].cancelled || s[i].attempts >= 1);
    }
    finish();
}

/* ---- allocation failures ------------------------------------------------ */

Test(api, fetch_survives_allocation_failures)
{
    real_start(&real, 0);
    jp_options o = test_options(real.port);
    o.max_attempts = 1;
    int failed_runs = 0;
    for (unsigned long n = 1; n <= 60; n++) {
        rec_init(&rec);
        char err[256] = "";
        mem_fail_at(n);
        jp_client *c = jp_new(&o, err, sizeof err);
        if (c == NULL) {
            cr_assert(strlen(err) > 0);
            failed_runs++;
            continue;
        }
        slot s;
        memset(&s, 0, sizeof s);
        s.rec = &rec;
        if (jp_fetch_user(c, 1, on_user, &s, err, sizeof err) != 0) {
            cr_assert_str_eq(err, "api: out of memory");
            jp_free(c);
            failed_runs++;
            continue;
        }
        int ok;
        WAIT_UNTIL(s.done, 10000, ok);
        cr_assert(ok, "n=%lu: no callback", n);
        cr_assert_eq(s.done, 1);
        if (!s.ok)
            failed_runs++;
        slot_clear(&s);
        mem_fail_at(0);
        jp_free(c);
    }
    mem_fail_at(0);
    cr_assert(failed_runs > 0, "injection never hit");
    finish();
}

/* ---- parsers and options ------------------------------------------------ */

Test(api, parse_users)
{
    char err[256];
    cr_assert_eq(jp_parse_users("[{\"id\":1},{\"id\":2}]", 19, err, sizeof err), 2);
    const char *bad[] = {
        "",
        "[]",
        "{}",
        "[1]",
        "[{\"id\":\"1\"}]",
        "[{\"id\":0}]",
        "[{\"id\":1.5}]",
        "[{\"id\":99999999999}]",
        "[{\"name\":\"x\"}]",
        "[{\"id\":1},null]",
        "[{\"id\":1}",
        "[{\"id\":1,\"id\":2}]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_eq(jp_parse_users(bad[i], strlen(bad[i]), err, sizeof err), -1, "%s", bad[i]);
        cr_assert(strlen(err) > 0);
    }
    cr_assert_eq(jp_parse_users(NULL, 0, err, sizeof err), -1);
    /* not NUL-terminated: the length is what counts */
    char buf[8] = {'[', '{', '"', 'i', 'd', '"', ':', '1'};
    cr_assert_eq(jp_parse_users(buf, sizeof buf, err, sizeof err), -1);
    finish();
}

Test(api, parse_user)
{
    char err[256];
    const char *good = "{\"id\":3,\"name\":\"n\",\"username\":\"u\",\"email\":\"e\",\"x\":[1]}";
    json_t *u = jp_parse_user(good, strlen(good), err, sizeof err);
    cr_assert_not_null(u, "%s", err);
    cr_assert_eq(json_integer_value(json_object_get(u, "id")), 3);
    json_decref(u);
    const char *bad[] = {
        "{}",
        "[]",
        "{\"id\":3,\"name\":\"n\",\"username\":\"u\"}",
        "{\"id\":3,\"name\":1,\"username\":\"u\",\"email\":\"e\"}",
        "{\"id\":-3,\"name\":\"n\",\"username\":\"u\",\"email\":\"e\"}",
        "{\"id\":3,\"name\":\"n\\u0000\",\"username\":\"u\",\"email\":\"e\"}",
        "null",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_null(jp_parse_user(bad[i], strlen(bad[i]), err, sizeof err), "%s", bad[i]);
        cr_assert(strlen(err) > 0);
    }
    finish();
}

static const char posts_json[] = "[{\"userId\":1,\"id\":1,\"title\":\"a\",\"body\":\"b\"},"
                                 "{\"userId\":2,\"id\":7,\"title\":\"c\",\"body\":\"d\"}]";

Test(api, parse_posts)
{
    char err[256];
    jp_posts *p = jp_parse_posts(posts_json, strlen(posts_json), err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_assert_eq(jp_posts_count(p), 2);
    cr_assert_eq(jp_posts_get(p, 1)->id, 7);
    cr_assert_eq(jp_posts_get(p, 1)->user_id, 2);
    cr_assert_str_eq(jp_posts_get(p, 1)->body, "d");
    cr_assert_null(jp_posts_get(p, 2));
    cr_assert_null(jp_posts_get(p, -1));
    jp_posts_free(p);
    const char *bad[] = {
        "[]",
        "{}",
        "[{\"userId\":1,\"id\":1,\"title\":\"a\"}]",
        ("[{\"userId\":1,\"id\":1,\"title\":\"a\",\"body\":\"b\"},{\"userId\":\"2\",\"id\":7,"
         "\"title\":\"c\",\"body\":\"d\"}]"),
        "[{\"userId\":1,\"id\":1,\"title\":2,\"body\":\"b\"}]",
        "[5]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_null(jp_parse_posts(bad[i], strlen(bad[i]), err, sizeof err), "%s", bad[i]);
        cr_assert(strlen(err) > 0);
    }
    finish();
}

Test(api, rejects_bad_options)
{
    char err[256];
    jp_options o = {0};
    cr_assert_null(jp_new(&o, err, sizeof err));
    cr_assert(strlen(err) > 0);
    o.base_url = "ftp://127.0.0.1:1";
    cr_assert_null(jp_new(&o, err, sizeof err));
    o.base_url = "http://127.0.0.1:1/a b";
    cr_assert_null(jp_new(&o, err, sizeof err));
    o.base_url = "http://127.0.0.1:1?x=1";
    cr_assert_null(jp_new(&o, err, sizeof err));
    o.base_url = "http://127.0.0.1:1";
    o.total_timeout_ms = -1;
    cr_assert_null(jp_new(&o, err, sizeof err));
    cr_assert_null(jp_new(NULL, err, sizeof err));

    o.total_timeout_ms = 0;
    o.base_url = "http://127.0.0.1:1///";
    jp_client *c = jp_new(&o, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    slot s;
    cr_assert_eq(jp_fetch_user(c, 0, on_user, &s, err, sizeof err), -1);
    cr_assert(strstr(err, "out of range") != NULL);
    jp_free(c);
    jp_free(NULL);
    finish();
}

/* ---- limits ------------------------------------------------------------- */

/* A reply over max_body_bytes is cut off while it arrives (the real
 * server's user is about 500 bytes) and reported; with room it is fine. */
Test(api, reply_over_a_small_cap_is_an_error)
{
    real_start(&real, 0);
    jp_options o = test_options(real.port);
    o.max_attempts = 1;
    o.max_body_bytes = 100;
    client = make_client(&o);
    slot s;
    fetch(client, 1, &s);
    int ok;
    WAIT_UNTIL(s.done, 10000, ok);
    cr_assert(ok);
    cr_assert_eq(s.ok, 0);
    cr_assert_not_null(strstr(s.error, "larger than 100 bytes"), "%s", s.error);
    cr_assert_eq(rec.errors, 1);
    jp_free(client);
    client = NULL;
    o.max_body_bytes = 4096;
    client = make_client(&o);
    fetch(client, 1, &s);
    WAIT_UNTIL(s.done, 10000, ok);
    cr_assert(ok && s.ok, "%s", s.error ? s.error : "");
    slot_clear(&s);
    finish();
}

/* The posts cache: a copy that cannot be made leaves nothing half-made. */
Test(api, random_post_out_of_memory)
{
    real_start(&real, 0);
    jp_options o = test_options(real.port);
    client = make_client(&o);
    jp_start(client);
    int ok;
    WAIT_UNTIL(jp_ready(client), 10000, ok);
    cr_assert(ok, "not ready after 10 s");
    for (unsigned long n = 1; n <= 2; n++) {
        jp_post p;
        memset(&p, 0x5a, sizeof p);
        mem_fail_at(n);
        cr_assert_eq(jp_random_post(client, 3, &p), -1, "allocation %lu", n);
        mem_fail_at(0);
        cr_assert(p.title == NULL && p.body == NULL && p.id == 0, "zeroed");
    }
    jp_post_clear(NULL);
    finish();
}

Test(api, option_limits)
{
    char err[256] = "";
    static char url[2100];
    snprintf(url, sizeof url, "http://127.0.0.1:1/%02080d", 0);
    jp_options o = {.base_url = url};
    cr_assert_null(jp_new(&o, err, sizeof err));
    cr_assert_not_null(strstr(err, "longer than 2048"), "%s", err);
    o.base_url = "http://127.0.0.1:1";
    long day_and_more = 24L * 3600 * 1000 + 1;
    long *fields[] = {&o.connect_timeout_ms, &o.total_timeout_ms, &o.backoff_base_ms,
                      &o.backoff_max_ms, &o.posts_refresh_ms};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        *fields[i] = day_and_more;
        err[0] = '\0';
        cr_assert_null(jp_new(&o, err, sizeof err), "field %zu", i);
        cr_assert_not_null(strstr(err, "24 hours"), "%s", err);
        *fields[i] = 0;
    }
    /* a cap below the first delay is taken as the first delay */
    o.backoff_base_ms = 500;
    o.backoff_max_ms = 100;
    jp_client *c = jp_new(&o, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(jp_user_count(c), -1);
    cr_assert_eq(jp_post_count(c), 0);
    jp_free(c);
    finish();
}
