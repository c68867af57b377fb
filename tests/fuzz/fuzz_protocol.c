/*
 * fuzz_protocol — libFuzzer target for proto_parse_request (and the UTF-8
 * checks and trimming below it).
 *
 * Every input is parsed as one data-channel message. Beyond what the
 * sanitizers catch, the harness checks the parser's promises and aborts
 * when one is broken:
 *  - OK: a ping, or a post or whisper whose token is 1..8192 bytes and whose text is
 *    valid UTF-8 of 1..2000 code points with no NUL, no control character
 *    but tab and line feed and no bidi override or isolate; a ref of <= 128
 *    bytes;
 *    no ref_out; a whisper's "to" holds 1..20 distinct ids in 1..2^31-1,
 *    a post's none. A whisper is rebuilt with a "to" list as delivered.
 *  - an error: a non-empty reason, nothing left in the request, a ref_out
 *    (if any) of <= 128 bytes, and TOO_LARGE exactly when over 64 KiB.
 * Each result is also rebuilt into the reply chatd would send (pong,
 * message or error), which must succeed: the reason and the echoed ref go
 * back to the client inside JSON.
 *
 * Single-threaded, like libFuzzer's driver.
 */
#include "chat/protocol.h"
#include "util/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int installed;

static void check_ok(const proto_request *req)
{
    proto_message m = {.id = 1,
                       .room = "lobby",
                       .source = "manual",
                       .user_id = 1,
                       .user_name = "n",
                       .user_username = "u",
                       .ts = "2026-11-24T10:00:00.123Z"};
    char *out;
    size_t n;

    if (req->ref != NULL && strlen(req->ref) > PROTO_MAX_REF)
        abort();
    if (req->kind == PROTO_PING) {
        if (req->token != NULL || req->text != NULL)
            abort();
        out = proto_build_pong(req->ref, m.ts);
    } else {
        if (req->token == NULL || req->token[0] == '\0' || strlen(req->token) > PROTO_MAX_TOKEN)
            abort();
        n = strlen(req->text);
        if (!proto_utf8_valid(req->text, n))
            abort();
        /* The text rules: no control character but tab and line feed, no
         * bidirectional override or isolate (ASCII bytes and the UTF-8 of
         * U+0080-U+009F, U+202A-U+202E, U+2066-U+2069). */
        for (const unsigned char *c = (const unsigned char *)req->text; *c; c++) {
            if ((*c < 0x20 && *c != '\t' && *c != '\n') ||
                (c[0] == 0xC2 && c[1] >= 0x80 && c[1] <= 0x9F))
                abort();
            if (c[0] == 0xE2 && ((c[1] == 0x80 && c[2] >= 0xAA && c[2] <= 0xAE) ||
                                 (c[1] == 0x81 && c[2] >= 0xA6 && c[2] <= 0xA9)))
                abort();
        }
        n = proto_utf8_length(req->text, n);
        if (n < 1 || n > PROTO_MAX_TEXT)
            abort();
        if ((req->kind == PROTO_WHISPER) != (req->n_to > 0) || req->n_to > PROTO_MAX_RECIPIENTS)
            abort();
        json_t *to = json_array();
        for (size_t i = 0; i < req->n_to; i++) {
            if (req->to[i] < 1 || req->to[i] > INT32_MAX)
                abort();
            for (size_t j = 0; j < i; j++)
                if (req->to[j] == req->to[i])
                    abort();
            json_array_append_new(to, json_pack("{s:I,s:s,s:s}", "id", (json_int_t)req->to[i],
                                                "name", "n", "username", "u"));
        }
        m.text = req->text;
        if (req->kind == PROTO_WHISPER) {
            m.source = "whisper";
            m.to = to;
        }
        out = proto_build_message(&m, req->ref);
        json_decref(to);
    }
    if (out == NULL)
        abort();
    mem_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proto_request req;
    char err[256], *ref = NULL, *out;
    proto_status st;

    if (!installed) {
        mem_install();
        installed = 1;
    }
    st = proto_parse_request((const char *)data, size, &req, &ref, err, sizeof(err));
    if (st == PROTO_OK) {
        if (ref != NULL)
            abort();
        check_ok(&req);
    } else {
        if (err[0] == '\0' || req.ref != NULL || req.token != NULL || req.text != NULL)
            abort();
        if ((st == PROTO_TOO_LARGE) != (size > PROTO_MAX_MESSAGE))
            abort();
        if (ref != NULL && strlen(ref) > PROTO_MAX_REF)
            abort();
        out =
            proto_build_error(st == PROTO_TOO_LARGE ? "TOO_LARGE" : "BAD_REQUEST", err, -1, 0, ref);
        if (out == NULL)
            abort();
        mem_free(out);
    }
    proto_request_clear(&req);
    mem_free(ref);
    return 0;
}
