/*
 * proc — what /proc and the kernel say about the measured server and about
 * chat-bench itself: the server's RSS and CPU time, our own CPU time and
 * CPU set, UDP datagrams sent in the network namespace, and the descriptor
 * limit (many peers need many sockets).
 */
#ifndef CHAT_BENCH_PROC_H
#define CHAT_BENCH_PROC_H

typedef struct {
    long rss_kb;  /* -1 when unknown */
    double cpu_s; /* user + system; -1 when unknown */
} proc_sample;

/* The process `pid` (<= 0: nothing, both fields -1). */
proc_sample proc_server_sample(int pid);
/* CPU seconds (user + system) this process has used. */
double proc_self_cpu_s(void);
/* CPUs this process may run on (its affinity mask, e.g. under taskset). */
int proc_self_cpus(void);
/* UDP datagrams sent in this network namespace so far, -1 when unknown. */
long long proc_udp_datagrams_sent(void);
/* Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit
 * now in force (-1 when it cannot be read). */
long proc_raise_nofile(void);

#endif
