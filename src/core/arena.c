/* arena.c - see arena.h. Chunks grow geometrically from 4 KiB so a request
 * with a few small parts costs one allocation, and one with many costs
 * O(log n); a block larger than the next chunk gets a chunk of its own. */
#include "core/arena.h"

#include <stdint.h>
#include <string.h>

#include "core/alloc.h"

#define ARENA_ALIGN 16
#define ARENA_FIRST_CHUNK 4096
#define ARENA_MAX_CHUNK (1u << 20)

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena_adopted {
    struct arena_adopted *next;
    void *p;
};

void *arena_alloc(arena *a, size_t n) {
    size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need < n) return NULL;
    struct arena_chunk *c = a->chunks;
    if (!c || c->cap - c->used < need) {
        size_t cap = c ? c->cap * 2 : ARENA_FIRST_CHUNK;
        if (cap > ARENA_MAX_CHUNK) cap = ARENA_MAX_CHUNK;
        if (cap < need) cap = need;
        if (cap > SIZE_MAX - sizeof *c) return NULL;
        struct arena_chunk *nc = smp_malloc(sizeof *nc + cap);
        if (!nc) return NULL;
        nc->used = 0;
        nc->cap = cap;
        a->bytes += sizeof *nc + cap;
        /* A full-size block gets its own chunk behind the current one, so the
         * current chunk's free space is not thrown away. */
        if (c && cap == need && c->cap - c->used >= ARENA_ALIGN) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->chunks = nc;
        }
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += need;
    memset(p, 0, n);
    return p;
}

void *arena_calloc(arena *a, size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    size_t n = count * size;
    return arena_alloc(a, n ? n : 1);
}

char *arena_strndup(arena *a, const char *s, size_t n) {
    char *d = arena_alloc(a, n + 1);
    if (d) memcpy(d, s, n);
    return d;
}

void *arena_adopt(arena *a, void *p) {
    if (!p) return NULL;
    struct arena_adopted *rec = arena_alloc(a, sizeof *rec);
    if (!rec) {
        smp_free(p);
        return NULL;
    }
    rec->p = p;
    rec->next = a->adopted;
    a->adopted = rec;
    return p;
}

void arena_free(arena *a) {
    /* Adopted records live in the chunks: free their blocks first. */
    for (struct arena_adopted *r = a->adopted; r; r = r->next) smp_free(r->p);
    for (struct arena_chunk *c = a->chunks, *next; c; c = next) {
        next = c->next;
        smp_free(c);
    }
    a->chunks = NULL;
    a->adopted = NULL;
    a->bytes = 0;
}
