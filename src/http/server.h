/*
 * server — chatd's HTTP side on libmicrohttpd.
 *
 * The server owns the sockets, request parsing, body limits and the JSON
 * error format; what a route means is the application's, behind the
 * http_app table of callbacks (NULL entries answer 404). Routes:
 *
 *   POST   /api/rtc[?room=NAME]         -> rtc_offer     (application/sdp, <= 64 KiB)
 *   DELETE /api/rtc/ID                  -> rtc_delete
 *   GET    /api/health                  -> health
 *   GET    /.well-known/jwks.json       -> jwks
 *   GET    /api/rooms/NAME/messages     -> room_messages (?limit, ?before, ?q)
 *   GET    /api/rooms, POST /api/rooms  -> rooms (room NULL)
 *   GET, PATCH, DELETE /api/rooms/NAME  -> rooms (room NAME, action NULL)
 *   POST   /api/rooms/NAME/kick|announce -> rooms (room NAME, action "kick"|"announce")
 *   POST   /api/announce                -> announce
 * (version 2: JSON bodies, Content-Type application/json when given)
 *   GET    /metrics                     -> metrics
 *   GET    / and web assets             -> embedded files (web_assets.h)
 *
 * Over plain HTTP, or HTTPS with a certificate that can be replaced while
 * serving (http_server_start_tls, http/tls.h).
 *
 * Limits against slow or greedy clients (docs/SECURITY.md): at most
 * HTTP_PER_ADDRESS_CONNECTIONS connections per address (libmicrohttpd
 * refuses more at accept), HTTP_MAX_CONNECTIONS in all, a connection idle
 * for HTTP_IDLE_TIMEOUT_S is closed, and a request body must arrive within
 * HTTP_BODY_DEADLINE_S of its headers (so a client cannot hold a slot by
 * sending one byte just before each idle timeout). Headers are bounded by
 * libmicrohttpd's per-connection memory (HTTP_CONNECTION_MEMORY) and the
 * idle timeout; the per-address cap is what keeps a slowloris from one
 * machine from taking the slots other clients need.
 *
 * Threading: libmicrohttpd runs a small fixed pool of threads; callbacks run
 * on them and may block briefly (never on the network).
 * Ownership: the caller owns the http_server (http_server_stop frees it);
 * the http_app table is copied, its arg must outlive the server. A reply's
 * body is mem_alloc'd by the callback and freed by the server once sent.
 */
#ifndef CHATD_HTTP_SERVER_H
#define CHATD_HTTP_SERVER_H

#include "http/web_assets.h"
#include "util/limits.h"

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_BODY LIMIT_HTTP_BODY_BYTES
/* libmicrohttpd's threads. Twice the slow-hash checks that may run at
 * once (auth/secret.h), so that rooms' secret checks never hold every
 * thread and health, offers and the rest keep answering. */
#define HTTP_THREADS 4
#define HTTP_PER_ADDRESS_CONNECTIONS 32
#define HTTP_MAX_CONNECTIONS 4000
#define HTTP_IDLE_TIMEOUT_S 10
#define HTTP_BODY_DEADLINE_S 10
#define HTTP_CONNECTION_MEMORY (32 * 1024)

typedef struct http_server http_server;

typedef struct {
    int status;
    const char *content_type; /* static string */
    char *body;               /* mem_alloc'd; the server frees it */
    size_t body_len;
    char location[160]; /* Location header when non-empty */
    int retry_after;    /* Retry-After header, in seconds, when > 0 (429, 503) */
} http_reply;

typedef struct {
    const char *remote; /* "ADDR:PORT" of the client */
    /* What per-address limits count by: the IPv4 address, or the /64 of an
     * IPv6 one ("2001:db8:1:2::/64"), since one machine holds a whole /64. */
    const char *remote_addr;
    int remote_is_loopback;   /* the client connected over loopback: it runs on this machine */
    const char *bearer;       /* token from "Authorization: Bearer", or NULL */
    const char *room;         /* ?room=, or NULL */
    const char *content_type; /* or NULL */
    const char *body;
    size_t body_len;
    const char *limit, *before; /* query parameters for room_messages */
    const char *q;              /* ?q= (search), or NULL */
    const char *since;          /* ?since= on POST /api/rtc, or NULL */
    const char *pin;            /* the X-Room-Pin header, or NULL */
} http_request;

typedef struct {
    void (*rtc_offer)(void *app, const http_request *req, http_reply *r);
    void (*rtc_delete)(void *app, const http_request *req, const char *id, http_reply *r);
    void (*health)(void *app, http_reply *r);
    void (*jwks)(void *app, http_reply *r);
    void (*room_messages)(void *app, const char *room, const http_request *req, http_reply *r);
    void (*metrics)(void *app, http_reply *r);
    void (*rooms)(void *app, const char *method, const char *room, const char *action,
                  const http_request *req, http_reply *r);
    void (*announce)(void *app, const http_request *req, http_reply *r);
} http_app;

/* Binds host:port (port 0 = any free port) and starts serving.
 * NULL + err on failure. */
/* A front door (nginx, docs/DEPLOY.md) whose requests name their client
 * in an X-Real-IP header: for requests from `addr` (an IPv4 or IPv6
 * address), remote, remote_addr and remote_is_loopback are the header's
 * address (the proxy's when the header is missing or not an address), so
 * per-address limits count clients, not the proxy. Nobody else's header
 * is believed. Call before http_server_start; at most
 * HTTP_MAX_TRUSTED_PROXIES. 0, or -1 when addr is not an address or the
 * table is full. */
#define HTTP_MAX_TRUSTED_PROXIES 8
int http_trust_proxy(const char *addr);

http_server *http_server_start(const char *host, int port, int threads, const http_app *app,
                               void *arg, char *err, size_t errlen);
/* The same serving HTTPS with tls's certificate (http/tls.h): a
 * http_tls_reload reaches new connections at once, without a restart. tls
 * must outlive the server; NULL is plain HTTP. */
typedef struct http_tls http_tls;
http_server *http_server_start_tls(const char *host, int port, int threads, const http_app *app,
                                   void *arg, http_tls *tls, char *err, size_t errlen);
int http_server_port(const http_server *s);
/* Stops accepting new connections (first step of a graceful stop). */
void http_server_quiesce(http_server *s);
void http_server_stop(http_server *s);

/* Helpers for route callbacks: set a JSON body (takes ownership of a
 * mem_alloc'd string; NULL, from a failed allocation, answers 500 INTERNAL)
 * or a JSON error {"error":{"code","message"}}. */
void http_reply_json(http_reply *r, int status, char *json);
void http_reply_error(http_reply *r, int status, const char *code, const char *message);

/*
 * The request -> answer decision, without a socket: the server's callbacks
 * only copy what libmicrohttpd parsed into these, so unit tests and the
 * fuzzer (tests/fuzz/fuzz_http.c) drive exactly the code that serves.
 */

/* A request body collected under the HTTP_MAX_BODY cap. */
typedef struct {
    char *data; /* NUL-terminated; NULL while nothing arrived */
    size_t len;
    int too_large;      /* past the cap: the rest is dropped and the answer is 413 */
    int64_t started_us; /* the headers were complete (monotonic clock) */
} http_body;

/* True when a body that began at started_us is past HTTP_BODY_DEADLINE_S
 * at now_us: the server then drops the connection. */
int http_body_late(const http_body *b, int64_t now_us);

struct sockaddr;
/* The per-address key of a client (http_request.remote_addr) into out. */
void http_remote_key(const struct sockaddr *sa, char *out, size_t cap);

/* True when a Content-Length value (NULL: absent) declares more than the cap. */
int http_body_declared_too_large(const char *content_length);
/* Adds n bytes, or drops everything once the total passes the cap.
 * Returns -1 when out of memory (the server then drops the connection). */
int http_body_append(http_body *b, const char *data, size_t n);
void http_body_clear(http_body *b);

/* Decides the answer to one complete request (method, URL path without the
 * query, `authorization` the raw header or NULL; req->bearer is set from
 * it). Returns the embedded web asset to serve, leaving r untouched, or
 * NULL with the answer in r (its body is the caller's to free). */
const web_asset *http_route(const http_app *app, void *arg, const char *method, const char *url,
                            const char *authorization, http_request *req, http_reply *r);

#endif
