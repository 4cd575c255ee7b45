/* quants_ref.c - scalar reference kernels: dequantize, quantize and dot product
 * for every tensor type (layouts: see the table in quants.h).
 *
 * This file is the definition the AVX2 kernels are tested against, so it stays
 * plain C: no intrinsics, one readable loop per formula, integer arithmetic
 * wherever the format allows it. Floating-point contraction is switched off so
 * that each a*b+c rounds twice, as written, whatever -m flags the build uses;
 * dequantization is then the exact IEEE evaluation of the ecosystem's formula.
 *
 * Quantizers follow the ecosystem's basic (no importance matrix) reference
 * algorithms: round-to-nearest for the 32-element types, and for the K-quants a
 * weighted least-squares search for each sub-block's scale (and min), then the
 * sub-block scales quantized against one fp16 super-block scale. */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <float.h>
#include <math.h>

#include "engine/kernels/quants.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Round to nearest, ties to even, for |v| < 2^22: adding 1.5*2^23 leaves the
 * rounded integer in the low mantissa bits. Larger magnitudes are clamped first
 * (callers clamp the result to a few bits anyway). */
static int nearest_int(float v) {
    if (!(v > -4194303.f)) v = v != v ? 0.f : -4194303.f; /* also catches NaN */
    if (v > 4194303.f) v = 4194303.f;
    float t = v + 12582912.f;
    uint32_t u = quants_f32_bits(t);
    return (int)(u & 0x007fffff) - 0x00400000;
}

/* ======================================================== F32 / F16 / BF16 */

void quants_dequant_f32_ref(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void quants_dequant_f16_ref(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = quants_f16_to_f32(h[i]);
}

void quants_dequant_bf16_ref(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = quants_bf16_to_f32(h[i]);
}

void quants_quant_f32_ref(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void quants_quant_f16_ref(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = quants_f32_to_f16(src[i]);
}

void quants_quant_bf16_ref(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = quants_f32_to_bf16(src[i]);
}

float quants_dot_f32_ref(int n, const void *w, const void *a) {
    const float *x = w, *y = a;
    float sum = 0;
    for (int i = 0; i < n; i++) sum += x[i] * y[i];
    return sum;
}

/* F16 weights against F32 activations: the activations keep full precision and
 * the weight conversion is cheap (F16C in the fast path); decode is bound by
 * reading the 2-byte weights, not by this arithmetic. */
float quants_dot_f16_ref(int n, const void *w, const void *a) {
    const uint16_t *x = w;
    const float *y = a;
    float sum = 0;
    for (int i = 0; i < n; i++) sum += quants_f16_to_f32(x[i]) * y[i];
    return sum;
}

float quants_dot_bf16_ref(int n, const void *w, const void *a) {
    const uint16_t *x = w;
    const float *y = a;
    float sum = 0;
    for (int i = 0; i < n; i++) sum += quants_bf16_to_f32(x[i]) * y[i];
    return sum;
}

/* ============================================ 32-element blocks: dequantize */

void quants_dequant_q4_0_ref(const void *src, float *dst, int64_t n) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        float d = quants_f16_to_f32(b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = ((b[i].qs[j] & 15) - 8) * d;
            dst[j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void quants_dequant_q4_1_ref(const void *src, float *dst, int64_t n) {
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        float d = quants_f16_to_f32(b[i].d), m = quants_f16_to_f32(b[i].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = (b[i].qs[j] & 15) * d + m;
            dst[j + 16] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

/* The fifth bit of element e is bit e of the little-endian 32-bit qh. */
static uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void quants_dequant_q5_0_ref(const void *src, float *dst, int64_t n) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        float d = quants_f16_to_f32(b[i].d);
        uint32_t qh = load_u32(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int q0 = (b[i].qs[j] & 15) | ((qh >> j) & 1) << 4;
            int q1 = (b[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            dst[j] = (q0 - 16) * d;
            dst[j + 16] = (q1 - 16) * d;
        }
    }
}

void quants_dequant_q5_1_ref(const void *src, float *dst, int64_t n) {
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        float d = quants_f16_to_f32(b[i].d), m = quants_f16_to_f32(b[i].m);
        uint32_t qh = load_u32(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int q0 = (b[i].qs[j] & 15) | ((qh >> j) & 1) << 4;
            int q1 = (b[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            dst[j] = q0 * d + m;
            dst[j + 16] = q1 * d + m;
        }
    }
}

void quants_dequant_q8_0_ref(const void *src, float *dst, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        float d = quants_f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[j] = b[i].qs[j] * d;
    }
}

void quants_dequant_q8_1_ref(const void *src, float *dst, int64_t n) {
    const block_q8_1 *b = src;
    for (int64_t i = 0; i < n / QK8_1; i++, dst += QK8_1) {
        float d = quants_f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_1; j++) dst[j] = b[i].qs[j] * d;
    }
}

/* ============================================== 32-element blocks: quantize */

/* Symmetric types: the element of largest magnitude maps to -2^(bits-1)
 * exactly (d takes its sign), so the full range -8..7 / -16..15 is used. */
static float signed_absmax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

/* Truncating cast after adding the rounding offset, as the reference
 * quantizers do; the clamp keeps the cast defined for any input. */
static int trunc_clamp(float v, int hi) {
    if (!(v > 0)) return 0;
    if (v >= (float)hi) return hi;
    return (int)v;
}

void quants_quant_q4_0_ref(const float *src, void *dst, int64_t n) {
    block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++, src += QK4_0) {
        float d = signed_absmax(src, QK4_0) / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = quants_f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            int q0 = trunc_clamp(src[j] * id + 8.5f, 15);
            int q1 = trunc_clamp(src[j + 16] * id + 8.5f, 15);
            b[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void quants_quant_q5_0_ref(const float *src, void *dst, int64_t n) {
    block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / QK5_0; i++, src += QK5_0) {
        float d = signed_absmax(src, QK5_0) / -16;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = quants_f32_to_f16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = trunc_clamp(src[j] * id + 16.5f, 31);
            int q1 = trunc_clamp(src[j + 16] * id + 16.5f, 31);
            b[i].qs[j] = (uint8_t)((q0 & 15) | (q1 & 15) << 4);
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; k++) b[i].qh[k] = (uint8_t)(qh >> 8 * k);
    }
}

/* Asymmetric types: min maps to 0, max to 2^bits - 1. */
static void min_max(const float *x, int n, float *mn, float *mx) {
    *mn = FLT_MAX;
    *mx = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *mn) *mn = x[j];
        if (x[j] > *mx) *mx = x[j];
    }
}

void quants_quant_q4_1_ref(const float *src, void *dst, int64_t n) {
    block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / QK4_1; i++, src += QK4_1) {
        float mn, mx;
        min_max(src, QK4_1, &mn, &mx);
        float d = (mx - mn) / 15;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = quants_f32_to_f16(d);
        b[i].m = quants_f32_to_f16(mn);
        for (int j = 0; j < 16; j++) {
            int q0 = trunc_clamp((src[j] - mn) * id + 0.5f, 15);
            int q1 = trunc_clamp((src[j + 16] - mn) * id + 0.5f, 15);
            b[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void quants_quant_q5_1_ref(const float *src, void *dst, int64_t n) {
    block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / QK5_1; i++, src += QK5_1) {
        float mn, mx;
        min_max(src, QK5_1, &mn, &mx);
        float d = (mx - mn) / 31;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = quants_f32_to_f16(d);
        b[i].m = quants_f32_to_f16(mn);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = trunc_clamp((src[j] - mn) * id + 0.5f, 31);
            int q1 = trunc_clamp((src[j + 16] - mn) * id + 0.5f, 31);
            b[i].qs[j] = (uint8_t)((q0 & 15) | (q1 & 15) << 4);
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; k++) b[i].qh[k] = (uint8_t)(qh >> 8 * k);
    }
}

/* roundf (ties away from zero) is the ecosystem's rounding for Q8_0/Q8_1. */
static int8_t round_i8(float v) {
    if (!(v > -127.f)) return v != v ? 0 : -127;
    if (v > 127.f) return 127;
    return (int8_t)roundf(v);
}

static float absmax(const float *x, int n) {
    float amax = 0;
    for (int j = 0; j < n; j++) amax = MAX(amax, fabsf(x[j]));
    return amax;
}

/* Used for Q8_0 weights and for the activations of Q4_0 / Q5_0 / Q8_0 rows. */
void quants_quant_q8_0_ref(const float *src, void *dst, int64_t n) {
    block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, src += QK8_0) {
        float d = absmax(src, QK8_0) / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = quants_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) b[i].qs[j] = round_i8(src[j] * id);
    }
}

/* Activations of Q4_1 / Q5_1 rows: also stores s = d * sum(qs), which turns the
 * weights' offset m into one multiply per block. */
void quants_quant_q8_1_ref(const float *src, void *dst, int64_t n) {
    block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, src += QK8_1) {
        float d = absmax(src, QK8_1) / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        b[i].d = quants_f32_to_f16(d);
        for (int j = 0; j < QK8_1; j++) {
            b[i].qs[j] = round_i8(src[j] * id);
            sum += b[i].qs[j];
        }
        b[i].s = quants_f32_to_f16((float)sum * d);
    }
}

/* ================================================ 32-element blocks: dots */

float quants_dot_q8_0_ref(int n, const void *w, const void *a) {
    const block_q8_0 *x = w, *y = a;
    float sum = 0;
    for (int i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sum += (float)sumi * (quants_f16_to_f32(x[i].d) * quants_f16_to_f32(y[i].d));
    }
    return sum;
}

float quants_dot_q4_0_ref(int n, const void *w, const void *a) {
    const block_q4_0 *x = w;
    const block_q8_0 *y = a;
    float sum = 0;
    for (int i = 0; i < n / QK4_0; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((x[i].qs[j] & 15) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        }
        sum += (float)sumi * (quants_f16_to_f32(x[i].d) * quants_f16_to_f32(y[i].d));
    }
    return sum;
}

float quants_dot_q5_0_ref(int n, const void *w, const void *a) {
    const block_q5_0 *x = w;
    const block_q8_0 *y = a;
    float sum = 0;
    for (int i = 0; i < n / QK5_0; i++) {
        uint32_t qh = load_u32(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (x[i].qs[j] & 15) | ((qh >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            sumi += (q0 - 16) * y[i].qs[j] + (q1 - 16) * y[i].qs[j + 16];
        }
        sum += (float)sumi * (quants_f16_to_f32(x[i].d) * quants_f16_to_f32(y[i].d));
    }
    return sum;
}

/* sum_j (q_j*dx + m)(y_j*dy) = dx*dy*sum(q*y) + m*s, with s = dy*sum(y) from Q8_1. */
float quants_dot_q4_1_ref(int n, const void *w, const void *a) {
    const block_q4_1 *x = w;
    const block_q8_1 *y = a;
    /* The d-terms and the m-terms are summed apart, as the GGUF ecosystem's
     * kernels do: the order changes the float rounding of the result. */
    float sumd = 0, summ = 0;
    for (int i = 0; i < n / QK4_1; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += (x[i].qs[j] & 15) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        sumd += (float)sumi * (quants_f16_to_f32(x[i].d) * quants_f16_to_f32(y[i].d));
        summ += quants_f16_to_f32(x[i].m) * quants_f16_to_f32(y[i].s);
    }
    return sumd + summ;
}

float quants_dot_q5_1_ref(int n, const void *w, const void *a) {
    const block_q5_1 *x = w;
    const block_q8_1 *y = a;
    /* The d-terms and the m-terms are summed apart, as the GGUF ecosystem's
     * kernels do: the order changes the float rounding of the result. */
    float sumd = 0, summ = 0;
    for (int i = 0; i < n / QK5_1; i++) {
        uint32_t qh = load_u32(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (x[i].qs[j] & 15) | ((qh >> j) & 1) << 4;
            int q1 = (x[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            sumi += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
        }
        sumd += (float)sumi * (quants_f16_to_f32(x[i].d) * quants_f16_to_f32(y[i].d));
        summ += quants_f16_to_f32(x[i].m) * quants_f16_to_f32(y[i].s);
    }
    return sumd + summ;
}

/* ============================================== K-quants: unpacking helpers
 * Each helper turns one super-block into plain integers: q[256] (the stored
 * quant, before any offset) and per-sub-block scales / mins. Dequantize and
 * dot both build on them, so the bit layout lives in one place. */

/* Q4_K / Q5_K: 6-bit scale and min of sub-block j (0..7) from the 12 bytes. */
static void k4_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

/* Q2_K and Q3_K share the 2-bit layout: elem 128n + 32s + l in bits 2s of qs[32n + l]. */
static void unpack_2bit(const uint8_t *qs, int q[QK_K]) {
    for (int e = 0; e < QK_K; e++) {
        int n = e / 128, s = (e % 128) / 32, l = e % 32;
        q[e] = (qs[32 * n + l] >> (2 * s)) & 3;
    }
}

static void unpack_q2_K(const block_q2_K *b, int q[QK_K], int sc[16], int mn[16]) {
    unpack_2bit(b->qs, q);
    for (int j = 0; j < 16; j++) {
        sc[j] = b->scales[j] & 15;
        mn[j] = b->scales[j] >> 4;
    }
}

/* q in -4..3, sc already minus 32 (-32..31). */
static void unpack_q3_K(const block_q3_K *b, int q[QK_K], int sc[16]) {
    unpack_2bit(b->qs, q);
    for (int e = 0; e < QK_K; e++)
        if (!((b->hmask[e % 32] >> (e / 32)) & 1)) q[e] -= 4;
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? b->scales[j] & 15 : b->scales[j - 8] >> 4;
        int hi = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | hi << 4) - 32;
    }
}

static void unpack_q4_K(const block_q4_K *b, int q[QK_K], int sc[8], int mn[8]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = b->qs[32 * c + l] & 15;
            q[64 * c + 32 + l] = b->qs[32 * c + l] >> 4;
        }
    for (int j = 0; j < 8; j++) k4_scale_min(b->scales, j, &sc[j], &mn[j]);
}

static void unpack_q5_K(const block_q5_K *b, int q[QK_K], int sc[8], int mn[8]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = (b->qs[32 * c + l] & 15) | ((b->qh[l] >> (2 * c)) & 1) << 4;
            q[64 * c + 32 + l] = (b->qs[32 * c + l] >> 4) | ((b->qh[l] >> (2 * c + 1)) & 1) << 4;
        }
    for (int j = 0; j < 8; j++) k4_scale_min(b->scales, j, &sc[j], &mn[j]);
}

/* q in -32..31. */
static void unpack_q6_K(const block_q6_K *b, int q[QK_K]) {
    for (int e = 0; e < QK_K; e++) {
        int n = e / 128, k = (e % 128) / 32, l = e % 32;
        uint8_t lo = b->ql[64 * n + 32 * (k & 1) + l];
        int low4 = k < 2 ? lo & 15 : lo >> 4;
        int high2 = (b->qh[32 * n + l] >> (2 * k)) & 3;
        q[e] = (low4 | high2 << 4) - 32;
    }
}

/* ======================================================= K-quants: dequantize */

void quants_dequant_q2_K_ref(const void *src, float *dst, int64_t n) {
    const block_q2_K *b = src;
    int q[QK_K], sc[16], mn[16];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = quants_f16_to_f32(b[i].d), dmin = quants_f16_to_f32(b[i].dmin);
        unpack_q2_K(&b[i], q, sc, mn);
        for (int e = 0; e < QK_K; e++) {
            float dl = d * sc[e / 16], ml = dmin * mn[e / 16];
            dst[e] = dl * q[e] - ml;
        }
    }
}

void quants_dequant_q3_K_ref(const void *src, float *dst, int64_t n) {
    const block_q3_K *b = src;
    int q[QK_K], sc[16];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = quants_f16_to_f32(b[i].d);
        unpack_q3_K(&b[i], q, sc);
        for (int e = 0; e < QK_K; e++) dst[e] = (d * sc[e / 16]) * q[e];
    }
}

void quants_dequant_q4_K_ref(const void *src, float *dst, int64_t n) {
    const block_q4_K *b = src;
    int q[QK_K], sc[8], mn[8];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = quants_f16_to_f32(b[i].d), dmin = quants_f16_to_f32(b[i].dmin);
        unpack_q4_K(&b[i], q, sc, mn);
        for (int e = 0; e < QK_K; e++) {
            float dl = d * sc[e / 32], ml = dmin * mn[e / 32];
            dst[e] = dl * q[e] - ml;
        }
    }
}

void quants_dequant_q5_K_ref(const void *src, float *dst, int64_t n) {
    const block_q5_K *b = src;
    int q[QK_K], sc[8], mn[8];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = quants_f16_to_f32(b[i].d), dmin = quants_f16_to_f32(b[i].dmin);
        unpack_q5_K(&b[i], q, sc, mn);
        for (int e = 0; e < QK_K; e++) {
            float dl = d * sc[e / 32], ml = dmin * mn[e / 32];
            dst[e] = dl * q[e] - ml;
        }
    }
}

void quants_dequant_q6_K_ref(const void *src, float *dst, int64_t n) {
    const block_q6_K *b = src;
    int q[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = quants_f16_to_f32(b[i].d);
        unpack_q6_K(&b[i], q);
        for (int e = 0; e < QK_K; e++) dst[e] = d * b[i].scales[e / 16] * q[e];
    }
}

void quants_dequant_q8_K_ref(const void *src, float *dst, int64_t n) {
    const block_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K)
        for (int e = 0; e < QK_K; e++) dst[e] = b[i].d * b[i].qs[e];
}

/* ============================================================ K-quants: dots
 * Against Q8_K activations (x = dy*qy). Within a super-block everything is
 * integer: sum over sub-blocks of scale * sum(q*qy), and for the types with a
 * min, sum of min * (sum of qy over the sub-block), read from bsums. */

/* Sum of qy over 32-element sub-block j, from the 16-element bsums. */
static int bsum32(const block_q8_K *y, int j) {
    return y->bsums[2 * j] + y->bsums[2 * j + 1];
}

float quants_dot_q2_K_ref(int n, const void *w, const void *a) {
    const block_q2_K *x = w;
    const block_q8_K *y = a;
    int q[QK_K], sc[16], mn[16];
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        unpack_q2_K(&x[i], q, sc, mn);
        int sumi = 0, summ = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * j + l] * y[i].qs[16 * j + l];
            sumi += sc[j] * s;
            summ += mn[j] * y[i].bsums[j];
        }
        float d = y[i].d * quants_f16_to_f32(x[i].d);
        float dmin = y[i].d * quants_f16_to_f32(x[i].dmin);
        sum += d * (float)sumi - dmin * (float)summ;
    }
    return sum;
}

float quants_dot_q3_K_ref(int n, const void *w, const void *a) {
    const block_q3_K *x = w;
    const block_q8_K *y = a;
    int q[QK_K], sc[16];
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        unpack_q3_K(&x[i], q, sc);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * j + l] * y[i].qs[16 * j + l];
            sumi += sc[j] * s;
        }
        sum += y[i].d * quants_f16_to_f32(x[i].d) * (float)sumi;
    }
    return sum;
}

static float dot_k4_common(const int q[QK_K], const int sc[8], const int mn[8], uint16_t xd,
                           uint16_t xdmin, const block_q8_K *y) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; j++) {
        int s = 0;
        for (int l = 0; l < 32; l++) s += q[32 * j + l] * y->qs[32 * j + l];
        sumi += sc[j] * s;
        summ += mn[j] * bsum32(y, j);
    }
    float d = y->d * quants_f16_to_f32(xd);
    float dmin = y->d * quants_f16_to_f32(xdmin);
    return d * (float)sumi - dmin * (float)summ;
}

float quants_dot_q4_K_ref(int n, const void *w, const void *a) {
    const block_q4_K *x = w;
    const block_q8_K *y = a;
    int q[QK_K], sc[8], mn[8];
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        unpack_q4_K(&x[i], q, sc, mn);
        sum += dot_k4_common(q, sc, mn, x[i].d, x[i].dmin, &y[i]);
    }
    return sum;
}

float quants_dot_q5_K_ref(int n, const void *w, const void *a) {
    const block_q5_K *x = w;
    const block_q8_K *y = a;
    int q[QK_K], sc[8], mn[8];
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        unpack_q5_K(&x[i], q, sc, mn);
        sum += dot_k4_common(q, sc, mn, x[i].d, x[i].dmin, &y[i]);
    }
    return sum;
}

float quants_dot_q6_K_ref(int n, const void *w, const void *a) {
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    int q[QK_K];
    float sum = 0;
    for (int i = 0; i < n / QK_K; i++) {
        unpack_q6_K(&x[i], q);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * j + l] * y[i].qs[16 * j + l];
            sumi += x[i].scales[j] * s;
        }
        sum += y[i].d * quants_f16_to_f32(x[i].d) * (float)sumi;
    }
    return sum;
}

/* ====================================================== K-quants: quantize */

/* Activations for K-quant rows: one float scale per 256, the element of
 * largest magnitude maps to +-127, plus the 16-element sums the dots need. */
void quants_quant_q8_K_ref(const float *src, void *dst, int64_t n) {
    block_q8_K *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float amax = absmax(src, QK_K);
        if (amax == 0 || amax != amax) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = 127.f / amax;
        for (int e = 0; e < QK_K; e++) b[i].qs[e] = (int8_t)MIN(127, MAX(-127, nearest_int(iscale * src[e])));
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += b[i].qs[16 * j + l];
            b[i].bsums[j] = (int16_t)s;
        }
        b[i].d = 1 / iscale;
    }
}

/* Fit x ~ scale*L - min with L in 0..nmax (min >= 0), minimizing the weighted
 * squared (or absolute, use_mad) error: start from the min/max grid, then try
 * nstep+1 slightly different grids and, for each, solve the 2x2 least-squares
 * problem for (scale, min) given the rounded L. Returns scale; *out_min = min. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *out_min, float rmin, float rdelta, int nstep, int use_mad) {
    float lo = x[0], hi = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        lo = MIN(lo, x[i]);
        hi = MAX(hi, x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *out_min = -lo;
        return 0;
    }
    float iscale = nmax / (hi - lo), scale = 1 / iscale, best_err = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)MAX(0, MIN(nmax, nearest_int(iscale * (x[i] - lo))));
        float diff = scale * L[i] + lo - x[i];
        best_err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    uint8_t Laux[32];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (hi - lo);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = MAX(0, MIN(nmax, nearest_int(iscale * (x[i] - lo))));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det <= 0) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
        }
        if (err < best_err) {
            memcpy(L, Laux, (size_t)n);
            best_err = err;
            scale = this_scale;
            lo = this_min;
        }
    }
    *out_min = -lo;
    return scale;
}

/* Symmetric fit x ~ scale*(L - nmax), L in 0..2*nmax-1, weights x^2: the
 * largest-magnitude element maps to -nmax, then 18 nearby grids are tried and
 * the one with the best weighted least-squares scale is kept. */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = MAX(-nmax, MIN(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = MAX(-nmax, MIN(nmax - 1, nearest_int(iscale * x[i])));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + MAX(-nmax, MIN(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Symmetric 3-bit fit: round on the max grid, then up to 5 passes that move
 * single elements to the level that improves the x^2-weighted fit. Returns the
 * scale; L holds l + nmax. */
static float fit_scale_q3(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float iscale = -nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = MAX(-nmax, MIN(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx <= 0) continue;
            float sl2 = suml2 - w * L[i] * L[i];
            int nl = MAX(-nmax, MIN(nmax - 1, nearest_int(x[i] * sl2 / slx)));
            if (nl == L[i]) continue;
            slx += w * x[i] * nl;
            sl2 += w * nl * nl;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (int8_t)nl;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0 ? sumlx / suml2 : 0;
}

/* Pack the 2-bit values L[256] into the shared Q2_K / Q3_K layout. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int n = 0; n < 2; n++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * n + l;
            qs[32 * n + l] = (uint8_t)(p[0] | p[32] << 2 | p[64] << 4 | p[96] << 6);
        }
}

void quants_quant_q2_K_ref(const float *src, void *dst, int64_t n) {
    block_q2_K *b = dst;
    uint8_t L[QK_K];
    float w[16], scales[16], mins[16];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(src[16 * j + l]);
            scales[j] = fit_scale_min(16, 3, src + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, 1);
            max_scale = MAX(max_scale, scales[j]);
            max_min = MAX(max_min, mins[j]);
        }
        memset(b[i].scales, 0, sizeof b[i].scales);
        b[i].d = b[i].dmin = 0;
        if (max_scale > 0) {
            float is = 15.f / max_scale;
            for (int j = 0; j < 16; j++) b[i].scales[j] = (uint8_t)MAX(0, MIN(15, nearest_int(is * scales[j])));
            b[i].d = quants_f32_to_f16(max_scale / 15.f);
        }
        if (max_min > 0) {
            float is = 15.f / max_min;
            for (int j = 0; j < 16; j++) b[i].scales[j] |= (uint8_t)(MAX(0, MIN(15, nearest_int(is * mins[j]))) << 4);
            b[i].dmin = quants_f32_to_f16(max_min / 15.f);
        }
        /* requantize against the stored (rounded) scales */
        for (int j = 0; j < 16; j++) {
            float d = quants_f16_to_f32(b[i].d) * (b[i].scales[j] & 15);
            if (d == 0) continue;
            float dm = quants_f16_to_f32(b[i].dmin) * (b[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)MAX(0, MIN(3, nearest_int((src[16 * j + l] + dm) / d)));
        }
        pack_2bit(L, b[i].qs);
    }
}

void quants_quant_q3_K_ref(const float *src, void *dst, int64_t n) {
    block_q3_K *b = dst;
    int8_t L[QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float amax = 0, max_scale = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_scale_q3(16, 4, src + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(b[i].scales, 0, sizeof b[i].scales);
        b[i].d = 0;
        if (max_scale != 0) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++) {
                int l = MAX(-32, MIN(31, nearest_int(iscale * scales[j]))) + 32;
                if (j < 8) b[i].scales[j] = (uint8_t)(l & 15);
                else b[i].scales[j - 8] |= (uint8_t)((l & 15) << 4);
                b[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            b[i].d = quants_f32_to_f16(1 / iscale);
        }
        for (int j = 0; j < 16; j++) {
            int lo = j < 8 ? b[i].scales[j] & 15 : b[i].scales[j - 8] >> 4;
            int sc = (lo | ((b[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
            float d = quants_f16_to_f32(b[i].d) * sc;
            if (d == 0) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(MAX(-4, MIN(3, nearest_int(src[16 * j + l] / d))) + 4);
        }
        /* high bit of element e goes to bit e/32 of hmask[e%32] */
        uint8_t L2[QK_K];
        memset(b[i].hmask, 0, sizeof b[i].hmask);
        for (int e = 0; e < QK_K; e++) {
            int l = L[e];
            if (l > 3) {
                b[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
                l -= 4;
            }
            L2[e] = (uint8_t)l;
        }
        pack_2bit(L2, b[i].qs);
    }
}

/* Q4_K / Q5_K: 8 sub-blocks of 32, each fitted as scale*L - min, then the 8
 * scales and 8 mins quantized to 6 bits against d and dmin. */
static void quant_k4_common(const float *x, int nmax, float rmin, float rdelta, int nstep,
                            uint16_t *d_out, uint16_t *dmin_out, uint8_t s12[12], uint8_t L[QK_K]) {
    float w[32], scales[8], mins[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], rmin, rdelta, nstep, 0);
        max_scale = MAX(max_scale, scales[j]);
        max_min = MAX(max_min, mins[j]);
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0, inv_min = max_min > 0 ? 63.f / max_min : 0;
    memset(s12, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = MAX(0, MIN(63, nearest_int(inv_scale * scales[j])));
        int lm = MAX(0, MIN(63, nearest_int(inv_min * mins[j])));
        if (j < 4) {
            s12[j] = (uint8_t)ls;
            s12[j + 4] = (uint8_t)lm;
        } else {
            s12[j + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
            s12[j - 4] |= (uint8_t)((ls >> 4) << 6);
            s12[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = quants_f32_to_f16(max_scale / 63.f);
    *dmin_out = quants_f32_to_f16(max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_scale_min(s12, j, &sc, &m);
        float d = quants_f16_to_f32(*d_out) * sc;
        if (d == 0) continue;
        float dm = quants_f16_to_f32(*dmin_out) * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)MAX(0, MIN(nmax, nearest_int((x[32 * j + l] + dm) / d)));
    }
}

void quants_quant_q4_K_ref(const float *src, void *dst, int64_t n) {
    block_q4_K *b = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        quant_k4_common(src, 15, -1.f, 0.1f, 20, &b[i].d, &b[i].dmin, b[i].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | L[64 * c + 32 + l] << 4);
    }
}

void quants_quant_q5_K_ref(const float *src, void *dst, int64_t n) {
    block_q5_K *b = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        quant_k4_common(src, 31, -0.5f, 0.1f, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                b[i].qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
                b[i].qs[32 * c + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            }
    }
}

void quants_quant_q6_K_ref(const float *src, void *dst, int64_t n) {
    block_q6_K *b = dst;
    int8_t L[QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float max_scale = 0, max_abs = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_scale_sym(16, 32, src + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(&b[i], 0, sizeof b[i]);
        if (max_abs < 1e-15f) continue;
        float iscale = -128.f / max_scale;
        b[i].d = quants_f32_to_f16(1 / iscale);
        for (int j = 0; j < 16; j++) b[i].scales[j] = (int8_t)MAX(-128, MIN(127, nearest_int(iscale * scales[j])));
        for (int j = 0; j < 16; j++) {
            float d = quants_f16_to_f32(b[i].d) * b[i].scales[j];
            if (d == 0) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(MAX(-32, MIN(31, nearest_int(src[16 * j + l] / d))) + 32);
        }
        /* elem 128n + 32k + l: low nibble into ql[64n + 32(k&1) + l] (k<2 low
         * half of the byte, k>=2 high half), top 2 bits into qh[32n + l] bits 2k */
        for (int e = 0; e < QK_K; e++) {
            int nn = e / 128, k = (e % 128) / 32, l = e % 32, q = L[e];
            b[i].ql[64 * nn + 32 * (k & 1) + l] |= (uint8_t)((q & 15) << (k < 2 ? 0 : 4));
            b[i].qh[32 * nn + l] |= (uint8_t)((q >> 4) << (2 * k));
        }
    }
}
