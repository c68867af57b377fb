/*
 * store — the queue, the writer thread and the public API of store.h; the
 * SQL lives in the backends (store_sqlite.c, store_postgres.c).
 *
 * The queue is a singly linked FIFO of store_item under s->lock. Producers
 * (event-loop threads) append at the tail and signal work_cv. The writer
 * thread is the only one that removes items, and only from the head, and
 * only after the transaction holding them committed: so the first n items it
 * takes for a batch stay valid outside the lock while it writes them, and a
 * failed batch needs no undo — the rows simply are still at the head.
 *
 * Retry policy (why here and not in the backends): "down" is one state for
 * /api/health whatever the cause, and the backoff must be the same on both
 * backends. After any failure that may pass, the writer drops its
 * connection, waits (100 ms doubling to 2 s) and connects afresh, which
 * covers a restarted PostgreSQL server as well as a SQLite file that was
 * locked, replaced or read-only for a while.
 *
 * Why one file of about 900 lines: the queue, the writer that empties it
 * and the history reads that merge still-queued rows with the database all
 * work under s->lock and its one rule above; kept together, that rule is
 * read in one place (the byte budget of issue 9 too). The SQL is in the
 * backends, the row packing in store_int.h's items, the per-room index of
 * queued messages in store_index.c.
 */
#include "store/store_int.h"

#include "util/backoff.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* An idle writer checks the database this often, so /api/health notices an
 * outage even when nothing is being written. */
#define PING_MS 5000

struct store {
    const store_backend *b;
    char *url;

    /* Queue and writer state, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t work_cv; /* writer waits: work or stop */
    pthread_cond_t idle_cv; /* flushers wait: queue empty */
    store_item *head, *tail;
    size_t depth;
    size_t bytes;     /* sum of the queued items' size */
    size_t limit;     /* the budget for bytes (store.h) */
    atomic_int full;  /* message rows refused until bytes <= limit * 3/4 */
    int reserve_full; /* other rows refused too (logged once per episode) */
    store_index *ix;  /* queued message rows by room */
    int calling;      /* the writer is running callbacks of finished rows */
    int closing;      /* no more puts */
    int stop;         /* writer must exit */
    store_stats st;
    uint64_t total_batch_us;

    /* Writer thread only (and store_open before it starts). */
    pthread_t thread;
    int thread_started;
    store_conn *wconn;
    store_item **batch; /* STORE_BATCH_MAX slots */

    /* Reads, under read_lock. */
    pthread_mutex_t read_lock;
    store_conn *rconn;

    atomic_llong next_id;
};

static struct timespec mono_deadline(int64_t at_us)
{
    struct timespec ts = {.tv_sec = at_us / 1000000, .tv_nsec = (at_us % 1000000) * 1000};
    return ts;
}

/* True for exactly "2026-11-24T10:00:00.123Z" (or NULL, meaning now). Both
 * backends then hold and return the same text; PostgreSQL would refuse a
 * malformed one only at write time, SQLite never. */
static int ts_ok(const char *ts)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (ts == NULL)
        return 1;
    for (size_t i = 0; i < sizeof pat - 1; i++) {
        if (ts[i] == '\0')
            return 0;
        if (pat[i] == 'd' ? (ts[i] < '0' || ts[i] > '9') : ts[i] != pat[i])
            return 0;
    }
    return ts[sizeof pat - 1] == '\0';
}

/* ---- items: one allocation with the strings packed behind the struct ---- */

static size_t slen(const char *s) { return s ? strlen(s) + 1 : 0; }

/* Copies s to *cur and advances it; NULL stays NULL. */
static const char *pack(char **cur, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *dst = *cur;
    memcpy(dst, s, n);
    *cur += n;
    return dst;
}

static store_item *item_new(store_item_kind kind, size_t strings)
{
    store_item *it = mem_alloc(sizeof *it + strings);
    if (it == NULL)
        return NULL;
    memset(it, 0, sizeof *it);
    it->kind = kind;
    /* The index slot of a message counts too: it lives as long as the row. */
    it->size = sizeof *it + strings + sizeof(store_item *);
    return it;
}

store_item *store_item_message(const store_message *m)
{
    store_item *it = item_new(STORE_ITEM_MESSAGE, slen(m->room) + slen(m->source) + slen(m->title) +
                                                      slen(m->body) + slen(m->created_at) +
                                                      slen(m->user_name) + slen(m->user_username));
    if (it == NULL)
        return NULL;
    char *cur = it->data;
    it->u.msg = *m;
    it->u.msg.room = pack(&cur, m->room);
    it->u.msg.source = pack(&cur, m->source);
    it->u.msg.title = pack(&cur, m->title);
    it->u.msg.body = pack(&cur, m->body);
    it->u.msg.created_at = pack(&cur, m->created_at);
    it->u.msg.user_name = pack(&cur, m->user_name);
    it->u.msg.user_username = pack(&cur, m->user_username);
    return it;
}

void store_rows_free(store_rows *r)
{
    for (size_t i = 0; i < r->count; i++)
        mem_free(r->rows[i]);
    mem_free(r->rows);
    r->rows = NULL;
    r->count = 0;
    r->cap = 0;
}

/* Makes room for one more pointer in *arr (capacity *cap). 0 or -1. */
static int grow(store_item ***arr, size_t *cap, size_t count)
{
    if (count < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    store_item **a = mem_realloc(*arr, ncap * sizeof *a);
    if (a == NULL)
        return -1;
    *arr = a;
    *cap = ncap;
    return 0;
}

int store_rows_push(store_rows *r, store_item *it)
{
    if (grow(&r->rows, &r->cap, r->count) != 0) {
        mem_free(it);
        return -1;
    }
    r->rows[r->count++] = it;
    return 0;
}

/* ---- queue ---- */

/* Appends it; or frees it and refuses when the queue is over its budget
 * (store.h: messages at the limit, other rows at the limit plus a reserve of
 * one eighth), when the store is closing, or when the index cannot grow. */
static store_put_result enqueue(store *s, store_item *it)
{
    pthread_mutex_lock(&s->lock);
    if (s->closing) {
        pthread_mutex_unlock(&s->lock);
        mem_free(it);
        log_warn("store", "row offered after close began; not queued");
        return STORE_PUT_FAILED;
    }
    int msg = it->kind == STORE_ITEM_MESSAGE;
    size_t budget = msg ? s->limit : s->limit + s->limit / 8;
    if ((msg && atomic_load(&s->full)) || s->bytes + it->size > budget) {
        /* The first refusal of an episode is logged, after the unlock: event
         * loops take this lock, so it is never held across a write(2). */
        int first = 0;
        if (msg && !atomic_load(&s->full)) {
            atomic_store(&s->full, 1);
            first = 1;
        } else if (!msg && !s->reserve_full) {
            s->reserve_full = 1;
            first = 2;
        }
        s->st.rows_refused++;
        size_t depth = s->depth, bytes = s->bytes, limit = s->limit;
        int up = s->st.db_up;
        pthread_mutex_unlock(&s->lock);
        mem_free(it);
        if (first == 1)
            log_warn("store",
                     "write queue full (%zu rows, %zu of %zu bytes; database %s): refusing "
                     "posts until the log catches up",
                     depth, bytes, limit, up ? "slow" : "down");
        else if (first == 2)
            log_error("store",
                      "write queue full, reserve included (%zu rows, %zu bytes): refusing user, "
                      "session and api error rows too",
                      depth, bytes);
        return STORE_PUT_FULL;
    }
    if (msg && store_index_add(s->ix, it) != 0) {
        pthread_mutex_unlock(&s->lock);
        mem_free(it);
        log_warn("store", "out of memory; message row not queued");
        return STORE_PUT_FAILED;
    }
    s->bytes += it->size;
    if (s->tail)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
    s->depth++;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->lock);
    return STORE_PUT_OK;
}

/* Under s->lock: it leaves the queue (written, refused, or abandoned). */
static void dequeued(store *s, const store_item *it)
{
    if (it->kind == STORE_ITEM_MESSAGE)
        store_index_remove(s->ix, it);
    s->bytes -= it->size;
    s->depth--;
}

/* Under s->lock: posting resumes once the queue has drained to three
 * quarters, so that it does not flap at the edge of the budget. */
static void check_low_water(store *s)
{
    if ((atomic_load(&s->full) || s->reserve_full) && s->bytes <= s->limit / 4 * 3) {
        atomic_store(&s->full, 0);
        s->reserve_full = 0;
        log_info("store", "write queue down to %zu rows (%zu bytes): accepting posts again",
                 s->depth, s->bytes);
    }
}

static void item_free_unwritten(store_item *it)
{
    if (it->cb)
        it->cb(it->cb_arg, 0);
    mem_free(it);
}

/* ---- writer thread ---- */

static const char *kind_name(store_item_kind k)
{
    switch (k) {
    case STORE_ITEM_USER:
        return "user";
    case STORE_ITEM_MESSAGE:
        return "message";
    case STORE_ITEM_SESSION_START:
        return "session start";
    case STORE_ITEM_SESSION_END:
        return "session end";
    case STORE_ITEM_API_ERROR:
        return "api error";
    }
    return "row";
}

/* The database's reason may quote the row, and the room is the client's:
 * both are logged through log_safe. */
static void log_rejected(const store_item *it, const char *why_raw)
{
    char why[2 * LOG_SAFE_LEN];
    log_safe(why, sizeof why, why_raw);
    switch (it->kind) {
    case STORE_ITEM_USER:
        log_error("store", "user %ld refused by the database, dropped: %s", it->u.user.id, why);
        break;
    case STORE_ITEM_MESSAGE: {
        char room[LOG_SAFE_LEN];
        log_error("store", "message %lld (user %ld, room %s) refused by the database, dropped: %s",
                  (long long)it->u.msg.id, it->u.msg.user_id,
                  log_safe(room, sizeof room, it->u.msg.room), why);
        break;
    }
    default:
        log_error("store", "%s row refused by the database, dropped: %s", kind_name(it->kind), why);
        break;
    }
}

/*
 * One attempt at the first n queued rows (n = 0: a liveness check). Sets
 * *done to how many rows from the head are finished (written or refused)
 * and marks refused ones in rejected[]. Returns STORE_W_OK or STORE_W_RETRY.
 */
static store_wres write_attempt(store *s, size_t n, size_t *done, unsigned char *rejected,
                                int64_t *batch_us, uint64_t *commits, char *err, size_t errlen)
{
    *done = 0;
    *commits = 0;
    *batch_us = -1;
    if (s->wconn == NULL) {
        s->wconn = s->b->connect(s->url, 0, err, errlen);
        if (s->wconn == NULL)
            return STORE_W_RETRY;
        if (s->b->prepare(s->wconn, err, errlen) != 0)
            return STORE_W_RETRY;
    }
    if (n == 0)
        return s->b->ping(s->wconn, err, errlen) == 0 ? STORE_W_OK : STORE_W_RETRY;

    int64_t t0 = clock_mono_us();
    store_wres r = s->b->write_batch(s->wconn, s->batch, n, err, errlen);
    if (r == STORE_W_OK) {
        *batch_us = clock_mono_us() - t0;
        *done = n;
        *commits = 1;
        return STORE_W_OK;
    }
    if (r == STORE_W_RETRY)
        return STORE_W_RETRY;
    /* Some row's content was refused. Find it (them) by writing the rows one
     * per transaction; everything else still gets written. */
    for (size_t i = 0; i < n; i++) {
        char why[256];
        r = s->b->write_batch(s->wconn, &s->batch[i], 1, why, sizeof why);
        if (r == STORE_W_RETRY) {
            err_set(err, errlen, "%s", why);
            return STORE_W_RETRY;
        }
        if (r == STORE_W_REJECT) {
            rejected[i] = 1;
            log_rejected(s->batch[i], why);
        } else {
            (*commits)++;
        }
        *done = i + 1;
    }
    return STORE_W_OK;
}

static void *writer_main(void *arg)
{
    store *s = arg;
    unsigned char rejected[STORE_BATCH_MAX];
    int failures = 0;     /* write attempts failed in a row */
    int64_t retry_at = 0; /* while down: when to try again */
    int64_t last_contact = clock_mono_us();

    pthread_mutex_lock(&s->lock);
    for (;;) {
        /* Wait for rows, for the retry time while down, or for a ping. */
        while (!s->stop) {
            int64_t now = clock_mono_us();
            int64_t until;
            if (retry_at != 0) {
                if (now >= retry_at)
                    break;
                until = retry_at; /* new rows must not cut the backoff short */
            } else {
                if (s->head != NULL || now >= last_contact + (int64_t)PING_MS * 1000)
                    break;
                until = last_contact + (int64_t)PING_MS * 1000;
            }
            struct timespec ts = mono_deadline(until);
            pthread_cond_timedwait(&s->work_cv, &s->lock, &ts);
        }
        if (s->stop)
            break;

        size_t n = 0;
        for (store_item *it = s->head; it != NULL && n < STORE_BATCH_MAX; it = it->next)
            s->batch[n++] = it;
        pthread_mutex_unlock(&s->lock);

        char err[512] = "";
        size_t done;
        int64_t batch_us;
        uint64_t commits;
        memset(rejected, 0, n);
        store_wres r = write_attempt(s, n, &done, rejected, &batch_us, &commits, err, sizeof err);
        if (r == STORE_W_RETRY && s->wconn != NULL) {
            s->b->disconnect(s->wconn);
            s->wconn = NULL;
        }

        pthread_mutex_lock(&s->lock);
        /* The finished rows leave the queue; their callbacks run below,
         * outside the lock, in order. */
        store_item *finished = s->head;
        store_item *last = NULL;
        for (size_t i = 0; i < done; i++) {
            last = s->head;
            s->head = s->head->next;
            dequeued(s, last);
        }
        if (last != NULL)
            last->next = NULL;
        else
            finished = NULL;
        if (s->head == NULL)
            s->tail = NULL;
        check_low_water(s);
        size_t nrej = 0;
        for (size_t i = 0; i < done; i++)
            nrej += rejected[i];
        s->st.rows_written += done - nrej;
        s->st.rows_rejected += nrej;
        s->st.batches += commits;
        if (batch_us >= 0) {
            s->st.last_batch_us = (uint64_t)batch_us;
            s->total_batch_us += (uint64_t)batch_us;
            if ((uint64_t)batch_us > s->st.max_batch_us)
                s->st.max_batch_us = (uint64_t)batch_us;
        }
        if (r == STORE_W_RETRY) {
            long backoff_ms = backoff_delay_ms(BACKOFF_MIN_MS, BACKOFF_MAX_MS, ++failures);
            if (n > 0)
                s->st.write_failures++;
            char why[2 * LOG_SAFE_LEN]; /* a server's message may quote a row */
            log_safe(why, sizeof why, err);
            if (s->st.db_up) {
                s->st.db_up = 0;
                s->st.down_events++;
                log_warn("store", "database down (%s); %zu rows queued, retrying", why, s->depth);
            } else {
                log_debug("store", "database still down (%s); retry in %ld ms", why, backoff_ms);
            }
            retry_at = clock_mono_us() + (int64_t)backoff_ms * 1000;
        } else {
            if (!s->st.db_up) {
                s->st.db_up = 1;
                log_info("store", "database up again; %zu rows queued", s->depth);
            }
            retry_at = 0;
            failures = 0;
            last_contact = clock_mono_us();
        }
        if (finished != NULL) {
            /* Flushers wait for these callbacks too: after store_flush the
             * chat layer may rely on every welcome having been sent. */
            s->calling = 1;
            pthread_mutex_unlock(&s->lock);
            size_t i = 0;
            for (store_item *it = finished, *next; it != NULL; it = next, i++) {
                next = it->next;
                if (it->cb)
                    it->cb(it->cb_arg, !rejected[i]);
                mem_free(it);
            }
            pthread_mutex_lock(&s->lock);
            s->calling = 0;
        }
        if (s->depth == 0)
            pthread_cond_broadcast(&s->idle_cv);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- open / close ---- */

static const store_backend *backend_for(const char *url)
{
    if (strncmp(url, "sqlite://", 9) == 0)
        return &store_sqlite_backend;
    if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
        return &store_postgres_backend;
    return NULL;
}

static void store_free(store *s)
{
    if (s->rconn)
        s->b->disconnect(s->rconn);
    if (s->wconn)
        s->b->disconnect(s->wconn);
    store_index_free(s->ix);
    mem_free(s->batch);
    mem_free(s->url);
    mem_free(s);
}

store *store_open(const char *url, char *err, size_t errlen)
{
    if (url == NULL || *url == '\0') {
        err_set(err, errlen, "no database URL");
        return NULL;
    }
    const store_backend *b = backend_for(url);
    if (b == NULL) {
        /* Echo only the scheme: the rest of a URL may hold a password. */
        const char *sep = strstr(url, "://");
        int n = sep ? (int)(sep - url) : (int)strcspn(url, ":/");
        err_set(err, errlen,
                "unsupported database URL scheme \"%.*s\" (use sqlite://PATH or "
                "postgresql://…)",
                n > 32 ? 32 : n, url);
        return NULL;
    }
    store *s = mem_calloc(1, sizeof *s);
    if (s == NULL) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    s->b = b;
    s->url = mem_strdup(url);
    s->batch = mem_calloc(STORE_BATCH_MAX, sizeof *s->batch);
    s->ix = store_index_new();
    s->limit = LIMIT_STORE_QUEUE_BYTES;
    atomic_init(&s->full, 0);
    if (s->url == NULL || s->batch == NULL || s->ix == NULL) {
        err_set(err, errlen, "out of memory");
        store_free(s);
        return NULL;
    }

    char sub[512];
    int64_t max_id = 0;
    s->wconn = b->connect(url, 0, sub, sizeof sub);
    if (s->wconn == NULL || store_migrate(b, s->wconn, sub, sizeof sub) != 0 ||
        b->prepare(s->wconn, sub, sizeof sub) != 0 ||
        b->query_int(s->wconn, "SELECT COALESCE(MAX(id), 0) FROM messages", &max_id, sub,
                     sizeof sub) != 0) {
        err_set(err, errlen, "cannot open %s database: %s", b->name, sub);
        store_free(s);
        return NULL;
    }
    /* The reader is opened now, not on first use, so that a database chatd
     * cannot read fails at start rather than on the first request. */
    s->rconn = b->connect(url, 1, sub, sizeof sub);
    if (s->rconn == NULL) {
        err_set(err, errlen, "cannot open %s database for reading: %s", b->name, sub);
        store_free(s);
        return NULL;
    }
    atomic_init(&s->next_id, max_id);
    s->st.backend = b->name;
    s->st.db_up = 1;

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->read_lock, NULL);
    pthread_cond_init(&s->work_cv, &ca);
    pthread_cond_init(&s->idle_cv, &ca);
    pthread_condattr_destroy(&ca);

    /* The writer inherits a full signal mask, so the process's signal
     * handling stays with the threads that expect it. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, writer_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        err_set(err, errlen, "cannot start the database writer thread: %s", strerror(rc));
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->read_lock);
        pthread_cond_destroy(&s->work_cv);
        pthread_cond_destroy(&s->idle_cv);
        store_free(s);
        return NULL;
    }
    s->thread_started = 1;
    log_info("store", "%s database open, schema version %d, next message id %lld", b->name,
             STORE_SCHEMA_VERSION, (long long)max_id + 1);
    return s;
}

void store_close(store *s)
{
    if (s == NULL)
        return;
    if (store_flush(s, STORE_CLOSE_FLUSH_MS) != 0)
        log_error("store", "database writes still failing at close; giving up on queued rows");
    pthread_mutex_lock(&s->lock);
    s->closing = 1;
    s->stop = 1;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);

    if (s->depth > 0)
        log_error("store", "%zu queued rows were never written (database down at exit)", s->depth);
    for (store_item *it = s->head, *next; it != NULL; it = next) {
        next = it->next;
        item_free_unwritten(it);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->read_lock);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->idle_cv);
    store_free(s);
}

int store_flush(store *s, int timeout_ms)
{
    int64_t deadline = clock_mono_us() + (int64_t)timeout_ms * 1000;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    while (s->depth > 0 || s->calling) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->idle_cv, &s->lock);
            continue;
        }
        struct timespec ts = mono_deadline(deadline);
        if (pthread_cond_timedwait(&s->idle_cv, &s->lock, &ts) == ETIMEDOUT &&
            (s->depth > 0 || s->calling)) {
            rc = -1;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void store_get_stats(store *s, store_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->st;
    out->queue_depth = s->depth;
    out->queue_bytes = s->bytes;
    out->queue_limit = s->limit;
    out->queue_full = atomic_load(&s->full);
    out->avg_batch_us = s->st.batches ? s->total_batch_us / s->st.batches : 0;
    pthread_mutex_unlock(&s->lock);
}

int store_full(store *s) { return atomic_load(&s->full); }

void store_set_queue_limit(store *s, size_t bytes)
{
    pthread_mutex_lock(&s->lock);
    s->limit = bytes;
    check_low_water(s);
    pthread_mutex_unlock(&s->lock);
}

int64_t store_next_message_id(store *s) { return atomic_fetch_add(&s->next_id, 1) + 1; }

/* ---- puts ---- */

store_put_result store_put_user(store *s, const store_user *u, store_done_cb cb, void *arg)
{
    if (u == NULL || u->id <= 0 || u->name == NULL || u->username == NULL || u->profile == NULL ||
        !ts_ok(u->seen_at)) {
        log_warn("store", "user row without id, name, username or profile, or a bad "
                          "timestamp; not queued");
        return STORE_PUT_FAILED;
    }
    char now[CLOCK_ISO8601_LEN];
    const char *seen = u->seen_at ? u->seen_at : clock_iso8601_now(now, sizeof now);
    store_item *it = item_new(STORE_ITEM_USER, slen(u->name) + slen(u->username) + slen(u->email) +
                                                   slen(u->profile) + slen(seen));
    if (it == NULL) {
        log_warn("store", "out of memory; user %ld not queued", u->id);
        return STORE_PUT_FAILED;
    }
    char *cur = it->data;
    it->u.user.id = u->id;
    it->u.user.name = pack(&cur, u->name);
    it->u.user.username = pack(&cur, u->username);
    it->u.user.email = pack(&cur, u->email);
    it->u.user.profile = pack(&cur, u->profile);
    it->u.user.seen_at = pack(&cur, seen);
    it->cb = cb;
    it->cb_arg = arg;
    return enqueue(s, it);
}

store_put_result store_put_message(store *s, const store_message *m)
{
    if (m == NULL || m->id <= 0 || m->user_id <= 0 || m->room == NULL || m->body == NULL ||
        m->source == NULL || (strcmp(m->source, "auto") != 0 && strcmp(m->source, "manual") != 0) ||
        !ts_ok(m->created_at)) {
        log_warn("store", "message row without id, user, room or body, or a bad source or "
                          "timestamp; not queued");
        return STORE_PUT_FAILED;
    }
    store_message copy = *m;
    char now[CLOCK_ISO8601_LEN];
    if (copy.created_at == NULL)
        copy.created_at = clock_iso8601_now(now, sizeof now);
    store_item *it = store_item_message(&copy);
    if (it == NULL) {
        log_warn("store", "out of memory; message %lld not queued", (long long)m->id);
        return STORE_PUT_FAILED;
    }
    return enqueue(s, it);
}

store_put_result store_session_start(store *s, const char *session_id, long user_id,
                                     const char *remote, const char *ts)
{
    if (session_id == NULL || !ts_ok(ts)) {
        log_warn("store", "session row without id, or a bad timestamp; not queued");
        return STORE_PUT_FAILED;
    }
    char now[CLOCK_ISO8601_LEN];
    if (ts == NULL)
        ts = clock_iso8601_now(now, sizeof now);
    store_item *it = item_new(STORE_ITEM_SESSION_START, slen(session_id) + slen(remote) + slen(ts));
    if (it == NULL) {
        log_warn("store", "out of memory; session %s not queued", session_id);
        return STORE_PUT_FAILED;
    }
    char *cur = it->data;
    it->u.sess_start.id = pack(&cur, session_id);
    it->u.sess_start.user_id = user_id > 0 ? user_id : 0;
    it->u.sess_start.remote = pack(&cur, remote);
    it->u.sess_start.ts = pack(&cur, ts);
    return enqueue(s, it);
}

store_put_result store_session_end(store *s, const char *session_id, const char *reason,
                                   const char *ts)
{
    if (session_id == NULL || !ts_ok(ts)) {
        log_warn("store", "session end without id, or a bad timestamp; not queued");
        return STORE_PUT_FAILED;
    }
    char now[CLOCK_ISO8601_LEN];
    if (ts == NULL)
        ts = clock_iso8601_now(now, sizeof now);
    store_item *it = item_new(STORE_ITEM_SESSION_END, slen(session_id) + slen(reason) + slen(ts));
    if (it == NULL) {
        log_warn("store", "out of memory; end of session %s not queued", session_id);
        return STORE_PUT_FAILED;
    }
    char *cur = it->data;
    it->u.sess_end.id = pack(&cur, session_id);
    it->u.sess_end.reason = pack(&cur, reason);
    it->u.sess_end.ts = pack(&cur, ts);
    return enqueue(s, it);
}

store_put_result store_api_error(store *s, const char *method, const char *url, int status,
                                 const char *error, const char *ts)
{
    if (method == NULL || url == NULL || error == NULL || !ts_ok(ts)) {
        log_warn("store", "api error row without method, url or error, or a bad timestamp; "
                          "not queued");
        return STORE_PUT_FAILED;
    }
    char now[CLOCK_ISO8601_LEN];
    if (ts == NULL)
        ts = clock_iso8601_now(now, sizeof now);
    store_item *it =
        item_new(STORE_ITEM_API_ERROR, slen(method) + slen(url) + slen(error) + slen(ts));
    if (it == NULL) {
        log_warn("store", "out of memory; api error row not queued");
        return STORE_PUT_FAILED;
    }
    char *cur = it->data;
    it->u.api_err.method = pack(&cur, method);
    it->u.api_err.url = pack(&cur, url);
    it->u.api_err.status = status > 0 ? status : 0;
    it->u.api_err.error = pack(&cur, error);
    it->u.api_err.ts = pack(&cur, ts);
    return enqueue(s, it);
}

/* ---- reads ---- */

/* Copies the newest `limit` queued messages of room below before_id into
 * out, newest first. Must run BEFORE the database read: a row committed in
 * between is then seen twice (and deduplicated), never missed. Costs
 * O(log n + limit) under the lock, through the index, not a walk of the
 * queue (which may hold a hundred thousand rows while the database is
 * down). */
static int queued_messages(store *s, const char *room, int limit, int64_t before_id,
                           store_rows *out)
{
    store_item *match[STORE_RECENT_MAX];
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    size_t n = store_index_recent(s->ix, room, before_id, (size_t)limit, match);
    for (size_t i = 0; i < n; i++) {
        store_item *copy = store_item_message(&match[i]->u.msg);
        if (copy == NULL || store_rows_push(out, copy) != 0) {
            rc = -1;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int db_recent(store *s, const char *room, int limit, int64_t before_id, store_rows *out,
                     char *err, size_t errlen)
{
    char sub[512] = "";
    int rc = -1;
    pthread_mutex_lock(&s->read_lock);
    /* Two tries: the first may find the connection broken by a server
     * restart since the last read. */
    for (int attempt = 0; attempt < 2 && rc != 0; attempt++) {
        if (s->rconn == NULL) {
            s->rconn = s->b->connect(s->url, 1, sub, sizeof sub);
            if (s->rconn == NULL)
                break;
        }
        rc = s->b->recent(s->rconn, room, limit, before_id, out, sub, sizeof sub);
        if (rc != 0) {
            store_rows_free(out);
            if (!s->b->broken(s->rconn))
                break;
            s->b->disconnect(s->rconn);
            s->rconn = NULL;
        }
    }
    pthread_mutex_unlock(&s->read_lock);
    if (rc != 0)
        err_set(err, errlen, "cannot read messages: %s", sub);
    return rc;
}

int store_recent_messages(store *s, const char *room, int limit, int64_t before_id,
                          store_message **out, size_t *count, char *err, size_t errlen)
{
    *out = NULL;
    *count = 0;
    if (room == NULL || limit < 1) {
        err_set(err, errlen, "room missing or limit below 1");
        return -1;
    }
    if (limit > STORE_RECENT_MAX)
        limit = STORE_RECENT_MAX;
    if (before_id <= 0)
        before_id = INT64_MAX;

    store_rows q = {0}, d = {0};
    if (queued_messages(s, room, limit, before_id, &q) != 0) {
        store_rows_free(&q);
        err_set(err, errlen, "out of memory");
        return -1;
    }
    if (db_recent(s, room, limit, before_id, &d, err, errlen) != 0) {
        store_rows_free(&q);
        return -1;
    }

    /* Merge the two newest-first lists, dropping queued copies of rows that
     * the database already has. */
    const store_message *pick[STORE_RECENT_MAX];
    size_t n = 0, i = 0, j = 0, bytes = 0;
    while (n < (size_t)limit && (i < d.count || j < q.count)) {
        const store_message *m;
        if (j >= q.count || (i < d.count && d.rows[i]->u.msg.id >= q.rows[j]->u.msg.id)) {
            m = &d.rows[i++]->u.msg;
            if (j < q.count && q.rows[j]->u.msg.id == m->id)
                j++;
        } else {
            m = &q.rows[j++]->u.msg;
        }
        pick[n++] = m;
        bytes += slen(m->room) + slen(m->source) + slen(m->title) + slen(m->body) +
                 slen(m->created_at) + (m->user_name ? slen(m->user_name) : 1) +
                 (m->user_username ? slen(m->user_username) : 1);
    }

    int rc = 0;
    if (n > 0) {
        store_message *res = mem_alloc(n * sizeof *res + bytes);
        if (res == NULL) {
            err_set(err, errlen, "out of memory");
            rc = -1;
        } else {
            char *cur = (char *)(res + n);
            for (size_t k = 0; k < n; k++) {
                const store_message *m = pick[n - 1 - k]; /* newest last */
                store_message *r = &res[k];
                *r = *m;
                r->room = pack(&cur, m->room);
                r->source = pack(&cur, m->source);
                r->title = pack(&cur, m->title);
                r->body = pack(&cur, m->body);
                r->created_at = pack(&cur, m->created_at);
                r->user_name = pack(&cur, m->user_name ? m->user_name : "");
                r->user_username = pack(&cur, m->user_username ? m->user_username : "");
            }
            *out = res;
            *count = n;
        }
    }
    store_rows_free(&q);
    store_rows_free(&d);
    return rc;
}

void store_messages_free(store_message *msgs) { mem_free(msgs); }
