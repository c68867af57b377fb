/*
 * base64url — RFC 4648 §5 encoding without padding, as JWS and JWK use it.
 *
 * The decoder is strict because it sits in front of token verification: it
 * rejects padding, the '+' and '/' of plain base64, whitespace, a length of
 * 4n+1 and non-zero unused trailing bits, so that each byte string has
 * exactly one accepted encoding.
 *
 * Threading: pure functions, safe from any thread.
 * Ownership: the *_alloc functions return buffers from mem_alloc that the
 * caller releases with mem_free; the others write into caller buffers.
 */
#ifndef CHATD_BASE64URL_H
#define CHATD_BASE64URL_H

#include <stddef.h>

/* Return values of the decoders. */
#define B64URL_OK 0
#define B64URL_EINVAL (-1) /* not strict unpadded base64url */
#define B64URL_ENOMEM (-2) /* allocation failed */
#define B64URL_ENOSPC (-3) /* output buffer too small */

/* Characters needed to encode n bytes, not counting the NUL. */
size_t b64url_encoded_len(size_t n);

/* Most bytes that a text of inlen characters can decode to. */
size_t b64url_decoded_max(size_t inlen);

/* Encodes n bytes into out (capacity outcap, NUL-terminated). Returns the
 * number of characters written without the NUL, or 0 with out untouched
 * when outcap < b64url_encoded_len(n) + 1 (n == 0 also returns 0). */
size_t b64url_encode(char *out, size_t outcap, const void *in, size_t n);

/* Encodes n bytes into a new NUL-terminated string; NULL when out of
 * memory. Owner: caller, mem_free. */
char *b64url_encode_alloc(const void *in, size_t n);

/* Decodes inlen characters into out (capacity outcap); *outlen receives the
 * byte count. Returns B64URL_OK, B64URL_EINVAL or B64URL_ENOSPC. */
int b64url_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap, size_t *outlen);

/* Decodes into a new buffer with one extra NUL byte after the data (so a
 * decoded JSON text can be handed to a C string API). Returns B64URL_OK,
 * B64URL_EINVAL or B64URL_ENOMEM; on failure *out is NULL. Owner: caller,
 * mem_free. */
int b64url_decode_alloc(const char *in, size_t inlen, unsigned char **out, size_t *outlen);

#endif
