/*
 * chat-client — terminal client for chatd over a WebRTC data channel.
 *
 * Connects (SDP offer over HTTP POST, answer back), prints every received
 * text message on its own line, and sends every line of standard input as
 * one message. At end of input (or /quit) it waits until everything sent is
 * delivered, closes the channel gracefully and exits 0. It exits 1 with one
 * clear line when it cannot connect, or when the connection is lost for
 * good.
 *
 * A connection that drops (the channel closes without our asking, and not
 * after kicked, room_closed or a fatal error) is made again: after 1 s,
 * then doubling up to 30 s, with the last welcome's token (the same user)
 * and ?since= the last message id seen, so that the history that follows
 * the welcome is what was missed (PROTOCOL.md 10.4). Every message id is
 * printed once, however catch-up and live delivery overlap. Lines typed
 * meanwhile wait in a bounded queue and go out after the new welcome.
 *
 * Typed lines are posts, except for the commands: "/w ID[,ID...] text"
 * whispers, "/quit" ends input, and "//text" posts "/text".
 *
 * What it prints comes from other people: nothing of it reaches the
 * terminal raw. Control characters, C1 controls and bidirectional
 * overrides/isolates are replaced by visible stand-ins (terminal_safe), so
 * that a message cannot move the cursor, erase or recolour lines, set the
 * window title or reorder what follows it on the screen. --json keeps the
 * object exact by writing those characters as JSON \u escapes instead.
 *
 * Threads: main reads stdin, does HTTP and decides when to (re)connect;
 * one event loop runs the peer and prints what arrives. They share
 * client_state under its lock, and the loop wakes main through a pipe.
 * Each connection has a generation number; a callback of an older peer is
 * ignored.
 */
#include "common/http_client.h"
#include "rtc/peer.h"
#include "util/json_text.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/version.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glib.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Lines held while no welcomed session can take them. Past this, lines
 * typed after a drop are refused (and said so); before the first welcome
 * standard input is simply not read further. */
#define QUEUE_MAX_LINES 100
/* Reconnect waits: the first, doubling up to the last. */
#define RECONNECT_FIRST_MS 1000
#define RECONNECT_MAX_MS 30000
/* After fatal, kicked or room_closed the server closes the channel; we
 * close it ourselves if it has not within this. */
#define END_WAIT_US (5 * G_TIME_SPAN_SECOND)
/* The graceful close at end of input may take this long. */
#define CLOSE_WAIT_US (30 * G_TIME_SPAN_SECOND)
/* Message ids remembered so that each is printed once: past PRUNE_AT, ids
 * more than KEEP below the newest are forgotten (catch-up only ever
 * repeats ids above the last one seen, so those cannot come back). */
#define SEEN_PRUNE_AT 20000
#define SEEN_KEEP 10000

typedef struct {
    GMutex lock;
    GCond cond;
    /* options: set before the first connection, read-only after */
    int quiet;
    int raw;    /* --raw: text in, text out (transport tests, relay mode) */
    int json;   /* --json: print each received object as it came */
    int timing; /* --timing: print setup time (POST to open) on stderr */

    /* The current connection. The loop thread sets these under lock for
     * the peer of generation gen; main resets them for each new peer. */
    unsigned gen;
    int open;
    int closed;
    int welcomed;
    int fatal;      /* the server said fatal:true */
    int ended;      /* kicked or room_closed: not to be made again */
    int resumed;    /* this connection follows a drop */
    char since[24]; /* its ?since=, "" for none */
    char reason[160];
    char session[256]; /* the server's session id, from Location */
    gint64 post_started;

    /* Across connections. */
    char *token;            /* the last welcome's (or --token): posts and offers carry it */
    char *last_id;          /* the last message id seen, for ?since= */
    GHashTable *seen;       /* ids printed; the loop thread's alone */
    char *me;               /* the last welcome's user name, safe; the loop thread's */
    unsigned long next_ref; /* main's alone */
} client_state;

static client_state st;
static int wake_pipe[2] = {-1, -1}; /* the loop wakes main's poll */

static void wake_main(void)
{
    ssize_t w = write(wake_pipe[1], "x", 1);
    (void)w; /* a full pipe already wakes main */
}

/* Whether a callback's user pointer is the current connection's. */
static int is_current(void *user)
{
    g_mutex_lock(&st.lock);
    int cur = GPOINTER_TO_UINT(user) == st.gen;
    g_mutex_unlock(&st.lock);
    return cur;
}

static void on_open(rtc_peer *p, void *user)
{
    g_mutex_lock(&st.lock);
    int cur = GPOINTER_TO_UINT(user) == st.gen;
    if (cur) {
        st.open = 1;
        g_cond_broadcast(&st.cond);
    }
    g_mutex_unlock(&st.lock);
    if (!cur)
        return;
    if (st.timing)
        fprintf(stderr, "chat-client: setup %.3f ms\n",
                (g_get_monotonic_time() - st.post_started) / 1000.0);
    if (!st.quiet)
        fprintf(stderr, "chat-client: connected (session %s)\n",
                st.session[0] ? st.session : rtc_peer_id(p));
    wake_main();
}

/* Characters a terminal would act on rather than show: C0 and C1 controls,
 * DEL, and the bidirectional embeddings, overrides and isolates. */
static int is_unsafe(gunichar c)
{
    return c < 0x20 || (c >= 0x7F && c <= 0x9F) || (c >= 0x202A && c <= 0x202E) ||
           (c >= 0x2066 && c <= 0x2069);
}

enum { SAFE_TEXT, SAFE_JSON };

/* s (len bytes, from the network) made safe to print, as a g_malloc'd
 * string. SAFE_TEXT: tab stays; every other C0 control and DEL becomes its
 * Unicode control picture (ESC shows as U+241B), a C1 control or bidi
 * character becomes "<U+XXXX>", a byte that is not UTF-8 becomes U+FFFD.
 * SAFE_JSON (s is a JSON text): the same characters become \uXXXX escapes,
 * which mean exactly what the raw characters meant inside a JSON string. */
static char *terminal_safe(const char *s, size_t len, int how)
{
    GString *out = g_string_sized_new(len + 16);
    const char *p = s, *end = s + len;

    while (p < end) {
        gunichar c = g_utf8_get_char_validated(p, end - p);
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            g_string_append(out, how == SAFE_JSON ? "\\ufffd" : "\xef\xbf\xbd");
            p++;
            continue;
        }
        const char *next = g_utf8_next_char(p);
        if (!is_unsafe(c) || (c == '\t' && how == SAFE_TEXT))
            g_string_append_len(out, p, next - p);
        else if (how == SAFE_JSON)
            g_string_append_printf(out, "\\u%04x", (unsigned)c);
        else if (c < 0x20)
            g_string_append_unichar(out, 0x2400 + c);
        else if (c == 0x7F)
            g_string_append_unichar(out, 0x2421);
        else
            g_string_append_printf(out, "<U+%04X>", (unsigned)c);
        p = next;
    }
    return g_string_free(out, FALSE);
}

/* terminal_safe() of a string that may be NULL ("?" then). */
static char *safe_str(const char *s)
{
    return s ? terminal_safe(s, strlen(s), SAFE_TEXT) : g_strdup("?");
}

/* Writes one line to stdout in a single call, so lines stay whole; made
 * safe first (see terminal_safe). */
static void print_line(const char *text, size_t len, int how)
{
    char *safe = terminal_safe(text, len, how);
    size_t n = strlen(safe);
    char *line = g_realloc(safe, n + 1);
    line[n] = '\n';
    fwrite(line, 1, n + 1, stdout);
    fflush(stdout);
    g_free(line);
}

/* Newlines inside a message (JSONPlaceholder bodies have them) shown as
 * spaces: one message, one line. --json keeps the text as it came. */
static void one_line(char *s)
{
    for (char *c = s; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
}

static const char *str_at(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A MESSAGE or announcement as one line of text:
 *   NAME: text                            a post
 *   NAME: [title] text                    an auto post
 *   NAME -> TO1, TO2 (private): text      a whisper
 *   *** ANNOUNCEMENT (ROOM|everyone): text */
static void print_item(const json_t *m)
{
    const char *text = str_at(m, "text") ?: "";
    const char *name = str_at(json_object_get(m, "user"), "name") ?: "?";
    char *line;
    if (strcmp(str_at(m, "type") ?: "", "announcement") == 0) {
        const char *room = str_at(m, "room");
        line = g_strdup_printf("*** ANNOUNCEMENT (%s): %s", room ? room : "everyone", text);
    } else if (strcmp(str_at(m, "source") ?: "", "whisper") == 0) {
        GString *to = g_string_new(NULL);
        size_t i;
        json_t *u;
        json_array_foreach(json_object_get(m, "to"), i, u)
            g_string_append_printf(to, "%s%s", i ? ", " : "", str_at(u, "name") ?: "?");
        line = g_strdup_printf("%s -> %s (private): %s", name, to->len ? to->str : "?", text);
        g_string_free(to, TRUE);
    } else if (str_at(m, "title")) {
        line = g_strdup_printf("%s: [%s] %s", name, str_at(m, "title"), text);
    } else {
        line = g_strdup_printf("%s: %s", name, text);
    }
    one_line(line);
    print_line(line, strlen(line), SAFE_TEXT);
    g_free(line);
}

static gboolean seen_is_old(gpointer key, gpointer value, gpointer newest)
{
    (void)value;
    guint64 id = g_ascii_strtoull(key, NULL, 10);
    return id + SEEN_KEEP < GPOINTER_TO_SIZE(newest);
}

/* Whether the message or announcement m is seen here for the first time
 * (one without an id always is); remembers its id, which becomes the
 * last one seen. Loop thread. */
static int first_sighting(const json_t *m)
{
    const char *id = str_at(m, "id");
    if (id == NULL || *id == '\0' || strspn(id, "0123456789") != strlen(id) || strlen(id) > 19)
        return 1;
    if (g_hash_table_contains(st.seen, id))
        return 0;
    g_hash_table_add(st.seen, g_strdup(id));
    g_mutex_lock(&st.lock);
    g_free(st.last_id);
    st.last_id = g_strdup(id);
    g_mutex_unlock(&st.lock);
    if (g_hash_table_size(st.seen) > SEEN_PRUNE_AT) {
        guint64 newest = g_ascii_strtoull(id, NULL, 10);
        g_hash_table_foreach_remove(st.seen, seen_is_old, GSIZE_TO_POINTER((gsize)newest));
    }
    return 1;
}

/* --json: the object as it came, made safe (see terminal_safe). */
static void print_json(const uint8_t *data, size_t len)
{
    if (st.json)
        print_line((const char *)data, len, SAFE_JSON);
}

/* A history (or catch-up): the items not printed before are printed; with
 * --json the object as it came, or without the items already printed when
 * there were any. Returns the number of new items. */
static size_t print_history(json_t *m, const uint8_t *data, size_t len)
{
    json_t *items = json_object_get(m, "messages");
    json_t *fresh = json_array();
    size_t i, repeated = 0;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        if (first_sighting(item))
            json_array_append(fresh, item);
        else
            repeated++;
    }
    if (st.json && repeated == 0) {
        print_json(data, len);
    } else if (st.json) {
        json_object_set(m, "messages", fresh);
        char *text = json_text_compact(m);
        if (text)
            print_line(text, strlen(text), SAFE_JSON);
        mem_free(text);
    } else {
        json_array_foreach(fresh, i, item) print_item(item);
    }
    size_t n = json_array_size(fresh);
    json_decref(fresh);
    return n;
}

static void handle_error(const json_t *m)
{
    json_t *retry = json_object_get(m, "retry_in_ms");
    int fatal = json_is_true(json_object_get(m, "fatal"));
    char *code = safe_str(str_at(m, "code"));
    const char *msg = str_at(m, "message");
    char *text = msg ? safe_str(msg) : g_strdup("");
    fprintf(stderr, "chat-client: error %s: %s", code, text);
    g_free(code);
    g_free(text);
    if (json_is_integer(retry))
        fprintf(stderr, " (retrying in %lld ms)", (long long)json_integer_value(retry));
    fprintf(stderr, "%s\n", fatal ? " (fatal)" : "");
    if (fatal) {
        g_mutex_lock(&st.lock);
        st.fatal = 1;
        g_cond_broadcast(&st.cond);
        g_mutex_unlock(&st.lock);
        wake_main();
    }
}

/* kicked or room_closed: said on stderr (also with --quiet: it is why
 * chat-client ends), and the connection is not made again. */
static void handle_end(const json_t *m, int kicked)
{
    char *room = safe_str(str_at(m, "room"));
    char *reason = safe_str(str_at(m, "reason"));
    if (kicked)
        fprintf(stderr, "chat-client: kicked from %s: %s\n", room, reason);
    else
        fprintf(stderr, "chat-client: room %s closed: %s\n", room, reason);
    g_free(room);
    g_free(reason);
    g_mutex_lock(&st.lock);
    st.ended = 1;
    g_cond_broadcast(&st.cond);
    g_mutex_unlock(&st.lock);
    wake_main();
}

static void handle_chat(const uint8_t *data, size_t len)
{
    json_t *m = json_loadb((const char *)data, len, 0, NULL);
    const char *type = str_at(m, "type");
    if (type == NULL) {
        print_json(data, len);
        fprintf(stderr, "chat-client: unreadable message from the server\n");
    } else if (strcmp(type, "welcome") == 0) {
        print_json(data, len);
        const json_t *u = json_object_get(m, "user");
        g_mutex_lock(&st.lock);
        g_free(st.token);
        st.token = g_strdup(str_at(m, "token") ?: "");
        st.welcomed = 1;
        int resumed = st.resumed;
        g_cond_broadcast(&st.cond);
        g_mutex_unlock(&st.lock);
        g_free(st.me);
        st.me = safe_str(str_at(u, "name"));
        if (!st.quiet && !resumed) {
            char *username = safe_str(str_at(u, "username"));
            char *room = safe_str(str_at(m, "room"));
            fprintf(stderr, "chat-client: you are %s (@%s) in %s\n", st.me, username, room);
            g_free(username);
            g_free(room);
        }
        wake_main();
    } else if (strcmp(type, "history") == 0) {
        size_t n = print_history(m, data, len);
        g_mutex_lock(&st.lock);
        int resumed = st.resumed;
        st.resumed = 0; /* said once per reconnect */
        char since[sizeof st.since + 16] = "";
        if (st.since[0])
            snprintf(since, sizeof since, " since message %s", st.since);
        g_mutex_unlock(&st.lock);
        if (resumed && !st.quiet)
            fprintf(stderr, "chat-client: reconnected as %s; %zu message%s caught up%s%s\n",
                    st.me ? st.me : "?", n, n == 1 ? "" : "s", since,
                    json_is_true(json_object_get(m, "more"))
                        ? " (older ones were left out: GET /api/rooms/NAME/messages pages them)"
                        : "");
    } else if (strcmp(type, "message") == 0 || strcmp(type, "announcement") == 0) {
        if (first_sighting(m)) {
            print_json(data, len);
            if (!st.json)
                print_item(m);
        }
    } else if (strcmp(type, "presence") == 0) {
        print_json(data, len);
        if (!st.quiet) {
            char *name = safe_str(str_at(json_object_get(m, "user"), "name"));
            fprintf(stderr, "chat-client: %s %s\n", name,
                    strcmp(str_at(m, "event") ?: "", "join") == 0 ? "joined" : "left");
            g_free(name);
        }
    } else if (strcmp(type, "error") == 0) {
        print_json(data, len);
        handle_error(m);
    } else if (strcmp(type, "kicked") == 0 || strcmp(type, "room_closed") == 0) {
        print_json(data, len);
        handle_end(m, strcmp(type, "kicked") == 0);
    } else {
        print_json(data, len); /* pong, and what a later server adds */
    }
    json_decref(m);
}

static void on_message(rtc_peer *p, const uint8_t *data, size_t len, int binary, void *user)
{
    (void)p;
    if (binary || !is_current(user))
        return;
    if (st.raw)
        print_line((const char *)data, len, st.json ? SAFE_JSON : SAFE_TEXT);
    else
        handle_chat(data, len);
}

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    (void)p;
    g_mutex_lock(&st.lock);
    int cur = GPOINTER_TO_UINT(user) == st.gen;
    if (cur) {
        st.closed = 1;
        snprintf(st.reason, sizeof st.reason, "%s", reason);
        g_cond_broadcast(&st.cond);
    }
    g_mutex_unlock(&st.lock);
    if (cur)
        wake_main();
}

static const rtc_peer_callbacks callbacks = {
    .on_open = on_open, .on_message = on_message, .on_close = on_close};

/* "http://h:p/base/?room=x" -> "http://h:p/base/api/rtc?room=x". With
 * since, every since= of the URL is replaced by since=SINCE; the other
 * parameters (room, ...) stay as given. */
static char *endpoint(const char *url, const char *since)
{
    const char *q = strchr(url, '?');
    size_t base = q ? (size_t)(q - url) : strlen(url);
    GString *s = g_string_new_len(url, (gssize)base);
    if (s->len == 0 || s->str[s->len - 1] != '/')
        g_string_append_c(s, '/');
    g_string_append(s, "api/rtc");
    if (since == NULL) {
        if (q)
            g_string_append(s, q);
        return g_string_free(s, FALSE);
    }
    char sep = '?';
    if (q) {
        char **params = g_strsplit(q + 1, "&", -1);
        for (char **p = params; *p; p++) {
            if (**p == '\0' || strcmp(*p, "since") == 0 || strncmp(*p, "since=", 6) == 0)
                continue;
            g_string_append_printf(s, "%c%s", sep, *p);
            sep = '&';
        }
        g_strfreev(params);
    }
    g_string_append_printf(s, "%csince=%s", sep, since);
    return g_string_free(s, FALSE);
}

static int is_loopback_url(const char *url)
{
    return strstr(url, "://127.") != NULL || strstr(url, "://localhost") != NULL ||
           strstr(url, "://[::1]") != NULL;
}

/* ---------------------------------------------------------------- typed lines */

/* What a typed line becomes: text as is (--raw), or a post or whisper
 * object still without its token and ref (added when it is sent, so that
 * a queued line goes out with the token of the session it is sent on). */
typedef struct {
    char *raw;
    size_t len;
    json_t *obj;
} outgoing;

static void outgoing_free(gpointer p)
{
    outgoing *o = p;
    g_free(o->raw);
    json_decref(o->obj);
    g_free(o);
}

static void refuse(const char *why, const char *line, size_t n)
{
    char *safe = terminal_safe(line, n < 60 ? n : 60, SAFE_TEXT);
    fprintf(stderr, "chat-client: not sent: %s: %s%s\n", why, safe, n > 60 ? "..." : "");
    g_free(safe);
}

/* "/w 4,9 text": the ids (1-20 of them, each a positive integer) and the
 * text after one space. */
static json_t *parse_whisper(const char *line, size_t n)
{
    const char *p = line + 2, *end = line + n;
    if (p == end || (*p != ' ' && *p != '\t'))
        return NULL;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    const char *ids = p;
    while (p < end && *p != ' ' && *p != '\t')
        p++;
    size_t ids_len = (size_t)(p - ids);
    if (ids_len == 0 || p == end)
        return NULL;
    p++; /* the one separator; the rest is the text as typed */
    if (p == end)
        return NULL;
    json_t *to = json_array();
    const char *q = ids, *ids_end = ids + ids_len;
    while (q <= ids_end) {
        const char *comma = memchr(q, ',', (size_t)(ids_end - q));
        const char *e = comma ? comma : ids_end;
        long long v = 0;
        int ok = e > q && e - q <= 12;
        for (const char *d = q; ok && d < e; d++) {
            ok = *d >= '0' && *d <= '9';
            v = v * 10 + (*d - '0');
        }
        if (!ok || v <= 0) {
            json_decref(to);
            return NULL;
        }
        json_array_append_new(to, json_integer(v));
        q = e + 1;
    }
    return json_pack("{s:s,s:o,s:s%}", "type", "whisper", "to", to, "text", p, (size_t)(end - p));
}

/* A typed line as what it asks for: 1 with *out set, 0 when there is
 * nothing to send (refused with a line on stderr, or /quit: *quit set). */
static int parse_line(const char *line, size_t n, outgoing *out, int *quit)
{
    memset(out, 0, sizeof *out);
    if (st.raw) {
        out->raw = g_malloc(n + 1);
        memcpy(out->raw, line, n);
        out->raw[n] = '\0';
        out->len = n;
        return 1;
    }
    const char *text = line;
    size_t tn = n;
    if (n >= 2 && line[0] == '/' && line[1] == '/') {
        text++, tn--;
    } else if (n >= 1 && line[0] == '/') {
        size_t w = 1;
        while (w < n && line[w] != ' ' && line[w] != '\t' && line[w] != '\r')
            w++;
        if (w == 5 && memcmp(line, "/quit", 5) == 0) {
            *quit = 1;
            return 0;
        }
        if (w == 2 && line[1] == 'w') {
            out->obj = parse_whisper(line, n);
            if (out->obj == NULL)
                refuse("not a whisper (/w ID[,ID...] text, the text valid UTF-8)", line, n);
            return out->obj != NULL;
        }
        refuse("unknown command (/w ID[,ID...] text, /quit; // starts a post with /)", line, n);
        return 0;
    }
    out->obj = json_pack("{s:s,s:s%}", "type", "post", "text", text, tn);
    if (out->obj == NULL)
        fprintf(stderr, "chat-client: not sent: the line is not valid UTF-8\n");
    return out->obj != NULL;
}

/* Sends one item on an open peer; refuses (with a message) what the remote
 * would refuse. Returns -1 when the channel has closed under us: the item
 * is the caller's still, to send on the next connection. */
static int send_item(rtc_peer *peer, outgoing *o)
{
    size_t max = rtc_peer_max_send(peer);
    char *text = NULL;
    const char *data = o->raw;
    size_t n = o->len;
    int rc = 0;
    if (o->obj) {
        char refs[32];
        snprintf(refs, sizeof refs, "%lu", ++st.next_ref);
        g_mutex_lock(&st.lock);
        json_object_set_new(o->obj, "token", json_string(st.token ? st.token : ""));
        g_mutex_unlock(&st.lock);
        json_object_set_new(o->obj, "ref", json_string(refs));
        text = json_text_compact(o->obj);
        if (text == NULL) {
            fprintf(stderr, "chat-client: not sent: out of memory\n");
            return 0;
        }
        data = text;
        n = strlen(text);
    }
    if (n > max) {
        fprintf(stderr, "chat-client: not sent: a %zu-byte message is over the %zu-byte limit\n", n,
                max);
    } else {
        /* Back-pressure: let the queue drain rather than reach its limit,
         * past which the transport closes the peer. */
        while (rtc_peer_queued_bytes(peer) > LIMIT_PEER_QUEUE_BYTES / 2 && rtc_peer_is_open(peer))
            g_usleep(2000);
        if (rtc_peer_send_text(peer, data, n) < 0) {
            if (rtc_peer_is_open(peer))
                fprintf(stderr, "chat-client: send failed: %s\n", strerror(errno));
            else
                rc = -1;
        }
    }
    mem_free(text);
    return rc;
}

/* ---------------------------------------------------------------- connecting */

typedef struct {
    const char *url;
    rtc_peer_config cfg;
    const char *headers[2]; /* X-Room-Pin, when --pin */
    int timeout_s;
    int reconnect;       /* 0: --no-reconnect, or --raw */
    long max_reconnects; /* attempts in a row after a drop; -1: no limit */
} client_opts;

typedef enum {
    OFFER_OK,
    OFFER_RETRY,        /* not now (no answer, 5xx, 429, bad answer): try again later */
    OFFER_REFUSED,      /* a 4xx that will not change (pin, room name, ...) */
    OFFER_UNAUTHORIZED, /* 401: the token is no longer good */
} offer_result;

/* Waits until the current peer has closed (at most us), then drops our
 * reference. */
static void drop_peer(rtc_peer *peer, const char *reason, gint64 us)
{
    g_mutex_lock(&st.lock);
    int closed = st.closed;
    g_mutex_unlock(&st.lock);
    if (!closed)
        rtc_peer_close(peer, reason);
    gint64 deadline = g_get_monotonic_time() + us;
    g_mutex_lock(&st.lock);
    while (!st.closed)
        if (!g_cond_wait_until(&st.cond, &st.lock, deadline))
            break;
    g_mutex_unlock(&st.lock);
    rtc_peer_unref(peer);
}

/* A new peer, its offer posted to ep and the answer applied: OFFER_OK with
 * *out set (the channel opens later, on_open), or why in why. resumed:
 * this connection follows a drop. */
static offer_result make_offer(client_opts *o, const char *ep, int resumed, const char *since,
                               rtc_peer **out, char *why, size_t whylen)
{
    char err[512];
    g_mutex_lock(&st.lock);
    st.gen++;
    st.open = st.closed = st.welcomed = st.fatal = st.ended = 0;
    st.resumed = resumed;
    snprintf(st.since, sizeof st.since, "%s", since ? since : "");
    st.reason[0] = st.session[0] = '\0';
    o->cfg.user = GUINT_TO_POINTER(st.gen);
    char *bearer = st.token ? g_strdup(st.token) : NULL;
    g_mutex_unlock(&st.lock);

    rtc_peer *peer = NULL;
    char *offer = NULL;
    if (rtc_peer_offer(&o->cfg, &peer, &offer, err, sizeof err) < 0) {
        snprintf(why, whylen, "cannot create an offer: %s", err);
        g_free(bearer);
        return OFFER_RETRY;
    }
    http_reply resp;
    st.post_started = g_get_monotonic_time();
    /* A handle per offer: its connection closes with it, rather than
     * staying open to chatd (which counts connections per address) for the
     * whole session. */
    CURL *curl = curl_easy_init();
    int rc = curl
                 ? http_request_with_headers(curl, "POST", ep, "application/sdp", offer, bearer,
                                             o->headers, (long)o->timeout_s, &resp, err, sizeof err)
                 : (snprintf(err, sizeof err, "%s: cannot start curl", ep), -1);
    if (curl)
        curl_easy_cleanup(curl);
    rtc_free(offer);
    g_free(bearer);
    if (rc < 0) {
        snprintf(why, whylen, "cannot reach %s", err);
        drop_peer(peer, "no answer", 2 * G_TIME_SPAN_SECOND);
        return OFFER_RETRY;
    }
    if (resp.status != 201 || resp.body == NULL) {
        json_t *j = resp.body ? json_loads(resp.body, 0, NULL) : NULL;
        const char *ecode = str_at(json_object_get(j, "error"), "code");
        const char *emsg = str_at(json_object_get(j, "error"), "message");
        snprintf(why, whylen, "%s refused the offer: HTTP %ld%s%s%s%s", ep, resp.status,
                 ecode ? " " : "", ecode ? ecode : "", emsg ? ": " : "", emsg ? emsg : "");
        json_decref(j);
        long s = resp.status;
        http_reply_free(&resp);
        drop_peer(peer, "refused", 2 * G_TIME_SPAN_SECOND);
        if (s == 401)
            return OFFER_UNAUTHORIZED;
        return s >= 500 || s == 429 || s == 408 || s < 400 ? OFFER_RETRY : OFFER_REFUSED;
    }
    const char *slash = strrchr(resp.location, '/');
    g_mutex_lock(&st.lock);
    snprintf(st.session, sizeof st.session, "%s", slash ? slash + 1 : resp.location);
    g_mutex_unlock(&st.lock);
    if (rtc_peer_set_answer(peer, resp.body, resp.len, err, sizeof err) < 0) {
        snprintf(why, whylen, "bad answer from the server: %s", err);
        http_reply_free(&resp);
        drop_peer(peer, "bad answer", 2 * G_TIME_SPAN_SECOND);
        return OFFER_RETRY;
    }
    http_reply_free(&resp);
    *out = peer;
    return OFFER_OK;
}

/* ---------------------------------------------------------------- the session */

typedef enum {
    PH_UP,         /* the channel is open */
    PH_CLOSING,    /* input ended; the graceful close is under way */
    PH_DOWN,       /* lost; waiting to reconnect */
    PH_CONNECTING, /* reconnecting: offer answered, channel not open yet */
} phase;

typedef struct {
    client_opts *o;
    phase ph;
    rtc_peer *peer;
    GQueue queue;   /* outgoing items waiting for a welcomed session */
    int dropped;    /* a connection was lost: lines past the queue are refused */
    long attempt;   /* reconnect attempts since the last welcome */
    gint64 next_at; /* PH_DOWN: when to try again */
    gint64 end_by;  /* fatal, kicked, room_closed: close ourselves by then */
    gint64 close_by;
    /* standard input */
    char *buf;
    size_t len, cap;
    int eof_read; /* read() returned 0 */
    int quit;     /* /quit */
    int blocked;  /* a line waits for room in the queue */
} session;

static int input_ended(const session *s) { return s->quit || (s->eof_read && s->len == 0); }

static int ready_to_send(const session *s)
{
    g_mutex_lock(&st.lock);
    int ok = s->ph == PH_UP && (st.welcomed || st.raw) && !st.fatal && !st.ended;
    g_mutex_unlock(&st.lock);
    return ok;
}

/* One typed line: sent, queued or refused (1), or left for later when the
 * queue is full before the first welcome (0: standard input waits). */
static int take_line(session *s, const char *line, size_t n)
{
    int now = ready_to_send(s) && g_queue_is_empty(&s->queue);
    if (!now && s->queue.length >= QUEUE_MAX_LINES && !s->dropped)
        return 0;
    outgoing o;
    if (!parse_line(line, n, &o, &s->quit))
        return 1;
    if (now && send_item(s->peer, &o) == 0) {
        g_free(o.raw);
        json_decref(o.obj);
    } else if (now) {
        g_queue_push_tail(&s->queue, g_memdup2(&o, sizeof o)); /* the channel closed */
    } else if (s->queue.length >= QUEUE_MAX_LINES) {
        g_free(o.raw);
        json_decref(o.obj);
        refuse("reconnecting, and " G_STRINGIFY(QUEUE_MAX_LINES) " lines are already waiting", line,
               n);
    } else {
        g_queue_push_tail(&s->queue, g_memdup2(&o, sizeof o));
    }
    return 1;
}

/* Takes the complete lines in the input buffer (and the last one without a
 * newline at end of input), as far as they can be taken now. */
static void take_input(session *s)
{
    size_t start = 0;
    s->blocked = 0;
    while (!s->quit && start < s->len) {
        char *nl = memchr(s->buf + start, '\n', s->len - start);
        if (nl == NULL && !s->eof_read)
            break;
        size_t n = nl ? (size_t)(nl - (s->buf + start)) : s->len - start;
        if (!take_line(s, s->buf + start, n)) {
            s->blocked = 1;
            break;
        }
        start += nl ? n + 1 : n;
    }
    if (s->quit)
        start = s->len; /* what follows /quit is not sent */
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
}

/* Reads what standard input has; -1 when out of memory. */
static int read_input(session *s)
{
    if (s->len == s->cap) {
        char *nb = realloc(s->buf, s->cap * 2);
        if (nb == NULL)
            return -1;
        s->buf = nb;
        s->cap *= 2;
    }
    ssize_t r = read(STDIN_FILENO, s->buf + s->len, s->cap - s->len);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (r <= 0)
        s->eof_read = 1;
    else
        s->len += (size_t)r;
    take_input(s);
    return 0;
}

static gint64 backoff_us(long attempt)
{
    gint64 ms = RECONNECT_FIRST_MS;
    for (long i = 1; i < attempt && ms < RECONNECT_MAX_MS; i++)
        ms *= 2;
    return (ms < RECONNECT_MAX_MS ? ms : RECONNECT_MAX_MS) * 1000;
}

/* The connection is gone (why): schedules the next attempt and says so,
 * or returns 1 (after saying why) when it is lost for good. first: the
 * drop itself rather than a failed attempt. */
static int schedule_reconnect(session *s, const char *why, int first)
{
    if (!s->o->reconnect || s->o->max_reconnects == 0) {
        fprintf(stderr, "chat-client: connection lost: %s\n", why);
        return 1;
    }
    if (input_ended(s) && g_queue_is_empty(&s->queue)) {
        fprintf(stderr, "chat-client: connection lost: %s (input has ended: not reconnecting)\n",
                why);
        return 1;
    }
    if (s->o->max_reconnects > 0 && s->attempt >= s->o->max_reconnects) {
        fprintf(stderr, "chat-client: %s %s; giving up after %ld reconnect attempt%s\n",
                first ? "connection lost:" : "reconnect failed:", why, s->attempt,
                s->attempt == 1 ? "" : "s");
        return 1;
    }
    s->attempt++;
    s->dropped = 1;
    gint64 wait = backoff_us(s->attempt);
    s->next_at = g_get_monotonic_time() + wait;
    s->ph = PH_DOWN;
    if (!st.quiet)
        fprintf(stderr, "chat-client: %s (%s); reconnecting in %lld s (attempt %ld)\n",
                first ? "connection lost" : "reconnect failed", why,
                (long long)(wait / G_TIME_SPAN_SECOND), s->attempt);
    return 0;
}

/* PH_DOWN and the time has come: a new offer with the last token and
 * since= the last message id. Returns 1 when lost for good. */
static int reconnect(session *s)
{
    g_mutex_lock(&st.lock);
    char *since = st.last_id ? g_strdup(st.last_id) : NULL;
    g_mutex_unlock(&st.lock);
    char *ep = endpoint(s->o->url, since);
    char why[1024];
    offer_result r = make_offer(s->o, ep, 1, since, &s->peer, why, sizeof why);
    g_free(ep);
    g_free(since);
    switch (r) {
    case OFFER_OK:
        s->ph = PH_CONNECTING;
        return 0;
    case OFFER_UNAUTHORIZED:
        g_mutex_lock(&st.lock);
        int had_token = st.token != NULL;
        g_free(st.token);
        st.token = NULL;
        /* A refused token most often means another chatd (a new key, so
         * perhaps a new database whose ids start again): catch-up and the
         * ids printed start afresh too. No peer is current now, so the
         * loop thread does not touch seen. */
        g_free(st.last_id);
        st.last_id = NULL;
        g_hash_table_remove_all(st.seen);
        g_mutex_unlock(&st.lock);
        if (had_token) {
            /* PROTOCOL.md 5: a login past --jwt-max-age, or a new signing
             * key: connect as a new user */
            if (!st.quiet)
                fprintf(stderr,
                        "chat-client: the token was refused (%s); reconnecting as a new "
                        "user\n",
                        why);
            s->next_at = g_get_monotonic_time();
            return 0;
        }
        fprintf(stderr, "chat-client: %s; not reconnecting\n", why);
        return 1;
    case OFFER_REFUSED:
        fprintf(stderr, "chat-client: %s; not reconnecting\n", why);
        return 1;
    case OFFER_RETRY:
        break;
    }
    return schedule_reconnect(s, why, 0);
}

/* The current peer has closed: what now. Returns the exit status, or -1
 * to go on. */
static int after_close(session *s)
{
    g_mutex_lock(&st.lock);
    int fatal = st.fatal, ended = st.ended, welcomed = st.welcomed;
    char reason[sizeof st.reason];
    snprintf(reason, sizeof reason, "%s", st.reason);
    g_mutex_unlock(&st.lock);
    phase was = s->ph;
    rtc_peer_unref(s->peer);
    s->peer = NULL;
    if (was == PH_CLOSING) {
        if (strcmp(reason, "closed") == 0)
            return 0;
        fprintf(stderr, "chat-client: the channel did not close cleanly: %s\n", reason);
        return 1;
    }
    if (fatal) {
        fprintf(stderr, "chat-client: the server ended the session\n");
        return 1;
    }
    if (ended)
        return 1; /* kicked or room_closed, said when it came */
    if (welcomed)
        s->attempt = 0;
    return schedule_reconnect(s, reason, was == PH_UP) ? 1 : -1;
}

/* The main loop after the first connection opened: standard input, the
 * loop's wake-ups and the reconnect timer. Returns the exit status. */
static int run_session(session *s)
{
    for (;;) {
        gint64 now = g_get_monotonic_time();
        g_mutex_lock(&st.lock);
        int open = st.open, closed = st.closed, stop = st.fatal || st.ended;
        g_mutex_unlock(&st.lock);

        if (s->peer && closed) {
            int status = after_close(s);
            if (status >= 0)
                return status;
            continue;
        }
        if (s->ph == PH_CONNECTING && open)
            s->ph = PH_UP;
        if (stop && s->end_by == 0)
            s->end_by = now + END_WAIT_US;
        if (stop && now >= s->end_by && s->peer) {
            rtc_peer_close(s->peer, "the server did not close the channel");
            s->end_by = G_MAXINT64; /* on_close follows */
        }
        if (s->blocked && s->queue.length < QUEUE_MAX_LINES)
            take_input(s);
        while (!g_queue_is_empty(&s->queue) && ready_to_send(s)) {
            outgoing *o = g_queue_pop_head(&s->queue);
            if (send_item(s->peer, o) < 0) {
                g_queue_push_head(&s->queue, o); /* the channel closed: next time */
                break;
            }
            outgoing_free(o);
        }
        if (s->blocked && s->queue.length < QUEUE_MAX_LINES)
            continue;
        if (s->ph == PH_UP && input_ended(s) && g_queue_is_empty(&s->queue) && !stop) {
            rtc_peer_close_gracefully(s->peer);
            s->ph = PH_CLOSING;
            s->close_by = now + CLOSE_WAIT_US;
        }
        if (s->ph == PH_CLOSING && now >= s->close_by) {
            fprintf(stderr, "chat-client: the channel did not close cleanly: timed out\n");
            rtc_peer_close(s->peer, "close timed out");
            return 1;
        }
        if (s->ph == PH_DOWN && input_ended(s) && g_queue_is_empty(&s->queue)) {
            fprintf(stderr, "chat-client: input has ended while reconnecting: not reconnecting\n");
            return 1;
        }
        if (s->ph == PH_DOWN && now >= s->next_at) {
            if (reconnect(s))
                return 1;
            continue;
        }

        gint64 until = G_MAXINT64;
        if (s->ph == PH_DOWN)
            until = s->next_at;
        if (s->ph == PH_CLOSING && s->close_by < until)
            until = s->close_by;
        if (stop && s->end_by < until)
            until = s->end_by;
        int timeout_ms = until == G_MAXINT64 ? -1 : (int)((until - now + 999) / 1000);
        struct pollfd fds[2] = {{.fd = wake_pipe[0], .events = POLLIN},
                                {.fd = STDIN_FILENO, .events = POLLIN}};
        int nfds = s->eof_read || s->quit || s->blocked || s->ph == PH_CLOSING ? 1 : 2;
        if (poll(fds, (nfds_t)nfds, timeout_ms) < 0) {
            if (errno == EINTR)
                continue;
            perror("chat-client: poll");
            return 1;
        }
        if (fds[0].revents) {
            char drain[64];
            while (read(wake_pipe[0], drain, sizeof drain) > 0)
                ;
        }
        if (nfds == 2 && fds[1].revents && read_input(s) < 0) {
            fprintf(stderr, "chat-client: out of memory\n");
            return 1;
        }
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: chat-client --url URL [OPTION]...\n\n"
               "Connects to chatd over a WebRTC data channel, prints each chat message as\n"
               "NAME: text (auto posts as NAME: [title] text, whispers as\n"
               "NAME -> TO1, TO2 (private): text, announcements as\n"
               "*** ANNOUNCEMENT (ROOM|everyone): text) and posts each line of standard\n"
               "input with the session's token. Status lines go to stderr.\n\n"
               "  --url URL            chatd's base URL, e.g. http://127.0.0.1:8080/?room=lobby\n"
               "                       (https:// when chatd has --tls-cert)\n"
               "  --cacert FILE        trust the CA certificates in FILE (PEM) for https://\n"
               "                       instead of the system's\n"
               "  --ice-address ADDR   local address for ICE (repeatable; default: every\n"
               "                       interface, or 127.0.0.1 for a loopback URL)\n"
               "  --dtls-role ROLE     offer a=setup auto (actpass), active or passive\n"
               "  --json               print each received message as its JSON object\n"
               "  --token JWT          resume that user (Authorization: Bearer)\n"
               "  --pin PIN            the room's pin (X-Room-Pin, with every offer)\n"
               "  --no-reconnect       exit 1 when the connection is lost\n"
               "  --max-reconnects N   give up after N reconnect attempts in a row\n"
               "                       (default: no limit; 0 is --no-reconnect)\n"
               "  --raw                send and print plain text (chatd --mode relay; no\n"
               "                       commands, no reconnect)\n"
               "  --timing             print the setup time (offer POST to channel open)\n"
               "  --timeout SECONDS    connection setup limit (default 15)\n"
               "  --quiet              no status lines on standard error\n"
               "  -h, --help           this text\n"
               "  --version            print the version and exit\n\n"
               "Typed lines:\n"
               "  text                 a post\n"
               "  /w ID[,ID...] text   a whisper to those user ids (in this room)\n"
               "  /quit                end of input\n"
               "  //text               a post that starts with /\n\n"
               "When the connection drops (not after kicked, room_closed or a fatal error),\n"
               "chat-client connects again after 1 s, then 2, 4 ... 30 s, as the same user\n"
               "(the last token) and with ?since= the last message id it saw, so that it\n"
               "prints what it missed, each message once. Lines typed meanwhile are sent\n"
               "after the new welcome (at most " G_STRINGIFY(
                   QUEUE_MAX_LINES) " wait; more are refused).\n\n"
                                    "Exit status: 0 after end of input and a clean close; 1 when "
                                    "the connection\n"
                                    "cannot be made or is lost for good (kicked, room closed, a "
                                    "fatal error,\n"
                                    "reconnects exhausted or refused, or --no-reconnect); 2 on a "
                                    "bad option.\n");
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    const char *ice[17] = {0};
    int n_ice = 0;
    rtc_setup setup = RTC_SETUP_AUTO;
    int timeout_s = 15;
    const char *pin = NULL;
    int no_reconnect = 0;
    long max_reconnects = -1;
    enum { OPT_PIN = 256, OPT_NO_RECONNECT, OPT_MAX_RECONNECTS, OPT_CACERT };
    static const struct option opts[] = {
        {"url", required_argument, 0, 'u'},
        {"ice-address", required_argument, 0, 'i'},
        {"dtls-role", required_argument, 0, 'r'},
        {"timeout", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {"json", no_argument, 0, 'j'},
        {"token", required_argument, 0, 'k'},
        {"raw", no_argument, 0, 'w'},
        {"timing", no_argument, 0, 'T'},
        {"pin", required_argument, 0, OPT_PIN},
        {"no-reconnect", no_argument, 0, OPT_NO_RECONNECT},
        {"max-reconnects", required_argument, 0, OPT_MAX_RECONNECTS},
        {"cacert", required_argument, 0, OPT_CACERT},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            url = optarg;
            break;
        case 'i':
            if (n_ice >= 16) {
                fprintf(stderr, "chat-client: too many --ice-address\n");
                return 2;
            }
            ice[n_ice++] = optarg;
            break;
        case 'r':
            if (strcmp(optarg, "active") == 0)
                setup = RTC_SETUP_ACTIVE;
            else if (strcmp(optarg, "passive") == 0)
                setup = RTC_SETUP_PASSIVE;
            else if (strcmp(optarg, "auto") == 0)
                setup = RTC_SETUP_AUTO;
            else {
                fprintf(stderr, "chat-client: --dtls-role is auto, active or passive\n");
                return 2;
            }
            break;
        case 't':
            timeout_s = atoi(optarg);
            if (timeout_s <= 0) {
                fprintf(stderr, "chat-client: --timeout wants a positive number\n");
                return 2;
            }
            break;
        case 'q':
            st.quiet = 1;
            break;
        case 'j':
            st.json = 1;
            break;
        case 'k':
            st.token = g_strdup(optarg);
            break;
        case 'w':
            st.raw = 1;
            break;
        case 'T':
            st.timing = 1;
            break;
        case OPT_PIN:
            /* PROTOCOL.md 10.1: 1-256 bytes; a header value cannot hold a
             * line break */
            if (*optarg == '\0' || strlen(optarg) > 256 || strpbrk(optarg, "\r\n")) {
                fprintf(stderr, "chat-client: --pin is 1-256 bytes without a line break\n");
                return 2;
            }
            pin = optarg;
            break;
        case OPT_NO_RECONNECT:
            no_reconnect = 1;
            break;
        case OPT_CACERT:
            if (access(optarg, R_OK) != 0) {
                fprintf(stderr, "chat-client: cannot read --cacert %s: %s\n", optarg,
                        strerror(errno));
                return 2;
            }
            http_client_set_cacert(optarg);
            break;
        case OPT_MAX_RECONNECTS: {
            char *end;
            errno = 0;
            max_reconnects = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || max_reconnects < 0) {
                fprintf(stderr, "chat-client: --max-reconnects wants a number, 0 or more\n");
                return 2;
            }
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("chat-client (chatd) %s\n", chatd_version);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (url == NULL || optind != argc) {
        fprintf(stderr, "chat-client: %s (see --help)\n",
                url ? "unexpected argument" : "--url is required");
        return 2;
    }
    if (n_ice == 0 && is_loopback_url(url))
        ice[n_ice++] = "127.0.0.1";

    log_set_level(getenv("CHAT_CLIENT_DEBUG") ? LOGL_DEBUG : LOGL_ERROR);
    mem_install();
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_mutex_init(&st.lock);
    g_cond_init(&st.cond);
    st.seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    if (pipe(wake_pipe) < 0 || fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK) < 0 ||
        fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK) < 0) {
        perror("chat-client: pipe");
        return 1;
    }
    char err[512];
    if (rtc_init(err, sizeof err) < 0) {
        fprintf(stderr, "chat-client: %s\n", err);
        return 1;
    }
    rtc_loops *loops = rtc_loops_new(1);
    char *pin_header = pin ? g_strdup_printf("X-Room-Pin: %s", pin) : NULL;
    /* One shared-socket client (the controlling side towards chatd's
     * ICE-lite port); it also answers a full-ICE chatd (--rtc-port 0). */
    client_opts o = {.url = url,
                     .cfg = {.loops = loops,
                             .transport = RTC_TRANSPORT_MUX,
                             .ice_addresses = n_ice ? ice : NULL,
                             .setup = setup,
                             .setup_timeout_ms = timeout_s * 1000,
                             .cb = &callbacks},
                     .headers = {pin_header, NULL},
                     .timeout_s = timeout_s,
                     .reconnect = !no_reconnect && !st.raw,
                     .max_reconnects = max_reconnects};
    session s = {.o = &o, .ph = PH_UP, .cap = LIMIT_MESSAGE_BYTES};
    g_queue_init(&s.queue);
    s.buf = malloc(s.cap); /* a default-size message fits unmoved */
    int status = 1;
    char why[1024];
    char *ep = endpoint(url, NULL);
    if (s.buf == NULL) {
        fprintf(stderr, "chat-client: out of memory\n");
    } else if (make_offer(&o, ep, 0, NULL, &s.peer, why, sizeof why) != OFFER_OK) {
        fprintf(stderr, "chat-client: %s\n", why);
    } else {
        g_mutex_lock(&st.lock);
        while (!st.open && !st.closed)
            g_cond_wait(&st.cond, &st.lock);
        int opened = st.open;
        g_mutex_unlock(&st.lock);
        if (opened)
            status = run_session(&s);
        else
            fprintf(stderr, "chat-client: cannot connect to %s: %s\n", url, st.reason);
    }
    g_free(ep);
    if (s.peer)
        drop_peer(s.peer, "ended", 2 * G_TIME_SPAN_SECOND);
    g_queue_clear_full(&s.queue, outgoing_free);
    free(s.buf);
    g_free(pin_header);
    rtc_transport_stop();
    rtc_loops_free(loops);
    rtc_shutdown();
    curl_global_cleanup();
    g_hash_table_destroy(st.seen);
    g_free(st.token);
    g_free(st.last_id);
    g_free(st.me);
    return status;
}
