/* test_tools.c - tool calling in the engine (engine/tools.c): the prompt each
 * style writes, reading calls out of a section as it grows, and generation
 * under the call grammar on real tokenizers (SentencePiece stories260K,
 * byte-level BPE Qwen2), where a required call must come out valid. */
#include <jansson.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/generate.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "engine/tools.h"
#include "test.h"

#define STORIES "../shared/models/stories260K.gguf"
#define QWEN "../shared/models/mini/mini-qwen2-Q4_K_M.gguf"

static json_t *weather_schema(void) {
    return json_loads("{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":12},"
                      "\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]}},\"required\":[\"city\",\"unit\"],"
                      "\"additionalProperties\":false}",
                      0, NULL);
}

static const tool_call past_call = {"call_1", "get_weather", "{\"city\":\"Oslo\",\"unit\":\"celsius\"}"};

static char *render(chat_family f, const tool_def *tools, int nt, bool call_now) {
    const tool_msg msgs[] = {
        {"system", "Be brief.", NULL, 0, NULL, NULL},
        {"user", "Weather in Oslo?", NULL, 0, NULL, NULL},
        {"assistant", "", &past_call, 1, NULL, NULL},
        {"tool", "{\"t\":3}", NULL, 0, "call_1", "get_weather"},
        {"tool", "{\"t\":4}", NULL, 0, "call_1", "get_weather"},
        {"user", "And tomorrow?", NULL, 0, NULL, NULL},
    };
    buf b;
    buf_init(&b, 0);
    char err[200];
    int rc = tools_render(f, tools, nt, msgs, 6, call_now, "<s>", "</s>", &b, err, sizeof err);
    if (rc) fprintf(stderr, "  render: %s\n", err);
    CHECK_INT(rc, 0);
    return buf_detach(&b, NULL);
}

TEST(tools_render_hermes_chatml) {
    json_t *s = weather_schema();
    tool_def t = {"get_weather", "The weather", s};
    char *p = render(CHAT_FAMILY_CHATML, &t, 1, true);
    /* The tools go into the system turn, after its own text. */
    CHECK(!strncmp(p, "<|im_start|>system\nBe brief.\n\n# Tools\n", 38));
    CHECK(strstr(p, "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "
                    "\"The weather\", \"parameters\": {") != NULL);
    /* A past call, and two results in one user turn. */
    CHECK(strstr(p, "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                    "{\"city\":\"Oslo\",\"unit\":\"celsius\"}}\n</tool_call><|im_end|>\n") != NULL);
    CHECK(strstr(p, "<|im_start|>user\n<tool_response>\n{\"t\":3}\n</tool_response>\n<tool_response>\n{\"t\":4}\n"
                    "</tool_response><|im_end|>\n<|im_start|>user\nAnd tomorrow?<|im_end|>\n") != NULL);
    /* call_now: the answer starts inside a call. */
    size_t n = strlen(p);
    CHECK(!strcmp(p + n - strlen("<|im_start|>assistant\n<tool_call>"), "<|im_start|>assistant\n<tool_call>"));
    smp_free(p);
    /* No tools shown (tool choice none): the history still renders. */
    p = render(CHAT_FAMILY_CHATML, &t, 0, false);
    CHECK(strstr(p, "# Tools") == NULL);
    CHECK(strstr(p, "<tool_call>\n{\"name\": \"get_weather\"") != NULL);
    smp_free(p);
    json_decref(s);
}

TEST(tools_render_llama3_and_mistral) {
    tool_def t = {"get_weather", NULL, NULL};
    char *p = render(CHAT_FAMILY_LLAMA3, &t, 1, true);
    /* The instruction and the tool (indented by 4) open the first user turn. */
    CHECK(strstr(p, "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions") != NULL);
    CHECK(strstr(p, "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\"") != NULL);
    CHECK(strstr(p, "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": "
                    "{\"city\":\"Oslo\",\"unit\":\"celsius\"}}<|eot_id|>") != NULL);
    CHECK(strstr(p, "<|start_header_id|>ipython<|end_header_id|>\n\n{\"t\":3}<|eot_id|>") != NULL);
    CHECK(p[strlen(p) - 1] == '{'); /* call_now: the call's opening brace */
    smp_free(p);

    p = render(CHAT_FAMILY_MISTRAL, &t, 1, true);
    const char *tools = strstr(p, "[AVAILABLE_TOOLS] [{\"type\": \"function\"");
    const char *last = strstr(p, "[INST] And tomorrow?");
    CHECK(tools && last && tools < last && strstr(tools, "[/AVAILABLE_TOOLS][INST] And tomorrow?") != NULL);
    CHECK(strstr(p, "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Oslo\",\"unit\":\"celsius\"}, "
                    "\"id\": \"call_1\"}]</s>") != NULL);
    CHECK(strstr(p, "[TOOL_RESULTS] {\"content\": \"{\\\"t\\\":3}\", \"call_id\": \"call_1\"}[/TOOL_RESULTS]") != NULL);
    CHECK(strlen(p) > 12 && !strcmp(p + strlen(p) - 12, "[TOOL_CALLS]"));
    smp_free(p);
}

/* Feed a section a byte at a time: names appear once, arguments only grow
 * and end as the final text says. */
static void scan_growing(tool_style st, const char *sec, int want_calls, const char *const *names,
                         const char *const *args) {
    size_t len = strlen(sec);
    size_t seen[TOOLS_MAX_CALLS] = {0};
    tools_scanned c[TOOLS_MAX_CALLS];
    int n = 0;
    for (size_t k = 0; k <= len; k++) {
        n = tools_scan(st, sec, k, c, TOOLS_MAX_CALLS);
        for (int i = 0; i < n; i++) {
            if (c[i].args_started) {
                CHECK(c[i].args_len >= seen[i]);
                seen[i] = c[i].args_len;
            }
        }
    }
    CHECK_INT(n, want_calls);
    for (int i = 0; i < n && i < want_calls; i++) {
        CHECK(c[i].done && c[i].has_name && c[i].args_done);
        CHECK(c[i].name_len == strlen(names[i]) && !memcmp(sec + c[i].name_off, names[i], c[i].name_len));
        CHECK(c[i].args_len == strlen(args[i]) && !memcmp(sec + c[i].args_off, args[i], c[i].args_len));
    }
}

TEST(tools_scan_reads_calls_as_they_grow) {
    const char *names[] = {"get_weather", "add"};
    const char *args[] = {"{\"city\": \"a}\\\"b\", \"n\": [1, {\"x\": 2}]}", "{}"};
    scan_growing(TOOL_STYLE_HERMES,
                 "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"a}\\\"b\", \"n\": [1, {\"x\": 2}]}}\n"
                 "</tool_call>\n<tool_call>\n{\"name\":\"add\",\"arguments\":{}}\n</tool_call>",
                 2, names, args);
    scan_growing(TOOL_STYLE_MISTRAL,
                 " [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"a}\\\"b\", \"n\": [1, {\"x\": 2}]}, "
                 "\"id\": \"x1\"}, {\"arguments\": {}, \"name\": \"add\"}]",
                 2, names, args);
    scan_growing(TOOL_STYLE_LLAMA3, "{\"name\": \"add\", \"parameters\": {}}", 1, names + 1, args + 1);
    /* An unfinished call: what has come of its arguments so far. */
    const char *part = "\n{\"name\": \"add\", \"arguments\": {\"a\": 1";
    tools_scanned c[2];
    CHECK_INT(tools_scan(TOOL_STYLE_HERMES, part, strlen(part), c, 2), 1);
    CHECK(c[0].has_name && c[0].args_started && !c[0].args_done && !c[0].done);
    CHECK(c[0].args_len == strlen("{\"a\": 1"));
}

TEST(tools_find_trigger_holds_what_may_begin_it) {
    size_t keep;
    bool never;
    CHECK(gen_find_trigger("<tool_call>", false, "Sure. <tool_call>{", 18, 0, &keep, &never) == 6);
    CHECK(gen_find_trigger("<tool_call>", false, "Sure. <tool", 11, 0, &keep, &never) == -1);
    CHECK(keep == 5 && !never);
    CHECK(gen_find_trigger("<tool_call>", false, "a < b", 5, 0, &keep, &never) == -1 && keep == 0);
    /* Searching on from where the last search left off finds it only past there. */
    CHECK(gen_find_trigger("<tool_call>", false, "Sure. <tool_call>{", 18, 7, &keep, &never) == -1);
    CHECK(gen_find_trigger("<tool_call>", false, "Sure. <tool_call>{", 18, 6, &keep, &never) == 6);
    /* At the start only: blanks then the trigger, or never. */
    CHECK(gen_find_trigger("{", true, "  {\"name\"", 9, 0, &keep, &never) == 2);
    CHECK(gen_find_trigger("{", true, " \n", 2, 0, &keep, &never) == -1 && keep == 2 && !never);
    CHECK(gen_find_trigger("{", true, "The {", 5, 0, &keep, &never) == -1 && never);
}

TEST(tools_grammar_refuses_what_it_cannot_enforce) {
    json_t *bad = json_loads("{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\",\"multipleOf\":3}}}", 0,
                             NULL);
    tool_def t[] = {{"ok", NULL, NULL}, {"bad", NULL, bad}};
    grammar *g = NULL;
    char err[256];
    CHECK_INT(tools_grammar(TOOL_STYLE_HERMES, t, 2, NULL, true, &g, err, sizeof err), -SMP_E_VALIDATION);
    CHECK(strstr(err, "tools.1.function.parameters") && strstr(err, "multipleOf"));
    CHECK_INT(tools_grammar(TOOL_STYLE_HERMES, t, 2, "nope", true, &g, err, sizeof err), -SMP_E_VALIDATION);
    CHECK(strstr(err, "nope") != NULL);
    /* Only the named tool: the other's schema is not even compiled. */
    CHECK_INT(tools_grammar(TOOL_STYLE_HERMES, t, 2, "ok", false, &g, err, sizeof err), 0);
    grammar_free(g);
    json_decref(bad);
}

/* A required call generated on a real model: the answer is the call section,
 * every call names a declared tool, and its arguments follow the schema. */
static void required_calls(const char *path, chat_family fam, int n_ctx, int *n_checked) {
    char err[256];
    model *m = NULL;
    model_ctx *ctx = NULL;
    gguf *gf = NULL;
    tokenizer *tok = NULL;
    model_opts o = {.n_threads = 1};
    REQUIRE(model_load(path, &o, &m, err, sizeof err) == 0);
    REQUIRE(model_ctx_new(m, n_ctx, &ctx, err, sizeof err) == 0);
    REQUIRE(gguf_open(path, &gf, err, sizeof err) == 0);
    REQUIRE(tok_load(gf, &tok, err, sizeof err) == 0);
    json_t *s = weather_schema();
    json_t *add = json_loads("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":0,"
                             "\"maximum\":9}},\"required\":[\"a\"]}",
                             0, NULL);
    tool_def tools[] = {{"get_weather", "The weather", s}, {"add", NULL, add}};
    tool_style st = tools_style(fam);
    bool at_start;
    const char *trigger = tools_trigger(st, &at_start);
    for (int par = 0; par < 2; par++) {
        grammar *g = NULL;
        REQUIRE(tools_grammar(st, tools, 2, par ? NULL : "get_weather", par, &g, err, sizeof err) == 0);
        grammar_vocab *gv = NULL;
        REQUIRE(grammar_vocab_new(tok, &gv) == 0);
        const tool_msg msgs[] = {{"user", "Weather in Oslo?", NULL, 0, NULL, NULL}};
        buf prompt;
        buf_init(&prompt, 0);
        /* (the 512-token contexts of these small models have no room for the tool list:
         * the grammar alone makes the call.) */
        REQUIRE(tools_render(fam, tools, 0, msgs, 1, true, "<s>", "</s>", &prompt, err, sizeof err) == 0);
        REQUIRE(strstr(prompt.data, trigger) != NULL);
        int32_t *ids = NULL;
        size_t np = 0;
        REQUIRE(tok_encode(tok, prompt.data, prompt.len, true, true, &ids, &np) == 0);
        for (int seed = 1; seed <= 3; seed++) {
            gen_params p = {.sampling = sampler_params_default(), .max_tokens = 120, .grammar = g, .grammar_vocab = gv};
            p.sampling.seed = (uint64_t)seed;
            p.sampling.temperature = seed == 1 ? 0.0f : 1.0f;
            gen_result r;
            int grc = gen_run(ctx, tok, ids, (int)np, &p, &r, err, sizeof err);
            if (grc) fprintf(stderr, "  %s: %s (%zu prompt tokens)\n", path, err, np);
            REQUIRE(grc == 0);
            tools_scanned c[TOOLS_MAX_CALLS];
            const char *text = r.text.data ? r.text.data : "";
            int n = tools_scan(st, text, r.text.len, c, TOOLS_MAX_CALLS);
            if (n < 1 || !c[0].done) fprintf(stderr, "  %s seed %d: '%s' (%s)\n", path, seed, text, r.done_reason);
            CHECK(n >= 1 && !strcmp(r.done_reason, "stop"));
            CHECK(par || n == 1);
            for (int i = 0; i < n; i++) {
                CHECK(c[i].done && c[i].has_name && c[i].args_done);
                json_t *a = json_loadb(text + c[i].args_off, c[i].args_len, 0, NULL);
                CHECK(json_is_object(a));
                if (c[i].name_len == 3 && !memcmp(text + c[i].name_off, "add", 3)) {
                    json_int_t v = json_integer_value(json_object_get(a, "a"));
                    CHECK(json_is_integer(json_object_get(a, "a")) && v >= 0 && v <= 9);
                } else {
                    CHECK(c[i].name_len == 11 && !memcmp(text + c[i].name_off, "get_weather", 11));
                    const char *unit = json_string_value(json_object_get(a, "unit"));
                    CHECK(json_is_string(json_object_get(a, "city")) && json_object_size(a) == 2);
                    CHECK(unit && (!strcmp(unit, "celsius") || !strcmp(unit, "fahrenheit")));
                }
                json_decref(a);
                (*n_checked)++;
            }
            gen_result_free(&r);
        }
        smp_free(ids);
        buf_free(&prompt);
        grammar_vocab_free(gv);
        grammar_free(g);
    }
    json_decref(s);
    json_decref(add);
    tok_free(tok);
    gguf_close(gf);
    model_ctx_free(ctx);
    model_free(m);
}

TEST(tools_required_calls_are_valid_on_spm_and_bpe_models) {
    int n = 0;
    required_calls(STORIES, CHAT_FAMILY_NONE, 512, &n);
    required_calls(QWEN, CHAT_FAMILY_CHATML, 512, &n);
    CHECK(n >= 12);
}
