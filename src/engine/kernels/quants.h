/* quants.h - the GGUF ecosystem's quantized block layouts, fp16/bf16 scalar
 * conversions, and the per-type kernels (scalar reference in quants_ref.c,
 * AVX2+FMA+F16C versions in quants_avx2.c). Model code does not call these
 * directly: it goes through kernels.h, which picks one set at start.
 *
 * Every block is packed, little-endian, and byte-identical to what ggml writes
 * (fp16 = IEEE binary16 bits in a uint16_t). "elem" = element index in the block.
 *
 *   type  bytes elems  layout (offset:size field)
 *   Q4_0   18   32   0:2 d | 2:16 qs          x = (nib - 8)*d; qs[j] low nibble = elem j,
 *                                              high nibble = elem j+16
 *   Q4_1   20   32   0:2 d | 2:2 m | 4:16 qs  x = nib*d + m (nibbles as Q4_0)
 *   Q5_0   22   32   0:2 d | 2:4 qh | 6:16 qs q = nib | (bit e of u32 qh) << 4 for elem e
 *                                              (nibbles as Q4_0); x = (q - 16)*d
 *   Q5_1   24   32   0:2 d | 2:2 m | 4:4 qh | 8:16 qs          x = q*d + m
 *   Q8_0   34   32   0:2 d | 2:32 qs (int8)   x = qs[e]*d
 *   Q8_1   36   32   0:2 d | 2:2 s | 4:32 qs  s = d * sum(qs) (activations only)
 *
 * K-quants: super-blocks of 256 elements in sub-blocks of 16 or 32.
 *   Q2_K   84  0:16 scales | 16:64 qs | 80:2 d | 82:2 dmin
 *          sub-block j (16 elems): scale = scales[j] & 15, min = scales[j] >> 4
 *          elem e = 128n + 32s + l (n<2, s<4, l<32): q = (qs[32n + l] >> 2s) & 3
 *          x = d*scale*q - dmin*min
 *   Q3_K  110  0:32 hmask | 32:64 qs | 96:12 scales | 108:2 d
 *          elem e as Q2_K for the low 2 bits; high bit = (hmask[e % 32] >> (e / 32)) & 1
 *          q = low2 - (high ? 0 : 4)  (range -4..3)
 *          6-bit scale j (16 elems): low 4 bits = j < 8 ? scales[j] & 15 : scales[j-8] >> 4,
 *          high 2 bits = (scales[8 + j%4] >> 2*(j/4)) & 3; x = d*(scale - 32)*q
 *   Q4_K  144  0:2 d | 2:2 dmin | 4:12 scales | 16:128 qs
 *          8 sub-blocks of 32; 6-bit scale sc[j] and min m[j] packed in 12 bytes:
 *            j < 4:  sc = s[j] & 63,  m = s[j+4] & 63
 *            j >= 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4, m = (s[j+4] >> 4) | (s[j] >> 6) << 4
 *          elem e = 64c + l (l<32): low nibble of qs[32c + l]; e = 64c + 32 + l: high nibble
 *          x = d*sc[e/32]*q - dmin*m[e/32]
 *   Q5_K  176  0:2 d | 2:2 dmin | 4:12 scales | 16:32 qh | 48:128 qs
 *          as Q4_K, plus fifth bit: elem e = 64c + 32h + l  ->  (qh[l] >> (2c + h)) & 1
 *   Q6_K  210  0:128 ql | 128:64 qh | 192:16 scales (int8) | 208:2 d
 *          elem e = 128n + 32k + l (k<4, l<32): low 4 bits from ql[64n + 32(k&1) + l],
 *          low nibble for k<2, high nibble for k>=2; high 2 bits = (qh[32n + l] >> 2k) & 3
 *          x = d*scales[e/16]*(q - 32)
 *   Q8_K  292  0:4 d (float) | 4:256 qs (int8) | 260:32 bsums (int16, sum of each 16 qs)
 *          activations only: x = d*qs[e]
 */
#ifndef SMP_QUANTS_H
#define SMP_QUANTS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;

typedef struct {
    uint16_t d, m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;

typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;

typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;

typedef struct {
    uint16_t d;
    int8_t qs[QK8_0];
} block_q8_0;

typedef struct {
    uint16_t d, s;
    int8_t qs[QK8_1];
} block_q8_1;

typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    uint16_t d, dmin;
} block_q2_K;

typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} block_q3_K;

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;

typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} block_q6_K;

typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;

/* Pinned to tt_block_bytes() in tensor_types.h (a unit test checks both agree). */
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

/* ---- scalar fp16 / bf16 conversions -------------------------------------
 * Portable and bit-exact with the F16C instructions (round to nearest even,
 * NaNs are quieted and keep their top payload bits, subnormals handled), so the
 * reference path and the AVX2 path agree on every input. */

static inline uint32_t quants_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float quants_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float quants_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {                       /* inf, or NaN made quiet */
        bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0);
    } else if (exp != 0) {                   /* normal: rebias 15 -> 127 */
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {                  /* signed zero */
        bits = sign;
    } else {                                 /* subnormal half = normal float */
        uint32_t e = 113;
        while (!(mant & 0x400)) {
            mant <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((mant & 0x3ff) << 13);
    }
    return quants_bits_f32(bits);
}

static inline uint16_t quants_f32_to_f16(float f) {
    uint32_t x = quants_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00 | ((ax >> 13) & 0x3ff); /* NaN */
    if (ax >= 0x477ff000u) return sign | 0x7c00;   /* >= 65520 rounds to inf */
    if (ax >= 0x38800000u) {                       /* normal half (>= 2^-14) */
        uint32_t r = ax - 0x38000000u;             /* rebias exponent 127 -> 15 */
        r += 0xfff + ((r >> 13) & 1);              /* round to nearest even */
        return sign | (uint16_t)(r >> 13);
    }
    uint32_t e = ax >> 23;
    if (e < 102) return sign;                      /* below 2^-25: zero */
    uint32_t m = (ax & 0x7fffff) | 0x800000;       /* value = m * 2^(e-150) */
    uint32_t shift = 126 - e;                      /* to units of 2^-24: 14..24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return sign | (uint16_t)q;
}

static inline float quants_bf16_to_f32(uint16_t h) {
    return quants_bits_f32((uint32_t)h << 16);
}

static inline uint16_t quants_f32_to_bf16(float f) {
    uint32_t x = quants_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/* ---- kernels --------------------------------------------------------------
 * n is the element count and must be a multiple of the type's block size.
 * dequant: n elements of packed blocks -> floats.  quant: floats -> blocks.
 * dot: one weight row (n elements) times one activation row already converted to
 * the weight type's activation type (see kernels.h: F32, Q8_0, Q8_1 or Q8_K). */

typedef float (*quants_dot_fn)(int n, const void *w, const void *a);
/* One weight row against 4 activation rows, `as` bytes apart: out[t] is
 * bit-identical to dot(n, w, a + t*as). */
typedef void (*quants_dot4_fn)(int n, const void *w, const void *a, size_t as, float out[4]);
/* Many rows times many activation rows: rows w + r*ws (r < nrows) against
 * a + t*as (t < ntok) into y[t*ldy + r], each bit-identical to dot(n, w + r*ws,
 * a + t*as). The kernel picks its own grouping of rows and tokens. */
typedef void (*quants_gemm_fn)(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok,
                               float *y, size_t ldy);
typedef void (*quants_dequant_fn)(const void *src, float *dst, int64_t n);
typedef void (*quants_quant_fn)(const float *src, void *dst, int64_t n);

/* Reference (quants_ref.c): plain C loops, the definition of each format. */
void quants_dequant_f32_ref(const void *src, float *dst, int64_t n);
void quants_dequant_f16_ref(const void *src, float *dst, int64_t n);
void quants_dequant_bf16_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q4_0_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q4_1_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q5_0_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q5_1_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q8_0_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q8_1_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q2_K_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q3_K_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q4_K_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q5_K_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q6_K_ref(const void *src, float *dst, int64_t n);
void quants_dequant_q8_K_ref(const void *src, float *dst, int64_t n);

void quants_quant_f32_ref(const float *src, void *dst, int64_t n);
void quants_quant_f16_ref(const float *src, void *dst, int64_t n);
void quants_quant_bf16_ref(const float *src, void *dst, int64_t n);
void quants_quant_q4_0_ref(const float *src, void *dst, int64_t n);
void quants_quant_q4_1_ref(const float *src, void *dst, int64_t n);
void quants_quant_q5_0_ref(const float *src, void *dst, int64_t n);
void quants_quant_q5_1_ref(const float *src, void *dst, int64_t n);
void quants_quant_q8_0_ref(const float *src, void *dst, int64_t n);
void quants_quant_q8_1_ref(const float *src, void *dst, int64_t n);
void quants_quant_q2_K_ref(const float *src, void *dst, int64_t n);
void quants_quant_q3_K_ref(const float *src, void *dst, int64_t n);
void quants_quant_q4_K_ref(const float *src, void *dst, int64_t n);
void quants_quant_q5_K_ref(const float *src, void *dst, int64_t n);
void quants_quant_q6_K_ref(const float *src, void *dst, int64_t n);
void quants_quant_q8_K_ref(const float *src, void *dst, int64_t n);

float quants_dot_f32_ref(int n, const void *w, const void *a);  /* a: F32 */
float quants_dot_f16_ref(int n, const void *w, const void *a);  /* a: F32 */
float quants_dot_bf16_ref(int n, const void *w, const void *a); /* a: F32 */
float quants_dot_q4_0_ref(int n, const void *w, const void *a); /* a: Q8_0 */
float quants_dot_q4_1_ref(int n, const void *w, const void *a); /* a: Q8_1 */
float quants_dot_q5_0_ref(int n, const void *w, const void *a); /* a: Q8_0 */
float quants_dot_q5_1_ref(int n, const void *w, const void *a); /* a: Q8_1 */
float quants_dot_q8_0_ref(int n, const void *w, const void *a); /* a: Q8_0 */
float quants_dot_q2_K_ref(int n, const void *w, const void *a); /* a: Q8_K */
float quants_dot_q3_K_ref(int n, const void *w, const void *a); /* a: Q8_K */
float quants_dot_q4_K_ref(int n, const void *w, const void *a); /* a: Q8_K */
float quants_dot_q5_K_ref(int n, const void *w, const void *a); /* a: Q8_K */
float quants_dot_q6_K_ref(int n, const void *w, const void *a); /* a: Q8_K */

/* AVX2+FMA+F16C (quants_avx2.c); only call when the CPU has all three. The
 * activation quantizers produce the same bytes as their references. */
void quants_dequant_f16_avx2(const void *src, float *dst, int64_t n);
void quants_dequant_bf16_avx2(const void *src, float *dst, int64_t n);
void quants_quant_f16_avx2(const float *src, void *dst, int64_t n);
void quants_quant_q8_0_avx2(const float *src, void *dst, int64_t n);
void quants_quant_q8_1_avx2(const float *src, void *dst, int64_t n);
void quants_quant_q8_K_avx2(const float *src, void *dst, int64_t n);

float quants_dot_f32_avx2(int n, const void *w, const void *a);
float quants_dot_f16_avx2(int n, const void *w, const void *a);
float quants_dot_bf16_avx2(int n, const void *w, const void *a);
float quants_dot_q4_0_avx2(int n, const void *w, const void *a);
float quants_dot_q4_1_avx2(int n, const void *w, const void *a);
float quants_dot_q5_0_avx2(int n, const void *w, const void *a);
float quants_dot_q5_1_avx2(int n, const void *w, const void *a);
float quants_dot_q8_0_avx2(int n, const void *w, const void *a);
float quants_dot_q2_K_avx2(int n, const void *w, const void *a);
float quants_dot_q3_K_avx2(int n, const void *w, const void *a);
float quants_dot_q4_K_avx2(int n, const void *w, const void *a);
float quants_dot_q5_K_avx2(int n, const void *w, const void *a);
float quants_dot_q6_K_avx2(int n, const void *w, const void *a);
void quants_gemm_f32_avx2(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok, float *y,
                          size_t ldy);
void quants_gemm_f16_avx2(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok, float *y,
                          size_t ldy);
void quants_gemm_bf16_avx2(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok, float *y,
                           size_t ldy);
void quants_gemm_q8_0_avx2(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok, float *y,
                           size_t ldy);
void quants_gemm_q4_0_avx2(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok, float *y,
                           size_t ldy);
void quants_gemm_q5_0_avx2(int n, const void *w, size_t ws, int nrows, const void *a, size_t as, int ntok, float *y,
                           size_t ldy);
void quants_dot4_q4_K_avx2(int n, const void *w, const void *a, size_t as, float out[4]);
void quants_dot4_q5_K_avx2(int n, const void *w, const void *a, size_t as, float out[4]);
void quants_dot4_q6_K_avx2(int n, const void *w, const void *a, size_t as, float out[4]);

#endif
