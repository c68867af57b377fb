/*
 * web_assets — the web client (web/index.html, app.js, style.css), compiled
 * into chatd so that GET / needs no files at run time.
 *
 * The table is generated at build time by scripts/embed-web.py from the files
 * in web/ (build/gen/web_assets.c); nothing here is written by hand except
 * this interface. Everything is static, read-only data: no allocation, no
 * locking, safe from any thread. Ownership: the table and its bytes live
 * as long as the process; callers only borrow them.
 */
#ifndef CHATD_WEB_ASSETS_H
#define CHATD_WEB_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *path;          /* URL path, e.g. "/app.js" */
    const char *content_type;  /* e.g. "text/javascript; charset=utf-8" */
    const unsigned char *data; /* the bytes (also NUL-terminated, not counted) */
    size_t size;               /* number of bytes in data */
} web_asset;

/*
 * The asset served at `path` (the URL path without query string), or NULL if
 * there is none. "/" maps to "/index.html". The result points into static
 * storage; the caller must not free it.
 */
const web_asset *web_asset_find(const char *path);

#endif
