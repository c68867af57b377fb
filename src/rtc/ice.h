/*
 * ice — the ICE half of a peer (rtc/peer.c), behind one interface with two
 * implementations:
 *
 *   ice_nice.c   a libnice agent and a UDP socket per peer, full ICE: the
 *                v1 transport (chatd --rtc-port 0), and what clients use
 *                towards full-ICE servers such as Janus;
 *   mux.c        every peer of a loop on one shared UDP socket: chatd
 *                answers as ICE-lite on --rtc-port; a client is the
 *                controlling agent towards an ICE-lite server.
 *
 * The ICE half finds a path and carries datagrams; DTLS, SCTP and DCEP
 * above it are the peer's. What it delivers up (`input`) is every datagram
 * that is not STUN (RFC 7983: DTLS is 20..63; the peer checks).
 *
 * Threading: new, set_remote and free run on the peer's loop thread, and
 * every callback runs there; send is safe from any thread.
 * Ownership: the peer owns its rtc_ice; after rtc_ice_free returns no
 * callback runs.
 */
#ifndef CHATD_ICE_H
#define CHATD_ICE_H

#include "rtc/loop.h"
#include "rtc/peer.h"
#include "rtc/sdp.h"

#include <stddef.h>
#include <stdint.h>

typedef struct rtc_ice rtc_ice;

typedef struct {
    /* A path works: DTLS may flow (called once). */
    void (*connected)(void *arg);
    /* ICE failed, or consent was lost once connected. */
    void (*failed)(void *arg, const char *why);
    /* A datagram that is not STUN. */
    void (*input)(void *arg, const uint8_t *data, size_t len);
} rtc_ice_callbacks;

typedef struct {
    rtc_loop *loop;
    int controlling;                  /* the offering client */
    int local_client;                 /* see rtc_peer_config */
    const char *const *ice_addresses; /* NULL-terminated; NULL = every interface */
    const char *peer_id;              /* for the log */
    const rtc_ice_callbacks *cb;
    void *arg;
} rtc_ice_config;

typedef struct rtc_ice_ops {
    rtc_ice *(*create)(const rtc_ice_config *cfg, sdp_description *local, char *err, size_t errlen);
    int (*set_remote)(rtc_ice *ice, const sdp_description *remote, char *err, size_t errlen);
    void (*send)(rtc_ice *ice, const uint8_t *data, size_t len);
    int (*is_connected)(rtc_ice *ice);
    void (*free)(rtc_ice *ice);
} rtc_ice_ops;

/* Every implementation's handle starts with its ops. */
struct rtc_ice {
    const rtc_ice_ops *ops;
};

extern const rtc_ice_ops rtc_ice_nice_ops;
extern const rtc_ice_ops rtc_ice_mux_ops;

/* Loop thread. Creates the ICE half: local credentials and candidates are
 * written into `local` (ice_ufrag, ice_pwd, candidates, conn_address,
 * conn_port, ice_lite). NULL with err on failure. */
static inline rtc_ice *rtc_ice_new(rtc_transport t, const rtc_ice_config *cfg,
                                   sdp_description *local, char *err, size_t errlen)
{
    const rtc_ice_ops *ops = t == RTC_TRANSPORT_MUX ? &rtc_ice_mux_ops : &rtc_ice_nice_ops;
    return ops->create(cfg, local, err, errlen);
}
/* Loop thread: the remote's credentials and candidates. */
static inline int rtc_ice_set_remote(rtc_ice *ice, const sdp_description *remote, char *err,
                                     size_t errlen)
{
    return ice->ops->set_remote(ice, remote, err, errlen);
}
/* Any thread: one datagram on the working path (dropped before there is one;
 * the peer keeps DTLS's early flight until `connected`). */
static inline void rtc_ice_send(rtc_ice *ice, const uint8_t *data, size_t len)
{
    ice->ops->send(ice, data, len);
}
static inline int rtc_ice_is_connected(rtc_ice *ice) { return ice->ops->is_connected(ice); }
static inline void rtc_ice_free(rtc_ice *ice)
{
    if (ice)
        ice->ops->free(ice);
}

#endif
