/* test_grammar.c - GBNF grammars, the matcher, token masks over real
 * vocabularies (SentencePiece, byte-level BPE, WordPiece), the JSON Schema
 * compiler (with a random-schema property test and a validator for the
 * supported subset), constrained generation with stories260K, and the mask's
 * speed. */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/util.h"
#include "engine/generate.h"
#include "engine/gguf.h"
#include "engine/grammar.h"
#include "engine/json_schema.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "test.h"

static grammar *compile(const char *src) {
    grammar *g = NULL;
    char err[256] = "";
    int rc = grammar_parse(src, strlen(src), &g, err, sizeof err);
    if (rc) fprintf(stderr, "  grammar error: %s\n", err);
    return g;
}

/* Does the grammar accept s in one piece, and can it end there? */
static int matches(const grammar *g, const char *s) {
    grammar_matcher *m = NULL;
    char err[128];
    if (grammar_matcher_new(g, &m, err, sizeof err)) return -1;
    int ok = grammar_matcher_accept_bytes(m, s, strlen(s)) && grammar_matcher_can_end(m);
    grammar_matcher_free(m);
    return ok;
}

static const char *parse_error(const char *src) {
    static char err[256];
    grammar *g = NULL;
    err[0] = 0;
    int rc = grammar_parse(src, strlen(src), &g, err, sizeof err);
    grammar_free(g);
    return rc ? err : "(accepted)";
}

TEST(grammar_parse_and_match) {
    grammar *g = compile("root ::= \"a\" b* | [x-z]+ \"!\"?\n"
                         "b ::= (\"b\" | \"c\") # comment\n");
    REQUIRE(g);
    CHECK_INT(matches(g, "a"), 1);
    CHECK_INT(matches(g, "abcbc"), 1);
    CHECK_INT(matches(g, "xyzzy!"), 1);
    CHECK_INT(matches(g, "xyz!!"), 0);
    CHECK_INT(matches(g, "ad"), 0);
    CHECK_INT(matches(g, ""), 0);
    grammar_free(g);

    g = compile("root ::= [^\"\\\\a-c]{2,3} \"\\x41\\u00e9\\n\" .{1} [\\]]");
    REQUIRE(g);
    CHECK_INT(matches(g, "de" "A\xC3\xA9\n" "\xE2\x82\xAC" "]"), 1);
    CHECK_INT(matches(g, "def" "A\xC3\xA9\n" "x]"), 1);
    CHECK_INT(matches(g, "d" "A\xC3\xA9\nx]"), 0);
    CHECK_INT(matches(g, "dbA\xC3\xA9\nx]"), 0);
    CHECK_INT(matches(g, "d\"A\xC3\xA9\nx]"), 0);
    grammar_free(g);

    /* Multi-line rules, repetition bounds, nested groups, recursion. */
    g = compile("root ::= list\n"
                "list ::= \"[\" (item (\",\" item){0,2})? \"]\"\n"
                "item ::= [0-9]{1,}\n"
                "  | list\n");
    REQUIRE(g);
    CHECK_INT(matches(g, "[]"), 1);
    CHECK_INT(matches(g, "[1,22,[3,[]]]"), 1);
    CHECK_INT(matches(g, "[1,2,3,4]"), 0);
    CHECK_INT(matches(g, "[1,]"), 0);
    grammar_free(g);

    g = compile("root ::= \"ab\"{3}");
    REQUIRE(g);
    CHECK_INT(matches(g, "ababab"), 1);
    CHECK_INT(matches(g, "abab"), 0);
    grammar_free(g);
}

TEST(grammar_errors_name_line_column_and_expectation) {
    CHECK_STR(parse_error("root ::= \"a\"\nfoo ::= bar"), "line 2, column 9: undefined rule 'bar'");
    CHECK_STR(parse_error("rot ::= \"a\""), "line 1, column 12: the grammar has no 'root' rule");
    CHECK_STR(parse_error("root ::= \"a"), "line 1, column 12: unexpected end of the grammar inside a literal or class");
    CHECK_STR(parse_error("root = \"a\""), "line 1, column 6: expected '::=' after the rule name");
    CHECK_STR(parse_error("root ::= (\"a\" | \"b\""), "line 1, column 20: expected ')' to close the group opened at '('");
    CHECK_STR(parse_error("root ::= [z-a]"), "line 1, column 10: a range in the character class runs backwards");
    CHECK_STR(parse_error("root ::= \"a\"{3,1}"), "line 1, column 10: repetition {m,n} with n < m");
    CHECK_STR(parse_error("root ::= \"\\q\""), "line 1, column 11: unknown escape '\\q'");
    CHECK_STR(parse_error("root ::= \"a\"\nroot ::= \"b\""), "line 2, column 1: rule 'root' is defined twice");
    CHECK_STR(parse_error("root ::= expr\nexpr ::= expr \"+\" [0-9] | [0-9]"),
              "rule 'expr' is left-recursive (it can reach itself before matching a character)");
    CHECK_STR(parse_error("root ::= a\na ::= b? a \"x\"\nb ::= \"b\""),
              "rule 'a' is left-recursive (it can reach itself before matching a character)");
    CHECK_STR(parse_error("root ::= \"a\" ** "),
              "line 1, column 15: a repetition cannot be repeated directly; use a group");
    CHECK_STR(parse_error("root ::= \"a\" }"), "line 1, column 14: expected a literal, class, '.', '(' or rule name, found '}'");
    CHECK_STR(parse_error("root ::= \"a\"{99999}"), "line 1, column 19: repetition count over 10000");
    /* Exploding ambiguity is refused instead of allocating without limit. */
    char many[2400] = "root ::=";
    for (int i = 0; i < 300; i++) strcat(many, " \"x\"?");
    CHECK_STR(parse_error(many), "the grammar is too ambiguous: its start needs more than 256 parallel stacks");
    /* Identical stacks are merged, so plain ambiguity does not grow. */
    CHECK_STR(parse_error("root ::= a a a a a a a a a\na ::= \"x\"? | \"x\"?"), "(accepted)");
}

TEST(grammar_partial_utf8_across_calls) {
    grammar *g = compile("root ::= \"\xE2\x82\xAC\" [\xC3\xA0-\xC3\xBF]");
    REQUIRE(g);
    grammar_matcher *m = NULL;
    char err[64];
    REQUIRE(grammar_matcher_new(g, &m, err, sizeof err) == 0);
    CHECK(grammar_matcher_accept_bytes(m, "\xE2", 1));
    CHECK(!grammar_matcher_can_end(m));
    CHECK(!grammar_matcher_accept_bytes(m, "\x83", 1)); /* U+20C0.., not the euro sign's prefix */
    CHECK(grammar_matcher_accept_bytes(m, "\x82", 1));
    CHECK(grammar_matcher_accept_bytes(m, "\xAC\xC3", 2));
    CHECK(!grammar_matcher_accept_bytes(m, "\x80", 1)); /* U+00C0 is outside [à-ÿ] */
    CHECK(!grammar_matcher_can_end(m));
    CHECK(grammar_matcher_accept_bytes(m, "\xA9", 1));
    CHECK(grammar_matcher_can_end(m));
    CHECK(grammar_matcher_is_complete(m));
    grammar_matcher_free(m);
    grammar_free(g);

    /* Invalid UTF-8 is never accepted, even by '.'. */
    g = compile("root ::= .*");
    REQUIRE(g);
    CHECK_INT(matches(g, "ok \xF0\x9F\x98\x80"), 1);
    CHECK_INT(matches(g, "\xC0\xAF"), 0);
    CHECK_INT(matches(g, "\xED\xA0\x80"), 0);
    CHECK_INT(matches(g, "\xFF"), 0);
    CHECK_INT(matches(g, "\xE2\x82"), 0); /* incomplete: cannot end */
    grammar_free(g);
}

/* ---- token masks over real vocabularies ---- */

static tokenizer *load_vocab(const char *name, gguf **g) {
    char path[256], err[256];
    snprintf(path, sizeof path, "../shared/vocab/ggml-vocab-%s.gguf", name);
    *g = NULL;
    tokenizer *t = NULL;
    if (gguf_open(path, g, err, sizeof err) || tok_load(*g, &t, err, sizeof err)) {
        fprintf(stderr, "  %s: %s\n", path, err);
        gguf_close(*g);
        *g = NULL;
        return NULL;
    }
    return t;
}

/* The mask must agree with checking every token on its own. Returns the
 * number of allowed tokens, or -1 on a disagreement. */
static int mask_agrees(grammar_matcher *m, const grammar_vocab *v, const tokenizer *t) {
    int32_t n = tok_n_vocab(t);
    float *logits = smp_malloc((size_t)n * sizeof *logits);
    for (int32_t i = 0; i < n; i++) logits[i] = 1.0f;
    int allowed = grammar_mask(m, v, logits), count = 0, bad = 0;
    for (int32_t i = 0; i < n; i++) {
        bool a = grammar_matcher_allows(m, v, i);
        count += a;
        if (a != (logits[i] == 1.0f) && bad++ < 5) {
            size_t len;
            const char *p = tok_piece(t, i, false, &len);
            fprintf(stderr, "    token %d '%.*s': mask %d, check %d\n", i, (int)len, p, logits[i] == 1.0f, a);
        }
    }
    smp_free(logits);
    return bad || count != allowed ? -1 : allowed;
}

static const char *json_gbnf =
    "root ::= ws object\n"
    "object ::= \"{\" ws ( kv ( ws \",\" ws kv )* ws )? \"}\"\n"
    "kv ::= string ws \":\" ws value\n"
    "value ::= string | [0-9]+ | \"true\" | \"false\" | \"null\" | object\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1f] | \"\\\\\" [\"\\\\nt] )* \"\\\"\"\n"
    "ws ::= [ \\n]{0,4}\n";

static void check_vocab_masks(const char *name) {
    gguf *gf;
    tokenizer *t = load_vocab(name, &gf);
    REQUIRE(t);
    grammar_vocab *v = NULL;
    REQUIRE(grammar_vocab_new(t, &v) == 0);
    grammar *g = compile(json_gbnf);
    REQUIRE(g);
    grammar_matcher *m = NULL;
    char err[128];
    REQUIRE(grammar_matcher_new(g, &m, err, sizeof err) == 0);
    /* Walk a document in small steps; at each state the mask equals the brute force. */
    const char *doc[] = {" {", "\"", "na", "me\\", "n\xC3", "\xA9\"", ": ", "{\"a\"", ":1", "2}", "\n}"};
    int32_t eos = tok_eos(t);
    for (size_t i = 0; i < sizeof doc / sizeof *doc; i++) {
        int allowed = mask_agrees(m, v, t);
        /* WordPiece has no byte tokens, so nothing continues half a character. */
        bool half_char = i == 5;
        CHECK(allowed > 0 || (half_char && tok_get_kind(t) == TOK_KIND_WPM));
        if (eos >= 0) CHECK(!grammar_matcher_allows(m, v, eos));
        REQUIRE(grammar_matcher_accept_bytes(m, doc[i], strlen(doc[i])));
    }
    CHECK(grammar_matcher_is_complete(m));
    CHECK_INT(mask_agrees(m, v, t), eos >= 0 ? 1 : 0); /* only the end is left */
    if (eos >= 0) CHECK(grammar_matcher_accept_token(m, v, eos));

    /* A token spanning several grammar symbols: "\": " style pieces. */
    grammar_matcher_free(m);
    REQUIRE(grammar_matcher_new(g, &m, err, sizeof err) == 0);
    REQUIRE(grammar_matcher_accept_bytes(m, "{\"ab", 4));
    int32_t *ids = NULL;
    size_t nids = 0;
    REQUIRE(tok_encode(t, "\":", 2, false, false, &ids, &nids) == 0);
    for (size_t i = 0; i < nids; i++) CHECK(grammar_matcher_accept_token(m, v, ids[i]));
    smp_free(ids);
    /* Encoding a whole document gives tokens the matcher takes one by one. */
    grammar_matcher_free(m);
    REQUIRE(grammar_matcher_new(g, &m, err, sizeof err) == 0);
    const char *text = "{\"city\": \"Z\xC3\xBCrich \xE2\x82\xAC\", \"n\": 42, \"ok\": true}";
    REQUIRE(tok_encode(t, text, strlen(text), false, false, &ids, &nids) == 0);
    if (tok_get_kind(t) != TOK_KIND_WPM) /* WordPiece drops spaces, so the text does not round-trip */
        for (size_t i = 0; i < nids; i++) CHECK(grammar_matcher_accept_token(m, v, ids[i]));
    if (tok_get_kind(t) != TOK_KIND_WPM) CHECK(grammar_matcher_can_end(m));
    smp_free(ids);
    grammar_matcher_free(m);
    grammar_free(g);
    grammar_vocab_free(v);
    tok_free(t);
    gguf_close(gf);
}

TEST(grammar_mask_spm) { check_vocab_masks("llama-spm"); }
TEST(grammar_mask_bpe) { check_vocab_masks("gpt-2"); }
TEST(grammar_mask_wordpiece) { check_vocab_masks("bert-bge"); }

TEST(grammar_mask_byte_tokens_spm) {
    /* SentencePiece spells a character it has no piece for with <0xXX> byte
     * tokens: the first byte alone must be allowed, then the rest. */
    gguf *gf;
    tokenizer *t = load_vocab("llama-spm", &gf);
    REQUIRE(t);
    grammar_vocab *v = NULL;
    REQUIRE(grammar_vocab_new(t, &v) == 0);
    grammar *g = compile("root ::= \"\xF0\x9F\xA6\x99\""); /* U+1F999 */
    grammar_matcher *m = NULL;
    char err[64];
    REQUIRE(g && grammar_matcher_new(g, &m, err, sizeof err) == 0);
    int32_t b0 = tok_lookup(t, "<0xF0>", 6), b1 = tok_lookup(t, "<0x9F>", 6), b2 = tok_lookup(t, "<0xA6>", 6),
            b3 = tok_lookup(t, "<0x99>", 6);
    REQUIRE(b0 >= 0 && b1 >= 0 && b2 >= 0 && b3 >= 0);
    CHECK(mask_agrees(m, v, t) >= 1);
    CHECK(grammar_matcher_allows(m, v, b0));
    CHECK(!grammar_matcher_allows(m, v, b1));
    CHECK(grammar_matcher_accept_token(m, v, b0));
    CHECK(grammar_matcher_accept_token(m, v, b1));
    CHECK(!grammar_matcher_allows(m, v, b3));
    CHECK(mask_agrees(m, v, t) == 1); /* exactly <0xA6> */
    CHECK(grammar_matcher_accept_token(m, v, b2));
    CHECK(grammar_matcher_accept_token(m, v, b3));
    CHECK(grammar_matcher_is_complete(m));
    grammar_matcher_free(m);
    grammar_free(g);
    grammar_vocab_free(v);
    tok_free(t);
    gguf_close(gf);
}

/* Mask time per token for a 32k vocabulary in typical JSON states. */
TEST(grammar_mask_speed) {
    gguf *gf;
    tokenizer *t = load_vocab("llama-spm", &gf);
    REQUIRE(t);
    uint64_t t0 = util_now_ns();
    grammar_vocab *v = NULL;
    REQUIRE(grammar_vocab_new(t, &v) == 0);
    double vocab_ms = (double)(util_now_ns() - t0) / 1e6;
    grammar *g = compile(json_gbnf);
    REQUIRE(g);
    static const struct {
        const char *label, *prefix;
    } states[] = {{"start", ""}, {"after '{'", "{"}, {"in a key", "{\"ke"}, {"after ':'", "{\"key\":"},
                  {"in a number", "{\"key\": 12"}, {"after ','", "{\"key\": 12,"}};
    float *logits = smp_malloc((size_t)tok_n_vocab(t) * sizeof *logits);
    for (size_t i = 0; i < sizeof states / sizeof *states; i++) {
        grammar_matcher *m = NULL;
        char err[64];
        REQUIRE(grammar_matcher_new(g, &m, err, sizeof err) == 0);
        REQUIRE(grammar_matcher_accept_bytes(m, states[i].prefix, strlen(states[i].prefix)));
        int reps = 20, allowed = 0;
        uint64_t s = util_now_ns();
        for (int r = 0; r < reps; r++) allowed = grammar_mask(m, v, logits);
        double us = (double)(util_now_ns() - s) / 1e3 / reps;
        fprintf(stderr, "  mask %-12s %8.1f us/token  (%d of %d tokens allowed)\n", states[i].label, us, allowed,
                tok_n_vocab(t));
        grammar_matcher_free(m);
    }
    fprintf(stderr, "  grammar_vocab_new (32k): %.2f ms\n", vocab_ms);
    smp_free(logits);
    grammar_free(g);
    grammar_vocab_free(v);
    tok_free(t);
    gguf_close(gf);
}

/* ---- JSON Schema ---- */

static grammar *schema_grammar(const char *schema_text, char *err, size_t errlen) {
    json_error_t je;
    json_t *s = json_loads(schema_text, JSON_DECODE_ANY, &je);
    if (!s) {
        snprintf(err, errlen, "bad test schema: %s", je.text);
        return NULL;
    }
    grammar *g = NULL;
    json_schema_compile(s, &g, err, errlen);
    json_decref(s);
    return g;
}

static int schema_matches(const char *schema, const char *doc) {
    char err[300];
    grammar *g = schema_grammar(schema, err, sizeof err);
    if (!g) {
        fprintf(stderr, "  %s\n", err);
        return -1;
    }
    int r = matches(g, doc);
    grammar_free(g);
    return r;
}

static const char *schema_error(const char *schema) {
    static char err[300];
    err[0] = 0;
    grammar *g = schema_grammar(schema, err, sizeof err);
    grammar_free(g);
    return g ? "(accepted)" : err;
}

TEST(grammar_json_schema_accepts_and_refuses) {
    const char *person = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":5},"
                         "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":130},"
                         "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\",1]},\"maxItems\":2}},"
                         "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}";
    CHECK_INT(schema_matches(person, "{\"name\":\"Ann\",\"age\":42}"), 1);
    CHECK_INT(schema_matches(person, "{ \"name\": \"Ann\",\n  \"age\": 130, \"tags\": [\"a\", 1] }"), 1);
    CHECK_INT(schema_matches(person, "{\"name\":\"Ann\",\"age\":131}"), 0);
    CHECK_INT(schema_matches(person, "{\"name\":\"Ann\",\"age\":-1}"), 0);
    CHECK_INT(schema_matches(person, "{\"name\":\"Annabel\",\"age\":4}"), 0);
    CHECK_INT(schema_matches(person, "{\"age\":4}"), 0);
    CHECK_INT(schema_matches(person, "{\"name\":\"A\",\"age\":4,\"tags\":[\"a\",\"b\",1]}"), 0);
    CHECK_INT(schema_matches(person, "{\"name\":\"A\",\"age\":4,\"x\":1}"), 0);
    CHECK_INT(schema_matches(person, "{\"name\":\"A\",\"age\":4}     "), 0); /* bounded whitespace */

    const char *fmt = "{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"string\",\"format\":\"date\"},"
                      "{\"type\":\"string\",\"format\":\"uuid\"},{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d+$\"},"
                      "{\"type\":[\"number\",\"null\"],\"minimum\":-5,\"maximum\":5}]},\"minItems\":1}";
    CHECK_INT(schema_matches(fmt, "[\"2024-02-29\",\"123e4567-e89b-12d3-a456-426614174000\",\"AB-12\",null,-4.5,5]"),
              1);
    CHECK_INT(schema_matches(fmt, "[]"), 0);
    CHECK_INT(schema_matches(fmt, "[5.01]"), 0);
    CHECK_INT(schema_matches(fmt, "[5.00]"), 1);
    CHECK_INT(schema_matches(fmt, "[-5.5]"), 0);
    CHECK_INT(schema_matches(fmt, "[\"2024-13-01\"]"), 0);
    CHECK_INT(schema_matches(fmt, "[\"AB-\"]"), 0);

    const char *rec = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"const\":1},"
                      "\"next\":{\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":\"null\"}]}},"
                      "\"required\":[\"v\",\"next\"]}},\"$ref\":\"#/$defs/node\"}";
    CHECK_INT(schema_matches(rec, "{\"v\":1,\"next\":{\"v\":1,\"next\":{\"v\":1,\"next\":null}}}"), 1);
    CHECK_INT(schema_matches(rec, "{\"v\":1,\"next\":{\"v\":2,\"next\":null}}"), 0);

    CHECK_INT(schema_matches("{\"type\":\"integer\",\"exclusiveMinimum\":-20,\"exclusiveMaximum\":1234}", "-19"), 1);
    CHECK_INT(schema_matches("{\"type\":\"integer\",\"exclusiveMinimum\":-20,\"exclusiveMaximum\":1234}", "-20"), 0);
    CHECK_INT(schema_matches("{\"type\":\"integer\",\"exclusiveMinimum\":-20,\"exclusiveMaximum\":1234}", "1233"), 1);
    CHECK_INT(schema_matches("{\"type\":\"integer\",\"exclusiveMinimum\":-20,\"exclusiveMaximum\":1234}", "1234"), 0);
    CHECK_INT(schema_matches("{\"type\":\"integer\",\"minimum\":17}", "99999"), 1);
    CHECK_INT(schema_matches("{\"type\":\"integer\",\"minimum\":17}", "16"), 0);
    CHECK_INT(schema_matches("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"\\u00e9\\n\""), 1);
    CHECK_INT(schema_matches("{\"type\":\"string\"}", "\"\\ud800\""), 0); /* no lone surrogates */
    CHECK_INT(schema_matches("{\"type\":\"string\",\"format\":\"email\"}", "\"a.b@example.org\""), 1);
    CHECK_INT(schema_matches("{\"type\":\"string\",\"format\":\"date-time\"}", "\"2024-01-02T03:04:05.5+01:00\""), 1);
    CHECK_INT(schema_matches("{\"type\":\"string\",\"pattern\":\"b[\\\"x]\"}", "\"abx\""), 1);
    CHECK_INT(schema_matches("{\"type\":\"string\",\"pattern\":\"b[\\\"x]\"}", "\"ab\\\"c\""), 1);

    grammar *g = NULL;
    char err[200];
    REQUIRE(json_schema_any_object(&g, err, sizeof err) == 0);
    CHECK_INT(matches(g, "{\"a\": [1, {\"b\": null}], \"c\": \"x\"}"), 1);
    CHECK_INT(matches(g, "[1]"), 0);
    grammar_free(g);

    CHECK_STR(schema_error("{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\",\"multipleOf\":2}}}"),
              "schema.properties.age: keyword 'multipleOf' is not supported");
    CHECK_STR(schema_error("{\"type\":\"array\",\"items\":{\"type\":\"string\",\"contentEncoding\":\"base64\"}}"),
              "schema.items: keyword 'contentEncoding' is not supported");
    CHECK_STR(schema_error("{\"oneOf\":[{\"type\":\"string\"}]}"), "schema: keyword 'oneOf' is not supported");
    CHECK_STR(schema_error("{\"type\":\"string\",\"format\":\"ipv4\"}"),
              "schema: format 'ipv4' is not supported (date, time, date-time, uuid, email are)");
    CHECK_STR(schema_error("{\"type\":\"string\",\"pattern\":\"(?=a)b\"}"),
              "schema.pattern: pattern: lookaround and named groups are not supported");
    CHECK_STR(schema_error("{\"type\":\"string\",\"pattern\":\"\\\\bword\"}"),
              "schema.pattern: pattern: '\\b' is not supported");
    CHECK_STR(schema_error("{\"type\":\"number\",\"minimum\":0.5}"),
              "schema: a number's minimum and maximum must be whole numbers to be enforced");
    CHECK_STR(schema_error("{\"$ref\":\"#/$defs/missing\"}"), "schema: $ref '#/$defs/missing' points at nothing");
    CHECK_STR(schema_error("{\"$ref\":\"https://example.com/s.json\"}"),
              "schema: $ref 'https://example.com/s.json' is not supported (only local '#/...' references are)");
    CHECK_STR(schema_error("{\"type\":\"object\",\"properties\":{},\"patternProperties\":{}}"),
              "schema: keyword 'patternProperties' is not supported");
}

/* A 50-property object: compile time (uncached and cached). */
TEST(grammar_json_schema_compile_time) {
    json_t *props = json_object(), *req = json_array();
    for (int i = 0; i < 50; i++) {
        char k[16];
        snprintf(k, sizeof k, "field_%d", i);
        json_t *p = i % 3 == 0   ? json_pack("{s:s,s:i}", "type", "string", "maxLength", 40)
                    : i % 3 == 1 ? json_pack("{s:s,s:i,s:i}", "type", "integer", "minimum", 0, "maximum", 1000)
                                 : json_pack("{s:[s,s,s]}", "enum", "red", "green", "blue");
        json_object_set_new(props, k, p);
        if (i % 2 == 0) json_array_append_new(req, json_string(k));
    }
    json_t *s = json_pack("{s:s,s:o,s:o,s:b}", "type", "object", "properties", props, "required", req,
                          "additionalProperties", 0);
    json_schema_cache_clear();
    char err[200];
    grammar *g = NULL, *g2 = NULL;
    uint64_t t0 = util_now_ns();
    REQUIRE(json_schema_compile(s, &g, err, sizeof err) == 0);
    uint64_t t1 = util_now_ns();
    REQUIRE(json_schema_compile(s, &g2, err, sizeof err) == 0);
    uint64_t t2 = util_now_ns();
    CHECK(g == g2);
    fprintf(stderr, "  50-property schema: compile %.2f ms (%d rules, %zu elements), cached %.1f us\n",
            (double)(t1 - t0) / 1e6, grammar_n_rules(g), grammar_n_elems(g), (double)(t2 - t1) / 1e3);
    grammar_free(g);
    grammar_free(g2);
    json_decref(s);
    json_schema_cache_clear();
}
