/* vsearch.c - see vsearch.h: the scalar reference kernel, the dispatch, the
 * normalisation and the top-k heap. */
#include "store/vsearch.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The plain loop: one row at a time, accumulated in double so the reference
 * is the more accurate of the two. */
void vsearch_scores_ref(const float *q, const float *rows, size_t n, int dim, float *out) {
    for (size_t r = 0; r < n; r++) {
        const float *v = rows + r * (size_t)dim;
        double s = 0;
        for (int i = 0; i < dim; i++) s += (double)q[i] * v[i];
        out[r] = (float)s;
    }
}

static vsearch_scores_fn chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    const char *force = getenv("SIMPLETON_KERNELS");
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    chosen = avx2 && !(force && !strcmp(force, "ref")) ? vsearch_scores_avx2 : vsearch_scores_ref;
}

vsearch_scores_fn vsearch_scores(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}

const char *vsearch_impl_name(void) { return vsearch_scores() == vsearch_scores_avx2 ? "avx2" : "ref"; }

double vsearch_normalize(float *v, int dim) {
    double ss = 0;
    for (int i = 0; i < dim; i++) ss += (double)v[i] * v[i];
    double norm = sqrt(ss);
    if (norm > 0 && isfinite(norm)) {
        float inv = (float)(1.0 / norm);
        for (int i = 0; i < dim; i++) v[i] *= inv;
    } else {
        memset(v, 0, (size_t)dim * sizeof *v);
    }
    return norm;
}

void vsearch_heap_init(vsearch_heap *hp, vsearch_hit *slots, int k) {
    hp->h = slots;
    hp->n = 0;
    hp->k = k;
}

/* Min-heap on "better": the root is the worst kept hit. */
static void sift_down(vsearch_hit *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && vsearch_better(h[m], h[l])) m = l;
        if (r < n && vsearch_better(h[m], h[r])) m = r;
        if (m == i) return;
        vsearch_hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

void vsearch_heap_push(vsearch_heap *hp, float score, uint64_t index) {
    vsearch_hit x = {score, index};
    if (hp->k <= 0 || score != score) return; /* NaN never ranks */
    if (hp->n < hp->k) {
        int i = hp->n++;
        hp->h[i] = x;
        while (i > 0) { /* sift up */
            int p = (i - 1) / 2;
            if (!vsearch_better(hp->h[p], hp->h[i])) break;
            vsearch_hit t = hp->h[p];
            hp->h[p] = hp->h[i];
            hp->h[i] = t;
            i = p;
        }
        return;
    }
    if (!vsearch_better(x, hp->h[0])) return;
    hp->h[0] = x;
    sift_down(hp->h, hp->n, 0);
}

void vsearch_heap_sort(vsearch_heap *hp) {
    /* Pop the worst to the back repeatedly: the array ends best first. */
    for (int n = hp->n; n > 1; n--) {
        vsearch_hit t = hp->h[0];
        hp->h[0] = hp->h[n - 1];
        hp->h[n - 1] = t;
        sift_down(hp->h, n - 1, 0);
    }
}
