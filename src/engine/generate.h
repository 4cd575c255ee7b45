/* generate.h - the generation loop shared by the CLI and the local backend:
 * prompt in one batch, then sample / stream / stop, one token at a time.
 *
 * Text is streamed through on_text as soon as it is final: complete UTF-8
 * characters only, and never bytes that could still turn out to be the start
 * of a stop string. Generation ends at an end-of-generation token ("stop"), a
 * completed stop string ("stop", the stop string itself is not output),
 * max_tokens or a full context ("length"; with a grammar, "stop" when the
 * document was closed in time, see gen_params.grammar), or cancellation
 * ("cancelled": on_text returned non-zero or cancelled() said so).
 *
 * Log probabilities (when asked): for each generated token, its log
 * probability and the most likely alternatives under the model's own
 * distribution at that step, the log-softmax of the raw logits, before
 * temperature, penalties, logit bias and any grammar mask (so a token the
 * grammar or a bias forced may show a low probability). While streaming,
 * on_logprobs gets the entries of the tokens whose text is complete in what
 * has been sent, just before the on_text call that sends it (text held back
 * for a stop string or a partial UTF-8 character holds its tokens back too).
 * A stop string drops the tokens that lie wholly inside it; a token that
 * starts before the cut and runs into the stop string is kept. */
#ifndef SMP_GENERATE_H
#define SMP_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "engine/grammar.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

/* A token's bias: added to its logit at every step before sampling. */
typedef struct {
    int32_t id;
    float bias;
} gen_bias;

/* One generated token's log probabilities (see the top of this file). */
typedef struct {
    int32_t id;
    float logprob;
    int n_top;
    sampler_logprob top[SAMPLER_MAX_TOP_LOGPROBS]; /* best first */
    size_t text_end; /* gen_run's: the answer's length through this token's text */
} gen_logprob;

typedef struct {
    sampler_params sampling;
    int max_tokens;               /* <= 0: until end of generation or a full context */
    const char *const *stop;      /* stop strings (copied) */
    int n_stop;
    int (*on_text)(void *ud, const char *text, size_t len); /* may be NULL; non-zero cancels */
    bool (*cancelled)(void *ud);  /* may be NULL; polled once per token */
    void *ud;
    /* Constrained decoding (may be NULL): every generated token keeps the text a
     * prefix of the grammar's language; end-of-generation is allowed only where
     * the grammar can end, and generation stops ("stop") once the grammar is
     * complete. grammar_vocab: the model's precomputed token list (may be NULL:
     * built for this run; cache one per model). The sampler draws first and the
     * full mask is computed only when the draw is refused (grammar.c says why).
     * The budget (max_tokens, or the context's end) is kept too: once the
     * fewest bytes that finish the grammar (grammar_matcher_distance) are as
     * many as the tokens left, a token is allowed only if the grammar can
     * still end in the tokens left after it, so every step brings the end
     * closer and the text is a complete sentence of the grammar when the
     * budget is spent. Such a run ends with "stop", not "length". When the
     * budget is below the distance from the start (a schema longer than
     * max_tokens bytes at its shortest), nothing is steered and the answer
     * may be cut ("length"). A vocabulary with no token for some byte
     * (WordPiece) may find no such token; then the grammar alone decides. */
    const grammar *grammar;
    const grammar_vocab *grammar_vocab;
    /* With a trigger the grammar waits: the text is free until the trigger
     * appears in it (anywhere, or with trigger_at_start only as the first
     * non-blank text), and the grammar then holds for what follows the
     * trigger (tool calls: tools.h). If the text already written after the
     * trigger does not fit the grammar, it is not applied at all. */
    const char *grammar_trigger;
    bool trigger_at_start;
    /* Logit bias (borrowed; an id outside the vocabulary: -SMP_E_VALIDATION
     * naming logit_bias). Applied before the sampler, its penalties and the
     * grammar. */
    const gen_bias *bias;
    int n_bias;
    /* Record log probabilities with top_logprobs (0..SAMPLER_MAX_TOP_LOGPROBS)
     * alternatives; costs nothing when off. on_logprobs (may be NULL; non-zero
     * cancels) gets lp[0..n) while streaming. */
    bool logprobs;
    int top_logprobs;
    int (*on_logprobs)(void *ud, const gen_logprob *lp, int n);
} gen_params;

typedef struct {
    buf text;                     /* the whole answer */
    int32_t *tokens;              /* prompt + generated ids (owned) */
    int n_tokens;
    int n_prompt, n_gen;
    uint64_t prompt_ns;           /* prompt processing */
    uint64_t gen_ns;              /* decoding (after the prompt) */
    uint64_t first_token_ns;      /* from the start to the first generated token */
    uint64_t seed;                /* the sampler's seed (drawn if none was given) */
    const char *done_reason;      /* "stop" | "length" | "cancelled" (static) */
    gen_logprob *logprobs;        /* with p->logprobs: one per token of the answer (owned) */
    int n_logprobs;
} gen_result;

/* Run on a session (reset first). Errors: -SMP_E_VALIDATION when the prompt
 * does not fit the context (err names both sizes), -SMP_E_NOMEM, or what
 * model_ctx_eval returned. On error *out is empty. */
int gen_run(model_ctx *ctx, const tokenizer *tok, const int32_t *prompt, int n_prompt, const gen_params *p,
            gen_result *out, char *err, size_t errlen);
void gen_result_free(gen_result *r);

/* Where trigger t starts in s[0..len) (the rules of gen_params'
 * grammar_trigger), or -1. Then *keep is how many trailing bytes may still
 * turn out to begin it (a stream holds them back) and *never says that with
 * at_start it can no longer come. */
long gen_find_trigger(const char *t, bool at_start, const char *s, size_t len, size_t *keep, bool *never);

#endif
