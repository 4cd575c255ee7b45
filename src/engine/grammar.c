/* grammar.c - see grammar.h: the GBNF compiler, the stack matcher and the
 * token mask.
 *
 * Data structures:
 *   grammar.elems        flat array of {type, val}; rule r's alternatives are
 *                        listed at alt_pos[alt_off[r] .. alt_off[r+1])
 *   grammar.classes      {off, n} into grammar.ranges: sorted, merged,
 *                        inclusive [lo, hi] code-point pairs
 *   matcher.nodes        stack nodes {pos, parent}; index 0 is "no node", so
 *                        a stack top of 0 is the empty (finished) stack
 *   grammar_vocab        token ids sorted by piece bytes, with lcp[k] = the
 *                        bytes token k shares with token k-1
 *   grammar.rest         per element: the fewest bytes from it to the end of
 *                        its alternative, so a stack's distance to the end
 *                        is the sum of rest[] over its nodes (a few tens of
 *                        nanoseconds for JSON; see grammar_matcher_distance)
 *
 * Where the time goes: grammar_mask. Each byte of each distinct token prefix
 * that survives costs one step (per live stack: a class lookup and one to
 * four node appends); rejected prefixes cost one step and a skip over an int
 * array. In JSON structure (after '{' or ',') almost every prefix dies at its
 * first byte, so a 32k vocabulary masks in tens of microseconds; inside a
 * free string most of the vocabulary survives and the walk visits every
 * distinct prefix (a few hundred thousand steps, milliseconds). That is why
 * gen_run first samples unconstrained and checks the one token
 * (grammar_matcher_allows, a few steps), masking only when it is refused. */
#define _GNU_SOURCE /* qsort_r */
#include "grammar.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/unicode.h"

enum { G_END, G_ALT, G_REF, G_CHARS };

typedef struct {
    uint32_t type;
    uint32_t val; /* REF: rule; CHARS: class */
} gel;

typedef struct {
    uint32_t off, n;
} gclass;

struct grammar {
    atomic_int refs;
    gel *elems;
    size_t n_elems;
    uint32_t *alt_off, *alt_pos; /* per rule: where its alternatives start */
    int n_rules, root;
    char **names;
    gclass *classes;
    uint32_t *ranges;
    int n_classes;
    uint32_t *rest; /* per element: fewest bytes from it to the end of its alternative (G_INF: none) */
};

#define G_INF UINT32_MAX

/* ------------------------------------------------------------------------ */
/* Parser                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    char *name;
    gel *el;
    size_t n, cap;
    bool defined;
    int n_helpers;        /* helper rules made for its repetitions and groups */
    const char *first_use; /* for "undefined rule" errors */
} prule;

typedef struct {
    const char *src, *p, *end;
    prule *rules;
    int n_rules, cap_rules;
    uint32_t *ranges;
    size_t n_ranges, cap_ranges;
    gclass *classes;
    int n_classes, cap_classes;
    int ascii_class[128]; /* single-character classes, made once; -1: not yet */
    size_t total;        /* elements so far */
    char *err;
    size_t errlen;
    int rc;
} parser;

static void perr(parser *ps, const char *at, const char *fmt, const char *arg) {
    if (ps->rc) return;
    ps->rc = -SMP_E_VALIDATION;
    int line = 1, col = 1;
    for (const char *q = ps->src; q < at && q < ps->end; q++) {
        if (*q == '\n') line++, col = 1;
        else if (((unsigned char)*q & 0xC0) != 0x80) col++;
    }
    char msg[200];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    snprintf(ps->err, ps->errlen, "line %d, column %d: %s", line, col, msg);
}

static void nomem(parser *ps) {
    if (ps->rc) return;
    ps->rc = -SMP_E_NOMEM;
    snprintf(ps->err, ps->errlen, "out of memory compiling the grammar");
}

static bool grow(parser *ps, void **arr, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *p = smp_realloc(*arr, nc * size);
    if (!p) {
        nomem(ps);
        return false;
    }
    *arr = p;
    *cap = nc;
    return true;
}

static void push(parser *ps, int r, uint32_t type, uint32_t val) {
    if (ps->rc) return;
    if (++ps->total > GRAMMAR_MAX_ELEMS) {
        perr(ps, ps->p, "the grammar is too large (over %s elements once repetitions are expanded)", "1048576");
        return;
    }
    prule *ru = &ps->rules[r];
    if (!grow(ps, (void **)&ru->el, &ru->cap, ru->n + 1, sizeof(gel))) return;
    ru->el[ru->n++] = (gel){type, val};
}

static int new_rule(parser *ps, const char *name, size_t len) {
    if (ps->rc) return -1;
    size_t cap = (size_t)ps->cap_rules;
    if (!grow(ps, (void **)&ps->rules, &cap, (size_t)ps->n_rules + 1, sizeof(prule))) return -1;
    ps->cap_rules = (int)cap;
    char *nm = smp_strndup(name, len);
    if (!nm) {
        nomem(ps);
        return -1;
    }
    ps->rules[ps->n_rules] = (prule){.name = nm};
    return ps->n_rules++;
}

static int helper_rule(parser *ps, int parent) {
    char nm[160];
    snprintf(nm, sizeof nm, "%.120s-%d", ps->rules[parent].name, ++ps->rules[parent].n_helpers);
    int h = new_rule(ps, nm, strlen(nm));
    if (h >= 0) ps->rules[h].defined = true;
    return h;
}

static int find_rule(parser *ps, const char *name, size_t len) {
    for (int i = 0; i < ps->n_rules; i++)
        if (strlen(ps->rules[i].name) == len && !memcmp(ps->rules[i].name, name, len)) return i;
    return -1;
}

static int cmp_range(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Add a class from n [lo, hi] pairs (sorted, merged, complemented if negate). */
static int add_class(parser *ps, uint32_t *pairs, size_t n, bool negate) {
    if (ps->rc) return -1;
    qsort(pairs, n, 2 * sizeof(uint32_t), cmp_range);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && pairs[2 * i] <= pairs[2 * (m - 1) + 1] + 1) {
            if (pairs[2 * i + 1] > pairs[2 * (m - 1) + 1]) pairs[2 * (m - 1) + 1] = pairs[2 * i + 1];
        } else {
            pairs[2 * m] = pairs[2 * i];
            pairs[2 * m + 1] = pairs[2 * i + 1];
            m++;
        }
    }
    size_t need = ps->n_ranges + 2 * (m + 1);
    if (!grow(ps, (void **)&ps->ranges, &ps->cap_ranges, need, sizeof(uint32_t))) return -1;
    size_t cc = (size_t)ps->cap_classes;
    if (!grow(ps, (void **)&ps->classes, &cc, (size_t)ps->n_classes + 1, sizeof(gclass))) return -1;
    ps->cap_classes = (int)cc;
    uint32_t *o = ps->ranges + ps->n_ranges, k = 0;
    if (!negate) {
        memcpy(o, pairs, 2 * m * sizeof(uint32_t));
        k = (uint32_t)m;
    } else {
        uint32_t next = 0;
        for (size_t i = 0; i < m; i++) {
            if (pairs[2 * i] > next) o[2 * k] = next, o[2 * k + 1] = pairs[2 * i] - 1, k++;
            next = pairs[2 * i + 1] + 1;
        }
        if (next <= 0x10FFFF) o[2 * k] = next, o[2 * k + 1] = 0x10FFFF, k++;
    }
    ps->classes[ps->n_classes] = (gclass){(uint32_t)ps->n_ranges, k};
    ps->n_ranges += 2 * k;
    return ps->n_classes++;
}

static int char_class(parser *ps, uint32_t cp) {
    if (cp < 128 && ps->ascii_class[cp] >= 0) return ps->ascii_class[cp];
    uint32_t pair[2] = {cp, cp};
    int c = add_class(ps, pair, 1, false);
    if (cp < 128) ps->ascii_class[cp] = c;
    return c;
}

static void skip_space(parser *ps) {
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') ps->p++;
        else if (c == '#')
            while (ps->p < ps->end && *ps->p != '\n') ps->p++;
        else break;
    }
}

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static size_t name_len(const char *p, const char *end) {
    size_t n = 0;
    while (p + n < end && is_name_char(p[n])) n++;
    return n;
}

/* Does "name ::=" start at p? (the end of the current rule) */
static bool at_rule_def(parser *ps, const char *p) {
    size_t n = name_len(p, ps->end);
    if (!n) return false;
    p += n;
    while (p < ps->end && (*p == ' ' || *p == '\t')) p++;
    return ps->end - p >= 3 && !memcmp(p, "::=", 3);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One code point of a literal or class, escapes resolved. */
static bool read_char(parser *ps, uint32_t *cp) {
    const char *at = ps->p;
    if (ps->p >= ps->end) {
        perr(ps, at, "unexpected end of the grammar inside a literal or class%s", NULL);
        return false;
    }
    if (*ps->p != '\\') {
        int r = unicode_utf8_next(ps->p, (size_t)(ps->end - ps->p), cp);
        if (r <= 0) {
            perr(ps, at, "invalid UTF-8%s", NULL);
            return false;
        }
        ps->p += r;
        return true;
    }
    if (ps->end - ps->p < 2) {
        perr(ps, at, "unfinished escape%s", NULL);
        return false;
    }
    char e = ps->p[1];
    ps->p += 2;
    int digits = 0;
    switch (e) {
    case 'n': *cp = '\n'; return true;
    case 'r': *cp = '\r'; return true;
    case 't': *cp = '\t'; return true;
    case '0': *cp = 0; return true;
    case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/': *cp = (uint32_t)e; return true;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default: {
        char s[2] = {e, 0};
        perr(ps, at, "unknown escape '\\%s'", s);
        return false;
    }
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = ps->p < ps->end ? hexval(*ps->p) : -1;
        if (h < 0) {
            perr(ps, ps->p, "expected a hex digit in the escape%s", NULL);
            return false;
        }
        v = v * 16 + (uint32_t)h;
        ps->p++;
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        perr(ps, at, "the escape is not a Unicode scalar value%s", NULL);
        return false;
    }
    *cp = v;
    return true;
}

static void parse_alternates(parser *ps, int r, bool nested);

static bool read_uint(parser *ps, unsigned long *v) {
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') {
        perr(ps, ps->p, "expected a number in the repetition%s", NULL);
        return false;
    }
    *v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        *v = *v * 10 + (unsigned long)(*ps->p++ - '0');
        if (*v > GRAMMAR_MAX_REPEAT) {
            perr(ps, ps->p, "repetition count over %s", "10000");
            return false;
        }
    }
    return true;
}

/* Replace the item el[start..n) of rule r by x repeated min..max times
 * (max < 0: unbounded). */
static void repeat(parser *ps, int r, size_t start, long min, long max) {
    if (ps->rc) return;
    gel x;
    if (ps->rules[r].n - start == 1) {
        x = ps->rules[r].el[start];
    } else { /* several elements (a literal): wrap them in a rule */
        int h = helper_rule(ps, r);
        if (h < 0) return;
        for (size_t i = start; i < ps->rules[r].n; i++) push(ps, h, ps->rules[r].el[i].type, ps->rules[r].el[i].val);
        push(ps, h, G_END, 0);
        x = (gel){G_REF, (uint32_t)h};
    }
    ps->total -= ps->rules[r].n - start;
    ps->rules[r].n = start;
    for (long i = 0; i < min; i++) push(ps, r, x.type, x.val);
    if (max < 0) { /* R ::= x R | (empty) */
        int h = helper_rule(ps, r);
        if (h < 0) return;
        push(ps, h, x.type, x.val);
        push(ps, h, G_REF, (uint32_t)h);
        push(ps, h, G_ALT, 0);
        push(ps, h, G_END, 0);
        push(ps, r, G_REF, (uint32_t)h);
    } else if (max > min) { /* O_k ::= x O_(k-1) | (empty), O_1 ::= x | (empty) */
        int prev = -1;
        for (long k = 1; k <= max - min && !ps->rc; k++) {
            int h = helper_rule(ps, r);
            if (h < 0) return;
            push(ps, h, x.type, x.val);
            if (prev >= 0) push(ps, h, G_REF, (uint32_t)prev);
            push(ps, h, G_ALT, 0);
            push(ps, h, G_END, 0);
            prev = h;
        }
        push(ps, r, G_REF, (uint32_t)prev);
    }
}

static void parse_sequence(parser *ps, int r, bool nested) {
    for (;;) {
        skip_space(ps);
        if (ps->rc || ps->p >= ps->end) return;
        char c = *ps->p;
        if (c == '|' || c == ')') return;
        if (!nested && at_rule_def(ps, ps->p)) return;
        size_t start = ps->rules[r].n;
        const char *at = ps->p;
        if (c == '"') {
            ps->p++;
            while (!ps->rc && (ps->p >= ps->end || *ps->p != '"')) {
                uint32_t cp;
                if (!read_char(ps, &cp)) return;
                push(ps, r, G_CHARS, (uint32_t)char_class(ps, cp));
            }
            ps->p++;
            if (ps->rules[r].n == start) { /* "" matches the empty string */
                skip_space(ps);
                if (ps->p < ps->end && strchr("*+?{", *ps->p)) {
                    perr(ps, ps->p, "nothing to repeat%s", NULL);
                    return;
                }
                continue;
            }
        } else if (c == '[') {
            ps->p++;
            bool negate = ps->p < ps->end && *ps->p == '^';
            if (negate) ps->p++;
            uint32_t *pairs = NULL;
            size_t n = 0, cap = 0;
            while (!ps->rc && (ps->p >= ps->end || *ps->p != ']')) {
                uint32_t lo, hi;
                if (!read_char(ps, &lo)) break;
                hi = lo;
                if (ps->end - ps->p >= 2 && ps->p[0] == '-' && ps->p[1] != ']') {
                    ps->p++;
                    if (!read_char(ps, &hi)) break;
                    if (hi < lo) perr(ps, at, "a range in the character class runs backwards%s", NULL);
                }
                if (!grow(ps, (void **)&pairs, &cap, 2 * n + 2, sizeof(uint32_t))) break;
                pairs[2 * n] = lo, pairs[2 * n + 1] = hi, n++;
            }
            if (!ps->rc && n == 0 && !negate) perr(ps, at, "empty character class%s", NULL);
            if (!ps->rc) {
                ps->p++;
                int cl = add_class(ps, pairs, n, negate);
                if (cl >= 0) push(ps, r, G_CHARS, (uint32_t)cl);
            }
            smp_free(pairs);
        } else if (c == '.') {
            ps->p++;
            uint32_t all[2] = {0, 0x10FFFF};
            int cl = add_class(ps, all, 1, false);
            if (cl >= 0) push(ps, r, G_CHARS, (uint32_t)cl);
        } else if (c == '(') {
            ps->p++;
            int h = helper_rule(ps, r);
            if (h < 0) return;
            parse_alternates(ps, h, true);
            if (ps->rc) return;
            skip_space(ps);
            if (ps->p >= ps->end || *ps->p != ')') {
                perr(ps, ps->p, "expected ')' to close the group opened at %s", "'('");
                return;
            }
            ps->p++;
            push(ps, r, G_REF, (uint32_t)h);
        } else if (is_name_char(c)) {
            size_t n = name_len(ps->p, ps->end);
            int ref = find_rule(ps, ps->p, n);
            if (ref < 0 && (ref = new_rule(ps, ps->p, n)) >= 0) ps->rules[ref].first_use = ps->p;
            ps->p += n;
            if (ref >= 0) push(ps, r, G_REF, (uint32_t)ref);
        } else {
            char s[2] = {c, 0};
            perr(ps, at, "expected a literal, class, '.', '(' or rule name, found '%s'", s);
            return;
        }
        if (ps->rc) return;
        /* Postfix repetition. */
        skip_space(ps);
        if (ps->p >= ps->end) return;
        c = *ps->p;
        if (c == '*') ps->p++, repeat(ps, r, start, 0, -1);
        else if (c == '+') ps->p++, repeat(ps, r, start, 1, -1);
        else if (c == '?') ps->p++, repeat(ps, r, start, 0, 1);
        else if (c == '{') {
            ps->p++;
            skip_space(ps);
            unsigned long lo, hi;
            if (!read_uint(ps, &lo)) return;
            skip_space(ps);
            long max = (long)lo;
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                skip_space(ps);
                if (ps->p < ps->end && *ps->p == '}') max = -1;
                else if (!read_uint(ps, &hi)) return;
                else max = (long)hi;
                skip_space(ps);
            }
            if (ps->p >= ps->end || *ps->p != '}') {
                perr(ps, ps->p, "expected '}' to close the repetition%s", NULL);
                return;
            }
            ps->p++;
            if (max >= 0 && max < (long)lo) {
                perr(ps, at, "repetition {m,n} with n < m%s", NULL);
                return;
            }
            repeat(ps, r, start, (long)lo, max);
        }
        skip_space(ps);
        if (ps->p < ps->end && strchr("*+?", *ps->p)) {
            perr(ps, ps->p, "a repetition cannot be repeated directly; use a group%s", NULL);
            return;
        }
    }
}

static void parse_alternates(parser *ps, int r, bool nested) {
    for (;;) {
        parse_sequence(ps, r, nested);
        if (ps->rc) return;
        if (ps->p < ps->end && *ps->p == '|') {
            ps->p++;
            push(ps, r, G_ALT, 0);
            continue;
        }
        push(ps, r, G_END, 0);
        return;
    }
}

static void parse_grammar(parser *ps) {
    for (;;) {
        skip_space(ps);
        if (ps->rc || ps->p >= ps->end) return;
        size_t n = name_len(ps->p, ps->end);
        if (!n) {
            char s[2] = {*ps->p, 0};
            perr(ps, ps->p, "expected a rule name, found '%s'", s);
            return;
        }
        const char *name = ps->p;
        ps->p += n;
        while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t')) ps->p++;
        if (ps->end - ps->p < 3 || memcmp(ps->p, "::=", 3)) {
            perr(ps, ps->p, "expected '::=' after the rule name%s", NULL);
            return;
        }
        ps->p += 3;
        int r = find_rule(ps, name, n);
        if (r >= 0 && ps->rules[r].defined) {
            char nm[80];
            snprintf(nm, sizeof nm, "%.*s", (int)(n < 60 ? n : 60), name);
            perr(ps, name, "rule '%s' is defined twice", nm);
            return;
        }
        if (r < 0 && (r = new_rule(ps, name, n)) < 0) return;
        ps->rules[r].defined = true;
        parse_alternates(ps, r, false);
        if (!ps->rc && ps->p < ps->end && *ps->p == ')') perr(ps, ps->p, "unexpected ')'%s", NULL);
    }
}

/* ------------------------------------------------------------------------ */
/* Compile: flatten, check                                                  */
/* ------------------------------------------------------------------------ */

static bool is_end_type(uint32_t type) { return type == G_ALT || type == G_END; }

static bool rule_nullable_alt(const grammar *g, const bool *nullable, uint32_t pos) {
    for (; g->elems[pos].type != G_ALT && g->elems[pos].type != G_END; pos++)
        if (g->elems[pos].type == G_CHARS || !nullable[g->elems[pos].val]) return false;
    return true;
}

/* Left recursion: a rule reaching itself through leading nullable elements. */
static int find_left_recursion(const grammar *g) {
    int n = g->n_rules, found = -1;
    bool *nullable = smp_calloc((size_t)n + 1, sizeof(bool));
    int *state = smp_calloc((size_t)n + 1, sizeof(int)); /* 0 new, 1 on path, 2 done */
    int *stack = smp_malloc(((size_t)n + 1) * 2 * sizeof(int));
    if (!nullable || !state || !stack) {
        found = -2;
        goto done;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (int r = 0; r < n; r++) {
            if (nullable[r]) continue;
            for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1]; a++)
                if (rule_nullable_alt(g, nullable, g->alt_pos[a])) nullable[r] = changed = true;
        }
    }
    /* Iterative DFS over "can start with" edges; stack holds (rule, next alt/elem cursor). */
    for (int s = 0; s < n && found < 0; s++) {
        if (state[s]) continue;
        int sp = 0;
        stack[0] = s, stack[1] = 0;
        state[s] = 1;
        while (sp >= 0 && found < 0) {
            int r = stack[2 * sp];
            /* Enumerate edges lazily: cursor counts edges already taken. */
            int cursor = stack[2 * sp + 1]++, k = 0, next = -1;
            for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1] && next < 0; a++)
                for (uint32_t pos = g->alt_pos[a]; g->elems[pos].type == G_REF; pos++) {
                    if (k++ == cursor) {
                        next = (int)g->elems[pos].val;
                        break;
                    }
                    if (!nullable[g->elems[pos].val]) break;
                }
            if (next < 0) {
                state[r] = 2;
                sp--;
            } else if (state[next] == 1) {
                found = next;
            } else if (state[next] == 0) {
                state[next] = 1;
                sp++;
                stack[2 * sp] = next, stack[2 * sp + 1] = 0;
            }
        }
    }
done:
    smp_free(nullable);
    smp_free(state);
    smp_free(stack);
    return found;
}

/* ------------------------------------------------------------------------ */
/* Distances: the fewest bytes that finish a match                          */
/* ------------------------------------------------------------------------ */

static uint32_t add_sat(uint32_t a, uint32_t b) { return a > G_INF - b ? G_INF : a + b; }

/* A CHARS element costs the UTF-8 length of its smallest code point. */
static uint32_t class_min_bytes(const grammar *g, uint32_t cl) {
    if (!g->classes[cl].n) return G_INF; /* [^\x00-\U0010FFFF] matches nothing */
    uint32_t cp = g->ranges[g->classes[cl].off];
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

typedef struct {
    uint32_t cost, rule;
} gheap_item;

static void heap_push(gheap_item *h, size_t *n, gheap_item x) {
    size_t i = (*n)++;
    for (; i && h[(i - 1) / 2].cost > x.cost; i = (i - 1) / 2) h[i] = h[(i - 1) / 2];
    h[i] = x;
}

static gheap_item heap_pop(gheap_item *h, size_t *n) {
    gheap_item top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1].cost < h[c].cost) c++;
        if (h[c].cost >= x.cost) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = x;
    return top;
}

/* Fill g->rest. First each rule's shortest match, by Knuth's generalisation
 * of Dijkstra's algorithm: an alternative's length is known once every rule
 * it refers to is known, and the shortest known alternative of a rule not
 * yet settled settles it. O(elements log alternatives), whatever the order
 * of the rules. Then each alternative is summed from its end backwards. */
static int compute_distances(grammar *g) {
    size_t n_alts = g->alt_off[g->n_rules], n_refs = 0;
    for (size_t p = 0; p < g->n_elems; p++) n_refs += g->elems[p].type == G_REF;
    uint32_t *owner = smp_malloc((n_alts + 1) * sizeof *owner);
    uint32_t *known = smp_malloc((n_alts + 1) * sizeof *known);   /* the length so far */
    uint32_t *pending = smp_malloc((n_alts + 1) * sizeof *pending); /* rule references not settled */
    uint32_t *use_off = smp_calloc((size_t)g->n_rules + 2, sizeof *use_off);
    uint32_t *uses = smp_malloc((n_refs + 1) * sizeof *uses); /* per rule: the alternatives naming it */
    uint32_t *best = smp_malloc(((size_t)g->n_rules + 1) * sizeof *best);
    gheap_item *heap = smp_malloc((n_alts + 1) * sizeof *heap);
    g->rest = smp_malloc((g->n_elems + 1) * sizeof *g->rest);
    int rc = -SMP_E_NOMEM;
    if (!owner || !known || !pending || !use_off || !uses || !best || !heap || !g->rest) goto done;
    for (int r = 0; r < g->n_rules; r++) {
        best[r] = G_INF;
        for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1]; a++) {
            owner[a] = (uint32_t)r, known[a] = 0, pending[a] = 0;
            for (uint32_t p = g->alt_pos[a]; !is_end_type(g->elems[p].type); p++)
                if (g->elems[p].type == G_CHARS) known[a] = add_sat(known[a], class_min_bytes(g, g->elems[p].val));
                else pending[a]++, use_off[g->elems[p].val + 2]++;
        }
    }
    for (int r = 0; r < g->n_rules; r++) use_off[r + 2] += use_off[r + 1];
    for (uint32_t a = 0; a < n_alts; a++)
        for (uint32_t p = g->alt_pos[a]; !is_end_type(g->elems[p].type); p++)
            if (g->elems[p].type == G_REF) uses[use_off[g->elems[p].val + 1]++] = a;
    /* now use_off[r] .. use_off[r + 1] are rule r's uses */
    size_t n_heap = 0;
    for (uint32_t a = 0; a < n_alts; a++)
        if (!pending[a]) heap_push(heap, &n_heap, (gheap_item){known[a], owner[a]});
    while (n_heap) {
        gheap_item x = heap_pop(heap, &n_heap);
        if (best[x.rule] != G_INF || x.cost == G_INF) continue;
        best[x.rule] = x.cost;
        for (uint32_t k = use_off[x.rule]; k < use_off[x.rule + 1]; k++) {
            uint32_t a = uses[k];
            known[a] = add_sat(known[a], x.cost);
            if (--pending[a] == 0) heap_push(heap, &n_heap, (gheap_item){known[a], owner[a]});
        }
    }
    for (uint32_t a = 0; a < n_alts; a++) {
        uint32_t end = g->alt_pos[a];
        while (!is_end_type(g->elems[end].type)) end++;
        g->rest[end] = 0;
        for (uint32_t p = end; p-- > g->alt_pos[a];) {
            const gel *e = &g->elems[p];
            g->rest[p] = add_sat(e->type == G_CHARS ? class_min_bytes(g, e->val) : best[e->val], g->rest[p + 1]);
        }
    }
    rc = 0;
done:
    smp_free(owner);
    smp_free(known);
    smp_free(pending);
    smp_free(use_off);
    smp_free(uses);
    smp_free(best);
    smp_free(heap);
    return rc;
}

int grammar_n_rules(const grammar *g) { return g->n_rules; }
size_t grammar_n_elems(const grammar *g) { return g->n_elems; }

grammar *grammar_ref(grammar *g) {
    if (g) atomic_fetch_add(&g->refs, 1);
    return g;
}

void grammar_free(grammar *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    for (int i = 0; i < g->n_rules && g->names; i++) smp_free(g->names[i]);
    smp_free(g->names);
    smp_free(g->elems);
    smp_free(g->alt_off);
    smp_free(g->alt_pos);
    smp_free(g->classes);
    smp_free(g->ranges);
    smp_free(g->rest);
    smp_free(g);
}

int grammar_parse(const char *src, size_t len, grammar **out, char *err, size_t errlen) {
    *out = NULL;
    parser ps = {.src = src, .p = src, .end = src + len, .err = err, .errlen = errlen};
    memset(ps.ascii_class, -1, sizeof ps.ascii_class);
    grammar *g = NULL;
    parse_grammar(&ps);
    int root = ps.rc ? -1 : find_rule(&ps, "root", 4);
    if (!ps.rc && root < 0) perr(&ps, ps.end, "the grammar has no 'root' rule%s", NULL);
    for (int i = 0; i < ps.n_rules && !ps.rc; i++)
        if (!ps.rules[i].defined) perr(&ps, ps.rules[i].first_use, "undefined rule '%s'", ps.rules[i].name);
    if (ps.rc) goto fail;
    g = smp_calloc(1, sizeof *g);
    if (!g) goto oom;
    atomic_init(&g->refs, 1);
    g->n_rules = ps.n_rules;
    g->root = root;
    g->n_elems = ps.total;
    g->elems = smp_malloc((ps.total + 1) * sizeof(gel));
    g->names = smp_calloc((size_t)ps.n_rules, sizeof(char *));
    g->alt_off = smp_malloc(((size_t)ps.n_rules + 1) * sizeof(uint32_t));
    size_t n_alts = 0;
    for (int r = 0; r < ps.n_rules; r++)
        for (size_t i = 0; i < ps.rules[r].n; i++) n_alts += ps.rules[r].el[i].type <= G_ALT;
    g->alt_pos = smp_malloc((n_alts + 1) * sizeof(uint32_t));
    if (!g->elems || !g->names || !g->alt_off || !g->alt_pos) goto oom;
    size_t pos = 0, a = 0;
    for (int r = 0; r < ps.n_rules; r++) {
        g->alt_off[r] = (uint32_t)a;
        g->alt_pos[a++] = (uint32_t)pos;
        for (size_t i = 0; i < ps.rules[r].n; i++) {
            g->elems[pos++] = ps.rules[r].el[i];
            if (ps.rules[r].el[i].type == G_ALT) g->alt_pos[a++] = (uint32_t)pos;
        }
        g->names[r] = ps.rules[r].name;
        ps.rules[r].name = NULL;
    }
    g->alt_off[ps.n_rules] = (uint32_t)a;
    g->n_elems = pos;
    g->classes = ps.classes, ps.classes = NULL;
    g->ranges = ps.ranges, ps.ranges = NULL;
    g->n_classes = ps.n_classes;
    int lr = find_left_recursion(g);
    if (lr == -2) goto oom;
    if (lr >= 0) {
        snprintf(err, errlen, "rule '%s' is left-recursive (it can reach itself before matching a character)",
                 g->names[lr]);
        ps.rc = -SMP_E_VALIDATION;
        goto fail;
    }
    if (compute_distances(g)) goto oom;
    grammar_matcher *m = NULL;
    ps.rc = grammar_matcher_new(g, &m, err, errlen);
    grammar_matcher_free(m);
    if (ps.rc) goto fail;
    goto done;
oom:
    nomem(&ps);
fail:
    grammar_free(g);
    g = NULL;
done:
    for (int i = 0; i < ps.n_rules; i++) {
        smp_free(ps.rules[i].name);
        smp_free(ps.rules[i].el);
    }
    smp_free(ps.rules);
    smp_free(ps.classes);
    smp_free(ps.ranges);
    *out = g;
    return ps.rc;
}

/* ------------------------------------------------------------------------ */
/* Matcher                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint32_t pos, parent;
} gnode;

typedef struct {
    uint32_t acc;  /* code point bits so far */
    uint8_t need;  /* continuation bytes still expected */
    uint8_t total; /* length of the sequence being read */
} gutf8;

struct grammar_matcher {
    grammar *g;
    gnode *nodes;
    uint32_t n_nodes, cap_nodes, n_committed;
    uint32_t tops[GRAMMAR_MAX_STACKS];
    int n_tops;
    gutf8 u;
    bool oom;
    /* scratch */
    uint32_t tmp[2][GRAMMAR_MAX_STACKS];
    uint32_t *walk_tops; /* (maxlen + 1) * GRAMMAR_MAX_STACKS, for grammar_mask */
    int *walk_n;
    gutf8 *walk_u;
    uint32_t *walk_mark;
    size_t walk_cap;
    uint32_t *remap;
    size_t remap_cap;
};

static uint32_t new_node(grammar_matcher *m, uint32_t pos, uint32_t parent) {
    if (m->n_nodes == m->cap_nodes) {
        if (m->cap_nodes >= GRAMMAR_MAX_NODES) {
            m->oom = true;
            return 0;
        }
        uint32_t nc = m->cap_nodes ? m->cap_nodes * 2 : 256;
        gnode *p = smp_realloc(m->nodes, nc * sizeof(gnode));
        if (!p) {
            m->oom = true;
            return 0;
        }
        m->nodes = p;
        m->cap_nodes = nc;
    }
    m->nodes[m->n_nodes] = (gnode){pos, parent};
    return m->n_nodes++;
}

static bool same_stack(const grammar_matcher *m, uint32_t a, uint32_t b) {
    while (a != b) {
        if (!a || !b || m->nodes[a].pos != m->nodes[b].pos) return false;
        a = m->nodes[a].parent;
        b = m->nodes[b].parent;
    }
    return true;
}

static bool is_end(const grammar *g, uint32_t pos) { return is_end_type(g->elems[pos].type); }

/* Add every stack that continues from element pos with parent below it, each
 * with a CHARS element on top (or the empty stack). -1: too many stacks. */
static int expand(grammar_matcher *m, uint32_t pos, uint32_t parent, uint32_t *out, int *n) {
    const grammar *g = m->g;
    while (is_end(g, pos)) { /* the alternative is done: return to the caller */
        if (!parent) {
            for (int i = 0; i < *n; i++)
                if (!out[i]) return 0;
            if (*n == GRAMMAR_MAX_STACKS) return -1;
            out[(*n)++] = 0;
            return 0;
        }
        pos = m->nodes[parent].pos;
        parent = m->nodes[parent].parent;
    }
    const gel *e = &g->elems[pos];
    if (e->type == G_CHARS) {
        for (int i = 0; i < *n; i++)
            if (out[i] && m->nodes[out[i]].pos == pos && same_stack(m, m->nodes[out[i]].parent, parent)) return 0;
        if (*n == GRAMMAR_MAX_STACKS) return -1;
        uint32_t id = new_node(m, pos, parent);
        if (!id) return -1;
        out[(*n)++] = id;
        return 0;
    }
    /* G_REF: remember where to go on after it (a tail call needs nothing). */
    uint32_t below = parent;
    if (!is_end(g, pos + 1) && !(below = new_node(m, pos + 1, parent))) return -1;
    uint32_t r = e->val;
    for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1]; a++)
        if (expand(m, g->alt_pos[a], below, out, n) < 0) return -1;
    return 0;
}

static bool class_has(const grammar *g, uint32_t cl, uint32_t cp) {
    const uint32_t *r = g->ranges + g->classes[cl].off;
    uint32_t lo = 0, hi = g->classes[cl].n;
    while (lo < hi) { /* first range whose hi >= cp */
        uint32_t mid = (lo + hi) / 2;
        if (r[2 * mid + 1] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < g->classes[cl].n && r[2 * lo] <= cp;
}

static bool class_meets(const grammar *g, uint32_t cl, uint32_t a, uint32_t b) {
    const uint32_t *r = g->ranges + g->classes[cl].off;
    for (uint32_t i = 0; i < g->classes[cl].n; i++)
        if (r[2 * i] <= b && r[2 * i + 1] >= a) return true;
    return false;
}

/* The code points [lo, hi] that can complete a partial character. False
 * when there is none (an overlong start, or only surrogates). */
static bool partial_range(const gutf8 *u, uint32_t *lo, uint32_t *hi) {
    *lo = u->acc << (6 * u->need), *hi = *lo | ((1u << (6 * u->need)) - 1);
    if (u->total == 3 && *lo < 0x800) *lo = 0x800;
    if (u->total == 4 && *lo < 0x10000) *lo = 0x10000;
    return *lo <= *hi && !(*lo >= 0xD800 && *hi <= 0xDFFF);
}

/* Advance stacks in[0..n) by one byte into out. Returns the new count; 0 means
 * the byte is refused (also for invalid UTF-8 or too many stacks). */
static int step(grammar_matcher *m, const uint32_t *in, int n, gutf8 *u, unsigned char b, uint32_t *out) {
    const grammar *g = m->g;
    uint32_t cp;
    if (u->need == 0) {
        if (b < 0x80) {
            cp = b;
        } else {
            if (b >= 0xC2 && b <= 0xDF) u->total = 2, u->acc = b & 0x1F;
            else if (b >= 0xE0 && b <= 0xEF) u->total = 3, u->acc = b & 0x0F;
            else if (b >= 0xF0 && b <= 0xF4) u->total = 4, u->acc = b & 0x07;
            else return 0;
            u->need = u->total - 1;
            goto partial;
        }
    } else {
        if ((b & 0xC0) != 0x80) return 0;
        u->acc = u->acc << 6 | (b & 0x3F);
        u->need--;
        if (u->need) goto partial;
        cp = u->acc;
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[u->total] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!in[i]) continue;
        gnode nd = m->nodes[in[i]];
        if (!class_has(g, g->elems[nd.pos].val, cp)) continue;
        if (expand(m, nd.pos + 1, nd.parent, out, &k) < 0) return 0;
    }
    return k;
partial:;
    /* Keep the stacks; refuse now if no stack accepts any code point with this prefix. */
    uint32_t lo, hi;
    if (!partial_range(u, &lo, &hi)) return 0;
    bool any = false;
    for (int i = 0; i < n && !any; i++)
        if (in[i] && class_meets(g, g->elems[m->nodes[in[i]].pos].val, lo, hi)) any = true;
    if (!any) return 0;
    memcpy(out, in, (size_t)n * sizeof *out);
    return n;
}

int grammar_matcher_new(const grammar *g, grammar_matcher **out, char *err, size_t errlen) {
    *out = NULL;
    grammar_matcher *m = smp_calloc(1, sizeof *m);
    if (!m) return -SMP_E_NOMEM;
    m->g = grammar_ref((grammar *)g);
    new_node(m, 0, 0); /* node 0 is "none" */
    if (m->oom) {
        grammar_matcher_free(m);
        return -SMP_E_NOMEM;
    }
    for (uint32_t a = g->alt_off[g->root]; a < g->alt_off[g->root + 1]; a++)
        if (expand(m, g->alt_pos[a], 0, m->tops, &m->n_tops) < 0) {
            bool oom = m->oom;
            grammar_matcher_free(m);
            if (oom) return -SMP_E_NOMEM;
            snprintf(err, errlen, "the grammar is too ambiguous: its start needs more than %d parallel stacks",
                     GRAMMAR_MAX_STACKS);
            return -SMP_E_VALIDATION;
        }
    m->n_committed = m->n_nodes;
    *out = m;
    return 0;
}

void grammar_matcher_free(grammar_matcher *m) {
    if (!m) return;
    grammar_free(m->g);
    smp_free(m->nodes);
    smp_free(m->walk_tops);
    smp_free(m->walk_n);
    smp_free(m->walk_u);
    smp_free(m->walk_mark);
    smp_free(m->remap);
    smp_free(m);
}

grammar_matcher *grammar_matcher_clone(const grammar_matcher *m) {
    grammar_matcher *c = smp_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->g = grammar_ref(m->g);
    c->nodes = smp_malloc(m->cap_nodes * sizeof(gnode));
    if (!c->nodes) {
        grammar_matcher_free(c);
        return NULL;
    }
    memcpy(c->nodes, m->nodes, m->n_committed * sizeof(gnode));
    c->n_nodes = c->n_committed = m->n_committed;
    c->cap_nodes = m->cap_nodes;
    memcpy(c->tops, m->tops, sizeof c->tops);
    c->n_tops = m->n_tops;
    c->u = m->u;
    return c;
}

/* Keep only the nodes the stacks tops[0..n) use, shared tails stay shared. */
static bool compact(grammar_matcher *m, uint32_t *tops, int n) {
    if (m->remap_cap < m->n_nodes) {
        smp_free(m->remap);
        m->remap = smp_malloc(m->n_nodes * 2 * sizeof(uint32_t));
        if (!m->remap) {
            m->remap_cap = 0;
            return false;
        }
        m->remap_cap = m->n_nodes * 2;
    }
    memset(m->remap, 0, m->n_nodes * sizeof(uint32_t));
    /* Number the live nodes 1.. so that every parent comes before its child. */
    uint32_t next = 1;
    for (int i = 0; i < n; i++) {
        uint32_t depth = 0; /* nodes of this stack not numbered yet */
        for (uint32_t y = tops[i]; y && !m->remap[y]; y = m->nodes[y].parent) depth++;
        uint32_t idx = next + depth;
        next += depth;
        for (uint32_t y = tops[i]; y && !m->remap[y]; y = m->nodes[y].parent) m->remap[y] = --idx;
    }
    /* Copy them into a fresh array with their parents renumbered. */
    gnode *nn = smp_malloc((size_t)(next > 256 ? next : 256) * sizeof(gnode));
    if (!nn) return false;
    nn[0] = (gnode){0, 0};
    for (uint32_t y = 1; y < m->n_nodes; y++)
        if (m->remap[y]) {
            uint32_t p = m->nodes[y].parent;
            nn[m->remap[y]] = (gnode){m->nodes[y].pos, p ? m->remap[p] : 0};
        }
    for (int i = 0; i < n; i++) tops[i] = tops[i] ? m->remap[tops[i]] : 0;
    smp_free(m->nodes);
    m->nodes = nn;
    m->n_nodes = m->n_committed = next;
    m->cap_nodes = next > 256 ? next : 256;
    return true;
}

/* Run bytes from the committed state into *tops / *u. Returns the number of
 * stacks (0: refused). The new nodes stay scratch until run_bytes commits
 * them or the caller resets n_nodes to n_committed. */
static int advance(grammar_matcher *m, const unsigned char *b, size_t len, const uint32_t **tops, gutf8 *u) {
    const uint32_t *cur = m->tops;
    int n = m->n_tops;
    *u = m->u;
    int which = 0;
    m->oom = false;
    for (size_t i = 0; i < len; i++) {
        n = step(m, cur, n, u, b[i], m->tmp[which]);
        if (n == 0) break;
        cur = m->tmp[which];
        which ^= 1;
    }
    *tops = cur;
    return m->oom ? 0 : n;
}

/* Fewest bytes that complete any of the stacks tops[0..n) (SIZE_MAX: none
 * can). A stack costs the rest of its top's alternative plus the rest of
 * every alternative waiting below it; a pending partial character costs its
 * missing bytes, on the stacks whose class can still take it. O(stack
 * depth) per stack. */
static size_t state_distance(const grammar_matcher *m, const uint32_t *tops, int n, const gutf8 *u) {
    const grammar *g = m->g;
    uint32_t lo = 0, hi = 0;
    if (u->need && !partial_range(u, &lo, &hi)) return SIZE_MAX;
    size_t best = SIZE_MAX;
    for (int i = 0; i < n; i++) {
        if (!tops[i]) {
            if (!u->need) return 0; /* the empty stack: the input can end here */
            continue;
        }
        uint32_t pos = m->nodes[tops[i]].pos, d;
        if (!u->need) {
            d = g->rest[pos];
        } else {
            if (!class_meets(g, g->elems[pos].val, lo, hi)) continue;
            d = add_sat(u->need, g->rest[pos + 1]);
        }
        for (uint32_t y = m->nodes[tops[i]].parent; y && d != G_INF; y = m->nodes[y].parent)
            d = add_sat(d, g->rest[m->nodes[y].pos]);
        if (d != G_INF && d < best) best = d;
    }
    return best;
}

/* Run bytes through the committed state; on success, if commit, make it the
 * new state. Without commit (or on failure) the state is untouched. */
static bool run_bytes(grammar_matcher *m, const unsigned char *b, size_t len, bool commit) {
    const uint32_t *cur;
    gutf8 u;
    int n = advance(m, b, len, &cur, &u);
    bool ok = n > 0;
    if (ok && commit) {
        uint32_t tops[GRAMMAR_MAX_STACKS];
        memcpy(tops, cur, (size_t)n * sizeof *tops);
        if (!compact(m, tops, n)) {
            m->n_nodes = m->n_committed;
            return false;
        }
        memcpy(m->tops, tops, (size_t)n * sizeof *tops);
        m->n_tops = n;
        m->u = u;
        return true;
    }
    m->n_nodes = m->n_committed;
    return ok;
}

bool grammar_matcher_accept_bytes(grammar_matcher *m, const char *bytes, size_t len) {
    return run_bytes(m, (const unsigned char *)bytes, len, true);
}

bool grammar_matcher_can_end(const grammar_matcher *m) {
    if (m->u.need) return false;
    for (int i = 0; i < m->n_tops; i++)
        if (!m->tops[i]) return true;
    return false;
}

bool grammar_matcher_is_complete(const grammar_matcher *m) {
    return m->u.need == 0 && m->n_tops == 1 && m->tops[0] == 0;
}

int grammar_matcher_n_stacks(const grammar_matcher *m) { return m->n_tops; }

size_t grammar_matcher_distance(const grammar_matcher *m) { return state_distance(m, m->tops, m->n_tops, &m->u); }

/* ------------------------------------------------------------------------ */
/* Tokens                                                                   */
/* ------------------------------------------------------------------------ */

struct grammar_vocab {
    const tokenizer *t;
    int32_t n_vocab;
    int32_t *sorted;  /* ids with a non-empty piece that do not end generation */
    int32_t *eog, n_eog;     /* end-of-generation ids */
    int32_t *empty, n_empty; /* other ids with no bytes (never allowed) */
    uint32_t *lcp;    /* bytes sorted[k] shares with sorted[k-1] */
    int32_t n_sorted;
    size_t maxlen;
};

static int cmp_piece(const void *a, const void *b, void *ctx) {
    const tokenizer *t = ctx;
    size_t la, lb;
    const char *pa = tok_piece(t, *(const int32_t *)a, false, &la);
    const char *pb = tok_piece(t, *(const int32_t *)b, false, &lb);
    int c = memcmp(pa, pb, la < lb ? la : lb);
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int grammar_vocab_new(const tokenizer *t, grammar_vocab **out) {
    *out = NULL;
    grammar_vocab *v = smp_calloc(1, sizeof *v);
    if (!v) return -SMP_E_NOMEM;
    v->t = t;
    v->n_vocab = tok_n_vocab(t);
    v->sorted = smp_malloc(((size_t)v->n_vocab + 1) * sizeof(int32_t));
    v->lcp = smp_malloc(((size_t)v->n_vocab + 1) * sizeof(uint32_t));
    v->eog = smp_malloc(((size_t)v->n_vocab + 1) * sizeof(int32_t));
    v->empty = smp_malloc(((size_t)v->n_vocab + 1) * sizeof(int32_t));
    if (!v->sorted || !v->lcp || !v->eog || !v->empty) {
        grammar_vocab_free(v);
        return -SMP_E_NOMEM;
    }
    for (int32_t id = 0; id < v->n_vocab; id++) {
        size_t len;
        tok_piece(t, id, false, &len);
        if (tok_is_eog(t, id)) {
            v->eog[v->n_eog++] = id;
            continue;
        }
        if (len == 0) {
            v->empty[v->n_empty++] = id;
            continue;
        }
        v->sorted[v->n_sorted++] = id;
        if (len > v->maxlen) v->maxlen = len;
    }
    qsort_r(v->sorted, (size_t)v->n_sorted, sizeof(int32_t), cmp_piece, (void *)t);
    for (int32_t k = 0; k < v->n_sorted; k++) {
        size_t la = 0, lb, n = 0;
        const char *pa = k ? tok_piece(t, v->sorted[k - 1], false, &la) : "";
        const char *pb = tok_piece(t, v->sorted[k], false, &lb);
        while (n < la && n < lb && pa[n] == pb[n]) n++;
        v->lcp[k] = (uint32_t)n;
    }
    *out = v;
    return 0;
}

void grammar_vocab_free(grammar_vocab *v) {
    if (!v) return;
    smp_free(v->sorted);
    smp_free(v->lcp);
    smp_free(v->eog);
    smp_free(v->empty);
    smp_free(v);
}

bool grammar_matcher_allows(grammar_matcher *m, const grammar_vocab *v, int32_t id) {
    return grammar_matcher_allows_within(m, v, id, SIZE_MAX);
}

bool grammar_matcher_allows_within(grammar_matcher *m, const grammar_vocab *v, int32_t id, size_t max_distance) {
    if (id < 0 || id >= v->n_vocab) return false;
    if (tok_is_eog(v->t, id)) return grammar_matcher_can_end(m);
    size_t len;
    const char *p = tok_piece(v->t, id, false, &len);
    if (len == 0) return false;
    const uint32_t *tops;
    gutf8 u;
    int n = advance(m, (const unsigned char *)p, len, &tops, &u);
    bool ok = n > 0 && (max_distance == SIZE_MAX || state_distance(m, tops, n, &u) <= max_distance);
    m->n_nodes = m->n_committed;
    return ok;
}

bool grammar_matcher_accept_token(grammar_matcher *m, const grammar_vocab *v, int32_t id) {
    if (id < 0 || id >= v->n_vocab) return false;
    if (tok_is_eog(v->t, id)) return grammar_matcher_can_end(m);
    size_t len;
    const char *p = tok_piece(v->t, id, false, &len);
    return len > 0 && run_bytes(m, (const unsigned char *)p, len, true);
}

int grammar_mask(grammar_matcher *m, const grammar_vocab *v, float *logits) {
    return grammar_mask_within(m, v, logits, SIZE_MAX);
}

int grammar_mask_within(grammar_matcher *m, const grammar_vocab *v, float *logits, size_t max_distance) {
    size_t levels = v->maxlen + 1;
    if (m->walk_cap < levels) {
        smp_free(m->walk_tops);
        smp_free(m->walk_n);
        smp_free(m->walk_u);
        smp_free(m->walk_mark);
        m->walk_tops = smp_malloc(levels * GRAMMAR_MAX_STACKS * sizeof(uint32_t));
        m->walk_n = smp_malloc(levels * sizeof(int));
        m->walk_u = smp_malloc(levels * sizeof(gutf8));
        m->walk_mark = smp_malloc(levels * sizeof(uint32_t));
        m->walk_cap = levels;
        if (!m->walk_tops || !m->walk_n || !m->walk_u || !m->walk_mark) {
            m->walk_cap = 0;
            return -SMP_E_NOMEM;
        }
    }
    /* Tokens that are not in the walk: the end, and empty pieces. */
    bool can_end = grammar_matcher_can_end(m);
    int allowed = can_end ? v->n_eog : 0;
    for (int32_t i = 0; i < v->n_eog && !can_end; i++) logits[v->eog[i]] = -INFINITY;
    for (int32_t i = 0; i < v->n_empty; i++) logits[v->empty[i]] = -INFINITY;
    /* Level d holds the state after the first d bytes of the current token. */
    memcpy(m->walk_tops, m->tops, (size_t)m->n_tops * sizeof(uint32_t));
    m->walk_n[0] = m->n_tops;
    m->walk_u[0] = m->u;
    m->walk_mark[0] = m->n_committed;
    m->oom = false;
    size_t valid = 0, dead = 0; /* dead: a failing prefix length of the previous token (0: none) */
    for (int32_t k = 0; k < v->n_sorted; k++) {
        int32_t id = v->sorted[k];
        if (dead && v->lcp[k] >= dead) { /* starts with a refused prefix */
            logits[id] = -INFINITY;
            continue;
        }
        dead = 0;
        size_t len;
        const unsigned char *p = (const unsigned char *)tok_piece(v->t, id, false, &len);
        size_t d = v->lcp[k] < valid ? v->lcp[k] : valid;
        m->n_nodes = m->walk_mark[d];
        for (; d < len; d++) {
            gutf8 u = m->walk_u[d];
            int n = step(m, m->walk_tops + d * GRAMMAR_MAX_STACKS, m->walk_n[d], &u, p[d],
                         m->walk_tops + (d + 1) * GRAMMAR_MAX_STACKS);
            if (n == 0) break;
            m->walk_n[d + 1] = n;
            m->walk_u[d + 1] = u;
            m->walk_mark[d + 1] = m->n_nodes;
        }
        if (d < len) {
            logits[id] = -INFINITY;
            dead = d + 1;
            valid = d;
            continue;
        }
        valid = len; /* the prefix is fine for the tokens after this one, even if this one is too far */
        if (max_distance != SIZE_MAX &&
            state_distance(m, m->walk_tops + len * GRAMMAR_MAX_STACKS, m->walk_n[len], &m->walk_u[len]) > max_distance)
            logits[id] = -INFINITY;
        else
            allowed++;
    }
    m->n_nodes = m->n_committed;
    return m->oom ? -SMP_E_NOMEM : allowed;
}
