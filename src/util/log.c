/*
 * log — see log.h. Formats into a stack buffer and writes it in one call,
 * which keeps lines whole across threads without a lock.
 */
#include "util/log.h"

#include "util/clock.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic int current_level = LOGL_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_set_level(log_level level) { atomic_store(&current_level, (int)level); }

int log_level_parse(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void log_msg(log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level < atomic_load(&current_level) || level >= LOGL_OFF)
        return;
    char line[2048];
    char ts[CLOCK_ISO8601_LEN];
    int n = snprintf(line, sizeof line, "%s %-5s %s: ", clock_iso8601_now(ts, sizeof ts),
                     level_names[level], module);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

/* The escaped form of byte c into esc; returns its length (1, 2 or 4). */
static size_t safe_byte(unsigned char c, char esc[4])
{
    static const char hex[] = "0123456789abcdef";
    if (c == '\\' || c == '"') {
        esc[0] = '\\';
        esc[1] = (char)c;
        return 2;
    }
    if (c >= 0x20 && c < 0x7f) {
        esc[0] = (char)c;
        return 1;
    }
    esc[0] = '\\';
    esc[1] = 'x';
    esc[2] = hex[c >> 4];
    esc[3] = hex[c & 15];
    return 4;
}

const char *log_safe_n(char *out, size_t cap, const char *s, size_t len)
{
    char esc[4];
    size_t total = 0;
    if (cap < 4) { /* no room for even "..." and its NUL */
        if (cap > 0)
            out[0] = '\0';
        return out;
    }
    for (size_t i = 0; i < len && total < cap; i++)
        total += safe_byte((unsigned char)s[i], esc);
    /* All of it, or as much as leaves room for "...". */
    size_t limit = total <= cap - 1 ? cap - 1 : cap - 1 - 3;
    size_t o = 0, i = 0;
    for (; i < len; i++) {
        size_t n = safe_byte((unsigned char)s[i], esc);
        if (o + n > limit)
            break;
        memcpy(out + o, esc, n);
        o += n;
    }
    if (i < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

const char *log_safe(char *out, size_t cap, const char *s)
{
    if (s == NULL)
        return log_safe_n(out, cap, "(null)", 6);
    return log_safe_n(out, cap, s, strlen(s));
}
