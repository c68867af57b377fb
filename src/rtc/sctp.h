/*
 * sctp — SCTP associations (usrsctp over AF_CONN) carried inside DTLS.
 *
 * usrsctp is a userland SCTP stack with its own timer thread. Packets it
 * wants to send leave through the `output` callback (to be written into the
 * peer's DTLS connection); packets received from DTLS go in through
 * rtc_sctp_input(). usrsctp may call `output` and `wake` from its timer
 * thread as well as from the caller's thread, so both are looked up by id in
 * a registry and guarded by a per-association lock that rtc_sctp_close()
 * takes: after close returns, no callback runs for that association again.
 *
 * Receiving is pull-based: `wake` only says "something happened"; the owner
 * then calls rtc_sctp_drain() on its own thread, which delivers messages and
 * events through the other callbacks. That keeps every delivery on the
 * owner's event loop.
 *
 * Threading: rtc_sctp_send() is safe from any thread; drain, input, close
 * and reset belong to the owner's thread.
 */
#ifndef CHATD_SCTP_H
#define CHATD_SCTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct rtc_sctp rtc_sctp;

typedef struct {
    /* Any thread. An SCTP packet to send through DTLS. */
    void (*output)(void *arg, const uint8_t *packet, size_t len);
    /* Any thread, possibly with usrsctp locks held: schedule a drain; do not
     * call into usrsctp from here. */
    void (*wake)(void *arg);
    /* Owner thread, from rtc_sctp_drain(): */
    void (*connected)(void *arg);
    void (*message)(void *arg, uint16_t stream, uint32_t ppid, const uint8_t *data, size_t len);
    void (*oversize)(void *arg, uint16_t stream, size_t len); /* dropped: over the cap */
    void (*stream_reset)(void *arg, uint16_t stream);         /* remote closed its stream */
    /* The remote performed our reset of `stream` (rtc_sctp_reset_stream):
     * it has received everything we sent on it. Optional (may be NULL). */
    void (*reset_done)(void *arg, uint16_t stream);
    void (*writable)(void *arg);                   /* send space freed */
    void (*closed)(void *arg, const char *reason); /* association ended */
} rtc_sctp_callbacks;

/* Once per process, before any association; rtc_sctp_global_finish() at exit. */
int rtc_sctp_global_init(void);
void rtc_sctp_global_finish(void);
/* Live associations (for leak checks). */
long rtc_sctp_live_count(void);

/* Creates the socket, binds local_port and starts connecting to
 * remote_port (simultaneous open: both sides connect). max_message caps a
 * reassembled message. NULL + err on failure. */
rtc_sctp *rtc_sctp_new(uint16_t local_port, uint16_t remote_port, size_t max_message,
                       const rtc_sctp_callbacks *cb, void *arg, char *err, size_t errlen);
/* One DTLS plaintext record (an SCTP packet). */
void rtc_sctp_input(rtc_sctp *s, const uint8_t *packet, size_t len);
/* Reads everything available and delivers it through the callbacks. */
void rtc_sctp_drain(rtc_sctp *s);
/* Sends one message. Returns 0, or -1 with errno (EWOULDBLOCK when the send
 * buffer is full: retry after `writable`; ENOTCONN when closed). */
int rtc_sctp_send(rtc_sctp *s, uint16_t stream, uint32_t ppid, const uint8_t *data, size_t len);
/* Nagle off (on = 1, the default) or on (0): with it on, usrsctp holds
 * small messages while data is in flight, so the next send with it off
 * again leaves them bundled into as few packets as fit. */
int rtc_sctp_set_nodelay(rtc_sctp *s, int on);
/* Resets our outgoing stream (how a data channel is closed, RFC 8831 §6.7). */
int rtc_sctp_reset_stream(rtc_sctp *s, uint16_t stream);
/* Graceful SCTP shutdown: everything sent is delivered first. */
int rtc_sctp_shutdown(rtc_sctp *s);
/* Aborts the association and releases it; no callback runs afterwards. */
void rtc_sctp_close(rtc_sctp *s);

#endif
