/*
 * fuzz_secret — libFuzzer target for the stored-text parser of auth/secret
 * (auth_secret_parse, and auth_secret_verify in front of it).
 *
 * Every input, as a C string (cut at its first NUL, as a database text
 * column would be), goes to the parser. What must hold:
 *  - auth_secret_is_hash agrees with auth_secret_parse;
 *  - an accepted text formats back to exactly itself (one text per value);
 *  - a refused text is a MISMATCH from auth_secret_verify (that it costs
 *    no derivation is test_secret's check: the slot high-water mark is
 *    per process, and earlier inputs here do derive);
 *  - an accepted text with cheap parameters (N*r*p <= 4096: at most 512 KiB
 *    and about a millisecond) is verified with a fixed secret, which must
 *    be a MISMATCH unless the key happens to be right; then the key is
 *    replaced by the one OpenSSL derives for that secret, and the verify
 *    must be a MATCH. Dearer parameters are left underived, so that a run
 *    is not spent on 1 GiB scrypts.
 * Single-threaded, like libFuzzer's driver.
 */
#include "auth/secret.h"
#include "auth/secret_int.h"
#include "util/log.h"
#include "util/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define SECRET "fuzz-pin-1234"
#define CHEAP_COST 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int installed;
    auth_secret_params p;
    char back[AUTH_SECRET_HASH_LEN];
    char *text;

    if (!installed) {
        mem_install();
        log_set_level(LOGL_OFF);
        installed = 1;
    }
    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    int parsed = auth_secret_parse(text, &p);
    if (parsed != 0 && parsed != -1)
        abort();
    if (auth_secret_is_hash(text) != (parsed == 0))
        abort();
    if (parsed != 0) {
        if (auth_secret_verify(SECRET, text) != AUTH_SECRET_MISMATCH)
            abort();
        free(text);
        return 0;
    }

    if (auth_secret_format(&p, back, sizeof back) != strlen(text) || strcmp(back, text) != 0)
        abort();
    if (p.n < AUTH_SECRET_N_MIN || (p.n & (p.n - 1)) != 0 || p.r < 1 || p.r > AUTH_SECRET_R_MAX ||
        p.p < 1 || p.p > AUTH_SECRET_P_MAX || p.salt_len < AUTH_SECRET_SALT_MIN ||
        p.salt_len > AUTH_SECRET_SALT_MAX)
        abort();

    if ((uint64_t)p.n * p.r * p.p <= CHEAP_COST) {
        unsigned char key[AUTH_SECRET_KEY_LEN];
        auth_secret_result rc = auth_secret_verify(SECRET, text);
        if (rc != AUTH_SECRET_MATCH && rc != AUTH_SECRET_MISMATCH)
            abort();
        if (EVP_PBE_scrypt(SECRET, strlen(SECRET), p.salt, p.salt_len, p.n, p.r, p.p,
                           64u * 1024 * 1024, key, sizeof key) != 1)
            abort();
        if ((rc == AUTH_SECRET_MATCH) != (memcmp(key, p.key, sizeof key) == 0))
            abort();
        memcpy(p.key, key, sizeof key);
        if (auth_secret_format(&p, back, sizeof back) == 0 ||
            auth_secret_verify(SECRET, back) != AUTH_SECRET_MATCH ||
            auth_secret_verify(SECRET "x", back) != AUTH_SECRET_MISMATCH)
            abort();
    }
    free(text);
    return 0;
}
