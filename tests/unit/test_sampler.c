/* test_sampler.c - sampler (greedy, seeds, top-k/p, min-p, temperature,
 * penalties) and the stop-string matcher. */
#include <stdint.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "core/alloc.h"
#include "core/errors.h"
#include "engine/sampler.h"
#include "test.h"

static sampler_params plain(float temperature, uint64_t seed) {
    sampler_params p = sampler_params_default();
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

/* Deterministic pseudo-random logits for tests (not the sampler's PRNG). */
static void fill_logits(float *l, int n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        l[i] = (float)(x % 20000) / 1000.0f - 10.0f;
    }
}

/* Draw `draws` tokens from a fresh copy of logits each time; count them. */
static void histogram(sampler *s, const float *logits, int n, int draws, int *count) {
    float *tmp = smp_malloc((size_t)n * sizeof *tmp);
    for (int i = 0; i < n; i++) count[i] = 0;
    for (int d = 0; d < draws; d++) {
        memcpy(tmp, logits, (size_t)n * sizeof *tmp);
        int32_t t = sampler_sample(s, tmp);
        if (t >= 0 && t < n) count[t]++;
    }
    smp_free(tmp);
}

TEST(sampler_greedy_is_argmax) {
    sampler_params p = plain(0.0f, 1);
    sampler *s = sampler_new(&p, 8);
    REQUIRE(s);
    float l[8] = {0.5f, 2.0f, -1.0f, 3.5f, 3.5f, NAN, 1.0f, 0.0f};
    CHECK_INT(sampler_sample(s, l), 3); /* tie between 3 and 4: lower id */
    float m[8] = {NAN, -INFINITY, -2.0f, -3.0f, -1.5f, -9.0f, -1.6f, -2.0f};
    CHECK_INT(sampler_sample(s, m), 4);
    for (uint32_t k = 1; k < 20; k++) {
        float r[8];
        fill_logits(r, 8, k);
        int best = 0;
        for (int i = 1; i < 8; i++)
            if (r[i] > r[best]) best = i;
        CHECK_INT(sampler_sample(s, r), best);
    }
    sampler_free(s);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

TEST(sampler_top_k_1_equals_greedy) {
    enum { N = 1000 };
    static float a[N], b[N];
    sampler_params pg = plain(0.0f, 7), pk = plain(1.0f, 7);
    pk.top_k = 1;
    sampler *g = sampler_new(&pg, N), *k = sampler_new(&pk, N);
    REQUIRE(g && k);
    for (uint32_t seed = 1; seed <= 50; seed++) {
        fill_logits(a, N, seed);
        if (seed % 5 == 0) a[seed] = a[seed + 1] = 50.0f; /* ties go to the lower id */
        memcpy(b, a, sizeof a);
        CHECK_INT(sampler_sample(k, b), sampler_sample(g, a));
    }
    sampler_free(g);
    sampler_free(k);
}

TEST(sampler_same_seed_same_tokens) {
    enum { N = 50, STEPS = 200 };
    float base[N], l[N];
    fill_logits(base, N, 3);
    for (int i = 0; i < N; i++) base[i] *= 0.3f; /* flatter: many tokens in play */
    sampler_params p = plain(1.0f, 42);
    p.top_k = 20;
    p.top_p = 0.9f;
    sampler *a = sampler_new(&p, N), *b = sampler_new(&p, N);
    p.seed = 43;
    sampler *c = sampler_new(&p, N);
    REQUIRE(a && b && c);
    int32_t ta[STEPS], differ = 0;
    for (int i = 0; i < STEPS; i++) {
        memcpy(l, base, sizeof l);
        ta[i] = sampler_sample(a, l);
        memcpy(l, base, sizeof l);
        CHECK_INT(sampler_sample(b, l), ta[i]);
        memcpy(l, base, sizeof l);
        differ += sampler_sample(c, l) != ta[i];
    }
    CHECK(differ > STEPS / 4);
    /* reset replays the same draws */
    sampler_reset(a);
    for (int i = 0; i < STEPS; i++) {
        memcpy(l, base, sizeof l);
        CHECK_INT(sampler_sample(a, l), ta[i]);
    }
    CHECK_INT(sampler_seed(a), 42);
    sampler_free(a);
    sampler_free(b);
    sampler_free(c);
}

TEST(sampler_seed_is_portable) {
    /* xoshiro256** seeded by splitmix64 is fully specified, so these draws
     * are the same on every machine; pin them so a change is noticed. */
    enum { N = 1000 };
    static float base[N], l[N];
    for (int i = 0; i < N; i++) base[i] = 0.0f; /* uniform: the draw is rng-only */
    sampler_params p = plain(1.0f, 12345);
    sampler *s = sampler_new(&p, N);
    REQUIRE(s);
    int32_t got[5];
    for (int i = 0; i < 5; i++) {
        memcpy(l, base, sizeof l);
        got[i] = sampler_sample(s, l);
    }
    /* Computed independently (a Python transcription of the reference
     * algorithm): floor(1000 * u) for the first five uniforms of seed 12345. */
    const int32_t want[5] = {743, 130, 963, 48, 555};
    for (int i = 0; i < 5; i++) CHECK_INT(got[i], want[i]);
    sampler_free(s);
}

TEST(sampler_random_seed_is_reported) {
    sampler_params p = plain(1.0f, SAMPLER_SEED_RANDOM);
    sampler *a = sampler_new(&p, 10), *b = sampler_new(&p, 10);
    REQUIRE(a && b);
    CHECK(sampler_seed(a) != SAMPLER_SEED_RANDOM);
    CHECK(sampler_seed(a) != sampler_seed(b));
    sampler_free(a);
    sampler_free(b);
}

TEST(sampler_temperature_matches_softmax) {
    enum { DRAWS = 10000 };
    float logits[3] = {1.0f, 2.0f, 3.0f};
    int count[3];
    double z = exp(1) + exp(2) + exp(3);
    double want1[3] = {exp(1) / z, exp(2) / z, exp(3) / z};
    sampler_params p = plain(1.0f, 99);
    sampler *s = sampler_new(&p, 3);
    REQUIRE(s);
    histogram(s, logits, 3, DRAWS, count);
    for (int i = 0; i < 3; i++) CHECK_NEAR((double)count[i] / DRAWS, want1[i], 0.02);
    sampler_free(s);

    /* T = 0.5 doubles the logits: softmax(2, 4, 6) */
    p.temperature = 0.5f;
    s = sampler_new(&p, 3);
    histogram(s, logits, 3, DRAWS, count);
    double z2 = exp(2) + exp(4) + exp(6);
    CHECK_NEAR((double)count[0] / DRAWS, exp(2) / z2, 0.02);
    CHECK_NEAR((double)count[2] / DRAWS, exp(6) / z2, 0.02);
    sampler_free(s);

    /* A tiny temperature is greedy in effect (and must not make NaNs). */
    p.temperature = 1e-30f;
    s = sampler_new(&p, 3);
    histogram(s, logits, 3, 200, count);
    CHECK_INT(count[2], 200);
    sampler_free(s);
}

TEST(sampler_top_p_cuts_the_tail) {
    enum { DRAWS = 4000 };
    /* probabilities 0.5, 0.3, 0.15, 0.05: p = 0.75 keeps the first two */
    float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    int count[4];
    sampler_params p = plain(1.0f, 5);
    p.top_p = 0.75f;
    sampler *s = sampler_new(&p, 4);
    REQUIRE(s);
    histogram(s, logits, 4, DRAWS, count);
    CHECK_INT(count[2] + count[3], 0);
    CHECK_NEAR((double)count[0] / DRAWS, 0.5 / 0.8, 0.03);
    sampler_free(s);

    /* p = 0.9 keeps three; with top_k = 2 first, only two survive anyway */
    p.top_p = 0.9f;
    s = sampler_new(&p, 4);
    histogram(s, logits, 4, DRAWS, count);
    CHECK_INT(count[3], 0);
    CHECK(count[2] > 0);
    sampler_free(s);
    p.top_k = 2;
    s = sampler_new(&p, 4);
    histogram(s, logits, 4, DRAWS, count);
    CHECK_INT(count[2] + count[3], 0);
    sampler_free(s);
}

/* Top-p keeps the shortest prefix whose mass reaches p: reaching it exactly
 * is enough. Tokens 0 and 1 have 0.5 each; p = 0.5 is reached by token 0
 * alone, so token 1 must never be drawn (a ">" in place of ">=" keeps both),
 * on the sorted path after top-k and on the bucket path without it. */
TEST(sampler_top_p_mass_reached_exactly) {
    enum { DRAWS = 400 };
    const float logits[3] = {0.0f, 0.0f, -1e9f};
    for (int top_k = 0; top_k <= 2; top_k += 2) {
        sampler_params p = plain(1.0f, 11);
        p.top_p = 0.5f;
        p.top_k = top_k;
        sampler *s = sampler_new(&p, 3);
        REQUIRE(s);
        int count[3];
        histogram(s, logits, 3, DRAWS, count);
        CHECK_INT(count[0], DRAWS);
        CHECK_INT(count[1], 0);
        sampler_free(s);
    }
}

/* The kept set of top-p, computed the slow obvious way. */
static bool *top_p_reference(const float *l, int n, float top_p) {
    bool *keep = smp_calloc((size_t)n, 1);
    float mx = l[0];
    for (int i = 1; i < n; i++)
        if (l[i] > mx) mx = l[i];
    double z = 0;
    for (int i = 0; i < n; i++) z += exp((double)l[i] - mx);
    double cum = 0;
    for (;;) { /* repeatedly take the best not yet kept (lower id on ties) */
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!keep[i] && (best < 0 || l[i] > l[best])) best = i;
        if (best < 0) break;
        keep[best] = true;
        cum += exp((double)l[best] - mx);
        if (cum >= top_p * z) break;
    }
    return keep;
}

TEST(sampler_top_p_matches_reference) {
    enum { N = 3000, DRAWS = 600 };
    static float base[N], l[N];
    float ps[] = {0.1f, 0.5f, 0.9f};
    for (uint32_t seed = 1; seed <= 3; seed++) {
        fill_logits(base, N, seed);
        for (int i = 0; i < N; i++) base[i] *= 0.7f;
        for (int j = 0; j < 3; j++) {
            bool *keep = top_p_reference(base, N, ps[j]);
            sampler_params p = plain(1.0f, seed);
            p.top_p = ps[j];
            sampler *s = sampler_new(&p, N);
            int outside = 0;
            for (int d = 0; d < DRAWS; d++) {
                memcpy(l, base, sizeof l);
                outside += !keep[sampler_sample(s, l)];
            }
            CHECK_INT(outside, 0);
            sampler_free(s);
            smp_free(keep);
        }
    }
}

TEST(sampler_large_vocab_paths) {
    enum { N = 152064 }; /* Qwen2's vocabulary */
    float *base = smp_malloc(N * sizeof *base), *l = smp_malloc(N * sizeof *l);
    REQUIRE(base && l);

    /* Peaked: top-p alone is satisfied by the first partial selection. */
    fill_logits(base, N, 11);
    base[77] = 30.0f, base[150000] = 29.0f, base[5] = 28.5f;
    sampler_params p = plain(1.0f, 8); /* p: 0.629, 0.231, 0.140, ~1e-5 for the rest */
    p.top_p = 0.85f;
    sampler *s = sampler_new(&p, N);
    for (int d = 0; d < 50; d++) {
        memcpy(l, base, N * sizeof *l);
        int32_t t = sampler_sample(s, l);
        CHECK(t == 77 || t == 150000);
    }
    sampler_free(s);

    /* Flat: half the mass needs half the vocabulary -> the full sort; equal
     * logits rank by id, so exactly ids below N/2 are kept. */
    for (int i = 0; i < N; i++) base[i] = 0.0f;
    p.top_p = 0.5f;
    s = sampler_new(&p, N);
    int outside = 0;
    for (int d = 0; d < 30; d++) {
        memcpy(l, base, N * sizeof *l);
        outside += sampler_sample(s, l) >= N / 2;
    }
    CHECK_INT(outside, 0);
    sampler_free(s);

    /* The default chain on a large vocabulary. */
    fill_logits(base, N, 12);
    p = sampler_params_default();
    p.seed = 1;
    s = sampler_new(&p, N);
    for (int d = 0; d < 50; d++) {
        memcpy(l, base, N * sizeof *l);
        int32_t t = sampler_sample(s, l);
        CHECK(t >= 0 && t < N);
        sampler_accept(s, t);
    }
    sampler_free(s);
    smp_free(base);
    smp_free(l);
}

TEST(sampler_min_p) {
    enum { DRAWS = 4000 };
    /* probabilities 0.6, 0.3, 0.07, 0.03 (and a fifth of almost nothing, so
     * that top_k = 4 is below the vocabulary and takes the sorted path):
     * min_p 0.1 -> threshold 0.06 drops the fourth */
    float logits[5] = {logf(0.6f), logf(0.3f), logf(0.07f), logf(0.03f), -40.0f};
    int count[5];
    for (int path = 0; path < 3; path++) { /* all logits, after top-k, after top-p */
        sampler_params p = plain(1.0f, 21);
        p.min_p = 0.1f;
        p.top_k = path == 1 ? 4 : 0;
        p.top_p = path == 2 ? 0.99f : 1.0f;
        sampler *s = sampler_new(&p, 5);
        REQUIRE(s);
        histogram(s, logits, 5, DRAWS, count);
        CHECK_INT(count[3] + count[4], 0);
        CHECK(count[2] > 0);
        CHECK_NEAR((double)count[0] / DRAWS, 0.6 / 0.97, 0.03);
        sampler_free(s);
    }
    /* min_p = 0.6 keeps only p >= 0.36: the first token */
    sampler_params p = plain(1.0f, 22);
    p.min_p = 0.6f;
    sampler *s = sampler_new(&p, 5);
    histogram(s, logits, 5, 500, count);
    CHECK_INT(count[0], 500);
    sampler_free(s);
}

TEST(sampler_penalties_change_the_right_logits) {
    sampler_params p = plain(0.0f, 1);
    p.repeat_penalty = 2.0f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    p.repeat_last_n = 3;
    sampler *s = sampler_new(&p, 6);
    REQUIRE(s);
    sampler_accept(s, 5); /* pushed out of the window of 3 below */
    sampler_accept(s, 1);
    sampler_accept(s, 1);
    sampler_accept(s, 2);
    sampler_accept(s, 99); /* out of range: ignored */
    float l[6] = {0.5f, 4.0f, -1.0f, 3.0f, 0.0f, 9.0f};
    int32_t t = sampler_sample(s, l);
    CHECK_NEAR(l[0], 0.5, 1e-6);                        /* not seen */
    CHECK_NEAR(l[1], 4.0 / 2 - 2 * 0.25 - 0.5, 1e-6);   /* positive: divided; count 2 */
    CHECK_NEAR(l[2], -1.0 * 2 - 1 * 0.25 - 0.5, 1e-6);  /* negative: multiplied; count 1 */
    CHECK_NEAR(l[3], 3.0, 1e-6);
    CHECK_NEAR(l[5], 9.0, 1e-6); /* left the window */
    CHECK_INT(t, 5);

    /* The penalty decides: token 1 would win without it. */
    sampler_reset(s);
    sampler_accept(s, 1);
    float m[6] = {0.0f, 4.0f, 3.5f, 0.0f, 0.0f, 0.0f};
    CHECK_INT(sampler_sample(s, m), 2);
    CHECK_NEAR(m[1], 4.0 / 2 - 0.25 - 0.5, 1e-6);
    sampler_free(s);

    /* All off: logits untouched. */
    sampler_params q = plain(0.0f, 1);
    q.repeat_penalty = 1.0f;
    s = sampler_new(&q, 6);
    sampler_accept(s, 1);
    float o[6] = {0.0f, 4.0f, 3.5f, 0.0f, 0.0f, 0.0f};
    CHECK_INT(sampler_sample(s, o), 1);
    CHECK_NEAR(o[1], 4.0, 0);
    sampler_free(s);
}

TEST(sampler_new_rejects_bad_args) {
    sampler_params p = plain(1.0f, 1);
    CHECK(sampler_new(&p, 0) == NULL);
    CHECK(sampler_new(NULL, 10) == NULL);
    sampler_free(NULL);
    smp_alloc_fail_after(1);
    CHECK(sampler_new(&p, 10) == NULL);
    smp_alloc_fail_after(-1);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

/* ---- stop strings ---- */

TEST(sampler_stop_spanning_tokens) {
    const char *stops[] = {"###"};
    stop_matcher *m;
    REQUIRE(stop_matcher_new(stops, 1, &m) == 0);
    stop_result r = stop_matcher_update(m, "Hello #", 7);
    CHECK_INT(r.which, -1);
    CHECK_INT(r.hold, 1);
    r = stop_matcher_update(m, "Hello ##", 8);
    CHECK_INT(r.which, -1);
    CHECK_INT(r.hold, 2);
    r = stop_matcher_update(m, "Hello ### world", 15);
    CHECK_INT(r.which, 0);
    CHECK_INT(r.cut, 6);
    stop_matcher_free(m);
}

TEST(sampler_stop_false_start_is_released) {
    const char *stops[] = {"abc"};
    stop_matcher *m;
    REQUIRE(stop_matcher_new(stops, 1, &m) == 0);
    CHECK_INT(stop_matcher_update(m, "a", 1).hold, 1);
    CHECK_INT(stop_matcher_update(m, "ab", 2).hold, 2);
    stop_result r = stop_matcher_update(m, "abd", 3);
    CHECK_INT(r.which, -1);
    CHECK_INT(r.hold, 0);
    /* overlapping prefixes: "aab" inside "aaab" */
    const char *s2[] = {"aab"};
    stop_matcher *m2;
    REQUIRE(stop_matcher_new(s2, 1, &m2) == 0);
    CHECK_INT(stop_matcher_update(m2, "a", 1).hold, 1);
    CHECK_INT(stop_matcher_update(m2, "aa", 2).hold, 2);
    CHECK_INT(stop_matcher_update(m2, "aaa", 3).hold, 2);
    r = stop_matcher_update(m2, "aaab", 4);
    CHECK_INT(r.which, 0);
    CHECK_INT(r.cut, 1);
    stop_matcher_free(m);
    stop_matcher_free(m2);
}

TEST(sampler_stop_earliest_wins_and_utf8) {
    const char *stops[] = {"world", "lo w", "\nUser:"};
    stop_matcher *m;
    REQUIRE(stop_matcher_new(stops, 3, &m) == 0);
    stop_result r = stop_matcher_update(m, "hello world", 11);
    CHECK_INT(r.which, 1);
    CHECK_INT(r.cut, 3);
    stop_matcher_reset(m);
    /* "café" then a transcript turn, fed in pieces */
    const char *text = "caf\xc3\xa9\n\nUser: hi";
    size_t steps[] = {3, 5, 6, 9, 11, 12};
    size_t holds[] = {0, 0, 1, 3, 5};
    for (int i = 0; i < 5; i++) {
        r = stop_matcher_update(m, text, steps[i]);
        CHECK_INT(r.which, -1);
        CHECK_INT(r.hold, holds[i]);
    }
    r = stop_matcher_update(m, text, steps[5]);
    CHECK_INT(r.which, 2);
    CHECK_INT(r.cut, 6); /* "café\n" kept */
    stop_matcher_free(m);
}

/* Stream text through the matcher in random pieces, as a server would, and
 * check what a client receives: exactly the text before the first stop, and
 * never a byte of a stop string. */
TEST(sampler_stop_streaming_property) {
    const char *stops[] = {"<|end|>", "STOP", "\n\n\n"};
    const char *texts[] = {
        "no stop string here, just <|en and STO and \n\n",
        "one <|en<|end|> after",
        "STOSTSTOP tail",
        "a\n\n\nb STOP",
        "<|end|>",
    };
    stop_matcher *m;
    REQUIRE(stop_matcher_new(stops, 3, &m) == 0);
    uint32_t x = 12345;
    for (int t = 0; t < 5; t++) {
        const char *text = texts[t];
        size_t len = strlen(text);
        /* where the first stop begins, found the slow way */
        size_t first = len;
        for (size_t i = 0; i < len && first == len; i++)
            for (int k = 0; k < 3; k++)
                if (!strncmp(text + i, stops[k], strlen(stops[k]))) first = i;
        for (int trial = 0; trial < 200; trial++) {
            stop_matcher_reset(m);
            char sent[128] = "";
            size_t nsent = 0, have = 0;
            bool stopped = false;
            while (have < len && !stopped) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                have += 1 + x % 4;
                if (have > len) have = len;
                stop_result r = stop_matcher_update(m, text, have);
                size_t upto = r.which >= 0 ? r.cut : have - r.hold;
                CHECK(upto >= nsent);
                memcpy(sent + nsent, text + nsent, upto - nsent);
                nsent = upto;
                stopped = r.which >= 0;
            }
            if (!stopped) { /* end of generation: release what was held */
                memcpy(sent + nsent, text + nsent, len - nsent);
                nsent = len;
            }
            CHECK_INT(nsent, first);
            CHECK(!strncmp(sent, text, first));
        }
    }
    stop_matcher_free(m);
}

/* Whatever a request may carry, the engine takes, with its template's stop
 * string on top: one limit for every route (BACKEND_MAX_STOP). */
_Static_assert(BACKEND_MAX_STOP + 1 <= STOP_MAX_STRINGS, "the engine must hold every stop string a request may carry");
_Static_assert(BACKEND_MAX_STOP_LEN <= STOP_MAX_LEN, "the engine must hold the longest stop string a request may carry");

TEST(sampler_stop_limits) {
    stop_matcher *m;
    const char *many[STOP_MAX_STRINGS + 1];
    for (int i = 0; i <= STOP_MAX_STRINGS; i++) many[i] = "x";
    CHECK_INT(stop_matcher_new(many, STOP_MAX_STRINGS + 1, &m), -SMP_E_VALIDATION);
    CHECK(m == NULL);
    CHECK_INT(stop_matcher_new(many, STOP_MAX_STRINGS, &m), 0);
    stop_matcher_free(m);
    char longs[STOP_MAX_LEN + 2];
    memset(longs, 'a', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    const char *one[] = {longs};
    CHECK_INT(stop_matcher_new(one, 1, &m), -SMP_E_VALIDATION);
    /* no (or only empty) stop strings: never stops, never holds */
    const char *empty[] = {"", NULL};
    REQUIRE(stop_matcher_new(empty, 2, &m) == 0);
    stop_result r = stop_matcher_update(m, "anything", 8);
    CHECK_INT(r.which, -1);
    CHECK_INT(r.hold, 0);
    stop_matcher_free(m);
    REQUIRE(stop_matcher_new(NULL, 0, &m) == 0);
    stop_matcher_free(m);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}
