/*
 * scratch — a test's private folder: made fresh under /tmp (or tmpfs) with
 * mkdtemp(), removed with everything in it afterwards. Written once for the
 * Criterion binaries in tests/unit.
 *
 * scratch_dir_make(): fills buf with /tmp/chatd-NAME-XXXXXX made unique and
 * created (mode 0700). A test that cannot get its folder cannot run, so a
 * failure (buf too small, mkdtemp failed) fails the test with a Criterion
 * assertion rather than returning.
 *
 * scratch_dir_make_tmpfs(): the same under /dev/shm when it is writable, for
 * loops that create and sync thousands of files (the allocation-failure
 * tests); /tmp otherwise.
 *
 * scratch_dir_remove(): removes dir and all below it, depth first, without
 * following symbolic links (nftw() with FTW_PHYS; no shell, so nothing to
 * quote). "" and a dir that is already gone are no-ops (as with rm -rf), so
 * a .fini can call it whether or not its test got as far as making the
 * folder. Returns 0, or -1 after saying on stderr what could not be
 * removed. It does not assert itself: it is mostly called from a .fini,
 * where Criterion ignores failures, so a message is what is seen there.
 *
 * Ownership: the caller owns buf (usually a static array the .init and .fini
 * share). Threading: none of its own; call from the test's main thread, not
 * while another thread still writes below dir.
 */
#ifndef CHATD_TEST_SCRATCH_H
#define CHATD_TEST_SCRATCH_H

#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline void scratch_dir_make_in(char *buf, size_t len, const char *base, const char *name)
{
    int n = snprintf(buf, len, "%s/chatd-%s-XXXXXX", base, name);
    cr_assert(n > 0 && (size_t)n < len, "scratch dir name for %s does not fit %zu bytes", name,
              len);
    cr_assert_not_null(mkdtemp(buf), "mkdtemp %s: %s", buf, strerror(errno));
}

static inline void scratch_dir_make(char *buf, size_t len, const char *name)
{
    scratch_dir_make_in(buf, len, "/tmp", name);
}

static inline void scratch_dir_make_tmpfs(char *buf, size_t len, const char *name)
{
    scratch_dir_make_in(buf, len, access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", name);
}

static inline int scratch_remove_one(const char *path, const struct stat *st, int flag,
                                     struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    if (remove(path) != 0) {
        fprintf(stderr, "cannot remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static inline int scratch_dir_remove(const char *dir)
{
    struct stat st;
    if (dir == NULL || dir[0] == '\0' || (lstat(dir, &st) != 0 && errno == ENOENT))
        return 0;
    if (nftw(dir, scratch_remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        fprintf(stderr, "cannot remove %s\n", dir);
        return -1;
    }
    return 0;
}

#endif
