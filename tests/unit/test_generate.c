/* test_generate.c - the generation loop as a per-sequence state machine
 * (gen_seq) and prefix reuse in gen_run, on stories260K:
 *   - a second chat turn that extends the first reuses its KV: the same
 *     greedy answer as from scratch, n_cached the shared prefix, also when
 *     the whole prompt is cached and when the caller claims more than the
 *     session holds;
 *   - two sequences driven step by step from outside, interleaved, one with
 *     its prompt run in pieces: each gives exactly what gen_run gives alone
 *     (tokens, streamed text, reason);
 *   - a sequence cancelled during its prompt ends with nothing sent. */
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "engine/generate.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "test.h"
#include "stories.h"

/* NULL if it fails. */
static int32_t *encode(const stories *s, const char *text, bool bos, size_t *n) {
    int32_t *ids = NULL;
    return tok_encode(s->tok, text, strlen(text), bos, false, &ids, n) == 0 ? ids : NULL;
}

static bool same_tokens(const gen_result *a, const gen_result *b) {
    return a->n_tokens == b->n_tokens && !memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof *a->tokens);
}

TEST(gen_run_prefix_reuse_second_turn) {
    stories s;
    stories_open(&s);
    char err[256];
    /* Turn 1. */
    size_t nx;
    const int32_t *p1 = s.prompt;
    int n1 = (int)s.np;
    gen_params p = greedy(24);
    gen_result t1;
    REQUIRE(gen_run(s.ctx, s.tok, p1, n1, &p, &t1, err, sizeof err) == 0);
    REQUIRE(t1.n_gen == 24); /* the answer ran to its budget: its last token was never run */
    CHECK_INT(t1.n_cached, 0);
    int held = model_ctx_n_past(s.ctx);
    CHECK_INT(held, t1.n_tokens - 1);
    /* Turn 2 = turn 1's prompt and answer, then the user's next words. */
    int32_t *more = encode(&s, " Then the dog said", false, &nx);
    REQUIRE(more);
    int n2 = t1.n_tokens + (int)nx;
    int32_t *p2 = smp_malloc((size_t)n2 * sizeof *p2);
    REQUIRE(p2);
    memcpy(p2, t1.tokens, (size_t)t1.n_tokens * sizeof *p2);
    memcpy(p2 + t1.n_tokens, more, nx * sizeof *p2);
    p = greedy(20);
    p.n_reuse = held;
    gen_result reused, scratch, whole, claimed;
    REQUIRE(gen_run(s.ctx, s.tok, p2, n2, &p, &reused, err, sizeof err) == 0);
    CHECK_INT(reused.n_cached, held);
    CHECK_INT(reused.n_prompt, n2);
    /* The same turn from scratch on a reset session. */
    model_ctx_reset(s.ctx);
    p.n_reuse = 0;
    REQUIRE(gen_run(s.ctx, s.tok, p2, n2, &p, &scratch, err, sizeof err) == 0);
    CHECK_INT(scratch.n_cached, 0);
    CHECK_INT(scratch.n_gen, 20);
    CHECK(same_tokens(&reused, &scratch));
    CHECK_STR(reused.text.data, scratch.text.data);
    /* The same prompt again: all of it is in the session, yet one token is
     * run to get the logits. */
    p.n_reuse = n2;
    REQUIRE(gen_run(s.ctx, s.tok, p2, n2, &p, &whole, err, sizeof err) == 0);
    CHECK_INT(whole.n_cached, n2 - 1);
    CHECK(same_tokens(&whole, &scratch));
    /* A caller claiming more than the session holds gets what it holds. */
    model_ctx_reset(s.ctx);
    REQUIRE(gen_run(s.ctx, s.tok, p2, n2, &p, &claimed, err, sizeof err) == 0);
    CHECK_INT(claimed.n_cached, 0);
    CHECK(same_tokens(&claimed, &scratch));
    gen_result_free(&t1);
    gen_result_free(&reused);
    gen_result_free(&scratch);
    gen_result_free(&whole);
    gen_result_free(&claimed);
    smp_free(more);
    smp_free(p2);
    stories_close(&s);
}

/* The reused positions really are read from the session, not recomputed:
 * claim a prefix the session does not hold (another prompt of the same
 * length) and the answer follows that other prompt. */
TEST(gen_run_prefix_reuse_reads_the_session) {
    stories s;
    stories_open(&s);
    char err[256];
    size_t na = s.np, nb;
    const int32_t *a = s.prompt;
    int32_t *b = encode(&s, "The big red ball and the little blue car", true, &nb);
    REQUIRE(b && nb > na && na > 2);
    nb = na; /* another prompt of the same length */
    gen_params p = greedy(12);
    gen_result ra, rb, mixed;
    REQUIRE(gen_run(s.ctx, s.tok, a, (int)na, &p, &ra, err, sizeof err) == 0);
    REQUIRE(gen_run(s.ctx, s.tok, b, (int)nb, &p, &rb, err, sizeof err) == 0);
    REQUIRE(strcmp(ra.text.data, rb.text.data) != 0);
    /* The session holds b's KV; claiming it as a's prefix continues b. */
    p.n_reuse = (int)na;
    REQUIRE(gen_run(s.ctx, s.tok, a, (int)na, &p, &mixed, err, sizeof err) == 0);
    CHECK_INT(mixed.n_cached, (int)na - 1);
    CHECK(strcmp(mixed.text.data, ra.text.data) != 0);
    gen_result_free(&ra);
    gen_result_free(&rb);
    gen_result_free(&mixed);
    smp_free(b);
    stories_close(&s);
}

/* What a sequence streamed, in order. */
typedef struct {
    buf text;
    int calls;
} sink;

static int on_text(void *ud, const char *t, size_t n) {
    sink *k = ud;
    k->calls++;
    return buf_append(&k->text, t, n);
}

/* One sequence on its own session, run the way a scheduler would: the
 * prompt in pieces of `chunk` tokens (logits for the last piece only). */
typedef struct {
    gen_seq *seq;
    model_ctx *ctx;
    int chunk;
    float *logits;
} driven;

/* One pass for d: runs its next piece of input; false once it is done
 * (or broken: the checks then fail the test). */
static bool drive_once(driven *d) {
    char err[256];
    if (gen_seq_done(d->seq)) return false;
    const int32_t *in;
    int n = gen_seq_next_input(d->seq, &in);
    int k = n < d->chunk ? n : d->chunk;
    int pos = gen_seq_pos(d->seq);
    CHECK_INT(model_ctx_n_past(d->ctx), pos);
    int rc = n > 0 ? model_ctx_eval(d->ctx, in, k, k == n ? d->logits : NULL, false) : -1;
    CHECK_INT(rc, 0);
    if (rc != 0) return false;
    bool complete = gen_seq_fed(d->seq, k);
    CHECK(complete == (k == n));
    CHECK_INT(gen_seq_pos(d->seq), pos + k);
    if (complete) {
        const int32_t *none;
        CHECK_INT(gen_seq_next_input(d->seq, &none), 0); /* waiting for its logits */
        rc = gen_seq_step(d->seq, d->logits, err, sizeof err);
        CHECK(rc >= 0);
        if (rc < 0) return false;
        CHECK(rc == (gen_seq_done(d->seq) ? 0 : 1));
    }
    return true;
}

TEST(gen_seq_interleaved_and_chunked_equal_gen_run) {
    stories s;
    stories_open(&s);
    char err[256];
    size_t na, nb;
    int32_t *a = encode(&s, "Once upon a time, in a small house near the woods, there lived", true, &na);
    int32_t *b = encode(&s, "Lily and Tom", true, &nb);
    REQUIRE(a && b && na > 9);
    /* a: seeded sampling, its prompt in pieces of 4; b: greedy with a stop
     * string, whole prompt at once. */
    sink ka = {0}, kb = {0}, solo_a = {0}, solo_b = {0};
    buf_init(&ka.text, 0);
    buf_init(&kb.text, 0);
    buf_init(&solo_a.text, 0);
    buf_init(&solo_b.text, 0);
    gen_params pa = {.sampling = sampler_params_default(), .max_tokens = 40, .on_text = on_text};
    pa.sampling.seed = 42;
    pa.sampling.temperature = 0.9f;
    const char *stops[] = {"."};
    gen_params pb = greedy(60);
    pb.on_text = on_text;
    pb.stop = stops;
    pb.n_stop = 1;
    gen_result ra, rb, ga, gb;
    pa.ud = &solo_a;
    REQUIRE(gen_run(s.ctx, s.tok, a, (int)na, &pa, &ga, err, sizeof err) == 0);
    pb.ud = &solo_b;
    REQUIRE(gen_run(s.ctx, s.tok, b, (int)nb, &pb, &gb, err, sizeof err) == 0);
    REQUIRE(!strcmp(gb.done_reason, "stop"));

    model_ctx *ctx2 = NULL;
    REQUIRE(model_ctx_new(s.m, 256, &ctx2, err, sizeof err) == 0);
    int32_t n_vocab = model_n_vocab(s.m);
    driven da = {.ctx = s.ctx, .chunk = 4}, db = {.ctx = ctx2, .chunk = 1000};
    da.logits = smp_malloc((size_t)n_vocab * sizeof(float));
    db.logits = smp_malloc((size_t)n_vocab * sizeof(float));
    REQUIRE(da.logits && db.logits);
    pa.ud = &ka;
    pb.ud = &kb;
    REQUIRE(gen_seq_new(s.tok, n_vocab, 256, a, (int)na, &pa, &da.seq, err, sizeof err) == 0);
    REQUIRE(gen_seq_new(s.tok, n_vocab, 256, b, (int)nb, &pb, &db.seq, err, sizeof err) == 0);
    model_ctx_reset(s.ctx);
    int passes = 0;
    while (drive_once(&da) | drive_once(&db)) passes++;
    CHECK(passes >= (int)(na + 3) / 4 + ga.n_gen - 1);
    gen_seq_finish(da.seq, &ra);
    gen_seq_finish(db.seq, &rb);
    CHECK(same_tokens(&ra, &ga));
    CHECK(same_tokens(&rb, &gb));
    CHECK_STR(ra.done_reason, ga.done_reason);
    CHECK_STR(rb.done_reason, "stop");
    CHECK_STR(ra.text.data, ga.text.data);
    CHECK_STR(rb.text.data, gb.text.data);
    CHECK(!strchr(rb.text.data, '.'));
    /* Streamed the same way, piece for piece. */
    CHECK_STR(ka.text.data, solo_a.text.data);
    CHECK_STR(kb.text.data, solo_b.text.data);
    CHECK_INT(ka.calls, solo_a.calls);
    CHECK_INT(kb.calls, solo_b.calls);
    CHECK(ra.seed == 42);
    /* The session holds what the header says: the tokens up to the sequence's position. */
    CHECK_INT(model_ctx_n_past(s.ctx), gen_seq_pos(da.seq));
    CHECK(gen_seq_pos(da.seq) >= ra.n_tokens - 1 && gen_seq_pos(da.seq) <= ra.n_tokens);
    gen_seq_free(da.seq);
    gen_seq_free(db.seq);
    gen_result_free(&ra);
    gen_result_free(&rb);
    gen_result_free(&ga);
    gen_result_free(&gb);
    buf_free(&ka.text);
    buf_free(&kb.text);
    buf_free(&solo_a.text);
    buf_free(&solo_b.text);
    smp_free(da.logits);
    smp_free(db.logits);
    model_ctx_free(ctx2);
    smp_free(a);
    smp_free(b);
    stories_close(&s);
}

TEST(gen_seq_cancelled_during_prompt_and_bad_input) {
    stories s;
    stories_open(&s);
    char err[256];
    size_t n = s.np;
    const int32_t *ids = s.prompt;
    sink k = {0};
    buf_init(&k.text, 0);
    gen_params p = greedy(10);
    p.on_text = on_text;
    p.ud = &k;
    gen_seq *seq = NULL;
    REQUIRE(gen_seq_new(s.tok, model_n_vocab(s.m), 256, ids, (int)n, &p, &seq, err, sizeof err) == 0);
    const int32_t *in;
    CHECK_INT(gen_seq_next_input(seq, &in), (int)n);
    model_ctx_reset(s.ctx);
    REQUIRE(model_ctx_eval(s.ctx, in, 2, NULL, false) == 0);
    CHECK(!gen_seq_fed(seq, 2));
    gen_seq_cancel(seq); /* the client left */
    CHECK(gen_seq_done(seq));
    CHECK_INT(gen_seq_next_input(seq, &in), 0);
    gen_result r;
    gen_seq_finish(seq, &r);
    CHECK_STR(r.done_reason, "cancelled");
    CHECK_INT(r.n_gen, 0);
    CHECK_INT(r.n_prompt, (int)n);
    CHECK_INT(k.calls, 0);
    CHECK_INT(gen_seq_pos(seq), 2);
    gen_result_free(&r);
    gen_seq_free(seq);
    /* Refused before anything runs, naming the problem. */
    CHECK_INT(gen_seq_new(s.tok, model_n_vocab(s.m), (int)n, ids, (int)n, &p, &seq, err, sizeof err),
              -SMP_E_VALIDATION);
    CHECK(strstr(err, "context holds") != NULL);
    CHECK(seq == NULL);
    gen_bias bad = {.id = model_n_vocab(s.m), .bias = 1};
    p.bias = &bad;
    p.n_bias = 1;
    CHECK_INT(gen_seq_new(s.tok, model_n_vocab(s.m), 256, ids, (int)n, &p, &seq, err, sizeof err),
              -SMP_E_VALIDATION);
    CHECK(strstr(err, "logit_bias") != NULL);
    buf_free(&k.text);
    stories_close(&s);
}
