/* model.h - decoder-only transformer language models (llama family, qwen2)
 * run from a GGUF file, and sessions that hold a KV cache.
 *
 * A model is read-only after loading: its weight matrices point into the
 * gguf mapping (never copied or dequantized; only the small 1-D norm and bias
 * vectors are converted to f32 copies), so peak memory is about the file size
 * plus the sessions' KV caches. One model may serve several sessions at once,
 * from several threads; all share the model's thread pool, whose runs are
 * serialised one matmul at a time. A batch workspace (model_batch) runs one
 * forward pass over several sessions together, so one read of the weights
 * advances all of them (continuous batching).
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
typedef struct model_batch model_batch;

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
/* Bytes of KV cache a session of n_ctx positions takes (f16 K and V). */
unsigned long long model_kv_bytes(const model *m, int n_ctx);
int model_n_threads(const model *m);

/* A session: KV cache for up to n_ctx positions (n_ctx <= 0: the model's
 * default; more than the trained context is refused). Its scratch rows for
 * n_batch tokens are allocated by its first model_ctx_eval / model_ctx_embed
 * (which can then fail with -SMP_E_NOMEM); a session evaluated only through
 * model_batch_eval never holds them. */
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

/* ---- several sessions in one forward pass ---- */

/* One entry of a batched pass: append tokens[0..n) (n >= 1) to ctx at its
 * n_past (a decode step is n = 1, a chunk of a prompt n > 1). logits: NULL
 * computes none; otherwise the caller's buffer of n_vocab floats (the last
 * token's) or, with all_logits, n * n_vocab ([token][n_vocab]). tokens and
 * logits are borrowed for the call. */
typedef struct {
    model_ctx *ctx;
    const int32_t *tokens;
    int n;
    float *logits;
    bool all_logits;
} model_batch_seq;

/* Most rows (tokens over all entries) a workspace may hold. */
#define MODEL_BATCH_MAX_ROWS 4096

/* A workspace for passes of up to max_rows rows: the scratch rows every
 * layer needs (about (3 n_embd + 2 q_dim + 2 kv_dim + 2 n_ff) floats a row)
 * plus up to 32 rows of staged logits. -SMP_E_VALIDATION if max_rows is
 * outside 1..MODEL_BATCH_MAX_ROWS. The model must outlive it. */
int model_batch_new(model *m, int max_rows, model_batch **out, char *err, size_t errlen);
void model_batch_free(model_batch *b);
int model_batch_max_rows(const model_batch *b);
/* Message of the last failed model_batch_eval ("" if none), naming the entry
 * ("seqs[2]: token id 9999 at index 0 is outside the vocabulary (0..511)"). */
const char *model_batch_error(const model_batch *b);

/* One forward pass over every entry's tokens together: the matmuls (Q/K/V,
 * output projection, FFN, and the output layer for the rows whose logits are
 * wanted) run over the rows of all entries at once, so the weights are read
 * once per pass; each row is rotated at its own position, its K/V go to its
 * own session's cache, and it attends over its own session's positions
 * 0..its own (causal within its entry). Each session's n_past advances by its
 * n. The logits equal, bit for bit, those model_ctx_eval gives the same
 * session for the same tokens (the kernels' batched products equal their
 * single-row ones).
 * Errors, before anything is computed, leave every session unchanged and a
 * message in model_batch_error(): -SMP_E_VALIDATION for a session of another
 * model (or NULL), the same session in two entries, n < 1 or a token id
 * outside the vocabulary; -SMP_E_TOO_LARGE if an entry's n_past + n exceeds
 * its n_ctx or the entries' rows exceed model_batch_max_rows(). n_seqs == 0
 * does nothing.
 * Threads: a workspace is used by one thread at a time (the model's
 * scheduler), and the sessions in a call must not be used elsewhere during
 * it. Other sessions of the same model may run model_ctx_eval on other
 * threads meanwhile: they share only the pool, whose runs are serialised. */
int model_batch_eval(model_batch *b, const model_batch_seq *seqs, int n_seqs);

#endif
