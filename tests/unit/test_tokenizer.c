/* test_tokenizer.c - tokenizers against the reference ecosystem's test vectors.
 *
 * ../shared/vocab/ggml-vocab-<name>.gguf.inp holds test strings, each followed
 * by the line "__ggml_vocab_test__" (the writer emits text + "\n__ggml_vocab_test__\n",
 * so strings are split on exactly that, and may themselves start or end with
 * whitespace and newlines); .out holds one line of ids per string, encoded
 * without special-token parsing and without BOS/EOS. Every case must match.
 * Also: stories260K prompts (BOS + SentencePiece space prefix), round trips,
 * the streaming detokenizer on split UTF-8, special-token parsing, speed on a
 * 25 KB prompt, allocation failures, random (often invalid) bytes, and the
 * Unicode tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "engine/unicode.h"
#include "test.h"

static tokenizer *load(const char *path, gguf **g) {
    char err[256];
    *g = NULL;
    if (gguf_open(path, g, err, sizeof(err))) {
        fprintf(stderr, "  %s: %s\n", path, err);
        return NULL;
    }
    tokenizer *t = NULL;
    if (tok_load(*g, &t, err, sizeof(err))) {
        fprintf(stderr, "  %s: %s\n", path, err);
        gguf_close(*g);
        *g = NULL;
        return NULL;
    }
    return t;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Run every case of one vocab file; returns the number of failures. */
static int run_vocab_file(const char *name) {
    char path[256], inp_path[300], out_path[300];
    snprintf(path, sizeof(path), "../shared/vocab/ggml-vocab-%s.gguf", name);
    snprintf(inp_path, sizeof(inp_path), "%s.inp", path);
    snprintf(out_path, sizeof(out_path), "%s.out", path);
    size_t ni = 0, no = 0;
    char *inp = test_slurp(inp_path, &ni), *out = test_slurp(out_path, &no);
    gguf *g = NULL;
    tokenizer *t = inp && out ? load(path, &g) : NULL;
    if (!t) {
        fprintf(stderr, "  %s: cannot load test files\n", name);
        smp_free(inp);
        smp_free(out);
        return 1;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const char *ip = inp, *op = out;
    int cases = 0, passed = 0;
    double secs = 0;
    for (;;) {
        const char *hit = strstr(ip, sep);
        const char *nl = strchr(op, '\n');
        if (!hit || !nl) break;
        int32_t want[4096];
        size_t nwant = 0;
        for (const char *q = op; q < nl && nwant < 4096;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            want[nwant++] = (int32_t)v;
            q = end;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = tok_encode(t, ip, (size_t)(hit - ip), false, false, &ids, &n);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        bool ok = rc == 0 && n == nwant && (n == 0 || memcmp(ids, want, n * sizeof(int32_t)) == 0);
        if (ok) {
            passed++;
        } else {
            fprintf(stderr, "  %s case %d (%.40s) differs\n", name, cases, ip);
            print_ids("want", want, nwant);
            print_ids("got ", ids, n);
        }
        smp_free(ids);
        cases++;
        ip = hit + sizeof(sep) - 1;
        op = nl + 1;
    }
    printf("tok: ggml-vocab-%s: %d/%d cases pass (%.2f ms encoding)\n", name, passed, cases, secs * 1e3);
    fflush(stdout); /* the runner's child exits with _exit() */
    tok_free(t);
    gguf_close(g);
    smp_free(inp);
    smp_free(out);
    return (cases >= 40 ? 0 : 1) + (cases - passed);
}

TEST(tok_vocab_llama_spm) { CHECK_INT(run_vocab_file("llama-spm"), 0); }
TEST(tok_vocab_gpt2) { CHECK_INT(run_vocab_file("gpt-2"), 0); }
TEST(tok_vocab_falcon) { CHECK_INT(run_vocab_file("falcon"), 0); }
TEST(tok_vocab_starcoder) { CHECK_INT(run_vocab_file("starcoder"), 0); }
TEST(tok_vocab_deepseek_llm) { CHECK_INT(run_vocab_file("deepseek-llm"), 0); }
TEST(tok_vocab_bert_bge) { CHECK_INT(run_vocab_file("bert-bge"), 0); }

/* stories260K: prompt ids from the reference run (BOS added, space prefix). */
TEST(tok_stories260k_prompts) {
    gguf *g;
    tokenizer *t = load("../shared/models/stories260K.gguf", &g);
    REQUIRE(t);
    CHECK_INT(tok_get_kind(t), TOK_KIND_SPM);
    CHECK_INT(tok_n_vocab(t), 512);
    CHECK_INT(tok_bos(t), 1);
    CHECK_INT(tok_eos(t), 2);
    CHECK(tok_adds_bos(t));
    CHECK(tok_is_eog(t, 2));
    CHECK(!tok_is_eog(t, 1));
    size_t len;
    char *ref = test_slurp("../shared/reference/stories260K-greedy.txt", &len);
    REQUIRE(ref);
    int prompts = 0;
    for (char *p = ref; (p = strstr(p, "prompt: ")) != NULL;) {
        p += 8;
        char *eol = strchr(p, '\n');
        char *ids_line = strstr(p, "prompt_ids: ");
        REQUIRE(eol && ids_line);
        int32_t want[256];
        size_t nwant = 0;
        for (char *q = ids_line + 12; *q && *q != '\n' && nwant < 256;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            want[nwant++] = (int32_t)v;
            q = end;
        }
        int32_t *ids;
        size_t n;
        REQUIRE(tok_encode(t, p, (size_t)(eol - p), true, false, &ids, &n) == 0);
        bool ok = n == nwant && memcmp(ids, want, n * sizeof(int32_t)) == 0;
        if (!ok) {
            fprintf(stderr, "  prompt '%.*s'\n", (int)(eol - p), p);
            print_ids("want", want, nwant);
            print_ids("got ", ids, n);
        }
        CHECK(ok);
        /* decoding the prompt (skipping BOS, dropping the prefix space) gives it back */
        buf b;
        buf_init(&b, 0);
        CHECK(tok_decode(t, ids + 1, n - 1, TOK_DECODE_STRIP_SPACE, &b) == 0);
        CHECK(b.len == (size_t)(eol - p) && memcmp(b.data, p, b.len) == 0);
        buf_free(&b);
        smp_free(ids);
        prompts++;
        p = eol;
    }
    CHECK_INT(prompts, 4);
    /* generated pieces: " there" is one token, "," another */
    size_t pl;
    const char *piece = tok_piece(t, 383, false, &pl);
    CHECK(pl == 6 && memcmp(piece, " there", 6) == 0);
    piece = tok_piece(t, 1, false, &pl);
    CHECK_INT(pl, 0);
    piece = tok_piece(t, 1, true, &pl);
    CHECK(pl == 3 && memcmp(piece, "<s>", 3) == 0);
    smp_free(ref);
    tok_free(t);
    gguf_close(g);
}

static void check_roundtrip(const tokenizer *t, const char *s, unsigned flags) {
    int32_t *ids;
    size_t n;
    REQUIRE(tok_encode(t, s, strlen(s), false, false, &ids, &n) == 0);
    buf b;
    buf_init(&b, 0);
    CHECK(tok_decode(t, ids, n, flags, &b) == 0);
    if (b.len != strlen(s) || memcmp(b.data, s, b.len)) {
        fprintf(stderr, "  round trip: '%s' -> '%s'\n", s, b.data);
        test_failures++;
    }
    buf_free(&b);
    smp_free(ids);
}

static const char *roundtrip_cases[] = {
    "Hello world",
    " leading space and  double  spaces ",
    "emoji: \xF0\x9F\x98\x80\xF0\x9F\xA6\x99 and \xE2\x9C\x85 done",
    "CJK: \xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8" "apple\xE5\xB7\xA5\xE4\xBD\x9C 1314151\xE5\xA4\xA9",
    "tabs\tand\nnewlines\n\n  indented\r\n",
    "Cyrillic \xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE, accents F\xC3\xBChrer, Vi\xE1\xBB\x87t",
    "code: for (int i = 0; i < 10; i++) { x += 333333; }",
};

TEST(tok_roundtrip_spm_bpe) {
    const char *files[] = {"../shared/vocab/ggml-vocab-llama-spm.gguf", "../shared/vocab/ggml-vocab-gpt-2.gguf",
                           "../shared/vocab/ggml-vocab-deepseek-llm.gguf", "../shared/vocab/ggml-vocab-falcon.gguf",
                           "../shared/vocab/ggml-vocab-starcoder.gguf", "../shared/models/stories260K.gguf"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        gguf *g;
        tokenizer *t = load(files[f], &g);
        REQUIRE(t);
        for (size_t i = 0; i < sizeof(roundtrip_cases) / sizeof(roundtrip_cases[0]); i++)
            check_roundtrip(t, roundtrip_cases[i], TOK_DECODE_STRIP_SPACE);
        tok_free(t);
        gguf_close(g);
    }
}

/* Pushes ids one at a time; every output chunk must be valid UTF-8 on its own. */
static void stream_ids(const tokenizer *t, const int32_t *ids, size_t n, buf *all, int *chunks_with_text) {
    tok_stream s;
    tok_stream_init(&s, t, TOK_DECODE_STRIP_SPACE);
    for (size_t i = 0; i < n; i++) {
        buf b;
        buf_init(&b, 0);
        CHECK(tok_stream_push(&s, ids[i], &b) == 0);
        CHECK(unicode_utf8_valid(b.data, b.len));
        if (b.len) (*chunks_with_text)++;
        buf_append(all, b.data, b.len);
        buf_free(&b);
    }
    buf b;
    buf_init(&b, 0);
    CHECK(tok_stream_flush(&s, &b) == 0);
    CHECK(unicode_utf8_valid(b.data, b.len));
    buf_append(all, b.data, b.len);
    buf_free(&b);
}

TEST(tok_stream_utf8) {
    gguf *g;
    tokenizer *t = load("../shared/models/stories260K.gguf", &g);
    REQUIRE(t);
    /* the 512-token vocab has no emoji: it falls back to four <0xXX> byte tokens */
    const char *text = "Hi \xF0\x9F\x98\x80!";
    int32_t *ids;
    size_t n;
    REQUIRE(tok_encode(t, text, strlen(text), false, false, &ids, &n) == 0);
    int bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += tok_get_type(t, ids[i]) == TOK_TYPE_BYTE;
    CHECK_INT(bytes, 4);
    buf all;
    buf_init(&all, 0);
    int chunks = 0;
    stream_ids(t, ids, n, &all, &chunks);
    CHECK(all.len == strlen(text) && memcmp(all.data, text, all.len) == 0);
    smp_free(ids);

    /* a truncated emoji at the end is flushed as U+FFFD; a stray byte too */
    int32_t bad[] = {tok_lookup(t, "<0xF0>", 6), tok_lookup(t, "<0x9F>", 6), tok_lookup(t, "<0x41>", 6),
                     tok_lookup(t, "<0xF0>", 6), tok_lookup(t, "<0x9F>", 6)};
    for (size_t i = 0; i < 5; i++) REQUIRE(bad[i] >= 0);
    buf_reset(&all);
    stream_ids(t, bad, 5, &all, &chunks);
    CHECK_STR(all.data, "\xEF\xBF\xBD" "A" "\xEF\xBF\xBD");
    buf_free(&all);
    tok_free(t);
    gguf_close(g);

    /* byte-level BPE splits a rare emoji over tokens holding partial UTF-8 */
    t = load("../shared/vocab/ggml-vocab-gpt-2.gguf", &g);
    REQUIRE(t);
    const char *llama = " this is \xF0\x9F\xA6\x99.cpp";
    REQUIRE(tok_encode(t, llama, strlen(llama), false, false, &ids, &n) == 0);
    int partial = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        const char *p = tok_piece(t, ids[i], false, &pl);
        partial += !unicode_utf8_valid(p, pl);
    }
    CHECK(partial >= 2);
    buf_init(&all, 0);
    stream_ids(t, ids, n, &all, &chunks);
    CHECK(all.len == strlen(llama) && memcmp(all.data, llama, all.len) == 0);
    buf_free(&all);
    smp_free(ids);
    tok_free(t);
    gguf_close(g);
}

TEST(tok_parse_special) {
    gguf *g;
    tokenizer *t = load("../shared/vocab/ggml-vocab-starcoder.gguf", &g);
    REQUIRE(t);
    const char *text = "<fim_prefix>def f():<fim_suffix>\n<fim_middle><|endoftext|>";
    int32_t *ids;
    size_t n;
    REQUIRE(tok_encode(t, text, strlen(text), false, true, &ids, &n) == 0);
    REQUIRE(n >= 5);
    CHECK_INT(ids[0], 1);     /* <fim_prefix> */
    CHECK_INT(ids[n - 2], 2); /* <fim_middle> */
    CHECK_INT(ids[n - 1], 0); /* <|endoftext|> */
    bool has_suffix = false;
    for (size_t i = 0; i < n; i++) has_suffix |= ids[i] == 3;
    CHECK(has_suffix);
    CHECK(tok_is_eog(t, 0));
    smp_free(ids);
    /* without parse_special the same text is plain text */
    REQUIRE(tok_encode(t, text, strlen(text), false, false, &ids, &n) == 0);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] > 37);
    /* decoding with TOK_DECODE_SPECIAL shows control tokens, without it hides them */
    smp_free(ids);
    int32_t some[] = {1, tok_lookup(t, "def", 3), 0};
    buf b;
    buf_init(&b, 0);
    CHECK(tok_decode(t, some, 3, TOK_DECODE_SPECIAL, &b) == 0);
    CHECK_STR(b.data, "<fim_prefix>def<|endoftext|>");
    buf_reset(&b);
    CHECK(tok_decode(t, some, 3, 0, &b) == 0);
    CHECK_STR(b.data, "def");
    buf_free(&b);
    CHECK_INT(tok_lookup(t, "<fim_middle>", 12), 2);
    CHECK_INT(tok_lookup(t, "<no such token>", 15), -1);
    tok_free(t);
    gguf_close(g);

    /* SPM: "<s>" is a control token; with parse_special it becomes id 1 */
    t = load("../shared/vocab/ggml-vocab-llama-spm.gguf", &g);
    REQUIRE(t);
    REQUIRE(tok_encode(t, "<s>Hi</s>", 9, true, true, &ids, &n) == 0);
    REQUIRE(n >= 4);
    CHECK_INT(ids[0], 1); /* BOS from add_special */
    CHECK_INT(ids[1], 1); /* parsed <s> */
    CHECK_INT(ids[n - 1], 2);
    smp_free(ids);
    REQUIRE(tok_encode(t, "<s>", 3, false, false, &ids, &n) == 0);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] != 1);
    smp_free(ids);
    tok_free(t);
    gguf_close(g);

    /* deepseek: user-defined tokens are recognised even without parse_special */
    t = load("../shared/vocab/ggml-vocab-deepseek-llm.gguf", &g);
    REQUIRE(t);
    CHECK_INT(tok_bos(t), 100000);
    CHECK(tok_adds_bos(t));
    CHECK(tok_is_eog(t, 100001));
    REQUIRE(tok_encode(t, "a[PAD100020]b", 13, true, false, &ids, &n) == 0);
    CHECK(n == 4 && ids[0] == 100000 && ids[2] == 100020);
    smp_free(ids);
    tok_free(t);
    gguf_close(g);
}

TEST(tok_bert_special) {
    gguf *g;
    tokenizer *t = load("../shared/vocab/ggml-vocab-bert-bge.gguf", &g);
    REQUIRE(t);
    CHECK_INT(tok_get_kind(t), TOK_KIND_WPM);
    int32_t *ids;
    size_t n;
    REQUIRE(tok_encode(t, "Hello world", 11, true, false, &ids, &n) == 0);
    CHECK(n == 4 && ids[0] == 101 && ids[1] == 7592 && ids[2] == 2088 && ids[3] == 102);
    smp_free(ids);
    REQUIRE(tok_encode(t, "[CLS] x [MASK]", 14, false, true, &ids, &n) == 0);
    CHECK(n == 3 && ids[0] == 101 && ids[2] == 103);
    smp_free(ids);
    tok_free(t);
    gguf_close(g);
}

/* A long prompt must tokenize in milliseconds, not seconds. */
TEST(tok_speed) {
    const char *unit = "The quick brown fox, jumping over 123 lazy dogs! \xE6\x88\x91\xE6\x83\xB3 caf\xC3\xA9.\n";
    size_t ul = strlen(unit), reps = 400;
    char *big = smp_malloc(ul * reps + 1);
    REQUIRE(big);
    for (size_t i = 0; i < reps; i++) memcpy(big + i * ul, unit, ul);
    big[ul * reps] = '\0';
    const char *files[] = {"../shared/vocab/ggml-vocab-llama-spm.gguf", "../shared/vocab/ggml-vocab-deepseek-llm.gguf",
                           "../shared/vocab/ggml-vocab-bert-bge.gguf"};
    for (size_t f = 0; f < 3; f++) {
        gguf *g;
        tokenizer *t = load(files[f], &g);
        REQUIRE(t);
        struct timespec t0, t1;
        int32_t *ids;
        size_t n;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        REQUIRE(tok_encode(t, big, ul * reps, false, false, &ids, &n) == 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = 1e3 * (double)(t1.tv_sec - t0.tv_sec) + 1e-6 * (double)(t1.tv_nsec - t0.tv_nsec);
        printf("tok: %s: %zu bytes -> %zu tokens in %.1f ms\n", files[f], ul * reps, n, ms);
        fflush(stdout);
        CHECK(n > reps * 10);
        CHECK(ms < 500);
        smp_free(ids);
        tok_free(t);
        gguf_close(g);
    }
    smp_free(big);
}

/* tok_encode_max gives the same ids as tok_encode within its bound, and
 * refuses past it; megabytes are refused from their length alone (SPM and
 * BPE), without the seconds and gigabyte a full encoding takes. */
TEST(tok_encode_max_stops_early) {
    const char *unit = "The quick brown fox, jumping over 123 lazy dogs! \xE6\x88\x91\xE6\x83\xB3 caf\xC3\xA9.\n";
    size_t ul = strlen(unit), big_len = 30u << 20;
    char *big = smp_malloc(big_len + 1);
    REQUIRE(big);
    for (size_t i = 0; i < big_len; i++) big[i] = unit[i % ul];
    big[big_len] = '\0';
    const char *files[] = {"../shared/models/stories260K.gguf", "../shared/vocab/ggml-vocab-llama-spm.gguf",
                           "../shared/vocab/ggml-vocab-gpt-2.gguf", "../shared/vocab/ggml-vocab-bert-bge.gguf"};
    for (size_t f = 0; f < 4; f++) {
        gguf *g;
        tokenizer *t = load(files[f], &g);
        REQUIRE(t);
        size_t base = smp_alloc_live_bytes();
        int32_t *all, *ids;
        size_t n, k;
        REQUIRE(tok_encode(t, big, 40 * ul, true, false, &all, &n) == 0);
        CHECK_INT(tok_encode_max(t, big, 40 * ul, true, false, n, &ids, &k), 0);
        CHECK(k == n && ids && memcmp(ids, all, n * sizeof *ids) == 0);
        smp_free(ids);
        CHECK_INT(tok_encode_max(t, big, 40 * ul, true, false, n - 1, &ids, &k), -SMP_E_TOO_LARGE);
        CHECK(ids == NULL && k > n - 1);
        smp_free(all);
        if (tok_get_kind(t) != TOK_KIND_WPM) { /* WordPiece drops characters: no bound from the length */
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            CHECK_INT(tok_encode_max(t, big, big_len, true, false, 4096, &ids, &k), -SMP_E_TOO_LARGE);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double ms = 1e3 * (double)(t1.tv_sec - t0.tv_sec) + 1e-6 * (double)(t1.tv_nsec - t0.tv_nsec);
            CHECK(ids == NULL && k > 4096);
            CHECK(ms < 5);
            printf("tok: %s: 30 MiB refused for max 4096 in %.3f ms (at least %zu tokens)\n", files[f], ms, k);
            fflush(stdout);
        }
        CHECK_INT(smp_alloc_live_bytes(), base);
        tok_free(t);
        gguf_close(g);
    }
    smp_free(big);
}

TEST(tok_unicode_tables) {
    CHECK_INT(unicode_category('A'), UNICODE_LU);
    CHECK_INT(unicode_category(0x4E00), UNICODE_LO);
    CHECK_INT(unicode_category(0x0301), UNICODE_MN);
    CHECK_INT(unicode_category(0x1F600), UNICODE_SO);
    CHECK_INT(unicode_category(0xE000), UNICODE_CO);
    CHECK_INT(unicode_category(0x0378), UNICODE_CN);
    CHECK(unicode_is_space(0x3000) && unicode_is_space(0x85) && !unicode_is_space(0x200B));
    CHECK_INT(unicode_tolower(0x0400), 0x0450);
    uint32_t in[] = {0x00FC, 0xAC01, 0x1E69}, out[16];
    size_t n = unicode_nfd(in, 3, out, 16);
    uint32_t want[] = {0x75, 0x308, 0x1100, 0x1161, 0x11A8, 0x73, 0x323, 0x307};
    CHECK(n == 8 && memcmp(out, want, sizeof(want)) == 0);
    uint32_t cp;
    CHECK_INT(unicode_utf8_next("\xF0\x9F", 2, &cp), 0);
    CHECK_INT(unicode_utf8_next("\xC0\x80", 2, &cp), -1);
    CHECK_INT(unicode_utf8_next("\xED\xA0\x80", 3, &cp), -1);
    CHECK_INT(unicode_utf8_next("\xF0\x9F\x98\x80", 4, &cp), 4);
    CHECK_INT(cp, 0x1F600);
}

/* Every allocation failure is reported as an error, never a crash or a leak. */
TEST(tok_alloc_failures) {
    const char *files[] = {"../shared/models/stories260K.gguf", "../shared/vocab/ggml-vocab-starcoder.gguf",
                           "../shared/vocab/ggml-vocab-bert-bge.gguf"};
    const char *text = "Hello <fim_prefix> w\xC3\xB6rld, \xF0\x9F\x98\x80 [MASK] 12345!\n";
    for (size_t f = 0; f < 3; f++) {
        char err[256];
        gguf *g;
        REQUIRE(gguf_open(files[f], &g, err, sizeof(err)) == 0);
        size_t base = smp_alloc_live_bytes();
        int successes = 0;
        for (long k = 0; k < 40 && successes < 3; k++) {
            smp_alloc_fail_after(k);
            tokenizer *t = NULL;
            int rc = tok_load(g, &t, err, sizeof(err));
            if (rc == 0) {
                int32_t *ids = NULL;
                size_t n = 0;
                smp_alloc_fail_after(k / 2);
                rc = tok_encode(t, text, strlen(text), true, true, &ids, &n);
                if (rc == 0) {
                    successes++;
                    smp_free(ids);
                } else {
                    CHECK(rc == -SMP_E_NOMEM && ids == NULL);
                }
                tok_free(t);
            } else {
                CHECK(rc == -SMP_E_NOMEM && t == NULL);
            }
            smp_alloc_fail_after(-1);
            CHECK_INT(smp_alloc_live_bytes(), base);
        }
        CHECK(successes > 0);
        gguf_close(g);
    }
}

/* Random bytes (mostly invalid UTF-8) never crash; decoding yields valid UTF-8
 * and, for valid input, the original text. */
TEST(tok_random_bytes) {
    const char *files[] = {"../shared/vocab/ggml-vocab-llama-spm.gguf", "../shared/vocab/ggml-vocab-gpt-2.gguf",
                           "../shared/vocab/ggml-vocab-falcon.gguf", "../shared/vocab/ggml-vocab-starcoder.gguf",
                           "../shared/vocab/ggml-vocab-deepseek-llm.gguf", "../shared/vocab/ggml-vocab-bert-bge.gguf"};
    static const char *atoms[] = {"a", "Z", "9", " ", "  ", "\n", "\r\n", "\t", "'s", "'LL", "\xC3\xA9", "\xE6\x88\x91",
                                  "\xF0\x9F\x98\x80", "\xE2\x80\x8D", "\xEF\xB8\x8F", "\xCC\x81", "\xE3\x80\x80",
                                  "\x80", "\xF0\x9F", "\xFF", "\xC3", "<s>", "[PAD100020]", "<|endoftext|>", "!",
                                  "\xC2\xA0", "\xD9\xA3", "123", "\x00"};
    size_t natoms = sizeof(atoms) / sizeof(atoms[0]);
    unsigned seed = 12345;
    size_t base = smp_alloc_live_bytes();
    for (size_t f = 0; f < 6; f++) {
        gguf *g;
        tokenizer *t = load(files[f], &g);
        REQUIRE(t);
        for (int iter = 0; iter < 300; iter++) {
            char text[256];
            size_t len = 0;
            int parts = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 24;
            for (int p = 0; p < parts; p++) {
                seed = seed * 1103515245u + 12345u;
                const char *a = atoms[(seed >> 16) % natoms];
                size_t al = a[0] ? strlen(a) : 1; /* the "\x00" atom is one NUL byte */
                memcpy(text + len, a, al);
                len += al;
            }
            int32_t *ids;
            size_t n;
            REQUIRE(tok_encode(t, text, len, iter & 1, iter & 2, &ids, &n) == 0);
            for (size_t i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < tok_n_vocab(t));
            CHECK(tok_min_tokens(t, len) <= n); /* a floor, never above the real count */
            buf b;
            buf_init(&b, 0);
            CHECK(tok_decode(t, ids, n, 0, &b) == 0);
            CHECK(unicode_utf8_valid(b.data, b.len));
            /* byte-level BPE loses nothing: valid input without specials comes back */
            if (tok_get_kind(t) == TOK_KIND_BPE && !(iter & 3) && unicode_utf8_valid(text, len) &&
                !memchr(text, 0x1C, len))
                CHECK(b.len == len && memcmp(b.data, text, len) == 0);
            buf_free(&b);
            smp_free(ids);
        }
        tok_free(t);
        gguf_close(g);
    }
    CHECK_INT(smp_alloc_live_bytes(), base);
}

/* The floor used to refuse over-long prompts before encoding them holds on
 * long runs of each kind of text, and means something (it is not 0) for SPM
 * and BPE. */
TEST(tok_min_tokens_is_a_floor) {
    const char *files[] = {"../shared/vocab/ggml-vocab-llama-spm.gguf", "../shared/vocab/ggml-vocab-gpt-2.gguf",
                           "../shared/vocab/ggml-vocab-deepseek-llm.gguf", "../shared/vocab/ggml-vocab-bert-bge.gguf"};
    static const char *runs[] = {"a", " ", "word ", "\n\n", "\xE6\x88\x91", "<|endoftext|>", "\xFF", "    x"};
    for (size_t f = 0; f < 4; f++) {
        gguf *g;
        tokenizer *t = load(files[f], &g);
        REQUIRE(t);
        for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
            buf text;
            buf_init(&text, 0);
            for (int i = 0; i < 3000; i++) buf_puts(&text, runs[k]);
            int32_t *ids;
            size_t n;
            REQUIRE(tok_encode(t, text.data, text.len, true, true, &ids, &n) == 0);
            size_t floor = tok_min_tokens(t, text.len);
            CHECK(floor <= n);
            if (tok_get_kind(t) != TOK_KIND_WPM) CHECK(floor > 0);
            smp_free(ids);
            buf_free(&text);
        }
        tok_free(t);
        gguf_close(g);
    }
}
