/* whisper.h - speech to text with Whisper models, in-process.
 *
 * A whisper_model is loaded once (whisper.cpp's ggml .bin files: ggml-base.bin
 * and friends, F32/F16/Q8_0/Q5_0/Q4_0 weights; GGUF Whisper files are not
 * read) and is
 * read-only afterwards: any number of threads may transcribe with the same
 * model at once, each call keeps its own state (mel, encoder output, KV
 * caches). Compute runs on the engine's thread pool.
 *
 * Audio in is 16 kHz mono float PCM in [-1, 1] (src/media/audio.h makes it
 * from any container). */
#ifndef SMP_WHISPER_H
#define SMP_WHISPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WHISPER_SAMPLE_RATE 16000
#define WHISPER_N_MEL_MAX 128 /* large-v3 has 128 bands, the others 80 */
#define WHISPER_N_FRAMES 3000 /* one 30 s window */

typedef struct whisper_model whisper_model;

/* Returns 0; -SMP_E_FORMAT (not a Whisper model, truncated, unknown tensor
 * type: err says which); -SMP_E_IO; -SMP_E_NOMEM. */
int whisper_load(const char *path, whisper_model **out, char *err, size_t errlen);
/* The same with options: n_threads sizes the model's own compute pool (0: one
 * per core); a non-NULL pool is borrowed instead (it must outlive the model). */
struct tp_pool;
typedef struct {
    int n_threads;
    struct tp_pool *pool;
} whisper_load_opts;
int whisper_load_ex(const char *path, const whisper_load_opts *opts, whisper_model **out, char *err, size_t errlen);
void whisper_free(whisper_model *m);
/* "tiny64 f16 (4 layers, 8.2 MB)"-style one-line description. */
const char *whisper_describe(const whisper_model *m);
bool whisper_is_multilingual(const whisper_model *m);
int whisper_n_mels(const whisper_model *m);
int whisper_n_vocab(const whisper_model *m);

typedef struct {
    double start, end; /* seconds from the start of the audio */
    char *text;        /* UTF-8, owned */
    /* The decoding window's figures, as OpenAI's verbose_json reports them
     * (every segment of one 30 s window shares them): mean log-probability
     * of the sampled tokens, gzip-style compression ratio of the text,
     * probability of the no-speech token, and the temperature used. */
    double avg_logprob, compression_ratio, no_speech_prob, temperature;
    long seek; /* where that window starts, in 10 ms mel frames (verbose_json's seek) */
    int32_t *tokens; /* the segment's token ids, timestamps included (owned) */
    int n_tokens;
} whisper_segment;

typedef struct {
    const char *language;  /* ISO 639-1 code ("en"); NULL or "" or "auto": detect */
    bool translate;        /* task translate (to English) instead of transcribe */
    double temperature;    /* first temperature; fallback adds 0.2 up to 1.0 */
    const char *prompt;    /* initial prompt text (vocabulary, style); may be NULL */
    bool timestamps;       /* segments with times (default true) */
    int max_tokens;        /* per 30 s window; <= 0: the model's limit */
    /* Polled between steps (client gone); may be NULL. */
    bool (*cancelled)(void *ud);
    void *cancel_ud;
} whisper_params;

void whisper_params_default(whisper_params *p);

typedef struct {
    char *text;            /* whole transcript (owned) */
    char language[8];      /* detected or given */
    double language_prob;  /* probability of the detected language (1 when given) */
    double duration;       /* seconds of audio */
    whisper_segment *segments;
    int n_segments;
    double mel_ms, encode_ms, decode_ms; /* where the time went (mel_ms includes reading
                                            * the source for it after the first pass) */
} whisper_result;

/* Returns 0; 1 (positive) when cancelled; -SMP_E_VALIDATION (unknown
 * language: err names it); -SMP_E_NOMEM. */
int whisper_transcribe(whisper_model *m, const float *pcm, size_t n_samples, const whisper_params *p,
                       whisper_result *out, char *err, size_t errlen);

/* Audio handed over a piece at a time (src/media/audio.h's audio_stream
 * fits), so a transcription holds one window of samples and of mel, not
 * the whole audio. The source is read to its end up to three times: once to
 * count the samples and gate on voice, then, when there is voice, once for
 * the mel's maximum and once for the windows. */
typedef struct {
    /* Up to cap samples into dst (16 kHz mono float in [-1, 1]); *got = 0 at
     * the end. Returns 0 or a negative code with err set. */
    int (*read)(void *ud, float *dst, size_t cap, size_t *got, char *err, size_t errlen);
    /* Back to the first sample: the same samples follow. 0 or as read. */
    int (*rewind)(void *ud, char *err, size_t errlen);
    void *ud;
} whisper_source;

/* whisper_transcribe on a source (whisper_transcribe itself is this on its
 * array): the same results, and the source's error codes and messages as
 * they come. */
int whisper_transcribe_source(whisper_model *m, const whisper_source *src, const whisper_params *p,
                              whisper_result *out, char *err, size_t errlen);

/* An upper bound of the bytes one transcription with m holds besides the
 * model and its result (state, decoder, one window of samples and of mel,
 * the voice gate's 12 bytes per 20 ms), for audio of the given length;
 * what a caller reserves from a memory budget. */
size_t whisper_transcribe_bytes(const whisper_model *m, double seconds);
void whisper_result_free(whisper_result *r);
/* Free n segments' text and tokens, then the array. NULL ok. */
void whisper_segments_free(whisper_segment *s, int n);

/* ISO code -> language token index (0..98), or -1. */
int whisper_lang_id(const char *code);
const char *whisper_lang_code(int id);
/* Language index -> the lowercase English name OpenAI reports ("english"), or NULL. */
const char *whisper_lang_name(int id);
/* English language name as OpenAI reports it ("english", "haitian creole";
 * any case) -> language index, or -1. */
int whisper_lang_id_by_name(const char *name);

#endif
