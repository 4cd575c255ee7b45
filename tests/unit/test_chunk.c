/* test_chunk.c - the chunker's boundaries, pinned by hand on paragraph,
 * sentence, word-only, hard-split and multilingual text, plus invariants
 * (exact slices, sizes, overlap, progress) over generated text. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "rag/chunk.h"
#include "test.h"

/* Expected chunks as character offsets: {start, end} pairs. */
static int check_chunks(const char *text, long size, long overlap, const size_t (*want)[2], size_t nwant) {
    chunk_span *c;
    size_t n;
    int rc = chunk_text(text, strlen(text), size, overlap, 0, &c, &n);
    int bad = rc != 0 || n != nwant;
    for (size_t i = 0; !bad && i < n; i++)
        bad = c[i].char_start != want[i][0] || c[i].char_end != want[i][1];
    if (bad) {
        fprintf(stderr, "  chunks of \"%s\" (size %ld, overlap %ld), rc %d:\n", text, size, overlap, rc);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "    [%zu,%zu) \"%.*s\"\n", c[i].char_start, c[i].char_end,
                    (int)(c[i].byte_end - c[i].byte_start), text + c[i].byte_start);
        test_failures++;
    }
    smp_free(c);
    return !bad;
}

#define EXPECT(text, size, overlap, ...)                                                             \
    do {                                                                                             \
        static const size_t want_[][2] = {__VA_ARGS__};                                              \
        check_chunks(text, size, overlap, want_, sizeof want_ / sizeof want_[0]);                    \
    } while (0)

TEST(chunk_fits_is_one_chunk) {
    EXPECT("Hello world. Second sentence.\n\nNew paragraph.", 1000, 200, {0, 45});
    /* Surrounding white space is trimmed; offsets still index the input. */
    EXPECT("  \n padded text \n\n ", 100, 0, {4, 15});
    /* Exactly size characters still fits. */
    EXPECT("abcde", 5, 0, {0, 5});
}

TEST(chunk_empty_and_blank) {
    chunk_span *c;
    size_t n;
    CHECK_INT(chunk_text("", 0, 10, 0, 0, &c, &n), 0);
    CHECK_INT(n, 0);
    CHECK(c == NULL);
    CHECK_INT(chunk_text(" \n\t\r\n ", 6, 10, 0, 0, &c, &n), 0);
    CHECK_INT(n, 0);
}

TEST(chunk_bad_sizes) {
    chunk_span *c;
    size_t n;
    CHECK_INT(chunk_text("abc", 3, 0, 0, 0, &c, &n), -SMP_E_VALIDATION);
    CHECK_INT(chunk_text("abc", 3, 10, 10, 0, &c, &n), -SMP_E_VALIDATION);
    CHECK_INT(chunk_text("abc", 3, 10, 11, 0, &c, &n), -SMP_E_VALIDATION);
    CHECK_INT(chunk_text("abc", 3, 10, -1, 0, &c, &n), -SMP_E_VALIDATION);
}

TEST(chunk_paragraphs) {
    /* "Alpha beta." [0,11)  "Gamma delta." [13,25)  "Epsilon." [27,35) */
    const char *t = "Alpha beta.\n\nGamma delta.\n\nEpsilon.";
    EXPECT(t, 26, 0, {0, 25}, {27, 35});
    /* The second paragraph (12 characters) is carried as overlap. */
    EXPECT(t, 26, 12, {0, 25}, {13, 35});
    /* Overlap too small to carry a whole unit: no overlap. */
    EXPECT(t, 26, 11, {0, 25}, {27, 35});
    /* A blank line may hold spaces and CRs. */
    EXPECT("one two\r\n \t\r\nthree four", 10, 0, {0, 7}, {13, 23});
    /* A single newline does not end a paragraph. */
    EXPECT("aaa\nbbb\n\nccc", 8, 0, {0, 7}, {9, 12});
}

TEST(chunk_sentences) {
    /* One paragraph of 30 characters: "One two." [0,8) "Three four five." [9,25) "Six." [26,30) */
    const char *t = "One two. Three four five. Six.";
    EXPECT(t, 20, 0, {0, 8}, {9, 25}, {26, 30});
    EXPECT(t, 25, 0, {0, 25}, {26, 30});
    /* The carried sentence plus the next must fit: "Three four five. Six." is 21. */
    EXPECT(t, 25, 16, {0, 25}, {9, 30});
    /* "?!" and closing quotes stay with their sentence; "3.14" does not split. */
    EXPECT("Is pi 3.14?! \"Yes.\" Good", 13, 0, {0, 12}, {13, 24});
    /* Ellipsis. */
    EXPECT("Wait... What happened", 10, 0, {0, 7}, {8, 12}, {13, 21});
}

TEST(chunk_words_only) {
    /* No paragraph or sentence break: words [0,4) [5,9) [10,14) [15,19). */
    const char *t = "aaaa bbbb cccc dddd";
    EXPECT(t, 9, 0, {0, 9}, {10, 19});
    EXPECT(t, 9, 4, {0, 9}, {5, 14}, {10, 19});
    EXPECT(t, 14, 4, {0, 14}, {10, 19});
    /* Tabs and newlines separate words too. */
    EXPECT("ab\tcd\nef gh", 5, 0, {0, 5}, {6, 11});
}

TEST(chunk_hard_split_long_word) {
    EXPECT("abcdefghij", 4, 0, {0, 4}, {4, 8}, {8, 10});
    EXPECT("abcdefghij", 4, 1, {0, 4}, {3, 7}, {6, 10});
    EXPECT("abcdefghij", 4, 2, {0, 4}, {2, 6}, {4, 8}, {6, 10});
    /* A long word among short ones: the word's characters pack with them. */
    EXPECT("xy abcdefgh z", 5, 0, {0, 5}, {5, 10}, {10, 13});
}

TEST(chunk_multilingual) {
    /* Chinese: 3-byte characters, sentences end at 。 and ？ without spaces. */
    const char *zh = "我爱你。你好吗？很好。";
    chunk_span *c;
    size_t n;
    REQUIRE(chunk_text(zh, strlen(zh), 5, 0, 0, &c, &n) == 0);
    REQUIRE(n == 3);
    CHECK_INT(c[0].char_start, 0); CHECK_INT(c[0].char_end, 4);
    CHECK_INT(c[1].char_start, 4); CHECK_INT(c[1].char_end, 8);
    CHECK_INT(c[2].char_start, 8); CHECK_INT(c[2].char_end, 11);
    CHECK_INT(c[0].byte_end, 12);
    CHECK_INT(c[1].byte_start, 12); CHECK_INT(c[1].byte_end, 24);
    CHECK_INT(c[2].byte_start, 24); CHECK_INT(c[2].byte_end, 33);
    CHECK(!memcmp(zh + c[1].byte_start, "你好吗？", 12));
    smp_free(c);
    /* Accented Latin (2-byte) and German: offsets count characters. */
    EXPECT("Ça va? Très bien. Über alles.", 12, 0, {0, 6}, {7, 17}, {18, 29});
    /* Emoji (4 bytes each) hard split never cuts a character. */
    const char *emo = "😀😁😂🤣😃";
    REQUIRE(chunk_text(emo, strlen(emo), 2, 0, 0, &c, &n) == 0);
    REQUIRE(n == 3);
    CHECK_INT(c[0].byte_end, 8);
    CHECK_INT(c[1].byte_start, 8); CHECK_INT(c[1].byte_end, 16);
    CHECK_INT(c[2].byte_start, 16); CHECK_INT(c[2].byte_end, 20);
    CHECK_INT(c[2].char_start, 4); CHECK_INT(c[2].char_end, 5);
    smp_free(c);
    /* Ideographic space separates words; no-break space is white space. */
    EXPECT("日本　東京\u00a0大阪", 3, 0, {0, 2}, {3, 5}, {6, 8});
}

TEST(chunk_max_chunks) {
    chunk_span *c;
    size_t n;
    CHECK_INT(chunk_text("a b c d e f", 11, 1, 0, 5, &c, &n), -SMP_E_TOO_LARGE);
    CHECK(c == NULL);
    CHECK_INT(chunk_text("a b c d e f", 11, 1, 0, 6, &c, &n), 0);
    CHECK_INT(n, 6);
    smp_free(c);
}

TEST(chunk_invalid_utf8_is_safe) {
    const char bad[] = "ab\xff\xfe cd\xe4\xbd tail\xf0\x9f";
    chunk_span *c;
    size_t n;
    REQUIRE(chunk_text(bad, sizeof bad - 1, 3, 1, 0, &c, &n) == 0);
    REQUIRE(n > 0);
    for (size_t i = 0; i < n; i++) CHECK(c[i].byte_end <= sizeof bad - 1 && c[i].byte_start < c[i].byte_end);
    smp_free(c);
}

/* Invariants over pseudo-random text mixing every unit kind. */
TEST(chunk_invariants_random) {
    static const char *const parts[] = {"word", "longerword", "é", "日本語", "😀", ". ", "? ", " ", " ", " ",
                                        "\n", "\n\n", "。", "abcdefghijklmnopqrstuvwxyz"};
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        char text[4096];
        size_t len = 0;
        int nparts = (int)(rand_r(&seed) % 200);
        for (int i = 0; i < nparts; i++) {
            const char *p = parts[rand_r(&seed) % (sizeof parts / sizeof parts[0])];
            size_t pl = strlen(p);
            if (len + pl >= sizeof text) break;
            memcpy(text + len, p, pl);
            len += pl;
        }
        text[len] = '\0';
        long size = 1 + (long)(rand_r(&seed) % 60);
        long overlap = (long)(rand_r(&seed) % (unsigned)size);
        chunk_span *c;
        size_t n;
        REQUIRE(chunk_text(text, len, size, overlap, 0, &c, &n) == 0);
        /* Character count of the whole text, for bounds. */
        size_t chars = 0;
        for (size_t i = 0; i < len; i++) chars += ((unsigned char)text[i] & 0xC0) != 0x80;
        for (size_t i = 0; i < n; i++) {
            CHECK(c[i].char_end - c[i].char_start <= (size_t)size);
            CHECK(c[i].char_end > c[i].char_start);
            CHECK(c[i].char_end <= chars);
            /* Exact slices on character boundaries, no edge white space. */
            CHECK(((unsigned char)text[c[i].byte_start] & 0xC0) != 0x80);
            CHECK(c[i].byte_end == len || ((unsigned char)text[c[i].byte_end] & 0xC0) != 0x80);
            CHECK(text[c[i].byte_start] != ' ' && text[c[i].byte_start] != '\n');
            CHECK(text[c[i].byte_end - 1] != ' ' && text[c[i].byte_end - 1] != '\n');
            size_t cc = 0;
            for (size_t b = c[i].byte_start; b < c[i].byte_end; b++) cc += ((unsigned char)text[b] & 0xC0) != 0x80;
            CHECK_INT(cc, c[i].char_end - c[i].char_start);
            if (i > 0) {
                /* Chunks advance, and overlap at most `overlap` characters. */
                CHECK(c[i].char_start > c[i - 1].char_start);
                CHECK(c[i].char_end > c[i - 1].char_end);
                if (c[i].char_start < c[i - 1].char_end) CHECK(c[i - 1].char_end - c[i].char_start <= (size_t)overlap);
            }
        }
        /* Every non-space byte lies in some chunk. */
        for (size_t b = 0, i = 0; b < len; b++) {
            if (text[b] == ' ' || text[b] == '\n') continue;
            while (i < n && c[i].byte_end <= b) i++;
            CHECK(i < n && c[i].byte_start <= b);
        }
        smp_free(c);
        if (test_failures) {
            fprintf(stderr, "  round %d size %ld overlap %ld text \"%s\"\n", round, size, overlap, text);
            return;
        }
    }
}
