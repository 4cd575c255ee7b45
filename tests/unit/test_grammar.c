/* test_grammar.c - GBNF grammars, the matcher, token masks over real
 * vocabularies (SentencePiece, byte-level BPE, WordPiece), the JSON Schema
 * compiler (property tests: random schemas walked under their grammars and
 * checked by a validator for the supported subset; unsupported keywords
 * injected anywhere are refused by name and place, annotations change
 * nothing), constrained generation with stories260K (also random schemas
 * under random sampling settings), and the mask's speed. */
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
#include "engine/tools.h"
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
    grammar_matcher *m2 = NULL;
    REQUIRE(grammar_matcher_new(g, &m2, err, sizeof err) == 0);
    CHECK(grammar_matcher_accept_bytes(m2, "\xED", 1)); /* U+D000..U+D7FF are fine */
    CHECK(!grammar_matcher_accept_bytes(m2, "\xA0", 1)); /* a surrogate: refused at once */
    grammar_matcher_free(m2);
    REQUIRE(grammar_matcher_new(g, &m2, err, sizeof err) == 0);
    CHECK(!grammar_matcher_accept_bytes(m2, "\xE0\x9B", 2)); /* overlong: refused before its last byte */
    grammar_matcher_free(m2);
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
              "schema: 'minimum' on a number must be a whole number to be enforced");
    CHECK_STR(schema_error("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}"),
              "schema.pattern: pattern: backreferences are not supported");
    /* Unknown keywords where generation never looks are refused all the same. */
    CHECK_STR(schema_error("{\"type\":\"string\",\"$defs\":{\"unused\":{\"not\":{}}}}"),
              "schema.$defs.unused: keyword 'not' is not supported");
    CHECK_STR(schema_error("{\"type\":\"object\",\"items\":{\"type\":\"string\",\"uniqueItems\":true}}"),
              "schema.items: keyword 'uniqueItems' is not supported");
    CHECK_STR(schema_error("{\"enum\":[1],\"properties\":{\"a\":{\"allOf\":[]}}}"),
              "schema.properties.a: keyword 'allOf' is not supported");
    CHECK_STR(schema_error("{\"type\":\"integer\",\"default\":{\"not\":1},\"examples\":[{\"oneOf\":[]}]}"),
              "(accepted)");
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

/* ---- property test: random schemas, constrained random walks ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11) % n;
}

/* Patterns in both our subset and POSIX ERE (the validator uses regcomp). */
static const char *const patterns[] = {"^[a-z]{2,5}$", "^[A-Z][a-z]+ [0-9]{1,3}$", "^(foo|bar)-[0-9]+$", "ab+c",
                                       "^x(yz)?$", "^[^a-z]{1,3}$"};
static const char *const names[] = {"id", "name", "tags", "score", "kind", "when", "ok", "child"};

static json_t *random_schema(int depth) {
    int pick = rnd(depth > 2 ? 9 : 13);
    switch (pick) {
    case 0: {
        json_t *s = json_pack("{s:s}", "type", "string");
        int v = rnd(5);
        if (v == 1) json_object_set_new(s, "maxLength", json_integer(rnd(6)));
        if (v == 2) json_object_set_new(s, "minLength", json_integer(1 + rnd(3))),
            json_object_set_new(s, "maxLength", json_integer(4 + rnd(4)));
        if (v == 3) json_object_set_new(s, "pattern", json_string(patterns[rnd(6)]));
        if (v == 4) {
            static const char *f[] = {"date", "date-time", "uuid", "email", "time"};
            json_object_set_new(s, "format", json_string(f[rnd(5)]));
        }
        return s;
    }
    case 1: {
        json_t *s = json_pack("{s:s}", "type", rnd(2) ? "integer" : "number");
        if (rnd(2)) json_object_set_new(s, "minimum", json_integer((int)rnd(2000) - 1000));
        if (rnd(2)) json_object_set_new(s, "maximum", json_integer(1000 + (int)rnd(100000)));
        if (!strcmp(json_string_value(json_object_get(s, "type")), "integer") && rnd(3) == 0)
            json_object_set_new(s, "exclusiveMaximum", json_integer((int)rnd(50) - 10)),
                json_object_del(s, "maximum"), json_object_set_new(s, "minimum", json_integer(-30));
        return s;
    }
    case 2: return json_pack("{s:s}", "type", "boolean");
    case 3: return json_pack("{s:s}", "type", "null");
    case 4: return json_pack("{s:[s,i,b,n,s]}", "enum", "red", 7, 1, "x\"y\\z\n");
    case 5: return json_pack("{s:{s:[i,i]}}", "const", "pair", 1, 2);
    case 6: return json_pack("{s:[s,s],s:i}", "type", "string", "null", "maxLength", 3);
    case 7: return json_object(); /* any value */
    case 8: return json_pack("{s:s,s:s}", "type", "string", "description", "annotated");
    case 9: case 10: {
        json_t *props = json_object(), *req = json_array();
        int n = 1 + rnd(4);
        for (int i = 0; i < n; i++) {
            const char *k = names[rnd(8)];
            if (json_object_get(props, k)) continue;
            json_object_set_new(props, k, random_schema(depth + 1));
            if (rnd(2)) json_array_append_new(req, json_string(k));
        }
        json_t *s = json_pack("{s:s,s:o,s:o}", "type", "object", "properties", props, "required", req);
        if (rnd(2)) json_object_set_new(s, "additionalProperties", json_false());
        return s;
    }
    case 11: {
        json_t *s = json_pack("{s:s,s:o}", "type", "array", "items", random_schema(depth + 1));
        if (rnd(2)) json_object_set_new(s, "minItems", json_integer(rnd(2)));
        json_object_set_new(s, "maxItems", json_integer(2 + rnd(3)));
        return s;
    }
    default: return json_pack("{s:[o,o]}", "anyOf", random_schema(depth + 1), random_schema(depth + 1));
    }
}

static size_t utf8_len(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool re_search(const char *re, const char *s) {
    regex_t r;
    if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB)) return false;
    bool ok = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return ok;
}

static const json_t *resolve_ref(const json_t *root, const char *ref) {
    const json_t *cur = root;
    char buf_[256];
    snprintf(buf_, sizeof buf_, "%s", ref + 1);
    for (char *tok_ = strtok(buf_, "/"); tok_ && cur; tok_ = strtok(NULL, "/")) cur = json_object_get(cur, tok_);
    return cur;
}

static bool type_ok(const char *t, const json_t *v) {
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "integer")) return json_is_integer(v);
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "null")) return json_is_null(v);
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    return false;
}

/* A validator for the subset the compiler supports. */
static bool valid(const json_t *root, const json_t *s, const json_t *v) {
    if (json_object_size(s) == 0) return true;
    const json_t *x = json_object_get(s, "$ref");
    if (x) return valid(root, resolve_ref(root, json_string_value(x)), v);
    if ((x = json_object_get(s, "anyOf"))) {
        size_t i;
        const json_t *sub;
        json_array_foreach(x, i, sub) if (valid(root, sub, v)) return true;
        return false;
    }
    if ((x = json_object_get(s, "const")) && !json_equal(x, v)) return false;
    if ((x = json_object_get(s, "enum"))) {
        bool any = false;
        size_t i;
        const json_t *e;
        json_array_foreach(x, i, e) any |= json_equal(e, v);
        if (!any) return false;
    }
    if ((x = json_object_get(s, "type"))) {
        bool any = false;
        if (json_is_string(x)) any = type_ok(json_string_value(x), v);
        size_t i;
        const json_t *t;
        json_array_foreach(x, i, t) any |= type_ok(json_string_value(t), v);
        if (!any) return false;
    }
    if (json_is_string(v)) {
        const char *str = json_string_value(v);
        size_t n = utf8_len(str);
        if ((x = json_object_get(s, "minLength")) && n < (size_t)json_integer_value(x)) return false;
        if ((x = json_object_get(s, "maxLength")) && n > (size_t)json_integer_value(x)) return false;
        if ((x = json_object_get(s, "pattern")) && !re_search(json_string_value(x), str)) return false;
        if ((x = json_object_get(s, "format"))) {
            static const char *const fm[][2] = {
                {"date", "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                {"time", "^[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"},
                {"date-time", "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"},
                {"uuid", "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
                {"email", "^[^@]+@[^@.]+(\\.[^@.]+)+$"}};
            for (size_t i = 0; i < 5; i++)
                if (!strcmp(fm[i][0], json_string_value(x)) && !re_search(fm[i][1], str)) return false;
        }
    }
    if (json_is_number(v)) {
        double d = json_number_value(v);
        if ((x = json_object_get(s, "minimum")) && d < json_number_value(x)) return false;
        if ((x = json_object_get(s, "maximum")) && d > json_number_value(x)) return false;
        if ((x = json_object_get(s, "exclusiveMinimum")) && d <= json_number_value(x)) return false;
        if ((x = json_object_get(s, "exclusiveMaximum")) && d >= json_number_value(x)) return false;
    }
    if (json_is_array(v)) {
        if ((x = json_object_get(s, "minItems")) && json_array_size(v) < (size_t)json_integer_value(x)) return false;
        if ((x = json_object_get(s, "maxItems")) && json_array_size(v) > (size_t)json_integer_value(x)) return false;
        if ((x = json_object_get(s, "items"))) {
            size_t i;
            const json_t *e;
            json_array_foreach(v, i, e) if (!valid(root, x, e)) return false;
        }
    }
    if (json_is_object(v)) {
        const json_t *props = json_object_get(s, "properties");
        size_t i;
        const json_t *r;
        json_array_foreach(json_object_get(s, "required"), i, r) if (!json_object_get(v, json_string_value(r)))
            return false;
        const char *k;
        const json_t *e;
        json_object_foreach((json_t *)v, k, e) {
            const json_t *ps = json_object_get(props, k);
            if (ps && !valid(root, ps, e)) return false;
            if (!ps && json_is_false(json_object_get(s, "additionalProperties"))) return false;
        }
    }
    return true;
}

static bool closes(const char *p, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (strchr("\"]}", p[i]) && p[i]) return true;
    return false;
}

/* Walk: random allowed tokens, biased toward ending. Returns the text (owned)
 * or NULL if the walk did not finish within its budget. */
static char *random_walk(grammar *g, const grammar_vocab *v, const tokenizer *t, int budget, int *steps) {
    grammar_matcher *m = NULL;
    char err[128];
    if (grammar_matcher_new(g, &m, err, sizeof err)) return NULL;
    int32_t n = tok_n_vocab(t), eos = tok_eos(t);
    float *logits = smp_malloc((size_t)n * sizeof *logits);
    int32_t *ok = smp_malloc((size_t)n * sizeof *ok), *pref = smp_malloc((size_t)n * sizeof *pref);
    buf text;
    buf_init(&text, 0);
    char *res = NULL;
    for (int step_ = 0; step_ < budget; step_++) {
        (*steps)++;
        for (int32_t i = 0; i < n; i++) logits[i] = 0;
        if (grammar_mask(m, v, logits) <= 0) {
            fprintf(stderr, "    stuck after: %.*s\n", (int)text.len, text.data ? text.data : "");
            break;
        }
        CHECK((logits[eos] == 0) == grammar_matcher_can_end(m)); /* the end only where the grammar can end */
        int nok = 0, npref = 0;
        for (int32_t i = 0; i < n; i++) {
            if (logits[i] != 0 || i == eos) continue;
            ok[nok++] = i;
            size_t len;
            const char *p = tok_piece(t, i, false, &len);
            if (closes(p, len) || (len <= 2 && step_ > 8)) pref[npref++] = i;
        }
        if (grammar_matcher_can_end(m) && (rnd(3) || step_ > budget / 2 || !nok)) {
            CHECK(logits[eos] == 0);
            res = buf_detach(&text, NULL);
            break;
        }
        if (!nok) break;
        int32_t id = npref && rnd(4) ? pref[rnd((uint32_t)npref)] : ok[rnd((uint32_t)nok)];
        size_t len;
        const char *p = tok_piece(t, id, false, &len);
        if (!grammar_matcher_accept_token(m, v, id)) {
            CHECK(!"an allowed token was refused");
            break;
        }
        buf_append(&text, p, len);
    }
    buf_free(&text);
    smp_free(logits);
    smp_free(ok);
    smp_free(pref);
    grammar_matcher_free(m);
    return res;
}

static void property_walks(const char *vocab, int n_schemas) {
    gguf *gf;
    tokenizer *t = load_vocab(vocab, &gf);
    REQUIRE(t);
    grammar_vocab *v = NULL;
    REQUIRE(grammar_vocab_new(t, &v) == 0);
    int done = 0, unfinished = 0, steps = 0;
    uint64_t t0 = util_now_ns();
    for (int k = 0; k < n_schemas; k++) {
        json_t *s = random_schema(0);
        if (k % 10 == 0) { /* a recursive one now and then */
            json_decref(s);
            s = json_loads("{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                           "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},"
                           "\"required\":[\"v\"]}},\"$ref\":\"#/$defs/node\"}",
                           0, NULL);
        }
        char err[300];
        grammar *g = NULL;
        if (json_schema_compile(s, &g, err, sizeof err)) {
            char *txt = json_dumps(s, JSON_COMPACT);
            fprintf(stderr, "  schema refused: %s\n    %s\n", err, txt);
            free(txt);
            test_failures++;
            json_decref(s);
            continue;
        }
        char *out = random_walk(g, v, t, 300, &steps);
        if (!out) {
            unfinished++;
        } else {
            json_error_t je;
            json_t *doc = json_loads(out, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (!doc || !valid(s, s, doc)) {
                char *txt = json_dumps(s, JSON_COMPACT);
                fprintf(stderr, "  %s output: %s\n    schema: %s\n    %s\n", doc ? "invalid" : "unparsable", out, txt,
                        doc ? "" : je.text);
                free(txt);
                test_failures++;
            }
            json_decref(doc);
            done++;
        }
        smp_free(out);
        grammar_free(g);
        json_decref(s);
    }
    fprintf(stderr, "  %s: %d schemas, %d walks finished, %d ran out of budget, %d masked steps, %.1f us/step\n",
            vocab, n_schemas, done, unfinished, steps, (double)(util_now_ns() - t0) / 1e3 / (steps ? steps : 1));
    CHECK(unfinished * 10 <= n_schemas);
    json_schema_cache_clear();
    grammar_vocab_free(v);
    tok_free(t);
    gguf_close(gf);
}

TEST(grammar_property_random_schemas_spm) { property_walks("llama-spm", 300); }
TEST(grammar_property_random_schemas_bpe) { property_walks("gpt-2", 40); }

/* ---- property test: what cannot be enforced is refused, wherever it is ---- */

/* A supported tree from random_schema; half of them get $defs at the root:
 * "used" (reached through a $ref) and "spare" (reached by nothing). */
static json_t *random_tree(void) {
    json_t *s = random_schema(0);
    if (rnd(2)) return s;
    return json_pack("{s:[o,{s:s}],s:{s:o,s:o}}", "anyOf", s, "$ref", "#/$defs/used", "$defs", "used",
                     random_schema(1), "spare", random_schema(1));
}

/* Every subschema that is an object, with its path as errors name it. */
typedef struct {
    json_t *node;
    char path[256];
    bool used; /* reached while generating (not inside $defs.spare) */
} spot;

typedef struct {
    spot at[160];
    int n;
} spots;

static void collect(spots *sp, json_t *s, const char *path, bool used) {
    if (!json_is_object(s) || sp->n == (int)(sizeof sp->at / sizeof *sp->at)) return;
    spot *x = &sp->at[sp->n++];
    x->node = s;
    x->used = used;
    snprintf(x->path, sizeof x->path, "%s", path);
    char sub[300];
    const char *k;
    json_t *v;
    size_t i;
    json_object_foreach(json_object_get(s, "properties"), k, v) {
        snprintf(sub, sizeof sub, "%s.properties.%s", path, k);
        collect(sp, v, sub, used);
    }
    json_array_foreach(json_object_get(s, "anyOf"), i, v) {
        snprintf(sub, sizeof sub, "%s.anyOf[%zu]", path, i);
        collect(sp, v, sub, used);
    }
    json_object_foreach(json_object_get(s, "$defs"), k, v) {
        snprintf(sub, sizeof sub, "%s.$defs.%s", path, k);
        collect(sp, v, sub, used && strcmp(k, "spare"));
    }
    snprintf(sub, sizeof sub, "%s.items", path);
    collect(sp, json_object_get(s, "items"), sub, used);
    snprintf(sub, sizeof sub, "%s.additionalProperties", path);
    collect(sp, json_object_get(s, "additionalProperties"), sub, used);
}

/* Keywords added to any subschema: "<path>: keyword '<name>' is not supported". */
static const char *const unsupported[][2] = {
    {"{\"multipleOf\":2}", "multipleOf"},
    {"{\"not\":{\"type\":\"null\"}}", "not"},
    {"{\"allOf\":[{}]}", "allOf"},
    {"{\"oneOf\":[{\"type\":\"string\"}]}", "oneOf"},
    {"{\"if\":{\"type\":\"string\"},\"then\":{\"maxLength\":2},\"else\":{}}", "if"},
    {"{\"then\":{\"maxLength\":2}}", "then"},
    {"{\"patternProperties\":{\"^x\":{}}}", "patternProperties"},
    {"{\"propertyNames\":{\"maxLength\":3}}", "propertyNames"},
    {"{\"uniqueItems\":true}", "uniqueItems"},
    {"{\"contains\":{\"type\":\"integer\"}}", "contains"},
    {"{\"minProperties\":1}", "minProperties"},
    {"{\"maxProperties\":3}", "maxProperties"},
    {"{\"dependentRequired\":{\"a\":[\"b\"]}}", "dependentRequired"},
    {"{\"dependentSchemas\":{\"a\":{}}}", "dependentSchemas"},
    {"{\"unevaluatedProperties\":false}", "unevaluatedProperties"},
    {"{\"unevaluatedItems\":false}", "unevaluatedItems"},
    {"{\"prefixItems\":[{}]}", "prefixItems"},
    {"{\"additionalItems\":false}", "additionalItems"},
    {"{\"contentEncoding\":\"base64\"}", "contentEncoding"},
    {"{\"$dynamicRef\":\"#node\"}", "$dynamicRef"},
};

/* Subschemas that replace a reached one: the error starts "<path><at>: " and
 * says `says`. */
static const struct {
    const char *schema, *at, *says;
} unenforceable[] = {
    {"{\"type\":\"string\",\"pattern\":\"^(?=a)b$\"}", ".pattern", "lookaround"},
    {"{\"type\":\"string\",\"pattern\":\"x(?<!a)b\"}", ".pattern", "lookaround"},
    {"{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", ".pattern", "backreferences"},
    {"{\"type\":\"string\",\"pattern\":\"^a+?$\"}", ".pattern", "lazy"},
    {"{\"type\":\"string\",\"format\":\"hostname\"}", "", "format 'hostname'"},
    {"{\"type\":\"string\",\"format\":\"ipv4\"}", "", "format 'ipv4'"},
    {"{\"$ref\":\"https://example.com/s.json\"}", "", "$ref 'https://example.com/s.json'"},
    {"{\"$ref\":\"other.json#/$defs/x\"}", "", "$ref 'other.json#/$defs/x'"},
    {"{\"type\":\"number\",\"minimum\":0.5}", "", "'minimum'"},
    {"{\"type\":\"number\",\"maximum\":2.25}", "", "'maximum'"},
    {"{\"type\":\"number\",\"exclusiveMinimum\":0}", "", "'exclusiveMinimum'"},
};

/* Annotations, with values that would be refused as schemas. */
static const char *const annotation_kw[] = {
    "{\"title\":\"T\"}", "{\"description\":\"about it\"}", "{\"default\":{\"not\":{},\"oneOf\":1}}",
    "{\"default\":[1,\"x\"]}", "{\"examples\":[{\"uniqueItems\":true},3]}", "{\"$comment\":\"why\"}",
    "{\"deprecated\":true}", "{\"readOnly\":true}", "{\"writeOnly\":false}",
};

static void add_annotations(json_t *s) {
    spots sp = {.n = 0};
    collect(&sp, s, "schema", true);
    for (int i = 1 + (int)rnd(3); i > 0; i--) {
        json_t *a = json_loads(annotation_kw[rnd(sizeof annotation_kw / sizeof *annotation_kw)], 0, NULL);
        json_object_update(sp.at[rnd((uint32_t)sp.n)].node, a);
        json_decref(a);
    }
}

static char *gbnf_of(const json_t *s, char *err, size_t errlen) {
    char *g = NULL;
    err[0] = 0;
    return json_schema_to_gbnf(s, &g, err, errlen) ? NULL : g;
}

/* The refusal for b through the tool path (tools.1.function.parameters...),
 * beside a supported tool; compared with the direct error `want`. */
static void check_tool_refusal(json_t *good, json_t *b, const char *want) {
    tool_def tools[] = {{"fine", NULL, good}, {"broken", NULL, b}};
    grammar *g = NULL;
    char err[400], expect[440];
    snprintf(expect, sizeof expect, "tools.1.function.parameters%s", want + strlen("schema"));
    int rc = tools_grammar(TOOL_STYLE_HERMES, tools, 2, NULL, true, &g, err, sizeof err);
    if (rc != -SMP_E_VALIDATION || strcmp(err, expect)) {
        fprintf(stderr, "  tools: rc %d: %s\n    expected: %s\n", rc, rc ? err : "(accepted)", expect);
        test_failures++;
    }
    grammar_free(g);
}

TEST(grammar_property_unsupported_keywords_refused) {
    int refused = 0, n = 300;
    for (int k = 0; k < n; k++) {
        json_t *s = random_tree();
        char err[400];
        char *g0 = gbnf_of(s, err, sizeof err);
        if (!g0) {
            fprintf(stderr, "  supported schema refused: %s\n", err);
            test_failures++;
            json_decref(s);
            continue;
        }
        /* Annotations anywhere change nothing at all: the same grammar. */
        json_t *a = json_deep_copy(s);
        add_annotations(a);
        char *g1 = gbnf_of(a, err, sizeof err);
        if (!g1 || strcmp(g0, g1)) {
            char *txt = json_dumps(a, JSON_COMPACT);
            fprintf(stderr, "  annotations changed the grammar (%s): %s\n", g1 ? "accepted" : err, txt);
            free(txt);
            test_failures++;
        }
        /* One thing that cannot be enforced, at a random place: the error
         * starts with `prefix` and goes on with `says` (exactly, for a keyword). */
        json_t *b = json_deep_copy(s);
        spots sp = {.n = 0};
        collect(&sp, b, "schema", true);
        spot *at = &sp.at[rnd((uint32_t)sp.n)];
        char prefix[300], kw[80];
        const char *says = kw;
        bool keyword = rnd(3) != 0;
        json_t *inj;
        if (keyword) {
            size_t i = rnd(sizeof unsupported / sizeof *unsupported);
            inj = json_loads(unsupported[i][0], 0, NULL);
            snprintf(prefix, sizeof prefix, "%s: ", at->path);
            snprintf(kw, sizeof kw, "keyword '%s' is not supported", unsupported[i][1]);
        } else { /* values are checked where generation reaches them */
            while (!at->used) at = &sp.at[rnd((uint32_t)sp.n)];
            size_t i = rnd(sizeof unenforceable / sizeof *unenforceable);
            inj = json_loads(unenforceable[i].schema, 0, NULL);
            json_object_clear(at->node);
            snprintf(prefix, sizeof prefix, "%s%s: ", at->path, unenforceable[i].at);
            says = unenforceable[i].says;
        }
        REQUIRE(inj);
        json_object_update(at->node, inj);
        json_decref(inj);
        for (int pass = 0; pass < 2; pass++) { /* as it is, then with annotations added */
            grammar *gr = NULL;
            err[0] = 0;
            int rc = json_schema_compile(b, &gr, err, sizeof err);
            size_t np = strlen(prefix);
            bool ok = rc == -SMP_E_VALIDATION && !strncmp(err, prefix, np) &&
                      (keyword ? !strcmp(err + np, says) : strstr(err + np, says) != NULL);
            if (!ok) {
                char *txt = json_dumps(b, JSON_COMPACT);
                fprintf(stderr, "  rc %d: %s\n    expected: %s%s%s\n    schema: %s\n", rc, rc ? err : "(accepted)",
                        prefix, keyword ? "" : "...", says, txt);
                free(txt);
                test_failures++;
            } else {
                refused++;
                if (pass == 0 && k % 3 == 0) check_tool_refusal(s, b, err);
            }
            grammar_free(gr);
            add_annotations(b);
        }
        smp_free(g0);
        smp_free(g1);
        json_decref(a);
        json_decref(b);
        json_decref(s);
    }
    fprintf(stderr, "  %d schemas, %d refusals as expected (of %d)\n", n, refused, 2 * n);
    CHECK_INT(refused, 2 * n);
    json_schema_cache_clear();
}

/* ---- distance: the fewest bytes that finish the input ---- */

/* The distance after feeding s (SIZE_MAX - 1 when s is refused). */
static size_t distance_after(const grammar *g, const char *s) {
    grammar_matcher *m = NULL;
    char err[128];
    if (grammar_matcher_new(g, &m, err, sizeof err)) return SIZE_MAX - 1;
    size_t d = grammar_matcher_accept_bytes(m, s, strlen(s)) ? grammar_matcher_distance(m) : SIZE_MAX - 1;
    grammar_matcher_free(m);
    return d;
}

/* From after prefix, feed one byte at a time, always one that lowers the
 * distance by exactly one. True when the input can end after exactly the
 * distance's number of bytes. */
static bool shortest_walk(const grammar *g, const char *prefix) {
    grammar_matcher *m = NULL;
    char err[128];
    if (grammar_matcher_new(g, &m, err, sizeof err)) return false;
    bool ok = grammar_matcher_accept_bytes(m, prefix, strlen(prefix));
    size_t d = ok ? grammar_matcher_distance(m) : 0;
    for (size_t k = 0; ok && k < d; k++) {
        grammar_matcher *next = NULL;
        for (int b = 1; b < 256 && !next; b++) {
            grammar_matcher *c = grammar_matcher_clone(m);
            char byte = (char)b;
            if (c && grammar_matcher_accept_bytes(c, &byte, 1) && grammar_matcher_distance(c) == d - k - 1) next = c;
            else grammar_matcher_free(c);
        }
        grammar_matcher_free(m);
        m = next;
        ok = m != NULL;
    }
    ok = ok && grammar_matcher_can_end(m);
    grammar_matcher_free(m);
    return ok;
}

TEST(grammar_distance_values) {
    const char *literal = "root ::= \"abc\"";
    const char *alternation = "root ::= \"hello\" | \"hi\" | [x-z]{3}";
    const char *repetition = "root ::= \"[\" [0-9]* \"]\" \"a\"{3,} [b]+ \"c\"{1,4}";
    /* Recursive rules, defined after their use: each open bracket adds its closer. */
    const char *nested = "root ::= \"(\" inner \")\"\n"
                         "inner ::= \"xy\" | \"(\" inner \")\" | word\n"
                         "word ::= [a-z] [a-z]";
    /* A class costs its smallest code point's length (é: 2 bytes), a partial
     * character its missing bytes. */
    const char *utf8 = "root ::= [\xC3\xA9-\xC3\xAB\xE2\x82\xAC] \"z\"";
    const char *no_exit = "root ::= \"a\" loop | \"b\"\nloop ::= \"c\" loop";
    const struct {
        const char *grammar, *input;
        size_t want;
    } cases[] = {
        {literal, "", 3}, {literal, "a", 2}, {literal, "abc", 0},
        /* the shortest alternative still alive */
        {alternation, "", 2}, {alternation, "h", 1}, {alternation, "he", 3}, {alternation, "x", 2},
        /* * costs nothing, + and {m,} their minimum */
        {repetition, "", 7}, {repetition, "[123", 6}, {repetition, "[]aaaaa", 2}, {repetition, "[]aaabbc", 0},
        {nested, "", 4}, {nested, "((", 4}, {nested, "(((", 5}, {nested, "(((q", 4},
        {utf8, "", 3}, {utf8, "\xE2", 3}, {utf8, "\xC3", 2},
        /* a branch with no way out has no finite distance */
        {no_exit, "", 1}, {no_exit, "a", SIZE_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        grammar *g = compile(cases[i].grammar);
        REQUIRE(g);
        size_t d = distance_after(g, cases[i].input);
        if (d != cases[i].want) {
            fprintf(stderr, "  case %zu ('%s' after '%s'): distance %zu, want %zu\n", i, cases[i].grammar,
                    cases[i].input, d, cases[i].want);
            test_failures++;
        }
        grammar_free(g);
    }
    grammar *g = compile(nested);
    REQUIRE(g);
    CHECK(shortest_walk(g, "((("));
    grammar_free(g);
    g = compile(utf8);
    REQUIRE(g);
    CHECK(shortest_walk(g, ""));
    CHECK(shortest_walk(g, "\xE2"));
    grammar_free(g);

    /* A JSON schema: the shortest document is {"name":"","n":0}. */
    char err[300];
    g = schema_grammar("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"},"
                       "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},\"required\":[\"name\",\"n\"]}",
                       err, sizeof err);
    REQUIRE(g);
    CHECK_INT((int)distance_after(g, ""), (int)strlen("{\"name\":\"\",\"n\":0}"));
    CHECK_INT((int)distance_after(g, "{\"name\": \"Once upon"), (int)strlen("\",\"n\":0}"));
    CHECK_INT((int)distance_after(g, "{\"name\": \"x\", \"n\": 12, \"tags\": [\"a"), 3);
    CHECK(shortest_walk(g, ""));
    CHECK(shortest_walk(g, "{\"name\": \"x\", \"n\": 1"));
    CHECK(shortest_walk(g, "{\"name\": \"x\", \"n\": 12, \"tags\": [\"a\", \"b"));
    grammar_free(g);
    json_schema_cache_clear();
}

/* Over a real vocabulary: grammar_mask_within agrees with checking each
 * token, and always taking an allowed token within distance - 1 ends the
 * document in at most the distance's number of tokens. */
TEST(grammar_distance_token_walk_spm) {
    gguf *gf;
    tokenizer *t = load_vocab("llama-spm", &gf);
    REQUIRE(t);
    grammar_vocab *v = NULL;
    REQUIRE(grammar_vocab_new(t, &v) == 0);
    char err[300];
    grammar *g = schema_grammar("{\"type\":\"object\",\"properties\":{\"story\":{\"type\":\"string\"},"
                                "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
                                "\"required\":[\"story\",\"tags\"]}",
                                err, sizeof err);
    REQUIRE(g);
    int32_t n = tok_n_vocab(t);
    float *logits = smp_malloc((size_t)n * sizeof *logits);
    static const char *const starts[] = {"", "{\"story\": \"Once upon a time", "{\"story\": \"x\", \"tags\": [\"a\", \"b"};
    for (size_t s = 0; s < sizeof starts / sizeof *starts; s++) {
        grammar_matcher *m = NULL;
        REQUIRE(grammar_matcher_new(g, &m, err, sizeof err) == 0);
        REQUIRE(grammar_matcher_accept_bytes(m, starts[s], strlen(starts[s])));
        size_t d = grammar_matcher_distance(m);
        int steps = 0;
        buf text;
        buf_init(&text, 0);
        buf_append(&text, starts[s], strlen(starts[s]));
        while (!grammar_matcher_can_end(m) && steps <= (int)d) {
            size_t reach = grammar_matcher_distance(m) - 1;
            for (int32_t i = 0; i < n; i++) logits[i] = 0;
            int allowed = grammar_mask_within(m, v, logits, reach), count = 0;
            int32_t pick = -1;
            for (int32_t i = 0; i < n; i++) {
                bool a = grammar_matcher_allows_within(m, v, i, reach);
                CHECK(a == (logits[i] == 0));
                count += a;
                if (a && (pick < 0 || rnd(4) == 0)) pick = i; /* some allowed token, not always the first */
            }
            CHECK_INT(allowed, count);
            REQUIRE(pick >= 0);
            size_t len;
            const char *piece = tok_piece(t, pick, false, &len);
            buf_append(&text, piece, len);
            REQUIRE(grammar_matcher_accept_token(m, v, pick));
            steps++;
        }
        fprintf(stderr, "  from distance %zu: %d tokens: %.*s\n", d, steps, (int)text.len, text.data);
        CHECK(grammar_matcher_can_end(m));
        CHECK(steps <= (int)d);
        json_t *doc = json_loadb(text.data, text.len, 0, NULL);
        CHECK(doc != NULL);
        json_decref(doc);
        buf_free(&text);
        grammar_matcher_free(m);
    }
    smp_free(logits);
    grammar_free(g);
    json_schema_cache_clear();
    grammar_vocab_free(v);
    tok_free(t);
    gguf_close(gf);
}

/* ---- constrained generation with stories260K ---- */

typedef struct {
    model *mdl;
    model_ctx *ctx;
    gguf *gf;
    tokenizer *tok;
} stories;

static bool stories_load(stories *st) {
    char err[256];
    model_opts o = {.n_threads = 1};
    memset(st, 0, sizeof *st);
    if (model_load("../shared/models/stories260K.gguf", &o, &st->mdl, err, sizeof err) ||
        model_ctx_new(st->mdl, 256, &st->ctx, err, sizeof err) ||
        gguf_open("../shared/models/stories260K.gguf", &st->gf, err, sizeof err) ||
        tok_load(st->gf, &st->tok, err, sizeof err)) {
        fprintf(stderr, "  stories260K: %s\n", err);
        return false;
    }
    return true;
}

static void stories_free(stories *st) {
    tok_free(st->tok);
    gguf_close(st->gf);
    model_ctx_free(st->ctx);
    model_free(st->mdl);
}

TEST(grammar_gen_run_stories260k) {
    char err[256];
    stories st;
    REQUIRE(stories_load(&st));
    model_ctx *ctx = st.ctx;
    tokenizer *tok = st.tok;
    grammar *g = schema_grammar("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},"
                                "\"age\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":99}},"
                                "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
                                err, sizeof err);
    REQUIRE(g);
    int32_t *prompt = NULL;
    size_t np = 0;
    REQUIRE(tok_encode(tok, "Once upon a time", 16, true, false, &prompt, &np) == 0);
    for (int seed = 1; seed <= 3; seed++) {
        gen_params p = {.sampling = sampler_params_default(), .max_tokens = 200, .grammar = g};
        p.sampling.seed = (uint64_t)seed;
        gen_result r;
        REQUIRE(gen_run(ctx, tok, prompt, (int)np, &p, &r, err, sizeof err) == 0);
        json_t *doc = json_loads(r.text.data ? r.text.data : "", 0, NULL);
        fprintf(stderr, "  seed %d (%s, %d tokens): %s\n", seed, r.done_reason, r.n_gen, r.text.data);
        CHECK_STR(r.done_reason, "stop");
        CHECK(doc && json_is_string(json_object_get(doc, "name")) && json_integer_value(json_object_get(doc, "age")) >= 1);
        json_decref(doc);
        gen_result_free(&r);
    }
    smp_free(prompt);
    grammar_free(g);
    json_schema_cache_clear();
    stories_free(&st);
}

/* A small budget: inside an unbounded string or array the answer would be
 * cut mid-document; the engine heads for the shortest ending in time, so
 * every answer parses, follows its schema and says "stop". */
TEST(grammar_gen_run_budget_closes_the_document) {
    char err[256];
    stories st;
    REQUIRE(stories_load(&st));
    model_ctx *ctx = st.ctx;
    tokenizer *tok = st.tok;
    /* The shortest document is {"name":"","story":""}: 22 bytes, so 24 tokens
     * are enough even one byte per token. */
    const char *schema_text = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                              "\"story\":{\"type\":\"string\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
                              "\"required\":[\"name\",\"story\"]}";
    json_t *schema = json_loads(schema_text, 0, NULL);
    grammar *gs = schema_grammar(schema_text, err, sizeof err), *go = NULL;
    REQUIRE(schema && gs && json_schema_any_object(&go, err, sizeof err) == 0);
    int32_t *prompt = NULL;
    size_t np = 0;
    REQUIRE(tok_encode(tok, "Once upon a time", 16, true, false, &prompt, &np) == 0);
    static const int budgets[] = {24, 40, 60};
    static const float temps[] = {0.0f, 0.8f, 1.5f};
    int runs = 0, bad = 0;
    for (int which = 0; which < 2; which++)
        for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++)
            for (int seed = 1; seed <= 3; seed++) {
                gen_params p = {.sampling = sampler_params_default(), .max_tokens = budgets[b],
                                .grammar = which ? go : gs};
                p.sampling.seed = (uint64_t)seed;
                p.sampling.temperature = temps[seed - 1];
                gen_result r;
                REQUIRE(gen_run(ctx, tok, prompt, (int)np, &p, &r, err, sizeof err) == 0);
                const char *text = r.text.data ? r.text.data : "";
                json_t *doc = json_loads(text, 0, NULL);
                bool ok = doc && json_is_object(doc) && (which || valid(schema, schema, doc)) &&
                          !strcmp(r.done_reason, "stop") && r.n_gen <= budgets[b];
                if (!ok) {
                    fprintf(stderr, "  %s, max_tokens %d, seed %d: %s after %d tokens: %s\n",
                            which ? "json_object" : "schema", budgets[b], seed, r.done_reason, r.n_gen, text);
                    bad++;
                }
                runs++;
                json_decref(doc);
                gen_result_free(&r);
            }
    fprintf(stderr, "  %d runs, %d not a complete document\n", runs, bad);
    CHECK_INT(bad, 0);
    /* A budget below the shortest document from the start: cut, as before. */
    gen_params p = {.sampling = sampler_params_default(), .max_tokens = 3, .grammar = gs};
    gen_result r;
    REQUIRE(gen_run(ctx, tok, prompt, (int)np, &p, &r, err, sizeof err) == 0);
    CHECK_STR(r.done_reason, "length");
    CHECK_INT(r.n_gen, 3);
    gen_result_free(&r);
    smp_free(prompt);
    grammar_free(gs);
    grammar_free(go);
    json_decref(schema);
    json_schema_cache_clear();
    stories_free(&st);
}

/* Random schemas under random sampling settings on a real model: whatever
 * the temperature, truncation, penalty and seed, and with budgets from 40
 * tokens, every answer parses, follows its schema and ends with "stop". */
TEST(grammar_gen_run_random_schemas_and_sampling) {
    char err[256];
    stories st;
    REQUIRE(stories_load(&st));
    grammar_vocab *v = NULL;
    REQUIRE(grammar_vocab_new(st.tok, &v) == 0);
    int32_t *prompt = NULL;
    size_t np = 0;
    REQUIRE(tok_encode(st.tok, "Once upon a time", 16, true, false, &prompt, &np) == 0);
    int runs = 0, bad = 0, tokens = 0, stretched = 0;
    uint64_t t0 = util_now_ns();
    for (int k = 0; k < 100; k++) {
        json_t *s = random_schema(0);
        grammar *g = NULL;
        grammar_matcher *m = NULL;
        if (json_schema_compile(s, &g, err, sizeof err) || grammar_matcher_new(g, &m, err, sizeof err)) {
            fprintf(stderr, "  schema refused: %s\n", err);
            test_failures++;
            grammar_free(g);
            json_decref(s);
            continue;
        }
        gen_params p = {.sampling = sampler_params_default(), .max_tokens = 40 + (int)rnd(81), .grammar = g,
                        .grammar_vocab = v};
        p.sampling.temperature = (float)rnd(201) / 100;
        p.sampling.top_k = (int32_t)rnd(101);
        p.sampling.top_p = 0.1f + (float)rnd(91) / 100;
        p.sampling.min_p = (float)rnd(31) / 100;
        p.sampling.repeat_penalty = 1 + (float)rnd(51) / 100;
        p.sampling.seed = 1 + rnd(1u << 30);
        /* The promise holds for budgets of at least the shortest document's bytes. */
        size_t shortest = grammar_matcher_distance(m);
        grammar_matcher_free(m);
        if ((size_t)p.max_tokens < shortest) p.max_tokens = (int)shortest, stretched++;
        gen_result r;
        REQUIRE(gen_run(st.ctx, st.tok, prompt, (int)np, &p, &r, err, sizeof err) == 0);
        const char *text = r.text.data ? r.text.data : "";
        json_t *doc = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!doc || !valid(s, s, doc) || strcmp(r.done_reason, "stop")) {
            char *txt = json_dumps(s, JSON_COMPACT);
            fprintf(stderr, "  %s after %d of %d tokens (temperature %.2f, top_k %d, top_p %.2f, min_p %.2f, "
                            "repeat_penalty %.2f, seed %llu): %s\n    schema: %s\n",
                    r.done_reason, r.n_gen, p.max_tokens, p.sampling.temperature, p.sampling.top_k,
                    p.sampling.top_p, p.sampling.min_p, p.sampling.repeat_penalty,
                    (unsigned long long)p.sampling.seed, text, txt);
            free(txt);
            bad++;
        }
        runs++;
        tokens += r.n_gen;
        json_decref(doc);
        gen_result_free(&r);
        grammar_free(g);
        json_decref(s);
    }
    fprintf(stderr, "  %d runs (%d budgets raised to the shortest document), %d tokens, %d bad, %.0f ms\n", runs,
            stretched, tokens, bad, (double)(util_now_ns() - t0) / 1e6);
    CHECK_INT(runs, 100);
    CHECK_INT(bad, 0);
    smp_free(prompt);
    grammar_vocab_free(v);
    json_schema_cache_clear();
    stories_free(&st);
}
