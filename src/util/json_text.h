/*
 * json_text — JSON values to text owned by the project's allocator.
 */
#ifndef CHATD_JSON_TEXT_H
#define CHATD_JSON_TEXT_H

#include <jansson.h>

/* The compact serialization of json as a NUL-terminated string from
 * mem_alloc (free with mem_free); NULL when out of memory. The text is
 * written into a buffer sized beforehand: json_dumpb then has no growing
 * buffer of its own, and a failure inside it (its loop check allocates)
 * shows as a short count, never as a truncated object such as
 * {"type":"pong",:"p"} (found by the allocation-failure test). */
char *json_text_compact(const json_t *json);

#endif
