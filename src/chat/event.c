/*
 * event — see event.h.
 */
#include "chat/event.h"

#include "app/offer.h"

#include <stdio.h>
#include <string.h>

/* Longest text an event may carry: a post's 2,000 characters of up to 4
 * bytes each, and a title of the same. */
#define TEXT_MAX_BYTES (PROTO_MAX_TEXT * 4)

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A string field of at most max bytes, no NUL inside; NULL otherwise. */
static const char *bounded(const json_t *o, const char *key, size_t max)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v))
        return NULL;
    return json_string_value(v);
}

static long user_id(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    json_int_t id = json_is_integer(v) ? json_integer_value(v) : 0;
    return id > 0 && id <= INT32_MAX ? (long)id : 0;
}

static const char *room_of(const json_t *ev)
{
    const char *room = bounded(ev, "room", 63);
    return room && offer_room_name_valid(room) ? room : NULL;
}

chat_event_kind chat_event_kind_of(const json_t *ev, const char **origin)
{
    const char *k = str(ev, "k");
    *origin = bounded(ev, "o", 64);
    if (k == NULL || *origin == NULL)
        return CHAT_EVENT_BAD;
    if (strcmp(k, "m") == 0)
        return CHAT_EVENT_MESSAGE;
    if (strcmp(k, "a") == 0)
        return CHAT_EVENT_ANNOUNCEMENT;
    if (strcmp(k, "kick") == 0)
        return CHAT_EVENT_KICK;
    if (strcmp(k, "close") == 0)
        return CHAT_EVENT_CLOSE;
    if (strcmp(k, "room") == 0)
        return CHAT_EVENT_ROOM;
    return CHAT_EVENT_BAD;
}

/* A whisper's "to": 1..PROTO_MAX_RECIPIENTS USERs of distinct ids,
 * ascending into ids and as "2,5" into out. */
static int recipients_of(const json_t *to, long *ids, size_t *n, char *out)
{
    size_t k = json_array_size(to), len = 0;
    if (k == 0 || k > PROTO_MAX_RECIPIENTS)
        return 0;
    for (size_t i = 0; i < k; i++) {
        const json_t *u = json_array_get(to, i);
        if (!json_is_object(u) || (ids[i] = user_id(u, "id")) == 0)
            return 0;
    }
    for (size_t a = 1; a < k; a++) /* at most 20: insertion sort */
        for (size_t b = a; b > 0 && ids[b - 1] > ids[b]; b--) {
            long t = ids[b];
            ids[b] = ids[b - 1];
            ids[b - 1] = t;
        }
    for (size_t a = 0; a < k; a++) {
        if (a > 0 && ids[a] == ids[a - 1])
            return 0;
        len += (size_t)snprintf(out + len, CHAT_EVENT_RECIPIENTS_MAX - len, a ? ",%ld" : "%ld",
                                ids[a]);
    }
    *n = k;
    return 1;
}

int chat_event_message(const json_t *ev, int64_t id, proto_message *m, long *to_ids, size_t *n_to,
                       char *recipients)
{
    json_t *to = json_object_get(ev, "to");
    *n_to = 0;
    recipients[0] = '\0';
    *m = (proto_message){.id = id,
                         .room = room_of(ev),
                         .source = str(ev, "src"),
                         .user_id = user_id(ev, "uid"),
                         .user_name = bounded(ev, "un", 256),
                         .user_username = bounded(ev, "uu", 256),
                         .text = bounded(ev, "text", TEXT_MAX_BYTES),
                         .title = bounded(ev, "title", TEXT_MAX_BYTES),
                         .ts = bounded(ev, "ts", 31),
                         .to = json_is_array(to) ? to : NULL};
    json_t *pid = json_object_get(ev, "pid");
    if (json_is_integer(pid) && json_integer_value(pid) > 0 && json_integer_value(pid) <= INT32_MAX)
        m->post_id = (long)json_integer_value(pid);
    if (m->room == NULL || m->source == NULL || m->text == NULL || m->ts == NULL || m->user_id == 0)
        return 0;
    if (m->user_name == NULL)
        m->user_name = "";
    if (m->user_username == NULL)
        m->user_username = "";
    if (strcmp(m->source, "auto") != 0) { /* title and post id are auto's */
        m->title = NULL;
        m->post_id = 0;
    }
    if (strcmp(m->source, "whisper") == 0)
        return m->to != NULL && recipients_of(m->to, to_ids, n_to, recipients);
    return m->to == NULL && (strcmp(m->source, "auto") == 0 || strcmp(m->source, "manual") == 0);
}

int chat_event_announcement(const json_t *ev, const char **room, const char **text, const char **ts)
{
    *room = json_is_null(json_object_get(ev, "room")) ? NULL : room_of(ev);
    *text = bounded(ev, "text", TEXT_MAX_BYTES);
    *ts = bounded(ev, "ts", 31);
    return (*room || json_is_null(json_object_get(ev, "room"))) && *text && *ts;
}

int chat_event_kick(const json_t *ev, const char **room, long *user)
{
    *room = room_of(ev);
    *user = user_id(ev, "uid");
    return *room && *user;
}

int chat_event_close(const json_t *ev, const char **room, const char **reason)
{
    *room = room_of(ev);
    *reason = bounded(ev, "reason", 200);
    return *room && *reason;
}

/* A string field into a buffer of cap bytes: 1, or 0 when it is absent
 * (then "") or does not fit. */
static int field(const json_t *o, const char *key, char *dst, size_t cap, int required)
{
    const char *v = bounded(o, key, cap - 1);
    snprintf(dst, cap, "%s", v ? v : "");
    return v != NULL || (!required && json_object_get(o, key) == NULL);
}

int chat_event_room(const json_t *ev, chat_room_def *def, int *removed)
{
    const json_t *d = json_object_get(ev, "def");
    memset(def, 0, sizeof *def);
    *removed = json_is_true(json_object_get(ev, "removed"));
    if (!json_is_object(d) || !field(d, "name", def->name, sizeof def->name, 1) ||
        !offer_room_name_valid(def->name) ||
        !field(d, "description", def->description, sizeof def->description, 0) ||
        !field(d, "secret_hash", def->secret_hash, sizeof def->secret_hash, 0) ||
        !field(d, "pin_hash", def->pin_hash, sizeof def->pin_hash, 0) ||
        !field(d, "created_at", def->created_at, sizeof def->created_at, 0))
        return 0;
    def->is_private = json_is_true(json_object_get(d, "private"));
    def->created_by = user_id(d, "created_by");
    return 1;
}
