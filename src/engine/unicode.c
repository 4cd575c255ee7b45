/* unicode.c - UTF-8 coding and Unicode property lookups for the tokenizers.
 *
 * Data: the generated tables in unicode_tables.inc (see scripts/gen_unicode.py
 * for their layout). Categories are a sorted list of range starts searched by
 * bisection, with a direct table for U+0000..U+00FF; lowercase, decomposition
 * and combining-class tables are sorted and bisected too. Hangul syllables are
 * decomposed arithmetically (Unicode 15.0, section 3.12). */
#include "unicode.h"

#include "unicode_tables.inc"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- UTF-8 ---- */

int unicode_utf8_next(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned char b0 = u[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    int need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t c;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
        c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        c = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;       /* no overlongs */
        if (b0 == 0xED) hi = 0x9F;       /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        c = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;       /* no overlongs */
        if (b0 == 0xF4) hi = 0x8F;       /* <= U+10FFFF */
    } else {
        return -1;
    }
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) return 0;
        unsigned char b = u[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -1;
        c = (c << 6) | (b & 0x3F);
    }
    *cp = c;
    return need;
}

size_t unicode_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    int len = unicode_utf8_next(s, n, cp);
    if (len > 0) return (size_t)len;
    *cp = UNICODE_REPLACEMENT;
    return 1;
}

size_t unicode_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

bool unicode_utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int len = unicode_utf8_next(s + i, n - i, &cp);
        if (len <= 0) return false;
        i += (size_t)len;
    }
    return true;
}

/* ---- properties ---- */

/* Index of the last element <= key in a sorted uint32 array, or -1. */
static long bisect_le(const uint32_t *a, size_t n, uint32_t key) {
    long lo = 0, hi = (long)n - 1, found = -1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        if (a[mid] <= key) {
            found = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return found;
}

unicode_cat unicode_category(uint32_t cp) {
    if (cp < 256) return (unicode_cat)ucat_latin1[cp];
    if (cp > 0x10FFFF) return UNICODE_CN;
    long i = bisect_le(ucat_start, ARRAY_LEN(ucat_start), cp);
    return (unicode_cat)ucat_cat[i < 0 ? 0 : i];
}

bool unicode_is_letter(uint32_t cp) { return unicode_category(cp) <= UNICODE_LO; }

bool unicode_is_number(uint32_t cp) {
    unicode_cat c = unicode_category(cp);
    return c >= UNICODE_ND && c <= UNICODE_NO;
}

bool unicode_is_punct(uint32_t cp) {
    unicode_cat c = unicode_category(cp);
    return c >= UNICODE_PC && c <= UNICODE_PO;
}

bool unicode_is_symbol(uint32_t cp) {
    unicode_cat c = unicode_category(cp);
    return c >= UNICODE_SM && c <= UNICODE_SO;
}

bool unicode_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    for (size_t i = 0; i < ARRAY_LEN(uspace); i += 2) {
        if (cp < uspace[i]) return false;
        if (cp <= uspace[i + 1]) return true;
    }
    return false;
}

uint32_t unicode_tolower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    long i = bisect_le(ulower_from, ARRAY_LEN(ulower_from), cp);
    return (i >= 0 && ulower_from[i] == cp) ? ulower_to[i] : cp;
}

int unicode_ccc(uint32_t cp) {
    if (cp < 0x300) return 0;
    long i = bisect_le(uccc_lo, ARRAY_LEN(uccc_lo), cp);
    return (i >= 0 && cp <= uccc_hi[i]) ? uccc_val[i] : 0;
}

/* Hangul syllable constants (Unicode 3.12). */
enum { HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7,
       HANGUL_VCOUNT = 21, HANGUL_TCOUNT = 28, HANGUL_SCOUNT = 11172 };

size_t unicode_nfd(const uint32_t *in, size_t n, uint32_t *out, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = in[i];
        uint32_t tmp[4];
        const uint32_t *seq = &in[i];
        size_t len = 1;
        if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SCOUNT) {
            uint32_t s = cp - HANGUL_S;
            tmp[0] = HANGUL_L + s / (HANGUL_VCOUNT * HANGUL_TCOUNT);
            tmp[1] = HANGUL_V + (s % (HANGUL_VCOUNT * HANGUL_TCOUNT)) / HANGUL_TCOUNT;
            tmp[2] = HANGUL_T + s % HANGUL_TCOUNT;
            len = tmp[2] == HANGUL_T ? 2 : 3;
            seq = tmp;
        } else if (cp >= 0xC0) {
            long j = bisect_le(udecomp_cp, ARRAY_LEN(udecomp_cp), cp);
            if (j >= 0 && udecomp_cp[j] == cp) {
                seq = &udecomp_pool[udecomp_off[j]];
                len = udecomp_len[j];
            }
        }
        for (size_t m = 0; m < len && k < cap; m++) out[k++] = seq[m];
    }
    /* Canonical ordering: a stable insertion sort of each run of non-starters
     * by combining class (runs are short, usually one or two marks). */
    for (size_t i = 1; i < k; i++) {
        int c = unicode_ccc(out[i]);
        if (c == 0) continue;
        uint32_t cp = out[i];
        size_t j = i;
        while (j > 0) {
            int cprev = unicode_ccc(out[j - 1]);
            if (cprev == 0 || cprev <= c) break;
            out[j] = out[j - 1];
            j--;
        }
        out[j] = cp;
    }
    return k;
}
