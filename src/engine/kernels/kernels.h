/* kernels.h - the engine's arithmetic entry point: per-type kernel tables,
 * chosen once at start, and the matrix-vector / matrix-matrix helpers the
 * model code calls.
 *
 * Two implementations exist for every kernel: the scalar reference
 * (quants_ref.c) and AVX2+FMA+F16C (quants_avx2.c). kern_init() picks AVX2 when
 * the CPU has all three features, unless SIMPLETON_KERNELS=ref forces the
 * reference (SIMPLETON_KERNELS=avx2 insists on AVX2, auto is the default).
 *
 * A weight row of `cols` elements is multiplied with an activation row that was
 * first converted to the weight type's activation type (kern_type_traits.act_type):
 *   F32, F16, BF16 weights   -> F32 activations (no conversion; F16/BF16 weights
 *                               are widened on the fly, activations keep full precision)
 *   Q4_0, Q5_0, Q8_0         -> Q8_0 (32-element blocks, fp16 scale)
 *   Q4_1, Q5_1               -> Q8_1 (Q8_0 plus the block sum, for the weights' offset)
 *   Q2_K .. Q6_K             -> Q8_K (256-element blocks, float scale, 16-element sums)
 * Convert once per activation row (kern_quantize_act), then run any number of
 * weight rows against it: that is how the fast path works and where the
 * integer arithmetic comes from.
 *
 * Matrices are row-major, as stored in GGUF: row r of W starts at
 * W + r * kern_row_bytes(type, cols). Row ranges [r0, r1) let a thread pool
 * split one product; the kernels themselves never start threads and write only
 * y[r0..r1). */
#ifndef SMP_KERNELS_H
#define SMP_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { KERN_REF = 0, KERN_AVX2 = 1, KERN__COUNT } kern_impl;

typedef float (*kern_dot_fn)(int n, const void *w, const void *act);
/* one weight row against 4 activation rows act_stride bytes apart; out[t]
 * equals vec_dot(n, w, act + t*act_stride) bit for bit */
typedef void (*kern_dot4_fn)(int n, const void *w, const void *act, size_t act_stride, float out[4]);
/* nrows weight rows (w_stride bytes apart) against ntok activation rows
 * (act_stride bytes apart): y[t*ldy + r] equals vec_dot(n, w + r*w_stride,
 * act + t*act_stride) bit for bit; the kernel groups rows and tokens itself */
typedef void (*kern_gemm_fn)(int n, const void *w, size_t w_stride, int nrows, const void *act, size_t act_stride,
                             int ntok, float *y, size_t ldy);
typedef void (*kern_dequant_fn)(const void *src, float *dst, int64_t n);
typedef void (*kern_quant_fn)(const float *src, void *dst, int64_t n);

typedef struct {
    int type;                  /* tensor_type id (tensor_types.h) */
    int blck_elems, blck_bytes;
    int act_type;              /* activation type vec_dot wants; -1 if not a weight type */
    kern_dot_fn vec_dot;       /* NULL for Q8_1 / Q8_K (activation-only types) */
    kern_dequant_fn dequantize;
    kern_quant_fn quantize;    /* NULL where no quantizer exists */
    kern_dot4_fn vec_dot4;     /* optional (NULL: matmul calls vec_dot per token) */
    kern_gemm_fn gemm;         /* optional; when set, matvec and matmul use only it */
} kern_type_traits;

/* Select the implementation (CPU features + SIMPLETON_KERNELS). Idempotent and
 * thread-safe; every function below calls it on first use. Returns 0, or
 * -SMP_E_VALIDATION if SIMPLETON_KERNELS is unknown or asks for AVX2 on a CPU
 * without it (the reference is used then, with a warning in the log). */
int kern_init(void);
/* Switch implementation explicitly: "ref", "avx2" or "auto" (NULL = "auto").
 * For start-up and tests only: not safe while other threads run kernels. */
int kern_select(const char *spec);
kern_impl kern_active(void);
const char *kern_impl_name(kern_impl impl);
bool kern_cpu_has_avx2(void); /* avx2 && fma && f16c */

/* Kernel table of a type for the active implementation, or for a given one
 * (tests compare both). NULL for an unknown type id; the tables are static. */
const kern_type_traits *kern_traits(int type);
const kern_type_traits *kern_traits_impl(int type, kern_impl impl);

/* Bytes of n elements of type; 0 if the type is unknown or n is not a multiple
 * of its block size. */
size_t kern_row_bytes(int type, int64_t n);
/* Bytes of one converted activation row for weight rows of `cols` elements. */
size_t kern_act_bytes(int wtype, int cols);
/* Convert x[cols] to wtype's activation type into act (kern_act_bytes bytes). */
void kern_quantize_act(int wtype, const float *x, int cols, void *act);

/* y[r] = W[r] . act for r in [r0, r1); act from kern_quantize_act. */
void kern_matvec_q(int wtype, const void *W, int cols, const void *act, float *y, int r0, int r1);
/* Batched: Y[t*ldy + r] = W[r] . act_t for t < ntok, r in [r0, r1), where act_t =
 * act + t * kern_act_bytes(wtype, cols). Rows are taken in small tiles and each
 * tile meets every token while it is still in L1, so the weights are read from
 * memory once per call rather than once per token (prompt processing); where a
 * type has vec_dot4 (Q4_K/Q5_K/Q6_K), each weight block is also unpacked once
 * per 4 tokens; where it has gemm, the kernel does the whole product itself:
 * F32/F16/BF16 with register tiles of 3 rows x 2 tokens (each loaded weight
 * feeds 2 multiply-adds, each loaded activation 3), Q8_0/Q4_0/Q5_0 with one
 * weight block unpacked per 4 tokens.
 * Results equal kern_matvec_q's for each token, bit for bit. */
void kern_matmul_q(int wtype, const void *W, int cols, const void *act, int ntok, float *Y, int ldy,
                   int r0, int r1);
/* The same from float activations (x[cols]; X[ntok][cols]): converts them,
 * using a heap scratch when it exceeds a small stack buffer. Returns 0 or
 * -SMP_E_NOMEM. A thread pool should rather convert once and call the _q forms. */
int kern_matvec(int wtype, const void *W, int cols, const float *x, float *y, int r0, int r1);
int kern_matmul(int wtype, const void *W, int cols, const float *X, int ntok, float *Y, int ldy, int r0, int r1);

/* fp16 rows (F16C when active; bit-identical to the reference either way). */
void kern_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n);
void kern_f32_to_f16_row(const float *src, uint16_t *dst, int64_t n);

#endif
