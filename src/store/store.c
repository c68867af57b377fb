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
 * Why one file of about 1,300 lines: the queue, the writer that empties it
 * and the reads that merge still-queued rows with the database (history,
 * catch-up, rooms) all work under s->lock and its one rule above; kept
 * together, that rule is read in one place (the byte budget of issue 9
 * too). The SQL is in the backends, the row packing in store_int.h's
 * items, the per-room index of queued messages in store_index.c. The
 * reads are the file's last third and the first thing to move out (with
 * struct store into store_int.h) if it grows again.
 */
#include "store/store_int.h"

#include "util/backoff.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <limits.h>
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
    store_item *it =
        item_new(STORE_ITEM_MESSAGE, slen(m->room) + slen(m->source) + slen(m->recipients) +
                                         slen(m->title) + slen(m->body) + slen(m->created_at) +
                                         slen(m->user_name) + slen(m->user_username));
    if (it == NULL)
        return NULL;
    char *cur = it->data;
    it->u.msg = *m;
    it->u.msg.room = pack(&cur, m->room);
    it->u.msg.source = pack(&cur, m->source);
    it->u.msg.recipients = pack(&cur, m->recipients);
    it->u.msg.title = pack(&cur, m->title);
    it->u.msg.body = pack(&cur, m->body);
    it->u.msg.created_at = pack(&cur, m->created_at);
    it->u.msg.user_name = pack(&cur, m->user_name);
    it->u.msg.user_username = pack(&cur, m->user_username);
    return it;
}

store_item *store_item_room(store_item_kind kind, const store_room *r)
{
    store_item *it = item_new(kind, slen(r->name) + slen(r->description) + slen(r->secret_hash) +
                                        slen(r->pin_hash) + slen(r->created_at));
    if (it == NULL)
        return NULL;
    char *cur = it->data;
    it->u.room = *r;
    it->u.room.name = pack(&cur, r->name);
    it->u.room.description = pack(&cur, r->description);
    it->u.room.secret_hash = pack(&cur, r->secret_hash);
    it->u.room.pin_hash = pack(&cur, r->pin_hash);
    it->u.room.created_at = pack(&cur, r->created_at);
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
    /* A delivered message is budgeted as the other rows are: it cannot
     * be refused to its sender any more. */
    int msg = it->kind == STORE_ITEM_MESSAGE && !it->delivered;
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
    if (it->kind == STORE_ITEM_MESSAGE && store_index_add(s->ix, it) != 0) {
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
    case STORE_ITEM_ROOM_PUT:
        return "room";
    case STORE_ITEM_ROOM_DELETE:
        return "room deletion";
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

/* True for store.h's form of a recipients list: user ids > 0 without
 * leading zeros, strictly ascending, comma-separated, nothing else. The
 * catch-up query finds a reader in it by text (",5," in ",2,5,"), which
 * only works when every id is written one way. */
static int recipients_ok(const char *list)
{
    long prev = 0;
    const char *p = list;
    for (;;) {
        if (*p < '1' || *p > '9')
            return 0;
        long id = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (id > (LONG_MAX - (*p - '0')) / 10)
                return 0;
            id = id * 10 + (*p - '0');
        }
        if (id <= prev)
            return 0;
        prev = id;
        if (*p == '\0')
            return 1;
        if (*p++ != ',')
            return 0;
    }
}

/* The rules of store.h for a message's source, sender, recipients and
 * room: whispers have recipients and a sender, announcements may have no
 * sender and alone may go to every room, posts have a sender. */
static int message_ok(const store_message *m)
{
    if (m->id <= 0 || m->room == NULL || m->body == NULL || m->source == NULL ||
        !ts_ok(m->created_at))
        return 0;
    int every = strcmp(m->room, STORE_ROOM_EVERY) == 0;
    if (strcmp(m->source, "auto") == 0 || strcmp(m->source, "manual") == 0)
        return m->user_id > 0 && m->recipients == NULL && !every;
    if (strcmp(m->source, "whisper") == 0)
        return m->user_id > 0 && m->recipients != NULL && recipients_ok(m->recipients) && !every;
    if (strcmp(m->source, "announcement") == 0)
        return m->user_id >= 0 && m->recipients == NULL;
    return 0;
}

static store_put_result put_message(store *s, const store_message *m, int delivered)
{
    if (m == NULL || !message_ok(m)) {
        log_warn("store", "message row without id, room or body, or a bad source, sender, "
                          "recipients or timestamp; not queued");
        return STORE_PUT_FAILED;
    }
    store_message copy = *m;
    char now[CLOCK_ISO8601_LEN];
    if (copy.created_at == NULL)
        copy.created_at = clock_iso8601_now(now, sizeof now);
    if (copy.user_id == 0) /* an announcement of chatd's: no sender, no names */
        copy.user_name = copy.user_username = NULL;
    store_item *it = store_item_message(&copy);
    if (it == NULL) {
        log_warn("store", "out of memory; message %lld not queued", (long long)m->id);
        return STORE_PUT_FAILED;
    }
    it->delivered = delivered;
    return enqueue(s, it);
}

store_put_result store_put_message(store *s, const store_message *m)
{
    return put_message(s, m, 0);
}

store_put_result store_put_delivered_message(store *s, const store_message *m)
{
    return put_message(s, m, 1);
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

store_put_result store_room_put(store *s, const store_room *r)
{
    if (r == NULL || r->name == NULL || r->created_by < 0 || !ts_ok(r->created_at)) {
        log_warn("store", "room row without name, or a bad creator or timestamp; not queued");
        return STORE_PUT_FAILED;
    }
    store_room copy = *r;
    char now[CLOCK_ISO8601_LEN];
    if (copy.created_at == NULL)
        copy.created_at = clock_iso8601_now(now, sizeof now);
    if (copy.description == NULL)
        copy.description = "";
    copy.is_private = copy.is_private != 0;
    store_item *it = store_item_room(STORE_ITEM_ROOM_PUT, &copy);
    if (it == NULL) {
        log_warn("store", "out of memory; room row not queued");
        return STORE_PUT_FAILED;
    }
    return enqueue(s, it);
}

store_put_result store_room_delete(store *s, const char *name)
{
    if (name == NULL) {
        log_warn("store", "room deletion without a name; not queued");
        return STORE_PUT_FAILED;
    }
    store_item *it = store_item_room(STORE_ITEM_ROOM_DELETE, &(store_room){.name = name});
    if (it == NULL) {
        log_warn("store", "out of memory; room deletion not queued");
        return STORE_PUT_FAILED;
    }
    return enqueue(s, it);
}

/* ---- reads ---- */

/* Filters of queued rows, the same rules as the backends' WHERE clauses. */
static int keep_public(const store_message *m, void *arg)
{
    (void)arg;
    return m->recipients == NULL;
}

/* True when the recipients list holds the id (store.h's form). */
static int among(const char *list, long id)
{
    char want[24];
    size_t n = (size_t)snprintf(want, sizeof want, "%ld", id);
    for (const char *p = list;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && memcmp(p, want, n) == 0)
            return 1;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

static int keep_visible(const store_message *m, void *arg)
{
    long user = *(const long *)arg;
    return m->recipients == NULL ||
           (user > 0 && (m->user_id == user || among(m->recipients, user)));
}

/* Copies into out, newest first, the newest q->limit queued rows that q
 * would read from the database (its room's and STORE_ROOM_EVERY's). Must
 * run BEFORE the database read: a row committed in between is then seen
 * twice (and deduplicated), never missed. Costs O(log n + limit) under the
 * lock, plus a step for each queued private row the reader may not see,
 * through the index, not a walk of the queue (which may hold a hundred
 * thousand rows while the database is down). */
static int queued_messages(store *s, const store_read *q, store_rows *out)
{
    store_item *room[STORE_RECENT_MAX + 1], *every[STORE_RECENT_MAX + 1];
    long user = q->user_id;
    store_index_filter keep = q->kind == STORE_READ_SINCE ? keep_visible : keep_public;
    int64_t after = q->kind == STORE_READ_SINCE ? q->after_id : INT64_MIN;
    int64_t before = q->kind == STORE_READ_SINCE ? INT64_MAX : q->before_id;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    size_t nr =
        store_index_range(s->ix, q->room, after, before, (size_t)q->limit, keep, &user, room);
    size_t ne = 0;
    if (strcmp(q->room, STORE_ROOM_EVERY) != 0)
        ne = store_index_range(s->ix, STORE_ROOM_EVERY, after, before, (size_t)q->limit, keep,
                               &user, every);
    size_t i = 0, j = 0;
    while (i < nr || j < ne) {
        store_item *it =
            j >= ne || (i < nr && room[i]->u.msg.id > every[j]->u.msg.id) ? room[i++] : every[j++];
        store_item *copy = store_item_message(&it->u.msg);
        if (copy == NULL || store_rows_push(out, copy) != 0) {
            rc = -1;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* A read on the reader connection: messages for q, or (q NULL) the rooms.
 * 0, or -1 with the backend's reason in sub. */
static int db_rows(store *s, const store_read *q, store_rows *out, char *sub, size_t sublen)
{
    int rc = -1;
    pthread_mutex_lock(&s->read_lock);
    /* Two tries: the first may find the connection broken by a server
     * restart since the last read. */
    for (int attempt = 0; attempt < 2 && rc != 0; attempt++) {
        if (s->rconn == NULL) {
            s->rconn = s->b->connect(s->url, 1, sub, sublen);
            if (s->rconn == NULL)
                break;
        }
        rc =
            q ? s->b->read(s->rconn, q, out, sub, sublen) : s->b->rooms(s->rconn, out, sub, sublen);
        if (rc != 0) {
            store_rows_free(out);
            if (!s->b->broken(s->rconn))
                break;
            s->b->disconnect(s->rconn);
            s->rconn = NULL;
        }
    }
    pthread_mutex_unlock(&s->read_lock);
    return rc;
}

static int db_read(store *s, const store_read *q, store_rows *out, char *err, size_t errlen)
{
    char sub[512] = "";
    if (db_rows(s, q, out, sub, sizeof sub) == 0)
        return 0;
    err_set(err, errlen, "cannot read messages: %s", sub);
    return -1;
}

/* Merges two newest-first lists into pick[] (at most want rows), dropping
 * queued copies of rows that the database already has. */
static size_t merge_rows(const store_rows *d, const store_rows *q, size_t want,
                         const store_message **pick)
{
    size_t n = 0, i = 0, j = 0;
    while (n < want && (i < d->count || j < q->count)) {
        const store_message *m;
        if (j >= q->count || (i < d->count && d->rows[i]->u.msg.id >= q->rows[j]->u.msg.id)) {
            m = &d->rows[i++]->u.msg;
            if (j < q->count && q->rows[j]->u.msg.id == m->id)
                j++;
        } else {
            m = &q->rows[j++]->u.msg;
        }
        pick[n++] = m;
    }
    return n;
}

/* The caller's result: the n newest-first rows of pick[] in one block,
 * newest last, names never NULL. 0, or -1 when out of memory. */
static int result_block(const store_message *const *pick, size_t n, store_message **out,
                        size_t *count, char *err, size_t errlen)
{
    if (n == 0)
        return 0;
    size_t bytes = 0;
    for (size_t k = 0; k < n; k++) {
        const store_message *m = pick[k];
        bytes += slen(m->room) + slen(m->source) + slen(m->recipients) + slen(m->title) +
                 slen(m->body) + slen(m->created_at) + (m->user_name ? slen(m->user_name) : 1) +
                 (m->user_username ? slen(m->user_username) : 1);
    }
    store_message *res = mem_alloc(n * sizeof *res + bytes);
    if (res == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    char *cur = (char *)(res + n);
    for (size_t k = 0; k < n; k++) {
        const store_message *m = pick[n - 1 - k]; /* newest last */
        store_message *r = &res[k];
        *r = *m;
        r->room = pack(&cur, m->room);
        r->source = pack(&cur, m->source);
        r->recipients = pack(&cur, m->recipients);
        r->title = pack(&cur, m->title);
        r->body = pack(&cur, m->body);
        r->created_at = pack(&cur, m->created_at);
        r->user_name = pack(&cur, m->user_name ? m->user_name : "");
        r->user_username = pack(&cur, m->user_username ? m->user_username : "");
    }
    *out = res;
    *count = n;
    return 0;
}

/* Queued rows (unless a search), then the database, merged: the newest
 * `want` rows go to the caller's block, and *found says how many there
 * were before the cut at want (at most q->limit). */
static int read_merged(store *s, const store_read *q, size_t want, store_message **out,
                       size_t *count, size_t *found, char *err, size_t errlen)
{
    store_rows qr = {0}, d = {0};
    if (q->kind != STORE_READ_SEARCH && queued_messages(s, q, &qr) != 0) {
        store_rows_free(&qr);
        err_set(err, errlen, "out of memory");
        return -1;
    }
    if (db_read(s, q, &d, err, errlen) != 0) {
        store_rows_free(&qr);
        return -1;
    }
    const store_message *pick[STORE_RECENT_MAX + 1];
    size_t n = merge_rows(&d, &qr, (size_t)q->limit, pick);
    if (found)
        *found = n;
    int rc = result_block(pick, n > want ? want : n, out, count, err, errlen);
    store_rows_free(&qr);
    store_rows_free(&d);
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
    store_read q = {.kind = STORE_READ_RECENT,
                    .room = room,
                    .before_id = before_id > 0 ? before_id : INT64_MAX,
                    .limit = limit};
    return read_merged(s, &q, (size_t)limit, out, count, NULL, err, errlen);
}

int store_messages_since(store *s, const char *room, long user_id, int64_t since_id, int limit,
                         store_message **out, size_t *count, int *more, char *err, size_t errlen)
{
    *out = NULL;
    *count = 0;
    *more = 0;
    if (room == NULL || limit < 1) {
        err_set(err, errlen, "room missing or limit below 1");
        return -1;
    }
    if (limit > STORE_SINCE_MAX)
        limit = STORE_SINCE_MAX;
    char like[32];
    snprintf(like, sizeof like, "%%,%ld,%%", user_id > 0 ? user_id : 0);
    /* One row more than asked for tells whether older ones were left out. */
    store_read q = {.kind = STORE_READ_SINCE,
                    .room = room,
                    .after_id = since_id > 0 ? since_id : 0,
                    .limit = limit + 1,
                    .member_like = like,
                    .user_id = user_id > 0 ? user_id : 0};
    size_t found = 0;
    if (read_merged(s, &q, (size_t)limit, out, count, &found, err, errlen) != 0)
        return -1;
    *more = found > (size_t)limit;
    return 0;
}

/* A search word's bytes: ASCII letters and digits, and every byte of a
 * non-ASCII UTF-8 character (letters or not: both tokenizers split on
 * what is not a letter, so a non-letter inside a word only splits it
 * again; see store.h). */
static int word_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

size_t store_search_words(const char *words, size_t *bytes, size_t *longest)
{
    size_t nwords = 0, total = 0, max = 0;
    for (const char *p = words; *p;) {
        if (!word_byte((unsigned char)*p)) {
            p++;
            continue;
        }
        size_t len = 0;
        while (word_byte((unsigned char)p[len]))
            len++;
        nwords++;
        total += len;
        if (len > max)
            max = len;
        p += len;
    }
    if (bytes)
        *bytes = total;
    if (longest)
        *longest = max;
    return nwords;
}

int store_search_messages(store *s, const char *room, const char *words, int limit,
                          int64_t before_id, store_message **out, size_t *count, char *err,
                          size_t errlen)
{
    *out = NULL;
    *count = 0;
    if (room == NULL || words == NULL || limit < 1) {
        err_set(err, errlen, "room or words missing, or limit below 1");
        return -1;
    }
    if (limit > STORE_RECENT_MAX)
        limit = STORE_RECENT_MAX;
    /* Count and measure the words before allocating anything. */
    size_t bytes, longest, nwords = store_search_words(words, &bytes, &longest);
    if (nwords == 0)
        return 0;
    if (nwords > STORE_SEARCH_WORDS_MAX) {
        err_set(err, errlen, "more than %d words to search for", STORE_SEARCH_WORDS_MAX);
        return -1;
    }
    if (longest > STORE_SEARCH_WORD_BYTES)
        return 0; /* PostgreSQL never indexes such a word: no match anywhere */

    /* fts: "w1" "w2" (quoted words, an implicit AND); plain: w1 w2. */
    size_t fts_len = bytes + 3 * nwords, plain_len = bytes + nwords;
    char *buf = mem_alloc(fts_len + plain_len);
    if (buf == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    char *fts = buf, *plain = buf + fts_len, *f = fts, *pl = plain;
    for (const char *p = words; *p;) {
        if (!word_byte((unsigned char)*p)) {
            p++;
            continue;
        }
        size_t len = 0;
        while (word_byte((unsigned char)p[len]))
            len++;
        if (f != fts) {
            *f++ = ' ';
            *pl++ = ' ';
        }
        *f++ = '"';
        memcpy(f, p, len);
        f += len;
        *f++ = '"';
        memcpy(pl, p, len);
        pl += len;
        p += len;
    }
    *f = '\0';
    *pl = '\0';
    store_read q = {.kind = STORE_READ_SEARCH,
                    .room = room,
                    .before_id = before_id > 0 ? before_id : INT64_MAX,
                    .limit = limit,
                    .fts = fts,
                    .plain = plain};
    int rc = read_merged(s, &q, (size_t)limit, out, count, NULL, err, errlen);
    mem_free(buf);
    return rc;
}

void store_messages_free(store_message *msgs) { mem_free(msgs); }

/* ---- rooms ---- */

static int room_cmp(const void *a, const void *b)
{
    const store_item *x = *(store_item *const *)a, *y = *(store_item *const *)b;
    return strcmp(x->u.room.name, y->u.room.name);
}

/* Applies one queued put or deletion to the rows read (unsorted). 0, or
 * -1 when out of memory. */
static int room_apply(store_rows *rows, const store_item *op)
{
    for (size_t i = 0; i < rows->count; i++) {
        if (strcmp(rows->rows[i]->u.room.name, op->u.room.name) != 0)
            continue;
        mem_free(rows->rows[i]);
        rows->rows[i] = rows->rows[--rows->count];
        break;
    }
    if (op->kind != STORE_ITEM_ROOM_PUT)
        return 0;
    store_item *copy = store_item_room(STORE_ITEM_ROOM_PUT, &op->u.room);
    return copy == NULL ? -1 : store_rows_push(rows, copy);
}

int store_rooms_load(store *s, store_room **out, size_t *count, char *err, size_t errlen)
{
    *out = NULL;
    *count = 0;
    /* The queued puts and deletions first (see queued_messages for why
     * first), in FIFO order. Rooms are loaded once, at start, so a walk of
     * the queue is fine here. */
    store_rows ops = {0}, rows = {0};
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    for (store_item *it = s->head; it != NULL && rc == 0; it = it->next) {
        if (it->kind != STORE_ITEM_ROOM_PUT && it->kind != STORE_ITEM_ROOM_DELETE)
            continue;
        store_item *copy = store_item_room(it->kind, &it->u.room);
        rc = copy == NULL ? -1 : store_rows_push(&ops, copy);
    }
    pthread_mutex_unlock(&s->lock);
    if (rc != 0) {
        store_rows_free(&ops);
        err_set(err, errlen, "out of memory");
        return -1;
    }

    char sub[512] = "";
    if (db_rows(s, NULL, &rows, sub, sizeof sub) != 0) {
        store_rows_free(&ops);
        err_set(err, errlen, "cannot read rooms: %s", sub);
        return -1;
    }
    for (size_t i = 0; i < ops.count && rc == 0; i++)
        rc = room_apply(&rows, ops.rows[i]);
    store_rows_free(&ops);
    if (rc != 0) {
        store_rows_free(&rows);
        err_set(err, errlen, "out of memory");
        return -1;
    }
    if (rows.count == 0) {
        store_rows_free(&rows);
        return 0;
    }
    /* By name, bytewise (strcmp): the same order on both backends,
     * whatever PostgreSQL's collation. */
    qsort(rows.rows, rows.count, sizeof *rows.rows, room_cmp);
    size_t bytes = 0;
    for (size_t i = 0; i < rows.count; i++) {
        const store_room *r = &rows.rows[i]->u.room;
        bytes += slen(r->name) + (r->description ? slen(r->description) : 1) +
                 slen(r->secret_hash) + slen(r->pin_hash) + slen(r->created_at);
    }
    store_room *res = mem_alloc(rows.count * sizeof *res + bytes);
    if (res == NULL) {
        store_rows_free(&rows);
        err_set(err, errlen, "out of memory");
        return -1;
    }
    char *cur = (char *)(res + rows.count);
    for (size_t i = 0; i < rows.count; i++) {
        const store_room *r = &rows.rows[i]->u.room;
        res[i] = *r;
        res[i].name = pack(&cur, r->name);
        res[i].description = pack(&cur, r->description ? r->description : "");
        res[i].secret_hash = pack(&cur, r->secret_hash);
        res[i].pin_hash = pack(&cur, r->pin_hash);
        res[i].created_at = pack(&cur, r->created_at);
    }
    *out = res;
    *count = rows.count;
    store_rows_free(&rows);
    return 0;
}

void store_rooms_free(store_room *rooms) { mem_free(rooms); }
