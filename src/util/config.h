/*
 * config — chatd's settings from flags and environment variables.
 *
 * Every flag has an environment variable; a flag wins over its variable,
 * which wins over the default (SPEC.md, "chatd configuration"). Parsing
 * never exits: it returns -1 with one clear line, and chatd exits 2.
 *
 * Threading: parsed once by main before any other thread starts; read-only
 * afterwards. Ownership: a chatd_config is the caller's (usually on main's
 * stack); config_parse allocates only the ice_addresses strings, which
 * config_free releases.
 */
#ifndef CHATD_CONFIG_H
#define CHATD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_ICE_ADDRESSES 16

typedef enum { CHATD_MODE_CHAT = 0, CHATD_MODE_RELAY = 1 } chatd_mode;

typedef struct {
    chatd_mode mode;
    char listen_host[256];
    int listen_port;
    char public_url[512];
    int public_url_is_default; /* follows the bound port when --listen says :0 */
    char *ice_addresses[CONFIG_MAX_ICE_ADDRESSES + 1]; /* NULL-terminated */
    int n_ice_addresses;
    char api_url[512];
    char database_url[1024];
    char data_dir[512];
    char jwt_key[1024];
    long jwt_ttl;
    long jwt_max_age; /* seconds a login may last across resumes */
    long auto_post_max_ms;
    int has_seed;
    uint64_t seed;
    long max_peers;
    int loops;
    int draw_attempts;
    long draw_backoff_ms;
    long post_rate;
    long peer_queue_bytes; /* --peer-queue-bytes (issue 9) */
    /* admission control (issue 9): SPEC.md version 2 */
    long max_pending;   /* peers whose channel is not open yet */
    long setup_timeout; /* seconds from the answer to channel open */
    long offer_rate;    /* offers/s per remote address (burst 4x) */
    long max_rooms;     /* rooms in memory at once */
    /* transport v2 (issue 10) */
    long rtc_port;     /* one UDP port for every peer; -1: the --listen port; 0: libnice per peer */
    long ice_tcp_port; /* RFC 6544 passive candidates; 0 = off */
    char
        *ice_public[CONFIG_MAX_ICE_ADDRESSES + 1]; /* "PUBLIC" or "LOCAL=PUBLIC", NULL-terminated */
    int n_ice_public;
    char admin_key[257]; /* --admin-key (issue 11); "" = none */
    /* the cluster (issue 12) */
    char cluster_url[512];   /* --cluster; "" = one node */
    char node_id[33];        /* --node-id; the host name by default */
    char trusted_proxy[512]; /* --trusted-proxy: "ADDR[,ADDR]"; "" = none */
    /* HTTPS (issue 13): both set, or neither (plain HTTP) */
    char tls_cert[1024]; /* --tls-cert: PEM chain */
    char tls_key[1024];  /* --tls-key: PEM private key */
    int log_level;
    int log_format; /* log_format: LOG_FORMAT_TEXT or LOG_FORMAT_JSON */
    int help;
    int version; /* --version: print it and exit 0 */
} chatd_config;

/* Fills cfg from argv and the environment. Returns 0, or -1 with err set. */
int config_parse(chatd_config *cfg, int argc, char **argv, char *err, size_t errlen);
void config_free(chatd_config *cfg);
/* Writes the --help text (every flag with its variable and default). */
void config_usage(const char *prog, void *stream);

#endif
