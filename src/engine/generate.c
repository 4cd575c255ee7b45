/* generate.c - see generate.h. Main structure: struct gen_seq, one
 * sequence's state (FEED -> SAMPLE -> FEED ... -> DONE) with its sampler,
 * stop matcher, grammar matcher, detokenizer stream and the growing
 * gen_result; gen_run is a loop over it with one session. Where the time
 * goes: running the model (the prompt, then one token per step); a step's
 * sampling, copying the logits and detokenizing are microseconds. */
#define _GNU_SOURCE /* memmem */
#include "generate.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/util.h"

void gen_result_free(gen_result *r) {
    if (!r) return;
    buf_free(&r->text);
    smp_free(r->tokens);
    smp_free(r->logprobs);
    r->tokens = NULL;
    r->logprobs = NULL;
    r->n_logprobs = 0;
}

long gen_find_trigger(const char *t, bool at_start, const char *s, size_t len, size_t from, size_t *keep,
                      bool *never) {
    size_t tl = strlen(t);
    *keep = 0;
    *never = false;
    if (at_start) {
        size_t at = 0;
        while (at < len && (s[at] == ' ' || s[at] == '\n' || s[at] == '\t' || s[at] == '\r')) at++;
        size_t have = len - at < tl ? len - at : tl;
        if (strncmp(s + at, t, have)) {
            *never = true;
            return -1;
        }
        if (have == tl) return (long)at;
        *keep = len; /* blanks, then perhaps the start of it */
        return -1;
    }
    if (from > len) from = len;
    const char *hit = len - from >= tl ? memmem(s + from, len - from, t, tl) : NULL;
    if (hit) return (long)(hit - s);
    for (size_t k = tl - 1 < len ? tl - 1 : len; k > 0; k--)
        if (!memcmp(s + len - k, t, k)) {
            *keep = k;
            break;
        }
    return -1;
}

/* A waiting grammar (gen_params.grammar_trigger): once the trigger is in
 * text, start the matcher on what follows it. */
static int arm_on_trigger(const gen_params *p, const buf *text, size_t *from, bool *waiting, grammar_matcher **gm,
                          char *err, size_t errlen) {
    const char *s = text->data ? text->data : "";
    size_t keep, tl = strlen(p->grammar_trigger);
    bool never;
    long at = gen_find_trigger(p->grammar_trigger, p->trigger_at_start, s, text->len, *from, &keep, &never);
    *from = text->len >= tl ? text->len - tl + 1 : 0; /* a later match ends past what is here */
    if (never) *waiting = false;
    if (at < 0) return 0;
    *waiting = false;
    int rc = grammar_matcher_new(p->grammar, gm, err, errlen);
    if (rc != 0) return rc;
    size_t rest = (size_t)at + strlen(p->grammar_trigger);
    if (rest < text->len && !grammar_matcher_accept_bytes(*gm, s + rest, text->len - rest)) {
        grammar_matcher_free(*gm); /* the text already went elsewhere: leave it free */
        *gm = NULL;
    }
    return 0;
}

/* ---- log probabilities: each entry learns where its text ends once no
 * byte of it is held back by the detokenizer (text_end: END_UNKNOWN until
 * then), and goes to the caller once the text sent reaches that end. */

#define END_UNKNOWN SIZE_MAX

static int lp_add(gen_result *r, int *cap, const gen_logprob *e) {
    if (r->n_logprobs == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        gen_logprob *a = smp_realloc(r->logprobs, (size_t)nc * sizeof *a);
        if (!a) return -SMP_E_NOMEM;
        r->logprobs = a;
        *cap = nc;
    }
    r->logprobs[r->n_logprobs++] = *e;
    return 0;
}

/* Nothing is held back: every token so far ends within text[0..len). */
static void lp_settle(gen_result *r, size_t len) {
    for (int i = r->n_logprobs; i-- > 0 && r->logprobs[i].text_end == END_UNKNOWN;) r->logprobs[i].text_end = len;
}

/* A stop string cut the answer at cut: keep the tokens that start before
 * it (the last one may run into the stop string), ending there at most. */
static void lp_cut(gen_result *r, size_t cut) {
    size_t start = 0;
    int keep = 0;
    while (keep < r->n_logprobs && start < cut) {
        gen_logprob *e = &r->logprobs[keep++];
        start = e->text_end;
        if (e->text_end > cut) e->text_end = cut;
    }
    r->n_logprobs = keep;
}

/* Hand the caller the entries not sent yet whose text ends by upto. */
static int lp_send(const gen_params *p, gen_result *r, int *sent, size_t upto) {
    int from = *sent;
    while (*sent < r->n_logprobs && r->logprobs[*sent].text_end <= upto) (*sent)++;
    return *sent > from && p->on_logprobs ? p->on_logprobs(p->ud, r->logprobs + from, *sent - from) : 0;
}

/* Send text[*emitted .. upto) to the caller, after the log probabilities of
 * the tokens it completes. Returns non-zero to cancel. */
static int emit(const gen_params *p, gen_result *r, size_t *emitted, int *lp_sent, size_t upto) {
    if (lp_send(p, r, lp_sent, upto)) return 1;
    if (upto <= *emitted) return 0;
    int rc = p->on_text ? p->on_text(p->ud, r->text.data + *emitted, upto - *emitted) : 0;
    *emitted = upto;
    return rc;
}

/* The budget rule for constrained decoding: the farthest from its end (in
 * bytes, grammar_matcher_distance) the grammar may be after the next token
 * when `left` tokens remain, counting this one. Every token is at least one
 * byte, and a byte-fallback or byte-level vocabulary has a token for every
 * byte, so while the distance is at most the tokens left some token keeps it
 * so, and the document can always be finished in time. When the distance
 * is already more than the tokens left (only possible from the start: the
 * rule keeps it so afterwards) there is no limit (SIZE_MAX) and the answer
 * may be cut ("length"), as without this rule. Cost: the distance is a sum
 * over the live stacks' nodes (about 40 ns for nested JSON). */
static size_t budget_reach(const grammar_matcher *gm, int left) {
    size_t d = grammar_matcher_distance(gm);
    return d <= (size_t)left ? (size_t)left - 1 : SIZE_MAX;
}

/* ---- one sequence ---- */

/* The input is always tokens[pos..n_tokens): the prompt's rest, then the
 * token sampled last. */
typedef enum {
    SEQ_FEED,   /* input waits to be run */
    SEQ_SAMPLE, /* the input was run: gen_seq_step wants its logits */
    SEQ_DONE,   /* reason is set; gen_seq_finish is next */
} seq_state;

struct gen_seq {
    seq_state state;
    gen_params p; /* the caller's; pointers borrowed */
    const tokenizer *tok;
    int32_t n_vocab;
    int cap;     /* most tokens to generate */
    int pos;     /* positions whose KV is in place */
    gen_result r; /* grows until gen_seq_finish hands it over */
    sampler *smp;
    stop_matcher *sm;
    grammar_matcher *gm;
    grammar_vocab *own_vocab;
    const grammar_vocab *gv;
    float *work; /* the step's logits, scratch for bias, sampler and mask */
    tok_stream ts;
    size_t emitted;   /* bytes of r.text sent through on_text */
    int lp_cap, lp_sent;
    bool waiting;     /* the grammar waits for its trigger */
    size_t trig_from; /* where in the text the trigger may still begin */
    bool closing;     /* the budget rule turned a token away */
    bool stopped;     /* a stop string ended it: nothing to flush */
    bool started;
    uint64_t t0, t1;  /* the first input taken; the prompt's logits given */
    const char *reason;
};

static int seq_check(int32_t n_vocab, int n_ctx, int n_prompt, const gen_params *p, char *err, size_t errlen) {
    if (n_prompt <= 0) {
        snprintf(err, errlen, "the prompt is empty (no tokens)");
        return -SMP_E_VALIDATION;
    }
    if (n_prompt >= n_ctx) {
        snprintf(err, errlen, "the prompt is %d tokens; the model's context holds %d (prompt plus answer)", n_prompt,
                 n_ctx);
        return -SMP_E_VALIDATION;
    }
    for (int i = 0; i < p->n_bias; i++) {
        if (p->bias[i].id < 0 || p->bias[i].id >= n_vocab) {
            snprintf(err, errlen, "logit_bias: token id %d is outside the model's vocabulary (0..%d)", p->bias[i].id,
                     n_vocab - 1);
            return -SMP_E_VALIDATION;
        }
    }
    return 0;
}

int gen_seq_new(const tokenizer *tok, int32_t n_vocab, int n_ctx, const int32_t *prompt, int n_prompt,
                const gen_params *p, gen_seq **out, char *err, size_t errlen) {
    *out = NULL;
    int rc = seq_check(n_vocab, n_ctx, n_prompt, p, err, errlen);
    if (rc != 0) return rc;
    gen_seq *s = smp_calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->p = *p;
    s->tok = tok;
    s->n_vocab = n_vocab;
    s->cap = p->max_tokens > 0 && p->max_tokens < n_ctx - n_prompt ? p->max_tokens : n_ctx - n_prompt;
    s->pos = p->n_reuse < 0 ? 0 : p->n_reuse < n_prompt ? p->n_reuse : n_prompt - 1;
    buf_init(&s->r.text, 0);
    s->r.tokens = smp_malloc((size_t)(n_prompt + s->cap) * sizeof *s->r.tokens);
    s->work = smp_malloc((size_t)n_vocab * sizeof *s->work);
    s->smp = sampler_new(&p->sampling, n_vocab);
    if (!s->r.tokens || !s->work || !s->smp) goto nomem;
    s->waiting = p->grammar && p->grammar_trigger;
    s->gv = p->grammar_vocab;
    if (p->grammar) {
        if (!s->waiting && (rc = grammar_matcher_new(p->grammar, &s->gm, err, errlen)) != 0) goto fail;
        if (!s->gv && grammar_vocab_new(tok, &s->own_vocab) != 0) goto nomem;
        if (!s->gv) s->gv = s->own_vocab;
    }
    if ((rc = stop_matcher_new(p->stop, p->n_stop, &s->sm)) != 0) {
        snprintf(err, errlen, "too many or too long stop strings (at most %d of %d bytes)", STOP_MAX_STRINGS,
                 STOP_MAX_LEN);
        goto fail;
    }
    memcpy(s->r.tokens, prompt, (size_t)n_prompt * sizeof *prompt);
    s->r.n_tokens = s->r.n_prompt = n_prompt;
    s->r.n_cached = s->pos;
    s->r.seed = sampler_seed(s->smp);
    for (int i = 0; i < n_prompt; i++) sampler_accept(s->smp, prompt[i]);
    tok_stream_init(&s->ts, tok, 0);
    s->reason = "length";
    s->state = SEQ_FEED;
    *out = s;
    return 0;
nomem:
    rc = -SMP_E_NOMEM;
    snprintf(err, errlen, "out of memory starting a generation");
fail:
    gen_seq_free(s);
    return rc;
}

void gen_seq_free(gen_seq *s) {
    if (!s) return;
    gen_result_free(&s->r);
    sampler_free(s->smp);
    stop_matcher_free(s->sm);
    grammar_matcher_free(s->gm);
    grammar_vocab_free(s->own_vocab);
    smp_free(s->work);
    smp_free(s);
}

int gen_seq_next_input(gen_seq *s, const int32_t **tokens) {
    if (!s->started) {
        s->started = true;
        s->t0 = util_now_ns();
    }
    if (s->state != SEQ_FEED) {
        *tokens = NULL;
        return 0;
    }
    *tokens = s->r.tokens + s->pos;
    return s->r.n_tokens - s->pos;
}

bool gen_seq_fed(gen_seq *s, int n) {
    SMP_ASSERT(s->state == SEQ_FEED && n >= 1);
    SMP_ASSERT(s->pos + n <= s->r.n_tokens);
    s->pos += n;
    if (s->pos < s->r.n_tokens) return false;
    s->state = SEQ_SAMPLE;
    return true;
}

int gen_seq_pos(const gen_seq *s) { return s->pos; }
bool gen_seq_done(const gen_seq *s) { return s->state == SEQ_DONE; }

static int seq_end(gen_seq *s, const char *reason) {
    s->reason = reason;
    s->state = SEQ_DONE;
    return 0;
}

void gen_seq_cancel(gen_seq *s) {
    if (s->state != SEQ_DONE) seq_end(s, "cancelled");
}

/* The step's logits with the bias added, into the scratch copy (the
 * sampler and the mask change them in place). */
static float *seq_biased(gen_seq *s, const float *logits) {
    memcpy(s->work, logits, (size_t)s->n_vocab * sizeof *logits);
    for (int i = 0; i < s->p.n_bias; i++) s->work[s->p.bias[i].id] += s->p.bias[i].bias;
    return s->work;
}

/* Draw a token from the logits under the bias, the sampler and the grammar
 * with its budget (see gen_params.grammar). */
static int seq_draw(gen_seq *s, const float *logits, int32_t *out, char *err, size_t errlen) {
    size_t reach = s->gm ? budget_reach(s->gm, s->cap - s->r.n_gen) : SIZE_MAX;
    int32_t id = sampler_sample(s->smp, seq_biased(s, logits));
    if (s->gm && !grammar_matcher_allows_within(s->gm, s->gv, id, reach)) {
        /* Refused: draw again from the biased logits, masked. */
        if (reach != SIZE_MAX && grammar_matcher_allows(s->gm, s->gv, id)) s->closing = true;
        int allowed = grammar_mask_within(s->gm, s->gv, seq_biased(s, logits), reach);
        if (allowed == 0 && reach != SIZE_MAX) /* no token fits (no single-byte tokens): as before */
            allowed = grammar_mask(s->gm, s->gv, seq_biased(s, logits));
        if (allowed <= 0) {
            if (allowed == 0) snprintf(err, errlen, "no token of the vocabulary can continue the grammar");
            return allowed < 0 ? allowed : -SMP_E_INTERNAL;
        }
        id = sampler_sample(s->smp, s->work);
    }
    *out = id;
    return 0;
}

static int seq_step(gen_seq *s, const float *logits, char *err, size_t errlen) {
    const gen_params *p = &s->p;
    gen_result *out = &s->r;
    if (!s->t1) {
        s->t1 = util_now_ns();
        out->prompt_ns = s->t1 - s->t0;
    }
    if (p->cancelled && p->cancelled(p->ud)) return seq_end(s, "cancelled");
    /* Log probabilities come from the logits as the model gave them:
     * before bias, penalties, temperature and the grammar. */
    gen_logprob lp = {.text_end = END_UNKNOWN};
    double lse = 0.0;
    if (p->logprobs) lse = sampler_log_softmax_top(logits, s->n_vocab, p->top_logprobs, lp.top, &lp.n_top);
    int32_t id;
    int rc = seq_draw(s, logits, &id, err, errlen);
    if (rc != 0) return rc;
    if (tok_is_eog(s->tok, id)) return seq_end(s, "stop");
    if (s->gm && !grammar_matcher_accept_token(s->gm, s->gv, id)) {
        snprintf(err, errlen, "the sampler chose a token the grammar refuses");
        return -SMP_E_INTERNAL;
    }
    sampler_accept(s->smp, id);
    out->tokens[out->n_tokens++] = id;
    if (out->n_gen++ == 0) out->first_token_ns = util_now_ns() - s->t0;
    if (p->logprobs) {
        lp.id = id;
        lp.logprob = isnan(logits[id]) ? -INFINITY : (float)(logits[id] - lse);
        if (lp_add(out, &s->lp_cap, &lp) != 0) goto nomem;
    }
    if (tok_stream_push(&s->ts, id, &out->text) != 0) goto nomem;
    if (!tok_stream_pending(&s->ts)) lp_settle(out, out->text.len);
    stop_result st = stop_matcher_update(s->sm, out->text.data ? out->text.data : "", out->text.len);
    if (st.which >= 0) {
        out->text.len = st.cut;
        if (out->text.data) out->text.data[st.cut] = '\0';
        lp_cut(out, st.cut);
        s->stopped = true;
        return seq_end(s, emit(p, out, &s->emitted, &s->lp_sent, st.cut) ? "cancelled" : "stop");
    }
    if (emit(p, out, &s->emitted, &s->lp_sent, out->text.len - st.hold)) return seq_end(s, "cancelled");
    if (s->waiting && (rc = arm_on_trigger(p, &out->text, &s->trig_from, &s->waiting, &s->gm, err, errlen)) != 0) return rc;
    if (s->gm && grammar_matcher_is_complete(s->gm)) return seq_end(s, "stop"); /* only the end is left */
    if (out->n_gen == s->cap) return seq_end(s, "length"); /* no need to run the last token */
    s->state = SEQ_FEED;
    return 1;
nomem:
    snprintf(err, errlen, "out of memory");
    return -SMP_E_NOMEM;
}

int gen_seq_step(gen_seq *s, const float *logits, char *err, size_t errlen) {
    SMP_ASSERT(s->state == SEQ_SAMPLE);
    int rc = seq_step(s, logits, err, errlen);
    if (rc < 0) seq_end(s, "error"); /* nothing more to run; only gen_seq_free is left */
    return rc;
}

void gen_seq_finish(gen_seq *s, gen_result *out) {
    SMP_ASSERT(s->state == SEQ_DONE && strcmp(s->reason, "error"));
    gen_result *r = &s->r;
    /* Out of tokens, but the budget steered the answer to a complete document. */
    if (s->closing && !strcmp(s->reason, "length") && grammar_matcher_can_end(s->gm)) s->reason = "stop";
    if (s->t1 && !s->stopped) {
        tok_stream_flush(&s->ts, &r->text);
        lp_settle(r, r->text.len);
        emit(&s->p, r, &s->emitted, &s->lp_sent, r->text.len);
    }
    uint64_t now = util_now_ns();
    if (s->t1) r->gen_ns = now - s->t1;
    else r->prompt_ns = s->started ? now - s->t0 : 0; /* ended during the prompt */
    r->done_reason = s->reason;
    *out = *r;
    memset(r, 0, sizeof *r);
}

/* ---- one generation on one session ---- */

int gen_run(model_ctx *ctx, const tokenizer *tok, const int32_t *prompt, int n_prompt, const gen_params *p,
            gen_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    buf_init(&out->text, 0);
    int32_t n_vocab = model_n_vocab(model_ctx_model(ctx));
    gen_params q = *p;
    if (q.n_reuse > model_ctx_n_past(ctx)) q.n_reuse = model_ctx_n_past(ctx);
    gen_seq *s = NULL;
    float *logits = smp_malloc((size_t)n_vocab * sizeof *logits);
    if (!logits) return -SMP_E_NOMEM;
    int rc = gen_seq_new(tok, n_vocab, model_ctx_n_ctx(ctx), prompt, n_prompt, &q, &s, err, errlen);
    if (rc != 0) goto fail;
    if (gen_seq_pos(s) > 0) model_ctx_truncate(ctx, gen_seq_pos(s));
    else model_ctx_reset(ctx);
    bool in_prompt = true;
    while (!gen_seq_done(s)) {
        const int32_t *in;
        int n = gen_seq_next_input(s, &in);
        /* A long prompt stops within a batch of a cancellation. */
        rc = in_prompt ? model_ctx_eval_until(ctx, in, n, logits, false, p->cancelled, p->ud)
                       : model_ctx_eval(ctx, in, n, logits, false);
        in_prompt = false;
        if (rc == MODEL_CANCELLED) { /* during the prompt: no answer, nothing to sample from */
            gen_seq_cancel(s);
            break;
        }
        if (rc != 0) {
            snprintf(err, errlen, "%s", model_ctx_error(ctx));
            goto fail;
        }
        gen_seq_fed(s, n);
        if ((rc = gen_seq_step(s, logits, err, errlen)) < 0) goto fail;
    }
    gen_seq_finish(s, out);
    rc = 0;
fail:
    gen_seq_free(s);
    smp_free(logits);
    return rc;
}
