/*
 * test_log — src/util/log: the line format, the level filter, and that a
 * message too long for one line is cut, never split over two (each line
 * is one write(2), so threads never interleave). Standard error is
 * redirected to a temporary file for each test.
 */
#include <criterion/criterion.h>

#include "util/log.h"

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
