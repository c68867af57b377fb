/*
 * jsonplaceholder — see jsonplaceholder.h for the contract.
 *
 * Inside: one thread per client runs a libcurl multi handle. Other threads
 * only touch the client through `lock` (the queue of new requests and the
 * flags start/stop), `cache_lock` (the posts cache) and atomics (counters,
 * N, ready/up); they wake the thread with curl_multi_wakeup, so nothing
 * they call can wait on the network.
 *
 * A request lives on exactly one list at a time:
 *   incoming  new, handed over by jp_fetch_user (under `lock`);
 *   waiting   due at `due_ms` (first try, retry after backoff, refresh);
 *   active    its transfer is in the multi handle;
 * and leaves the last one when its result is delivered. The two background
 * requests (/users and /posts) are embedded in the client and never freed;
 * they cycle between waiting and active until jp_free.
 *
 * Why about 750 lines in one file: everything below runs on, or hands work
 * to, the one client thread, and shares its lists and locks; the pure part
 * (parsing replies) is apart in reply.c.
 */
#include "api/jsonplaceholder.h"

#include "util/backoff.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/rng.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define JP_DEFAULT_CONNECT_MS 2000L
#define JP_DEFAULT_TOTAL_MS 5000L
#define JP_DEFAULT_ATTEMPTS 3
#define JP_DEFAULT_BACKOFF_MS 200L
#define JP_DEFAULT_BACKOFF_MAX_MS 5000L
#define JP_DEFAULT_REFRESH_MS 600000L
#define JP_DEFAULT_MAX_BODY ((size_t)1 << 20)
/* At most this many transfers at once: a burst of connecting clients must
 * not open thousands of connections to the API; the rest wait their turn
 * (their timeout only runs once their transfer starts). */
#define JP_MAX_INFLIGHT 32
#define JP_MAX_URL 2048
/* Upper bound of any backoff or refresh option: keeps the doubling and the
 * deadline arithmetic far from overflow. */
#define JP_MAX_INTERVAL_MS (24L * 3600 * 1000)
/* How long the thread sleeps at most when nothing is due: an upper bound
 * only, every event wakes it earlier. */
#define JP_IDLE_MS 1000

typedef enum { REQ_USERS, REQ_POSTS, REQ_USER } req_kind;

typedef struct jp_req {
    struct jp_req *prev, *next;
    jp_client *client;
    req_kind kind;
    int id;          /* REQ_USER: the user asked for */
    int attempt;     /* attempts started since the last success */
    int last_status; /* HTTP status of the last attempt, 0 if none */
    int not_found;
    long long due_ms;
    CURL *easy;
    char *body;
    size_t len, cap;
    int too_big, oom;
    jp_user_cb cb;
    void *cb_arg;
    char url[JP_MAX_URL + 32];
    char curl_err[CURL_ERROR_SIZE];
} jp_req;

typedef struct {
    jp_req *head, *tail;
} req_list;

struct jp_client {
    /* options, read-only after jp_new */
    char base_url[JP_MAX_URL + 1];
    long connect_ms, total_ms, backoff_ms, backoff_max_ms, refresh_ms;
    int max_attempts;
    size_t max_body;
    jp_error_fn on_error;
    void *error_arg;
    jp_state_fn on_state;
    void *state_arg;

    CURLM *multi;
    pthread_t thread;

    pthread_mutex_t lock; /* guards incoming, start_requested, stopping */
    req_list incoming;
    int start_requested;
    int stopping;

    pthread_mutex_t cache_lock; /* guards posts */
    jp_posts *posts;

    /* the client thread's own state */
    req_list waiting, active;
    int inflight;
    int started;
    int users_loaded, posts_loaded, users_failing, posts_failing;
    int up_reported;
    rng *jitter; /* the backoff's jitter only; not seeded by --seed */
    jp_req users_req, posts_req;

    /* read from any thread */
    atomic_int user_count;
    atomic_int ready;
    atomic_int up;
    atomic_uint_fast64_t n_requests, n_failures, n_retries;
};

/* ---- small helpers ------------------------------------------------------ */

static void list_push(req_list *l, jp_req *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
}

static void list_remove(req_list *l, jp_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
}

/* Delay before the next try after `failed` failed attempts in a row:
 * base * 2^(failed-1), capped, with "equal jitter" (half fixed, half
 * random) so that many clients failing together do not retry together. */
static long backoff_delay(jp_client *c, int failed)
{
    long d = backoff_delay_ms(c->backoff_ms, c->backoff_max_ms, failed);
    long half = d / 2;
    long delay = (long)rng_range(c->jitter, half, d);
    return delay < 1 ? 1 : delay;
}

static void update_state(jp_client *c)
{
    int ready = c->users_loaded && c->posts_loaded;
    int up = ready && !c->users_failing && !c->posts_failing;
    atomic_store(&c->ready, ready);
    atomic_store(&c->up, up);
    if (up == c->up_reported)
        return;
    c->up_reported = up;
    log_info("api", "%s is %s", c->base_url, up ? "up" : "down");
    if (c->on_state != NULL)
        c->on_state(c->state_arg, up);
}

static void free_req(jp_req *r)
{
    if (r == NULL)
        return;
    mem_free(r->body);
    r->body = NULL;
    r->len = r->cap = 0;
    /* the two background requests are part of the client */
    if (r->kind == REQ_USER)
        mem_free(r);
}

/* Ends a jp_fetch_user request: its one callback, then it is gone. */
static void deliver(jp_client *c, jp_req *r, json_t *user, const char *error, int cancelled)
{
    (void)c;
    jp_result res = {
        .ok = user != NULL,
        .status = r->last_status,
        .not_found = r->not_found,
        .cancelled = cancelled,
        .attempts = r->attempt,
        .error = user != NULL ? NULL : error,
        .user = user,
    };
    if (r->cb != NULL)
        r->cb(r->cb_arg, &res);
    free_req(r);
}

static void schedule(jp_client *c, jp_req *r, long long due)
{
    r->due_ms = due;
    list_push(&c->waiting, r);
}

/* One attempt failed: count it, report it (on_error gets every one), then
 * retry later or end the request. Background loads retry forever. */
static void attempt_failed(jp_client *c, jp_req *r, int status, char *error, int retryable)
{
    jp_reply_sanitize(error);
    r->last_status = status;
    atomic_fetch_add(&c->n_failures, 1);
    int background = r->kind != REQ_USER;
    int again = background || (retryable && r->attempt < c->max_attempts);
    /* The one log line of a failed call (the service only counts it and
     * writes its api_errors row). A 404 of a draw is expected: info. */
    char http_status[24] = "";
    if (status != 0)
        snprintf(http_status, sizeof http_status, " (HTTP %d)", status);
    char why[2 * LOG_SAFE_LEN]; /* the directory's words, not ours */
    log_msg(r->not_found ? LOGL_INFO : LOGL_WARN, "api", "GET %s failed: %s%s (attempt %d, %s)",
            r->url, log_safe(why, sizeof why, error), http_status, r->attempt,
            again ? "will retry" : "giving up");
    if (c->on_error != NULL)
        c->on_error(c->error_arg, "GET", r->url, status, error);

    if (background) {
        if (r->kind == REQ_USERS)
            c->users_failing = 1;
        else
            c->posts_failing = 1;
        update_state(c);
    }
    if (again) {
        atomic_fetch_add(&c->n_retries, 1);
        schedule(c, r, clock_mono_ms() + backoff_delay(c, r->attempt));
    } else {
        deliver(c, r, NULL, error, 0);
    }
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    jp_req *r = userdata;
    size_t n = size * nmemb;
    size_t max = r->client->max_body;
    if (n > max - r->len) {
        r->too_big = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap < 4096 ? 4096 : r->cap;
        while (cap < r->len + n + 1)
            cap *= 2;
        if (cap > max + 1)
            cap = max + 1;
        char *grown = mem_realloc(r->body, cap);
        if (grown == NULL) {
            r->oom = 1;
            return 0;
        }
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static void start_attempt(jp_client *c, jp_req *r)
{
    char msg[256];
    r->attempt++;
    r->len = 0;
    r->too_big = r->oom = r->not_found = 0;
    r->curl_err[0] = '\0';
    atomic_fetch_add(&c->n_requests, 1);

    CURL *e = curl_easy_init();
    if (e == NULL) {
        snprintf(msg, sizeof msg, "cannot create a transfer (out of memory)");
        attempt_failed(c, r, 0, msg, 1);
        return;
    }
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, r->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err) != CURLE_OK;
    /* signals for DNS timeouts are not thread-safe; we run in a thread */
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->total_ms) != CURLE_OK;
    /* a Content-Length over the cap fails before any byte is read */
    bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "chatd") != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#endif
    if (bad) {
        curl_easy_cleanup(e);
        snprintf(msg, sizeof msg, "cannot set up the transfer (out of memory)");
        attempt_failed(c, r, 0, msg, 1);
        return;
    }
    CURLMcode mc = curl_multi_add_handle(c->multi, e);
    if (mc != CURLM_OK) {
        curl_easy_cleanup(e);
        snprintf(msg, sizeof msg, "cannot start the transfer: %s", curl_multi_strerror(mc));
        attempt_failed(c, r, 0, msg, 1);
        return;
    }
    r->easy = e;
    list_push(&c->active, r);
    c->inflight++;
}

static void stop_transfer(jp_client *c, jp_req *r)
{
    curl_multi_remove_handle(c->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    list_remove(&c->active, r);
    c->inflight--;
}

static void users_loaded(jp_client *c, jp_req *r, int n)
{
    log_info("api", "loaded %d users from %s", n, r->url);
    atomic_store(&c->user_count, n);
    c->users_loaded = 1;
    c->users_failing = 0;
    r->attempt = 0;
    free_req(r); /* drops the body; the request itself is embedded */
    update_state(c);
}

static void posts_loaded(jp_client *c, jp_req *r, jp_posts *p)
{
    log_info("api", "loaded %d posts from %s", jp_posts_count(p), r->url);
    pthread_mutex_lock(&c->cache_lock);
    jp_posts *old = c->posts;
    c->posts = p;
    pthread_mutex_unlock(&c->cache_lock);
    jp_posts_free(old);
    c->posts_loaded = 1;
    c->posts_failing = 0;
    r->attempt = 0;
    free_req(r);
    schedule(c, r, clock_mono_ms() + c->refresh_ms);
    update_state(c);
}

/* A transfer ended (well or not): judge the reply. */
static void transfer_done(jp_client *c, jp_req *r, CURLcode rc)
{
    char msg[512];
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    stop_transfer(c, r);
    int st = status > 0 && status < 1000 ? (int)status : 0;
    r->last_status = st;

    if (rc != CURLE_OK) {
        if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED)
            snprintf(msg, sizeof msg, "reply larger than %zu bytes", c->max_body);
        else if (r->oom)
            snprintf(msg, sizeof msg, "out of memory reading the reply");
        else
            snprintf(msg, sizeof msg, "%s%s%s", curl_easy_strerror(rc),
                     r->curl_err[0] != '\0' ? ": " : "", r->curl_err);
        attempt_failed(c, r, st, msg, 1);
        return;
    }
    if (st < 200 || st > 299) {
        /* Only a server-side or throttling failure may heal on a retry; a
         * 404 of /users/{N+1} is the draw's by-design failure. */
        int retryable = st >= 500 || st == 408 || st == 429;
        if (st == 404 && r->kind == REQ_USER) {
            r->not_found = 1;
            snprintf(msg, sizeof msg, "not found (HTTP 404)");
        } else {
            snprintf(msg, sizeof msg, "HTTP %d", st);
        }
        attempt_failed(c, r, st, msg, retryable);
        return;
    }

    char perr[256];
    switch (r->kind) {
    case REQ_USERS: {
        int n = jp_parse_users(r->body, r->len, perr, sizeof perr);
        if (n < 0)
            break;
        users_loaded(c, r, n);
        return;
    }
    case REQ_POSTS: {
        jp_posts *p = jp_parse_posts(r->body, r->len, perr, sizeof perr);
        if (p == NULL)
            break;
        posts_loaded(c, r, p);
        return;
    }
    case REQ_USER: {
        json_t *u = jp_parse_user(r->body, r->len, perr, sizeof perr);
        if (u == NULL)
            break;
        /* jp_parse_user checked it is an integer in 1..INT_MAX. */
        int id = (int)json_integer_value(json_object_get(u, "id"));
        if (id != r->id) {
            snprintf(perr, sizeof perr, "user: id %d, asked for %d", id, r->id);
            json_decref(u);
            break;
        }
        deliver(c, r, u, NULL, 0);
        json_decref(u);
        return;
    }
    }
    snprintf(msg, sizeof msg, "bad reply: %s", perr);
    attempt_failed(c, r, st, msg, 1);
}

/* Starts every waiting request that is due, as far as the in-flight limit
 * allows. Returns how long the thread may sleep before the next is due. */
static long run_due(jp_client *c)
{
    long long now = clock_mono_ms();
    jp_req *r = c->waiting.head;
    while (r != NULL && c->inflight < JP_MAX_INFLIGHT) {
        jp_req *next = r->next;
        if (r->due_ms <= now) {
            list_remove(&c->waiting, r);
            /* may fail at once and re-queue r at the tail, due later */
            start_attempt(c, r);
        }
        r = next;
    }
    /* Second pass, as the first may have re-queued requests. Due ones that
     * found no slot are left out: a completion wakes the thread. */
    long sleep_ms = JP_IDLE_MS;
    now = clock_mono_ms();
    for (r = c->waiting.head; r != NULL; r = r->next) {
        if (r->due_ms <= now)
            continue;
        if (r->due_ms - now < sleep_ms)
            sleep_ms = (long)(r->due_ms - now);
    }
    return sleep_ms;
}

static void cancel_all(jp_client *c)
{
    jp_req *r;
    while ((r = c->active.head) != NULL) {
        stop_transfer(c, r);
        if (r->kind == REQ_USER)
            deliver(c, r, NULL, "cancelled", 1);
        else
            free_req(r);
    }
    while ((r = c->waiting.head) != NULL) {
        list_remove(&c->waiting, r);
        if (r->kind == REQ_USER)
            deliver(c, r, NULL, "cancelled", 1);
        else
            free_req(r);
    }
    /* `stopping` is set, so no callback above could add to incoming */
    pthread_mutex_lock(&c->lock);
    req_list in = c->incoming;
    c->incoming.head = c->incoming.tail = NULL;
    pthread_mutex_unlock(&c->lock);
    while ((r = in.head) != NULL) {
        list_remove(&in, r);
        deliver(c, r, NULL, "cancelled", 1);
    }
}

static void *client_main(void *arg)
{
    jp_client *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        int stopping = c->stopping;
        int start = c->start_requested && !c->started;
        req_list in = c->incoming;
        c->incoming.head = c->incoming.tail = NULL;
        pthread_mutex_unlock(&c->lock);

        /* requests taken from incoming are due now; keep their order */
        long long now = clock_mono_ms();
        jp_req *r;
        while ((r = in.head) != NULL) {
            list_remove(&in, r);
            schedule(c, r, now);
        }
        if (stopping)
            break;
        if (start) {
            c->started = 1;
            schedule(c, &c->users_req, now);
            schedule(c, &c->posts_req, now);
        }

        int running = 0;
        curl_multi_perform(c->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            char *priv = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
            jp_req *done = (jp_req *)priv;
            /* m is invalid once the handle is removed: copy the result */
            CURLcode rc = m->data.result;
            transfer_done(c, done, rc);
        }

        /* a transfer added here has a zero curl timeout, so the poll
         * returns at once and the next perform starts it */
        long sleep_ms = run_due(c);
        curl_multi_poll(c->multi, NULL, 0, (int)sleep_ms, NULL);
    }
    cancel_all(c);
    return NULL;
}

/* ---- public API --------------------------------------------------------- */

static int check_base_url(const char *url, char *err, size_t errlen)
{
    if (url == NULL || url[0] == '\0') {
        err_set(err, errlen, "api: no base URL");
        return -1;
    }
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
        err_set(err, errlen, "api: base URL must start with http:// or https://");
        return -1;
    }
    size_t n = strlen(url);
    if (n > JP_MAX_URL) {
        err_set(err, errlen, "api: base URL longer than %d bytes", JP_MAX_URL);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)url[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#') {
            err_set(err, errlen, "api: base URL has a space, control character, ? or #");
            return -1;
        }
    }
    return 0;
}

static void init_req(jp_client *c, jp_req *r, req_kind kind, const char *path)
{
    memset(r, 0, sizeof *r);
    r->client = c;
    r->kind = kind;
    snprintf(r->url, sizeof r->url, "%s%s", c->base_url, path);
}

jp_client *jp_new(const jp_options *o, char *err, size_t errlen)
{
    if (o == NULL) {
        err_set(err, errlen, "api: no options");
        return NULL;
    }
    if (check_base_url(o->base_url, err, errlen) != 0)
        return NULL;
    if (o->connect_timeout_ms < 0 || o->total_timeout_ms < 0 || o->max_attempts < 0 ||
        o->backoff_base_ms < 0 || o->backoff_max_ms < 0 || o->posts_refresh_ms < 0) {
        err_set(err, errlen, "api: negative timeout, attempt count or interval");
        return NULL;
    }
    if (o->backoff_base_ms > JP_MAX_INTERVAL_MS || o->backoff_max_ms > JP_MAX_INTERVAL_MS ||
        o->posts_refresh_ms > JP_MAX_INTERVAL_MS || o->connect_timeout_ms > JP_MAX_INTERVAL_MS ||
        o->total_timeout_ms > JP_MAX_INTERVAL_MS) {
        err_set(err, errlen, "api: timeout or interval over 24 hours");
        return NULL;
    }
    jp_client *c = mem_calloc(1, sizeof *c);
    if (c == NULL) {
        err_set(err, errlen, "api: out of memory");
        return NULL;
    }
    snprintf(c->base_url, sizeof c->base_url, "%s", o->base_url);
    /* "http://h/" + "/users" would be "//users": strip trailing slashes */
    size_t n = strlen(c->base_url);
    while (n > 0 && c->base_url[n - 1] == '/')
        c->base_url[--n] = '\0';
    c->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms : JP_DEFAULT_CONNECT_MS;
    c->total_ms = o->total_timeout_ms ? o->total_timeout_ms : JP_DEFAULT_TOTAL_MS;
    c->max_attempts = o->max_attempts ? o->max_attempts : JP_DEFAULT_ATTEMPTS;
    c->backoff_ms = o->backoff_base_ms ? o->backoff_base_ms : JP_DEFAULT_BACKOFF_MS;
    c->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : JP_DEFAULT_BACKOFF_MAX_MS;
    if (c->backoff_max_ms < c->backoff_ms)
        c->backoff_max_ms = c->backoff_ms;
    c->refresh_ms = o->posts_refresh_ms ? o->posts_refresh_ms : JP_DEFAULT_REFRESH_MS;
    c->max_body = o->max_body_bytes ? o->max_body_bytes : JP_DEFAULT_MAX_BODY;
    c->on_error = o->on_error;
    c->error_arg = o->error_arg;
    c->on_state = o->on_state;
    c->state_arg = o->state_arg;
    atomic_init(&c->user_count, -1);
    atomic_init(&c->ready, 0);
    atomic_init(&c->up, 0);
    atomic_init(&c->n_requests, 0);
    atomic_init(&c->n_failures, 0);
    atomic_init(&c->n_retries, 0);
    init_req(c, &c->users_req, REQ_USERS, "/users");
    init_req(c, &c->posts_req, REQ_POSTS, "/posts");

    int have_lock = 0, have_cache_lock = 0;
    /* Clients started together (tests, several chatd) still jitter apart. */
    c->jitter = rng_new(((uint64_t)clock_mono_ms() << 20) ^ (uint64_t)(uintptr_t)c);
    if (c->jitter == NULL) {
        err_set(err, errlen, "api: out of memory");
        goto fail_msg;
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0)
        goto fail;
    have_lock = 1;
    if (pthread_mutex_init(&c->cache_lock, NULL) != 0)
        goto fail;
    have_cache_lock = 1;
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        err_set(err, errlen, "api: cannot create a libcurl multi handle");
        goto fail_msg;
    }
    int rc = pthread_create(&c->thread, NULL, client_main, c);
    if (rc != 0) {
        err_set(err, errlen, "api: cannot start a thread: %s", strerror(rc));
        goto fail_msg;
    }
    return c;
fail:
    err_set(err, errlen, "api: cannot create a mutex");
fail_msg:
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi);
    if (have_cache_lock)
        pthread_mutex_destroy(&c->cache_lock);
    if (have_lock)
        pthread_mutex_destroy(&c->lock);
    rng_free(c->jitter);
    mem_free(c);
    return NULL;
}

void jp_start(jp_client *c)
{
    pthread_mutex_lock(&c->lock);
    c->start_requested = 1;
    curl_multi_wakeup(c->multi);
    pthread_mutex_unlock(&c->lock);
}

int jp_ready(jp_client *c) { return atomic_load(&c->ready); }

int jp_up(jp_client *c) { return atomic_load(&c->up); }

int jp_user_count(jp_client *c) { return atomic_load(&c->user_count); }

int jp_fetch_user(jp_client *c, int id, jp_user_cb cb, void *arg, char *err, size_t errlen)
{
    if (id < 1) {
        err_set(err, errlen, "api: user id %d out of range", id);
        return -1;
    }
    jp_req *r = mem_alloc(sizeof *r);
    if (r == NULL) {
        err_set(err, errlen, "api: out of memory");
        return -1;
    }
    char path[32];
    snprintf(path, sizeof path, "/users/%d", id);
    init_req(c, r, REQ_USER, path);
    r->id = id;
    r->cb = cb;
    r->cb_arg = arg;

    pthread_mutex_lock(&c->lock);
    if (c->stopping) {
        pthread_mutex_unlock(&c->lock);
        mem_free(r);
        err_set(err, errlen, "api: client is shutting down");
        return -1;
    }
    list_push(&c->incoming, r);
    /* under the lock, so jp_free cannot clean up the multi handle between
     * queueing and waking */
    curl_multi_wakeup(c->multi);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

int jp_random_post(jp_client *c, uint64_t random_value, jp_post *out)
{
    memset(out, 0, sizeof *out);
    int rc = -1;
    pthread_mutex_lock(&c->cache_lock);
    int n = jp_posts_count(c->posts);
    if (n > 0) {
        const jp_post *p = jp_posts_get(c->posts, (int)(random_value % (uint64_t)n));
        out->id = p->id;
        out->user_id = p->user_id;
        out->title = mem_strdup(p->title);
        out->body = mem_strdup(p->body);
        rc = 0;
    }
    pthread_mutex_unlock(&c->cache_lock);
    if (rc == 0 && (out->title == NULL || out->body == NULL)) {
        jp_post_clear(out);
        rc = -1;
    }
    return rc;
}

int jp_post_count(jp_client *c)
{
    pthread_mutex_lock(&c->cache_lock);
    int n = jp_posts_count(c->posts);
    pthread_mutex_unlock(&c->cache_lock);
    return n;
}

void jp_get_stats(jp_client *c, jp_stats *out)
{
    out->requests = atomic_load(&c->n_requests);
    out->failures = atomic_load(&c->n_failures);
    out->retries = atomic_load(&c->n_retries);
}

void jp_free(jp_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    curl_multi_wakeup(c->multi);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    curl_multi_cleanup(c->multi);
    jp_posts_free(c->posts);
    pthread_mutex_destroy(&c->cache_lock);
    pthread_mutex_destroy(&c->lock);
    rng_free(c->jitter);
    mem_free(c);
}
