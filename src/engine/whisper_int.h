/* whisper_int.h - what the Whisper engine's files share: the model (loaded
 * by whisper_model.c), the log-mel (whisper_mel.c), the forward passes
 * (whisper_forward.c) and the decoding loop built on them (whisper.c).
 *
 * Token ids (multilingual vocabulary, n_vocab 51865; the English-only one,
 * 51864, has every special id one lower and no language tokens; large-v3,
 * 51866, has 100 languages so translate and later are one higher):
 *   eot 50257, sot 50258, languages 50259.., translate, transcribe, solm,
 *   prev, nosp, notimestamps, then timestamps 0.00, 0.02, ... 30.00. */
#ifndef SMP_WHISPER_INT_H
#define SMP_WHISPER_INT_H

#include "engine/whisper.h"

typedef struct {
    int n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer;
    int n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype;
} whisper_hparams;

typedef struct {
    int eot, sot, lang0, n_langs, translate, transcribe, solm, prev, nosp, notimestamps, ts0;
} whisper_tokens;

struct whisper_model {
    whisper_hparams hp;
    whisper_tokens tok;
    int n_fft;               /* 201 */
    float *mel_filters;      /* [n_mels][n_fft] */
    int n_text_tokens;       /* ids below this have a text piece */
    char **piece;            /* id -> bytes of the BPE piece (not NUL-terminated) */
    int *piece_len;
    void *weights;           /* whisper_forward.c's own */
    char desc[96];
};

/* Per-call state: encoder output, cross-attention K/V, self-attention KV
 * cache, scratch. One per transcription; never shared between threads. */
typedef struct whisper_state whisper_state;
whisper_state *whisper_state_new(const whisper_model *m);
void whisper_state_free(whisper_state *s);

/* Log-mel of the whole audio, [n_mels][*n_frames] band-major, with whisper's
 * padding (30 s of zeros after the samples, so every 3000-frame window that
 * starts before the end of the audio is defined) and clamp (max - 8, then
 * (x + 4) / 4) over all frames. *mel owned by the caller. Returns 0 or
 * -SMP_E_NOMEM. */
int whisper_mel(const whisper_model *m, const float *pcm, size_t n_samples, float **mel, int *n_frames);

/* Run the encoder on the 3000 frames of mel starting at frame `offset`
 * (frames past n_frames read as the padding value), keep its output and the
 * cross-attention K/V in s, and reset the decoder's KV cache. */
int whisper_encode(whisper_state *s, const float *mel, int n_frames, int offset);

/* Decoder over n tokens at positions n_past .. n_past+n-1 (the self-attention
 * KV cache keeps positions < n_past from earlier calls). logits: n_vocab
 * floats for the last token, or, when all_rows, n * n_vocab floats (row i
 * for token i). Returns 0, or -SMP_E_VALIDATION when n_past + n exceeds
 * n_text_ctx. */
int whisper_decode(whisper_state *s, const int32_t *tokens, int n, int n_past, float *logits, bool all_rows);

#endif
