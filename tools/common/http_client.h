/*
 * http_client — one blocking HTTP request on a reusable curl handle, for
 * the tools (chat-client posts its offer with it, chat-bench its offers and
 * Janus's API calls).
 *
 * Each chat-bench connection worker owns one handle, so requests to the
 * same server reuse its keep-alive connection as a real client would.
 */
#ifndef CHATD_TOOLS_HTTP_CLIENT_H
#define CHATD_TOOLS_HTTP_CLIENT_H

#include <curl/curl.h>
#include <stddef.h>

typedef struct {
    long status;
    char *body; /* NUL-terminated; free with http_reply_free */
    size_t len;
    char location[256];
} http_reply;

/* method "GET", "POST" or "DELETE"; body, content_type and bearer may be
 * NULL. Returns 0 when an answer (any status) came, -1 with "URL: curl's
 * reason" in err otherwise. A body over 1 MiB is refused (no answer here is that
 * large). */
int http_request(CURL *curl, const char *method, const char *url, const char *content_type,
                 const char *body, const char *bearer, long timeout_s, http_reply *out, char *err,
                 size_t errlen);
/* http_request with more request headers: headers is NULL or a
 * NULL-terminated list of complete "Name: value" lines (the caller has
 * made sure they hold no CR or LF). */
int http_request_with_headers(CURL *curl, const char *method, const char *url,
                              const char *content_type, const char *body, const char *bearer,
                              const char *const *headers, long timeout_s, http_reply *out,
                              char *err, size_t errlen);
void http_reply_free(http_reply *r);
/* https:// requests trust the CA certificates in the PEM file at path
 * instead of the system's (chat-client --cacert). Call before the first
 * request; path must stay valid. NULL: the system's. */
void http_client_set_cacert(const char *path);

#endif
