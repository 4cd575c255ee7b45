/* test_sched.c - the continuous-batching scheduler (engine/sched.c) on real
 * models: answers generated together equal the same answers generated
 * alone, token for token; one sequence cancelled leaves the others as they
 * were; full slots and a full queue refuse, never crash; the prompt cache
 * reuses a slot's conversation. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/sched.h"
#include "engine/tokenizer.h"
#include "test.h"

#define STORIES "../shared/models/stories260K.gguf"
#define QWEN "../shared/models/mini/mini-qwen2-Q4_K_M.gguf"

typedef struct {
    model *m;
    gguf *g;
    tokenizer *tok;
} loaded_model;

static void open_model(const char *path, loaded_model *lm) {
    char err[256];
    memset(lm, 0, sizeof *lm);
    model_opts o = {.n_threads = 1};
    REQUIRE(model_load(path, &o, &lm->m, err, sizeof err) == 0);
    REQUIRE(gguf_open(path, &lm->g, err, sizeof err) == 0);
    REQUIRE(tok_load(lm->g, &lm->tok, err, sizeof err) == 0);
}

static void close_model(loaded_model *lm) {
    tok_free(lm->tok);
    gguf_close(lm->g);
    model_free(lm->m);
}

/* One request: a prompt, how long to wait before sending it, and what came
 * back. */
typedef struct {
    sched *s;
    const tokenizer *tok;
    const char *text;
    int max_tokens;
    int delay_ms;
    int cancel_after; /* pieces of text before the client "leaves" (0: never) */
    int pieces;
    int rc;
    gen_result r;
} request;

static request mk(sched *s, const tokenizer *tok, const char *text, int max_tokens, int delay_ms, int cancel_after) {
    request q;
    memset(&q, 0, sizeof q);
    q.s = s, q.tok = tok, q.text = text, q.max_tokens = max_tokens, q.delay_ms = delay_ms, q.cancel_after = cancel_after;
    return q;
}

static int count_piece(void *ud, const char *text, size_t len) {
    request *q = ud;
    (void)text;
    (void)len;
    q->pieces++;
    return q->cancel_after && q->pieces >= q->cancel_after;
}

static void *send_request(void *arg) {
    request *q = arg;
    if (q->delay_ms) usleep((useconds_t)q->delay_ms * 1000);
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok_encode(q->tok, q->text, strlen(q->text), true, false, &ids, &n) != 0) {
        q->rc = -SMP_E_NOMEM;
        return NULL;
    }
    gen_params p = {.sampling = sampler_params_default(), .max_tokens = q->max_tokens, .on_text = count_piece, .ud = q};
    p.sampling.temperature = 0;
    char err[256];
    q->rc = sched_run(q->s, q->tok, ids, (int)n, &p, &q->r, err, sizeof err);
    if (q->rc) fprintf(stderr, "  sched_run: %s\n", err);
    smp_free(ids);
    return NULL;
}

static const char *const prompts[] = {
    "Once upon a time", "The little dog ran to the park and", "Lily had a red ball.", "One day, a big bear",
    "Tom and Sue went to the sea. They saw", "The sun", "A bird sang a song about", "Mom said",
};

/* The most sequences one pass advanced (the scheduler's observer). */
static int widest;
static void watch_pass(void *ud, int sequences, int rows, double seconds) {
    (void)ud, (void)rows, (void)seconds;
    if (sequences > widest) widest = sequences;
}

static void run_all(request *q, int n) {
    pthread_t th[16];
    for (int i = 0; i < n; i++) REQUIRE(pthread_create(&th[i], NULL, send_request, &q[i]) == 0);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
}

/* Alone (one slot, one at a time) against together (eight joining at
 * different times, with different lengths, so sequences join and leave
 * while others run and prompts are read beside decode steps). */
static void together_equals_alone(const char *path) {
    loaded_model lm;
    open_model(path, &lm);
    char err[256];
    sched *solo = NULL, *many = NULL;
    REQUIRE(sched_new(lm.m, 1, 256, 16, &solo, err, sizeof err) == 0);
    REQUIRE(sched_new(lm.m, 8, 256, 16, &many, err, sizeof err) == 0);
    request a[8], b[8];
    for (int i = 0; i < 8; i++) {
        a[i] = mk(solo, lm.tok, prompts[i], 10 + 7 * i, 0, 0);
        b[i] = mk(many, lm.tok, prompts[i], 10 + 7 * i, (i % 4) * 3, 0);
    }
    for (int i = 0; i < 8; i++) send_request(&a[i]);
    widest = 0;
    sched_set_observer(many, watch_pass, NULL, NULL);
    run_all(b, 8);
    for (int i = 0; i < 8; i++) {
        CHECK_INT(a[i].rc, 0);
        CHECK_INT(b[i].rc, 0);
        CHECK_INT(a[i].r.n_tokens, b[i].r.n_tokens);
        bool same = a[i].r.n_tokens == b[i].r.n_tokens &&
                    !memcmp(a[i].r.tokens, b[i].r.tokens, (size_t)a[i].r.n_tokens * sizeof(int32_t));
        if (!same) fprintf(stderr, "  %s: request %d differs batched\n", path, i);
        CHECK(same);
        CHECK(!strcmp(a[i].r.done_reason, b[i].r.done_reason));
        gen_result_free(&a[i].r);
        gen_result_free(&b[i].r);
    }
    CHECK(widest >= 2); /* they did run together */
    sched_free(solo);
    sched_free(many);
    close_model(&lm);
}

TEST(sched_together_equals_alone_spm) { together_equals_alone(STORIES); }
TEST(sched_together_equals_alone_bpe) { together_equals_alone(QWEN); }

TEST(sched_one_cancelled_leaves_the_others_unchanged) {
    loaded_model lm;
    open_model(STORIES, &lm);
    char err[256];
    sched *s = NULL;
    REQUIRE(sched_new(lm.m, 8, 256, 16, &s, err, sizeof err) == 0);
    request a[8], b[8];
    for (int i = 0; i < 8; i++) {
        a[i] = mk(s, lm.tok, prompts[i], 60, 0, 0);
        b[i] = mk(s, lm.tok, prompts[i], 60, 0, i == 3 ? 5 : 0);
    }
    run_all(a, 8);
    run_all(b, 8);
    for (int i = 0; i < 8; i++) {
        CHECK_INT(b[i].rc, 0);
        if (i == 3) {
            CHECK(!strcmp(b[i].r.done_reason, "cancelled"));
            CHECK(b[i].r.n_gen < a[i].r.n_gen);
        } else {
            CHECK(a[i].r.n_tokens == b[i].r.n_tokens &&
                  !memcmp(a[i].r.tokens, b[i].r.tokens, (size_t)a[i].r.n_tokens * sizeof(int32_t)));
        }
        gen_result_free(&a[i].r);
        gen_result_free(&b[i].r);
    }
    sched_free(s);
    close_model(&lm);
}

TEST(sched_full_slots_and_queue_refuse) {
    loaded_model lm;
    open_model(STORIES, &lm);
    char err[256];
    sched *s = NULL;
    /* One slot, one place in the queue: of six at once, at least one runs,
     * at most two wait or run, and the rest are refused, all cleanly. */
    REQUIRE(sched_new(lm.m, 1, 512, 1, &s, err, sizeof err) == 0);
    request q[6];
    /* The first holds the slot for 480 tokens; the others come just after. */
    for (int i = 0; i < 6; i++) q[i] = mk(s, lm.tok, prompts[i], 480, i ? 5 : 0, 0);
    run_all(q, 6);
    int ok = 0, refused = 0;
    for (int i = 0; i < 6; i++) {
        if (q[i].rc == 0) ok++;
        else if (q[i].rc == -SMP_E_TOO_MANY) refused++;
        gen_result_free(&q[i].r);
    }
    CHECK(ok >= 1 && ok + refused == 6 && refused >= 1);
    sched_free(s);
    close_model(&lm);
}

TEST(sched_prompt_cache_reuses_a_slot) {
    loaded_model lm;
    open_model(STORIES, &lm);
    char err[256];
    sched *s = NULL;
    REQUIRE(sched_new(lm.m, 2, 256, 4, &s, err, sizeof err) == 0);
    request first = mk(s, lm.tok, "Once upon a time there was a little girl named Lily.", 20, 0, 0);
    send_request(&first);
    CHECK_INT(first.rc, 0);
    CHECK_INT(first.r.n_cached, 0);
    request again = mk(s, lm.tok, "Once upon a time there was a little girl named Lily. She liked", 20, 0, 0);
    send_request(&again);
    CHECK_INT(again.rc, 0);
    /* Everything the first prompt had in common with this one was reused. */
    int common = 0;
    while (common < first.r.n_prompt && common < again.r.n_prompt && first.r.tokens[common] == again.r.tokens[common])
        common++;
    CHECK(again.r.n_cached >= common - 1 && again.r.n_cached > 5);
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.reused_tokens == (uint64_t)again.r.n_cached);
    gen_result_free(&first.r);
    gen_result_free(&again.r);
    sched_free(s);
    close_model(&lm);
}
