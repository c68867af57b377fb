/*
 * json_text — JSON values to text, for everything chatd sends or stores.
 *
 * Use it instead of json_dumps wherever the text leaves the process (a
 * data-channel frame, an HTTP body, a store row): json_dumps can hand back
 * a syntactically broken object when an allocation fails inside it (below).
 *
 * Threading: no state of its own; as thread-safe as jansson on a json_t no
 * other thread modifies. Ownership: json is borrowed; the text is the
 * caller's (mem_free).
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
