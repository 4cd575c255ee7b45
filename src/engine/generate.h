/* generate.h - the generation loop shared by the CLI and the local backend:
 * prompt in one batch, then sample / stream / stop, one token at a time.
 *
 * Two layers. gen_seq is one sequence's state without the model: it says
 * which tokens to run next (the prompt, perhaps in pieces, then the token it
 * sampled last) and takes the logits they produced, so a scheduler can run
 * many sequences in one forward pass. gen_run drives one gen_seq on one
 * session, start to end.
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
    /* Prefix reuse: the first n_reuse prompt tokens are already in the KV
     * cache (the caller knows what the session holds; gen_run keeps at most
     * what the session has). At least one token is run to get logits, so a
     * prompt cached whole reuses n_prompt - 1. 0: run the whole prompt. */
    int n_reuse;
} gen_params;

typedef struct {
    buf text;                     /* the whole answer */
    int32_t *tokens;              /* prompt + generated ids (owned) */
    int n_tokens;
    int n_prompt, n_gen;
    int n_cached;                 /* leading prompt tokens reused, not run (gen_params.n_reuse) */
    uint64_t prompt_ns;           /* processing the prompt tokens that were run */
    uint64_t gen_ns;              /* decoding (after the prompt) */
    uint64_t first_token_ns;      /* from the start to the first generated token */
    uint64_t seed;                /* the sampler's seed (drawn if none was given) */
    const char *done_reason;      /* "stop" | "length" | "cancelled" (static) */
    gen_logprob *logprobs;        /* with p->logprobs: one per token of the answer (owned) */
    int n_logprobs;
} gen_result;

/* ---- one sequence, driven from outside ------------------------------------
 *
 * A scheduler's loop for one sequence s:
 *     while (!gen_seq_done(s)) {
 *         n = gen_seq_next_input(s, &in);      run in[0..k), k <= n, at
 *                                              positions gen_seq_pos(s)..
 *         if (gen_seq_fed(s, k))               the input is complete:
 *             gen_seq_step(s, logits of in[k-1], err, errlen);
 *     }
 *     gen_seq_finish(s, &result); gen_seq_free(s);
 * Only the last piece of the input needs logits: a long prompt may be run
 * in several pieces (chunked prefill), each costing no vocabulary product.
 * After gen_seq_finish the KV holds result.tokens[0..gen_seq_pos(s)). */
typedef struct gen_seq gen_seq;

/* A sequence for prompt[0..n_prompt) (copied) under p (the struct is copied;
 * what it points to, other than the stop strings, is borrowed and must
 * outlive the sequence). n_vocab: the model's; n_ctx: the positions the
 * sequence may use, prompt and answer. p->n_reuse leading prompt tokens are
 * taken as already run (clamped to 0..n_prompt-1). Errors, with err filled:
 * -SMP_E_VALIDATION (an empty prompt, one that does not fit n_ctx, a bias id
 * outside the vocabulary, bad stop strings), -SMP_E_NOMEM, or the grammar's
 * error. */
int gen_seq_new(const tokenizer *tok, int32_t n_vocab, int n_ctx, const int32_t *prompt, int n_prompt,
                const gen_params *p, gen_seq **out, char *err, size_t errlen);
void gen_seq_free(gen_seq *s);
/* The tokens to run next (*tokens points into the sequence, valid until the
 * next call on it): the rest of the prompt, then the token sampled last.
 * Returns how many; 0 once done or while waiting for gen_seq_step. The
 * first call starts the sequence's clock (prompt_ns, first_token_ns). */
int gen_seq_next_input(gen_seq *s, const int32_t **tokens);
/* The first n tokens of that input were run (1 <= n <= its length). True
 * when that completed it: gen_seq_step wants the last one's logits. */
bool gen_seq_fed(gen_seq *s, int n);
/* Positions whose KV is in place: reused, then run. */
int gen_seq_pos(const gen_seq *s);
/* Give the logits (n_vocab floats, not modified) of the input's last token:
 * polls cancellation, samples (bias, grammar, budget, log probabilities),
 * streams the text that became final, checks stop strings. Returns 1 when
 * there is a next token to run, 0 when the sequence is done, or a negative
 * error (err filled; the sequence is then done, and only gen_seq_free is
 * left to call). */
int gen_seq_step(gen_seq *s, const float *logits, char *err, size_t errlen);
/* End it now as "cancelled" (the client left while its prompt was run). */
void gen_seq_cancel(gen_seq *s);
bool gen_seq_done(const gen_seq *s);
/* Flush the text held back (unless a stop string ended it), stamp the times
 * and the reason, and move the answer into *out (which the caller frees with
 * gen_result_free). Call once, when done. */
void gen_seq_finish(gen_seq *s, gen_result *out);

/* ---- a whole generation on one session ------------------------------------
 *
 * Run on a session: it is truncated to the reused prefix (p->n_reuse, at
 * most what it holds; reset when 0) and the rest of the prompt is run.
 * Afterwards it holds the KV of out->tokens[0..model_ctx_n_past(ctx)), for
 * the next call to reuse. Errors: -SMP_E_VALIDATION when the prompt does not
 * fit the context (err names both sizes), -SMP_E_NOMEM, or what
 * model_ctx_eval returned. On error *out is empty. */
int gen_run(model_ctx *ctx, const tokenizer *tok, const int32_t *prompt, int n_prompt, const gen_params *p,
            gen_result *out, char *err, size_t errlen);
void gen_result_free(gen_result *r);

/* Where trigger t starts in s[0..len) (the rules of gen_params'
 * grammar_trigger), or -1. Then *keep is how many trailing bytes may still
 * turn out to begin it (a stream holds them back) and *never says that with
 * at_start it can no longer come. from: where a match may begin (a stream
 * passes how far it searched before, less the trigger's length minus one,
 * so each byte is searched about once); at_start ignores it. */
long gen_find_trigger(const char *t, bool at_start, const char *s, size_t len, size_t from, size_t *keep,
                      bool *never);

#endif
