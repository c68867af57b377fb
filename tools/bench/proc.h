/*
 * proc — what /proc and the kernel say about the measured server and about
 * chat-bench itself: the server's RSS and CPU time, our own CPU time and
 * CPU set, UDP datagrams sent in the network namespace, and the descriptor
 * limit (many peers need many sockets).
 */
#ifndef CHAT_BENCH_PROC_H
#define CHAT_BENCH_PROC_H

#include <sched.h>

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
/* The CPUs the bench runs on: ours and those the process `pid` may use
 * (its Cpus_allowed_list; pid <= 0: ours only). */
void proc_bench_cpus(int pid, cpu_set_t *out);

/* Time the CPUs of `set` spent since boot, in seconds: busy running
 * processes (user, nice, system: any process, ours or not) and stolen by
 * the hypervisor. Interrupt and softirq time (packet processing) is left
 * out: it belongs to no process. */
typedef struct {
    double busy_s, steal_s; /* -1 when /proc/stat cannot be read */
} proc_cpu_time;
proc_cpu_time proc_cpus_time(const cpu_set_t *set);

/* Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit
 * now in force (-1 when it cannot be read). */
long proc_raise_nofile(void);

#endif
