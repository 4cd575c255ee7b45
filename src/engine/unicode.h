/* unicode.h - the Unicode facts the tokenizers need: UTF-8 decoding and
 * encoding, general categories, White_Space, simple lowercase and canonical
 * decomposition (NFD).
 *
 * The tables are generated from Debian's unicode-data package (Unicode 15.0)
 * by scripts/gen_unicode.py into unicode_tables.inc; nothing here allocates
 * and nothing depends on a library. Every function is pure and thread-safe. */
#ifndef SMP_UNICODE_H
#define SMP_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* General categories (the order matches the generated tables). */
typedef enum {
    UNICODE_LU, UNICODE_LL, UNICODE_LT, UNICODE_LM, UNICODE_LO,
    UNICODE_MN, UNICODE_MC, UNICODE_ME,
    UNICODE_ND, UNICODE_NL, UNICODE_NO,
    UNICODE_PC, UNICODE_PD, UNICODE_PS, UNICODE_PE, UNICODE_PI, UNICODE_PF, UNICODE_PO,
    UNICODE_SM, UNICODE_SC, UNICODE_SK, UNICODE_SO,
    UNICODE_ZS, UNICODE_ZL, UNICODE_ZP,
    UNICODE_CC, UNICODE_CF, UNICODE_CS, UNICODE_CO, UNICODE_CN
} unicode_cat;

#define UNICODE_REPLACEMENT 0xFFFDu

/* Decode one UTF-8 sequence from s[0..n) (n >= 1). Returns its length (1..4)
 * and sets *cp; returns 0 when s holds a valid but incomplete prefix of a
 * sequence (more bytes may follow); returns -1 when the first byte cannot start
 * a valid sequence here (overlong, surrogate, > U+10FFFF, stray continuation):
 * the caller skips one byte, usually reading it as U+FFFD. */
int unicode_utf8_next(const char *s, size_t n, uint32_t *cp);
/* Like unicode_utf8_next but never fails: invalid or truncated input yields
 * U+FFFD and length 1. */
size_t unicode_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Write cp (<= U+10FFFF) as UTF-8 into out[4]; returns the byte count. */
size_t unicode_utf8_encode(uint32_t cp, char *out);
/* True when s[0..n) is entirely complete, valid UTF-8. */
bool unicode_utf8_valid(const char *s, size_t n);

unicode_cat unicode_category(uint32_t cp);
bool unicode_is_letter(uint32_t cp);      /* L* */
bool unicode_is_number(uint32_t cp);      /* N* */
bool unicode_is_punct(uint32_t cp);       /* P* */
bool unicode_is_symbol(uint32_t cp);      /* S* */
bool unicode_is_space(uint32_t cp);       /* White_Space property (regex \s) */

uint32_t unicode_tolower(uint32_t cp);    /* simple mapping; cp itself if none */
/* Canonical combining class (0 for starters). */
int unicode_ccc(uint32_t cp);
/* NFD of in[0..n) into out (capacity cap >= 4*n always suffices): full
 * canonical decomposition, Hangul included, then canonical ordering of
 * combining marks. Returns the number of code points written. */
size_t unicode_nfd(const uint32_t *in, size_t n, uint32_t *out, size_t cap);

#endif
