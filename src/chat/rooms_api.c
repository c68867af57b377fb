/*
 * rooms_api — the HTTP side of rooms people can run (version 2): list,
 * create, edit, delete, kick, announce (docs/PROTOCOL.md section 10).
 *
 * Every route checks, in order: the room name, the JSON body (an object of
 * known fields of the right types, at most 64 KiB: http/server's cap), that
 * the room exists, then who asks (owner secret or admin key). Nothing
 * changes before all of them pass. Secrets and pins are checked through
 * auth/secret.h: slow hashes, at most two at once; a request that cannot
 * get a turn is told 503 with Retry-After, never queued without bound.
 *
 * Threading: HTTP threads. The registry and the rooms take their own
 * locks for no I/O; a secret is checked with no lock held, and the
 * registry's generations make sure the change applies to the room that
 * was checked.
 */
#include "chat/rooms_api.h"
#include "auth/secret.h"
#include "auth/token.h"
#include "chat/protocol.h"
#include "chat/service_int.h"
#include "util/clock.h"
#include "util/json_text.h"
#include "util/log.h"
#include "util/mem.h"

#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------- the body ---------- */

/* The request's JSON object, every key of it in `allowed` (a
 * NULL-terminated list); NULL after answering 400. An empty body is {}. */
static json_t *body_object(const http_request *req, http_reply *r, const char *const *allowed)
{
    json_error_t je;
    json_t *o = req->body_len == 0
                    ? json_object()
                    : json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        http_reply_error(r, 400, "BAD_REQUEST", "the body must be a JSON object");
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        int known = 0;
        for (size_t i = 0; allowed[i] && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known) {
            char msg[160];
            char safe[LOG_SAFE_LEN];
            snprintf(msg, sizeof msg, "unknown field \"%s\"", log_safe(safe, 48, key));
            json_decref(o);
            http_reply_error(r, 400, "BAD_REQUEST", msg);
            return NULL;
        }
    }
    return o;
}

/* An optional string field of 1..max bytes: 1 present (*out), 0 absent or
 * null, -1 after answering 400. */
static int opt_string(json_t *o, const char *key, size_t max, const char **out, http_reply *r)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    char msg[128];
    if (!json_is_string(v)) {
        snprintf(msg, sizeof msg, "\"%s\" must be a string", key);
    } else if (json_string_length(v) == 0 || json_string_length(v) > max) {
        snprintf(msg, sizeof msg, "\"%s\" must be 1 to %zu bytes", key, max);
    } else if (memchr(json_string_value(v), '\0', json_string_length(v))) {
        snprintf(msg, sizeof msg, "\"%s\" must not contain a NUL character", key);
    } else {
        *out = json_string_value(v);
        return 1;
    }
    http_reply_error(r, 400, "BAD_REQUEST", msg);
    return -1;
}

/* An optional boolean: 1 true, 0 false or absent (*given set), -1 after
 * answering 400. */
static int opt_bool(json_t *o, const char *key, int *given, http_reply *r)
{
    json_t *v = json_object_get(o, key);
    *given = v != NULL;
    if (v == NULL)
        return 0;
    if (!json_is_boolean(v)) {
        char msg[96];
        snprintf(msg, sizeof msg, "\"%s\" must be true or false", key);
        http_reply_error(r, 400, "BAD_REQUEST", msg);
        return -1;
    }
    return json_is_true(v);
}

/* A text field under the text rules of a post (max_chars), into out
 * (cap bytes). 1 present, 0 absent, -1 after answering 400. */
static int opt_text(json_t *o, const char *key, size_t max_chars, char *out, size_t cap,
                    http_reply *r)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        char msg[96];
        snprintf(msg, sizeof msg, "\"%s\" must be a string", key);
        http_reply_error(r, 400, "BAD_REQUEST", msg);
        return -1;
    }
    char *text = NULL, err[256];
    proto_status st = proto_check_text(json_string_value(v), json_string_length(v), max_chars,
                                       &text, err, sizeof err);
    if (st != PROTO_OK || strlen(text) >= cap) {
        mem_free(text);
        if (st == PROTO_NO_MEMORY)
            http_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        else
            http_reply_error(r, 400, "BAD_REQUEST", st == PROTO_OK ? "text too long" : err);
        return -1;
    }
    snprintf(out, cap, "%s", text);
    mem_free(text);
    return 1;
}

/* ---------- who asks ---------- */

/* --admin-key is set. */
static int has_admin_key(const chat_service *svc)
{
    return svc->cfg.admin_key != NULL && svc->cfg.admin_key[0] != '\0';
}

/* The admin key given in the body against --admin-key, in constant time
 * (the lengths are compared too, after a full-length compare). */
static int admin_key_matches(const chat_service *svc, const char *given)
{
    const char *key = svc->cfg.admin_key;
    if (!has_admin_key(svc) || given == NULL)
        return 0;
    size_t kl = strlen(key), gl = strlen(given);
    /* compare over the key's length whatever is given (a short given key
     * is compared against itself padded, and then fails on length) */
    char padded[AUTH_SECRET_MAX + 1] = {0};
    memcpy(padded, given, gl < AUTH_SECRET_MAX ? gl : AUTH_SECRET_MAX);
    int same = kl <= AUTH_SECRET_MAX && CRYPTO_memcmp(padded, key, kl) == 0;
    return same && kl == gl;
}

/* A slow-hash check's result as an answer: 1 matched; 0 after answering
 * 403 (mismatch) or 503 (busy). */
static int secret_answer(int result, const char *what, http_reply *r)
{
    if (result == AUTH_SECRET_MATCH)
        return 1;
    if (result == AUTH_SECRET_BUSY) {
        http_reply_error(r, 503, "UNAVAILABLE", "too many secret checks at once; try again");
        r->retry_after = 1;
        return 0;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "wrong %s", what);
    http_reply_error(r, 403, "FORBIDDEN", msg);
    return 0;
}

/* The room's owner or the admin: "admin_key" when given (and then only
 * it), else "secret" against the room's secret. 1 to go on, 0 after
 * answering 403/503. *admin says which. */
static int owner_check(chat_service *svc, const chat_room_def *def, json_t *body, int *admin,
                       http_reply *r)
{
    const char *key = NULL, *secret = NULL;
    *admin = 0;
    if (opt_string(body, "admin_key", AUTH_SECRET_MAX, &key, r) < 0 ||
        opt_string(body, "secret", AUTH_SECRET_MAX, &secret, r) < 0)
        return 0;
    if (key) {
        if (!admin_key_matches(svc, key)) {
            http_reply_error(r, 403, "FORBIDDEN", "wrong admin key");
            return 0;
        }
        *admin = 1;
        return 1;
    }
    if (secret == NULL) {
        http_reply_error(r, 403, "FORBIDDEN", "give the room's \"secret\" (or \"admin_key\")");
        return 0;
    }
    if (def->secret_hash[0] == '\0') {
        http_reply_error(r, 403, "FORBIDDEN",
                         "this room has no owner secret: only the admin key manages it");
        return 0;
    }
    return secret_answer(auth_secret_verify(secret, def->secret_hash), "secret", r);
}

/* Hashes a secret or pin into out; 1, or 0 after answering 503. */
static int hash_into(const char *secret, char *out, size_t cap, http_reply *r)
{
    char err[128];
    int rc = auth_secret_hash(secret, out, cap, err, sizeof err);
    if (rc == 0)
        return 1;
    log_error("chat", "cannot hash a room secret: %s", err);
    http_reply_error(r, 503, "UNAVAILABLE",
                     rc == AUTH_SECRET_BUSY ? "too many secret checks at once; try again"
                                            : "cannot hash the secret");
    r->retry_after = 1;
    return 0;
}

/* The room named in the URL, as a created room: 1, or 0 after answering
 * 400 (bad name) or 404. */
static int created_room(chat_service *svc, const char *name, chat_room_def *def, http_reply *r)
{
    if (!offer_room_name_valid(name)) {
        http_reply_error(r, 400, "BAD_REQUEST",
                         "room names are 1-63 characters: letters, digits, '-', '_', '.'");
        return 0;
    }
    if (!chat_registry_get(svc->registry, name, def)) {
        http_reply_error(r, 404, "NOT_FOUND",
                         "no such room (or it is an open room, which has no owner)");
        return 0;
    }
    return 1;
}

/* After a slow check: 1 when the room is still the definition that was
 * checked (not edited, deleted or made again meanwhile), else 0 after
 * answering 409. */
static int unchanged(chat_service *svc, const chat_room_def *checked, http_reply *r)
{
    chat_room_def now;
    if (chat_registry_get(svc->registry, checked->name, &now) &&
        now.generation == checked->generation)
        return 1;
    http_reply_error(r, 409, "CONFLICT", "the room changed meanwhile; read it and try again");
    return 0;
}

/* ---------- answers ---------- */

/* Sessions in the room on every node. */
static long room_online(chat_service *svc, const char *name)
{
    return chat_room_online(svc->rooms, name) + (svc->link ? chat_link_online(svc->link, name) : 0);
}

/* On a cluster, changes go through the stream: refused (503) while NATS
 * is unreachable, before anything changes here. 1 when refused. */
static int cluster_down(chat_service *svc, http_reply *r)
{
    if (svc->link == NULL || cluster_up(chat_link_cluster(svc->link)))
        return 0;
    http_reply_error(r, 503, "UNAVAILABLE", "the cluster is unreachable; try again shortly");
    r->retry_after = 1;
    return 1;
}

/* A created room's change, told to the other nodes. */
static void tell_nodes(chat_service *svc, const chat_room_def *def, int removed)
{
    if (svc->link && chat_link_room_changed(svc->link, def, removed) < 0)
        log_error("chat",
                  "room %s: the change was made here but the cluster did not take it; "
                  "other nodes see it after their restart",
                  def->name);
}

/* ROOM: name, description, online, pin, created (a created room, not an
 * open one), owner (it has an owner secret); `full` adds private,
 * created_by, created_at. */
static json_t *room_json(chat_service *svc, const chat_room_def *d, int full)
{
    json_t *o = json_pack("{s:s,s:s,s:I,s:b,s:b,s:b}", "name", d->name, "description",
                          d->description, "online", (json_int_t)room_online(svc, d->name), "pin",
                          d->pin_hash[0] != '\0', "created", 1, "owner", d->secret_hash[0] != '\0');
    if (o && full) {
        json_object_set_new(o, "private", json_boolean(d->is_private));
        json_object_set_new(o, "created_by",
                            d->created_by ? json_integer(d->created_by) : json_null());
        json_object_set_new(o, "created_at", json_string(d->created_at));
    }
    return o;
}

static void reply_object(http_reply *r, int status, const char *key, json_t *value)
{
    json_t *o = value ? json_pack("{s:o}", key, value) : NULL;
    http_reply_json(r, status, o ? json_text_compact(o) : NULL);
    json_decref(o);
}

static void registry_error(int rc, http_reply *r)
{
    switch (rc) {
    case CHAT_REGISTRY_EXISTS:
        http_reply_error(r, 409, "EXISTS", "a room with that name exists");
        break;
    case CHAT_REGISTRY_FULL:
        http_reply_error(r, 503, "AT_CAPACITY", "the server is at its room limit (--max-rooms)");
        break;
    case CHAT_REGISTRY_MISSING:
        http_reply_error(r, 404, "NOT_FOUND", "no such room");
        break;
    case CHAT_REGISTRY_CHANGED:
        http_reply_error(r, 409, "CONFLICT", "the room changed meanwhile; read it and try again");
        break;
    case CHAT_REGISTRY_LOG_FULL:
        http_reply_error(r, 503, "UNAVAILABLE", "the log is catching up; try again shortly");
        r->retry_after = 1;
        break;
    default:
        http_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        break;
    }
}

/* ---------- GET /api/rooms ---------- */

typedef struct {
    chat_service *svc;
    json_t *list;
} open_rooms;

/* ROOM of an open room (not created: no owner, no pin). */
static json_t *open_room_json(const char *name, long online)
{
    return json_pack("{s:s,s:s,s:I,s:b,s:b,s:b}", "name", name, "description", "", "online",
                     (json_int_t)online, "pin", 0, "created", 0, "owner", 0);
}

/* chat_rooms_each: an open room (not created) with someone in it. */
static void add_open_room(void *arg, const char *name, long online)
{
    open_rooms *o = arg;
    chat_room_def def;
    if (online <= 0 || chat_registry_get(o->svc->registry, name, &def))
        return;
    json_array_append_new(o->list, open_room_json(name, room_online(o->svc, name)));
}

/* cluster_presence_rooms: an open room with nobody on this node (those
 * with someone here are add_open_room's, counted cluster-wide there). */
static void add_remote_open_room(void *arg, const char *name, long online)
{
    open_rooms *o = arg;
    if (chat_room_online(o->svc->rooms, name) > 0)
        return;
    add_open_room(arg, name, online);
}

static int by_room_name(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));
    int lx = strcmp(x, CHAT_LOBBY) == 0, ly = strcmp(y, CHAT_LOBBY) == 0;
    if (lx != ly)
        return ly - lx;
    return strcmp(x, y);
}

static void list_rooms(chat_service *svc, http_reply *r)
{
    chat_room_def *defs;
    size_t n;
    chat_registry_list(svc->registry, &defs, &n);
    open_rooms open = {svc, json_array()};
    for (size_t i = 0; i < n; i++)
        if (!defs[i].is_private)
            json_array_append_new(open.list, room_json(svc, &defs[i], 0));
    mem_free(defs);
    chat_rooms_each(svc->rooms, add_open_room, &open);
    if (svc->link)
        cluster_presence_rooms(chat_link_cluster(svc->link), add_remote_open_room, &open);
    /* sorted through a plain array: jansson has no sort */
    size_t count = json_array_size(open.list);
    json_t **items = count ? mem_calloc(count, sizeof *items) : NULL;
    json_t *sorted = json_array();
    if (items) {
        for (size_t i = 0; i < count; i++)
            items[i] = json_array_get(open.list, i);
        qsort(items, count, sizeof *items, by_room_name);
        for (size_t i = 0; i < count && i < CHAT_ROOMS_LISTED; i++)
            json_array_append(sorted, items[i]);
        mem_free(items);
    }
    json_decref(open.list);
    json_t *o = json_pack("{s:o}", "rooms", sorted);
    if (o && count > CHAT_ROOMS_LISTED)
        json_object_set_new(o, "more", json_true());
    http_reply_json(r, 200, o ? json_text_compact(o) : NULL);
    json_decref(o);
}

/* ---------- POST /api/rooms ---------- */

static const char *const create_fields[] = {"name",    "description", "secret", "pin",
                                            "private", "admin_key",   NULL};

static void create_room(chat_service *svc, const http_request *req, http_reply *r)
{
    char err[256];
    auth_claims claims;
    if (req->bearer == NULL) {
        http_reply_error(r, 401, "INVALID_TOKEN", "creating a room takes a bearer token");
        return;
    }
    if (auth_token_verify(svc->cfg.keys, req->bearer, svc->cfg.public_url, time(NULL), &claims, err,
                          sizeof err) < 0) {
        http_reply_error(r, 401, "INVALID_TOKEN", err);
        return;
    }
    long creator = strtol(claims.sub, NULL, 10);
    auth_claims_clear(&claims);
    json_t *body = body_object(req, r, create_fields);
    if (body == NULL)
        return;
    chat_room_def def = {.created_by = creator > 0 ? creator : 0};
    const char *name = NULL, *secret = NULL, *pin = NULL, *key = NULL;
    int given = 0, is_private = 0;
    if (opt_string(body, "name", 63, &name, r) < 0 ||
        opt_text(body, "description", CHAT_DESCRIPTION_MAX, def.description, sizeof def.description,
                 r) < 0 ||
        opt_string(body, "secret", AUTH_SECRET_MAX, &secret, r) < 0 ||
        opt_string(body, "pin", AUTH_SECRET_MAX, &pin, r) < 0 ||
        opt_string(body, "admin_key", AUTH_SECRET_MAX, &key, r) < 0 ||
        (is_private = opt_bool(body, "private", &given, r)) < 0)
        goto done;
    if (name == NULL || !offer_room_name_valid(name)) {
        http_reply_error(r, 400, "BAD_REQUEST",
                         "\"name\": 1-63 characters: letters, digits, '-', '_', '.'");
        goto done;
    }
    if (has_admin_key(svc) && !admin_key_matches(svc, key)) {
        http_reply_error(r, 403, "FORBIDDEN", "creating rooms takes the admin key here");
        goto done;
    }
    if (!has_admin_key(svc) &&
        chat_registry_count_by(svc->registry, def.created_by) >= CHAT_ROOMS_PER_CREATOR) {
        http_reply_error(r, 403, "FORBIDDEN",
                         "you have created as many rooms as one user may; delete one first");
        goto done;
    }
    snprintf(def.name, sizeof def.name, "%s", name);
    def.is_private = is_private;
    /* Cheap refusal before the slow hashes; the add checks again. */
    chat_room_def existing;
    if (chat_registry_get(svc->registry, name, &existing)) {
        registry_error(CHAT_REGISTRY_EXISTS, r);
        goto done;
    }
    if ((secret && !hash_into(secret, def.secret_hash, sizeof def.secret_hash, r)) ||
        (pin && !hash_into(pin, def.pin_hash, sizeof def.pin_hash, r)))
        goto done;
    if (cluster_down(svc, r))
        goto done;
    int rc = chat_registry_add(svc->registry, &def);
    if (rc != 0) {
        registry_error(rc, r);
        goto done;
    }
    tell_nodes(svc, &def, 0);
    log_info("chat", "room %s created by user %ld from %s (%s%s%s)", def.name, def.created_by,
             req->remote, secret ? "owner secret" : "no owner", pin ? ", pin" : "",
             is_private ? ", private" : "");
    reply_object(r, 201, "room", room_json(svc, &def, 1));
done:
    json_decref(body);
}

/* ---------- PATCH /api/rooms/NAME ---------- */

static const char *const patch_fields[] = {"secret",  "admin_key",  "description", "pin",
                                           "private", "new_secret", NULL};

static void patch_room(chat_service *svc, const char *name, const http_request *req, http_reply *r)
{
    chat_room_def def;
    if (!created_room(svc, name, &def, r))
        return;
    json_t *body = body_object(req, r, patch_fields);
    if (body == NULL)
        return;
    chat_room_def next = def;
    const char *pin = NULL, *new_secret = NULL;
    int given_private = 0, is_private = 0, admin = 0;
    /* An empty description clears it; any other follows the text rules. */
    json_t *d = json_object_get(body, "description");
    int desc = 0;
    if (json_is_string(d) && json_string_length(d) == 0)
        next.description[0] = '\0';
    else
        desc = opt_text(body, "description", CHAT_DESCRIPTION_MAX, next.description,
                        sizeof next.description, r);
    json_t *pin_v = json_object_get(body, "pin");
    int clear_pin =
        json_is_null(pin_v) || (json_is_string(pin_v) && json_string_length(pin_v) == 0);
    if (desc < 0 || (!clear_pin && opt_string(body, "pin", AUTH_SECRET_MAX, &pin, r) < 0) ||
        opt_string(body, "new_secret", AUTH_SECRET_MAX, &new_secret, r) < 0 ||
        (is_private = opt_bool(body, "private", &given_private, r)) < 0)
        goto done;
    if (!owner_check(svc, &def, body, &admin, r))
        goto done;
    if (clear_pin)
        next.pin_hash[0] = '\0';
    else if (pin && !hash_into(pin, next.pin_hash, sizeof next.pin_hash, r))
        goto done;
    if (new_secret && !hash_into(new_secret, next.secret_hash, sizeof next.secret_hash, r))
        goto done;
    if (given_private)
        next.is_private = is_private;
    if (json_object_size(body) == 1) { /* the secret or key alone: a check, nothing to change */
        reply_object(r, 200, "room", room_json(svc, &def, 1));
        goto done;
    }
    if (cluster_down(svc, r))
        goto done;
    int rc = chat_registry_update(svc->registry, &next);
    if (rc != 0) {
        registry_error(rc, r);
        goto done;
    }
    tell_nodes(svc, &next, 0);
    log_info("chat", "room %s changed by its %s from %s", name, admin ? "admin" : "owner",
             req->remote);
    reply_object(r, 200, "room", room_json(svc, &next, 1));
done:
    json_decref(body);
}

/* ---------- DELETE /api/rooms/NAME ---------- */

static const char *const owner_fields[] = {"secret", "admin_key", NULL};

static void delete_room(chat_service *svc, const char *name, const http_request *req, http_reply *r)
{
    chat_room_def def;
    int admin;
    if (!created_room(svc, name, &def, r))
        return;
    json_t *body = body_object(req, r, owner_fields);
    if (body == NULL)
        return;
    int is_lobby = strcmp(name, CHAT_LOBBY) == 0;
    if (!owner_check(svc, &def, body, &admin, r))
        goto done;
    if (is_lobby && !admin) {
        http_reply_error(r, 403, "FORBIDDEN", "only the admin key deletes the lobby");
        goto done;
    }
    int rc;
    if (cluster_down(svc, r))
        goto done;
    if (is_lobby) { /* lobby always exists: back to its defaults */
        chat_room_def fresh = {.name = CHAT_LOBBY,
                               .description = "Everyone starts here",
                               .generation = def.generation};
        clock_iso8601_now(fresh.created_at, sizeof fresh.created_at);
        rc = chat_registry_update(svc->registry, &fresh);
        if (rc == 0)
            tell_nodes(svc, &fresh, 0);
    } else {
        rc = chat_registry_remove(svc->registry, name, def.generation);
        if (rc == 0)
            tell_nodes(svc, &def, 1);
    }
    if (rc != 0) {
        registry_error(rc, r);
        goto done;
    }
    atomic_fetch_add(&svc->rooms_closed, 1);
    if (svc->link) { /* every node closes its sessions when the stream says so */
        if (chat_link_close_room(svc->link, name, "the room was deleted") < 0)
            log_error("chat", "room %s deleted, but the cluster did not take the close", name);
        log_info("chat", "room %s deleted by its %s from %s; closing it on every node", name,
                 admin ? "admin" : "owner", req->remote);
        r->status = 204;
        goto done;
    }
    char *frame = proto_build_farewell("room_closed", name, "the room was deleted");
    size_t n = frame ? chat_room_close(svc->rooms, name, frame) : 0;
    mem_free(frame);
    log_info("chat", "room %s deleted by its %s from %s; %zu sessions closed", name,
             admin ? "admin" : "owner", req->remote, n);
    r->status = 204;
done:
    json_decref(body);
}

/* ---------- POST /api/rooms/NAME/kick ---------- */

static const char *const kick_fields[] = {"secret", "admin_key", "user_id", NULL};

static void kick(chat_service *svc, const char *name, const http_request *req, http_reply *r)
{
    chat_room_def def;
    int admin;
    if (!created_room(svc, name, &def, r))
        return;
    json_t *body = body_object(req, r, kick_fields);
    if (body == NULL)
        return;
    json_t *uid = json_object_get(body, "user_id");
    json_int_t user = json_is_integer(uid) ? json_integer_value(uid) : 0;
    if (user <= 0 || user > INT32_MAX) {
        http_reply_error(r, 400, "BAD_REQUEST", "\"user_id\" must be a user id");
        goto done;
    }
    if (!owner_check(svc, &def, body, &admin, r) || !unchanged(svc, &def, r))
        goto done;
    long id = (long)user, found;
    size_t n;
    if (svc->link) { /* every node ends that user's sessions when the stream says so */
        n = chat_room_find_users(svc->rooms, name, &id, 1, &found) +
            chat_link_find_users(svc->link, name, &id, 1, &found);
        if (n && chat_link_kick(svc->link, name, id) < 0) {
            http_reply_error(r, 503, "UNAVAILABLE", "the cluster is unreachable; try again");
            goto done;
        }
    } else {
        char *frame = proto_build_farewell("kicked", name, "removed by the room's owner");
        n = frame ? chat_room_publish_direct(svc->rooms, name, &id, 1, frame, 0, 1, NULL) : 0;
        mem_free(frame);
    }
    if (n == 0) {
        http_reply_error(r, 404, "NOT_FOUND", "that user has no session in the room");
        goto done;
    }
    atomic_fetch_add(&svc->kicks, 1);
    log_info("chat", "user %ld kicked from %s by its %s from %s (%zu sessions)", id, name,
             admin ? "admin" : "owner", req->remote, n);
    r->status = 204;
done:
    json_decref(body);
}

/* ---------- announcements ---------- */

static const char *const announce_fields[] = {"secret", "admin_key", "text", NULL};

/* Logs an announcement (room NULL: every room) and fans it out; answers
 * 202 with it, or 503 when the log refuses it (nothing was delivered). */
static void announce(chat_service *svc, const char *room, const char *text, const char *remote,
                     http_reply *r)
{
    char ts[32];
    clock_iso8601_now(ts, sizeof ts);
    if (svc->link) {
        /* Every node delivers it when the stream gives it back; this one
         * logs it then (chat/link.h). */
        int64_t id = store_full(svc->cfg.store) ? 0 : chat_link_announce(svc->link, room, text, ts);
        json_t *obj = id ? proto_announcement_object(id, room, text, ts) : NULL;
        if (obj == NULL) {
            http_reply_error(r, 503, "UNAVAILABLE",
                             "the announcement could not be sent; try again");
            r->retry_after = 1;
            return;
        }
        log_info("chat", "announcement %lld to %s from %s (through the cluster)", (long long)id,
                 room ? room : "every room", remote);
        reply_object(r, 202, "announcement", obj);
        return;
    }
    store_message row = {.id = store_next_message_id(svc->cfg.store),
                         .room = room ? room : STORE_ROOM_EVERY,
                         .user_id = 0,
                         .source = "announcement",
                         .body = text,
                         .created_at = ts,
                         .user_name = "",
                         .user_username = ""};
    store_put_result put = store_put_message(svc->cfg.store, &row);
    if (put < 0) {
        http_reply_error(r, 503, "UNAVAILABLE",
                         put == STORE_PUT_FULL ? "the log is catching up; try again shortly"
                                               : "the announcement could not be recorded");
        r->retry_after = 1;
        return;
    }
    json_t *obj = proto_announcement_object(row.id, room, text, ts);
    if (obj == NULL) {
        http_reply_error(r, 503, "UNAVAILABLE", "out of memory");
        return;
    }
    if (room)
        chat_room_publish(svc->rooms, room, obj, NULL, &svc->announcements);
    else
        chat_rooms_publish_all(svc->rooms, obj, &svc->announcements);
    log_info("chat", "announcement %lld to %s from %s", (long long)row.id,
             room ? room : "every room", remote);
    reply_object(r, 202, "announcement", obj);
}

static void announce_room(chat_service *svc, const char *name, const http_request *req,
                          http_reply *r)
{
    chat_room_def def;
    int admin;
    if (!created_room(svc, name, &def, r))
        return;
    json_t *body = body_object(req, r, announce_fields);
    if (body == NULL)
        return;
    char text[PROTO_MAX_TEXT * 4 + 1];
    int has = opt_text(body, "text", PROTO_MAX_TEXT, text, sizeof text, r);
    if (has == 0)
        http_reply_error(r, 400, "BAD_REQUEST", "an announcement needs \"text\"");
    if (has > 0 && owner_check(svc, &def, body, &admin, r) && unchanged(svc, &def, r))
        announce(svc, name, text, req->remote, r);
    json_decref(body);
}

void chat_http_announce(void *app, const http_request *req, http_reply *r)
{
    chat_service *svc = app;
    static const char *const fields[] = {"admin_key", "text", NULL};
    if (!chat_costly_admit(svc, req, r))
        return;
    json_t *body = body_object(req, r, fields);
    if (body == NULL)
        return;
    char text[PROTO_MAX_TEXT * 4 + 1];
    const char *key = NULL;
    int has = opt_text(body, "text", PROTO_MAX_TEXT, text, sizeof text, r);
    if (has == 0)
        http_reply_error(r, 400, "BAD_REQUEST", "an announcement needs \"text\"");
    if (has > 0 && opt_string(body, "admin_key", AUTH_SECRET_MAX, &key, r) >= 0) {
        if (!has_admin_key(svc))
            http_reply_error(r, 403, "FORBIDDEN",
                             "announcements to every room are off (no --admin-key)");
        else if (!admin_key_matches(svc, key))
            http_reply_error(r, 403, "FORBIDDEN", "wrong admin key");
        else
            announce(svc, NULL, text, req->remote, r);
    }
    json_decref(body);
}

/* GET /api/rooms/NAME: a created room (a private one too: its name is
 * known), or an open one while someone is in it. */
static void get_room(chat_service *svc, const char *name, http_reply *r)
{
    chat_room_def def;
    if (!offer_room_name_valid(name)) {
        http_reply_error(r, 400, "BAD_REQUEST", "bad room name");
        return;
    }
    long online = room_online(svc, name);
    if (chat_registry_get(svc->registry, name, &def))
        reply_object(r, 200, "room", room_json(svc, &def, 0));
    else if (online > 0)
        reply_object(r, 200, "room", open_room_json(name, online));
    else
        http_reply_error(r, 404, "NOT_FOUND",
                         "no such room (an open room exists while someone is in it)");
}

void chat_http_rooms(void *app, const char *method, const char *room, const char *action,
                     const http_request *req, http_reply *r)
{
    chat_service *svc = app;
    if (strcmp(method, "GET") == 0) {
        if (room)
            get_room(svc, room, r);
        else
            list_rooms(svc, r);
        return;
    }
    /* Everything else may cost a slow hash: the address's budget first. */
    if (!chat_costly_admit(svc, req, r))
        return;
    if (room == NULL)
        create_room(svc, req, r);
    else if (action && strcmp(action, "kick") == 0)
        kick(svc, room, req, r);
    else if (action)
        announce_room(svc, room, req, r);
    else if (strcmp(method, "PATCH") == 0)
        patch_room(svc, room, req, r);
    else
        delete_room(svc, room, req, r);
}

int chat_room_pin_check(chat_service *svc, const char *room, const char *pin, http_reply *r)
{
    chat_room_def def;
    if (!chat_registry_get(svc->registry, room, &def) || def.pin_hash[0] == '\0')
        return 1;
    if (pin == NULL || pin[0] == '\0') {
        http_reply_error(r, 403, "FORBIDDEN", "this room takes a pin (X-Room-Pin)");
        return 0;
    }
    if (strlen(pin) > AUTH_SECRET_MAX) {
        http_reply_error(r, 403, "FORBIDDEN", "wrong pin");
        return 0;
    }
    return secret_answer(auth_secret_verify(pin, def.pin_hash), "pin", r);
}
