/* whisper_forward.c - Whisper's encoder and decoder forward passes.
 *
 * Encoder (3000 mel frames -> 1500 states of S = n_audio_state):
 *   x = gelu(conv1(mel) + b1)            k=3, pad 1: [3000][S]   (as im2col x W1^T)
 *   x = gelu(conv2(x) + b2) + pos        k=3, stride 2, pad 1: [1500][S]
 *   per block: x += Wo attn(LN(x)) + bo;  x += W2 gelu(W1 LN(x) + b1) + b2
 *   enc = LN_post(x); per decoder layer: cross K = Wk enc, V = Wv enc + bv
 * Decoder (tokens at positions n_past..):
 *   x = tok_emb[token] + pos[position]
 *   per block: x += self-attention (causal, KV cache), x += cross-attention
 *              over the 1500 encoder states, x += MLP
 *   logits = LN(x) . tok_emb^T
 * Attention: q = Wq h + bq, k = Wk h (no bias), v = Wv h + bv,
 * softmax(q k^T / sqrt(hd)) v per head, computed in float over exactly the
 * real keys (no padding). GELU is the erf form (a polynomial erf accurate
 * to 1.5e-7 on the AVX2 path).
 *
 * Data (whisper_state), all allocated in whisper_state_new (no allocation
 * per call or per token):
 *   x, xn, att, q, k, v  [1500][S]       residual, normed input, attention out, projections
 *   hbuf   [max(1500*4S, 3000*S)]        MLP hidden, conv1 output
 *   col    [max(3000*3*n_mels, 1500*3S)] im2col rows of the convolutions
 *   qh [H][1500][hd], kh [H][63][hd][24] (keys packed in blocks of 24 for
 *          qk), vt [H][1500][hd]          the encoder's per-head copies
 *   ck, cv [layer][H][63][hd][24] / [layer][H][1500][hd]  cross-attention K
 *          (packed like kh) and V in f16, as whisper.cpp keeps them: every
 *          decoder step reads them all
 *   sk, sv [layer][H][n_text_ctx][hd] / [layer][H][hd][n_text_ctx]  self-attention cache (f32)
 *   d*     the decoder's rows, [n_text_ctx][...]
 *   act    activations converted for quantized weights (Q8_0 rows)
 *   scores [threads][ATT_QB * 1500]
 * Where the time goes (base, 30 s window: ~97 GFLOP): the encoder's matmuls
 * (kernels.h gemm, split into row block x token block tasks on the pool) and
 * its attention (1500 x 1500 per head and layer; the AVX2 qk / pv / softmax
 * below, one task per head and 64 queries). Decoding one token is bound by
 * reading the weights (the output projection, n_vocab x S, the largest) and
 * the cross-attention K/V. */
#include <math.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/quants.h"
#include "engine/tensor_types.h"
#include "engine/threadpool.h"
#include "engine/whisper_int.h"
#include "engine/whisper_weights.h"

#define N_CTX_A 1500  /* encoder positions */
#define ATT_QB 64     /* queries per encoder-attention task */
#define MM_TOK 128    /* tokens per matmul task */
#define ROW_CHUNK 64  /* tokens per row-wise (norm, gelu) task */
#define LN_EPS 1e-5f
#define KB 24         /* keys per packed block of the encoder's K */
#define N_KBLK ((N_CTX_A + KB - 1) / KB)
#define WHISPER_MAX_HD 1024

struct whisper_state {
    const whisper_model *m;
    const whisper_weights *w;
    tp_pool *pool;
    int n_threads, S, H, hd, n_text_ctx, n_vocab, n_mels;
    float *x, *xn, *att, *q, *k, *v, *hbuf, *col, *qh, *kh, *vt;
    uint16_t *ck, *cv; /* f16 */
    float *sk, *sv;
    float *dx, *dxn, *dq, *dk, *dv, *datt, *dh, *tmp;
    void *act;
    float *scores;
    bool encoded;
    int n_kv; /* decoder positions held in the self-attention cache */
};

/* ---- matmul on the pool ---- */

typedef enum { POST_NONE, POST_GELU, POST_RESID } post_op;

typedef struct {
    const whisper_mat *w;
    const void *act;
    size_t act_stride;
    int nt;
    float *y;           /* [nt][ldy] */
    int ldy;
    const float *bias;
    float *resid;       /* POST_RESID: resid[t][r] += y[t][r] */
    post_op post;
    int rchunk, tchunk, n_rc;
} mm_job;

static inline float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
static void gelu_row(float *y, int n);

static void mm_task(void *arg, int task, int thread) {
    (void)thread;
    const mm_job *j = arg;
    int rc = task % j->n_rc, tc = task / j->n_rc;
    int r0 = rc * j->rchunk, r1 = r0 + j->rchunk < j->w->rows ? r0 + j->rchunk : j->w->rows;
    int t0 = tc * j->tchunk, t1 = t0 + j->tchunk < j->nt ? t0 + j->tchunk : j->nt;
    const whisper_mat *w = j->w;
    const char *act = (const char *)j->act + (size_t)t0 * j->act_stride;
    if (t1 - t0 == 1) kern_matvec_q(w->type, w->data, w->cols, act, j->y + (size_t)t0 * j->ldy, r0, r1);
    else kern_matmul_q(w->type, w->data, w->cols, act, t1 - t0, j->y + (size_t)t0 * j->ldy, j->ldy, r0, r1);
    for (int t = t0; t < t1; t++) {
        float *y = j->y + (size_t)t * j->ldy;
        if (j->bias)
            for (int r = r0; r < r1; r++) y[r] += j->bias[r];
        if (j->post == POST_GELU) gelu_row(y + r0, r1 - r0);
        else if (j->post == POST_RESID) {
            float *x = j->resid + (size_t)t * j->ldy;
            for (int r = r0; r < r1; r++) x[r] += y[r];
        }
    }
}

typedef struct {
    int wtype, cols;
    const float *x;
    char *act;
    size_t ab;
} quant_job;

static void quant_task(void *arg, int t, int thread) {
    (void)thread;
    const quant_job *q = arg;
    kern_quantize_act(q->wtype, q->x + (size_t)t * q->cols, q->cols, q->act + (size_t)t * q->ab);
}

/* Activations of X [nt][cols] for weight w: X itself for float types, else
 * converted into s->act. */
static const void *prep_act(whisper_state *s, const float *X, int nt, const whisper_mat *w, size_t *stride) {
    const kern_type_traits *tr = kern_traits(w->type);
    *stride = kern_act_bytes(w->type, w->cols);
    if (tr->act_type == TT_F32) return X;
    quant_job q = {w->type, w->cols, X, s->act, *stride};
    if (nt >= 8) tp_run(s->pool, quant_task, &q, nt);
    else
        for (int t = 0; t < nt; t++) quant_task(&q, t, 0);
    return s->act;
}

/* Y [nt][w->rows] = X W^T (+ bias), then the post op. act: from prep_act, or
 * NULL to convert X here. */
static void matmul(whisper_state *s, const whisper_mat *w, const float *X, const void *act, size_t act_stride, int nt,
                   float *Y, const float *bias, post_op post, float *resid) {
    if (!act) act = prep_act(s, X, nt, w, &act_stride);
    mm_job j = {.w = w, .act = act, .act_stride = act_stride, .nt = nt, .y = Y, .ldy = w->rows, .bias = bias,
                .resid = resid, .post = post};
    j.tchunk = nt < MM_TOK ? nt : MM_TOK;
    int n_tc = (nt + j.tchunk - 1) / j.tchunk;
    /* About eight tasks per thread overall, rows in multiples of 16. */
    int want = s->n_threads * 8 / n_tc;
    int rchunk = want > 0 ? w->rows / want : w->rows;
    rchunk = rchunk < 16 ? 16 : (rchunk + 15) / 16 * 16;
    if (nt > 1 && rchunk > 128) rchunk = 128;
    j.rchunk = rchunk;
    j.n_rc = (w->rows + rchunk - 1) / rchunk;
    tp_run(s->pool, mm_task, &j, j.n_rc * n_tc);
}

/* ---- row-wise steps ---- */

typedef struct {
    const float *x;
    float *out;
    const whisper_norm *n;
    int cols, nt;
} ln_job;

static void layernorm_row(float *out, const float *x, const float *g, const float *b, int n) {
    double sum = 0, ss = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    double mean = sum / n;
    for (int i = 0; i < n; i++) {
        double d = x[i] - mean;
        ss += d * d;
    }
    float inv = (float)(1.0 / sqrt(ss / n + LN_EPS)), mf = (float)mean;
    for (int i = 0; i < n; i++) out[i] = (x[i] - mf) * inv * g[i] + b[i];
}

static void ln_task(void *arg, int task, int thread) {
    (void)thread;
    const ln_job *j = arg;
    int t1 = (task + 1) * ROW_CHUNK < j->nt ? (task + 1) * ROW_CHUNK : j->nt;
    for (int t = task * ROW_CHUNK; t < t1; t++)
        layernorm_row(j->out + (size_t)t * j->cols, j->x + (size_t)t * j->cols, j->n->w, j->n->b, j->cols);
}

static void layernorm(whisper_state *s, const float *x, float *out, const whisper_norm *n, int nt) {
    ln_job j = {x, out, n, s->S, nt};
    int tasks = (nt + ROW_CHUNK - 1) / ROW_CHUNK;
    if (tasks > 1) tp_run(s->pool, ln_task, &j, tasks);
    else ln_task(&j, 0, 0);
}

/* ---- encoder ---- */

typedef struct {
    whisper_state *s;
    const float *mel;
    int n_frames, offset;
} col_job;

/* conv1 input rows: col[t][ic*3 + k] = mel[ic][offset + t + k - 1], zero
 * outside the 3000-frame window and past n_frames. */
static void col1_task(void *arg, int task, int thread) {
    (void)thread;
    const col_job *j = arg;
    const whisper_state *s = j->s;
    int nm = s->n_mels, t1 = (task + 1) * ROW_CHUNK < WHISPER_N_FRAMES ? (task + 1) * ROW_CHUNK : WHISPER_N_FRAMES;
    for (int t = task * ROW_CHUNK; t < t1; t++) {
        float *c = s->col + (size_t)t * nm * 3;
        for (int k = 0; k < 3; k++) {
            int tt = t + k - 1, f = j->offset + tt;
            for (int ic = 0; ic < nm; ic++) {
                float v = 0;
                if (tt >= 0 && tt < WHISPER_N_FRAMES && f < j->n_frames) v = j->mel[(size_t)ic * j->n_frames + f];
                c[ic * 3 + k] = v;
            }
        }
    }
}

/* conv2 input rows: col[t][ic*3 + k] = h[2t + k - 1][ic] (h = conv1 output). */
static void col2_task(void *arg, int task, int thread) {
    (void)thread;
    const col_job *j = arg;
    const whisper_state *s = j->s;
    int S = s->S, t1 = (task + 1) * ROW_CHUNK < N_CTX_A ? (task + 1) * ROW_CHUNK : N_CTX_A;
    for (int t = task * ROW_CHUNK; t < t1; t++) {
        float *c = s->col + (size_t)t * S * 3;
        for (int k = 0; k < 3; k++) {
            int src = 2 * t + k - 1;
            const float *h = s->hbuf + (size_t)src * S;
            bool in = src >= 0 && src < WHISPER_N_FRAMES;
            for (int ic = 0; ic < S; ic++) c[ic * 3 + k] = in ? h[ic] : 0.0f;
        }
    }
}

typedef struct {
    whisper_state *s;
    float qscale;
    int layer;
} split_job;

/* The encoder's per-head copies of q, k, v (s->q, s->k, s->v, [1500][S]):
 * qh[h][t][d] = q[t][h*hd+d] * qscale, keys in qk's packed blocks, values
 * as rows vt[h][t][d]. */
static void split_task(void *arg, int task, int thread) {
    (void)thread;
    const split_job *j = arg;
    whisper_state *s = j->s;
    int hd = s->hd, S = s->S, t1 = (task + 1) * ROW_CHUNK < N_CTX_A ? (task + 1) * ROW_CHUNK : N_CTX_A;
    for (int t = task * ROW_CHUNK; t < t1; t++)
        for (int h = 0; h < s->H; h++) {
            size_t src = (size_t)t * S + h * hd;
            float *qd = s->qh + ((size_t)h * N_CTX_A + t) * hd, *vd = s->vt + ((size_t)h * N_CTX_A + t) * hd;
            float *kd = s->kh + ((size_t)h * N_KBLK + t / KB) * hd * KB + t % KB;
            for (int d = 0; d < hd; d++) {
                qd[d] = s->q[src + d] * j->qscale;
                kd[(size_t)d * KB] = s->k[src + d];
                vd[d] = s->v[src + d];
            }
        }
}

/* Cross-attention K (packed) and V of decoder layer j->layer from s->k, s->v, in f16. */
static void cross_kv_task(void *arg, int task, int thread) {
    (void)thread;
    const split_job *j = arg;
    whisper_state *s = j->s;
    int hd = s->hd, S = s->S, t1 = (task + 1) * ROW_CHUNK < N_CTX_A ? (task + 1) * ROW_CHUNK : N_CTX_A;
    size_t per = (size_t)N_CTX_A * S;
    size_t kper = (size_t)N_KBLK * KB * S;
    uint16_t *K = s->ck + j->layer * kper, *V = s->cv + j->layer * per, k16[WHISPER_MAX_HD];
    for (int t = task * ROW_CHUNK; t < t1; t++)
        for (int h = 0; h < s->H; h++) {
            size_t src = (size_t)t * S + h * hd;
            kern_f32_to_f16_row(s->v + src, V + ((size_t)h * N_CTX_A + t) * hd, hd);
            kern_f32_to_f16_row(s->k + src, k16, hd);
            uint16_t *kd = K + ((size_t)h * N_KBLK + t / KB) * hd * KB + t % KB;
            for (int d = 0; d < hd; d++) kd[(size_t)d * KB] = k16[d];
        }
}

/* ---- attention kernels: plain loops, and AVX2 versions of the two hot ones
 * (checked against the plain ones by whisper_attn_kernels_check) ---- */

static void softmax_row_ref(float *p, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (p[i] > mx) mx = p[i];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        p[i] = expf(p[i] - mx);
        sum += p[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) p[i] *= inv;
}

/* sc[t][j] = q_t . k_j for nq queries (rows of hd floats) against nk keys
 * packed in blocks of KB: key j, element d at kp[((j / KB) * hd + d) * KB + j % KB]
 * (each block a contiguous [hd][KB] tile, keys past nk zero). */
static void qk_ref(int hd, const float *q, int nq, const float *kp, int nk, float *sc, int ldsc) {
    for (int t = 0; t < nq; t++)
        for (int j = 0; j < nk; j++) {
            const float *k = kp + (size_t)(j / KB) * hd * KB + j % KB;
            float a = 0;
            for (int d = 0; d < hd; d++) a += q[(size_t)t * hd + d] * k[(size_t)d * KB];
            sc[(size_t)t * ldsc + j] = a;
        }
}

/* out[t][d] (rows ldo apart) = sum_j p[t][j] v[j][d] for nq probability rows
 * of nk entries and nk value rows of hd floats. */
static void pv_ref(int hd, const float *p, int nq, int nk, const float *v, float *out, int ldo) {
    for (int t = 0; t < nq; t++) {
        float *o = out + (size_t)t * ldo;
        for (int d = 0; d < hd; d++) o[d] = 0;
        for (int j = 0; j < nk; j++) {
            float pj = p[(size_t)t * nk + j];
            for (int d = 0; d < hd; d++) o[d] += pj * v[(size_t)j * hd + d];
        }
    }
}

/* One query against f16 keys packed like qk's (the decoder's cross-attention). */
static void qk1_f16_ref(int hd, const float *q, const uint16_t *kp, int nk, float *sc) {
    for (int j = 0; j < nk; j++) {
        const uint16_t *k = kp + (size_t)(j / KB) * hd * KB + j % KB;
        float a = 0;
        for (int d = 0; d < hd; d++) a += q[d] * quants_f16_to_f32(k[(size_t)d * KB]);
        sc[j] = a;
    }
}

/* out[d] = sum_j p[j] v[j][d], f16 value rows of hd. */
static void pv1_f16_ref(int hd, const float *p, int nk, const uint16_t *v, float *out) {
    for (int d = 0; d < hd; d++) out[d] = 0;
    for (int j = 0; j < nk; j++)
        for (int d = 0; d < hd; d++) out[d] += p[j] * quants_f16_to_f32(v[(size_t)j * hd + d]);
}

#ifdef __AVX2__
static inline float hsum256(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* GELU with erf from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7):
 * erf(z) = 1 - t (a1 + t (a2 + ... a5)) e^(-z^2), t = 1 / (1 + p z), z >= 0. */
static void gelu_row(float *y, int n) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), rs2 = _mm256_set1_ps(0.70710678118654752f);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(y + i);
        __m256 z = _mm256_mul_ps(x, rs2);
        __m256 az = _mm256_andnot_ps(sign, z);
        __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, one));
        __m256 p = _mm256_set1_ps(1.061405429f);
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
        p = _mm256_mul_ps(p, t);
        __m256 e = whisper_exp8(_mm256_mul_ps(_mm256_xor_ps(az, sign), az)); /* e^(-z^2) */
        __m256 erf_abs = _mm256_fnmadd_ps(p, e, one);
        __m256 erf = _mm256_or_ps(erf_abs, _mm256_and_ps(z, sign)); /* copy the sign of z */
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, erf)));
    }
    for (; i < n; i++) y[i] = gelu(y[i]);
}

static void softmax_row(float *p, int n) {
    int i = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(p + i));
    float mx = -INFINITY;
    for (int k = 0; k < 8; k++) mx = fmaxf(mx, ((float *)&vm)[k]);
    for (; i < n; i++) mx = fmaxf(mx, p[i]);
    __m256 vmx = _mm256_set1_ps(mx), vs = _mm256_setzero_ps();
    float buf[8];
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = whisper_exp8(_mm256_sub_ps(_mm256_loadu_ps(p + i), vmx));
        _mm256_storeu_ps(p + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    double sum = hsum256(vs);
    if (i < n) {
        int k = n - i;
        for (int j = 0; j < 8; j++) buf[j] = j < k ? p[i + j] - mx : -INFINITY;
        __m256 e = whisper_exp8(_mm256_loadu_ps(buf));
        _mm256_storeu_ps(buf, e);
        for (int j = 0; j < k; j++) {
            p[i + j] = buf[j];
            sum += buf[j];
        }
    }
    __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, _mm256_mul_ps(_mm256_loadu_ps(p + i), inv));
    for (; i < n; i++) p[i] *= (float)(1.0 / sum);
}

/* Four queries x one packed block of 24 keys per step: 12 accumulators
 * (written out one by one: as an array GCC -O2 keeps them in memory), each
 * loaded key vector feeds four multiply-adds, the block is read
 * sequentially. Per lane the same sum over d as qk_ref. */
static void qk(int hd, const float *q, int nq, const float *kp, int nk, float *sc, int ldsc) {
    _Static_assert(KB == 24, "qk's register tile is 3 vectors of keys");
    int t = 0;
    float tail[KB];
    for (; t + 4 <= nq; t += 4) {
        const float *q0 = q + (size_t)t * hd, *q1 = q0 + hd, *q2 = q1 + hd, *q3 = q2 + hd;
        for (int j = 0; j < nk; j += KB) {
            const float *k = kp + (size_t)(j / KB) * hd * KB;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;
            __m256 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
            for (int d = 0; d < hd; d++, k += KB) {
                __m256 k0 = _mm256_loadu_ps(k), k1 = _mm256_loadu_ps(k + 8), k2 = _mm256_loadu_ps(k + 16);
                __m256 b = _mm256_broadcast_ss(q0 + d);
                a00 = _mm256_fmadd_ps(b, k0, a00), a01 = _mm256_fmadd_ps(b, k1, a01), a02 = _mm256_fmadd_ps(b, k2, a02);
                b = _mm256_broadcast_ss(q1 + d);
                a10 = _mm256_fmadd_ps(b, k0, a10), a11 = _mm256_fmadd_ps(b, k1, a11), a12 = _mm256_fmadd_ps(b, k2, a12);
                b = _mm256_broadcast_ss(q2 + d);
                a20 = _mm256_fmadd_ps(b, k0, a20), a21 = _mm256_fmadd_ps(b, k1, a21), a22 = _mm256_fmadd_ps(b, k2, a22);
                b = _mm256_broadcast_ss(q3 + d);
                a30 = _mm256_fmadd_ps(b, k0, a30), a31 = _mm256_fmadd_ps(b, k1, a31), a32 = _mm256_fmadd_ps(b, k2, a32);
            }
            __m256 acc[4][3] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22}, {a30, a31, a32}};
            int nv = nk - j < KB ? nk - j : KB;
            for (int i = 0; i < 4; i++) {
                float *dst = sc + (size_t)(t + i) * ldsc + j, *o = nv == KB ? dst : tail;
                _mm256_storeu_ps(o, acc[i][0]);
                _mm256_storeu_ps(o + 8, acc[i][1]);
                _mm256_storeu_ps(o + 16, acc[i][2]);
                if (nv < KB) memcpy(dst, tail, (size_t)nv * sizeof(float));
            }
        }
    }
    if (t < nq) qk_ref(hd, q + (size_t)t * hd, nq - t, kp, nk, sc + (size_t)t * ldsc, ldsc);
}
/* Four probability rows x 16 value columns per step (8 accumulators): each
 * loaded value vector feeds four multiply-adds. Per lane the same sum over j
 * as pv_ref. */
static void pv(int hd, const float *p, int nq, int nk, const float *v, float *out, int ldo) {
    int t = 0;
    if (hd % 16 == 0)
        for (; t + 4 <= nq; t += 4) {
            const float *p0 = p + (size_t)t * nk, *p1 = p0 + nk, *p2 = p1 + nk, *p3 = p2 + nk;
            for (int d = 0; d < hd; d += 16) {
                __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
                __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
                const float *vv = v + d;
                for (int j = 0; j < nk; j++, vv += hd) {
                    __m256 v0 = _mm256_loadu_ps(vv), v1 = _mm256_loadu_ps(vv + 8);
                    __m256 b = _mm256_broadcast_ss(p0 + j);
                    a00 = _mm256_fmadd_ps(b, v0, a00), a01 = _mm256_fmadd_ps(b, v1, a01);
                    b = _mm256_broadcast_ss(p1 + j);
                    a10 = _mm256_fmadd_ps(b, v0, a10), a11 = _mm256_fmadd_ps(b, v1, a11);
                    b = _mm256_broadcast_ss(p2 + j);
                    a20 = _mm256_fmadd_ps(b, v0, a20), a21 = _mm256_fmadd_ps(b, v1, a21);
                    b = _mm256_broadcast_ss(p3 + j);
                    a30 = _mm256_fmadd_ps(b, v0, a30), a31 = _mm256_fmadd_ps(b, v1, a31);
                }
                float *o = out + (size_t)t * ldo + d;
                _mm256_storeu_ps(o, a00), _mm256_storeu_ps(o + 8, a01), o += ldo;
                _mm256_storeu_ps(o, a10), _mm256_storeu_ps(o + 8, a11), o += ldo;
                _mm256_storeu_ps(o, a20), _mm256_storeu_ps(o + 8, a21), o += ldo;
                _mm256_storeu_ps(o, a30), _mm256_storeu_ps(o + 8, a31);
            }
        }
    if (t < nq) pv_ref(hd, p + (size_t)t * nk, nq - t, nk, v, out + (size_t)t * ldo, ldo);
}
static inline __m256 load_f16x8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* One query x one packed block of 24 f16 keys per step (3 accumulators). */
static void qk1_f16(int hd, const float *q, const uint16_t *kp, int nk, float *sc) {
    float tail[KB];
    for (int j = 0; j < nk; j += KB) {
        const uint16_t *k = kp + (size_t)(j / KB) * hd * KB;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0;
        for (int d = 0; d < hd; d++, k += KB) {
            __m256 b = _mm256_broadcast_ss(q + d);
            a0 = _mm256_fmadd_ps(b, load_f16x8(k), a0);
            a1 = _mm256_fmadd_ps(b, load_f16x8(k + 8), a1);
            a2 = _mm256_fmadd_ps(b, load_f16x8(k + 16), a2);
        }
        int nv = nk - j < KB ? nk - j : KB;
        float *o = nv == KB ? sc + j : tail;
        _mm256_storeu_ps(o, a0);
        _mm256_storeu_ps(o + 8, a1);
        _mm256_storeu_ps(o + 16, a2);
        if (nv < KB) memcpy(sc + j, tail, (size_t)nv * sizeof(float));
    }
}

/* One probability row against f16 value rows, 32 columns at a time. */
static void pv1_f16(int hd, const float *p, int nk, const uint16_t *v, float *out) {
    if (hd % 32) {
        pv1_f16_ref(hd, p, nk, v, out);
        return;
    }
    for (int d = 0; d < hd; d += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const uint16_t *vv = v + d;
        for (int j = 0; j < nk; j++, vv += hd) {
            __m256 b = _mm256_broadcast_ss(p + j);
            a0 = _mm256_fmadd_ps(b, load_f16x8(vv), a0);
            a1 = _mm256_fmadd_ps(b, load_f16x8(vv + 8), a1);
            a2 = _mm256_fmadd_ps(b, load_f16x8(vv + 16), a2);
            a3 = _mm256_fmadd_ps(b, load_f16x8(vv + 24), a3);
        }
        _mm256_storeu_ps(out + d, a0);
        _mm256_storeu_ps(out + d + 8, a1);
        _mm256_storeu_ps(out + d + 16, a2);
        _mm256_storeu_ps(out + d + 24, a3);
    }
}
#else
#define softmax_row softmax_row_ref
#define qk qk_ref
#define pv pv_ref
#define qk1_f16 qk1_f16_ref
#define pv1_f16 pv1_f16_ref
static void gelu_row(float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = gelu(y[i]);
}
#endif

/* Test hook (whisper_int.h): the AVX2 attention kernels against the plain
 * loops on random data (scores of size ~1, compared in absolute terms;
 * probabilities relative to their value, GELU against erff in absolute
 * terms); returns the largest difference. */
double whisper_attn_kernels_check(void) {
    enum { HD = 64, NQ = 7, NK = 1500 - 3 };
    size_t nkp = (size_t)(NK + KB - 1) / KB * KB * HD;
    float *q = smp_malloc(NQ * HD * sizeof(float)), *kt = smp_malloc(nkp * sizeof(float));
    float *a = smp_malloc(NQ * NK * sizeof(float)), *b = smp_malloc(NQ * NK * sizeof(float));
    if (!q || !kt || !a || !b) {
        smp_free(q), smp_free(kt), smp_free(a), smp_free(b);
        return INFINITY;
    }
    uint32_t st = 1;
    for (int i = 0; i < NQ * HD; i++) q[i] = ((st = st * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (size_t i = 0; i < nkp; i++) kt[i] = ((st = st * 1664525u + 1013904223u) >> 8) / 8388608.0f - 1.0f;
    qk(HD, q, NQ, kt, NK, a, NK);
    qk_ref(HD, q, NQ, kt, NK, b, NK);
    double worst = 0;
    for (int i = 0; i < NQ * NK; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > worst) worst = d;
    }
    for (int t = 0; t < NQ; t++) {
        softmax_row(a + (size_t)t * NK, NK);
        softmax_row_ref(b + (size_t)t * NK, NK);
    }
    for (int i = 0; i < NQ * NK; i++) {
        double d = fabs((double)a[i] - b[i]) / (fabs(b[i]) + 1e-12);
        if (d > worst) worst = d;
    }
    /* P V with the softmax rows as P and kt's first NK * HD values as V */
    float *o1 = smp_malloc(NQ * HD * sizeof(float)), *o2 = smp_malloc(NQ * HD * sizeof(float));
    if (o1 && o2) {
        pv(HD, a, NQ, NK, kt, o1, HD);
        pv_ref(HD, a, NQ, NK, kt, o2, HD);
        for (int i = 0; i < NQ * HD; i++) {
            double d = fabs((double)o1[i] - o2[i]);
            if (d > worst) worst = d;
        }
    } else {
        worst = INFINITY;
    }
    smp_free(o1), smp_free(o2);
    /* the f16 one-query forms, keys / values taken from kt rounded to f16 */
    uint16_t *k16 = smp_malloc(nkp * sizeof(uint16_t));
    float *s1 = smp_malloc(NK * sizeof(float)), *s2 = smp_malloc(NK * sizeof(float));
    float *p1 = smp_malloc(HD * sizeof(float)), *p2 = smp_malloc(HD * sizeof(float));
    if (k16 && s1 && s2 && p1 && p2) {
        kern_f32_to_f16_row(kt, k16, (int64_t)nkp);
        qk1_f16(HD, q, k16, NK, s1);
        qk1_f16_ref(HD, q, k16, NK, s2);
        for (int i = 0; i < NK; i++) worst = fmax(worst, fabs((double)s1[i] - s2[i]));
        pv1_f16(HD, a, NK, k16, p1);
        pv1_f16_ref(HD, a, NK, k16, p2);
        for (int i = 0; i < HD; i++) worst = fmax(worst, fabs((double)p1[i] - p2[i]));
    } else {
        worst = INFINITY;
    }
    smp_free(k16), smp_free(s1), smp_free(s2), smp_free(p1), smp_free(p2);
    /* GELU over [-12, 12] against erff, absolute */
    for (int i = 0; i < NQ * NK; i++) a[i] = b[i] = -12.0f + 24.0f * i / (NQ * NK);
    gelu_row(a, NQ * NK);
    for (int i = 0; i < NQ * NK; i++) {
        double d = fabs((double)a[i] - gelu(b[i]));
        if (d > worst) worst = d;
    }
    smp_free(q), smp_free(kt), smp_free(a), smp_free(b);
    return worst;
}

/* Encoder self-attention of head h (task % H) for queries in block task / H:
 * scores = Qblock K^T (q pre-scaled, K packed), softmax, out = P V into att. */
static void enc_attn_task(void *arg, int task, int thread) {
    whisper_state *s = arg;
    int h = task % s->H, qb = task / s->H, hd = s->hd;
    int q0 = qb * ATT_QB, nq = q0 + ATT_QB < N_CTX_A ? ATT_QB : N_CTX_A - q0;
    float *sc = s->scores + (size_t)thread * ATT_QB * N_CTX_A;
    const float *qh = s->qh + ((size_t)h * N_CTX_A + q0) * hd, *kp = s->kh + (size_t)h * N_KBLK * KB * hd;
    qk(hd, qh, nq, kp, N_CTX_A, sc, N_CTX_A);
    for (int t = 0; t < nq; t++) softmax_row(sc + (size_t)t * N_CTX_A, N_CTX_A);
    pv(hd, sc, nq, N_CTX_A, s->vt + (size_t)h * N_CTX_A * hd, s->att + (size_t)q0 * s->S + h * hd, s->S);
}

int whisper_encode(whisper_state *s, const float *mel, int n_frames, int offset) {
    const whisper_weights *w = s->w;
    const whisper_hparams *hp = &s->m->hp;
    int S = s->S;
    if (n_frames < 0 || offset < 0) return -SMP_E_VALIDATION;
    /* Frames past the end read as 0, as whisper.cpp and OpenAI's pad_or_trim
     * do (whisper_mel's 30 s of padding makes that rare: only a window that
     * starts within the last frame of audio reaches past it). */
    col_job cj = {s, mel, n_frames, offset};
    tp_run(s->pool, col1_task, &cj, (WHISPER_N_FRAMES + ROW_CHUNK - 1) / ROW_CHUNK);
    matmul(s, &w->conv1, s->col, NULL, 0, WHISPER_N_FRAMES, s->hbuf, w->conv1_b, POST_GELU, NULL);
    tp_run(s->pool, col2_task, &cj, (N_CTX_A + ROW_CHUNK - 1) / ROW_CHUNK);
    matmul(s, &w->conv2, s->col, NULL, 0, N_CTX_A, s->x, w->conv2_b, POST_GELU, NULL);
    for (size_t i = 0; i < (size_t)N_CTX_A * S; i++) s->x[i] += w->enc_pos[i];

    float qscale = 1.0f / sqrtf((float)s->hd);
    for (int l = 0; l < hp->n_audio_layer; l++) {
        const whisper_layer_w *ly = &w->enc[l];
        layernorm(s, s->x, s->xn, &ly->attn.ln, N_CTX_A);
        size_t st;
        const void *act = prep_act(s, s->xn, N_CTX_A, &ly->attn.q, &st);
        matmul(s, &ly->attn.q, s->xn, act, st, N_CTX_A, s->q, ly->attn.bq, POST_NONE, NULL);
        if (ly->attn.k.type != ly->attn.q.type) act = NULL;
        matmul(s, &ly->attn.k, s->xn, act, st, N_CTX_A, s->k, NULL, POST_NONE, NULL);
        if (ly->attn.v.type != ly->attn.q.type) act = NULL;
        matmul(s, &ly->attn.v, s->xn, act, st, N_CTX_A, s->v, ly->attn.bv, POST_NONE, NULL);
        split_job sj = {s, qscale, 0};
        tp_run(s->pool, split_task, &sj, (N_CTX_A + ROW_CHUNK - 1) / ROW_CHUNK);
        tp_run(s->pool, enc_attn_task, s, s->H * ((N_CTX_A + ATT_QB - 1) / ATT_QB));
        matmul(s, &ly->attn.o, s->att, NULL, 0, N_CTX_A, s->q, ly->attn.bo, POST_RESID, s->x);
        layernorm(s, s->x, s->xn, &ly->mlp_ln, N_CTX_A);
        matmul(s, &ly->fc1, s->xn, NULL, 0, N_CTX_A, s->hbuf, ly->b1, POST_GELU, NULL);
        matmul(s, &ly->fc2, s->hbuf, NULL, 0, N_CTX_A, s->q, ly->b2, POST_RESID, s->x);
    }
    layernorm(s, s->x, s->xn, &w->ln_post, N_CTX_A);

    /* Cross-attention keys and values of every decoder layer. */
    for (int l = 0; l < hp->n_text_layer; l++) {
        const whisper_attn_w *c = &w->dec[l].cross;
        size_t st;
        const void *act = prep_act(s, s->xn, N_CTX_A, &c->k, &st);
        matmul(s, &c->k, s->xn, act, st, N_CTX_A, s->k, NULL, POST_NONE, NULL);
        if (c->v.type != c->k.type) act = NULL;
        matmul(s, &c->v, s->xn, act, st, N_CTX_A, s->v, c->bv, POST_NONE, NULL);
        split_job sj = {s, 1.0f, l};
        tp_run(s->pool, cross_kv_task, &sj, (N_CTX_A + ROW_CHUNK - 1) / ROW_CHUNK);
    }
    s->encoded = true;
    s->n_kv = 0;
    return 0;
}

/* ---- decoder ---- */

typedef struct {
    whisper_state *s;
    int layer, n, n_past;
    bool cross;
} dattn_job;

/* Attention of decoder token t (task / H), head h (task % H): self-attention
 * over cache positions 0..n_past+t, or cross-attention over the 1500 encoder
 * states. q is pre-scaled. Output into datt. */
static void dec_attn_task(void *arg, int task, int thread) {
    const dattn_job *j = arg;
    whisper_state *s = j->s;
    int t = task / s->H, h = task % s->H, hd = s->hd, S = s->S;
    const float *q = s->dq + (size_t)t * S + h * hd;
    float *sc = s->scores + (size_t)thread * ATT_QB * N_CTX_A, *out = s->datt + (size_t)t * S + h * hd;
    if (j->cross) {
        const uint16_t *K = s->ck + j->layer * (size_t)N_KBLK * KB * S + (size_t)h * N_KBLK * KB * hd;
        const uint16_t *V = s->cv + j->layer * (size_t)N_CTX_A * S + (size_t)h * N_CTX_A * hd;
        qk1_f16(hd, q, K, N_CTX_A, sc);
        softmax_row(sc, N_CTX_A);
        pv1_f16(hd, sc, N_CTX_A, V, out);
        return;
    }
    kern_dot_fn dot = kern_traits(TT_F32)->vec_dot;
    size_t per = (size_t)s->n_text_ctx * S;
    const float *K = s->sk + j->layer * per + (size_t)h * s->n_text_ctx * hd;
    const float *Vt = s->sv + j->layer * per + (size_t)h * hd * s->n_text_ctx;
    int nk = j->n_past + t + 1, ld = s->n_text_ctx;
    for (int i = 0; i < nk; i++) sc[i] = dot(hd, K + (size_t)i * hd, q);
    softmax_row(sc, nk);
    for (int d = 0; d < hd; d++) out[d] = dot(nk, Vt + (size_t)d * ld, sc);
}

/* New keys / values of tokens 0..n-1 into the cache of layer l at n_past.. */
static void store_kv(whisper_state *s, int l, int n, int n_past) {
    int hd = s->hd, S = s->S, C = s->n_text_ctx;
    size_t per = (size_t)C * S;
    float *K = s->sk + l * per, *Vt = s->sv + l * per;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < s->H; h++) {
            int pos = n_past + t;
            memcpy(K + ((size_t)h * C + pos) * hd, s->dk + (size_t)t * S + h * hd, (size_t)hd * sizeof(float));
            for (int d = 0; d < hd; d++) Vt[((size_t)h * hd + d) * C + pos] = s->dv[(size_t)t * S + h * hd + d];
        }
}

int whisper_decode(whisper_state *s, const int32_t *tokens, int n, int n_past, float *logits, bool all_rows) {
    const whisper_weights *w = s->w;
    const whisper_hparams *hp = &s->m->hp;
    int S = s->S;
    if (!s->encoded || n < 1 || n_past < 0 || n_past > s->n_kv || n_past + n > s->n_text_ctx)
        return -SMP_E_VALIDATION;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->n_vocab) return -SMP_E_VALIDATION;

    const kern_type_traits *et = kern_traits(w->tok_emb.type);
    size_t erb = kern_row_bytes(w->tok_emb.type, S);
    for (int t = 0; t < n; t++) {
        float *x = s->dx + (size_t)t * S;
        et->dequantize((const char *)w->tok_emb.data + (size_t)tokens[t] * erb, x, S);
        const float *pe = w->dec_pos + (size_t)(n_past + t) * S;
        for (int i = 0; i < S; i++) x[i] += pe[i];
    }
    float qscale = 1.0f / sqrtf((float)s->hd);
    dattn_job aj = {.s = s, .n = n, .n_past = n_past};
    for (int l = 0; l < hp->n_text_layer; l++) {
        const whisper_layer_w *ly = &w->dec[l];
        aj.layer = l;
        /* self-attention */
        layernorm(s, s->dx, s->dxn, &ly->attn.ln, n);
        size_t st;
        const void *act = prep_act(s, s->dxn, n, &ly->attn.q, &st);
        matmul(s, &ly->attn.q, s->dxn, act, st, n, s->dq, ly->attn.bq, POST_NONE, NULL);
        if (ly->attn.k.type != ly->attn.q.type) act = NULL;
        matmul(s, &ly->attn.k, s->dxn, act, st, n, s->dk, NULL, POST_NONE, NULL);
        if (ly->attn.v.type != ly->attn.q.type) act = NULL;
        matmul(s, &ly->attn.v, s->dxn, act, st, n, s->dv, ly->attn.bv, POST_NONE, NULL);
        for (size_t i = 0; i < (size_t)n * S; i++) s->dq[i] *= qscale;
        store_kv(s, l, n, n_past);
        aj.cross = false;
        tp_run(s->pool, dec_attn_task, &aj, n * s->H);
        matmul(s, &ly->attn.o, s->datt, NULL, 0, n, s->tmp, ly->attn.bo, POST_RESID, s->dx);
        /* cross-attention */
        layernorm(s, s->dx, s->dxn, &ly->cross.ln, n);
        matmul(s, &ly->cross.q, s->dxn, NULL, 0, n, s->dq, ly->cross.bq, POST_NONE, NULL);
        for (size_t i = 0; i < (size_t)n * S; i++) s->dq[i] *= qscale;
        aj.cross = true;
        tp_run(s->pool, dec_attn_task, &aj, n * s->H);
        matmul(s, &ly->cross.o, s->datt, NULL, 0, n, s->tmp, ly->cross.bo, POST_RESID, s->dx);
        /* MLP */
        layernorm(s, s->dx, s->dxn, &ly->mlp_ln, n);
        matmul(s, &ly->fc1, s->dxn, NULL, 0, n, s->dh, ly->b1, POST_GELU, NULL);
        matmul(s, &ly->fc2, s->dh, NULL, 0, n, s->tmp, ly->b2, POST_RESID, s->dx);
    }
    s->n_kv = n_past + n;
    if (!logits) return 0;
    if (all_rows) {
        layernorm(s, s->dx, s->dxn, &w->dec_ln, n);
        matmul(s, &w->tok_emb, s->dxn, NULL, 0, n, logits, NULL, POST_NONE, NULL);
    } else {
        layernorm(s, s->dx + (size_t)(n - 1) * S, s->dxn, &w->dec_ln, 1);
        matmul(s, &w->tok_emb, s->dxn, NULL, 0, 1, logits, NULL, POST_NONE, NULL);
    }
    return 0;
}

/* ---- state ---- */

/* Every buffer's size in elements (act in bytes), for whisper_state_new and
 * whisper_state_bytes alike. */
typedef struct {
    size_t a;      /* x, xn, att, q, k, v, qh, vt: floats each */
    size_t kh, hbuf, col, skv, d, dh, scores; /* floats (skv: sk and sv each; d: each of 7) */
    size_t ck, cv; /* f16 */
    size_t act;    /* bytes */
} state_sizes;

static state_sizes sizes_of(const whisper_model *m, int n_threads) {
    const whisper_hparams *hp = &m->hp;
    size_t S = (size_t)hp->n_audio_state, A = N_CTX_A, C = (size_t)hp->n_text_ctx, M = (size_t)hp->n_mels;
    state_sizes z;
    z.a = A * S;
    z.kh = (size_t)N_KBLK * KB * S;
    z.hbuf = A * 4 * S > (size_t)WHISPER_N_FRAMES * S ? A * 4 * S : (size_t)WHISPER_N_FRAMES * S;
    z.col = (size_t)WHISPER_N_FRAMES * 3 * M > A * 3 * S ? (size_t)WHISPER_N_FRAMES * 3 * M : A * 3 * S;
    z.ck = (size_t)hp->n_text_layer * N_KBLK * KB * S;
    z.cv = (size_t)hp->n_text_layer * A * S;
    z.skv = (size_t)hp->n_text_layer * C * S;
    z.d = C * S;
    z.dh = C * 4 * S;
    /* Converted activations: the widest input (4S, or the convolutions' 3 *
     * n_mels and 3S columns), for up to 3000 rows, in the largest activation
     * format (Q8_1 per 32, Q8_K per 256). */
    size_t widest = 4 * S > 3 * M ? 4 * S : 3 * M;
    if (3 * S > widest) widest = 3 * S;
    size_t a1 = kern_row_bytes(TT_Q8_1, (int64_t)(widest + 31) / 32 * 32);
    size_t a2 = kern_row_bytes(TT_Q8_K, (int64_t)(widest + 255) / 256 * 256);
    z.act = (size_t)WHISPER_N_FRAMES * (a1 > a2 ? a1 : a2);
    z.scores = (size_t)n_threads * ATT_QB * A;
    return z;
}

size_t whisper_state_bytes(const whisper_model *m) {
    const whisper_weights *w = m->weights;
    state_sizes z = sizes_of(m, tp_n_threads(w->pool));
    return sizeof(whisper_state) +
           (8 * z.a + z.kh + z.hbuf + z.col + 2 * z.skv + 7 * z.d + z.dh + z.scores) * sizeof(float) +
           (z.ck + z.cv) * sizeof(uint16_t) + z.act;
}

whisper_state *whisper_state_new(const whisper_model *m) {
    const whisper_weights *w = m->weights;
    const whisper_hparams *hp = &m->hp;
    whisper_state *s = smp_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->w = w;
    s->pool = w->pool;
    s->n_threads = tp_n_threads(w->pool);
    s->S = hp->n_audio_state;
    s->H = hp->n_audio_head;
    s->hd = s->S / s->H;
    s->n_text_ctx = hp->n_text_ctx;
    s->n_vocab = hp->n_vocab;
    s->n_mels = hp->n_mels;
    state_sizes z = sizes_of(m, s->n_threads);
    size_t f = sizeof(float);
    float **bufs[] = {&s->x, &s->xn, &s->att, &s->q, &s->k, &s->v, &s->qh, &s->vt};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (!(*bufs[i] = smp_malloc(z.a * f))) goto fail;
    /* packed keys: the padding keys past 1500 stay zero (their scores are never used) */
    if (!(s->kh = smp_calloc(z.kh, f))) goto fail;
    if (!(s->hbuf = smp_malloc(z.hbuf * f)) || !(s->col = smp_malloc(z.col * f))) goto fail;
    if (!(s->ck = smp_calloc(z.ck, sizeof(uint16_t))) || !(s->cv = smp_malloc(z.cv * sizeof(uint16_t))) ||
        !(s->sk = smp_calloc(z.skv, f)) || !(s->sv = smp_calloc(z.skv, f)))
        goto fail;
    float **dbufs[] = {&s->dx, &s->dxn, &s->dq, &s->dk, &s->dv, &s->datt, &s->tmp};
    for (size_t i = 0; i < sizeof dbufs / sizeof *dbufs; i++)
        if (!(*dbufs[i] = smp_malloc(z.d * f))) goto fail;
    if (!(s->dh = smp_malloc(z.dh * f))) goto fail;
    if (!(s->act = smp_malloc(z.act))) goto fail;
    if (!(s->scores = smp_malloc(z.scores * f))) goto fail;
    return s;
fail:
    whisper_state_free(s);
    return NULL;
}

void whisper_state_free(whisper_state *s) {
    if (!s) return;
    void *p[] = {s->x, s->xn, s->att, s->q, s->k, s->v, s->qh, s->kh, s->vt, s->hbuf, s->col, s->ck, s->cv, s->sk,
                 s->sv, s->dx, s->dxn, s->dq, s->dk, s->dv, s->datt, s->tmp, s->dh, s->act, s->scores};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) smp_free(p[i]);
    smp_free(s);
}
