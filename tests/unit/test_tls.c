/*
 * test_tls — unit tests for src/http/tls: loading a certificate chain and
 * key, each way the files can be unusable (every message names the file),
 * reload replacing the current credentials while a reference to the old
 * ones stays valid, a failed reload changing nothing, and allocation
 * failure at every step of a load.
 *
 * Certificates come from tests/lib/testca.sh (openssl), run from the
 * repository root (or CHATD_ROOT). The served-over-a-socket side is in
 * tests/integration/test_tls.py.
 */
#include <criterion/criterion.h>

#include "http/tls.h"
#include "util/mem.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scratch.h"
#include "torture.h"

static char dir[256];

static void sh(const char *fmt, const char *a, const char *b)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static const char *path(const char *name)
{
    static char bufs[8][512];
    static int i;
    char *p = bufs[i++ % 8];
    snprintf(p, sizeof bufs[0], "%s/%s", dir, name);
    return p;
}

static void setup(void)
{
    mem_install();
    scratch_dir_make(dir, sizeof dir, "tls");
    const char *root = getenv("CHATD_ROOT") && *getenv("CHATD_ROOT") ? getenv("CHATD_ROOT") : ".";
    sh("%s/tests/lib/testca.sh %s", root, dir);
    sh("%s/tests/lib/testca.sh %s a", root, dir);
    sh("%s/tests/lib/testca.sh %s b", root, dir);
}

static void teardown(void) { scratch_dir_remove(dir); }

TestSuite(tls, .init = setup, .fini = teardown);

/* The DER of the first certificate of c. */
static gnutls_datum_t leaf_of(const http_tls_creds *c)
{
    gnutls_pcert_st *pc;
    unsigned n;
    gnutls_privkey_t key;
    http_tls_creds_get(c, &pc, &n, &key);
    cr_assert_geq(n, 1);
    cr_assert_not_null(key);
    return pc[0].cert;
}

Test(tls, loads_and_describes)
{
    char err[512] = "";
    http_tls *t = http_tls_load(path("a.pem"), path("a.key"), err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    char about[640];
    http_tls_describe(t, about, sizeof about);
    cr_assert(strstr(about, "CN=a") && strstr(about, "sha256 ") && strstr(about, "valid until"),
              "%s", about);
    cr_assert_null(strstr(about, "EXPIRED"), "%s", about);
    http_tls_creds *c = http_tls_acquire(t);
    leaf_of(c);
    http_tls_release(c);
    http_tls_release(NULL);
    http_tls_free(t);
    http_tls_free(NULL);
    check_leaks();
}

Test(tls, unusable_files_are_named)
{
    sh("echo 'not a certificate' > %s/garbage.pem%s", dir, "");
    sh(": > %s/empty.pem%s", dir, "");
    struct {
        const char *cert, *key, *names, *says;
    } bad[] = {
        {"missing.pem", "a.key", "missing.pem", "cannot read"},
        {"a.pem", "missing.key", "missing.key", "cannot read"},
        {"garbage.pem", "a.key", "garbage.pem", "no usable PEM certificate"},
        {"empty.pem", "a.key", "empty.pem", "not a regular file of 1 byte"},
        {"a.key", "a.key", "a.key", "no usable PEM certificate"},
        {"a.pem", "a.pem", "a.pem", "not an unencrypted PEM private key"},
        {"a.pem", "b.key", "b.key", "is not the key of the certificate"},
        {".", "a.key", "/.", "not a regular file"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[512] = "";
        cr_assert_null(http_tls_load(path(bad[i].cert), path(bad[i].key), err, sizeof err),
                       "%s + %s loaded", bad[i].cert, bad[i].key);
        cr_assert(strstr(err, bad[i].names) && strstr(err, bad[i].says), "%s + %s: %s", bad[i].cert,
                  bad[i].key, err);
    }
    check_leaks();
}

Test(tls, reload_swaps_and_a_failed_one_keeps_the_old)
{
    char err[512] = "";
    sh("cp %s/a.pem %s/live.pem", dir, dir);
    sh("cp %s/a.key %s/live.key", dir, dir);
    http_tls *t = http_tls_load(path("live.pem"), path("live.key"), err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    http_tls_creds *held = http_tls_acquire(t); /* a connection accepted before the reload */
    gnutls_datum_t a = leaf_of(held);
    unsigned char a_der[4096];
    cr_assert_leq(a.size, sizeof a_der);
    memcpy(a_der, a.data, a.size);

    sh("cp %s/b.pem %s/live.pem", dir, dir);
    sh("cp %s/b.key %s/live.key", dir, dir);
    cr_assert_eq(http_tls_reload(t, err, sizeof err), 0, "%s", err);
    char about[640];
    http_tls_describe(t, about, sizeof about);
    cr_assert(strstr(about, "CN=b"), "%s", about);
    /* the old credentials are still whole for their holder */
    gnutls_datum_t still = leaf_of(held);
    cr_assert(still.size == a.size && memcmp(still.data, a_der, a.size) == 0);
    http_tls_release(held); /* the last reference to A: freed here */

    /* a half-done renewal (a new certificate, the old key) and a broken file */
    sh("cp %s/a.pem %s/live.pem", dir, dir);
    cr_assert_eq(http_tls_reload(t, err, sizeof err), -1);
    cr_assert(strstr(err, "is not the key of the certificate"), "%s", err);
    sh("echo broken > %s/live.pem%s", dir, "");
    cr_assert_eq(http_tls_reload(t, err, sizeof err), -1);
    cr_assert(strstr(err, "live.pem"), "%s", err);
    http_tls_describe(t, about, sizeof about);
    cr_assert(strstr(about, "CN=b"), "after failed reloads: %s", about);
    http_tls_free(t);
    check_leaks();
}

static int load_once(void *ctx)
{
    (void)ctx;
    http_tls *t = http_tls_load(path("a.pem"), path("a.key"), NULL, 0);
    if (t == NULL)
        return TORTURE_ERROR;
    int rc = http_tls_reload(t, NULL, 0) == 0 ? TORTURE_OK : TORTURE_ERROR;
    http_tls_free(t);
    return rc;
}

Test(tls, allocation_failure_while_loading) { torture("http_tls_load + reload", load_once, NULL); }
