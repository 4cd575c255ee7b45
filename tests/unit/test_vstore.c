/* test_vstore.c - the vector store: AVX2 scoring against the scalar
 * reference, the top-k heap against a full sort, and the embedded store
 * (add/search/threshold/list/delete, dimension conflicts, persistence across
 * reopen, a crash in the middle of an add, split scans, concurrent readers
 * and a writer). */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "store/vsearch.h"
#include "store/vstore.h"
#include "store/vstore_int.h"
#include "test.h"

static float frand(unsigned *seed) { return (float)rand_r(seed) / (float)RAND_MAX * 2.f - 1.f; }

static void random_unit(float *v, int dim, unsigned *seed) {
    for (int i = 0; i < dim; i++) v[i] = frand(seed);
    vsearch_normalize(v, dim);
}

TEST(vstore_kernel_avx2_matches_ref) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) SKIP("no AVX2/FMA on this CPU");
    unsigned seed = 7;
    static const int dims[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 384, 768};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int dim = dims[di];
        for (size_t n = 0; n <= 13; n++) {
            float *q = smp_malloc((size_t)dim * sizeof *q);
            float *rows = smp_malloc((n ? n : 1) * (size_t)dim * sizeof *rows);
            float *a = smp_malloc((n ? n : 1) * sizeof *a), *b = smp_malloc((n ? n : 1) * sizeof *b);
            random_unit(q, dim, &seed);
            for (size_t r = 0; r < n; r++) random_unit(rows + r * (size_t)dim, dim, &seed);
            vsearch_scores_ref(q, rows, n, dim, a);
            vsearch_scores_avx2(q, rows, n, dim, b);
            for (size_t r = 0; r < n; r++) CHECK_NEAR(a[r], b[r], 1e-5);
            smp_free(q), smp_free(rows), smp_free(a), smp_free(b);
        }
    }
    /* Identical unit vectors score 1. */
    float v[384], s;
    random_unit(v, 384, &seed);
    vsearch_scores_avx2(v, v, 1, 384, &s);
    CHECK_NEAR(s, 1.0, 1e-5);
}

TEST(vstore_normalize) {
    float v[3] = {3, 0, 4};
    CHECK_NEAR(vsearch_normalize(v, 3), 5.0, 1e-9);
    CHECK_NEAR(v[0], 0.6, 1e-7);
    CHECK_NEAR(v[2], 0.8, 1e-7);
    float z[2] = {0, 0};
    CHECK_NEAR(vsearch_normalize(z, 2), 0.0, 0);
    CHECK(z[0] == 0 && z[1] == 0);
}

static int cmp_hit(const void *a, const void *b) {
    const vsearch_hit *x = a, *y = b;
    return vsearch_better(*x, *y) ? -1 : vsearch_better(*y, *x) ? 1 : 0;
}

TEST(vstore_heap_topk) {
    unsigned seed = 99;
    for (int round = 0; round < 50; round++) {
        int n = 1 + (int)(rand_r(&seed) % 500), k = 1 + (int)(rand_r(&seed) % 40);
        vsearch_hit *all = smp_malloc((size_t)n * sizeof *all), *slots = smp_malloc((size_t)k * sizeof *slots);
        vsearch_heap hp;
        vsearch_heap_init(&hp, slots, k);
        for (int i = 0; i < n; i++) {
            /* Coarse scores so ties happen; ties must keep the lower index. */
            all[i] = (vsearch_hit){(float)(rand_r(&seed) % 20) / 20.f, (uint64_t)i};
            vsearch_heap_push(&hp, all[i].score, all[i].index);
        }
        vsearch_heap_sort(&hp);
        qsort(all, (size_t)n, sizeof *all, cmp_hit);
        CHECK_INT(hp.n, n < k ? n : k);
        for (int i = 0; i < hp.n; i++) {
            CHECK(hp.h[i].score == all[i].score);
            CHECK_INT(hp.h[i].index, all[i].index);
        }
        smp_free(all);
        smp_free(slots);
    }
}

TEST(vstore_names_and_ids) {
    CHECK(vstore_name_ok("documents"));
    CHECK(vstore_name_ok("a.b-c_D9"));
    CHECK(vstore_name_ok("..."));
    CHECK(!vstore_name_ok(""));
    CHECK(!vstore_name_ok("."));
    CHECK(!vstore_name_ok(".."));
    CHECK(!vstore_name_ok("a/b"));
    CHECK(!vstore_name_ok("a b"));
    CHECK(!vstore_name_ok("é"));
    char long_name[66];
    memset(long_name, 'x', 65);
    long_name[65] = '\0';
    CHECK(!vstore_name_ok(long_name));
    long_name[64] = '\0';
    CHECK(vstore_name_ok(long_name));
    char a[VSTORE_ID_LEN + 1], b[VSTORE_ID_LEN + 1];
    vstore_new_id(a);
    vstore_new_id(b);
    CHECK_INT(strlen(a), 36);
    CHECK(strcmp(a, b) != 0);
    CHECK(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
    CHECK(a[14] == '4');
    CHECK(strchr("89ab", a[19]) != NULL);
}

/* ---- the embedded store ------------------------------------------------------- */

/* Also points jansson at the counting allocator, as main does in the server
 * (the store frees json_dumps output with smp_free). */
static void make_dir(char *dir) {
    json_set_alloc_funcs(smp_malloc, smp_free);
    strcpy(dir, "/tmp/smp-vstore-XXXXXX");
    SMP_ASSERT(mkdtemp(dir) != NULL);
}

static void remove_dir(const char *dir) {
    static const char *const files[] = {"vectors.sqlite3", "vectors.sqlite3-wal", "vectors.sqlite3-shm"};
    char p[256];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* n points with vectors e_i-ish (random, seeded) and payload {"i": i, "doc": doc}. */
typedef struct {
    vstore_point *pts;
    float *vecs;
    int n, dim;
} point_set;

static void points_make(point_set *ps, int n, int dim, unsigned seed, const char *doc) {
    ps->n = n;
    ps->dim = dim;
    ps->pts = smp_calloc((size_t)n, sizeof *ps->pts);
    ps->vecs = smp_malloc((size_t)n * (size_t)dim * sizeof *ps->vecs);
    for (int i = 0; i < n; i++) {
        float *v = ps->vecs + (size_t)i * (size_t)dim;
        for (int d = 0; d < dim; d++) v[d] = frand(&seed) * 3.f; /* not normalised: the store does it */
        vstore_new_id(ps->pts[i].id);
        ps->pts[i].vector = v;
        ps->pts[i].payload = json_pack("{s:i,s:s}", "i", i, "doc", doc);
    }
}

static void points_free(point_set *ps) {
    for (int i = 0; i < ps->n; i++) json_decref(ps->pts[i].payload);
    smp_free(ps->pts);
    smp_free(ps->vecs);
}

static long long count_of(vstore *s, const char *coll) {
    vstore_info info;
    char err[256];
    return vstore_get_info(s, coll, &info, err, sizeof err) == 0 ? info.points : -1;
}

TEST(vstore_local_basic) {
    char dir[64], err[512];
    make_dir(dir);
    vstore *s;
    REQUIRE(vstore_open_local(dir, &s, err, sizeof err) == 0);
    CHECK_STR(vstore_kind(s), "embedded");
    point_set a;
    points_make(&a, 50, 16, 1, "a");
    CHECK_INT(vstore_add(s, "docs", 16, a.pts, a.n, err, sizeof err), 0);
    CHECK_INT(count_of(s, "docs"), 50);
    /* Exact vector: score 1, ranked first, payload and id come back. */
    vstore_hit *h;
    int n;
    REQUIRE(vstore_search(s, "docs", a.pts[17].vector, 16, 5, -INFINITY, &h, &n, err, sizeof err) == 0);
    REQUIRE(n == 5);
    CHECK_STR(h[0].id, a.pts[17].id);
    CHECK_NEAR(h[0].score, 1.0, 1e-5);
    CHECK_INT(json_integer_value(json_object_get(h[0].payload, "i")), 17);
    for (int i = 1; i < n; i++) CHECK(h[i].score <= h[i - 1].score);
    float cut = h[2].score;
    vstore_hits_free(h, n);
    /* Threshold keeps only scores >= it. */
    REQUIRE(vstore_search(s, "docs", a.pts[17].vector, 16, 50, cut, &h, &n, err, sizeof err) == 0);
    CHECK_INT(n, 3);
    for (int i = 0; i < n; i++) CHECK(h[i].score >= cut);
    vstore_hits_free(h, n);
    /* k larger than the collection. */
    REQUIRE(vstore_search(s, "docs", a.pts[0].vector, 16, 1000, -INFINITY, &h, &n, err, sizeof err) == 0);
    CHECK_INT(n, 50);
    vstore_hits_free(h, n);
    /* Dimension conflicts name both sizes. */
    point_set b;
    points_make(&b, 3, 8, 2, "b");
    CHECK_INT(vstore_add(s, "docs", 8, b.pts, b.n, err, sizeof err), -SMP_E_CONFLICT);
    CHECK(strstr(err, "16") && strstr(err, "8"));
    CHECK_INT(vstore_search(s, "docs", b.pts[0].vector, 8, 3, -INFINITY, &h, &n, err, sizeof err), -SMP_E_CONFLICT);
    CHECK_INT(count_of(s, "docs"), 50);
    /* A second collection, listing, unknown names. */
    CHECK_INT(vstore_add(s, "alpha", 8, b.pts, b.n, err, sizeof err), 0);
    vstore_info *list;
    int nl;
    REQUIRE(vstore_list(s, &list, &nl, err, sizeof err) == 0);
    REQUIRE(nl == 2);
    CHECK_STR(list[0].name, "alpha");
    CHECK_INT(list[0].points, 3);
    CHECK_INT(list[0].dim, 8);
    CHECK_STR(list[1].name, "docs");
    CHECK_INT(list[1].points, 50);
    smp_free(list);
    CHECK_INT(vstore_search(s, "nope", b.pts[0].vector, 8, 3, -INFINITY, &h, &n, err, sizeof err), -SMP_E_NOT_FOUND);
    CHECK_INT(vstore_delete(s, "nope", err, sizeof err), -SMP_E_NOT_FOUND);
    CHECK_INT(vstore_add(s, "../x", 8, b.pts, b.n, err, sizeof err), -SMP_E_VALIDATION);
    /* Delete, then the name is free again with any dimension. */
    CHECK_INT(vstore_delete(s, "docs", err, sizeof err), 0);
    CHECK_INT(count_of(s, "docs"), -1);
    CHECK_INT(vstore_add(s, "docs", 8, b.pts, b.n, err, sizeof err), 0);
    CHECK_INT(count_of(s, "docs"), 3);
    json_t *health;
    CHECK(vstore_health(s, &health));
    CHECK_STR(json_string_value(json_object_get(health, "status")), "healthy");
    json_decref(health);
    vstore_close(s);
    points_free(&a);
    points_free(&b);
    remove_dir(dir);
}

TEST(vstore_local_persists_across_reopen) {
    char dir[64], err[512];
    make_dir(dir);
    vstore *s;
    REQUIRE(vstore_open_local(dir, &s, err, sizeof err) == 0);
    point_set a, b;
    points_make(&a, 1500, 24, 3, "a"); /* more than one block */
    points_make(&b, 10, 24, 4, "b");
    REQUIRE(vstore_add(s, "big", 24, a.pts, a.n, err, sizeof err) == 0);
    REQUIRE(vstore_add(s, "big", 24, b.pts, b.n, err, sizeof err) == 0);
    REQUIRE(vstore_add(s, "gone", 24, b.pts, 2, err, sizeof err) == 0);
    REQUIRE(vstore_delete(s, "gone", err, sizeof err) == 0);
    vstore_close(s);
    REQUIRE(vstore_open_local(dir, &s, err, sizeof err) == 0);
    CHECK_INT(count_of(s, "big"), 1510);
    CHECK_INT(count_of(s, "gone"), -1);
    vstore_hit *h;
    int n;
    int probes[] = {0, 1023, 1024, 1499};
    for (int i = 0; i < 4; i++) {
        REQUIRE(vstore_search(s, "big", a.pts[probes[i]].vector, 24, 1, -INFINITY, &h, &n, err, sizeof err) == 0);
        REQUIRE(n == 1);
        CHECK_STR(h[0].id, a.pts[probes[i]].id);
        CHECK_NEAR(h[0].score, 1.0, 1e-5);
        vstore_hits_free(h, n);
    }
    REQUIRE(vstore_search(s, "big", b.pts[9].vector, 24, 1, -INFINITY, &h, &n, err, sizeof err) == 0);
    CHECK_STR(h[0].id, b.pts[9].id);
    CHECK_STR(json_string_value(json_object_get(h[0].payload, "doc")), "b");
    vstore_hits_free(h, n);
    vstore_close(s);
    points_free(&a);
    points_free(&b);
    remove_dir(dir);
}

static void die_halfway(int i, int n) {
    if (i == n / 2) raise(SIGKILL);
}

/* A process killed inside an add's transaction leaves none of that add:
 * neither its points nor the collection it was creating. */
TEST(vstore_local_crash_mid_add_is_atomic) {
    char dir[64], err[512];
    make_dir(dir);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        vstore *s;
        point_set a, b;
        if (vstore_open_local(dir, &s, err, sizeof err) != 0) _exit(2);
        points_make(&a, 100, 8, 5, "a");
        points_make(&b, 400, 8, 6, "b");
        if (vstore_add(s, "kept", 8, a.pts, a.n, err, sizeof err) != 0) _exit(3);
        vstore_local_insert_hook = die_halfway;
        vstore_add(s, "kept", 8, b.pts, b.n, err, sizeof err);
        _exit(4); /* not reached */
    }
    int status;
    waitpid(pid, &status, 0);
    REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) { /* a new collection this time */
        vstore *s;
        point_set b;
        if (vstore_open_local(dir, &s, err, sizeof err) != 0) _exit(2);
        points_make(&b, 300, 8, 7, "b");
        vstore_local_insert_hook = die_halfway;
        vstore_add(s, "fresh", 8, b.pts, b.n, err, sizeof err);
        _exit(4);
    }
    waitpid(pid, &status, 0);
    REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    vstore *s;
    REQUIRE(vstore_open_local(dir, &s, err, sizeof err) == 0);
    CHECK_INT(count_of(s, "kept"), 100);
    CHECK_INT(count_of(s, "fresh"), -1);
    /* The store still takes writes. */
    point_set c;
    points_make(&c, 5, 8, 8, "c");
    CHECK_INT(vstore_add(s, "kept", 8, c.pts, c.n, err, sizeof err), 0);
    CHECK_INT(count_of(s, "kept"), 105);
    points_free(&c);
    vstore_close(s);
    remove_dir(dir);
}

/* Brute force over the set, for comparing the store's answers. */
static int brute_rank(const point_set *ps, const float *q, int k, int *best) {
    float *qs = smp_malloc((size_t)ps->dim * sizeof *qs), *v = smp_malloc((size_t)ps->dim * sizeof *v);
    vsearch_hit *all = smp_malloc((size_t)ps->n * sizeof *all);
    memcpy(qs, q, (size_t)ps->dim * sizeof *qs);
    vsearch_normalize(qs, ps->dim);
    for (int i = 0; i < ps->n; i++) {
        memcpy(v, ps->pts[i].vector, (size_t)ps->dim * sizeof *v);
        vsearch_normalize(v, ps->dim);
        float s;
        vsearch_scores_ref(qs, v, 1, ps->dim, &s);
        all[i] = (vsearch_hit){s, (uint64_t)i};
    }
    qsort(all, (size_t)ps->n, sizeof *all, cmp_hit);
    for (int i = 0; i < k && i < ps->n; i++) best[i] = (int)all[i].index;
    smp_free(qs), smp_free(v), smp_free(all);
    return k < ps->n ? k : ps->n;
}

TEST(vstore_local_split_scan_matches_brute_force) {
    char dir[64], err[512];
    make_dir(dir);
    vstore_local_split_rows = 64; /* split even small collections */
    vstore *s;
    REQUIRE(vstore_open_local(dir, &s, err, sizeof err) == 0);
    point_set a;
    points_make(&a, 3000, 33, 9, "a");
    REQUIRE(vstore_add(s, "c", 33, a.pts, a.n, err, sizeof err) == 0);
    unsigned seed = 10;
    for (int round = 0; round < 10; round++) {
        float q[33];
        for (int d = 0; d < 33; d++) q[d] = frand(&seed);
        int best[20];
        int nb = brute_rank(&a, q, 20, best);
        vstore_hit *h;
        int n;
        REQUIRE(vstore_search(s, "c", q, 33, 20, -INFINITY, &h, &n, err, sizeof err) == 0);
        REQUIRE(n == nb);
        /* Same set in the same order (scores differ at most by rounding,
         * so allow a swap of near-equal neighbours). */
        for (int i = 0; i < n; i++) {
            if (strcmp(h[i].id, a.pts[best[i]].id)) {
                CHECK(i + 1 < n && !strcmp(h[i].id, a.pts[best[i + 1]].id) &&
                      fabsf(h[i].score - h[i + 1].score) < 1e-5f);
            }
        }
        vstore_hits_free(h, n);
    }
    vstore_close(s);
    points_free(&a);
    remove_dir(dir);
}

typedef struct {
    vstore *s;
    const point_set *ps;
    int failures;
} reader_arg;

static void *reader_main(void *arg) {
    reader_arg *ra = arg;
    char err[256];
    for (int i = 0; i < 200; i++) {
        const vstore_point *p = &ra->ps->pts[i % ra->ps->n];
        vstore_hit *h;
        int n;
        if (vstore_search(ra->s, "live", p->vector, ra->ps->dim, 3, -INFINITY, &h, &n, err, sizeof err) != 0 ||
            n < 1 || strcmp(h[0].id, p->id) != 0)
            ra->failures++;
        vstore_hits_free(h, n);
    }
    return NULL;
}

/* Readers search while a writer adds batches: every search finds its point. */
TEST(vstore_local_concurrent_readers_and_writer) {
    char dir[64], err[512];
    make_dir(dir);
    vstore *s;
    REQUIRE(vstore_open_local(dir, &s, err, sizeof err) == 0);
    point_set base, more;
    points_make(&base, 200, 16, 11, "base");
    points_make(&more, 2000, 16, 12, "more");
    REQUIRE(vstore_add(s, "live", 16, base.pts, base.n, err, sizeof err) == 0);
    pthread_t th[3];
    reader_arg ra[3];
    for (int i = 0; i < 3; i++) {
        ra[i] = (reader_arg){s, &base, 0};
        pthread_create(&th[i], NULL, reader_main, &ra[i]);
    }
    for (int b = 0; b < 20; b++) CHECK_INT(vstore_add(s, "live", 16, more.pts + b * 100, 100, err, sizeof err), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(ra[i].failures, 0);
    }
    CHECK_INT(count_of(s, "live"), 2200);
    vstore_close(s);
    points_free(&base);
    points_free(&more);
    remove_dir(dir);
}
