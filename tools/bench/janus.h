/*
 * janus — the client side of Janus's HTTP API for the TextRoom plugin.
 *
 * Janus makes the offer: create a session, attach the plugin, ask for
 * "setup" and long-poll the session until the event with the offer comes.
 * The caller answers it with its own peer and hands the answer back with
 * janus_send_answer(). Everything after that (join, messages) travels on
 * the data channel.
 */
#ifndef CHAT_BENCH_JANUS_H
#define CHAT_BENCH_JANUS_H

#include <curl/curl.h>
#include <stddef.h>

typedef struct {
    long long session;
    long long handle;
} janus_ids;

/* base is e.g. "http://10.77.0.1:8088/janus". On success *offer is the
 * SDP offer (free()). */
int janus_start(CURL *curl, const char *base, janus_ids *ids, char **offer, long timeout_s,
                char *err, size_t errlen);
int janus_send_answer(CURL *curl, const char *base, const janus_ids *ids, const char *answer,
                      char *err, size_t errlen);
/* Keeps an idle session from timing out (Janus's session_timeout). */
int janus_keepalive(CURL *curl, const char *base, const janus_ids *ids);
/* Ends the session (and its handle and peer connection). */
int janus_destroy(CURL *curl, const char *base, const janus_ids *ids);

#endif
