/*
 * log — see log.h. Formats into a stack buffer and writes it in one call,
 * which keeps lines whole across threads without a lock.
 */
#include "util/log.h"

#include "util/clock.h"

#include <glib.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic int current_level = LOGL_INFO;
static _Atomic int current_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
/* The json format's levels: the --log-level names. */
static const char *const level_keys[] = {"debug", "info", "warn", "error", "off"};

void log_set_level(log_level level) { atomic_store(&current_level, (int)level); }

int log_level_parse(const char *name)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(name, level_keys[i]) == 0)
            return i;
    return -1;
}

void log_set_format(log_format format) { atomic_store(&current_format, (int)format); }

int log_format_parse(const char *name)
{
    if (strcmp(name, "text") == 0)
        return LOG_FORMAT_TEXT;
    if (strcmp(name, "json") == 0)
        return LOG_FORMAT_JSON;
    return -1;
}

/* One JSON object on one line: the message is formatted first, then
 * escaped into the line (a message of control characters grows up to six
 * times, so the line has room for twice the text format's). */
static void json_line(log_level level, const char *module, const char *fmt, va_list ap)
{
    char msg[2048];
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t mlen = m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1;
    char line[4096];
    char ts[CLOCK_ISO8601_LEN];
    int n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"",
                     clock_iso8601_now(ts, sizeof ts), level_keys[level]);
    size_t len = (size_t)n;
    len += log_json_escape(line + len, 64, module, strlen(module));
    memcpy(line + len, "\",\"msg\":\"", 9);
    len += 9;
    /* room for the closing quote, brace and newline */
    len += log_json_escape(line + len, sizeof line - len - 3, msg, mlen);
    memcpy(line + len, "\"}\n", 3);
    len += 3;
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void log_msg(log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level < atomic_load(&current_level) || level >= LOGL_OFF)
        return;
    if (atomic_load(&current_format) == LOG_FORMAT_JSON) {
        va_list ap;
        va_start(ap, fmt);
        json_line(level, module, fmt, ap);
        va_end(ap);
        return;
    }
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

/* Decodes the UTF-8 character at s (n > 0 bytes left) into *cp and returns
 * its length; a byte sequence that is not UTF-8 gives U+FFFD and the length
 * of its maximal bad part (the lead byte and the continuation bytes that
 * were right so far), so decoding resumes at the byte that broke it. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range */
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        v = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        v = c & 0x07;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* beyond U+10FFFF */
    } else {           /* a continuation byte, C0, C1 (overlong) or F5-FF */
        *cp = 0xfffd;
        return 1;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *cp = 0xfffd;
            return i;
        }
        v = (v << 6) | (s[i] & 0x3f);
        lo = 0x80;
        hi = 0xbf;
    }
    *cp = v;
    return need + 1;
}

/* Code point cp as it goes inside a JSON string; returns its length. */
static size_t json_char(uint32_t cp, char esc[8])
{
    static const char hex[] = "0123456789abcdef";
    switch (cp) {
    case '"':
    case '\\':
        esc[0] = '\\';
        esc[1] = (char)cp;
        return 2;
    case '\n':
        memcpy(esc, "\\n", 2);
        return 2;
    case '\r':
        memcpy(esc, "\\r", 2);
        return 2;
    case '\t':
        memcpy(esc, "\\t", 2);
        return 2;
    default:
        break;
    }
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
        memcpy(esc, "\\u", 2);
        for (int i = 0; i < 4; i++)
            esc[2 + i] = hex[(cp >> (12 - 4 * i)) & 15];
        return 6;
    }
    if (cp < 0x80) {
        esc[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        esc[0] = (char)(0xc0 | (cp >> 6));
        esc[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        esc[0] = (char)(0xe0 | (cp >> 12));
        esc[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        esc[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    esc[0] = (char)(0xf0 | (cp >> 18));
    esc[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    esc[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    esc[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t log_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    if (cap < 4) { /* no room for even "..." and its NUL */
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i = 0;
    size_t cut = 0; /* the last boundary that leaves room for "..." */
    char esc[8];
    while (i < len) {
        uint32_t cp;
        size_t used = utf8_next(u + i, len - i, &cp);
        size_t n = json_char(cp, esc);
        if (o + n > cap - 1) {
            memcpy(out + cut, "...", 3);
            out[cut + 3] = '\0';
            return cut + 3;
        }
        memcpy(out + o, esc, n);
        o += n;
        i += used;
        if (o <= cap - 4)
            cut = o;
    }
    out[o] = '\0';
    return o;
}

static GLogWriterOutput glib_writer(GLogLevelFlags flags, const GLogField *fields, gsize n,
                                    gpointer data)
{
    (void)data;
    const char *domain = "glib", *message = "";
    int message_len = 0;
    for (gsize i = 0; i < n; i++) {
        if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0 && fields[i].length < 0)
            domain = fields[i].value;
        else if (strcmp(fields[i].key, "MESSAGE") == 0) {
            message = fields[i].value;
            message_len = fields[i].length < 0 ? (int)strlen(message) : (int)fields[i].length;
        }
    }
    log_level level = flags & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL) ? LOGL_ERROR
                      : flags & G_LOG_LEVEL_WARNING                      ? LOGL_WARN
                      : flags & G_LOG_LEVEL_MESSAGE                      ? LOGL_INFO
                                                                         : LOGL_DEBUG;
    log_msg(level, domain, "%.*s", message_len, message);
    return G_LOG_WRITER_HANDLED;
}

void log_route_glib(void)
{
    static int routed;
    if (!routed && atomic_load(&current_format) == LOG_FORMAT_JSON) {
        routed = 1;
        g_log_set_writer_func(glib_writer, NULL, NULL);
    }
}
