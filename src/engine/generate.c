/* generate.c - see generate.h. Where the time goes: model_ctx_eval (the
 * prompt batch, then one token per step); sampling and detokenizing are
 * microseconds per token. */
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

long gen_find_trigger(const char *t, bool at_start, const char *s, size_t len, size_t *keep, bool *never) {
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
    const char *hit = len >= tl ? memmem(s, len, t, tl) : NULL;
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
static int arm_on_trigger(const gen_params *p, const buf *text, bool *waiting, grammar_matcher **gm, char *err,
                          size_t errlen) {
    const char *s = text->data ? text->data : "";
    size_t keep;
    bool never;
    long at = gen_find_trigger(p->grammar_trigger, p->trigger_at_start, s, text->len, &keep, &never);
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

int gen_run(model_ctx *ctx, const tokenizer *tok, const int32_t *prompt, int n_prompt, const gen_params *p,
            gen_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    buf_init(&out->text, 0);
    const model *m = model_ctx_model(ctx);
    int n_ctx = model_ctx_n_ctx(ctx);
    int32_t n_vocab = model_n_vocab(m);
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
    int cap = p->max_tokens > 0 && p->max_tokens < n_ctx - n_prompt ? p->max_tokens : n_ctx - n_prompt;
    float *logits = smp_malloc((size_t)n_vocab * sizeof *logits);
    out->tokens = smp_malloc((size_t)(n_prompt + cap) * sizeof *out->tokens);
    sampler *s = sampler_new(&p->sampling, n_vocab);
    stop_matcher *sm = NULL;
    grammar_matcher *gm = NULL;
    grammar_vocab *own_vocab = NULL;
    const grammar_vocab *gv = p->grammar_vocab;
    float *saved = NULL; /* the logits before sampling, for a masked second draw */
    float *raw = NULL;   /* the model's logits at this step, for log probabilities */
    int lp_cap = 0, lp_sent = 0;
    int rc = -SMP_E_NOMEM;
    if (!logits || !out->tokens || !s) goto fail;
    bool waiting = p->grammar && p->grammar_trigger; /* the grammar starts at its trigger */
    if (p->logprobs && !(raw = smp_malloc((size_t)n_vocab * sizeof *raw))) goto fail;
    if (p->grammar) {
        if (!waiting && (rc = grammar_matcher_new(p->grammar, &gm, err, errlen)) != 0) goto fail;
        rc = -SMP_E_NOMEM;
        if (!gv && grammar_vocab_new(tok, &own_vocab) != 0) goto fail;
        if (!gv) gv = own_vocab;
        if (!(saved = smp_malloc((size_t)n_vocab * sizeof *saved))) goto fail;
    }
    rc = stop_matcher_new(p->stop, p->n_stop, &sm);
    if (rc != 0) {
        snprintf(err, errlen, "too many or too long stop strings (at most %d of %d bytes)", STOP_MAX_STRINGS,
                 STOP_MAX_LEN);
        goto fail;
    }
    out->seed = sampler_seed(s);
    memcpy(out->tokens, prompt, (size_t)n_prompt * sizeof *prompt);
    out->n_tokens = out->n_prompt = n_prompt;

    uint64_t t0 = util_now_ns();
    model_ctx_reset(ctx);
    rc = model_ctx_eval_until(ctx, prompt, n_prompt, logits, false, p->cancelled, p->ud);
    if (rc == MODEL_CANCELLED) {
        /* Stopped during the prompt: no answer, nothing to sample from. */
        out->prompt_ns = util_now_ns() - t0;
        out->done_reason = "cancelled";
        rc = 0;
        goto fail;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s", model_ctx_error(ctx));
        goto fail;
    }
    uint64_t t1 = util_now_ns();
    out->prompt_ns = t1 - t0;
    for (int i = 0; i < n_prompt; i++) sampler_accept(s, prompt[i]);

    tok_stream ts;
    tok_stream_init(&ts, tok, 0);
    size_t emitted = 0;
    const char *reason = "length";
    bool stopped = false, closing = false;
    while (out->n_gen < cap) {
        if (p->cancelled && p->cancelled(p->ud)) {
            reason = "cancelled";
            break;
        }
        /* Log probabilities come from the logits as the model gave them:
         * before bias, penalties, temperature and the grammar. */
        gen_logprob lp = {.text_end = END_UNKNOWN};
        double lse = 0.0;
        if (p->logprobs) {
            lse = sampler_log_softmax_top(logits, n_vocab, p->top_logprobs, lp.top, &lp.n_top);
            memcpy(raw, logits, (size_t)n_vocab * sizeof *logits);
        }
        for (int i = 0; i < p->n_bias; i++) logits[p->bias[i].id] += p->bias[i].bias;
        if (gm) memcpy(saved, logits, (size_t)n_vocab * sizeof *logits);
        size_t reach = gm ? budget_reach(gm, cap - out->n_gen) : SIZE_MAX;
        int32_t id = sampler_sample(s, logits);
        if (gm && !grammar_matcher_allows_within(gm, gv, id, reach)) {
            if (reach != SIZE_MAX && grammar_matcher_allows(gm, gv, id)) closing = true;
            memcpy(logits, saved, (size_t)n_vocab * sizeof *logits);
            int allowed = grammar_mask_within(gm, gv, logits, reach);
            if (allowed == 0 && reach != SIZE_MAX) { /* no token fits (no single-byte tokens): as before */
                memcpy(logits, saved, (size_t)n_vocab * sizeof *logits);
                allowed = grammar_mask(gm, gv, logits);
            }
            if (allowed <= 0) {
                rc = allowed < 0 ? allowed : -SMP_E_INTERNAL;
                if (allowed == 0) snprintf(err, errlen, "no token of the vocabulary can continue the grammar");
                goto fail;
            }
            id = sampler_sample(s, logits);
        }
        if (tok_is_eog(tok, id)) {
            reason = "stop";
            break;
        }
        if (gm && !grammar_matcher_accept_token(gm, gv, id)) {
            rc = -SMP_E_INTERNAL;
            snprintf(err, errlen, "the sampler chose a token the grammar refuses");
            goto fail;
        }
        sampler_accept(s, id);
        out->tokens[out->n_tokens++] = id;
        if (out->n_gen++ == 0) out->first_token_ns = util_now_ns() - t0;
        if (p->logprobs) {
            lp.id = id;
            lp.logprob = isnan(raw[id]) ? -INFINITY : (float)(raw[id] - lse);
            if (lp_add(out, &lp_cap, &lp) != 0) {
                rc = -SMP_E_NOMEM;
                goto fail;
            }
        }
        if (tok_stream_push(&ts, id, &out->text) != 0) {
            rc = -SMP_E_NOMEM;
            goto fail;
        }
        if (!tok_stream_pending(&ts)) lp_settle(out, out->text.len);
        stop_result st = stop_matcher_update(sm, out->text.data ? out->text.data : "", out->text.len);
        if (st.which >= 0) {
            out->text.len = st.cut;
            if (out->text.data) out->text.data[st.cut] = '\0';
            lp_cut(out, st.cut);
            if (emit(p, out, &emitted, &lp_sent, st.cut)) reason = "cancelled";
            else reason = "stop";
            stopped = true;
            break;
        }
        if (emit(p, out, &emitted, &lp_sent, out->text.len - st.hold)) {
            reason = "cancelled";
            break;
        }
        if (waiting && (rc = arm_on_trigger(p, &out->text, &waiting, &gm, err, errlen)) != 0) goto fail;
        if (gm && grammar_matcher_is_complete(gm)) { /* only the end is left */
            reason = "stop";
            break;
        }
        if (out->n_gen == cap) break; /* no need to run the last token */
        rc = model_ctx_eval(ctx, &id, 1, logits, false);
        if (rc != 0) {
            snprintf(err, errlen, "%s", model_ctx_error(ctx));
            goto fail;
        }
    }
    /* Out of tokens, but the budget steered the answer to a complete document. */
    if (closing && !strcmp(reason, "length") && grammar_matcher_can_end(gm)) reason = "stop";
    if (!stopped) {
        tok_stream_flush(&ts, &out->text);
        lp_settle(out, out->text.len);
        emit(p, out, &emitted, &lp_sent, out->text.len);
    }
    out->gen_ns = util_now_ns() - t1;
    out->done_reason = reason;
    rc = 0;
fail:
    smp_free(logits);
    sampler_free(s);
    stop_matcher_free(sm);
    grammar_matcher_free(gm);
    grammar_vocab_free(own_vocab);
    smp_free(saved);
    smp_free(raw);
    if (rc != 0) gen_result_free(out);
    return rc;
}
