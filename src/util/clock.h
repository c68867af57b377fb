/*
 * clock — the process's clocks and its one time format.
 *
 * Two clocks, for two jobs: the monotonic clock (clock_mono_*) for
 * deadlines, timeouts and durations, because the wall clock can jump; the
 * wall clock (clock_wall_ms) only for what is shown or stored as a date.
 * Dates are written one way everywhere — logs, the store's rows and the
 * "ts" fields on the wire: ISO 8601 UTC with milliseconds,
 * "2026-11-24T10:00:00.123Z" (SPEC).
 *
 * Threading: every function is safe from any thread (no shared state).
 * Ownership: the formatters write into the caller's buffer and return it;
 * nothing is allocated.
 */
#ifndef CHATD_CLOCK_H
#define CHATD_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of "2026-11-24T10:00:00.123Z" with its NUL; buffers of 32 are
 * customary and leave room. */
#define CLOCK_ISO8601_LEN 25

/* Monotonic time (CLOCK_MONOTONIC) in milliseconds / microseconds from an
 * arbitrary origin: compare and subtract only. Being CLOCK_MONOTONIC, a
 * value converts to the absolute timespec of a condition variable whose
 * clock was set to CLOCK_MONOTONIC (the store's writer relies on that). */
int64_t clock_mono_ms(void);
int64_t clock_mono_us(void);

/* Wall time (CLOCK_REALTIME) in milliseconds since 1970-01-01 UTC. */
int64_t clock_wall_ms(void);

/* unix_ms as "2026-11-24T10:00:00.123Z" into buf (cut short, still
 * NUL-terminated, when len is too small); returns buf, holding "" when the
 * time cannot be represented. Times before 1970 keep their milliseconds in
 * 0..999 ("1969-12-31T23:59:59.999Z" for -1). NULL buf or len 0: returns
 * buf and writes nothing. */
char *clock_iso8601(int64_t unix_ms, char *buf, size_t len);

/* clock_iso8601 of clock_wall_ms(). */
char *clock_iso8601_now(char *buf, size_t len);

#endif
