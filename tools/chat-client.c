/*
 * chat-client — terminal client for chatd over a WebRTC data channel.
 *
 * Connects (SDP offer over HTTP POST, answer back), prints every received
 * text message on its own line, and sends every line of standard input as
 * one message. At end of input it waits until everything sent is
 * delivered, closes the channel gracefully and exits 0. It exits 1 with one
 * clear line when it cannot connect or the connection is lost.
 *
 * What it prints comes from other people: nothing of it reaches the
 * terminal raw. Control characters, C1 controls and bidirectional
 * overrides/isolates are replaced by visible stand-ins (terminal_safe), so
 * that a message cannot move the cursor, erase or recolour lines, set the
 * window title or reorder what follows it on the screen. --json keeps the
 * object exact by writing those characters as JSON \u escapes instead.
 *
 * Threads: main reads stdin and does HTTP; one event loop runs the peer.
 */
#include "common/http_client.h"
#include "rtc/peer.h"
#include "util/json_text.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/mem.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    GMutex lock;
    GCond cond;
    int open;
    int closed;
    char reason[160];
    int quiet;
    char session[256]; /* the server's session id, from Location */
    int raw;           /* --raw: text in, text out (transport tests, relay mode) */
    int json;          /* --json: print each received object as it came */
    char *token;       /* from the welcome; every post carries it */
    int fatal;         /* the server said fatal:true */
    unsigned long next_ref;
    int timing; /* --timing: print setup time (POST to open) on stderr */
    gint64 post_started;
} client_state;

static client_state st;
static int wake_pipe[2] = {-1, -1}; /* on_close wakes the stdin loop */

static void on_open(rtc_peer *p, void *user)
{
    (void)user;
    g_mutex_lock(&st.lock);
    st.open = 1;
    g_cond_broadcast(&st.cond);
    g_mutex_unlock(&st.lock);
    if (st.timing)
        fprintf(stderr, "chat-client: setup %.3f ms\n",
                (g_get_monotonic_time() - st.post_started) / 1000.0);
    if (!st.quiet)
        fprintf(stderr, "chat-client: connected (session %s)\n",
                st.session[0] ? st.session : rtc_peer_id(p));
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

/* "NAME: text", or "NAME: [title] text" for an auto post. */
static void print_chat_message(const json_t *m)
{
    if (st.json)
        return; /* --json printed the message itself, as its one line */
    const char *name = json_string_value(json_object_get(json_object_get(m, "user"), "name"));
    const char *text = json_string_value(json_object_get(m, "text"));
    const char *title = json_string_value(json_object_get(m, "title"));
    char *line = title ? g_strdup_printf("%s: [%s] %s", name ? name : "?", title, text ? text : "")
                       : g_strdup_printf("%s: %s", name ? name : "?", text ? text : "");
    /* One message, one line: newlines inside a post (JSONPlaceholder bodies
     * have them) are shown as spaces; --json keeps the text as it came. */
    for (char *c = line; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    print_line(line, strlen(line), SAFE_TEXT);
    g_free(line);
}

static void handle_chat(const uint8_t *data, size_t len)
{
    json_t *m = json_loadb((const char *)data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    if (type == NULL) {
        fprintf(stderr, "chat-client: unreadable message from the server\n");
    } else if (strcmp(type, "welcome") == 0) {
        const json_t *u = json_object_get(m, "user");
        g_mutex_lock(&st.lock);
        free(st.token);
        st.token = strdup(json_string_value(json_object_get(m, "token")) ?: "");
        g_cond_broadcast(&st.cond);
        g_mutex_unlock(&st.lock);
        if (!st.quiet)
            fprintf(stderr, "chat-client: you are %s (@%s) in %s\n",
                    json_string_value(json_object_get(u, "name")) ?: "?",
                    json_string_value(json_object_get(u, "username")) ?: "?",
                    json_string_value(json_object_get(m, "room")) ?: "?");
    } else if (strcmp(type, "history") == 0) {
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(m, "messages"), i, item) print_chat_message(item);
    } else if (strcmp(type, "message") == 0) {
        print_chat_message(m);
    } else if (strcmp(type, "presence") == 0) {
        if (!st.quiet) {
            char *name =
                safe_str(json_string_value(json_object_get(json_object_get(m, "user"), "name")));
            fprintf(stderr, "chat-client: %s %s\n", name,
                    strcmp(json_string_value(json_object_get(m, "event")) ?: "", "join") == 0
                        ? "joined"
                        : "left");
            g_free(name);
        }
    } else if (strcmp(type, "error") == 0) {
        json_t *retry = json_object_get(m, "retry_in_ms");
        int fatal = json_is_true(json_object_get(m, "fatal"));
        char *code = safe_str(json_string_value(json_object_get(m, "code")));
        const char *msg = json_string_value(json_object_get(m, "message"));
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
            ssize_t w = write(wake_pipe[1], "x", 1);
            (void)w;
        }
    }
    json_decref(m);
}

static void on_message(rtc_peer *p, const uint8_t *data, size_t len, int binary, void *user)
{
    (void)p, (void)user;
    if (binary)
        return;
    if (st.raw || st.json)
        print_line((const char *)data, len, st.json ? SAFE_JSON : SAFE_TEXT);
    if (!st.raw)
        handle_chat(data, len);
}

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    (void)p, (void)user;
    g_mutex_lock(&st.lock);
    st.closed = 1;
    snprintf(st.reason, sizeof st.reason, "%s", reason);
    g_cond_broadcast(&st.cond);
    g_mutex_unlock(&st.lock);
    ssize_t w = write(wake_pipe[1], "x", 1);
    (void)w;
}

static const rtc_peer_callbacks callbacks = {
    .on_open = on_open, .on_message = on_message, .on_close = on_close};

/* "http://h:p/base/?room=x" -> "http://h:p/base/api/rtc?room=x" */
static char *endpoint(const char *url)
{
    const char *q = strchr(url, '?');
    size_t base = q ? (size_t)(q - url) : strlen(url);
    GString *s = g_string_new_len(url, (gssize)base);
    if (s->len == 0 || s->str[s->len - 1] != '/')
        g_string_append_c(s, '/');
    g_string_append(s, "api/rtc");
    if (q)
        g_string_append(s, q);
    return g_string_free(s, FALSE);
}

static int is_loopback_url(const char *url)
{
    return strstr(url, "://127.") != NULL || strstr(url, "://localhost") != NULL ||
           strstr(url, "://[::1]") != NULL;
}

/* Sends one line; refuses (with a message) what the remote would refuse. */
static void send_line(rtc_peer *peer, const char *line, size_t n, size_t max)
{
    if (n > max) {
        fprintf(stderr, "chat-client: not sent: a %zu-byte message is over the %zu-byte limit\n", n,
                max);
        return;
    }
    /* Back-pressure: let the queue drain rather than reach its limit, past
     * which the transport closes the peer. */
    while (rtc_peer_queued_bytes(peer) > LIMIT_PEER_QUEUE_BYTES / 2 && rtc_peer_is_open(peer))
        g_usleep(2000);
    if (st.raw) {
        if (rtc_peer_send_text(peer, line, n) < 0 && rtc_peer_is_open(peer))
            fprintf(stderr, "chat-client: send failed: %s\n", strerror(errno));
        return;
    }
    /* Chat: wait for the welcome's token, then post the line with it. */
    g_mutex_lock(&st.lock);
    while (st.token == NULL && !st.closed && !st.fatal)
        g_cond_wait(&st.cond, &st.lock);
    char *token = st.token ? strdup(st.token) : NULL;
    unsigned long ref = ++st.next_ref;
    g_mutex_unlock(&st.lock);
    if (token == NULL)
        return;
    char refs[32];
    snprintf(refs, sizeof refs, "%lu", ref);
    json_t *post = json_pack("{s:s,s:s,s:s%,s:s}", "type", "post", "token", token, "text", line, n,
                             "ref", refs);
    char *text = post ? json_text_compact(post) : NULL;
    if (text == NULL)
        fprintf(stderr, "chat-client: not sent: the line is not valid UTF-8\n");
    else if (rtc_peer_send_text(peer, text, strlen(text)) < 0 && rtc_peer_is_open(peer))
        fprintf(stderr, "chat-client: send failed: %s\n", strerror(errno));
    mem_free(text);
    json_decref(post);
    free(token);
}

/* Reads standard input until its end or until the connection closes,
 * sending each line. Lines are split by hand (not getline) so that a
 * closed connection wakes us even while no input arrives. */
static int read_and_send(rtc_peer *peer, size_t max)
{
    size_t cap = LIMIT_MESSAGE_BYTES, len = 0; /* a default-size message fits unmoved */
    char *buf = malloc(cap);
    if (buf == NULL)
        return -1;
    for (;;) {
        struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                                {.fd = wake_pipe[0], .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents)
            break; /* closed under us, or a fatal error */
        if (len == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(STDIN_FILENO, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (len > 0) /* last line without a newline */
                send_line(peer, buf, len, max);
            break;
        }
        len += (size_t)r;
        size_t start = 0;
        for (size_t i = len - (size_t)r; i < len; i++) {
            if (buf[i] != '\n')
                continue;
            send_line(peer, buf + start, i - start, max);
            start = i + 1;
        }
        memmove(buf, buf + start, len - start);
        len -= start;
    }
    free(buf);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: chat-client --url URL [OPTION]...\n\n"
               "Connects to chatd over a WebRTC data channel, prints each chat message as\n"
               "NAME: text (auto posts as NAME: [title] text) and posts each line of\n"
               "standard input with the session's token. Status lines go to stderr.\n\n"
               "  --url URL           chatd's base URL, e.g. http://127.0.0.1:8080/?room=lobby\n"
               "  --ice-address ADDR  local address for ICE (repeatable; default: every\n"
               "                      interface, or 127.0.0.1 for a loopback URL)\n"
               "  --dtls-role ROLE    offer a=setup auto (actpass), active or passive\n"
               "  --json              print each received message as its JSON object\n"
               "  --token JWT         resume that user (Authorization: Bearer)\n"
               "  --raw               send and print plain text (chatd --mode relay)\n"
               "  --timing            print the setup time (offer POST to channel open)\n"
               "  --timeout SECONDS   connection setup limit (default 15)\n"
               "  --quiet             no status lines on standard error\n"
               "  -h, --help          this text\n\n"
               "Exit status: 0 after end of input and a clean close; 1 when the connection\n"
               "cannot be made or is lost; 2 on a bad option.\n");
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    const char *ice[17] = {0};
    int n_ice = 0;
    rtc_setup setup = RTC_SETUP_AUTO;
    int timeout_s = 15;
    const char *bearer = NULL;
    static const struct option opts[] = {{"url", required_argument, 0, 'u'},
                                         {"ice-address", required_argument, 0, 'i'},
                                         {"dtls-role", required_argument, 0, 'r'},
                                         {"timeout", required_argument, 0, 't'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {"json", no_argument, 0, 'j'},
                                         {"token", required_argument, 0, 'k'},
                                         {"raw", no_argument, 0, 'w'},
                                         {"timing", no_argument, 0, 'T'},
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
            bearer = optarg;
            break;
        case 'w':
            st.raw = 1;
            break;
        case 'T':
            st.timing = 1;
            break;
        case 'h':
            usage(stdout);
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
    if (pipe(wake_pipe) < 0) {
        perror("chat-client: pipe");
        return 1;
    }
    char err[512];
    if (rtc_init(err, sizeof err) < 0) {
        fprintf(stderr, "chat-client: %s\n", err);
        return 1;
    }
    rtc_loops *loops = rtc_loops_new(1);
    /* One shared-socket client (the controlling side towards chatd's
     * ICE-lite port); it also answers a full-ICE chatd (--rtc-port 0). */
    rtc_peer_config cfg = {.loops = loops,
                           .transport = RTC_TRANSPORT_MUX,
                           .ice_addresses = n_ice ? ice : NULL,
                           .setup = setup,
                           .setup_timeout_ms = timeout_s * 1000,
                           .cb = &callbacks};
    rtc_peer *peer = NULL;
    char *offer = NULL;
    int status = 1;
    if (rtc_peer_offer(&cfg, &peer, &offer, err, sizeof err) < 0) {
        fprintf(stderr, "chat-client: cannot create an offer: %s\n", err);
        goto out;
    }

    char *ep = endpoint(url);
    http_reply resp;
    CURL *curl = curl_easy_init();
    st.post_started = g_get_monotonic_time();
    int rc = curl ? http_request(curl, "POST", ep, "application/sdp", offer, bearer,
                                 (long)timeout_s, &resp, err, sizeof err)
                  : (snprintf(err, sizeof err, "%s: cannot start curl", ep), -1);
    if (curl)
        curl_easy_cleanup(curl);
    if (rc < 0) {
        fprintf(stderr, "chat-client: cannot reach %s\n", err);
        g_free(ep);
        rtc_peer_close(peer, "no answer");
        goto out;
    }
    long code = resp.status;
    if (code != 201 || resp.body == NULL) {
        json_t *j = resp.body ? json_loads(resp.body, 0, NULL) : NULL;
        const char *ecode = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
        const char *emsg =
            json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        fprintf(stderr, "chat-client: %s refused the offer: HTTP %ld%s%s%s%s\n", ep, code,
                ecode ? " " : "", ecode ? ecode : "", emsg ? ": " : "", emsg ? emsg : "");
        json_decref(j);
        g_free(ep);
        http_reply_free(&resp);
        rtc_peer_close(peer, "refused");
        goto out;
    }
    g_free(ep);
    const char *slash = strrchr(resp.location, '/');
    snprintf(st.session, sizeof st.session, "%s", slash ? slash + 1 : resp.location);
    if (rtc_peer_set_answer(peer, resp.body, resp.len, err, sizeof err) < 0) {
        fprintf(stderr, "chat-client: bad answer from the server: %s\n", err);
        http_reply_free(&resp);
        rtc_peer_close(peer, "bad answer");
        goto out;
    }
    http_reply_free(&resp);

    g_mutex_lock(&st.lock);
    while (!st.open && !st.closed)
        g_cond_wait(&st.cond, &st.lock);
    int opened = st.open;
    g_mutex_unlock(&st.lock);
    if (!opened) {
        fprintf(stderr, "chat-client: cannot connect to %s: %s\n", url, st.reason);
        goto out;
    }

    size_t max = rtc_peer_max_send(peer);
    if (read_and_send(peer, max) < 0) {
        fprintf(stderr, "chat-client: out of memory\n");
        goto out;
    }

    g_mutex_lock(&st.lock);
    int closed_early = st.closed || st.fatal;
    g_mutex_unlock(&st.lock);
    if (st.fatal) {
        /* wait for the server to close after its fatal error */
        g_mutex_lock(&st.lock);
        gint64 d = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
        while (!st.closed)
            if (!g_cond_wait_until(&st.cond, &st.lock, d))
                break;
        g_mutex_unlock(&st.lock);
        fprintf(stderr, "chat-client: the server ended the session\n");
        goto out;
    }
    if (closed_early) {
        fprintf(stderr, "chat-client: connection lost: %s\n", st.reason);
        goto out;
    }
    rtc_peer_close_gracefully(peer);
    gint64 deadline = g_get_monotonic_time() + 30 * G_TIME_SPAN_SECOND;
    g_mutex_lock(&st.lock);
    while (!st.closed)
        if (!g_cond_wait_until(&st.cond, &st.lock, deadline))
            break;
    int clean = st.closed && strcmp(st.reason, "closed") == 0;
    g_mutex_unlock(&st.lock);
    if (!clean) {
        fprintf(stderr, "chat-client: the channel did not close cleanly: %s\n",
                st.closed ? st.reason : "timed out");
        rtc_peer_close(peer, "close timed out");
        goto out;
    }
    status = 0;

out:
    if (peer) {
        g_mutex_lock(&st.lock);
        gint64 d = g_get_monotonic_time() + 2 * G_TIME_SPAN_SECOND;
        while (!st.closed)
            if (!g_cond_wait_until(&st.cond, &st.lock, d))
                break;
        g_mutex_unlock(&st.lock);
        rtc_peer_unref(peer);
    }
    rtc_free(offer);
    rtc_transport_stop();
    rtc_loops_free(loops);
    rtc_shutdown();
    curl_global_cleanup();
    return status;
}
