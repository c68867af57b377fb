/*
 * http — one blocking HTTP request on a reusable curl handle.
 *
 * Each chat-bench connection worker owns one handle, so requests to the
 * same server reuse its keep-alive connection as a real client would.
 */
#ifndef CHAT_BENCH_HTTP_H
#define CHAT_BENCH_HTTP_H

#include <curl/curl.h>
#include <stddef.h>

typedef struct {
    long status;
    char *body; /* NUL-terminated; free with http_reply_free */
    size_t len;
    char location[256];
} http_reply;

/* method "GET", "POST" or "DELETE"; body and content_type may be NULL.
 * Returns 0 when an answer (any status) came, -1 with err otherwise. */
int http_request(CURL *curl, const char *method, const char *url, const char *content_type,
                 const char *body, const char *bearer, long timeout_s, http_reply *out,
                 char *err, size_t errlen);
void http_reply_free(http_reply *r);

#endif
