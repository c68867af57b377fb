/* libFuzzer target: the DCEP parser; an accepted OPEN must re-encode to
 * the same bytes. */
#include "rtc/dcep.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dcep_message m;
    char err[128];
    if (dcep_parse(data, size, &m, err, sizeof err) != 0 || m.type != DCEP_MSG_OPEN)
        return 0;
    char label[65536], proto[65536];
    memcpy(label, m.label, m.label_len);
    label[m.label_len] = '\0';
    memcpy(proto, m.protocol, m.protocol_len);
    proto[m.protocol_len] = '\0';
    if (memchr(label, '\0', m.label_len) || memchr(proto, '\0', m.protocol_len))
        return 0; /* embedded NULs: the C-string encoder cannot express them */
    static uint8_t out[200000];
    int n =
        dcep_write_open(out, sizeof out, m.channel_type, m.priority, m.reliability, label, proto);
    if (n != (int)size || memcmp(out, data, size) != 0)
        abort();
    return 0;
}
