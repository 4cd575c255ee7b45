/* whisper_weights.h - the Whisper weights as the loader (whisper_model.c)
 * hands them to the forward passes (whisper_forward.c); whisper_model's
 * `weights` points to one whisper_weights. Private to those two files.
 *
 * Matrices are row-major rows x cols of a kernel type (kernels.h): a PyTorch
 * Linear weight [out][in] is rows = out, cols = in; a Conv1d weight
 * [out][in][3] is rows = out, cols = in * 3 (column ic * 3 + k). They point
 * into the file mapping when it is aligned for their type, else to an owned
 * aligned copy. Vectors (biases, norms, positional embeddings) are owned f32
 * copies. */
#ifndef SMP_WHISPER_WEIGHTS_H
#define SMP_WHISPER_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/threadpool.h"
#include "engine/whisper_int.h"

typedef struct {
    const void *data;
    int type, rows, cols;
} whisper_mat;

typedef struct {
    float *w, *b;
} whisper_norm;

typedef struct {
    whisper_norm ln;            /* pre-norm of the block's attention input */
    whisper_mat q, k, v, o;
    float *bq, *bv, *bo;        /* no key bias */
} whisper_attn_w;

typedef struct {
    whisper_attn_w attn;        /* self-attention */
    whisper_attn_w cross;       /* decoder only */
    whisper_norm mlp_ln;
    whisper_mat fc1, fc2;       /* state -> 4 state -> state */
    float *b1, *b2;
} whisper_layer_w;

typedef struct {
    tp_pool *pool;
    bool own_pool;
    void *map;                  /* the file, read-only */
    size_t map_len;
    void **owned;               /* copies made by the loader */
    int n_owned, cap_owned;
    whisper_mat conv1, conv2;
    float *conv1_b, *conv2_b;
    float *enc_pos;             /* [n_audio_ctx][n_audio_state] */
    whisper_layer_w *enc, *dec;
    whisper_norm ln_post, dec_ln;
    whisper_mat tok_emb;        /* [n_vocab][n_text_state], also the output projection */
    float *dec_pos;             /* [n_text_ctx][n_text_state] */
} whisper_weights;

#endif
