/*
 * chat-client — terminal client for chatd over a WebRTC data channel.
 *
 * Connects (SDP offer over HTTP POST, answer back), prints every received
 * text message on its own line, and sends every line of standard input as
 * one message. At end of input it waits until everything sent is
 * delivered, closes the channel gracefully and exits 0. It exits 1 with one
 * clear line when it cannot connect or the connection is lost.
 *
 * Threads: main reads stdin and does HTTP; one event loop runs the peer.
 */
#include "rtc/loop.h"
#include "rtc/peer.h"
#include "util/log.h"
#include "util/mem.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <jansson.h>
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
    char session[128]; /* the server's session id, from Location */
} client_state;

static client_state st;

static void on_open(rtc_peer *p, void *user)
{
    (void)user;
    g_mutex_lock(&st.lock);
    st.open = 1;
    g_cond_broadcast(&st.cond);
    g_mutex_unlock(&st.lock);
    if (!st.quiet)
        fprintf(stderr, "chat-client: connected (session %s)\n",
                st.session[0] ? st.session : rtc_peer_id(p));
}

static void on_message(rtc_peer *p, const uint8_t *data, size_t len, int binary, void *user)
{
    (void)p, (void)user;
    if (binary)
        return;
    /* One write per message keeps lines whole even if another thread prints. */
    char *line = malloc(len + 1);
    if (line == NULL)
        return;
    memcpy(line, data, len);
    line[len] = '\n';
    fwrite(line, 1, len + 1, stdout);
    fflush(stdout);
    free(line);
}

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    (void)p, (void)user;
    g_mutex_lock(&st.lock);
    st.closed = 1;
    snprintf(st.reason, sizeof st.reason, "%s", reason);
    g_cond_broadcast(&st.cond);
    g_mutex_unlock(&st.lock);
}

static const rtc_peer_callbacks callbacks = {
    .on_open = on_open, .on_message = on_message, .on_close = on_close};

typedef struct {
    char *data;
    size_t len;
    char location[256];
} http_buf;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
    http_buf *b = user;
    size_t n = size * nmemb;
    if (b->len + n > 256 * 1024)
        return 0; /* an answer this large is not an answer */
    char *nd = realloc(b->data, b->len + n + 1);
    if (nd == NULL)
        return 0;
    memcpy(nd + b->len, ptr, n);
    b->len += n;
    nd[b->len] = '\0';
    b->data = nd;
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *user)
{
    http_buf *b = user;
    size_t n = size * nmemb;
    if (n > 10 && strncasecmp(ptr, "Location:", 9) == 0) {
        const char *v = ptr + 9;
        while (*v == ' ')
            v++;
        size_t vl = n - (size_t)(v - ptr);
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
            vl--;
        if (vl < sizeof b->location) {
            memcpy(b->location, v, vl);
            b->location[vl] = '\0';
        }
    }
    return n;
}

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

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chat-client --url URL [OPTION]...\n\n"
            "Connects to chatd over a WebRTC data channel, prints each received message\n"
            "on its own line and sends each line of standard input.\n\n"
            "  --url URL           chatd's base URL, e.g. http://127.0.0.1:8080/?room=lobby\n"
            "  --ice-address ADDR  local address for ICE (repeatable; default: every\n"
            "                      interface, or 127.0.0.1 for a loopback URL)\n"
            "  --dtls-role ROLE    offer a=setup auto (actpass), active or passive\n"
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
    static const struct option opts[] = {
        {"url", required_argument, 0, 'u'},      {"ice-address", required_argument, 0, 'i'},
        {"dtls-role", required_argument, 0, 'r'}, {"timeout", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
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
    char err[512];
    if (rtc_init(err, sizeof err) < 0) {
        fprintf(stderr, "chat-client: %s\n", err);
        return 1;
    }
    rtc_loops *loops = rtc_loops_new(1);
    rtc_peer_config cfg = {.loops = loops,
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
    http_buf resp = {0};
    CURL *curl = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/sdp");
    curl_easy_setopt(curl, CURLOPT_URL, ep);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, offer);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &resp);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)timeout_s);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(curl);
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK) {
        fprintf(stderr, "chat-client: cannot reach %s: %s\n", ep, curl_easy_strerror(rc));
        g_free(ep);
        free(resp.data);
        rtc_peer_close(peer, "no answer");
        goto out;
    }
    if (code != 201 || resp.data == NULL) {
        json_t *j = resp.data ? json_loads(resp.data, 0, NULL) : NULL;
        const char *ecode = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
        const char *emsg =
            json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        fprintf(stderr, "chat-client: %s refused the offer: HTTP %ld%s%s%s%s\n", ep, code,
                ecode ? " " : "", ecode ? ecode : "", emsg ? ": " : "", emsg ? emsg : "");
        json_decref(j);
        g_free(ep);
        free(resp.data);
        rtc_peer_close(peer, "refused");
        goto out;
    }
    g_free(ep);
    const char *slash = strrchr(resp.location, '/');
    snprintf(st.session, sizeof st.session, "%s", slash ? slash + 1 : resp.location);
    if (rtc_peer_set_answer(peer, resp.data, resp.len, err, sizeof err) < 0) {
        fprintf(stderr, "chat-client: bad answer from the server: %s\n", err);
        free(resp.data);
        rtc_peer_close(peer, "bad answer");
        goto out;
    }
    free(resp.data);

    g_mutex_lock(&st.lock);
    while (!st.open && !st.closed)
        g_cond_wait(&st.cond, &st.lock);
    int opened = st.open;
    g_mutex_unlock(&st.lock);
    if (!opened) {
        fprintf(stderr, "chat-client: cannot connect to %s: %s\n", url, st.reason);
        goto out;
    }

    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t max = rtc_peer_max_send(peer);
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n')
            n--;
        if ((size_t)n > max) {
            fprintf(stderr, "chat-client: not sent: a %zd-byte message is over the %zu-byte limit\n",
                    n, max);
            continue;
        }
        /* Back-pressure: let the queue drain rather than grow without end. */
        while (rtc_peer_queued_bytes(peer) > 4u * 1024 * 1024 && rtc_peer_is_open(peer))
            g_usleep(2000);
        if (rtc_peer_send_text(peer, line, (size_t)n) < 0) {
            g_mutex_lock(&st.lock);
            int closed = st.closed;
            g_mutex_unlock(&st.lock);
            if (closed)
                break;
            fprintf(stderr, "chat-client: send failed: %s\n", strerror(errno));
        }
    }
    free(line);

    g_mutex_lock(&st.lock);
    int closed_early = st.closed;
    g_mutex_unlock(&st.lock);
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
    rtc_loops_free(loops);
    rtc_shutdown();
    curl_global_cleanup();
    return status;
}
