/* quants_avx2.c - AVX2 + FMA + F16C versions of the dot products, activation
 * quantizers and fp16/bf16 row conversions declared in quants.h.
 *
 * Each function computes what its quants_ref.c twin computes; the unit tests
 * (tests/unit/test_quants.c) hold them to it. Integer parts are exact, so the
 * dots differ from the reference only in the order of float additions; the
 * activation quantizers produce identical bytes.
 *
 * Common pattern for the quantized dots: unpack 32 weights into a 256-bit
 * vector of bytes, multiply with 32 int8 activations by _mm256_maddubs_epi16
 * (unsigned x signed bytes -> 16 pairwise int16 sums; weights are made
 * unsigned, or sign-moved onto the activations, to fit that instruction), then
 * _mm256_madd_epi16 against ones or a sub-block scale -> 8 int32 lanes. Float
 * work happens once per block (32 elements) or super-block (256).
 * Decode reads every weight byte once, so the goal is for the arithmetic to
 * keep up with memory: F32/F16/BF16/Q8_0/Q6_K do on one core; Q4_K/Q5_K come
 * close; Q4_0/Q4_1/Q5_0/Q5_1/Q2_K/Q3_K are still compute-bound (numbers in
 * bench/kernels.c). Prompt processing (many tokens per weight row) has its
 * own kernels: register-tiled gemm for F32/F16/BF16 (and the arithmetic
 * bound it works against) in the float section, gemm for the Q8_0 family
 * after its dot, and the dot4 kernels for Q4_K/Q5_K/Q6_K at the end. */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>

#include "core/alloc.h"
#include "engine/kernels/quants.h"

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "quants_avx2.c needs -mavx2 -mfma -mf16c"
#endif

/* ------------------------------------------------------------- helpers */

/* For kernels whose shape arguments must be constants where they are used. */
#define KERN_INLINE static inline __attribute__((always_inline))

static inline float f16(uint16_t h) {
    return _cvtsh_ss(h);
}

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* unsigned bytes ux (at most 128) times signed bytes y, summed in groups of 4
 * -> 8 int32 (the int16 pair sums cannot saturate: 2*128*127 < 32768). */
static inline __m256i dot_u8_i8(__m256i ux, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ux, y), _mm256_set1_epi16(1));
}

/* signed x signed: move x's sign onto y. y must not hold -128 (activation
 * quantizers stay within -127..127). */
static inline __m256i dot_i8_i8(__m256i x, __m256i y) {
    return dot_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles in the low lane (elements
 * 0..15), high nibbles in the high lane (16..31). */
static inline __m256i nibbles_32(const uint8_t *p) {
    __m128i raw = _mm_loadu_si128((const __m128i *)p);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

/* 32 bits -> 32 bytes, byte e = 0xFF if bit e is set. */
static inline __m256i bits_to_bytes(const uint8_t *p) {
    uint32_t bits;
    memcpy(&bits, p, 4);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

static inline __m256i load256(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

/* K-quants with 16-element sub-blocks: a 32-element chunk spans sub-blocks j
 * (low 128-bit lane) and j+1 (high lane). sc16 holds 16 int16 scales, 0..7 in
 * the low lane and 8..15 in the high lane; half_scales(sc16)[h] repeats lane h
 * in both lanes, and pair_scales(half, k) then gives scale 8h+2k across the
 * low lane and 8h+2k+1 across the high lane. */
static inline void half_scales(__m256i sc16, __m256i half[2]) {
    half[0] = _mm256_permute2x128_si256(sc16, sc16, 0x00);
    half[1] = _mm256_permute2x128_si256(sc16, sc16, 0x11);
}

static inline __m256i pair_scales(__m256i lane, int k) {
    __m256i mask = _mm256_set_m128i(_mm_set1_epi16((short)((4 * k + 2) | (4 * k + 3) << 8)),
                                    _mm_set1_epi16((short)((4 * k) | (4 * k + 1) << 8)));
    return _mm256_shuffle_epi8(lane, mask);
}

/* ------------------------------------------------- F32 / F16 / BF16 rows */

void quants_dequant_f16_avx2(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++) dst[i] = f16(h[i]);
}

void quants_quant_f16_avx2(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) h[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

static inline __m256 bf16x8(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

void quants_dequant_bf16_avx2(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8(h + i));
    for (; i < n; i++) dst[i] = quants_bf16_to_f32(h[i]);
}

static inline __m256 f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* ------------------------------------- F32 / F16 / BF16 weights: dot and gemm
 *
 * Where the time goes in prompt processing: one multiply-add per weight per
 * token. For the TinyLlama-1.1B shape (n_embd 2048, FFN 5632, 22 layers; the
 * output matrix runs for the last token only) that is 0.97 G multiply-adds,
 * 1.94 GFLOP, per token. One core of this machine kind (AMD EPYC, Zen) issues
 * 2 FMAs of 8 floats per cycle: 2 x 8 x 2 flops x 3.6 GHz (measured boost;
 * /proc/cpuinfo says 2.6) = 115 GFLOP/s, 230 for two cores, so the bound is
 * ~118 tok/s. llama.cpp's F16 prompt speed here, 64.6 tok/s, is 125 GFLOP/s
 * (54% of it).
 *
 * A plain dot product (one weight row, one token) needs a weight load and an
 * activation load per FMA, and a core loads two vectors per cycle, so it runs
 * at half the FMA rate at best (measured 49 GFLOP/s on one core). The tile
 * kernel below takes 3 weight rows and 2 tokens at once with 12 accumulators
 * in registers: per 16 columns 6 weight loads (F16C widens them in the load)
 * and 4 activation loads feed 12 FMAs. That measures 113 GFLOP/s on one core
 * with the data in L1 and 85-90 over real matrices (bench/kernels.c; 2.0x the
 * plain dot). End to end (128-token prompt, 2 threads) F16 went from 46 to
 * 76 tok/s = 147 GFLOP/s, 64% of the bound, 1.18x llama.cpp; 88% of that time
 * is in this gemm, so the rest of the gap is cache traffic around the tile
 * (loop overhead, accumulator sums, weights arriving from L2/DRAM).
 *
 * Arithmetic order, the same for every tile shape and for vec_dot (the 1 x 1
 * tile), so results agree bit for bit however rows and tokens are grouped:
 * two 8-lane accumulators per (row, token); c0 takes columns 16j..16j+7 and
 * c1 columns 16j+8..16j+15, j = 0, 1, ... in order, by fused multiply-add; a
 * last group of 8 (n % 16 >= 8) goes to c0; then hsum_ps(c0 + c1); then the
 * n % 8 tail elements, one fmaf() each. Two chains, not one: with one, the
 * 4-cycle FMA latency makes a single-token product (decode) slower than
 * memory unless it runs several rows at once, and several rows at once are
 * several memory streams, which this machine serves ~10% slower than one.
 * With two, decode reads one row after another at full speed. */

enum { FW_F32, FW_F16, FW_BF16 };

KERN_INLINE __m256 fw_load8(const int kind, const char *p) {
    if (kind == FW_F16) return f16x8((const uint16_t *)p);
    if (kind == FW_BF16) return bf16x8((const uint16_t *)p);
    return _mm256_loadu_ps((const float *)p);
}

KERN_INLINE size_t fw_elem_bytes(const int kind) {
    return kind == FW_F32 ? 4 : 2;
}

KERN_INLINE float fw_elem(const int kind, const char *row, int i) {
    uint16_t h;
    float f;
    if (kind == FW_F32) {
        memcpy(&f, row + 4 * (size_t)i, 4);
        return f;
    }
    memcpy(&h, row + 2 * (size_t)i, 2);
    return kind == FW_F16 ? f16(h) : quants_bf16_to_f32(h);
}

/* Columns [i0, i1) (multiples of 16) of R rows (w, w + ws, ...) against T
 * activation rows (a, a + as, ...). acc[(r*T + t)*2 + chain] carries the
 * accumulators between column ranges: zeroed when `first`, stored at the end.
 * R <= 3, T <= 2, both constants at every call site (the 12 accumulators
 * must live in registers). */
KERN_INLINE void fw_tile(const int kind, const int R, const int T, int i0, int i1, bool first, const char *w,
                         size_t ws, const char *a, size_t as, __m256 *acc) {
    const size_t esz = fw_elem_bytes(kind);
    __m256 c0[3][2], c1[3][2];
#pragma GCC unroll 3
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
            c0[r][t] = first ? _mm256_setzero_ps() : acc[(r * T + t) * 2];
            c1[r][t] = first ? _mm256_setzero_ps() : acc[(r * T + t) * 2 + 1];
        }
    for (int i = i0; i < i1; i += 16) {
        __m256 x[2];
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) x[t] = _mm256_loadu_ps((const float *)(a + t * as) + i);
#pragma GCC unroll 3
        for (int r = 0; r < R; r++) {
            __m256 wv = fw_load8(kind, w + r * ws + esz * i);
#pragma GCC unroll 2
            for (int t = 0; t < T; t++) c0[r][t] = _mm256_fmadd_ps(wv, x[t], c0[r][t]);
        }
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) x[t] = _mm256_loadu_ps((const float *)(a + t * as) + i + 8);
#pragma GCC unroll 3
        for (int r = 0; r < R; r++) {
            __m256 wv = fw_load8(kind, w + r * ws + esz * (i + 8));
#pragma GCC unroll 2
            for (int t = 0; t < T; t++) c1[r][t] = _mm256_fmadd_ps(wv, x[t], c1[r][t]);
        }
    }
#pragma GCC unroll 3
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
            acc[(r * T + t) * 2] = c0[r][t];
            acc[(r * T + t) * 2 + 1] = c1[r][t];
        }
}

/* The end of the order above for the tile's pairs, after fw_tile ran over
 * columns [0, n / 16 * 16): y[t * ldy + r]. */
KERN_INLINE void fw_finish(const int kind, const int R, const int T, int n, const char *w, size_t ws, const char *a,
                         size_t as, const __m256 *acc, float *y, size_t ldy) {
    const size_t esz = fw_elem_bytes(kind);
    int i = n / 16 * 16;
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            const char *wr = w + r * ws;
            const float *at = (const float *)(a + t * as);
            __m256 c0 = acc[(r * T + t) * 2], c1 = acc[(r * T + t) * 2 + 1];
            if (n - i >= 8) c0 = _mm256_fmadd_ps(fw_load8(kind, wr + esz * i), _mm256_loadu_ps(at + i), c0);
            float s = hsum_ps(_mm256_add_ps(c0, c1));
            for (int k = n / 8 * 8; k < n; k++) s = fmaf(fw_elem(kind, wr, k), at[k], s);
            y[t * ldy + r] = s;
        }
}

/* Blocking for the caches: a tile of 24 rows meets a block of 16 tokens, one
 * stretch of 2048 columns at a time; in each stretch, 2 tokens' activations
 * (16 KiB) stay in L1 while the tile's weights (96 KiB of F16) come from L2,
 * 3 rows at a time. The accumulators wait in `acc` between stretches (24 KiB
 * on the stack), so long rows (FFN down: 5632) keep the L1 working set. */
#define FW_TILE_ROWS 24 /* multiple of 3 */
#define FW_TOK_BLOCK 16 /* multiple of 2 */
#define FW_STRETCH 2048 /* multiple of 16 */

KERN_INLINE void fw_gemm(const int kind, int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok,
                         float *y, size_t ldy) {
    const char *wb = w, *ab = a;
    int n16 = n / 16 * 16;
    if (ntok == 1) { /* matvec: one row after another, one memory stream */
        for (int r = 0; r < nrows; r++) {
            __m256 acc[2];
            fw_tile(kind, 1, 1, 0, n16, true, wb + r * ws, ws, ab, as, acc);
            fw_finish(kind, 1, 1, n, wb + r * ws, ws, ab, as, acc, y + r, ldy);
        }
        return;
    }
    __m256 acc[FW_TILE_ROWS / 3][FW_TOK_BLOCK / 2][12];
    for (int r0 = 0; r0 < nrows; r0 += FW_TILE_ROWS) {
        int r1 = r0 + FW_TILE_ROWS < nrows ? r0 + FW_TILE_ROWS : nrows;
        for (int t0 = 0; t0 < ntok; t0 += FW_TOK_BLOCK) {
            int t1 = t0 + FW_TOK_BLOCK < ntok ? t0 + FW_TOK_BLOCK : ntok;
            /* runs once even when n16 == 0, to zero the accumulators */
            for (int k0 = 0; k0 == 0 || k0 < n16; k0 += FW_STRETCH) {
                int k1 = k0 + FW_STRETCH < n16 ? k0 + FW_STRETCH : n16;
                for (int t = t0; t < t1; t += 2)
                    for (int r = r0; r < r1; r += 3) {
                        int rn = r1 - r < 3 ? r1 - r : 3, tn = t1 - t < 2 ? t1 - t : 2;
                        __m256 *ac = acc[(r - r0) / 3][(t - t0) / 2];
                        const char *wr = wb + r * ws, *at = ab + t * as;
                        switch (rn * 4 + tn) {
#define FW_CASE(R, T) \
    case R * 4 + T: fw_tile(kind, R, T, k0, k1, k0 == 0, wr, ws, at, as, ac); break;
                        FW_CASE(3, 2) FW_CASE(3, 1) FW_CASE(2, 2) FW_CASE(2, 1) FW_CASE(1, 2) FW_CASE(1, 1)
#undef FW_CASE
                        }
                    }
            }
            for (int t = t0; t < t1; t += 2)
                for (int r = r0; r < r1; r += 3) {
                    int rn = r1 - r < 3 ? r1 - r : 3, tn = t1 - t < 2 ? t1 - t : 2;
                    const __m256 *ac = acc[(r - r0) / 3][(t - t0) / 2];
                    const char *wr = wb + r * ws, *at = ab + t * as;
                    float *yt = y + t * ldy + r;
                    switch (rn * 4 + tn) {
#define FW_CASE(R, T) \
    case R * 4 + T: fw_finish(kind, R, T, n, wr, ws, at, as, ac, yt, ldy); break;
                    FW_CASE(3, 2) FW_CASE(3, 1) FW_CASE(2, 2) FW_CASE(2, 1) FW_CASE(1, 2) FW_CASE(1, 1)
#undef FW_CASE
                    }
                }
        }
    }
}

KERN_INLINE float fw_dot(const int kind, int n, const void *w, const void *a) {
    __m256 acc[2];
    float y;
    fw_tile(kind, 1, 1, 0, n / 16 * 16, true, w, 0, a, 0, acc);
    fw_finish(kind, 1, 1, n, w, 0, a, 0, acc, &y, 0);
    return y;
}

float quants_dot_f32_avx2(int n, const void *w, const void *a) {
    return fw_dot(FW_F32, n, w, a);
}

float quants_dot_f16_avx2(int n, const void *w, const void *a) {
    return fw_dot(FW_F16, n, w, a);
}

float quants_dot_bf16_avx2(int n, const void *w, const void *a) {
    return fw_dot(FW_BF16, n, w, a);
}

void quants_gemm_f32_avx2(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok, float *y,
                          size_t ldy) {
    fw_gemm(FW_F32, n, w, ws, nrows, a, as, ntok, y, ldy);
}

void quants_gemm_f16_avx2(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok, float *y,
                          size_t ldy) {
    fw_gemm(FW_F16, n, w, ws, nrows, a, as, ntok, y, ldy);
}

void quants_gemm_bf16_avx2(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok, float *y,
                           size_t ldy) {
    fw_gemm(FW_BF16, n, w, ws, nrows, a, as, ntok, y, ldy);
}

/* ------------------------------------------------- activation quantizers */

static inline float absmax8x4(const float *x) {
    const __m256 nosign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_and_ps(_mm256_loadu_ps(x), nosign);
    for (int k = 1; k < 4; k++) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + 8 * k), nosign));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* roundf(): ties away from zero, exactly: t = trunc(v); if |v - t| >= 0.5
 * step t one away from zero (v - t is exact for |v| < 2^23). */
static inline __m256 round_away(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 nosign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 frac = _mm256_and_ps(_mm256_sub_ps(v, t), nosign);
    __m256 step = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_andnot_ps(nosign, v));
    __m256 ge = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(ge, step));
}

/* 32 floats * id, rounded (away), clamped to +-127, packed into 32 int8 in order. */
static inline __m256i quant32(const float *x, __m256 id, int away) {
    __m256i q[4];
    const __m256 lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
    for (int k = 0; k < 4; k++) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id);
        v = away ? round_away(v) : _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        q[k] = _mm256_cvtps_epi32(v);
    }
    /* packs interleave 128-bit lanes; the final permute restores element order */
    __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
    __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
    __m256i p = _mm256_packs_epi16(p01, p23);
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void quants_quant_q8_0_avx2(const float *src, void *dst, int64_t n) {
    block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, src += QK8_0) {
        float d = absmax8x4(src) / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = quants_f32_to_f16(d);
        _mm256_storeu_si256((__m256i *)b[i].qs, quant32(src, _mm256_set1_ps(id), 1));
    }
}

void quants_quant_q8_1_avx2(const float *src, void *dst, int64_t n) {
    block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, src += QK8_1) {
        float d = absmax8x4(src) / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        __m256i q = quant32(src, _mm256_set1_ps(id), 1);
        _mm256_storeu_si256((__m256i *)b[i].qs, q);
        int sum = hsum_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1)));
        b[i].d = quants_f32_to_f16(d);
        b[i].s = quants_f32_to_f16((float)sum * d);
    }
}

void quants_quant_q8_K_avx2(const float *src, void *dst, int64_t n) {
    block_q8_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float amax = 0;
        for (int k = 0; k < 8; k++) {
            float m = absmax8x4(src + 32 * k);
            amax = m > amax ? m : amax;
        }
        if (amax == 0 || amax != amax) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = 127.f / amax;
        for (int k = 0; k < 8; k++) {
            __m256i q = quant32(src + 32 * k, _mm256_set1_ps(iscale), 0);
            _mm256_storeu_si256((__m256i *)(b[i].qs + 32 * k), q);
            /* 16-element sums: widen to int16, add pairs, then reduce per lane */
            __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q); /* 16 sums of 2 */
            __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1)); /* 8 sums of 4 */
            int32_t t[8];
            _mm256_storeu_si256((__m256i *)t, s32);
            b[i].bsums[2 * k] = (int16_t)(t[0] + t[1] + t[2] + t[3]);
            b[i].bsums[2 * k + 1] = (int16_t)(t[4] + t[5] + t[6] + t[7]);
        }
        b[i].d = 1 / iscale;
    }
}

/* ---------------------------------------- 32-element blocks against Q8_0/1 */

/* Scales of 4 consecutive 32-element blocks: fp16 d of weight and activation
 * blocks (stride bytes apart) converted together, multiplied, and each product
 * spread over a whole vector by bcast4(). */
static inline __m128 scales4(const void *x, size_t xs, const void *y, size_t ys) {
    const uint8_t *px = x, *py = y;
    uint64_t hx = 0, hy = 0;
    for (int k = 0; k < 4; k++) {
        uint16_t a, b;
        memcpy(&a, px + k * xs, 2);
        memcpy(&b, py + k * ys, 2);
        hx |= (uint64_t)a << 16 * k;
        hy |= (uint64_t)b << 16 * k;
    }
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)hx)), _mm_cvtph_ps(_mm_cvtsi64_si128((long long)hy)));
}

static inline __m256 bcast4(__m128 s, int k) {
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(s), _mm256_set1_epi32(k));
}

/* Loop shape shared by Q8_0, Q4_0 and Q5_0 (all against Q8_0 activations):
 * QVEC(b) yields block b's 32 weights as signed bytes. */
#define DOT_Q8_0_FAMILY(BLOCK, QVEC)                                                          \
    const BLOCK *x = w;                                                                      \
    const block_q8_0 *y = a;                                                                 \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                           \
    int nb = n / QK8_0, i = 0;                                                               \
    for (; i + 4 <= nb; i += 4) {                                                            \
        __m128 d4 = scales4(&x[i].d, sizeof(BLOCK), &y[i].d, sizeof(block_q8_0));            \
        __m256i p0 = dot_i8_i8(QVEC(&x[i]), load256(y[i].qs));                               \
        __m256i p1 = dot_i8_i8(QVEC(&x[i + 1]), load256(y[i + 1].qs));                       \
        __m256i p2 = dot_i8_i8(QVEC(&x[i + 2]), load256(y[i + 2].qs));                       \
        __m256i p3 = dot_i8_i8(QVEC(&x[i + 3]), load256(y[i + 3].qs));                       \
        acc0 = _mm256_fmadd_ps(bcast4(d4, 0), _mm256_cvtepi32_ps(p0), acc0);                 \
        acc1 = _mm256_fmadd_ps(bcast4(d4, 1), _mm256_cvtepi32_ps(p1), acc1);                 \
        acc0 = _mm256_fmadd_ps(bcast4(d4, 2), _mm256_cvtepi32_ps(p2), acc0);                 \
        acc1 = _mm256_fmadd_ps(bcast4(d4, 3), _mm256_cvtepi32_ps(p3), acc1);                 \
    }                                                                                        \
    for (; i < nb; i++) {                                                                    \
        __m256i p = dot_i8_i8(QVEC(&x[i]), load256(y[i].qs));                                \
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16(x[i].d) * f16(y[i].d)), _mm256_cvtepi32_ps(p), acc0); \
    }                                                                                        \
    return hsum_ps(_mm256_add_ps(acc0, acc1))

static inline __m256i q8_0_vec(const block_q8_0 *b) {
    return load256(b->qs);
}

static inline __m256i q4_0_vec(const block_q4_0 *b) {
    return _mm256_sub_epi8(nibbles_32(b->qs), _mm256_set1_epi8(8));
}

float quants_dot_q8_0_avx2(int n, const void *w, const void *a) {
    DOT_Q8_0_FAMILY(block_q8_0, q8_0_vec);
}

float quants_dot_q4_0_avx2(int n, const void *w, const void *a) {
    DOT_Q8_0_FAMILY(block_q4_0, q4_0_vec);
}

/* Four fp16 values stride bytes apart -> 4 floats. */
static inline __m128 fp16x4(const void *p, size_t stride) {
    const uint8_t *b = p;
    uint64_t h = 0;
    for (int k = 0; k < 4; k++) {
        uint16_t v;
        memcpy(&v, b + k * stride, 2);
        h |= (uint64_t)v << 16 * k;
    }
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)h));
}

/* One weight block (unsigned magnitudes uq, signs q) against one activation
 * block: acc + scale * sum(q * y), as DOT_Q8_0_FAMILY computes it. */
static inline __m256 q8_0_fma(__m256i uq, __m256i q, const int8_t *yq, const float *scale, __m256 acc) {
    __m256i p = dot_u8_i8(uq, _mm256_sign_epi8(load256(yq), q));
    return _mm256_fmadd_ps(_mm256_broadcast_ss(scale), _mm256_cvtepi32_ps(p), acc);
}

/* Prompt processing for the Q8_0 family (the vec_dot4 idea): one weight row
 * against 4 tokens, each weight block unpacked, and its sign taken, once for
 * the four. Per token the operations of DOT_Q8_0_FAMILY in the same order
 * (scale products dx*dy as scales4() forms them, two accumulators taking
 * blocks alternately), so results equal the single dot bit for bit. The
 * tokens' fp16 block scales come from dy[t * dys + block], converted once per
 * call: gathering them per row cost more scalar work than the dot itself.
 * Named accumulators a<token><chain>, and the scale products stored to d[]
 * and broadcast from memory, keep the 8 accumulators in registers. */
#define Q8_0_FAMILY_TOK4(NAME, BLOCK, QVEC)                                                    \
    KERN_INLINE void NAME##_tok4(int nb, const BLOCK *x, const char *a, size_t as, const float *dy, size_t dys,   \
                                 float *out, size_t ldo) {                                        \
        const block_q8_0 *y0 = (const block_q8_0 *)a, *y1 = (const block_q8_0 *)(a + as);         \
        const block_q8_0 *y2 = (const block_q8_0 *)(a + 2 * as), *y3 = (const block_q8_0 *)(a + 3 * as); \
        const float *e0 = dy, *e1 = dy + dys, *e2 = dy + 2 * dys, *e3 = dy + 3 * dys;             \
        __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;                       \
        __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;                                       \
        _Alignas(16) float d[16]; /* d[4t + b]: token t, block i + b */                          \
        int i = 0;                                                                              \
        for (; i + 4 <= nb; i += 4) {                                                           \
            __m128 dx = fp16x4(&x[i].d, sizeof(BLOCK));                                         \
            _mm_store_ps(d, _mm_mul_ps(dx, _mm_loadu_ps(e0 + i)));                               \
            _mm_store_ps(d + 4, _mm_mul_ps(dx, _mm_loadu_ps(e1 + i)));                           \
            _mm_store_ps(d + 8, _mm_mul_ps(dx, _mm_loadu_ps(e2 + i)));                           \
            _mm_store_ps(d + 12, _mm_mul_ps(dx, _mm_loadu_ps(e3 + i)));                          \
            _Pragma("GCC unroll 2") for (int b = 0; b < 4; b += 2) {                            \
                __m256i q = QVEC(&x[i + b]), uq = _mm256_sign_epi8(q, q);                        \
                a00 = q8_0_fma(uq, q, y0[i + b].qs, &d[b], a00);                                \
                a10 = q8_0_fma(uq, q, y1[i + b].qs, &d[4 + b], a10);                            \
                a20 = q8_0_fma(uq, q, y2[i + b].qs, &d[8 + b], a20);                            \
                a30 = q8_0_fma(uq, q, y3[i + b].qs, &d[12 + b], a30);                           \
                q = QVEC(&x[i + b + 1]), uq = _mm256_sign_epi8(q, q);                            \
                a01 = q8_0_fma(uq, q, y0[i + b + 1].qs, &d[b + 1], a01);                        \
                a11 = q8_0_fma(uq, q, y1[i + b + 1].qs, &d[5 + b], a11);                        \
                a21 = q8_0_fma(uq, q, y2[i + b + 1].qs, &d[9 + b], a21);                        \
                a31 = q8_0_fma(uq, q, y3[i + b + 1].qs, &d[13 + b], a31);                       \
            }                                                                                   \
        }                                                                                       \
        for (; i < nb; i++) {                                                                   \
            __m256i q = QVEC(&x[i]), uq = _mm256_sign_epi8(q, q);                                \
            float dx = f16(x[i].d);                                                             \
            d[0] = dx * e0[i], d[1] = dx * e1[i], d[2] = dx * e2[i], d[3] = dx * e3[i];         \
            a00 = q8_0_fma(uq, q, y0[i].qs, &d[0], a00);                                            \
            a10 = q8_0_fma(uq, q, y1[i].qs, &d[1], a10);                                        \
            a20 = q8_0_fma(uq, q, y2[i].qs, &d[2], a20);                                        \
            a30 = q8_0_fma(uq, q, y3[i].qs, &d[3], a30);                                        \
        }                                                                                       \
        out[0] = hsum_ps(_mm256_add_ps(a00, a01));                                              \
        out[ldo] = hsum_ps(_mm256_add_ps(a10, a11));                                            \
        out[2 * ldo] = hsum_ps(_mm256_add_ps(a20, a21));                                        \
        out[3 * ldo] = hsum_ps(_mm256_add_ps(a30, a31));                                        \
    }

/* Rows are taken 16 at a time (a tile stays in L1/L2) against every group of
 * 4 tokens; 1-3 leftover tokens go through the single dot. */
#define Q8_0_GEMM_TILE_ROWS 16

#define Q8_0_FAMILY_GEMM(NAME, BLOCK)                                                          \
    void quants_gemm_##NAME##_avx2(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok, \
                                   float *y, size_t ldy) {                                        \
        const char *wb = w, *ab = a;                                                            \
        int nb = n / QK8_0, t4 = ntok / 4 * 4;                                                  \
        float *dy = t4 ? smp_malloc((size_t)t4 * nb * sizeof(float)) : NULL;                    \
        if (!dy) t4 = 0; /* out of memory: every token through the single dot */                \
        for (int t = 0; t < t4; t++) {                                                          \
            const block_q8_0 *yt = (const block_q8_0 *)(ab + t * as);                           \
            for (int b = 0; b < nb; b++) dy[(size_t)t * nb + b] = f16(yt[b].d);                 \
        }                                                                                       \
        for (int r0 = 0; r0 < nrows; r0 += Q8_0_GEMM_TILE_ROWS) {                               \
            int r1 = r0 + Q8_0_GEMM_TILE_ROWS < nrows ? r0 + Q8_0_GEMM_TILE_ROWS : nrows;       \
            for (int t = 0; t < t4; t += 4)                                                     \
                for (int r = r0; r < r1; r++)                                                   \
                    NAME##_tok4(nb, (const BLOCK *)(wb + r * ws), ab + t * as, as, dy + (size_t)t * nb, nb, \
                                y + t * ldy + r, ldy);                                          \
            for (int t = t4; t < ntok; t++)                                                     \
                for (int r = r0; r < r1; r++) y[t * ldy + r] = quants_dot_##NAME##_avx2(n, wb + r * ws, ab + t * as); \
        }                                                                                       \
        smp_free(dy);                                                                           \
    }

Q8_0_FAMILY_TOK4(q8_0, block_q8_0, q8_0_vec)
Q8_0_FAMILY_GEMM(q8_0, block_q8_0)
Q8_0_FAMILY_TOK4(q4_0, block_q4_0, q4_0_vec)
Q8_0_FAMILY_GEMM(q4_0, block_q4_0)

/* q = nibble | fifth bit << 4 (0..31). */
static inline __m256i q5_unsigned(const uint8_t *qs, const uint8_t *qh) {
    __m256i hbit = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(16));
    return _mm256_or_si256(nibbles_32(qs), hbit);
}

static inline __m256i q5_0_vec(const block_q5_0 *b) {
    return _mm256_sub_epi8(q5_unsigned(b->qs, b->qh), _mm256_set1_epi8(16));
}

float quants_dot_q5_0_avx2(int n, const void *w, const void *a) {
    DOT_Q8_0_FAMILY(block_q5_0, q5_0_vec);
}

Q8_0_FAMILY_TOK4(q5_0, block_q5_0, q5_0_vec)
Q8_0_FAMILY_GEMM(q5_0, block_q5_0)

/* Q4_1 / Q5_1 against Q8_1: unsigned weights, plus the offset term m * s per
 * block (s = activation block sum, stored by the quantizer). */
#define DOT_Q8_1_FAMILY(BLOCK, QVEC)                                                          \
    const BLOCK *x = w;                                                                      \
    const block_q8_1 *y = a;                                                                 \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                           \
    __m128 accm = _mm_setzero_ps();                                                          \
    int nb = n / QK8_1, i = 0;                                                               \
    for (; i + 4 <= nb; i += 4) {                                                            \
        __m128 d4 = scales4(&x[i].d, sizeof(BLOCK), &y[i].d, sizeof(block_q8_1));            \
        accm = _mm_add_ps(accm, scales4(&x[i].m, sizeof(BLOCK), &y[i].s, sizeof(block_q8_1))); \
        __m256i p0 = dot_u8_i8(QVEC(&x[i]), load256(y[i].qs));                               \
        __m256i p1 = dot_u8_i8(QVEC(&x[i + 1]), load256(y[i + 1].qs));                       \
        __m256i p2 = dot_u8_i8(QVEC(&x[i + 2]), load256(y[i + 2].qs));                       \
        __m256i p3 = dot_u8_i8(QVEC(&x[i + 3]), load256(y[i + 3].qs));                       \
        acc0 = _mm256_fmadd_ps(bcast4(d4, 0), _mm256_cvtepi32_ps(p0), acc0);                 \
        acc1 = _mm256_fmadd_ps(bcast4(d4, 1), _mm256_cvtepi32_ps(p1), acc1);                 \
        acc0 = _mm256_fmadd_ps(bcast4(d4, 2), _mm256_cvtepi32_ps(p2), acc0);                 \
        acc1 = _mm256_fmadd_ps(bcast4(d4, 3), _mm256_cvtepi32_ps(p3), acc1);                 \
    }                                                                                        \
    float summ = 0;                                                                          \
    for (; i < nb; i++) {                                                                    \
        __m256i p = dot_u8_i8(QVEC(&x[i]), load256(y[i].qs));                                \
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16(x[i].d) * f16(y[i].d)), _mm256_cvtepi32_ps(p), acc0); \
        summ += f16(x[i].m) * f16(y[i].s);                                                   \
    }                                                                                        \
    accm = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));                                      \
    accm = _mm_add_ss(accm, _mm_movehdup_ps(accm));                                          \
    return hsum_ps(_mm256_add_ps(acc0, acc1)) + _mm_cvtss_f32(accm) + summ

static inline __m256i q4_1_vec(const block_q4_1 *b) {
    return nibbles_32(b->qs);
}

static inline __m256i q5_1_vec(const block_q5_1 *b) {
    return q5_unsigned(b->qs, b->qh);
}

float quants_dot_q4_1_avx2(int n, const void *w, const void *a) {
    DOT_Q8_1_FAMILY(block_q4_1, q4_1_vec);
}

float quants_dot_q5_1_avx2(int n, const void *w, const void *a) {
    DOT_Q8_1_FAMILY(block_q5_1, q5_1_vec);
}

/* ------------------------------------------------- K-quants against Q8_K
 * Per super-block the integer sum (scales included) is exact in int32 lanes;
 * one FMA per super-block folds it into the float accumulator. */

float quants_dot_q2_K_avx2(int n, const void *w, const void *a) {
    const block_q2_K *x = w;
    const block_q8_K *y = a;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)x[i].scales);
        __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(15)));
        /* mins: sum_j (scales[j] >> 4) * bsums[j] */
        __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(15)));
        __m256i summ = _mm256_madd_epi16(mn16, load256(y[i].bsums));
        __m256i half[2];
        half_scales(sc16, half);
        __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i q = load256(x[i].qs + 32 * h);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                __m256i p = _mm256_maddubs_epi16(q2, load256(y[i].qs + 128 * h + 32 * k));
                p = _mm256_madd_epi16(p, pair_scales(half[h], k));
                if (k & 1) sum1 = _mm256_add_epi32(sum1, p);
                else sum0 = _mm256_add_epi32(sum0, p);
            }
        }
        __m256i sumi = _mm256_add_epi32(sum0, sum1);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * f16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * f16(x[i].dmin)), _mm256_cvtepi32_ps(summ), accm);
    }
    return hsum_ps(acc) - hsum_ps(accm);
}

/* The 16 six-bit scales of Q3_K, minus 32, as int16 (layout in quants.h):
 * low nibbles from bytes 0..7 (scales 0..7 low half, 8..15 high half), top two
 * bits from bytes 8..11 at bit 2*(j/4) of byte 8 + j%4. */
static inline __m256i q3_scales(const uint8_t *s) {
    uint32_t u[3], o[4];
    memcpy(u, s, 12);
    o[0] = (u[0] & 0x0f0f0f0f) | (u[2] & 0x03030303) << 4;
    o[1] = (u[1] & 0x0f0f0f0f) | ((u[2] >> 2) & 0x03030303) << 4;
    o[2] = ((u[0] >> 4) & 0x0f0f0f0f) | ((u[2] >> 4) & 0x03030303) << 4;
    o[3] = ((u[1] >> 4) & 0x0f0f0f0f) | ((u[2] >> 6) & 0x03030303) << 4;
    __m128i v = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)o), _mm_set1_epi8(32));
    return _mm256_cvtepi8_epi16(v);
}

float quants_dot_q3_K_avx2(int n, const void *w, const void *a) {
    const block_q3_K *x = w;
    const block_q8_K *y = a;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        __m256i sc16 = q3_scales(x[i].scales);
        /* q3 = low2 - 4*(1 - hbit): sum(q3*y) = sum(low2*y) - sum(4*(!hbit)*y) */
        __m256i nh = _mm256_xor_si256(load256(x[i].hmask), _mm256_set1_epi8(-1));
        __m256i half[2];
        half_scales(sc16, half);
        __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i q = load256(x[i].qs + 32 * h);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i yy = load256(y[i].qs + 128 * h + 32 * k);
                __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                __m256i sub = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(nh, 4 * h + k), one), 2);
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q2, yy), _mm256_maddubs_epi16(sub, yy));
                p = _mm256_madd_epi16(p, pair_scales(half[h], k));
                if (k & 1) sum1 = _mm256_add_epi32(sum1, p);
                else sum0 = _mm256_add_epi32(sum0, p);
            }
        }
        __m256i sumi = _mm256_add_epi32(sum0, sum1);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * f16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* The 12 scale bytes of Q4_K / Q5_K rearranged with 32-bit integer ops into
 * 16 bytes: sc[0..7] then m[0..7] (6-bit values, layout in quants.h). */
static inline __m128i k4_scales_mins(const uint8_t *s) {
    uint32_t u[3], o[4];
    memcpy(u, s, 12);
    o[0] = u[0] & 0x3f3f3f3f;                                              /* sc 0..3 */
    o[1] = (u[2] & 0x0f0f0f0f) | ((u[0] >> 6) & 0x03030303) << 4;          /* sc 4..7 */
    o[2] = u[1] & 0x3f3f3f3f;                                              /* m 0..3 */
    o[3] = ((u[2] >> 4) & 0x0f0f0f0f) | ((u[1] >> 6) & 0x03030303) << 4;   /* m 4..7 */
    return _mm_loadu_si128((const __m128i *)o);
}

/* Shuffle masks that broadcast int16 element k of each 128-bit lane. */
static inline __m256i bcast16_mask(int k) {
    return _mm256_set1_epi16((short)(2 * k | (2 * k + 1) << 8));
}

/* sum_j m[j] * (sum of activations over 32-element sub-block j), 4 int32 lanes */
static inline __m128i k4_mins_dot(__m128i sm, const block_q8_K *y) {
    __m128i mins = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm));
    __m128i b0 = _mm_loadu_si128((const __m128i *)y->bsums);
    __m128i b1 = _mm_loadu_si128((const __m128i *)(y->bsums + 8));
    return _mm_madd_epi16(mins, _mm_hadd_epi16(b0, b1));
}

/* One super-block of Q4_K (q5 = NULL) or Q5_K: int32 lanes of sum sc*q*y. */
static inline __m256i k4_block_dot(const uint8_t *qs, const uint8_t *qh, __m128i sm, const int8_t *yq) {
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm)); /* sc[0..7] in both lanes */
    __m256i hbits = qh ? load256(qh) : _mm256_setzero_si256();
    __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i raw = load256(qs + 32 * c);
        __m256i lo = _mm256_and_si256(raw, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        if (qh) { /* fifth bits: bit 2c for the low nibbles, 2c+1 for the high */
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), one), 4));
        }
        __m256i plo = _mm256_maddubs_epi16(lo, load256(yq + 64 * c));
        __m256i phi = _mm256_maddubs_epi16(hi, load256(yq + 64 * c + 32));
        sum0 = _mm256_add_epi32(sum0, _mm256_madd_epi16(plo, _mm256_shuffle_epi8(sc16, bcast16_mask(2 * c))));
        sum1 = _mm256_add_epi32(sum1, _mm256_madd_epi16(phi, _mm256_shuffle_epi8(sc16, bcast16_mask(2 * c + 1))));
    }
    return _mm256_add_epi32(sum0, sum1);
}

float quants_dot_q4_K_avx2(int n, const void *w, const void *a) {
    const block_q4_K *x = w;
    const block_q8_K *y = a;
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        __m128i sm = k4_scales_mins(x[i].scales);
        __m256i sumi = k4_block_dot(x[i].qs, NULL, sm, y[i].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * f16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
        accm = _mm_fmadd_ps(_mm_set1_ps(y[i].d * f16(x[i].dmin)), _mm_cvtepi32_ps(k4_mins_dot(sm, &y[i])), accm);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum_ps(acc) - _mm_cvtss_f32(m);
}

float quants_dot_q5_K_avx2(int n, const void *w, const void *a) {
    const block_q5_K *x = w;
    const block_q8_K *y = a;
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        __m128i sm = k4_scales_mins(x[i].scales);
        __m256i sumi = k4_block_dot(x[i].qs, x[i].qh, sm, y[i].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * f16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
        accm = _mm_fmadd_ps(_mm_set1_ps(y[i].d * f16(x[i].dmin)), _mm_cvtepi32_ps(k4_mins_dot(sm, &y[i])), accm);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum_ps(acc) - _mm_cvtss_f32(m);
}

float quants_dot_q6_K_avx2(int n, const void *w, const void *a) {
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        /* the q - 32 offset: 32 * sum_j sc_j * bsum_j, taken off the int lanes */
        __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(y[i].bsums)), 5);
        __m256i half[2];
        half_scales(sc16, half);
        __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = load256(x[i].ql + 64 * h);
            __m256i ql1 = load256(x[i].ql + 64 * h + 32);
            __m256i qh = load256(x[i].qh + 32 * h);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i src = (k & 1) ? ql1 : ql0;
                __m256i lo4 = _mm256_and_si256(k < 2 ? src : _mm256_srli_epi16(src, 4), m4);
                __m256i hi2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m2), 4);
                __m256i q = _mm256_or_si256(lo4, hi2); /* 0..63 */
                __m256i p = _mm256_maddubs_epi16(q, load256(y[i].qs + 128 * h + 32 * k));
                p = _mm256_madd_epi16(p, pair_scales(half[h], k));
                if (k & 1) sum1 = _mm256_add_epi32(sum1, p);
                else sum0 = _mm256_add_epi32(sum0, p);
            }
        }
        __m256i sumi = _mm256_sub_epi32(_mm256_add_epi32(sum0, sum1), corr);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * f16(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* ---------------------------------------- one weight row, four activations
 * Prompt processing multiplies each weight row with many activation rows; the
 * dot4 kernels unpack each super-block once and use it for 4 of them. Per
 * token they perform exactly the operations of the single-row kernel, in the
 * same order, so results are bit-identical to four vec_dot calls. */

static inline float hsum4_ps(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

/* Q4_K (qh NULL) or Q5_K super-block against 4 activation blocks. */
static inline void k4_block_dot4(const uint8_t *qs, const uint8_t *qh, __m128i sm, const block_q8_K *y0,
                                 const block_q8_K *y1, const block_q8_K *y2, const block_q8_K *y3, __m256i out[4]) {
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
    __m256i hbits = qh ? load256(qh) : _mm256_setzero_si256();
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i raw = load256(qs + 32 * c);
        __m256i lo = _mm256_and_si256(raw, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), one), 4));
        }
        __m256i sclo = _mm256_shuffle_epi8(sc16, bcast16_mask(2 * c));
        __m256i schi = _mm256_shuffle_epi8(sc16, bcast16_mask(2 * c + 1));
#define K4_TOK(Y, S)                                                                               \
    S = _mm256_add_epi32(S, _mm256_add_epi32(                                                      \
                                _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(Y->qs + 64 * c)), sclo), \
                                _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load256(Y->qs + 64 * c + 32)), schi)))
        K4_TOK(y0, s0);
        K4_TOK(y1, s1);
        K4_TOK(y2, s2);
        K4_TOK(y3, s3);
#undef K4_TOK
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

#define DOT4_K4(BLOCK, QH)                                                                          \
    const BLOCK *x = w;                                                                            \
    const block_q8_K *y0 = a, *y1 = (const block_q8_K *)((const char *)a + as);                     \
    const block_q8_K *y2 = (const block_q8_K *)((const char *)a + 2 * as);                          \
    const block_q8_K *y3 = (const block_q8_K *)((const char *)a + 3 * as);                          \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;                      \
    __m128 am0 = _mm_setzero_ps(), am1 = am0, am2 = am0, am3 = am0;                                \
    for (int i = 0; i < n / QK_K; i++) {                                                           \
        __m128i sm = k4_scales_mins(x[i].scales);                                                  \
        __m256i s[4];                                                                              \
        k4_block_dot4(x[i].qs, QH, sm, &y0[i], &y1[i], &y2[i], &y3[i], s);                         \
        float dx = f16(x[i].d), mx = f16(x[i].dmin);                                               \
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(y0[i].d * dx), _mm256_cvtepi32_ps(s[0]), acc0);      \
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(y1[i].d * dx), _mm256_cvtepi32_ps(s[1]), acc1);      \
        acc2 = _mm256_fmadd_ps(_mm256_set1_ps(y2[i].d * dx), _mm256_cvtepi32_ps(s[2]), acc2);      \
        acc3 = _mm256_fmadd_ps(_mm256_set1_ps(y3[i].d * dx), _mm256_cvtepi32_ps(s[3]), acc3);      \
        am0 = _mm_fmadd_ps(_mm_set1_ps(y0[i].d * mx), _mm_cvtepi32_ps(k4_mins_dot(sm, &y0[i])), am0); \
        am1 = _mm_fmadd_ps(_mm_set1_ps(y1[i].d * mx), _mm_cvtepi32_ps(k4_mins_dot(sm, &y1[i])), am1); \
        am2 = _mm_fmadd_ps(_mm_set1_ps(y2[i].d * mx), _mm_cvtepi32_ps(k4_mins_dot(sm, &y2[i])), am2); \
        am3 = _mm_fmadd_ps(_mm_set1_ps(y3[i].d * mx), _mm_cvtepi32_ps(k4_mins_dot(sm, &y3[i])), am3); \
    }                                                                                              \
    out[0] = hsum_ps(acc0) - hsum4_ps(am0);                                                        \
    out[1] = hsum_ps(acc1) - hsum4_ps(am1);                                                        \
    out[2] = hsum_ps(acc2) - hsum4_ps(am2);                                                        \
    out[3] = hsum_ps(acc3) - hsum4_ps(am3)

void quants_dot4_q4_K_avx2(int n, const void *w, const void *a, size_t as, float out[4]) {
    DOT4_K4(block_q4_K, NULL);
}

void quants_dot4_q5_K_avx2(int n, const void *w, const void *a, size_t as, float out[4]) {
    DOT4_K4(block_q5_K, x[i].qh);
}

void quants_dot4_q6_K_avx2(int n, const void *w, const void *a, size_t as, float out[4]) {
    const block_q6_K *x = w;
    const block_q8_K *y0 = a, *y1 = (const block_q8_K *)((const char *)a + as);
    const block_q8_K *y2 = (const block_q8_K *)((const char *)a + 2 * as);
    const block_q8_K *y3 = (const block_q8_K *)((const char *)a + 3 * as);
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int i = 0; i < n / QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m256i half[2];
        half_scales(sc16, half);
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = load256(x[i].ql + 64 * h);
            __m256i ql1 = load256(x[i].ql + 64 * h + 32);
            __m256i qh = load256(x[i].qh + 32 * h);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i src = (k & 1) ? ql1 : ql0;
                __m256i lo4 = _mm256_and_si256(k < 2 ? src : _mm256_srli_epi16(src, 4), m4);
                __m256i hi2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m2), 4);
                __m256i q = _mm256_or_si256(lo4, hi2);
                __m256i sc = pair_scales(half[h], k);
#define Q6_TOK(Y, S) \
    S = _mm256_add_epi32(S, _mm256_madd_epi16(_mm256_maddubs_epi16(q, load256(Y[i].qs + 128 * h + 32 * k)), sc))
                Q6_TOK(y0, s0);
                Q6_TOK(y1, s1);
                Q6_TOK(y2, s2);
                Q6_TOK(y3, s3);
#undef Q6_TOK
            }
        }
        float dx = f16(x[i].d);
#define Q6_FIN(Y, S, ACC)                                                                              \
    ACC = _mm256_fmadd_ps(_mm256_set1_ps(Y[i].d * dx),                                                \
                          _mm256_cvtepi32_ps(_mm256_sub_epi32(S, _mm256_slli_epi32(                   \
                                                                    _mm256_madd_epi16(sc16, load256(Y[i].bsums)), 5))), \
                          ACC)
        Q6_FIN(y0, s0, acc0);
        Q6_FIN(y1, s1, acc1);
        Q6_FIN(y2, s2, acc2);
        Q6_FIN(y3, s3, acc3);
#undef Q6_FIN
    }
    out[0] = hsum_ps(acc0);
    out[1] = hsum_ps(acc1);
    out[2] = hsum_ps(acc2);
    out[3] = hsum_ps(acc3);
}

