/* generate.c - see generate.h. Where the time goes: model_ctx_eval (the
 * prompt batch, then one token per step); sampling and detokenizing are
 * microseconds per token. */
#include "generate.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/util.h"

void gen_result_free(gen_result *r) {
    if (!r) return;
    buf_free(&r->text);
    smp_free(r->tokens);
    r->tokens = NULL;
}

/* Send text[*emitted .. upto) to the caller. Returns non-zero to cancel. */
static int emit(const gen_params *p, gen_result *r, size_t *emitted, size_t upto) {
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
    int cap = p->max_tokens > 0 && p->max_tokens < n_ctx - n_prompt ? p->max_tokens : n_ctx - n_prompt;
    float *logits = smp_malloc((size_t)n_vocab * sizeof *logits);
    out->tokens = smp_malloc((size_t)(n_prompt + cap) * sizeof *out->tokens);
    sampler *s = sampler_new(&p->sampling, n_vocab);
    stop_matcher *sm = NULL;
    grammar_matcher *gm = NULL;
    grammar_vocab *own_vocab = NULL;
    const grammar_vocab *gv = p->grammar_vocab;
    float *saved = NULL; /* the logits before sampling, for a masked second draw */
    int rc = -SMP_E_NOMEM;
    if (!logits || !out->tokens || !s) goto fail;
    if (p->grammar) {
        if ((rc = grammar_matcher_new(p->grammar, &gm, err, errlen)) != 0) goto fail;
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
        if (tok_stream_push(&ts, id, &out->text) != 0) {
            rc = -SMP_E_NOMEM;
            goto fail;
        }
        stop_result st = stop_matcher_update(sm, out->text.data ? out->text.data : "", out->text.len);
        if (st.which >= 0) {
            out->text.len = st.cut;
            if (out->text.data) out->text.data[st.cut] = '\0';
            if (emit(p, out, &emitted, st.cut)) reason = "cancelled";
            else reason = "stop";
            stopped = true;
            break;
        }
        if (emit(p, out, &emitted, out->text.len - st.hold)) {
            reason = "cancelled";
            break;
        }
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
        emit(p, out, &emitted, out->text.len);
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
    if (rc != 0) gen_result_free(out);
    return rc;
}
