/* chunk.c - see chunk.h.
 *
 * Two stages run together in one pass:
 *   units   an iterator over the text with a stack of at most four frames
 *           (paragraph > sentence > word > character). A frame scans its
 *           range for the next unit; a unit longer than `size` becomes a new
 *           frame one level finer instead of being returned.
 *   packing a window holds the units of the chunk being built (at most
 *           size + 1 of them, since each has at least one character). When
 *           the next unit would overflow, the window is emitted as a chunk and
 *           shrunk to the carried tail.
 * Positions are kept in bytes and code points at once (cpos), so offsets in
 * both units cost nothing extra. */
#include "rag/chunk.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"

typedef struct {
    size_t b, c; /* byte offset, character offset */
} cpos;

enum { LV_PARAGRAPH, LV_SENTENCE, LV_WORD, LV_CHAR, LV_COUNT };

typedef struct {
    cpos cur, end;
    int level;
} frame;

typedef struct {
    const unsigned char *s;
    size_t len;
    size_t size;
    frame st[LV_COUNT];
    int depth;
} unit_iter;

/* One code point at s[i]; returns its byte length. A malformed sequence
 * (bad lead, truncated, overlong, surrogate, > U+10FFFF) is one byte, U+FFFD. */
static size_t u8_dec(const unsigned char *s, size_t i, size_t len, uint32_t *cp) {
    unsigned c = s[i];
    size_t n;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) n = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, v = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, v = c & 0x07;
    else goto bad;
    if (i + n > len) goto bad;
    for (size_t k = 1; k < n; k++) {
        unsigned d = s[i + k];
        if ((d & 0xC0) != 0x80) goto bad;
        v = (v << 6) | (d & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10FFFF)) || (v >= 0xD800 && v <= 0xDFFF))
        goto bad;
    *cp = v;
    return n;
bad:
    *cp = 0xFFFD;
    return 1;
}

static bool is_space(uint32_t c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Ends a sentence only when white space (or the end) follows: "3.14" and
 * "example.com" stay whole. */
static bool is_terminal(uint32_t c) {
    return c == '.' || c == '!' || c == '?' || c == 0x2026 /* … */ || c == 0x061F /* ؟ */ || c == 0x0964 /* । */;
}

/* CJK full stops end a sentence whatever follows (no spaces in CJK text). */
static bool is_cjk_terminal(uint32_t c) {
    return c == 0x3002 /* 。 */ || c == 0xFF01 /* ！ */ || c == 0xFF1F /* ？ */ || c == 0xFF61 /* ｡ */;
}

/* Closing quotes and brackets that stay with the sentence they end. */
static bool is_closer(uint32_t c) {
    return c == '"' || c == '\'' || c == ')' || c == ']' || c == '}' || c == 0xBB /* » */ || c == 0x2019 ||
           c == 0x201D || c == 0x300D || c == 0x300F || c == 0xFF09;
}

static inline void advance(cpos *p, size_t k) {
    p->b += k;
    p->c++;
}

/* The next unit of frame f: [*us, *ue), trimmed of white space. */
static bool frame_next(unit_iter *it, frame *f, cpos *us, cpos *ue) {
    const unsigned char *s = it->s;
    const size_t end = f->end.b;
    cpos p = f->cur;
    uint32_t cp, cp2;
    size_t k;
    while (p.b < end) {
        k = u8_dec(s, p.b, it->len, &cp);
        if (!is_space(cp)) break;
        advance(&p, k);
    }
    if (p.b >= end) {
        f->cur = f->end;
        return false;
    }
    *us = p;
    cpos last = p; /* end of the last non-space character */
    switch (f->level) {
    case LV_CHAR:
        advance(&p, u8_dec(s, p.b, it->len, &cp));
        last = p;
        break;
    case LV_WORD:
        while (p.b < end) {
            k = u8_dec(s, p.b, it->len, &cp);
            if (is_space(cp)) break;
            advance(&p, k);
        }
        last = p;
        break;
    case LV_SENTENCE:
        while (p.b < end) {
            k = u8_dec(s, p.b, it->len, &cp);
            advance(&p, k);
            if (!is_space(cp)) last = p;
            bool cjk = is_cjk_terminal(cp);
            if (!cjk && !is_terminal(cp)) continue;
            /* "?!", "..." and closing quotes belong to this sentence. */
            while (p.b < end) {
                k = u8_dec(s, p.b, it->len, &cp2);
                if (!is_terminal(cp2) && !is_cjk_terminal(cp2) && !is_closer(cp2)) break;
                cjk |= is_cjk_terminal(cp2);
                advance(&p, k);
                last = p;
            }
            if (cjk || p.b >= end) break;
            u8_dec(s, p.b, it->len, &cp2);
            if (is_space(cp2)) break;
        }
        break;
    default: /* LV_PARAGRAPH: up to a line break followed by a blank line */
        while (p.b < end) {
            k = u8_dec(s, p.b, it->len, &cp);
            if (cp == '\n') {
                cpos q = p;
                advance(&q, k);
                bool blank = false;
                while (q.b < end) {
                    size_t k2 = u8_dec(s, q.b, it->len, &cp2);
                    if (cp2 == '\n') {
                        blank = true;
                        break;
                    }
                    if (!is_space(cp2)) break;
                    advance(&q, k2);
                }
                if (blank) break;
                p = q; /* only white space was skipped: last stays */
                continue;
            }
            advance(&p, k);
            if (!is_space(cp)) last = p;
        }
        break;
    }
    *ue = last;
    f->cur = p;
    return true;
}

/* The next unit of the whole text, descending into finer levels as needed.
 * Returns false at the end. */
static bool iter_next(unit_iter *it, cpos *us, cpos *ue) {
    while (it->depth > 0) {
        frame *f = &it->st[it->depth - 1];
        if (!frame_next(it, f, us, ue)) {
            it->depth--;
            continue;
        }
        if (f->level < LV_CHAR && ue->c - us->c > it->size) {
            frame *g = &it->st[it->depth++];
            g->cur = *us;
            g->end = *ue;
            g->level = f->level + 1;
            continue;
        }
        return true;
    }
    return false;
}

typedef struct {
    cpos s, e;
} unit;

typedef struct {
    chunk_span *v;
    size_t n, cap, max;
} spans;

static int emit(spans *out, cpos s, cpos e) {
    if (out->max && out->n >= out->max) return -SMP_E_TOO_LARGE;
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 16;
        chunk_span *v = smp_realloc(out->v, cap * sizeof *v);
        if (!v) return -SMP_E_NOMEM;
        out->v = v;
        out->cap = cap;
    }
    out->v[out->n++] = (chunk_span){s.b, e.b, s.c, e.c};
    return 0;
}

int chunk_text(const char *text, size_t len, long size, long overlap, size_t max_chunks, chunk_span **out,
               size_t *n) {
    *out = NULL;
    *n = 0;
    if (size < 1 || overlap < 0 || overlap >= size) return -SMP_E_VALIDATION;
    unit_iter it = {.s = (const unsigned char *)text, .len = len, .size = (size_t)size, .depth = 1};
    it.st[0] = (frame){{0, 0}, {len, 0}, LV_PARAGRAPH};
    spans res = {.max = max_chunks};
    unit *w = NULL; /* window: w[head .. head+m) */
    size_t head = 0, m = 0, cap = 0;
    int rc = 0;
    cpos us, ue;
    while (iter_next(&it, &us, &ue)) {
        if (m > 0 && ue.c - w[head].s.c > (size_t)size) {
            unit *u = w + head;
            if ((rc = emit(&res, u[0].s, u[m - 1].e)) != 0) goto done;
            /* Carry the tail that spans at most `overlap`, minus anything
             * that would not leave room for the new unit. */
            size_t k = m;
            while (k > 1 && u[m - 1].e.c - u[k - 1].s.c <= (size_t)overlap) k--;
            while (k < m && ue.c - u[k].s.c > (size_t)size) k++;
            head += k;
            m -= k;
        }
        if (head + m == cap) {
            if (head > 0) { /* slide the window back to the front */
                memmove(w, w + head, m * sizeof *w);
                head = 0;
            }
            if (m == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                unit *g = smp_realloc(w, ncap * sizeof *g);
                if (!g) {
                    rc = -SMP_E_NOMEM;
                    goto done;
                }
                w = g;
                cap = ncap;
            }
        }
        w[head + m++] = (unit){us, ue};
    }
    if (m > 0 && (rc = emit(&res, w[head].s, w[head + m - 1].e)) != 0) goto done;
    *out = res.v;
    *n = res.n;
    res.v = NULL;
done:
    smp_free(res.v);
    smp_free(w);
    return rc;
}
