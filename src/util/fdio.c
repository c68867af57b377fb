/*
 * fdio — see fdio.h.
 */
#include "util/fdio.h"

#include <errno.h>
#include <unistd.h>

size_t fdio_read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}
