/* gguf.c - GGUF v2/v3 reader: map the file, validate every field, index it.
 *
 * File layout (little-endian):
 *   offset  size        field
 *   0       4           magic "GGUF"
 *   4       4           version (u32): 2 or 3 (v1 used 32-bit counts; refused)
 *   8       8           tensor_count (u64)
 *   16      8           kv_count (u64)
 *   24      ...         kv_count x { key: u64 len + bytes, u32 value type, value }
 *                       value: u8/i8/bool 1 B, u16/i16 2 B, u32/i32/f32 4 B,
 *                       u64/i64/f64 8 B, string u64 len + bytes,
 *                       array u32 elem type + u64 n + n values (no arrays of arrays)
 *   ...     ...         tensor_count x { name: string, u32 n_dims (1..4),
 *                       u64 ne[n_dims], u32 ggml type, u64 offset }
 *   ...     ...         zero padding to a multiple of general.alignment (default 32)
 *   data    ...         tensor data; tensor i at data + offset_i (offset aligned)
 *
 * Main structures: struct gguf holds the mapping (or the caller's buffer), one
 * gguf_kv per key (the value's file offset; string arrays get a table of
 * element offsets so element j is O(1)), the gguf_tensor array, and two
 * open-addressing hash indexes (keys, tensor names) used to refuse duplicates
 * and to look names up.
 *
 * Parsing goes through a cursor (parser.pos) whose every read is checked
 * against the file size first; counts are bounded by the bytes left before
 * anything sized by them is allocated. Errors name the key or tensor. */
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/tensor_types.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_HEADER_BYTES 24
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ALIGNMENT (1u << 30)
/* Smallest possible encodings, used to bound counts before allocating. */
#define MIN_KV_BYTES 13     /* u64 key length + u32 type + 1-byte value */
#define MIN_TENSOR_BYTES 32 /* u64 name length + u32 n_dims + one u64 ne + u32 type + u64 offset */

typedef struct {
    char *key;           /* NUL-terminated copy */
    gguf_type type;
    gguf_type elem_type; /* arrays */
    uint64_t n;          /* arrays: element count */
    size_t off;          /* scalar: the value; string: its length prefix; array: element 0 */
    size_t *str_off;     /* string arrays: file offset of each element's length prefix */
} gguf_kv;

/* Open addressing, linear probing; slot holds entry index + 1, 0 = empty. */
typedef struct {
    uint32_t *slot;
    size_t mask;
} name_index;

struct gguf {
    const uint8_t *base;
    size_t size;
    void *map; /* non-NULL when gguf_open mapped the file */
    uint32_t version;
    size_t alignment;
    uint64_t data_off; /* start of the data section; may equal or pass EOF with no tensors */
    int n_kv;
    gguf_kv *kv;
    name_index kidx;
    int n_tensors;
    gguf_tensor *tensors;
    name_index tidx;
};

/* ---- names and the hash index ---- */

typedef const char *(*name_fn)(const gguf *g, uint32_t i);
static const char *kv_name(const gguf *g, uint32_t i) { return g->kv[i].key; }
static const char *tensor_name(const gguf *g, uint32_t i) { return g->tensors[i].name; }

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int index_init(name_index *ix, size_t n) {
    size_t cap = 8;
    while (cap < 2 * n) cap *= 2;
    ix->slot = smp_calloc(cap, sizeof *ix->slot);
    ix->mask = cap - 1;
    return ix->slot ? 0 : -1;
}

/* Entry index of name, or -1; *where gets the empty slot it would take. */
static int index_find(const gguf *g, const name_index *ix, name_fn name_of, const char *name,
                      size_t *where) {
    if (!ix->slot) return -1;
    size_t s = fnv1a(name) & ix->mask;
    for (; ix->slot[s]; s = (s + 1) & ix->mask)
        if (!strcmp(name_of(g, ix->slot[s] - 1), name)) return (int)(ix->slot[s] - 1);
    if (where) *where = s;
    return -1;
}

/* Printable copy of a name from the file, for messages. */
static const char *show(const char *s, char *out, size_t n) {
    size_t j = 0;
    for (; s && *s && j + 4 < n; s++) out[j++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    if (s && *s) out[j++] = '.', out[j++] = '.', out[j++] = '.';
    out[j] = '\0';
    return out;
}

/* ---- the checked cursor ---- */

typedef struct {
    gguf *g;
    size_t pos;
    char *err;
    size_t errlen;
    const char *what; /* "key" or "tensor" while inside one, else NULL */
    uint64_t idx;     /* its index */
    const char *name; /* its name once read */
    int64_t elem;     /* array element being read, or -1 */
} parser;

__attribute__((format(printf, 2, 3))) static int fail(parser *p, const char *fmt, ...) {
    if (!p->err || !p->errlen) return -SMP_E_FORMAT;
    char nm[80];
    int n = 0;
    if (p->what && p->name) n = snprintf(p->err, p->errlen, "%s '%s'", p->what, show(p->name, nm, sizeof nm));
    else if (p->what) n = snprintf(p->err, p->errlen, "%s %" PRIu64, p->what, p->idx);
    if (n >= 0 && (size_t)n < p->errlen && p->what && p->elem >= 0)
        n += snprintf(p->err + n, p->errlen - n, " element %" PRId64, p->elem);
    if (n >= 0 && (size_t)n < p->errlen && p->what) n += snprintf(p->err + n, p->errlen - n, ": ");
    if (n < 0 || (size_t)n >= p->errlen) return -SMP_E_FORMAT;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - n, fmt, ap);
    va_end(ap);
    return -SMP_E_FORMAT;
}

static int nomem(parser *p) {
    if (p->err && p->errlen) snprintf(p->err, p->errlen, "out of memory while indexing the GGUF file");
    return -SMP_E_NOMEM;
}

static int need(parser *p, uint64_t n, const char *what) {
    if (n <= p->g->size - p->pos) return 0;
    return fail(p, "%s at offset %zu runs past end of file (needs %" PRIu64 " bytes, %zu left; truncated?)",
                what, p->pos, n, p->g->size - p->pos);
}

static int rd_u32(parser *p, uint32_t *v, const char *what) {
    int rc = need(p, 4, what);
    if (rc) return rc;
    memcpy(v, p->g->base + p->pos, 4);
    p->pos += 4;
    return 0;
}

static int rd_u64(parser *p, uint64_t *v, const char *what) {
    int rc = need(p, 8, what);
    if (rc) return rc;
    memcpy(v, p->g->base + p->pos, 8);
    p->pos += 8;
    return 0;
}

/* A string: u64 length + bytes. *off gets the offset of the bytes. */
static int rd_str(parser *p, size_t *off, uint64_t *len, const char *what) {
    int rc = rd_u64(p, len, what);
    if (rc) return rc;
    if (*len > p->g->size - p->pos)
        return fail(p, "%s length %" PRIu64 " at offset %zu runs past end of file (%zu bytes left)", what,
                    *len, p->pos - 8, p->g->size - p->pos);
    *off = p->pos;
    p->pos += *len;
    return 0;
}

/* A key or tensor name: no NUL inside, copied NUL-terminated. */
static int rd_name(parser *p, char **out, const char *what) {
    size_t off;
    uint64_t len;
    int rc = rd_str(p, &off, &len, what);
    if (rc) return rc;
    if (memchr(p->g->base + off, 0, len)) return fail(p, "%s contains a NUL byte", what);
    *out = smp_strndup((const char *)p->g->base + off, len);
    return *out ? 0 : nomem(p);
}

/* ---- values ---- */

static size_t type_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0; /* string, array: variable */
    }
}

const char *gguf_type_name(gguf_type t) {
    static const char *const names[GGUF_TYPE__COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64"};
    return (unsigned)t < GGUF_TYPE__COUNT ? names[t] : "unknown";
}

static int parse_array(parser *p, gguf_kv *kv) {
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(p, &et, "array element type");
    if (!rc) rc = rd_u64(p, &n, "array length");
    if (rc) return rc;
    if (et == GGUF_TYPE_ARRAY) return fail(p, "arrays of arrays are not supported");
    if (et >= GGUF_TYPE__COUNT) return fail(p, "array element type id %" PRIu32 " is unknown", et);
    kv->elem_type = (gguf_type)et;
    kv->n = n;
    kv->off = p->pos;
    size_t left = p->g->size - p->pos;
    if (et != GGUF_TYPE_STRING) {
        size_t es = type_size(et);
        if (n > left / es)
            return fail(p, "array of %" PRIu64 " %s runs past end of file (%zu bytes left)", n,
                        gguf_type_name(et), left);
        p->pos += n * es;
        return 0;
    }
    if (n > left / 8)
        return fail(p, "array of %" PRIu64 " strings runs past end of file (%zu bytes left)", n, left);
    if (n == 0) return 0;
    kv->str_off = smp_malloc(n * sizeof *kv->str_off);
    if (!kv->str_off) return nomem(p);
    for (uint64_t j = 0; j < n; j++) {
        size_t off;
        uint64_t len;
        kv->str_off[j] = p->pos;
        p->elem = (int64_t)j;
        if ((rc = rd_str(p, &off, &len, "string"))) return rc;
    }
    p->elem = -1;
    return 0;
}

static int parse_kv(parser *p, int i) {
    gguf *g = p->g;
    gguf_kv *kv = &g->kv[i];
    p->what = "key";
    p->idx = (uint64_t)i;
    p->name = NULL;
    int rc = rd_name(p, &kv->key, "key");
    if (rc) return rc;
    p->name = kv->key;
    size_t where = 0;
    if (index_find(g, &g->kidx, kv_name, kv->key, &where) >= 0) return fail(p, "duplicate key");
    g->kidx.slot[where] = (uint32_t)i + 1;

    uint32_t t;
    if ((rc = rd_u32(p, &t, "value type"))) return rc;
    if (t >= GGUF_TYPE__COUNT) return fail(p, "value type id %" PRIu32 " is unknown", t);
    kv->type = (gguf_type)t;
    kv->off = p->pos;
    if (t == GGUF_TYPE_ARRAY) return parse_array(p, kv);
    if (t == GGUF_TYPE_STRING) {
        size_t off;
        uint64_t len;
        return rd_str(p, &off, &len, "string value");
    }
    if ((rc = need(p, type_size(t), "value"))) return rc;
    p->pos += type_size(t);
    return 0;
}

/* ---- numbers ---- */

typedef struct {
    enum { NUM_U, NUM_I, NUM_F } kind;
    uint64_t u;
    int64_t i;
    double f;
} num;

/* Read a numeric value of type t at q; false for non-numeric types. */
static bool load_num(const uint8_t *q, gguf_type t, num *v) {
    switch (t) {
    case GGUF_TYPE_UINT8: { uint8_t x; memcpy(&x, q, 1); v->kind = NUM_U; v->u = x; return true; }
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, q, 2); v->kind = NUM_U; v->u = x; return true; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, q, 4); v->kind = NUM_U; v->u = x; return true; }
    case GGUF_TYPE_UINT64: { uint64_t x; memcpy(&x, q, 8); v->kind = NUM_U; v->u = x; return true; }
    case GGUF_TYPE_INT8: { int8_t x; memcpy(&x, q, 1); v->kind = NUM_I; v->i = x; return true; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, q, 2); v->kind = NUM_I; v->i = x; return true; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, q, 4); v->kind = NUM_I; v->i = x; return true; }
    case GGUF_TYPE_INT64: { int64_t x; memcpy(&x, q, 8); v->kind = NUM_I; v->i = x; return true; }
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, q, 4); v->kind = NUM_F; v->f = x; return true; }
    case GGUF_TYPE_FLOAT64: { double x; memcpy(&x, q, 8); v->kind = NUM_F; v->f = x; return true; }
    default: return false;
    }
}

static bool num_u64(const num *v, uint64_t *out) {
    if (v->kind == NUM_U) *out = v->u;
    else if (v->kind == NUM_I && v->i >= 0) *out = (uint64_t)v->i;
    else return false;
    return true;
}

/* Floats convert (toward zero) only when allow_float and in range. */
static bool num_i64(const num *v, bool allow_float, int64_t *out) {
    if (v->kind == NUM_U && v->u <= (uint64_t)INT64_MAX) *out = (int64_t)v->u;
    else if (v->kind == NUM_I) *out = v->i;
    else if (v->kind == NUM_F && allow_float && v->f >= -9223372036854775808.0 &&
             v->f < 9223372036854775808.0)
        *out = (int64_t)v->f;
    else return false;
    return true;
}

static double num_f64(const num *v) {
    return v->kind == NUM_U ? (double)v->u : v->kind == NUM_I ? (double)v->i : v->f;
}

/* ---- tensors ---- */

static int parse_tensor_info(parser *p, int i) {
    gguf *g = p->g;
    gguf_tensor *t = &g->tensors[i];
    char *name = NULL;
    p->what = "tensor";
    p->idx = (uint64_t)i;
    p->name = NULL;
    int rc = rd_name(p, &name, "name");
    if (rc) return rc;
    t->name = name;
    p->name = name;
    size_t where = 0;
    if (index_find(g, &g->tidx, tensor_name, name, &where) >= 0) return fail(p, "duplicate tensor name");
    g->tidx.slot[where] = (uint32_t)i + 1;

    uint32_t n_dims, type;
    if ((rc = rd_u32(p, &n_dims, "n_dims"))) return rc;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return fail(p, "n_dims %" PRIu32 " is out of range (1..%d)", n_dims, GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if ((rc = rd_u64(p, &t->ne[d], "dimension"))) return rc;
        if (t->ne[d] == 0) return fail(p, "ne[%" PRIu32 "] is 0 (every dimension must be > 0)", d);
        if (__builtin_mul_overflow(n_el, t->ne[d], &n_el) || n_el > (uint64_t)INT64_MAX)
            return fail(p, "element count overflows (ne[%" PRIu32 "] = %" PRIu64 ")", d, t->ne[d]);
    }
    if ((rc = rd_u32(p, &type, "type"))) return rc;
    size_t be = type <= INT_MAX ? tt_block_elems((int)type) : 0;
    size_t bb = type <= INT_MAX ? tt_block_bytes((int)type) : 0;
    if (!be || !bb) return fail(p, "type id %" PRIu32 " is unknown", type);
    t->type = (int)type;
    if (t->ne[0] % be)
        return fail(p, "ne[0] = %" PRIu64 " is not a multiple of the %s block size %zu", t->ne[0],
                    tt_name(t->type), be);
    uint64_t nbytes;
    if (__builtin_mul_overflow(n_el / be, (uint64_t)bb, &nbytes) || nbytes > SIZE_MAX)
        return fail(p, "data size overflows (%" PRIu64 " elements of %s)", n_el, tt_name(t->type));
    t->nbytes = (size_t)nbytes;
    return rd_u64(p, &t->offset, "offset");
}

/* Second pass, once the data section's start is known. */
static int place_tensor(parser *p, int i) {
    gguf *g = p->g;
    gguf_tensor *t = &g->tensors[i];
    p->what = "tensor";
    p->idx = (uint64_t)i;
    p->name = t->name;
    if (t->offset % g->alignment)
        return fail(p, "data offset %" PRIu64 " is not a multiple of the alignment %zu", t->offset,
                    g->alignment);
    if (g->data_off > g->size || t->offset > g->size - g->data_off ||
        t->nbytes > g->size - g->data_off - t->offset)
        return fail(p,
                    "data (offset %" PRIu64 ", size %zu) runs past end of file (data section at %" PRIu64
                    ", file size %zu)",
                    t->offset, t->nbytes, g->data_off, g->size);
    t->data = g->base + g->data_off + t->offset;
    return 0;
}

static int read_alignment(parser *p) {
    gguf *g = p->g;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int i = gguf_find_key(g, "general.alignment");
    if (i < 0) return 0;
    p->what = NULL;
    num v;
    uint64_t a;
    const gguf_kv *kv = &g->kv[i];
    if (!load_num(g->base + kv->off, kv->type, &v) || v.kind == NUM_F)
        return fail(p, "general.alignment has type %s, expected an integer", gguf_type_name(kv->type));
    if (!num_u64(&v, &a) || a == 0 || (a & (a - 1)) || a > GGUF_MAX_ALIGNMENT)
        return fail(p, "general.alignment = %" PRId64 " is not a power of two in 1..2^30",
                    v.kind == NUM_I ? v.i : (int64_t)v.u);
    g->alignment = (size_t)a;
    return 0;
}

/* ---- open / close ---- */

static int check_header(parser *p, uint64_t *n_tensors, uint64_t *n_kv) {
    const uint8_t *b = p->g->base;
    size_t size = p->g->size;
    int rc;
    if (size == 0) return fail(p, "file is empty");
    if ((rc = need(p, 4, "magic"))) return rc;
    if (memcmp(b, GGUF_MAGIC, 4)) {
        if (!memcmp(b, "lmgg", 4) || !memcmp(b, "fmgg", 4) || !memcmp(b, "tjgg", 4))
            return fail(p, "bad magic '%.4s': a legacy ggml file (e.g. whisper.cpp), not GGUF", (const char *)b);
        return fail(p, "bad magic %02x %02x %02x %02x: not a GGUF file", b[0], b[1], b[2], b[3]);
    }
    p->pos = 4;
    uint32_t v;
    if ((rc = rd_u32(p, &v, "version"))) return rc;
    if (v == 1) return fail(p, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (__builtin_bswap32(v) == 2 || __builtin_bswap32(v) == 3)
        return fail(p, "GGUF file is big-endian (version %u byte-swapped); only little-endian files are supported",
                    __builtin_bswap32(v));
    if (v != 2 && v != 3) return fail(p, "GGUF version %" PRIu32 " is not supported (only versions 2 and 3)", v);
    p->g->version = v;
    if ((rc = rd_u64(p, n_tensors, "tensor count")) || (rc = rd_u64(p, n_kv, "kv count"))) return rc;
    size_t left = size - p->pos;
    if (*n_kv > left / MIN_KV_BYTES || *n_kv > INT_MAX)
        return fail(p, "kv count %" PRIu64 " is impossible: the %zu bytes after the header hold at most %zu"
                    " (truncated or corrupt file)",
                    *n_kv, left, left / MIN_KV_BYTES);
    left -= (size_t)*n_kv * MIN_KV_BYTES;
    if (*n_tensors > left / MIN_TENSOR_BYTES || *n_tensors > INT_MAX)
        return fail(p,
                    "tensor count %" PRIu64 " is impossible: the %zu bytes left after the header and %" PRIu64
                    " keys hold at most %zu (truncated or corrupt file)",
                    *n_tensors, left, *n_kv, left / MIN_TENSOR_BYTES);
    return 0;
}

static int parse(gguf *g, char *err, size_t errlen) {
    parser p = {.g = g, .err = err, .errlen = errlen, .elem = -1};
    uint64_t n_tensors, n_kv;
    int rc = check_header(&p, &n_tensors, &n_kv);
    if (rc) return rc;

    if (n_kv) {
        g->kv = smp_calloc((size_t)n_kv, sizeof *g->kv);
        if (!g->kv) return nomem(&p);
        g->n_kv = (int)n_kv;
    }
    if (index_init(&g->kidx, (size_t)n_kv)) return nomem(&p);
    for (int i = 0; i < g->n_kv; i++)
        if ((rc = parse_kv(&p, i))) return rc;
    if ((rc = read_alignment(&p))) return rc;

    if (n_tensors) {
        g->tensors = smp_calloc((size_t)n_tensors, sizeof *g->tensors);
        if (!g->tensors) return nomem(&p);
        g->n_tensors = (int)n_tensors;
    }
    if (index_init(&g->tidx, (size_t)n_tensors)) return nomem(&p);
    for (int i = 0; i < g->n_tensors; i++)
        if ((rc = parse_tensor_info(&p, i))) return rc;

    g->data_off = ((uint64_t)p.pos + g->alignment - 1) / g->alignment * g->alignment;
    for (int i = 0; i < g->n_tensors; i++)
        if ((rc = place_tensor(&p, i))) return rc;
    return 0;
}

void gguf_close(gguf *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        smp_free(g->kv[i].key);
        smp_free(g->kv[i].str_off);
    }
    smp_free(g->kv);
    for (int i = 0; i < g->n_tensors; i++) smp_free((char *)g->tensors[i].name);
    smp_free(g->tensors);
    smp_free(g->kidx.slot);
    smp_free(g->tidx.slot);
    if (g->map) munmap(g->map, g->size);
    smp_free(g);
}

int gguf_open_mem(const void *data, size_t len, gguf **out, char *err, size_t errlen) {
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    gguf *g = smp_calloc(1, sizeof *g);
    if (!g) {
        if (err && errlen) snprintf(err, errlen, "out of memory");
        return -SMP_E_NOMEM;
    }
    g->base = data;
    g->size = data ? len : 0;
    int rc = parse(g, err, errlen);
    if (rc) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int gguf_open(const char *path, gguf **out, char *err, size_t errlen) {
    *out = NULL;
    char msg[512] = "";
    void *map = MAP_FAILED;
    size_t size = 0;
    struct stat st;
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT ? -SMP_E_NOT_FOUND : -SMP_E_IO;
        snprintf(msg, sizeof msg, "cannot open: %s", strerror(errno));
        goto fail;
    }
    rc = -SMP_E_IO;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        snprintf(msg, sizeof msg, "not a regular file");
        goto fail;
    }
    rc = -SMP_E_FORMAT;
    if (st.st_size == 0 || (uint64_t)st.st_size > SIZE_MAX) {
        snprintf(msg, sizeof msg, "file is %s", st.st_size ? "too large" : "empty");
        goto fail;
    }
    size = (size_t)st.st_size;
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = -SMP_E_IO;
        snprintf(msg, sizeof msg, "cannot map: %s", strerror(errno));
        goto fail;
    }
    madvise(map, size, MADV_WILLNEED); /* a hint: weights are read soon and often */
    if ((rc = gguf_open_mem(map, size, out, msg, sizeof msg))) goto fail;
    (*out)->map = map;
    close(fd);
    return 0;

fail:
    if (map != MAP_FAILED) munmap(map, size);
    if (fd >= 0) close(fd);
    if (err && errlen) snprintf(err, errlen, "%s: %s", path, msg);
    return rc;
}

/* ---- accessors ---- */

uint32_t gguf_version(const gguf *g) { return g->version; }
size_t gguf_file_size(const gguf *g) { return g->size; }
size_t gguf_alignment(const gguf *g) { return g->alignment; }
int gguf_n_kv(const gguf *g) { return g->n_kv; }
int gguf_n_tensors(const gguf *g) { return g->n_tensors; }

int gguf_find_key(const gguf *g, const char *key) {
    return key ? index_find(g, &g->kidx, kv_name, key, NULL) : -1;
}

const char *gguf_key(const gguf *g, int i) { return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL; }

gguf_type gguf_kv_type(const gguf *g, int i) {
    return i >= 0 && i < g->n_kv ? g->kv[i].type : GGUF_TYPE__COUNT;
}

static const gguf_kv *kv_of(const gguf *g, const char *key, gguf_type type) {
    int i = gguf_find_key(g, key);
    return i >= 0 && g->kv[i].type == type ? &g->kv[i] : NULL;
}

static bool scalar(const gguf *g, const char *key, num *v) {
    int i = gguf_find_key(g, key);
    return i >= 0 && load_num(g->base + g->kv[i].off, g->kv[i].type, v);
}

bool gguf_get_u64(const gguf *g, const char *key, uint64_t *out) {
    num v;
    return scalar(g, key, &v) && v.kind != NUM_F && num_u64(&v, out);
}

bool gguf_get_i64(const gguf *g, const char *key, int64_t *out) {
    num v;
    return scalar(g, key, &v) && num_i64(&v, false, out);
}

bool gguf_get_f64(const gguf *g, const char *key, double *out) {
    num v;
    if (!scalar(g, key, &v)) return false;
    *out = num_f64(&v);
    return true;
}

bool gguf_get_bool(const gguf *g, const char *key, bool *out) {
    const gguf_kv *kv = kv_of(g, key, GGUF_TYPE_BOOL);
    if (!kv) return false;
    *out = g->base[kv->off] != 0;
    return true;
}

static gguf_str str_at(const gguf *g, size_t off) {
    gguf_str s;
    memcpy(&s.len, g->base + off, 8);
    s.ptr = (const char *)g->base + off + 8;
    return s;
}

bool gguf_get_str(const gguf *g, const char *key, gguf_str *out) {
    const gguf_kv *kv = kv_of(g, key, GGUF_TYPE_STRING);
    if (!kv) return false;
    *out = str_at(g, kv->off);
    return true;
}

bool gguf_get_arr(const gguf *g, const char *key, gguf_type *elem_type, uint64_t *n) {
    const gguf_kv *kv = kv_of(g, key, GGUF_TYPE_ARRAY);
    if (!kv) return false;
    if (elem_type) *elem_type = kv->elem_type;
    if (n) *n = kv->n;
    return true;
}

const void *gguf_arr_data(const gguf *g, const char *key) {
    const gguf_kv *kv = kv_of(g, key, GGUF_TYPE_ARRAY);
    return kv && kv->elem_type != GGUF_TYPE_STRING ? g->base + kv->off : NULL;
}

bool gguf_arr_str(const gguf *g, const char *key, uint64_t j, gguf_str *out) {
    const gguf_kv *kv = kv_of(g, key, GGUF_TYPE_ARRAY);
    if (!kv || kv->elem_type != GGUF_TYPE_STRING || j >= kv->n) return false;
    *out = str_at(g, kv->str_off[j]);
    return true;
}

static bool arr_num(const gguf *g, const char *key, uint64_t j, num *v) {
    const gguf_kv *kv = kv_of(g, key, GGUF_TYPE_ARRAY);
    if (!kv || j >= kv->n || !type_size(kv->elem_type)) return false;
    return load_num(g->base + kv->off + j * type_size(kv->elem_type), kv->elem_type, v);
}

bool gguf_arr_f64(const gguf *g, const char *key, uint64_t j, double *out) {
    num v;
    if (!arr_num(g, key, j, &v)) return false;
    *out = num_f64(&v);
    return true;
}

bool gguf_arr_i64(const gguf *g, const char *key, uint64_t j, int64_t *out) {
    num v;
    return arr_num(g, key, j, &v) && num_i64(&v, true, out);
}

const gguf_tensor *gguf_tensor_at(const gguf *g, int i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name) {
    int i = name ? index_find(g, &g->tidx, tensor_name, name, NULL) : -1;
    return i >= 0 ? &g->tensors[i] : NULL;
}
