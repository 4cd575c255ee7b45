/* test_textgen.c - the generate/chat cache key: every member of
 * backend_gen_req that shapes an answer is in TEXTGEN_KEY_FIELDS, and
 * changing any one of them (walked from that same table) changes the key. */
#include <stddef.h>
#include <stdint.h>

#include "api/textgen.h"
#include "test.h"

/* What this test holds to shape an answer, written out apart from the
 * table: leaving one of these out of TEXTGEN_KEY_FIELDS (and so out of the
 * key) would serve one request's answer to another. */
static const char *const shaping[] = {
    "model", "prompt", "system", "raw", "context", "messages",                  /* what is asked */
    "temperature", "top_p", "top_k", "min_p", "seed",                            /* sampling */
    "repeat_penalty", "presence_penalty", "frequency_penalty", "max_tokens", "stop", /* and its limits */
    "json_object", "json_schema", "grammar",                                     /* structured output */
    "logprobs", "top_logprobs", "logit_bias",                                    /* what the answer shows */
    "num_ctx",                                                                   /* the window */
    "tools", "tool_choice", "tool_choice_name", "parallel_tool_calls",           /* tool calling */
};

typedef enum { K_STR, K_BOOL, K_INT, K_NUM, K_SEED, K_IDS, K_MSGS, K_STOP, K_JSON, K_BIAS, K_TOOLS } key_kind;

static const struct {
    const char *name;
    key_kind kind;
    size_t off;
} rows[] = {
#define ROW(m, kind) {#m, K_##kind, offsetof(backend_gen_req, m)},
    TEXTGEN_KEY_FIELDS(ROW)
#undef ROW
};
enum { NROWS = sizeof rows / sizeof rows[0] };

static const unsigned char img_a[] = "image-a", img_b[] = "image-b";
static const unsigned char *const imgs_a[] = {img_a}, *const imgs_b[] = {img_b};
static const size_t img_lens[] = {sizeof img_a};
static const int32_t ctx[] = {1, 2, 3};
static const backend_tool_call calls_a[] = {{"call_1", "add", "{\"a\":1}"}}, calls_b[] = {{"call_1", "add", "{\"a\":2}"}};
static const backend_tool tools_a[] = {{"add", "adds", NULL, false}, {"mul", NULL, NULL, false}};
static const backend_tool tools_b[] = {{"add", "adds", NULL, false}, {"mul", NULL, NULL, true}};
static const backend_logit_bias bias_a[] = {{5, -100}, {7, 2.5f}}, bias_b[] = {{5, -100}, {8, 2.5f}};

/* Two schemas that differ in one keyword (made once, kept for the process). */
static json_t *schema(int which) {
    static json_t *s[2];
    if (!s[which])
        s[which] = json_loads(which ? "{\"type\":\"object\",\"required\":[\"a\"]}" : "{\"type\":\"object\"}", 0, NULL);
    return s[which];
}

/* A request with every field set to something other than its zero. */
static backend_gen_req base(backend_msg *msgs) {
    msgs[0] = (backend_msg){.role = "system", .content = "be brief"};
    msgs[1] = (backend_msg){.role = "user", .content = "hi", .n_images = 1, .images = imgs_a, .image_lens = img_lens};
    msgs[2] = (backend_msg){.role = "assistant", .content = "", .tool_calls = calls_a, .n_tool_calls = 1};
    msgs[3] = (backend_msg){.role = "tool", .content = "3", .tool_call_id = "call_1", .tool_name = "add"};
    backend_gen_req q = {
        .model = "m",
        .prompt = "p",
        .system = "s",
        .context = ctx,
        .n_context = 2,
        .messages = msgs,
        .n_messages = 4,
        .temperature = 0.7,
        .top_p = 0.9,
        .top_k = 40,
        .min_p = 0.05,
        .repeat_penalty = 1.1,
        .presence_penalty = 0.1,
        .frequency_penalty = 0.2,
        .has_seed = true,
        .seed = 7,
        .max_tokens = 10,
        .num_ctx = 128,
        .n_stop = 1,
        .json_schema = schema(0),
        .grammar = "root ::= \"a\"",
        .logprobs = true,
        .top_logprobs = 3,
        .logit_bias = bias_a,
        .n_logit_bias = 2,
        .tools = tools_a,
        .n_tools = 2,
        .tool_choice = BACKEND_TOOLS_NAMED,
        .tool_choice_name = "add",
        .parallel_tool_calls = true,
    };
    q.stop[0] = "end";
    return q;
}

static void key_of(textjob_kind kind, const backend_gen_req *q, char *out) {
    textgen_cache_key(kind, q, out);
    CHECK(out[0] != '\0');
}

TEST(textgen_key_table_lists_every_shaping_field) {
    for (size_t i = 0; i < sizeof shaping / sizeof shaping[0]; i++) {
        int found = 0;
        for (int r = 0; r < NROWS; r++) found += !strcmp(rows[r].name, shaping[i]);
        if (found != 1) fprintf(stderr, "  '%s' is in TEXTGEN_KEY_FIELDS %d times\n", shaping[i], found);
        CHECK_INT(found, 1);
    }
}

TEST(textgen_key_changes_with_every_field) {
    backend_msg msgs[4], msgs2[4];
    const backend_gen_req q0 = base(msgs);
    char k0[CACHE_KEY_MAX], k1[CACHE_KEY_MAX], k2[CACHE_KEY_MAX];
    key_of(TG_SIMPLETON_GENERATE, &q0, k0);
    key_of(TG_SIMPLETON_GENERATE, &q0, k1);
    CHECK_STR(k0, k1); /* the same request, the same key */

    for (int r = 0; r < NROWS; r++) {
        /* up to three variations of the field, each on its own */
        for (int var = 0; var < 3; var++) {
            backend_gen_req q = base(msgs2);
            void *f = (char *)&q + rows[r].off;
            switch (rows[r].kind) {
            case K_STR:
                if (var == 2) continue;
                *(const char **)f = var == 0 ? "changed" : NULL;
                break;
            case K_BOOL:
                if (var) continue;
                *(bool *)f = !*(bool *)f;
                break;
            case K_INT:
                if (var) continue;
                (*(int *)f)++;
                break;
            case K_NUM:
                if (var) continue;
                *(double *)f += 0.01;
                break;
            case K_SEED:
                if (var == 2) continue;
                if (var == 0) q.seed++;
                else q.has_seed = false;
                break;
            case K_IDS:
                if (var == 0) q.n_context = 3;
                else if (var == 1) q.n_context = 0;
                else q.context = ctx + 1;
                break;
            case K_STOP:
                if (var == 0) q.stop[0] = "END";
                else if (var == 1) q.n_stop = 0;
                else q.stop[q.n_stop++] = "more";
                break;
            case K_JSON:
                if (var == 2) continue;
                *(const json_t **)f = var == 0 ? schema(1) : NULL;
                break;
            case K_BIAS:
                if (var == 0) q.logit_bias = bias_b; /* another token */
                else if (var == 1) q.n_logit_bias = 1;
                else q.n_logit_bias = 0;
                break;
            case K_MSGS:
                if (var == 0) msgs2[1].content = "hello";
                else if (var == 1) msgs2[1].role = "assistant";
                else msgs2[1].images = imgs_b; /* same length, other bytes */
                break;
            case K_TOOLS:
                if (var == 0) q.tools = tools_b; /* only strict differs */
                else if (var == 1) q.n_tools = 1;
                else q.n_tools = 0;
                break;
            }
            key_of(TG_SIMPLETON_GENERATE, &q, k2);
            if (!strcmp(k0, k2)) fprintf(stderr, "  changing '%s' (variation %d) kept the key\n", rows[r].name, var);
            CHECK(strcmp(k0, k2) != 0);
        }
    }
    /* Messages: one image fewer, one message fewer. */
    backend_gen_req q = base(msgs2);
    msgs2[1].n_images = 0;
    key_of(TG_SIMPLETON_GENERATE, &q, k2);
    CHECK(strcmp(k0, k2) != 0);
    q = base(msgs2);
    q.n_messages = 1;
    key_of(TG_SIMPLETON_GENERATE, &q, k2);
    CHECK(strcmp(k0, k2) != 0);
    /* Tool calls and results: other arguments, another call id, another name. */
    const char *what[] = {"arguments", "tool_call_id", "tool_name"};
    for (int w = 0; w < 3; w++) {
        q = base(msgs2);
        if (w == 0) msgs2[2].tool_calls = calls_b;
        else if (w == 1) msgs2[3].tool_call_id = "call_2";
        else msgs2[3].tool_name = "mul";
        key_of(TG_SIMPLETON_GENERATE, &q, k2);
        if (!strcmp(k0, k2)) fprintf(stderr, "  changing the %s kept the key\n", what[w]);
        CHECK(strcmp(k0, k2) != 0);
    }
}

TEST(textgen_key_ignores_the_order_of_logit_bias) {
    backend_msg msgs[4];
    backend_gen_req q = base(msgs);
    const backend_logit_bias turned[] = {bias_a[1], bias_a[0]};
    char a[CACHE_KEY_MAX], b[CACHE_KEY_MAX];
    key_of(TG_OPENAI_CHAT, &q, a);
    q.logit_bias = turned;
    key_of(TG_OPENAI_CHAT, &q, b);
    CHECK_STR(a, b);
}

TEST(textgen_key_differs_per_route_and_type) {
    backend_msg msgs[4];
    const backend_gen_req q = base(msgs);
    char a[CACHE_KEY_MAX], b[CACHE_KEY_MAX], c[CACHE_KEY_MAX];
    key_of(TG_SIMPLETON_GENERATE, &q, a);
    key_of(TG_OLLAMA_GENERATE, &q, b);
    key_of(TG_SIMPLETON_CHAT, &q, c);
    CHECK(strcmp(a, b) != 0);
    CHECK(!strncmp(a, "simpleton:inference:", 20));
    CHECK(!strncmp(c, "simpleton:chat:", 15));
}
