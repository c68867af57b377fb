/*
 * protocol — see protocol.h.
 *
 * Parsing order matters for what the client hears back: the size cap comes
 * before anything else (a 1 GB message is refused without reading it),
 * then UTF-8 over the whole text (so the reason says "UTF-8" rather than
 * whatever jansson trips on), then JSON, then "ref" first of all fields, so
 * that every later error can echo it.
 *
 * Strings are read with JSON_ALLOW_NUL so that a "\u0000" inside a field is
 * refused by this file with a clear reason instead of failing the whole
 * parse; every string taken is then checked for NUL, since the rest of
 * chatd handles them as C strings.
 *
 * Unknown extra fields are ignored, so that clients may send more than
 * this version reads.
 *
 * Builders assemble a jansson tree in SPEC's key order (jansson keeps
 * insertion order) and dump it compact (see json_text_compact()). Every json_object_set_new steals
 * its value even on failure, so a chain of them leaks nothing when one
 * fails; the first failure is remembered and the whole build is dropped.
 */
#include "chat/protocol.h"

#include "util/err.h"
#include "util/json_text.h"
#include "util/mem.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------ */

/* ---- UTF-8 ------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0.
 * Well-formed per Unicode 15 table 3-7: no overlong forms (C0, C1, E0 80..9F,
 * F0 80..8F), no surrogates (ED A0..BF), nothing above U+10FFFF (F4 90..,
 * F5..FF), no stray or missing continuation bytes. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;
    uint32_t v;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    /* Only the second byte has a narrowed range. */
    if (s[1] < lo || s[1] > hi)
        return 0;
    v = (v << 6) | (s[1] & 0x3F);
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

int proto_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    uint32_t cp;

    if (s == NULL)
        return len == 0;
    while (i < len) {
        n = utf8_seq(p + i, len - i, &cp);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

size_t proto_utf8_length(const char *s, size_t len)
{
    size_t count = 0;

    if (s == NULL)
        return 0;
    /* Every code point has exactly one byte that is not 10xxxxxx. */
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            count++;
    return count;
}

/* Unicode White_Space, plus U+FEFF (the zero-width no-break space a BOM
 * leaves behind), which JavaScript's String.prototype.trim also removes:
 * the web client and chatd agree on what "blank" means. */
static int is_space(uint32_t cp)
{
    switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0xFEFF:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

/* Trims s (valid UTF-8, len bytes): *start and *end delimit what is left,
 * *chars is its length in code points. One forward pass; trailing blanks
 * are found by remembering where the last non-blank ended. */
static void utf8_trim(const char *s, size_t len, size_t *start, size_t *end, size_t *chars)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n, first = len, last = len, count = 0, count_at_last = 0;
    uint32_t cp;

    while (i < len) {
        n = utf8_seq(p + i, len - i, &cp);
        if (n == 0) /* cannot happen on valid input; stop safely */
            break;
        if (!is_space(cp)) {
            if (first == len)
                first = i;
            last = i + n;
            count_at_last = count + 1;
        }
        if (first != len)
            count++;
        i += n;
    }
    if (first == len) {
        *start = *end = *chars = 0;
        return;
    }
    *start = first;
    *end = last;
    *chars = count_at_last;
}

/* Text rules (SPEC "Text rules (version 2)"): the first code point of s
 * (valid UTF-8, len bytes) that a post may not hold, or -1. Refused: C0
 * controls other than tab and line feed (ESC starts the terminal escape
 * sequences that rewrite other lines on a reader's screen, CR returns over
 * the line just printed), C1 controls (U+0080-U+009F: CSI and friends in
 * 8-bit form, honoured by some terminals), and the bidirectional overrides
 * and isolates U+202A-U+202E and U+2066-U+2069, which reorder what follows
 * them so that a message can display as something it does not say. DEL is
 * neither C0 nor C1 and does nothing on a terminal; it is allowed, as the
 * contract says, and chat-client shows it visibly. */
static long text_forbidden(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n;
    uint32_t cp;

    while (i < len) {
        n = utf8_seq(p + i, len - i, &cp);
        if (n == 0) /* cannot happen on valid input; stop safely */
            break;
        if ((cp < 0x20 && cp != 0x09 && cp != 0x0A) || (cp >= 0x80 && cp <= 0x9F) ||
            (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
            return (long)cp;
        i += n;
    }
    return -1;
}

/* ---- parsing ------------------------------------------------------------ */

void proto_request_clear(proto_request *r)
{
    if (r == NULL)
        return;
    mem_free(r->ref);
    mem_free(r->token);
    mem_free(r->text);
    memset(r, 0, sizeof(*r));
}

/* The reason for a jansson load failure, without any of the input (which
 * could be anything, and goes back to the client inside JSON).
 * jansson 2.14 reports most of its own allocation failures while loading
 * as syntax errors, not json_error_out_of_memory; such a message is then
 * answered BAD_REQUEST, which is harmless (the session stays up and the
 * client may send again). */
static proto_status load_error(const json_error_t *je, char *err, size_t errlen)
{
    switch (json_error_code(je)) {
    case json_error_out_of_memory:
        err_set(err, errlen, "out of memory");
        return PROTO_NO_MEMORY;
    case json_error_duplicate_key:
        err_set(err, errlen, "duplicate key in message (at byte %d)", je->position);
        break;
    case json_error_stack_overflow:
        err_set(err, errlen, "message is nested too deeply");
        break;
    case json_error_premature_end_of_input:
        err_set(err, errlen, "message is not valid JSON (it ends early)");
        break;
    case json_error_end_of_input_expected:
        err_set(err, errlen, "message has data after the JSON value (at byte %d)", je->position);
        break;
    default:
        err_set(err, errlen, "message is not valid JSON (at byte %d)", je->position);
        break;
    }
    return PROTO_BAD_REQUEST;
}

/* A string field: 1 present and usable (*s, *n set), 0 absent, -1 bad (err
 * set). max is in bytes; NUL is refused because chatd keeps C strings. */
static int get_string(json_t *root, const char *key, size_t max, const char **s, size_t *n,
                      char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);

    if (v == NULL)
        return 0;
    if (!json_is_string(v)) {
        err_set(err, errlen, "\"%s\" must be a string", key);
        return -1;
    }
    *s = json_string_value(v);
    *n = json_string_length(v);
    if (*n > max) {
        err_set(err, errlen, "\"%s\" is longer than %zu bytes", key, max);
        return -1;
    }
    if (memchr(*s, '\0', *n) != NULL) {
        err_set(err, errlen, "\"%s\" must not contain a NUL character", key);
        return -1;
    }
    return 1;
}

proto_status proto_check_text(const char *s, size_t n, size_t max_chars, char **out, char *err,
                              size_t errlen)
{
    size_t start, end, chars;
    long bad;

    *out = NULL;
    /* jansson already guarantees this for parsed JSON; it is cheap to be
     * sure, and HTTP bodies come through here too. */
    if (!proto_utf8_valid(s, n)) {
        err_set(err, errlen, "\"text\" is not valid UTF-8");
        return PROTO_BAD_REQUEST;
    }
    if (memchr(s, '\0', n) != NULL) {
        err_set(err, errlen, "\"text\" must not contain a NUL character");
        return PROTO_BAD_REQUEST;
    }
    utf8_trim(s, n, &start, &end, &chars);
    if (chars == 0) {
        err_set(err, errlen, "\"text\" is empty");
        return PROTO_BAD_REQUEST;
    }
    if (chars > max_chars) {
        err_set(err, errlen, "\"text\" is longer than %zu characters (%zu)", max_chars, chars);
        return PROTO_BAD_REQUEST;
    }
    /* Only what is delivered is judged: blanks trimmed away (a trailing
     * CR of a pasted CRLF line) never reach anyone's screen. */
    bad = text_forbidden(s + start, end - start);
    if (bad >= 0) {
        err_set(err, errlen, "\"text\" holds U+%04lX (%s), which posts may not carry", bad,
                bad >= 0x2000 ? "a bidirectional override or isolate" : "a control character");
        return PROTO_BAD_REQUEST;
    }
    *out = mem_strndup(s + start, end - start);
    if (*out == NULL) {
        err_set(err, errlen, "out of memory");
        return PROTO_NO_MEMORY;
    }
    return PROTO_OK;
}

/* A whisper's "to": 1..PROTO_MAX_RECIPIENTS distinct user ids (positive
 * integers below 2^31), kept in the order given. 0, or -1 with err set. */
static int parse_recipients(json_t *root, proto_request *out, char *err, size_t errlen)
{
    json_t *to = json_object_get(root, "to");
    size_t i, j;

    if (!json_is_array(to) || json_array_size(to) == 0) {
        err_set(err, errlen, "whisper needs \"to\": an array of 1 to %d user ids",
                PROTO_MAX_RECIPIENTS);
        return -1;
    }
    if (json_array_size(to) > PROTO_MAX_RECIPIENTS) {
        err_set(err, errlen, "\"to\" names more than %d users", PROTO_MAX_RECIPIENTS);
        return -1;
    }
    for (i = 0; i < json_array_size(to); i++) {
        json_t *v = json_array_get(to, i);
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : 0;
        if (id <= 0 || id > INT32_MAX) {
            err_set(err, errlen, "\"to\" must hold user ids (positive integers)");
            return -1;
        }
        for (j = 0; j < out->n_to; j++)
            if (out->to[j] == (long)id) {
                err_set(err, errlen, "\"to\" names user %ld twice", (long)id);
                return -1;
            }
        out->to[out->n_to++] = (long)id;
    }
    return 0;
}

/* Everything after the JSON is loaded. On failure *ref_out may already
 * hold the ref (set as soon as it is known good). */
static proto_status parse_object(json_t *root, proto_request *out, char **ref_out, char *err,
                                 size_t errlen)
{
    const char *s, *type;
    size_t n;
    int r;

    if (!json_is_object(root)) {
        err_set(err, errlen, "message is not a JSON object");
        return PROTO_BAD_REQUEST;
    }

    r = get_string(root, "ref", PROTO_MAX_REF, &s, &n, err, errlen);
    if (r < 0)
        return PROTO_BAD_REQUEST;
    if (r > 0) {
        out->ref = mem_strndup(s, n);
        if (out->ref == NULL)
            goto nomem;
        /* Best effort: without the copy the error just goes unechoed. */
        if (ref_out != NULL)
            *ref_out = mem_strndup(s, n);
    }

    r = get_string(root, "type", 64, &type, &n, err, errlen);
    if (r < 0)
        return PROTO_BAD_REQUEST;
    if (r == 0) {
        err_set(err, errlen, "missing \"type\"");
        return PROTO_BAD_REQUEST;
    }
    if (strcmp(type, "ping") == 0) {
        out->kind = PROTO_PING;
        return PROTO_OK;
    }
    if (strcmp(type, "post") != 0 && strcmp(type, "whisper") != 0) {
        err_set(err, errlen, "unknown type (expected \"post\", \"whisper\" or \"ping\")");
        return PROTO_BAD_REQUEST;
    }
    out->kind = strcmp(type, "whisper") == 0 ? PROTO_WHISPER : PROTO_POST;

    r = get_string(root, "token", PROTO_MAX_TOKEN, &s, &n, err, errlen);
    if (r < 0)
        return PROTO_BAD_REQUEST;
    if (r == 0 || n == 0) {
        err_set(err, errlen, r == 0 ? "%s without \"token\"" : "\"token\" is empty", type);
        return PROTO_BAD_REQUEST;
    }
    out->token = mem_strndup(s, n);
    if (out->token == NULL)
        goto nomem;

    if (out->kind == PROTO_WHISPER && parse_recipients(root, out, err, errlen) != 0)
        return PROTO_BAD_REQUEST;

    /* The byte cap is the message's own: text cannot be longer anyway. */
    r = get_string(root, "text", PROTO_MAX_MESSAGE, &s, &n, err, errlen);
    if (r < 0)
        return PROTO_BAD_REQUEST;
    if (r == 0) {
        err_set(err, errlen, "%s without \"text\"", type);
        return PROTO_BAD_REQUEST;
    }
    r = proto_check_text(s, n, PROTO_MAX_TEXT, &out->text, err, errlen);
    if (r == PROTO_NO_MEMORY)
        goto nomem;
    return r == PROTO_OK ? PROTO_OK : PROTO_BAD_REQUEST;

nomem:
    err_set(err, errlen, "out of memory");
    return PROTO_NO_MEMORY;
}

proto_status proto_parse_request(const char *data, size_t len, proto_request *out, char **ref_out,
                                 char *err, size_t errlen)
{
    json_error_t je;
    json_t *root;
    proto_status st;

    if (ref_out != NULL)
        *ref_out = NULL;
    err_set(err, errlen, "%s", "");
    if (out == NULL) {
        err_set(err, errlen, "no request to fill");
        return PROTO_BAD_REQUEST;
    }
    memset(out, 0, sizeof(*out));
    /* Before anything reads the data: the cap is what keeps parsing cheap. */
    if (len > PROTO_MAX_MESSAGE) {
        err_set(err, errlen, "message is larger than %d bytes", PROTO_MAX_MESSAGE);
        return PROTO_TOO_LARGE;
    }
    if (data == NULL || len == 0) {
        err_set(err, errlen, "message is empty");
        return PROTO_BAD_REQUEST;
    }
    if (!proto_utf8_valid(data, len)) {
        err_set(err, errlen, "message is not valid UTF-8");
        return PROTO_BAD_REQUEST;
    }
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (root == NULL)
        return load_error(&je, err, errlen);
    st = parse_object(root, out, ref_out, err, errlen);
    json_decref(root);
    if (st != PROTO_OK) {
        proto_request_clear(out);
        /* Only a bad request echoes its ref; out of memory says nothing
         * more about the message. */
        if (st != PROTO_BAD_REQUEST && ref_out != NULL) {
            mem_free(*ref_out);
            *ref_out = NULL;
        }
    } else if (ref_out != NULL) {
        mem_free(*ref_out); /* the ref is in out->ref */
        *ref_out = NULL;
    }
    return st;
}

/* ---- building ----------------------------------------------------------- */

/* A build in progress: set() adds fields in order and remembers whether
 * any of them failed (value NULL or no memory). */
typedef struct {
    json_t *obj;
    int failed;
} builder;

static void set(builder *b, const char *key, json_t *value)
{
    if (value == NULL) {
        b->failed = 1;
    } else if (b->obj == NULL) {
        json_decref(value);
        b->failed = 1;
    } else if (json_object_set_new(b->obj, key, value) != 0) {
        b->failed = 1; /* value already dropped by jansson */
    }
}

/* A borrowed value, shared rather than copied: jansson's reference counts
 * are atomic (JSON_HAVE_ATOMIC_BUILTINS), and the caller keeps its
 * reference for the whole call. */
static json_t *borrow(const json_t *v) { return json_incref((json_t *)v); }

static builder begin(const char *type)
{
    builder b = {json_object(), 0};

    set(&b, "type", json_string(type));
    return b;
}

/* The object, or NULL (and nothing left allocated) when a field failed. */
static json_t *finish_object(builder *b)
{
    if (b->failed) {
        json_decref(b->obj);
        return NULL;
    }
    return b->obj;
}

static char *finish(builder *b)
{
    json_t *obj = finish_object(b);
    char *text;

    if (obj == NULL)
        return NULL;
    text = json_text_compact(obj);
    json_decref(obj);
    return text;
}

/* An array argument: borrowed when it is one, a new empty array for NULL,
 * NULL (a failed build) for anything else. */
static json_t *array_arg(const json_t *a)
{
    if (a == NULL)
        return json_array();
    return json_is_array(a) ? borrow(a) : NULL;
}

json_t *proto_user_summary(const json_t *user)
{
    json_t *id = json_object_get(user, "id");
    json_t *name = json_object_get(user, "name");
    json_t *username = json_object_get(user, "username");
    builder b = {NULL, 0};

    if (!json_is_integer(id) || !json_is_string(name) || !json_is_string(username))
        return NULL;
    b.obj = json_object();
    set(&b, "id", json_integer(json_integer_value(id)));
    set(&b, "name", borrow(name));
    set(&b, "username", borrow(username));
    return finish_object(&b);
}

json_t *proto_message_object(const proto_message *m, const char *ref)
{
    char id[24];
    int is_auto;
    builder b, user = {NULL, 0};

    if (m == NULL || m->source == NULL)
        return NULL;
    is_auto = strcmp(m->source, "auto") == 0;
    snprintf(id, sizeof(id), "%" PRId64, m->id);
    b = begin("message");
    set(&b, "id", json_string(id));
    set(&b, "room", m->room ? json_string(m->room) : NULL);
    set(&b, "source", json_string(m->source));
    user.obj = json_object();
    set(&user, "id", json_integer(m->user_id));
    set(&user, "name", m->user_name ? json_string(m->user_name) : NULL);
    set(&user, "username", m->user_username ? json_string(m->user_username) : NULL);
    set(&b, "user", finish_object(&user));
    set(&b, "text", m->text ? json_string(m->text) : NULL);
    if (is_auto) {
        set(&b, "title", json_string(m->title ? m->title : ""));
        set(&b, "post_id", json_integer(m->post_id));
    }
    set(&b, "ts", m->ts ? json_string(m->ts) : NULL);
    if (m->to != NULL)
        set(&b, "to", array_arg(m->to));
    if (ref != NULL)
        set(&b, "ref", json_string(ref));
    return finish_object(&b);
}

json_t *proto_announcement_object(int64_t id, const char *room, const char *text, const char *ts)
{
    char sid[24];
    builder b;

    snprintf(sid, sizeof(sid), "%" PRId64, id);
    b = begin("announcement");
    set(&b, "id", json_string(sid));
    set(&b, "room", room ? json_string(room) : json_null());
    set(&b, "text", text ? json_string(text) : NULL);
    set(&b, "ts", ts ? json_string(ts) : NULL);
    return finish_object(&b);
}

char *proto_build_farewell(const char *type, const char *room, const char *reason)
{
    builder b;

    if (type == NULL || (strcmp(type, "room_closed") != 0 && strcmp(type, "kicked") != 0))
        return NULL;
    b = begin(type);
    set(&b, "room", room ? json_string(room) : NULL);
    set(&b, "reason", reason ? json_string(reason) : NULL);
    return finish(&b);
}

char *proto_build_message(const proto_message *m, const char *ref)
{
    builder b = {proto_message_object(m, ref), 0};

    if (b.obj == NULL)
        return NULL;
    return finish(&b);
}

/* The last `count` elements of a (borrowed into a new array). */
static json_t *array_tail(const json_t *a, size_t count)
{
    json_t *out = json_array();
    size_t n = json_array_size(a);

    for (size_t i = n - count; out != NULL && i < n; i++)
        if (json_array_append(out, json_array_get(a, i)) != 0) {
            json_decref(out);
            return NULL;
        }
    return out;
}

static char *build_welcome(const char *session, const char *room, const char *token,
                           const json_t *user, const json_t *online, size_t listed)
{
    builder b = begin("welcome");

    set(&b, "session", session ? json_string(session) : NULL);
    set(&b, "room", room ? json_string(room) : NULL);
    set(&b, "token", token ? json_string(token) : NULL);
    set(&b, "user", json_is_object(user) ? borrow(user) : NULL);
    set(&b, "online", array_tail(online, listed));
    set(&b, "online_count", json_integer((json_int_t)json_array_size(online)));
    return finish(&b);
}

char *proto_build_welcome(const char *session, const char *room, const char *token,
                          const json_t *user, const json_t *online, size_t max_bytes)
{
    json_t *list = array_arg(online);
    size_t listed;
    char *text;

    if (list == NULL)
        return NULL;
    if (max_bytes == 0)
        max_bytes = PROTO_MAX_MESSAGE;
    listed = json_array_size(list);
    if (listed > PROTO_ONLINE_MAX)
        listed = PROTO_ONLINE_MAX;
    /* Halving the list until the text fits takes at most log2(200) + 1
     * builds; the list's tail is kept, which holds the joiner itself. */
    for (;;) {
        text = build_welcome(session, room, token, user, list, listed);
        if (text == NULL || listed == 0 || strlen(text) <= max_bytes)
            break;
        mem_free(text);
        listed /= 2;
    }
    json_decref(list);
    return text;
}

/* Bytes of {"type":"history","messages":[],"more":true}: what a history
 * costs besides its messages, with the comma-free empty array. */
#define HISTORY_OVERHEAD (sizeof "{\"type\":\"history\",\"messages\":[],\"more\":true}" - 1)

char *proto_build_history_fit(const json_t *messages, int more, size_t max_bytes)
{
    json_t *list = array_arg(messages), *kept;
    size_t n, first, used = HISTORY_OVERHEAD;
    builder b;

    if (list == NULL)
        return NULL;
    if (max_bytes == 0 || max_bytes > PROTO_MAX_MESSAGE)
        max_bytes = PROTO_MAX_MESSAGE;
    n = json_array_size(list);
    /* Newest last: walk back from the end while the next one still fits.
     * json_dumpb with no buffer measures without allocating, and the
     * compact text of an array is its elements' texts joined by commas,
     * so the sum is exact. */
    for (first = n; first > 0; first--) {
        size_t len = json_dumpb(json_array_get(list, first - 1), NULL, 0, JSON_COMPACT);
        size_t need = len + (first < n ? 1 : 0);
        if (len == 0) { /* no text is empty: the measure failed (no memory) */
            json_decref(list);
            return NULL;
        }
        if (used + need > max_bytes)
            break;
        used += need;
    }
    kept = array_tail(list, n - first);
    json_decref(list);
    b = begin("history");
    set(&b, "messages", kept);
    if (more || first > 0)
        set(&b, "more", json_true());
    return finish(&b);
}

char *proto_build_history(const json_t *messages)
{
    return proto_build_history_fit(messages, 0, PROTO_MAX_MESSAGE);
}

char *proto_history_refit(const char *text, size_t len, size_t max_bytes)
{
    json_t *root = json_loadb(text, len, 0, NULL);
    char *out = NULL;

    if (json_is_array(json_object_get(root, "messages")))
        out = proto_build_history_fit(json_object_get(root, "messages"),
                                      json_is_true(json_object_get(root, "more")), max_bytes);
    json_decref(root);
    return out;
}

char *proto_build_presence(const char *event, const json_t *user_summary)
{
    builder b = begin("presence");

    set(&b, "event", event ? json_string(event) : NULL);
    set(&b, "user", json_is_object(user_summary) ? borrow(user_summary) : NULL);
    return finish(&b);
}

char *proto_build_error(const char *code, const char *message, long retry_in_ms, int fatal,
                        const char *ref)
{
    builder b = begin("error");

    set(&b, "code", code ? json_string(code) : NULL);
    set(&b, "message", json_string(message ? message : ""));
    if (retry_in_ms >= 0)
        set(&b, "retry_in_ms", json_integer(retry_in_ms));
    set(&b, "fatal", json_boolean(fatal));
    if (ref != NULL)
        set(&b, "ref", json_string(ref));
    return finish(&b);
}

char *proto_build_pong(const char *ref, const char *ts)
{
    builder b = begin("pong");

    if (ref != NULL)
        set(&b, "ref", json_string(ref));
    set(&b, "ts", ts ? json_string(ts) : NULL);
    return finish(&b);
}
