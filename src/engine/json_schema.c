/* json_schema.c - see json_schema.h.
 *
 * The compiler walks the schema once and writes one GBNF rule per subschema
 * ("sN ::= ..."), plus shared primitives (ws, string, number, value, ...)
 * written at the end when something used them. $ref targets get one rule
 * each, named before their body is written, so recursive schemas work.
 *
 * An object with properties p1..pn (schema order) is a chain of rules:
 *   after_j ::= (ws "," ws kv_j)? after_j+1      (optional p_j; required: no ?)
 *   first_j ::= kv_j after_j+1 | first_j+1       (the second only if p_j is optional)
 *   object  ::= "{" ws first_1 ws "}"            (all optional: "{" ws (first_1 ws)? "}")
 * so commas are always right and the grammar grows linearly with n. */
#include "json_schema.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "engine/unicode.h"

enum {
    NEED_WS = 1,
    NEED_CHAR = 2,
    NEED_STRING = 4,
    NEED_NUMBER = 8,
    NEED_INTEGER = 16,
    NEED_VALUE = 32,
};

typedef struct {
    char *key;
    int rule;
} refent;

typedef struct {
    buf out;
    const json_t *root;
    const char *root_path; /* the root's name in errors: "schema", "tools.0.function.parameters" */
    int n_rules;
    refent *refs;
    int n_refs, cap_refs;
    unsigned need;
    int depth;
    bool nomem;
    char *err;
    size_t errlen;
    int rc;
} jsc;

static void fail(jsc *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(jsc *c, const char *path, const char *fmt, ...) {
    if (c->rc) return;
    c->rc = -SMP_E_VALIDATION;
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s", path, msg);
}

static void put(jsc *c, buf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(jsc *c, buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (buf_vprintf(b, fmt, ap)) c->nomem = true;
    va_end(ap);
}

/* A GBNF string literal for the bytes s[0..n). */
static void lit(jsc *c, buf *b, const char *s, size_t n) {
    put(c, b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') put(c, b, "\\%c", ch);
        else if (ch == '\n') put(c, b, "\\n");
        else if (ch == '\r') put(c, b, "\\r");
        else if (ch == '\t') put(c, b, "\\t");
        else if (ch < 0x20) put(c, b, "\\x%02X", ch);
        else put(c, b, "%c", ch);
    }
    put(c, b, "\"");
}

/* Text from json_dumps belongs to jansson's allocator, which the server
 * points at its own (json_set_alloc_funcs): free it through jansson. */
void json_text_free(char *p) {
    json_free_t f = NULL;
    json_get_alloc_funcs(NULL, &f);
    (f ? f : free)(p);
}

/* The JSON text of v, compact, as a GBNF literal. */
static void json_lit(jsc *c, buf *b, const json_t *v) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) {
        c->nomem = true;
        return;
    }
    lit(c, b, s, strlen(s));
    json_text_free(s);
}

static int new_rule(jsc *c) { return c->n_rules++; }

static void emit_rule(jsc *c, int id, buf *body) {
    put(c, &c->out, "s%d ::= %s\n", id, body->data ? body->data : "\"\"");
}

/* ---- keywords ---- */

static const char *const annotations[] = {"title", "description", "default", "examples", "$schema", "$id",
                                          "$comment", "deprecated", "readOnly", "writeOnly", "$defs",
                                          "definitions", NULL};
static const char *const kw_object[] = {"properties", "required", "additionalProperties", NULL};
static const char *const kw_array[] = {"items", "minItems", "maxItems", NULL};
static const char *const kw_string[] = {"minLength", "maxLength", "pattern", "format", NULL};
static const char *const kw_number[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL};
static const char *const kw_general[] = {"type", "enum", "const", "anyOf", "$ref", NULL};

static bool in_list(const char *const *list, const char *k) {
    for (; *list; list++)
        if (!strcmp(*list, k)) return true;
    return false;
}

/* The first keyword of schema s that is neither supported nor an annotation. */
static const char *unknown_keyword(const json_t *s) {
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)s, key, v) {
        if (!in_list(annotations, key) && !in_list(kw_general, key) && !in_list(kw_object, key) &&
            !in_list(kw_array, key) && !in_list(kw_string, key) && !in_list(kw_number, key))
            return key;
    }
    return NULL;
}

static bool has_any(const json_t *s, const char *const *list) {
    for (; *list; list++)
        if (json_object_get(s, *list)) return true;
    return false;
}

/* ---- primitives ---- */

static const char *prim_rules[] = {
    /* NEED_WS */
    "ws ::= ( \" \" | \"\\n\" [ \\t]{0,20} )?\n",
    /* NEED_CHAR */
    "char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" ( [0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] "
    "[0-7] [0-9a-fA-F]{2} ) )\n",
    /* NEED_STRING */
    "string ::= \"\\\"\" char* \"\\\"\"\n",
    /* NEED_NUMBER */
    "number ::= \"-\"? digits ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?\n"
    "digits ::= \"0\" | [1-9] [0-9]{0,15}\n",
    /* NEED_INTEGER */
    "integer ::= \"-\"? idigits\nidigits ::= \"0\" | [1-9] [0-9]{0,15}\n",
    /* NEED_VALUE */
    "value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
    "object ::= \"{\" ws ( string ws \":\" ws value ( ws \",\" ws string ws \":\" ws value )* ws )? \"}\"\n"
    "array ::= \"[\" ws ( value ( ws \",\" ws value )* ws )? \"]\"\n",
};

static void use(jsc *c, unsigned what) {
    if (what & NEED_VALUE) what |= NEED_WS | NEED_STRING | NEED_NUMBER;
    if (what & NEED_STRING) what |= NEED_CHAR;
    c->need |= what;
}

/* ---- numbers ---- */

#define JS_INF (-1LL)
#define JS_MAX_BOUND 1000000000000000LL /* 1e15 */

static int ndigits(long long v) {
    int n = 1;
    while (v >= 10) v /= 10, n++;
    return n;
}

/* Integers whose decimal text (n digits, no sign) lies in [a, b] (both n digits). */
static void digits_between(jsc *c, buf *b, const char *a, const char *z, int n) {
    if (n == 0) return;
    if (a[0] == z[0]) {
        put(c, b, "\"%c\" ", a[0]);
        digits_between(c, b, a + 1, z + 1, n - 1);
        return;
    }
    bool low0 = true, high9 = true;
    for (int i = 1; i < n; i++) low0 &= a[i] == '0', high9 &= z[i] == '9';
    if (low0 && high9) {
        put(c, b, "[%c-%c] ", a[0], z[0]);
        if (n > 1) put(c, b, "[0-9]{%d} ", n - 1);
        return;
    }
    char nines[20], zeros[20];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    put(c, b, "( \"%c\" ", a[0]);
    digits_between(c, b, a + 1, nines, n - 1);
    if (z[0] - a[0] >= 2) {
        put(c, b, "| [%c-%c] ", a[0] + 1, z[0] - 1);
        if (n > 1) put(c, b, "[0-9]{%d} ", n - 1);
    }
    put(c, b, "| \"%c\" ", z[0]);
    digits_between(c, b, zeros, z + 1, n - 1);
    put(c, b, ") ");
}

/* Non-negative integers in [lo, hi] (hi JS_INF: no end), as one group. */
static void uint_range(jsc *c, buf *b, long long lo, long long hi) {
    int dl = ndigits(lo), dh = hi == JS_INF ? dl : ndigits(hi);
    put(c, b, "( ");
    long long p = 1;
    for (int i = 1; i < dl; i++) p *= 10; /* 10^(dl-1) */
    for (int n = dl; n <= dh; n++, p *= 10) {
        long long from = n == dl ? lo : p, to = p * 10 - 1;
        if (hi != JS_INF && hi < to) to = hi;
        char a[24], z[24];
        snprintf(a, sizeof a, "%lld", from);
        snprintf(z, sizeof z, "%lld", to);
        if (n > dl) put(c, b, "| ");
        digits_between(c, b, a, z, n);
    }
    if (hi == JS_INF && dl < 16) put(c, b, "| [1-9] [0-9]{%d,15} ", dl);
    put(c, b, ") ");
}

/* Numbers (no exponent) whose magnitude is in [lo, hi], lo and hi integers. */
static void unum_range(jsc *c, buf *b, long long lo, long long hi) {
    const char *frac = "( \".\" [0-9]{1,16} )?";
    if (hi == JS_INF) {
        uint_range(c, b, lo, JS_INF);
        put(c, b, "%s ", frac);
        return;
    }
    put(c, b, "( ");
    if (lo <= hi - 1) {
        uint_range(c, b, lo, hi - 1);
        put(c, b, "%s | ", frac);
    }
    put(c, b, "\"%lld\" ( \".\" \"0\"{1,16} )? ) ", hi);
}

static bool get_bound(jsc *c, const json_t *s, const char *key, const char *path, double *v) {
    const json_t *x = json_object_get(s, key);
    if (!x) return false;
    if (!json_is_number(x)) {
        fail(c, path, "'%s' must be a number", key);
        return false;
    }
    *v = json_number_value(x);
    return true;
}

static void number_body(jsc *c, buf *b, const json_t *s, bool integer, const char *path) {
    double mn = 0, mx = 0, emn = 0, emx = 0;
    bool has_mn = get_bound(c, s, "minimum", path, &mn), has_mx = get_bound(c, s, "maximum", path, &mx);
    bool has_emn = get_bound(c, s, "exclusiveMinimum", path, &emn);
    bool has_emx = get_bound(c, s, "exclusiveMaximum", path, &emx);
    if (c->rc) return;
    if (!has_mn && !has_mx && !has_emn && !has_emx) {
        use(c, integer ? NEED_INTEGER : NEED_NUMBER);
        put(c, b, integer ? "integer" : "number");
        return;
    }
    double lo = -INFINITY, hi = INFINITY;
    if (integer) {
        if (has_mn) lo = ceil(mn);
        if (has_emn && floor(emn) + 1 > lo) lo = floor(emn) + 1;
        if (has_mx) hi = floor(mx);
        if (has_emx && ceil(emx) - 1 < hi) hi = ceil(emx) - 1;
    } else {
        if (has_emn || has_emx) {
            fail(c, path, "keyword '%s' on a number is not supported (only on integers)",
                 has_emn ? "exclusiveMinimum" : "exclusiveMaximum");
            return;
        }
        if ((has_mn && mn != floor(mn)) || (has_mx && mx != floor(mx))) {
            fail(c, path, "'%s' on a number must be a whole number to be enforced",
                 has_mn && mn != floor(mn) ? "minimum" : "maximum");
            return;
        }
        if (has_mn) lo = mn;
        if (has_mx) hi = mx;
    }
    if ((isfinite(lo) && fabs(lo) > (double)JS_MAX_BOUND) || (isfinite(hi) && fabs(hi) > (double)JS_MAX_BOUND)) {
        fail(c, path, "numeric bounds beyond 1e15 are not supported");
        return;
    }
    if (lo > hi) {
        fail(c, path, "no %s lies between the minimum and the maximum", integer ? "integer" : "number");
        return;
    }
    put(c, b, "( ");
    bool alt = false;
    if (hi >= 0) { /* the non-negative part: 0 or more */
        long long a = lo > 0 ? (long long)lo : 0, z = isfinite(hi) ? (long long)hi : JS_INF;
        if (integer) uint_range(c, b, a, z);
        else unum_range(c, b, a, z);
        alt = true;
    }
    if (lo < 0) { /* the negative part, by magnitude */
        long long a = hi < 0 ? (long long)-hi : (integer ? 1 : 0), z = isfinite(lo) ? (long long)-lo : JS_INF;
        put(c, b, "%s\"-\" ", alt ? "| " : "");
        if (integer) uint_range(c, b, a, z);
        else unum_range(c, b, a, z);
    }
    put(c, b, ") ");
}

/* ---- strings ---- */

/* Code-point sets: sorted, merged [lo, hi] pairs. */
#define SET_MAX 256
typedef struct {
    uint32_t r[2 * SET_MAX];
    int n;
    bool overflow;
} cpset;

static void set_add(cpset *s, uint32_t lo, uint32_t hi) {
    /* Insert keeping order, then merge neighbours. */
    if (s->n == SET_MAX) {
        s->overflow = true;
        return;
    }
    int i = s->n;
    while (i > 0 && s->r[2 * (i - 1)] > lo) {
        s->r[2 * i] = s->r[2 * (i - 1)];
        s->r[2 * i + 1] = s->r[2 * (i - 1) + 1];
        i--;
    }
    s->r[2 * i] = lo, s->r[2 * i + 1] = hi;
    s->n++;
    int m = 0;
    for (int k = 0; k < s->n; k++) {
        if (m && s->r[2 * k] <= s->r[2 * (m - 1) + 1] + 1) {
            if (s->r[2 * k + 1] > s->r[2 * (m - 1) + 1]) s->r[2 * (m - 1) + 1] = s->r[2 * k + 1];
        } else {
            s->r[2 * m] = s->r[2 * k], s->r[2 * m + 1] = s->r[2 * k + 1];
            m++;
        }
    }
    s->n = m;
}

static void set_complement(cpset *s) {
    cpset o = {.n = 0};
    uint32_t next = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->r[2 * i] > next) set_add(&o, next, s->r[2 * i] - 1);
        next = s->r[2 * i + 1] + 1;
    }
    if (next <= 0x10FFFF) set_add(&o, next, 0x10FFFF);
    o.overflow |= s->overflow;
    *s = o;
}

static bool set_has(const cpset *s, uint32_t cp) {
    for (int i = 0; i < s->n; i++)
        if (s->r[2 * i] <= cp && cp <= s->r[2 * i + 1]) return true;
    return false;
}

static void class_char(jsc *c, buf *b, uint32_t cp) {
    if (cp >= 0x20 && cp < 0x7F && !strchr("\\]^-[\"", (int)cp)) put(c, b, "%c", (char)cp);
    else if (cp < 0x80) put(c, b, "\\x%02X", cp);
    else if (cp <= 0xFFFF) put(c, b, "\\u%04X", cp);
    else put(c, b, "\\U%08X", cp);
}

/* The JSON-string spellings of the characters in s, as a GBNF group. */
static void emit_set(jsc *c, buf *b, const cpset *s, const char *path) {
    if (s->overflow) {
        fail(c, path, "a character class in the pattern is too complex");
        return;
    }
    cpset raw = {.n = 0}; /* s minus '"', '\\' and control characters */
    for (int i = 0; i < s->n; i++) {
        uint32_t lo = s->r[2 * i], hi = s->r[2 * i + 1];
        if (lo < 0x20) lo = 0x20;
        if (lo > hi) continue;
        uint32_t cuts[2] = {'"', '\\'};
        for (int k = 0; k < 2 && lo <= hi; k++)
            if (cuts[k] >= lo && cuts[k] <= hi) {
                if (cuts[k] > lo) set_add(&raw, lo, cuts[k] - 1);
                lo = cuts[k] + 1;
            }
        if (lo <= hi) set_add(&raw, lo, hi);
    }
    bool alt = false;
    put(c, b, "( ");
    if (raw.n) {
        put(c, b, "[");
        for (int i = 0; i < raw.n; i++) {
            class_char(c, b, raw.r[2 * i]);
            if (raw.r[2 * i + 1] != raw.r[2 * i]) {
                put(c, b, "-");
                class_char(c, b, raw.r[2 * i + 1]);
            }
        }
        put(c, b, "] ");
        alt = true;
    }
    static const struct {
        uint32_t cp;
        const char *json;
    } esc[] = {{'"', "\\\""}, {'\\', "\\\\"}, {'\n', "\\n"}, {'\t', "\\t"}, {'\r', "\\r"}};
    for (size_t i = 0; i < sizeof esc / sizeof *esc; i++)
        if (set_has(s, esc[i].cp)) {
            put(c, b, "%s", alt ? "| " : "");
            lit(c, b, esc[i].json, strlen(esc[i].json));
            put(c, b, " ");
            alt = true;
        }
    if (!alt) fail(c, path, "a character class in the pattern matches nothing that can be written");
    put(c, b, ") ");
}

typedef struct {
    jsc *c;
    buf *b;
    const char *p, *end, *path;
    int depth;
} rx;

static void rx_fail(rx *r, const char *what) { fail(r->c, r->path, "%s", what); }

static void rx_escape_set(rx *r, char e, cpset *s) {
    switch (e) {
    case 'd': case 'D': set_add(s, '0', '9'); break;
    case 'w': case 'W':
        set_add(s, '0', '9'), set_add(s, 'A', 'Z'), set_add(s, 'a', 'z'), set_add(s, '_', '_');
        break;
    case 's': case 'S': set_add(s, '\t', '\r'), set_add(s, ' ', ' '); break;
    }
    if (e == 'D' || e == 'W' || e == 'S') set_complement(s);
}

/* One class member or escaped character; returns false after an error. */
static bool rx_char(rx *r, uint32_t *cp, cpset *into) {
    if (r->p >= r->end) {
        rx_fail(r, "pattern: unexpected end");
        return false;
    }
    if (*r->p == '\\') {
        if (r->end - r->p < 2) {
            rx_fail(r, "pattern: unfinished escape");
            return false;
        }
        char e = r->p[1];
        r->p += 2;
        if (strchr("dwsDWS", e) && e) {
            if (!into) {
                rx_fail(r, "pattern: a class escape cannot be a range end");
                return false;
            }
            rx_escape_set(r, e, into);
            *cp = UINT32_MAX;
            return true;
        }
        if (e == 'n') *cp = '\n';
        else if (e == 't') *cp = '\t';
        else if (e == 'r') *cp = '\r';
        else if (strchr(".\\/-^$*+?()[]{}|\"'", e) && e) *cp = (uint32_t)e;
        else if (e >= '1' && e <= '9') {
            rx_fail(r, "pattern: backreferences are not supported");
            return false;
        } else {
            char msg[80];
            snprintf(msg, sizeof msg, "pattern: '\\%c' is not supported", e);
            rx_fail(r, msg);
            return false;
        }
        return true;
    }
    int n = unicode_utf8_next(r->p, (size_t)(r->end - r->p), cp);
    if (n <= 0) {
        rx_fail(r, "pattern: invalid UTF-8");
        return false;
    }
    r->p += n;
    return true;
}

static void rx_alt(rx *r);

static void rx_atom(rx *r) {
    jsc *c = r->c;
    char ch = *r->p;
    cpset s = {.n = 0};
    if (ch == '(') {
        r->p++;
        if (r->p < r->end && *r->p == '?') {
            if (r->end - r->p >= 2 && r->p[1] == ':') r->p += 2;
            else return rx_fail(r, "pattern: lookaround and named groups are not supported");
        }
        if (++r->depth > 32) return rx_fail(r, "pattern: groups nest too deeply");
        put(c, r->b, "( ");
        rx_alt(r);
        r->depth--;
        if (c->rc) return;
        if (r->p >= r->end || *r->p != ')') return rx_fail(r, "pattern: expected ')'");
        r->p++;
        put(c, r->b, ") ");
        return;
    }
    if (ch == '[') {
        r->p++;
        bool neg = r->p < r->end && *r->p == '^';
        if (neg) r->p++;
        bool first = true;
        while (r->p < r->end && (*r->p != ']' || first)) {
            first = false;
            uint32_t lo, hi;
            if (!rx_char(r, &lo, &s)) return;
            if (lo == UINT32_MAX) continue;
            hi = lo;
            if (r->end - r->p >= 2 && r->p[0] == '-' && r->p[1] != ']') {
                r->p++;
                if (!rx_char(r, &hi, NULL)) return;
                if (hi < lo) return rx_fail(r, "pattern: a class range runs backwards");
            }
            set_add(&s, lo, hi);
        }
        if (r->p >= r->end) return rx_fail(r, "pattern: expected ']'");
        r->p++;
        if (neg) set_complement(&s);
        emit_set(c, r->b, &s, r->path);
        return;
    }
    if (ch == '.') {
        r->p++;
        set_add(&s, '\n', '\n');
        set_complement(&s);
        emit_set(c, r->b, &s, r->path);
        return;
    }
    if (ch == '^' || ch == '$') return rx_fail(r, "pattern: '^' and '$' are supported only at the very start and end");
    if (strchr("*+?{", ch)) return rx_fail(r, "pattern: nothing to repeat");
    uint32_t cp;
    if (!rx_char(r, &cp, &s)) return;
    if (cp != UINT32_MAX) set_add(&s, cp, cp);
    emit_set(c, r->b, &s, r->path);
}

static void rx_seq(rx *r) {
    jsc *c = r->c;
    bool any = false;
    while (!c->rc && r->p < r->end && *r->p != '|' && *r->p != ')') {
        if (*r->p == '$' && r->p + 1 == r->end) break; /* the end anchor */
        rx_atom(r); /* always one group, so a quantifier applies to all of it */
        any = true;
        if (c->rc || r->p >= r->end) break;
        char q = *r->p;
        if (q == '*' || q == '+' || q == '?') {
            r->p++;
            put(c, r->b, "%c ", q);
        } else if (q == '{') {
            unsigned m = 0, n = 0;
            int used = 0;
            char tail[8] = "";
            if (sscanf(r->p, "{%u,%u}%n", &m, &n, &used) == 2 && used) {
                if (n < m || n > GRAMMAR_MAX_REPEAT) return rx_fail(r, "pattern: bad {m,n}");
                put(c, r->b, "{%u,%u} ", m, n);
            } else if (sscanf(r->p, "{%u,%1[}]%n", &m, tail, &used) == 2 && used) {
                put(c, r->b, "{%u,} ", m);
            } else if (sscanf(r->p, "{%u}%n", &m, &used) == 1 && used) {
                put(c, r->b, "{%u} ", m);
            } else {
                return rx_fail(r, "pattern: bad repetition");
            }
            if (m > GRAMMAR_MAX_REPEAT) return rx_fail(r, "pattern: repetition count too large");
            r->p += used;
        } else {
            continue;
        }
        if (r->p < r->end && (*r->p == '?' || *r->p == '+'))
            return rx_fail(r, "pattern: lazy and possessive quantifiers are not supported");
    }
    if (!any) put(c, r->b, "\"\" ");
}

static void rx_alt(rx *r) {
    rx_seq(r);
    while (!r->c->rc && r->p < r->end && *r->p == '|') {
        r->p++;
        put(r->c, r->b, "| ");
        rx_seq(r);
    }
}

static void pattern_body(jsc *c, buf *b, const char *pat, const char *path) {
    char p2[600];
    snprintf(p2, sizeof p2, "%s.pattern", path);
    size_t n = strlen(pat);
    bool start = n && pat[0] == '^';
    bool end = n > (size_t)start && pat[n - 1] == '$' && (n < 2 || pat[n - 2] != '\\');
    rx r = {c, b, pat + start, pat + n - (end ? 1 : 0), p2, 0};
    use(c, NEED_CHAR);
    put(c, b, "\"\\\"\" ");
    if (!start) put(c, b, "char* ");
    put(c, b, "( ");
    rx_alt(&r);
    if (!c->rc && r.p < r.end) fail(c, p2, "pattern: unexpected '%c'", *r.p);
    put(c, b, ") ");
    if (!end) put(c, b, "char* ");
    put(c, b, "\"\\\"\"");
}

static const struct {
    const char *name, *gbnf;
} formats[] = {
    {"date", "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )"},
    {"time", "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,9} )? ( \"Z\" | "
             "[+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )"},
    {"date-time", NULL},
    {"uuid", "[0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12}"},
    {"email", "[a-zA-Z0-9._%+-]{1,64} \"@\" [a-zA-Z0-9-]{1,63} ( \".\" [a-zA-Z0-9-]{1,63} ){0,3} \".\" "
              "[a-zA-Z]{2,24}"},
};

static bool get_count(jsc *c, const json_t *s, const char *key, const char *path, long *v) {
    const json_t *x = json_object_get(s, key);
    if (!x) return false;
    if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > GRAMMAR_MAX_REPEAT) {
        fail(c, path, "'%s' must be an integer from 0 to %d", key, GRAMMAR_MAX_REPEAT);
        return false;
    }
    *v = (long)json_integer_value(x);
    return true;
}

static void string_body(jsc *c, buf *b, const json_t *s, const char *path) {
    long mn = 0, mx = -1;
    bool has_mn = get_count(c, s, "minLength", path, &mn), has_mx = get_count(c, s, "maxLength", path, &mx);
    const json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    if (c->rc) return;
    if ((pat || fmt) && (has_mn || has_mx)) {
        fail(c, path, "minLength/maxLength together with %s are not supported", pat ? "pattern" : "format");
        return;
    }
    if (pat && fmt) {
        fail(c, path, "pattern together with format is not supported");
        return;
    }
    if (pat) {
        if (!json_is_string(pat)) return fail(c, path, "'pattern' must be a string");
        pattern_body(c, b, json_string_value(pat), path);
        return;
    }
    if (fmt) {
        const char *f = json_string_value(fmt);
        for (size_t i = 0; f && i < sizeof formats / sizeof *formats; i++) {
            if (strcmp(f, formats[i].name)) continue;
            if (formats[i].gbnf) put(c, b, "\"\\\"\" %s \"\\\"\"", formats[i].gbnf);
            else put(c, b, "\"\\\"\" %s \"T\" %s \"\\\"\"", formats[0].gbnf, formats[1].gbnf);
            return;
        }
        fail(c, path, "format '%s' is not supported (date, time, date-time, uuid, email are)", f ? f : "?");
        return;
    }
    if (mx >= 0 && mx < mn) return fail(c, path, "maxLength is below minLength");
    if (!has_mn && !has_mx) {
        use(c, NEED_STRING);
        put(c, b, "string");
        return;
    }
    use(c, NEED_CHAR);
    if (mx < 0) put(c, b, "\"\\\"\" char{%ld,} \"\\\"\"", mn);
    else put(c, b, "\"\\\"\" char{%ld,%ld} \"\\\"\"", mn, mx);
}

/* ---- schemas ---- */

static int gen(jsc *c, const json_t *s, const char *path);

static const json_t *resolve(jsc *c, const char *ref, const char *path) {
    if (ref[0] != '#') {
        fail(c, path, "$ref '%s' is not supported (only local '#/...' references are)", ref);
        return NULL;
    }
    const json_t *cur = c->root;
    const char *p = ref + 1;
    while (*p == '/') {
        p++;
        char key[256];
        size_t k = 0;
        for (; *p && *p != '/' && k + 1 < sizeof key; p++) {
            if (p[0] == '~' && p[1] == '1') key[k++] = '/', p++;
            else if (p[0] == '~' && p[1] == '0') key[k++] = '~', p++;
            else key[k++] = *p;
        }
        key[k] = 0;
        cur = json_is_array(cur) ? json_array_get(cur, (size_t)strtoul(key, NULL, 10)) : json_object_get(cur, key);
        if (!cur) {
            fail(c, path, "$ref '%s' points at nothing", ref);
            return NULL;
        }
    }
    if (*p) {
        fail(c, path, "$ref '%s' is not a JSON pointer", ref);
        return NULL;
    }
    return cur;
}

static int ref_rule(jsc *c, const char *ref, const char *path) {
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].key, ref)) return c->refs[i].rule;
    const json_t *target = resolve(c, ref, path);
    if (!target) return -1;
    if (c->n_refs == c->cap_refs) {
        int nc = c->cap_refs ? c->cap_refs * 2 : 8;
        refent *r = smp_realloc(c->refs, (size_t)nc * sizeof *r);
        if (!r) {
            c->nomem = true;
            return -1;
        }
        c->refs = r;
        c->cap_refs = nc;
    }
    char *key = smp_strdup(ref);
    if (!key) {
        c->nomem = true;
        return -1;
    }
    /* The rule is named before its body is written: recursion refers to it. */
    int id = new_rule(c);
    c->refs[c->n_refs++] = (refent){key, id};
    char where[600]; /* the target's path: the pointer's steps after the root's name */
    snprintf(where, sizeof where, "%s%s", c->root_path, ref + 1);
    for (char *q = where + strnlen(where, strlen(c->root_path)); *q; q++)
        if (*q == '/') *q = '.';
    int body = gen(c, target, where);
    if (body < 0) return -1;
    put(c, &c->out, "s%d ::= s%d\n", id, body);
    return id;
}

static void type_body(jsc *c, buf *b, const json_t *s, const char *type, const char *path);

static void object_body(jsc *c, buf *b, const json_t *s, const char *path) {
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties");
    char sub[600];
    if (props && !json_is_object(props)) return fail(c, path, "'properties' must be an object");
    if (req && !json_is_array(req)) return fail(c, path, "'required' must be an array");
    if (addl && !json_is_object(addl) && !json_is_boolean(addl))
        return fail(c, path, "'additionalProperties' must be a boolean or a schema");
    size_t i;
    const json_t *r;
    json_array_foreach(req, i, r) {
        if (!json_is_string(r)) return fail(c, path, "'required' must list strings");
        if (!json_object_get(props, json_string_value(r)))
            return fail(c, path, "required property '%s' is not in 'properties'", json_string_value(r));
    }
    use(c, NEED_WS);
    size_t n = props ? json_object_size(props) : 0;
    if (n == 0) {
        if (json_is_false(addl)) {
            put(c, b, "\"{\" ws \"}\"");
            return;
        }
        int v = -1;
        if (json_is_object(addl)) {
            snprintf(sub, sizeof sub, "%s.additionalProperties", path);
            if ((v = gen(c, addl, sub)) < 0) return;
        } else {
            use(c, NEED_VALUE);
        }
        char vname[16];
        snprintf(vname, sizeof vname, v >= 0 ? "s%d" : "value", v);
        use(c, NEED_STRING);
        put(c, b, "\"{\" ws ( string ws \":\" ws %s ( ws \",\" ws string ws \":\" ws %s )* ws )? \"}\"", vname, vname);
        return;
    }
    /* kv rules in schema order, then the after/first chains from the back. */
    int *kv = smp_malloc(n * sizeof(int));
    bool *opt = smp_malloc(n * sizeof(bool));
    if (!kv || !opt) {
        c->nomem = true;
        goto done;
    }
    const char *key;
    const json_t *ps;
    size_t k = 0;
    bool all_optional = true;
    json_object_foreach((json_t *)props, key, ps) {
        snprintf(sub, sizeof sub, "%s.properties.%s", path, key);
        int vs = gen(c, ps, sub);
        if (vs < 0) goto done;
        opt[k] = true;
        json_array_foreach(req, i, r) if (!strcmp(json_string_value(r), key)) opt[k] = false;
        all_optional &= opt[k];
        buf body;
        buf_init(&body, 0);
        json_t *ks = json_string(key);
        if (!ks) c->nomem = true;
        else json_lit(c, &body, ks);
        json_decref(ks);
        put(c, &body, " ws \":\" ws s%d", vs);
        kv[k] = new_rule(c);
        emit_rule(c, kv[k], &body);
        buf_free(&body);
        k++;
    }
    int after = -1, first = -1; /* after_(j+1), first_(j+1) */
    for (size_t j = n; j-- > 0;) {
        buf body;
        buf_init(&body, 0);
        char rest[16] = "";
        if (after >= 0) snprintf(rest, sizeof rest, " s%d", after);
        if (opt[j]) put(c, &body, "( ws \",\" ws s%d )?%s", kv[j], rest);
        else put(c, &body, "ws \",\" ws s%d%s", kv[j], rest);
        int a = new_rule(c);
        emit_rule(c, a, &body);
        buf_reset(&body);
        put(c, &body, "s%d%s", kv[j], rest);
        if (opt[j] && first >= 0) put(c, &body, " | s%d", first);
        first = new_rule(c);
        emit_rule(c, first, &body);
        buf_free(&body);
        after = a;
    }
    if (all_optional) put(c, b, "\"{\" ws ( s%d ws )? \"}\"", first);
    else put(c, b, "\"{\" ws s%d ws \"}\"", first);
done:
    smp_free(kv);
    smp_free(opt);
}

static void array_body(jsc *c, buf *b, const json_t *s, const char *path) {
    const json_t *items = json_object_get(s, "items");
    char sub[600];
    if (items && json_is_array(items)) return fail(c, path, "tuple 'items' (an array of schemas) is not supported");
    long mn = 0, mx = -1;
    get_count(c, s, "minItems", path, &mn);
    get_count(c, s, "maxItems", path, &mx);
    if (c->rc) return;
    if (mx >= 0 && mx < mn) return fail(c, path, "maxItems is below minItems");
    char it[16] = "value";
    if (items) {
        snprintf(sub, sizeof sub, "%s.items", path);
        int v = gen(c, items, sub);
        if (v < 0) return;
        snprintf(it, sizeof it, "s%d", v);
    } else {
        use(c, NEED_VALUE);
    }
    use(c, NEED_WS);
    if (mx == 0) {
        put(c, b, "\"[\" ws \"]\"");
        return;
    }
    char rep[64];
    if (mx < 0) snprintf(rep, sizeof rep, "{%ld,}", mn > 0 ? mn - 1 : 0);
    else snprintf(rep, sizeof rep, "{%ld,%ld}", mn > 0 ? mn - 1 : 0, mx - 1);
    if (mn > 0) put(c, b, "\"[\" ws %s ( ws \",\" ws %s )%s ws \"]\"", it, it, rep);
    else put(c, b, "\"[\" ws ( %s ( ws \",\" ws %s )%s ws )? \"]\"", it, it, rep);
}

static void type_body(jsc *c, buf *b, const json_t *s, const char *type, const char *path) {
    if (!strcmp(type, "null")) put(c, b, "\"null\"");
    else if (!strcmp(type, "boolean")) put(c, b, "( \"true\" | \"false\" )");
    else if (!strcmp(type, "integer")) number_body(c, b, s, true, path);
    else if (!strcmp(type, "number")) number_body(c, b, s, false, path);
    else if (!strcmp(type, "string")) string_body(c, b, s, path);
    else if (!strcmp(type, "array")) array_body(c, b, s, path);
    else if (!strcmp(type, "object")) object_body(c, b, s, path);
    else fail(c, path, "type '%s' is not supported", type);
}

/* Does v belong to the JSON type named t? (for enum/const beside type) */
static bool is_type(const json_t *v, const char *t) {
    if (!strcmp(t, "null")) return json_is_null(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "integer")) return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "object")) return json_is_object(v);
    return false;
}

static bool type_allows(const json_t *type, const json_t *v) {
    if (!type) return true;
    if (json_is_string(type)) return is_type(v, json_string_value(type));
    size_t i;
    const json_t *t;
    json_array_foreach(type, i, t) if (json_is_string(t) && is_type(v, json_string_value(t))) return true;
    return false;
}

/* Writes rule sN for schema s; returns N, or -1 on error. */
static int gen(jsc *c, const json_t *s, const char *path) {
    if (c->rc || c->nomem) return -1;
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) {
        use(c, NEED_VALUE);
        int id = new_rule(c);
        put(c, &c->out, "s%d ::= value\n", id);
        return id;
    }
    if (json_is_false(s)) return fail(c, path, "the schema false allows no value"), -1;
    if (!json_is_object(s)) return fail(c, path, "a schema must be an object or a boolean"), -1;
    if (c->depth >= JSON_SCHEMA_MAX_DEPTH) return fail(c, path, "the schema nests too deeply"), -1;
    /* check_keywords refused this already, unless a $ref led outside the subschemas it walks. */
    const char *key = unknown_keyword(s);
    if (key) return fail(c, path, "keyword '%s' is not supported", key), -1;
    const json_t *v;
    bool constraints = false; /* anything beside annotations */
    json_object_foreach((json_t *)s, key, v) constraints |= !in_list(annotations, key);
    const json_t *ref = json_object_get(s, "$ref"), *any = json_object_get(s, "anyOf");
    const json_t *cst = json_object_get(s, "const"), *en = json_object_get(s, "enum");
    const json_t *type = json_object_get(s, "type");
    if (!constraints) {
        use(c, NEED_VALUE);
        int id = new_rule(c);
        put(c, &c->out, "s%d ::= value\n", id);
        return id;
    }
    if (ref || any) {
        json_object_foreach((json_t *)s, key, v) if (!in_list(annotations, key) && strcmp(key, ref ? "$ref" : "anyOf"))
            return fail(c, path, "keyword '%s' beside '%s' is not supported", key, ref ? "$ref" : "anyOf"), -1;
    }
    if (ref) {
        if (!json_is_string(ref)) return fail(c, path, "'$ref' must be a string"), -1;
        return ref_rule(c, json_string_value(ref), path);
    }
    c->depth++;
    buf body;
    buf_init(&body, 0);
    char sub[600];
    if (any) {
        if (!json_is_array(any) || json_array_size(any) == 0)
            fail(c, path, "'anyOf' must be a non-empty array");
        size_t i;
        json_array_foreach(any, i, v) {
            snprintf(sub, sizeof sub, "%s.anyOf[%zu]", path, i);
            int id = gen(c, v, sub);
            if (id < 0) break;
            put(c, &body, "%ss%d", i ? " | " : "", id);
        }
    } else if (cst || en) {
        if (en && (!json_is_array(en) || json_array_size(en) == 0)) fail(c, path, "'enum' must be a non-empty array");
        int n = 0;
        if (cst && type_allows(type, cst)) json_lit(c, &body, cst), n++;
        size_t i;
        json_array_foreach(en, i, v) {
            if (!type_allows(type, v) || (cst && !json_equal(v, cst))) continue;
            put(c, &body, "%s", n++ ? " | " : "");
            json_lit(c, &body, v);
        }
        if (!n) fail(c, path, "no value of 'enum'/'const' fits the schema");
    } else if (type) {
        if (json_is_string(type)) {
            type_body(c, &body, s, json_string_value(type), path);
        } else if (json_is_array(type) && json_array_size(type) > 0) {
            size_t i;
            json_array_foreach(type, i, v) {
                if (!json_is_string(v)) {
                    fail(c, path, "'type' must be a string or a list of strings");
                    break;
                }
                put(c, &body, "%s( ", i ? " | " : "");
                type_body(c, &body, s, json_string_value(v), path);
                put(c, &body, " )");
            }
        } else {
            fail(c, path, "'type' must be a string or a list of strings");
        }
    } else { /* no type: infer it from the keywords */
        const char *t = NULL;
        int kinds = 0;
        if (has_any(s, kw_object)) t = "object", kinds++;
        if (has_any(s, kw_array)) t = "array", kinds++;
        if (has_any(s, kw_string)) t = "string", kinds++;
        if (has_any(s, kw_number)) t = "number", kinds++;
        if (kinds > 1) fail(c, path, "keywords of several types without 'type' are not supported");
        else type_body(c, &body, s, t ? t : "object", path);
    }
    c->depth--;
    int id = -1;
    if (!c->rc) {
        id = new_rule(c);
        emit_rule(c, id, &body);
    }
    buf_free(&body);
    return c->rc || c->nomem ? -1 : id;
}

/* Every subschema of the document, whether generation reaches it or not (a
 * $defs entry nothing refers to, items beside type "object", properties
 * beside enum): a keyword that is not supported is refused wherever it
 * stands, so none is silently ignored. Supported keywords' values are checked
 * where generation uses them. Paths are the ones gen writes. */
static void check_keywords(jsc *c, const json_t *s, const char *path, int depth) {
    if (c->rc || !json_is_object(s)) return;
    if (depth > JSON_SCHEMA_MAX_DEPTH) return fail(c, path, "the schema nests too deeply");
    const char *bad = unknown_keyword(s);
    if (bad) return fail(c, path, "keyword '%s' is not supported", bad);
    static const char *const maps[] = {"properties", "$defs", "definitions"};
    static const char *const lists[] = {"anyOf", "items"}; /* (tuple items are refused where used) */
    static const char *const single[] = {"items", "additionalProperties"};
    char sub[600];
    const char *key;
    const json_t *v;
    size_t i;
    for (size_t m = 0; m < sizeof maps / sizeof *maps; m++) {
        const json_t *map = json_object_get(s, maps[m]);
        json_object_foreach((json_t *)map, key, v) {
            snprintf(sub, sizeof sub, "%s.%s.%s", path, maps[m], key);
            check_keywords(c, v, sub, depth + 1);
        }
    }
    for (size_t m = 0; m < sizeof lists / sizeof *lists; m++)
        json_array_foreach(json_object_get(s, lists[m]), i, v) {
            snprintf(sub, sizeof sub, "%s.%s[%zu]", path, lists[m], i);
            check_keywords(c, v, sub, depth + 1);
        }
    for (size_t m = 0; m < sizeof single / sizeof *single; m++) {
        snprintf(sub, sizeof sub, "%s.%s", path, single[m]);
        check_keywords(c, json_object_get(s, single[m]), sub, depth + 1);
    }
}

static int finish(jsc *c, char **gbnf) {
    for (size_t i = 0; i < sizeof prim_rules / sizeof *prim_rules; i++)
        if (c->need & (1u << i)) put(c, &c->out, "%s", prim_rules[i]);
    int rc = c->rc ? c->rc : c->nomem ? -SMP_E_NOMEM : 0;
    if (c->nomem && !c->rc) snprintf(c->err, c->errlen, "out of memory compiling the schema");
    for (int i = 0; i < c->n_refs; i++) smp_free(c->refs[i].key);
    smp_free(c->refs);
    if (rc) {
        buf_free(&c->out);
        return rc;
    }
    *gbnf = buf_detach(&c->out, NULL);
    return 0;
}

int json_schema_to_gbnf(const json_t *schema, char **gbnf, char *err, size_t errlen) {
    *gbnf = NULL;
    jsc c = {.root = schema, .root_path = "schema", .err = err, .errlen = errlen};
    buf_init(&c.out, 0);
    check_keywords(&c, schema, c.root_path, 0);
    int top = gen(&c, schema, c.root_path);
    if (top >= 0) put(&c, &c.out, "root ::= s%d\n", top);
    return finish(&c, gbnf);
}

int json_schema_rules(const json_t *const *schemas, int n, const char *const *paths, char **gbnf, char *err,
                      size_t errlen) {
    *gbnf = NULL;
    jsc c = {.err = err, .errlen = errlen};
    buf_init(&c.out, 0);
    for (int i = 0; i < n && !c.rc && !c.nomem; i++) {
        /* $refs are local to each schema: forget the previous one's. */
        for (int k = 0; k < c.n_refs; k++) smp_free(c.refs[k].key);
        c.n_refs = 0;
        c.root = schemas[i];
        c.root_path = paths[i];
        check_keywords(&c, schemas[i], paths[i], 0);
        int top = gen(&c, schemas[i], paths[i]);
        if (top >= 0) put(&c, &c.out, "schema%d ::= s%d\n", i, top);
    }
    return finish(&c, gbnf);
}

/* ---- the cache ---- */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char *key;
    grammar *g;
    uint64_t used;
} cache[JSON_SCHEMA_CACHE];
static uint64_t cache_clock;

void json_schema_cache_clear(void) {
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < JSON_SCHEMA_CACHE; i++) {
        smp_free(cache[i].key);
        grammar_free(cache[i].g);
        cache[i].key = NULL;
        cache[i].g = NULL;
    }
    pthread_mutex_unlock(&cache_lock);
}

int json_schema_compile(const json_t *schema, grammar **out, char *err, size_t errlen) {
    *out = NULL;
    char *key = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!key) return -SMP_E_NOMEM;
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < JSON_SCHEMA_CACHE; i++)
        if (cache[i].key && !strcmp(cache[i].key, key)) {
            cache[i].used = ++cache_clock;
            *out = grammar_ref(cache[i].g);
            break;
        }
    pthread_mutex_unlock(&cache_lock);
    if (*out) {
        json_text_free(key);
        return 0;
    }
    char *gbnf = NULL;
    int rc = json_schema_to_gbnf(schema, &gbnf, err, errlen);
    if (rc == 0) {
        rc = grammar_parse(gbnf, strlen(gbnf), out, err, errlen);
        if (rc == -SMP_E_VALIDATION) { /* e.g. too many optional properties at once */
            char inner[256];
            snprintf(inner, sizeof inner, "%s", err);
            snprintf(err, errlen, "schema: cannot be compiled: %s", inner);
        }
    }
    smp_free(gbnf);
    if (rc == 0) {
        pthread_mutex_lock(&cache_lock);
        int victim = 0;
        for (int i = 1; i < JSON_SCHEMA_CACHE; i++)
            if (cache[i].used < cache[victim].used) victim = i;
        smp_free(cache[victim].key);
        grammar_free(cache[victim].g);
        cache[victim].key = smp_strdup(key);
        cache[victim].g = cache[victim].key ? grammar_ref(*out) : NULL;
        cache[victim].used = ++cache_clock;
        pthread_mutex_unlock(&cache_lock);
    }
    json_text_free(key);
    return rc;
}

int json_schema_any_object(grammar **out, char *err, size_t errlen) {
    json_t *s = json_pack("{s:s}", "type", "object");
    if (!s) return -SMP_E_NOMEM;
    int rc = json_schema_compile(s, out, err, errlen);
    json_decref(s);
    return rc;
}
