/*
 * sdp — the Session Description Protocol subset for one WebRTC data channel.
 *
 * chatd only ever negotiates one `m=application` section carrying SCTP over
 * DTLS, in one of two dialects:
 *   modern  (RFC 8841, browsers):  "UDP/DTLS/SCTP webrtc-datachannel" + a=sctp-port
 *   sctpmap (draft, aiortc 1.4):   "DTLS/SCTP 5000"                    + a=sctpmap
 * sdp_parse() extracts exactly what the transport needs from an untrusted
 * offer or answer and rejects anything without an application m-line, ICE
 * credentials or a fingerprint in SHA-256 or stronger (a SHA-1 or SHA-224
 * fingerprint is ignored, and refused when it is the only one). Text from
 * the offer quoted in an error goes through log_safe. sdp_write() produces an offer or answer in
 * the requested dialect. Both work on caller-owned fixed-size structs: no
 * allocation, so they are safe to fuzz and cannot leak. Thread-safe.
 */
#ifndef CHATD_SDP_H
#define CHATD_SDP_H

#include "util/limits.h"

#include <stddef.h>
#include <stdint.h>

#define SDP_MAX_SIZE LIMIT_SDP_BYTES /* larger descriptions are refused */
#define SDP_MAX_CANDIDATES 32        /* further candidate lines are ignored */
#define SDP_MAX_CANDIDATE_LEN 256
#define SDP_MAX_FINGERPRINT 64 /* bytes of the largest digest, sha-512 */

typedef enum { SDP_DIALECT_MODERN = 0, SDP_DIALECT_SCTPMAP = 1 } sdp_dialect;

typedef enum {
    SDP_SETUP_NONE =
        0, /* attribute absent: RFC 8842 says treat as actpass (offer) / active (answer) */
    SDP_SETUP_ACTPASS,
    SDP_SETUP_ACTIVE,
    SDP_SETUP_PASSIVE
} sdp_setup;

typedef struct {
    sdp_dialect dialect;
    sdp_setup setup;
    char mid[64];
    char ice_ufrag[257];
    char ice_pwd[257];
    char fingerprint_alg[16]; /* lower case: "sha-256", "sha-384" or "sha-512" */
    uint8_t fingerprint[SDP_MAX_FINGERPRINT];
    size_t fingerprint_len;
    uint16_t sctp_port;        /* remote SCTP port, 5000 when unspecified */
    uint32_t max_message_size; /* 0 when absent (RFC 8841: then 64 KiB) */
    /* "candidate:..." values without the "a=" prefix; mDNS (.local) and TCP
     * candidates are dropped while parsing: they cannot be used here (an
     * ICE-lite answerer learns the remote's address from its checks). */
    char candidates[SDP_MAX_CANDIDATES][SDP_MAX_CANDIDATE_LEN];
    size_t n_candidates;
    /* for sdp_write: address and port for the c= and m= lines */
    char conn_address[64];
    uint16_t conn_port;
    uint64_t session_id;
    int ice_lite; /* a=ice-lite: the side that says it only answers checks */
} sdp_description;

/* Parses an SDP text of `len` bytes (need not be NUL-terminated).
 * Returns 0, or -1 with a one-line reason in err. */
int sdp_parse(const char *text, size_t len, sdp_description *out, char *err, size_t errlen);

/* Writes `d` as SDP into buf. `is_offer` only changes what a=setup may say.
 * Returns the length written (excluding the NUL), or -1 when it does not fit. */
int sdp_write(const sdp_description *d, char *buf, size_t cap);

/* Formats a digest as "AB:CD:..." into out (3 * len bytes needed). */
void sdp_format_fingerprint(const uint8_t *digest, size_t len, char *out, size_t cap);

/* Parses "AB:CD:..." into bytes; returns the number of bytes or -1. */
int sdp_parse_fingerprint(const char *text, uint8_t *out, size_t cap);

const char *sdp_setup_name(sdp_setup s);

#endif
