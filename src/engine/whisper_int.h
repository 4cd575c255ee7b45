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
/* The bytes whisper_state_new allocates for m. */
size_t whisper_state_bytes(const whisper_model *m);
void whisper_state_free(whisper_state *s);

/* Log-mel of the whole audio, [n_mels][*n_frames] band-major, with whisper's
 * padding (30 s of zeros after the samples, so every 3000-frame window that
 * starts before the end of the audio is defined) and clamp (max - 8, then
 * (x + 4) / 4) over all frames. *mel owned by the caller. Returns 0 or
 * -SMP_E_NOMEM. */
int whisper_mel(const whisper_model *m, const float *pcm, size_t n_samples, float **mel, int *n_frames);

/* Raw log-mel (log10 of each band's energy, before the floor and scaling)
 * of frames [t0, t0 + count) into out[band * stride + t - t0]. seg holds
 * samples [base, base + seg_len) of an audio of n_total samples; the frames
 * read samples max(0, 160 t0 - 200) .. 160 (t0 + count) + 40 (reflected
 * at the start, 0 from n_total on), which seg must hold. The values equal
 * those of the same frames in whisper_mel's whole-audio computation, bit for
 * bit. Returns 0 or -SMP_E_NOMEM. */
int whisper_mel_frames(const whisper_model *m, const float *seg, size_t base, size_t seg_len, size_t n_total, long t0,
                       int count, float *out, int stride);
/* whisper's floor and scaling of n raw values, in place, with mx the largest
 * raw value of the whole audio: x = (max(x, mx - 8) + 4) / 4. */
void whisper_mel_scale(float *x, size_t n, float mx);

/* The same from explicit filters ([n_mels][201]) on a pool (NULL: the calling
 * thread), for tools without a model file. */
struct tp_pool;
int whisper_mel_ex(const float *filters, int n_mels, struct tp_pool *pool, const float *pcm, size_t n_samples,
                   float **mel, int *n_frames);
/* The standard filter bank (librosa's Slaney-normalised mel for 16 kHz and a
 * 400-point FFT, what the model files carry): n_mels (<= WHISPER_N_MEL_MAX)
 * rows of 201 floats into out. */
void whisper_mel_filters_std(int n_mels, float *out);

/* Run the encoder on the 3000 frames of mel starting at frame `offset`
 * (frames past n_frames read as 0, as in whisper.cpp and OpenAI Whisper),
 * keep its output and the cross-attention K/V in s, and reset the decoder's
 * KV cache. */
int whisper_encode(whisper_state *s, const float *mel, int n_frames, int offset);

/* Decoder over n tokens at positions n_past .. n_past+n-1 (the self-attention
 * KV cache keeps positions < n_past from earlier calls). logits: n_vocab
 * floats for the last token, or, when all_rows, n * n_vocab floats (row i
 * for token i). Returns 0, or -SMP_E_VALIDATION when n_past + n exceeds
 * n_text_ctx. */
int whisper_decode(whisper_state *s, const int32_t *tokens, int n, int n_past, float *logits, bool all_rows);

/* ---- whisper.c's internals, exposed for the golden tests ---- */

/* Greedy decoding of one encoded window under the settings of the golden
 * .greedy.txt files (whisper.cpp whisper_full, no timestamps, no fallback):
 * the prompt is decoded at n_past 0, then before each step every id from sot
 * up is -inf (eot stays), at the first step eot and " " too; argmax, lowest
 * id on a tie; stops after eot (kept in ids) or after max_tokens tokens.
 * ids (and logp when not NULL: each token's log-probability after the
 * filters) hold max_tokens entries. Returns 0 or a whisper_decode error. */
int whisper_greedy_window(const whisper_model *m, whisper_state *s, const int32_t *prompt, int n_prompt, int max_tokens,
                          int32_t *ids, float *logp, int *n_ids);
/* The bytes of the text tokens among ids (specials skipped), NUL-terminated,
 * owned by the caller (smp_free); NULL when memory runs out. */
char *whisper_detokenize(const whisper_model *m, const int32_t *ids, int n, size_t *len);
/* Prompt text -> at most max_ids token ids by greedy longest match over the
 * vocabulary pieces (no BPE merges in the file). Returns the count or
 * -SMP_E_NOMEM. */
int whisper_tokenize_prompt(const whisper_model *m, const char *text, int32_t *ids, int max_ids);
/* A window's prompt: [prev, the last <= 223 of ctx] (when n_ctx > 0), sot,
 * then language and task (multilingual models), then notimestamps (when
 * !timestamps). out needs 228 entries; *n_head = count up to sot included.
 * Returns the count. */
int whisper_prompt_tokens(const whisper_model *m, int lang, bool translate, bool timestamps, const int32_t *ctx,
                          int n_ctx, int32_t *out, int *n_head);
/* The transcription's logit filters on one step (seq: the tokens sampled so
 * far in the window, n of them): specials never, eot and " " not first; with
 * timestamps the pairing, monotonic, first <= 1 s and forced-timestamp rules. */
void whisper_filter_logits(const whisper_model *m, float *logits, const int32_t *seq, int n, bool timestamps);
/* One window's tokens (eot excluded) -> segments (times offset by seek, in
 * 10 ms mel frames, clamped to duration; owned by the caller: free them
 * with whisper_segments_free). Returns the frames to seek forward, or
 * -SMP_E_NOMEM; *n_used = tokens that went into segments (the context). */
long whisper_window_segments(const whisper_model *m, const int32_t *tokens, int n, long seek, long segment_size,
                             double duration, bool timestamps, whisper_segment **segs, int *n_segs, int *n_used);
/* The fallback's compression-ratio estimate of n bytes (zlib-free). */
double whisper_compression_ratio(const char *s, size_t n);
/* Softmax denominators for token selection: sum of exp((l[i] - mx) * scale)
 * over terms above e^-30 (each term stored in out when not NULL); the AVX2
 * version and the plain-loop reference, held to 1e-6 relative by a test. */
double whisper_sum_exp(const float *l, int n, float mx, float scale, float *out);
double whisper_sum_exp_ref(const float *l, int n, float mx, float scale, float *out);

/* Test hook: the forward pass's own fast paths (AVX2 attention scores,
 * softmax with a polynomial exp, GELU with a polynomial erf) against their
 * plain loops; the largest difference (see whisper_forward.c). */
double whisper_attn_kernels_check(void);

#ifdef __AVX2__
#include <immintrin.h>
/* e^x for x <= 0 (scores minus their max): Cephes' expf polynomial on
 * x = n ln2 + r, |r| <= ln2 / 2, then 2^n through the exponent bits; relative
 * error about 2e-7. Inputs below -87 give 0-ish values (never NaN). */
static inline __m256 whisper_exp8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#endif

#endif
