/*
 * log — one line per event on standard error.
 *
 * Format: "2026-11-25T04:30:00.123Z INFO  module: text". Thread-safe: each
 * line is written with a single write(2) so lines from the event-loop
 * threads never interleave. The level is process-wide and set once at start.
 * The time comes from util/clock (the same format as the store and wire).
 *
 * Ownership: module and the arguments are only read; nothing is kept.
 */
#ifndef CHATD_LOG_H
#define CHATD_LOG_H

#include <stddef.h>

typedef enum {
    LOGL_DEBUG = 0,
    LOGL_INFO = 1,
    LOGL_WARN = 2,
    LOGL_ERROR = 3,
    LOGL_OFF = 4
} log_level;

void log_set_level(log_level level);
/* Parses "debug", "info", "warn", "error" or "off"; returns -1 if unknown. */
int log_level_parse(const char *name);

void log_msg(log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Bytes of a log_safe buffer that holds a useful piece of untrusted text
 * (room name, fingerprint algorithm, user agent, an API's error text). */
#define LOG_SAFE_LEN 128

/* Copies the untrusted text s (NULL logs as "(null)") into out as text that
 * cannot forge or break a log line: printable ASCII is kept, a backslash
 * and a double quote get a backslash before them, and every other byte
 * (control characters, DEL, anything non-ASCII, which covers escape
 * sequences and bidi overrides) becomes \xHH. Cut to fit cap - 1 bytes,
 * never inside an escape, ending in "..." when something was left out.
 * Returns out (cap must be at least 8), for use as a "%s" argument:
 *     char q[LOG_SAFE_LEN];
 *     log_info("sdp", "algorithm %s", log_safe(q, sizeof q, alg));
 * Every place that logs text a stranger chose goes through it. */
const char *log_safe(char *out, size_t cap, const char *s);
/* The same for len bytes at s (need not be NUL-terminated; NUL escaped). */
const char *log_safe_n(char *out, size_t cap, const char *s, size_t len);

#define log_debug(mod, ...) log_msg(LOGL_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...) log_msg(LOGL_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOGL_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOGL_ERROR, mod, __VA_ARGS__)

#endif
