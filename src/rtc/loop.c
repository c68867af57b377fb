/*
 * loop — see loop.h.
 */
#include "rtc/loop.h"

#include "util/mem.h"

#include <stdatomic.h>
#include <unistd.h>

struct rtc_loop {
    GMainContext *ctx;
    GMainLoop *main;
    GThread *thread;
    atomic_int load;
};

struct rtc_loops {
    int count;
    rtc_loop *loops;
};

static gpointer loop_thread(gpointer data)
{
    rtc_loop *l = data;
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
        g_main_loop_unref(l->main);
        g_main_context_unref(l->ctx);
    }
    mem_free(ls->loops);
    mem_free(ls);
}

int rtc_loops_count(const rtc_loops *ls) { return ls->count; }

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
