/* model.c - load llama / qwen2 weights from a GGUF file and run the forward
 * pass over batches of tokens, of one session or of several together.
 *
 * Data: struct model holds the hyper-parameters, one `mat` view per weight
 * matrix (pointer into the mapping, type, rows x cols) and small f32 copies
 * of the norm and bias vectors. struct model_ctx (a session) holds the f16 KV
 * cache, per-thread attention rows, and (from its first own eval) a scratch
 * for n_batch rows; struct model_batch (a workspace) holds a scratch for the
 * rows of several sessions. A scratch of nb rows, a row being one token of
 * one session:
 *   x    [nb][n_embd]   residual stream      xb  [nb][n_embd]  normed input
 *   q    [nb][q_dim]    queries (q_dim = n_head * head_dim), att the same
 *   k, v [nb][kv_dim]   new keys / values (kv_dim = n_head_kv * head_dim)
 *   hg, hu [nb][n_ff]   FFN gate and up      tmp [nb][n_embd]  matmul output
 *   act[3]              activations converted for up to three weight types
 *   row_ctx, row_pos, row_tok [nb]   each row's session, position and token
 * and per session:
 *   kc   [layer][n_ctx][kv_dim] f16   vc [layer][kv_dim][n_ctx] f16 (transposed)
 *
 * One forward pass over nt rows (nt = 1 when one session decodes, B when B
 * sessions decode together):
 *   x = embed(tokens)
 *   per layer: xb = rmsnorm(x) * attn_norm
 *              q, k, v = Wq xb (+bq), Wk xb (+bk), Wv xb (+bv)   one pool run
 *              rope(q, k) at each row's position; k, v -> its session's cache
 *              att = softmax(q K^T / sqrt(head_dim), causal) V      per (row, head),
 *                    over the row's own session's positions 0..its own
 *              x += Wo att
 *              xb = rmsnorm(x) * ffn_norm
 *              hg, hu = Wgate xb, Wup xb                           one pool run
 *              x += Wdown (silu(hg) * hu)
 *   logits = Woutput (rmsnorm(x) * output_norm)   for the rows that want them
 * Where the time goes: the matmuls. Their rows are split across the pool and
 * each weight row is read once per pass, for all nt rows (kern_matmul_q), so
 * decoding one session is bound by memory bandwidth and prompts by
 * arithmetic; several sessions decoding together share that read, and on
 * AVX2 with Q4_K weights they are soon bound by the dot-product arithmetic
 * (bench/engine/bench_batch.c). Everything else is O(nt * n_embd) per layer,
 * plus attention, O(nt * n_ctx * q_dim). */
#include "engine/model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/kernels/kernels.h"
#include "engine/tensor_types.h"

#define MODEL_MAX_LAYERS 1024
#define MODEL_MAX_DIM (1 << 20)
#define MODEL_DEFAULT_CTX 4096
#define MODEL_DEFAULT_BATCH 256
/* A token-wise step (norm, rope, swiglu) goes to the pool from this batch size. */
#define MODEL_PAR_TOKENS 4
/* A matmul or attention run with fewer multiply-adds than this stays on the
 * calling thread: waking a sleeping worker costs ~5-10 us, more than a core
 * needs for 64K multiply-adds, and a woken pool then spins ~100 us on a core
 * the rest of the process may want (tiny models such as stories260K never
 * reach it). */
#define MODEL_PAR_MACS (64 * 1024)
/* Logits of a batched pass that go to several callers' buffers are computed
 * this many rows at a time (the output matrix is read once per group). */
#define MODEL_OUT_ROWS 32

typedef enum { ARCH_LLAMA, ARCH_QWEN2 } model_arch;

/* A weight matrix in the mapping: rows of `cols` elements of `type`. */
typedef struct {
    const void *data;
    int type, act_type;
    int rows, cols;
    size_t act_bytes; /* one activation row converted for this type */
} mat;

typedef struct {
    float *attn_norm, *ffn_norm;
    float *bq, *bk, *bv; /* qwen2; NULL for llama */
    mat wq, wk, wv, wo, wg, wu, wd;
} layer;

struct model {
    gguf *g;
    bool own_g;
    model_arch arch;
    char *name;
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx_train, n_rot;
    int q_dim, kv_dim;
    float eps;
    bool rope_neox;
    float *inv_freq; /* n_rot / 2: freq_scale * base^(-2i/n_rot) / freq_factor[i] */
    mat tok_embd, output;
    float *output_norm;
    layer *layers;
    tp_pool *pool;
    bool own_pool;
    int n_ctx_default, n_batch;
    size_t max_act_bytes;
    int max_bf16_cols; /* widest BF16 matrix (0: none) */
};

/* Scratch rows for one forward pass of up to `cap` rows (a row is one token
 * of one sequence). A session makes its own for n_batch rows on its first
 * model_ctx_eval / model_ctx_embed; a batch workspace has one for its rows. */
typedef struct {
    int cap, out_cap;
    float *x, *xb, *q, *k, *v, *att, *tmp, *hg, *hu;
    float *xr;                  /* [cap][max cols]: bf16-rounded input, BF16 models only */
    float *rope_cos, *rope_sin; /* [cap][n_rot/2] */
    void *act[3];
    model_ctx **row_ctx;        /* [cap] each row's session, position and token */
    int *row_pos;
    int32_t *row_tok;
    int *out_row;               /* [cap] rows whose logits are wanted, in output order */
    float **out_dst;            /* [cap] where each of those rows' logits go */
    float *logits;              /* [out_cap][n_vocab] when rows go to several buffers */
} scratch;

typedef enum { OUT_NONE, OUT_LAST, OUT_ALL } out_mode;

/* One sequence's share of a pass: tokens[0..n) at its session's positions
 * n_past..; OUT_LAST writes its last row's logits to out, OUT_ALL every
 * row's ([n][n_vocab]). */
typedef struct {
    model_ctx *c;
    const int32_t *tokens;
    int n;
    out_mode mode;
    float *out;
} pass_seq;

struct model_ctx {
    model *m;
    int n_ctx, n_batch, n_past, n_threads;
    uint16_t *kc, *vc;
    scratch s;       /* for model_ctx_eval; cap 0 until the first one */
    float *scores;   /* [n_threads][n_ctx] */
    uint16_t *v16;   /* [n_threads][kv_dim] */
    char err[256];
};

struct model_batch {
    model *m;
    scratch s;
    pass_seq *seqs;      /* [s.cap]: the entries of the pass being run */
    char err[256];
};

/* ---- loading ---- */

typedef struct {
    const gguf *g;
    const char *arch;
    char *err;
    size_t errlen;
    model *m; /* scratch sizes grow with every matrix loaded */
} loader;

static int load_err(loader *L, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int load_err(loader *L, int code, const char *fmt, ...) {
    if (L->err && L->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(L->err, L->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Integer `<arch>.<suffix>` in [lo, hi]; def < 0 means required. */
static int meta_int(loader *L, const char *suffix, int64_t def, int64_t lo, int64_t hi, int *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    int i = gguf_find_key(L->g, key);
    if (i < 0) {
        if (def < 0) return load_err(L, -SMP_E_FORMAT, "missing metadata key '%s'", key);
        *out = (int)def;
        return 0;
    }
    int64_t v;
    if (gguf_kv_type(L->g, i) == GGUF_TYPE_ARRAY || !gguf_get_i64(L->g, key, &v))
        return load_err(L, -SMP_E_FORMAT, "metadata key '%s' is not an integer", key);
    if (v < lo || v > hi)
        return load_err(L, -SMP_E_FORMAT, "metadata key '%s' = %lld is out of range [%lld, %lld]", key, (long long)v,
                    (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

static int meta_float(loader *L, const char *suffix, double def, double *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    if (gguf_find_key(L->g, key) < 0) {
        *out = def;
        return 0;
    }
    if (!gguf_get_f64(L->g, key, out) || !isfinite(*out))
        return load_err(L, -SMP_E_FORMAT, "metadata key '%s' is not a finite number", key);
    return 0;
}

static const char *shape_str(const gguf_tensor *t, char *buf, size_t n) {
    int o = snprintf(buf, n, "[");
    for (int d = 0; d < t->n_dims && o > 0 && (size_t)o < n; d++)
        o += snprintf(buf + o, n - o, d ? ", %llu" : "%llu", (unsigned long long)t->ne[d]);
    if (o > 0 && (size_t)o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

static int check_shape(loader *L, const gguf_tensor *t, int64_t ne0, int64_t ne1) {
    bool ok = t->ne[0] == (uint64_t)ne0 && t->ne[1] == (uint64_t)ne1 && t->ne[2] == 1 && t->ne[3] == 1;
    if (ne1 == 1 && t->n_dims != 1) ok = false;
    if (ok) return 0;
    char have[96];
    if (ne1 == 1)
        return load_err(L, -SMP_E_FORMAT, "tensor '%s' has shape %s, expected [%lld]", t->name,
                    shape_str(t, have, sizeof have), (long long)ne0);
    return load_err(L, -SMP_E_FORMAT, "tensor '%s' has shape %s, expected [%lld, %lld]", t->name,
                shape_str(t, have, sizeof have), (long long)ne0, (long long)ne1);
}

/* A weight matrix of rows x cols (GGUF shape [cols, rows]). *found tells an
 * optional tensor's absence apart (found NULL: required). */
static int get_mat(loader *L, const char *name, int cols, int rows, mat *out, bool *found) {
    const gguf_tensor *t = gguf_find_tensor(L->g, name);
    if (found) *found = t != NULL;
    if (!t) return found ? 0 : load_err(L, -SMP_E_FORMAT, "missing tensor '%s'", name);
    int rc = check_shape(L, t, cols, rows);
    if (rc) return rc;
    const kern_type_traits *tr = kern_traits(t->type);
    if (!tr || !tr->vec_dot)
        return load_err(L, -SMP_E_FORMAT, "tensor '%s' has type %s, which cannot be used as a weight matrix", name,
                    tt_name(t->type));
    if (cols % tr->blck_elems)
        return load_err(L, -SMP_E_FORMAT, "tensor '%s': %d columns is not a multiple of the %s block (%d)", name, cols,
                    tt_name(t->type), tr->blck_elems);
    *out = (mat){.data = t->data, .type = t->type, .act_type = tr->act_type, .rows = rows, .cols = cols,
                 .act_bytes = kern_row_bytes(tr->act_type, cols)};
    if (out->act_bytes > L->m->max_act_bytes) L->m->max_act_bytes = out->act_bytes;
    if (t->type == TT_BF16 && cols > L->m->max_bf16_cols) L->m->max_bf16_cols = cols;
    return 0;
}

/* A 1-D tensor of n elements, converted to an owned f32 copy. */
static int get_vec(loader *L, const char *name, int n, bool optional, float **out) {
    *out = NULL;
    const gguf_tensor *t = gguf_find_tensor(L->g, name);
    if (!t) return optional ? 0 : load_err(L, -SMP_E_FORMAT, "missing tensor '%s'", name);
    int rc = check_shape(L, t, n, 1);
    if (rc) return rc;
    const kern_type_traits *tr = kern_traits(t->type);
    if (!tr || n % tr->blck_elems)
        return load_err(L, -SMP_E_FORMAT, "tensor '%s' has unsupported type %s", name, tt_name(t->type));
    *out = smp_malloc((size_t)n * sizeof(float));
    if (!*out) return load_err(L, -SMP_E_NOMEM, "out of memory loading '%s'", name);
    tr->dequantize(t->data, *out, n);
    return 0;
}

static int load_hparams(model *m, loader *L) {
    int rc;
    if ((rc = meta_int(L, "block_count", -1, 1, MODEL_MAX_LAYERS, &m->n_layer)) ||
        (rc = meta_int(L, "embedding_length", -1, 1, MODEL_MAX_DIM, &m->n_embd)) ||
        (rc = meta_int(L, "feed_forward_length", -1, 1, MODEL_MAX_DIM, &m->n_ff)) ||
        (rc = meta_int(L, "attention.head_count", -1, 1, 4096, &m->n_head)) ||
        (rc = meta_int(L, "attention.head_count_kv", m->n_head, 1, m->n_head, &m->n_head_kv)) ||
        (rc = meta_int(L, "context_length", -1, 1, 1 << 24, &m->n_ctx_train)))
        return rc;
    if (m->n_head % m->n_head_kv)
        return load_err(L, -SMP_E_FORMAT, "%d attention heads is not a multiple of %d KV heads", m->n_head,
                    m->n_head_kv);
    int hd_default = m->n_embd % m->n_head == 0 ? m->n_embd / m->n_head : -1;
    int vlen;
    if ((rc = meta_int(L, "attention.key_length", hd_default, 1, 65536, &m->head_dim)) ||
        (rc = meta_int(L, "attention.value_length", m->head_dim, 1, 65536, &vlen)))
        return rc;
    if (vlen != m->head_dim)
        return load_err(L, -SMP_E_NOT_IMPLEMENTED, "value length %d differs from key length %d", vlen, m->head_dim);
    if ((rc = meta_int(L, "rope.dimension_count", m->head_dim, 2, m->head_dim, &m->n_rot))) return rc;
    if (m->n_rot % 2) return load_err(L, -SMP_E_FORMAT, "odd rope dimension count %d", m->n_rot);
    m->q_dim = m->n_head * m->head_dim;
    m->kv_dim = m->n_head_kv * m->head_dim;

    double eps, base, factor = 0;
    if ((rc = meta_float(L, "attention.layer_norm_rms_epsilon", 1e-5, &eps)) ||
        (rc = meta_float(L, "rope.freq_base", 10000.0, &base)) ||
        (rc = meta_float(L, "rope.scale_linear", 0, &factor)))
        return rc;
    if (eps < 0 || base <= 0) return load_err(L, -SMP_E_FORMAT, "bad rms epsilon %g or rope base %g", eps, base);
    m->eps = (float)eps;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", L->arch);
    gguf_str st;
    if (gguf_get_str(L->g, key, &st)) {
        bool none = st.len == 4 && !memcmp(st.ptr, "none", 4);
        bool linear = st.len == 6 && !memcmp(st.ptr, "linear", 6);
        if (!none && !linear)
            return load_err(L, -SMP_E_NOT_IMPLEMENTED, "rope scaling '%.*s' is not supported (none, linear)",
                        (int)(st.len > 32 ? 32 : st.len), st.ptr);
        if (none) factor = 0;
        else if ((rc = meta_float(L, "rope.scaling.factor", 0, &factor))) return rc;
    }
    double freq_scale = factor > 0 ? 1.0 / factor : 1.0;

    m->inv_freq = smp_malloc((size_t)(m->n_rot / 2) * sizeof(float));
    if (!m->inv_freq) return load_err(L, -SMP_E_NOMEM, "out of memory");
    float *factors = NULL;
    if ((rc = get_vec(L, "rope_freqs.weight", m->n_rot / 2, true, &factors))) return rc;
    for (int i = 0; i < m->n_rot / 2; i++) {
        double f = freq_scale * pow(base, -2.0 * i / m->n_rot);
        if (factors) f /= factors[i];
        m->inv_freq[i] = (float)f;
    }
    smp_free(factors);
    return 0;
}

static int load_layer(model *m, loader *L, int i) {
    layer *ly = &m->layers[i];
    char nm[96];
    int rc;
#define NAME(s) (snprintf(nm, sizeof nm, "blk.%d.%s", i, s), nm)
    if ((rc = get_vec(L, NAME("attn_norm.weight"), m->n_embd, false, &ly->attn_norm)) ||
        (rc = get_vec(L, NAME("ffn_norm.weight"), m->n_embd, false, &ly->ffn_norm)) ||
        (rc = get_mat(L, NAME("attn_q.weight"), m->n_embd, m->q_dim, &ly->wq, NULL)) ||
        (rc = get_mat(L, NAME("attn_k.weight"), m->n_embd, m->kv_dim, &ly->wk, NULL)) ||
        (rc = get_mat(L, NAME("attn_v.weight"), m->n_embd, m->kv_dim, &ly->wv, NULL)) ||
        (rc = get_mat(L, NAME("attn_output.weight"), m->q_dim, m->n_embd, &ly->wo, NULL)) ||
        (rc = get_mat(L, NAME("ffn_gate.weight"), m->n_embd, m->n_ff, &ly->wg, NULL)) ||
        (rc = get_mat(L, NAME("ffn_up.weight"), m->n_embd, m->n_ff, &ly->wu, NULL)) ||
        (rc = get_mat(L, NAME("ffn_down.weight"), m->n_ff, m->n_embd, &ly->wd, NULL)))
        return rc;
    if (m->arch == ARCH_QWEN2) {
        if ((rc = get_vec(L, NAME("attn_q.bias"), m->q_dim, false, &ly->bq)) ||
            (rc = get_vec(L, NAME("attn_k.bias"), m->kv_dim, false, &ly->bk)) ||
            (rc = get_vec(L, NAME("attn_v.bias"), m->kv_dim, false, &ly->bv)))
            return rc;
    }
#undef NAME
    return 0;
}

int model_load_gguf(gguf *g, bool take_gguf, const model_opts *opts, model **out, char *err, size_t errlen) {
    *out = NULL;
    if (err && errlen) err[0] = 0;
    model_opts o = opts ? *opts : (model_opts){0};
    kern_init();
    model *m = smp_calloc(1, sizeof *m);
    if (!m) {
        if (take_gguf) gguf_close(g);
        snprintf(err, errlen, "out of memory");
        return -SMP_E_NOMEM;
    }
    m->g = g;
    m->own_g = take_gguf;
    loader L = {g, NULL, err, errlen, m};
    int rc;

    gguf_str a;
    if (!gguf_get_str(g, "general.architecture", &a)) {
        rc = load_err(&L, -SMP_E_FORMAT, "missing metadata key 'general.architecture'");
        goto fail;
    }
    if (a.len == 5 && !memcmp(a.ptr, "llama", 5)) {
        m->arch = ARCH_LLAMA;
        L.arch = "llama";
    } else if (a.len == 5 && !memcmp(a.ptr, "qwen2", 5)) {
        m->arch = ARCH_QWEN2;
        m->rope_neox = true;
        L.arch = "qwen2";
    } else {
        rc = load_err(&L, -SMP_E_NOT_IMPLEMENTED, "unsupported architecture '%.*s' (supported: llama, qwen2)",
                  (int)(a.len > 64 ? 64 : a.len), a.ptr);
        goto fail;
    }
    gguf_str nm;
    m->name = gguf_get_str(g, "general.name", &nm) ? smp_strndup(nm.ptr, nm.len) : smp_strdup("");
    if (!m->name) {
        rc = load_err(&L, -SMP_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = load_hparams(m, &L))) goto fail;

    const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
    if (!te) {
        rc = load_err(&L, -SMP_E_FORMAT, "missing tensor 'token_embd.weight'");
        goto fail;
    }
    if (te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > (1u << 24)) {
        char have[96];
        rc = load_err(&L, -SMP_E_FORMAT, "tensor 'token_embd.weight' has shape %s, expected [%d, n_vocab]",
                  shape_str(te, have, sizeof have), m->n_embd);
        goto fail;
    }
    m->n_vocab = (int)te->ne[1];
    if ((rc = get_mat(&L, "token_embd.weight", m->n_embd, m->n_vocab, &m->tok_embd, NULL))) goto fail;
    bool has_output;
    if ((rc = get_mat(&L, "output.weight", m->n_embd, m->n_vocab, &m->output, &has_output))) goto fail;
    if (!has_output) m->output = m->tok_embd; /* tied embeddings */
    if ((rc = get_vec(&L, "output_norm.weight", m->n_embd, false, &m->output_norm))) goto fail;

    m->layers = smp_calloc((size_t)m->n_layer, sizeof *m->layers);
    if (!m->layers) {
        rc = load_err(&L, -SMP_E_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < m->n_layer; i++)
        if ((rc = load_layer(m, &L, i))) goto fail;

    if (o.pool) {
        m->pool = o.pool;
    } else {
        if ((rc = tp_new(o.n_threads, &m->pool))) {
            load_err(&L, rc, "cannot start the thread pool");
            goto fail;
        }
        m->own_pool = true;
    }
    int def_ctx = m->n_ctx_train < MODEL_DEFAULT_CTX ? m->n_ctx_train : MODEL_DEFAULT_CTX;
    m->n_ctx_default = o.n_ctx > 0 && o.n_ctx < m->n_ctx_train ? o.n_ctx : o.n_ctx > 0 ? m->n_ctx_train : def_ctx;
    m->n_batch = o.n_batch > 0 ? o.n_batch : MODEL_DEFAULT_BATCH;
    *out = m;
    return 0;
fail:
    model_free(m);
    return rc;
}

int model_load(const char *path, const model_opts *opts, model **out, char *err, size_t errlen) {
    *out = NULL;
    gguf *g;
    int rc = gguf_open(path, &g, err, errlen);
    if (rc) return rc;
    return model_load_gguf(g, true, opts, out, err, errlen);
}

void model_free(model *m) {
    if (!m) return;
    if (m->layers) {
        for (int i = 0; i < m->n_layer; i++) {
            layer *ly = &m->layers[i];
            smp_free(ly->attn_norm);
            smp_free(ly->ffn_norm);
            smp_free(ly->bq);
            smp_free(ly->bk);
            smp_free(ly->bv);
        }
        smp_free(m->layers);
    }
    smp_free(m->output_norm);
    smp_free(m->inv_freq);
    smp_free(m->name);
    if (m->own_pool) tp_free(m->pool);
    if (m->own_g) gguf_close(m->g);
    smp_free(m);
}

const gguf *model_gguf(const model *m) { return m->g; }
const char *model_arch_name(const model *m) { return m->arch == ARCH_QWEN2 ? "qwen2" : "llama"; }
const char *model_name(const model *m) { return m->name; }
int32_t model_n_vocab(const model *m) { return m->n_vocab; }
int model_n_ctx_train(const model *m) { return m->n_ctx_train; }
int model_n_embd(const model *m) { return m->n_embd; }
int model_n_layer(const model *m) { return m->n_layer; }
int model_n_threads(const model *m) { return tp_n_threads(m->pool); }

unsigned long long model_kv_bytes(const model *m, int n_ctx) {
    return 2ull * (unsigned long long)m->n_layer * (unsigned long long)n_ctx * (unsigned long long)m->kv_dim *
           sizeof(uint16_t);
}

/* ---- scratch, sessions, batch workspaces ---- */

static void scratch_free(scratch *s) {
    void *p[] = {s->x, s->xb, s->tmp, s->q, s->att, s->k, s->v, s->hg, s->hu, s->rope_cos, s->rope_sin, s->xr,
                 s->act[0], s->act[1], s->act[2], s->row_ctx, s->row_pos, s->row_tok, s->out_row, s->out_dst,
                 s->logits};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) smp_free(p[i]);
    memset(s, 0, sizeof *s);
}

/* Buffers for passes of up to cap rows; out_cap rows of logits staged when a
 * pass sends logits to several callers' buffers (0: never). */
static int scratch_alloc(const model *m, scratch *s, int cap, int out_cap) {
    size_t nb = (size_t)cap;
    s->x = smp_malloc(nb * m->n_embd * sizeof(float));
    s->xb = smp_malloc(nb * m->n_embd * sizeof(float));
    s->tmp = smp_malloc(nb * m->n_embd * sizeof(float));
    s->q = smp_malloc(nb * m->q_dim * sizeof(float));
    s->att = smp_malloc(nb * m->q_dim * sizeof(float));
    s->k = smp_malloc(nb * m->kv_dim * sizeof(float));
    s->v = smp_malloc(nb * m->kv_dim * sizeof(float));
    s->hg = smp_malloc(nb * m->n_ff * sizeof(float));
    s->hu = smp_malloc(nb * m->n_ff * sizeof(float));
    s->rope_cos = smp_malloc(nb * (m->n_rot / 2) * sizeof(float));
    s->rope_sin = smp_malloc(nb * (m->n_rot / 2) * sizeof(float));
    s->row_ctx = smp_malloc(nb * sizeof *s->row_ctx);
    s->row_pos = smp_malloc(nb * sizeof *s->row_pos);
    s->row_tok = smp_malloc(nb * sizeof *s->row_tok);
    s->out_row = smp_malloc(nb * sizeof *s->out_row);
    s->out_dst = smp_malloc(nb * sizeof *s->out_dst);
    bool ok = s->x && s->xb && s->tmp && s->q && s->att && s->k && s->v && s->hg && s->hu && s->rope_cos &&
              s->rope_sin && s->row_ctx && s->row_pos && s->row_tok && s->out_row && s->out_dst;
    if (ok && m->max_bf16_cols) ok = (s->xr = smp_malloc(nb * m->max_bf16_cols * sizeof(float)));
    for (int i = 0; i < 3 && ok && m->max_act_bytes; i++) ok = (s->act[i] = smp_malloc(nb * m->max_act_bytes));
    if (ok && out_cap) ok = (s->logits = smp_malloc((size_t)out_cap * m->n_vocab * sizeof(float)));
    if (!ok) {
        scratch_free(s);
        return -SMP_E_NOMEM;
    }
    s->cap = cap;
    s->out_cap = out_cap;
    return 0;
}

int model_ctx_new(model *m, int n_ctx, model_ctx **out, char *err, size_t errlen) {
    *out = NULL;
    if (n_ctx <= 0) n_ctx = m->n_ctx_default;
    if (n_ctx > m->n_ctx_train) {
        snprintf(err, errlen, "context of %d tokens exceeds the model's trained context (%d)", n_ctx, m->n_ctx_train);
        return -SMP_E_VALIDATION;
    }
    model_ctx *c = smp_calloc(1, sizeof *c);
    if (!c) goto nomem;
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_batch = m->n_batch < n_ctx ? m->n_batch : n_ctx;
    c->n_threads = tp_n_threads(m->pool);
    size_t kv = (size_t)m->n_layer * n_ctx * m->kv_dim;
    c->kc = smp_malloc(kv * sizeof(uint16_t));
    c->vc = smp_malloc(kv * sizeof(uint16_t));
    c->scores = smp_malloc((size_t)c->n_threads * n_ctx * sizeof(float));
    c->v16 = smp_malloc((size_t)c->n_threads * m->kv_dim * sizeof(uint16_t));
    if (!c->kc || !c->vc || !c->scores || !c->v16) goto nomem;
    *out = c;
    return 0;
nomem:
    model_ctx_free(c);
    snprintf(err, errlen, "out of memory for a context of %d tokens", n_ctx);
    return -SMP_E_NOMEM;
}

void model_ctx_free(model_ctx *c) {
    if (!c) return;
    scratch_free(&c->s);
    smp_free(c->kc);
    smp_free(c->vc);
    smp_free(c->scores);
    smp_free(c->v16);
    smp_free(c);
}

/* The session's own scratch, made on first use. */
static int ctx_scratch(model_ctx *c) {
    if (c->s.cap || scratch_alloc(c->m, &c->s, c->n_batch, 0) == 0) return 0;
    snprintf(c->err, sizeof c->err, "out of memory for the scratch rows of %d tokens", c->n_batch);
    return -SMP_E_NOMEM;
}

void model_ctx_reset(model_ctx *c) {
    c->n_past = 0;
    c->err[0] = 0;
}

int model_ctx_truncate(model_ctx *c, int n_past) {
    if (n_past < 0 || n_past > c->n_past) {
        snprintf(c->err, sizeof c->err, "cannot truncate to %d positions (have %d)", n_past, c->n_past);
        return -SMP_E_VALIDATION;
    }
    c->n_past = n_past;
    return 0;
}

int model_ctx_n_past(const model_ctx *c) { return c->n_past; }
int model_ctx_n_ctx(const model_ctx *c) { return c->n_ctx; }
const model *model_ctx_model(const model_ctx *c) { return c->m; }
const char *model_ctx_error(const model_ctx *c) { return c->err; }

int model_batch_new(model *m, int max_rows, model_batch **out, char *err, size_t errlen) {
    *out = NULL;
    if (max_rows < 1 || max_rows > MODEL_BATCH_MAX_ROWS) {
        snprintf(err, errlen, "batch of %d rows is outside 1..%d", max_rows, MODEL_BATCH_MAX_ROWS);
        return -SMP_E_VALIDATION;
    }
    model_batch *b = smp_calloc(1, sizeof *b);
    int out_cap = max_rows < MODEL_OUT_ROWS ? max_rows : MODEL_OUT_ROWS;
    if (!b || !(b->seqs = smp_malloc((size_t)max_rows * sizeof *b->seqs)) ||
        scratch_alloc(m, &b->s, max_rows, out_cap)) {
        model_batch_free(b);
        snprintf(err, errlen, "out of memory for a batch of %d rows", max_rows);
        return -SMP_E_NOMEM;
    }
    b->m = m;
    *out = b;
    return 0;
}

void model_batch_free(model_batch *b) {
    if (!b) return;
    scratch_free(&b->s);
    smp_free(b->seqs);
    smp_free(b);
}

int model_batch_max_rows(const model_batch *b) { return b->s.cap; }
const char *model_batch_error(const model_batch *b) { return b->err; }

/* ---- matmuls on the pool ---- */

/* One weight applied to nt activation rows: y[t*ldy + r] = W[r] . act_t (+ bias[r]);
 * with resid, resid[t*ldy + r] += that instead of keeping it only in y. */
typedef struct {
    const mat *w;
    const void *act;
    float *y, *resid;
    const float *bias;
    int ldy, chunk, n_chunks;
} mm_part;

typedef struct {
    mm_part p[3];
    int n, nt;
} mm_job;

static void mm_task(void *arg, int task, int thread) {
    (void)thread;
    mm_job *j = arg;
    int i = 0;
    while (task >= j->p[i].n_chunks) task -= j->p[i++].n_chunks;
    const mm_part *p = &j->p[i];
    const mat *w = p->w;
    int r0 = task * p->chunk, r1 = r0 + p->chunk < w->rows ? r0 + p->chunk : w->rows;
    if (j->nt == 1) kern_matvec_q(w->type, w->data, w->cols, p->act, p->y, r0, r1);
    else kern_matmul_q(w->type, w->data, w->cols, p->act, j->nt, p->y, p->ldy, r0, r1);
    if (!p->bias && !p->resid) return;
    for (int t = 0; t < j->nt; t++) {
        float *y = p->y + (size_t)t * p->ldy;
        if (p->bias)
            for (int r = r0; r < r1; r++) y[r] += p->bias[r];
        if (p->resid) {
            float *x = p->resid + (size_t)t * p->ldy;
            for (int r = r0; r < r1; r++) x[r] += y[r];
        }
    }
}

typedef struct {
    int wtype, cols;
    const float *x;
    void *act;
    size_t act_bytes;
} quant_job;

static void quant_task(void *arg, int t, int thread) {
    (void)thread;
    quant_job *q = arg;
    kern_quantize_act(q->wtype, q->x + (size_t)t * q->cols, q->cols, (char *)q->act + (size_t)t * q->act_bytes);
}

typedef struct {
    const float *x;
    float *out;
    int cols;
} bf16_job;

static void bf16_task(void *arg, int t, int thread) {
    (void)thread;
    bf16_job *b = arg;
    const kern_type_traits *tr = kern_traits(TT_BF16);
    size_t off = (size_t)t * b->cols;
    uint16_t tmp[1024];
    for (int i = 0; i < b->cols; i += 1024) {
        int k = b->cols - i < 1024 ? b->cols - i : 1024;
        tr->quantize(b->x + off + i, tmp, k);
        tr->dequantize(tmp, b->out + off + i, k);
    }
}

/* Y_i = W_i X for up to three weights sharing the input X [nt][cols]: X is
 * converted once per activation type, then one pool run covers every row of
 * every weight. */
static void matmul(const model *m, scratch *s, int nt, const float *x, int n, const mat *const *w, float *const *y,
                   float *const *resid, const float *const *bias) {
    mm_job j = {.n = n, .nt = nt};
    int act_types[3];
    int n_act = 0, total_rows = 0;
    bool bf16_done = false;
    for (int i = 0; i < n; i++) {
        const mat *wi = w[i];
        const void *act = x;
        if (wi->type == TT_BF16 && wi->act_type == TT_F32) {
            /* The GGUF ecosystem multiplies BF16 weights with activations
             * rounded to bf16; the reference logits need that rounding too. */
            if (!bf16_done) {
                bf16_job b = {x, s->xr, wi->cols};
                if (nt >= MODEL_PAR_TOKENS) tp_run(m->pool, bf16_task, &b, nt);
                else
                    for (int t = 0; t < nt; t++) bf16_task(&b, t, 0);
                bf16_done = true;
            }
            act = s->xr;
        } else if (wi->act_type != TT_F32) {
            int a = 0;
            while (a < n_act && act_types[a] != wi->act_type) a++;
            if (a == n_act) {
                act_types[n_act++] = wi->act_type;
                quant_job q = {wi->type, wi->cols, x, s->act[a], wi->act_bytes};
                if (nt >= MODEL_PAR_TOKENS) tp_run(m->pool, quant_task, &q, nt);
                else
                    for (int t = 0; t < nt; t++) quant_task(&q, t, 0);
            }
            act = s->act[a];
        }
        j.p[i] = (mm_part){.w = wi, .act = act, .y = y[i], .resid = resid ? resid[i] : NULL,
                           .bias = bias ? bias[i] : NULL, .ldy = wi->rows};
        total_rows += wi->rows;
    }
    /* About eight tasks per thread, in multiples of 16 rows (the kernels' tile). */
    int chunk = total_rows / (tp_n_threads(m->pool) * 8);
    chunk = chunk < 16 ? 16 : (chunk + 15) / 16 * 16;
    int n_tasks = 0;
    for (int i = 0; i < n; i++) {
        j.p[i].chunk = chunk;
        j.p[i].n_chunks = (w[i]->rows + chunk - 1) / chunk;
        n_tasks += j.p[i].n_chunks;
    }
    if ((size_t)total_rows * (size_t)w[0]->cols * (size_t)nt < MODEL_PAR_MACS) {
        for (int t = 0; t < n_tasks; t++) mm_task(&j, t, 0);
    } else {
        tp_run(m->pool, mm_task, &j, n_tasks);
    }
}

static void matmul1(const model *m, scratch *s, int nt, const float *x, const mat *w, float *y, float *resid) {
    matmul(m, s, nt, x, 1, (const mat *const[]){w}, (float *const[]){y}, (float *const[]){resid}, NULL);
}

/* ---- token-wise steps ---- */

/* One forward pass over nt rows of scratch s; row t is a token of session
 * s->row_ctx[t] at position s->row_pos[t]. */
typedef struct {
    const model *m;
    scratch *s;
    int nt, layer;
    const float *norm_w;
    float *out;     /* norm_task: destination rows */
    const int *src; /* norm_task: the row of x each destination row norms (NULL: the same row) */
} pass;

static void rmsnorm_row(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

static void norm_task(void *arg, int t, int thread) {
    (void)thread;
    pass *p = arg;
    int n = p->m->n_embd, r = p->src ? p->src[t] : t;
    rmsnorm_row(p->out + (size_t)t * n, p->s->x + (size_t)r * n, p->norm_w, n, p->m->eps);
}

static void embed_task(void *arg, int t, int thread) {
    (void)thread;
    pass *p = arg;
    const mat *e = &p->m->tok_embd;
    size_t rb = kern_row_bytes(e->type, e->cols);
    kern_traits(e->type)->dequantize((const char *)e->data + (size_t)p->s->row_tok[t] * rb,
                                     p->s->x + (size_t)t * e->cols, e->cols);
}

static void rope_tables_task(void *arg, int t, int thread) {
    (void)thread;
    pass *p = arg;
    const model *m = p->m;
    int half = m->n_rot / 2;
    double pos = p->s->row_pos[t];
    for (int i = 0; i < half; i++) {
        double theta = pos * m->inv_freq[i];
        p->s->rope_cos[(size_t)t * half + i] = (float)cos(theta);
        p->s->rope_sin[(size_t)t * half + i] = (float)sin(theta);
    }
}

/* Rotate one head: pairs (2i, 2i+1) for llama, (i, i + n_rot/2) for NeoX. */
static void rope_head(float *h, const float *cs, const float *sn, int n_rot, bool neox) {
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        float x0 = h[a], x1 = h[b];
        h[a] = x0 * cs[i] - x1 * sn[i];
        h[b] = x0 * sn[i] + x1 * cs[i];
    }
}

/* Rotate q and k of row t and store its k and v in its session's cache. */
static void rope_store_task(void *arg, int t, int thread) {
    pass *p = arg;
    const model *m = p->m;
    scratch *s = p->s;
    model_ctx *c = s->row_ctx[t];
    int half = m->n_rot / 2, hd = m->head_dim, kvd = m->kv_dim, pos = s->row_pos[t];
    const float *cs = s->rope_cos + (size_t)t * half, *sn = s->rope_sin + (size_t)t * half;
    float *q = s->q + (size_t)t * m->q_dim, *k = s->k + (size_t)t * kvd, *v = s->v + (size_t)t * kvd;
    for (int h = 0; h < m->n_head; h++) rope_head(q + h * hd, cs, sn, m->n_rot, m->rope_neox);
    for (int h = 0; h < m->n_head_kv; h++) rope_head(k + h * hd, cs, sn, m->n_rot, m->rope_neox);
    size_t lk = (size_t)p->layer * c->n_ctx * kvd;
    kern_f32_to_f16_row(k, c->kc + lk + (size_t)pos * kvd, kvd);
    uint16_t *v16 = c->v16 + (size_t)thread * kvd;
    kern_f32_to_f16_row(v, v16, kvd);
    uint16_t *vc = c->vc + lk + pos;
    for (int j = 0; j < kvd; j++) vc[(size_t)j * c->n_ctx] = v16[j];
}

static void swiglu_task(void *arg, int t, int thread) {
    (void)thread;
    pass *p = arg;
    int n = p->m->n_ff;
    float *g = p->s->hg + (size_t)t * n;
    const float *u = p->s->hu + (size_t)t * n;
    for (int i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* Causal attention of row t (task / n_head), head h (task % n_head) over its
 * session's cache positions 0..its own. The scores go to the session's
 * per-thread row, so rows of different sessions never share one. */
static void attn_task(void *arg, int task, int thread) {
    pass *p = arg;
    const model *m = p->m;
    scratch *s = p->s;
    int t = task / m->n_head, h = task % m->n_head, hd = m->head_dim, kvd = m->kv_dim;
    const model_ctx *c = s->row_ctx[t];
    int g = h / (m->n_head / m->n_head_kv), nk = s->row_pos[t] + 1;
    kern_dot_fn dot = kern_traits(TT_F16)->vec_dot; /* f16 cache row . f32 vector */
    const float *q = s->q + (size_t)t * m->q_dim + (size_t)h * hd;
    const uint16_t *kc = c->kc + (size_t)p->layer * c->n_ctx * kvd + (size_t)g * hd;
    const uint16_t *vc = c->vc + (size_t)p->layer * c->n_ctx * kvd + (size_t)g * hd * c->n_ctx;
    float *sc = c->scores + (size_t)thread * c->n_ctx;
    float scale = 1.0f / sqrtf((float)hd), mx = -INFINITY;
    for (int j = 0; j < nk; j++) {
        sc[j] = dot(hd, kc + (size_t)j * kvd, q) * scale;
        if (sc[j] > mx) mx = sc[j];
    }
    double sum = 0;
    for (int j = 0; j < nk; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < nk; j++) sc[j] *= inv;
    float *out = s->att + (size_t)t * m->q_dim + (size_t)h * hd;
    for (int d = 0; d < hd; d++) out[d] = dot(nk, vc + (size_t)d * c->n_ctx, sc);
}

static void run_steps(pass *p, tp_fn fn, int n) {
    if (n >= MODEL_PAR_TOKENS) {
        tp_run(p->m->pool, fn, p, n);
    } else {
        for (int t = 0; t < n; t++) fn(p, t, 0);
    }
}

/* ---- the forward pass ---- */

/* Logits of the rows the sequences want: output_norm, then one product with
 * the output matrix. When they all go to one caller buffer in order (a
 * single sequence) they are written there; otherwise they are staged in
 * s->logits, out_cap rows at a time, and copied out. */
static void logits(pass *p, const pass_seq *seqs, int n_seqs) {
    const model *m = p->m;
    scratch *s = p->s;
    int nv = m->n_vocab, n_out = 0, row0 = 0;
    for (int i = 0; i < n_seqs; row0 += seqs[i++].n) {
        const pass_seq *q = &seqs[i];
        if (q->mode == OUT_NONE) continue;
        for (int j = q->mode == OUT_LAST ? q->n - 1 : 0; j < q->n; j++, n_out++) {
            s->out_row[n_out] = row0 + j;
            s->out_dst[n_out] = q->out + (size_t)(q->mode == OUT_ALL ? j : 0) * nv;
        }
    }
    if (!n_out) return;
    p->norm_w = m->output_norm;
    p->out = s->xb;
    p->src = s->out_row;
    run_steps(p, norm_task, n_out);
    p->src = NULL;
    bool direct = true;
    for (int i = 1; i < n_out && direct; i++) direct = s->out_dst[i] == s->out_dst[i - 1] + nv;
    if (direct) {
        matmul1(m, s, n_out, s->xb, &m->output, s->out_dst[0], NULL);
        return;
    }
    SMP_ASSERT(s->out_cap > 0);
    for (int i = 0; i < n_out; i += s->out_cap) {
        int k = n_out - i < s->out_cap ? n_out - i : s->out_cap;
        matmul1(m, s, k, s->xb + (size_t)i * m->n_embd, &m->output, s->logits, NULL);
        for (int j = 0; j < k; j++) memcpy(s->out_dst[i + j], s->logits + (size_t)j * nv, (size_t)nv * sizeof(float));
    }
}

/* One forward pass over the rows of every sequence in seqs, in that order
 * (checked by the callers: at most s->cap rows, n_past + n <= n_ctx for
 * each, ids valid, sessions distinct). Each session's n_past advances by its
 * n; the final hidden states (before output_norm) stay in s->x. */
static void forward(const model *m, scratch *s, const pass_seq *seqs, int n_seqs) {
    int nt = 0;
    size_t att_macs = 0; /* q.k and p.v over the cached positions, every head */
    for (int i = 0; i < n_seqs; i++) {
        const pass_seq *q = &seqs[i];
        for (int j = 0; j < q->n; j++, nt++) {
            s->row_ctx[nt] = q->c;
            s->row_pos[nt] = q->c->n_past + j;
            s->row_tok[nt] = q->tokens[j];
            att_macs += (size_t)(q->c->n_past + j + 1);
        }
    }
    att_macs *= (size_t)m->n_head * (size_t)m->head_dim * 2;
    pass p = {.m = m, .s = s, .nt = nt};
    run_steps(&p, embed_task, nt);
    run_steps(&p, rope_tables_task, nt);
    for (int l = 0; l < m->n_layer; l++) {
        const layer *ly = &m->layers[l];
        p.layer = l;
        p.norm_w = ly->attn_norm;
        p.out = s->xb;
        run_steps(&p, norm_task, nt);
        matmul(m, s, nt, s->xb, 3, (const mat *const[]){&ly->wq, &ly->wk, &ly->wv},
               (float *const[]){s->q, s->k, s->v}, NULL, (const float *const[]){ly->bq, ly->bk, ly->bv});
        run_steps(&p, rope_store_task, nt);
        if (att_macs < MODEL_PAR_MACS) {
            for (int t = 0; t < nt * m->n_head; t++) attn_task(&p, t, 0);
        } else {
            tp_run(m->pool, attn_task, &p, nt * m->n_head);
        }
        matmul1(m, s, nt, s->att, &ly->wo, s->tmp, s->x);
        p.norm_w = ly->ffn_norm;
        run_steps(&p, norm_task, nt);
        matmul(m, s, nt, s->xb, 2, (const mat *const[]){&ly->wg, &ly->wu}, (float *const[]){s->hg, s->hu}, NULL,
               NULL);
        run_steps(&p, swiglu_task, nt);
        matmul1(m, s, nt, s->hg, &ly->wd, s->tmp, s->x);
    }
    for (int i = 0; i < n_seqs; i++) seqs[i].c->n_past += seqs[i].n;
    logits(&p, seqs, n_seqs);
}

/* ---- evaluation entry points ---- */

/* tokens[0..n) fit session c and are in its vocabulary; who prefixes the
 * message written to err. */
static int check_input(const model_ctx *c, const int32_t *tokens, int n, const char *who, char *err, size_t errlen) {
    if (n < 0 || (n > 0 && !tokens)) {
        snprintf(err, errlen, "%sbad token count %d", who, n);
        return -SMP_E_VALIDATION;
    }
    if (n > c->n_ctx - c->n_past) {
        snprintf(err, errlen, "%scontext full: %d tokens + %d new exceed the context size %d", who, c->n_past, n,
                 c->n_ctx);
        return -SMP_E_TOO_LARGE;
    }
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->n_vocab) {
            snprintf(err, errlen, "%stoken id %d at index %d is outside the vocabulary (0..%d)", who, tokens[i], i,
                     c->m->n_vocab - 1);
            return -SMP_E_VALIDATION;
        }
    return 0;
}

int model_ctx_eval(model_ctx *c, const int32_t *tokens, int n, float *logits, bool all_logits) {
    return model_ctx_eval_until(c, tokens, n, logits, all_logits, NULL, NULL);
}

int model_ctx_eval_until(model_ctx *c, const int32_t *tokens, int n, float *logits, bool all_logits,
                         bool (*cancelled)(void *ud), void *ud) {
    c->err[0] = 0;
    int rc = check_input(c, tokens, n, "", c->err, sizeof c->err);
    if (rc || n == 0 || (rc = ctx_scratch(c))) return rc;
    for (int i = 0; i < n; i += c->n_batch) {
        if (cancelled && cancelled(ud)) return MODEL_CANCELLED;
        pass_seq q = {.c = c, .tokens = tokens + i, .n = n - i < c->n_batch ? n - i : c->n_batch};
        if (logits && all_logits) {
            q.mode = OUT_ALL;
            q.out = logits + (size_t)i * c->m->n_vocab;
        } else if (logits && i + q.n == n) {
            q.mode = OUT_LAST;
            q.out = logits;
        }
        forward(c->m, &c->s, &q, 1);
    }
    return 0;
}

int model_ctx_embed(model_ctx *c, const int32_t *tokens, int n, float *out, bool (*cancelled)(void *ud), void *ud) {
    model_ctx_reset(c);
    int rc = check_input(c, tokens, n, "", c->err, sizeof c->err);
    if (rc) return rc;
    if (n == 0) {
        snprintf(c->err, sizeof c->err, "nothing to embed (no tokens)");
        return -SMP_E_VALIDATION;
    }
    if ((rc = ctx_scratch(c))) return rc;
    const model *m = c->m;
    int d = m->n_embd;
    memset(out, 0, (size_t)d * sizeof(float));
    for (int i = 0; i < n; i += c->n_batch) {
        if (cancelled && cancelled(ud)) return MODEL_CANCELLED;
        pass_seq q = {.c = c, .tokens = tokens + i, .n = n - i < c->n_batch ? n - i : c->n_batch};
        forward(m, &c->s, &q, 1);
        for (int t = 0; t < q.n; t++) {
            rmsnorm_row(c->s.xb, c->s.x + (size_t)t * d, m->output_norm, d, m->eps);
            for (int k = 0; k < d; k++) out[k] += c->s.xb[k];
        }
    }
    double ss = 0;
    for (int i = 0; i < d; i++) {
        out[i] /= (float)n;
        ss += (double)out[i] * out[i];
    }
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (int i = 0; i < d; i++) out[i] *= inv;
    return 0;
}

int model_batch_eval(model_batch *b, const model_batch_seq *seqs, int n_seqs) {
    b->err[0] = 0;
    if (n_seqs < 0 || (n_seqs > 0 && !seqs)) {
        snprintf(b->err, sizeof b->err, "bad sequence count %d", n_seqs);
        return -SMP_E_VALIDATION;
    }
    int rows = 0;
    for (int i = 0; i < n_seqs; i++) {
        const model_batch_seq *q = &seqs[i];
        char who[32];
        snprintf(who, sizeof who, "seqs[%d]: ", i);
        if (!q->ctx || q->ctx->m != b->m) {
            snprintf(b->err, sizeof b->err, "%sthe session is not one of this model's", who);
            return -SMP_E_VALIDATION;
        }
        for (int j = 0; j < i; j++)
            if (seqs[j].ctx == q->ctx) {
                snprintf(b->err, sizeof b->err, "seqs[%d] and seqs[%d] are the same session", j, i);
                return -SMP_E_VALIDATION;
            }
        if (q->n < 1) {
            snprintf(b->err, sizeof b->err, "%sbad token count %d (at least 1)", who, q->n);
            return -SMP_E_VALIDATION;
        }
        if (q->n > b->s.cap - rows) {
            snprintf(b->err, sizeof b->err, "%s%d tokens after %d overflow the batch of %d rows", who, q->n, rows,
                     b->s.cap);
            return -SMP_E_TOO_LARGE;
        }
        int rc = check_input(q->ctx, q->tokens, q->n, who, b->err, sizeof b->err);
        if (rc) return rc;
        rows += q->n;
    }
    if (n_seqs == 0) return 0;
    /* n_seqs <= rows <= cap: the pass_seq array fits in the rows' own. */
    pass_seq *ps = b->seqs;
    for (int i = 0; i < n_seqs; i++) {
        const model_batch_seq *q = &seqs[i];
        ps[i] = (pass_seq){.c = q->ctx, .tokens = q->tokens, .n = q->n, .out = q->logits,
                           .mode = !q->logits ? OUT_NONE : q->all_logits ? OUT_ALL : OUT_LAST};
    }
    forward(b->m, &b->s, ps, n_seqs);
    return 0;
}
