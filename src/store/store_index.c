/*
 * store_index — the queued message rows of each room, sorted by id, so that
 * a history read costs O(log n + limit) under the store lock however long
 * the queue has grown while the database was down (see store_int.h).
 *
 * A read walks a room's rows down from the newest, so it costs O(log n +
 * rows looked at): the limit, plus the rows its filter drops (private rows
 * of other users), which a queue holds few of next to the public ones.
 *
 * A room's rows are an array of item pointers [start, end), ascending id.
 * Rows arrive almost in id order (ids are taken just before the put, so two
 * event loops can swap neighbours) and leave almost in id order (the writer
 * removes from the head of the FIFO); so adding is an append and a short
 * bubble back, removing is normally `start++`. A room with no queued rows is
 * freed, so the index never outgrows the queue.
 *
 * Threading: none of its own; store.c calls every function under s->lock.
 * Ownership: the index borrows the items; the queue owns them.
 */
#include "store/store_int.h"

#include "util/mem.h"

#include <string.h>

/* Rooms are bounded (--max-rooms) and freed when their rows are written, so
 * a fixed table with chains is enough. */
#define IX_BUCKETS 1024

typedef struct ix_room {
    struct ix_room *next;
    store_item **v;
    size_t start, end, cap;
    char name[];
} ix_room;

struct store_index {
    ix_room *bucket[IX_BUCKETS];
};

static size_t ix_hash(const char *s)
{
    size_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % IX_BUCKETS;
}

static ix_room **ix_find(store_index *ix, const char *room)
{
    ix_room **pp = &ix->bucket[ix_hash(room)];
    while (*pp != NULL && strcmp((*pp)->name, room) != 0)
        pp = &(*pp)->next;
    return pp;
}

store_index *store_index_new(void) { return mem_calloc(1, sizeof(store_index)); }

void store_index_free(store_index *ix)
{
    if (ix == NULL)
        return;
    for (size_t b = 0; b < IX_BUCKETS; b++) {
        for (ix_room *r = ix->bucket[b], *next; r != NULL; r = next) {
            next = r->next;
            mem_free(r->v);
            mem_free(r);
        }
    }
    mem_free(ix);
}

int store_index_add(store_index *ix, store_item *it)
{
    const char *room = it->u.msg.room;
    ix_room **pp = ix_find(ix, room);
    ix_room *r = *pp;
    if (r == NULL) {
        size_t n = strlen(room) + 1;
        r = mem_calloc(1, sizeof *r + n);
        if (r == NULL)
            return -1;
        memcpy(r->name, room, n);
        *pp = r;
    }
    if (r->end == r->cap) {
        if (r->start > 0) { /* the written head left room at the front */
            memmove(r->v, r->v + r->start, (r->end - r->start) * sizeof *r->v);
            r->end -= r->start;
            r->start = 0;
        } else {
            size_t ncap = r->cap ? r->cap * 2 : 16;
            store_item **v = mem_realloc(r->v, ncap * sizeof *v);
            if (v == NULL) {
                if (r->end == 0) { /* just made: do not leave it empty */
                    *pp = r->next;
                    mem_free(r->v);
                    mem_free(r);
                }
                return -1;
            }
            r->v = v;
            r->cap = ncap;
        }
    }
    size_t k = r->end++;
    r->v[k] = it;
    for (; k > r->start && r->v[k - 1]->u.msg.id > r->v[k]->u.msg.id; k--) {
        store_item *t = r->v[k - 1];
        r->v[k - 1] = r->v[k];
        r->v[k] = t;
    }
    return 0;
}

void store_index_remove(store_index *ix, const store_item *it)
{
    ix_room **pp = ix_find(ix, it->u.msg.room);
    ix_room *r = *pp;
    if (r == NULL)
        return;
    size_t i = r->start;
    while (i < r->end && r->v[i] != it)
        i++;
    if (i == r->end)
        return;
    /* Normally i == start; otherwise shift the few rows before it up. */
    memmove(r->v + r->start + 1, r->v + r->start, (i - r->start) * sizeof *r->v);
    r->start++;
    if (r->start == r->end) {
        *pp = r->next;
        mem_free(r->v);
        mem_free(r);
    }
}

size_t store_index_range(store_index *ix, const char *room, int64_t after_id, int64_t before_id,
                         size_t limit, store_index_filter keep, void *arg, store_item **out)
{
    ix_room *r = *ix_find(ix, room);
    if (r == NULL)
        return 0;
    /* First index whose id >= before_id. */
    size_t lo = r->start, hi = r->end;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->v[mid]->u.msg.id < before_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = 0;
    for (size_t k = lo; k > r->start && n < limit; k--) {
        store_item *it = r->v[k - 1];
        if (it->u.msg.id <= after_id)
            break;
        if (keep == NULL || keep(&it->u.msg, arg))
            out[n++] = it;
    }
    return n;
}
