/*
 * peer — one WebRTC data-channel peer connection. This header is all the
 * rest of chatd (and chat-client, chat-bench) sees of the transport.
 *
 *   rtc_init()                  once per process
 *   rtc_peer_answer()           chatd: offer in, answer out (non-trickle)
 *   rtc_peer_offer()            clients: make an offer ...
 *   rtc_peer_set_answer()       ... and apply the answer
 *   on_open / on_message / on_close callbacks
 *   rtc_peer_send_text() / rtc_peer_close()
 *   rtc_get_stats()             live objects, for /metrics and leak checks
 *
 * Underneath: ICE (libnice), DTLS 1.2 (OpenSSL 3, fingerprint checked
 * against the SDP), SCTP (usrsctp over AF_CONN) and DCEP (RFC 8832), for a
 * single reliable ordered channel. The same code answers or offers, in
 * either DTLS role.
 *
 * Threading: every callback of a peer runs on that peer's event loop
 * (loop.h). Sending and closing are safe from any thread. Creating a peer
 * must not be done from the loop it is placed on (it waits for that loop).
 *
 * Ownership: a peer lives until its on_close callback has returned; hold a
 * reference (rtc_peer_ref/unref) to use its pointer after that.
 */
#ifndef CHATD_PEER_H
#define CHATD_PEER_H

#include "rtc/loop.h"

#include <stddef.h>
#include <stdint.h>

typedef struct rtc_peer rtc_peer;

/* A peer whose channel is not open this long after it was created is
 * closed (rtc_peer_config.setup_timeout_ms overrides it). */
#define RTC_SETUP_TIMEOUT_MS 10000
/* Remote candidates an answer uses at most: chatd sends connectivity checks
 * to each one, so an offer must not turn it into a packet cannon aimed at
 * whatever addresses the offer lists. Further candidates are ignored (not
 * refused: a browser on a machine with many interfaces lists more, and the
 * first ones are its best). */
#define RTC_MAX_REMOTE_CANDIDATES 8

typedef enum {
    RTC_SETUP_AUTO = 0, /* offer: actpass; answer: active (we are the DTLS client) */
    RTC_SETUP_ACTIVE,   /* we send the ClientHello */
    RTC_SETUP_PASSIVE   /* we wait for it */
} rtc_setup;

typedef struct {
    void (*on_open)(rtc_peer *p, void *user);
    void (*on_message)(rtc_peer *p, const uint8_t *data, size_t len, int binary, void *user);
    /* A message over max_message_size arrived and was dropped. Optional. */
    void (*on_oversize)(rtc_peer *p, size_t len, void *user);
    /* Exactly once, also when the channel never opened. */
    void (*on_close)(rtc_peer *p, const char *reason, void *user);
} rtc_peer_callbacks;

typedef enum {
    /* One libnice agent and UDP socket per peer, full ICE (v1; chatd with
     * --rtc-port 0, and clients of full-ICE servers such as Janus). */
    RTC_TRANSPORT_NICE = 0,
    /* Every peer of a loop on one shared UDP socket (mux.h): chatd answers
     * as ICE-lite on --rtc-port; a client is the controlling agent towards
     * an ICE-lite server. */
    RTC_TRANSPORT_MUX,
} rtc_transport;

typedef struct {
    rtc_loops *loops; /* the peer runs on the least loaded one */
    rtc_transport transport;
    const char *const *ice_addresses; /* NULL-terminated; NULL = every interface */
    /* Answering an offer from this machine (it came over loopback): with no
     * ice_addresses, gather on loopback too; and accept the offer's
     * loopback candidates. Without it an answerer drops them: a remote
     * offer must not point chatd's checks at its own local services. */
    int local_client;
    size_t max_message_size; /* largest message accepted; 0 = LIMIT_MESSAGE_BYTES */
    rtc_setup setup;         /* DTLS role preference */
    int setup_timeout_ms;    /* close if not open by then; 0 = RTC_SETUP_TIMEOUT_MS */
    const char *label;       /* label of the channel we open; NULL = "chat" */
    /* Answering, open the channel ourselves: a server that makes the offer
     * but waits for its client's channel (Janus) needs this. The offerer
     * always opens it. */
    int answerer_opens_channel;
    const rtc_peer_callbacks *cb;
    void *user;
} rtc_peer_config;

/* Once per process: DTLS certificate and the SCTP stack. */
int rtc_init(char *err, size_t errlen);
void rtc_shutdown(void);
typedef enum {
    RTC_ANSWER_OK = 0,
    RTC_ANSWER_FAILED = -1,    /* our side: no memory, no loop, ICE setup; err says why */
    RTC_ANSWER_BAD_OFFER = -2, /* the offer itself is bad (HTTP 400 BAD_SDP); err says why */
} rtc_answer_status;

/* Answers an offer. On RTC_ANSWER_OK, *out is the new peer with one
 * reference for the caller (rtc_peer_unref) and *answer a NUL-terminated SDP
 * to free with rtc_free(). */
rtc_answer_status rtc_peer_answer(const rtc_peer_config *cfg, const char *offer, size_t len,
                                  rtc_peer **out, char **answer, char *err, size_t errlen);
/* Parses an offer without creating anything: RTC_ANSWER_OK, or
 * RTC_ANSWER_BAD_OFFER with err saying why (RTC_ANSWER_FAILED: no memory).
 * Admission control calls it so that a bad offer costs nothing more. */
rtc_answer_status rtc_offer_check(const char *offer, size_t len, char *err, size_t errlen);
/* Makes an offer (the offerer opens the channel once connected). With
 * RTC_TRANSPORT_MUX the first such offer starts the shared-socket client
 * transport on cfg->loops (see rtc_transport_stop). */
int rtc_peer_offer(const rtc_peer_config *cfg, rtc_peer **out, char **offer, char *err,
                   size_t errlen);
int rtc_peer_set_answer(rtc_peer *p, const char *answer, size_t len, char *err, size_t errlen);
void rtc_free(void *p);
/* Stops the shared-socket transport (chatd's --rtc-port, or a client's);
 * no peer may be alive. Call before rtc_loops_free; harmless when it never
 * started. */
void rtc_transport_stop(void);

/* Queue a message. Returns 0, or -1 with errno: EMSGSIZE over the remote's
 * limit (not sent; the first per peer is logged), ENOTCONN when the channel
 * is not open or a close was requested, ENOBUFS when the peer is so far
 * behind that its queue is over its limit or the process budget is spent:
 * the peer is then being closed, with the reason logged. */
int rtc_peer_send_text(rtc_peer *p, const char *text, size_t len);

/* The bounds of chatd's own send queues (what usrsctp has not taken yet):
 * per_peer bytes for one peer (--peer-queue-bytes), total for every peer
 * together; 0 keeps the default (LIMIT_PEER_QUEUE_BYTES,
 * LIMIT_QUEUE_TOTAL_BYTES). Set once at start, before any peer exists. */
void rtc_set_send_limits(size_t per_peer, size_t total);
/* Bytes queued for every peer together (for /metrics and tests). */
size_t rtc_queued_total(void);

/* Closes now (abort). on_close follows on the peer's loop. */
void rtc_peer_close(rtc_peer *p, const char *reason);
/* Closes gracefully: everything queued is delivered first, then the SCTP
 * association shuts down; on_close("closed") follows. */
void rtc_peer_close_gracefully(rtc_peer *p);

const char *rtc_peer_id(const rtc_peer *p);
int rtc_peer_is_open(rtc_peer *p);
/* Largest message this peer's remote accepts. */
size_t rtc_peer_max_send(const rtc_peer *p);
/* Bytes waiting in chatd's own queue for this peer. */
size_t rtc_peer_queued_bytes(rtc_peer *p);
void *rtc_peer_user(const rtc_peer *p);

/* The loop the peer runs on (for timers and posting work to it). */
rtc_loop *rtc_peer_loop(const rtc_peer *p);

rtc_peer *rtc_peer_ref(rtc_peer *p);
void rtc_peer_unref(rtc_peer *p);

/* Finds a live peer by id; returns a reference, or NULL. */
rtc_peer *rtc_peer_find(const char *id);
/* Closes every live peer (server shutdown). */
void rtc_peer_close_all(const char *reason);
typedef struct {
    long peer_objects;      /* peers created and not yet freed */
    long sctp_associations; /* SCTP associations alive */
    long pending_answers;   /* answered peers whose channel is not open yet (--max-pending) */
    /* The one-port transport (all zero under --rtc-port 0): datagrams and
     * the system calls that moved them, datagrams handed between loops,
     * peers closed for silence, and datagrams dropped, by reason. */
    unsigned long udp_rx, udp_tx, udp_rx_calls, udp_tx_calls, udp_forwarded, consent_expired;
    unsigned long dropped_unknown_source;   /* not STUN, from no known address */
    unsigned long dropped_bad_stun;         /* malformed STUN, or a check without integrity */
    unsigned long dropped_unknown_username; /* a check for no peer */
    unsigned long dropped_bad_integrity;    /* a check with the wrong password or username */
    unsigned long dropped_inbox_full;       /* another loop's inbox was full */
    /* ICE-TCP (--ice-tcp-port; all zero when off): connections accepted and
     * open now (gauge), strangers (no valid check yet, gauge), frames, and
     * the connections refused at accept or closed, by reason. */
    unsigned long tcp_accepted, tcp_open, tcp_strangers, tcp_handed_off, tcp_rx_frames,
        tcp_tx_frames;
    unsigned long tcp_refused_total;   /* ICETCP_MAX_STRANGERS strangers already */
    unsigned long tcp_refused_address; /* ICETCP_MAX_PER_ADDRESS from that address already */
    unsigned long tcp_closed_bad_stun; /* first frame not an ICE check */
    unsigned long tcp_closed_unknown_username, tcp_closed_bad_integrity;
    unsigned long tcp_closed_oversize;   /* a frame over 2 KiB */
    unsigned long tcp_closed_timeout;    /* no valid check in time */
    unsigned long tcp_closed_write_full; /* the remote did not read */
    unsigned long tcp_dropped_frames;    /* a bad check on an accepted connection */
} rtc_stats;
/* Live transport objects: the /metrics gauges and the leak checks. */
rtc_stats rtc_get_stats(void);

#endif
