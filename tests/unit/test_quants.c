/* test_quants.c - kernels: block sizes, fp16/bf16 conversions, quantize /
 * dequantize round trips, AVX2 against the reference, matvec/matmul, the
 * multi-row multi-token gemm kernels against vec_dot (bit for bit), and the
 * layouts checked against real GGUF files (../shared/models/mini).
 *
 * Named tolerances (all relative to L1 = sum_i |w_i * a_i| of the dequantized
 * operands, the natural scale of a dot product's rounding error):
 *   TOL_DOT_INT   1e-6  quantized dots: integer sums are exact, only the float
 *                       accumulation of per-block terms differs (seen: 2e-8)
 *   TOL_DOT_FLOAT 1e-6  F32/F16/BF16 dots: n float additions in another order
 *                       (seen: 6.5e-8 at n = 4096)
 * Activation quantizers and fp16 conversions must match bit for bit. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/quants.h"
#include "engine/tensor_types.h"
#include "test.h"

#define TOL_DOT_INT 1e-6
#define TOL_DOT_FLOAT 1e-6

static const int weight_types[] = {TT_F32, TT_F16, TT_BF16, TT_Q4_0, TT_Q4_1, TT_Q5_0, TT_Q5_1,
                                   TT_Q8_0, TT_Q2_K, TT_Q3_K, TT_Q4_K, TT_Q5_K, TT_Q6_K};
#define N_WEIGHT_TYPES (int)(sizeof weight_types / sizeof weight_types[0])

/* ---------------------------------------------------------------- random */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(void) { /* (0, 1) */
    return ((rng_u64() >> 11) + 0.5) / 9007199254740992.0;
}

static float rng_gauss(void) {
    return (float)(sqrt(-2 * log(rng_unit())) * cos(6.283185307179586 * rng_unit()));
}

static void fill_gauss(float *x, int n, float scale) {
    for (int i = 0; i < n; i++) x[i] = scale * rng_gauss();
}

/* ------------------------------------------------------------ block sizes */

TEST(quant_block_sizes_match_tensor_types) {
    const struct { int t; size_t sz; } b[] = {
        {TT_Q4_0, sizeof(block_q4_0)}, {TT_Q4_1, sizeof(block_q4_1)}, {TT_Q5_0, sizeof(block_q5_0)},
        {TT_Q5_1, sizeof(block_q5_1)}, {TT_Q8_0, sizeof(block_q8_0)}, {TT_Q8_1, sizeof(block_q8_1)},
        {TT_Q2_K, sizeof(block_q2_K)}, {TT_Q3_K, sizeof(block_q3_K)}, {TT_Q4_K, sizeof(block_q4_K)},
        {TT_Q5_K, sizeof(block_q5_K)}, {TT_Q6_K, sizeof(block_q6_K)}, {TT_Q8_K, sizeof(block_q8_K)},
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) CHECK_INT(b[i].sz, tt_block_bytes(b[i].t));
    for (int impl = 0; impl < KERN__COUNT; impl++)
        for (int t = 0; t < TT__MAX; t++) {
            const kern_type_traits *k = kern_traits_impl(t, impl);
            if (!tt_block_elems(t)) {
                CHECK(k == NULL);
                continue;
            }
            REQUIRE(k != NULL);
            CHECK_INT(k->type, t);
            CHECK_INT(k->blck_elems, tt_block_elems(t));
            CHECK_INT(k->blck_bytes, tt_block_bytes(t));
        }
    CHECK_INT(kern_row_bytes(TT_Q4_K, 4096), 16 * 144);
    CHECK_INT(kern_row_bytes(TT_Q4_K, 100), 0);
    CHECK_INT(kern_row_bytes(TT_F16, 7), 14);
    CHECK(kern_traits(5) == NULL);
}

/* ------------------------------------------------------------ fp16 / bf16 */

TEST(quant_fp16_all_65536_match_f16c) {
    if (!kern_cpu_has_avx2()) SKIP("no AVX2 on this CPU");
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t ref = quants_f32_bits(quants_f16_to_f32((uint16_t)h));
        uint32_t hw = quants_f32_bits(_cvtsh_ss((unsigned short)h));
        if (ref != hw && bad++ < 5) fprintf(stderr, "  f16 %04x: ref %08x f16c %08x\n", h, ref, hw);
        bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (!nan && quants_f32_to_f16(quants_f16_to_f32((uint16_t)h)) != h && bad++ < 5)
            fprintf(stderr, "  f16 %04x does not round-trip\n", h);
    }
    CHECK_INT(bad, 0);
}

/* fp32 -> fp16 against F16C: every sign/exponent/top-10-mantissa pattern with
 * the 13 bits that get rounded away set to the interesting cases (exact,
 * just above, just below and at the halfway point, and random). */
TEST(quant_fp32_to_fp16_matches_f16c) {
    if (!kern_cpu_has_avx2()) SKIP("no AVX2 on this CPU");
    int bad = 0;
    for (uint32_t top = 0; top < (1u << 19); top++) {
        const uint32_t lows[] = {0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, (uint32_t)rng_u64() & 0x1fff};
        for (size_t k = 0; k < sizeof lows / sizeof lows[0]; k++) {
            float f = quants_bits_f32(top << 13 | lows[k]);
            uint16_t ref = quants_f32_to_f16(f);
            uint16_t hw = _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
            if (ref != hw && bad++ < 5)
                fprintf(stderr, "  f32 %08x: ref %04x f16c %04x\n", quants_f32_bits(f), ref, hw);
        }
    }
    CHECK_INT(bad, 0);
}

TEST(quant_bf16_conversions) {
    CHECK_INT(quants_f32_to_bf16(1.0f), 0x3f80);
    CHECK(quants_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(quants_bf16_to_f32(0xc000) == -2.0f);
    /* ties to even: 1 + 2^-8 lies halfway between bf16 1.0 and 1.0078125 */
    CHECK_INT(quants_f32_to_bf16(quants_bits_f32(0x3f808000)), 0x3f80);
    CHECK_INT(quants_f32_to_bf16(quants_bits_f32(0x3f818000)), 0x3f82);
    CHECK_INT(quants_f32_to_bf16(quants_bits_f32(0x3f808001)), 0x3f81);
    CHECK_INT(quants_f32_to_bf16(quants_bits_f32(0x7f800001)) & 0x7fc0, 0x7fc0); /* NaN stays NaN */
    CHECK_INT(quants_f32_to_bf16(quants_bits_f32(0x7f7fffff)), 0x7f80);         /* FLT_MAX -> inf */
}

/* Row conversions of both implementations on every kind of bit pattern and
 * lengths that exercise the vector tails. */
TEST(quant_f16_bf16_rows_avx2_match_ref) {
    if (!kern_cpu_has_avx2()) SKIP("no AVX2 on this CPU");
    enum { N = 77 };
    uint16_t h[N], o1[N], o2[N];
    float f1[N], f2[N], src[N];
    for (int len = 0; len <= N; len += 11) {
        for (int i = 0; i < N; i++) h[i] = (uint16_t)rng_u64();
        for (int i = 0; i < N; i++) src[i] = quants_bits_f32((uint32_t)rng_u64() & 0x47ffffff);
        quants_dequant_f16_ref(h, f1, len);
        quants_dequant_f16_avx2(h, f2, len);
        CHECK(!memcmp(f1, f2, (size_t)len * 4));
        quants_dequant_bf16_ref(h, f1, len);
        quants_dequant_bf16_avx2(h, f2, len);
        CHECK(!memcmp(f1, f2, (size_t)len * 4));
        quants_quant_f16_ref(src, o1, len);
        quants_quant_f16_avx2(src, o2, len);
        CHECK(!memcmp(o1, o2, (size_t)len * 2));
    }
}

/* ------------------------------------------- hand-built blocks (layouts) */

TEST(quant_dequant_hand_built_blocks) {
    float y[256];
    block_q4_0 q4 = {.d = quants_f32_to_f16(0.5f)};
    q4.qs[0] = 0x21; /* elem 0 = 1, elem 16 = 2 */
    q4.qs[15] = 0xf8; /* elem 15 = 8, elem 31 = 15 */
    quants_dequant_q4_0_ref(&q4, y, 32);
    CHECK(y[0] == -3.5f && y[16] == -3.0f && y[15] == 0.0f && y[31] == 3.5f && y[1] == -4.0f);

    block_q5_0 q5 = {.d = quants_f32_to_f16(1.0f), .qh = {0x01, 0x00, 0x01, 0x80}};
    /* qh bits 0, 16 and 31 set */
    quants_dequant_q5_0_ref(&q5, y, 32);
    CHECK(y[0] == 0.0f && y[1] == -16.0f && y[16] == 0.0f && y[31] == 0.0f && y[30] == -16.0f);

    block_q3_K q3;
    memset(&q3, 0, sizeof q3);
    q3.d = quants_f32_to_f16(1.0f);
    /* scale j = 9: low nibble in scales[1] >> 4, high bits in scales[8 + 1] bits 4..5 */
    q3.scales[1] = 0x30;             /* low 4 bits of scale 9 = 3 */
    q3.scales[9] = 0x20;             /* high 2 bits of scale 9 = 2 -> 35 - 32 = 3 */
    q3.qs[32 + 16] = 0x03 << 0;      /* elem 128 + 16 (sub-block 9), low2 = 3 */
    q3.hmask[16] = 1 << 4;           /* its high bit: hmask[e % 32] bit e / 32 = 4 */
    quants_dequant_q3_K_ref(&q3, y, 256);
    CHECK(y[144] == 9.0f);           /* scale 3 * q 3 */
    CHECK(y[145] == -12.0f);         /* scale 3 * (0 - 4) */

    block_q6_K q6;
    memset(&q6, 0, sizeof q6);
    q6.d = quants_f32_to_f16(0.25f);
    q6.scales[13] = 2;               /* elements 208..223 */
    /* elem 208 = 128 + 32*2 + 16: low nibble = high half of ql[64 + 16], top bits qh[32 + 16] bits 4..5 */
    q6.ql[64 + 16] = 0x50;
    q6.qh[32 + 16] = 0x30;           /* q = 5 | 3 << 4 = 53 -> 21 */
    quants_dequant_q6_K_ref(&q6, y, 256);
    CHECK(y[208] == 0.25f * 2 * 21);
}

/* ---------------------------------------------- quantize -> dequantize */

/* Relative RMS error (rms(err) / rms(x)) on Gaussian data, and the bound each
 * type must meet: about 1.25x what the basic quantizers measure here (Q4_K
 * 0.071, Q6_K 0.018, Q4_0 0.085, Q8_0 0.0053), which is also what the mini
 * GGUF files written by the ecosystem show. */
TEST(quant_roundtrip_error_within_bounds) {
    const struct { int t; double bound; } cases[] = {
        {TT_F16, 3e-4},   {TT_BF16, 2.2e-3}, {TT_Q8_0, 0.007}, {TT_Q4_0, 0.105}, {TT_Q4_1, 0.095},
        {TT_Q5_0, 0.053}, {TT_Q5_1, 0.047},  {TT_Q2_K, 0.37},  {TT_Q3_K, 0.19},  {TT_Q4_K, 0.088},
        {TT_Q5_K, 0.045}, {TT_Q6_K, 0.022},  {TT_Q8_K, 0.009},
    };
    enum { N = 8192 };
    float *x = smp_malloc(N * 4), *y = smp_malloc(N * 4);
    void *q = smp_malloc(kern_row_bytes(TT_F32, N));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const kern_type_traits *k = kern_traits_impl(cases[c].t, KERN_REF);
        REQUIRE(k && k->quantize);
        fill_gauss(x, N, 0.02f);
        k->quantize(x, q, N);
        k->dequantize(q, y, N);
        double se = 0, sx = 0;
        for (int i = 0; i < N; i++) {
            se += (double)(y[i] - x[i]) * (y[i] - x[i]);
            sx += (double)x[i] * x[i];
        }
        double rel = sqrt(se / sx);
        if (getenv("QUANT_VERBOSE")) fprintf(stderr, "  %-5s relative RMS error %.5f\n", tt_name(cases[c].t), rel);
        if (!(rel <= cases[c].bound))
            fprintf(stderr, "  %s: relative RMS error %.4f > %.4f\n", tt_name(cases[c].t), rel, cases[c].bound);
        CHECK(rel <= cases[c].bound);
    }
    smp_free(x);
    smp_free(y);
    smp_free(q);
}

/* All-zero and constant input must not produce NaN. */
TEST(quant_degenerate_inputs) {
    float x[256], y[256];
    _Alignas(32) uint8_t q[2048];
    for (int v = 0; v < 2; v++) {
        for (int i = 0; i < 256; i++) x[i] = v ? 0.75f : 0.0f;
        for (int t = 0; t < TT__MAX; t++) {
            const kern_type_traits *k = kern_traits_impl(t, KERN_REF);
            if (!k || !k->quantize) continue;
            k->quantize(x, q, 256);
            k->dequantize(q, y, 256);
            for (int i = 0; i < 256; i++)
                if (!(fabsf(y[i] - x[i]) <= 0.1f)) {
                    fprintf(stderr, "  %s: input %g gave %g\n", tt_name(t), x[i], y[i]);
                    test_failures++;
                    break;
                }
        }
    }
}

/* ------------------------------------------ activation quantizers: bytes */

TEST(quant_activation_quantizers_avx2_identical) {
    if (!kern_cpu_has_avx2()) SKIP("no AVX2 on this CPU");
    enum { N = 2048 };
    float x[N];
    static uint8_t a[N * 2], b[N * 2];
    const int types[] = {TT_Q8_0, TT_Q8_1, TT_Q8_K};
    for (int round = 0; round < 4; round++) {
        fill_gauss(x, N, round == 3 ? 1e-3f : 3.0f);
        if (round == 1) /* exact ties: amax 127 gives scale 1, so x*id = x */
            for (int i = 0; i < N; i++) x[i] = (i % 32 == 0) ? 127.0f : (float)((int)(rng_u64() % 253) - 126) + 0.5f;
        if (round == 2) memset(x, 0, 256 * sizeof(float)); /* one all-zero block of each kind */
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            size_t nb = kern_row_bytes(types[t], N);
            memset(a, 0xaa, nb);
            memset(b, 0x55, nb);
            kern_traits_impl(types[t], KERN_REF)->quantize(x, a, N);
            kern_traits_impl(types[t], KERN_AVX2)->quantize(x, b, N);
            if (memcmp(a, b, nb)) {
                fprintf(stderr, "  %s round %d: AVX2 bytes differ from reference\n", tt_name(types[t]), round);
                test_failures++;
            }
        }
    }
}

/* ------------------------------------------------------------ vec_dot */

/* A random weight row of type t: random bytes (every bit pattern of the quants
 * and scales), with the fp16 super-scales replaced by sane values; F32/F16/BF16
 * rows from Gaussian floats. */
static void random_weights(int t, void *w, int n) {
    size_t nb = kern_row_bytes(t, n);
    uint8_t *p = w;
    if (t == TT_F32 || t == TT_F16 || t == TT_BF16) {
        float *f = smp_malloc((size_t)n * 4);
        fill_gauss(f, n, 1.0f);
        kern_traits_impl(t, KERN_REF)->quantize(f, w, n);
        smp_free(f);
        return;
    }
    for (size_t i = 0; i < nb; i++) p[i] = (uint8_t)rng_u64();
    int d_off = -1, m_off = -1;
    switch (t) {
    case TT_Q4_0: case TT_Q5_0: case TT_Q8_0: d_off = 0; break;
    case TT_Q4_1: case TT_Q5_1: case TT_Q4_K: case TT_Q5_K: d_off = 0; m_off = 2; break;
    case TT_Q2_K: d_off = 80; m_off = 82; break;
    case TT_Q3_K: d_off = 108; break;
    case TT_Q6_K: d_off = 208; break;
    }
    size_t bb = tt_block_bytes(t);
    for (size_t off = 0; off < nb; off += bb) {
        uint16_t d = quants_f32_to_f16((float)((rng_unit() - 0.5) * 0.02));
        memcpy(p + off + d_off, &d, 2);
        if (m_off >= 0) {
            uint16_t m = quants_f32_to_f16((float)(rng_unit() * 0.01));
            memcpy(p + off + m_off, &m, 2);
        }
    }
}

/* Check one weight row against activations x: reference vs the exact dot of the
 * dequantized operands, and AVX2 vs reference. Returns 0 if both hold. */
static int check_dot(int t, int n, const void *w, const float *x) {
    const kern_type_traits *ref = kern_traits_impl(t, KERN_REF);
    const kern_type_traits *avx = kern_traits_impl(t, KERN_AVX2);
    size_t ab = kern_row_bytes(ref->act_type, n);
    void *act = smp_malloc(ab);
    float *wf = smp_malloc((size_t)n * 4), *af = smp_malloc((size_t)n * 4);
    kern_traits_impl(ref->act_type, KERN_REF)->quantize(x, act, n);
    ref->dequantize(w, wf, n);
    kern_traits_impl(ref->act_type, KERN_REF)->dequantize(act, af, n);
    double exact = 0, l1 = 0;
    for (int i = 0; i < n; i++) {
        exact += (double)wf[i] * af[i];
        l1 += fabs((double)wf[i] * af[i]);
    }
    /* Q8_1 stores s = d * sum(q) in fp16, and the format's dot uses that s for
     * the weights' offset m (Q4_1 / Q5_1 keep m at byte 2 of each block) */
    if (ref->act_type == TT_Q8_1) {
        const block_q8_1 *ab1 = act;
        for (int b = 0; b < n / QK8_1; b++) {
            uint16_t m;
            memcpy(&m, (const uint8_t *)w + (size_t)b * ref->blck_bytes + 2, 2);
            int sum = 0;
            for (int j = 0; j < QK8_1; j++) sum += ab1[b].qs[j];
            double d = quants_f16_to_f32(ab1[b].d);
            exact += quants_f16_to_f32(m) * (quants_f16_to_f32(ab1[b].s) - d * sum);
        }
    }
    double tol = (t == TT_F32 || t == TT_F16 || t == TT_BF16) ? TOL_DOT_FLOAT : TOL_DOT_INT;
    int bad = 0;
    float r = ref->vec_dot(n, w, act);
    if (!(fabs(r - exact) <= tol * l1)) {
        fprintf(stderr, "  %s n=%d: ref %.9g vs exact %.9g (L1 %g)\n", tt_name(t), n, r, exact, l1);
        bad = 1;
    }
    if (getenv("QUANT_VERBOSE"))
        fprintf(stderr, "  %-5s n=%-5d |ref-exact|/L1 %.2e", tt_name(t), n, fabs(r - exact) / l1);
    if (kern_cpu_has_avx2()) {
        float v = avx->vec_dot(n, w, act);
        if (getenv("QUANT_VERBOSE")) fprintf(stderr, "  |avx2-ref|/L1 %.2e", fabs(v - r) / l1);
        if (!(fabs(v - r) <= tol * l1)) {
            fprintf(stderr, "  %s n=%d: avx2 %.9g vs ref %.9g (L1 %g)\n", tt_name(t), n, v, r, l1);
            bad = 1;
        }
    }
    if (getenv("QUANT_VERBOSE")) fprintf(stderr, "\n");
    smp_free(act);
    smp_free(wf);
    smp_free(af);
    return bad;
}

TEST(quant_vec_dot_random_bits_avx2_vs_ref) {
    enum { NMAX = 4096 };
    void *w = smp_malloc(kern_row_bytes(TT_F32, NMAX));
    float *x = smp_malloc(NMAX * 4);
    for (int k = 0; k < N_WEIGHT_TYPES; k++) {
        int t = weight_types[k];
        const int sizes[] = {256, 512, 4096};
        for (int s = 0; s < 3; s++)
            for (int rep = 0; rep < 3; rep++) {
                random_weights(t, w, sizes[s]);
                fill_gauss(x, sizes[s], rep == 2 ? 100.0f : 1.0f);
                test_failures += check_dot(t, sizes[s], w, x);
            }
    }
    /* float types take any length: exercise the vector tails */
    const int odd[] = {1, 7, 8, 9, 31, 33, 100, 1001};
    for (int k = 0; k < 3; k++)
        for (size_t s = 0; s < sizeof odd / sizeof odd[0]; s++) {
            random_weights(weight_types[k], w, odd[s]);
            fill_gauss(x, odd[s], 1.0f);
            test_failures += check_dot(weight_types[k], odd[s], w, x);
        }
    smp_free(w);
    smp_free(x);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

/* The same with realistic weights: quantized from Gaussian data by our own
 * quantizers (scales then follow the data, as in real files). */
TEST(quant_vec_dot_quantized_weights_avx2_vs_ref) {
    enum { N = 2048 };
    float *wf = smp_malloc(N * 4), *x = smp_malloc(N * 4);
    void *w = smp_malloc(kern_row_bytes(TT_F32, N));
    for (int k = 0; k < N_WEIGHT_TYPES; k++) {
        fill_gauss(wf, N, 0.05f);
        fill_gauss(x, N, 2.0f);
        kern_traits_impl(weight_types[k], KERN_REF)->quantize(wf, w, N);
        test_failures += check_dot(weight_types[k], N, w, x);
    }
    smp_free(wf);
    smp_free(x);
    smp_free(w);
}

/* ------------------------------------------------------ matvec / matmul */

static void check_mat(int t, int rows, int cols, int ntok, int r0, int r1) {
    const kern_type_traits *k = kern_traits(t);
    size_t rb = kern_row_bytes(t, cols), ab = kern_act_bytes(t, cols);
    uint8_t *W = smp_malloc(rb * (size_t)rows);
    float *X = smp_malloc((size_t)cols * ntok * 4), *Y = smp_malloc((size_t)rows * ntok * 4);
    uint8_t *act = smp_malloc(ab * (size_t)ntok);
    for (int r = 0; r < rows; r++) random_weights(t, W + (size_t)r * rb, cols);
    fill_gauss(X, cols * ntok, 1.0f);
    for (int i = 0; i < rows * ntok; i++) Y[i] = 12345.0f;
    CHECK_INT(kern_matmul(t, W, cols, X, ntok, Y, rows, r0, r1), 0);
    for (int tok = 0; tok < ntok; tok++) kern_quantize_act(t, X + (size_t)tok * cols, cols, act + (size_t)tok * ab);
    int bad = 0;
    for (int tok = 0; tok < ntok; tok++)
        for (int r = 0; r < rows; r++) {
            float want = r >= r0 && r < r1 ? k->vec_dot(cols, W + (size_t)r * rb, act + (size_t)tok * ab) : 12345.0f;
            if (Y[(size_t)tok * rows + r] != want) bad++;
        }
    /* matvec of token 0 agrees with the matmul */
    float *y = smp_malloc((size_t)rows * 4);
    for (int r = 0; r < rows; r++) y[r] = 12345.0f;
    CHECK_INT(kern_matvec(t, W, cols, X, y, r0, r1), 0);
    for (int r = 0; r < rows; r++)
        if (y[r] != Y[r]) bad++;
    if (bad) fprintf(stderr, "  %s %s %dx%d ntok %d: %d mismatches\n", kern_impl_name(kern_active()), tt_name(t), rows, cols, ntok, bad);
    test_failures += bad != 0;
    smp_free(W);
    smp_free(X);
    smp_free(Y);
    smp_free(act);
    smp_free(y);
}

TEST(quant_matvec_matmul_row_ranges) {
    for (int impl = 0; impl < KERN__COUNT; impl++) {
        if (impl == KERN_AVX2 && !kern_cpu_has_avx2()) continue;
        CHECK_INT(kern_select(impl == KERN_REF ? "ref" : "avx2"), 0);
        CHECK_INT(kern_active(), impl);
        check_mat(TT_Q4_K, 37, 512, 5, 3, 30);
        check_mat(TT_Q8_0, 40, 2048, 9, 0, 40);   /* act scratch on the heap */
        check_mat(TT_F16, 19, 100, 3, 1, 18);
        check_mat(TT_Q5_1, 5, 64, 2, 0, 5);
        check_mat(TT_Q6_K, 3, 16384, 1, 0, 3);    /* matvec scratch on the heap */
        check_mat(TT_Q6_K, 21, 512, 11, 2, 21);   /* vec_dot4 groups plus a tail */
        check_mat(TT_Q5_K, 17, 768, 8, 0, 17);
        check_mat(TT_Q4_K, 33, 256, 4, 1, 32);
        check_mat(TT_F16, 50, 2064, 21, 5, 47);   /* gemm: tiles, token blocks, two stretches */
        check_mat(TT_Q4_0, 35, 512, 10, 3, 35);   /* gemm: 4-token groups plus 2 */
    }
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

/* The multi-row, multi-token kernels (kern_type_traits.gemm: F32/F16/BF16
 * register tiles, Q8_0/Q4_0/Q5_0 four tokens per weight block) must give
 * exactly what vec_dot gives for every (row, token): same arithmetic, same
 * order, whatever tile a pair falls into. Shapes cover every tile remainder
 * (rows mod 3 and mod 16, tokens mod 2 and mod 4, token blocks of 16), column
 * counts with every tail (float types: n mod 16 and mod 8; 2048-column
 * stretches), and a y stride wider than the rows (nothing else is written). */
static int check_gemm(int t, int n, int nrows, int ntok) {
    const kern_type_traits *k = kern_traits_impl(t, KERN_AVX2);
    size_t rb = kern_row_bytes(t, n), ab = kern_row_bytes(k->act_type, n);
    int ldy = nrows + 3;
    uint8_t *W = smp_malloc(rb * (size_t)nrows), *act = smp_malloc(ab * (size_t)ntok);
    float *x = smp_malloc((size_t)n * 4), *Y = smp_malloc((size_t)ldy * ntok * 4);
    for (int r = 0; r < nrows; r++) random_weights(t, W + (size_t)r * rb, n);
    for (int tok = 0; tok < ntok; tok++) {
        fill_gauss(x, n, 1.0f);
        kern_traits_impl(k->act_type, KERN_AVX2)->quantize(x, act + (size_t)tok * ab, n);
    }
    for (int i = 0; i < ldy * ntok; i++) Y[i] = 12345.0f;
    k->gemm(n, W, rb, nrows, act, ab, ntok, Y, (size_t)ldy);
    int bad = 0;
    for (int tok = 0; tok < ntok; tok++)
        for (int r = 0; r < ldy; r++) {
            float want = r < nrows ? k->vec_dot(n, W + (size_t)r * rb, act + (size_t)tok * ab) : 12345.0f;
            float got = Y[(size_t)tok * ldy + r];
            if (memcmp(&got, &want, 4)) bad++;
        }
    if (bad)
        fprintf(stderr, "  %s gemm n=%d rows=%d ntok=%d: %d of %d differ from vec_dot\n", tt_name(t), n, nrows, ntok,
                bad, ldy * ntok);
    smp_free(W);
    smp_free(act);
    smp_free(x);
    smp_free(Y);
    return bad != 0;
}

TEST(quant_gemm_equals_vec_dot_bit_for_bit) {
    if (!kern_cpu_has_avx2()) SKIP("no AVX2 on this CPU");
    const int gemm_types[] = {TT_F32, TT_F16, TT_BF16, TT_Q8_0, TT_Q4_0, TT_Q5_0};
    const struct { int rows, ntok; } shapes[] = {{1, 1}, {1, 2}, {2, 3}, {3, 4},  {5, 5},
                                                 {7, 1}, {17, 6}, {25, 9}, {48, 17}, {50, 35}};
    const int n_float[] = {8, 15, 16, 24, 100, 2064, 4104};
    const int n_quant[] = {32, 96, 160, 256, 2080};
    for (size_t ti = 0; ti < sizeof gemm_types / sizeof *gemm_types; ti++) {
        int t = gemm_types[ti];
        const kern_type_traits *k = kern_traits_impl(t, KERN_AVX2);
        REQUIRE(k->gemm != NULL);
        bool fl = t == TT_F32 || t == TT_F16 || t == TT_BF16;
        const int *ns = fl ? n_float : n_quant;
        int nn = fl ? (int)(sizeof n_float / sizeof *n_float) : (int)(sizeof n_quant / sizeof *n_quant);
        for (int a = 0; a < nn; a++)
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
                if (ns[a] > 2100 && shapes[s].rows * shapes[s].ntok > 200) continue; /* keep the test quick */
                test_failures += check_gemm(t, ns[a], shapes[s].rows, shapes[s].ntok);
            }
    }
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

TEST(quant_kernels_env_override) {
    setenv("SIMPLETON_KERNELS", "ref", 1);
    CHECK_INT(kern_init(), 0);
    CHECK_INT(kern_active(), KERN_REF);
    CHECK(kern_traits(TT_Q4_K)->vec_dot == quants_dot_q4_K_ref);
    CHECK_INT(kern_select("bogus"), -SMP_E_VALIDATION);
    CHECK_INT(kern_active(), kern_cpu_has_avx2() ? KERN_AVX2 : KERN_REF);
    CHECK_INT(kern_select(NULL), 0);
    if (kern_cpu_has_avx2()) CHECK(kern_traits(TT_Q4_K)->vec_dot == quants_dot_q4_K_avx2);
}

/* ------------------------------------------- real GGUF files (layouts) */

/* A throwaway GGUF reader, enough to find tensors: skips every metadata value
 * by type, then reads the tensor table. The engine's own reader lives in
 * src/engine/gguf.c; this one keeps the layout check independent of it. */
typedef struct {
    uint8_t *data;
    size_t size, pos, data_off;
    uint64_t ntensors;
    size_t info_pos; /* start of the tensor table */
} mini_gguf;

static int mg_need(mini_gguf *g, size_t n) {
    return g->pos + n <= g->size;
}

static uint64_t mg_u(mini_gguf *g, int bytes) {
    uint64_t v = 0;
    if (!mg_need(g, (size_t)bytes)) {
        g->pos = g->size + 1;
        return 0;
    }
    memcpy(&v, g->data + g->pos, (size_t)bytes);
    g->pos += (size_t)bytes;
    return v;
}

static void mg_skip_value(mini_gguf *g, uint32_t type) {
    static const int sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) {
        uint64_t n = mg_u(g, 8);
        g->pos += mg_need(g, n) ? n : g->size + 1;
    } else if (type == 9) {
        uint32_t et = (uint32_t)mg_u(g, 4);
        uint64_t n = mg_u(g, 8);
        for (uint64_t i = 0; i < n && g->pos <= g->size; i++) mg_skip_value(g, et);
    } else if (type < 13) {
        g->pos += (size_t)sz[type];
    } else {
        g->pos = g->size + 1;
    }
}

static int mg_open(mini_gguf *g, const char *path) {
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    g->size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    g->data = smp_malloc(g->size);
    size_t got = g->data ? fread(g->data, 1, g->size, f) : 0;
    fclose(f);
    if (got != g->size || mg_u(g, 4) != 0x46554747) return -1;
    mg_u(g, 4);
    g->ntensors = mg_u(g, 8);
    uint64_t nkv = mg_u(g, 8);
    size_t align = 32;
    for (uint64_t i = 0; i < nkv && g->pos <= g->size; i++) {
        uint64_t klen = mg_u(g, 8);
        int is_align = klen == 17 && mg_need(g, 17) && !memcmp(g->data + g->pos, "general.alignment", 17);
        g->pos += klen;
        uint32_t type = (uint32_t)mg_u(g, 4);
        if (is_align && type == 4) {
            align = (size_t)mg_u(g, 4);
            continue;
        }
        mg_skip_value(g, type);
    }
    g->info_pos = g->pos;
    for (uint64_t i = 0; i < g->ntensors && g->pos <= g->size; i++) {
        g->pos += mg_u(g, 8);
        uint32_t nd = (uint32_t)mg_u(g, 4);
        g->pos += 8 * (size_t)nd + 4 + 8;
    }
    if (g->pos > g->size || !align) return -1;
    g->data_off = (g->pos + align - 1) / align * align;
    return 0;
}

/* Find a tensor by name: its type, ne0 (row length), number of rows, data. */
static const void *mg_find(mini_gguf *g, const char *name, int *type, int64_t *ne0, int64_t *nrows) {
    g->pos = g->info_pos;
    for (uint64_t i = 0; i < g->ntensors; i++) {
        uint64_t len = mg_u(g, 8);
        int match = len == strlen(name) && !memcmp(g->data + g->pos, name, len);
        g->pos += len;
        uint32_t nd = (uint32_t)mg_u(g, 4);
        int64_t ne[4] = {1, 1, 1, 1};
        for (uint32_t d = 0; d < nd && d < 4; d++) ne[d] = (int64_t)mg_u(g, 8);
        *type = (int)mg_u(g, 4);
        uint64_t off = mg_u(g, 8);
        if (match) {
            *ne0 = ne[0];
            *nrows = ne[1] * ne[2] * ne[3];
            size_t bytes = kern_row_bytes(*type, ne[0]) * (size_t)*nrows;
            if (!bytes || g->data_off + off + bytes > g->size) return NULL;
            return g->data + g->data_off + off;
        }
    }
    return NULL;
}

/* Every weight matrix of the quantized mini files, dequantized by our
 * reference, against the f32 file holding the same weights. The bound per type
 * is the one of quant_roundtrip_error_within_bounds; a wrong bit
 * layout gives errors near 1.0 or worse. The files were written by the
 * ecosystem's basic (no importance matrix) quantizers, which ours follow, so
 * requantizing the f32 weights must also reproduce the file's bytes: this pins
 * the packing, not only the unpacking. */
TEST(quant_gguf_mini_files_match_f32) {
    const struct { const char *file; int type; double bound; } files[] = {
        {"F16", TT_F16, 3e-4},    {"BF16", TT_BF16, 2.2e-3}, {"Q8_0", TT_Q8_0, 0.007},
        {"Q4_0", TT_Q4_0, 0.105}, {"Q4_1", TT_Q4_1, 0.095},  {"Q5_0", TT_Q5_0, 0.053},
        {"Q5_1", TT_Q5_1, 0.047}, {"Q2_K", TT_Q2_K, 0.37},   {"Q3_K", TT_Q3_K, 0.19},
        {"Q4_K", TT_Q4_K, 0.088}, {"Q5_K", TT_Q5_K, 0.045},  {"Q6_K", TT_Q6_K, 0.022},
    };
    const char *names[] = {"token_embd.weight", "output.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
                           "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_gate.weight",
                           "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "blk.1.ffn_down.weight"};
    mini_gguf ref;
    if (mg_open(&ref, "../shared/models/mini/mini-llama-f32.gguf")) {
        smp_free(ref.data);
        SKIP("../shared/models/mini/mini-llama-f32.gguf not readable");
    }
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
        char path[256];
        snprintf(path, sizeof path, "../shared/models/mini/mini-llama-%s.gguf", files[fi].file);
        mini_gguf g;
        if (mg_open(&g, path)) {
            fprintf(stderr, "  %s unreadable\n", path);
            test_failures++;
            smp_free(g.data);
            continue;
        }
        const kern_type_traits *k = kern_traits_impl(files[fi].type, KERN_REF);
        for (size_t ni = 0; ni < sizeof names / sizeof names[0]; ni++) {
            int qt, ft;
            int64_t qn0, qrows, fn0, frows;
            const void *qd = mg_find(&g, names[ni], &qt, &qn0, &qrows);
            const float *fd = mg_find(&ref, names[ni], &ft, &fn0, &frows);
            REQUIRE(qd && fd && ft == TT_F32);
            if (qt != files[fi].type || qn0 != fn0 || qrows != frows) {
                fprintf(stderr, "  %s %s: type %d shape %lld x %lld\n", files[fi].file, names[ni], qt,
                        (long long)qn0, (long long)qrows);
                test_failures++;
                continue;
            }
            int64_t n = qn0 * qrows;
            float *y = smp_malloc((size_t)n * 4);
            k->dequantize(qd, y, n);
            double se = 0, sx = 0;
            for (int64_t i = 0; i < n; i++) {
                se += (double)(y[i] - fd[i]) * (y[i] - fd[i]);
                sx += (double)fd[i] * fd[i];
            }
            double rel = sqrt(se / sx);
            if (!(rel <= files[fi].bound)) {
                fprintf(stderr, "  %s %s: relative RMS error %.4f > %.4f\n", files[fi].file, names[ni], rel, files[fi].bound);
                test_failures++;
            }
            /* requantize with our quantizer and compare blocks */
            size_t nbytes = kern_row_bytes(qt, n), bb = tt_block_bytes(qt), same = 0;
            uint8_t *rq = smp_malloc(nbytes);
            k->quantize(fd, rq, n);
            for (size_t off = 0; off < nbytes; off += bb) same += !memcmp(rq + off, (const uint8_t *)qd + off, bb);
            double frac = (double)same / (double)(nbytes / bb);
            /* K-quant fits are float searches: allow a rare block to differ */
            double need = tt_block_elems(qt) == QK_K ? 0.99 : 0.999;
            if (getenv("QUANT_VERBOSE"))
                fprintf(stderr, "  %-5s %-26s rel.rms %.5f  identical blocks %.4f\n", files[fi].file, names[ni], rel, frac);
            if (frac < need) {
                fprintf(stderr, "  %s %s: only %.4f of requantized blocks identical\n", files[fi].file, names[ni], frac);
                test_failures++;
            }
            smp_free(rq);
            smp_free(y);
        }
        smp_free(g.data);
    }
    smp_free(ref.data);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}
