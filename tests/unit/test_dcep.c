/* Unit tests: DCEP (RFC 8832) encoding and decoding. */
#include "rtc/dcep.h"

#include <criterion/criterion.h>
#include <string.h>

Test(dcep, open_round_trip)
{
    uint8_t buf[64];
    int n = dcep_write_open(buf, sizeof buf, DCEP_CHANNEL_RELIABLE, 256, 0, "chat", "proto");
    cr_assert_eq(n, 12 + 4 + 5);
    cr_assert_eq(buf[0], DCEP_MSG_OPEN);
    dcep_message m;
    char err[128];
    cr_assert_eq(dcep_parse(buf, (size_t)n, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.type, DCEP_MSG_OPEN);
    cr_assert_eq(m.channel_type, DCEP_CHANNEL_RELIABLE);
    cr_assert_eq(m.priority, 256);
    cr_assert_eq(m.label_len, 4);
    cr_assert_eq(memcmp(m.label, "chat", 4), 0);
    cr_assert_eq(m.protocol_len, 5);
    cr_assert_eq(memcmp(m.protocol, "proto", 5), 0);
}

Test(dcep, parses_browser_open_bytes)
{
    /* What Chromium sends for createDataChannel("chat"): reliable, priority
     * 256, label "chat", no protocol. Big-endian fields. */
    const uint8_t wire[] = {0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
                            0x00, 0x04, 0x00, 0x00, 'c',  'h',  'a',  't'};
    dcep_message m;
    char err[128];
    cr_assert_eq(dcep_parse(wire, sizeof wire, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.priority, 256);
    cr_assert_eq(m.label_len, 4);
    cr_assert_eq(m.protocol_len, 0);
}

Test(dcep, partial_reliability_fields)
{
    uint8_t buf[32];
    int n = dcep_write_open(buf, sizeof buf, DCEP_CHANNEL_PARTIAL_RELIABLE_REXMIT_UNORDERED, 0,
                            0x01020304, "", "");
    dcep_message m;
    char err[128];
    cr_assert_eq(dcep_parse(buf, (size_t)n, &m, err, sizeof err), 0);
    cr_assert_eq(m.reliability, 0x01020304u);
    cr_assert_eq(m.channel_type, 0x81);
}

Test(dcep, ack)
{
    uint8_t b[1];
    cr_assert_eq(dcep_write_ack(b, 1), 1);
    cr_assert_eq(dcep_write_ack(b, 0), -1);
    dcep_message m;
    char err[128];
    cr_assert_eq(dcep_parse(b, 1, &m, err, sizeof err), 0);
    cr_assert_eq(m.type, DCEP_MSG_ACK);
    const uint8_t long_ack[] = {0x02, 0x00};
    cr_assert_eq(dcep_parse(long_ack, 2, &m, err, sizeof err), -1);
}

Test(dcep, rejects_malformed)
{
    dcep_message m;
    char err[128];
    cr_assert_eq(dcep_parse(NULL, 0, &m, err, sizeof err), -1);
    const uint8_t unknown[] = {0x07};
    cr_assert_eq(dcep_parse(unknown, 1, &m, err, sizeof err), -1);
    cr_assert(strstr(err, "unknown") != NULL);
    const uint8_t short_open[] = {0x03, 0x00, 0x00};
    cr_assert_eq(dcep_parse(short_open, sizeof short_open, &m, err, sizeof err), -1);
    /* label length claims more bytes than present */
    const uint8_t lying[] = {0x03, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x10, 0, 0, 'a'};
    cr_assert_eq(dcep_parse(lying, sizeof lying, &m, err, sizeof err), -1);
    /* trailing bytes beyond label+protocol */
    const uint8_t trailing[] = {0x03, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01, 0, 0, 'a', 'b'};
    cr_assert_eq(dcep_parse(trailing, sizeof trailing, &m, err, sizeof err), -1);
    const uint8_t bad_type[] = {0x03, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(dcep_parse(bad_type, sizeof bad_type, &m, err, sizeof err), -1);
    /* encoder refuses a buffer that is too small */
    uint8_t small[8];
    cr_assert_eq(dcep_write_open(small, sizeof small, 0, 0, 0, "chat", ""), -1);
}
