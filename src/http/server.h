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
 *   GET    /api/rooms/NAME/messages     -> room_messages
 *   GET    /metrics                     -> metrics
 *   GET    / and web assets             -> embedded files (web_assets.h)
 *
 * Threading: libmicrohttpd runs a small fixed pool of threads; callbacks run
 * on them and may block briefly (never on the network).
 */
#ifndef CHATD_HTTP_SERVER_H
#define CHATD_HTTP_SERVER_H

#include <stddef.h>

#define HTTP_MAX_BODY (64 * 1024)

typedef struct http_server http_server;

typedef struct {
    int status;
    const char *content_type; /* static string */
    char *body;               /* mem_alloc'd; the server frees it */
    size_t body_len;
    char location[160];       /* Location header when non-empty */
} http_reply;

typedef struct {
    const char *remote;        /* "ADDR:PORT" of the client */
    const char *bearer;        /* token from "Authorization: Bearer", or NULL */
    const char *room;          /* ?room=, or NULL */
    const char *content_type;  /* or NULL */
    const char *body;
    size_t body_len;
    const char *limit, *before; /* query parameters for room_messages */
} http_request;

typedef struct {
    void (*rtc_offer)(void *app, const http_request *req, http_reply *r);
    void (*rtc_delete)(void *app, const char *id, http_reply *r);
    void (*health)(void *app, http_reply *r);
    void (*jwks)(void *app, http_reply *r);
    void (*room_messages)(void *app, const char *room, const http_request *req, http_reply *r);
    void (*metrics)(void *app, http_reply *r);
} http_app;

/* Binds host:port (port 0 = any free port) and starts serving.
 * NULL + err on failure. */
http_server *http_server_start(const char *host, int port, int threads, const http_app *app,
                               void *arg, char *err, size_t errlen);
int http_server_port(const http_server *s);
/* Stops accepting new connections (first step of a graceful stop). */
void http_server_quiesce(http_server *s);
void http_server_stop(http_server *s);

/* Helpers for route callbacks: set a JSON body (takes ownership of a
 * mem_alloc'd string) or a JSON error {"error":{"code","message"}}. */
void http_reply_json(http_reply *r, int status, char *json);
void http_reply_error(http_reply *r, int status, const char *code, const char *message);

#endif
