/*
 * loop — the fixed set of event-loop threads that run every peer.
 *
 * Each loop is one thread iterating its own GMainContext. A peer is placed
 * on the least loaded loop when it is created and all its ICE, DTLS and
 * SCTP input runs there; there is no thread per peer. The number of loops
 * is chosen once at start (default: the number of cores).
 *
 * Timers: every rtc_timer of a loop lives in one binary heap behind one
 * GLib source, so a loop with 10,000 peers polls one deadline, not 10,000
 * sources (GLib walks every source of a context on each iteration).
 *
 * Threading: pick, release, post and run_sync may be called from any
 * thread (run_sync not from the target loop itself); new and free from one
 * thread, with nothing else using the loops.
 * Ownership: the caller owns the rtc_loops (rtc_loops_free); an rtc_loop
 * pointer is borrowed from it and valid until then.
 */
#ifndef CHATD_LOOP_H
#define CHATD_LOOP_H

#include <glib.h>
#include <stdint.h>

typedef struct rtc_loop rtc_loop;
typedef struct rtc_loops rtc_loops;

/* A one-shot timer on a loop's heap. Embed it in the object it serves and
 * zero it before first use; start, stop and the callback run on the loop's
 * own thread only. */
typedef struct rtc_timer {
    int64_t deadline_us; /* monotonic */
    int heap_index;      /* -1 (or 0 when zeroed and never started) when idle */
    int armed;
    rtc_loop *loop;
    void (*fn)(struct rtc_timer *t);
} rtc_timer;

/* Starts `count` threads (count <= 0: one per core). */
rtc_loops *rtc_loops_new(int count);
/* Stops and joins every thread. Sources still attached are destroyed. */
void rtc_loops_free(rtc_loops *ls);
int rtc_loops_count(const rtc_loops *ls);

/* Picks the loop with the fewest peers and counts one more on it. */
rtc_loop *rtc_loops_pick(rtc_loops *ls);
/* Counts one peer fewer on `l`. */
void rtc_loop_release(rtc_loop *l);
GMainContext *rtc_loop_context(rtc_loop *l);

/* Position of `l` among its loops (0..count-1). */
int rtc_loop_index(const rtc_loop *l);
rtc_loop *rtc_loops_get(rtc_loops *ls, int index);
/* The loop whose thread is calling, or NULL on any other thread. */
rtc_loop *rtc_loop_current(void);

/* Loop thread: (re)arms t to call fn(t) in ms milliseconds (0: on the next
 * iteration). Returns -1 only when the heap cannot grow (no memory). */
int rtc_timer_start(rtc_loop *l, rtc_timer *t, int64_t ms, void (*fn)(rtc_timer *t));
/* Loop thread: disarms t; harmless when it is not armed. */
void rtc_timer_stop(rtc_timer *t);
static inline int rtc_timer_armed(const rtc_timer *t) { return t->armed; }

/* Runs fn(arg) on the loop's thread and waits for it to return. Must not be
 * called from that loop's own thread. */
void rtc_loop_run_sync(rtc_loop *l, void (*fn)(void *), void *arg);
/* Queues fn(arg) to run on the loop's thread soon; returns at once. */
void rtc_loop_post(rtc_loop *l, void (*fn)(void *), void *arg);

#endif
