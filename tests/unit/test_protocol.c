/*
 * test_protocol — unit tests for src/chat/protocol: the exact text of every
 * message chatd sends (SPEC "Data channel", key order included), the
 * parsing of good posts and pings, every malformed input we could think of
 * (each must be BAD_REQUEST or TOO_LARGE with a short reason, never a
 * crash), the echo of a usable ref, and allocation failures injected at
 * every position of parse and of every builder (torture.h).
 *
 * Built with ASan, tests that allocate end with a leak check.
 * Criterion runs each test in its own process, so the mem fault counter
 * never leaks between tests.
 */
#include <criterion/criterion.h>

#include "chat/protocol.h"
#include "util/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torture.h"

static void setup(void) { mem_install(); }

TestSuite(protocol, .init = setup);

/* ---- helpers ------------------------------------------------------------ */

/* Parses len bytes; the request and ref are cleared before returning. */
static proto_status parse_n(const char *data, size_t len, char *err, size_t errlen, char **ref_echo)
{
    proto_request req;
    char *ref = NULL;
    proto_status st = proto_parse_request(data, len, &req, &ref, err, errlen);

    if (st != PROTO_OK)
        cr_assert(req.ref == NULL && req.token == NULL && req.text == NULL,
                  "a failed parse leaves nothing in the request");
    else
        cr_assert_null(ref, "no ref_out on success");
    proto_request_clear(&req);
    if (ref_echo != NULL)
        *ref_echo = ref;
    else
        mem_free(ref);
    return st;
}

/* The message must be refused as BAD_REQUEST, with a short reason that
 * fits in an error message, and (echo) the given ref or none. */
static void expect_bad_len(const char *data, size_t len, const char *reason_part, const char *echo)
{
    char err[256] = "x";
    char *ref = NULL, *msg;
    proto_status st = parse_n(data, len, err, sizeof(err), &ref);

    cr_assert_eq(st, PROTO_BAD_REQUEST, "expected BAD_REQUEST (%d) for %.80s", st, data);
    cr_assert(err[0] != '\0' && strlen(err) < 100, "short reason: '%s'", err);
    if (reason_part != NULL)
        cr_assert(strstr(err, reason_part) != NULL, "reason '%s' lacks '%s'", err, reason_part);
    if (echo == NULL) {
        cr_assert_null(ref, "no ref to echo, got '%s'", ref);
    } else {
        cr_assert_not_null(ref, "ref '%s' not echoed", echo);
        cr_assert_str_eq(ref, echo);
    }
    /* The reason goes back to the client: it must make a valid error. */
    msg = proto_build_error("BAD_REQUEST", err, -1, 0, ref);
    cr_assert_not_null(msg, "reason '%s' must fit into an error", err);
    mem_free(msg);
    mem_free(ref);
}

static void expect_bad(const char *data, const char *reason_part, const char *echo)
{
    expect_bad_len(data, strlen(data), reason_part, echo);
}

/* "…" repeated n times, inside a post's text, with prefix/suffix. */
static char *post_with_text(const char *unit, size_t n, const char *pre, const char *post)
{
    size_t ul = strlen(unit), cap = ul * n + strlen(pre) + strlen(post) + 64;
    char *buf = malloc(cap), *p;

    cr_assert_not_null(buf);
    p = buf + sprintf(buf, "{\"type\":\"post\",\"token\":\"a.b.c\",\"text\":\"%s", pre);
    for (size_t i = 0; i < n; i++, p += ul)
        memcpy(p, unit, ul);
    sprintf(p, "%s\"}", post);
    return buf;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);

    cr_assert_not_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ---- good input ----------------------------------------------------------- */

Test(protocol, parse_post)
{
    const char *msg = "{\"type\":\"post\",\"token\":\"h.c.s\",\"text\":\"  hello, world \\n\","
                      "\"ref\":\"r-17\"}";
    proto_request req;
    char err[128], *ref = (char *)1;

    cr_assert_eq(proto_parse_request(msg, strlen(msg), &req, &ref, err, sizeof(err)), PROTO_OK,
                 "%s", err);
    cr_assert_eq(req.kind, PROTO_POST);
    cr_assert_str_eq(req.token, "h.c.s");
    cr_assert_str_eq(req.text, "hello, world");
    cr_assert_str_eq(req.ref, "r-17");
    cr_assert_null(ref);
    proto_request_clear(&req);
    cr_assert_null(req.text);
    proto_request_clear(&req); /* twice is harmless */
    check_leaks();
}

Test(protocol, parse_post_without_ref_and_any_key_order)
{
    const char *msg = "{\"text\":\"hi\",\"extra\":{\"a\":[1,2]},\"token\":\"t\",\"type\":\"post\"}";
    proto_request req;
    char err[128];

    cr_assert_eq(proto_parse_request(msg, strlen(msg), &req, NULL, err, sizeof(err)), PROTO_OK,
                 "%s", err);
    cr_assert_eq(req.kind, PROTO_POST);
    cr_assert_null(req.ref);
    cr_assert_str_eq(req.text, "hi");
    proto_request_clear(&req);
    check_leaks();
}

Test(protocol, parse_ping)
{
    proto_request req;
    char err[128];
    const char *a = "{\"type\":\"ping\",\"ref\":\"p1\"}";
    const char *b = " {\"type\":\"ping\"}\n";

    cr_assert_eq(proto_parse_request(a, strlen(a), &req, NULL, err, sizeof(err)), PROTO_OK);
    cr_assert_eq(req.kind, PROTO_PING);
    cr_assert_str_eq(req.ref, "p1");
    cr_assert_null(req.token);
    proto_request_clear(&req);
    cr_assert_eq(proto_parse_request(b, strlen(b), &req, NULL, err, sizeof(err)), PROTO_OK);
    cr_assert_eq(req.kind, PROTO_PING);
    cr_assert_null(req.ref);
    proto_request_clear(&req);
    check_leaks();
}

Test(protocol, parse_not_nul_terminated)
{
    /* Data-channel messages are byte buffers, not C strings. */
    char buf[64];
    proto_request req;
    const char *m = "{\"type\":\"ping\",\"ref\":\"z\"}";

    memset(buf, 'X', sizeof(buf));
    memcpy(buf, m, strlen(m));
    cr_assert_eq(proto_parse_request(buf, strlen(m), &req, NULL, NULL, 0), PROTO_OK);
    cr_assert_str_eq(req.ref, "z");
    proto_request_clear(&req);
    check_leaks();
}

Test(protocol, trim_unicode_whitespace)
{
    /* Leading: space, tab, NBSP, U+2000, U+3000; trailing: LF, CR, VT, FF,
     * U+200A, U+FEFF. Inner blanks stay. */
    const char *msg = "{\"type\":\"post\",\"token\":\"t\",\"text\":"
                      "\" \\t\\u00a0\\u2000\\u3000a \\u3000 b\\n\\r\\u000b\\f\\u200a\\ufeff\"}";
    proto_request req;
    char err[128];

    cr_assert_eq(proto_parse_request(msg, strlen(msg), &req, NULL, err, sizeof(err)), PROTO_OK,
                 "%s", err);
    cr_assert_str_eq(req.text, "a \xe3\x80\x80 b");
    proto_request_clear(&req);
    /* Raw (unescaped) UTF-8 blanks too. */
    msg = "{\"type\":\"post\",\"token\":\"t\",\"text\":\"\xc2\xa0\xe2\x80\x81x\xe3\x80\x80\"}";
    cr_assert_eq(proto_parse_request(msg, strlen(msg), &req, NULL, err, sizeof(err)), PROTO_OK,
                 "%s", err);
    cr_assert_str_eq(req.text, "x");
    proto_request_clear(&req);
    /* A zero-width space is not blank: it is a one-character text. */
    msg = "{\"type\":\"post\",\"token\":\"t\",\"text\":\" \\u200b \"}";
    cr_assert_eq(proto_parse_request(msg, strlen(msg), &req, NULL, err, sizeof(err)), PROTO_OK,
                 "%s", err);
    cr_assert_str_eq(req.text, "\xe2\x80\x8b");
    proto_request_clear(&req);
    check_leaks();
}

Test(protocol, text_2000_code_points_not_bytes)
{
    const char *units[] = {"a",       "\xc3\xa9",      "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                           "\\u00e9", "\\ud83d\\ude00"};
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
        /* 2000 characters, with blanks around that do not count. */
        char *ok = post_with_text(units[u], 2000, " \\u3000", "\\u00a0\\n ");
        char *big = post_with_text(units[u], 2001, "", "");
        proto_request req;
        char err[128];

        cr_assert_eq(proto_parse_request(ok, strlen(ok), &req, NULL, err, sizeof(err)), PROTO_OK,
                     "unit %zu: %s", u, err);
        cr_assert_eq(proto_utf8_length(req.text, strlen(req.text)), 2000);
        proto_request_clear(&req);
        expect_bad(big, "2000", NULL);
        free(ok);
        free(big);
    }
    check_leaks();
}

Test(protocol, token_and_ref_limits)
{
    char *tok = repeat('t', PROTO_MAX_TOKEN), *ref = repeat('r', PROTO_MAX_REF);
    char *msg = malloc(PROTO_MAX_TOKEN + PROTO_MAX_REF + 128);
    proto_request req;
    char err[128];

    sprintf(msg, "{\"type\":\"post\",\"token\":\"%s\",\"text\":\"x\",\"ref\":\"%s\"}", tok, ref);
    cr_assert_eq(proto_parse_request(msg, strlen(msg), &req, NULL, err, sizeof(err)), PROTO_OK,
                 "%s", err);
    cr_assert_eq(strlen(req.token), PROTO_MAX_TOKEN);
    cr_assert_eq(strlen(req.ref), PROTO_MAX_REF);
    proto_request_clear(&req);
    /* One more byte of token: refused, but the good ref is echoed. */
    sprintf(msg, "{\"type\":\"post\",\"token\":\"%sX\",\"text\":\"x\",\"ref\":\"%s\"}", tok, ref);
    expect_bad(msg, "token", ref);
    free(tok);
    free(ref);
    free(msg);
    check_leaks();
}

Test(protocol, exactly_64k_is_fine)
{
    size_t len = PROTO_MAX_MESSAGE;
    char *msg = malloc(len + 1);
    const char *head = "{\"type\":\"ping\",\"ref\":\"big\",\"pad\":\"";
    proto_request req;
    char err[128];

    memset(msg, ' ', len);
    memcpy(msg, head, strlen(head));
    memcpy(msg + len - 2, "\"}", 2);
    cr_assert_eq(proto_parse_request(msg, len, &req, NULL, err, sizeof(err)), PROTO_OK, "%s", err);
    proto_request_clear(&req);
    /* One byte more, even valid JSON (a trailing blank), is too large. */
    msg[len] = ' ';
    cr_assert_eq(proto_parse_request(msg, len + 1, &req, NULL, err, sizeof(err)), PROTO_TOO_LARGE);
    cr_assert(strstr(err, "65536") != NULL, "%s", err);
    free(msg);
    check_leaks();
}

Test(protocol, too_large_checked_before_reading)
{
    proto_request req;
    char err[128];
    char *ref = (char *)1;

    /* NULL data: if the size were not checked first this would crash. */
    cr_assert_eq(proto_parse_request(NULL, PROTO_MAX_MESSAGE + 1, &req, &ref, err, sizeof(err)),
                 PROTO_TOO_LARGE);
    cr_assert_null(ref);
    cr_assert_eq(proto_parse_request(NULL, SIZE_MAX, &req, &ref, err, sizeof(err)),
                 PROTO_TOO_LARGE);
}

/* ---- malformed input ------------------------------------------------------ */

Test(protocol, not_json)
{
    expect_bad("", "empty", NULL);
    expect_bad_len(NULL, 0, "empty", NULL);
    expect_bad("hello", "JSON", NULL);
    expect_bad("{", "JSON", NULL);
    expect_bad("{\"type\":\"ping\"", "JSON", NULL);
    expect_bad("{\"type\":\"ping\",}", "JSON", NULL);
    expect_bad("{'type':'ping'}", "JSON", NULL);
    expect_bad("{\"type\":\"ping\"} {}", "after", NULL);
    expect_bad("{\"type\":\"ping\"}x", NULL, NULL);
    expect_bad_len("{\"type\":\"ping\"}\0", 16, NULL, NULL);
    expect_bad_len("{\"type\":\"pi\0g\"}", 15, NULL, NULL);
    check_leaks();
}

Test(protocol, not_an_object)
{
    expect_bad("[]", "object", NULL);
    expect_bad("[{\"type\":\"ping\"}]", "object", NULL);
    expect_bad("42", "object", NULL);
    expect_bad("-1.5e3", "object", NULL);
    expect_bad("\"ping\"", "object", NULL);
    expect_bad("null", "object", NULL);
    expect_bad("true", "object", NULL);
    check_leaks();
}

Test(protocol, type_errors)
{
    expect_bad("{}", "missing \"type\"", NULL);
    expect_bad("{\"ref\":\"a1\"}", "missing \"type\"", "a1");
    expect_bad("{\"type\":1,\"ref\":\"a2\"}", "\"type\" must be a string", "a2");
    expect_bad("{\"type\":null}", "\"type\" must be a string", NULL);
    expect_bad("{\"type\":[\"ping\"]}", "\"type\" must be a string", NULL);
    expect_bad("{\"type\":\"pong\",\"ref\":\"a3\"}", "unknown type", "a3");
    expect_bad("{\"type\":\"POST\"}", "unknown type", NULL);
    expect_bad("{\"type\":\"\"}", "unknown type", NULL);
    expect_bad("{\"type\":\"ping\\u0000\"}", "NUL", NULL);
    check_leaks();
}

Test(protocol, token_errors)
{
    expect_bad("{\"type\":\"post\",\"text\":\"hi\",\"ref\":\"b1\"}", "token", "b1");
    expect_bad("{\"type\":\"post\",\"token\":5,\"text\":\"hi\"}", "\"token\" must be a string",
               NULL);
    expect_bad("{\"type\":\"post\",\"token\":null,\"text\":\"hi\"}", "token", NULL);
    expect_bad("{\"type\":\"post\",\"token\":{},\"text\":\"hi\"}", "token", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"\",\"text\":\"hi\"}", "empty", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"a\\u0000b\",\"text\":\"hi\"}", "NUL", NULL);
    char *tok = repeat('x', PROTO_MAX_TOKEN + 1), msg[PROTO_MAX_TOKEN + 128];
    sprintf(msg, "{\"type\":\"post\",\"token\":\"%s\",\"text\":\"hi\",\"ref\":\"b2\"}", tok);
    expect_bad(msg, "longer than 8192", "b2");
    free(tok);
    check_leaks();
}

/* SPEC "Text rules (version 2)": C0 controls but tab and line feed, C1
 * controls and bidi overrides/isolates are refused wherever they stand in
 * what would be delivered (measured before: "ESC[2K ESC[1A fake line" was
 * accepted and delivered). */
Test(protocol, text_rules_refuse_controls_and_bidi)
{
    static const char *bad[] = {
        "\\u001b[2K\\u001b[1A fake line", /* the attack of issue 9 */
        "a\\u0001b",
        "a\\rb",
        "a\\u000bb",
        "a\\fb",
        "a\\u0008b",
        "a\\u001fb",
        "a\\u0080b",
        "a\\u0085b",
        "a\\u009bb",
        "a\\u009fb",
        "a\xc2\x9b"
        "b",
        "a\\u202ab",
        "a\\u202bb",
        "a\\u202cb",
        "a\\u202db",
        "a\\u202eb",
        "a\\u2066b",
        "a\\u2067b",
        "a\\u2068b",
        "a\\u2069b",
        "a\xe2\x80\xae"
        "b",
        "\\u202etxt.exe",
        "x\\u2066",
    };
    char msg[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(msg, sizeof msg,
                 "{\"type\":\"post\",\"token\":\"t\",\"text\":\"%s\",\"ref\":\"r\"}", bad[i]);
        expect_bad(msg, "U+", "r");
    }
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"a\\u001bb\"}", "U+001B", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"a\\u202eb\"}",
               "U+202E (a bidirectional", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"a\\u0085b\"}", "U+0085 (a control",
               NULL);
    check_leaks();
}

/* What the rules leave alone: tab and line feed inside, DEL (neither C0 nor
 * C1), the neighbours of the refused ranges (U+00A0, U+2029, U+202F,
 * U+2065, U+206A), marks that are not overrides (U+200E, U+200F), and
 * blanks trimmed away at the ends (a pasted line's CR). */
Test(protocol, text_rules_allow_tab_lf_and_neighbours)
{
    static const struct {
        const char *json, *text;
    } ok[] = {
        {"a\\tb\\nc", "a\tb\nc"},
        {"a\\u007fb", "a\x7f"
                      "b"},
        {"a\\u00a0b", "a\xc2\xa0"
                      "b"},
        {"a\\u2029b\\u202fc", "a\xe2\x80\xa9"
                              "b\xe2\x80\xaf"
                              "c"},
        {"a\\u2065b\\u206ac", "a\xe2\x81\xa5"
                              "b\xe2\x81\xaa"
                              "c"},
        {"a\\u200eb\\u200fc", "a\xe2\x80\x8e"
                              "b\xe2\x80\x8f"
                              "c"},
        {"hello\\r\\n", "hello"},
        {"\\u000b\\fhi\\r", "hi"},
    };
    char msg[256], err[128];
    proto_request req;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(msg, sizeof msg, "{\"type\":\"post\",\"token\":\"t\",\"text\":\"%s\"}",
                 ok[i].json);
        cr_assert_eq(proto_parse_request(msg, strlen(msg), &req, NULL, err, sizeof(err)), PROTO_OK,
                     "%s: %s", msg, err);
        cr_assert_str_eq(req.text, ok[i].text, "%s", msg);
        proto_request_clear(&req);
    }
    check_leaks();
}

Test(protocol, text_errors)
{
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"ref\":\"c1\"}", "text", "c1");
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":7}", "\"text\" must be a string", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":null}", "text", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":[\"a\"]}", "text", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"\",\"ref\":\"c2\"}", "empty", "c2");
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"   \"}", "empty", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\" \\t\\n\\r\\f\\u000b \"}", "empty",
               NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":"
               "\"\\u00a0\\u2000\\u2001\\u2005\\u200a\\u3000\\u2028\\u2029\\u202f\\u205f\"}",
               "empty", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"\xe3\x80\x80\xc2\xa0\"}", "empty",
               NULL);
    /* NUL, escaped, anywhere in the text, even at an end that trims. */
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"a\\u0000b\",\"ref\":\"c3\"}", "NUL",
               "c3");
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"hi\\u0000\"}", "NUL", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"\\u0000\"}", "NUL", NULL);
    check_leaks();
}

Test(protocol, invalid_utf8)
{
    static const char *bad[] = {
        "\xc0\xaf",                 /* overlong '/' */
        "\xc1\xbf",                 /* overlong */
        "\xe0\x80\xaf",             /* overlong, 3 bytes */
        "\xe0\x9f\xbf",             /* overlong, 3 bytes, top */
        "\xf0\x80\x80\xaf",         /* overlong, 4 bytes */
        "\xf0\x8f\xbf\xbf",         /* overlong, 4 bytes, top */
        "\xed\xa0\x80",             /* U+D800, a surrogate */
        "\xed\xbf\xbf",             /* U+DFFF */
        "\xed\xa0\xbd\xed\xb8\x80", /* surrogate pair spelled in UTF-8 (CESU) */
        "\xf4\x90\x80\x80",         /* above U+10FFFF */
        "\xf5\x80\x80\x80",
        "\xff",
        "\xfe",
        "\x80", /* stray continuation */
        "a\xbf"
        "b",
        "\xe2\x82",     /* truncated euro sign */
        "\xf0\x9f\x98", /* truncated emoji */
        "\xc3",         /* truncated é */
        "\xc3"
        "a", /* missing continuation */
        "\xe2\x28\xa1",
    };
    char msg[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(msg, sizeof(msg), "{\"type\":\"post\",\"token\":\"t\",\"text\":\"ok %s ok\"}",
                 bad[i]);
        expect_bad(msg, "UTF-8", NULL);
        cr_assert_not(proto_utf8_valid(bad[i], strlen(bad[i])), "case %zu", i);
    }
    /* Truncated at the very end of the message. */
    expect_bad_len("{\"type\":\"ping\"}\xe2\x82", 17, "UTF-8", NULL);
    /* Lone surrogates written as JSON escapes are no better. */
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"\\ud800\"}", NULL, NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"\\udc00x\"}", NULL, NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"\\ud83dx\"}", NULL, NULL);
    check_leaks();
}

Test(protocol, utf8_helpers)
{
    cr_assert(proto_utf8_valid("", 0));
    cr_assert(proto_utf8_valid(NULL, 0));
    cr_assert(proto_utf8_valid("a\0b", 3), "NUL is valid UTF-8; the parser refuses it itself");
    cr_assert(proto_utf8_valid("\xc2\x80\xdf\xbf", 4));
    cr_assert(proto_utf8_valid("\xe0\xa0\x80\xef\xbf\xbf", 6));
    cr_assert(proto_utf8_valid("\xed\x9f\xbf\xee\x80\x80", 6), "around the surrogates");
    cr_assert(proto_utf8_valid("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 8), "U+10000 and U+10FFFF");
    cr_assert_eq(proto_utf8_length("h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10), 4);
    cr_assert_eq(proto_utf8_length("", 0), 0);
}

Test(protocol, ref_errors)
{
    char *long_ref = repeat('r', PROTO_MAX_REF + 1), msg[512];

    sprintf(msg, "{\"type\":\"ping\",\"ref\":\"%s\"}", long_ref);
    expect_bad(msg, "longer than 128", NULL);
    /* 43 euro signs: 43 characters, 129 bytes. The cap is in bytes. */
    strcpy(msg, "{\"type\":\"ping\",\"ref\":\"");
    for (int i = 0; i < 43; i++)
        strcat(msg, "\xe2\x82\xac");
    strcat(msg, "\"}");
    expect_bad(msg, "longer than 128", NULL);
    expect_bad("{\"type\":\"ping\",\"ref\":5}", "\"ref\" must be a string", NULL);
    expect_bad("{\"type\":\"ping\",\"ref\":null}", "\"ref\" must be a string", NULL);
    expect_bad("{\"type\":\"ping\",\"ref\":{\"a\":1}}", "\"ref\" must be a string", NULL);
    expect_bad("{\"type\":\"ping\",\"ref\":[\"a\"]}", "\"ref\" must be a string", NULL);
    expect_bad("{\"type\":\"ping\",\"ref\":true}", "\"ref\" must be a string", NULL);
    expect_bad("{\"type\":\"ping\",\"ref\":\"a\\u0000\"}", "NUL", NULL);
    free(long_ref);
    check_leaks();
}

Test(protocol, ref_echo)
{
    /* Usable refs come back on every kind of later error... */
    expect_bad("{\"type\":\"nope\",\"ref\":\"e1\"}", NULL, "e1");
    expect_bad("{\"ref\":\"\",\"type\":\"nope\"}", NULL, "");
    expect_bad("{\"type\":\"post\",\"ref\":\"\xe2\x82\xac\\\"q\",\"token\":\"t\",\"text\":\"\"}",
               NULL, "\xe2\x82\xac\"q");
    /* ...but not when the JSON itself is broken, or is not an object. */
    expect_bad("{\"type\":\"nope\",\"ref\":\"e2\"", NULL, NULL);
    expect_bad("[\"ref\",\"e3\"]", NULL, NULL);
    check_leaks();
}

Test(protocol, duplicate_keys)
{
    expect_bad("{\"type\":\"ping\",\"type\":\"ping\"}", "duplicate", NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"a\",\"token\":\"b\",\"text\":\"x\"}", "duplicate",
               NULL);
    expect_bad("{\"type\":\"post\",\"token\":\"t\",\"text\":\"x\",\"text\":\"y\"}", "duplicate",
               NULL);
    expect_bad("{\"type\":\"ping\",\"ref\":\"a\",\"ref\":\"b\"}", "duplicate", NULL);
    expect_bad("{\"type\":\"ping\",\"x\":{\"k\":1,\"k\":2}}", "duplicate", NULL);
    check_leaks();
}

Test(protocol, deep_nesting)
{
    size_t n = 30000;
    char *msg = malloc(2 * n + 64), *p = msg;

    p += sprintf(p, "{\"type\":\"ping\",\"x\":");
    memset(p, '[', n);
    memset(p + n, ']', n);
    strcpy(p + 2 * n, "}");
    expect_bad(msg, NULL, NULL);
    free(msg);
    check_leaks();
}

/* ---- builders ------------------------------------------------------------- */

static json_t *leanne(void)
{
    json_error_t je;
    json_t *u =
        json_loads("{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\","
                   "\"email\":\"Sincere@april.biz\",\"address\":{\"street\":\"Kulas Light\","
                   "\"geo\":{\"lat\":\"-37.3159\"}},\"phone\":\"1-770-736-8031 x56442\"}",
                   0, &je);
    cr_assert_not_null(u, "%s", je.text);
    return u;
}

static void expect_text(char *got, const char *want)
{
    cr_assert_not_null(got);
    cr_assert_str_eq(got, want);
    mem_free(got);
}

Test(protocol, build_welcome)
{
    json_t *user = leanne(), *online = json_array(), *summary = proto_user_summary(user);

    json_array_append_new(online, json_incref(summary));
    json_array_append_new(online, json_pack("{s:i,s:s,s:s}", "id", 2, "name", "Ervin Howell",
                                            "username", "Antonette"));
    expect_text(proto_build_welcome("s-1", "lobby", "h.c.s", user, online, 0),
                "{\"type\":\"welcome\",\"session\":\"s-1\",\"room\":\"lobby\",\"token\":\"h.c.s\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\","
                "\"email\":\"Sincere@april.biz\",\"address\":{\"street\":\"Kulas Light\","
                "\"geo\":{\"lat\":\"-37.3159\"}},\"phone\":\"1-770-736-8031 x56442\"},"
                "\"online\":[{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"},"
                "{\"id\":2,\"name\":\"Ervin Howell\",\"username\":\"Antonette\"}],"
                "\"online_count\":2}");
    expect_text(proto_build_welcome("s", "r", "t", user, NULL, 0),
                "{\"type\":\"welcome\",\"session\":\"s\",\"room\":\"r\",\"token\":\"t\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\","
                "\"email\":\"Sincere@april.biz\",\"address\":{\"street\":\"Kulas Light\","
                "\"geo\":{\"lat\":\"-37.3159\"}},\"phone\":\"1-770-736-8031 x56442\"},"
                "\"online\":[],\"online_count\":0}");
    /* The borrowed arguments are untouched. */
    cr_assert_eq(user->refcount, 1);
    cr_assert_eq(online->refcount, 1);
    cr_assert_null(proto_build_welcome(NULL, "r", "t", user, online, 0));
    cr_assert_null(proto_build_welcome("s", "r", "t", NULL, online, 0));
    cr_assert_null(proto_build_welcome("s", "r", "t", user, summary, 0), "online must be an array");
    json_decref(summary);
    json_decref(online);
    json_decref(user);
    check_leaks();
}

Test(protocol, user_summary)
{
    json_t *user = leanne(), *s = proto_user_summary(user), *bad;
    char *text = json_dumps(s, JSON_COMPACT);

    cr_assert_str_eq(text, "{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"}");
    mem_free(text);
    json_decref(s);
    cr_assert_null(proto_user_summary(NULL));
    bad = json_pack("{s:s,s:s,s:s}", "id", "1", "name", "n", "username", "u");
    cr_assert_null(proto_user_summary(bad), "id as a string");
    json_decref(bad);
    bad = json_pack("{s:f,s:s,s:s}", "id", 1.0, "name", "n", "username", "u");
    cr_assert_null(proto_user_summary(bad), "id as a real");
    json_decref(bad);
    bad = json_pack("{s:i,s:s}", "id", 1, "username", "u");
    cr_assert_null(proto_user_summary(bad), "no name");
    json_decref(bad);
    bad = json_pack("{s:i,s:s,s:n}", "id", 1, "name", "n", "username");
    cr_assert_null(proto_user_summary(bad), "username null");
    json_decref(bad);
    bad = json_pack("[i]", 1);
    cr_assert_null(proto_user_summary(bad), "not an object");
    json_decref(bad);
    json_decref(user);
    check_leaks();
}

static proto_message auto_msg(void)
{
    return (proto_message){.id = 42,
                           .room = "lobby",
                           .source = "auto",
                           .user_id = 1,
                           .user_name = "Leanne Graham",
                           .user_username = "Bret",
                           .text = "quia et suscipit\nsuscipit",
                           .title = "sunt aut facere",
                           .post_id = 7,
                           .ts = "2026-11-24T10:00:00.123Z"};
}

Test(protocol, build_message_auto)
{
    proto_message m = auto_msg();

    expect_text(proto_build_message(&m, NULL),
                "{\"type\":\"message\",\"id\":\"42\",\"room\":\"lobby\",\"source\":\"auto\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"},"
                "\"text\":\"quia et suscipit\\nsuscipit\",\"title\":\"sunt aut facere\","
                "\"post_id\":7,\"ts\":\"2026-11-24T10:00:00.123Z\"}");
    m.id = INT64_MAX;
    m.title = NULL;
    expect_text(proto_build_message(&m, NULL),
                "{\"type\":\"message\",\"id\":\"9223372036854775807\",\"room\":\"lobby\","
                "\"source\":\"auto\",\"user\":{\"id\":1,\"name\":\"Leanne Graham\","
                "\"username\":\"Bret\"},\"text\":\"quia et suscipit\\nsuscipit\",\"title\":\"\","
                "\"post_id\":7,\"ts\":\"2026-11-24T10:00:00.123Z\"}");
    check_leaks();
}

Test(protocol, build_message_manual)
{
    proto_message m = auto_msg();

    m.id = 43;
    m.source = "manual";
    m.text = "say \"hi\" \\ caf\xc3\xa9 \xf0\x9f\x98\x80 </script>";
    /* title and post_id are ignored for a manual message */
    expect_text(proto_build_message(&m, "r-1"),
                "{\"type\":\"message\",\"id\":\"43\",\"room\":\"lobby\",\"source\":\"manual\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"},"
                "\"text\":\"say \\\"hi\\\" \\\\ caf\xc3\xa9 \xf0\x9f\x98\x80 </script>\","
                "\"ts\":\"2026-11-24T10:00:00.123Z\",\"ref\":\"r-1\"}");
    expect_text(proto_build_message(&m, NULL),
                "{\"type\":\"message\",\"id\":\"43\",\"room\":\"lobby\",\"source\":\"manual\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"},"
                "\"text\":\"say \\\"hi\\\" \\\\ caf\xc3\xa9 \xf0\x9f\x98\x80 </script>\","
                "\"ts\":\"2026-11-24T10:00:00.123Z\"}");
    check_leaks();
}

Test(protocol, build_message_bad_fields)
{
    proto_message m = auto_msg();

    cr_assert_null(proto_build_message(NULL, NULL));
    m.text = "bad \xff utf-8";
    cr_assert_null(proto_build_message(&m, NULL), "invalid UTF-8 cannot become JSON");
    m = auto_msg();
    m.ts = NULL;
    cr_assert_null(proto_build_message(&m, NULL));
    m = auto_msg();
    m.user_name = NULL;
    cr_assert_null(proto_message_object(&m, NULL));
    m = auto_msg();
    m.source = NULL;
    cr_assert_null(proto_message_object(&m, NULL));
    check_leaks();
}

Test(protocol, build_history)
{
    proto_message m = auto_msg();
    json_t *msgs = json_array();

    json_array_append_new(msgs, proto_message_object(&m, NULL));
    m.id = 43;
    m.source = "manual";
    m.text = "hi";
    json_array_append_new(msgs, proto_message_object(&m, NULL));
    expect_text(proto_build_history(msgs),
                "{\"type\":\"history\",\"messages\":["
                "{\"type\":\"message\",\"id\":\"42\",\"room\":\"lobby\",\"source\":\"auto\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"},"
                "\"text\":\"quia et suscipit\\nsuscipit\",\"title\":\"sunt aut facere\","
                "\"post_id\":7,\"ts\":\"2026-11-24T10:00:00.123Z\"},"
                "{\"type\":\"message\",\"id\":\"43\",\"room\":\"lobby\",\"source\":\"manual\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"},"
                "\"text\":\"hi\",\"ts\":\"2026-11-24T10:00:00.123Z\"}]}");
    expect_text(proto_build_history(NULL), "{\"type\":\"history\",\"messages\":[]}");
    cr_assert_eq(msgs->refcount, 1);
    json_decref(msgs);
    check_leaks();
}

/* Issue 9: no frame is dropped for its size. A room of 1,300 users gives a
 * welcome that lists the last 200 (the joiner among them) and counts all. */
Test(protocol, welcome_lists_at_most_200_and_counts_everyone)
{
    json_t *user = leanne(), *online = json_array();
    for (int i = 1; i <= 1300; i++)
        json_array_append_new(online, json_pack("{s:i,s:s,s:s}", "id", i, "name",
                                                "Clementina DuBuque the Longer", "username",
                                                "Moriah.Stanton"));
    char *text = proto_build_welcome("s", "lobby", "t", user, online, 0);
    cr_assert_not_null(text);
    cr_assert_leq(strlen(text), PROTO_MAX_MESSAGE);
    json_t *w = json_loads(text, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(w, "online")), PROTO_ONLINE_MAX);
    cr_assert_eq(json_integer_value(json_object_get(w, "online_count")), 1300);
    json_t *last = json_array_get(json_object_get(w, "online"), PROTO_ONLINE_MAX - 1);
    cr_assert_eq(json_integer_value(json_object_get(last, "id")), 1300, "the joiner is listed");
    json_decref(w);
    mem_free(text);
    /* A remote that accepts 4 KiB gets fewer names, still every count. */
    text = proto_build_welcome("s", "lobby", "t", user, online, 4096);
    cr_assert_not_null(text);
    cr_assert_leq(strlen(text), 4096);
    w = json_loads(text, 0, NULL);
    size_t listed = json_array_size(json_object_get(w, "online"));
    cr_assert(listed > 0 && listed < PROTO_ONLINE_MAX, "%zu listed", listed);
    cr_assert_eq(json_integer_value(json_object_get(w, "online_count")), 1300);
    json_decref(w);
    mem_free(text);
    /* Too small for even the token and user: the text says so by its size. */
    text = proto_build_welcome("s", "lobby", "t", user, online, 100);
    cr_assert_not_null(text);
    cr_assert_gt(strlen(text), 100);
    cr_assert_not_null(strstr(text, "\"online\":[],\"online_count\":1300"), "%s", text);
    mem_free(text);
    json_decref(online);
    json_decref(user);
    check_leaks();
}

/* n messages of `count` copies of the UTF-8 character `ch`. */
static json_t *big_history(int n, const char *ch, int count)
{
    json_t *msgs = json_array();
    size_t cl = strlen(ch);
    char *text = mem_alloc(cl * (size_t)count + 1);
    for (int i = 0; i < count; i++)
        memcpy(text + cl * (size_t)i, ch, cl);
    text[cl * (size_t)count] = '\0';
    for (int i = 0; i < n; i++) {
        proto_message m = auto_msg();
        m.id = 100 + i;
        m.source = "manual";
        m.text = text;
        json_array_append_new(msgs, proto_message_object(&m, NULL));
    }
    mem_free(text);
    return msgs;
}

static void check_history(char *text, size_t max, int n, int want_more)
{
    cr_assert_not_null(text);
    cr_assert_leq(strlen(text), max, "%zu bytes over %zu", strlen(text), max);
    json_t *h = json_loads(text, 0, NULL);
    cr_assert_not_null(h);
    json_t *msgs = json_object_get(h, "messages");
    size_t kept = json_array_size(msgs);
    if (want_more) {
        cr_assert(json_is_true(json_object_get(h, "more")), "%zu of %d kept, no more", kept, n);
        cr_assert_lt(kept, (size_t)n);
    } else {
        cr_assert_null(json_object_get(h, "more"));
        cr_assert_eq(kept, (size_t)n);
    }
    if (kept > 0) { /* the newest are the ones kept, oldest first */
        json_t *last = json_array_get(msgs, kept - 1);
        char want[16];
        snprintf(want, sizeof want, "%d", 100 + n - 1);
        cr_assert_str_eq(json_string_value(json_object_get(last, "id")), want);
    }
    json_decref(h);
    mem_free(text);
}

Test(protocol, history_keeps_the_newest_that_fit_and_says_more)
{
    /* 40 posts of 2,000 x U+00E9 (4 KB each): well over 64 KiB. */
    json_t *msgs = big_history(40, "\xc3\xa9", 2000);
    check_history(proto_build_history(msgs), PROTO_MAX_MESSAGE, 40, 1);
    check_history(proto_build_history_fit(msgs, 0, 10000), 10000, 40, 1);
    /* Too small for any message: none, and more. */
    check_history(proto_build_history_fit(msgs, 0, 1000), 1000, 40, 1);
    json_decref(msgs);
    /* Emoji (4 bytes each) and control characters (escaped to 6). */
    msgs = big_history(20, "\xf0\x9f\x98\x80", 2000);
    check_history(proto_build_history(msgs), PROTO_MAX_MESSAGE, 20, 1);
    json_decref(msgs);
    msgs = big_history(8, "\x01", 1999);
    check_history(proto_build_history(msgs), PROTO_MAX_MESSAGE, 8, 1);
    json_decref(msgs);
    /* What fits is all there, without "more"; a caller's more is kept. */
    msgs = big_history(3, "a", 2000);
    check_history(proto_build_history(msgs), PROTO_MAX_MESSAGE, 3, 0);
    char *t = proto_build_history_fit(msgs, 1, 0);
    cr_assert_not_null(strstr(t, "\"more\":true"), "%s", t);
    mem_free(t);
    json_decref(msgs);
    check_leaks();
}

Test(protocol, history_refit_for_a_smaller_remote)
{
    json_t *msgs = big_history(10, "a", 2000);
    char *full = proto_build_history(msgs);
    check_history(proto_history_refit(full, strlen(full), 8192), 8192, 10, 1);
    check_history(proto_history_refit(full, strlen(full), 0), PROTO_MAX_MESSAGE, 10, 0);
    cr_assert_null(proto_history_refit("{\"type\":\"history\"}", 18, 8192), "no messages");
    cr_assert_null(proto_history_refit("[", 1, 8192), "not JSON");
    mem_free(full);
    json_decref(msgs);
    check_leaks();
}

Test(protocol, build_presence)
{
    json_t *user = leanne(), *s = proto_user_summary(user);

    expect_text(proto_build_presence("join", s),
                "{\"type\":\"presence\",\"event\":\"join\",\"user\":{\"id\":1,"
                "\"name\":\"Leanne Graham\",\"username\":\"Bret\"}}");
    expect_text(proto_build_presence("leave", s),
                "{\"type\":\"presence\",\"event\":\"leave\",\"user\":{\"id\":1,"
                "\"name\":\"Leanne Graham\",\"username\":\"Bret\"}}");
    cr_assert_null(proto_build_presence("join", NULL));
    cr_assert_null(proto_build_presence(NULL, s));
    json_decref(s);
    json_decref(user);
    check_leaks();
}

Test(protocol, build_error)
{
    expect_text(
        proto_build_error("USER_FETCH_FAILED", "could not fetch a random user", 500, 0, NULL),
        "{\"type\":\"error\",\"code\":\"USER_FETCH_FAILED\","
        "\"message\":\"could not fetch a random user\",\"retry_in_ms\":500,"
        "\"fatal\":false}");
    expect_text(proto_build_error("USER_FETCH_FAILED", "giving up", -1, 1, NULL),
                "{\"type\":\"error\",\"code\":\"USER_FETCH_FAILED\",\"message\":\"giving up\","
                "\"fatal\":true}");
    expect_text(proto_build_error("RATE_LIMITED", "slow down", 0, 0, "r9"),
                "{\"type\":\"error\",\"code\":\"RATE_LIMITED\",\"message\":\"slow down\","
                "\"retry_in_ms\":0,\"fatal\":false,\"ref\":\"r9\"}");
    expect_text(proto_build_error("BAD_REQUEST", "\"type\" must be a string", -1, 0, ""),
                "{\"type\":\"error\",\"code\":\"BAD_REQUEST\","
                "\"message\":\"\\\"type\\\" must be a string\",\"fatal\":false,\"ref\":\"\"}");
    expect_text(proto_build_error("UNAVAILABLE", NULL, -1, 7, NULL),
                "{\"type\":\"error\",\"code\":\"UNAVAILABLE\",\"message\":\"\",\"fatal\":true}");
    cr_assert_null(proto_build_error(NULL, "m", -1, 0, NULL));
    check_leaks();
}

Test(protocol, build_pong)
{
    expect_text(proto_build_pong("p1", "2026-11-24T10:00:00.123Z"),
                "{\"type\":\"pong\",\"ref\":\"p1\",\"ts\":\"2026-11-24T10:00:00.123Z\"}");
    expect_text(proto_build_pong(NULL, "2026-11-24T10:00:00.123Z"),
                "{\"type\":\"pong\",\"ts\":\"2026-11-24T10:00:00.123Z\"}");
    cr_assert_null(proto_build_pong("p", NULL));
    check_leaks();
}

/* Whatever comes out parses back as JSON: round trip of a pong whose ref
 * came from a client, with every character class in it. */
Test(protocol, roundtrip_ref)
{
    const char *in = "{\"type\":\"ping\",\"ref\":\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\xc3\xa9\"}";
    proto_request req;
    char *out;
    json_t *j;

    cr_assert_eq(proto_parse_request(in, strlen(in), &req, NULL, NULL, 0), PROTO_OK);
    out = proto_build_pong(req.ref, "t");
    cr_assert_not_null(out);
    j = json_loads(out, 0, NULL);
    cr_assert_not_null(j, "%s", out);
    cr_assert_str_eq(json_string_value(json_object_get(j, "ref")), req.ref);
    json_decref(j);
    mem_free(out);
    proto_request_clear(&req);
    check_leaks();
}

/* ---- missing and invalid fields ---------------------------------------------- */

/* A builder never sends half a message: a required field that is missing
 * (or not valid UTF-8, which jansson refuses) makes it return NULL. */
Test(protocol, builders_refuse_missing_or_invalid_fields)
{
    proto_message m = auto_msg();
    proto_message bad;

    cr_assert_null(proto_build_message(NULL, NULL));
    const char **fields[] = {&bad.room,          &bad.source, &bad.user_name,
                             &bad.user_username, &bad.text,   &bad.ts};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        bad = m;
        *fields[i] = NULL;
        cr_assert_null(proto_build_message(&bad, NULL), "field %zu missing", i);
        bad = m;
        *fields[i] = "caf\xe9"; /* Latin-1, not UTF-8 */
        cr_assert_null(proto_build_message(&bad, NULL), "field %zu not UTF-8", i);
    }
    bad = m;
    bad.title = NULL; /* an auto post without a title says "" */
    char *out = proto_build_message(&bad, "\xff");
    cr_assert_null(out, "a ref that is not UTF-8");
    out = proto_build_message(&bad, NULL);
    cr_assert_not_null(strstr(out, "\"title\":\"\""), "%s", out);
    mem_free(out);

    json_t *user = json_pack("{s:i,s:s,s:s}", "id", 1, "name", "Leanne Graham", "username", "Bret");
    json_t *summary = proto_user_summary(user);
    json_t *list = json_array(), *obj = json_object();
    cr_assert_not_null(summary);
    cr_assert_null(proto_build_welcome(NULL, "lobby", "t", user, list, 0));
    cr_assert_null(proto_build_welcome("s", NULL, "t", user, list, 0));
    cr_assert_null(proto_build_welcome("s", "lobby", NULL, user, list, 0));
    cr_assert_null(proto_build_welcome("s", "lobby", "t", list, list, 0), "user not an object");
    cr_assert_null(proto_build_welcome("s", "lobby", "t", user, obj, 0), "online not an array");
    expect_text(proto_build_welcome("s", "lobby", "t", user, NULL, 0),
                "{\"type\":\"welcome\",\"session\":\"s\",\"room\":\"lobby\",\"token\":\"t\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"},"
                "\"online\":[],\"online_count\":0}");
    cr_assert_null(proto_build_history(obj));
    expect_text(proto_build_history(NULL), "{\"type\":\"history\",\"messages\":[]}");
    cr_assert_null(proto_build_presence(NULL, summary));
    cr_assert_null(proto_build_presence("join", NULL));
    cr_assert_null(proto_build_error(NULL, "why", -1, 0, NULL));
    expect_text(proto_build_error("X", NULL, -1, 0, NULL),
                "{\"type\":\"error\",\"code\":\"X\",\"message\":\"\",\"fatal\":false}");
    cr_assert_null(proto_build_pong("r", NULL));
    expect_text(proto_build_pong(NULL, "ts"), "{\"type\":\"pong\",\"ts\":\"ts\"}");

    json_t *odd[] = {json_pack("{s:s,s:s,s:s}", "id", "1", "name", "n", "username", "u"),
                     json_pack("{s:i,s:i,s:s}", "id", 1, "name", 5, "username", "u"),
                     json_pack("{s:i,s:s}", "id", 1, "name", "n"), json_array()};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        cr_assert_null(proto_user_summary(odd[i]), "user %zu", i);
        json_decref(odd[i]);
    }
    cr_assert_null(proto_user_summary(NULL));
    json_decref(obj);
    json_decref(list);
    json_decref(summary);
    json_decref(user);
    check_leaks();
}

Test(protocol, utf8_limits)
{
    cr_assert(proto_utf8_valid("\xf4\x8f\xbf\xbf", 4), "U+10FFFF");
    cr_assert_not(proto_utf8_valid("\xf4\x90\x80\x80", 4), "past U+10FFFF");
    cr_assert_not(proto_utf8_valid("\xf0\x8f\xbf\xbf", 4), "overlong");
    cr_assert_not(proto_utf8_valid("\xf4\x8f\xbf", 3), "cut short");
    cr_assert_not(proto_utf8_valid("\xf5\x80\x80\x80", 4));
    cr_assert_eq(proto_utf8_length(NULL, 5), 0);
    cr_assert_eq(proto_utf8_length("a\xf4\x8f\xbf\xbf"
                                   "b",
                                   6),
                 3);
}

/* ---- allocation failures ---------------------------------------------------- */

/* Each operation below runs under torture() (torture.h): allocation N
 * fails for N = 1, 2, ... until a run meets none; every run must give a
 * checked result or a clean error, and leak nothing. */

static int op_parse_post(void *ctx)
{
    (void)ctx;
    const char *m = "{\"type\":\"post\",\"token\":\"h.c.s\",\"text\":\" caf\xc3\xa9 \","
                    "\"ref\":\"r1\",\"extra\":{\"nested\":[1,2,{\"x\":null}]}}";
    proto_request req;
    char err[128] = "", *ref = NULL;
    proto_status st = proto_parse_request(m, strlen(m), &req, &ref, err, sizeof(err));

    if (st != PROTO_OK) {
        /* out of memory, or the copy of the ref failed and the message
         * cannot be checked: refused either way, with a reason */
        cr_assert(st == PROTO_NO_MEMORY || st == PROTO_BAD_REQUEST, "%d (%s)", st, err);
        cr_assert_neq(err[0], '\0');
        cr_assert(req.text == NULL && req.token == NULL && req.ref == NULL);
        mem_free(ref);
        return TORTURE_ERROR;
    }
    cr_assert_str_eq(req.text, "caf\xc3\xa9");
    cr_assert_str_eq(req.token, "h.c.s");
    cr_assert_str_eq(req.ref, "r1");
    cr_assert_null(ref);
    proto_request_clear(&req);
    return TORTURE_OK;
}

/* A refused message: BAD_REQUEST with the ref echoed, or (out of memory)
 * refused without it; never accepted. */
static int refused_with_ref(const char *m)
{
    proto_request req;
    char err[128] = "", *ref = NULL;
    proto_status st = proto_parse_request(m, strlen(m), &req, &ref, err, sizeof(err));

    cr_assert(st == PROTO_NO_MEMORY || st == PROTO_BAD_REQUEST, "%d", st);
    cr_assert_neq(err[0], '\0');
    cr_assert_null(req.text);
    int echoed = st == PROTO_BAD_REQUEST && ref != NULL && strcmp(ref, "echo-me") == 0;
    mem_free(ref);
    return echoed ? TORTURE_OK : TORTURE_ERROR;
}

static int op_parse_blank(void *ctx)
{
    (void)ctx;
    return refused_with_ref("{\"type\":\"post\",\"token\":\"t\",\"text\":\"   \","
                            "\"ref\":\"echo-me\"}");
}

static int op_parse_wrong_type(void *ctx)
{
    (void)ctx;
    return refused_with_ref("{\"type\":\"post\",\"ref\":\"echo-me\",\"text\":17}");
}

/* Compares a built message with its exact text (NULL: out of memory). */
static int built(char *got, const char *want)
{
    if (got == NULL)
        return TORTURE_ERROR;
    cr_assert_str_eq(got, want);
    mem_free(got);
    return TORTURE_OK;
}

static int op_build_all(void *ctx)
{
    (void)ctx;
    proto_message m = auto_msg();
    json_t *user = NULL, *summary = NULL, *online = NULL, *msgs = NULL, *o;
    int rc = TORTURE_ERROR;

    user = json_pack("{s:i,s:s,s:s,s:{s:s}}", "id", 1, "name", "Leanne Graham", "username", "Bret",
                     "address", "city", "Gwenborough");
    summary = user ? proto_user_summary(user) : NULL;
    online = json_array();
    msgs = json_array();
    if (summary == NULL || online == NULL || msgs == NULL ||
        json_array_append(online, summary) != 0)
        goto out;
    o = proto_message_object(&m, NULL);
    if (o == NULL || json_array_append_new(msgs, o) != 0)
        goto out;
    rc = TORTURE_OK;
    rc |= built(proto_build_welcome("s", "lobby", "tok", user, online, 0),
                "{\"type\":\"welcome\",\"session\":\"s\",\"room\":\"lobby\",\"token\":\"tok\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\","
                "\"address\":{\"city\":\"Gwenborough\"}},"
                "\"online\":[{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"}],"
                "\"online_count\":1}");
    char *h = proto_build_history(msgs);
    if (h == NULL) {
        rc = TORTURE_ERROR;
    } else {
        cr_assert_not_null(strstr(h, "{\"type\":\"history\",\"messages\":[{\"type\":"
                                     "\"message\",\"id\":\"42\""),
                           "%s", h);
        mem_free(h);
    }
    rc |= built(proto_build_presence("join", summary),
                "{\"type\":\"presence\",\"event\":\"join\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"}}");
    rc |= built(proto_build_error("BAD_REQUEST", "why", 100, 1, "r"),
                "{\"type\":\"error\",\"code\":\"BAD_REQUEST\",\"message\":\"why\","
                "\"retry_in_ms\":100,\"fatal\":true,\"ref\":\"r\"}");
    rc |= built(proto_build_pong("p", "ts"), "{\"type\":\"pong\",\"ref\":\"p\",\"ts\":\"ts\"}");
    m.source = "manual";
    m.title = NULL;
    m.post_id = 0;
    m.text = "hi";
    rc |= built(proto_build_message(&m, "r"),
                "{\"type\":\"message\",\"id\":\"42\",\"room\":\"lobby\",\"source\":\"manual\","
                "\"user\":{\"id\":1,\"name\":\"Leanne Graham\",\"username\":\"Bret\"},"
                "\"text\":\"hi\",\"ts\":\"2026-11-24T10:00:00.123Z\",\"ref\":\"r\"}");
out:
    json_decref(msgs);
    json_decref(online);
    json_decref(summary);
    json_decref(user);
    return rc ? TORTURE_ERROR : TORTURE_OK;
}

Test(protocol, out_of_memory_parse_post) { torture("parse post", op_parse_post, NULL); }
Test(protocol, out_of_memory_parse_blank) { torture("parse blank post", op_parse_blank, NULL); }
Test(protocol, out_of_memory_parse_wrong_type)
{
    torture("parse post with a number for text", op_parse_wrong_type, NULL);
}
Test(protocol, out_of_memory_builders) { torture("builders", op_build_all, NULL); }
