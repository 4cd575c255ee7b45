/* model.c - load llama / qwen2 weights from a GGUF file and run the forward
 * pass over batches of tokens.
 *
 * Data: struct model holds the hyper-parameters, one `mat` view per weight
 * matrix (pointer into the mapping, type, rows x cols) and small f32 copies
 * of the norm and bias vectors. struct model_ctx (a session) holds the f16 KV
 * cache and scratch rows for n_batch tokens:
 *   x    [nb][n_embd]   residual stream      xb  [nb][n_embd]  normed input
 *   q    [nb][q_dim]    queries (q_dim = n_head * head_dim), att the same
 *   k, v [nb][kv_dim]   new keys / values (kv_dim = n_head_kv * head_dim)
 *   hg, hu [nb][n_ff]   FFN gate and up      tmp [nb][n_embd]  matmul output
 *   act[3]              activations converted for up to three weight types
 *   kc   [layer][n_ctx][kv_dim] f16   vc [layer][kv_dim][n_ctx] f16 (transposed)
 *
 * One forward pass over nt tokens (nt = 1 when decoding):
 *   x = embed(tokens)
 *   per layer: xb = rmsnorm(x) * attn_norm
 *              q, k, v = Wq xb (+bq), Wk xb (+bk), Wv xb (+bv)   one pool run
 *              rope(q, k); k, v -> cache at positions n_past..
 *              att = softmax(q K^T / sqrt(head_dim), causal) V      per (token, head)
 *              x += Wo att
 *              xb = rmsnorm(x) * ffn_norm
 *              hg, hu = Wgate xb, Wup xb                           one pool run
 *              x += Wdown (silu(hg) * hu)
 *   logits = Woutput (rmsnorm(x) * output_norm)
 * Where the time goes: the matmuls. Their rows are split across the pool and
 * each weight row is read once per pass, for all nt tokens (kern_matmul_q), so
 * decoding is bound by memory bandwidth and prompts by arithmetic. Everything
 * else is O(nt * n_embd) per layer, plus attention, O(nt * n_ctx * q_dim). */
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

struct model_ctx {
    model *m;
    int n_ctx, n_batch, n_past, n_threads;
    uint16_t *kc, *vc;
    float *x, *xb, *q, *k, *v, *att, *tmp, *hg, *hu;
    float *xr;                  /* [nb][max cols]: bf16-rounded input, BF16 models only */
    float *rope_cos, *rope_sin; /* [nb][n_rot/2] */
    void *act[3];
    float *scores;   /* [n_threads][n_ctx] */
    uint16_t *v16;   /* [n_threads][kv_dim] */
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

/* ---- sessions ---- */

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
    size_t nb = (size_t)c->n_batch, kv = (size_t)m->n_layer * n_ctx * m->kv_dim;
    c->kc = smp_malloc(kv * sizeof(uint16_t));
    c->vc = smp_malloc(kv * sizeof(uint16_t));
    c->x = smp_malloc(nb * m->n_embd * sizeof(float));
    c->xb = smp_malloc(nb * m->n_embd * sizeof(float));
    c->tmp = smp_malloc(nb * m->n_embd * sizeof(float));
    c->q = smp_malloc(nb * m->q_dim * sizeof(float));
    c->att = smp_malloc(nb * m->q_dim * sizeof(float));
    c->k = smp_malloc(nb * m->kv_dim * sizeof(float));
    c->v = smp_malloc(nb * m->kv_dim * sizeof(float));
    c->hg = smp_malloc(nb * m->n_ff * sizeof(float));
    c->hu = smp_malloc(nb * m->n_ff * sizeof(float));
    c->rope_cos = smp_malloc(nb * (m->n_rot / 2) * sizeof(float));
    c->rope_sin = smp_malloc(nb * (m->n_rot / 2) * sizeof(float));
    c->scores = smp_malloc((size_t)c->n_threads * n_ctx * sizeof(float));
    c->v16 = smp_malloc((size_t)c->n_threads * m->kv_dim * sizeof(uint16_t));
    if (!c->kc || !c->vc || !c->x || !c->xb || !c->tmp || !c->q || !c->att || !c->k || !c->v || !c->hg ||
        !c->hu || !c->rope_cos || !c->rope_sin || !c->scores || !c->v16)
        goto nomem;
    if (m->max_bf16_cols && !(c->xr = smp_malloc(nb * m->max_bf16_cols * sizeof(float)))) goto nomem;
    for (int i = 0; i < 3; i++)
        if (m->max_act_bytes && !(c->act[i] = smp_malloc(nb * m->max_act_bytes))) goto nomem;
    *out = c;
    return 0;
nomem:
    model_ctx_free(c);
    snprintf(err, errlen, "out of memory for a context of %d tokens", n_ctx);
    return -SMP_E_NOMEM;
}

void model_ctx_free(model_ctx *c) {
    if (!c) return;
    void *p[] = {c->kc, c->vc, c->x, c->xb, c->tmp, c->q, c->att, c->k, c->v, c->hg, c->hu,
                 c->rope_cos, c->rope_sin, c->scores, c->v16, c->xr, c->act[0], c->act[1], c->act[2]};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) smp_free(p[i]);
    smp_free(c);
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
static void matmul(model_ctx *c, int nt, const float *x, int n, const mat *const *w, float *const *y,
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
                bf16_job b = {x, c->xr, wi->cols};
                if (nt >= MODEL_PAR_TOKENS) tp_run(c->m->pool, bf16_task, &b, nt);
                else
                    for (int t = 0; t < nt; t++) bf16_task(&b, t, 0);
                bf16_done = true;
            }
            act = c->xr;
        } else if (wi->act_type != TT_F32) {
            int a = 0;
            while (a < n_act && act_types[a] != wi->act_type) a++;
            if (a == n_act) {
                act_types[n_act++] = wi->act_type;
                quant_job q = {wi->type, wi->cols, x, c->act[a], wi->act_bytes};
                if (nt >= MODEL_PAR_TOKENS) tp_run(c->m->pool, quant_task, &q, nt);
                else
                    for (int t = 0; t < nt; t++) quant_task(&q, t, 0);
            }
            act = c->act[a];
        }
        j.p[i] = (mm_part){.w = wi, .act = act, .y = y[i], .resid = resid ? resid[i] : NULL,
                           .bias = bias ? bias[i] : NULL, .ldy = wi->rows};
        total_rows += wi->rows;
    }
    /* About eight tasks per thread, in multiples of 16 rows (the kernels' tile). */
    int chunk = total_rows / (c->n_threads * 8);
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
        tp_run(c->m->pool, mm_task, &j, n_tasks);
    }
}

static void matmul1(model_ctx *c, int nt, const float *x, const mat *w, float *y, float *resid) {
    matmul(c, nt, x, 1, (const mat *const[]){w}, (float *const[]){y}, (float *const[]){resid}, NULL);
}

/* ---- token-wise steps ---- */

typedef struct {
    model_ctx *c;
    int layer, pos0;
    const float *norm_w;
    float *out;
    const int32_t *tokens;
} step_job;

static void rmsnorm_row(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

static void norm_task(void *arg, int t, int thread) {
    (void)thread;
    step_job *s = arg;
    int n = s->c->m->n_embd;
    rmsnorm_row(s->out + (size_t)t * n, s->c->x + (size_t)t * n, s->norm_w, n, s->c->m->eps);
}

static void embed_task(void *arg, int t, int thread) {
    (void)thread;
    step_job *s = arg;
    const model *m = s->c->m;
    const mat *e = &m->tok_embd;
    size_t rb = kern_row_bytes(e->type, e->cols);
    kern_traits(e->type)->dequantize((const char *)e->data + (size_t)s->tokens[t] * rb, s->c->x + (size_t)t * e->cols,
                                     e->cols);
}

static void rope_tables_task(void *arg, int t, int thread) {
    (void)thread;
    step_job *s = arg;
    const model *m = s->c->m;
    int half = m->n_rot / 2;
    double pos = s->pos0 + t;
    for (int i = 0; i < half; i++) {
        double theta = pos * m->inv_freq[i];
        s->c->rope_cos[(size_t)t * half + i] = (float)cos(theta);
        s->c->rope_sin[(size_t)t * half + i] = (float)sin(theta);
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

/* Rotate q and k of token t and store its k and v in the cache. */
static void rope_store_task(void *arg, int t, int thread) {
    step_job *s = arg;
    model_ctx *c = s->c;
    const model *m = c->m;
    int half = m->n_rot / 2, hd = m->head_dim, kvd = m->kv_dim, pos = s->pos0 + t;
    const float *cs = c->rope_cos + (size_t)t * half, *sn = c->rope_sin + (size_t)t * half;
    float *q = c->q + (size_t)t * m->q_dim, *k = c->k + (size_t)t * kvd, *v = c->v + (size_t)t * kvd;
    for (int h = 0; h < m->n_head; h++) rope_head(q + h * hd, cs, sn, m->n_rot, m->rope_neox);
    for (int h = 0; h < m->n_head_kv; h++) rope_head(k + h * hd, cs, sn, m->n_rot, m->rope_neox);
    size_t lk = (size_t)s->layer * c->n_ctx * kvd;
    kern_f32_to_f16_row(k, c->kc + lk + (size_t)pos * kvd, kvd);
    uint16_t *v16 = c->v16 + (size_t)thread * kvd;
    kern_f32_to_f16_row(v, v16, kvd);
    uint16_t *vc = c->vc + lk + pos;
    for (int j = 0; j < kvd; j++) vc[(size_t)j * c->n_ctx] = v16[j];
}

static void swiglu_task(void *arg, int t, int thread) {
    (void)thread;
    step_job *s = arg;
    int n = s->c->m->n_ff;
    float *g = s->c->hg + (size_t)t * n;
    const float *u = s->c->hu + (size_t)t * n;
    for (int i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* Causal attention of token t (task / n_head), head h (task % n_head) over
 * cache positions 0..pos0+t. */
static void attn_task(void *arg, int task, int thread) {
    step_job *s = arg;
    model_ctx *c = s->c;
    const model *m = c->m;
    int t = task / m->n_head, h = task % m->n_head, hd = m->head_dim, kvd = m->kv_dim;
    int g = h / (m->n_head / m->n_head_kv), nk = s->pos0 + t + 1;
    kern_dot_fn dot = kern_traits(TT_F16)->vec_dot; /* f16 cache row . f32 vector */
    const float *q = c->q + (size_t)t * m->q_dim + (size_t)h * hd;
    const uint16_t *kc = c->kc + (size_t)s->layer * c->n_ctx * kvd + (size_t)g * hd;
    const uint16_t *vc = c->vc + (size_t)s->layer * c->n_ctx * kvd + (size_t)g * hd * c->n_ctx;
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
    float *out = c->att + (size_t)t * m->q_dim + (size_t)h * hd;
    for (int d = 0; d < hd; d++) out[d] = dot(nk, vc + (size_t)d * c->n_ctx, sc);
}

static void run_steps(model_ctx *c, tp_fn fn, step_job *s, int n) {
    if (n >= MODEL_PAR_TOKENS) {
        tp_run(c->m->pool, fn, s, n);
    } else {
        for (int t = 0; t < n; t++) fn(s, t, 0);
    }
}

typedef enum { OUT_NONE, OUT_LAST, OUT_ALL, OUT_EMBED } out_mode;

/* One forward pass over tokens[0..nt) at positions n_past.. (nt <= n_batch,
 * n_past + nt <= n_ctx, ids valid: checked by the callers). OUT_LAST writes
 * the last token's logits to out, OUT_ALL every token's ([nt][n_vocab]),
 * OUT_EMBED adds each token's normed final state to out[n_embd]. */
static void forward(model_ctx *c, const int32_t *tokens, int nt, out_mode mode, float *out) {
    const model *m = c->m;
    step_job s = {.c = c, .pos0 = c->n_past, .tokens = tokens};
    run_steps(c, embed_task, &s, nt);
    run_steps(c, rope_tables_task, &s, nt);
    for (int l = 0; l < m->n_layer; l++) {
        const layer *ly = &m->layers[l];
        s.layer = l;
        s.norm_w = ly->attn_norm;
        s.out = c->xb;
        run_steps(c, norm_task, &s, nt);
        matmul(c, nt, c->xb, 3, (const mat *const[]){&ly->wq, &ly->wk, &ly->wv},
               (float *const[]){c->q, c->k, c->v}, NULL, (const float *const[]){ly->bq, ly->bk, ly->bv});
        run_steps(c, rope_store_task, &s, nt);
        /* q.k and p.v over the cached positions, every head. */
        size_t att_macs = (size_t)nt * (size_t)(c->n_past + nt) * (size_t)m->n_head * (size_t)m->head_dim * 2;
        if (att_macs < MODEL_PAR_MACS) {
            for (int t = 0; t < nt * m->n_head; t++) attn_task(&s, t, 0);
        } else {
            tp_run(m->pool, attn_task, &s, nt * m->n_head);
        }
        matmul1(c, nt, c->att, &ly->wo, c->tmp, c->x);
        s.norm_w = ly->ffn_norm;
        run_steps(c, norm_task, &s, nt);
        matmul(c, nt, c->xb, 2, (const mat *const[]){&ly->wg, &ly->wu}, (float *const[]){c->hg, c->hu}, NULL,
               NULL);
        run_steps(c, swiglu_task, &s, nt);
        matmul1(c, nt, c->hg, &ly->wd, c->tmp, c->x);
    }
    c->n_past += nt;
    if (mode == OUT_NONE) return;
    int n = m->n_embd;
    if (mode == OUT_LAST) {
        rmsnorm_row(c->xb, c->x + (size_t)(nt - 1) * n, m->output_norm, n, m->eps);
        matmul1(c, 1, c->xb, &m->output, out, NULL);
        return;
    }
    s.norm_w = m->output_norm;
    s.out = c->xb;
    run_steps(c, norm_task, &s, nt);
    if (mode == OUT_ALL) {
        matmul1(c, nt, c->xb, &m->output, out, NULL);
        return;
    }
    for (int t = 0; t < nt; t++)
        for (int i = 0; i < n; i++) out[i] += c->xb[(size_t)t * n + i];
}

static int check_tokens(model_ctx *c, const int32_t *tokens, int n) {
    c->err[0] = 0;
    if (n < 0 || (n > 0 && !tokens)) {
        snprintf(c->err, sizeof c->err, "bad token count %d", n);
        return -SMP_E_VALIDATION;
    }
    if (n > c->n_ctx - c->n_past) {
        snprintf(c->err, sizeof c->err, "context full: %d tokens + %d new exceed the context size %d", c->n_past, n,
                 c->n_ctx);
        return -SMP_E_TOO_LARGE;
    }
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->n_vocab) {
            snprintf(c->err, sizeof c->err, "token id %d at index %d is outside the vocabulary (0..%d)", tokens[i], i,
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
    int rc = check_tokens(c, tokens, n);
    if (rc || n == 0) return rc;
    for (int i = 0; i < n; i += c->n_batch) {
        if (cancelled && cancelled(ud)) return MODEL_CANCELLED;
        int nt = n - i < c->n_batch ? n - i : c->n_batch;
        bool last = i + nt == n;
        if (!logits) forward(c, tokens + i, nt, OUT_NONE, NULL);
        else if (all_logits) forward(c, tokens + i, nt, OUT_ALL, logits + (size_t)i * c->m->n_vocab);
        else forward(c, tokens + i, nt, last ? OUT_LAST : OUT_NONE, logits);
    }
    return 0;
}

int model_ctx_embed(model_ctx *c, const int32_t *tokens, int n, float *out, bool (*cancelled)(void *ud), void *ud) {
    model_ctx_reset(c);
    int rc = check_tokens(c, tokens, n);
    if (rc) return rc;
    if (n == 0) {
        snprintf(c->err, sizeof c->err, "nothing to embed (no tokens)");
        return -SMP_E_VALIDATION;
    }
    int d = c->m->n_embd;
    memset(out, 0, (size_t)d * sizeof(float));
    for (int i = 0; i < n; i += c->n_batch) {
        if (cancelled && cancelled(ud)) return MODEL_CANCELLED;
        int nt = n - i < c->n_batch ? n - i : c->n_batch;
        forward(c, tokens + i, nt, OUT_EMBED, out);
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
