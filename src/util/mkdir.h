/*
 * mkdir — the folders a file needs before it can be created.
 *
 * chatd creates its data directory on first start, from whichever file it
 * writes first: the SQLite database (store) or the signing key (auth). Both
 * go through mkdir_parents with the same mode, so the data directory ends
 * up 0700 (what auth/keys.h promises) whichever comes first.
 *
 * Threading: no shared state; two threads creating the same folders at once
 * both succeed (EEXIST is not an error). Ownership: path is only read.
 */
#ifndef CHATD_MKDIR_H
#define CHATD_MKDIR_H

#include <stddef.h>
#include <sys/types.h>

/* Mode for every folder chatd creates: only chatd's user may look inside
 * (the folder holds the private signing key and the log of messages). */
#define MKDIR_PRIVATE 0700

/* Creates each missing folder above the file `path` ("a/b/c.db": "a", then
 * "a/b"), like mkdir -p "$(dirname path)", with `mode` less the umask.
 * Folders that exist are left as they are (their mode too). Nothing to do
 * for "c.db" or "/c.db". Returns 0, or -1 with one line in err: out of
 * memory, "cannot create folder D: reason", or "D is not a folder" (D
 * exists as something else). */
int mkdir_parents(const char *path, mode_t mode, char *err, size_t errlen);

#endif
