/*
 * addrrate — a token bucket per remote address, in a table of fixed size:
 * the offer rate limit (--offer-rate N: N offers a second per address,
 * burst 4×N) that stands in front of every expensive step of POST
 * /api/rtc.
 *
 * The table is allocated once (ADDR_RATE_SETS × ADDR_RATE_WAYS entries,
 * about 200 KiB) and a request costs no allocation: the key is hashed
 * (with a per-process random seed, so a stranger cannot aim every address
 * at one set) to a set of ADDR_RATE_WAYS entries. Policy when that set is
 * full: the entry used least recently is replaced. An entry idle for
 * burst/rate seconds is full again, so evicting it loses nothing; only an
 * address whose entry is evicted while it is still paying for a burst gets
 * a fresh burst, which takes more than ADDR_RATE_WAYS addresses busy in the
 * same set at once. --max-pending is the backstop for that case.
 *
 * Keys are strings: the HTTP server gives the IPv4 address, or the /64
 * prefix of an IPv6 address (one machine usually holds a whole /64).
 *
 * Threading: every function is safe from any thread (one mutex, held for
 * a few instructions, never across I/O). Ownership: the caller owns the
 * table; keys are not kept (only their hash).
 */
#ifndef CHATD_APP_ADDRRATE_H
#define CHATD_APP_ADDRRATE_H

#include <stdint.h>

#define ADDR_RATE_SETS 1024
#define ADDR_RATE_WAYS 8

typedef struct addr_rate addr_rate;

/* rate tokens a second, at most burst saved up. NULL when out of memory. */
addr_rate *addr_rate_new(double rate, double burst);
void addr_rate_free(addr_rate *t);

/* Takes one token for key at now_us (the monotonic clock). Returns 0 when
 * allowed, or the whole seconds (>= 1) until one token is back: the
 * Retry-After value. */
int addr_rate_take(addr_rate *t, const char *key, int64_t now_us);

#endif
