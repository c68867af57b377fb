/*
 * stats — see stats.h.
 */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

void samples_init(bench_samples *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
}

void samples_add(bench_samples *s, double ms)
{
    pthread_mutex_lock(&s->lock);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        double *n = realloc(s->ms, cap * sizeof *n);
        if (n == NULL) { /* a lost sample is better than a lost run */
            pthread_mutex_unlock(&s->lock);
            return;
        }
        s->ms = n;
        s->cap = cap;
    }
    s->ms[s->n++] = ms;
    pthread_mutex_unlock(&s->lock);
}

void samples_reset(bench_samples *s)
{
    pthread_mutex_lock(&s->lock);
    s->n = 0;
    pthread_mutex_unlock(&s->lock);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double rank(const double *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)n);
    if (i >= n)
        i = n - 1;
    return v[i];
}

bench_summary samples_summary(bench_samples *s)
{
    bench_summary r = {0};
    pthread_mutex_lock(&s->lock);
    size_t n = s->n;
    double *v = n ? malloc(n * sizeof *v) : NULL;
    if (v)
        memcpy(v, s->ms, n * sizeof *v);
    pthread_mutex_unlock(&s->lock);
    if (v == NULL)
        return r;
    qsort(v, n, sizeof *v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    r.n = n;
    r.p50 = rank(v, n, 0.50);
    r.p90 = rank(v, n, 0.90);
    r.p99 = rank(v, n, 0.99);
    r.max = v[n - 1];
    r.mean = sum / (double)n;
    free(v);
    return r;
}

void samples_free(bench_samples *s)
{
    free(s->ms);
    pthread_mutex_destroy(&s->lock);
}
