/*
 * reply — the parsers of JSONPlaceholder's replies (/users, /users/{id},
 * /posts) and the posts cache they build.
 *
 * Replies are untrusted: every parser checks the shape it needs (types,
 * ids in 1..INT_MAX, non-empty lists) and turns anything else into one
 * printable line in err, never a crash. The fuzz target
 * (tests/fuzz/fuzz_api_reply.c) and the unit tests drive exactly these.
 *
 * Threading: pure functions, no shared state. Ownership: each result is the
 * caller's (json_decref, jp_posts_free, jp_post_clear); jp_posts_get lends
 * a view that lives as long as its cache.
 */
#ifndef CHATD_API_REPLY_H
#define CHATD_API_REPLY_H

#include <jansson.h>
#include <stddef.h>

/* One post, caller-owned copies. */
typedef struct {
    int id;
    int user_id;
    char *title;
    char *body;
} jp_post;

/* Frees a post's strings and zeroes it. */
void jp_post_clear(jp_post *p);

/* The posts cache as parsed from /posts. */
typedef struct jp_posts jp_posts;

/* /users: a non-empty JSON array of objects, each with an integer id
 * >= 1. Returns the number of users, or -1 with err set. */
int jp_parse_users(const char *buf, size_t len, char *err, size_t errlen);

/* /users/{id}: an object with an integer id >= 1 and string name, username
 * and email. Returns a new reference (caller json_decrefs), or NULL with
 * err set. */
json_t *jp_parse_user(const char *buf, size_t len, char *err, size_t errlen);

/* /posts: a non-empty array of objects {id, userId: integers >= 1; title,
 * body: strings}. Returns a new cache (jp_posts_free), or NULL with err
 * set. */
jp_posts *jp_parse_posts(const char *buf, size_t len, char *err, size_t errlen);
int jp_posts_count(const jp_posts *p);
/* Borrowed view of post i (0 <= i < count); NULL if out of range. */
const jp_post *jp_posts_get(const jp_posts *p, int i);
void jp_posts_free(jp_posts *p);

/* Makes an error text one printable line: error texts may quote the
 * untrusted reply (jansson's "near '...'"), and they end up in logs and in
 * api_errors. */
void jp_reply_sanitize(char *s);

#endif
