/* test_logprobs.c - log probabilities and logit bias in the generation loop:
 * sampler_log_softmax_top against a plain reference on made-up logits, then
 * gen_run on stories260K replayed step by step with a log-softmax computed
 * here in double; the streamed entries come before their text; a bias of
 * -100 bans a token, +100 forces it, an id outside the vocabulary is refused. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/generate.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "test.h"
#include "stories.h"

/* log(sum exp) the plain way, in double. */
static double ref_lse(const float *l, int n) {
    double mx = -INFINITY, z = 0.0;
    for (int i = 0; i < n; i++)
        if (l[i] > mx) mx = l[i];
    for (int i = 0; i < n; i++) z += exp((double)l[i] - mx);
    return mx + log(z);
}

TEST(logprobs_softmax_top_matches_reference) {
    const float l[] = {1.0f, 3.0f, 3.0f, -INFINITY, NAN, 2.0f, -1.0f};
    const float finite[] = {1.0f, 3.0f, 3.0f, 2.0f, -1.0f}; /* -inf and NaN weigh nothing */
    sampler_logprob top[SAMPLER_MAX_TOP_LOGPROBS];
    int n = -1;
    double lse = sampler_log_softmax_top(l, 7, 3, top, &n);
    CHECK(fabs(lse - ref_lse(finite, 5)) < 1e-9);
    CHECK_INT(n, 3);
    CHECK_INT(top[0].id, 1); /* a tie goes to the lower id */
    CHECK_INT(top[1].id, 2);
    CHECK_INT(top[2].id, 5);
    CHECK(fabs(top[0].logprob - (3.0 - lse)) < 1e-6);
    CHECK(fabs(top[2].logprob - (2.0 - lse)) < 1e-6);
    /* k is clamped to the vocabulary and to 20; 0 asks for none. */
    sampler_log_softmax_top(l, 7, 50, top, &n);
    CHECK_INT(n, 7);
    CHECK(top[6].logprob == -INFINITY);
    sampler_log_softmax_top(l, 7, 0, top, &n);
    CHECK_INT(n, 0);
}

TEST(logprobs_gen_run_matches_a_replayed_log_softmax) {
    stories s;
    stories_open(&s);
    char err[256];
    gen_params p = greedy(24);
    p.logprobs = true;
    p.top_logprobs = 5;
    p.sampling.temperature = 0.9f; /* what is drawn must not change what is reported */
    p.sampling.seed = 3;
    p.sampling.repeat_penalty = 1.3f;
    gen_result r;
    REQUIRE(gen_run(s.ctx, s.tok, s.prompt, (int)s.np, &p, &r, err, sizeof err) == 0);
    REQUIRE(r.n_gen > 0);
    CHECK_INT(r.n_logprobs, r.n_gen);

    int nv = model_n_vocab(s.m);
    float *logits = smp_malloc((size_t)nv * sizeof *logits);
    REQUIRE(logits);
    model_ctx_reset(s.ctx);
    REQUIRE(model_ctx_eval(s.ctx, s.prompt, (int)s.np, logits, false) == 0);
    double worst = 0;
    for (int i = 0; i < r.n_logprobs; i++) {
        const gen_logprob *e = &r.logprobs[i];
        double lse = ref_lse(logits, nv);
        CHECK_INT(e->id, r.tokens[r.n_prompt + i]);
        worst = fmax(worst, fabs(e->logprob - (logits[e->id] - lse)));
        CHECK_INT(e->n_top, 5);
        double mass = 0;
        for (int k = 0; k < e->n_top; k++) {
            worst = fmax(worst, fabs(e->top[k].logprob - (logits[e->top[k].id] - lse)));
            if (k) CHECK(e->top[k].logprob <= e->top[k - 1].logprob);
            mass += exp(e->top[k].logprob);
        }
        CHECK(mass <= 1.0 + 1e-6);
        /* the first is the model's own favourite */
        for (int t = 0; t < nv; t++) CHECK(logits[t] <= logits[e->top[0].id]);
        REQUIRE(model_ctx_eval(s.ctx, &e->id, 1, logits, false) == 0);
    }
    fprintf(stderr, "  %d tokens, largest difference from the reference %.2e\n", r.n_logprobs, worst);
    CHECK(worst < 1e-4);
    /* Every token's text ends where the next begins, the last at the end. */
    CHECK(r.logprobs[r.n_logprobs - 1].text_end == r.text.len);
    smp_free(logits);
    gen_result_free(&r);
    stories_close(&s);
}

/* What the stream handed over, in order: entries and text. */
typedef struct {
    int entries;
    size_t entry_bytes, text_bytes;
    bool ahead; /* entries went out before all of their text */
    bool apart; /* some text went out without the entries of all its tokens */
    const tokenizer *tok;
} seen;

static int seen_lp(void *ud, const gen_logprob *lp, int n) {
    seen *s = ud;
    for (int i = 0; i < n; i++) {
        size_t len;
        tok_piece(s->tok, lp[i].id, false, &len);
        s->entry_bytes += len;
    }
    s->entries += n;
    return 0;
}

static int seen_text(void *ud, const char *text, size_t len) {
    seen *s = ud;
    s->text_bytes += len;
    /* The text sent so far against the tokens handed over before it. */
    if (s->entry_bytes > s->text_bytes) s->ahead = true;
    if (s->entry_bytes != s->text_bytes) s->apart = true;
    return 0;
}

TEST(logprobs_streamed_before_their_text_and_cut_at_stop) {
    stories s;
    stories_open(&s);
    char err[256];
    gen_params p = greedy(30);
    p.logprobs = true;
    gen_result full;
    REQUIRE(gen_run(s.ctx, s.tok, s.prompt, (int)s.np, &p, &full, err, sizeof err) == 0);
    fprintf(stderr, "  greedy: '%s'\n", full.text.data);

    seen sn = {.tok = s.tok};
    p.on_logprobs = seen_lp;
    p.on_text = seen_text;
    p.ud = &sn;
    gen_result r;
    REQUIRE(gen_run(s.ctx, s.tok, s.prompt, (int)s.np, &p, &r, err, sizeof err) == 0);
    CHECK(!sn.apart); /* with no stop string every piece of text completes its tokens */
    CHECK_INT(sn.entries, r.n_logprobs);
    CHECK_INT(r.n_logprobs, full.n_logprobs);
    CHECK(sn.entry_bytes == r.text.len); /* stories260K's pieces are ASCII */
    gen_result_free(&r);

    /* A stop string in the middle of the answer: text that might start it
     * is held back, a token that runs into it comes after its partial text,
     * the tokens wholly inside it go. */
    REQUIRE(full.text.len > 12);
    char stop[4];
    memcpy(stop, full.text.data + 10, 3);
    stop[3] = '\0';
    const char *stops[] = {stop};
    p.stop = stops;
    p.n_stop = 1;
    sn = (seen){.tok = s.tok};
    REQUIRE(gen_run(s.ctx, s.tok, s.prompt, (int)s.np, &p, &r, err, sizeof err) == 0);
    CHECK_STR(r.done_reason, "stop");
    CHECK(!sn.ahead);
    CHECK_INT(sn.entries, r.n_logprobs);
    CHECK(r.n_logprobs < r.n_gen);
    CHECK(sn.entry_bytes >= r.text.len);           /* every byte of the answer has its token */
    size_t last;
    tok_piece(s.tok, r.logprobs[r.n_logprobs - 1].id, false, &last);
    CHECK(sn.entry_bytes - last < r.text.len);     /* and no token lies wholly in the stop string */
    gen_result_free(&r);
    gen_result_free(&full);
    stories_close(&s);
}

TEST(logprobs_logit_bias_bans_forces_and_checks_ids) {
    stories s;
    stories_open(&s);
    char err[256];
    gen_params p = greedy(6);
    gen_result r;
    REQUIRE(gen_run(s.ctx, s.tok, s.prompt, (int)s.np, &p, &r, err, sizeof err) == 0);
    int32_t first = r.tokens[r.n_prompt];
    gen_result_free(&r);

    gen_bias ban = {first, -100};
    p.bias = &ban;
    p.n_bias = 1;
    REQUIRE(gen_run(s.ctx, s.tok, s.prompt, (int)s.np, &p, &r, err, sizeof err) == 0);
    for (int i = r.n_prompt; i < r.n_tokens; i++) CHECK(r.tokens[i] != first);
    gen_result_free(&r);

    int32_t forced = s.prompt[s.np - 1]; /* "▁time" */
    REQUIRE(forced != first);
    gen_bias force = {forced, 100};
    p.bias = &force;
    p.logprobs = true;
    p.top_logprobs = 1;
    REQUIRE(gen_run(s.ctx, s.tok, s.prompt, (int)s.np, &p, &r, err, sizeof err) == 0);
    CHECK_INT(r.n_gen, 6);
    for (int i = r.n_prompt; i < r.n_tokens; i++) CHECK_INT(r.tokens[i], forced);
    /* The bias shapes the draw, not the reported distribution. */
    CHECK(r.logprobs[0].top[0].id != forced && r.logprobs[0].logprob < r.logprobs[0].top[0].logprob);
    gen_result_free(&r);

    gen_bias bad[] = {{3, 1}, {model_n_vocab(s.m), 1}};
    p.bias = bad;
    p.n_bias = 2;
    CHECK_INT(gen_run(s.ctx, s.tok, s.prompt, (int)s.np, &p, &r, err, sizeof err), -SMP_E_VALIDATION);
    CHECK(strstr(err, "logit_bias") != NULL);
    bad[1].id = -1;
    CHECK_INT(gen_run(s.ctx, s.tok, s.prompt, (int)s.np, &p, &r, err, sizeof err), -SMP_E_VALIDATION);
    stories_close(&s);
}
