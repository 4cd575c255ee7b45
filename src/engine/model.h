/* model.h - decoder-only transformer language models (llama family, qwen2)
 * run from a GGUF file, and sessions that hold a KV cache.
 *
 * A model is read-only after loading: its weight matrices point into the
 * gguf mapping (never copied or dequantized; only the small 1-D norm and bias
 * vectors are converted to f32 copies), so peak memory is about the file size
 * plus the sessions' KV caches. One model may serve several sessions at once,
 * from several threads; all share the model's thread pool, whose runs are
 * serialised one matmul at a time.
 *
 * Architectures:
 *   llama  Llama 2/3, Mistral, TinyLlama, SmolLM: RMSNorm, rotary embeddings on
 *          adjacent pairs (x[2i], x[2i+1]), grouped-query attention, SwiGLU
 *          FFN, output.weight or (tied) token_embd.weight as the output layer.
 *   qwen2  the same plus Q/K/V biases, rotary embeddings on halves
 *          (x[i], x[i + n_rot/2]) ("NeoX" style).
 * Hyper-parameters come from `<arch>.*` metadata: context_length,
 * embedding_length, block_count, feed_forward_length, attention.head_count,
 * attention.head_count_kv, attention.key_length, attention.layer_norm_rms_epsilon,
 * rope.dimension_count, rope.freq_base, rope.scaling.type (none | linear) and
 * rope.scaling.factor; the optional rope_freqs.weight tensor divides the
 * rotary frequencies (Llama 3.1 style).
 *
 * KV cache: f16, per layer K as [position][n_head_kv * head_dim] and V
 * transposed as [kv head][head_dim][position], so both attention products read
 * contiguous rows. Its size is fixed by the session's n_ctx; evaluating past it
 * fails with -SMP_E_TOO_LARGE (nothing is evicted silently).
 *
 * Errors: functions return 0 or a negative smp_err code. Loading fills err:
 * -SMP_E_NOT_IMPLEMENTED for an unknown architecture, -SMP_E_FORMAT for a
 * missing tensor, a wrong shape ("tensor 'blk.0.attn_k.weight' has shape
 * [64, 64], expected [64, 32]"), a type the kernels cannot multiply, or bad
 * metadata. Session errors leave a message in model_ctx_error(). */
#ifndef SMP_MODEL_H
#define SMP_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"
#include "engine/threadpool.h"

typedef struct model model;
typedef struct model_ctx model_ctx;

typedef struct {
    int n_ctx;      /* sessions' default context; 0: min(trained context, 4096) */
    int n_threads;  /* own pool size when pool is NULL; 0: one per core */
    int n_batch;    /* most tokens per forward pass; 0: 256 */
    tp_pool *pool;  /* borrowed (outlives the model); NULL: the model makes one */
} model_opts;

/* Open path and load it. opts may be NULL (defaults). On success *out owns the
 * gguf handle. */
int model_load(const char *path, const model_opts *opts, model **out, char *err, size_t errlen);
/* Load from an open gguf. take_gguf: the model closes g in model_free (also
 * when loading fails); otherwise g must outlive the model. */
int model_load_gguf(gguf *g, bool take_gguf, const model_opts *opts, model **out, char *err, size_t errlen);
void model_free(model *m);

const gguf *model_gguf(const model *m);
const char *model_arch_name(const model *m); /* "llama", "qwen2" */
const char *model_name(const model *m);      /* general.name, or "" */
int32_t model_n_vocab(const model *m);
int model_n_ctx_train(const model *m);
int model_n_embd(const model *m);
int model_n_layer(const model *m);
int model_n_threads(const model *m);

/* A session: KV cache and scratch for up to n_ctx positions (n_ctx <= 0: the
 * model's default; more than the trained context is refused). */
int model_ctx_new(model *m, int n_ctx, model_ctx **out, char *err, size_t errlen);
void model_ctx_free(model_ctx *c);
/* Forget everything (n_past = 0). */
void model_ctx_reset(model_ctx *c);
/* Keep only the first n_past positions (to reuse a shared prompt prefix). */
int model_ctx_truncate(model_ctx *c, int n_past);
int model_ctx_n_past(const model_ctx *c);
int model_ctx_n_ctx(const model_ctx *c);
const model *model_ctx_model(const model_ctx *c);
/* Message of the last failed call on this session ("" if none). */
const char *model_ctx_error(const model_ctx *c);

/* Append tokens[0..n) at positions n_past.. and run them (in batches of
 * n_batch, causal attention). logits: NULL computes none; otherwise the
 * caller's buffer of n_vocab floats (the last token's logits) or, with
 * all_logits, n * n_vocab floats ([position][n_vocab]). Fails with
 * -SMP_E_VALIDATION for a token id outside the vocabulary and
 * -SMP_E_TOO_LARGE if n_past + n would exceed n_ctx; the session is unchanged
 * then. */
int model_ctx_eval(model_ctx *c, const int32_t *tokens, int n, float *logits, bool all_logits);
/* The same, asking cancelled(ud) (may be NULL) before each batch of the
 * input: a long prompt stops within one batch of its client leaving or the
 * shutdown deadline, with MODEL_CANCELLED (the cache then holds a prefix). */
int model_ctx_eval_until(model_ctx *c, const int32_t *tokens, int n, float *logits, bool all_logits,
                         bool (*cancelled)(void *ud), void *ud);

/* Embedding of a text: resets the session, runs tokens, and writes to out
 * (n_embd floats) the mean over tokens of the final hidden state (after
 * output_norm), scaled to unit L2 norm. cancelled (may be NULL) is polled
 * before each batch of n_batch tokens; when it says yes the call returns
 * MODEL_CANCELLED (positive) and out holds nothing useful. */
#define MODEL_CANCELLED 1 /* the value of BACKEND_CANCELLED, which it becomes */
int model_ctx_embed(model_ctx *c, const int32_t *tokens, int n, float *out, bool (*cancelled)(void *ud), void *ud);

#endif
