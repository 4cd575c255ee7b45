/* tokenizer.c - SentencePiece, byte-level BPE and WordPiece tokenizers built
 * from a GGUF's tokenizer.ggml.* metadata, plus the detokenizers.
 *
 * Data (all owned by struct tokenizer, copied out of the gguf at load):
 *   text_pool/text_off   every token's text, back to back; id -> [off[id], off[id+1])
 *   hash                 open-addressing table text -> id (FNV-1a, linear probing)
 *   merges               open-addressing table (left id, right id) -> (rank, merged id)
 *   piece_pool/piece_off the bytes each token decodes to (U+2581 -> ' ', <0xXX> -> byte,
 *                        byte-level code points -> bytes), computed once at load
 *   specials             control / unknown / user-defined ids, longest text first,
 *                        for recognising them inside the input text
 *
 * Encoding, as the reference GGUF ecosystem (llama.cpp) does it, so ids match:
 *  1. the text is cut into fragments around special tokens (user-defined always,
 *     control/unknown only with parse_special), longest special first;
 *  2. each raw fragment goes to the model's algorithm:
 *     SPM  space prefix + ' ' -> U+2581, then repeatedly merge the adjacent pair
 *          whose merged text is a token with the highest score (ties: leftmost);
 *          symbols that are not tokens fall back to <0xXX> byte tokens;
 *     BPE  the pre-tokenizer (hand-written scanners equal to the reference
 *          regexes, applied in sequence: every match and every gap between
 *          matches becomes a chunk) splits the fragment; each chunk's bytes map
 *          to byte-level symbols that merge lowest rank first (ties: leftmost);
 *     WPM  BERT normalisation then greedy longest-match-first per word.
 * Merging uses a binary heap of candidate pairs over a linked list of symbols,
 * so a fragment of n symbols costs O(n log n). tok_encode_max bounds that work
 * for callers with a token limit: no id covers more input bytes than the
 * longest vocabulary entry (max_token_len), so SPM and BPE, which drop no
 * byte, refuse a text longer than limit * max_token_len before encoding. */
#define _GNU_SOURCE /* memmem, qsort_r */
#include "engine/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/log.h"
#include "engine/unicode.h"

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

/* Pre-tokenizer families (tokenizer.ggml.pre). */
typedef enum {
    PRE_DEFAULT, PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_FALCON, PRE_STARCODER,
    PRE_DEEPSEEK_LLM, PRE_DEEPSEEK_CODER, PRE_BLOOM, PRE_VIKING
} pre_kind;

/* One split pattern: a hand-written scanner equal to one reference regex. */
typedef enum {
    PAT_END = 0,
    PAT_GPT2,         /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    PAT_LLAMA3,       /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
                         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    PAT_QWEN2,        /* the same with \p{N} instead of \p{N}{1,3} */
    PAT_PUNCT_FALCON, /* [\p{P}\$\+<=>\^~\|`]+ */
    PAT_PUNCT_DEFAULT,/* [\p{P}\$\+<=>\^~\|]+ */
    PAT_DIGITS3,      /* [0-9][0-9][0-9] */
    PAT_NUM1,         /* \p{N} */
    PAT_NUMS,         /* \p{N}+ */
    PAT_NEWLINE,      /* [\r\n] */
    PAT_DS_LETTERS,   /* \s?[A-Za-zµÀ-Ö...]+ (deepseek letter ranges) */
    PAT_DS_PUNCT,     /* \s?[!-/:-~！-／：-～‘-‟　-。]+ */
    PAT_TRAIL_SPACE,  /* \s+$ */
    PAT_CJK,          /* [一-龥ࠀ-一가-퟿]+ */
    PAT_SPACE_LETTERS,/* \s?\p{L}+ */
    PAT_SPACE_PUNCTS, /* \s?\p{P}+ */
    PAT_BLOOM,        /*  ?[^(\s|.,!?…。，、।۔،)]+ */
} pattern;

#define MAX_PATTERNS 7

static const struct {
    const char *name;
    pre_kind kind;
} pre_names[] = {
    {"default", PRE_DEFAULT},       {"llama3", PRE_LLAMA3},          {"llama-v3", PRE_LLAMA3},
    {"llama-bpe", PRE_LLAMA3},      {"falcon3", PRE_LLAMA3},         {"dbrx", PRE_LLAMA3},
    {"smaug-bpe", PRE_LLAMA3},      {"chatglm-bpe", PRE_LLAMA3},     {"deepseek-llm", PRE_DEEPSEEK_LLM},
    {"deepseek-coder", PRE_DEEPSEEK_CODER}, {"falcon", PRE_FALCON},  {"mpt", PRE_GPT2},
    {"starcoder", PRE_STARCODER},   {"gpt-2", PRE_GPT2},             {"gpt2", PRE_GPT2},
    {"phi-2", PRE_GPT2},            {"jina-es", PRE_GPT2},           {"jina-de", PRE_GPT2},
    {"gigachat", PRE_GPT2},         {"jina-v1-en", PRE_GPT2},        {"jina-v2-es", PRE_GPT2},
    {"jina-v2-de", PRE_GPT2},       {"jina-v2-code", PRE_GPT2},      {"roberta-bpe", PRE_GPT2},
    {"olmo", PRE_GPT2},             {"jais", PRE_GPT2},              {"refact", PRE_STARCODER},
    {"command-r", PRE_STARCODER},   {"smollm", PRE_STARCODER},       {"codeshell", PRE_STARCODER},
    {"exaone", PRE_STARCODER},      {"minerva-7b", PRE_STARCODER},   {"qwen2", PRE_QWEN2},
    {"stablelm2", PRE_QWEN2},       {"megrez", PRE_QWEN2},           {"poro-chat", PRE_BLOOM},
    {"bloom", PRE_BLOOM},           {"gpt3-finnish", PRE_BLOOM},     {"viking", PRE_VIKING},
};

static const pattern pre_patterns[][MAX_PATTERNS] = {
    [PRE_DEFAULT] = {PAT_PUNCT_DEFAULT, PAT_GPT2, PAT_NUMS, PAT_DIGITS3},
    [PRE_GPT2] = {PAT_GPT2},
    [PRE_LLAMA3] = {PAT_LLAMA3},
    [PRE_QWEN2] = {PAT_QWEN2},
    [PRE_FALCON] = {PAT_PUNCT_FALCON, PAT_GPT2, PAT_DIGITS3},
    [PRE_STARCODER] = {PAT_NUM1, PAT_GPT2},
    [PRE_DEEPSEEK_LLM] = {PAT_NEWLINE, PAT_DS_LETTERS, PAT_DS_PUNCT, PAT_TRAIL_SPACE, PAT_CJK, PAT_NUMS},
    [PRE_DEEPSEEK_CODER] = {PAT_NEWLINE, PAT_SPACE_LETTERS, PAT_SPACE_PUNCTS, PAT_CJK, PAT_NUM1},
    [PRE_BLOOM] = {PAT_BLOOM},
    [PRE_VIKING] = {PAT_BLOOM, PAT_NUM1},
};

typedef struct {
    int32_t rank;
    int32_t result;
    uint64_t key; /* ((left id << 32) | right id) + 1, so that 0 marks an empty slot */
} merge_slot;

struct tokenizer {
    tok_kind kind;
    pre_kind pre;
    int32_t n_vocab;

    char *text_pool;
    uint32_t *text_off; /* n_vocab + 1 */
    float *scores;      /* SPM only; NULL otherwise */
    uint8_t *types;     /* tok_type per id */
    uint8_t *eog;       /* 1 if the id ends generation */

    int32_t *hash;      /* text -> id; -1 empty */
    uint32_t hash_mask;

    merge_slot *merges; /* BPE only */
    uint32_t merge_mask;

    char *piece_pool;
    uint32_t *piece_off; /* n_vocab + 1 */

    int32_t *specials;   /* control/unknown/user-defined ids, longest text first */
    size_t n_specials;
    uint8_t special_first[32]; /* bitmap of first bytes of special texts */
    uint32_t *special_lens;    /* distinct special text lengths, longest first */
    size_t n_special_lens;

    int32_t byte_tok[256];     /* SPM: <0xXX> token; BPE: token of the byte-level char */
    uint32_t byte_cp[256];     /* BPE byte -> code point */
    int16_t cp_byte[324];      /* BPE code point -> byte, -1 if none */

    int32_t bos, eos, unk, sep, pad, eot, eom;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    uint32_t max_token_len;
    /* Most input bytes one id can stand for (max_token_len), when every byte
     * of a text ends up in some id (SPM and BPE with all byte tokens); 0 when
     * encoding may drop bytes (WordPiece cleaning), so no bound is known. */
    uint32_t max_bytes_per_id;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

typedef struct {
    int32_t *v;
    size_t n, cap;
} idvec;

static int idvec_push(idvec *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = smp_realloc(a->v, cap * sizeof(*v));
        if (!v) return -SMP_E_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

/* Make *p hold at least `need` elements of size `elem`. */
static int grow(void *pp, size_t *cap, size_t need, size_t elem) {
    void **p = pp;
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = smp_realloc(*p, c * elem);
    if (!q) return -SMP_E_NOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static const char *text_of(const tokenizer *t, int32_t id, size_t *len) {
    *len = t->text_off[id + 1] - t->text_off[id];
    return t->text_pool + t->text_off[id];
}

int32_t tok_lookup(const tokenizer *t, const char *s, size_t n) {
    if (!t || (n && !s)) return -1;
    uint32_t i = fnv1a(s, n) & t->hash_mask;
    for (;;) {
        int32_t id = t->hash[i];
        if (id < 0) return -1;
        size_t len;
        const char *txt = text_of(t, id, &len);
        if (len == n && memcmp(txt, s, n) == 0) return id;
        i = (i + 1) & t->hash_mask;
    }
}

static const merge_slot *merge_find(const tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = (uint32_t)mix64(key) & t->merge_mask;
    for (;;) {
        const merge_slot *s = &t->merges[i];
        if (s->key == 0) return NULL;
        if (s->key == key) return s;
        i = (i + 1) & t->merge_mask;
    }
}

/* ------------------------------------------------------------------------ */
/* Binary heap of merge candidates (shared by SPM and BPE)                  */
/* ------------------------------------------------------------------------ */

typedef struct {
    double key;    /* smaller pops first: BPE rank, or -score for SPM */
    int left, right;
    int32_t a, b;   /* BPE: the ids the pair had when queued */
    int32_t merged; /* BPE: the id of the merged pair */
    uint32_t size;  /* SPM: byte length of the merged text */
} cand;

typedef struct {
    cand *v;
    size_t n, cap;
} heap;

static bool cand_less(const cand *x, const cand *y) {
    return x->key < y->key || (x->key == y->key && x->left < y->left);
}

static int heap_push(heap *h, cand c) {
    if (grow(&h->v, &h->cap, h->n + 1, sizeof(cand))) return -SMP_E_NOMEM;
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = c;
    return 0;
}

static cand heap_pop(heap *h) {
    cand top = h->v[0];
    cand last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < h->n && cand_less(&h->v[l], best)) { m = l; best = &h->v[l]; }
        if (r < h->n && cand_less(&h->v[r], best)) { m = r; }
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n > 0) h->v[i] = last;
    return top;
}

/* Per-call working memory, freed at the end of tok_encode. */
typedef struct {
    heap h;
    /* symbols */
    int *prev, *next;
    int32_t *sid;     /* BPE: current id of each symbol */
    uint32_t *sstart, *slen; /* SPM: byte span of each symbol */
    size_t sym_cap;
    /* code points of a fragment */
    uint32_t *cp;
    uint8_t *fl;
    size_t *off;
    size_t cp_cap, fl_cap, off_cap;
    /* chunks from the pre-tokenizer, as code point index pairs */
    size_t *ch, *ch2;
    size_t ch_cap, ch2_cap;
    /* byte scratch (escaped SPM text, encoded BPE chunk, WordPiece word) */
    char *bytes;
    size_t bytes_cap;
    uint32_t *cp2;
    size_t cp2_cap;
} scratch;

static void scratch_free(scratch *s) {
    smp_free(s->h.v);
    smp_free(s->prev);
    smp_free(s->next);
    smp_free(s->sid);
    smp_free(s->sstart);
    smp_free(s->slen);
    smp_free(s->cp);
    smp_free(s->fl);
    smp_free(s->off);
    smp_free(s->ch);
    smp_free(s->ch2);
    smp_free(s->bytes);
    smp_free(s->cp2);
}

static int scratch_symbols(scratch *s, size_t n) {
    if (n <= s->sym_cap) return 0;
    size_t cap = s->sym_cap;
    size_t c2 = cap, c3 = cap, c4 = cap, c5 = cap;
    if (grow(&s->prev, &cap, n, sizeof(int)) || grow(&s->next, &c2, n, sizeof(int)) ||
        grow(&s->sid, &c3, n, sizeof(int32_t)) || grow(&s->sstart, &c4, n, sizeof(uint32_t)) ||
        grow(&s->slen, &c5, n, sizeof(uint32_t)))
        return -SMP_E_NOMEM;
    s->sym_cap = cap;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Pre-tokenizer scanners                                                   */
/* ------------------------------------------------------------------------ */

enum { F_L = 1, F_N = 2, F_S = 4, F_P = 8, F_NL = 16 };

/* Character classes the patterns test. */
typedef enum {
    C_L, C_N, C_S, C_P, C_NL, C_SPACE, C_OTHER, C_NOT_NLLN, C_PUNCT_FALCON,
    C_PUNCT_DEFAULT, C_DIGIT, C_DS_LETTER, C_DS_PUNCT, C_CJK, C_BLOOM
} cclass;

typedef struct {
    const uint32_t *cp;
    const uint8_t *fl;
    size_t end;
} pre_ctx;

/* Letter ranges of deepseek-llm's second split (from its tokenizer.json). */
static const uint32_t ds_letter_ranges[][2] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
    {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
    {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
/* Punctuation ranges of deepseek-llm's third split. */
static const uint32_t ds_punct_ranges[][2] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0x2018, 0x201F}, {0x3000, 0x3002}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E},
};
/* [一-龥ࠀ-一가-퟿]: U+4E00-9FA5, U+0800-4E00, U+AC00-D7FF. */
static const uint32_t cjk_ranges[][2] = {{0x0800, 0x9FA5}, {0xAC00, 0xD7FF}};

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

#define RANGES(r) (r), (sizeof(r) / sizeof((r)[0]))

static bool is_class(const pre_ctx *c, size_t i, cclass k) {
    uint32_t cp = c->cp[i];
    uint8_t f = c->fl[i];
    switch (k) {
    case C_L: return f & F_L;
    case C_N: return f & F_N;
    case C_S: return f & F_S;
    case C_P: return f & F_P;
    case C_NL: return f & F_NL;
    case C_SPACE: return cp == ' ';
    case C_OTHER: return !(f & (F_S | F_L | F_N));
    case C_NOT_NLLN: return !(f & (F_NL | F_L | F_N));
    case C_PUNCT_FALCON:
        return (f & F_P) || (cp < 0x80 && strchr("$+<=>^~|`", (int)cp) && cp);
    case C_PUNCT_DEFAULT:
        return (f & F_P) || (cp < 0x80 && strchr("$+<=>^~|", (int)cp) && cp);
    case C_DIGIT: return cp >= '0' && cp <= '9';
    case C_DS_LETTER: return in_ranges(RANGES(ds_letter_ranges), cp);
    case C_DS_PUNCT: return in_ranges(RANGES(ds_punct_ranges), cp);
    case C_CJK: return in_ranges(RANGES(cjk_ranges), cp);
    case C_BLOOM:
        if (f & F_S) return false;
        if (cp < 0x80) return !(cp && strchr("(|.,!?)", (int)cp));
        return cp != 0x2026 && cp != 0x3002 && cp != 0xFF0C && cp != 0x3001 &&
               cp != 0x0964 && cp != 0x06D4 && cp != 0x060C;
    }
    return false;
}

/* Length of the run of class k starting at i. */
static size_t span(const pre_ctx *c, size_t i, cclass k) {
    size_t j = i;
    while (j < c->end && is_class(c, j, k)) j++;
    return j - i;
}

/* opt? run+ : an optional character of class opt, then one or more of run. */
static size_t opt_run(const pre_ctx *c, size_t pos, cclass opt, cclass run) {
    if (is_class(c, pos, opt) && pos + 1 < c->end && is_class(c, pos + 1, run))
        return 1 + span(c, pos + 1, run);
    return span(c, pos, run);
}

/* Case folding as the reference regex engine does it for these letters (ASCII,
 * plus U+017F LATIN SMALL LETTER LONG S, which folds to 's'). */
static uint32_t fold(uint32_t cp) {
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    return cp == 0x17F ? 's' : cp;
}

/* 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive. */
static size_t m_contraction(const pre_ctx *c, size_t pos, bool ci) {
    if (c->cp[pos] != '\'' || pos + 1 >= c->end) return 0;
    uint32_t a = c->cp[pos + 1], b = pos + 2 < c->end ? c->cp[pos + 2] : 0;
    if (ci) {
        a = fold(a);
        b = fold(b);
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S)|\s+ : a whitespace run, leaving its last character to the next
 * word when one follows. */
static size_t m_space_tail(const pre_ctx *c, size_t pos) {
    size_t k = span(c, pos, C_S);
    if (k >= 2 && pos + k < c->end) return k - 1;
    return k;
}

static size_t m_gpt2(const pre_ctx *c, size_t pos) {
    size_t n;
    if ((n = m_contraction(c, pos, false))) return n;
    if ((n = opt_run(c, pos, C_SPACE, C_L))) return n;
    if ((n = opt_run(c, pos, C_SPACE, C_N))) return n;
    if ((n = opt_run(c, pos, C_SPACE, C_OTHER))) return n;
    return m_space_tail(c, pos);
}

static size_t m_llama3(const pre_ctx *c, size_t pos, size_t max_digits) {
    size_t n;
    if ((n = m_contraction(c, pos, true))) return n;
    if ((n = opt_run(c, pos, C_NOT_NLLN, C_L))) return n;
    if ((n = span(c, pos, C_N))) return n < max_digits ? n : max_digits;
    if ((n = opt_run(c, pos, C_SPACE, C_OTHER))) return n + span(c, pos + n, C_NL);
    /* \s*[\r\n]+ : the whitespace run up to and including its last newline */
    if ((n = span(c, pos, C_S))) {
        for (size_t j = pos + n; j > pos; j--)
            if (c->fl[j - 1] & F_NL) return j - pos;
    }
    return m_space_tail(c, pos);
}

/* Length of the match of p starting exactly at pos (0: no match). */
static size_t match_at(const pre_ctx *c, pattern p, size_t pos) {
    switch (p) {
    case PAT_GPT2: return m_gpt2(c, pos);
    case PAT_LLAMA3: return m_llama3(c, pos, 3);
    case PAT_QWEN2: return m_llama3(c, pos, 1);
    case PAT_PUNCT_FALCON: return span(c, pos, C_PUNCT_FALCON);
    case PAT_PUNCT_DEFAULT: return span(c, pos, C_PUNCT_DEFAULT);
    case PAT_DIGITS3:
        return (pos + 3 <= c->end && is_class(c, pos, C_DIGIT) && is_class(c, pos + 1, C_DIGIT) &&
                is_class(c, pos + 2, C_DIGIT)) ? 3 : 0;
    case PAT_NUM1: return is_class(c, pos, C_N) ? 1 : 0;
    case PAT_NUMS: return span(c, pos, C_N);
    case PAT_NEWLINE: return is_class(c, pos, C_NL) ? 1 : 0;
    case PAT_DS_LETTERS: return opt_run(c, pos, C_S, C_DS_LETTER);
    case PAT_DS_PUNCT: return opt_run(c, pos, C_S, C_DS_PUNCT);
    case PAT_CJK: return span(c, pos, C_CJK);
    case PAT_SPACE_LETTERS: return opt_run(c, pos, C_S, C_L);
    case PAT_SPACE_PUNCTS: return opt_run(c, pos, C_S, C_P);
    case PAT_BLOOM: return opt_run(c, pos, C_SPACE, C_BLOOM);
    case PAT_TRAIL_SPACE: /* handled by split_chunk */
    case PAT_END: break;
    }
    return 0;
}

static int emit_chunk(size_t **v, size_t *n, size_t *cap, size_t a, size_t b) {
    if (a >= b) return 0;
    if (grow(v, cap, *n + 2, sizeof(size_t))) return -SMP_E_NOMEM;
    (*v)[(*n)++] = a;
    (*v)[(*n)++] = b;
    return 0;
}

/* Split [s, e) by pattern p: every match and every gap becomes a chunk. */
static int split_chunk(pre_ctx *c, pattern p, size_t s, size_t e, size_t **v, size_t *n, size_t *cap) {
    c->end = e;
    if (p == PAT_TRAIL_SPACE) {
        size_t q = e;
        while (q > s && (c->fl[q - 1] & F_S)) q--;
        if (emit_chunk(v, n, cap, s, q) || emit_chunk(v, n, cap, q, e)) return -SMP_E_NOMEM;
        return 0;
    }
    size_t gap = s, pos = s;
    while (pos < e) {
        size_t m = match_at(c, p, pos);
        if (m == 0) {
            pos++;
            continue;
        }
        if (emit_chunk(v, n, cap, gap, pos) || emit_chunk(v, n, cap, pos, pos + m)) return -SMP_E_NOMEM;
        pos += m;
        gap = pos;
    }
    return emit_chunk(v, n, cap, gap, e);
}

/* Decode text[0..len) into code points with flags; off[i] is the byte offset of
 * code point i, off[n] = len. Returns the number of code points or -1. */
static long decode_fragment(scratch *s, const char *text, size_t len) {
    if (grow(&s->cp, &s->cp_cap, len + 1, sizeof(uint32_t)) ||
        grow(&s->fl, &s->fl_cap, len + 1, sizeof(uint8_t)) ||
        grow(&s->off, &s->off_cap, len + 1, sizeof(size_t)))
        return -1;
    size_t n = 0, i = 0;
    while (i < len) {
        uint32_t cp;
        size_t l = unicode_utf8_decode(text + i, len - i, &cp);
        uint8_t f = 0;
        if (cp < 0x80) {
            if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') f = F_L;
            else if (cp >= '0' && cp <= '9') f = F_N;
            else if (cp == ' ' || (cp >= 9 && cp <= 13)) f = F_S;
            else if (cp > ' ' && cp < 0x7F && strchr("!\"#%&'()*,-./:;?@[\\]_{}", (int)cp)) f = F_P;
            if (cp == '\r' || cp == '\n') f |= F_NL;
        } else {
            unicode_cat k = unicode_category(cp);
            if (k <= UNICODE_LO) f = F_L;
            else if (k >= UNICODE_ND && k <= UNICODE_NO) f = F_N;
            else if (k >= UNICODE_PC && k <= UNICODE_PO) f = F_P;
            if (unicode_is_space(cp)) f |= F_S;
        }
        s->cp[n] = cp;
        s->fl[n] = f;
        s->off[n] = i;
        n++;
        i += l;
    }
    s->off[n] = len;
    return (long)n;
}

/* ------------------------------------------------------------------------ */
/* BPE                                                                      */
/* ------------------------------------------------------------------------ */

static int bpe_add_pair(const tokenizer *t, scratch *s, int left, int right) {
    if (left < 0 || right < 0) return 0;
    int32_t a = s->sid[left], b = s->sid[right];
    if (a < 0 || b < 0) return 0;
    const merge_slot *m = merge_find(t, a, b);
    if (!m) return 0;
    cand c = {.key = m->rank, .left = left, .right = right, .a = a, .b = b, .merged = m->result};
    return heap_push(&s->h, c);
}

/* Merge one pre-tokenizer chunk (raw bytes) and append its ids. */
static int bpe_word(const tokenizer *t, scratch *s, const char *w, size_t n, idvec *out) {
    int rc;
    if (t->ignore_merges) {
        /* the whole chunk, byte-level encoded, may already be a token */
        if (grow(&s->bytes, &s->bytes_cap, 2 * n, 1)) return -SMP_E_NOMEM;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += unicode_utf8_encode(t->byte_cp[(unsigned char)w[i]], s->bytes + k);
        int32_t id = tok_lookup(t, s->bytes, k);
        if (id >= 0) return idvec_push(out, id);
    }
    if ((rc = scratch_symbols(s, n))) return rc;
    for (size_t i = 0; i < n; i++) {
        s->sid[i] = t->byte_tok[(unsigned char)w[i]];
        s->prev[i] = (int)i - 1;
        s->next[i] = i + 1 < n ? (int)i + 1 : -1;
    }
    s->h.n = 0;
    for (size_t i = 1; i < n; i++)
        if ((rc = bpe_add_pair(t, s, (int)i - 1, (int)i))) return rc;
    while (s->h.n > 0) {
        cand c = heap_pop(&s->h);
        /* stale if either side merged since the pair was queued */
        if (s->next[c.left] != c.right || s->sid[c.left] != c.a || s->sid[c.right] != c.b) continue;
        s->sid[c.left] = c.merged;
        s->sid[c.right] = -2; /* dead */
        s->next[c.left] = s->next[c.right];
        if (s->next[c.right] >= 0) s->prev[s->next[c.right]] = c.left;
        s->next[c.right] = -1;
        if ((rc = bpe_add_pair(t, s, s->prev[c.left], c.left))) return rc;
        if ((rc = bpe_add_pair(t, s, c.left, s->next[c.left]))) return rc;
    }
    for (int i = 0; i >= 0; i = s->next[i])
        if (s->sid[i] >= 0 && (rc = idvec_push(out, s->sid[i]))) return rc;
    return 0;
}

static int bpe_fragment(const tokenizer *t, scratch *s, const char *text, size_t len, size_t max, idvec *out) {
    long ncp = decode_fragment(s, text, len);
    if (ncp < 0) return -SMP_E_NOMEM;
    pre_ctx c = {.cp = s->cp, .fl = s->fl, .end = (size_t)ncp};
    size_t n = 0;
    if (emit_chunk(&s->ch, &n, &s->ch_cap, 0, (size_t)ncp)) return -SMP_E_NOMEM;
    const pattern *pats = pre_patterns[t->pre];
    for (int k = 0; k < MAX_PATTERNS && pats[k] != PAT_END; k++) {
        size_t n2 = 0;
        for (size_t i = 0; i < n; i += 2)
            if (split_chunk(&c, pats[k], s->ch[i], s->ch[i + 1], &s->ch2, &n2, &s->ch2_cap))
                return -SMP_E_NOMEM;
        size_t *tmp = s->ch, tcap = s->ch_cap;
        s->ch = s->ch2;
        s->ch_cap = s->ch2_cap;
        s->ch2 = tmp;
        s->ch2_cap = tcap;
        n = n2;
    }
    for (size_t i = 0; i < n; i += 2) {
        size_t a = s->off[s->ch[i]], b = s->off[s->ch[i + 1]];
        int rc = bpe_word(t, s, text + a, b - a, out);
        if (rc) return rc;
        if (out->n > max) return -SMP_E_TOO_LARGE;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* SentencePiece                                                            */
/* ------------------------------------------------------------------------ */

/* Ids SPM may produce from plain text: not control, unknown or byte tokens. */
static int32_t spm_lookup(const tokenizer *t, const char *s, size_t n) {
    int32_t id = tok_lookup(t, s, n);
    if (id < 0) return -1;
    uint8_t ty = t->types[id];
    return (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN || ty == TOK_TYPE_BYTE) ? -1 : id;
}

static int spm_add_pair(const tokenizer *t, scratch *s, int left, int right) {
    if (left < 0 || right < 0) return 0;
    uint32_t size = s->slen[left] + s->slen[right];
    int32_t id = spm_lookup(t, s->bytes + s->sstart[left], size);
    if (id < 0) return 0;
    cand c = {.key = -(double)t->scores[id], .left = left, .right = right, .size = size};
    return heap_push(&s->h, c);
}

static int spm_fragment(const tokenizer *t, scratch *s, const char *text, size_t len, bool prefix,
                        idvec *out) {
    int rc;
    /* escape: optional leading space, every ' ' -> U+2581 (3 bytes) */
    if (grow(&s->bytes, &s->bytes_cap, 3 * (len + 1), 1)) return -SMP_E_NOMEM;
    size_t n = 0;
    if (prefix) {
        memcpy(s->bytes, "\xE2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s->bytes + n, "\xE2\x96\x81", 3);
            n += 3;
        } else {
            s->bytes[n++] = text[i];
        }
    }
    if ((rc = scratch_symbols(s, n))) return rc;
    size_t nsym = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = unicode_utf8_decode(s->bytes + i, n - i, &cp);
        s->sstart[nsym] = (uint32_t)i;
        s->slen[nsym] = (uint32_t)l;
        s->prev[nsym] = (int)nsym - 1;
        s->next[nsym] = i + l < n ? (int)nsym + 1 : -1;
        nsym++;
        i += l;
    }
    if (nsym == 0) return 0;
    s->h.n = 0;
    for (size_t i = 1; i < nsym; i++)
        if ((rc = spm_add_pair(t, s, (int)i - 1, (int)i))) return rc;
    while (s->h.n > 0) {
        cand c = heap_pop(&s->h);
        if (s->slen[c.left] == 0 || s->slen[c.right] == 0 || s->next[c.left] != c.right ||
            s->slen[c.left] + s->slen[c.right] != c.size)
            continue;
        s->slen[c.left] += s->slen[c.right];
        s->slen[c.right] = 0;
        s->next[c.left] = s->next[c.right];
        if (s->next[c.right] >= 0) s->prev[s->next[c.right]] = c.left;
        if ((rc = spm_add_pair(t, s, s->prev[c.left], c.left))) return rc;
        if ((rc = spm_add_pair(t, s, c.left, s->next[c.left]))) return rc;
    }
    for (int i = 0; i >= 0; i = s->next[i]) {
        const char *p = s->bytes + s->sstart[i];
        int32_t id = spm_lookup(t, p, s->slen[i]);
        if (id >= 0) {
            if ((rc = idvec_push(out, id))) return rc;
            continue;
        }
        /* not a piece: one byte token per byte */
        for (uint32_t j = 0; j < s->slen[i]; j++) {
            int32_t b = t->byte_tok[(unsigned char)p[j]];
            if (b < 0) b = t->unk;
            if (b >= 0 && (rc = idvec_push(out, b))) return rc;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* WordPiece                                                                */
/* ------------------------------------------------------------------------ */

/* CJK ideograph blocks that BERT isolates (with the reference's 0x2B920 start). */
static bool bert_is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static bool bert_is_punct(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
               (cp >= 123 && cp <= 126);
    return unicode_is_punct(cp);
}

#define WPM_MAX_WORD_CHARS 100

/* Greedy longest-match-first over one normalised word; [UNK] if any part fails. */
static int wpm_word(const tokenizer *t, scratch *s, const uint32_t *w, size_t n, idvec *out) {
    if (n > WPM_MAX_WORD_CHARS) return t->unk >= 0 ? idvec_push(out, t->unk) : 0;
    if (grow(&s->bytes, &s->bytes_cap, 3 + 4 * n, 1)) return -SMP_E_NOMEM;
    memcpy(s->bytes, "\xE2\x96\x81", 3); /* word starts carry U+2581 in the GGUF */
    size_t len = 3;
    for (size_t i = 0; i < n; i++) len += unicode_utf8_encode(w[i], s->bytes + len);
    size_t mark = out->n;
    for (size_t i = 0; i < len;) {
        size_t j = len - i > t->max_token_len ? i + t->max_token_len : len;
        int32_t id = -1;
        for (; j > i; j--)
            if ((id = tok_lookup(t, s->bytes + i, j - i)) >= 0) break;
        if (id < 0) {
            out->n = mark;
            return t->unk >= 0 ? idvec_push(out, t->unk) : 0;
        }
        int rc = idvec_push(out, id);
        if (rc) return rc;
        i = j;
    }
    return 0;
}

static int wpm_fragment(const tokenizer *t, scratch *s, const char *text, size_t len, idvec *out) {
    /* clean: \t \n \r -> ' '; drop NUL, U+FFFD and every other C* character
     * (so U+000B, U+000C and U+0085 go too); other whitespace -> ' ' */
    if (grow(&s->cp, &s->cp_cap, len + 1, sizeof(uint32_t))) return -SMP_E_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += unicode_utf8_decode(text + i, len - i, &cp);
        if (cp == '\t' || cp == '\n' || cp == '\r') {
            s->cp[n++] = ' ';
            continue;
        }
        if (cp == 0 || cp == UNICODE_REPLACEMENT || unicode_category(cp) >= UNICODE_CC) continue;
        s->cp[n++] = unicode_is_space(cp) ? ' ' : cp;
    }
    /* strip accents (NFD, drop Mn), then lowercase */
    if (grow(&s->cp2, &s->cp2_cap, 4 * n + 1, sizeof(uint32_t))) return -SMP_E_NOMEM;
    size_t m = unicode_nfd(s->cp, n, s->cp2, 4 * n + 1), k = 0;
    for (size_t i = 0; i < m; i++) {
        if (unicode_category(s->cp2[i]) == UNICODE_MN) continue;
        s->cp2[k++] = unicode_tolower(s->cp2[i]);
    }
    /* split on spaces; punctuation and CJK ideographs are words of their own */
    size_t start = 0;
    for (size_t i = 0; i <= k; i++) {
        uint32_t cp = i < k ? s->cp2[i] : ' ';
        bool space = cp == ' ' || unicode_is_space(cp);
        bool alone = !space && (bert_is_punct(cp) || bert_is_cjk(cp));
        if (!space && !alone) continue;
        int rc;
        if (i > start && (rc = wpm_word(t, s, s->cp2 + start, i - start, out))) return rc;
        if (alone && (rc = wpm_word(t, s, s->cp2 + i, 1, out))) return rc;
        start = i + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Special tokens in the text                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    size_t off, len;
    int32_t id; /* >= 0: a special token; -1: raw text [off, off+len) */
} frag;

typedef struct {
    frag *v;
    size_t n, cap;
} fragvec;

static int frag_push(fragvec *f, size_t off, size_t len, int32_t id) {
    if (grow(&f->v, &f->cap, f->n + 1, sizeof(frag))) return -SMP_E_NOMEM;
    f->v[f->n++] = (frag){off, len, id};
    return 0;
}

static bool special_wanted(const tokenizer *t, int32_t id, bool parse_special) {
    uint8_t ty = t->types[id];
    if (ty == TOK_TYPE_USER_DEFINED) return true;
    return parse_special && (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN);
}

static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0 || nn > hn) return NULL;
    return memmem(h, hn, nd, nn);
}

/* Cut text into raw and special fragments: for each special token present, longest
 * first, every occurrence inside a raw fragment becomes its own fragment. */
static int partition(const tokenizer *t, const char *text, size_t len, bool parse_special, fragvec *out) {
    int rc = 0;
    out->n = 0;
    if (len == 0) return 0;
    if ((rc = frag_push(out, 0, len, -1))) return rc;
    if (t->n_specials == 0) return 0;

    /* which specials occur at all? (a cheap scan, so that the exact passes
     * below only run for tokens that are present) */
    int32_t *found = NULL;
    size_t nfound = 0, found_cap = 0;
    fragvec next = {0};
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)text[i];
        if (!(t->special_first[b >> 3] & (1u << (b & 7)))) continue;
        for (size_t k = 0; k < t->n_special_lens; k++) {
            if (t->special_lens[k] > len - i) continue;
            int32_t id = tok_lookup(t, text + i, t->special_lens[k]);
            if (id < 0 || !special_wanted(t, id, parse_special)) continue;
            bool dup = false;
            for (size_t q = 0; q < nfound && !dup; q++) dup = found[q] == id;
            if (dup) continue;
            if (grow(&found, &found_cap, nfound + 1, sizeof(int32_t))) {
                rc = -SMP_E_NOMEM;
                goto done;
            }
            found[nfound++] = id;
        }
    }
    /* process in the order of t->specials (longest text first) */
    for (size_t k = 0; k < t->n_specials && nfound > 0; k++) {
        int32_t id = t->specials[k];
        bool present = false;
        for (size_t q = 0; q < nfound && !present; q++) present = found[q] == id;
        if (!present) continue;
        size_t sl;
        const char *st = text_of(t, id, &sl);
        next.n = 0;
        for (size_t i = 0; i < out->n; i++) {
            frag f = out->v[i];
            if (f.id >= 0) {
                if ((rc = frag_push(&next, f.off, f.len, f.id))) goto done;
                continue;
            }
            size_t pos = f.off, end = f.off + f.len;
            const char *hit;
            while ((hit = find_bytes(text + pos, end - pos, st, sl)) != NULL) {
                size_t h = (size_t)(hit - text);
                if (h > pos && (rc = frag_push(&next, pos, h - pos, -1))) goto done;
                if ((rc = frag_push(&next, h, sl, id))) goto done;
                pos = h + sl;
            }
            if (pos < end && (rc = frag_push(&next, pos, end - pos, -1))) goto done;
        }
        fragvec tmp = *out;
        *out = next;
        next = tmp;
    }
done:
    smp_free(found);
    smp_free(next.v);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Encode                                                                   */
/* ------------------------------------------------------------------------ */

int tok_encode_max(const tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                   size_t max, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (!t || (len && !text)) return -SMP_E_BAD_REQUEST;
    /* No id stands for more than max_bytes_per_id bytes: a longer text is
     * refused before any work (a 30 MB text would cost seconds and about
     * 30 times its size in scratch to encode in full). */
    if (tok_min_tokens(t, len) > max) {
        *n = tok_min_tokens(t, len);
        return -SMP_E_TOO_LARGE;
    }
    if (len > (size_t)INT32_MAX / 4) return -SMP_E_TOO_LARGE; /* symbol indexes are int */
    idvec out = {0};
    fragvec frags = {0};
    scratch s = {0};
    int rc = partition(t, text, len, parse_special, &frags);
    if (rc) goto fail;

    if (add_special && t->add_bos && t->bos >= 0 && (rc = idvec_push(&out, t->bos))) goto fail;
    bool prev_special = true; /* SPM: a space goes before the first raw fragment */
    for (size_t i = 0; i < frags.n; i++) {
        const frag *f = &frags.v[i];
        if (f->id >= 0) {
            if ((rc = idvec_push(&out, f->id))) goto fail;
            prev_special = true;
            continue;
        }
        const char *p = text + f->off;
        switch (t->kind) {
        case TOK_KIND_SPM:
            rc = spm_fragment(t, &s, p, f->len, t->add_space_prefix && prev_special, &out);
            break;
        case TOK_KIND_BPE: rc = bpe_fragment(t, &s, p, f->len, max, &out); break;
        case TOK_KIND_WPM: rc = wpm_fragment(t, &s, p, f->len, &out); break;
        }
        if (!rc && out.n > max) rc = -SMP_E_TOO_LARGE;
        if (rc) goto fail;
        prev_special = false;
    }
    if (add_special) {
        if (t->kind == TOK_KIND_WPM && t->sep >= 0 && (rc = idvec_push(&out, t->sep))) goto fail;
        if (t->add_eos && t->eos >= 0 && (rc = idvec_push(&out, t->eos))) goto fail;
    }
    if (out.n > max) {
        rc = -SMP_E_TOO_LARGE;
        goto fail;
    }
    smp_free(frags.v);
    scratch_free(&s);
    *ids = out.v;
    *n = out.n;
    return 0;
fail:
    if (rc == -SMP_E_TOO_LARGE) *n = out.n;
    smp_free(frags.v);
    scratch_free(&s);
    smp_free(out.v);
    return rc;
}

int tok_encode(const tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
               int32_t **ids, size_t *n) {
    return tok_encode_max(t, text, len, add_special, parse_special, SIZE_MAX, ids, n);
}

/* ------------------------------------------------------------------------ */
/* Decode                                                                   */
/* ------------------------------------------------------------------------ */

const char *tok_piece(const tokenizer *t, int32_t id, bool special, size_t *len) {
    *len = 0;
    if (!t || id < 0 || id >= t->n_vocab) return "";
    uint8_t ty = t->types[id];
    if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN) return special ? text_of(t, id, len) : "";
    *len = t->piece_off[id + 1] - t->piece_off[id];
    return t->piece_pool + t->piece_off[id];
}

static int put(buf *out, const void *p, size_t n) {
    return buf_append(out, p, n) ? -SMP_E_TOO_LARGE : 0;
}

/* Bytes to replace by one U+FFFD at an invalid sequence: the longest valid but
 * incomplete prefix (the "maximal subpart" of Unicode 15.0 section 3.9), at least 1. */
static size_t bad_len(const char *s, size_t n) {
    uint32_t cp;
    for (size_t k = n < 3 ? n : 3; k >= 2; k--)
        if (unicode_utf8_next(s, k, &cp) == 0) return k;
    return 1;
}

/* Append p[0..n) after the held-back bytes pend[0..*npend), writing only complete,
 * valid UTF-8 (invalid bytes -> U+FFFD) and keeping an incomplete tail in pend. */
static int utf8_feed(unsigned char *pend, size_t *npend, const char *p, size_t n, buf *out) {
    static const char repl[] = "\xEF\xBF\xBD";
    size_t i = 0;
    uint32_t cp;
    while (*npend > 0) {
        int r = unicode_utf8_next((const char *)pend, *npend, &cp);
        if (r == 0) {
            if (i >= n) return 0;
            pend[(*npend)++] = (unsigned char)p[i++];
            continue;
        }
        size_t drop = r > 0 ? (size_t)r : bad_len((const char *)pend, *npend);
        if (put(out, r > 0 ? (const void *)pend : repl, r > 0 ? drop : 3)) return -SMP_E_TOO_LARGE;
        memmove(pend, pend + drop, *npend - drop);
        *npend -= drop;
    }
    size_t run = i; /* start of the pending valid run */
    while (i < n) {
        int r = unicode_utf8_next(p + i, n - i, &cp);
        if (r > 0) {
            i += (size_t)r;
            continue;
        }
        if (put(out, p + run, i - run)) return -SMP_E_TOO_LARGE;
        if (r == 0) {
            memcpy(pend, p + i, n - i);
            *npend = n - i;
            return 0;
        }
        if (put(out, repl, 3)) return -SMP_E_TOO_LARGE;
        i += bad_len(p + i, n - i);
        run = i;
    }
    return put(out, p + run, i - run);
}

void tok_stream_init(tok_stream *s, const tokenizer *t, unsigned flags) {
    memset(s, 0, sizeof(*s));
    s->t = t;
    s->flags = flags;
}

int tok_stream_push(tok_stream *s, int32_t id, buf *out) {
    size_t len;
    const char *p = tok_piece(s->t, id, s->flags & TOK_DECODE_SPECIAL, &len);
    if (!s->started && len > 0) {
        s->started = true;
        bool marks_words = s->t->add_space_prefix || s->t->kind == TOK_KIND_WPM;
        if ((s->flags & TOK_DECODE_STRIP_SPACE) && marks_words && p[0] == ' ') {
            p++;
            len--;
        }
    }
    return utf8_feed(s->pend, &s->npend, p, len, out);
}

bool tok_stream_pending(const tok_stream *s) { return s->npend > 0; }

int tok_stream_flush(tok_stream *s, buf *out) {
    if (s->npend == 0) return 0;
    s->npend = 0;
    return put(out, "\xEF\xBF\xBD", 3);
}

int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, unsigned flags, buf *out) {
    tok_stream s;
    tok_stream_init(&s, t, flags);
    for (size_t i = 0; i < n; i++) {
        int rc = tok_stream_push(&s, ids[i], out);
        if (rc) return rc;
    }
    return tok_stream_flush(&s, out);
}

/* ------------------------------------------------------------------------ */
/* Accessors                                                                */
/* ------------------------------------------------------------------------ */

tok_kind tok_get_kind(const tokenizer *t) { return t->kind; }
int32_t tok_n_vocab(const tokenizer *t) { return t->n_vocab; }
int32_t tok_bos(const tokenizer *t) { return t->bos; }
int32_t tok_eos(const tokenizer *t) { return t->eos; }
int32_t tok_unk(const tokenizer *t) { return t->unk; }
int32_t tok_sep(const tokenizer *t) { return t->sep; }
int32_t tok_pad(const tokenizer *t) { return t->pad; }
bool tok_adds_bos(const tokenizer *t) { return t->add_bos && t->bos >= 0; }
size_t tok_min_tokens(const tokenizer *t, size_t len) {
    return t->max_bytes_per_id ? len / t->max_bytes_per_id : 0;
}

bool tok_adds_eos(const tokenizer *t) { return t->add_eos && t->eos >= 0; }

bool tok_is_eog(const tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

tok_type tok_get_type(const tokenizer *t, int32_t id) {
    return (id >= 0 && id < t->n_vocab) ? (tok_type)t->types[id] : TOK_TYPE_UNDEFINED;
}

const char *tok_text(const tokenizer *t, int32_t id, size_t *len) {
    *len = 0;
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    return text_of(t, id, len);
}

/* ------------------------------------------------------------------------ */
/* Load                                                                     */
/* ------------------------------------------------------------------------ */

void tok_free(tokenizer *t) {
    if (!t) return;
    smp_free(t->text_pool);
    smp_free(t->text_off);
    smp_free(t->scores);
    smp_free(t->types);
    smp_free(t->eog);
    smp_free(t->hash);
    smp_free(t->merges);
    smp_free(t->piece_pool);
    smp_free(t->piece_off);
    smp_free(t->specials);
    smp_free(t->special_lens);
    smp_free(t);
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t p = 16;
    while (p < n) p *= 2;
    return p;
}

static bool key_is(const gguf_str *s, const char *want) {
    return s->len == strlen(want) && memcmp(s->ptr, want, s->len) == 0;
}

/* Read an optional token-id key; ids outside the vocab keep the default. */
static void load_id(const gguf *g, const char *key, int32_t n_vocab, int32_t *id) {
    uint64_t v;
    if (!gguf_get_u64(g, key, &v)) return;
    if (v < (uint64_t)n_vocab) *id = (int32_t)v;
    else if (v < 0x7FFFFFFFu) /* larger values are -1 written as unsigned: "none" */
        log_warn("tokenizer: %s = %llu is outside the vocabulary; ignored", key, (unsigned long long)v);
}

static int load_vocab(tokenizer *t, const gguf *g, char *err, size_t errlen) {
    gguf_type et;
    uint64_t n;
    if (!gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) || et != GGUF_TYPE_STRING) {
        snprintf(err, errlen, "tokenizer.ggml.tokens is missing or not a string array");
        return -SMP_E_FORMAT;
    }
    if (n == 0 || n > (1u << 24)) {
        snprintf(err, errlen, "tokenizer.ggml.tokens has %llu entries", (unsigned long long)n);
        return -SMP_E_FORMAT;
    }
    t->n_vocab = (int32_t)n;
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s;
        if (!gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s)) {
            snprintf(err, errlen, "tokenizer.ggml.tokens[%llu] is unreadable", (unsigned long long)i);
            return -SMP_E_FORMAT;
        }
        total += s.len ? s.len : 32;
    }
    if (total > 0x7FFFFFFFu) {
        snprintf(err, errlen, "token texts are too large (%llu bytes)", (unsigned long long)total);
        return -SMP_E_FORMAT;
    }
    t->text_pool = smp_malloc(total + 1);
    t->text_off = smp_malloc((n + 1) * sizeof(uint32_t));
    t->types = smp_malloc(n);
    t->eog = smp_calloc(n, 1);
    if (!t->text_pool || !t->text_off || !t->types || !t->eog) return -SMP_E_NOMEM;
    uint32_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s;
        gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s);
        t->text_off[i] = off;
        if (s.len == 0) /* as the reference does: give empty entries a unique name */
            off += (uint32_t)snprintf(t->text_pool + off, 32, "[EMPTY_%llu]", (unsigned long long)i);
        else {
            memcpy(t->text_pool + off, s.ptr, s.len);
            off += (uint32_t)s.len;
        }
        uint32_t len = off - t->text_off[i];
        if (len > t->max_token_len) t->max_token_len = len;
    }
    t->text_off[n] = off;

    /* token types */
    uint64_t nt = 0;
    if (gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &nt)) {
        if (nt != n) {
            snprintf(err, errlen, "tokenizer.ggml.token_type has %llu entries for %llu tokens",
                     (unsigned long long)nt, (unsigned long long)n);
            return -SMP_E_FORMAT;
        }
        for (uint64_t i = 0; i < n; i++) {
            int64_t v = TOK_TYPE_NORMAL;
            if (!gguf_arr_i64(g, "tokenizer.ggml.token_type", i, &v)) {
                snprintf(err, errlen, "tokenizer.ggml.token_type is not numeric");
                return -SMP_E_FORMAT;
            }
            t->types[i] = (v >= TOK_TYPE_NORMAL && v <= TOK_TYPE_BYTE) ? (uint8_t)v : TOK_TYPE_UNDEFINED;
        }
    } else {
        memset(t->types, TOK_TYPE_NORMAL, n);
    }

    /* scores (SPM) */
    if (t->kind == TOK_KIND_SPM) {
        t->scores = smp_calloc(n, sizeof(float));
        if (!t->scores) return -SMP_E_NOMEM;
        uint64_t ns = 0;
        if (gguf_get_arr(g, "tokenizer.ggml.scores", &et, &ns)) {
            if (ns != n) {
                snprintf(err, errlen, "tokenizer.ggml.scores has %llu entries for %llu tokens",
                         (unsigned long long)ns, (unsigned long long)n);
                return -SMP_E_FORMAT;
            }
            for (uint64_t i = 0; i < n; i++) {
                double v = 0;
                gguf_arr_f64(g, "tokenizer.ggml.scores", i, &v);
                t->scores[i] = (float)v;
            }
        }
    }

    /* text -> id (a later duplicate wins, as in the reference) */
    uint32_t size = pow2_at_least(2 * n);
    t->hash = smp_malloc(size * sizeof(int32_t));
    if (!t->hash) return -SMP_E_NOMEM;
    memset(t->hash, 0xFF, size * sizeof(int32_t));
    t->hash_mask = size - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t len;
        const char *s = text_of(t, id, &len);
        uint32_t h = fnv1a(s, len) & t->hash_mask;
        for (;;) {
            int32_t o = t->hash[h];
            if (o < 0) {
                t->hash[h] = id;
                break;
            }
            size_t ol;
            const char *os = text_of(t, o, &ol);
            if (ol == len && memcmp(os, s, len) == 0) {
                t->hash[h] = id;
                break;
            }
            h = (h + 1) & t->hash_mask;
        }
    }
    return 0;
}

static int load_merges(tokenizer *t, const gguf *g, char *err, size_t errlen) {
    gguf_type et;
    uint64_t n;
    if (!gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n) || et != GGUF_TYPE_STRING) {
        snprintf(err, errlen, "BPE model without tokenizer.ggml.merges");
        return -SMP_E_FORMAT;
    }
    if (n > (1u << 24)) {
        snprintf(err, errlen, "tokenizer.ggml.merges has %llu entries", (unsigned long long)n);
        return -SMP_E_FORMAT;
    }
    uint32_t size = pow2_at_least(2 * n + 1);
    t->merges = smp_calloc(size, sizeof(merge_slot));
    if (!t->merges) return -SMP_E_NOMEM;
    t->merge_mask = size - 1;
    char *joined = NULL;
    size_t joined_cap = 0, skipped = 0;
    for (uint64_t r = 0; r < n; r++) {
        gguf_str s;
        if (!gguf_arr_str(g, "tokenizer.ggml.merges", r, &s)) {
            skipped++;
            continue;
        }
        /* "left right": split at the first space after the first byte */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp) {
            skipped++;
            continue;
        }
        size_t la = (size_t)(sp - s.ptr), lb = s.len - la - 1;
        int32_t a = tok_lookup(t, s.ptr, la), b = tok_lookup(t, sp + 1, lb);
        if (grow(&joined, &joined_cap, la + lb, 1)) {
            smp_free(joined);
            return -SMP_E_NOMEM;
        }
        memcpy(joined, s.ptr, la);
        memcpy(joined + la, sp + 1, lb);
        int32_t res = tok_lookup(t, joined, la + lb);
        if (a < 0 || b < 0 || res < 0) {
            skipped++;
            continue;
        }
        uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        uint32_t i = (uint32_t)mix64(key) & t->merge_mask;
        while (t->merges[i].key != 0 && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
        if (t->merges[i].key == 0) /* the first (best-ranked) duplicate wins */
            t->merges[i] = (merge_slot){.rank = (int32_t)r, .result = res, .key = key};
    }
    smp_free(joined);
    if (skipped)
        log_warn("tokenizer: %zu of %llu merges name unknown tokens; skipped", skipped, (unsigned long long)n);
    return 0;
}

/* Byte-level BPE's reversible byte <-> printable code point mapping. */
static void init_byte_level(tokenizer *t) {
    uint32_t extra = 256;
    for (int i = 0; i < 324; i++) t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        t->byte_cp[b] = printable ? (uint32_t)b : extra++;
        t->cp_byte[t->byte_cp[b]] = (int16_t)b;
        char u[4];
        size_t l = unicode_utf8_encode(t->byte_cp[b], u);
        t->byte_tok[b] = tok_lookup(t, u, l);
    }
}

/* Pieces: what each token contributes to decoded text. */
static int build_pieces(tokenizer *t) {
    size_t total = t->text_off[t->n_vocab];
    t->piece_pool = smp_malloc(total + 1);
    t->piece_off = smp_malloc(((size_t)t->n_vocab + 1) * sizeof(uint32_t));
    if (!t->piece_pool || !t->piece_off) return -SMP_E_NOMEM;
    uint32_t off = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        t->piece_off[id] = off;
        size_t len;
        const char *s = text_of(t, id, &len);
        uint8_t ty = t->types[id];
        char *o = t->piece_pool + off;
        size_t k = 0;
        if (ty == TOK_TYPE_USER_DEFINED) {
            memcpy(o, s, len);
            k = len;
        } else if (ty == TOK_TYPE_NORMAL && t->kind == TOK_KIND_BPE) {
            for (size_t i = 0; i < len;) {
                uint32_t cp;
                size_t l = unicode_utf8_decode(s + i, len - i, &cp);
                if (cp < 324 && t->cp_byte[cp] >= 0) {
                    o[k++] = (char)t->cp_byte[cp];
                } else { /* not byte-level text: keep it as it is */
                    memcpy(o + k, s + i, l);
                    k += l;
                }
                i += l;
            }
        } else if (ty == TOK_TYPE_NORMAL) { /* SPM, WPM: U+2581 -> ' ' */
            for (size_t i = 0; i < len;) {
                if (len - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                    o[k++] = ' ';
                    i += 3;
                } else {
                    o[k++] = s[i++];
                }
            }
        } else if (ty == TOK_TYPE_BYTE) {
            unsigned v;
            if (len == 6 && sscanf(s, "<0x%2x>", &v) == 1) o[k++] = (char)v;
        }
        off += (uint32_t)k;
    }
    t->piece_off[t->n_vocab] = off;
    return 0;
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = t->text_off[x + 1] - t->text_off[x], ly = t->text_off[y + 1] - t->text_off[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int build_specials(tokenizer *t) {
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t ty = t->types[id];
        n += ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN || ty == TOK_TYPE_USER_DEFINED;
    }
    if (n == 0) return 0;
    t->specials = smp_malloc(n * sizeof(int32_t));
    if (!t->specials) return -SMP_E_NOMEM;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t ty = t->types[id];
        if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN || ty == TOK_TYPE_USER_DEFINED)
            t->specials[t->n_specials++] = id;
    }
    qsort_r(t->specials, t->n_specials, sizeof(int32_t), cmp_special, t);
    t->special_lens = smp_malloc(n * sizeof(uint32_t));
    if (!t->special_lens) return -SMP_E_NOMEM;
    for (size_t i = 0; i < t->n_specials; i++) {
        size_t len;
        const char *s = text_of(t, t->specials[i], &len);
        unsigned char b = (unsigned char)s[0];
        t->special_first[b >> 3] |= (uint8_t)(1u << (b & 7));
        if (t->n_special_lens == 0 || t->special_lens[t->n_special_lens - 1] != len)
            t->special_lens[t->n_special_lens++] = (uint32_t)len;
    }
    return 0;
}

/* Tokens that end generation: eos, eot, eom and well-known end-of-turn texts. */
static void mark_eog(tokenizer *t) {
    static const char *texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
        "<EOT>", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        int32_t id = tok_lookup(t, texts[i], strlen(texts[i]));
        if (id >= 0) t->eog[id] = 1;
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;
}

int tok_load(const gguf *g, tokenizer **out, char *err, size_t errlen) {
    *out = NULL;
    if (errlen) err[0] = '\0';
    gguf_str model;
    if (!gguf_get_str(g, "tokenizer.ggml.model", &model)) {
        snprintf(err, errlen, "no tokenizer.ggml.model in the file");
        return -SMP_E_FORMAT;
    }
    tokenizer *t = smp_calloc(1, sizeof(*t));
    if (!t) return -SMP_E_NOMEM;
    int rc;
    t->bos = t->eos = t->unk = t->sep = t->pad = t->eot = t->eom = -1;
    int32_t mask = -1, cls = -1;
    if (key_is(&model, "llama")) {
        t->kind = TOK_KIND_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_bos = true;
        t->add_space_prefix = true;
    } else if (key_is(&model, "gpt2")) {
        t->kind = TOK_KIND_BPE;
        t->bos = 11, t->eos = 11; /* the reference's defaults */
    } else if (key_is(&model, "bert")) {
        t->kind = TOK_KIND_WPM;
        t->bos = 101, t->unk = 100, t->sep = 102, t->pad = 0;
        t->add_bos = true;
    } else {
        snprintf(err, errlen, "unsupported tokenizer model '%.*s'", (int)(model.len > 64 ? 64 : model.len),
                 model.ptr);
        rc = -SMP_E_NOT_IMPLEMENTED;
        goto fail;
    }
    if (t->kind == TOK_KIND_BPE) {
        gguf_str pre;
        t->pre = PRE_DEFAULT;
        if (gguf_get_str(g, "tokenizer.ggml.pre", &pre)) {
            size_t i = 0, np = sizeof(pre_names) / sizeof(pre_names[0]);
            while (i < np && !key_is(&pre, pre_names[i].name)) i++;
            if (i == np) {
                snprintf(err, errlen, "unsupported pre-tokenizer '%.*s'", (int)(pre.len > 64 ? 64 : pre.len),
                         pre.ptr);
                rc = -SMP_E_NOT_IMPLEMENTED;
                goto fail;
            }
            t->pre = pre_names[i].kind;
            if (t->pre == PRE_LLAMA3 && (key_is(&pre, "llama3") || key_is(&pre, "llama-v3") ||
                                         key_is(&pre, "llama-bpe") || key_is(&pre, "falcon3"))) {
                t->ignore_merges = true;
                t->add_bos = true;
            }
            if (key_is(&pre, "chatglm-bpe")) t->bos = -1;
        } else {
            log_warn("tokenizer: no tokenizer.ggml.pre; using the default pre-tokenizer");
        }
    }
    if ((rc = load_vocab(t, g, err, errlen))) goto fail;
    if (t->kind == TOK_KIND_BPE && (rc = load_merges(t, g, err, errlen))) goto fail;

    int32_t nv = t->n_vocab;
    if (t->bos >= nv) t->bos = -1;
    if (t->eos >= nv) t->eos = -1;
    if (t->unk >= nv) t->unk = -1;
    if (t->sep >= nv) t->sep = -1;
    if (t->pad >= nv) t->pad = -1;
    load_id(g, "tokenizer.ggml.bos_token_id", nv, &t->bos);
    load_id(g, "tokenizer.ggml.eos_token_id", nv, &t->eos);
    load_id(g, "tokenizer.ggml.eot_token_id", nv, &t->eot);
    load_id(g, "tokenizer.ggml.eom_token_id", nv, &t->eom);
    load_id(g, "tokenizer.ggml.unknown_token_id", nv, &t->unk);
    load_id(g, "tokenizer.ggml.seperator_token_id", nv, &t->sep);
    load_id(g, "tokenizer.ggml.padding_token_id", nv, &t->pad);
    load_id(g, "tokenizer.ggml.mask_token_id", nv, &mask);
    load_id(g, "tokenizer.ggml.cls_token_id", nv, &cls);
    if (t->kind == TOK_KIND_WPM && cls >= 0) t->bos = cls;
    bool b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b)) t->add_bos = b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b)) t->add_eos = b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b)) t->add_space_prefix = b;

    if (t->kind == TOK_KIND_BPE) {
        init_byte_level(t);
    } else {
        for (int v = 0; v < 256; v++) {
            char name[8];
            snprintf(name, sizeof(name), "<0x%02X>", v);
            int32_t id = tok_lookup(t, name, 6);
            if (id < 0) {
                char c = (char)v;
                id = tok_lookup(t, &c, 1);
            }
            t->byte_tok[v] = id;
        }
    }
    /* SPM and BPE keep every byte (as a byte token, or SPM's unknown token);
     * a vocabulary that lacks some byte tokens may drop bytes. */
    bool keeps_bytes = t->kind != TOK_KIND_WPM;
    for (int v = 0; v < 256 && keeps_bytes; v++)
        keeps_bytes = t->byte_tok[v] >= 0 || (t->kind == TOK_KIND_SPM && t->unk >= 0);
    t->max_bytes_per_id = keeps_bytes ? t->max_token_len : 0;
    if ((rc = build_pieces(t))) goto fail;
    if ((rc = build_specials(t))) goto fail;
    mark_eog(t);
    *out = t;
    return 0;
fail:
    if (rc == -SMP_E_NOMEM && errlen && !err[0]) snprintf(err, errlen, "out of memory loading the tokenizer");
    tok_free(t);
    return rc;
}
