/* Unit tests: chatd's flags and environment variables (flags win). */
#include "util/config.h"
#include "util/log.h"
#include "util/mem.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torture.h"

static int parse(chatd_config *c, char *err, int argc, char **argv)
{
    return config_parse(c, argc, argv, err, 256);
}

Test(config, defaults)
{
    chatd_config c;
    char err[256];
    char *argv[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, argv), 0, "%s", err);
    cr_assert_eq(c.mode, CHATD_MODE_CHAT);
    cr_assert_str_eq(c.listen_host, "127.0.0.1");
    cr_assert_eq(c.listen_port, 8080);
    cr_assert_str_eq(c.public_url, "http://127.0.0.1:8080");
    cr_assert_str_eq(c.api_url, "https://jsonplaceholder.typicode.com");
    cr_assert_str_eq(c.database_url, "sqlite://./data/chat.db");
    cr_assert_str_eq(c.jwt_key, "./data/jwt-es256.pem");
    cr_assert_eq(c.jwt_ttl, 3600);
    cr_assert_eq(c.auto_post_max_ms, 10000);
    cr_assert_eq(c.max_peers, 10000);
    cr_assert_eq(c.has_seed, 0);
    cr_assert_eq(c.n_ice_addresses, 0);
    config_free(&c);
}

Test(config, flags)
{
    chatd_config c;
    char err[256];
    char *argv[] = {"chatd",
                    "--mode",
                    "relay",
                    "--listen",
                    "[::1]:9000",
                    "--ice-address",
                    "10.0.0.1",
                    "--ice-address=10.0.0.2",
                    "--seed",
                    "7",
                    "--data-dir",
                    "/tmp/x",
                    "--max-peers=3",
                    "--jwt-ttl",
                    "120"};
    cr_assert_eq(parse(&c, err, 15, argv), 0, "%s", err);
    cr_assert_eq(c.mode, CHATD_MODE_RELAY);
    cr_assert_str_eq(c.listen_host, "::1");
    cr_assert_eq(c.listen_port, 9000);
    cr_assert_str_eq(c.public_url, "http://[::1]:9000");
    cr_assert_eq(c.n_ice_addresses, 2);
    cr_assert_str_eq(c.ice_addresses[1], "10.0.0.2");
    cr_assert(c.has_seed && c.seed == 7);
    cr_assert_str_eq(c.database_url, "sqlite:///tmp/x/chat.db");
    cr_assert_eq(c.max_peers, 3);
    cr_assert_eq(c.jwt_ttl, 120);
    config_free(&c);
}

Test(config, environment_and_flags_win)
{
    setenv("CHATD_MAX_PEERS", "5", 1);
    setenv("CHATD_ICE_ADDRESSES", "1.1.1.1,2.2.2.2", 1);
    setenv("CHATD_PUBLIC_URL", "https://chat.example/", 1);
    setenv("CHATD_MODE", "relay", 1);
    chatd_config c;
    char err[256];
    char *argv[] = {"chatd", "--max-peers", "6"};
    cr_assert_eq(parse(&c, err, 3, argv), 0, "%s", err);
    cr_assert_eq(c.max_peers, 6);
    cr_assert_eq(c.n_ice_addresses, 2);
    cr_assert_str_eq(c.public_url, "https://chat.example"); /* trailing slash dropped */
    cr_assert_eq(c.mode, CHATD_MODE_RELAY);
    config_free(&c);
    char *argv2[] = {"chatd", "--ice-address", "3.3.3.3"};
    cr_assert_eq(parse(&c, err, 3, argv2), 0, "%s", err);
    cr_assert_eq(c.n_ice_addresses, 1, "a flag replaces the env list");
    config_free(&c);
    setenv("CHATD_MAX_PEERS", "lots", 1);
    cr_assert_eq(parse(&c, err, 1, argv), -1);
    cr_assert(strstr(err, "CHATD_MAX_PEERS") != NULL, "%s", err);
    config_free(&c);
}

Test(config, errors)
{
    const char *bad[][3] = {
        {"--listen", "nohost", "HOST:PORT"},
        {"--listen", "h:70000", "HOST:PORT"},
        {"--max-peers", "0", "--max-peers"},
        {"--jwt-ttl", "10", "--jwt-ttl"},
        {"--seed", "-1", "--seed"},
        {"--mode", "other", "--mode"},
        {"--log-level", "loud", "--log-level"},
        {"--bogus", "x", "unknown option"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        chatd_config c;
        char err[256] = "";
        char *argv[] = {"chatd", (char *)bad[i][0], (char *)bad[i][1]};
        cr_assert_eq(parse(&c, err, 3, argv), -1, "accepted %s %s", bad[i][0], bad[i][1]);
        cr_assert(strstr(err, bad[i][2]) != NULL, "'%s' lacks '%s'", err, bad[i][2]);
        config_free(&c);
    }
    chatd_config c;
    char err[256];
    char *argv[] = {"chatd", "--listen"};
    cr_assert_eq(parse(&c, err, 2, argv), -1);
    cr_assert(strstr(err, "needs a value") != NULL);
    config_free(&c);
    char *help[] = {"chatd", "--help"};
    cr_assert_eq(parse(&c, err, 2, help), 0);
    cr_assert(c.help);
    config_free(&c);
}

/* Regression: the ICE address copies were unchecked strdup()s, so an
 * allocation failure stored NULL (or, for the environment's list, handed
 * NULL to strtok_r). Now each failure is "out of memory" and nothing leaks
 * (config_free after a failure frees what was added). */
static int op_ice_addresses(void *ctx)
{
    char **argv = ctx;
    int argc = 0;
    while (argv[argc] != NULL)
        argc++;
    chatd_config c;
    char err[256] = "";
    int rc = parse(&c, err, argc, argv);
    if (rc != 0) {
        cr_assert_eq(rc, -1);
        cr_assert_not_null(strstr(err, "out of memory"), "%s", err);
        config_free(&c);
        return TORTURE_ERROR;
    }
    cr_assert_eq(c.n_ice_addresses, 2);
    for (int i = 0; i < c.n_ice_addresses; i++)
        cr_assert_not_null(c.ice_addresses[i]);
    config_free(&c);
    return TORTURE_OK;
}

Test(config, ice_addresses_survive_allocation_failure)
{
    setenv("CHATD_ICE_ADDRESSES", "1.1.1.1,2.2.2.2", 1);
    char *argv[] = {"chatd", NULL};
    char *argv_flags[] = {"chatd", "--ice-address", "3.3.3.3", "--ice-address", "4.4.4.4", NULL};
    /* each ICE copy is an allocation of util/mem that can fail */
    cr_assert_geq(torture("ICE addresses from the environment", op_ice_addresses, argv), 3);
    cr_assert_geq(torture("ICE addresses from flags", op_ice_addresses, argv_flags), 3);
    unsetenv("CHATD_ICE_ADDRESSES");
    check_leaks();
}

Test(config, every_flag_and_its_refusals)
{
    chatd_config c;
    char err[256] = "";
    char *argv[] = {"chatd",
                    "--public-url",
                    "https://x/",
                    "--api-url",
                    "http://a",
                    "--database-url",
                    "postgresql://d",
                    "--jwt-key",
                    "/k.pem",
                    "--auto-post-max-ms",
                    "0",
                    "--loops",
                    "3",
                    "--draw-attempts",
                    "2",
                    "--draw-backoff-ms",
                    "7",
                    "--log-level",
                    "debug",
                    "--mode",
                    "chat"};
    cr_assert_eq(parse(&c, err, 21, argv), 0, "%s", err);
    cr_assert_str_eq(c.public_url, "https://x");
    cr_assert_str_eq(c.api_url, "http://a");
    cr_assert_str_eq(c.database_url, "postgresql://d");
    cr_assert_str_eq(c.jwt_key, "/k.pem");
    cr_assert_eq(c.auto_post_max_ms, 0);
    cr_assert_eq(c.loops, 3);
    cr_assert_eq(c.draw_attempts, 2);
    cr_assert_eq(c.draw_backoff_ms, 7);
    cr_assert_eq(c.mode, CHATD_MODE_CHAT);
    config_free(&c);

    char long_host[300];
    memset(long_host, 'h', 280);
    strcpy(long_host + 280, ":80");
    char long_value[5000];
    memset(long_value, 'v', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    const char *bad[][3] = {
        {"--listen", long_host, "too long"},
        {"--ice-address", "", "empty ICE"},
        {"--api-url", "", "bad --api-url"},
        {"--data-dir", long_value, "bad --data-dir"},
        {"--seed", "12x", "--seed"},
        {"--loops", "0", "--loops"},
        {"--draw-attempts", "101", "--draw-attempts"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *a[] = {"chatd", (char *)bad[i][0], (char *)bad[i][1]};
        err[0] = '\0';
        cr_assert_eq(parse(&c, err, 3, a), -1, "accepted %s", bad[i][0]);
        cr_assert(strstr(err, bad[i][2]) != NULL, "'%s' lacks '%s'", err, bad[i][2]);
        config_free(&c);
    }
    /* more ICE addresses than fit */
    char *many[2 + 2 * (CONFIG_MAX_ICE_ADDRESSES + 1)];
    int n = 0;
    many[n++] = "chatd";
    for (int i = 0; i <= CONFIG_MAX_ICE_ADDRESSES; i++) {
        many[n++] = "--ice-address";
        many[n++] = "10.0.0.1";
    }
    cr_assert_eq(parse(&c, err, n, many), -1);
    cr_assert(strstr(err, "too many ICE") != NULL, "%s", err);
    config_free(&c);
    setenv("CHATD_ICE_ADDRESSES", "1.1.1.1,,", 1);
    char *plain[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, plain), 0, "%s", err);
    cr_assert_eq(c.n_ice_addresses, 1, "empty items of the list are skipped");
    config_free(&c);
    unsetenv("CHATD_ICE_ADDRESSES");
    check_leaks();
}

Test(config, post_rate)
{
    chatd_config c;
    char err[256];
    char *none[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, none), 0, "%s", err);
    cr_assert_eq(c.post_rate, 1, "the contract's 1 post/s is the default");
    config_free(&c);
    char *set[] = {"chatd", "--post-rate", "200"};
    cr_assert_eq(parse(&c, err, 3, set), 0, "%s", err);
    cr_assert_eq(c.post_rate, 200);
    config_free(&c);
    char *zero[] = {"chatd", "--post-rate=0"};
    cr_assert_eq(parse(&c, err, 2, zero), -1);
    cr_assert(strstr(err, "--post-rate") != NULL, "%s", err);
}

/* Issue 9: --peer-queue-bytes, at least the largest frame (4 x 64 KiB). */
Test(config, peer_queue_bytes)
{
    chatd_config c;
    char err[256];
    char *none[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, none), 0, "%s", err);
    cr_assert_eq(c.peer_queue_bytes, 1048576);
    config_free(&c);
    char *set[] = {"chatd", "--peer-queue-bytes", "262144"};
    cr_assert_eq(parse(&c, err, 3, set), 0, "%s", err);
    cr_assert_eq(c.peer_queue_bytes, 262144);
    config_free(&c);
    char *small[] = {"chatd", "--peer-queue-bytes=65536"};
    cr_assert_eq(parse(&c, err, 2, small), -1);
    cr_assert(strstr(err, "--peer-queue-bytes") != NULL, "%s", err);
    setenv("CHATD_PEER_QUEUE_BYTES", "2097152", 1);
    cr_assert_eq(parse(&c, err, 1, none), 0, "%s", err);
    unsetenv("CHATD_PEER_QUEUE_BYTES");
    cr_assert_eq(c.peer_queue_bytes, 2097152);
    config_free(&c);
}

/* Admission control (issue 9): the contract's defaults, env and flags, and
 * --help naming each with its variable. */
Test(config, admission_flags)
{
    chatd_config c;
    char err[256];
    char *none[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, none), 0, "%s", err);
    cr_assert_eq(c.max_pending, 512);
    cr_assert_eq(c.setup_timeout, 10);
    cr_assert_eq(c.offer_rate, 5);
    cr_assert_eq(c.max_rooms, 10000);
    config_free(&c);
    setenv("CHATD_OFFER_RATE", "7", 1);
    setenv("CHATD_MAX_ROOMS", "3", 1);
    char *set[] = {"chatd", "--max-pending", "9", "--setup-timeout=2", "--max-rooms", "4"};
    cr_assert_eq(parse(&c, err, 6, set), 0, "%s", err);
    cr_assert_eq(c.max_pending, 9);
    cr_assert_eq(c.setup_timeout, 2);
    cr_assert_eq(c.offer_rate, 7, "from the environment");
    cr_assert_eq(c.max_rooms, 4, "the flag wins");
    config_free(&c);
    unsetenv("CHATD_OFFER_RATE");
    unsetenv("CHATD_MAX_ROOMS");
    char *zero[] = {"chatd", "--setup-timeout", "0"};
    cr_assert_eq(parse(&c, err, 3, zero), -1);
    cr_assert(strstr(err, "--setup-timeout") != NULL, "%s", err);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_usage("chatd", f);
    fclose(f);
    const char *want[] = {"--max-pending",       "CHATD_MAX_PENDING", "--setup-timeout",
                          "CHATD_SETUP_TIMEOUT", "--offer-rate",      "CHATD_OFFER_RATE",
                          "--max-rooms",         "CHATD_MAX_ROOMS"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_not_null(strstr(text, want[i]), "no '%s' in --help", want[i]);
    free(text);
}

/* --help text: every flag, with its environment variable and default. */
Test(config, usage_lists_every_flag)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    config_usage("chatd", f);
    fclose(f);
    const char *want[] = {"usage: chatd [OPTION]...",
                          "--listen",
                          "CHATD_LISTEN",
                          "--ice-address",
                          "--peer-queue-bytes",
                          "CHATD_PEER_QUEUE_BYTES",
                          "--database-url",
                          "--jwt-key",
                          "DATA_DIR/jwt-es256.pem",
                          "--mode",
                          "--post-rate",
                          "-h, --help",
                          "2 on a bad option"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_not_null(strstr(text, want[i]), "no '%s' in:\n%s", want[i], text);
    free(text);
}

/* --listen: a bracketed IPv6 host, and the public URL built from it; a
 * value missing its host or port; a flag at the end without its value;
 * -h wins over what follows; a negative seed. */
Test(config, listen_forms_and_flag_edges)
{
    chatd_config c;
    char err[256] = "";
    char *v6[] = {"chatd", "--listen=[::1]:8443", "--public-url", "https://chat.example//"};
    cr_assert_eq(parse(&c, err, 2, v6), 0, "%s", err);
    cr_assert_str_eq(c.listen_host, "::1");
    cr_assert_eq(c.listen_port, 8443);
    cr_assert_str_eq(c.public_url, "http://[::1]:8443");
    cr_assert(c.public_url_is_default);
    config_free(&c);
    cr_assert_eq(parse(&c, err, 4, v6), 0, "%s", err);
    cr_assert_str_eq(c.public_url, "https://chat.example", "trailing slashes dropped");
    cr_assert_not(c.public_url_is_default);
    config_free(&c);
    char *bare[] = {"chatd", "--listen", "::1:0"};
    cr_assert_eq(parse(&c, err, 3, bare), 0, "%s", err);
    cr_assert_str_eq(c.listen_host, "::1");
    config_free(&c);

    const char *bad[][2] = {{":8080", "HOST:PORT"},
                            {"host:", "HOST:PORT"},
                            {"host:-1", "HOST:PORT"},
                            {"host:80x", "HOST:PORT"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *a[] = {"chatd", "--listen", (char *)bad[i][0]};
        cr_assert_eq(parse(&c, err, 3, a), -1, "accepted %s", bad[i][0]);
        cr_assert_not_null(strstr(err, bad[i][1]), "%s", err);
        config_free(&c);
    }
    char *dangling[] = {"chatd", "--loops"};
    cr_assert_eq(parse(&c, err, 2, dangling), -1);
    cr_assert_not_null(strstr(err, "--loops needs a value"), "%s", err);
    config_free(&c);
    char *prefix[] = {"chatd", "--loopsy", "3"};
    cr_assert_eq(parse(&c, err, 3, prefix), -1);
    cr_assert_not_null(strstr(err, "unknown option '--loopsy'"), "%s", err);
    config_free(&c);
    char *seed[] = {"chatd", "--seed", "-1"};
    cr_assert_eq(parse(&c, err, 3, seed), -1);
    cr_assert_not_null(strstr(err, "non-negative"), "%s", err);
    config_free(&c);
    char *help[] = {"chatd", "-h", "--no-such-flag"};
    cr_assert_eq(parse(&c, err, 3, help), 0, "%s", err);
    cr_assert(c.help);
    config_free(&c);
    setenv("CHATD_LOOPS", "zero", 1);
    char *none[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, none), -1);
    cr_assert_not_null(strstr(err, "(from CHATD_LOOPS)"), "%s", err);
    config_free(&c);
    unsetenv("CHATD_LOOPS");
    check_leaks();
}

/* --jwt-max-age (issue 9, item 11): default a week, env and flag, range,
 * and listed by --help with its variable. */
Test(config, jwt_max_age)
{
    chatd_config c;
    char err[256];
    char *none[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, none), 0, "%s", err);
    cr_assert_eq(c.jwt_max_age, 604800);
    config_free(&c);
    setenv("CHATD_JWT_MAX_AGE", "86400", 1);
    cr_assert_eq(parse(&c, err, 1, none), 0, "%s", err);
    cr_assert_eq(c.jwt_max_age, 86400);
    config_free(&c);
    char *flag[] = {"chatd", "--jwt-max-age", "3600"};
    cr_assert_eq(parse(&c, err, 3, flag), 0, "%s", err);
    cr_assert_eq(c.jwt_max_age, 3600, "the flag wins");
    config_free(&c);
    unsetenv("CHATD_JWT_MAX_AGE");
    char *bad[] = {"chatd", "--jwt-max-age", "0"};
    cr_assert_eq(parse(&c, err, 3, bad), -1);
    cr_assert(strstr(err, "--jwt-max-age"), "%s", err);
    config_free(&c);

    FILE *f = tmpfile();
    cr_assert_not_null(f);
    config_usage("chatd", f);
    rewind(f);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    cr_assert(strstr(text, "--jwt-max-age") && strstr(text, "CHATD_JWT_MAX_AGE") &&
                  strstr(text, "604800"),
              "%s", text);
}

/* Transport v2: --rtc-port (unset: -1, the --listen port; 0: libnice per
 * peer), --ice-tcp-port, --ice-public-address (repeatable, env list, a
 * flag replaces the env's list). */
Test(config, transport_v2_flags)
{
    chatd_config c;
    char err[256];
    char *defaults[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, defaults), 0, "%s", err);
    cr_assert_eq(c.rtc_port, -1);
    cr_assert_eq(c.ice_tcp_port, 0);
    cr_assert_eq(c.n_ice_public, 0);
    config_free(&c);

    char *argv[] = {"chatd",       "--rtc-port",
                    "9000",        "--ice-tcp-port",
                    "443",         "--ice-public-address",
                    "203.0.113.5", "--ice-public-address=10.0.0.2=198.51.100.7"};
    cr_assert_eq(parse(&c, err, 8, argv), 0, "%s", err);
    cr_assert_eq(c.rtc_port, 9000);
    cr_assert_eq(c.ice_tcp_port, 443);
    cr_assert_eq(c.n_ice_public, 2);
    cr_assert_str_eq(c.ice_public[0], "203.0.113.5");
    cr_assert_str_eq(c.ice_public[1], "10.0.0.2=198.51.100.7");
    cr_assert_null(c.ice_public[2]);
    config_free(&c);

    setenv("CHATD_ICE_PUBLIC_ADDRESSES", "192.0.2.1,192.0.2.2", 1);
    setenv("CHATD_RTC_PORT", "0", 1);
    cr_assert_eq(parse(&c, err, 1, defaults), 0, "%s", err);
    cr_assert_eq(c.n_ice_public, 2);
    cr_assert_eq(c.rtc_port, 0);
    config_free(&c);
    char *flag[] = {"chatd", "--ice-public-address", "192.0.2.9"};
    cr_assert_eq(parse(&c, err, 3, flag), 0, "%s", err);
    cr_assert_eq(c.n_ice_public, 1, "the flag replaces the environment's list");
    config_free(&c);
    unsetenv("CHATD_ICE_PUBLIC_ADDRESSES");
    unsetenv("CHATD_RTC_PORT");

    char *bad[] = {"chatd", "--rtc-port", "65536"};
    cr_assert_eq(parse(&c, err, 3, bad), -1);
    cr_assert(strstr(err, "--rtc-port") != NULL, "%s", err);
    config_free(&c);
}

Test(config, cluster_and_proxy_flags)
{
    chatd_config c;
    char err[256];
    char *defaults[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, defaults), 0, "%s", err);
    cr_assert_str_eq(c.cluster_url, "");
    cr_assert_str_eq(c.node_id, "", "no cluster, no node id");
    cr_assert_str_eq(c.trusted_proxy, "");
    config_free(&c);

    char *argv[] = {"chatd",
                    "--cluster",
                    "nats://127.0.0.1:4222,nats://127.0.0.1:4223",
                    "--database-url",
                    "postgresql://chat@127.0.0.1/chat",
                    "--trusted-proxy",
                    "127.0.0.1,::1"};
    cr_assert_eq(parse(&c, err, 7, argv), 0, "%s", err);
    cr_assert_str_eq(c.cluster_url, "nats://127.0.0.1:4222,nats://127.0.0.1:4223");
    cr_assert_gt(strlen(c.node_id), 0, "the host name, cut to the rule");
    cr_assert_str_eq(c.trusted_proxy, "127.0.0.1,::1");
    config_free(&c);

    char *named[] = {"chatd",           "--cluster", "nats://h:1", "--database-url",
                     "postgres://h/db", "--node-id", "node_B-2"};
    cr_assert_eq(parse(&c, err, 7, named), 0, "%s", err);
    cr_assert_str_eq(c.node_id, "node_B-2");
    config_free(&c);

    struct {
        char *flag, *value, *says;
    } bad[] = {
        {"--cluster", "http://h:1", "--cluster"},
        {"--node-id", "a.b", "--node-id"},
        {"--node-id", "123456789012345678901234567890123", "--node-id"},
        {"--trusted-proxy", "nginx", "--trusted-proxy"},
        {"--trusted-proxy",
         "1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4,5.5.5.5,6.6.6.6,7.7.7.7,8.8.8.8,9.9.9.9",
         "--trusted-proxy"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *v[] = {"chatd", bad[i].flag, bad[i].value};
        cr_assert_eq(parse(&c, err, 3, v), -1, "%s %s", bad[i].flag, bad[i].value);
        cr_assert(strstr(err, bad[i].says) != NULL, "%s", err);
        config_free(&c);
    }
    /* the one log of a cluster is PostgreSQL */
    char *sqlite[] = {"chatd", "--cluster", "nats://h:1"};
    cr_assert_eq(parse(&c, err, 3, sqlite), -1);
    cr_assert(strstr(err, "PostgreSQL") != NULL, "%s", err);
    config_free(&c);
}

/* HTTPS (issue 13): both files or neither, from flags or environment; the
 * default public URL follows (https://), an explicit one is kept. */
Test(config, tls_flags)
{
    chatd_config c;
    char err[256];
    char *plain[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, plain), 0, "%s", err);
    cr_assert_str_eq(c.tls_cert, "");
    cr_assert_str_eq(c.tls_key, "");
    config_free(&c);

    char *both[] = {
        "chatd",    "--tls-cert",  "/etc/chatd/cert.pem", "--tls-key=/etc/chatd/key.pem",
        "--listen", "0.0.0.0:8443"};
    cr_assert_eq(parse(&c, err, 6, both), 0, "%s", err);
    cr_assert_str_eq(c.tls_cert, "/etc/chatd/cert.pem");
    cr_assert_str_eq(c.tls_key, "/etc/chatd/key.pem");
    cr_assert_str_eq(c.public_url, "https://0.0.0.0:8443");
    cr_assert(c.public_url_is_default);
    config_free(&c);

    char *given[] = {"chatd",        "--tls-cert",           "c.pem", "--tls-key", "k.pem",
                     "--public-url", "https://chat.example/"};
    cr_assert_eq(parse(&c, err, 7, given), 0, "%s", err);
    cr_assert_str_eq(c.public_url, "https://chat.example");
    config_free(&c);

    char *cert_only[] = {"chatd", "--tls-cert", "c.pem"};
    cr_assert_eq(parse(&c, err, 3, cert_only), -1);
    cr_assert(strstr(err, "--tls-cert needs --tls-key") != NULL, "%s", err);
    config_free(&c);
    char *key_only[] = {"chatd", "--tls-key", "k.pem"};
    cr_assert_eq(parse(&c, err, 3, key_only), -1);
    cr_assert(strstr(err, "--tls-key needs --tls-cert") != NULL, "%s", err);
    config_free(&c);
    char *empty[] = {"chatd", "--tls-cert", "", "--tls-key", "k.pem"};
    cr_assert_eq(parse(&c, err, 5, empty), -1);
    config_free(&c);

    setenv("CHATD_TLS_CERT", "env-cert.pem", 1);
    setenv("CHATD_TLS_KEY", "env-key.pem", 1);
    char *flag_wins[] = {"chatd", "--tls-key", "flag-key.pem"};
    cr_assert_eq(parse(&c, err, 3, flag_wins), 0, "%s", err);
    cr_assert_str_eq(c.tls_cert, "env-cert.pem");
    cr_assert_str_eq(c.tls_key, "flag-key.pem");
    cr_assert_str_eq(c.public_url, "https://127.0.0.1:8080");
    config_free(&c);
    unsetenv("CHATD_TLS_KEY");
    cr_assert_eq(parse(&c, err, 1, plain), -1, "CHATD_TLS_CERT alone");
    cr_assert(strstr(err, "--tls-key") != NULL, "%s", err);
    config_free(&c);
    unsetenv("CHATD_TLS_CERT");
}

/* Logs for machines (issue 13): --log-format and CHATD_LOG_FORMAT, the
 * level by CHATD_LOG_LEVEL as well as --log-level (flags win), and
 * --version, which like --help stops parsing at once. */
Test(config, log_format_level_and_version)
{
    chatd_config c;
    char err[256];
    char *none[] = {"chatd"};
    cr_assert_eq(parse(&c, err, 1, none), 0, "%s", err);
    cr_assert_eq(c.log_format, LOG_FORMAT_TEXT);
    cr_assert_eq(c.log_level, LOGL_INFO);
    cr_assert_eq(c.version, 0);
    config_free(&c);

    setenv("CHATD_LOG_FORMAT", "json", 1);
    setenv("CHATD_LOG_LEVEL", "warn", 1);
    cr_assert_eq(parse(&c, err, 1, none), 0, "%s", err);
    cr_assert_eq(c.log_format, LOG_FORMAT_JSON);
    cr_assert_eq(c.log_level, LOGL_WARN);
    config_free(&c);
    char *flags[] = {"chatd", "--log-format", "text", "--log-level=debug"};
    cr_assert_eq(parse(&c, err, 4, flags), 0, "%s", err);
    cr_assert_eq(c.log_format, LOG_FORMAT_TEXT, "the flag wins");
    cr_assert_eq(c.log_level, LOGL_DEBUG, "the flag wins");
    config_free(&c);
    char *eq[] = {"chatd", "--log-format=json"};
    cr_assert_eq(parse(&c, err, 2, eq), 0, "%s", err);
    cr_assert_eq(c.log_format, LOG_FORMAT_JSON);
    config_free(&c);

    const char *bad[] = {"JSON", "logfmt", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *v[] = {"chatd", "--log-format", (char *)bad[i]};
        cr_assert_eq(parse(&c, err, 3, v), -1, "accepted '%s'", bad[i]);
        cr_assert(strstr(err, "--log-format") && strstr(err, "text or json"), "%s", err);
        config_free(&c);
    }
    setenv("CHATD_LOG_FORMAT", "yaml", 1);
    cr_assert_eq(parse(&c, err, 1, none), -1);
    cr_assert(strstr(err, "CHATD_LOG_FORMAT") != NULL, "%s", err);
    config_free(&c);
    unsetenv("CHATD_LOG_FORMAT");

    /* --version wins over what follows, not over an error before it */
    char *version[] = {"chatd", "--version", "--bogus"};
    cr_assert_eq(parse(&c, err, 3, version), 0, "%s", err);
    cr_assert_eq(c.version, 1);
    config_free(&c);
    char *before[] = {"chatd", "--bogus", "--version"};
    cr_assert_eq(parse(&c, err, 3, before), -1);
    config_free(&c);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    config_usage("chatd", f);
    fclose(f);
    cr_assert_not_null(strstr(text, "--log-format FORMAT"), "%s", text);
    cr_assert_not_null(strstr(text, "CHATD_LOG_FORMAT"), "%s", text);
    cr_assert_not_null(strstr(text, "--version"), "%s", text);
    free(text);
}
