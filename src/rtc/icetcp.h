/*
 * icetcp — ICE-TCP passive candidates (RFC 6544) for the one-port
 * transport: the TCP half of mux.c, behind a small internal interface
 * that only mux.c uses (chatd --ice-tcp-port).
 *
 * Each event loop has its own listening socket bound to the port with
 * SO_REUSEPORT, and an epoll descriptor of its own for the listener, its
 * connections and a hand-off eventfd; mux.c's loop source polls that
 * descriptor inside the loop's epoll, so TCP input is handled in the same
 * batch as UDP input. Every packet on a connection is framed as RFC 4571
 * says: a 2-byte big-endian length, then one STUN or DTLS packet.
 *
 * A connection is a stranger until its first frame is a STUN Binding
 * request that mux.c accepts for one of its peers (the same checks as on
 * UDP: USERNAME with our ufrag, MESSAGE-INTEGRITY, FINGERPRINT). The check
 * is answered over the connection, and the connection becomes one of that
 * peer's paths (the one its sends take once nominated with USE-CANDIDATE,
 * or while it has no other path). Later frames: STUN is a consent check
 * for the same peer, anything else goes up as input (DTLS).
 *
 * What a stranger can make chatd hold is bounded before anything is
 * allocated for it: ICETCP_MAX_STRANGERS connections at once in the
 * process, ICETCP_MAX_PER_ADDRESS per remote address (over either, the
 * connection is closed as soon as it is accepted), ICETCP_AUTH_TIMEOUT_MS
 * to send a valid check, and its first frame must be that check. A frame
 * over ICETCP_MAX_FRAME closes any connection. Each connection queues at
 * most ICETCP_WRITE_BUFFER bytes that the kernel did not take; past that
 * it is closed (its peer loses that path, with the reason logged) rather
 * than block or grow. A peer keeps at most ICETCP_PER_PEER connections
 * (a newer one replaces the oldest that is not its path), and they close
 * when the peer is freed.
 *
 * Ownership: a connection belongs to its peer's loop. One accepted on
 * another loop (the kernel picks the listener) is handed to the owner
 * through that loop's hand-off list, which is bounded because only
 * strangers move.
 *
 * Threading: icetcp_start and icetcp_stop on the main thread (stop with
 * no peer alive, while the loops still run); icetcp_send from any thread,
 * with the peer's path lock held (mux.c) for a connection that is a
 * peer's path, which is what keeps it alive under the caller; everything
 * else on the connection's loop.
 */
#ifndef CHATD_ICETCP_H
#define CHATD_ICETCP_H

#include "rtc/loop.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define ICETCP_MAX_STRANGERS 256
#define ICETCP_MAX_PER_ADDRESS 8
#define ICETCP_AUTH_TIMEOUT_MS 5000
#define ICETCP_MAX_FRAME 2048
#define ICETCP_WRITE_BUFFER (256 * 1024)
#define ICETCP_PER_PEER 4

typedef struct icetcp_conn icetcp_conn;

/* The connections of one peer (embedded in mux.c's peer, zeroed). */
typedef struct {
    icetcp_conn *conn[ICETCP_PER_PEER];
    int next; /* the slot a newer connection tries first */
} icetcp_peer;

typedef struct {
    unsigned long accepted, open, strangers; /* open and strangers: gauges */
    unsigned long rx_frames, tx_frames, handed_off;
    unsigned long refused_total, refused_address; /* over the caps at accept */
    /* closed, by reason */
    unsigned long closed_bad_stun, closed_unknown_username, closed_bad_integrity;
    unsigned long closed_oversize, closed_timeout, closed_write_full;
    unsigned long dropped_frames; /* a bad STUN frame on an accepted connection */
} icetcp_stats;

/* ---- what mux.c calls ---- */

/* Main thread: one listener per loop on port. -1 with err. */
int icetcp_start(rtc_loops *loops, uint16_t port, char *err, size_t errlen);
/* Main thread, loops running, no peer alive: closes everything. On each
 * loop's thread first, unwatch(loop, fd) takes icetcp_loop_fd(loop) out
 * of the caller's poller. */
void icetcp_stop(void (*unwatch)(int loop, int fd));
/* The port, 0 when off. */
uint16_t icetcp_port(void);
/* The descriptor mux.c's poller watches for loop i (-1 when off). */
int icetcp_loop_fd(int loop);
/* Loop thread: handles what is ready on that loop. */
void icetcp_dispatch(int loop);
/* Sends one packet framed; see Threading. Never blocks. */
void icetcp_send(icetcp_conn *c, const uint8_t *data, size_t len);
/* Owner loop: c (which just passed its first check for ice) becomes one of
 * p's connections; `path` is the one the peer sends on now (never the one
 * replaced). */
void icetcp_attach(icetcp_peer *p, icetcp_conn *c, void *ice, const icetcp_conn *path);
/* Owner loop: the peer is being freed; its connections close. */
void icetcp_peer_close(icetcp_peer *p);
icetcp_stats icetcp_get_stats(void);

/* ---- what mux.c provides ---- */

typedef enum {
    MUX_TCP_OK,
    MUX_TCP_OTHER_LOOP, /* the peer is another loop's: *owner says which */
    MUX_TCP_BAD_STUN,   /* not a Binding request with USERNAME, M-I and FINGERPRINT */
    MUX_TCP_UNKNOWN_USERNAME,
    MUX_TCP_BAD_INTEGRITY, /* wrong password or remote ufrag, or another peer's */
} mux_tcp_result;

/* Loop `loop`: a STUN frame on connection c from remote. known: the peer
 * c belongs to (NULL for a stranger). On MUX_TCP_OK the check was
 * answered over c, a stranger was attached (icetcp_attach) and the path
 * may have moved to c. */
mux_tcp_result mux_tcp_check(int loop, icetcp_conn *c, void *known,
                             const struct sockaddr_in *remote, const uint8_t *data, size_t len,
                             int *owner);
/* Owner loop: a frame that is not STUN, for the peer. */
void mux_tcp_input(void *ice, const uint8_t *data, size_t len);
/* Owner loop: c is closing; the peer stops sending on it. */
void mux_tcp_unpath(void *ice, const icetcp_conn *c);

#endif
