/*
 * jsonplaceholder — the client chatd uses to reach JSONPlaceholder.
 *
 * What it does: at start it loads /users (to learn N, the number of users
 * the draw picks from) and /posts (a cache the auto-poster draws from,
 * refreshed on a schedule). While that fails it keeps retrying in the
 * background with capped backoff and reports itself down, so that the HTTP
 * layer can answer UNAVAILABLE at once instead of letting a client hang. On
 * request it fetches one user, /users/{id}, asynchronously (the draw on
 * connect); the draw and its retry loop are the chat layer's, this module
 * only runs one GET with bounded retries and reports the outcome.
 *
 * Threading: one client owns one private thread that runs a libcurl multi
 * handle. Every public function may be called from any thread and none of
 * them waits for the network, so event-loop threads never block here.
 * Callbacks (jp_user_cb, on_error, on_state) run on the client's thread,
 * with no lock of this module held: they may call jp_fetch_user,
 * jp_random_post and the getters, but never jp_free. They should return
 * quickly (hand the result to their own loop), since every transfer of the
 * client waits while one runs.
 *
 * Ownership: the client copies what it needs from jp_options. A user object
 * handed to a jp_user_cb is borrowed for the duration of the callback
 * (json_incref it to keep it). jp_random_post fills caller-owned copies
 * (jp_post_clear frees them). Every allocation goes through util/mem.h.
 *
 * Process set-up is the caller's job: curl_global_init(CURL_GLOBAL_DEFAULT)
 * once at start, before the first jp_new, while the process has one thread
 * (and curl_global_cleanup at exit, after the last jp_free).
 *
 * Replies are untrusted: wrong shapes, truncated or oversized bodies
 * (over max_body_bytes, 1 MiB by default) and invalid JSON become a clean
 * error that is retried and reported, never a crash.
 */
#ifndef CHATD_API_JSONPLACEHOLDER_H
#define CHATD_API_JSONPLACEHOLDER_H

#include "api/reply.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct jp_client jp_client;

/* Called for EVERY failed attempt, retried or not (the chat layer writes it
 * to api_errors): method "GET", the full URL, the HTTP status if a response
 * arrived (0 if none: refused, timed out, reset...), and a one-line error. */
typedef void (*jp_error_fn)(void *arg, const char *method, const char *url, int status,
                            const char *error);

/* Called when jp_up() changes; up is its new value. */
typedef void (*jp_state_fn)(void *arg, int up);

/* Zero means "the default" for every numeric field. */
typedef struct {
    const char *base_url;    /* required: http:// or https://, no query */
    long connect_timeout_ms; /* per attempt, default 2000 */
    long total_timeout_ms;   /* per attempt, default 5000 */
    int max_attempts;        /* per jp_fetch_user, default 3 */
    long backoff_base_ms;    /* first retry delay, default 200, doubles */
    long backoff_max_ms;     /* cap of any retry delay, default 5000 */
    long posts_refresh_ms;   /* posts cache refresh, default 600000 */
    size_t max_body_bytes;   /* larger replies fail, default 1 MiB */
    jp_error_fn on_error;    /* may be NULL */
    void *error_arg;
    jp_state_fn on_state; /* may be NULL */
    void *state_arg;
} jp_options;

/* The outcome of a jp_fetch_user. */
typedef struct {
    int ok;            /* 1: user is set; 0: failed (error is set) */
    int status;        /* HTTP status of the last attempt, 0 if none */
    int not_found;     /* 1 when the last attempt was a 404 (never retried) */
    int cancelled;     /* 1 when jp_free cancelled the request */
    int attempts;      /* attempts made (0 when cancelled before the first) */
    const char *error; /* one line, NULL when ok */
    json_t *user;      /* borrowed; object with integer id == requested id
                          and string name, username, email */
} jp_result;

typedef void (*jp_user_cb)(void *arg, const jp_result *r);

/* Counters for /metrics; monotonic since jp_new. */
typedef struct {
    uint64_t requests; /* attempts started */
    uint64_t failures; /* attempts failed (each one also went to on_error) */
    uint64_t retries;  /* failed attempts scheduled again */
} jp_stats;

/* Creates a client and starts its thread. The background loads wait for
 * jp_start; jp_fetch_user works at once. Returns NULL with a one-line message in err on a bad option or
 * when memory, libcurl or the thread cannot be had. */
jp_client *jp_new(const jp_options *o, char *err, size_t errlen);

/* Begins loading /users and /posts. Each is retried in the background with
 * capped backoff until it succeeds, however long that takes; each failed
 * attempt goes to on_error. Once loaded, /posts is reloaded every
 * posts_refresh_ms (a failing reload retries the same way and keeps the old
 * cache meanwhile). Calling it again does nothing. */
void jp_start(jp_client *c);

/* 1 once /users and /posts have both been loaded at least once: N is known
 * and the posts cache exists, so clients can be served. Stays 1. */
int jp_ready(jp_client *c);

/* Health: 1 when ready and the latest load or reload of /users and /posts
 * succeeded; 0 before the first load and while a reload is failing. This is
 * /api/health's "api": ok/down. Failed user fetches (the by-design 404
 * included) do not change it. */
int jp_up(jp_client *c);

/* N, the number of users /users listed; -1 before it was loaded. */
int jp_user_count(jp_client *c);

/* Starts GET /users/{id} (id >= 1) and returns 0: cb is then called exactly
 * once, on the client's thread: with the user, with the failure (a 404 is
 * final at once; 5xx, 408, 429, timeouts, connection errors and bad bodies
 * are tried max_attempts times with backoff first), or with cancelled = 1
 * if jp_free comes first. Returns -1 with err set, and never calls cb, when
 * id < 1, memory runs out, or the client is being freed. */
int jp_fetch_user(jp_client *c, int id, jp_user_cb cb, void *arg, char *err, size_t errlen);

/* Copies post number (random_value mod count) of the cache into out.
 * Returns 0, or -1 when there is no cache yet or memory ran out (out is
 * then zeroed). Free with jp_post_clear. */
int jp_random_post(jp_client *c, uint64_t random_value, jp_post *out);

/* Number of posts in the cache, 0 when none. */
int jp_post_count(jp_client *c);

void jp_get_stats(jp_client *c, jp_stats *out);

/* Stops the thread and frees everything. Pending jp_fetch_user requests are
 * cancelled first: each cb runs once with cancelled = 1 (on the client's
 * thread, before jp_free returns), and on_error is not called for them.
 * NULL is accepted. Never call it from a callback of the same client. */
void jp_free(jp_client *c);

#endif
