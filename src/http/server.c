/*
 * server — see server.h.
 *
 * A request's body is collected into a buffer capped at HTTP_MAX_BODY; past
 * that the rest is read and dropped and the answer is 413, so a client
 * cannot make chatd hold more than 64 KiB per request. A declared
 * Content-Length over the cap is refused before the body is read.
 */
#include "http/server.h"

#include "http/tls.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/json_text.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/netaddr.h"

#include <arpa/inet.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* GnuTLS priority string of the HTTPS server. */
#define HTTP_TLS_PRIORITIES "NORMAL:-VERS-TLS1.0:-VERS-TLS1.1"

struct http_server {
    struct MHD_Daemon *daemon;
    http_app app;
    void *arg;
    int port;
    http_tls *tls; /* NULL: plain HTTP */
};

#define OUT_OF_MEMORY_BODY "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"out of memory\"}}"

/* Sets a JSON body (may be NULL: then the body is empty). */
static void set_json(http_reply *r, int status, char *json)
{
    r->status = status;
    r->content_type = "application/json";
    mem_free(r->body);
    r->body = json;
    r->body_len = json ? strlen(json) : 0;
}

void http_reply_json(http_reply *r, int status, char *json)
{
    if (json == NULL) /* the route ran out of memory building it */
        set_json(r, 500, mem_strdup(OUT_OF_MEMORY_BODY));
    else
        set_json(r, status, json);
}

void http_reply_error(http_reply *r, int status, const char *code, const char *message)
{
    json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    char *s = o ? json_text_compact(o) : NULL;
    json_decref(o);
    if (s == NULL) /* out of memory: a fixed body still tells the client */
        s = mem_strdup(OUT_OF_MEMORY_BODY);
    set_json(r, status, s);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, http_reply *r)
{
    struct MHD_Response *resp;
    if (r->body) {
        resp = MHD_create_response_from_buffer_with_free_callback(r->body_len, r->body, mem_free);
        r->body = NULL;
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL)
        return MHD_NO;
    if (r->content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    if (r->location[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
    if (r->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

void http_remote_key(const struct sockaddr *sa, char *out, size_t cap)
{
    out[0] = '\0';
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    } else if (sa->sa_family == AF_INET6) {
        struct in6_addr a = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&a)) { /* an IPv4 client on a dual-stack socket */
            inet_ntop(AF_INET, &a.s6_addr[12], out, (socklen_t)cap);
            return;
        }
        memset(&a.s6_addr[8], 0, 8);
        char buf[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &a, buf, sizeof buf))
            snprintf(out, cap, "%s/64", buf);
    }
}

/* --trusted-proxy: written before the server starts, read-only after. */
static struct sockaddr_storage trusted[HTTP_MAX_TRUSTED_PROXIES];
static int n_trusted;

/* addr as a socket address (port 0); 1, or 0 when it is not an address. */
static int parse_addr(const char *addr, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (addr && inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        return 1;
    }
    if (addr && inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        return 1;
    }
    return 0;
}

int http_trust_proxy(const char *addr)
{
    if (n_trusted == HTTP_MAX_TRUSTED_PROXIES || !parse_addr(addr, &trusted[n_trusted]))
        return -1;
    n_trusted++;
    return 0;
}

static int is_trusted(const struct sockaddr *sa)
{
    for (int i = 0; i < n_trusted; i++) {
        const struct sockaddr *t = (const struct sockaddr *)&trusted[i];
        if (t->sa_family != sa->sa_family)
            continue;
        if (sa->sa_family == AF_INET &&
            memcmp(&((const struct sockaddr_in *)t)->sin_addr,
                   &((const struct sockaddr_in *)sa)->sin_addr, sizeof(struct in_addr)) == 0)
            return 1;
        if (sa->sa_family == AF_INET6 &&
            memcmp(&((const struct sockaddr_in6 *)t)->sin6_addr,
                   &((const struct sockaddr_in6 *)sa)->sin6_addr, sizeof(struct in6_addr)) == 0)
            return 1;
    }
    return 0;
}

/* The client's "ADDR:PORT" into out and its per-address key into key;
 * returns 1 when it is a loopback address (the client runs on this
 * machine). Behind a trusted proxy, the client is the one its X-Real-IP
 * names: "ADDR (via PROXY:PORT)". */
static int remote_of(struct MHD_Connection *c, char *out, size_t cap, char *key, size_t keycap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    key[0] = '\0';
    if (ci == NULL || ci->client_addr == NULL)
        return 0;
    char host[64], serv[16];
    socklen_t len = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                           : sizeof(struct sockaddr_in);
    if (getnameinfo(ci->client_addr, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(out, cap, "%s:%s", host, serv);
    struct sockaddr_storage client;
    const char *real = n_trusted && is_trusted(ci->client_addr)
                           ? MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Real-IP")
                           : NULL;
    if (real && strlen(real) < 64 && parse_addr(real, &client)) {
        char via[96]; /* "ADDR:PORT" from getnameinfo above: under 64 + 16 */
        snprintf(via, sizeof via, "%.80s", out);
        snprintf(out, cap, "%s (via %s)", real, via);
        http_remote_key((struct sockaddr *)&client, key, keycap);
        return netaddr_is_loopback((struct sockaddr *)&client);
    }
    http_remote_key(ci->client_addr, key, keycap);
    return netaddr_is_loopback(ci->client_addr);
}

/* True when the media type (before any ';') equals `want`, case-insensitively. */
static int media_type_is(const char *ct, const char *want)
{
    if (ct == NULL)
        return 0;
    while (*ct == ' ')
        ct++;
    size_t n = strlen(want);
    return strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

int http_body_declared_too_large(const char *content_length)
{
    return content_length && strtoull(content_length, NULL, 10) > HTTP_MAX_BODY;
}

int http_body_append(http_body *b, const char *data, size_t n)
{
    if (!b->too_large && b->len + n > HTTP_MAX_BODY) {
        b->too_large = 1;
        mem_free(b->data);
        b->data = NULL;
        b->len = 0;
    }
    if (b->too_large)
        return 0;
    char *nb = mem_realloc(b->data, b->len + n + 1);
    if (nb == NULL)
        return -1;
    memcpy(nb + b->len, data, n);
    b->len += n;
    nb[b->len] = '\0';
    b->data = nb;
    return 0;
}

int http_body_late(const http_body *b, int64_t now_us)
{
    return now_us - b->started_us > (int64_t)HTTP_BODY_DEADLINE_S * 1000000;
}

void http_body_clear(http_body *b)
{
    mem_free(b->data);
    b->data = NULL;
    b->len = 0;
}

/* A JSON body's media type: application/json, or none given. 0 after
 * answering 415. */
static int json_body_ok(const http_request *req, http_reply *r)
{
    if (req->content_type == NULL || media_type_is(req->content_type, "application/json"))
        return 1;
    http_reply_error(r, 415, "UNSUPPORTED_MEDIA_TYPE", "send the body as application/json");
    return 0;
}

/* /api/rooms and below, but GET .../messages (left to the caller: 0).
 * rest is what follows "/api/rooms". 1 when answered. */
static int route_rooms(const http_app *app, void *arg, const char *method, const char *rest,
                       http_request *req, http_reply *r)
{
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
        if (!is_get && strcmp(method, "POST") != 0) {
            http_reply_error(r, 405, "METHOD_NOT_ALLOWED", "use GET or POST");
            return 1;
        }
        if (!is_get && !json_body_ok(req, r))
            return 1;
        app->rooms(arg, is_get ? "GET" : "POST", NULL, NULL, req, r);
        return 1;
    }
    const char *name = rest + 1, *slash = strchr(name, '/');
    size_t nl = slash ? (size_t)(slash - name) : strlen(name);
    char room[128];
    if (nl == 0) {
        http_reply_error(r, 404, "NOT_FOUND", "no such resource");
        return 1;
    }
    if (nl >= sizeof room) {
        http_reply_error(r, 400, "BAD_REQUEST", "room name too long");
        return 1;
    }
    memcpy(room, name, nl);
    room[nl] = '\0';
    const char *action = NULL;
    if (slash == NULL) {
        if (is_get) {
            app->rooms(arg, "GET", room, NULL, req, r);
            return 1;
        }
        if (strcmp(method, "PATCH") != 0 && strcmp(method, "DELETE") != 0) {
            http_reply_error(r, 405, "METHOD_NOT_ALLOWED", "use GET, PATCH or DELETE");
            return 1;
        }
    } else if (strcmp(slash, "/messages") == 0) {
        return 0;
    } else if (strcmp(slash, "/kick") == 0 || strcmp(slash, "/announce") == 0) {
        action = slash + 1;
        if (strcmp(method, "POST") != 0) {
            http_reply_error(r, 405, "METHOD_NOT_ALLOWED", "use POST with a JSON body");
            return 1;
        }
    } else {
        http_reply_error(r, 404, "NOT_FOUND", "no such resource");
        return 1;
    }
    if (!json_body_ok(req, r))
        return 1;
    app->rooms(arg, method, room, action, req, r);
    return 1;
}

const web_asset *http_route(const http_app *app, void *arg, const char *method, const char *url,
                            const char *authorization, http_request *req, http_reply *r)
{
    if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0) {
        req->bearer = authorization + 7;
        while (*req->bearer == ' ')
            req->bearer++;
    }
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    if (strcmp(url, "/api/rtc") == 0) {
        if (strcmp(method, "POST") != 0) {
            http_reply_error(r, 405, "METHOD_NOT_ALLOWED", "use POST with an SDP offer");
            return NULL;
        }
        if (!media_type_is(req->content_type, "application/sdp")) {
            http_reply_error(r, 415, "UNSUPPORTED_MEDIA_TYPE",
                             "the offer must be sent as Content-Type: application/sdp");
            return NULL;
        }
        if (app->rtc_offer == NULL) {
            http_reply_error(r, 404, "NOT_FOUND", "no such resource");
            return NULL;
        }
        app->rtc_offer(arg, req, r);
    } else if (strncmp(url, "/api/rtc/", 9) == 0) {
        if (strcmp(method, "DELETE") != 0) {
            http_reply_error(r, 405, "METHOD_NOT_ALLOWED", "use DELETE to end a session");
            return NULL;
        }
        if (app->rtc_delete == NULL) {
            http_reply_error(r, 404, "NOT_FOUND", "no such resource");
            return NULL;
        }
        app->rtc_delete(arg, req, url + 9, r);
    } else if (strcmp(url, "/api/announce") == 0 && app->announce) {
        if (strcmp(method, "POST") != 0) {
            http_reply_error(r, 405, "METHOD_NOT_ALLOWED", "use POST with a JSON body");
            return NULL;
        }
        if (!json_body_ok(req, r))
            return NULL;
        app->announce(arg, req, r);
    } else if (strncmp(url, "/api/rooms", 10) == 0 && (url[10] == '\0' || url[10] == '/') &&
               app->rooms && route_rooms(app, arg, method, url + 10, req, r)) {
        /* answered (or refused) by route_rooms */
    } else if (!is_get) {
        http_reply_error(r, 405, "METHOD_NOT_ALLOWED", "method not allowed here");
        return NULL;
    } else if (strcmp(url, "/api/health") == 0 && app->health) {
        app->health(arg, r);
    } else if (strcmp(url, "/.well-known/jwks.json") == 0 && app->jwks) {
        app->jwks(arg, r);
    } else if (strcmp(url, "/metrics") == 0 && app->metrics) {
        app->metrics(arg, r);
    } else if (strncmp(url, "/api/rooms/", 11) == 0 && app->room_messages) {
        const char *name = url + 11;
        const char *slash = strchr(name, '/');
        if (slash == NULL || strcmp(slash, "/messages") != 0 || slash == name) {
            http_reply_error(r, 404, "NOT_FOUND", "no such resource");
            return NULL;
        }
        char room[128];
        size_t nl = (size_t)(slash - name);
        if (nl >= sizeof room) {
            http_reply_error(r, 400, "BAD_REQUEST", "room name too long");
            return NULL;
        }
        memcpy(room, name, nl);
        room[nl] = '\0';
        app->room_messages(arg, room, req, r);
    } else {
        const web_asset *a = web_asset_find(url);
        if (a == NULL)
            http_reply_error(r, 404, "NOT_FOUND", "no such resource");
        return a;
    }
    if (r->status == 0)
        http_reply_error(r, 500, "INTERNAL", "no answer");
    return NULL;
}

static enum MHD_Result send_asset(struct MHD_Connection *c, const web_asset *a)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(a->size, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Copies what libmicrohttpd parsed into an http_request and answers. */
static enum MHD_Result dispatch(http_server *s, struct MHD_Connection *c, const char *url,
                                const char *method, http_body *body)
{
    http_reply r = {0};
    http_request req = {0};
    char remote[176], key[64];
    req.remote_is_loopback = remote_of(c, remote, sizeof remote, key, sizeof key);
    req.remote = remote;
    req.remote_addr = key;
    req.room = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "room");
    req.limit = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    req.before = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "before");
    req.q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
    req.since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
    req.pin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Room-Pin");
    req.content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    req.body = body->data ? body->data : "";
    req.body_len = body->len;
    const web_asset *a = http_route(&s->app, s->arg, method, url, auth, &req, &r);
    if (a)
        return send_asset(c, a);
    return send_reply(c, &r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    http_server *s = cls;
    http_body *body = *con_cls;
    http_reply r = {0};
    if (body == NULL) {
        body = mem_calloc(1, sizeof *body);
        if (body == NULL)
            return MHD_NO;
        *con_cls = body;
        body->started_us = clock_mono_us();
        if (http_body_declared_too_large(
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length"))) {
            body->too_large = 1;
            http_reply_error(&r, 413, "TOO_LARGE", "the body is larger than 64 KiB");
            return send_reply(c, &r);
        }
        return MHD_YES;
    }
    if (http_body_late(body, clock_mono_us())) {
        /* A body trickled in to hold the connection: no answer, it goes. */
        log_debug("http", "dropping a connection whose body took over %d s", HTTP_BODY_DEADLINE_S);
        return MHD_NO;
    }
    if (*upload_size > 0) {
        if (http_body_append(body, upload_data, *upload_size) != 0)
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (body->too_large) {
        http_reply_error(&r, 413, "TOO_LARGE", "the body is larger than 64 KiB");
        return send_reply(c, &r);
    }
    return dispatch(s, c, url, method, body);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    http_body *body = *con_cls;
    if (body) {
        http_body_clear(body);
        mem_free(body);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    char q[2 * LOG_SAFE_LEN]; /* may quote a client's request line or header */
    log_debug("http", "%s", log_safe(q, sizeof q, buf));
}

/* HTTPS: every connection holds a reference to the credentials current
 * when it was accepted (its socket context), from accept to close, so a
 * reload never frees a certificate a handshake is using (tls.h). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *s = cls;
    (void)c;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = http_tls_acquire(s->tls);
    } else {
        http_tls_release(*socket_context);
        *socket_context = NULL;
    }
}

/* GnuTLS asks for the server's certificate during each handshake. Its
 * session pointer is the libmicrohttpd connection (libmicrohttpd sets it
 * with gnutls_session_set_ptr), whose socket context holds the
 * credentials taken at accept. Without them the handshake fails. */
static int on_certificate(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                          const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                          gnutls_pcert_st **pcert, unsigned int *pcert_length,
                          gnutls_privkey_t *privkey)
{
    (void)req_ca_dn, (void)nreqs, (void)pk_algos, (void)pk_algos_length;
    struct MHD_Connection *c = gnutls_session_get_ptr(session);
    const union MHD_ConnectionInfo *ci =
        c ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT) : NULL;
    if (ci == NULL || ci->socket_context == NULL)
        return -1;
    http_tls_creds_get(ci->socket_context, pcert, pcert_length, privkey);
    return 0;
}

http_server *http_server_start(const char *host, int port, int threads, const http_app *app,
                               void *arg, char *err, size_t errlen)
{
    return http_server_start_tls(host, port, threads, app, arg, NULL, err, errlen);
}

http_server *http_server_start_tls(const char *host, int port, int threads, const http_app *app,
                                   void *arg, http_tls *tls, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0) {
        err_set(err, errlen, "bad listen address '%s': %s", host, gai_strerror(gai));
        return NULL;
    }
    http_server *s = mem_calloc(1, sizeof *s);
    if (s == NULL) {
        freeaddrinfo(ai);
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    s->app = *app;
    s->arg = arg;
    s->tls = tls;
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* HTTPS: the certificate comes from a callback, never a fixed one, so
     * that a reload needs no new daemon (tls.c); TLS 1.2 and 1.3 only
     * (RFC 8996 retired 1.0 and 1.1; GnuTLS's NORMAL still has them).
     * Plain HTTP: no options. */
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)on_certificate},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)HTTP_TLS_PRIORITIES},
        {MHD_OPTION_END, 0, NULL}};
    if (tls)
        flags |= MHD_USE_TLS;
    /* The logger first: libmicrohttpd logs options parsed before it to stderr. */
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_ARRAY, tls ? tls_opts : &tls_opts[3], MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(threads > 0 ? threads : 2),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)HTTP_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)HTTP_PER_ADDRESS_CONNECTIONS, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)HTTP_CONNECTION_MEMORY, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (s->daemon == NULL) {
        err_set(err, errlen, "cannot listen on %s:%d (in use, or not a local address)", host, port);
        mem_free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : port;
    return s;
}

int http_server_port(const http_server *s) { return s->port; }

void http_server_quiesce(http_server *s)
{
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

void http_server_stop(http_server *s)
{
    if (s == NULL)
        return;
    MHD_stop_daemon(s->daemon);
    mem_free(s);
}
