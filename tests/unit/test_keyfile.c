/*
 * test_keyfile — the file side of src/auth/keys: where the signing key
 * cannot be read or written, and each refusal says why (chatd exits with
 * that message). Runs as any user: no case depends on file permissions
 * being enforced (root ignores them), only on the shape of the paths, and
 * a full disk is a file size limit (RLIMIT_FSIZE) on the test's process.
 */
#include <criterion/criterion.h>

#include "auth/keys.h"
#include "util/log.h"
#include "util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scratch.h"
#include "torture.h"

static char dir[64];

static void setup(void)
{
    mem_install();
    log_set_level(LOGL_OFF);
    scratch_dir_make(dir, sizeof dir, "keyfile");
}

static void teardown(void) { scratch_dir_remove(dir); }

TestSuite(keyfile, .init = setup, .fini = teardown);

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
}

/* load_or_create refuses path with a message containing want. */
static void refused(const char *path, const char *want)
{
    char err[400] = "";
    auth_keys *k = auth_keys_load_or_create(path, err, sizeof err);
    cr_assert_null(k, "%s was accepted", path);
    cr_assert_not_null(strstr(err, want), "%s: '%s' lacks '%s'", path, err, want);
}

Test(keyfile, parent_is_a_file)
{
    char file[128], path[192];
    snprintf(file, sizeof file, "%s/plain", dir);
    touch(file);
    snprintf(path, sizeof path, "%s/key.pem", file);
    refused(path, "cannot open key file");
    /* a folder on the way is a link to nowhere: the key is not there
     * (ENOENT), and the folders for it cannot be made */
    char link[128], nowhere[128];
    snprintf(link, sizeof link, "%s/link", dir);
    snprintf(nowhere, sizeof nowhere, "%s/missing", dir);
    cr_assert_eq(symlink(nowhere, link), 0);
    snprintf(path, sizeof path, "%s/sub/key.pem", link);
    refused(path, "cannot create folder");
    check_leaks();
}

Test(keyfile, dangling_symlink_is_not_overwritten)
{
    /* open() with O_NOFOLLOW refuses the link itself (and O_EXCL would
     * refuse to create through it): never writing elsewhere */
    char path[128], target[128];
    snprintf(path, sizeof path, "%s/key.pem", dir);
    snprintf(target, sizeof target, "%s/elsewhere.pem", dir);
    cr_assert_eq(symlink(target, path), 0);
    refused(path, "symbolic link");
    cr_assert_neq(access(target, F_OK), 0, "nothing was written through the link");
    check_leaks();
}

Test(keyfile, key_in_the_current_folder)
{
    char cwd[512];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(dir), 0);
    char err[400] = "";
    auth_keys *k = auth_keys_load_or_create("key.pem", err, sizeof err);
    cr_assert_not_null(k, "%s", err);
    auth_keys *again = auth_keys_load_or_create("key.pem", err, sizeof err);
    cr_assert_not_null(again, "%s", err);
    cr_assert_str_eq(auth_keys_kid(again), auth_keys_kid(k));
    auth_keys_free(again);
    auth_keys_free(k);
    cr_assert_eq(chdir(cwd), 0);
    check_leaks();
}

Test(keyfile, bad_pem_and_bad_files)
{
    char err[400] = "";
    cr_assert_null(auth_keys_from_pem(NULL, 0, err, sizeof err));
    cr_assert_not_null(strstr(err, "empty or too large"), "%s", err);
    cr_assert_null(auth_keys_from_pem("x", 1, err, sizeof err));
    refused("", "no key file path");
    char path[128];
    snprintf(path, sizeof path, "%s/empty.pem", dir);
    touch(path);
    refused(path, "empty or too large");
    snprintf(path, sizeof path, "%s/open.pem", dir);
    touch(path);
    cr_assert_eq(chmod(path, 0644), 0);
    refused(path, "accessible by group or others");
    snprintf(path, sizeof path, "%s/garbage.pem", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    cr_assert_eq(write(fd, "not a key\n", 10), 10);
    close(fd);
    refused(path, "garbage.pem");
    refused(dir, "not a regular file");
    check_leaks();
}

/* The disk fills while the new key is written: the key is refused with
 * the reason, and no half-written key file is left to be loaded later. */
Test(keyfile, disk_full_while_writing)
{
    char path[128], err[400] = "";
    snprintf(path, sizeof path, "%s/sub/key.pem", dir);
    struct rlimit old, small;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 64; /* a PEM key is about 240 bytes */
    signal(SIGXFSZ, SIG_IGN);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    auth_keys *k = auth_keys_load_or_create(path, err, sizeof err);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    cr_assert_null(k);
    cr_assert_not_null(strstr(err, "cannot write key file"), "%s", err);
    cr_assert_not_null(strstr(err, strerror(EFBIG)), "%s", err);
    cr_assert_neq(access(path, F_OK), 0, "the partial key file was removed");
    k = auth_keys_load_or_create(path, err, sizeof err);
    cr_assert_not_null(k, "with room again: %s", err);
    auth_keys_free(k);
    check_leaks();
}

Test(keyfile, oversized_and_unnamed)
{
    char path[128], err[400] = "";
    snprintf(path, sizeof path, "%s/huge.pem", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 64 * 1024 + 1), 0);
    close(fd);
    refused(path, "empty or too large");
    cr_assert_null(auth_keys_load_or_create(NULL, err, sizeof err));
    cr_assert_not_null(strstr(err, "no key file path"), "%s", err);
    static char pem[64 * 1024 + 2];
    memset(pem, 'A', sizeof pem);
    cr_assert_null(auth_keys_from_pem(pem, sizeof pem, err, sizeof err));
    cr_assert_not_null(strstr(err, "empty or too large"), "%s", err);
    /* a path that names a folder: nothing to open, nothing can be created */
    snprintf(path, sizeof path, "%s/newdir/", dir);
    refused(path, "cannot create key file");
    check_leaks();
}

/* A key file that is a symbolic link is refused (O_NOFOLLOW), even when it
 * points at a good private key: someone who can write the data directory
 * must not choose the key chatd signs with. */
Test(keyfile, symlink_to_a_good_key_refused)
{
    char real[128], path[128], err[400] = "";
    snprintf(real, sizeof real, "%s/real.pem", dir);
    snprintf(path, sizeof path, "%s/key.pem", dir);
    auth_keys *k = auth_keys_load_or_create(real, err, sizeof err);
    cr_assert_not_null(k, "%s", err);
    auth_keys_free(k);
    cr_assert_eq(symlink(real, path), 0);
    refused(path, "symbolic link");
    check_leaks();
}

/* A private key file that belongs to another user is refused: only the
 * user chatd runs as may have written it. As root the test gives the file
 * away; as anyone else a root-owned file is at hand. */
Test(keyfile, another_users_file_refused)
{
    char path[128], err[400] = "";
    snprintf(path, sizeof path, "%s/key.pem", dir);
    auth_keys *k = auth_keys_load_or_create(path, err, sizeof err);
    cr_assert_not_null(k, "%s", err);
    auth_keys_free(k);
    if (geteuid() == 0) {
        cr_assert_eq(chown(path, 65534, 65534), 0, "chown: %s", strerror(errno));
        refused(path, "belongs to uid 65534");
    } else {
        refused("/etc/passwd", "belongs to uid 0");
    }
    check_leaks();
}

/* A FIFO where the key should be: refused at once, not waited on. */
Test(keyfile, fifo_refused_without_blocking, .timeout = 10)
{
    char path[128];
    snprintf(path, sizeof path, "%s/key.pem", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    refused(path, "not a regular file");
    check_leaks();
}
