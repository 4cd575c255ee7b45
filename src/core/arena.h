/* arena.h - memory that lives exactly as long as one request.
 *
 * An arena hands out zeroed blocks carved from chunks it allocates, and can
 * adopt a block from smp_malloc (a decoded image, a detached buf) so that it
 * is freed with the rest. arena_free releases everything at once: callers
 * never free what they got from an arena. There is no cap on the number or
 * size of blocks; the request's own limits (body size, message count, image
 * count) bound what a request can ask for. */
#ifndef SMP_ARENA_H
#define SMP_ARENA_H

#include <stddef.h>

typedef struct arena {
    struct arena_chunk *chunks; /* newest first */
    struct arena_adopted *adopted;
    size_t bytes;               /* held: chunks plus adopted blocks' records */
} arena;

#define ARENA_INIT {0}

/* n zeroed bytes aligned to 16, or NULL when memory ran out. */
void *arena_alloc(arena *a, size_t n);
/* count * size zeroed bytes; NULL on overflow or when memory ran out. */
void *arena_calloc(arena *a, size_t count, size_t size);
char *arena_strndup(arena *a, const char *s, size_t n);
/* Take ownership of p (from smp_malloc; NULL is returned as NULL). Returns
 * p, or NULL after freeing p when the arena cannot record it. */
void *arena_adopt(arena *a, void *p);
/* Free every block; the arena is empty and can be used again. */
void arena_free(arena *a);

#endif
