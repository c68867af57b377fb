/*
 * keys — chatd's token signing key: one EC P-256 key pair, its key id and
 * its public JWKS.
 *
 * The private key lives in a PEM file (PKCS#8) that chatd creates with mode
 * 0600 on first start and refuses to use when group or others may read or
 * write it, when it is a symbolic link or another user's, or when it holds anything but a P-256 private key. The key id is
 * the RFC 7638 JWK thumbprint (base64url of SHA-256 over the canonical
 * {"crv","kty","x","y"} JSON), so any verifier can recompute it from the
 * JWKS.
 *
 * Threading: an auth_keys is immutable once returned, so any number of
 * threads may use the accessors and the token functions on it at once. Load
 * and free are not concurrent with use.
 * Ownership: the caller owns the auth_keys (auth_keys_free). Accessors
 * return pointers into it, valid until auth_keys_free; auth_keys_jwks_json
 * returns a new string the caller releases with mem_free.
 */
#ifndef CHATD_AUTH_KEYS_H
#define CHATD_AUTH_KEYS_H

#include <stddef.h>

typedef struct auth_keys auth_keys;

/* Length of a kid (base64url of a SHA-256 digest), without the NUL. */
#define AUTH_KID_LEN 43

/* Loads the P-256 private key at path, or, when the file does not exist,
 * generates one and writes it there (mode 0600, parent folders created with
 * 0700). Refuses a file that is a symbolic link (O_NOFOLLOW) or not
 * regular, belongs to another user than the effective one, is accessible by
 * group/others, is larger than 64 KiB, is encrypted, or does not hold a
 * P-256 private key.
 * Returns NULL and one line in err on failure. */
auth_keys *auth_keys_load_or_create(const char *path, char *err, size_t errlen);

/* Same checks on an in-memory PEM text (no file, no mode check). */
auth_keys *auth_keys_from_pem(const char *pem, size_t len, char *err, size_t errlen);

/* A fresh key that is never written anywhere (tests, fuzzing, tools). */
auth_keys *auth_keys_generate(char *err, size_t errlen);

/* The key id, AUTH_KID_LEN characters, NUL-terminated. */
const char *auth_keys_kid(const auth_keys *keys);

/* PEM texts as libjwt takes them (pointer + length; also NUL-terminated).
 * The private one is PKCS#8 and is wiped from memory by auth_keys_free. */
const unsigned char *auth_keys_private_pem(const auth_keys *keys, size_t *len);
const unsigned char *auth_keys_public_pem(const auth_keys *keys, size_t *len);

/* The private key for signing (auth_token_issue). Borrowed: do not free or
 * modify; usable from several threads at once with separate contexts. */
struct evp_pkey_st;
struct evp_pkey_st *auth_keys_pkey(const auth_keys *keys);

/* {"keys":[{"kty":"EC","crv":"P-256","x":…,"y":…,"kid":…,"use":"sig",
 * "alg":"ES256"}]} — never the private "d". NULL when out of memory.
 * Owner: caller, mem_free. */
char *auth_keys_jwks_json(const auth_keys *keys);

/* Frees keys (NULL is fine), wiping the private PEM first. */
void auth_keys_free(auth_keys *keys);

#endif
