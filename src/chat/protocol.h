/*
 * protocol — the data-channel messages of SPEC.md ("Data channel"), as
 * JSON text: parsing what clients send and building what chatd sends.
 *
 * Pure functions with no I/O and no global state: thread-safe, fuzzable,
 * unit-testable. Every builder returns a mem_alloc'd NUL-terminated compact
 * JSON string (NULL when out of memory, or when a required argument is NULL
 * or a string is not valid UTF-8); the parser never trusts its input (size
 * cap, UTF-8 validity, types, lengths). Borrowed json_t arguments are
 * shared into the output tree by reference count, never modified.
 */
#ifndef CHATD_PROTOCOL_H
#define CHATD_PROTOCOL_H

#include "util/limits.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_MAX_MESSAGE LIMIT_MESSAGE_BYTES /* bytes of one data-channel message */
#define PROTO_MAX_TEXT 2000                   /* characters (code points) after trimming */
#define PROTO_MAX_REF 128                     /* bytes of a client's ref */
#define PROTO_MAX_TOKEN LIMIT_TOKEN_BYTES
#define PROTO_ONLINE_MAX 200 /* users a welcome lists; online_count has them all */
/* The per-session message budget (SPEC "Text rules (version 2)"): any
 * message a client sends takes one; the excess gets RATE_LIMITED. */
#define PROTO_SESSION_RATE 20  /* messages a second */
#define PROTO_SESSION_BURST 40 /* messages at once */

#define PROTO_MAX_RECIPIENTS 20 /* user ids in a whisper's "to" */

typedef enum { PROTO_PING, PROTO_POST, PROTO_WHISPER } proto_kind;

/* A parsed client message. Strings point into `owned` storage of the
 * struct (freed by proto_request_clear). */
typedef struct {
    proto_kind kind;
    char *ref;                     /* NULL when absent */
    char *token;                   /* post and whisper */
    char *text;                    /* post and whisper: trimmed, valid UTF-8, 1..2000 code points */
    long to[PROTO_MAX_RECIPIENTS]; /* whisper: distinct user ids, as given */
    size_t n_to;
} proto_request;

typedef enum {
    PROTO_OK = 0,
    PROTO_BAD_REQUEST = -1, /* malformed: the session stays up, error BAD_REQUEST */
    PROTO_TOO_LARGE = -2,   /* over PROTO_MAX_MESSAGE: error TOO_LARGE */
    PROTO_NO_MEMORY = -3
} proto_status;

/* Parses one client message of len bytes. On failure err holds a short
 * human reason (sent back in the error's "message") and, when the
 * message had a usable string "ref", *ref_out receives a copy of it so the
 * error can echo it (free with mem_free). */
proto_status proto_parse_request(const char *data, size_t len, proto_request *out, char **ref_out,
                                 char *err, size_t errlen);
void proto_request_clear(proto_request *r);

/* The text rules of a post (SPEC "Text rules (version 2)"), for any text
 * a client gives (a post, a whisper, an announcement, a room's
 * description): valid UTF-8 without NUL, 1..max_chars code points after
 * trimming blanks, no C0/C1 control but LF and TAB, no bidirectional
 * override or isolate. PROTO_OK with *out the trimmed copy (mem_free), or
 * PROTO_BAD_REQUEST / PROTO_NO_MEMORY with err set. */
proto_status proto_check_text(const char *s, size_t n, size_t max_chars, char **out, char *err,
                              size_t errlen);

/* UTF-8 helpers (exposed for tests). */
int proto_utf8_valid(const char *s, size_t len);
size_t proto_utf8_length(const char *s, size_t len); /* code points; s must be valid */

/* USER: {"id":N,"name":"…","username":"…"} from a JSONPlaceholder user. */
json_t *proto_user_summary(const json_t *user);

/* A chat message as it is delivered and logged. */
typedef struct {
    int64_t id;
    const char *room;
    const char *source; /* "auto" | "manual" | "whisper" */
    long user_id;
    const char *user_name;
    const char *user_username;
    const char *text;
    const char *title; /* auto only, else NULL */
    long post_id;      /* auto only, else 0 */
    const char *ts;    /* ISO-8601 UTC with milliseconds */
    const json_t *to;  /* whisper only: array of USER (borrowed), else NULL */
} proto_message;

json_t *proto_message_object(const proto_message *m, const char *ref /* NULL: none */);
char *proto_build_message(const proto_message *m, const char *ref);
/* user: the whole JSONPlaceholder object; online: array of USER (borrowed),
 * the joiner last. No frame is dropped for its size (SPEC, version 2):
 * "online" lists the last PROTO_ONLINE_MAX of them, fewer if the text would
 * be over max_bytes (0 = PROTO_MAX_MESSAGE), and "online_count" is them
 * all. The text is over max_bytes only when even an empty list does not
 * fit (a token and user larger than the remote accepts): the caller checks
 * and tells the client. */
char *proto_build_welcome(const char *session, const char *room, const char *token,
                          const json_t *user, const json_t *online, size_t max_bytes);
/* messages: array of MESSAGE objects (borrowed), oldest first. The newest
 * that fit in max_bytes (0 or over PROTO_MAX_MESSAGE = PROTO_MAX_MESSAGE)
 * are kept, and "more":true is set when older ones were left out or when
 * `more` says the caller already left some out. */
char *proto_build_history_fit(const json_t *messages, int more, size_t max_bytes);
/* proto_build_history_fit(messages, 0, PROTO_MAX_MESSAGE). */
char *proto_build_history(const json_t *messages);
/* A history text rebuilt to fit in max_bytes (a remote that accepts less
 * than PROTO_MAX_MESSAGE); NULL when the text is not a history or out of
 * memory. */
char *proto_history_refit(const char *text, size_t len, size_t max_bytes);
char *proto_build_presence(const char *event /* "join"|"leave" */, const json_t *user_summary);
/* retry_in_ms < 0 leaves the field out; ref NULL leaves it out. */
char *proto_build_error(const char *code, const char *message, long retry_in_ms, int fatal,
                        const char *ref);
char *proto_build_pong(const char *ref, const char *ts);

/* {"type":"announcement","id","room"(null when room is NULL: every
 * room),"text","ts"}. */
json_t *proto_announcement_object(int64_t id, const char *room, const char *text, const char *ts);
/* {"type":TYPE,"room","reason"}: TYPE "room_closed" or "kicked". */
char *proto_build_farewell(const char *type, const char *room, const char *reason);

#endif
