/*
 * test_mem — src/util/mem, on which every allocation-failure test rests:
 * mem_fail_at(N) fails exactly the Nth allocation from now (whichever of
 * alloc, calloc, realloc, strdup, strndup it is), once, counted by
 * mem_failures, also when several threads allocate at once; zero sizes
 * still give a block to free.
 */
#include <criterion/criterion.h>

#include "util/mem.h"

#include <pthread.h>
#include <string.h>

#include "torture.h"

Test(mem, the_nth_allocation_fails_once)
{
    void *p[6];
    unsigned long before = mem_failures();
    mem_fail_at(3);
    p[0] = mem_alloc(8);
    p[1] = mem_calloc(2, 8);
    p[2] = mem_strdup("third");
    p[3] = mem_strndup("fourth", 2);
    p[4] = mem_realloc(NULL, 4);
    p[5] = mem_alloc(1);
    cr_assert(p[0] && p[1] && p[3] && p[4] && p[5]);
    cr_assert_null(p[2], "the third one failed");
    cr_assert_eq(mem_failures(), before + 1);
    cr_assert_str_eq(p[3], "fo");
    for (int i = 0; i < 6; i++)
        mem_free(p[i]);

    for (int kind = 0; kind < 4; kind++) {
        void *old = mem_alloc(4);
        mem_fail_at(1);
        void *q = kind == 0   ? mem_alloc(4)
                  : kind == 1 ? mem_calloc(1, 4)
                  : kind == 2 ? mem_realloc(old, 64)
                              : (void *)mem_strndup("abc", 3);
        cr_assert_null(q, "kind %d", kind);
        mem_free(old); /* a failed realloc leaves the old block alone */
    }
    mem_fail_at(2);
    mem_fail_at(0);
    void *q = mem_alloc(1), *r = mem_alloc(1);
    cr_assert(q && r, "0 turns injection off");
    mem_free(q);
    mem_free(r);
    mem_free(NULL);
    check_leaks();
}

Test(mem, zero_sizes_give_a_block)
{
    void *a = mem_alloc(0), *b = mem_calloc(0, 4), *c = mem_calloc(4, 0);
    cr_assert(a && b && c);
    void *d = mem_realloc(a, 0);
    cr_assert_not_null(d, "realloc to 0 keeps a block (never frees behind the caller)");
    char *e = mem_strndup("", 5);
    cr_assert_str_eq(e, "");
    mem_free(d);
    mem_free(b);
    mem_free(c);
    mem_free(e);
    check_leaks();
}

static void *grab(void *arg)
{
    int *nulls = arg;
    for (int i = 0; i < 1000; i++) {
        void *p = mem_alloc(16);
        if (p == NULL)
            __atomic_add_fetch(nulls, 1, __ATOMIC_SEQ_CST);
        mem_free(p);
    }
    return NULL;
}

/* Four threads allocating at once: exactly one allocation fails. */
Test(mem, one_failure_across_threads)
{
    int nulls = 0;
    unsigned long before = mem_failures();
    pthread_t t[4];
    mem_fail_at(2500);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, grab, &nulls), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    mem_fail_at(0);
    cr_assert_eq(nulls, 1);
    cr_assert_eq(mem_failures(), before + 1);
    check_leaks();
}
