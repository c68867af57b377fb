/* libFuzzer target: the SDP parser on arbitrary bytes, and a write of
 * whatever it accepted (which must parse again). */
#include "rtc/sdp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sdp_description d, again;
    char err[256];
    if (sdp_parse((const char *)data, size, &d, err, sizeof err) != 0)
        return 0;
    static char buf[SDP_MAX_SIZE * 2];
    int n = sdp_write(&d, buf, sizeof buf);
    if (n > 0 && sdp_parse(buf, (size_t)n, &again, err, sizeof err) != 0)
        abort(); /* what we write we must read */
    return 0;
}
