/*
 * chatd — the server's main: read the configuration, open the database,
 * the signing key and the JSONPlaceholder client, start the event loops and
 * the HTTP server, wait for SIGINT/SIGTERM, stop everything in order (stop
 * accepting, close peers, flush every pending log row) and exit 0. SIGHUP
 * reads the HTTPS certificate and key again (--tls-cert/--tls-key). Wiring
 * only; every piece lives in its module.
 *
 * Exit status: 0 after a signal, 1 when the database (or the JWT key, or
 * the TLS certificate or key) cannot be used at start, 2 on a bad flag or
 * value.
 */
#include "api/jsonplaceholder.h"
#include "app/offer.h"
#include "auth/keys.h"
#include "chat/relay.h"
#include "chat/service.h"
#include "http/server.h"
#include "http/tls.h"
#include "rtc/mux.h"
#include "rtc/peer.h"
#include "store/store.h"
#include "util/config.h"
#include "util/limits.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/rng.h"
#include "util/version.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A free UDP port, for --listen HOST:0 without --rtc-port (tests). */
static long free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof sa;
    long port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Transport v2: every peer on one UDP port (the --listen port unless
 * --rtc-port says otherwise). */
static int start_one_port(chatd_config *cfg, rtc_loops *loops, char *err, size_t errlen)
{
    long port = cfg->rtc_port > 0 ? cfg->rtc_port : cfg->listen_port;
    if (port == 0)
        port = free_udp_port();
    if (port <= 0) {
        snprintf(err, errlen, "no free UDP port for --rtc-port");
        return -1;
    }
    rtc_mux_config mc = {.port = (uint16_t)port,
                         .ice_addresses = (const char *const *)cfg->ice_addresses,
                         .public_addresses = (const char *const *)cfg->ice_public,
                         .tcp_port = (uint16_t)cfg->ice_tcp_port};
    if (rtc_mux_start(loops, &mc, err, errlen) < 0)
        return -1;
    cfg->rtc_port = port;
    return 0;
}

/* Set once the log format is: a failure after that is a log line of it
 * (a bad flag is always the plain line, the format not being known yet). */
static int log_json;

static int fail(chatd_config *cfg, int status, const char *what, const char *err)
{
    if (log_json && cfg->log_level < LOGL_OFF)
        log_error("chatd", "%s%s%s", what, err ? ": " : "", err ? err : "");
    else
        fprintf(stderr, "chatd: %s%s%s\n", what, err ? ": " : "", err ? err : "");
    config_free(cfg);
    return status;
}

int main(int argc, char **argv)
{
    chatd_config cfg;
    char err[512];
    if (config_parse(&cfg, argc, argv, err, sizeof err) < 0)
        return fail(&cfg, 2, err, NULL);
    if (cfg.help) {
        config_usage("chatd", stdout);
        config_free(&cfg);
        return 0;
    }
    if (cfg.version) {
        printf("chatd %s\n", chatd_version);
        config_free(&cfg);
        return 0;
    }
    if (cfg.rtc_port == 0 && cfg.ice_tcp_port != 0)
        return fail(&cfg, 2, "--ice-tcp-port needs the one-port transport (not --rtc-port 0)",
                    NULL);
    log_set_level((log_level)cfg.log_level);
    log_set_format((log_format)cfg.log_format);
    log_json = cfg.log_format == LOG_FORMAT_JSON;
    log_route_glib();
    mem_install();
    /* Before any socket: every peer costs descriptors, and HTTP must keep
     * some to answer (offer.h, admission control). */
    offer_fd_limits_init();

    /* Signals are taken by sigwait() in this thread only: block them before
     * any other thread exists so every thread inherits the mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP); /* reload, not stop: see the wait below */
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    /* Before the database: a certificate that cannot be used is a mistake
     * to report at once, whatever else is configured. */
    http_tls *tls = NULL;
    if (cfg.tls_cert[0]) {
        tls = http_tls_load(cfg.tls_cert, cfg.tls_key, err, sizeof err);
        if (tls == NULL)
            return fail(&cfg, 1, err, NULL);
    }

    store *db = NULL;
    auth_keys *keys = NULL;
    jp_client *api = NULL;
    rng *random = NULL;
    chat_service *chat = NULL;
    relay *rel = NULL;
    if (cfg.mode == CHATD_MODE_CHAT) {
        db = store_open(cfg.database_url, err, sizeof err);
        if (db == NULL)
            return fail(&cfg, 1, "cannot open the database", err);
        keys = auth_keys_load_or_create(cfg.jwt_key, err, sizeof err);
        if (keys == NULL) {
            store_close(db);
            return fail(&cfg, 1, "cannot use the JWT key", err);
        }
        random = cfg.has_seed ? rng_new(cfg.seed) : rng_new_from_os();
    }
    if (rtc_init(err, sizeof err) < 0)
        return fail(&cfg, 1, "cannot start WebRTC", err);
    /* Queued bytes for every peer together: 256 MiB, or 4 peers' worth when
     * one peer may hold more (limits.h). */
    size_t per_peer = (size_t)cfg.peer_queue_bytes;
    rtc_set_send_limits(per_peer, per_peer * 4 > LIMIT_QUEUE_TOTAL_BYTES
                                      ? per_peer * 4
                                      : (size_t)LIMIT_QUEUE_TOTAL_BYTES);
    rtc_loops *loops = rtc_loops_new(cfg.loops);
    if (cfg.rtc_port != 0 && start_one_port(&cfg, loops, err, sizeof err) < 0)
        return fail(&cfg, 2, err, NULL);
    offer_limits limits = {.max_peers = cfg.max_peers,
                           .max_pending = cfg.max_pending,
                           .offer_rate = cfg.offer_rate,
                           .setup_timeout_ms = (int)(cfg.setup_timeout * 1000),
                           .transport = cfg.rtc_port ? RTC_TRANSPORT_MUX : RTC_TRANSPORT_NICE};
    const http_app *routes = &relay_http_app;
    void *app;
    if (cfg.mode == CHATD_MODE_CHAT) {
        chat_config cc = {.loops = loops,
                          .ice_addresses = cfg.ice_addresses,
                          .max_peers = cfg.max_peers,
                          .public_url = cfg.public_url,
                          .jwt_ttl = cfg.jwt_ttl,
                          .jwt_max_age = cfg.jwt_max_age,
                          .auto_post_max_ms = cfg.auto_post_max_ms,
                          .draw_attempts = cfg.draw_attempts,
                          .draw_backoff_ms = cfg.draw_backoff_ms,
                          .post_rate = cfg.post_rate,
                          .admission = limits,
                          .max_rooms = cfg.max_rooms,
                          .admin_key = cfg.admin_key,
                          .store = db,
                          .keys = keys,
                          .rng = random};
        chat = chat_service_new(&cc);
        jp_options jo = {
            .base_url = cfg.api_url, .on_error = chat_service_api_error, .error_arg = chat};
        api = chat ? jp_new(&jo, err, sizeof err) : NULL;
        if (api == NULL)
            return fail(&cfg, 2, "bad --api-url", chat ? err : "out of memory");
        chat_service_set_api(chat, api);
        jp_start(api);
        if (cfg.cluster_url[0] &&
            chat_service_join_cluster(chat, cfg.cluster_url, cfg.node_id, err, sizeof err) < 0)
            return fail(&cfg, 1, "cannot join the cluster", err);
        routes = &chat_http_app;
        app = chat;
    } else {
        rel = relay_new(loops, cfg.ice_addresses, &limits);
        app = rel;
    }
    char proxies[sizeof cfg.trusted_proxy], *save = NULL;
    snprintf(proxies, sizeof proxies, "%s", cfg.trusted_proxy);
    for (char *t = strtok_r(proxies, ",", &save); t; t = strtok_r(NULL, ",", &save))
        http_trust_proxy(t); /* checked by config_parse */
    if (cfg.trusted_proxy[0])
        log_info("chatd", "trusting X-Real-IP from %s", cfg.trusted_proxy);
    http_server *http = http_server_start_tls(cfg.listen_host, cfg.listen_port, HTTP_THREADS,
                                              routes, app, tls, err, sizeof err);
    if (http == NULL)
        return fail(&cfg, 2, err, NULL);
    if (cfg.public_url_is_default) {
        /* With --listen HOST:0 the issuer follows the port actually bound. */
        int v6 = strchr(cfg.listen_host, ':') != NULL;
        snprintf(cfg.public_url, sizeof cfg.public_url, "%s://%s%s%s:%d", tls ? "https" : "http",
                 v6 ? "[" : "", cfg.listen_host, v6 ? "]" : "", http_server_port(http));
    }
    char about[640];
    if (tls) {
        http_tls_describe(tls, about, sizeof about);
        log_info("chatd", "HTTPS with the certificate in %s: %s", cfg.tls_cert, about);
    }
    log_info("chatd", "chatd %s", chatd_version);
    log_info("chatd", "WebRTC: %s",
             cfg.rtc_port ? "one UDP port for every peer (ICE-lite)"
                          : "a libnice agent and "
                            "UDP port per peer");
    if (cfg.rtc_port)
        log_info("chatd", "WebRTC on UDP port %ld", cfg.rtc_port);
    if (cfg.rtc_port && cfg.ice_tcp_port)
        log_info("chatd", "ICE-TCP (passive candidates) on TCP port %ld", cfg.ice_tcp_port);
    log_info("chatd",
             "%s mode, %d event loops, max %ld peers (%ld pending, %ld offers/s per address, "
             "setup within %ld s), max %ld rooms, ICE on %s, API %s, database %s",
             cfg.mode == CHATD_MODE_CHAT ? "chat" : "relay", rtc_loops_count(loops), cfg.max_peers,
             cfg.max_pending, cfg.offer_rate, cfg.setup_timeout, cfg.max_rooms,
             cfg.n_ice_addresses ? cfg.ice_addresses[0] : "every interface", cfg.api_url,
             cfg.mode == CHATD_MODE_CHAT ? cfg.database_url : "(none)");
    printf("chatd: listening on %s/\n", cfg.public_url);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop_signals, &sig) == 0 && sig == SIGHUP) {
        /* systemctl reload: new connections get the new certificate, open
         * ones keep theirs; a certificate that cannot be used changes
         * nothing (http/tls.h). */
        if (tls == NULL) {
            log_info("chatd", "SIGHUP: nothing to reload (no --tls-cert)");
        } else if (http_tls_reload(tls, err, sizeof err) < 0) {
            log_error("chatd", "SIGHUP: kept the previous TLS certificate: %s", err);
        } else {
            http_tls_describe(tls, about, sizeof about);
            log_info("chatd", "SIGHUP: TLS certificate reloaded from %s: %s", cfg.tls_cert, about);
        }
    }
    log_info("chatd", "%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    http_server_quiesce(http);
    if (chat)
        chat_service_close_all(chat, 5000);
    else
        relay_close_all(rel, 5000);
    http_server_stop(http);
    http_tls_free(tls);
    int status = 0;
    if (db) {
        /* Everything delivered is in the queue; nothing leaves before it is
         * written (the writer retries while the database is away). */
        if (store_flush(db, 60000) < 0) {
            log_error("chatd", "the log could not be flushed within 60 s");
            status = 1;
        }
    }
    jp_free(api);
    rtc_transport_stop();
    rtc_loops_free(loops);
    chat_service_free(chat);
    relay_free(rel);
    store_close(db);
    auth_keys_free(keys);
    rng_free(random);
    rtc_shutdown();
    curl_global_cleanup();
    config_free(&cfg);
    log_info("chatd", "stopped");
    return status;
}
