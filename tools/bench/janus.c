/*
 * janus — see janus.h. Every request carries a transaction id, as the API
 * requires; replies are matched by the request they answer (one at a time
 * per handle), so the id only has to be present.
 */
#include "janus.h"

#include "../common/http_client.h"
#include "util/err.h"
#include "util/json_text.h"
#include "util/mem.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_long transactions;

/* POSTs obj (stolen) to url; returns the parsed reply or NULL with err. */
static json_t *post_json(CURL *curl, const char *url, json_t *obj, long timeout_s, char *err,
                         size_t errlen)
{
    char tx[32];
    snprintf(tx, sizeof tx, "b%ld", atomic_fetch_add(&transactions, 1));
    json_object_set_new(obj, "transaction", json_string(tx));
    char *body = json_text_compact(obj);
    json_decref(obj);
    if (body == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    http_reply r;
    int rc =
        http_request(curl, "POST", url, "application/json", body, NULL, timeout_s, &r, err, errlen);
    mem_free(body);
    if (rc < 0)
        return NULL;
    json_t *reply = r.body ? json_loads(r.body, 0, NULL) : NULL;
    if (reply == NULL)
        err_set(err, errlen, "%s: HTTP %ld, not JSON", url, r.status);
    http_reply_free(&r);
    return reply;
}

/* Expects {"janus":"success","data":{"id":N}}; returns N or -1. */
static long long success_id(json_t *reply, const char *what, char *err, size_t errlen)
{
    const char *j = json_string_value(json_object_get(reply, "janus"));
    json_t *id = json_object_get(json_object_get(reply, "data"), "id");
    if (j == NULL || strcmp(j, "success") != 0 || !json_is_integer(id)) {
        const char *reason =
            json_string_value(json_object_get(json_object_get(reply, "error"), "reason"));
        err_set(err, errlen, "%s failed: %s", what, reason ? reason : (j ? j : "no reply"));
        return -1;
    }
    return json_integer_value(id);
}

int janus_start(CURL *curl, const char *base, janus_ids *ids, char **offer, long timeout_s,
                char *err, size_t errlen)
{
    *offer = NULL;
    char url[512];
    json_t *r =
        post_json(curl, base, json_pack("{s:s}", "janus", "create"), timeout_s, err, errlen);
    if (r == NULL)
        return -1;
    ids->session = success_id(r, "create", err, errlen);
    json_decref(r);
    if (ids->session < 0)
        return -1;

    snprintf(url, sizeof url, "%s/%lld", base, ids->session);
    r = post_json(curl, url,
                  json_pack("{s:s,s:s}", "janus", "attach", "plugin", "janus.plugin.textroom"),
                  timeout_s, err, errlen);
    if (r == NULL)
        return -1;
    ids->handle = success_id(r, "attach", err, errlen);
    json_decref(r);
    if (ids->handle < 0)
        return -1;

    snprintf(url, sizeof url, "%s/%lld/%lld", base, ids->session, ids->handle);
    r = post_json(curl, url,
                  json_pack("{s:s,s:{s:s}}", "janus", "message", "body", "request", "setup"),
                  timeout_s, err, errlen);
    if (r == NULL)
        return -1;
    const char *j = json_string_value(json_object_get(r, "janus"));
    int acked = j && strcmp(j, "ack") == 0;
    json_decref(r);
    if (!acked) {
        err_set(err, errlen, "setup was not acknowledged (%s)", j ? j : "no reply");
        return -1;
    }

    /* The offer comes as an event on the session's long poll. */
    snprintf(url, sizeof url, "%s/%lld?maxev=1", base, ids->session);
    for (int polls = 0; polls < 4 && *offer == NULL; polls++) {
        http_reply hr;
        if (http_request(curl, "GET", url, NULL, NULL, NULL, timeout_s, &hr, err, errlen) < 0)
            return -1;
        json_t *ev = hr.body ? json_loads(hr.body, 0, NULL) : NULL;
        http_reply_free(&hr);
        /* maxev=1 answers one object (or, in some versions, an array). */
        json_t *one = json_is_array(ev) ? json_array_get(ev, 0) : ev;
        const char *sdp = json_string_value(json_object_get(json_object_get(one, "jsep"), "sdp"));
        if (sdp)
            *offer = strdup(sdp);
        json_decref(ev);
    }
    if (*offer == NULL) {
        err_set(err, errlen, "no offer from Janus");
        return -1;
    }
    return 0;
}

int janus_send_answer(CURL *curl, const char *base, const janus_ids *ids, const char *answer,
                      char *err, size_t errlen)
{
    char url[512];
    snprintf(url, sizeof url, "%s/%lld/%lld", base, ids->session, ids->handle);
    json_t *r = post_json(curl, url,
                          json_pack("{s:s,s:{s:s},s:{s:s,s:s}}", "janus", "message", "body",
                                    "request", "ack", "jsep", "type", "answer", "sdp", answer),
                          15, err, errlen);
    if (r == NULL)
        return -1;
    const char *j = json_string_value(json_object_get(r, "janus"));
    int ok = j && (strcmp(j, "ack") == 0 || strcmp(j, "success") == 0);
    if (!ok)
        err_set(err, errlen, "the answer was refused (%s)", j ? j : "no reply");
    json_decref(r);
    return ok ? 0 : -1;
}

static int session_request(CURL *curl, const char *base, const janus_ids *ids, const char *verb)
{
    char url[512], err[256];
    snprintf(url, sizeof url, "%s/%lld", base, ids->session);
    json_t *r = post_json(curl, url, json_pack("{s:s}", "janus", verb), 10, err, sizeof err);
    int ok = r != NULL;
    json_decref(r);
    return ok ? 0 : -1;
}

int janus_keepalive(CURL *curl, const char *base, const janus_ids *ids)
{
    return session_request(curl, base, ids, "keepalive");
}

int janus_destroy(CURL *curl, const char *base, const janus_ids *ids)
{
    return session_request(curl, base, ids, "destroy");
}
