/*
 * test_log — src/util/log: the line format, the level filter, and that a
 * message too long for one line is cut, never split over two (each line
 * is one write(2), so threads never interleave); the json format (issue
 * 13): every line one JSON object that jansson (a strict parser: UTF-8 and
 * escapes checked) reads back, whatever bytes the message held. Standard
 * error is redirected to a temporary file for each test.
 */
#include <criterion/criterion.h>

#include "util/log.h"
#include "util/version.h"

#include <glib.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static FILE *capture;
static int saved_stderr = -1;

static void start_capture(void)
{
    capture = tmpfile();
    cr_assert_not_null(capture);
    saved_stderr = dup(STDERR_FILENO);
    cr_assert_geq(saved_stderr, 0);
    cr_assert_geq(dup2(fileno(capture), STDERR_FILENO), 0);
}

/* Restores standard error and returns what was written (static buffer). */
static const char *end_capture(void)
{
    static char text[16384];
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    rewind(capture);
    size_t n = fread(text, 1, sizeof text - 1, capture);
    text[n] = '\0';
    fclose(capture);
    return text;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

Test(log, format_and_level_filter)
{
    start_capture();
    log_set_level(LOGL_WARN);
    log_debug("test", "not shown %d", 1);
    log_info("test", "not shown %d", 2);
    log_warn("store", "shown %d", 3);
    log_error("api", "shown %s", "too");
    log_msg(LOGL_OFF, "test", "OFF is not a level to write at");
    log_set_level(LOGL_OFF);
    log_error("api", "nothing when off");
    const char *out = end_capture();
    cr_assert_eq(count_lines(out), 2, "%s", out);
    /* "2026-11-25T04:30:00.123Z WARN  store: shown 3" */
    const char *second = strchr(out, '\n') + 1;
    cr_assert_eq(out[4], '-');
    cr_assert_eq(out[10], 'T');
    cr_assert_eq(out[19], '.');
    cr_assert_eq(out[23], 'Z');
    cr_assert_eq(strncmp(out + 24, " WARN  store: shown 3\n", 22), 0, "%s", out);
    cr_assert_eq(strncmp(second + 24, " ERROR api: shown too\n", 22), 0, "%s", second);
}

Test(log, long_message_is_cut_to_one_line)
{
    static char big[5000];
    memset(big, 'x', sizeof big - 1);
    start_capture();
    log_set_level(LOGL_DEBUG);
    log_debug("m", "%s", big);
    log_info("m", "after");
    const char *out = end_capture();
    cr_assert_eq(count_lines(out), 2, "one line each");
    size_t first = (size_t)(strchr(out, '\n') - out);
    cr_assert(first > 1000 && first < sizeof big, "cut to the line buffer: %zu", first);
    cr_assert_eq(out[first - 1], 'x');
    cr_assert_not_null(strstr(out + first, " INFO  m: after\n"));
}

Test(log, level_names)
{
    const char *names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(log_level_parse(names[i]), i, "%s", names[i]);
    cr_assert_eq(log_level_parse("DEBUG"), -1, "lower case only");
    cr_assert_eq(log_level_parse("verbose"), -1);
    cr_assert_eq(log_level_parse(""), -1);
}

/* log_safe: what a stranger sends reaches the log escaped and capped. */
Test(log, safe_escapes_and_caps_untrusted_text)
{
    char q[LOG_SAFE_LEN];
    cr_assert_str_eq(log_safe(q, sizeof q, "sha-256"), "sha-256");
    cr_assert_str_eq(log_safe(q, sizeof q, NULL), "(null)");
    cr_assert_str_eq(log_safe(q, sizeof q, ""), "");
    /* ESC[2K ESC[1A: the line-erasing trick of issue 9 item 9; a newline
     * would forge a second line. */
    cr_assert_str_eq(log_safe(q, sizeof q, "\x1b[2K\x1b[1Afake\nERROR x"),
                     "\\x1b[2K\\x1b[1Afake\\x0aERROR x");
    cr_assert_str_eq(log_safe(q, sizeof q, "a\"b\\c\x7f"), "a\\\"b\\\\c\\x7f");
    /* U+202E (right-to-left override) and é: every non-ASCII byte. */
    cr_assert_str_eq(log_safe(q, sizeof q, "\xe2\x80\xae\xc3\xa9"), "\\xe2\\x80\\xae\\xc3\\xa9");
    cr_assert_str_eq(log_safe_n(q, sizeof q, "a\0b", 3), "a\\x00b");

    /* Capped: exactly cap - 1 fits whole; one more is cut with "...",
     * never inside an escape. */
    char big[LOG_SAFE_LEN + 1];
    memset(big, 'x', sizeof big);
    big[LOG_SAFE_LEN - 1] = '\0';
    cr_assert_str_eq(log_safe(q, sizeof q, big), big);
    big[LOG_SAFE_LEN - 1] = 'x';
    big[LOG_SAFE_LEN] = '\0';
    log_safe(q, sizeof q, big);
    cr_assert_eq(strlen(q), LOG_SAFE_LEN - 1);
    cr_assert_str_eq(q + strlen(q) - 3, "...");
    char ctl[100];
    memset(ctl, 1, sizeof ctl - 1);
    ctl[sizeof ctl - 1] = '\0';
    char small[16];
    log_safe(small, sizeof small, ctl);
    cr_assert_str_eq(small, "\\x01\\x01\\x01...", "whole escapes only");
}

/* Buffers too small for "..." and its NUL get an empty string, never a
 * write past their end (cap - 4 used to wrap around below 4). */
Test(log, safe_with_tiny_buffers)
{
    char buf[8];
    for (size_t cap = 1; cap < 4; cap++) {
        memset(buf, 'z', sizeof buf);
        cr_assert_str_eq(log_safe(buf, cap, "\x1b[2J hello"), "");
        for (size_t i = 1; i < sizeof buf; i++)
            cr_assert_eq(buf[i], 'z', "byte %zu written with cap %zu", i, cap);
    }
    cr_assert_str_eq(log_safe(buf, 4, "hello"), "...");
    cr_assert_str_eq(log_safe(buf, 6, "hello"), "hello");
}

/* Each line of out parsed as one JSON object with exactly ts, level,
 * module and msg, all strings; returns how many lines there were. Up to
 * max objects are kept in objs (the caller decrefs them). */
static int parse_json_lines(const char *out, json_t **objs, int max)
{
    int n = 0;
    const char *line = out;
    while (*line) {
        const char *nl = strchr(line, '\n');
        cr_assert_not_null(nl, "a line without its newline: %s", line);
        json_error_t e;
        json_t *o = json_loadb(line, (size_t)(nl - line), JSON_REJECT_DUPLICATES, &e);
        cr_assert_not_null(o, "not JSON (%s at %d): %.*s", e.text, e.position, (int)(nl - line),
                           line);
        cr_assert(json_is_object(o));
        cr_assert_eq(json_object_size(o), 4, "%.*s", (int)(nl - line), line);
        const char *keys[] = {"ts", "level", "module", "msg"};
        for (int k = 0; k < 4; k++)
            cr_assert(json_is_string(json_object_get(o, keys[k])), "%s in %.*s", keys[k],
                      (int)(nl - line), line);
        if (n < max)
            objs[n] = o;
        else
            json_decref(o);
        n++;
        line = nl + 1;
    }
    return n;
}

static const char *field(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

Test(log, json_format_lines)
{
    cr_assert_eq(log_format_parse("json"), LOG_FORMAT_JSON);
    cr_assert_eq(log_format_parse("text"), LOG_FORMAT_TEXT);
    cr_assert_eq(log_format_parse("JSON"), -1);
    cr_assert_eq(log_format_parse(""), -1);
    start_capture();
    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOGL_INFO);
    log_debug("test", "filtered %d", 1);
    log_info("chat", "session %s created for %s", "abc", "127.0.0.1:5000");
    log_warn("store", "quote \" backslash \\ newline\n tab\t");
    log_error("api", "%s", "");
    log_set_format(LOG_FORMAT_TEXT);
    log_info("text", "back to text");
    const char *out = end_capture();
    const char *text = strstr(out, "INFO  text: back to text\n");
    cr_assert_not_null(text, "%s", out);
    char json_part[4096];
    snprintf(json_part, sizeof json_part, "%.*s", (int)(text - 25 - out), out);
    json_t *o[3];
    cr_assert_eq(parse_json_lines(json_part, o, 3), 3, "%s", out);
    /* "2026-11-25T04:30:00.123Z" as the text line has it */
    cr_assert_eq(strlen(field(o[0], "ts")), 24);
    cr_assert_eq(field(o[0], "ts")[10], 'T');
    cr_assert_eq(field(o[0], "ts")[23], 'Z');
    cr_assert_str_eq(field(o[0], "level"), "info");
    cr_assert_str_eq(field(o[0], "module"), "chat");
    cr_assert_str_eq(field(o[0], "msg"), "session abc created for 127.0.0.1:5000");
    cr_assert_str_eq(field(o[1], "level"), "warn");
    cr_assert_str_eq(field(o[1], "msg"), "quote \" backslash \\ newline\n tab\t");
    cr_assert_str_eq(field(o[2], "level"), "error");
    cr_assert_str_eq(field(o[2], "msg"), "");
    /* the key order of the line, for people reading it too */
    cr_assert_eq(strncmp(json_part, "{\"ts\":\"", 7), 0, "%s", json_part);
    cr_assert_not_null(strstr(json_part, "\",\"level\":\"info\",\"module\":\"chat\",\"msg\":\""));
    for (int i = 0; i < 3; i++)
        json_decref(o[i]);
}

/* The escapes, one case at a time: what JSON requires, what a terminal
 * or a JavaScript reader would trip on, and U+FFFD for each maximal part
 * of a byte sequence that is not UTF-8. */
Test(log, json_escape_cases)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
#define C(in, out) {in, sizeof in - 1, out}
        C("plain", "plain"),
        C("a\"b\\c/", "a\\\"b\\\\c/"),
        C("\n\r\t", "\\n\\r\\t"),
        C("\x01\x1b[2J\x1f\x7f", "\\u0001\\u001b[2J\\u001f\\u007f"),
        C("nul\0here", "nul\\u0000here"),
        C("\xc2\x85\xc2\x9b", "\\u0085\\u009b"),         /* C1: NEL, CSI */
        C("\xe2\x80\xa8\xe2\x80\xa9", "\\u2028\\u2029"), /* line/paragraph sep. */
        C("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
        C("\xe2\x80\xae", "\xe2\x80\xae"),         /* valid: kept */
        C("\xef\xbf\xbd", "\xef\xbf\xbd"),         /* U+FFFD itself */
        C("\x80", "\xef\xbf\xbd"),                 /* stray continuation */
        C("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"), /* overlong / */
        C("\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"),
        C("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"), /* a surrogate */
        C("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"),
        C("\xf5\xfe\xff", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"),
        C("\xe2\x82x", "\xef\xbf\xbdx"), /* cut: one U+FFFD, then the x */
        C("end\xf0\x9f\x98", "end\xef\xbf\xbd"),
#undef C
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = log_json_escape(out, sizeof out, cases[i].in, cases[i].len);
        cr_assert_str_eq(out, cases[i].out, "case %zu", i);
        cr_assert_eq(n, strlen(out), "case %zu", i);
    }
    /* cut at whole characters and escapes, with "..." */
    cr_assert_eq(log_json_escape(out, 8, "abcdefg", 7), 7);
    cr_assert_str_eq(out, "abcdefg");
    log_json_escape(out, 8, "abcdefgh", 8);
    cr_assert_str_eq(out, "abcd...");
    log_json_escape(out, 12, "\x01\x02", 2);
    cr_assert_str_eq(out, "\\u0001...");
    log_json_escape(out, 9, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 9);
    cr_assert_str_eq(out, "\xe2\x82\xac...");
    memset(out, 'z', 8);
    cr_assert_eq(log_json_escape(out, 3, "abc", 3), 0);
    cr_assert_str_eq(out, "");
    cr_assert_eq(out[1], 'z', "nothing past the NUL");
}

/* A nasty message: every byte value, bad UTF-8 of every kind, quotes and
 * the line-forging tricks, in a line too long to fit; then thousands of
 * random byte strings through log_json_escape with random caps. Every
 * line and every string must parse. */
Test(log, json_never_invalid)
{
    char nasty[3000];
    size_t n = 0;
    for (int b = 0; b < 256; b++)
        nasty[n++] = (char)b;
    const char *tricks = "\"}\n{\"ts\":\"forged\",\"level\":\"error\"}\\\xed\xa0\x80\xc0\x80\xe2";
    memcpy(nasty + n, tricks, strlen(tricks));
    n += strlen(tricks);
    while (n < sizeof nasty - 1) {
        nasty[n] = (char)(n % 7 == 0 ? 0x01 : n % 5 == 0 ? 0xe2 : n % 3 == 0 ? '"' : 0x9b);
        n++;
    }
    nasty[n] = '\0';
    start_capture();
    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOGL_DEBUG);
    log_info("nasty", "%s", nasty + 1); /* from byte 1: %s stops at a NUL */
    log_info("mod\"ule\n", "%.*s", 100, nasty + 1);
    log_debug("short", "\xff");
    /* a multibyte character cut by the message buffer's end */
    char cut[2100];
    memset(cut, 'a', sizeof cut);
    memcpy(cut + 2045, "\xf0\x9f\x98\x80", 4);
    cut[sizeof cut - 1] = '\0';
    log_warn("cut", "%s", cut);
    const char *out = end_capture();
    json_t *o[4];
    cr_assert_eq(parse_json_lines(out, o, 4), 4, "%s", out);
    cr_assert_str_eq(field(o[1], "module"), "mod\"ule\n");
    const char *m0 = field(o[0], "msg");
    cr_assert(strlen(m0) > 1000, "cut, not emptied: %zu", strlen(m0));
    cr_assert_str_eq(m0 + strlen(m0) - 3, "...");
    cr_assert_str_eq(field(o[2], "msg"), "\xef\xbf\xbd");
    /* 2045 'a', then the two bytes of the emoji that fit: one U+FFFD */
    const char *m3 = field(o[3], "msg");
    cr_assert_eq(strlen(m3), 2048, "%zu", strlen(m3));
    cr_assert_str_eq(m3 + 2045, "\xef\xbf\xbd", "cut, the broken character replaced");
    for (int i = 0; i < 4; i++)
        json_decref(o[i]);

    uint64_t x = 0x9e3779b97f4a7c15u;
    char in[64], esc[200], quoted[210];
    for (int round = 0; round < 20000; round++) {
        size_t len = 0, cap;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        len = x % sizeof in;
        cap = 4 + (x >> 8) % (sizeof esc - 4);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* weighted toward the bytes that make UTF-8 and JSON hard */
            static const unsigned char hard[] = {0x00, 0x1f, '"',  '\\', 0x7f, 0x80, 0xbf, 0xc2,
                                                 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
            in[i] = (char)(x & 1 ? hard[(x >> 1) % sizeof hard] : (x >> 8) & 0xff);
        }
        size_t w = log_json_escape(esc, cap, in, len);
        cr_assert_lt(w, cap);
        cr_assert_eq(strlen(esc), w);
        snprintf(quoted, sizeof quoted, "[\"%s\"]", esc);
        json_error_t e;
        json_t *j = json_loads(quoted, JSON_ALLOW_NUL, &e); /* \u0000 is JSON */
        cr_assert_not_null(j, "round %d: %s: %s", round, e.text, quoted);
        json_decref(j);
    }
}

/* --log-format json: GLib's own messages (libnice's) become JSON lines. */
Test(log, json_routes_glib)
{
    start_capture();
    log_set_format(LOG_FORMAT_JSON);
    log_set_level(LOGL_INFO);
    log_route_glib();
    g_log("libnice", G_LOG_LEVEL_WARNING, "socket %d: \"odd\"\n", 7);
    g_log("libnice", G_LOG_LEVEL_MESSAGE, "a message");
    g_log("libnice", G_LOG_LEVEL_DEBUG, "below the level");
    const char *out = end_capture();
    json_t *o[2];
    cr_assert_eq(parse_json_lines(out, o, 2), 2, "%s", out);
    cr_assert_str_eq(field(o[0], "module"), "libnice");
    cr_assert_str_eq(field(o[0], "level"), "warn");
    cr_assert_str_eq(field(o[0], "msg"), "socket 7: \"odd\"\n");
    cr_assert_str_eq(field(o[1], "level"), "info");
    for (int i = 0; i < 2; i++)
        json_decref(o[i]);
}

/* The version (VERSION, through the Makefile): what --version, /api/health
 * and chatd_build_info print unescaped, so only these characters. */
Test(log, version_needs_no_escaping)
{
    size_t n = strlen(chatd_version);
    cr_assert(n >= 1 && n <= 64, "%s", chatd_version);
    cr_assert_eq(strspn(chatd_version, "0123456789abcdefghijklmnopqrstuvwxyz"
                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ.+~-"),
                 n, "%s", chatd_version);
}
