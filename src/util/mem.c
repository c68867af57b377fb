/*
 * mem — see mem.h. The failure counter is atomic so the hook also works
 * while event-loop threads allocate, though tests use it single-threaded.
 */
#include "util/mem.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_ulong fail_countdown; /* 0 = off */
static atomic_ulong failures;

void mem_fail_at(unsigned long n) { atomic_store(&fail_countdown, n); }

unsigned long mem_failures(void) { return atomic_load(&failures); }

/* True when this allocation is the one chosen to fail. */
static int should_fail(void)
{
    unsigned long cur = atomic_load(&fail_countdown);
    while (cur != 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &cur, cur - 1)) {
            if (cur == 1) {
                atomic_fetch_add(&failures, 1);
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

void *mem_alloc(size_t size)
{
    if (should_fail())
        return NULL;
    return malloc(size ? size : 1);
}

void *mem_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *mem_realloc(void *ptr, size_t size)
{
    if (should_fail())
        return NULL;
    return realloc(ptr, size ? size : 1);
}

char *mem_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *copy = mem_alloc(len + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

char *mem_strdup(const char *s) { return mem_strndup(s, strlen(s)); }

void mem_free(void *ptr) { free(ptr); }

void mem_install(void) { json_set_alloc_funcs(mem_alloc, mem_free); }
