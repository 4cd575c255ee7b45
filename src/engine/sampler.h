/* sampler.h - choose the next token from a model's logits, and cut generated
 * text at stop strings.
 *
 * The sampler applies, in this fixed order (the llama.cpp default chain):
 *   1. penalties   over the last repeat_last_n accepted tokens, per distinct
 *                  token t seen c times:  repeat: logit/r if logit > 0, else
 *                  logit*r;  then  logit -= c*frequency + presence
 *   2. greedy      temperature <= 0: the argmax (lowest id on ties); stop here
 *   3. top-k       keep the k largest logits (partial selection, O(n log k))
 *   4. top-p       keep the smallest set of most likely tokens whose softmax
 *                  mass reaches p (probabilities at temperature 1)
 *   5. min-p       keep tokens with p >= min_p * p_max (temperature 1)
 *   6. temperature divide the surviving logits by T
 *   7. softmax and one draw from the seeded PRNG
 * Ties between equal logits always go to the lower token id, so the result is
 * a pure function of (logits, history, seed) on every machine.
 *
 * Randomness: xoshiro256** seeded through splitmix64 from params.seed. The
 * same seed gives the same draws everywhere; SAMPLER_SEED_RANDOM asks for a
 * seed from the OS (read it back with sampler_seed to report or replay it).
 *
 * Main data structure: the sampler owns a candidate array of n_vocab
 * (id, logit) pairs (8 bytes per token, 1.2 MB for a 150k vocabulary) and a
 * ring of the last repeat_last_n accepted tokens. Not thread-safe: one
 * sampler per generation.
 *
 * stop_matcher (below) finds stop strings in streamed text. */
#ifndef SMP_SAMPLER_H
#define SMP_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "No seed given": sampler_new draws one from the OS. */
#define SAMPLER_SEED_RANDOM UINT64_MAX

typedef struct {
    float temperature;       /* <= 0: greedy (argmax after penalties) */
    int32_t top_k;           /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    float repeat_penalty;    /* 1: off; > 1 discourages repeats */
    int32_t repeat_last_n;   /* window of accepted tokens the penalties look at; 0: off */
    float presence_penalty;  /* 0: off; subtracted once per token seen in the window */
    float frequency_penalty; /* 0: off; subtracted once per occurrence in the window */
    uint64_t seed;           /* SAMPLER_SEED_RANDOM: pick one */
} sampler_params;

/* llama.cpp's defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * repeat_penalty 1 (off) over 64 tokens, no presence/frequency penalty,
 * random seed. The API dialects override what their clients send. */
sampler_params sampler_params_default(void);

typedef struct sampler sampler;

/* Returns NULL when n_vocab < 1 or memory runs out. params is copied. */
sampler *sampler_new(const sampler_params *params, int32_t n_vocab);
void sampler_free(sampler *s);

/* Record a token that became part of the context (prompt tokens too, if the
 * penalties should see them). Ids outside [0, n_vocab) are ignored. */
void sampler_accept(sampler *s, int32_t token);

/* Pick the next token from logits[0..n_vocab). logits is modified in place:
 * on return it holds the penalised logits (the caller's copy is scratch).
 * NaN logits count as -inf. Always returns a valid id. The token is not
 * recorded: call sampler_accept with it (the caller may still reject it, e.g.
 * at a stop). Parameters are not validated here (the API layer does that);
 * NaN or out-of-range values switch a step off or clamp it. */
int32_t sampler_sample(sampler *s, float *logits);

/* Forget the history and restart the PRNG from the seed. */
void sampler_reset(sampler *s);

/* The seed in use (the drawn one when params.seed was SAMPLER_SEED_RANDOM). */
uint64_t sampler_seed(const sampler *s);

/* ---- log probabilities -------------------------------------------------
 * What the model itself thinks of each token: the log-softmax of the logits
 * as the model gave them (temperature 1), so a caller computes it before
 * sampler_sample changes them and before any bias or grammar mask. */

#define SAMPLER_MAX_TOP_LOGPROBS 20

typedef struct {
    int32_t id;
    float logprob;
} sampler_logprob;

/* Returns log(sum over the vocabulary of exp(logit)): a token t's log
 * probability is logits[t] minus it (NaN logits count as -inf). Also writes
 * the k most likely tokens (k clamped to 0..SAMPLER_MAX_TOP_LOGPROBS and to
 * n) to top[0..*n_top), best first, lower id first on ties. Costs one pass
 * for the normaliser and one O(n log k) selection (none when k is 0). */
double sampler_log_softmax_top(const float *logits, int32_t n, int k, sampler_logprob *top, int *n_top);

/* ---- stop strings ------------------------------------------------------
 * A stop_matcher watches the text generated so far and tells the caller
 *   (a) a stop string is complete: keep text[0..cut) and end generation;
 *   (b) otherwise, how many trailing bytes to hold back because they are the
 *       start of some stop string (emit text[0..len-hold) now; the rest may
 *       turn out to be part of a stop string).
 * The caller keeps the text (it needs it anyway) and passes all of it each
 * time; text only ever grows between calls (until stop_matcher_reset). Each
 * call scans only the new bytes plus the longest stop string's length, so a
 * generation costs O(total bytes * number of stops).
 * When several stop strings complete in one update, the earliest in the text
 * wins. Held bytes always start on a UTF-8 character boundary if the text and
 * the stop strings are valid UTF-8. At the end of generation, the held bytes
 * are ordinary text: emit them. */

/* Room for a request's stop strings (BACKEND_MAX_STOP, 16, of at most
 * BACKEND_MAX_STOP_LEN bytes) plus the chat template's own. */
#define STOP_MAX_STRINGS 24
#define STOP_MAX_LEN 256

typedef struct stop_matcher stop_matcher;

typedef struct {
    int which;   /* index of the completed stop string, or -1 */
    size_t cut;  /* which >= 0: output is text[0..cut) (the stop string is dropped) */
    size_t hold; /* which < 0: trailing bytes that must not be emitted yet */
} stop_result;

/* The strings are copied; empty ones are skipped. More than STOP_MAX_STRINGS
 * or one longer than STOP_MAX_LEN bytes: -SMP_E_VALIDATION. Zero stop strings
 * is fine (never stops, never holds). */
int stop_matcher_new(const char *const *stops, int n, stop_matcher **out);
void stop_matcher_free(stop_matcher *m);
void stop_matcher_reset(stop_matcher *m);
stop_result stop_matcher_update(stop_matcher *m, const char *text, size_t len);

#endif
