/* vsearch.h - the vector store's search kernels: dot products of one query
 * against many stored rows, and a bounded top-k heap.
 *
 * Rows are float32, dim values each, stored back to back (row r starts at
 * rows + r * dim) and L2-normalised when stored, so cosine similarity is the
 * dot product. Two implementations of the scoring kernel exist: the scalar
 * reference (vsearch.c) and AVX2+FMA (vsearch_avx2.c), chosen once from CPU
 * features (SIMPLETON_KERNELS=ref forces the reference). They agree within
 * 1e-5 on unit vectors (the test holds them to that).
 *
 * Where the time goes: a search reads every stored vector once, so it is bound
 * by memory bandwidth (100,000 x 384 floats = 154 MB per query); the
 * arithmetic (one FMA per float) hides under the loads. */
#ifndef SMP_VSEARCH_H
#define SMP_VSEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* out[r] = dot(q, rows + r*dim) for r in [0, n). */
typedef void (*vsearch_scores_fn)(const float *q, const float *rows, size_t n, int dim, float *out);

void vsearch_scores_ref(const float *q, const float *rows, size_t n, int dim, float *out);
void vsearch_scores_avx2(const float *q, const float *rows, size_t n, int dim, float *out);
/* The implementation for this CPU (thread-safe, decided on first call). */
vsearch_scores_fn vsearch_scores(void);
const char *vsearch_impl_name(void); /* "avx2" or "ref" */

/* Scale v to unit length; a zero vector stays zero. Returns the old length. */
double vsearch_normalize(float *v, int dim);

/* Top-k by a min-heap: the weakest kept hit sits at the root, so a new score
 * costs one comparison unless it beats that. Ties keep the lower index, so the
 * result does not depend on how the scan was split. */
typedef struct {
    float score;
    uint64_t index;
} vsearch_hit;

typedef struct {
    vsearch_hit *h; /* k slots, owned by the caller */
    int n, k;
} vsearch_heap;

void vsearch_heap_init(vsearch_heap *hp, vsearch_hit *slots, int k);
void vsearch_heap_push(vsearch_heap *hp, float score, uint64_t index);
/* Sort the kept hits best first (the heap is consumed). */
void vsearch_heap_sort(vsearch_heap *hp);
/* a ranks before b. */
static inline bool vsearch_better(vsearch_hit a, vsearch_hit b) {
    return a.score > b.score || (a.score == b.score && a.index < b.index);
}

#endif
