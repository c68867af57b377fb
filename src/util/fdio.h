/*
 * fdio — reading a whole buffer from a file descriptor: the loop every
 * file read needs (short reads, EINTR), once.
 *
 * Threading: no shared state. Ownership: buf is the caller's.
 */
#ifndef CHATD_FDIO_H
#define CHATD_FDIO_H

#include <stddef.h>

/* Reads until n bytes are in buf, end of file or an error (EINTR is
 * retried). Returns how many bytes were read: fewer than n means end of
 * file or an error. */
size_t fdio_read_full(int fd, void *buf, size_t n);

#endif
