/*
 * mem — the project's allocation wrapper.
 *
 * Every allocation in chatd goes through these functions so that tests can
 * make the Nth one fail (SQLite's and curl's "torture" technique) and check
 * that each path ends in a clean error without a crash or a leak. They
 * return NULL on failure like malloc; callers must handle it. mem_install()
 * routes jansson's allocations through the same hook.
 *
 * Threading: safe from any thread (the failure countdown is atomic); the
 * test hook is process-wide, so tests set it from one thread at a time.
 * Ownership: what mem_* returns is released with mem_free (that is free(),
 * so text from jansson after mem_install may be released either way).
 */
#ifndef CHATD_MEM_H
#define CHATD_MEM_H

#include <stddef.h>

void *mem_alloc(size_t size);
void *mem_calloc(size_t count, size_t size);
void *mem_realloc(void *ptr, size_t size);
char *mem_strdup(const char *s);
char *mem_strndup(const char *s, size_t n);
void mem_free(void *ptr);

/* Makes jansson allocate through mem_alloc/mem_free. Call once at start. */
void mem_install(void);

/* Test hook: the n-th allocation from now fails (1 = the next one); 0 turns
 * injection off. Returns nothing; mem_failures() tells how many failed. */
void mem_fail_at(unsigned long n);
unsigned long mem_failures(void);

#endif
