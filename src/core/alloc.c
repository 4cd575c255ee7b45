/* alloc.c - counting allocator; see alloc.h.
 *
 * Block layout: [size_t size][pad to 16][user bytes ...]. The 16-byte header
 * keeps user pointers aligned for SSE/AVX loads of up to 16 bytes. */
#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HDR 16

static atomic_size_t live_bytes;
static atomic_long fail_countdown = -1;

static int should_fail(void) {
    long n = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (n < 0) return 0;
    n = atomic_fetch_sub(&fail_countdown, 1);
    return n == 0;
}

void *smp_malloc(size_t n) {
    if (n > (size_t)-1 - HDR || should_fail()) return NULL;
    unsigned char *p = malloc(n + HDR);
    if (!p) return NULL;
    memcpy(p, &n, sizeof n);
    atomic_fetch_add_explicit(&live_bytes, n, memory_order_relaxed);
    return p + HDR;
}

void *smp_calloc(size_t count, size_t size) {
    if (size && count > (size_t)-1 / size) return NULL;
    void *p = smp_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void *smp_realloc(void *p, size_t n) {
    if (!p) return smp_malloc(n);
    if (n > (size_t)-1 - HDR || should_fail()) return NULL;
    unsigned char *base = (unsigned char *)p - HDR;
    size_t old;
    memcpy(&old, base, sizeof old);
    unsigned char *q = realloc(base, n + HDR);
    if (!q) return NULL;
    memcpy(q, &n, sizeof n);
    if (n >= old) atomic_fetch_add_explicit(&live_bytes, n - old, memory_order_relaxed);
    else atomic_fetch_sub_explicit(&live_bytes, old - n, memory_order_relaxed);
    return q + HDR;
}

void smp_free(void *p) {
    if (!p) return;
    unsigned char *base = (unsigned char *)p - HDR;
    size_t n;
    memcpy(&n, base, sizeof n);
    atomic_fetch_sub_explicit(&live_bytes, n, memory_order_relaxed);
    free(base);
}

char *smp_strndup(const char *s, size_t n) {
    char *d = smp_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *smp_strdup(const char *s) { return s ? smp_strndup(s, strlen(s)) : NULL; }

size_t smp_alloc_live_bytes(void) { return atomic_load(&live_bytes); }

void smp_alloc_fail_after(long n) { atomic_store(&fail_countdown, n); }
