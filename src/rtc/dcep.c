/*
 * dcep — see dcep.h. All fields are network byte order (RFC 8832 §5).
 */
#include "rtc/dcep.h"
#include "util/bytes.h"

#include "util/err.h"

#include <stdio.h>
#include <string.h>

static int known_channel_type(uint8_t t)
{
    switch (t) {
    case DCEP_CHANNEL_RELIABLE:
    case DCEP_CHANNEL_RELIABLE_UNORDERED:
    case DCEP_CHANNEL_PARTIAL_RELIABLE_REXMIT:
    case DCEP_CHANNEL_PARTIAL_RELIABLE_REXMIT_UNORDERED:
    case DCEP_CHANNEL_PARTIAL_RELIABLE_TIMED:
    case DCEP_CHANNEL_PARTIAL_RELIABLE_TIMED_UNORDERED:
        return 1;
    default:
        return 0;
    }
}

int dcep_parse(const uint8_t *buf, size_t len, dcep_message *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (buf == NULL || len == 0) {
        err_set(err, errlen, "empty DCEP message");
        return -1;
    }
    out->type = buf[0];
    if (buf[0] == DCEP_MSG_ACK) {
        if (len != 1) {
            err_set(err, errlen, "DATA_CHANNEL_ACK must be one byte, got %zu", len);
            return -1;
        }
        return 0;
    }
    if (buf[0] != DCEP_MSG_OPEN) {
        err_set(err, errlen, "unknown DCEP message type 0x%02x", buf[0]);
        return -1;
    }
    if (len < DCEP_OPEN_HEADER_SIZE) {
        err_set(err, errlen, "DATA_CHANNEL_OPEN shorter than its header");
        return -1;
    }
    out->channel_type = buf[1];
    if (!known_channel_type(out->channel_type)) {
        err_set(err, errlen, "unknown channel type 0x%02x", out->channel_type);
        return -1;
    }
    out->priority = get16(buf + 2);
    out->reliability = get32(buf + 4);
    out->label_len = get16(buf + 8);
    out->protocol_len = get16(buf + 10);
    if ((size_t)DCEP_OPEN_HEADER_SIZE + out->label_len + out->protocol_len != len) {
        err_set(err, errlen, "DATA_CHANNEL_OPEN lengths do not match its size");
        return -1;
    }
    out->label = buf + DCEP_OPEN_HEADER_SIZE;
    out->protocol = out->label + out->label_len;
    return 0;
}

int dcep_write_open(uint8_t *buf, size_t cap, uint8_t channel_type, uint16_t priority,
                    uint32_t reliability, const char *label, const char *protocol)
{
    size_t ll = strlen(label), pl = strlen(protocol);
    if (ll > 0xffff || pl > 0xffff || cap < DCEP_OPEN_HEADER_SIZE + ll + pl)
        return -1;
    buf[0] = DCEP_MSG_OPEN;
    buf[1] = channel_type;
    put16(buf + 2, priority);
    put32(buf + 4, reliability);
    put16(buf + 8, (uint16_t)ll);
    put16(buf + 10, (uint16_t)pl);
    memcpy(buf + DCEP_OPEN_HEADER_SIZE, label, ll);
    memcpy(buf + DCEP_OPEN_HEADER_SIZE + ll, protocol, pl);
    return (int)(DCEP_OPEN_HEADER_SIZE + ll + pl);
}

int dcep_write_ack(uint8_t *buf, size_t cap)
{
    if (cap < 1)
        return -1;
    buf[0] = DCEP_MSG_ACK;
    return 1;
}
