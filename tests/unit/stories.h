/* stories.h - a test fixture shared by the generation tests: stories260K
 * loaded with one thread, a 256-position session, its tokenizer, and the
 * prompt "Once upon a time" (with BOS); greedy generation parameters.
 * Include after test.h. */
#ifndef SMP_TEST_STORIES_H
#define SMP_TEST_STORIES_H

#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "engine/generate.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

#define STORIES "../shared/models/stories260K.gguf"

typedef struct {
    model *m;
    model_ctx *ctx;
    gguf *g;
    tokenizer *tok;
    int32_t *prompt;
    size_t np;
} stories;

static void stories_open(stories *s) {
    char err[256];
    memset(s, 0, sizeof *s);
    model_opts o = {.n_threads = 1};
    REQUIRE(model_load(STORIES, &o, &s->m, err, sizeof err) == 0);
    REQUIRE(model_ctx_new(s->m, 256, &s->ctx, err, sizeof err) == 0);
    REQUIRE(gguf_open(STORIES, &s->g, err, sizeof err) == 0);
    REQUIRE(tok_load(s->g, &s->tok, err, sizeof err) == 0);
    REQUIRE(tok_encode(s->tok, "Once upon a time", 16, true, false, &s->prompt, &s->np) == 0);
}

static void stories_close(stories *s) {
    smp_free(s->prompt);
    tok_free(s->tok);
    gguf_close(s->g);
    model_ctx_free(s->ctx);
    model_free(s->m);
}

static gen_params greedy(int max_tokens) {
    gen_params p = {.sampling = sampler_params_default(), .max_tokens = max_tokens};
    p.sampling.temperature = 0;
    return p;
}

#endif
