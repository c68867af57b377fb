/*
 * secret_int — the stored-text parser of auth/secret and its test hooks;
 * for secret.c, its unit tests and its fuzz target, not for other modules.
 *
 * The parser is exposed so that the fuzz target can run it on every input
 * and derive only for the few inputs whose parameters are cheap.
 *
 * Threading: parse and format keep no state. The hooks read or set
 * process-wide values under the slot mutex; tests set them from one thread.
 * Ownership: everything is written into the caller's struct or buffer.
 */
#ifndef CHATD_AUTH_SECRET_INT_H
#define CHATD_AUTH_SECRET_INT_H

#include "auth/secret.h"

#include <stddef.h>
#include <stdint.h>

#define AUTH_SECRET_N_MIN 1024u
#define AUTH_SECRET_N_MAX 1048576u
#define AUTH_SECRET_R_MAX 16u
#define AUTH_SECRET_P_MAX 4u
#define AUTH_SECRET_COST_MAX (1u << 23) /* N * r * p */
#define AUTH_SECRET_SALT_MIN 8
#define AUTH_SECRET_SALT_MAX 64
#define AUTH_SECRET_KEY_LEN 32

/* A stored text, parsed. */
typedef struct {
    uint32_t n, r, p;
    size_t salt_len;
    unsigned char salt[AUTH_SECRET_SALT_MAX];
    unsigned char key[AUTH_SECRET_KEY_LEN];
} auth_secret_params;

/* Parses stored (NUL-terminated, read no further than AUTH_SECRET_HASH_LEN
 * bytes) into *out. 0, or -1 for anything the file comment of secret.h
 * refuses; *out is then unspecified. */
int auth_secret_parse(const char *stored, auth_secret_params *out);

/* Writes the stored text of *in into out (cap bytes, NUL-terminated).
 * Returns its length without the NUL, or 0 when cap is too small (out then
 * holds "" when cap > 0). format(parse(s)) gives s back for every accepted
 * s. */
size_t auth_secret_format(const auth_secret_params *in, char *out, size_t cap);

/* Test hooks. Derivations running now, and the most that ever ran at once
 * in this process. */
unsigned auth_secret_in_flight(void);
unsigned auth_secret_in_flight_max(void);

/* How long a caller waits for a slot (AUTH_SECRET_WAIT_MS unless set). */
void auth_secret_set_wait_ms(unsigned ms);

#endif
