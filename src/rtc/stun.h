/*
 * stun — the part of STUN (RFC 8489) that ICE needs (RFC 8445 §7), for
 * the one-port ICE-lite transport (mux.h) and its client side.
 *
 * Parsing reads an untrusted datagram without allocating: the fields point
 * into the caller's buffer, every attribute length is checked against the
 * message, and FINGERPRINT, when present, must be the last attribute and
 * correct. MESSAGE-INTEGRITY (HMAC-SHA1 under the ICE password) is checked
 * separately, since the key depends on the USERNAME the caller looks up.
 *
 * Writing builds a message into a caller buffer; stun_finish adds
 * MESSAGE-INTEGRITY (when a key is given) and FINGERPRINT.
 *
 * Threading: pure functions, any thread.
 */
#ifndef CHATD_STUN_H
#define CHATD_STUN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define STUN_HEADER_BYTES 20
#define STUN_MAGIC_COOKIE 0x2112A442u
#define STUN_TXID_BYTES 12
/* The largest message chatd builds: header, USERNAME (513 at most),
 * XOR-MAPPED-ADDRESS, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE,
 * MESSAGE-INTEGRITY and FINGERPRINT fit well inside it. */
#define STUN_MAX_MESSAGE_BYTES 1024

enum {
    STUN_BINDING_REQUEST = 0x0001,
    STUN_BINDING_INDICATION = 0x0011,
    STUN_BINDING_SUCCESS = 0x0101,
    STUN_BINDING_ERROR = 0x0111,
};

enum {
    STUN_ATTR_MAPPED_ADDRESS = 0x0001,
    STUN_ATTR_USERNAME = 0x0006,
    STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
    STUN_ATTR_ERROR_CODE = 0x0009,
    STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
    STUN_ATTR_PRIORITY = 0x0024,
    STUN_ATTR_USE_CANDIDATE = 0x0025,
    STUN_ATTR_FINGERPRINT = 0x8028,
    STUN_ATTR_ICE_CONTROLLED = 0x8029,
    STUN_ATTR_ICE_CONTROLLING = 0x802A,
};

/* A parsed message. Pointers point into the parsed buffer. */
typedef struct {
    uint16_t type; /* e.g. STUN_BINDING_REQUEST */
    uint8_t txid[STUN_TXID_BYTES];
    const uint8_t *username; /* NULL when absent */
    size_t username_len;
    /* Offset of the MESSAGE-INTEGRITY attribute's header in the buffer;
     * 0 when absent. */
    size_t integrity_at;
    int has_fingerprint; /* present (and, when present, correct) */
    int use_candidate;
    int has_priority;
    uint32_t priority;
    int has_controlling, has_controlled;
    uint64_t tiebreaker;
    int has_mapped; /* XOR-MAPPED-ADDRESS, decoded */
    struct sockaddr_storage mapped;
    int error_code; /* 0 when absent, else class*100+number */
} stun_msg;

/* RFC 7983: could this datagram be STUN (first byte 0..3, the magic
 * cookie, a length that is a multiple of 4 and matches the datagram)? */
int stun_is_stun(const uint8_t *data, size_t len);

/* Parses a whole datagram. Returns 0, or -1 with err saying what is wrong
 * (short, bad length, an attribute past the end, FINGERPRINT wrong or not
 * last, a USERNAME over 513 bytes, ...). Unknown comprehension-optional
 * attributes are skipped; unknown comprehension-required ones (below
 * 0x8000) are skipped too, since ICE's checks never depend on them. */
int stun_parse(const uint8_t *data, size_t len, stun_msg *m, char *err, size_t errlen);

/* 1 when the message parsed into m carries a MESSAGE-INTEGRITY that is
 * right for key (the short-term credential: the ICE password), else 0. */
int stun_check_integrity(const uint8_t *data, size_t len, const stun_msg *m, const uint8_t *key,
                         size_t keylen);

typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int overflow; /* an add did not fit: stun_finish fails */
} stun_writer;

/* Starts a message of `type` with transaction id txid in buf. */
void stun_begin(stun_writer *w, uint8_t *buf, size_t cap, uint16_t type,
                const uint8_t txid[STUN_TXID_BYTES]);
void stun_add_bytes(stun_writer *w, uint16_t attr, const void *data, size_t len);
void stun_add_u32(stun_writer *w, uint16_t attr, uint32_t v);
void stun_add_u64(stun_writer *w, uint16_t attr, uint64_t v);
void stun_add_flag(stun_writer *w, uint16_t attr); /* zero-length, e.g. USE-CANDIDATE */
/* XOR-MAPPED-ADDRESS of an AF_INET or AF_INET6 address. */
void stun_add_xor_address(stun_writer *w, const struct sockaddr *addr);
/* ERROR-CODE: code is class*100+number, e.g. 401, 487. */
void stun_add_error(stun_writer *w, int code, const char *reason);
/* Adds MESSAGE-INTEGRITY (when key != NULL) and FINGERPRINT, sets the
 * header length. Returns the message length, or -1 when it did not fit. */
int stun_finish(stun_writer *w, const uint8_t *key, size_t keylen);

#endif
