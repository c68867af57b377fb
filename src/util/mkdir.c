/*
 * mkdir — see mkdir.h.
 */
#include "util/mkdir.h"

#include "util/err.h"
#include "util/mem.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

int mkdir_parents(const char *path, mode_t mode, char *err, size_t errlen)
{
    char *dir = mem_strdup(path);
    int rc = 0;

    if (dir == NULL) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
        mem_free(dir);
        return 0; /* the current folder or "/" */
    }
    *slash = '\0';
    /* Each prefix ending at a '/' (or the end), from the top: mkdir -p. */
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(dir, mode) != 0 && errno != EEXIST) {
            err_set(err, errlen, "cannot create folder %s: %s", dir, strerror(errno));
            rc = -1;
            break;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    /* EEXIST also answers for a file or a dangling link of that name: say
     * so here rather than leave the caller a puzzling open() error. */
    if (rc == 0) {
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            err_set(err, errlen, "%s is not a folder", dir);
            rc = -1;
        }
    }
    mem_free(dir);
    return rc;
}
