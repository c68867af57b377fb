/*
 * clock — see clock.h.
 */
#include "util/clock.h"

#include <stdio.h>
#include <time.h>

static int64_t read_ns(clockid_t id)
{
    struct timespec ts;
    /* Cannot fail for these two clocks on Linux: both always exist and ts
     * is a valid address. */
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t clock_mono_ms(void) { return read_ns(CLOCK_MONOTONIC) / 1000000; }

int64_t clock_mono_us(void) { return read_ns(CLOCK_MONOTONIC) / 1000; }

int64_t clock_wall_ms(void) { return read_ns(CLOCK_REALTIME) / 1000000; }

char *clock_iso8601(int64_t unix_ms, char *buf, size_t len)
{
    time_t secs;
    long ms;
    struct tm tm;
    char date[24];

    if (buf == NULL || len == 0)
        return buf;
    buf[0] = '\0';
    /* Floor division, so times before 1970 keep ms in 0..999. */
    secs = (time_t)(unix_ms / 1000);
    ms = (long)(unix_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs--;
    }
    if (gmtime_r(&secs, &tm) == NULL || strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return buf;
    snprintf(buf, len, "%s.%03ldZ", date, ms);
    return buf;
}

char *clock_iso8601_now(char *buf, size_t len) { return clock_iso8601(clock_wall_ms(), buf, len); }
