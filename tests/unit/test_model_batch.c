/* test_model_batch.c - several sessions in one forward pass (model_batch_eval)
 * against each session run alone (model_ctx_eval):
 *   - for the mini models (llama in every quant type, qwen2) and stories260K,
 *     with the reference and the AVX2 kernels: five sequences with prompts of
 *     different lengths, fed in prefill chunks of different sizes mixed with
 *     the decode steps of the others, joining and leaving between passes;
 *     every logit row must equal the solo run's bit for bit and the greedy
 *     tokens must be the same;
 *   - bad input (a bad token, a full context, the same session twice, too
 *     many rows, a session of another model, no tokens) fails before anything
 *     is computed: every session keeps its position and its next logits;
 *   - more rows of logits than a workspace computes at once (32) land right;
 *   - a batch on some sessions while another thread runs model_ctx_eval on
 *     another session of the same model: both results stay exact. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "test.h"

#define MINI_DIR "../shared/models/mini/"
#define STORIES "../shared/models/stories260K.gguf"

#define N_SEQ 5
#define STEPS 10 /* greedy steps per sequence after its prompt */
#define MAX_PROMPT 40

static const int prompt_len[N_SEQ] = {1, 6, 17, 40, 3};
static const int chunk_len[N_SEQ] = {1, 4, 5, 16, 3}; /* prefill piece per pass */
static const int join_pass[N_SEQ] = {0, 0, 2, 3, 9};  /* pass at which each joins */

static model *load(const char *path) {
    char err[256];
    model *m = NULL;
    model_opts o = {.n_threads = 2};
    if (model_load(path, &o, &m, err, sizeof err)) fprintf(stderr, "  load %s: %s\n", path, err);
    return m;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* A prompt of n ids in [1, n_vocab), different per sequence. */
static void make_prompt(int seq, int n, int n_vocab, int32_t *out) {
    uint32_t h = 2166136261u ^ (uint32_t)seq * 7919u;
    for (int i = 0; i < n; i++) {
        h = h * 1103515245u + 12345u;
        out[i] = 1 + (int32_t)((h >> 8) % (uint32_t)(n_vocab - 1));
    }
}

/* One sequence's expected run: the logits after its prompt (all rows; the
 * last is what decoding starts from) and after each greedy step. */
typedef struct {
    int32_t prompt[MAX_PROMPT];
    float *prompt_logits; /* [prompt_len][n_vocab] */
    float *step_logits;   /* [STEPS][n_vocab]: after feeding step s's token */
    int32_t tokens[STEPS + 1];
} solo_run;

static void run_solo(model *m, int seq, solo_run *r) {
    int nv = model_n_vocab(m), np = prompt_len[seq];
    make_prompt(seq, np, nv, r->prompt);
    r->prompt_logits = smp_malloc((size_t)np * nv * sizeof(float));
    r->step_logits = smp_malloc((size_t)STEPS * nv * sizeof(float));
    model_ctx *c = NULL;
    char err[256];
    REQUIRE(r->prompt_logits && r->step_logits && model_ctx_new(m, 64, &c, err, sizeof err) == 0);
    CHECK(model_ctx_eval(c, r->prompt, np, r->prompt_logits, true) == 0);
    r->tokens[0] = argmax(r->prompt_logits + (size_t)(np - 1) * nv, nv);
    for (int s = 0; s < STEPS; s++) {
        CHECK(model_ctx_eval(c, &r->tokens[s], 1, r->step_logits + (size_t)s * nv, false) == 0);
        r->tokens[s + 1] = argmax(r->step_logits + (size_t)s * nv, nv);
    }
    model_ctx_free(c);
}

/* Per sequence in the batched run: how much of the prompt is in, which step. */
typedef struct {
    model_ctx *c;
    int fed, step;
    int32_t tokens[STEPS + 1];
    float *logits; /* [MAX_PROMPT][n_vocab] */
} batch_state;

/* Runs the schedule; returns the number of logit rows that differ from the
 * solo runs (0 expected) and counts the rows compared in *rows. */
static int run_batched(model *m, solo_run *solo, int *rows, double *max_diff) {
    int nv = model_n_vocab(m), bad = 0;
    model_batch *b = NULL;
    char err[256];
    if (model_batch_new(m, 64, &b, err, sizeof err)) {
        fprintf(stderr, "  batch: %s\n", err);
        return -1;
    }
    batch_state st[N_SEQ] = {0};
    for (int i = 0; i < N_SEQ; i++) {
        if (model_ctx_new(m, 64, &st[i].c, err, sizeof err)) return -1;
        st[i].logits = smp_malloc((size_t)MAX_PROMPT * nv * sizeof(float));
    }
    *rows = 0;
    *max_diff = 0;
    for (int pass = 0; pass < 200; pass++) {
        model_batch_seq e[N_SEQ];
        int who[N_SEQ], n = 0;
        /* Entries in a changing order: the newest first on odd passes. */
        for (int k = 0; k < N_SEQ; k++) {
            int i = pass % 2 ? N_SEQ - 1 - k : k;
            batch_state *s = &st[i];
            if (pass < join_pass[i] || s->step == STEPS) continue; /* not yet joined, or left */
            int np = prompt_len[i];
            if (s->fed < np) {
                int len = np - s->fed < chunk_len[i] ? np - s->fed : chunk_len[i];
                /* Sequence 3 asks for every row's logits; the others only the last, at the prompt's end. */
                bool all = i == 3, last = s->fed + len == np;
                e[n] = (model_batch_seq){.ctx = s->c, .tokens = solo[i].prompt + s->fed, .n = len,
                                         .logits = all || last ? s->logits : NULL, .all_logits = all};
            } else {
                e[n] = (model_batch_seq){.ctx = s->c, .tokens = &s->tokens[s->step], .n = 1, .logits = s->logits};
            }
            who[n++] = i;
        }
        if (!n) break;
        if (model_batch_eval(b, e, n)) {
            fprintf(stderr, "  pass %d: %s\n", pass, model_batch_error(b));
            bad++;
            break;
        }
        for (int k = 0; k < n; k++) {
            batch_state *s = &st[who[k]];
            const solo_run *r = &solo[who[k]];
            int np = prompt_len[who[k]];
            const float *want = NULL, *got = s->logits;
            int n_rows = e[k].logits ? (e[k].all_logits ? e[k].n : 1) : 0;
            if (s->fed < np) {
                int first = e[k].all_logits ? s->fed : s->fed + e[k].n - 1;
                want = r->prompt_logits + (size_t)first * nv;
                s->fed += e[k].n;
                if (s->fed == np) s->tokens[0] = argmax(got + (size_t)(n_rows - 1) * nv, nv);
            } else {
                want = r->step_logits + (size_t)s->step * nv;
                s->tokens[s->step + 1] = argmax(got, nv);
                s->step++;
            }
            for (int row = 0; row < n_rows; row++) {
                const float *a = got + (size_t)row * nv, *w = want + (size_t)row * nv;
                for (int v = 0; v < nv; v++)
                    if (fabs((double)a[v] - w[v]) > *max_diff) *max_diff = fabs((double)a[v] - w[v]);
                bad += memcmp(a, w, (size_t)nv * sizeof(float)) != 0;
                (*rows)++;
            }
        }
    }
    for (int i = 0; i < N_SEQ; i++) {
        CHECK_INT(st[i].step, STEPS);
        CHECK_INT(model_ctx_n_past(st[i].c), prompt_len[i] + STEPS);
        CHECK(memcmp(st[i].tokens, solo[i].tokens, sizeof st[i].tokens) == 0);
        model_ctx_free(st[i].c);
        smp_free(st[i].logits);
    }
    model_batch_free(b);
    return bad;
}

static void batch_equals_solo(const char *impl) {
    REQUIRE(kern_select(impl) == 0);
    const char *files[] = {
        MINI_DIR "mini-llama-f32.gguf",  MINI_DIR "mini-llama-F16.gguf",  MINI_DIR "mini-llama-BF16.gguf",
        MINI_DIR "mini-llama-Q8_0.gguf", MINI_DIR "mini-llama-Q4_0.gguf", MINI_DIR "mini-llama-Q4_1.gguf",
        MINI_DIR "mini-llama-Q5_0.gguf", MINI_DIR "mini-llama-Q5_1.gguf", MINI_DIR "mini-llama-Q2_K.gguf",
        MINI_DIR "mini-llama-Q3_K.gguf", MINI_DIR "mini-llama-Q4_K.gguf", MINI_DIR "mini-llama-Q5_K.gguf",
        MINI_DIR "mini-llama-Q6_K.gguf", MINI_DIR "mini-qwen2-f32.gguf",  MINI_DIR "mini-qwen2-Q8_0.gguf",
        MINI_DIR "mini-qwen2-Q4_K_M.gguf", STORIES,
    };
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        model *m = load(files[f]);
        CHECK(m);
        if (!m) continue;
        solo_run solo[N_SEQ] = {0};
        for (int i = 0; i < N_SEQ; i++) run_solo(m, i, &solo[i]);
        int rows = 0;
        double diff = 0;
        int bad = run_batched(m, solo, &rows, &diff);
        fprintf(stderr, "  [%s] %-40s %d logit rows, %d differ (max |diff| %.3g)\n", impl, files[f], rows, bad, diff);
        CHECK_INT(bad, 0);
        /* every prompt-end row, every step, and sequence 3's 40 prompt rows */
        CHECK_INT(rows, N_SEQ * (STEPS + 1) + prompt_len[3] - 1);
        for (int i = 0; i < N_SEQ; i++) {
            smp_free(solo[i].prompt_logits);
            smp_free(solo[i].step_logits);
        }
        model_free(m);
    }
}

TEST(model_batch_equals_solo_ref) { batch_equals_solo("ref"); }
TEST(model_batch_equals_solo_avx2) {
    if (!kern_cpu_has_avx2()) SKIP("no AVX2 on this CPU");
    batch_equals_solo("avx2");
}

/* ---- errors leave every session unchanged ---- */

/* c's next logits for token t, on a copy of its state: evaluated on c and
 * then truncated back. */
static void next_logits(model_ctx *c, int32_t t, float *out) {
    int n = model_ctx_n_past(c);
    CHECK(model_ctx_eval(c, &t, 1, out, false) == 0);
    CHECK(model_ctx_truncate(c, n) == 0);
}

TEST(model_batch_errors_change_nothing) {
    size_t base = smp_alloc_live_bytes();
    model *m = load(MINI_DIR "mini-qwen2-Q4_K_M.gguf"), *other = load(STORIES);
    REQUIRE(m && other);
    int nv = model_n_vocab(m);
    char err[256];
    model_ctx *c[3], *foreign;
    int32_t p[12];
    make_prompt(7, 12, nv, p);
    for (int i = 0; i < 3; i++) {
        REQUIRE(model_ctx_new(m, 16, &c[i], err, sizeof err) == 0);
        REQUIRE(model_ctx_eval(c[i], p, 4 + 4 * i, NULL, false) == 0); /* n_past 4, 8, 12 */
    }
    REQUIRE(model_ctx_new(other, 16, &foreign, err, sizeof err) == 0);
    float *before = smp_malloc((size_t)3 * nv * sizeof(float)), *after = smp_malloc((size_t)nv * sizeof(float));
    REQUIRE(before && after);
    for (int i = 0; i < 3; i++) next_logits(c[i], 5, before + (size_t)i * nv);

    model_batch *b;
    CHECK_INT(model_batch_new(m, 0, &b, err, sizeof err), -SMP_E_VALIDATION);
    CHECK_INT(model_batch_new(m, MODEL_BATCH_MAX_ROWS + 1, &b, err, sizeof err), -SMP_E_VALIDATION);
    REQUIRE(model_batch_new(m, 8, &b, err, sizeof err) == 0);
    CHECK_INT(model_batch_max_rows(b), 8);
    int32_t good[3] = {5, 6, 7}, bad_tok[2] = {5, nv};
    float lg[3][512];
    REQUIRE(nv <= 512);
    char bad_msg[128];
    snprintf(bad_msg, sizeof bad_msg, "seqs[2]: token id %d at index 1 is outside the vocabulary (0..%d)", nv, nv - 1);
    struct {
        model_batch_seq e[3];
        int code;
        const char *msg;
    } cases[] = {
        /* the bad entry comes last, so an engine that ran entries as it checked them would have moved c[0] */
        {{{c[0], good, 1, lg[0], false}, {c[1], good, 2, lg[1], false}, {c[2], bad_tok, 2, lg[2], false}},
         -SMP_E_VALIDATION, bad_msg},
        {{{c[0], good, 1, lg[0], false}, {c[1], good, 1, lg[1], false}, {c[2], good, 5, lg[2], false}},
         -SMP_E_TOO_LARGE, "seqs[2]: context full: 12 tokens + 5 new exceed the context size 16"},
        {{{c[0], good, 1, lg[0], false}, {c[1], good, 1, lg[1], false}, {c[0], good, 1, lg[2], false}},
         -SMP_E_VALIDATION, "seqs[0] and seqs[2] are the same session"},
        {{{c[0], good, 3, lg[0], false}, {c[1], good, 3, lg[1], false}, {c[2], good, 3, lg[2], false}},
         -SMP_E_TOO_LARGE, "seqs[2]: 3 tokens after 6 overflow the batch of 8 rows"},
        {{{c[0], good, 1, lg[0], false}, {c[1], good, 1, lg[1], false}, {foreign, good, 1, lg[2], false}},
         -SMP_E_VALIDATION, "seqs[2]: the session is not one of this model's"},
        {{{c[0], good, 1, lg[0], false}, {c[1], good, 1, lg[1], false}, {NULL, good, 1, lg[2], false}},
         -SMP_E_VALIDATION, "seqs[2]: the session is not one of this model's"},
        {{{c[0], good, 1, lg[0], false}, {c[1], good, 1, lg[1], false}, {c[2], good, 0, lg[2], false}},
         -SMP_E_VALIDATION, "seqs[2]: bad token count 0 (at least 1)"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        CHECK_INT(model_batch_eval(b, cases[k].e, 3), cases[k].code);
        CHECK_STR(model_batch_error(b), cases[k].msg);
        for (int i = 0; i < 3; i++) {
            CHECK_INT(model_ctx_n_past(c[i]), 4 + 4 * i);
            next_logits(c[i], 5, after);
            CHECK(memcmp(after, before + (size_t)i * nv, (size_t)nv * sizeof(float)) == 0);
        }
    }
    CHECK_INT(model_batch_eval(b, NULL, 0), 0); /* nothing to do */
    CHECK_STR(model_batch_error(b), "");
    /* And the batch still works: the same next logits for all three. */
    model_batch_seq ok[3] = {{c[0], good, 1, lg[0], false}, {c[1], good, 1, lg[1], false},
                             {c[2], good, 1, lg[2], false}};
    CHECK_INT(model_batch_eval(b, ok, 3), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(model_ctx_n_past(c[i]), 5 + 4 * i);
        CHECK(memcmp(lg[i], before + (size_t)i * nv, (size_t)nv * sizeof(float)) == 0);
    }
    model_batch_free(b);
    for (int i = 0; i < 3; i++) model_ctx_free(c[i]);
    model_ctx_free(foreign);
    smp_free(before);
    smp_free(after);
    model_free(m);
    model_free(other);
    CHECK_INT(smp_alloc_live_bytes(), base);
}

/* ---- a batch and a solo session of one model on two threads ---- */

typedef struct {
    model_ctx *c;
    const int32_t *prompt;
    int n, rounds;
    float *logits;
    int rc;
} solo_job;

static void *solo_thread(void *arg) {
    solo_job *j = arg;
    for (int r = 0; r < j->rounds && !j->rc; r++) {
        model_ctx_reset(j->c);
        j->rc = model_ctx_eval(j->c, j->prompt, j->n, j->logits + (size_t)r * 512, false);
    }
    return NULL;
}

TEST(model_batch_beside_another_thread) {
    model *m = load(MINI_DIR "mini-llama-Q4_K.gguf");
    REQUIRE(m);
    int nv = model_n_vocab(m);
    REQUIRE(nv <= 512);
    char err[256];
    int32_t p[24];
    make_prompt(3, 24, nv, p);
    /* Expected: each sequence alone, one thread. */
    static const int len[3] = {8, 15, 22}; /* sequence i is p[i .. i + len[i]) */
    float want[3][512];
    model_ctx *c[3];
    for (int i = 0; i < 3; i++) {
        REQUIRE(model_ctx_new(m, 64, &c[i], err, sizeof err) == 0);
        REQUIRE(model_ctx_eval(c[i], p + i, len[i], want[i], false) == 0);
        model_ctx_reset(c[i]);
    }
    enum { ROUNDS = 40 };
    solo_job j = {.c = c[2], .prompt = p + 2, .n = len[2], .rounds = ROUNDS};
    j.logits = smp_malloc((size_t)ROUNDS * 512 * sizeof(float));
    REQUIRE(j.logits);
    model_batch *b;
    REQUIRE(model_batch_new(m, 32, &b, err, sizeof err) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, solo_thread, &j) == 0);
    int wrong = 0;
    for (int r = 0; r < ROUNDS; r++) {
        float got[2][512];
        model_ctx_reset(c[0]);
        model_ctx_reset(c[1]);
        model_batch_seq e[2] = {{c[0], p, len[0], got[0], false}, {c[1], p + 1, len[1], got[1], false}};
        CHECK_INT(model_batch_eval(b, e, 2), 0);
        for (int i = 0; i < 2; i++) wrong += memcmp(got[i], want[i], (size_t)nv * sizeof(float)) != 0;
    }
    pthread_join(th, NULL);
    CHECK_INT(j.rc, 0);
    for (int r = 0; r < ROUNDS; r++) wrong += memcmp(j.logits + (size_t)r * 512, want[2], (size_t)nv * sizeof(float)) != 0;
    CHECK_INT(wrong, 0);
    smp_free(j.logits);
    model_batch_free(b);
    for (int i = 0; i < 3; i++) model_ctx_free(c[i]);
    model_free(m);
}

/* ---- more logit rows than the workspace stages at once ---- */

TEST(model_batch_many_logit_rows) {
    model *m = load(MINI_DIR "mini-llama-Q6_K.gguf");
    REQUIRE(m);
    int nv = model_n_vocab(m);
    char err[256];
    static const int len[3] = {20, 25, 1}; /* 46 rows of logits: staged 32 + 14 */
    int32_t p[3][25];
    model_ctx *c[3];
    float *want[3], *got[3];
    for (int i = 0; i < 3; i++) {
        make_prompt(20 + i, len[i], nv, p[i]);
        want[i] = smp_malloc((size_t)len[i] * nv * sizeof(float));
        got[i] = smp_malloc((size_t)len[i] * nv * sizeof(float));
        REQUIRE(want[i] && got[i] && model_ctx_new(m, 32, &c[i], err, sizeof err) == 0);
        REQUIRE(model_ctx_eval(c[i], p[i], len[i], want[i], true) == 0);
        model_ctx_reset(c[i]);
    }
    model_batch *b;
    REQUIRE(model_batch_new(m, 64, &b, err, sizeof err) == 0);
    model_batch_seq e[3] = {{c[0], p[0], len[0], got[0], true}, {c[1], p[1], len[1], got[1], true},
                            {c[2], p[2], len[2], got[2], true}};
    CHECK_INT(model_batch_eval(b, e, 3), 0);
    for (int i = 0; i < 3; i++) {
        CHECK(memcmp(got[i], want[i], (size_t)len[i] * nv * sizeof(float)) == 0);
        model_ctx_free(c[i]);
        smp_free(want[i]);
        smp_free(got[i]);
    }
    model_batch_free(b);
    model_free(m);
}
