/*
 * loop — the fixed set of event-loop threads that run every peer.
 *
 * Each loop is one thread iterating its own GMainContext. A peer is placed
 * on the least loaded loop when it is created and all its ICE, DTLS and
 * SCTP input runs there; there is no thread per peer. The number of loops
 * is chosen once at start (default: the number of cores).
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

typedef struct rtc_loop rtc_loop;
typedef struct rtc_loops rtc_loops;

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

/* Runs fn(arg) on the loop's thread and waits for it to return. Must not be
 * called from that loop's own thread. */
void rtc_loop_run_sync(rtc_loop *l, void (*fn)(void *), void *arg);
/* Queues fn(arg) to run on the loop's thread soon; returns at once. */
void rtc_loop_post(rtc_loop *l, void (*fn)(void *), void *arg);

#endif
