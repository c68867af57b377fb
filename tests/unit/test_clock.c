/*
 * test_clock — unit tests for src/util/clock: the one ISO 8601 format
 * (logs, store rows, the wire's "ts"), edge dates, truncation, and that the
 * clocks read what they claim to.
 */
#include <criterion/criterion.h>

#include "util/clock.h"

#include <string.h>
#include <time.h>

Test(clock, iso8601_known_times)
{
    char buf[32];

    cr_assert_str_eq(clock_iso8601(1795514400123LL, buf, sizeof buf), "2026-11-24T10:00:00.123Z");
    cr_assert_str_eq(clock_iso8601(0, buf, sizeof buf), "1970-01-01T00:00:00.000Z");
    cr_assert_str_eq(clock_iso8601(-1, buf, sizeof buf), "1969-12-31T23:59:59.999Z");
    cr_assert_str_eq(clock_iso8601(951782400007LL, buf, sizeof buf), "2000-02-29T00:00:00.007Z");
    cr_assert_eq(strlen(buf) + 1, CLOCK_ISO8601_LEN);
    cr_assert_str_eq(clock_iso8601(253402300799999LL, buf, sizeof buf), "9999-12-31T23:59:59.999Z",
                     "the last time with a four-digit year");
    /* a year too long for the format: an empty string, never a cut date */
    cr_assert_str_eq(clock_iso8601(INT64_MAX, buf, sizeof buf), "");
}

Test(clock, iso8601_short_buffer_and_null)
{
    char buf[CLOCK_ISO8601_LEN];

    cr_assert_str_eq(clock_iso8601(1795514400123LL, buf, 11), "2026-11-24", "cut short");
    cr_assert_str_eq(clock_iso8601(1795514400123LL, buf, sizeof buf), "2026-11-24T10:00:00.123Z",
                     "exactly CLOCK_ISO8601_LEN is enough");
    cr_assert_null(clock_iso8601(0, NULL, 32));
    buf[0] = 'x';
    cr_assert_eq(clock_iso8601(0, buf, 0), buf);
    cr_assert_eq(buf[0], 'x', "len 0 writes nothing");
}

Test(clock, now_is_utc_wall_time)
{
    char buf[CLOCK_ISO8601_LEN];
    struct tm tm = {0};
    time_t before = time(NULL);

    cr_assert_eq(clock_iso8601_now(buf, sizeof buf), buf);
    cr_assert_eq(strlen(buf), 24, "%s", buf);
    cr_assert_eq(buf[10], 'T');
    cr_assert_eq(buf[19], '.');
    cr_assert_eq(buf[23], 'Z');
    cr_assert_not_null(strptime(buf, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm);
    cr_assert(t >= before && t <= time(NULL), "%s is not now (UTC)", buf);
    int64_t wall = clock_wall_ms();
    cr_assert(wall / 1000 >= before && wall / 1000 <= time(NULL));
}

Test(clock, monotonic_never_goes_back)
{
    int64_t ms = clock_mono_ms(), us = clock_mono_us();

    for (int i = 0; i < 1000; i++) {
        int64_t ms2 = clock_mono_ms(), us2 = clock_mono_us();
        cr_assert_geq(ms2, ms);
        cr_assert_geq(us2, us);
        ms = ms2;
        us = us2;
    }
    /* The two read the same clock in different units. */
    int64_t a = clock_mono_ms();
    int64_t b = clock_mono_us() / 1000;
    cr_assert(b - a >= 0 && b - a <= 1000, "ms %lld us/1000 %lld", (long long)a, (long long)b);
    struct timespec req = {.tv_sec = 0, .tv_nsec = 20 * 1000000};
    nanosleep(&req, NULL);
    cr_assert_geq(clock_mono_ms() - a, 20);
}
