/*
 * test_http — unit tests for src/http/server: the body cap, every branch of
 * the request -> answer decision (http_route), and the real server on
 * 127.0.0.1 for what only a socket shows (413 before and after the body,
 * the answer headers, a bad listen address, a port in use, quiesce, stop).
 *
 * The application behind the routes is a recorder: it notes which route
 * ran with what, so each test checks that the server chose the right one
 * and passed the request through unchanged. Built with ASan, tests that
 * allocate end with a leak check.
 */
#include <criterion/criterion.h>

#include "http/server.h"
#include "util/mem.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "torture.h"

static void setup(void) { mem_install(); }

TestSuite(http, .init = setup);

/* ---- a recording application -------------------------------------------- */

typedef struct {
    const char *route;
    char arg[160];
    const char *bearer;
    char room_param[64]; /* copied: the server's strings live only as long as the request */
    char remote[176];
    char remote_addr[64];
    int loopback;
    const char *limit, *before;
    size_t body_len;
    int answer; /* 0: leave the reply empty (the server must answer 500) */
} recorder;

static recorder rec;

static void on_offer(void *app, const http_request *req, http_reply *r)
{
    (void)app;
    rec.route = "offer";
    rec.bearer = req->bearer;
    snprintf(rec.remote, sizeof rec.remote, "%s", req->remote ? req->remote : "(none)");
    snprintf(rec.remote_addr, sizeof rec.remote_addr, "%s",
             req->remote_addr ? req->remote_addr : "(none)");
    rec.loopback = req->remote_is_loopback;
    snprintf(rec.room_param, sizeof rec.room_param, "%s", req->room ? req->room : "(none)");
    rec.body_len = req->body_len;
    snprintf(rec.arg, sizeof rec.arg, "%s", req->body);
    if (rec.answer) {
        snprintf(r->location, sizeof r->location, "/api/rtc/s1");
        r->status = 201;
        r->content_type = "application/sdp";
        r->body = mem_strdup("v=0\r\n");
        r->body_len = 5;
    }
}

static void on_delete(void *app, const http_request *req, const char *id, http_reply *r)
{
    (void)app;
    (void)req;
    rec.route = "delete";
    snprintf(rec.arg, sizeof rec.arg, "%s", id);
    if (rec.answer)
        r->status = 204;
}

static void on_health(void *app, http_reply *r)
{
    (void)app;
    rec.route = "health";
    if (rec.answer)
        http_reply_json(r, 200, mem_strdup("{\"status\":\"ok\"}"));
}

static void on_jwks(void *app, http_reply *r)
{
    (void)app;
    rec.route = "jwks";
    if (rec.answer)
        http_reply_json(r, 200, mem_strdup("{\"keys\":[]}"));
}

static void on_metrics(void *app, http_reply *r)
{
    (void)app;
    rec.route = "metrics";
    if (rec.answer) {
        r->status = 200;
        r->content_type = "text/plain";
        r->body = mem_strdup("x 1\n");
        r->body_len = 4;
    }
}

static void on_room(void *app, const char *room, const http_request *req, http_reply *r)
{
    (void)app;
    rec.route = "room";
    snprintf(rec.arg, sizeof rec.arg, "%s", room);
    rec.limit = req->limit;
    rec.before = req->before;
    rec.bearer = req->bearer;
    if (rec.answer)
        http_reply_json(r, 200, mem_strdup("{\"messages\":[]}"));
}

static void on_rooms(void *app, const char *method, const char *room, const char *action,
                     const http_request *req, http_reply *r)
{
    (void)app, (void)req;
    rec.route = "rooms";
    snprintf(rec.arg, sizeof rec.arg, "%s %s %s", method, room ? room : "-", action ? action : "-");
    if (rec.answer)
        http_reply_json(r, 200, mem_strdup("{}"));
}

static void on_announce(void *app, const http_request *req, http_reply *r)
{
    (void)app;
    rec.route = "announce";
    rec.body_len = req->body_len;
    if (rec.answer)
        r->status = 202;
}

static const http_app full = {on_offer, on_delete,  on_health, on_jwks,
                              on_room,  on_metrics, on_rooms,  on_announce};
static const http_app empty = {0};

/* Routes one request; returns the status (200 for an asset) and leaves the
 * error code, if any, in code. */
static int route(const http_app *app, const char *method, const char *url, const char *auth,
                 http_request *req, char *code, size_t codelen)
{
    http_reply r = {0};
    http_request local = {.body = "", .body_len = 0};
    if (req == NULL)
        req = &local;
    code[0] = '\0';
    const web_asset *a = http_route(app, NULL, method, url, auth, req, &r);
    if (a != NULL) {
        cr_assert_eq(r.status, 0);
        cr_assert_null(r.body);
        return 200;
    }
    cr_assert_geq(r.status, 100);
    if (r.status >= 400) {
        cr_assert_str_eq(r.content_type, "application/json");
        json_t *o = json_loads(r.body, 0, NULL);
        cr_assert_not_null(o, "error body is JSON: %s", r.body);
        snprintf(code, codelen, "%s",
                 json_string_value(json_object_get(json_object_get(o, "error"), "code")));
        json_decref(o);
    }
    mem_free(r.body);
    return r.status;
}

#define ROUTE(app, m, u, auth, req) route(app, m, u, auth, req, code, sizeof code)

/* ---- http_route ---------------------------------------------------------- */

Test(http, offer_route_and_its_refusals)
{
    char code[64];
    memset(&rec, 0, sizeof rec);
    rec.answer = 1;
    http_request req = {.content_type = " Application/SDP; charset=utf-8",
                        .body = "v=0",
                        .body_len = 3,
                        .room = "lobby"};
    cr_assert_eq(ROUTE(&full, "POST", "/api/rtc", "bearer   tok.en", &req), 201);
    cr_assert_str_eq(rec.route, "offer");
    cr_assert_str_eq(rec.bearer, "tok.en", "scheme and spaces removed");
    cr_assert_str_eq(rec.room_param, "lobby");
    cr_assert_str_eq(rec.arg, "v=0");

    req.bearer = NULL;
    cr_assert_eq(ROUTE(&full, "POST", "/api/rtc", "Basic abc", &req), 201);
    cr_assert_null(rec.bearer, "only the Bearer scheme gives a token");

    cr_assert_eq(ROUTE(&full, "GET", "/api/rtc", NULL, &req), 405);
    cr_assert_str_eq(code, "METHOD_NOT_ALLOWED");
    const char *bad_types[] = {NULL, "text/plain", "application/sdpx", "application/sd"};
    for (size_t i = 0; i < sizeof bad_types / sizeof *bad_types; i++) {
        req.content_type = bad_types[i];
        cr_assert_eq(ROUTE(&full, "POST", "/api/rtc", NULL, &req), 415, "%s", bad_types[i]);
        cr_assert_str_eq(code, "UNSUPPORTED_MEDIA_TYPE");
    }
    req.content_type = "application/sdp ";
    cr_assert_eq(ROUTE(&full, "POST", "/api/rtc", NULL, &req), 201);
    req.content_type = "application/sdp";
    cr_assert_eq(ROUTE(&empty, "POST", "/api/rtc", NULL, &req), 404);
    rec.answer = 0;
    cr_assert_eq(ROUTE(&full, "POST", "/api/rtc", NULL, &req), 500, "no answer is a 500");
    cr_assert_str_eq(code, "INTERNAL");
    check_leaks();
}

Test(http, delete_route)
{
    char code[64];
    memset(&rec, 0, sizeof rec);
    rec.answer = 1;
    cr_assert_eq(ROUTE(&full, "DELETE", "/api/rtc/abc", NULL, NULL), 204);
    cr_assert_str_eq(rec.route, "delete");
    cr_assert_str_eq(rec.arg, "abc");
    cr_assert_eq(ROUTE(&full, "POST", "/api/rtc/abc", NULL, NULL), 405);
    cr_assert_eq(ROUTE(&empty, "DELETE", "/api/rtc/abc", NULL, NULL), 404);
    check_leaks();
}

Test(http, get_routes)
{
    char code[64];
    memset(&rec, 0, sizeof rec);
    rec.answer = 1;
    cr_assert_eq(ROUTE(&full, "GET", "/api/health", NULL, NULL), 200);
    cr_assert_str_eq(rec.route, "health");
    cr_assert_eq(ROUTE(&full, "HEAD", "/.well-known/jwks.json", NULL, NULL), 200);
    cr_assert_str_eq(rec.route, "jwks");
    cr_assert_eq(ROUTE(&full, "GET", "/metrics", NULL, NULL), 200);
    cr_assert_str_eq(rec.route, "metrics");
    http_request req = {.body = "", .limit = "5", .before = "9"};
    cr_assert_eq(ROUTE(&full, "GET", "/api/rooms/lobby/messages", "Bearer x", &req), 200);
    cr_assert_str_eq(rec.route, "room");
    cr_assert_str_eq(rec.arg, "lobby");
    cr_assert_str_eq(rec.limit, "5");
    cr_assert_str_eq(rec.before, "9");
    cr_assert_str_eq(rec.bearer, "x");
    /* a route the application does not have falls through to the assets */
    cr_assert_eq(ROUTE(&empty, "GET", "/api/health", NULL, NULL), 404);
    cr_assert_eq(ROUTE(&empty, "GET", "/metrics", NULL, NULL), 404);
    cr_assert_eq(ROUTE(&empty, "GET", "/.well-known/jwks.json", NULL, NULL), 404);
    cr_assert_eq(ROUTE(&empty, "GET", "/api/rooms/lobby/messages", NULL, NULL), 404);
    cr_assert_str_eq(code, "NOT_FOUND");
    check_leaks();
}

Test(http, room_path_shapes)
{
    char code[64], url[300];
    memset(&rec, 0, sizeof rec);
    rec.answer = 1;
    cr_assert_eq(ROUTE(&full, "GET", "/api/rooms//messages", NULL, NULL), 404);
    /* the room itself (version 2): GET, PATCH and DELETE reach the app */
    cr_assert_eq(ROUTE(&full, "GET", "/api/rooms/lobby", NULL, NULL), 200);
    rec.route = NULL;
    cr_assert_eq(ROUTE(&full, "GET", "/api/rooms/lobby/messages/x", NULL, NULL), 404);
    cr_assert_eq(ROUTE(&full, "GET", "/api/rooms/lobby/other", NULL, NULL), 404);
    cr_assert_null(rec.route, "no room route ran");
    char name[200];
    memset(name, 'r', 127);
    name[127] = '\0';
    snprintf(url, sizeof url, "/api/rooms/%s/messages", name);
    cr_assert_eq(ROUTE(&full, "GET", url, NULL, NULL), 200, "127 bytes fit");
    cr_assert_eq(strlen(rec.arg), 127);
    memset(name, 'r', 128);
    name[128] = '\0';
    snprintf(url, sizeof url, "/api/rooms/%s/messages", name);
    cr_assert_eq(ROUTE(&full, "GET", url, NULL, NULL), 400);
    cr_assert_str_eq(code, "BAD_REQUEST");
    rec.answer = 0;
    cr_assert_eq(ROUTE(&full, "GET", "/api/rooms/a/messages", NULL, NULL), 500);
    check_leaks();
}

/* Version 2: the rooms API's routes, methods and media type. */
Test(http, rooms_routes)
{
    char code[64];
    static const struct {
        const char *method, *url, *want;
    } ok[] = {
        {"GET", "/api/rooms", "GET - -"},
        {"GET", "/api/rooms/den", "GET den -"},
        {"POST", "/api/rooms", "POST - -"},
        {"PATCH", "/api/rooms/den", "PATCH den -"},
        {"DELETE", "/api/rooms/den", "DELETE den -"},
        {"POST", "/api/rooms/den/kick", "POST den kick"},
        {"POST", "/api/rooms/den/announce", "POST den announce"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        rec = (recorder){.answer = 1};
        cr_assert_eq(route(&full, ok[i].method, ok[i].url, NULL, NULL, code, sizeof code), 200,
                     "%s %s", ok[i].method, ok[i].url);
        cr_assert_str_eq(rec.route, "rooms");
        cr_assert_str_eq(rec.arg, ok[i].want);
    }
    rec = (recorder){.answer = 1};
    cr_assert_eq(route(&full, "POST", "/api/announce", NULL, NULL, code, sizeof code), 202);
    cr_assert_str_eq(rec.route, "announce");
    static const struct {
        const char *method, *url;
        int status;
    } refused[] = {
        {"PUT", "/api/rooms", 405},
        {"PUT", "/api/rooms/den", 405},
        {"POST", "/api/rooms/den", 405},
        {"GET", "/api/rooms/den/kick", 405},
        {"DELETE", "/api/rooms/den/announce", 405},
        {"POST", "/api/rooms/den/other", 404},
        {"POST", "/api/rooms//kick", 404},
        {"GET", "/api/announce", 405},
        {"DELETE", "/api/rooms/den/messages", 405},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        rec = (recorder){.answer = 1};
        cr_assert_eq(route(&full, refused[i].method, refused[i].url, NULL, NULL, code, sizeof code),
                     refused[i].status, "%s %s", refused[i].method, refused[i].url);
        cr_assert_null(rec.route, "%s %s reached the app", refused[i].method, refused[i].url);
    }
    /* a JSON body only: another media type is 415; none given is fine */
    http_request req = {.body = "{}", .body_len = 2, .content_type = "text/plain"};
    rec = (recorder){.answer = 1};
    cr_assert_eq(route(&full, "POST", "/api/rooms", NULL, &req, code, sizeof code), 415);
    req.content_type = "application/json; charset=utf-8";
    cr_assert_eq(route(&full, "POST", "/api/rooms", NULL, &req, code, sizeof code), 200);
    /* the room messages route still answers under /api/rooms */
    rec = (recorder){.answer = 1};
    cr_assert_eq(route(&full, "GET", "/api/rooms/den/messages", NULL, NULL, code, sizeof code),
                 200);
    cr_assert_str_eq(rec.route, "room");
    /* a route the app leaves unanswered is a 500, not a hang */
    rec = (recorder){0};
    cr_assert_eq(route(&full, "GET", "/api/rooms", NULL, NULL, code, sizeof code), 500);
}

Test(http, assets_and_other_methods)
{
    char code[64];
    cr_assert_eq(ROUTE(&empty, "GET", "/", NULL, NULL), 200);
    cr_assert_eq(ROUTE(&empty, "HEAD", "/", NULL, NULL), 200);
    cr_assert_eq(ROUTE(&empty, "GET", "/no-such-file", NULL, NULL), 404);
    cr_assert_eq(ROUTE(&full, "POST", "/", NULL, NULL), 405);
    cr_assert_eq(ROUTE(&full, "PUT", "/api/health", NULL, NULL), 405);
    cr_assert_str_eq(code, "METHOD_NOT_ALLOWED");
    check_leaks();
}

Test(http, reply_helpers_survive_allocation_failure)
{
    http_reply r = {0};
    /* the JSON error cannot be built: a fixed body still says what happened */
    for (unsigned long n = 1; n <= 3; n++) {
        mem_fail_at(n);
        http_reply_error(&r, 503, "UNAVAILABLE", "x");
        mem_fail_at(0);
        cr_assert_eq(r.status, 503);
        if (r.body)
            cr_assert_not_null(strstr(r.body, "\"error\""));
    }
    /* a route whose body could not be built answers 500, not an empty 200 */
    http_reply_json(&r, 200, NULL);
    cr_assert_eq(r.status, 500);
    cr_assert_not_null(strstr(r.body, "\"INTERNAL\""), "%s", r.body);
    mem_free(r.body);
    check_leaks();
}

/* ---- body cap ------------------------------------------------------------ */

Test(http, body_cap)
{
    cr_assert(!http_body_declared_too_large(NULL));
    cr_assert(!http_body_declared_too_large("65536"));
    cr_assert(http_body_declared_too_large("65537"));
    cr_assert(http_body_declared_too_large("99999999999999999999"));

    static char chunk[4096];
    memset(chunk, 'a', sizeof chunk);
    http_body b = {0};
    for (int i = 0; i < 16; i++)
        cr_assert_eq(http_body_append(&b, chunk, sizeof chunk), 0);
    cr_assert_eq(b.len, HTTP_MAX_BODY, "exactly 64 KiB is accepted");
    cr_assert(!b.too_large);
    cr_assert_eq(b.data[b.len], '\0');
    cr_assert_eq(http_body_append(&b, "x", 1), 0);
    cr_assert(b.too_large);
    cr_assert_null(b.data, "the body is dropped past the cap");
    cr_assert_eq(http_body_append(&b, "x", 1), 0);
    cr_assert_eq(b.len, 0);
    http_body_clear(&b);

    b = (http_body){0};
    mem_fail_at(1);
    cr_assert_eq(http_body_append(&b, "x", 1), -1);
    mem_fail_at(0);
    cr_assert_null(b.data);
    http_body_clear(&b);
    check_leaks();
}

/* ---- the real server ----------------------------------------------------- */

/* Sends raw bytes to the server and returns what it answered (until it
 * closes or one second passes without data). */
/* Sends req to addr and reads the answer until the server closes. */
static size_t exchange_at(const struct sockaddr *addr, socklen_t alen, const char *req, size_t len,
                          char *out, size_t cap)
{
    int fd = socket(addr->sa_family, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, addr, alen), 0);
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server may answer 413 and close before the body is sent */
        sent += (size_t)n;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == cap - 1)
            break;
    }
    out[got] = '\0';
    close(fd);
    return got;
}

static size_t exchange(int port, const char *req, size_t len, char *out, size_t cap)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return exchange_at((struct sockaddr *)&a, sizeof a, req, len, out, cap);
}

Test(http, real_server_answers)
{
    char err[200];
    memset(&rec, 0, sizeof rec);
    rec.answer = 1;
    http_server *s = http_server_start("127.0.0.1", 0, 1, &full, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    int port = http_server_port(s);
    cr_assert_gt(port, 0);
    static char out[200000];

    const char *offer = "POST /api/rtc?room=r1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        "Content-Type: application/sdp\r\nAuthorization: Bearer t\r\n"
                        "Content-Length: 3\r\n\r\nv=0";
    exchange(port, offer, strlen(offer), out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 201", 12) == 0, "%s", out);
    cr_assert_not_null(strstr(out, "Location: /api/rtc/s1"), "%s", out);
    cr_assert_not_null(strstr(out, "Cache-Control: no-store"), "%s", out);
    cr_assert_str_eq(rec.room_param, "r1");
    cr_assert_str_eq(rec.arg, "v=0");

    const char *get = "GET /api/rooms/lobby/messages?limit=3 HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\n\r\n";
    exchange(port, get, strlen(get), out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 200", 12) == 0, "%s", out);
    cr_assert_not_null(strstr(out, "{\"messages\":[]}"));

    const char *asset = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    exchange(port, asset, strlen(asset), out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 200", 12) == 0, "%s", out);
    cr_assert_not_null(strstr(out, "Cache-Control: no-cache"));

    const char *missing = "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    exchange(port, missing, strlen(missing), out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 404", 12) == 0, "%s", out);

    /* declared too large: refused before the body is read */
    const char *declared = "POST /api/rtc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           "Content-Type: application/sdp\r\nContent-Length: 70000\r\n\r\n";
    exchange(port, declared, strlen(declared), out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 413", 12) == 0, "%s", out);

    /* chunked, so the size is only known while reading: 413 after the body */
    static char big[80000];
    size_t n = (size_t)snprintf(big, sizeof big,
                                "POST /api/rtc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                "Content-Type: application/sdp\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 17; i++) {
        n += (size_t)snprintf(big + n, sizeof big - n, "1000\r\n");
        memset(big + n, 'a', 4096);
        n += 4096;
        n += (size_t)snprintf(big + n, sizeof big - n, "\r\n");
    }
    n += (size_t)snprintf(big + n, sizeof big - n, "0\r\n\r\n");
    rec.route = NULL;
    exchange(port, big, n, out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 413", 12) == 0, "%s", out);
    cr_assert_null(rec.route, "the application never saw the body");

    http_server_quiesce(s);
    http_server_stop(s);
    http_server_stop(NULL);
    check_leaks();
}

/* POST /api/rtc with an X-Real-IP header (NULL: none); rec has what the
 * application saw. */
static void offer_with_real_ip(int port, const char *real_ip)
{
    static char out[4096];
    char req[512];
    snprintf(req, sizeof req,
             "POST /api/rtc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s%s"
             "Content-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0",
             real_ip ? "X-Real-IP: " : "", real_ip ? real_ip : "", real_ip ? "\r\n" : "");
    memset(&rec, 0, sizeof rec);
    rec.answer = 1;
    exchange(port, req, strlen(req), out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 201", 12) == 0, "%s", out);
}

Test(http, trusted_proxy_names_the_client)
{
    char err[200];
    cr_assert_eq(http_trust_proxy("not-an-address"), -1);
    cr_assert_eq(http_trust_proxy("::1"), 0);
    cr_assert_eq(http_trust_proxy("127.0.0.1"), 0);
    http_server *s = http_server_start("127.0.0.1", 0, 1, &full, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    int port = http_server_port(s);
    offer_with_real_ip(port, "203.0.113.9");
    cr_assert_str_eq(rec.remote_addr, "203.0.113.9", "the limits count the client");
    cr_assert_eq(rec.loopback, 0, "the client is not on this machine");
    cr_assert(strncmp(rec.remote, "203.0.113.9 (via 127.0.0.1:", 27) == 0, "%s", rec.remote);
    offer_with_real_ip(port, "2001:db8:1:2::7");
    cr_assert_str_eq(rec.remote_addr, "2001:db8:1:2::/64");
    /* no header, or one that is not an address: the proxy itself */
    offer_with_real_ip(port, NULL);
    cr_assert_str_eq(rec.remote_addr, "127.0.0.1");
    cr_assert_eq(rec.loopback, 1);
    offer_with_real_ip(port, "203.0.113.9, 10.0.0.1");
    cr_assert_str_eq(rec.remote_addr, "127.0.0.1", "%s", rec.remote);
    http_server_quiesce(s);
    http_server_stop(s);
    for (int i = 2; i < HTTP_MAX_TRUSTED_PROXIES; i++)
        cr_assert_eq(http_trust_proxy("192.0.2.1"), 0);
    cr_assert_eq(http_trust_proxy("192.0.2.2"), -1, "the table is full");
    check_leaks();
}

Test(http, an_untrusted_peer_cannot_name_another_client)
{
    char err[200];
    http_server *s = http_server_start("127.0.0.1", 0, 1, &full, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    offer_with_real_ip(http_server_port(s), "203.0.113.9");
    cr_assert_str_eq(rec.remote_addr, "127.0.0.1", "the header is not believed");
    cr_assert_eq(rec.loopback, 1);
    http_server_quiesce(s);
    http_server_stop(s);
    check_leaks();
}

Test(http, start_failures)
{
    char err[200];
    cr_assert_null(http_server_start("not-an-address", 0, 1, &full, NULL, err, sizeof err));
    cr_assert_not_null(strstr(err, "bad listen address"), "%s", err);
    http_server *s = http_server_start("127.0.0.1", 0, 0, &full, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cr_assert_null(
        http_server_start("127.0.0.1", http_server_port(s), 1, &full, NULL, err, sizeof err),
        "the port is in use");
    cr_assert_not_null(strstr(err, "cannot listen"), "%s", err);
    mem_fail_at(1);
    cr_assert_null(http_server_start("127.0.0.1", 0, 1, &full, NULL, err, sizeof err));
    mem_fail_at(0);
    cr_assert_str_eq(err, "out of memory");
    http_server_stop(s);
    http_server *s6 = http_server_start("::1", 0, 1, &full, NULL, err, sizeof err);
    if (s6) /* IPv6 loopback may be absent in a container */
        http_server_stop(s6);
    check_leaks();
}

static const char offer_req[] = "POST /api/rtc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                "Content-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0";

/* The application sees the client's address and port, IPv4 or IPv6. */
Test(http, remote_address_of_each_family)
{
    char err[200], out[4096], want[64];
    memset(&rec, 0, sizeof rec);
    rec.answer = 1;
    http_server *s = http_server_start("127.0.0.1", 0, 1, &full, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    exchange(http_server_port(s), offer_req, strlen(offer_req), out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 201", 12) == 0, "%s", out);
    snprintf(want, sizeof want, "127.0.0.1:");
    cr_assert(strncmp(rec.remote, want, strlen(want)) == 0, "%s", rec.remote);
    cr_assert_gt(atoi(rec.remote + strlen(want)), 0, "%s", rec.remote);
    http_server_stop(s);

    s = http_server_start("::1", 0, 1, &full, NULL, err, sizeof err);
    if (s == NULL) {
        check_leaks();
        cr_skip_test("no IPv6 loopback here: %s", err);
    }
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
                              .sin6_port = htons((uint16_t)http_server_port(s))};
    a6.sin6_addr = in6addr_loopback;
    memset(&rec, 0, sizeof rec);
    rec.answer = 1;
    exchange_at((struct sockaddr *)&a6, sizeof a6, offer_req, strlen(offer_req), out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 201", 12) == 0, "%s", out);
    cr_assert(strncmp(rec.remote, "::1:", 4) == 0, "%s", rec.remote);
    http_server_stop(s);
    check_leaks();
}

/* Memory runs out on the server's thread while a request arrives (its
 * body record, then the body itself): that connection is dropped, nothing
 * leaks, and the next request is served. */
Test(http, allocation_failure_while_serving)
{
    char err[200];
    static char out[8192];
    memset(&rec, 0, sizeof rec);
    rec.answer = 1;
    http_server *s = http_server_start("127.0.0.1", 0, 1, &full, NULL, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    int port = http_server_port(s);
    for (unsigned long n = 1; n <= 2; n++) {
        rec.route = NULL;
        unsigned long before = mem_failures();
        mem_fail_at(n);
        exchange(port, offer_req, strlen(offer_req), out, sizeof out);
        mem_fail_at(0);
        cr_assert_eq(mem_failures(), before + 1, "allocation %lu failed", n);
        cr_assert_null(rec.route, "allocation %lu: the request reached the application", n);
        cr_assert(strncmp(out, "HTTP/1.1 201", 12) != 0, "%s", out);
        exchange(port, offer_req, strlen(offer_req), out, sizeof out);
        cr_assert(strncmp(out, "HTTP/1.1 201", 12) == 0, "then served: %s", out);
        cr_assert_str_eq(rec.route, "offer");
    }
    http_server_stop(s);
    check_leaks();
}
