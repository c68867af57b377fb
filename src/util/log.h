/*
 * log — one line per event on standard error.
 *
 * Two formats (--log-format), process-wide and set once at start like the
 * level:
 *   text  "2026-11-25T04:30:00.123Z INFO  module: text"
 *   json  {"ts":"2026-11-25T04:30:00.123Z","level":"info","module":"module",
 *          "msg":"text"}  one object a line, for log collectors
 * A JSON line is always valid JSON whatever the text holds: quotes,
 * backslashes and control characters are escaped and bytes that are not
 * UTF-8 become U+FFFD (log_json_escape). Thread-safe: each line is written
 * with a single write(2) so lines from the event-loop threads never
 * interleave. The time comes from util/clock (the same format as the store
 * and wire).
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

typedef enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 } log_format;

void log_set_level(log_level level);
/* Parses "debug", "info", "warn", "error" or "off"; returns -1 if unknown. */
int log_level_parse(const char *name);
void log_set_format(log_format format);
/* Parses "text" or "json"; returns -1 if unknown. */
int log_format_parse(const char *name);
/* With the json format, GLib's messages (libnice's warnings, say) are
 * written as log lines too (module: their log domain), so that standard
 * error holds nothing but JSON lines. Call once, before other threads. */
void log_route_glib(void);

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

/* Writes len bytes at s into out as the inside of a JSON string (no
 * quotes): " and \ escaped, control characters (C0, DEL, C1) as \n, \t,
 * \r or \u00XX, U+2028 and U+2029 as \u2028 and \u2029, and each byte
 * sequence that is not UTF-8 (a stray continuation byte, a cut or overlong
 * sequence, a surrogate, beyond U+10FFFF) as U+FFFD, one per maximal bad
 * part. Cut to fit cap - 1 bytes, never inside a character or an escape,
 * ending in "..." when something was left out; always NUL-terminated (cap
 * below 4: empty). Returns the length written. */
size_t log_json_escape(char *out, size_t cap, const char *s, size_t len);

#define log_debug(mod, ...) log_msg(LOGL_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...) log_msg(LOGL_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOGL_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOGL_ERROR, mod, __VA_ARGS__)

#endif
