/* bench_schema.c - what structured output costs on the CPU, apart from the
 * model: compiling a 50-property JSON schema, and the grammar's per-token work
 * on a real vocabulary.
 *
 *   usage: build/bench_schema [MODEL.gguf] [ITERS]
 *
 * 1. compile   json_schema_to_gbnf alone, json_schema_compile uncached (the
 *              cache cleared before each call: schema -> GBNF -> parsed
 *              grammar) and cached (the same schema again: its compact text
 *              is the key), and grammar_matcher_new (once per request): µs
 *              per call, median of ITERS (default 200).
 * 2. per token (with MODEL.gguf: its tokenizer only, no weights are read)
 *              for the two schemas bench/grammar/run.sh decodes with, a
 *              decoding loop that draws tokens the way a random-weight model
 *              at temperature 0.8 roughly does (uniformly over the vocabulary),
 *              checks the draw with grammar_matcher_allows and, when it is
 *              refused, masks the whole vocabulary (grammar_mask) and draws
 *              among the allowed tokens, as src/engine/generate.c does. Prints
 *              how often the full mask ran, µs per check and per mask, and
 *              the grammar's µs per generated token. A trained model's draws
 *              mostly fit the grammar, so the full mask runs far less often
 *              than here: this is the worst case.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/util.h"
#include "engine/gguf.h"
#include "engine/grammar.h"
#include "engine/json_schema.h"
#include "engine/tokenizer.h"

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
static double median_us(uint64_t *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    return (n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0) / 1e3;
}

/* 50 required properties of mixed kinds: strings (free, bounded, formatted,
 * patterned), integers with bounds, numbers, booleans, enums, arrays and
 * small nested objects. */
static json_t *schema50(void) {
    json_t *props = json_object(), *req = json_array();
    for (int i = 0; i < 50; i++) {
        char name[32];
        snprintf(name, sizeof name, "field_%02d", i);
        json_t *p;
        switch (i % 10) {
        case 0: p = json_pack("{s:s}", "type", "string"); break;
        case 1: p = json_pack("{s:s, s:i}", "type", "string", "maxLength", 40); break;
        case 2: p = json_pack("{s:s, s:i, s:i}", "type", "integer", "minimum", 0, "maximum", 1000 + i); break;
        case 3: p = json_pack("{s:s}", "type", "number"); break;
        case 4: p = json_pack("{s:s}", "type", "boolean"); break;
        case 5: p = json_pack("{s:[s,s,s,s]}", "enum", "red", "green", "blue", "other"); break;
        case 6: p = json_pack("{s:s, s:{s:s}, s:i}", "type", "array", "items", "type", "string", "maxItems", 8); break;
        case 7: p = json_pack("{s:s, s:s}", "type", "string", "format", "date"); break;
        case 8: p = json_pack("{s:s, s:s}", "type", "string", "pattern", "^[A-Z]{2}-[0-9]{4}$"); break;
        default:
            p = json_pack("{s:s, s:{s:{s:s}, s:{s:s}}, s:[s,s]}", "type", "object", "properties", "id", "type",
                          "integer", "label", "type", "string", "required", "id", "label");
        }
        json_object_set_new(props, name, p);
        json_array_append_new(req, json_string(name));
    }
    return json_pack("{s:s, s:o, s:o, s:b}", "type", "object", "properties", props, "required", req,
                     "additionalProperties", 0);
}

/* The schemas of bench/grammar/run.sh. */
static const char *FREE_TEXT = "{\"type\":\"object\",\"properties\":{\"answer\":{\"type\":\"string\"}},"
                               "\"required\":[\"answer\"]}";
static const char *STRUCTURED =
    "{\"type\":\"array\",\"minItems\":8,\"maxItems\":1000,\"items\":{\"type\":\"object\",\"properties\":{"
    "\"id\":{\"type\":\"integer\"},\"kind\":{\"enum\":[\"cat\",\"dog\",\"bird\"]},"
    "\"ok\":{\"type\":\"boolean\"}},\"required\":[\"id\",\"kind\",\"ok\"]}}";

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void per_token(const char *label, const char *schema_text, tokenizer *tok, const grammar_vocab *gv) {
    char err[256];
    json_t *s = json_loads(schema_text, 0, NULL);
    grammar *g = NULL;
    if (!s || json_schema_compile(s, &g, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", label, err);
        exit(1);
    }
    int n_vocab = tok_n_vocab(tok), steps = 0, masks = 0, runs = 0;
    float *logits = smp_malloc((size_t)n_vocab * sizeof *logits);
    uint64_t t_check = 0, t_mask = 0, t_accept = 0, n_check = 0;
    int *allowed_ids = smp_malloc((size_t)n_vocab * sizeof *allowed_ids);
    while (steps < 2000) { /* generations of 64 tokens, like run.sh */
        grammar_matcher *m = NULL;
        if (grammar_matcher_new(g, &m, err, sizeof err)) exit(1);
        runs++;
        for (int k = 0; k < 64; k++) {
            int32_t id = (int32_t)(rnd() % (uint32_t)n_vocab);
            uint64_t t = util_now_ns();
            bool ok = grammar_matcher_allows(m, gv, id);
            t_check += util_now_ns() - t;
            n_check++;
            if (!ok) {
                for (int i = 0; i < n_vocab; i++) logits[i] = 0.0f;
                t = util_now_ns();
                int n = grammar_mask(m, gv, logits);
                t_mask += util_now_ns() - t;
                masks++;
                if (n <= 0) break;
                int c = 0;
                for (int i = 0; i < n_vocab; i++)
                    if (logits[i] == 0.0f) allowed_ids[c++] = i;
                id = allowed_ids[rnd() % (uint32_t)c];
            }
            if (tok_is_eog(tok, id)) break;
            t = util_now_ns();
            if (!grammar_matcher_accept_token(m, gv, id)) exit(2);
            t_accept += util_now_ns() - t;
            steps++;
            if (grammar_matcher_is_complete(m)) break;
        }
        grammar_matcher_free(m);
    }
    printf("%-11s %6d tokens in %3d runs: full mask on %5.1f%% of tokens; check %.2f us, mask %.0f us, "
           "accept %.2f us; grammar %.0f us per token\n",
           label, steps, runs, 100.0 * masks / steps, t_check / 1e3 / n_check, masks ? t_mask / 1e3 / masks : 0.0,
           t_accept / 1e3 / steps, (t_check + t_mask + t_accept) / 1e3 / steps);
    smp_free(logits);
    smp_free(allowed_ids);
    grammar_free(g);
    json_decref(s);
}

int main(int argc, char **argv) {
    const char *model = argc > 1 && argv[1][0] ? argv[1] : NULL;
    int iters = argc > 2 ? atoi(argv[2]) : 200;
    if (iters < 1) iters = 1;
    char err[256];
    json_t *s = schema50();
    char *gbnf = NULL;
    if (json_schema_to_gbnf(s, &gbnf, err, sizeof err)) {
        fprintf(stderr, "schema: %s\n", err);
        return 1;
    }
    size_t gbnf_len = strlen(gbnf);
    smp_free(gbnf);
    uint64_t *t_gbnf = malloc(iters * sizeof *t_gbnf), *t_unc = malloc(iters * sizeof *t_unc),
             *t_hit = malloc(iters * sizeof *t_hit), *t_mnew = malloc(iters * sizeof *t_mnew);
    int rules = 0;
    for (int i = 0; i < iters; i++) {
        uint64_t t = util_now_ns();
        json_schema_to_gbnf(s, &gbnf, err, sizeof err);
        t_gbnf[i] = util_now_ns() - t;
        smp_free(gbnf);

        grammar *g = NULL, *g2 = NULL;
        json_schema_cache_clear();
        t = util_now_ns();
        if (json_schema_compile(s, &g, err, sizeof err)) {
            fprintf(stderr, "compile: %s\n", err);
            return 1;
        }
        t_unc[i] = util_now_ns() - t;
        t = util_now_ns();
        json_schema_compile(s, &g2, err, sizeof err);
        t_hit[i] = util_now_ns() - t;
        rules = grammar_n_rules(g);
        grammar_matcher *m = NULL;
        t = util_now_ns();
        grammar_matcher_new(g2, &m, err, sizeof err);
        t_mnew[i] = util_now_ns() - t;
        grammar_matcher_free(m);
        grammar_free(g);
        grammar_free(g2);
    }
    char *compact = json_dumps(s, JSON_COMPACT);
    printf("50-property schema (%zu bytes of JSON, %zu bytes of GBNF, %d rules), median of %d:\n", strlen(compact),
           gbnf_len, rules, iters);
    free(compact);
    printf("  json_schema_to_gbnf            %8.1f us\n", median_us(t_gbnf, iters));
    printf("  json_schema_compile, uncached  %8.1f us\n", median_us(t_unc, iters));
    printf("  json_schema_compile, cached    %8.1f us\n", median_us(t_hit, iters));
    printf("  grammar_matcher_new            %8.1f us\n", median_us(t_mnew, iters));
    free(t_gbnf);
    free(t_unc);
    free(t_hit);
    free(t_mnew);
    json_decref(s);
    json_schema_cache_clear();
    if (!model) return 0;

    gguf *gg = NULL;
    tokenizer *tok = NULL;
    grammar_vocab *gv = NULL;
    if (gguf_open(model, &gg, err, sizeof err) || tok_load(gg, &tok, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", model, err);
        return 1;
    }
    uint64_t t = util_now_ns();
    if (grammar_vocab_new(tok, &gv)) return 1;
    printf("per token, vocabulary of %d (grammar_vocab_new %.1f ms, once per model), uniform draws:\n",
           tok_n_vocab(tok), (util_now_ns() - t) / 1e6);
    per_token("free text", FREE_TEXT, tok, gv);
    per_token("structured", STRUCTURED, tok, gv);
    grammar_vocab_free(gv);
    tok_free(tok);
    gguf_close(gg);
    json_schema_cache_clear();
    return 0;
}
