/*
 * http_client — see http_client.h.
 */
#include "http_client.h"

#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
    http_reply *r = user;
    size_t n = size * nmemb;
    if (r->len + n > 1024 * 1024)
        return 0;
    char *nb = realloc(r->body, r->len + n + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + r->len, ptr, n);
    r->len += n;
    nb[r->len] = '\0';
    r->body = nb;
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *user)
{
    http_reply *r = user;
    size_t n = size * nmemb;
    if (n > 10 && strncasecmp(ptr, "Location:", 9) == 0) {
        const char *v = ptr + 9;
        while (*v == ' ')
            v++;
        size_t vl = n - (size_t)(v - ptr);
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
            vl--;
        if (vl < sizeof r->location) {
            memcpy(r->location, v, vl);
            r->location[vl] = '\0';
        }
    }
    return n;
}

int http_request(CURL *curl, const char *method, const char *url, const char *content_type,
                 const char *body, const char *bearer, long timeout_s, http_reply *out, char *err,
                 size_t errlen)
{
    return http_request_with_headers(curl, method, url, content_type, body, bearer, NULL, timeout_s,
                                     out, err, errlen);
}

/* Set once by main before any request (http_client_set_cacert). */
static const char *cacert;

void http_client_set_cacert(const char *path) { cacert = path; }

int http_request_with_headers(CURL *curl, const char *method, const char *url,
                              const char *content_type, const char *body, const char *bearer,
                              const char *const *headers, long timeout_s, http_reply *out,
                              char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct curl_slist *hdrs = NULL;
    char line[8300];
    if (content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", content_type);
        hdrs = curl_slist_append(hdrs, line);
    }
    if (bearer) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", bearer);
        hdrs = curl_slist_append(hdrs, line);
    }
    for (size_t i = 0; headers && headers[i]; i++)
        hdrs = curl_slist_append(hdrs, headers[i]);
    /* Without this curl waits for "100 Continue" on large bodies. */
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (cacert)
        curl_easy_setopt(curl, CURLOPT_CAINFO, cacert);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body ? body : "");
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) {
        err_set(err, errlen, "%s: %s", url, curl_easy_strerror(rc));
        http_reply_free(out);
        return -1;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
    return 0;
}

void http_reply_free(http_reply *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}
