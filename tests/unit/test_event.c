/*
 * test_event — chat/event's readers of cluster events, one rule at a time.
 *
 * Each case starts from a valid event and breaks one rule (a wrong type, a
 * missing field, one byte too many, a bad room name, a user id out of
 * range, a whisper's recipients), and checks the exact outcome: refused
 * (0 / CHAT_EVENT_BAD), or accepted with exactly these fields. Events are
 * read from JSON text the way chat/link.c's on_event reads what NATS
 * carried (json_loadb, flags 0); NUL inside a string, which that refuses,
 * is tried on objects built in memory.
 */
#include <criterion/criterion.h>

#include "chat/event.h"

#include "torture.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* The event of a JSON text, read as on_event reads it. */
static json_t *ev_of(const char *text)
{
    json_error_t e;
    json_t *ev = json_loadb(text, strlen(text), 0, &e);
    cr_assert_not_null(ev, "test event does not parse: %s: %s", e.text, text);
    return ev;
}

/* A string of n copies of ch (the caller frees it). */
static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* ev with key set to a string of n copies of ch. */
static void set_long(json_t *o, const char *key, char ch, size_t n)
{
    char *s = repeat(ch, n);
    cr_assert_eq(json_object_set_new(o, key, json_string(s)), 0);
    free(s);
}

/* ev_of only takes objects and arrays: scalars need JSON_DECODE_ANY. */
static json_t *any_of(const char *text)
{
    json_t *v = json_loadb(text, strlen(text), JSON_DECODE_ANY, NULL);
    cr_assert_not_null(v, "%s", text);
    return v;
}

/* ---------- kind and origin ---------- */

Test(event, kind_of_each_kind)
{
    static const struct {
        const char *k;
        chat_event_kind kind;
    } kinds[] = {
        {"m", CHAT_EVENT_MESSAGE},   {"a", CHAT_EVENT_ANNOUNCEMENT}, {"kick", CHAT_EVENT_KICK},
        {"close", CHAT_EVENT_CLOSE}, {"room", CHAT_EVENT_ROOM},      {"x", CHAT_EVENT_BAD},
        {"", CHAT_EVENT_BAD},        {"M", CHAT_EVENT_BAD},          {"kicks", CHAT_EVENT_BAD}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        json_t *ev = json_pack("{s:s,s:s}", "k", kinds[i].k, "o", "node-a");
        const char *origin = "unset";
        cr_assert_eq(chat_event_kind_of(ev, &origin), kinds[i].kind, "k=%s", kinds[i].k);
        cr_assert_str_eq(origin, "node-a", "the origin is read whatever the kind");
        json_decref(ev);
    }
    check_leaks();
}

Test(event, kind_of_refuses_bad_shapes)
{
    const char *origin = "unset";
    cr_assert_eq(chat_event_kind_of(NULL, &origin), CHAT_EVENT_BAD, "not JSON at all");
    cr_assert_null(origin);
    const char *bad[] = {
        "[\"m\"]",                     /* not an object */
        "\"m\"",                       /* a string */
        "{\"o\":\"n1\"}",              /* no kind */
        "{\"k\":\"m\"}",               /* no origin */
        "{\"k\":1,\"o\":\"n1\"}",      /* kind not a string */
        "{\"k\":\"m\",\"o\":7}",       /* origin not a string */
        "{\"k\":\"m\",\"o\":null}",    /* origin null */
        "{\"k\":null,\"o\":\"n1\"}",   /* kind null */
        "{\"k\":[\"m\"],\"o\":\"n1\"}" /* kind an array */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *ev = json_loadb(bad[i], strlen(bad[i]), JSON_DECODE_ANY, NULL);
        cr_assert_not_null(ev, "%s", bad[i]);
        cr_assert_eq(chat_event_kind_of(ev, &origin), CHAT_EVENT_BAD, "%s", bad[i]);
        json_decref(ev);
    }
    check_leaks();
}

Test(event, origin_at_most_64_bytes)
{
    json_t *ev = ev_of("{\"k\":\"kick\"}");
    const char *origin = NULL;
    set_long(ev, "o", 'n', 64);
    cr_assert_eq(chat_event_kind_of(ev, &origin), CHAT_EVENT_KICK);
    cr_assert_eq(strlen(origin), 64);
    set_long(ev, "o", 'n', 65);
    cr_assert_eq(chat_event_kind_of(ev, &origin), CHAT_EVENT_BAD);
    cr_assert_null(origin);
    json_decref(ev);
    check_leaks();
}

/* ---------- messages ---------- */

#define MSG_MANUAL                                                                                 \
    "{\"k\":\"m\",\"o\":\"n1\",\"room\":\"lobby\",\"src\":\"manual\",\"uid\":3,"                   \
    "\"un\":\"Clementine Bauch\",\"uu\":\"Samantha\",\"text\":\"hello\","                          \
    "\"ts\":\"2026-11-30T10:00:00.000Z\",\"t\":17}"

typedef struct {
    proto_message m;
    long ids[PROTO_MAX_RECIPIENTS];
    size_t n;
    char rcpt[CHAT_EVENT_RECIPIENTS_MAX];
} msg_out;

static int read_msg(const json_t *ev, msg_out *o)
{
    memset(o, 0x5a, sizeof *o); /* nothing may be left unset */
    return chat_event_message(ev, 1234, &o->m, o->ids, &o->n, o->rcpt);
}

Test(event, message_manual_valid)
{
    json_t *ev = ev_of(MSG_MANUAL);
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_eq(o.m.id, 1234);
    cr_assert_str_eq(o.m.room, "lobby");
    cr_assert_str_eq(o.m.source, "manual");
    cr_assert_eq(o.m.user_id, 3);
    cr_assert_str_eq(o.m.user_name, "Clementine Bauch");
    cr_assert_str_eq(o.m.user_username, "Samantha");
    cr_assert_str_eq(o.m.text, "hello");
    cr_assert_str_eq(o.m.ts, "2026-11-30T10:00:00.000Z");
    cr_assert_null(o.m.title);
    cr_assert_eq(o.m.post_id, 0);
    cr_assert_null(o.m.to);
    cr_assert_eq(o.n, 0);
    cr_assert_str_eq(o.rcpt, "");
    json_decref(ev);
    check_leaks();
}

Test(event, message_manual_drops_title_and_pid)
{
    json_t *ev = ev_of(MSG_MANUAL);
    json_object_set_new(ev, "title", json_string("a forged title"));
    json_object_set_new(ev, "pid", json_integer(42));
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_null(o.m.title, "a title is auto's only");
    cr_assert_eq(o.m.post_id, 0, "a post id is auto's only");
    json_decref(ev);
    check_leaks();
}

Test(event, message_auto_keeps_title_and_pid)
{
    json_t *ev = ev_of(MSG_MANUAL);
    json_object_set_new(ev, "src", json_string("auto"));
    json_object_set_new(ev, "title", json_string("sunt aut facere"));
    json_object_set_new(ev, "pid", json_integer(21));
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_str_eq(o.m.source, "auto");
    cr_assert_str_eq(o.m.title, "sunt aut facere");
    cr_assert_eq(o.m.post_id, 21);
    /* a post id out of range or of the wrong type is no post id */
    const json_int_t bad_pids[] = {0, -1, (json_int_t)INT32_MAX + 1};
    for (size_t i = 0; i < 3; i++) {
        json_object_set_new(ev, "pid", json_integer(bad_pids[i]));
        cr_assert_eq(read_msg(ev, &o), 1);
        cr_assert_eq(o.m.post_id, 0, "pid %lld", (long long)bad_pids[i]);
    }
    json_object_set_new(ev, "pid", json_integer(INT32_MAX));
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_eq(o.m.post_id, INT32_MAX);
    json_object_set_new(ev, "pid", json_string("21"));
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_eq(o.m.post_id, 0);
    /* an auto post without a title is still a post (title NULL) */
    json_object_del(ev, "title");
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_null(o.m.title);
    json_decref(ev);
    check_leaks();
}

Test(event, message_missing_required_fields)
{
    const char *required[] = {"room", "src", "uid", "text", "ts"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        json_t *ev = ev_of(MSG_MANUAL);
        json_object_del(ev, required[i]);
        msg_out o;
        cr_assert_eq(read_msg(ev, &o), 0, "without %s", required[i]);
        json_decref(ev);
    }
    check_leaks();
}

Test(event, message_names_optional)
{
    json_t *ev = ev_of(MSG_MANUAL);
    json_object_del(ev, "un");
    json_object_set_new(ev, "uu", json_integer(5)); /* wrong type: as if absent */
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_str_eq(o.m.user_name, "");
    cr_assert_str_eq(o.m.user_username, "");
    json_decref(ev);
    check_leaks();
}

Test(event, message_wrong_types)
{
    static const struct {
        const char *key, *json;
    } wrong[] = {
        {"room", "5"},   {"room", "null"}, {"room", "[\"lobby\"]"}, {"src", "1"},
        {"src", "null"}, {"uid", "\"3\""}, {"uid", "3.0"},          {"uid", "true"},
        {"uid", "null"}, {"text", "7"},    {"text", "{}"},          {"ts", "1733000000"},
        {"ts", "null"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        json_t *ev = ev_of(MSG_MANUAL);
        json_object_set_new(ev, wrong[i].key, any_of(wrong[i].json));
        msg_out o;
        cr_assert_eq(read_msg(ev, &o), 0, "%s: %s", wrong[i].key, wrong[i].json);
        json_decref(ev);
    }
    check_leaks();
}

Test(event, message_user_ids)
{
    static const struct {
        json_int_t uid;
        int ok;
    } ids[] = {{1, 1},        {INT32_MAX, 1}, {0, 0}, {-1, 0}, {(json_int_t)INT32_MAX + 1, 0},
               {INT64_MIN, 0}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        json_t *ev = ev_of(MSG_MANUAL);
        json_object_set_new(ev, "uid", json_integer(ids[i].uid));
        msg_out o;
        cr_assert_eq(read_msg(ev, &o), ids[i].ok, "uid %lld", (long long)ids[i].uid);
        if (ids[i].ok)
            cr_assert_eq(o.m.user_id, (long)ids[i].uid);
        json_decref(ev);
    }
    json_t *ev = ev_of(MSG_MANUAL);
    json_object_set_new(ev, "uid", any_of("1e3"));
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 0, "a real is no user id");
    json_decref(ev);
    check_leaks();
}

Test(event, message_sizes)
{
    static const struct {
        const char *key;
        size_t max;
    } fields[] = {{"text", PROTO_MAX_TEXT * 4}, {"ts", 31}, {"un", 256}, {"uu", 256}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *ev = ev_of(MSG_MANUAL);
        msg_out o;
        set_long(ev, fields[i].key, 'x', fields[i].max);
        cr_assert_eq(read_msg(ev, &o), 1, "%s of %zu bytes", fields[i].key, fields[i].max);
        set_long(ev, fields[i].key, 'x', fields[i].max + 1);
        int optional = strcmp(fields[i].key, "un") == 0 || strcmp(fields[i].key, "uu") == 0;
        /* a name too long is dropped (""), a text or ts refuses the event */
        cr_assert_eq(read_msg(ev, &o), optional, "%s of %zu bytes", fields[i].key,
                     fields[i].max + 1);
        if (optional)
            cr_assert_str_eq(strcmp(fields[i].key, "un") == 0 ? o.m.user_name : o.m.user_username,
                             "");
        json_decref(ev);
    }
    /* an auto post's title: the same bound as its text; too long, none */
    json_t *ev = ev_of(MSG_MANUAL);
    json_object_set_new(ev, "src", json_string("auto"));
    set_long(ev, "title", 't', PROTO_MAX_TEXT * 4);
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_eq(strlen(o.m.title), PROTO_MAX_TEXT * 4);
    set_long(ev, "title", 't', PROTO_MAX_TEXT * 4 + 1);
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_null(o.m.title);
    /* 2,000 four-byte characters are within the bound */
    char *text = malloc(PROTO_MAX_TEXT * 4 + 1);
    for (size_t i = 0; i < PROTO_MAX_TEXT; i++)
        memcpy(text + i * 4, "\xf0\x9f\x98\x80", 4);
    text[PROTO_MAX_TEXT * 4] = '\0';
    json_object_set_new(ev, "text", json_string(text));
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_str_eq(o.m.text, text);
    free(text);
    json_decref(ev);
    check_leaks();
}

Test(event, message_room_names)
{
    static const struct {
        const char *room;
        int ok;
    } rooms[] = {{"lobby", 1}, {"a", 1},   {"A-b_c.9", 1},     {"", 0},   {"two words", 0},
                 {"a/b", 0},   {"a~b", 0}, {"caf\xc3\xa9", 0}, {"a*", 0}, {"a>b", 0}};
    for (size_t i = 0; i < sizeof rooms / sizeof rooms[0]; i++) {
        json_t *ev = ev_of(MSG_MANUAL);
        json_object_set_new(ev, "room", json_string(rooms[i].room));
        msg_out o;
        cr_assert_eq(read_msg(ev, &o), rooms[i].ok, "room '%s'", rooms[i].room);
        if (rooms[i].ok)
            cr_assert_str_eq(o.m.room, rooms[i].room);
        json_decref(ev);
    }
    json_t *ev = ev_of(MSG_MANUAL);
    msg_out o;
    set_long(ev, "room", 'r', 63);
    cr_assert_eq(read_msg(ev, &o), 1, "63 characters");
    set_long(ev, "room", 'r', 64);
    cr_assert_eq(read_msg(ev, &o), 0, "64 characters");
    json_decref(ev);
    check_leaks();
}

Test(event, message_unknown_source)
{
    const char *sources[] = {"", "Manual", "system", "auto ", "whisperer", "announcement"};
    for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++) {
        json_t *ev = ev_of(MSG_MANUAL);
        json_object_set_new(ev, "src", json_string(sources[i]));
        msg_out o;
        cr_assert_eq(read_msg(ev, &o), 0, "source '%s'", sources[i]);
        json_decref(ev);
    }
    check_leaks();
}

/* ---------- whispers ---------- */

#define MSG_WHISPER                                                                                \
    "{\"k\":\"m\",\"o\":\"n2\",\"room\":\"lobby\",\"src\":\"whisper\",\"uid\":3,"                  \
    "\"un\":\"Clementine Bauch\",\"uu\":\"Samantha\",\"text\":\"psst\","                           \
    "\"ts\":\"2026-11-30T10:00:00.000Z\","                                                         \
    "\"to\":[{\"id\":5,\"name\":\"E\",\"username\":\"e\"},{\"id\":2,\"name\":\"B\",\"username\":"  \
    "\"b\"}]}"

Test(event, whisper_valid_sorted)
{
    json_t *ev = ev_of(MSG_WHISPER);
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_str_eq(o.m.source, "whisper");
    cr_assert_eq(o.m.to, json_object_get(ev, "to"), "the USER array, borrowed");
    cr_assert_eq(o.n, 2);
    cr_assert_eq(o.ids[0], 2);
    cr_assert_eq(o.ids[1], 5);
    cr_assert_str_eq(o.rcpt, "2,5");
    json_decref(ev);
    check_leaks();
}

/* A whisper's "to" of the ids given, as USER objects. */
static json_t *to_of(const long *ids, size_t n)
{
    json_t *to = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            to, json_pack("{s:I,s:s,s:s}", "id", (json_int_t)ids[i], "name", "N", "username", "u"));
    return to;
}

Test(event, whisper_twenty_recipients_not_twenty_one)
{
    long ids[21];
    for (size_t i = 0; i < 21; i++)
        ids[i] = (long)(INT32_MAX - (json_int_t)i * 1000); /* descending, ten digits each */
    json_t *ev = ev_of(MSG_WHISPER);
    json_object_set_new(ev, "to", to_of(ids, 20));
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_eq(o.n, 20);
    char want[CHAT_EVENT_RECIPIENTS_MAX];
    size_t len = 0;
    for (size_t i = 0; i < 20; i++) {
        cr_assert_eq(o.ids[i], ids[19 - i], "ascending");
        len += (size_t)snprintf(want + len, sizeof want - len, i ? ",%ld" : "%ld", ids[19 - i]);
    }
    cr_assert_str_eq(o.rcpt, want);
    json_object_set_new(ev, "to", to_of(ids, 21));
    cr_assert_eq(read_msg(ev, &o), 0, "21 recipients");
    cr_assert_eq(o.n, 0);
    json_decref(ev);
    check_leaks();
}

Test(event, whisper_bad_recipients)
{
    static const char *tos[] = {
        "[]",                                 /* nobody */
        "[{\"id\":2},{\"id\":2}]",            /* the same user twice */
        "[{\"id\":2},{\"id\":5},{\"id\":2}]", /* twice, not side by side */
        "[2,5]",                              /* ids, not USER objects */
        "[{\"id\":2},\"5\"]",                 /* one not an object */
        "[{\"id\":0}]",                       /* id 0 */
        "[{\"id\":-4}]",                      /* negative */
        "[{\"id\":2147483648}]",              /* over 2^31 - 1 */
        "[{\"id\":\"2\"}]",                   /* id a string */
        "[{\"name\":\"B\"}]",                 /* no id */
        "[null]",                             /* null */
        "{\"id\":2}",                         /* an object, not an array */
        "\"2\"",                              /* a string */
        "null",                               /* null */
    };
    for (size_t i = 0; i < sizeof tos / sizeof tos[0]; i++) {
        json_t *ev = ev_of(MSG_WHISPER);
        json_object_set_new(ev, "to", any_of(tos[i]));
        msg_out o;
        cr_assert_eq(read_msg(ev, &o), 0, "to: %s", tos[i]);
        cr_assert_eq(o.n, 0, "to: %s: no recipients when refused", tos[i]);
        json_decref(ev);
    }
    check_leaks();
}

Test(event, whisper_without_to)
{
    json_t *ev = ev_of(MSG_WHISPER);
    json_object_del(ev, "to");
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 0);
    cr_assert_eq(o.n, 0);
    json_decref(ev);
    check_leaks();
}

Test(event, to_on_a_public_message)
{
    const char *sources[] = {"manual", "auto"};
    for (size_t i = 0; i < 2; i++) {
        json_t *ev = ev_of(MSG_WHISPER);
        json_object_set_new(ev, "src", json_string(sources[i]));
        msg_out o;
        cr_assert_eq(read_msg(ev, &o), 0, "%s with recipients", sources[i]);
        /* an empty array is still recipients */
        json_object_set_new(ev, "to", json_array());
        cr_assert_eq(read_msg(ev, &o), 0, "%s with \"to\":[]", sources[i]);
        json_decref(ev);
    }
    /* "to" that is not an array is not read as recipients at all */
    json_t *ev = ev_of(MSG_MANUAL);
    json_object_set_new(ev, "to", json_string("5"));
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_null(o.m.to);
    cr_assert_eq(o.n, 0);
    cr_assert_str_eq(o.rcpt, "");
    json_decref(ev);
    check_leaks();
}

/* ---------- NUL inside a string ---------- */

Test(event, nul_refused_by_the_parser_on_events)
{
    /* on_event reads with flags 0: jansson refuses \u0000 there, so no
     * event with NUL inside reaches the readers from NATS */
    const char *text = "{\"k\":\"m\",\"o\":\"n1\",\"text\":\"a\\u0000b\"}";
    cr_assert_null(json_loadb(text, strlen(text), 0, NULL));
    json_t *ev = json_loadb(text, strlen(text), JSON_ALLOW_NUL, NULL);
    cr_assert_not_null(ev, "JSON_ALLOW_NUL takes it");
    json_decref(ev);
    check_leaks();
}

Test(event, nul_inside_a_string_refused)
{
    /* built in memory: every bounded field refuses a NUL inside */
    static const char *keys[] = {"room", "text", "ts"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *ev = ev_of(MSG_MANUAL);
        json_object_set_new(ev, keys[i], json_stringn("lob\0by", 6));
        msg_out o;
        cr_assert_eq(read_msg(ev, &o), 0, "NUL in %s", keys[i]);
        json_decref(ev);
    }
    json_t *ev = ev_of(MSG_MANUAL);
    json_object_set_new(ev, "un", json_stringn("Clem\0entine", 11));
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_str_eq(o.m.user_name, "", "a name with NUL is dropped");
    json_object_set_new(ev, "o", json_stringn("n1\0n2", 5));
    const char *origin = "unset";
    cr_assert_eq(chat_event_kind_of(ev, &origin), CHAT_EVENT_BAD, "NUL in the origin");
    json_decref(ev);
    check_leaks();
}

/* ---------- announcements ---------- */

Test(event, announcement_room_or_every_room)
{
    const char *room = "unset", *text = NULL, *ts = NULL;
    json_t *ev = ev_of("{\"k\":\"a\",\"o\":\"n1\",\"room\":\"lobby\",\"text\":\"maintenance\","
                       "\"ts\":\"2026-11-30T10:00:00.000Z\"}");
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 1);
    cr_assert_str_eq(room, "lobby");
    cr_assert_str_eq(text, "maintenance");
    cr_assert_str_eq(ts, "2026-11-30T10:00:00.000Z");

    json_object_set_new(ev, "room", json_null());
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 1, "null: every room");
    cr_assert_null(room);

    json_object_set_new(ev, "room", json_string("not a room"));
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 0, "an invalid room");
    cr_assert_null(room);
    json_object_set_new(ev, "room", json_string(""));
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 0, "an empty room");
    json_object_set_new(ev, "room", json_integer(0));
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 0, "a room not a string");
    json_object_del(ev, "room");
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 0, "no room at all is not null");
    json_decref(ev);
    check_leaks();
}

Test(event, announcement_text_and_ts)
{
    const char *room, *text, *ts;
    json_t *ev = ev_of("{\"k\":\"a\",\"o\":\"n1\",\"room\":null,\"text\":\"x\","
                       "\"ts\":\"2026-11-30T10:00:00.000Z\"}");
    set_long(ev, "text", 'x', PROTO_MAX_TEXT * 4);
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 1);
    set_long(ev, "text", 'x', PROTO_MAX_TEXT * 4 + 1);
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 0);
    cr_assert_null(text);
    json_object_set_new(ev, "text", json_integer(1));
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 0);
    json_object_del(ev, "text");
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 0);
    json_object_set_new(ev, "text", json_string("back"));
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 1);
    set_long(ev, "ts", '1', 32);
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 0, "ts of 32 bytes");
    cr_assert_null(ts);
    json_object_del(ev, "ts");
    cr_assert_eq(chat_event_announcement(ev, &room, &text, &ts), 0, "no ts");
    json_decref(ev);
    check_leaks();
}

/* ---------- kick and close ---------- */

Test(event, kick)
{
    const char *room = "unset";
    long user = -7;
    json_t *ev = ev_of("{\"k\":\"kick\",\"o\":\"n1\",\"room\":\"dev.ops\",\"uid\":9}");
    cr_assert_eq(chat_event_kick(ev, &room, &user), 1);
    cr_assert_str_eq(room, "dev.ops");
    cr_assert_eq(user, 9);
    static const char *uids[] = {"0", "-9", "2147483648", "\"9\"", "9.5", "null"};
    for (size_t i = 0; i < sizeof uids / sizeof uids[0]; i++) {
        json_object_set_new(ev, "uid", any_of(uids[i]));
        cr_assert_eq(chat_event_kick(ev, &room, &user), 0, "uid %s", uids[i]);
        cr_assert_eq(user, 0);
    }
    json_object_del(ev, "uid");
    cr_assert_eq(chat_event_kick(ev, &room, &user), 0, "no uid");
    json_object_set_new(ev, "uid", json_integer(9));
    json_object_set_new(ev, "room", json_string("dev ops"));
    cr_assert_eq(chat_event_kick(ev, &room, &user), 0, "bad room");
    cr_assert_null(room);
    json_object_del(ev, "room");
    cr_assert_eq(chat_event_kick(ev, &room, &user), 0, "no room");
    json_decref(ev);
    check_leaks();
}

Test(event, close)
{
    const char *room = "unset", *reason = "unset";
    json_t *ev =
        ev_of("{\"k\":\"close\",\"o\":\"n1\",\"room\":\"dev\",\"reason\":\"room_closed\"}");
    cr_assert_eq(chat_event_close(ev, &room, &reason), 1);
    cr_assert_str_eq(room, "dev");
    cr_assert_str_eq(reason, "room_closed");
    set_long(ev, "reason", 'r', 200);
    cr_assert_eq(chat_event_close(ev, &room, &reason), 1, "a reason of 200 bytes");
    set_long(ev, "reason", 'r', 201);
    cr_assert_eq(chat_event_close(ev, &room, &reason), 0, "a reason of 201 bytes");
    cr_assert_null(reason);
    json_object_set_new(ev, "reason", json_null());
    cr_assert_eq(chat_event_close(ev, &room, &reason), 0, "a reason not a string");
    json_object_del(ev, "reason");
    cr_assert_eq(chat_event_close(ev, &room, &reason), 0, "no reason");
    json_object_set_new(ev, "reason", json_string(""));
    cr_assert_eq(chat_event_close(ev, &room, &reason), 1, "an empty reason is a reason");
    json_object_set_new(ev, "room", json_null());
    cr_assert_eq(chat_event_close(ev, &room, &reason), 0, "room null: a close needs its room");
    cr_assert_null(room);
    json_object_del(ev, "room");
    cr_assert_eq(chat_event_close(ev, &room, &reason), 0, "no room");
    json_decref(ev);
    check_leaks();
}

/* ---------- room definitions ---------- */

#define ROOM_EV                                                                                    \
    "{\"k\":\"room\",\"o\":\"n1\",\"def\":{\"name\":\"book-club\",\"description\":\"Books\","      \
    "\"secret_hash\":\"scrypt$s\",\"pin_hash\":\"scrypt$p\",\"private\":true,"                     \
    "\"created_by\":4,\"created_at\":\"2026-11-30T10:00:00.000Z\"}}"

Test(event, room_valid)
{
    chat_room_def def;
    int removed = -1;
    json_t *ev = ev_of(ROOM_EV);
    memset(&def, 0x5a, sizeof def);
    cr_assert_eq(chat_event_room(ev, &def, &removed), 1);
    cr_assert_eq(removed, 0);
    cr_assert_str_eq(def.name, "book-club");
    cr_assert_str_eq(def.description, "Books");
    cr_assert_str_eq(def.secret_hash, "scrypt$s");
    cr_assert_str_eq(def.pin_hash, "scrypt$p");
    cr_assert_eq(def.is_private, 1);
    cr_assert_eq(def.created_by, 4);
    cr_assert_str_eq(def.created_at, "2026-11-30T10:00:00.000Z");
    cr_assert_eq(def.generation, 0, "the registry sets the generation");

    json_object_set_new(ev, "removed", json_true());
    cr_assert_eq(chat_event_room(ev, &def, &removed), 1);
    cr_assert_eq(removed, 1);
    json_object_set_new(ev, "removed", json_integer(1));
    cr_assert_eq(chat_event_room(ev, &def, &removed), 1);
    cr_assert_eq(removed, 0, "only true removes");
    json_decref(ev);
    check_leaks();
}

Test(event, room_only_a_name)
{
    chat_room_def def;
    int removed;
    json_t *ev = ev_of("{\"k\":\"room\",\"o\":\"n1\",\"def\":{\"name\":\"r\"},\"removed\":true}");
    memset(&def, 0x5a, sizeof def);
    cr_assert_eq(chat_event_room(ev, &def, &removed), 1);
    cr_assert_eq(removed, 1);
    cr_assert_str_eq(def.name, "r");
    cr_assert_str_eq(def.description, "");
    cr_assert_str_eq(def.secret_hash, "");
    cr_assert_str_eq(def.pin_hash, "");
    cr_assert_str_eq(def.created_at, "");
    cr_assert_eq(def.is_private, 0);
    cr_assert_eq(def.created_by, 0);
    /* "private" other than true, a creator id out of range: not private, chatd's */
    json_t *d = json_object_get(ev, "def");
    json_object_set_new(d, "private", json_string("true"));
    json_object_set_new(d, "created_by", json_integer(-4));
    cr_assert_eq(chat_event_room(ev, &def, &removed), 1);
    cr_assert_eq(def.is_private, 0);
    cr_assert_eq(def.created_by, 0);
    json_decref(ev);
    check_leaks();
}

Test(event, room_refusals)
{
    chat_room_def def;
    int removed;
    static const char *bad[] = {
        "{\"k\":\"room\",\"o\":\"n1\"}",                            /* no def */
        "{\"k\":\"room\",\"o\":\"n1\",\"def\":\"book-club\"}",      /* def not an object */
        "{\"k\":\"room\",\"o\":\"n1\",\"def\":null}",               /* null */
        "{\"k\":\"room\",\"o\":\"n1\",\"def\":{}}",                 /* no name */
        "{\"k\":\"room\",\"o\":\"n1\",\"def\":{\"name\":5}}",       /* name a number */
        "{\"k\":\"room\",\"o\":\"n1\",\"def\":{\"name\":\"\"}}",    /* empty name */
        "{\"k\":\"room\",\"o\":\"n1\",\"def\":{\"name\":\"a b\"}}", /* invalid name */
        "{\"k\":\"room\",\"o\":\"n1\",\"def\":{\"name\":\"a\",\"description\":null}}",
        "{\"k\":\"room\",\"o\":\"n1\",\"def\":{\"name\":\"a\",\"secret_hash\":1}}",
        "{\"k\":\"room\",\"o\":\"n1\",\"def\":{\"name\":\"a\",\"pin_hash\":[]}}",
        "{\"k\":\"room\",\"o\":\"n1\",\"def\":{\"name\":\"a\",\"created_at\":false}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *ev = ev_of(bad[i]);
        cr_assert_eq(chat_event_room(ev, &def, &removed), 0, "%s", bad[i]);
        json_decref(ev);
    }
    check_leaks();
}

Test(event, room_field_sizes)
{
    static const struct {
        const char *key;
        size_t max;
    } fields[] = {
        {"name", 63},
        {"description", CHAT_DESCRIPTION_MAX * 4},
        {"secret_hash", CHAT_HASH_MAX - 1},
        {"pin_hash", CHAT_HASH_MAX - 1},
        {"created_at", 31},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *ev = ev_of(ROOM_EV);
        json_t *d = json_object_get(ev, "def");
        chat_room_def def;
        int removed;
        set_long(d, fields[i].key, 'a', fields[i].max);
        cr_assert_eq(chat_event_room(ev, &def, &removed), 1, "%s of %zu bytes", fields[i].key,
                     fields[i].max);
        set_long(d, fields[i].key, 'a', fields[i].max + 1);
        cr_assert_eq(chat_event_room(ev, &def, &removed), 0, "%s of %zu bytes", fields[i].key,
                     fields[i].max + 1);
        json_object_set_new(d, fields[i].key, json_stringn("a\0b", 3));
        cr_assert_eq(chat_event_room(ev, &def, &removed), 0, "NUL in %s", fields[i].key);
        json_decref(ev);
    }
    check_leaks();
}

Test(event, message_whisper_drops_title_and_pid)
{
    /* a whisper's row would otherwise carry a forged title and post id */
    json_t *ev = ev_of(MSG_WHISPER);
    json_object_set_new(ev, "title", json_string("a forged title"));
    json_object_set_new(ev, "pid", json_integer(5));
    msg_out o;
    cr_assert_eq(read_msg(ev, &o), 1);
    cr_assert_null(o.m.title, "a title is auto's only");
    cr_assert_eq(o.m.post_id, 0, "a post id is auto's only");
    cr_assert_not_null(o.m.to);
    json_decref(ev);
    check_leaks();
}
