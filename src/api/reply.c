/*
 * reply — see reply.h.
 */
#include "api/reply.h"

#include "util/err.h"
#include "util/mem.h"

#include <limits.h>
#include <string.h>

struct jp_posts {
    int count;
    jp_post *items;
};

void jp_reply_sanitize(char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch >= 0x7f)
            *s = '?';
    }
}

static json_t *load_json(const char *buf, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    if (buf == NULL) {
        err_set(err, errlen, "empty reply");
        return NULL;
    }
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        err_set(err, errlen, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                jerr.text);
        jp_reply_sanitize(err);
    }
    return root;
}

/* Integer member in 1..INT_MAX; ids are positive and we keep them as int. */
static int get_id(const json_t *obj, const char *key, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return -1;
    json_int_t n = json_integer_value(v);
    if (n < 1 || n > INT_MAX)
        return -1;
    *out = (int)n;
    return 0;
}

int jp_parse_users(const char *buf, size_t len, char *err, size_t errlen)
{
    json_t *root = load_json(buf, len, err, errlen);
    if (root == NULL)
        return -1;
    int result = -1;
    if (!json_is_array(root)) {
        err_set(err, errlen, "users: expected an array");
    } else if (json_array_size(root) == 0) {
        err_set(err, errlen, "users: empty array");
    } else if (json_array_size(root) > INT_MAX) {
        err_set(err, errlen, "users: too many");
    } else {
        size_t i;
        json_t *u;
        result = (int)json_array_size(root);
        json_array_foreach(root, i, u)
        {
            int id;
            if (!json_is_object(u) || get_id(u, "id", &id) != 0) {
                err_set(err, errlen, "users[%zu]: expected an object with an integer id >= 1", i);
                result = -1;
                break;
            }
        }
    }
    json_decref(root);
    return result;
}

json_t *jp_parse_user(const char *buf, size_t len, char *err, size_t errlen)
{
    json_t *root = load_json(buf, len, err, errlen);
    if (root == NULL)
        return NULL;
    int id;
    const char *bad = NULL;
    if (!json_is_object(root))
        bad = "expected an object";
    else if (get_id(root, "id", &id) != 0)
        bad = "expected an integer id >= 1";
    else if (!json_is_string(json_object_get(root, "name")))
        bad = "expected a string name";
    else if (!json_is_string(json_object_get(root, "username")))
        bad = "expected a string username";
    else if (!json_is_string(json_object_get(root, "email")))
        bad = "expected a string email";
    if (bad != NULL) {
        err_set(err, errlen, "user: %s", bad);
        json_decref(root);
        return NULL;
    }
    return root;
}

void jp_posts_free(jp_posts *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->count; i++)
        jp_post_clear(&p->items[i]);
    mem_free(p->items);
    mem_free(p);
}

jp_posts *jp_parse_posts(const char *buf, size_t len, char *err, size_t errlen)
{
    json_t *root = load_json(buf, len, err, errlen);
    if (root == NULL)
        return NULL;
    jp_posts *p = NULL;
    size_t n = json_is_array(root) ? json_array_size(root) : 0;
    if (!json_is_array(root)) {
        err_set(err, errlen, "posts: expected an array");
        goto fail;
    }
    if (n == 0 || n > INT_MAX) {
        err_set(err, errlen, "posts: %s", n == 0 ? "empty array" : "too many");
        goto fail;
    }
    p = mem_calloc(1, sizeof *p);
    if (p == NULL || (p->items = mem_calloc(n, sizeof *p->items)) == NULL) {
        err_set(err, errlen, "posts: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(root, i);
        jp_post *dst = &p->items[i];
        json_t *title = json_object_get(o, "title");
        json_t *body = json_object_get(o, "body");
        if (!json_is_object(o) || get_id(o, "id", &dst->id) != 0 ||
            get_id(o, "userId", &dst->user_id) != 0 || !json_is_string(title) ||
            !json_is_string(body)) {
            err_set(err, errlen,
                    "posts[%zu]: expected {id, userId: integers >= 1, title, body: strings}", i);
            goto fail;
        }
        /* Counted as soon as it may own strings, so jp_posts_free sees it. */
        p->count = (int)i + 1;
        dst->title = mem_strdup(json_string_value(title));
        dst->body = mem_strdup(json_string_value(body));
        if (dst->title == NULL || dst->body == NULL) {
            err_set(err, errlen, "posts: out of memory");
            goto fail;
        }
    }
    json_decref(root);
    return p;
fail:
    jp_posts_free(p);
    json_decref(root);
    return NULL;
}

int jp_posts_count(const jp_posts *p) { return p == NULL ? 0 : p->count; }

const jp_post *jp_posts_get(const jp_posts *p, int i)
{
    if (p == NULL || i < 0 || i >= p->count)
        return NULL;
    return &p->items[i];
}

void jp_post_clear(jp_post *p)
{
    if (p == NULL)
        return;
    mem_free(p->title);
    mem_free(p->body);
    memset(p, 0, sizeof *p);
}

/* ---- the client thread -------------------------------------------------- */
