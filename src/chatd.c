/*
 * chatd — the server's main: read the configuration, start the pieces,
 * wait for SIGINT/SIGTERM, stop them in order. Wiring only; every piece
 * lives in its module.
 */
#include "chat/relay.h"
#include "http/server.h"
#include "rtc/loop.h"
#include "rtc/peer.h"
#include "util/config.h"
#include "util/log.h"
#include "util/mem.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    chatd_config cfg;
    char err[512];
    if (config_parse(&cfg, argc, argv, err, sizeof err) < 0) {
        fprintf(stderr, "chatd: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    if (cfg.help) {
        config_usage("chatd", stdout);
        config_free(&cfg);
        return 0;
    }
    log_set_level((log_level)cfg.log_level);
    mem_install();

    /* Signals are taken by sigwait() in this thread only: block them before
     * any other thread exists so every thread inherits the mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    if (rtc_init(err, sizeof err) < 0) {
        fprintf(stderr, "chatd: %s\n", err);
        return 1;
    }
    rtc_loops *loops = rtc_loops_new(cfg.loops);
    relay *app = relay_new(loops, cfg.ice_addresses, cfg.max_peers);
    http_server *http = http_server_start(cfg.listen_host, cfg.listen_port, 2, &relay_http_app,
                                          app, err, sizeof err);
    if (http == NULL) {
        fprintf(stderr, "chatd: %s\n", err);
        relay_free(app);
        rtc_loops_free(loops);
        rtc_shutdown();
        config_free(&cfg);
        return 2;
    }
    if (cfg.public_url_is_default) {
        int v6 = strchr(cfg.listen_host, ':') != NULL;
        snprintf(cfg.public_url, sizeof cfg.public_url, "http://%s%s%s:%d", v6 ? "[" : "",
                 cfg.listen_host, v6 ? "]" : "", http_server_port(http));
    }
    log_info("chatd", "%d event loops, max %ld peers, ICE on %s", rtc_loops_count(loops),
             cfg.max_peers, cfg.n_ice_addresses ? cfg.ice_addresses[0] : "every interface");
    printf("chatd: listening on %s/\n", cfg.public_url);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    log_info("chatd", "%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    http_server_quiesce(http);
    relay_close_all(app, 5000);
    http_server_stop(http);
    relay_free(app);
    rtc_loops_free(loops);
    rtc_shutdown();
    curl_global_cleanup();
    config_free(&cfg);
    log_info("chatd", "stopped");
    return 0;
}
