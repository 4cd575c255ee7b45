/* kernels.c - kernel tables per tensor type (reference and AVX2), the choice
 * between them at start, and the matvec / matmul loops built on vec_dot.
 *
 * Data: two static tables indexed by tensor_type id, kern_tab[KERN_REF] and
 * kern_tab[KERN_AVX2]; `active` points at one of them. */
#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/log.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/quants.h"
#include "engine/tensor_types.h"

#define ROW(t, be, bb, act, dot, deq, q) [t] = {t, be, bb, act, dot, deq, q, NULL, NULL}
#define ROW4(t, be, bb, act, dot, deq, q, dot4) [t] = {t, be, bb, act, dot, deq, q, dot4, NULL}
#define ROWG(t, be, bb, act, dot, deq, q, gemm) [t] = {t, be, bb, act, dot, deq, q, NULL, gemm}

static const kern_type_traits kern_tab[KERN__COUNT][TT__MAX] = {
    [KERN_REF] = {
        ROW(TT_F32, 1, 4, TT_F32, quants_dot_f32_ref, quants_dequant_f32_ref, quants_quant_f32_ref),
        ROW(TT_F16, 1, 2, TT_F32, quants_dot_f16_ref, quants_dequant_f16_ref, quants_quant_f16_ref),
        ROW(TT_BF16, 1, 2, TT_F32, quants_dot_bf16_ref, quants_dequant_bf16_ref, quants_quant_bf16_ref),
        ROW(TT_Q4_0, 32, 18, TT_Q8_0, quants_dot_q4_0_ref, quants_dequant_q4_0_ref, quants_quant_q4_0_ref),
        ROW(TT_Q4_1, 32, 20, TT_Q8_1, quants_dot_q4_1_ref, quants_dequant_q4_1_ref, quants_quant_q4_1_ref),
        ROW(TT_Q5_0, 32, 22, TT_Q8_0, quants_dot_q5_0_ref, quants_dequant_q5_0_ref, quants_quant_q5_0_ref),
        ROW(TT_Q5_1, 32, 24, TT_Q8_1, quants_dot_q5_1_ref, quants_dequant_q5_1_ref, quants_quant_q5_1_ref),
        ROW(TT_Q8_0, 32, 34, TT_Q8_0, quants_dot_q8_0_ref, quants_dequant_q8_0_ref, quants_quant_q8_0_ref),
        ROW(TT_Q8_1, 32, 36, -1, NULL, quants_dequant_q8_1_ref, quants_quant_q8_1_ref),
        ROW(TT_Q2_K, 256, 84, TT_Q8_K, quants_dot_q2_K_ref, quants_dequant_q2_K_ref, quants_quant_q2_K_ref),
        ROW(TT_Q3_K, 256, 110, TT_Q8_K, quants_dot_q3_K_ref, quants_dequant_q3_K_ref, quants_quant_q3_K_ref),
        ROW(TT_Q4_K, 256, 144, TT_Q8_K, quants_dot_q4_K_ref, quants_dequant_q4_K_ref, quants_quant_q4_K_ref),
        ROW(TT_Q5_K, 256, 176, TT_Q8_K, quants_dot_q5_K_ref, quants_dequant_q5_K_ref, quants_quant_q5_K_ref),
        ROW(TT_Q6_K, 256, 210, TT_Q8_K, quants_dot_q6_K_ref, quants_dequant_q6_K_ref, quants_quant_q6_K_ref),
        ROW(TT_Q8_K, 256, 292, -1, NULL, quants_dequant_q8_K_ref, quants_quant_q8_K_ref),
    },
    /* Dequantizers and weight quantizers are not on the hot path (embedding
     * lookups, tests, tools): the AVX2 table reuses the references for those. */
    [KERN_AVX2] = {
        ROWG(TT_F32, 1, 4, TT_F32, quants_dot_f32_avx2, quants_dequant_f32_ref, quants_quant_f32_ref, quants_gemm_f32_avx2),
        ROWG(TT_F16, 1, 2, TT_F32, quants_dot_f16_avx2, quants_dequant_f16_avx2, quants_quant_f16_avx2, quants_gemm_f16_avx2),
        ROWG(TT_BF16, 1, 2, TT_F32, quants_dot_bf16_avx2, quants_dequant_bf16_avx2, quants_quant_bf16_ref, quants_gemm_bf16_avx2),
        ROWG(TT_Q4_0, 32, 18, TT_Q8_0, quants_dot_q4_0_avx2, quants_dequant_q4_0_ref, quants_quant_q4_0_ref, quants_gemm_q4_0_avx2),
        ROW(TT_Q4_1, 32, 20, TT_Q8_1, quants_dot_q4_1_avx2, quants_dequant_q4_1_ref, quants_quant_q4_1_ref),
        ROWG(TT_Q5_0, 32, 22, TT_Q8_0, quants_dot_q5_0_avx2, quants_dequant_q5_0_ref, quants_quant_q5_0_ref, quants_gemm_q5_0_avx2),
        ROW(TT_Q5_1, 32, 24, TT_Q8_1, quants_dot_q5_1_avx2, quants_dequant_q5_1_ref, quants_quant_q5_1_ref),
        ROWG(TT_Q8_0, 32, 34, TT_Q8_0, quants_dot_q8_0_avx2, quants_dequant_q8_0_ref, quants_quant_q8_0_avx2, quants_gemm_q8_0_avx2),
        ROW(TT_Q8_1, 32, 36, -1, NULL, quants_dequant_q8_1_ref, quants_quant_q8_1_avx2),
        ROW(TT_Q2_K, 256, 84, TT_Q8_K, quants_dot_q2_K_avx2, quants_dequant_q2_K_ref, quants_quant_q2_K_ref),
        ROW(TT_Q3_K, 256, 110, TT_Q8_K, quants_dot_q3_K_avx2, quants_dequant_q3_K_ref, quants_quant_q3_K_ref),
        ROW4(TT_Q4_K, 256, 144, TT_Q8_K, quants_dot_q4_K_avx2, quants_dequant_q4_K_ref, quants_quant_q4_K_ref, quants_dot4_q4_K_avx2),
        ROW4(TT_Q5_K, 256, 176, TT_Q8_K, quants_dot_q5_K_avx2, quants_dequant_q5_K_ref, quants_quant_q5_K_ref, quants_dot4_q5_K_avx2),
        ROW4(TT_Q6_K, 256, 210, TT_Q8_K, quants_dot_q6_K_avx2, quants_dequant_q6_K_ref, quants_quant_q6_K_ref, quants_dot4_q6_K_avx2),
        ROW(TT_Q8_K, 256, 292, -1, NULL, quants_dequant_q8_K_ref, quants_quant_q8_K_avx2),
    },
};

static const kern_type_traits *active = kern_tab[KERN_REF];
static kern_impl active_impl = KERN_REF;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

/* CPUID: leaf 1 ECX bit 12 FMA, 27 OSXSAVE, 29 F16C; leaf 7 EBX bit 5 AVX2;
 * and the OS must save YMM state (XCR0 bits 1 and 2). */
bool kern_cpu_has_avx2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    bool fma = c >> 12 & 1, osxsave = c >> 27 & 1, f16c = c >> 29 & 1;
    if (!fma || !osxsave || !f16c) return false;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 6) != 6) return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return b >> 5 & 1;
}

const char *kern_impl_name(kern_impl impl) {
    return impl == KERN_AVX2 ? "avx2" : "ref";
}

static int select_impl(const char *spec) {
    int rc = 0;
    kern_impl want = kern_cpu_has_avx2() ? KERN_AVX2 : KERN_REF;
    if (spec && *spec && strcasecmp(spec, "auto") != 0) {
        if (!strcasecmp(spec, "ref")) {
            want = KERN_REF;
        } else if (!strcasecmp(spec, "avx2")) {
            if (want != KERN_AVX2) {
                log_warn("kernels: SIMPLETON_KERNELS=avx2 but this CPU lacks AVX2/FMA/F16C; using ref");
                rc = -SMP_E_VALIDATION;
            }
        } else {
            log_warn("kernels: unknown SIMPLETON_KERNELS value '%s' (ref, avx2, auto); using auto", spec);
            rc = -SMP_E_VALIDATION;
        }
    }
    active_impl = want;
    active = kern_tab[want];
    return rc;
}

static void init_from_env(void) {
    init_rc = select_impl(getenv("SIMPLETON_KERNELS"));
}

int kern_init(void) {
    pthread_once(&init_once, init_from_env);
    return init_rc;
}

int kern_select(const char *spec) {
    kern_init(); /* so a later first kern_init() cannot undo this choice */
    return select_impl(spec);
}

kern_impl kern_active(void) {
    kern_init();
    return active_impl;
}

const kern_type_traits *kern_traits_impl(int type, kern_impl impl) {
    if (type < 0 || type >= TT__MAX || (unsigned)impl >= KERN__COUNT) return NULL;
    const kern_type_traits *t = &kern_tab[impl][type];
    return t->dequantize ? t : NULL;
}

const kern_type_traits *kern_traits(int type) {
    kern_init();
    if (type < 0 || type >= TT__MAX) return NULL;
    return active[type].dequantize ? &active[type] : NULL;
}

size_t kern_row_bytes(int type, int64_t n) {
    size_t be = tt_block_elems(type);
    if (!be || n < 0 || n % (int64_t)be) return 0;
    return (size_t)n / be * tt_block_bytes(type);
}

size_t kern_act_bytes(int wtype, int cols) {
    const kern_type_traits *t = kern_traits(wtype);
    if (!t || t->act_type < 0) return 0;
    return kern_row_bytes(t->act_type, cols);
}

void kern_quantize_act(int wtype, const float *x, int cols, void *act) {
    const kern_type_traits *t = kern_traits(wtype);
    SMP_ASSERT(t && t->act_type >= 0);
    active[t->act_type].quantize(x, act, cols);
}

static const kern_type_traits *weight_traits(int wtype, int cols) {
    const kern_type_traits *t = kern_traits(wtype);
    SMP_ASSERT(t && t->vec_dot && cols % t->blck_elems == 0);
    return t;
}

void kern_matvec_q(int wtype, const void *W, int cols, const void *act, float *y, int r0, int r1) {
    const kern_type_traits *t = weight_traits(wtype, cols);
    size_t rb = (size_t)cols / t->blck_elems * t->blck_bytes;
    const char *w = W;
    if (t->gemm) {
        t->gemm(cols, w + (size_t)r0 * rb, rb, r1 - r0, act, 0, 1, y + r0, 0);
        return;
    }
    for (int r = r0; r < r1; r++) y[r] = t->vec_dot(cols, w + (size_t)r * rb, act);
}

/* Rows per tile: 16 rows of a 4096-wide Q4_K matrix are 36 KiB, about L1. */
#define KERN_TILE_ROWS 16

void kern_matmul_q(int wtype, const void *W, int cols, const void *act, int ntok, float *Y, int ldy,
                   int r0, int r1) {
    const kern_type_traits *t = weight_traits(wtype, cols);
    size_t rb = (size_t)cols / t->blck_elems * t->blck_bytes;
    size_t ab = kern_row_bytes(t->act_type, cols);
    const char *w = W, *a = act;
    if (t->gemm) {
        if (r1 > r0 && ntok > 0) t->gemm(cols, w + (size_t)r0 * rb, rb, r1 - r0, a, ab, ntok, Y + r0, (size_t)ldy);
        return;
    }
    for (int rt = r0; rt < r1; rt += KERN_TILE_ROWS) {
        int rend = rt + KERN_TILE_ROWS < r1 ? rt + KERN_TILE_ROWS : r1;
        int tok = 0;
        if (t->vec_dot4)
            for (; tok + 4 <= ntok; tok += 4) {
                float *yt = Y + (size_t)tok * ldy, out[4];
                for (int r = rt; r < rend; r++) {
                    t->vec_dot4(cols, w + (size_t)r * rb, a + (size_t)tok * ab, ab, out);
                    for (int k = 0; k < 4; k++) yt[(size_t)k * ldy + r] = out[k];
                }
            }
        /* The tokens left (all of them without dot4): each weight row meets
         * every one of them at once. Measured on Q4_K / Q6_K with 2 and 3
         * tokens, this is ~20% faster than taking them one at a time over
         * the tile, and faster per token than kern_matvec_q. */
        for (int r = rt; r < rend && tok < ntok; r++) {
            const char *wr = w + (size_t)r * rb;
            for (int k = tok; k < ntok; k++) Y[(size_t)k * ldy + r] = t->vec_dot(cols, wr, a + (size_t)k * ab);
        }
    }
}

/* Activation rows up to this size are converted on the stack. */
#define KERN_STACK_ACT 16384

int kern_matvec(int wtype, const void *W, int cols, const float *x, float *y, int r0, int r1) {
    const kern_type_traits *t = weight_traits(wtype, cols);
    if (t->act_type == TT_F32) {
        kern_matvec_q(wtype, W, cols, x, y, r0, r1);
        return 0;
    }
    _Alignas(32) char stack[KERN_STACK_ACT];
    size_t ab = kern_row_bytes(t->act_type, cols);
    void *act = ab <= sizeof stack ? stack : smp_malloc(ab);
    if (!act) return -SMP_E_NOMEM;
    active[t->act_type].quantize(x, act, cols);
    kern_matvec_q(wtype, W, cols, act, y, r0, r1);
    if (act != stack) smp_free(act);
    return 0;
}

int kern_matmul(int wtype, const void *W, int cols, const float *X, int ntok, float *Y, int ldy, int r0, int r1) {
    const kern_type_traits *t = weight_traits(wtype, cols);
    if (ntok <= 0) return 0;
    if (t->act_type == TT_F32) {
        kern_matmul_q(wtype, W, cols, X, ntok, Y, ldy, r0, r1);
        return 0;
    }
    _Alignas(32) char stack[KERN_STACK_ACT];
    size_t ab = kern_row_bytes(t->act_type, cols);
    void *act = ab * (size_t)ntok <= sizeof stack ? stack : smp_malloc(ab * (size_t)ntok);
    if (!act) return -SMP_E_NOMEM;
    for (int tok = 0; tok < ntok; tok++)
        active[t->act_type].quantize(X + (size_t)tok * cols, (char *)act + (size_t)tok * ab, cols);
    kern_matmul_q(wtype, W, cols, act, ntok, Y, ldy, r0, r1);
    if (act != stack) smp_free(act);
    return 0;
}

void kern_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n) {
    kern_init();
    active[TT_F16].dequantize(src, dst, n);
}

void kern_f32_to_f16_row(const float *src, uint16_t *dst, int64_t n) {
    kern_init();
    active[TT_F16].quantize(src, dst, n);
}
