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
