/* alloc.h - the one counting allocator.
 *
 * Every heap allocation in Simpleton goes through these wrappers, so the number
 * of live bytes is a metric (simpleton_heap_bytes) and a test can make the Nth
 * allocation fail. Each block carries a 16-byte header holding its size.
 * smp_free(NULL) is a no-op. Functions return NULL when memory runs out; callers
 * handle that like any other error. */
#ifndef SMP_ALLOC_H
#define SMP_ALLOC_H

#include <stddef.h>

void *smp_malloc(size_t n);
void *smp_calloc(size_t count, size_t size);
void *smp_realloc(void *p, size_t n);
void smp_free(void *p);
char *smp_strdup(const char *s);
char *smp_strndup(const char *s, size_t n);

/* Live heap bytes allocated through the wrappers. */
size_t smp_alloc_live_bytes(void);

/* Test hook: the allocation after the next n succeed fails (n < 0: never). */
void smp_alloc_fail_after(long n);

#endif
