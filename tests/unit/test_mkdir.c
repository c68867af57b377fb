/*
 * test_mkdir — unit tests for src/util/mkdir, and the promise it keeps for
 * auth/keys.h: chatd's data directory is created 0700 whichever file makes
 * it first, the SQLite database (store) or the signing key (auth).
 */
#include <criterion/criterion.h>

#include "auth/keys.h"
#include "store/store.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/mkdir.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scratch.h"
#include "torture.h"

static char dir[64];

static void setup(void)
{
    mem_install();
    log_set_level(LOGL_OFF);
    /* A common umask: it must not be what makes the folders private. */
    umask(022);
    scratch_dir_make(dir, sizeof dir, "mkdir");
}

static void teardown(void) { scratch_dir_remove(dir); }

TestSuite(mkdir, .init = setup, .fini = teardown);

static mode_t mode_of(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s missing", path);
    cr_assert(S_ISDIR(st.st_mode), "%s is not a folder", path);
    return st.st_mode & 0777;
}

Test(mkdir, creates_every_parent_with_mode)
{
    char path[160], a[96], ab[128];
    char err[256] = "";
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(ab, sizeof ab, "%s/a/b", dir);
    snprintf(path, sizeof path, "%s/a/b/file.db", dir);
    cr_assert_eq(mkdir_parents(path, MKDIR_PRIVATE, err, sizeof err), 0, "%s", err);
    cr_assert_eq(mode_of(a), 0700, "mode %o", mode_of(a));
    cr_assert_eq(mode_of(ab), 0700);
    cr_assert_neq(access(path, F_OK), 0, "the file itself is not made");
    /* again: nothing to do, not an error */
    cr_assert_eq(mkdir_parents(path, MKDIR_PRIVATE, err, sizeof err), 0, "%s", err);
    check_leaks();
}

Test(mkdir, existing_folders_keep_their_mode)
{
    char sub[96], path[160];
    snprintf(sub, sizeof sub, "%s/open", dir);
    cr_assert_eq(mkdir(sub, 0755), 0);
    snprintf(path, sizeof path, "%s/open/x/f", dir);
    cr_assert_eq(mkdir_parents(path, 0700, NULL, 0), 0);
    cr_assert_eq(mode_of(sub), 0755);
    snprintf(sub, sizeof sub, "%s/open/x", dir);
    cr_assert_eq(mode_of(sub), 0700);
    check_leaks();
}

Test(mkdir, nothing_to_do_without_a_folder_part)
{
    cr_assert_eq(mkdir_parents("file.db", 0700, NULL, 0), 0);
    cr_assert_eq(mkdir_parents("/file.db", 0700, NULL, 0), 0);
    check_leaks();
}

Test(mkdir, refuses_a_file_in_the_way)
{
    char file[96], path[160], err[256] = "";
    snprintf(file, sizeof file, "%s/plain", dir);
    int fd = open(file, O_WRONLY | O_CREAT, 0600);
    cr_assert_geq(fd, 0);
    close(fd);

    snprintf(path, sizeof path, "%s/plain/f", dir);
    cr_assert_eq(mkdir_parents(path, 0700, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "is not a folder"), "%s", err);

    snprintf(path, sizeof path, "%s/plain/sub/f", dir);
    cr_assert_eq(mkdir_parents(path, 0700, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "cannot create folder"), "%s", err);
    check_leaks();
}

Test(mkdir, out_of_memory)
{
    char err[64] = "";
    mem_fail_at(1);
    cr_assert_eq(mkdir_parents("a/b", 0700, err, sizeof err), -1);
    mem_fail_at(0);
    cr_assert_str_eq(err, "out of memory");
    check_leaks();
}

/* The data directory made by the store (chatd opens it first) is 0700, and
 * the key created in it afterwards leaves it so. */
Test(mkdir, data_dir_private_when_the_store_makes_it)
{
    char url[160], data[96], key[160], err[256] = "";
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(url, sizeof url, "sqlite://%s/chat.db", data);
    store *s = store_open(url, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    store_close(s);
    cr_assert_eq(mode_of(data), 0700, "mode %o", mode_of(data));

    snprintf(key, sizeof key, "%s/jwt-es256.pem", data);
    auth_keys *k = auth_keys_load_or_create(key, err, sizeof err);
    cr_assert_not_null(k, "%s", err);
    auth_keys_free(k);
    cr_assert_eq(mode_of(data), 0700);
    check_leaks();
}

Test(mkdir, data_dir_private_when_the_key_makes_it)
{
    char data[96], key[160], err[256] = "";
    snprintf(data, sizeof data, "%s/deep/data", dir);
    snprintf(key, sizeof key, "%s/jwt-es256.pem", data);
    auth_keys *k = auth_keys_load_or_create(key, err, sizeof err);
    cr_assert_not_null(k, "%s", err);
    auth_keys_free(k);
    cr_assert_eq(mode_of(data), 0700);
    check_leaks();
}
