/* bench_rag.c - the embedded vector store's speed: search latency over
 * N synthetic vectors (default 100,000 x 384), the memory bound it is held
 * to, and how fast points go in and come back after a restart.
 *
 *   usage: build/bench_rag [N] [DIM] [QUERIES]
 *
 * Steps:
 *   1. bound   time to read N*DIM floats once from memory (a plain AVX2 sum
 *              over a buffer the size of the store's vectors), best of 5, on
 *              one thread and on all compute threads; the search should stay
 *              within 2x of the all-threads figure.
 *   2. add     N random points (small JSON payloads) in batches of 1000 into a
 *              fresh store in a temporary directory: points/s through SQLite
 *              (one transaction per batch) and the in-memory append.
 *   3. reopen  close and open again: load time of N points.
 *   4. search  QUERIES random queries, top_k 5, scanned on all threads, then
 *              on one thread (half as many queries): p50 / p99 / mean in ms,
 *              and p50 against the bound of the same thread count.
 * Also the scoring kernels alone (scalar reference and AVX2) over the buffer.
 * Prints one line per figure. No embedding model is involved: bench/rag/run.sh
 * measures ingestion through the server (chunks/s, with the default model). */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/util.h"
#include "engine/threadpool.h"
#include "store/vsearch.h"
#include "store/vstore.h"
#include "store/vstore_int.h"

static double ms_since(uint64_t t0) { return (double)(util_now_ns() - t0) / 1e6; }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p) {
    int i = (int)ceil(p * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* ---- memory bound ------------------------------------------------------------ */

typedef struct {
    const float *data;
    size_t n;
    float sums[64];
} read_job;

static void read_task(void *arg, int task, int thread) {
    (void)thread;
    read_job *j = arg;
    size_t per = (j->n / 64 + 7) & ~(size_t)7, a = (size_t)task * per, b = a + per < j->n ? a + per : j->n;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = a;
    for (; i + 32 <= b; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(j->data + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(j->data + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(j->data + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(j->data + i + 24));
    }
    float tmp[8];
    _mm256_storeu_ps(tmp, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    float s = 0;
    for (int k = 0; k < 8; k++) s += tmp[k];
    for (; i < b; i++) s += j->data[i];
    j->sums[task] = s;
}

/* Best time (ms) of 5 passes over n floats, with `pool` (NULL: one thread). */
static double read_once_ms(const float *data, size_t n, tp_pool *pool) {
    read_job j = {data, n, {0}};
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = util_now_ns();
        tp_run(pool, read_task, &j, 64);
        double ms = ms_since(t0);
        if (ms < best) best = ms;
    }
    float s = 0;
    for (int k = 0; k < 64; k++) s += j.sums[k];
    if (s == 12345.678f) puts(""); /* keep the sums alive */
    return best;
}

/* ---- store ----------------------------------------------------------------------- */

static void random_vec(float *v, int dim, unsigned *seed) {
    for (int i = 0; i < dim; i++) v[i] = (float)rand_r(seed) / (float)RAND_MAX - 0.5f;
}

static void search_run(vstore *s, int dim, int queries, const char *label, double bound_ms) {
    double *lat = malloc((size_t)queries * sizeof *lat);
    float *q = malloc((size_t)dim * sizeof *q);
    unsigned seed = 4242;
    char err[512];
    for (int i = 0; i < queries + 3; i++) {
        random_vec(q, dim, &seed);
        vstore_hit *h;
        int n;
        uint64_t t0 = util_now_ns();
        if (vstore_search(s, "bench", q, dim, 5, -INFINITY, &h, &n, err, sizeof err) != 0) {
            fprintf(stderr, "search: %s\n", err);
            exit(1);
        }
        double ms = ms_since(t0);
        vstore_hits_free(h, n);
        if (i >= 3) lat[i - 3] = ms; /* the first few warm caches up */
    }
    double sum = 0;
    for (int i = 0; i < queries; i++) sum += lat[i];
    qsort(lat, (size_t)queries, sizeof *lat, cmp_double);
    printf("search %-22s p50 %7.2f ms  p99 %7.2f ms  mean %7.2f ms  (%d queries, top_k 5)", label,
           pct(lat, queries, 0.5), pct(lat, queries, 0.99), sum / queries, queries);
    if (bound_ms > 0) printf("  p50/bound %.2fx", pct(lat, queries, 0.5) / bound_ms);
    printf("\n");
    free(lat);
    free(q);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    int dim = argc > 2 ? atoi(argv[2]) : 384;
    int queries = argc > 3 ? atoi(argv[3]) : 200;
    if (n <= 0 || dim <= 0 || queries <= 0) {
        fprintf(stderr, "usage: %s [N] [DIM] [QUERIES]\n", argv[0]);
        return 2;
    }
    json_set_alloc_funcs(smp_malloc, smp_free);
    size_t floats = (size_t)n * (size_t)dim;
    printf("rag bench: %d vectors x %d dims = %.1f MB of float32, %d cores, %s kernel\n", n, dim,
           (double)floats * 4 / 1e6, tp_cores(), vsearch_impl_name());

    /* 1. the memory bound */
    float *data = malloc(floats * sizeof *data);
    unsigned seed = 1;
    for (size_t i = 0; i < floats; i++) data[i] = (float)(rand_r(&seed) & 0xff) / 256.f;
    tp_pool *pool = NULL;
    tp_new(0, &pool);
    double one = read_once_ms(data, floats, NULL), all = read_once_ms(data, floats, pool);
    printf("bound  read the vectors once: %.2f ms on 1 thread (%.1f GB/s), %.2f ms on %d threads (%.1f GB/s)\n", one,
           (double)floats * 4 / one / 1e6, all, tp_n_threads(pool), (double)floats * 4 / all / 1e6);
    /* The scoring kernels alone, one thread, over the same buffer. */
    float *q = malloc((size_t)dim * sizeof *q), *scores = malloc((size_t)n * sizeof *scores);
    random_vec(q, dim, &seed);
    double kbest[2] = {1e30, 1e30};
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 2; k++) {
            uint64_t t1 = util_now_ns();
            (k ? vsearch_scores_avx2 : vsearch_scores_ref)(q, data, (size_t)n, dim, scores);
            double ms = ms_since(t1);
            if (ms < kbest[k]) kbest[k] = ms;
        }
    printf("kernel score all rows on 1 thread: scalar reference %.2f ms, avx2 %.2f ms\n", kbest[0], kbest[1]);
    free(q);
    free(scores);
    free(data);
    tp_free(pool);

    /* 2. adding points */
    char dir[] = "/tmp/smp-bench-rag-XXXXXX", err[512];
    if (!mkdtemp(dir)) return 1;
    vstore *s;
    if (vstore_open_local(dir, &s, err, sizeof err) != 0) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    const int batch = 1000;
    vstore_point *pts = calloc((size_t)batch, sizeof *pts);
    float *vecs = malloc((size_t)batch * (size_t)dim * sizeof *vecs);
    uint64_t t0 = util_now_ns();
    for (int start = 0; start < n; start += batch) {
        int cnt = n - start < batch ? n - start : batch;
        for (int i = 0; i < cnt; i++) {
            random_vec(vecs + (size_t)i * (size_t)dim, dim, &seed);
            vstore_new_id(pts[i].id);
            pts[i].vector = vecs + (size_t)i * (size_t)dim;
            pts[i].payload = json_pack("{s:s,s:{s:i,s:s}}", "content", "synthetic chunk text of a benchmark point",
                                       "metadata", "chunk_index", start + i, "document_id", "bench");
        }
        if (vstore_add(s, "bench", dim, pts, cnt, err, sizeof err) != 0) {
            fprintf(stderr, "add: %s\n", err);
            return 1;
        }
        for (int i = 0; i < cnt; i++) json_decref(pts[i].payload);
    }
    double add_ms = ms_since(t0);
    printf("add    %d points in %.0f ms: %.0f points/s (batches of %d, one transaction each)\n", n, add_ms,
           n / (add_ms / 1e3), batch);
    free(pts);
    free(vecs);

    /* 3. reopen */
    vstore_close(s);
    t0 = util_now_ns();
    if (vstore_open_local(dir, &s, err, sizeof err) != 0) {
        fprintf(stderr, "reopen: %s\n", err);
        return 1;
    }
    printf("reopen load %d points: %.0f ms\n", n, ms_since(t0));

    /* 4. search */
    search_run(s, dim, queries, "(all threads)", all);
    size_t saved = vstore_local_split_rows;
    vstore_local_split_rows = (size_t)-1 / 4;
    search_run(s, dim, queries / 2 > 0 ? queries / 2 : 1, "(1 thread)", one);
    vstore_local_split_rows = saved;
    vstore_close(s);

    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}
