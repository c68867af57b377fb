/*
 * loop — see loop.h.
 */
#include "rtc/loop.h"

#include "util/mem.h"

#include <stdatomic.h>
#include <unistd.h>

/* The heap of a loop's timers: one GLib source whose ready time is the
 * earliest deadline. */
typedef struct {
    GSource base;
    rtc_timer **heap;
    int n, cap;
} timer_source;

struct rtc_loop {
    GMainContext *ctx;
    GMainLoop *main;
    GThread *thread;
    atomic_int load;
    int index;
    timer_source *timers;
};

static _Thread_local rtc_loop *current_loop;

/* ---------- timers ---------- */

static void heap_swap(timer_source *ts, int a, int b)
{
    rtc_timer *t = ts->heap[a];
    ts->heap[a] = ts->heap[b];
    ts->heap[b] = t;
    ts->heap[a]->heap_index = a;
    ts->heap[b]->heap_index = b;
}

static void heap_up(timer_source *ts, int i)
{
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (ts->heap[parent]->deadline_us <= ts->heap[i]->deadline_us)
            break;
        heap_swap(ts, i, parent);
        i = parent;
    }
}

static void heap_down(timer_source *ts, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < ts->n && ts->heap[l]->deadline_us < ts->heap[m]->deadline_us)
            m = l;
        if (r < ts->n && ts->heap[r]->deadline_us < ts->heap[m]->deadline_us)
            m = r;
        if (m == i)
            return;
        heap_swap(ts, i, m);
        i = m;
    }
}

static void heap_remove(timer_source *ts, int i)
{
    ts->n--;
    if (i != ts->n) {
        heap_swap(ts, i, ts->n);
        heap_down(ts, i);
        heap_up(ts, i);
    }
}

static void update_ready_time(timer_source *ts)
{
    g_source_set_ready_time(&ts->base, ts->n ? ts->heap[0]->deadline_us : -1);
}

int rtc_timer_start(rtc_loop *l, rtc_timer *t, int64_t ms, void (*fn)(rtc_timer *t))
{
    timer_source *ts = l->timers;
    if (t->armed && t->loop == l) {
        t->deadline_us = g_get_monotonic_time() + ms * 1000;
        t->fn = fn;
        heap_down(ts, t->heap_index);
        heap_up(ts, t->heap_index);
        update_ready_time(ts);
        return 0;
    }
    rtc_timer_stop(t);
    if (ts->n == ts->cap) {
        int cap = ts->cap ? ts->cap * 2 : 64;
        rtc_timer **h = mem_realloc(ts->heap, (size_t)cap * sizeof *h);
        if (h == NULL)
            return -1;
        ts->heap = h;
        ts->cap = cap;
    }
    t->loop = l;
    t->fn = fn;
    t->deadline_us = g_get_monotonic_time() + ms * 1000;
    t->armed = 1;
    t->heap_index = ts->n;
    ts->heap[ts->n++] = t;
    heap_up(ts, t->heap_index);
    update_ready_time(ts);
    return 0;
}

void rtc_timer_stop(rtc_timer *t)
{
    if (!t->armed)
        return;
    timer_source *ts = t->loop->timers;
    heap_remove(ts, t->heap_index);
    t->armed = 0;
    t->heap_index = -1;
    update_ready_time(ts);
}

static gboolean timers_dispatch(GSource *src, GSourceFunc cb, gpointer data)
{
    (void)cb, (void)data;
    timer_source *ts = (timer_source *)src;
    int64_t now = g_get_monotonic_time();
    /* A callback may start or stop any timer, itself included: take the
     * earliest one at a time. Timers armed during this pass for "now" wait
     * for the next iteration only if their deadline is later than now. */
    int budget = ts->n + 64;
    while (ts->n > 0 && ts->heap[0]->deadline_us <= now && budget-- > 0) {
        rtc_timer *t = ts->heap[0];
        heap_remove(ts, 0);
        t->armed = 0;
        t->heap_index = -1;
        t->fn(t);
    }
    update_ready_time(ts);
    return G_SOURCE_CONTINUE;
}

static void timers_finalize(GSource *src)
{
    timer_source *ts = (timer_source *)src;
    for (int i = 0; i < ts->n; i++) {
        ts->heap[i]->armed = 0;
        ts->heap[i]->heap_index = -1;
    }
    mem_free(ts->heap);
    ts->heap = NULL;
    ts->n = ts->cap = 0;
}

static GSourceFuncs timer_funcs = {
    .dispatch = timers_dispatch,
    .finalize = timers_finalize,
};

struct rtc_loops {
    int count;
    rtc_loop *loops;
};

static gpointer loop_thread(gpointer data)
{
    rtc_loop *l = data;
    current_loop = l;
    g_main_context_push_thread_default(l->ctx);
    g_main_loop_run(l->main);
    g_main_context_pop_thread_default(l->ctx);
    return NULL;
}

rtc_loops *rtc_loops_new(int count)
{
    if (count <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        count = cores > 0 ? (int)cores : 1;
    }
    rtc_loops *ls = mem_calloc(1, sizeof *ls);
    if (ls == NULL)
        return NULL;
    ls->loops = mem_calloc((size_t)count, sizeof *ls->loops);
    if (ls->loops == NULL) {
        mem_free(ls);
        return NULL;
    }
    ls->count = count;
    for (int i = 0; i < count; i++) {
        rtc_loop *l = &ls->loops[i];
        l->ctx = g_main_context_new();
        l->main = g_main_loop_new(l->ctx, FALSE);
        l->index = i;
        l->timers = (timer_source *)g_source_new(&timer_funcs, sizeof(timer_source));
        g_source_set_priority(&l->timers->base, G_PRIORITY_DEFAULT);
        g_source_attach(&l->timers->base, l->ctx);
        char name[16];
        g_snprintf(name, sizeof name, "loop-%d", i);
        l->thread = g_thread_new(name, loop_thread, l);
    }
    return ls;
}

static gboolean quit_loop(gpointer data)
{
    g_main_loop_quit(data);
    return G_SOURCE_REMOVE;
}

void rtc_loops_free(rtc_loops *ls)
{
    if (ls == NULL)
        return;
    for (int i = 0; i < ls->count; i++) {
        rtc_loop *l = &ls->loops[i];
        GSource *s = g_idle_source_new();
        g_source_set_callback(s, quit_loop, l->main, NULL);
        g_source_attach(s, l->ctx);
        g_source_unref(s);
        g_thread_join(l->thread);
        g_source_destroy(&l->timers->base);
        g_source_unref(&l->timers->base);
        g_main_loop_unref(l->main);
        g_main_context_unref(l->ctx);
    }
    mem_free(ls->loops);
    mem_free(ls);
}

int rtc_loops_count(const rtc_loops *ls) { return ls->count; }
int rtc_loop_index(const rtc_loop *l) { return l->index; }
rtc_loop *rtc_loops_get(rtc_loops *ls, int index) { return &ls->loops[index]; }
rtc_loop *rtc_loop_current(void) { return current_loop; }

rtc_loop *rtc_loops_pick(rtc_loops *ls)
{
    rtc_loop *best = &ls->loops[0];
    for (int i = 1; i < ls->count; i++)
        if (atomic_load(&ls->loops[i].load) < atomic_load(&best->load))
            best = &ls->loops[i];
    atomic_fetch_add(&best->load, 1);
    return best;
}

void rtc_loop_release(rtc_loop *l) { atomic_fetch_sub(&l->load, 1); }

GMainContext *rtc_loop_context(rtc_loop *l) { return l->ctx; }

typedef struct {
    void (*fn)(void *);
    void *arg;
    GMutex lock;
    GCond cond;
    int done;
} sync_call;

static gboolean run_sync_cb(gpointer data)
{
    sync_call *c = data;
    c->fn(c->arg);
    g_mutex_lock(&c->lock);
    c->done = 1;
    g_cond_signal(&c->cond);
    g_mutex_unlock(&c->lock);
    return G_SOURCE_REMOVE;
}

void rtc_loop_run_sync(rtc_loop *l, void (*fn)(void *), void *arg)
{
    sync_call c = {.fn = fn, .arg = arg};
    g_mutex_init(&c.lock);
    g_cond_init(&c.cond);
    GSource *s = g_idle_source_new();
    g_source_set_priority(s, G_PRIORITY_HIGH);
    g_source_set_callback(s, run_sync_cb, &c, NULL);
    g_source_attach(s, l->ctx);
    g_source_unref(s);
    g_mutex_lock(&c.lock);
    while (!c.done)
        g_cond_wait(&c.cond, &c.lock);
    g_mutex_unlock(&c.lock);
    g_mutex_clear(&c.lock);
    g_cond_clear(&c.cond);
}

typedef struct {
    void (*fn)(void *);
    void *arg;
} post_call;

static gboolean post_cb(gpointer data)
{
    post_call *c = data;
    c->fn(c->arg);
    return G_SOURCE_REMOVE;
}

void rtc_loop_post(rtc_loop *l, void (*fn)(void *), void *arg)
{
    post_call *c = g_new(post_call, 1);
    c->fn = fn;
    c->arg = arg;
    GSource *s = g_idle_source_new();
    g_source_set_priority(s, G_PRIORITY_DEFAULT);
    g_source_set_callback(s, post_cb, c, g_free);
    g_source_attach(s, l->ctx);
    g_source_unref(s);
}
