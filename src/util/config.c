/*
 * config — see config.h. One table describes every option: its flag, its
 * environment variable, its default and its help line, so --help and the
 * parser cannot disagree.
 */
#include "util/config.h"

#include "cluster/cluster.h"

#include "util/err.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/mem.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum {
    OPT_LISTEN,
    OPT_PUBLIC_URL,
    OPT_ICE,
    OPT_API,
    OPT_DB,
    OPT_DATA,
    OPT_KEY,
    OPT_TTL,
    OPT_JWT_MAX_AGE,
    OPT_AUTO,
    OPT_SEED,
    OPT_MAX_PEERS,
    OPT_LOOPS,
    OPT_DRAWS,
    OPT_DRAW_BACKOFF,
    OPT_LOG,
    OPT_LOG_FORMAT,
    OPT_MODE,
    OPT_POST_RATE,
    /* issue 9, back-pressure */
    OPT_PEER_QUEUE_BYTES,
    /* admission control (issue 9) */
    OPT_MAX_PENDING,
    OPT_SETUP_TIMEOUT,
    OPT_OFFER_RATE,
    OPT_MAX_ROOMS,
    /* transport v2 (issue 10) */
    OPT_RTC_PORT,
    OPT_ICE_TCP_PORT,
    OPT_ICE_PUBLIC,
    /* rooms people can run (issue 11) */
    OPT_ADMIN_KEY,
    OPT_CLUSTER,
    OPT_NODE_ID,
    OPT_TRUSTED_PROXY,
    /* HTTPS (issue 13) */
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_COUNT
} opt_id;

static const struct {
    const char *flag, *env, *arg, *def, *help;
} options[OPT_COUNT] = {
    [OPT_LISTEN] = {"--listen", "CHATD_LISTEN", "HOST:PORT", "127.0.0.1:8080",
                    "HTTP address (port 0 picks a free one)"},
    [OPT_PUBLIC_URL] = {"--public-url", "CHATD_PUBLIC_URL", "URL",
                        "http://LISTEN (https://LISTEN with --tls-cert)",
                        "public base URL, also the JWT issuer"},
    [OPT_ICE] = {"--ice-address", "CHATD_ICE_ADDRESSES", "ADDR", "every local interface",
                 "host candidate address (repeatable; env: comma list)"},
    [OPT_API] = {"--api-url", "JSONPLACEHOLDER_URL", "URL", "https://jsonplaceholder.typicode.com",
                 "JSONPlaceholder base URL"},
    [OPT_DB] = {"--database-url", "DATABASE_URL", "URL", "sqlite://DATA_DIR/chat.db",
                "sqlite://PATH or postgresql://..."},
    [OPT_DATA] = {"--data-dir", "CHATD_DATA_DIR", "DIR", "./data", "data directory"},
    [OPT_KEY] = {"--jwt-key", "CHATD_JWT_KEY", "FILE", "DATA_DIR/jwt-es256.pem",
                 "EC P-256 signing key, PEM (created 0600 if absent)"},
    [OPT_TTL] = {"--jwt-ttl", "CHATD_JWT_TTL", "SECONDS", "3600", "token lifetime"},
    [OPT_JWT_MAX_AGE] = {"--jwt-max-age", "CHATD_JWT_MAX_AGE", "SECONDS", "604800",
                         "a login's total age: resuming never extends it past this"},
    [OPT_AUTO] = {"--auto-post-max-ms", "CHATD_AUTO_POST_MAX_MS", "N", "10000",
                  "auto-post delay is uniform in [0, N] ms"},
    [OPT_SEED] = {"--seed", "CHATD_SEED", "N", "from the OS", "seed for reproducible draws"},
    [OPT_MAX_PEERS] = {"--max-peers", "CHATD_MAX_PEERS", "N", "10000",
                       "connected peers before 503 AT_CAPACITY"},
    [OPT_LOOPS] = {"--loops", "CHATD_LOOPS", "N", "number of cores", "event-loop threads"},
    [OPT_DRAWS] = {"--draw-attempts", "CHATD_DRAW_ATTEMPTS", "N", "5",
                   "user draws per connection before a fatal error"},
    [OPT_DRAW_BACKOFF] = {"--draw-backoff-ms", "CHATD_DRAW_BACKOFF_MS", "N", "500",
                          "first wait after a failed draw (doubles each time)"},
    [OPT_LOG] = {"--log-level", "CHATD_LOG_LEVEL", "LEVEL", "info", "debug, info, warn, error"},
    [OPT_LOG_FORMAT] = {"--log-format", "CHATD_LOG_FORMAT", "FORMAT", "text",
                        "text, or json: one JSON object a line (ts, level, module, msg)"},
    [OPT_MODE] = {"--mode", "CHATD_MODE", "MODE", "chat",
                  "chat, or relay (transport test: text goes to the room's other peers)"},
    [OPT_POST_RATE] = {"--post-rate", "CHATD_POST_RATE", "N", "1",
                       "manual posts per second per user (burst: 5, or N if larger)"},
    /* issue 9, back-pressure */
    [OPT_PEER_QUEUE_BYTES] = {"--peer-queue-bytes", "CHATD_PEER_QUEUE_BYTES", "N", "1048576",
                              "unsent bytes a peer may hold before it is closed"},
    /* admission control (issue 9) */
    [OPT_MAX_PENDING] = {"--max-pending", "CHATD_MAX_PENDING", "N", "512",
                         "peers whose channel is not open yet before 503 AT_CAPACITY"},
    [OPT_SETUP_TIMEOUT] = {"--setup-timeout", "CHATD_SETUP_TIMEOUT", "SECONDS", "10",
                           "offer answered to channel open; a peer not open by then is closed"},
    [OPT_OFFER_RATE] = {"--offer-rate", "CHATD_OFFER_RATE", "N", "5",
                        "offers per second per remote address, burst 4xN (then 429)"},
    [OPT_MAX_ROOMS] = {"--max-rooms", "CHATD_MAX_ROOMS", "N", "10000",
                       "rooms in memory at once, and created rooms"},
    /* transport v2 (issue 10) */
    [OPT_RTC_PORT] = {"--rtc-port", "CHATD_RTC_PORT", "PORT", "the --listen port, on UDP",
                      "one UDP port for every peer's ICE, DTLS and SCTP (ICE-lite); 0: a "
                      "libnice agent and port per peer (v1)"},
    [OPT_ICE_TCP_PORT] = {"--ice-tcp-port", "CHATD_ICE_TCP_PORT", "PORT", "0",
                          "ICE-TCP passive candidates (RFC 6544) on this TCP port; 0 = off"},
    [OPT_ICE_PUBLIC] = {"--ice-public-address", "CHATD_ICE_PUBLIC_ADDRESSES", "ADDR", "none",
                        "advertise ADDR for the local address, 1:1 NAT (PUBLIC or LOCAL=PUBLIC; "
                        "repeatable; env: comma list)"},
    /* rooms people can run (issue 11) */
    [OPT_ADMIN_KEY] = {"--admin-key", "CHATD_ADMIN_KEY", "KEY", "none",
                       "required to create rooms and to announce to every room (unset: any "
                       "valid token creates rooms, nobody announces to every room)"},
    /* the cluster (issue 12) */
    [OPT_CLUSTER] = {"--cluster", "CHATD_CLUSTER", "URL", "none (one node)",
                     "nats://HOST:PORT[,...]: rooms span every node on that NATS JetStream "
                     "(needs a PostgreSQL --database-url)"},
    [OPT_NODE_ID] = {"--node-id", "CHATD_NODE_ID", "NAME", "the host name",
                     "this node's name in the cluster ([A-Za-z0-9_-], 1 to 32; unique)"},
    [OPT_TRUSTED_PROXY] = {"--trusted-proxy", "CHATD_TRUSTED_PROXY", "ADDR[,ADDR]", "none",
                           "front doors whose X-Real-IP header names the client (per-address "
                           "limits then count clients, not the proxy); at most 8 addresses"},
    /* HTTPS (issue 13) */
    [OPT_TLS_CERT] = {"--tls-cert", "CHATD_TLS_CERT", "FILE", "none (plain HTTP)",
                      "HTTPS on --listen: certificate chain, PEM, leaf first (with --tls-key; "
                      "both read again on SIGHUP)"},
    [OPT_TLS_KEY] = {"--tls-key", "CHATD_TLS_KEY", "FILE", "none (plain HTTP)",
                     "the certificate's private key, PEM, unencrypted (with --tls-cert)"},
};

void config_usage(const char *prog, void *stream)
{
    FILE *f = stream;
    fprintf(f, "usage: %s [OPTION]...\n\nchatd, a chat server over WebRTC data channels.\n\n",
            prog);
    for (int i = 0; i < OPT_COUNT; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s %s", options[i].flag, options[i].arg);
        fprintf(f, "  %-28s %s\n  %-28s env %s, default %s\n", left, options[i].help, "",
                options[i].env, options[i].def);
    }
    fprintf(f,
            "  %-28s this text\n  %-28s print the version and exit\n\n"
            "Exit status: 0 after SIGINT/SIGTERM, 1 when the database cannot be opened, 2 on a "
            "bad option.\n",
            "-h, --help", "--version");
}

static int parse_long(const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

static int add_ice(chatd_config *cfg, opt_id id, const char *v, char *err, size_t errlen)
{
    char **list = id == OPT_ICE_PUBLIC ? cfg->ice_public : cfg->ice_addresses;
    int *n = id == OPT_ICE_PUBLIC ? &cfg->n_ice_public : &cfg->n_ice_addresses;
    if (*n >= CONFIG_MAX_ICE_ADDRESSES) {
        err_set(err, errlen, "too many ICE %saddresses (at most %d)",
                id == OPT_ICE_PUBLIC ? "public " : "", CONFIG_MAX_ICE_ADDRESSES);
        return -1;
    }
    if (*v == '\0') {
        err_set(err, errlen, "empty ICE address");
        return -1;
    }
    char *copy = mem_strdup(v);
    if (copy == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    list[(*n)++] = copy;
    return 0;
}

static int split_listen(chatd_config *cfg, const char *v, char *err, size_t errlen)
{
    const char *colon = strrchr(v, ':');
    long port;
    if (colon == NULL || colon == v || parse_long(colon + 1, 0, 65535, &port) < 0) {
        err_set(err, errlen, "bad --listen '%s' (want HOST:PORT)", v);
        return -1;
    }
    size_t hl = (size_t)(colon - v);
    if (v[0] == '[' && hl > 2 && v[hl - 1] == ']') { /* [::1]:8080 */
        v++;
        hl -= 2;
    }
    if (hl >= sizeof cfg->listen_host) {
        err_set(err, errlen, "--listen host too long");
        return -1;
    }
    memcpy(cfg->listen_host, v, hl);
    cfg->listen_host[hl] = '\0';
    cfg->listen_port = (int)port;
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *v, const char *flag, char *err,
                    size_t errlen)
{
    if (strlen(v) >= cap || *v == '\0') {
        err_set(err, errlen, "bad %s value", flag);
        return -1;
    }
    strcpy(dst, v);
    return 0;
}

static int apply(chatd_config *cfg, opt_id id, const char *v, int from_env, char *err,
                 size_t errlen)
{
    const char *flag = options[id].flag;
    long n;
    switch (id) {
    case OPT_LISTEN:
        return split_listen(cfg, v, err, errlen);
    case OPT_PUBLIC_URL:
        return copy_str(cfg->public_url, sizeof cfg->public_url, v, flag, err, errlen);
    case OPT_ICE:
    case OPT_ICE_PUBLIC:
        if (from_env) {
            char *copy = mem_strdup(v), *save = NULL;
            if (copy == NULL) {
                err_set(err, errlen, "out of memory");
                return -1;
            }
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (add_ice(cfg, id, t, err, errlen) < 0) {
                    mem_free(copy);
                    return -1;
                }
            mem_free(copy);
            return 0;
        }
        return add_ice(cfg, id, v, err, errlen);
    case OPT_API:
        return copy_str(cfg->api_url, sizeof cfg->api_url, v, flag, err, errlen);
    case OPT_DB:
        return copy_str(cfg->database_url, sizeof cfg->database_url, v, flag, err, errlen);
    case OPT_DATA:
        return copy_str(cfg->data_dir, sizeof cfg->data_dir, v, flag, err, errlen);
    case OPT_KEY:
        return copy_str(cfg->jwt_key, sizeof cfg->jwt_key, v, flag, err, errlen);
    case OPT_TLS_CERT:
        return copy_str(cfg->tls_cert, sizeof cfg->tls_cert, v, flag, err, errlen);
    case OPT_TLS_KEY:
        return copy_str(cfg->tls_key, sizeof cfg->tls_key, v, flag, err, errlen);
    case OPT_ADMIN_KEY:
        if (v[0] == '\0' || strlen(v) > 256) {
            err_set(err, errlen, "bad %s (1 to 256 bytes)", flag);
            return -1;
        }
        return copy_str(cfg->admin_key, sizeof cfg->admin_key, v, flag, err, errlen);
    case OPT_CLUSTER:
        if (strncmp(v, "nats://", 7) != 0 && strncmp(v, "tls://", 6) != 0) {
            err_set(err, errlen, "bad %s '%s' (want nats://HOST:PORT[,...])", flag, v);
            return -1;
        }
        return copy_str(cfg->cluster_url, sizeof cfg->cluster_url, v, flag, err, errlen);
    case OPT_NODE_ID:
        if (!cluster_node_id_ok(v)) {
            err_set(err, errlen, "bad %s '%s' (1 to 32 of A-Z a-z 0-9 _ -)", flag, v);
            return -1;
        }
        return copy_str(cfg->node_id, sizeof cfg->node_id, v, flag, err, errlen);
    case OPT_TRUSTED_PROXY: {
        char copy[sizeof cfg->trusted_proxy], *save = NULL;
        int n = 0;
        if (copy_str(copy, sizeof copy, v, flag, err, errlen) < 0)
            return -1;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
            unsigned char a[16];
            if (n == 8 || (inet_pton(AF_INET, t, a) != 1 && inet_pton(AF_INET6, t, a) != 1)) {
                err_set(err, errlen, "bad %s '%s' (want 1 to 8 IP addresses, comma-separated)",
                        flag, v);
                return -1;
            }
        }
        return copy_str(cfg->trusted_proxy, sizeof cfg->trusted_proxy, v, flag, err, errlen);
    }
    case OPT_SEED: {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || end == v || *end || *v == '-') {
            err_set(err, errlen, "bad %s '%s' (want a non-negative integer)", flag, v);
            return -1;
        }
        cfg->has_seed = 1;
        cfg->seed = s;
        return 0;
    }
    case OPT_MODE:
        if (strcmp(v, "chat") == 0)
            cfg->mode = CHATD_MODE_CHAT;
        else if (strcmp(v, "relay") == 0)
            cfg->mode = CHATD_MODE_RELAY;
        else {
            err_set(err, errlen, "bad %s '%s' (chat or relay)", flag, v);
            return -1;
        }
        return 0;
    case OPT_LOG: {
        int l = log_level_parse(v);
        if (l < 0) {
            err_set(err, errlen, "bad %s '%s' (debug, info, warn, error, off)", flag, v);
            return -1;
        }
        cfg->log_level = l;
        return 0;
    }
    case OPT_LOG_FORMAT: {
        int f = log_format_parse(v);
        if (f < 0) {
            err_set(err, errlen, "bad %s '%s' (text or json)", flag, v);
            return -1;
        }
        cfg->log_format = f;
        return 0;
    }
    default:
        break;
    }
    static const struct {
        long min, max;
    } ranges[OPT_COUNT] = {
        [OPT_TTL] = {60, 30L * 86400},
        [OPT_AUTO] = {0, 3600L * 1000},
        [OPT_JWT_MAX_AGE] = {60, 366L * 86400},
        [OPT_MAX_PEERS] = {1, 1000000},
        [OPT_LOOPS] = {1, 256},
        [OPT_DRAWS] = {1, 100},
        [OPT_DRAW_BACKOFF] = {0, 60000},
        [OPT_POST_RATE] = {1, 1000000},
        /* issue 9: at least the largest frame chatd sends (4 x 64 KiB) */
        [OPT_PEER_QUEUE_BYTES] = {262144, 1L << 30},
        /* admission control (issue 9) */
        [OPT_MAX_PENDING] = {1, 1000000},
        [OPT_SETUP_TIMEOUT] = {1, 3600},
        [OPT_OFFER_RATE] = {1, 1000000},
        [OPT_MAX_ROOMS] = {1, 10000000},
        [OPT_RTC_PORT] = {0, 65535},
        [OPT_ICE_TCP_PORT] = {0, 65535},
    };
    if (parse_long(v, ranges[id].min, ranges[id].max, &n) < 0) {
        err_set(err, errlen, "bad %s '%s' (want an integer from %ld to %ld)", flag, v,
                ranges[id].min, ranges[id].max);
        return -1;
    }
    switch (id) {
    case OPT_TTL:
        cfg->jwt_ttl = n;
        break;
    case OPT_JWT_MAX_AGE:
        cfg->jwt_max_age = n;
        break;
    case OPT_AUTO:
        cfg->auto_post_max_ms = n;
        break;
    case OPT_MAX_PEERS:
        cfg->max_peers = n;
        break;
    case OPT_LOOPS:
        cfg->loops = (int)n;
        break;
    case OPT_DRAWS:
        cfg->draw_attempts = (int)n;
        break;
    case OPT_POST_RATE:
        cfg->post_rate = n;
        break;
    /* issue 9, back-pressure */
    case OPT_PEER_QUEUE_BYTES:
        cfg->peer_queue_bytes = n;
        break;
    /* admission control (issue 9) */
    case OPT_MAX_PENDING:
        cfg->max_pending = n;
        break;
    case OPT_SETUP_TIMEOUT:
        cfg->setup_timeout = n;
        break;
    case OPT_OFFER_RATE:
        cfg->offer_rate = n;
        break;
    case OPT_MAX_ROOMS:
        cfg->max_rooms = n;
        break;
    case OPT_RTC_PORT:
        cfg->rtc_port = n;
        break;
    case OPT_ICE_TCP_PORT:
        cfg->ice_tcp_port = n;
        break;
    default:
        cfg->draw_backoff_ms = n;
        break;
    }
    return 0;
}

int config_parse(chatd_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    strcpy(cfg->api_url, "https://jsonplaceholder.typicode.com");
    strcpy(cfg->data_dir, "./data");
    cfg->jwt_ttl = 3600;
    cfg->jwt_max_age = 604800;
    cfg->auto_post_max_ms = 10000;
    cfg->max_peers = 10000;
    cfg->draw_attempts = 5;
    cfg->draw_backoff_ms = 500;
    cfg->post_rate = 1;
    cfg->peer_queue_bytes = LIMIT_PEER_QUEUE_BYTES; /* issue 9 */
    /* admission control (issue 9) */
    cfg->max_pending = 512;
    cfg->setup_timeout = 10;
    cfg->offer_rate = 5;
    cfg->max_rooms = 10000;
    cfg->rtc_port = -1;
    cfg->log_level = LOGL_INFO;
    cfg->log_format = LOG_FORMAT_TEXT;
    cfg->mode = CHATD_MODE_CHAT;

    /* Environment first, flags after: flags win. A flag given on the
     * command line replaces the env's ICE list instead of adding to it. */
    int ice_flag = 0, public_flag = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ice-address") == 0 || strncmp(argv[i], "--ice-address=", 14) == 0)
            ice_flag = 1;
        if (strcmp(argv[i], "--ice-public-address") == 0 ||
            strncmp(argv[i], "--ice-public-address=", 21) == 0)
            public_flag = 1;
    }
    for (int id = 0; id < OPT_COUNT; id++) {
        const char *v = getenv(options[id].env);
        if (v == NULL || *v == '\0' || (id == OPT_ICE && ice_flag) ||
            (id == OPT_ICE_PUBLIC && public_flag))
            continue;
        if (apply(cfg, (opt_id)id, v, 1, err, errlen) < 0) {
            size_t l = err != NULL ? strnlen(err, errlen) : 0;
            if (l < errlen)
                err_set(err + l, errlen - l, " (from %s)", options[id].env);
            return -1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cfg->help = 1;
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            cfg->version = 1;
            return 0;
        }
        int found = -1;
        const char *value = NULL;
        for (int id = 0; id < OPT_COUNT && found < 0; id++) {
            size_t fl = strlen(options[id].flag);
            if (strncmp(a, options[id].flag, fl) != 0)
                continue;
            if (a[fl] == '=') {
                found = id;
                value = a + fl + 1;
            } else if (a[fl] == '\0') {
                found = id;
                if (i + 1 >= argc) {
                    err_set(err, errlen, "%s needs a value", options[id].flag);
                    return -1;
                }
                value = argv[++i];
            }
        }
        if (found < 0) {
            err_set(err, errlen, "unknown option '%s' (see --help)", a);
            return -1;
        }
        if (apply(cfg, (opt_id)found, value, 0, err, errlen) < 0)
            return -1;
    }
    if (!cfg->tls_cert[0] != !cfg->tls_key[0]) {
        err_set(err, errlen, "%s needs %s too (HTTPS takes both, plain HTTP neither)",
                cfg->tls_cert[0] ? "--tls-cert" : "--tls-key",
                cfg->tls_cert[0] ? "--tls-key" : "--tls-cert");
        return -1;
    }
    if (cfg->public_url[0] == '\0') {
        cfg->public_url_is_default = 1;
        int v6 = strchr(cfg->listen_host, ':') != NULL;
        snprintf(cfg->public_url, sizeof cfg->public_url, "%s://%s%s%s:%d",
                 cfg->tls_cert[0] ? "https" : "http", v6 ? "[" : "", cfg->listen_host,
                 v6 ? "]" : "", cfg->listen_port);
    }
    size_t pl = strlen(cfg->public_url);
    while (pl > 0 && cfg->public_url[pl - 1] == '/')
        cfg->public_url[--pl] = '\0';
    if (cfg->database_url[0] == '\0')
        snprintf(cfg->database_url, sizeof cfg->database_url, "sqlite://%s/chat.db", cfg->data_dir);
    if (cfg->jwt_key[0] == '\0')
        snprintf(cfg->jwt_key, sizeof cfg->jwt_key, "%s/jwt-es256.pem", cfg->data_dir);
    if (cfg->cluster_url[0] && strncmp(cfg->database_url, "postgres", 8) != 0) {
        err_set(err, errlen,
                "--cluster needs a PostgreSQL --database-url: every node writes one log");
        return -1;
    }
    if (cfg->cluster_url[0] && cfg->node_id[0] == '\0') {
        /* the host name, cut to the node-id rule */
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        size_t k = 0;
        for (size_t i = 0; host[i] && k < CLUSTER_NODE_ID_MAX; i++)
            if (isalnum((unsigned char)host[i]) || host[i] == '-' || host[i] == '_')
                cfg->node_id[k++] = host[i];
        cfg->node_id[k] = '\0';
        if (k == 0)
            snprintf(cfg->node_id, sizeof cfg->node_id, "node");
    }
    return 0;
}

void config_free(chatd_config *cfg)
{
    for (int i = 0; i < cfg->n_ice_addresses; i++) {
        mem_free(cfg->ice_addresses[i]);
        cfg->ice_addresses[i] = NULL;
    }
    cfg->n_ice_addresses = 0;
    for (int i = 0; i < cfg->n_ice_public; i++) {
        mem_free(cfg->ice_public[i]);
        cfg->ice_public[i] = NULL;
    }
    cfg->n_ice_public = 0;
}
