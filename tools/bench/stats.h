/*
 * stats — latency samples from many threads, summarised as percentiles.
 *
 * chat-bench records one sample per setup or delivered message; the
 * summary sorts a copy, so it can be taken while samples still arrive.
 */
#ifndef CHAT_BENCH_STATS_H
#define CHAT_BENCH_STATS_H

#include <pthread.h>
#include <stddef.h>

typedef struct {
    pthread_mutex_t lock;
    double *ms;
    size_t n, cap;
} bench_samples;

typedef struct {
    size_t n;
    double p50, p90, p99, max, mean;
} bench_summary;

void samples_init(bench_samples *s);
void samples_add(bench_samples *s, double ms);
void samples_reset(bench_samples *s);
bench_summary samples_summary(bench_samples *s);
void samples_free(bench_samples *s);

#endif
