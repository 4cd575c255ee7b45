/* bench/kernels.c - micro-benchmark of the matvec / matmul kernels per type.
 *
 * For each weight type: a 5632 x 2048 matrix (an FFN projection of a 1B-class
 * model), enough copies that they do not all fit in the last-level cache, then
 *   decode:  kern_matvec_q (one token), ms per matrix and weight GB/s
 *   prompt:  kern_matmul_q with 64 tokens, ms per matrix and GFLOP/s
 * for the reference and the AVX2 kernels, on one thread, best of several runs.
 *
 * One core of this machine kind (AMD EPYC, AVX2 build), 2026-11-24, best of two
 * runs; "before" is the per-token vec_dot loop (Q4_K/Q6_K already had
 * dot4), "after" the gemm kernels (register tiles for F32/F16/BF16, one weight
 * block per 4 tokens for Q8_0/Q4_0/Q5_0). The F32/F16/BF16 dot was re-ordered
 * for the tiles (two accumulator chains), which keeps matvec at memory speed.
 *   type   matvec GB/s before/after   matmul x64 GFLOP/s before/after
 *   F32        29 / 30                      48 / 59
 *   F16        32 / 31                      52 / 88
 *   BF16       32 / 29                      51 / 72
 *   Q8_0       29 / 28                      58 / 90
 *   Q4_0       13 / 13                      44 / 83
 *   Q5_0       11 / 11                      31 / 68
 *   Q4_K       21 / 21                     103 / 104
 *   Q6_K       26 / 25                     110 / 112
 * Peak FMA throughput of a core is ~115 GFLOP/s (2 x 8-float FMAs per cycle
 * at 3.6 GHz); the integer types count 2 ops per weight x token as well.
 *
 * Not built by default:
 *   make build/libsimpleton.a && cc -O2 -std=gnu11 -mavx2 -mfma -mf16c -Isrc \
 *     bench/kernels.c build/libsimpleton.a -lm -lpthread -o build/bench_kernels
 *   ./build/bench_kernels [type-name ...]      e.g. ./build/bench_kernels Q4_K Q8_0 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "engine/kernels/kernels.h"
#include "engine/tensor_types.h"

#define ROWS 5632
#define COLS 2048
#define NTOK 64
#define COPY_BYTES (96u << 20) /* spread copies over this much memory */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ULL;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
}

static void bench_type(int t) {
    size_t rb = kern_row_bytes(t, COLS), mb = rb * ROWS;
    int copies = (int)(COPY_BYTES / mb) + 1;
    uint8_t *W = smp_malloc(mb * (size_t)copies);
    float *row = smp_malloc(COLS * sizeof(float)), *X = smp_malloc((size_t)COLS * NTOK * sizeof(float));
    float *Y = smp_malloc((size_t)ROWS * NTOK * sizeof(float));
    if (!W || !row || !X || !Y) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    const kern_type_traits *ref = kern_traits_impl(t, KERN_REF);
    for (int r = 0; r < ROWS; r++) {
        for (int i = 0; i < COLS; i++) row[i] = frand() * 0.1f;
        ref->quantize(row, W + (size_t)r * rb, COLS);
    }
    for (int c = 1; c < copies; c++) memcpy(W + (size_t)c * mb, W, mb);
    for (int i = 0; i < COLS * NTOK; i++) X[i] = frand();

    for (int impl = 0; impl < KERN__COUNT; impl++) {
        if (impl == KERN_AVX2 && !kern_cpu_has_avx2()) continue;
        kern_select(impl == KERN_AVX2 ? "avx2" : "ref");
        size_t ab = kern_act_bytes(t, COLS);
        uint8_t *act = smp_malloc(ab * NTOK);
        for (int k = 0; k < NTOK; k++) kern_quantize_act(t, X + (size_t)k * COLS, COLS, act + ab * k);

        /* best of several runs: the machine may be shared */
        int reps = impl == KERN_REF ? 3 : 40;
        double mv = 1e9, mm = 1e9;
        for (int i = 0; i < reps; i++) {
            double t0 = now();
            kern_matvec_q(t, W + (size_t)(i % copies) * mb, COLS, act, Y, 0, ROWS);
            double dt = now() - t0;
            mv = dt < mv ? dt : mv;
        }
        int preps = impl == KERN_REF ? 1 : 4;
        for (int i = 0; i < preps; i++) {
            double t0 = now();
            kern_matmul_q(t, W + (size_t)(i % copies) * mb, COLS, act, NTOK, Y, ROWS, 0, ROWS);
            double dt = now() - t0;
            mm = dt < mm ? dt : mm;
        }

        printf("%-5s %-4s  matvec %7.3f ms  %6.2f GB/s   matmul x%d %8.2f ms  %6.1f GFLOP/s  (%.2f ms/token)\n",
               tt_name(t), kern_impl_name(impl), mv * 1e3, mb / mv / 1e9, NTOK, mm * 1e3,
               2.0 * ROWS * COLS * NTOK / mm / 1e9, mm * 1e3 / NTOK);
        fflush(stdout);
        smp_free(act);
    }
    smp_free(W);
    smp_free(row);
    smp_free(X);
    smp_free(Y);
}

int main(int argc, char **argv) {
    const int types[] = {TT_F32, TT_F16, TT_BF16, TT_Q8_0, TT_Q4_0, TT_Q4_1, TT_Q5_0, TT_Q5_1,
                         TT_Q2_K, TT_Q3_K, TT_Q4_K, TT_Q5_K, TT_Q6_K};
    printf("matrix %d x %d, one thread, matmul with %d tokens\n", ROWS, COLS, NTOK);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int want = argc < 2;
        for (int a = 1; a < argc; a++) want |= !strcmp(argv[a], tt_name(types[i]));
        if (want) bench_type(types[i]);
    }
    return 0;
}
