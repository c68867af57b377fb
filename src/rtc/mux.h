/*
 * mux — every peer of a loop on one shared UDP socket: the ICE half
 * (rtc_ice_mux_ops, see ice.h) of transport v2.
 *
 * Server side (chatd, --rtc-port): each event loop has its own UDP socket
 * bound to the same port with SO_REUSEPORT, so the kernel hands all the
 * datagrams of one 5-tuple to one loop and no socket is shared between
 * threads. chatd is ICE-lite (RFC 8445 §2.5): it sends no checks, it
 * answers them, and it learns each client's address (peer-reflexive
 * included) from the first check that carries the right USERNAME and
 * MESSAGE-INTEGRITY. Datagrams are demultiplexed by their 5-tuple; a STUN
 * Binding request from a new 5-tuple is routed by the local ufrag in its
 * USERNAME. Anything else from an unknown address is dropped and counted.
 * A peer belongs to the loop it was placed on at the offer; when the
 * kernel's choice of socket differs, that loop forwards the datagram to
 * the owner through a bounded inbox (full: dropped and counted, as the
 * network would). A peer whose checks stop for consent_timeout_ms (RFC
 * 7675: browsers send one about every 5 s) is closed.
 *
 * Client side (chat-client, chat-bench towards chatd): the controlling
 * agent towards an ICE-lite server: one UDP socket per peer (a server
 * demultiplexes by 5-tuple, so peers must differ in theirs), every socket
 * of a loop watched through one epoll descriptor; checks with USE-CANDIDATE
 * to the server's candidates until one answers, then a consent check every
 * 4-6 s.
 *
 * Batching: each loop reads with recvmmsg; what the loop's own thread sends
 * while it handles a batch (the fan-out of the messages it just read, the
 * answers to checks) is queued and leaves in sendmmsg calls at the end of
 * the batch, or when the queue is full. Other threads send at once.
 *
 * Timers (consent, check retransmission) are rtc_timers on the loop's heap.
 *
 * Threading: start and stop from the main thread with no peer alive;
 * rtc_mux_get_stats from any thread.
 */
#ifndef CHATD_MUX_H
#define CHATD_MUX_H

#include "rtc/icetcp.h"
#include "rtc/loop.h"

#include <stddef.h>
#include <stdint.h>

#define MUX_CONSENT_TIMEOUT_MS 30000
#define MUX_MAX_PUBLIC_ADDRESSES 8

typedef struct {
    /* UDP port every peer shares; 0: clients only, no server socket. */
    uint16_t port;
    /* Host candidate addresses (IPv4); NULL or empty: every interface. */
    const char *const *ice_addresses;
    /* 1:1 NAT: "PUBLIC" (advertised instead of every non-loopback local
     * address) or "LOCAL=PUBLIC"; NULL-terminated, NULL = none. */
    const char *const *public_addresses;
    int consent_timeout_ms; /* 0 = MUX_CONSENT_TIMEOUT_MS */
    /* ICE-TCP (RFC 6544, icetcp.h): passive candidates on this TCP port
     * next to the UDP ones; 0 = off. Needs port. */
    uint16_t tcp_port;
} rtc_mux_config;

/* Binds the sockets (one per loop) and attaches them. -1 with err (port in
 * use, a bad address). */
int rtc_mux_start(rtc_loops *loops, const rtc_mux_config *cfg, char *err, size_t errlen);
/* Detaches and closes everything; no peer may be alive. */
void rtc_mux_stop(void);
/* Whether rtc_mux_start has run. */
int rtc_mux_running(void);

typedef struct {
    unsigned long rx_datagrams, tx_datagrams;
    unsigned long rx_calls, tx_calls; /* recvmmsg / sendmmsg + sendmsg calls */
    unsigned long forwarded;          /* handed to the owner loop */
    /* dropped, by reason */
    unsigned long drop_unknown_source;   /* not STUN, from no known 5-tuple */
    unsigned long drop_bad_stun;         /* malformed, or no FINGERPRINT/MESSAGE-INTEGRITY */
    unsigned long drop_unknown_username; /* no peer has that ufrag */
    unsigned long drop_bad_integrity;    /* wrong MESSAGE-INTEGRITY or remote ufrag */
    unsigned long drop_inbox_full;       /* the owner loop's inbox was full */
    unsigned long consent_expired;       /* peers closed for silence */
    icetcp_stats tcp;                    /* ICE-TCP connections, refusals and closes */
} rtc_mux_stats;

rtc_mux_stats rtc_mux_get_stats(void);

/* Handles one datagram on l's thread, as if l's socket had read it from
 * `from` (AF_INET) sent to local_ip (network order): the fuzz target's and
 * the tests' way in. Waits for it; never call it from l's own thread. */
void rtc_mux_inject(rtc_loop *l, const void *from_sockaddr_in, uint32_t local_ip,
                    const uint8_t *data, size_t len);

/* Loop thread: runs fn() as if in a batch (its sends leave together). */
void rtc_mux_run_batched(rtc_loop *l, void (*fn)(void));

/* Whether the calling thread is a loop handling a batch of input (its sends
 * then leave together at the end of the batch). */
int rtc_mux_batching(void);
/* fn runs at the end of each batch, on that loop, before the queued
 * datagrams leave: the peer layer flushes what it held back to bundle.
 * Set once at start. */
void rtc_mux_set_batch_end(void (*fn)(void));

#endif
