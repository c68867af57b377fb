/* libFuzzer target: the STUN parser and the integrity check under a fixed
 * key (RFC 5769's password, so the seed vectors pass it). An accepted
 * message is rebuilt with the writer from what was decoded (with
 * MESSAGE-INTEGRITY when the input's was right), and the rebuilt message
 * must parse to the same fields and pass its own checks. */
#include "rtc/stun.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t KEY[] = "VOkJxbRl1RmTxUk/WvJxBt";
#define KEYLEN (sizeof KEY - 1)

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stun_msg m;
    char err[160];
    int is = stun_is_stun(data, size);
    if (stun_parse(data, size, &m, err, sizeof err) != 0) {
        check(err[0] != '\0');
        return 0;
    }
    check(is);
    int ok = stun_check_integrity(data, size, &m, KEY, KEYLEN);
    check(!ok || m.integrity_at != 0);

    uint8_t out[STUN_MAX_MESSAGE_BYTES];
    stun_writer w;
    stun_begin(&w, out, sizeof out, m.type, m.txid);
    if (m.username)
        stun_add_bytes(&w, STUN_ATTR_USERNAME, m.username, m.username_len);
    if (m.has_priority)
        stun_add_u32(&w, STUN_ATTR_PRIORITY, m.priority);
    if (m.has_controlling)
        stun_add_u64(&w, STUN_ATTR_ICE_CONTROLLING, m.tiebreaker);
    if (m.has_controlled)
        stun_add_u64(&w, STUN_ATTR_ICE_CONTROLLED, m.tiebreaker);
    if (m.use_candidate)
        stun_add_flag(&w, STUN_ATTR_USE_CANDIDATE);
    if (m.has_mapped)
        stun_add_xor_address(&w, (const struct sockaddr *)&m.mapped);
    if (m.error_code)
        stun_add_error(&w, m.error_code, "fuzz");
    int n = stun_finish(&w, ok ? KEY : NULL, KEYLEN);
    check(n > 0); /* every decoded field fits STUN_MAX_MESSAGE_BYTES */

    stun_msg r;
    check(stun_parse(out, (size_t)n, &r, err, sizeof err) == 0);
    check(r.type == m.type && memcmp(r.txid, m.txid, STUN_TXID_BYTES) == 0);
    check(r.username_len == m.username_len && (m.username == NULL) == (r.username == NULL));
    check(m.username == NULL || memcmp(r.username, m.username, m.username_len) == 0);
    check(r.has_priority == m.has_priority && r.priority == m.priority);
    check(r.has_controlling == m.has_controlling && r.has_controlled == m.has_controlled);
    check(r.tiebreaker == m.tiebreaker && r.use_candidate == m.use_candidate);
    check(r.has_mapped == m.has_mapped && memcmp(&r.mapped, &m.mapped, sizeof r.mapped) == 0);
    check(r.error_code == m.error_code);
    check(r.has_fingerprint);
    check(stun_check_integrity(out, (size_t)n, &r, KEY, KEYLEN) == ok);
    return 0;
}
