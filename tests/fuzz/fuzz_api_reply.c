/*
 * fuzz_api_reply — libFuzzer target for the JSONPlaceholder reply parsers.
 *
 * Replies from the API are untrusted. Every input goes through all three
 * validators (/users, /users/{id}, /posts), as any of them may receive any
 * body. They must return a clean error or a well-formed result: no crash,
 * no leak, no undefined behaviour, and a success must honour the contract
 * the rest of chatd relies on (checked below, abort() otherwise).
 *
 * Seed corpus: tests/fuzz/corpus/api_reply/ (real replies saved from the
 * local jsonplaceholder server, plus broken ones).
 */
#include "api/jsonplaceholder.h"
#include "util/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int installed;
    if (!installed) {
        mem_install();
        installed = 1;
    }
    const char *buf = (const char *)data;
    char err[256];

    int n = jp_parse_users(buf, size, err, sizeof err);
    if (n == 0 || n < -1)
        abort();
    if (n < 0 && memchr(err, '\0', sizeof err) == NULL)
        abort();

    json_t *u = jp_parse_user(buf, size, err, sizeof err);
    if (u != NULL) {
        json_t *id = json_object_get(u, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 1 ||
            !json_is_string(json_object_get(u, "name")) ||
            !json_is_string(json_object_get(u, "username")) ||
            !json_is_string(json_object_get(u, "email")))
            abort();
        json_decref(u);
    }

    jp_posts *p = jp_parse_posts(buf, size, err, sizeof err);
    if (p != NULL) {
        int count = jp_posts_count(p);
        if (count < 1)
            abort();
        for (int i = 0; i < count; i++) {
            const jp_post *post = jp_posts_get(p, i);
            if (post == NULL || post->id < 1 || post->user_id < 1 || post->title == NULL ||
                post->body == NULL)
                abort();
        }
        if (jp_posts_get(p, count) != NULL)
            abort();
        jp_posts_free(p);
    }
    return 0;
}
