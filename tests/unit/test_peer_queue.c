/*
 * test_peer_queue — the transport's send-queue bounds (issue 9, slow
 * reader) over a real peer pair in this process: ICE on 127.0.0.1, DTLS,
 * SCTP, DCEP, two event loops.
 *
 * The reader stops reading by blocking its own loop inside on_message
 * (receiving is pull-based: a blocked loop drains nothing, so the SCTP
 * window closes and usrsctp's send buffer fills). The writer then sends
 * until the transport refuses. Before issue 9 a peer could queue 32 MiB;
 * now it is closed, with its reason, at --peer-queue-bytes, or at the
 * process budget when that comes first, and every queued byte is given
 * back.
 */
#include "rtc/loop.h"
#include "rtc/peer.h"
#include "util/log.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    GMutex lock;
    GCond cond;
    int open;
    int closed;
    int block; /* on_message waits while this is set */
    int blocked;
    char reason[160];
} side;

static side g_writer, g_reader;
static rtc_loops *g_loops;

static void side_init(side *s)
{
    memset(s, 0, sizeof *s);
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
}

static void on_open(rtc_peer *p, void *user)
{
    (void)p;
    side *s = user;
    g_mutex_lock(&s->lock);
    s->open = 1;
    g_cond_broadcast(&s->cond);
    g_mutex_unlock(&s->lock);
}

static void on_message(rtc_peer *p, const uint8_t *data, size_t len, int binary, void *user)
{
    (void)p, (void)data, (void)len, (void)binary;
    side *s = user;
    g_mutex_lock(&s->lock);
    while (s->block) { /* a reader that stops reading */
        s->blocked = 1;
        g_cond_broadcast(&s->cond);
        g_cond_wait(&s->cond, &s->lock);
    }
    g_mutex_unlock(&s->lock);
}

static void on_close(rtc_peer *p, const char *reason, void *user)
{
    (void)p;
    side *s = user;
    g_mutex_lock(&s->lock);
    s->closed = 1;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    g_cond_broadcast(&s->cond);
    g_mutex_unlock(&s->lock);
}

static const rtc_peer_callbacks callbacks = {
    .on_open = on_open, .on_message = on_message, .on_close = on_close};

/* Waits (up to 20 s) until *flag is set under s->lock. */
static int wait_flag(side *s, int *flag)
{
    gint64 deadline = g_get_monotonic_time() + 20 * G_TIME_SPAN_SECOND;
    g_mutex_lock(&s->lock);
    while (!*flag && g_cond_wait_until(&s->cond, &s->lock, deadline))
        ;
    int v = *flag;
    g_mutex_unlock(&s->lock);
    return v;
}

static void setup(void)
{
    char err[256];
    log_set_level(getenv("CHATD_TEST_LOG") ? LOGL_DEBUG : LOGL_OFF);
    cr_assert_eq(rtc_init(err, sizeof err), 0, "%s", err);
    g_loops = rtc_loops_new(2);
    cr_assert_not_null(g_loops);
    side_init(&g_writer);
    side_init(&g_reader);
}

static void teardown(void)
{
    rtc_loops_free(g_loops);
    rtc_shutdown();
}

TestSuite(peer_queue, .init = setup, .fini = teardown, .timeout = 120);

static const char *const loopback[] = {"127.0.0.1", NULL};

/* Connects an offerer (the writer) to an answerer (the reader). */
static void connect_pair(rtc_peer **writer, rtc_peer **reader)
{
    char err[256];
    char *offer = NULL, *answer = NULL;
    rtc_peer_config wc = {.loops = g_loops,
                          .ice_addresses = loopback,
                          .local_client = 1,
                          .cb = &callbacks,
                          .user = &g_writer};
    rtc_peer_config rc = wc;
    rc.user = &g_reader;
    cr_assert_eq(rtc_peer_offer(&wc, writer, &offer, err, sizeof err), 0, "%s", err);
    cr_assert_eq(rtc_peer_answer(&rc, offer, strlen(offer), reader, &answer, err, sizeof err),
                 RTC_ANSWER_OK, "%s", err);
    cr_assert_eq(rtc_peer_set_answer(*writer, answer, strlen(answer), err, sizeof err), 0, "%s",
                 err);
    rtc_free(offer);
    rtc_free(answer);
    cr_assert(wait_flag(&g_writer, &g_writer.open), "the writer's channel did not open");
    cr_assert(wait_flag(&g_reader, &g_reader.open), "the reader's channel did not open");
}

/* Stops the reader, then sends 60 KiB messages until the transport says
 * no; returns how many went in. */
static int flood_until_refused(rtc_peer *writer, int *err_out)
{
    g_mutex_lock(&g_reader.lock);
    g_reader.block = 1;
    g_mutex_unlock(&g_reader.lock);
    static char payload[60 * 1024];
    memset(payload, 'q', sizeof payload);
    /* A first message wedges the reader's loop in on_message. */
    cr_assert_eq(rtc_peer_send_text(writer, payload, 10), 0);
    cr_assert(wait_flag(&g_reader, &g_reader.blocked), "the reader never blocked");
    int sent = 0;
    /* 64 MiB at most: twice what the old limit let a peer hold. */
    for (int i = 0; i < 64 * 1024 * 1024 / (int)sizeof payload; i++) {
        if (rtc_peer_send_text(writer, payload, sizeof payload) < 0) {
            *err_out = errno;
            return sent;
        }
        sent++;
        if (i % 16 == 0)
            g_usleep(1000); /* let usrsctp take what the window allows */
    }
    *err_out = 0;
    return sent;
}

static void release_reader(void)
{
    g_mutex_lock(&g_reader.lock);
    g_reader.block = 0;
    g_cond_broadcast(&g_reader.cond);
    g_mutex_unlock(&g_reader.lock);
}

Test(peer_queue, a_peer_that_stops_reading_is_closed_at_its_queue_limit)
{
    rtc_set_send_limits(1024 * 1024, 256L * 1024 * 1024);
    rtc_peer *writer = NULL, *reader = NULL;
    connect_pair(&writer, &reader);
    int err = 0;
    int sent = flood_until_refused(writer, &err);
    cr_assert_eq(err, ENOBUFS, "sent %d x 60 KiB, then errno %d", sent, err);
    /* The queue never went past the limit (plus one message) on the way. */
    cr_assert_leq(rtc_peer_queued_bytes(writer), 1024 * 1024);
    cr_assert(wait_flag(&g_writer, &g_writer.closed), "the writer was not closed");
    cr_assert(strstr(g_writer.reason, "too slow to keep up") != NULL, "%s", g_writer.reason);
    cr_assert(strstr(g_writer.reason, "queue limit") != NULL, "%s", g_writer.reason);
    /* Closed: further sends are refused, nothing more is queued. */
    cr_assert_lt(rtc_peer_send_text(writer, "x", 1), 0);
    cr_assert_eq(rtc_queued_total(), 0, "every queued byte is given back");
    release_reader();
    rtc_peer_close(reader, "test over");
    cr_assert(wait_flag(&g_reader, &g_reader.closed));
    rtc_peer_unref(writer);
    rtc_peer_unref(reader);
}

Test(peer_queue, the_process_budget_closes_the_peer_that_would_exceed_it)
{
    /* One peer may hold 8 MiB, but the process only 512 KiB. */
    rtc_set_send_limits(8u * 1024 * 1024, 512 * 1024);
    rtc_peer *writer = NULL, *reader = NULL;
    connect_pair(&writer, &reader);
    int err = 0;
    int sent = flood_until_refused(writer, &err);
    cr_assert_eq(err, ENOBUFS, "sent %d x 60 KiB, then errno %d", sent, err);
    cr_assert_leq(rtc_peer_queued_bytes(writer), 512 * 1024);
    cr_assert(wait_flag(&g_writer, &g_writer.closed), "the writer was not closed");
    cr_assert(strstr(g_writer.reason, "budget") != NULL, "%s", g_writer.reason);
    cr_assert_eq(rtc_queued_total(), 0);
    release_reader();
    rtc_peer_close(reader, "test over");
    cr_assert(wait_flag(&g_reader, &g_reader.closed));
    rtc_peer_unref(writer);
    rtc_peer_unref(reader);
}
