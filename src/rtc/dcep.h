/*
 * dcep — the Data Channel Establishment Protocol (RFC 8832) and the SCTP
 * payload protocol identifiers of RFC 8831.
 *
 * A channel is opened by DATA_CHANNEL_OPEN on a stream and acknowledged by
 * DATA_CHANNEL_ACK on the same stream, both with PPID 50. dcep_parse()
 * reads an untrusted message without allocating: the label and protocol
 * point into the caller's buffer. Thread-safe.
 */
#ifndef CHATD_DCEP_H
#define CHATD_DCEP_H

#include <stddef.h>
#include <stdint.h>

enum {
    DCEP_PPID_CONTROL = 50,
    DCEP_PPID_STRING = 51,
    DCEP_PPID_BINARY_PARTIAL = 52, /* deprecated */
    DCEP_PPID_BINARY = 53,
    DCEP_PPID_STRING_PARTIAL = 54, /* deprecated */
    DCEP_PPID_STRING_EMPTY = 56,
    DCEP_PPID_BINARY_EMPTY = 57
};

enum { DCEP_MSG_ACK = 0x02, DCEP_MSG_OPEN = 0x03 };

enum {
    DCEP_CHANNEL_RELIABLE = 0x00,
    DCEP_CHANNEL_RELIABLE_UNORDERED = 0x80,
    DCEP_CHANNEL_PARTIAL_RELIABLE_REXMIT = 0x01,
    DCEP_CHANNEL_PARTIAL_RELIABLE_REXMIT_UNORDERED = 0x81,
    DCEP_CHANNEL_PARTIAL_RELIABLE_TIMED = 0x02,
    DCEP_CHANNEL_PARTIAL_RELIABLE_TIMED_UNORDERED = 0x82
};

#define DCEP_OPEN_HEADER_SIZE 12

typedef struct {
    uint8_t type;         /* DCEP_MSG_OPEN or DCEP_MSG_ACK */
    uint8_t channel_type; /* OPEN only */
    uint16_t priority;
    uint32_t reliability;
    const uint8_t *label; /* points into the parsed buffer; not NUL-terminated */
    uint16_t label_len;
    const uint8_t *protocol;
    uint16_t protocol_len;
} dcep_message;

/* Returns 0, or -1 with a reason in err for anything malformed. */
int dcep_parse(const uint8_t *buf, size_t len, dcep_message *out, char *err, size_t errlen);

/* Encodes DATA_CHANNEL_OPEN; returns its length, or -1 if cap is too small. */
int dcep_write_open(uint8_t *buf, size_t cap, uint8_t channel_type, uint16_t priority,
                    uint32_t reliability, const char *label, const char *protocol);

/* Encodes DATA_CHANNEL_ACK (one byte); returns 1, or -1 if cap is 0. */
int dcep_write_ack(uint8_t *buf, size_t cap);

#endif
