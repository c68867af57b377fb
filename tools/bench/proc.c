/*
 * proc — see proc.h.
 */
#include "proc.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

proc_sample proc_server_sample(int pid)
{
    proc_sample ps = {-1, -1};
    if (pid <= 0)
        return ps;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(buf, sizeof buf, f))
            if (sscanf(buf, "VmRSS: %ld", &ps.rss_kb) == 1)
                break;
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        /* Fields after the command name (which may hold spaces): 14 and 15
         * of the line are utime and stime, in clock ticks. */
        const char *rp = strrchr(buf, ')');
        unsigned long ut, st;
        if (rp &&
            sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            ps.cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    return ps;
}

/* The load generator may share cores with the server, so its own use is
 * reported too. */
double proc_self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

int proc_self_cpus(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return (int)sysconf(_SC_NPROCESSORS_ONLN);
    return CPU_COUNT(&set);
}

/* Every packet of the client and of the server, when both run in one
 * namespace as in make bench: the packets each delivery costs tell how
 * much SCTP bundles. */
long long proc_udp_datagrams_sent(void)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    if (f == NULL)
        return -1;
    char line[1024];
    long long out = -1;
    int seen_header = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Udp: ", 5) != 0)
            continue;
        if (!seen_header) { /* "Udp: InDatagrams NoPorts InErrors OutDatagrams ..." */
            seen_header = 1;
            continue;
        }
        long long in, noports, inerr;
        if (sscanf(line + 5, "%lld %lld %lld %lld", &in, &noports, &inerr, &out) != 4)
            out = -1;
        break;
    }
    fclose(f);
    return out;
}

/* "0-3,6" into set; returns how many CPUs were added. */
static int parse_cpu_list(const char *s, cpu_set_t *set)
{
    int n = 0;
    while (*s >= '0' && *s <= '9') {
        char *end;
        long a = strtol(s, &end, 10), b = a;
        if (*end == '-')
            b = strtol(end + 1, &end, 10);
        for (long c = a; c <= b && c < CPU_SETSIZE; c++, n++)
            CPU_SET((int)c, set);
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

void proc_bench_cpus(int pid, cpu_set_t *out)
{
    CPU_ZERO(out);
    if (sched_getaffinity(0, sizeof *out, out) != 0)
        for (long c = 0; c < sysconf(_SC_NPROCESSORS_ONLN) && c < CPU_SETSIZE; c++)
            CPU_SET((int)c, out);
    if (pid <= 0)
        return;
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Cpus_allowed_list:", 18) == 0) {
            const char *v = line + 18;
            while (*v == ' ' || *v == '\t')
                v++;
            parse_cpu_list(v, out);
            break;
        }
    fclose(f);
}

proc_cpu_time proc_cpus_time(const cpu_set_t *set)
{
    proc_cpu_time t = {-1, -1};
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return t;
    unsigned long long busy = 0, steal = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int cpu;
        unsigned long long user, nice, sys, idle, iowait, irq, softirq, st;
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &user, &nice, &sys,
                   &idle, &iowait, &irq, &softirq, &st) != 9)
            continue;
        if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, set))
            continue;
        busy += user + nice + sys;
        steal += st;
    }
    fclose(f);
    double hz = (double)sysconf(_SC_CLK_TCK);
    t.busy_s = (double)busy / hz;
    t.steal_s = (double)steal / hz;
    return t;
}

long proc_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)LONG_MAX ? LONG_MAX
                                                                          : (long)rl.rlim_cur;
}
