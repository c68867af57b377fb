/*
 * fuzz_http — libFuzzer target for chatd's HTTP request handling
 * (src/http/server.c): the body cap (http_body_*) and the request -> answer
 * decision (http_route), i.e. everything the server does after
 * libmicrohttpd has split the bytes into method, path, query and headers.
 *
 * An input is an HTTP/1.1 request as a client would send it:
 *
 *   METHOD SP TARGET [SP VERSION] CRLF (Name: value CRLF)* CRLF body
 *
 * The harness splits it the way libmicrohttpd does (LF or CRLF, the query
 * after '?', header names case-insensitive; no percent-decoding, which is
 * libmicrohttpd's job, not chatd's), feeds the body to http_body_append in
 * chunks, and then asks http_route for the answer. Two harness-only
 * headers widen the search: "X-Fuzz-Repeat: N" appends the body N times
 * (N <= 300, so the 64 KiB cap is reachable from a short input) and
 * "X-Fuzz-Chunk: N" sets the chunk size (libmicrohttpd hands the body over
 * in pieces of any size).
 *
 * The application behind the routes is a stand-in that checks what the
 * server promises its routes (body NUL-terminated and within the cap,
 * offers only as POST with Content-Type application/sdp, room names of 1..127
 * bytes without '/', the bearer token without its scheme or leading spaces)
 * and passes offers to the real SDP parser. The harness aborts when a
 * promise is broken or when an answer is not a status of 100..599 with a
 * body whose length is right; error bodies must be JSON with an error code.
 *
 * Single-threaded, like libFuzzer's driver.
 */
#include "http/server.h"
#include "rtc/sdp.h"
#include "util/mem.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_http: broken promise: %s (line %d)\n", #cond, __LINE__);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *current_method;
static const char *current_url;

/* Promises every route gets about the request. */
static void check_request(const http_request *req)
{
    CHECK(req->body != NULL);
    CHECK(req->body_len <= HTTP_MAX_BODY);
    CHECK(req->body[req->body_len] == '\0');
    if (req->bearer) {
        CHECK(req->bearer[0] != ' ');
    }
}

static void app_offer(void *app, const http_request *req, http_reply *r)
{
    (void)app;
    check_request(req);
    CHECK(strcmp(current_method, "POST") == 0);
    CHECK(req->content_type != NULL);
    sdp_description d;
    char err[160];
    if (sdp_parse(req->body, req->body_len, &d, err, sizeof err) != 0) {
        http_reply_error(r, 400, "BAD_SDP", err);
        return;
    }
    json_t *o = json_pack("{s:s,s:i}", "mid", d.mid, "candidates", (int)d.n_candidates);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL) { /* the mid is not UTF-8: jansson refuses it */
        http_reply_error(r, 400, "BAD_SDP", "mid is not UTF-8");
        return;
    }
    snprintf(r->location, sizeof r->location, "/api/rtc/fuzz");
    http_reply_json(r, 201, text);
}

static void app_delete(void *app, const http_request *req, const char *id, http_reply *r)
{
    (void)req;
    (void)app;
    CHECK(strcmp(current_method, "DELETE") == 0);
    CHECK(id == current_url + 9);
    if (id[0] == '\0')
        return; /* no answer: the server must turn this into a 500 */
    r->status = 204;
}

static void app_health(void *app, http_reply *r)
{
    (void)app;
    http_reply_json(r, 200, mem_strdup("{\"status\":\"ok\"}"));
}

static void app_room(void *app, const char *room, const http_request *req, http_reply *r)
{
    (void)app;
    check_request(req);
    size_t n = strlen(room);
    CHECK(n >= 1 && n < 128);
    CHECK(strchr(room, '/') == NULL);
    CHECK(strncmp(current_url + 11, room, n) == 0);
    CHECK(strcmp(current_url + 11 + n, "/messages") == 0);
    if (req->limit && req->limit[0] == 'x') {
        http_reply_error(r, 400, "BAD_REQUEST", req->limit); /* client text inside JSON */
        return;
    }
    http_reply_json(r, 200, mem_strdup("{\"messages\":[]}"));
}

/* The rooms API (version 2): the routing's promises about what reaches it. */
static void app_rooms(void *app, const char *method, const char *room, const char *action,
                      const http_request *req, http_reply *r)
{
    (void)app;
    check_request(req);
    CHECK(strncmp(current_url, "/api/rooms", 10) == 0);
    if (room == NULL) {
        CHECK(strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0);
        CHECK(action == NULL);
    } else {
        size_t n = strlen(room);
        CHECK(n >= 1 && n < 128 && strchr(room, '/') == NULL);
        CHECK(strncmp(current_url + 11, room, n) == 0);
        if (action) {
            CHECK(strcmp(method, "POST") == 0);
            CHECK(strcmp(action, "kick") == 0 || strcmp(action, "announce") == 0);
        } else {
            CHECK(strcmp(method, "GET") == 0 || strcmp(method, "PATCH") == 0 ||
                  strcmp(method, "DELETE") == 0);
        }
    }
    http_reply_json(r, 200, mem_strdup("{}"));
}

static void app_announce(void *app, const http_request *req, http_reply *r)
{
    (void)app;
    check_request(req);
    CHECK(strcmp(current_url, "/api/announce") == 0 && strcmp(current_method, "POST") == 0);
    r->status = 202;
}

static const http_app full_app = {.rtc_offer = app_offer,
                                  .rtc_delete = app_delete,
                                  .health = app_health,
                                  .jwks = app_health,
                                  .room_messages = app_room,
                                  .metrics = NULL,
                                  .rooms = app_rooms,
                                  .announce = app_announce};
/* Relay mode has no room history: those routes fall through to 404. */
static const http_app relay_app = {.rtc_offer = app_offer, .rtc_delete = app_delete};

/* A copy of bytes [p, end) as a NUL-terminated string (NULs kept inside). */
static char *dup_range(const char *p, const char *end)
{
    char *s = mem_alloc((size_t)(end - p) + 1);
    if (s == NULL)
        abort();
    memcpy(s, p, (size_t)(end - p));
    s[end - p] = '\0';
    return s;
}

/* Value of query parameter `name` in a query whose '&' were turned into
 * NULs (len bytes in all), or NULL; the first occurrence wins. */
static const char *query_value(const char *query, size_t len, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query; p < query + len; p += strlen(p) + 1)
        if (strncmp(p, name, n) == 0 && p[n] == '=')
            return p + n + 1;
    return NULL;
}

static void check_reply(const http_reply *r)
{
    CHECK(r->status >= 100 && r->status <= 599);
    if (r->body) {
        CHECK(r->content_type != NULL);
        CHECK(r->body_len == strlen(r->body));
        if (r->status >= 400) {
            json_t *o = json_loads(r->body, 0, NULL);
            CHECK(o != NULL);
            CHECK(json_is_string(json_object_get(json_object_get(o, "error"), "code")));
            json_decref(o);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int installed;
    if (!installed) {
        mem_install();
        installed = 1;
    }
    const char *in = (const char *)data, *end = in + size;

    /* request line */
    const char *eol = memchr(in, '\n', size);
    if (eol == NULL)
        return 0;
    const char *line_end = eol > in && eol[-1] == '\r' ? eol - 1 : eol;
    char *line = dup_range(in, line_end);
    char *method = line, *target = strchr(line, ' ');
    if (target == NULL || strlen(line) != (size_t)(line_end - in)) {
        mem_free(line); /* no target, or a NUL inside: libmicrohttpd refuses both */
        return 0;
    }
    *target++ = '\0';
    char *sp = strchr(target, ' ');
    if (sp)
        *sp = '\0';
    char *query = strchr(target, '?');
    if (query)
        *query++ = '\0';
    char *query_copy = mem_strdup(query ? query : "");
    size_t query_len = strlen(query_copy);
    for (char *amp = strchr(query_copy, '&'); amp; amp = strchr(amp + 1, '&'))
        *amp = '\0';

    /* headers, up to the empty line; the body is what follows it */
    const char *content_type = NULL, *authorization = NULL, *content_length = NULL;
    char *headers[64];
    size_t n_headers = 0;
    unsigned long repeat = 1, chunk = 0;
    const char *p = eol + 1, *body = end;
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (e == NULL)
            break; /* an unfinished header section: no body */
        const char *le = e > p && e[-1] == '\r' ? e - 1 : e;
        if (le == p) {
            body = e + 1;
            break;
        }
        char *h = dup_range(p, le);
        p = e + 1;
        char *colon = strchr(h, ':');
        if (colon == NULL || n_headers == sizeof headers / sizeof headers[0]) {
            mem_free(h);
            continue;
        }
        headers[n_headers++] = h;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strcasecmp(h, "Content-Type") == 0)
            content_type = v;
        else if (strcasecmp(h, "Authorization") == 0)
            authorization = v;
        else if (strcasecmp(h, "Content-Length") == 0)
            content_length = v;
        else if (strcasecmp(h, "X-Fuzz-Repeat") == 0)
            repeat = strtoul(v, NULL, 10) % 301;
        else if (strcasecmp(h, "X-Fuzz-Chunk") == 0)
            chunk = strtoul(v, NULL, 10);
    }

    /* the body, as libmicrohttpd hands it over: in pieces */
    http_reply r = {0};
    size_t body_size = (size_t)(end - body), total = body_size * repeat;
    if (chunk == 0 || chunk > body_size)
        chunk = body_size ? body_size : 1;
    /* At most ~512 appends per input: each realloc copies the body under
     * ASan, and tiny pieces of a 64 KiB body would make a run quadratic. */
    if (chunk < body_size && chunk < total / 512)
        chunk = total / 512 < body_size ? total / 512 : body_size;
    http_body b = {0};
    int too_large = http_body_declared_too_large(content_length);
    if (content_length && !too_large) {
        CHECK(strtoull(content_length, NULL, 10) <= HTTP_MAX_BODY);
    }
    for (unsigned long i = 0; i < repeat && !too_large; i++) {
        for (size_t off = 0; off < body_size; off += chunk) {
            size_t n = body_size - off < chunk ? body_size - off : chunk;
            if (http_body_append(&b, body + off, n) != 0)
                abort(); /* no allocation fails here */
            CHECK(b.len <= HTTP_MAX_BODY);
        }
    }
    if (!too_large) {
        CHECK(b.too_large == (total > HTTP_MAX_BODY));
        if (!b.too_large) {
            CHECK(b.len == total);
            CHECK(total == 0 || (b.data != NULL && b.data[b.len] == '\0'));
            for (unsigned long i = 0; i < repeat && body_size; i++)
                CHECK(memcmp(b.data + i * body_size, body, body_size) == 0);
        } else {
            CHECK(b.data == NULL && b.len == 0);
        }
    }

    if (too_large || b.too_large) {
        http_reply_error(&r, 413, "TOO_LARGE", "the body is larger than 64 KiB");
        check_reply(&r);
    } else {
        http_request req = {0};
        req.remote = "127.0.0.1:1";
        req.room = query_value(query_copy, query_len, "room");
        req.limit = query_value(query_copy, query_len, "limit");
        req.before = query_value(query_copy, query_len, "before");
        req.q = query_value(query_copy, query_len, "q");
        req.since = query_value(query_copy, query_len, "since");
        req.content_type = content_type;
        req.body = b.data ? b.data : "";
        req.body_len = b.len;
        current_method = method;
        current_url = target;
        /* the first byte picks the mode, as chatd's --mode does */
        const http_app *app = size && (data[0] & 1) ? &relay_app : &full_app;
        const web_asset *a = http_route(app, NULL, method, target, authorization, &req, &r);
        if (a != NULL) {
            CHECK(r.status == 0 && r.body == NULL);
            CHECK(strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0);
            CHECK(a->data != NULL && a->content_type != NULL);
        } else {
            check_reply(&r);
        }
        if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0) {
            CHECK(req.bearer != NULL);
            CHECK(req.bearer >= authorization + 7 && req.bearer[0] != ' ');
        } else {
            CHECK(req.bearer == NULL);
        }
    }
    mem_free(r.body);
    http_body_clear(&b);
    for (size_t i = 0; i < n_headers; i++)
        mem_free(headers[i]);
    mem_free(query_copy);
    mem_free(line);
    return 0;
}
