/* bench/engine/bench_batch.c - aggregate decode speed of B sequences decoding
 * together in one forward pass per token (model_batch_eval), B = 1, 2, 4, 8,
 * 16, against one sequence decoding alone (model_ctx_eval).
 *
 * Each sequence has its own session and a distinct 16-token prompt (prefilled
 * untimed); then STEPS passes each feed every sequence its greedy next token
 * and take its logits. Printed per B: passes/s, aggregate tok/s, the ratio to
 * the solo rate, and B x solo (the ideal of a purely memory-bound decode).
 * Best of RUNS rounds, each round going through every B (so that on a
 * shared machine the quiet moments fall to all of them alike).
 *
 *   make build/bench_batch
 *   build/bench_batch MODEL.gguf [THREADS=2] [STEPS=32] [RUNS=5]
 * or bench/engine/batch.sh, which makes the TinyLlama-1.1B-shape Q4_K_M. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/alloc.h"
#include "engine/model.h"

#define MAX_B 16
#define PROMPT 16

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Prefill B sessions with distinct prompts; next[i] gets each one's first
 * token. Returns 0 or an error code. */
static int prefill(model_ctx **c, int B, int nv, float *lg, int32_t *next) {
    for (int i = 0; i < B; i++) {
        int32_t p[PROMPT];
        p[0] = 1;
        for (int k = 1; k < PROMPT; k++) p[k] = (int32_t)(1000 + 37 * i + 101 * k) % nv;
        model_ctx_reset(c[i]);
        int rc = model_ctx_eval(c[i], p, PROMPT, lg, false);
        if (rc) return rc;
        next[i] = argmax(lg, nv);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [THREADS=2] [STEPS=32] [RUNS=5]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 2, steps = argc > 3 ? atoi(argv[3]) : 32;
    int runs = argc > 4 ? atoi(argv[4]) : 5;
    char err[256];
    model *m;
    model_opts o = {.n_threads = threads};
    if (model_load(argv[1], &o, &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int nv = model_n_vocab(m);
    model_ctx *c[MAX_B];
    model_batch *b;
    float *lg = smp_malloc((size_t)MAX_B * nv * sizeof(float));
    if (!lg || model_batch_new(m, MAX_B, &b, err, sizeof err)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (int i = 0; i < MAX_B; i++)
        if (model_ctx_new(m, PROMPT + steps + 1, &c[i], err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    int32_t next[MAX_B];

    /* Rounds over every configuration, keeping each one's best: on a shared
     * machine the quiet moments then fall to all of them alike. */
    enum { N_CONF = 6 }; /* solo, then B = 1, 2, 4, 8, 16 */
    double best[N_CONF] = {0};
    for (int r = 0; r < runs; r++) {
        for (int conf = 0; conf < N_CONF; conf++) {
            int B = conf ? 1 << (conf - 1) : 1;
            if (prefill(c, B, nv, lg, next)) return 1;
            model_batch_seq e[MAX_B];
            double t0 = now();
            for (int s = 0; s < steps; s++) {
                if (conf == 0) { /* one sequence alone, through model_ctx_eval */
                    if (model_ctx_eval(c[0], &next[0], 1, lg, false)) return 1;
                    next[0] = argmax(lg, nv);
                    continue;
                }
                for (int i = 0; i < B; i++)
                    e[i] = (model_batch_seq){.ctx = c[i], .tokens = &next[i], .n = 1, .logits = lg + (size_t)i * nv};
                if (model_batch_eval(b, e, B)) {
                    fprintf(stderr, "%s\n", model_batch_error(b));
                    return 1;
                }
                for (int i = 0; i < B; i++) next[i] = argmax(lg + (size_t)i * nv, nv);
            }
            double rate = steps / (now() - t0);
            if (rate > best[conf]) best[conf] = rate;
        }
    }
    double solo = best[0];
    printf("%s, %d threads, %d decode steps, best of %d\n", model_name(m), threads, steps, runs);
    printf("solo (model_ctx_eval): %.2f tok/s\n", solo);
    printf("%4s %10s %14s %10s %12s\n", "B", "passes/s", "aggregate t/s", "vs solo", "B x solo");
    for (int conf = 1; conf < N_CONF; conf++) {
        int B = 1 << (conf - 1);
        printf("%4d %10.2f %14.2f %9.2fx %12.1f\n", B, best[conf], best[conf] * B, best[conf] * B / solo, solo * B);
    }
    for (int i = 0; i < MAX_B; i++) model_ctx_free(c[i]);
    model_batch_free(b);
    smp_free(lg);
    model_free(m);
    return 0;
}
