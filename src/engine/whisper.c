/* whisper.c - the Whisper decoding loop: audio in, segments of text out.
 *
 * Built on whisper_int.h (mel, encoder, decoder with a KV cache); this file
 * only chooses tokens. One call of whisper_transcribe_source (the audio
 * comes from a whisper_source a piece at a time; whisper_transcribe wraps an
 * array as one):
 *
 *   1. the samples are read once to count them and to keep each 20 ms
 *      frame's RMS for the voice gate (vad_scan); silence throughout ends
 *      here. With voice, they are read again for the largest raw log-mel
 *      value of the whole audio (mel_max), which whisper's clamp needs
 *      before the first window, and once more for the windows: each window's
 *      mel is computed from its own samples (pcm_view, a sliding buffer of
 *      one window) and scaled with that maximum, giving exactly the frames
 *      of a whole-audio mel. Memory: one window of samples and of mel, and
 *      12 bytes per 20 ms of audio, whatever its length;
 *   2. 30 s windows (3000 mel frames) from `seek`; a window with fewer than
 *      200 ms of voiced 20 ms frames (energy gate, below) is skipped without
 *      running the model, and a window that starts with more than 1 s of
 *      silence starts 0.2 s before its first voiced frame instead;
 *   3. per window: encoder; language detection once, on the first voiced
 *      window, when no language is given (decode [sot], softmax over the
 *      language tokens); the prompt
 *         [prev + context (the previous windows' tokens, or the user prompt,
 *         last 223)] + [sot, language, task] (+ [notimestamps])
 *      decoded in two calls, so the row at sot gives the no-speech
 *      probability and the last row the first step's logits;
 *   4. sampling with whisper's logit filters (filter_logits), temperature
 *      fallback (T, T+0.2, .. 1.0 while the text compresses too well, ratio
 *      > 2.4, or the mean logprob is < -1; draws from a splitmix64 stream
 *      seeded by window and attempt, so a transcript is reproducible), the
 *      no-speech check (p(nosp) > 0.6 and mean logprob < -1: no text);
 *   5. timestamp tokens -> segments (times offset by the window start), seek
 *      to the last complete segment's end (or past the whole window); the
 *      window's tokens become the next window's context, unless it needed a
 *      temperature above 0.5.
 * Non-speech symbols are not suppressed (whisper.cpp's suppress_nst default).
 *
 * Main data structures: `pcm_view` (the samples the current window reads),
 * `vad_map` (RMS per 20 ms frame and the voiced threshold), `decoder` (per
 * call: the state, the logits of the step being chosen, the first-step
 * logits kept for the fallback attempts, the sampled tokens), `attempt`
 * (one temperature's statistics) and
 * `transcript` (segments, their bytes, the context tokens). Nothing is
 * global: the model is read-only, so threads transcribe with one model at
 * once, each with its own whisper_state.
 *
 * Compression ratio: zlib is not linked, so the ratio is estimated: a
 * greedy LZ77 parse (32 KiB window, matches of 3..258 bytes) costed like
 * deflate's cheaper block kind (fixed codes, or the literals' entropy plus
 * a code table) and zlib's 6 bytes of framing, over the text's first
 * 8 KiB (matches searched 1024 positions back). On the LibriVox transcripts
 * and repetitive test strings it is within about 10% of zlib's ratio.
 *
 * Prompt text -> tokens: the vocabulary in the model file has no BPE merge
 * ranks, so the prompt is cut by greedy longest match over the pieces. That
 * gives valid tokens and usually the same ones as BPE for common words, but
 * not always the ones OpenAI's tokenizer would choose. */
#include "engine/whisper.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "engine/whisper_int.h"

#define HOP 160                /* samples per mel frame (10 ms) */
#define TS_FRAMES 2            /* mel frames per timestamp step (0.02 s) */
#define PROMPT_CONTEXT_MAX 223 /* n_text_ctx / 2 - 1 previous tokens */
#define TEMP_STEP 0.2
#define TEMP_MAX 1.0
#define COMPRESSION_MAX 2.4
#define LOGPROB_MIN -1.0
#define NO_SPEECH_MIN 0.6
#define MAX_INITIAL_TS 50      /* the first timestamp is at most 1.00 s */
#define CONTEXT_RESET_TEMP 0.5 /* a window decoded hotter than this is no context */
#define MIN_SEEK_FRAMES 100    /* a window moves on by at least 1 s (no crawling on junk timestamps) */
#define PROMPT_TEXT_MAX 8192   /* bytes of prompt text looked at */
#define PIECE_MATCH_MAX 128    /* longest prompt piece tried */
#define COMPRESS_MAX_BYTES 8192 /* the compression estimate looks at this much text */
#define EXP_CUT -30.0f         /* softmax terms below e^-30 of the largest are left out */

/* Voice-activity gate: 20 ms frames; a frame is voiced when its RMS is above
 * both VAD_RMS_MIN (about -50 dBFS) and VAD_FLOOR_X times the audio's noise
 * floor (10th percentile of the frame RMS over the whole audio, so steady
 * noise or hum is not speech); a window needs VAD_MIN_FRAMES voiced frames. */
#define VAD_FRAME 320
#define VAD_RMS_MIN 0.003f
#define VAD_FLOOR_X 2.0f
#define VAD_MIN_FRAMES 10

/* ---- languages: token order of the multilingual vocabulary ---- */

#define N_LANG_CODES 100
static const char *const LANG_CODES[N_LANG_CODES] = {
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it", "id",
    "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur", "hr", "bg",
    "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br",
    "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km", "sn", "yo", "so",
    "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt",
    "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue",
};

int whisper_lang_id(const char *code) {
    if (!code) return -1;
    for (int i = 0; i < N_LANG_CODES; i++)
        if (!strcasecmp(code, LANG_CODES[i])) return i;
    return -1;
}

const char *whisper_lang_code(int id) { return id >= 0 && id < N_LANG_CODES ? LANG_CODES[id] : NULL; }

/* The names OpenAI's API answers with, in LANG_CODES order. */
static const char *const LANG_NAMES[N_LANG_CODES] = {
    "english", "chinese", "german", "spanish", "russian", "korean", "french", "japanese", "portuguese",
    "turkish", "polish", "catalan", "dutch", "arabic", "swedish", "italian", "indonesian", "hindi", "finnish",
    "vietnamese", "hebrew", "ukrainian", "greek", "malay", "czech", "romanian", "danish", "hungarian", "tamil",
    "norwegian", "thai", "urdu", "croatian", "bulgarian", "lithuanian", "latin", "maori", "malayalam", "welsh",
    "slovak", "telugu", "persian", "latvian", "bengali", "serbian", "azerbaijani", "slovenian", "kannada",
    "estonian", "macedonian", "breton", "basque", "icelandic", "armenian", "nepali", "mongolian", "bosnian",
    "kazakh", "albanian", "swahili", "galician", "marathi", "punjabi", "sinhala", "khmer", "shona", "yoruba",
    "somali", "afrikaans", "occitan", "georgian", "belarusian", "tajik", "sindhi", "gujarati", "amharic",
    "yiddish", "lao", "uzbek", "faroese", "haitian creole", "pashto", "turkmen", "nynorsk", "maltese",
    "sanskrit", "luxembourgish", "myanmar", "tibetan", "tagalog", "malagasy", "assamese", "tatar", "hawaiian",
    "lingala", "hausa", "bashkir", "javanese", "sundanese", "cantonese",
};

const char *whisper_lang_name(int id) { return id >= 0 && id < N_LANG_CODES ? LANG_NAMES[id] : NULL; }

int whisper_lang_id_by_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < N_LANG_CODES; i++)
        if (!strcasecmp(name, LANG_NAMES[i])) return i;
    return -1;
}

void whisper_params_default(whisper_params *p) {
    memset(p, 0, sizeof *p);
    p->timestamps = true;
}

void whisper_segments_free(whisper_segment *s, int n) {
    for (int i = 0; s && i < n; i++) {
        smp_free(s[i].text);
        smp_free(s[i].tokens);
    }
    smp_free(s);
}

void whisper_result_free(whisper_result *r) {
    if (!r) return;
    whisper_segments_free(r->segments, r->n_segments);
    smp_free(r->text);
    memset(r, 0, sizeof *r);
}

/* ---- token ids <-> text ---- */

static bool is_text_token(const whisper_model *m, int32_t id) {
    return id >= 0 && id < m->tok.eot && id < m->n_text_tokens;
}

static int append_pieces(const whisper_model *m, buf *b, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++)
        if (is_text_token(m, ids[i]) && buf_append(b, m->piece[ids[i]], (size_t)m->piece_len[ids[i]]))
            return -SMP_E_NOMEM;
    return 0;
}

char *whisper_detokenize(const whisper_model *m, const int32_t *ids, int n, size_t *len) {
    buf b;
    buf_init(&b, 0);
    if (append_pieces(m, &b, ids, n) || buf_reserve(&b, 1)) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b, len);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static int utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
    else return 0;
    if (n < (size_t)len) return 0;
    unsigned cp = c & (0x3F >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* Text for clients: surrounding spaces trimmed, bytes that are not UTF-8
 * (a character split across segments) replaced by U+FFFD, as JSON needs. */
static char *clean_text(const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\n')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n')) n--;
    buf b;
    buf_init(&b, 0);
    for (size_t i = 0; i < n;) {
        int l = utf8_len((const unsigned char *)s + i, n - i);
        int rc = l ? buf_append(&b, s + i, (size_t)l) : buf_append(&b, "\xEF\xBF\xBD", 3);
        if (rc) {
            buf_free(&b);
            return NULL;
        }
        i += l ? (size_t)l : 1;
    }
    if (buf_reserve(&b, 1)) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

/* Piece lookup for the prompt: open addressing over FNV-1a hashes. */
typedef struct {
    int32_t *slot; /* id + 1, 0 empty */
    uint32_t mask;
    int max_len;
} piece_index;

static uint32_t fnv1a(const char *p, int n) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static int piece_index_build(const whisper_model *m, piece_index *ix) {
    int n = m->n_text_tokens < m->tok.eot ? m->n_text_tokens : m->tok.eot;
    uint32_t size = 1;
    while (size < 2u * (uint32_t)n + 2) size <<= 1;
    ix->slot = smp_calloc(size, sizeof *ix->slot);
    if (!ix->slot) return -SMP_E_NOMEM;
    ix->mask = size - 1;
    ix->max_len = 0;
    for (int id = 0; id < n; id++) {
        int len = m->piece_len[id];
        if (len <= 0) continue;
        if (len > ix->max_len) ix->max_len = len;
        uint32_t h = fnv1a(m->piece[id], len) & ix->mask;
        while (ix->slot[h]) {
            int o = ix->slot[h] - 1;
            if (m->piece_len[o] == len && !memcmp(m->piece[o], m->piece[id], (size_t)len)) break; /* keep the lower id */
            h = (h + 1) & ix->mask;
        }
        if (!ix->slot[h]) ix->slot[h] = id + 1;
    }
    return 0;
}

static int piece_lookup(const whisper_model *m, const piece_index *ix, const char *p, int len, uint32_t hash) {
    uint32_t h = hash & ix->mask;
    while (ix->slot[h]) {
        int id = ix->slot[h] - 1;
        if (m->piece_len[id] == len && !memcmp(m->piece[id], p, (size_t)len)) return id;
        h = (h + 1) & ix->mask;
    }
    return -1;
}

int whisper_tokenize_prompt(const whisper_model *m, const char *text, int32_t *ids, int max_ids) {
    piece_index ix;
    if (piece_index_build(m, &ix)) return -SMP_E_NOMEM;
    size_t len = strlen(text);
    if (len > PROMPT_TEXT_MAX) len = PROMPT_TEXT_MAX;
    int n = 0;
    uint32_t hash[PIECE_MATCH_MAX + 1];
    for (size_t i = 0; i < len && n < max_ids;) {
        int best = -1, best_len = 0;
        int lim = (int)(len - i) < ix.max_len ? (int)(len - i) : ix.max_len;
        if (lim > PIECE_MATCH_MAX) lim = PIECE_MATCH_MAX;
        hash[0] = 2166136261u; /* FNV-1a of every prefix, in one pass */
        for (int l = 1; l <= lim; l++) hash[l] = (hash[l - 1] ^ (unsigned char)text[i + l - 1]) * 16777619u;
        for (int l = lim; l >= 1 && best < 0; l--)
            if ((best = piece_lookup(m, &ix, text + i, l, hash[l])) >= 0) best_len = l;
        if (best < 0) {
            i++; /* a byte with no piece (not in a byte-level vocabulary) */
            continue;
        }
        ids[n++] = best;
        i += (size_t)best_len;
    }
    smp_free(ix.slot);
    return n;
}

/* ---- compression ratio estimate (see the top comment) ---- */

static double compression_ratio(const char *s, size_t n) {
    if (n == 0) return 0.0;
    if (n > COMPRESS_MAX_BYTES) n = COMPRESS_MAX_BYTES; /* bounds the quadratic scan below */
    enum { WIN = 32768, MIN_MATCH = 3, MAX_MATCH = 258, MAX_SCAN = 1024 };
    size_t hist[256] = {0}, n_lit = 0, n_match = 0;
    for (size_t i = 0; i < n;) {
        size_t best = 0, start = i > WIN ? i - WIN : 0, tries = 0;
        for (size_t j = i; j-- > start && tries++ < MAX_SCAN;) {
            size_t l = 0;
            while (l < MAX_MATCH && i + l < n && s[j + l] == s[i + l]) l++;
            if (l > best) best = l;
            if (best == MAX_MATCH) break;
        }
        if (best >= MIN_MATCH) {
            n_match++;
            i += best;
        } else {
            hist[(unsigned char)s[i]]++;
            n_lit++;
            i++;
        }
    }
    /* Deflate's two block kinds: fixed codes (8 bits a literal, ~18 a match)
     * or dynamic ones (the literals' entropy, ~20 bits a match, plus a code
     * table of ~5 bits per symbol used); zlib keeps the smaller. */
    double entropy = 0.0;
    int distinct = 0;
    for (int c = 0; c < 256; c++)
        if (hist[c]) {
            double q = (double)hist[c] / (double)n_lit;
            entropy -= (double)hist[c] * log2(q);
            distinct++;
        }
    double fixed = 8.0 * (double)n_lit + 18.0 * (double)n_match;
    double dynamic = entropy + 20.0 * (double)n_match + 40.0 + 5.0 * distinct;
    double bits = (fixed < dynamic ? fixed : dynamic) + 7.0 + 48.0; /* block end + zlib header and adler32 */
    return (double)n / (bits / 8.0);
}

double whisper_compression_ratio(const char *s, size_t n) { return compression_ratio(s, n); }

/* ---- the decoder: logit filters, sampling, one attempt at a window ---- */

typedef struct {
    const whisper_model *m;
    whisper_state *st;
    int n_vocab;
    int32_t space;      /* the " " token, suppressed at the first step */
    float *logits;      /* [n_vocab] the step being sampled */
    float *first;       /* [n_vocab] the logits after the prompt */
    float *probs;       /* [n_vocab] scratch for sampling */
    int32_t *seq;       /* [cap] sampled tokens */
    int cap;
    const whisper_params *p;
    double decode_ms;
} decoder;

typedef struct {
    int n;              /* tokens in seq, eot not included */
    double sum_logprob; /* over every sampled token, eot included */
    double avg_logprob, compression, temperature;
} attempt;

static bool cancelled(const whisper_params *p) { return p && p->cancelled && p->cancelled(p->cancel_ud); }

static void fill_range(float *l, int from, int to, float v) {
    for (int i = from; i < to; i++) l[i] = v;
}

/* Sum over i of exp((l[i] - mx) * scale), terms below e^-30 (and -inf
 * logits) left out; with out != NULL each term is stored too (0 when left
 * out). This is the token selection's cost besides the decoder: one or two
 * passes over n_vocab a step. whisper_sum_exp_ref is the plain loop (libm
 * expf); the AVX2 version uses a degree-6 polynomial exp (Cephes' expf
 * coefficients, ~2 ulp) on 8 lanes and sums in double. */
double whisper_sum_exp_ref(const float *l, int n, float mx, float scale, float *out) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        float z = (l[i] - mx) * scale;
        float e = z > EXP_CUT ? expf(z) : 0.0f;
        if (out) out[i] = e;
        sum += e;
    }
    return sum;
}

#ifdef __AVX2__
double whisper_sum_exp(const float *l, int n, float mx, float scale, float *out) {
    const __m256 vmx = _mm256_set1_ps(mx), vs = _mm256_set1_ps(scale), cut = _mm256_set1_ps(EXP_CUT);
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 z = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(l + i), vmx), vs);
        __m256 keep = _mm256_cmp_ps(z, cut, _CMP_GT_OQ); /* false for -inf and NaN */
        __m256 e = _mm256_and_ps(whisper_exp8(_mm256_max_ps(z, cut)), keep);
        if (out) _mm256_storeu_ps(out + i, e);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(acc0, acc1));
    double sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    return sum + whisper_sum_exp_ref(l + i, n - i, mx, scale, out ? out + i : NULL);
}
#else
double whisper_sum_exp(const float *l, int n, float mx, float scale, float *out) {
    return whisper_sum_exp_ref(l, n, mx, scale, out);
}
#endif

static int timed_decode(decoder *d, const int32_t *tokens, int n, int n_past, float *out) {
    uint64_t t0 = util_now_ns();
    int rc = whisper_decode(d->st, tokens, n, n_past, out, false);
    d->decode_ms += (double)(util_now_ns() - t0) / 1e6;
    return rc;
}

/* whisper's logit filters, applied in place before choosing token n (the
 * sampled tokens so far are seq[0..n)). Specials other than eot (and the
 * timestamps when they are on) are never chosen; at the first step neither
 * eot nor " " is; with timestamps they come in pairs (text between), never
 * decrease, the first one is at most 1 s, and one is forced when their total
 * probability beats the best text token. */
typedef struct {
    float mx;   /* largest logit */
    double sum; /* sum of exp(l - mx) */
    bool valid;
} softmax_sums;

static void filter_logits(const decoder *d, float *l, const int32_t *seq, int n, bool timestamps, softmax_sums *sm) {
    const whisper_tokens *t = &d->m->tok;
    sm->valid = false;
    const float NEG = -INFINITY;
    int ts0 = t->ts0, nv = d->n_vocab;
    fill_range(l, t->sot, timestamps ? ts0 : nv, NEG);
    if (t->eot + 1 < t->sot) fill_range(l, t->eot + 1, t->sot, NEG); /* nothing between eot and sot is text */
    if (n == 0) {
        l[t->eot] = NEG;
        if (d->space >= 0) l[d->space] = NEG;
    }
    if (!timestamps) return;

    bool last_ts = n >= 1 && seq[n - 1] >= ts0;
    bool penult_ts = n < 2 || seq[n - 2] >= ts0;
    if (last_ts) {
        if (penult_ts) fill_range(l, ts0, nv, NEG); /* a pair just closed: text or eot next */
        else fill_range(l, 0, t->eot, NEG);          /* a segment's end: no text right after */
    }
    int last_time = -1;
    for (int i = n - 1; i >= 0; i--)
        if (seq[i] >= ts0) {
            last_time = seq[i] - ts0;
            break;
        }
    if (last_time >= 0) {
        int lo = (last_ts && !penult_ts) ? last_time : last_time + 1;
        fill_range(l, ts0, ts0 + lo < nv ? ts0 + lo : nv, NEG);
    }
    if (n == 0) {
        fill_range(l, 0, ts0, NEG);
        if (ts0 + MAX_INITIAL_TS + 1 < nv) fill_range(l, ts0 + MAX_INITIAL_TS + 1, nv, NEG);
    }

    /* Total timestamp probability against the best text token (the sums
     * serve choose() too). */
    float ts_mx = NEG, text_mx = NEG;
    for (int i = 0; i < ts0; i++)
        if (l[i] > text_mx) text_mx = l[i];
    for (int i = ts0; i < nv; i++)
        if (l[i] > ts_mx) ts_mx = l[i];
    float mx = text_mx > ts_mx ? text_mx : ts_mx;
    if (mx == NEG) return;
    double text_sum = whisper_sum_exp(l, ts0, mx, 1.0f, NULL), ts_sum = whisper_sum_exp(l + ts0, nv - ts0, mx, 1.0f, NULL);
    if (ts_sum > 0.0 && log(ts_sum) + mx > text_mx) { /* log P(timestamp) > log P(best text) */
        fill_range(l, 0, ts0, NEG);
        *sm = (softmax_sums){ts_mx, ts_sum * exp((double)(mx - ts_mx)), true};
    } else {
        *sm = (softmax_sums){mx, text_sum + ts_sum, true};
    }
}

/* splitmix64: a small seeded generator, enough for one draw a step. */
static double rng_uniform(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

/* Choose a token from filtered logits: argmax (lowest id on a tie) at
 * temperature <= 0, else one draw from softmax(l / T). *logp is the chosen
 * token's log-probability at temperature 1, after the filters. */
static int32_t choose(decoder *d, const float *l, const softmax_sums *sm, double temperature, uint64_t *rng,
                      double *logp) {
    int nv = d->n_vocab, best = -1;
    float mx = -INFINITY;
    for (int i = 0; i < nv; i++) /* where the time goes besides the decoder: 2 passes over n_vocab */
        if (l[i] > mx) mx = l[i], best = i;
    if (best < 0) {
        *logp = 0.0;
        return d->m->tok.eot; /* everything suppressed: end the window */
    }
    double sum = sm->valid && sm->mx == mx ? sm->sum : whisper_sum_exp(l, nv, mx, 1.0f, NULL);
    double lse = mx + log(sum);
    int32_t pick = best;
    if (temperature > 0.0) {
        double tsum = whisper_sum_exp(l, nv, mx, (float)(1.0 / temperature), d->probs);
        double target = rng_uniform(rng) * tsum, acc = 0.0;
        for (int i = 0; i < nv; i++) {
            if (d->probs[i] <= 0.0) continue;
            acc += d->probs[i];
            pick = i;
            if (acc > target) break;
        }
    }
    *logp = (double)l[pick] - lse;
    return pick;
}

/* Sample up to max_tokens tokens after a prompt of n_prompt tokens whose
 * last logits are in d->first. Returns 0, 1 when cancelled, or a negative
 * error. */
static int run_attempt(decoder *d, int n_prompt, int max_tokens, double temperature, uint64_t seed, bool timestamps,
                       attempt *a) {
    const whisper_model *m = d->m;
    memset(a, 0, sizeof *a);
    a->temperature = temperature;
    uint64_t rng = seed;
    memcpy(d->logits, d->first, (size_t)d->n_vocab * sizeof *d->logits);
    int n_past = n_prompt;
    if (max_tokens > d->cap) max_tokens = d->cap;
    for (int i = 0; i < max_tokens; i++) {
        softmax_sums sm;
        filter_logits(d, d->logits, d->seq, a->n, timestamps, &sm);
        double logp;
        int32_t tok = choose(d, d->logits, &sm, temperature, &rng, &logp);
        a->sum_logprob += logp;
        if (tok == m->tok.eot) break;
        d->seq[a->n++] = tok;
        if (i + 1 == max_tokens || n_past + 1 > m->hp.n_text_ctx) break;
        if (cancelled(d->p)) return 1;
        int rc = timed_decode(d, &tok, 1, n_past++, d->logits);
        if (rc) return rc;
    }
    a->avg_logprob = a->sum_logprob / (a->n + 1); /* OpenAI's: text tokens + 1 */
    buf b;
    buf_init(&b, 0);
    if (append_pieces(m, &b, d->seq, a->n)) {
        buf_free(&b);
        return -SMP_E_NOMEM;
    }
    a->compression = compression_ratio(b.data ? b.data : "", b.len);
    buf_free(&b);
    return 0;
}

static int find_space_token(const whisper_model *m) {
    if (m->n_text_tokens > 220 && m->piece_len[220] == 1 && m->piece[220][0] == ' ') return 220;
    for (int i = 0; i < m->n_text_tokens && i < m->tok.eot; i++)
        if (m->piece_len[i] == 1 && m->piece[i][0] == ' ') return i;
    return -1;
}

static int decoder_init(decoder *d, const whisper_model *m, whisper_state *st, int cap, const whisper_params *p) {
    memset(d, 0, sizeof *d);
    d->m = m;
    d->st = st;
    d->p = p;
    d->n_vocab = m->hp.n_vocab;
    d->space = find_space_token(m);
    d->cap = cap;
    d->logits = smp_malloc((size_t)d->n_vocab * sizeof *d->logits);
    d->first = smp_malloc((size_t)d->n_vocab * sizeof *d->first);
    d->probs = smp_malloc((size_t)d->n_vocab * sizeof *d->probs);
    d->seq = smp_malloc((size_t)(cap > 0 ? cap : 1) * sizeof *d->seq);
    return d->logits && d->first && d->probs && d->seq ? 0 : -SMP_E_NOMEM; /* decoder_free cleans up either way */
}

static void decoder_free(decoder *d) {
    smp_free(d->logits);
    smp_free(d->first);
    smp_free(d->probs);
    smp_free(d->seq);
}

void whisper_filter_logits(const whisper_model *m, float *logits, const int32_t *seq, int n, bool timestamps) {
    decoder d = {.m = m, .n_vocab = m->hp.n_vocab, .space = find_space_token(m)};
    softmax_sums sm;
    filter_logits(&d, logits, seq, n, timestamps, &sm);
}

int whisper_greedy_window(const whisper_model *m, whisper_state *s, const int32_t *prompt, int n_prompt, int max_tokens,
                          int32_t *ids, float *logp, int *n_ids) {
    decoder d;
    *n_ids = 0;
    int rc = decoder_init(&d, m, s, max_tokens, NULL);
    if (rc) goto done;
    if ((rc = timed_decode(&d, prompt, n_prompt, 0, d.first))) goto done;
    memcpy(d.logits, d.first, (size_t)d.n_vocab * sizeof *d.logits);
    int n = 0, n_past = n_prompt;
    uint64_t rng = 0;
    while (n < max_tokens) {
        softmax_sums sm;
        filter_logits(&d, d.logits, ids, n, false, &sm);
        double lp;
        int32_t tok = choose(&d, d.logits, &sm, 0.0, &rng, &lp);
        if (logp) logp[n] = (float)lp;
        ids[n++] = tok;
        if (tok == m->tok.eot || n == max_tokens || n_past + 1 > m->hp.n_text_ctx) break;
        if ((rc = timed_decode(&d, &tok, 1, n_past++, d.logits))) goto done;
    }
    *n_ids = n;
done:
    decoder_free(&d);
    return rc;
}

/* ---- the audio, read from the source ---- */

/* What the windows read: samples [base, base + len) of the source in buf,
 * at most VIEW_CAP of them (one window's frames with their margins, plus
 * room for a read). Windows only move forward, so the view only drops
 * samples at its front and reads at its back. */
#define VIEW_SPAN ((size_t)(WHISPER_N_FRAMES + 2) * HOP + 200)
#define VIEW_CAP (VIEW_SPAN + 16384)

typedef struct {
    const whisper_source *src;
    float buf[VIEW_CAP];
    size_t base, len;
    bool eof;
} pcm_view;

static void view_reset(pcm_view *v) {
    v->base = v->len = 0;
    v->eof = false;
}

/* Hold samples [from, to) (those the source has), dropping the ones before
 * from; from never goes back. */
static int view_fill(pcm_view *v, size_t from, size_t to, char *err, size_t errlen) {
    SMP_ASSERT(from >= v->base && to >= from && to - from <= VIEW_SPAN);
    for (;;) {
        size_t drop = from - v->base < v->len ? from - v->base : v->len;
        if (drop) {
            memmove(v->buf, v->buf + drop, (v->len - drop) * sizeof *v->buf);
            v->base += drop;
            v->len -= drop;
        }
        if (v->base + v->len >= to || v->eof) return 0;
        size_t got;
        int rc = v->src->read(v->src->ud, v->buf + v->len, VIEW_CAP - v->len, &got, err, errlen);
        if (rc) return rc;
        if (got == 0) v->eof = true;
        v->len += got;
    }
}

/* Raw log-mel of frames [t0, t0 + count) of an audio of n samples into out
 * (row stride count), read through the view. */
static int view_mel(pcm_view *v, const whisper_model *m, size_t n, long t0, int count, float *out, char *err,
                    size_t errlen) {
    size_t first = (size_t)t0 * HOP, from = first > 200 ? first - 200 : 0;
    int rc = view_fill(v, from, (size_t)(t0 + count) * HOP + 40, err, errlen);
    if (rc) return rc;
    return whisper_mel_frames(m, v->buf, v->base, v->len, n, t0, count, out, count);
}

/* ---- voice-activity gate ---- */

typedef struct {
    float *rms;  /* per 20 ms frame */
    size_t n, cap;
    float thr;   /* a frame is voiced when its RMS is above this */
} vad_map;

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static int vad_push(vad_map *v, double energy) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? 2 * v->cap : 4096;
        float *p = smp_realloc(v->rms, nc * sizeof *p);
        if (!p) return -SMP_E_NOMEM;
        v->rms = p;
        v->cap = nc;
    }
    v->rms[v->n++] = (float)sqrt(energy / (double)VAD_FRAME);
    return 0;
}

/* The first pass over the source: counts the samples (*n_samples) and keeps
 * the RMS of every 20 ms frame, then sets the threshold from the noise
 * floor. Holds no samples beyond one read. Returns 0, 1 when cancelled, or
 * the source's error. */
static int vad_scan(pcm_view *v, const whisper_params *p, vad_map *vad, size_t *n_samples, char *err,
                    size_t errlen) {
    size_t n = 0;
    double e = 0.0;
    for (int reads = 1;; reads++) {
        size_t got;
        int rc = v->src->read(v->src->ud, v->buf, VIEW_CAP, &got, err, errlen);
        if (rc) return rc;
        if (got == 0) break;
        for (size_t i = 0; i < got; i++) {
            e += (double)v->buf[i] * v->buf[i];
            if (++n % VAD_FRAME == 0) {
                if (vad_push(vad, e)) return -SMP_E_NOMEM;
                e = 0.0;
            }
        }
        if (reads % 64 == 0 && cancelled(p)) return 1;
    }
    if (n % VAD_FRAME && vad_push(vad, e)) return -SMP_E_NOMEM;
    *n_samples = n;
    if (!vad->n) return 0;
    float *sorted = smp_malloc(vad->n * sizeof *sorted);
    if (!sorted) return -SMP_E_NOMEM;
    memcpy(sorted, vad->rms, vad->n * sizeof *sorted);
    qsort(sorted, vad->n, sizeof *sorted, cmp_float);
    float floor_ = sorted[vad->n / 10];
    smp_free(sorted);
    vad->thr = VAD_FLOOR_X * floor_ > VAD_RMS_MIN ? VAD_FLOOR_X * floor_ : VAD_RMS_MIN;
    return 0;
}

/* First voiced 20 ms frame in mel frames [from, to), as a mel frame, or -1
 * when the span holds fewer than VAD_MIN_FRAMES voiced frames. */
static long vad_first_voiced(const vad_map *v, long from, long to) {
    size_t a = (size_t)from * HOP / VAD_FRAME, b = ((size_t)to * HOP + VAD_FRAME - 1) / VAD_FRAME;
    if (b > v->n) b = v->n;
    long first = -1;
    int count = 0;
    for (size_t f = a; f < b; f++)
        if (v->rms[f] > v->thr) {
            if (first < 0) first = (long)(f * VAD_FRAME / HOP);
            count++;
        }
    return count >= VAD_MIN_FRAMES ? (first > from ? first : from) : -1;
}

/* ---- segments ---- */

typedef struct {
    whisper_segment *seg;
    int n, cap;
    buf raw;          /* every segment's bytes, for the whole text */
    int32_t *ctx;     /* tokens of the windows so far (context) */
    int n_ctx, cap_ctx, ctx_from;
} transcript;

static int add_segment(transcript *tr, const whisper_model *m, double start, double end, double duration,
                       const int32_t *ids, int n) {
    if (start >= duration) return 0;
    if (end > duration) end = duration;
    if (end < start + 0.02) end = start + 0.02 < duration ? start + 0.02 : duration;
    buf b;
    buf_init(&b, 0);
    if (append_pieces(m, &b, ids, n)) goto fail;
    char *text = clean_text(b.data ? b.data : "", b.len);
    if (!text) goto fail;
    if (!*text) { /* nothing said */
        smp_free(text);
        buf_free(&b);
        return 0;
    }
    int32_t *tok = smp_malloc((size_t)(n > 0 ? n : 1) * sizeof *tok);
    if (!tok) {
        smp_free(text);
        goto fail;
    }
    if (n > 0) memcpy(tok, ids, (size_t)n * sizeof *tok);
    if (tr->n == tr->cap) {
        int nc = tr->cap ? 2 * tr->cap : 16;
        whisper_segment *ns = smp_realloc(tr->seg, (size_t)nc * sizeof *ns);
        if (!ns) {
            smp_free(text);
            smp_free(tok);
            goto fail;
        }
        tr->seg = ns;
        tr->cap = nc;
    }
    tr->seg[tr->n++] = (whisper_segment){.start = start, .end = end, .text = text, .tokens = tok, .n_tokens = n};
    if (b.len && buf_append(&tr->raw, b.data, b.len)) goto fail;
    buf_free(&b);
    return 0;
fail:
    buf_free(&b);
    return -SMP_E_NOMEM;
}

static int add_context(transcript *tr, const int32_t *ids, int n) {
    if (n <= 0) return 0;
    if (tr->n_ctx + n > tr->cap_ctx) {
        int nc = tr->cap_ctx ? tr->cap_ctx : 256;
        while (nc < tr->n_ctx + n) nc *= 2;
        int32_t *p = smp_realloc(tr->ctx, (size_t)nc * sizeof *p);
        if (!p) return -SMP_E_NOMEM;
        tr->ctx = p;
        tr->cap_ctx = nc;
    }
    memcpy(tr->ctx + tr->n_ctx, ids, (size_t)n * sizeof *ids);
    tr->n_ctx += n;
    return 0;
}

/* Turn one window's tokens into segments; returns the mel frames to seek
 * forward (> 0) or a negative error. Follows OpenAI's transcribe(): text
 * between consecutive timestamp pairs is a segment; after the last pair the
 * window resumes from that timestamp, unless the tokens end with a single
 * timestamp (then the whole window is done). *n_used: how many of the
 * tokens went into segments (the rest is decoded again by the next window). */
static long window_segments(transcript *tr, const whisper_model *m, const int32_t *t, int n, long seek,
                            long segment_size, double duration, bool timestamps, int *n_used) {
    int ts0 = m->tok.ts0;
    *n_used = n;
    double offset = (double)seek * HOP / WHISPER_SAMPLE_RATE;
    double seg_secs = (double)segment_size * HOP / WHISPER_SAMPLE_RATE;
    int rc;
    if (!timestamps) {
        rc = add_segment(tr, m, offset, offset + seg_secs, duration, t, n);
        return rc ? rc : segment_size;
    }
    bool single_end = n >= 2 && t[n - 2] < ts0 && t[n - 1] >= ts0;
    int last = 0;
    bool any_pair = false;
    for (int i = 1; i < n; i++) {
        if (!(t[i] >= ts0 && t[i - 1] >= ts0)) continue;
        any_pair = true;
        /* t[last .. i) is one segment: timestamp, text, timestamp */
        if (i - last >= 2 && t[last] >= ts0) {
            double s0 = offset + (t[last] - ts0) * 0.02, s1 = offset + (t[i - 1] - ts0) * 0.02;
            if ((rc = add_segment(tr, m, s0, s1, duration, t + last, i - last))) return rc;
        }
        last = i;
    }
    if (any_pair) {
        if (single_end) {
            if (last < n - 1 && t[last] >= ts0) {
                double s0 = offset + (t[last] - ts0) * 0.02, s1 = offset + (t[n - 1] - ts0) * 0.02;
                if ((rc = add_segment(tr, m, s0, s1, duration, t + last, n - last))) return rc;
            }
            return segment_size;
        }
        long adv = (long)(t[last - 1] - ts0) * TS_FRAMES;
        *n_used = last;
        if (adv > segment_size) return segment_size;
        return adv >= MIN_SEEK_FRAMES ? adv : (MIN_SEEK_FRAMES < segment_size ? MIN_SEEK_FRAMES : segment_size);
    }
    /* No pair: one segment over the window, ending at its last timestamp. */
    double end = offset + seg_secs;
    for (int i = n - 1; i >= 0; i--)
        if (t[i] >= ts0) {
            if (t[i] > ts0) end = offset + (t[i] - ts0) * 0.02;
            break;
        }
    double start = offset;
    if (n && t[0] >= ts0) start = offset + (t[0] - ts0) * 0.02;
    if (start >= end) start = offset;
    rc = add_segment(tr, m, start, end, duration, t, n);
    return rc ? rc : segment_size;
}

long whisper_window_segments(const whisper_model *m, const int32_t *tokens, int n, long seek, long segment_size,
                             double duration, bool timestamps, whisper_segment **segs, int *n_segs, int *n_used) {
    transcript tr = {0};
    buf_init(&tr.raw, 0);
    long adv = window_segments(&tr, m, tokens, n, seek, segment_size, duration, timestamps, n_used);
    buf_free(&tr.raw);
    if (adv < 0) {
        whisper_segments_free(tr.seg, tr.n);
        tr.seg = NULL;
        tr.n = 0;
    }
    *segs = tr.seg;
    *n_segs = tr.n;
    return adv;
}

/* ---- the transcription ---- */

int whisper_prompt_tokens(const whisper_model *m, int lang, bool translate, bool timestamps, const int32_t *ctx,
                          int n_ctx, int32_t *out, int *n_head) {
    const whisper_tokens *tk = &m->tok;
    int np = 0;
    if (n_ctx > PROMPT_CONTEXT_MAX) {
        ctx += n_ctx - PROMPT_CONTEXT_MAX;
        n_ctx = PROMPT_CONTEXT_MAX;
    }
    if (n_ctx > 0) {
        out[np++] = tk->prev;
        memcpy(out + np, ctx, (size_t)n_ctx * sizeof *out);
        np += n_ctx;
    }
    out[np++] = tk->sot;
    *n_head = np;
    if (tk->n_langs > 0) {
        out[np++] = tk->lang0 + (lang >= 0 && lang < tk->n_langs ? lang : 0);
        out[np++] = translate ? tk->translate : tk->transcribe;
    }
    if (!timestamps) out[np++] = tk->notimestamps;
    return np;
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *arg) {
    if (err && errlen) snprintf(err, errlen, fmt, arg);
}

/* Detect the language on the encoded window: decode [sot], softmax over the
 * language tokens only. */
static int detect_language(decoder *d, int *lang, double *prob) {
    const whisper_tokens *t = &d->m->tok;
    int32_t sot = t->sot;
    int rc = timed_decode(d, &sot, 1, 0, d->logits);
    if (rc) return rc;
    int best = 0;
    for (int i = 1; i < t->n_langs; i++)
        if (d->logits[t->lang0 + i] > d->logits[t->lang0 + best]) best = i;
    double sum = 0.0, mx = d->logits[t->lang0 + best];
    for (int i = 0; i < t->n_langs; i++) sum += exp((double)d->logits[t->lang0 + i] - mx);
    *lang = best;
    *prob = 1.0 / sum;
    return 0;
}

/* no-speech probability: softmax at the sot position, token nosp. */
static double no_speech_prob(const decoder *d, const float *row) {
    float mx = -INFINITY;
    for (int i = 0; i < d->n_vocab; i++)
        if (row[i] > mx) mx = row[i];
    double sum = 0.0;
    for (int i = 0; i < d->n_vocab; i++) sum += exp((double)(row[i] - mx));
    return exp((double)(row[d->m->tok.nosp] - mx)) / sum;
}

/* The largest raw log-mel value over the whole audio (n samples), a window
 * of frames at a time, up to the first frame that reads only padding (the
 * ones after it are the same). win holds n_mels x WHISPER_N_FRAMES. */
static int mel_max(pcm_view *v, const whisper_model *m, const whisper_params *p, size_t n, float *win, float *mx,
                   char *err, size_t errlen) {
    long t_end = (long)((n + 200 + HOP - 1) / HOP) + 1;
    float best = -INFINITY;
    for (long t0 = 0; t0 < t_end; t0 += WHISPER_N_FRAMES) {
        if (cancelled(p)) return 1;
        int count = t_end - t0 < WHISPER_N_FRAMES ? (int)(t_end - t0) : WHISPER_N_FRAMES;
        int rc = view_mel(v, m, n, t0, count, win, err, errlen);
        if (rc) return rc;
        for (size_t i = 0, e = (size_t)m->hp.n_mels * count; i < e; i++)
            if (win[i] > best) best = win[i];
    }
    *mx = best;
    return 0;
}

static int source_rewind(const whisper_source *src, pcm_view *v, char *err, size_t errlen) {
    view_reset(v);
    return src->rewind(src->ud, err, errlen);
}

/* The bytes of the state's companions in whisper_transcribe_source. */
size_t whisper_transcribe_bytes(const whisper_model *m, double seconds) {
    size_t vad_frames = seconds > 0 ? (size_t)(seconds * WHISPER_SAMPLE_RATE / VAD_FRAME) + 1 : 1;
    return whisper_state_bytes(m) + sizeof(pcm_view) + (size_t)m->hp.n_mels * WHISPER_N_FRAMES * sizeof(float) +
           (size_t)m->hp.n_vocab * 3 * sizeof(float) + (size_t)m->hp.n_text_ctx * sizeof(int32_t) +
           (PROMPT_CONTEXT_MAX + 8 + PROMPT_TEXT_MAX) * sizeof(int32_t) +
           vad_frames * 3 * sizeof(float) +      /* the RMS array grown by doubling, and its sorted copy */
           (size_t)(seconds > 0 ? seconds : 0) * 64; /* the transcript: text, tokens, segments, context */
}

int whisper_transcribe_source(whisper_model *m, const whisper_source *src, const whisper_params *p,
                              whisper_result *out, char *err, size_t errlen) {
    whisper_params defaults;
    if (!p) {
        whisper_params_default(&defaults);
        p = &defaults;
    }
    memset(out, 0, sizeof *out);
    if (err && errlen) *err = 0;
    const whisper_tokens *tk = &m->tok;
    bool multilingual = tk->n_langs > 0;

    /* Language and task. */
    int lang = -1;
    bool detect = !p->language || !*p->language || !strcasecmp(p->language, "auto");
    if (!detect) {
        lang = whisper_lang_id(p->language);
        if (lang < 0 || (multilingual && lang >= tk->n_langs)) {
            set_err(err, errlen, "unknown language '%s' (use an ISO 639-1 code such as en, de, fr, or auto)",
                    p->language);
            return -SMP_E_VALIDATION;
        }
        if (!multilingual && lang != 0) {
            set_err(err, errlen, "this model is English-only; language '%s' needs a multilingual model", p->language);
            return -SMP_E_VALIDATION;
        }
    }
    if (p->translate && !multilingual) {
        set_err(err, errlen, "%s", "this model is English-only and cannot translate; use a multilingual model");
        return -SMP_E_VALIDATION;
    }
    if (!multilingual) lang = 0, detect = false;
    out->language_prob = detect ? 0.0 : 1.0;
    snprintf(out->language, sizeof out->language, "%s", whisper_lang_code(lang >= 0 ? lang : 0));

    int n_text_ctx = m->hp.n_text_ctx;
    int max_tokens = p->max_tokens > 0 ? p->max_tokens : n_text_ctx / 2;
    if (max_tokens > n_text_ctx / 2) max_tokens = n_text_ctx / 2;
    double t0 = p->temperature > 0.0 ? p->temperature : 0.0;

    int rc = 0;
    size_t n_samples = 0;
    pcm_view *view = NULL;
    float *mel = NULL, mel_mx = 0.0f;
    whisper_state *st = NULL;
    int32_t *prompt = NULL;
    vad_map vad = {0};
    transcript tr = {0};
    decoder d;
    bool dec_ready = false;
    buf_init(&tr.raw, 0);

    if (cancelled(p)) return 1;
    if (!(view = smp_malloc(sizeof *view))) {
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    view->src = src;
    view_reset(view);
    /* Pass 1: the length and the voice gate. */
    if ((rc = vad_scan(view, p, &vad, &n_samples, err, errlen))) goto fail;
    out->duration = (double)n_samples / WHISPER_SAMPLE_RATE;
    if (n_samples == 0) goto finish;
    long content = (long)(n_samples / HOP);
    if (content < 1) content = 1;
    if (vad_first_voiced(&vad, 0, content) < 0) goto finish; /* silence throughout: not even a mel */

    /* Pass 2: the mel's maximum, which scales every window. */
    if (!(mel = smp_malloc((size_t)m->hp.n_mels * WHISPER_N_FRAMES * sizeof *mel))) {
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    uint64_t tm = util_now_ns();
    if ((rc = source_rewind(src, view, err, errlen)) || (rc = mel_max(view, m, p, n_samples, mel, &mel_mx, err, errlen)))
        goto fail;
    out->mel_ms = (double)(util_now_ns() - tm) / 1e6;
    if (!(st = whisper_state_new(m))) {
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    rc = decoder_init(&d, m, st, max_tokens, p);
    dec_ready = true;
    if (rc) goto fail;
    if (!(prompt = smp_malloc((size_t)(PROMPT_CONTEXT_MAX + 8) * sizeof *prompt))) {
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    if (p->prompt && *p->prompt) {
        /* The user prompt is the first window's context (its last 223 tokens
         * are used, like any context). */
        int32_t *ids = smp_malloc(PROMPT_TEXT_MAX * sizeof *ids);
        int n = ids ? whisper_tokenize_prompt(m, p->prompt, ids, PROMPT_TEXT_MAX) : -SMP_E_NOMEM;
        rc = n < 0 ? n : add_context(&tr, ids, n);
        smp_free(ids);
        if (rc) goto fail;
    }

    /* Pass 3: the windows. */
    if ((rc = source_rewind(src, view, err, errlen))) goto fail;
    long seek = 0;
    int window = 0;
    while (seek < content) {
        if (cancelled(p)) {
            rc = 1;
            goto fail;
        }
        long segment_size = content - seek < WHISPER_N_FRAMES ? content - seek : WHISPER_N_FRAMES;
        long voiced = vad_first_voiced(&vad, seek, seek + segment_size);
        if (voiced < 0) { /* silence: no model run, no text */
            seek += segment_size;
            continue;
        }
        if (voiced - seek > 100) { /* start 0.2 s before the first voiced frame */
            seek = voiced - 20;
            continue;
        }
        tm = util_now_ns();
        if ((rc = view_mel(view, m, n_samples, seek, WHISPER_N_FRAMES, mel, err, errlen))) goto fail;
        whisper_mel_scale(mel, (size_t)m->hp.n_mels * WHISPER_N_FRAMES, mel_mx);
        out->mel_ms += (double)(util_now_ns() - tm) / 1e6;
        tm = util_now_ns();
        if ((rc = whisper_encode(st, mel, WHISPER_N_FRAMES, 0))) goto fail;
        out->encode_ms += (double)(util_now_ns() - tm) / 1e6;

        if (detect) {
            if ((rc = detect_language(&d, &lang, &out->language_prob))) goto fail;
            snprintf(out->language, sizeof out->language, "%s", whisper_lang_code(lang));
            detect = false;
        }

        int n_head;
        int np = whisper_prompt_tokens(m, lang, p->translate, p->timestamps, tr.ctx + tr.ctx_from,
                                       tr.n_ctx - tr.ctx_from, prompt, &n_head);
        if ((rc = timed_decode(&d, prompt, n_head, 0, d.first))) goto fail;
        double no_speech = no_speech_prob(&d, d.first);
        if (np > n_head && (rc = timed_decode(&d, prompt + n_head, np - n_head, n_head, d.first))) goto fail;
        int win_max = max_tokens;
        if (win_max > n_text_ctx - np) win_max = n_text_ctx - np;

        attempt a = {0};
        int k;
        for (k = 0;; k++) {
            double temp = t0 + k * TEMP_STEP;
            uint64_t seed = 0x5A17E55EEDull ^ ((uint64_t)window << 8) ^ (uint64_t)k;
            if ((rc = run_attempt(&d, np, win_max, temp, seed, p->timestamps, &a))) goto fail;
            bool fallback = a.compression > COMPRESSION_MAX || a.avg_logprob < LOGPROB_MIN;
            if (no_speech > NO_SPEECH_MIN && a.avg_logprob < LOGPROB_MIN) fallback = false; /* silence */
            if (!fallback || temp + TEMP_STEP > TEMP_MAX + 1e-9) break;
        }
        window++;
        bool silent = no_speech > NO_SPEECH_MIN && a.avg_logprob < LOGPROB_MIN;
        log_debug("whisper: window at %.2f s: %d tokens at T %.1f (%d attempts), no-speech %.3f, mean logprob %.2f, "
                  "compression %.2f%s",
                  seek * 0.01, a.n, a.temperature, k + 1, no_speech, a.avg_logprob, a.compression,
                  silent ? ": no speech" : "");
        if (silent) {
            seek += segment_size;
            continue;
        }
        int n_used, n_before = tr.n;
        long adv = window_segments(&tr, m, d.seq, a.n, seek, segment_size, out->duration, p->timestamps, &n_used);
        if (adv < 0) {
            rc = (int)adv;
            goto fail;
        }
        for (int i = n_before; i < tr.n; i++) {
            tr.seg[i].avg_logprob = a.avg_logprob;
            tr.seg[i].compression_ratio = a.compression;
            tr.seg[i].no_speech_prob = no_speech;
            tr.seg[i].temperature = a.temperature;
            tr.seg[i].seek = seek;
        }
        if ((rc = add_context(&tr, d.seq, n_used))) goto fail;
        if (a.temperature > CONTEXT_RESET_TEMP) tr.ctx_from = tr.n_ctx;
        seek += adv;
    }

finish:
    out->text = clean_text(tr.raw.data ? tr.raw.data : "", tr.raw.len);
    if (!out->text) {
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    out->segments = tr.seg;
    out->n_segments = tr.n;
    tr.seg = NULL;
    tr.n = 0;
    rc = 0;
    if (dec_ready) out->decode_ms = d.decode_ms;
fail:
    if (rc) {
        double ms[3] = {out->mel_ms, out->encode_ms, dec_ready ? d.decode_ms : 0.0};
        whisper_result_free(out);
        out->duration = (double)n_samples / WHISPER_SAMPLE_RATE;
        out->mel_ms = ms[0], out->encode_ms = ms[1], out->decode_ms = ms[2];
        if (rc < 0 && err && errlen && !*err) snprintf(err, errlen, "%s", smp_err_message(rc));
    }
    whisper_segments_free(tr.seg, tr.n);
    smp_free(tr.ctx);
    buf_free(&tr.raw);
    smp_free(vad.rms);
    smp_free(prompt);
    if (dec_ready) decoder_free(&d);
    whisper_state_free(st);
    smp_free(mel);
    smp_free(view);
    return rc;
}

/* An array as a source. */
typedef struct {
    const float *pcm;
    size_t n, pos;
} array_source;

static int array_read(void *ud, float *dst, size_t cap, size_t *got, char *err, size_t errlen) {
    (void)err, (void)errlen;
    array_source *a = ud;
    size_t k = a->n - a->pos < cap ? a->n - a->pos : cap;
    memcpy(dst, a->pcm + a->pos, k * sizeof *dst);
    a->pos += k;
    *got = k;
    return 0;
}

static int array_rewind(void *ud, char *err, size_t errlen) {
    (void)err, (void)errlen;
    ((array_source *)ud)->pos = 0;
    return 0;
}

int whisper_transcribe(whisper_model *m, const float *pcm, size_t n_samples, const whisper_params *p,
                       whisper_result *out, char *err, size_t errlen) {
    array_source a = {pcm, pcm ? n_samples : 0, 0};
    whisper_source src = {array_read, array_rewind, &a};
    return whisper_transcribe_source(m, &src, p, out, err, errlen);
}
