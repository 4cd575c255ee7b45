/* test_arena.c - request-lifetime memory: no cap on blocks, alignment,
 * adoption of outside blocks, everything gone after arena_free. */
#include <stdint.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "test.h"

TEST(arena_many_blocks_all_kept) {
    size_t live0 = smp_alloc_live_bytes();
    arena a = ARENA_INIT;
    /* Far more blocks than any fixed table would hold, each written and read
     * back after all are allocated: none may be freed early. */
    enum { N = 5000 };
    static unsigned *p[N];
    for (unsigned i = 0; i < N; i++) {
        p[i] = arena_calloc(&a, 1 + i % 7, sizeof(unsigned));
        REQUIRE(p[i]);
        CHECK(((uintptr_t)p[i] & 15) == 0);
        CHECK(p[i][0] == 0);
        p[i][0] = i;
    }
    for (unsigned i = 0; i < N; i++) CHECK_INT(p[i][0], i);
    /* Adopted blocks, likewise. */
    static char *q[N];
    for (unsigned i = 0; i < N; i++) {
        char *b = smp_malloc(32);
        REQUIRE(b);
        snprintf(b, 32, "block %u", i);
        q[i] = arena_adopt(&a, b);
        CHECK(q[i] == b);
    }
    char want[32];
    for (unsigned i = 0; i < N; i++) {
        snprintf(want, sizeof want, "block %u", i);
        CHECK_STR(q[i], want);
    }
    void *big = arena_alloc(&a, 3u << 20); /* larger than any chunk */
    REQUIRE(big);
    CHECK(((unsigned char *)big)[(3u << 20) - 1] == 0);
    CHECK(arena_adopt(&a, NULL) == NULL);
    char *s = arena_strndup(&a, "hello world", 5);
    CHECK_STR(s, "hello");
    arena_free(&a);
    CHECK_INT(smp_alloc_live_bytes(), live0);
    CHECK(arena_calloc(&a, SIZE_MAX / 2, 4) == NULL); /* overflow */
    arena_free(&a);
}

TEST(arena_adopt_out_of_memory_frees_the_block) {
    size_t live0 = smp_alloc_live_bytes();
    arena a = ARENA_INIT;
    char *b = smp_malloc(100);
    REQUIRE(b);
    smp_alloc_fail_after(0); /* the arena's chunk allocation fails */
    CHECK(arena_adopt(&a, b) == NULL);
    smp_alloc_fail_after(-1);
    arena_free(&a);
    CHECK_INT(smp_alloc_live_bytes(), live0);
}

/* Chunks double from 4 KiB up to 1 MiB: 8 MiB of small blocks takes a
 * handful of allocations (not one per 4 KiB), and no chunk past 1 MiB is
 * made ahead of need (so what is held stays within a chunk of what is used). */
TEST(arena_chunks_grow_geometrically_to_a_cap) {
    size_t live0 = smp_alloc_live_bytes();
    arena a = ARENA_INIT;
    enum { BLOCK = 64, TOTAL = 8 << 20 };
    smp_alloc_fail_after(32); /* 4 KiB .. 1 MiB is 9 chunks, then 7 more of 1 MiB */
    for (size_t used = 0; used < TOTAL; used += BLOCK) {
        unsigned char *p = arena_alloc(&a, BLOCK);
        REQUIRE(p);
        p[BLOCK - 1] = 1;
    }
    smp_alloc_fail_after(-1);
    CHECK(a.bytes >= (size_t)TOTAL);
    if (a.bytes > (size_t)TOTAL + (1u << 20) + (64u << 10))
        fprintf(stderr, "  %zu bytes held for %d used\n", a.bytes, TOTAL);
    CHECK(a.bytes <= (size_t)TOTAL + (1u << 20) + (64u << 10));
    arena_free(&a);
    CHECK_INT(smp_alloc_live_bytes(), live0);
}
