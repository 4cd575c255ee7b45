/* gguf_write.c - GGUF v3 writer (layout in gguf_write.h).
 *
 * Data: each key keeps its value already serialised (u32 type + value bytes,
 * exactly as it goes into the file) in a buf, so copying from a reader and
 * writing out are both byte copies; tensors keep name, type, shape, size and
 * the data offset computed at gguf_writer_begin. While data streams in, `cur`
 * is the tensor being filled and `cur_done` its bytes so far. */
#include "engine/gguf_write.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "engine/tensor_types.h"

#define GW_DEFAULT_ALIGNMENT 32
#define GW_MAX_KEY 65535

typedef struct {
    char *key;
    buf val; /* u32 type + value */
} wkv;

typedef struct {
    char *name;
    int type, n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
} wtensor;

struct gguf_writer {
    wkv *kv;
    int n_kv, cap_kv;
    wtensor *t;
    int n_t, cap_t;
    FILE *f;
    char *path;
    bool finished;
    size_t alignment;
    int cur;
    uint64_t cur_done;
    char err[256];
};

static int gw_fail(gguf_writer *w, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int gw_fail(gguf_writer *w, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    return code;
}

int gguf_writer_new(gguf_writer **out) {
    *out = smp_calloc(1, sizeof **out);
    return *out ? 0 : -SMP_E_NOMEM;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        if (!w->finished && w->path) unlink(w->path);
    }
    for (int i = 0; i < w->n_kv; i++) {
        smp_free(w->kv[i].key);
        buf_free(&w->kv[i].val);
    }
    for (int i = 0; i < w->n_t; i++) smp_free(w->t[i].name);
    smp_free(w->kv);
    smp_free(w->t);
    smp_free(w->path);
    smp_free(w);
}

const char *gguf_writer_error(const gguf_writer *w) { return w->err; }

bool gguf_writer_has_key(const gguf_writer *w, const char *key) {
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return true;
    return false;
}

/* The (emptied) value buffer of key, created if new; NULL when out of memory. */
static buf *kv_slot(gguf_writer *w, const char *key) {
    if (w->f) {
        gw_fail(w, -SMP_E_VALIDATION, "key '%s' set after gguf_writer_begin", key);
        return NULL;
    }
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            buf_reset(&w->kv[i].val);
            return &w->kv[i].val;
        }
    if (strlen(key) > GW_MAX_KEY) {
        gw_fail(w, -SMP_E_VALIDATION, "key too long");
        return NULL;
    }
    if (w->n_kv == w->cap_kv) {
        int cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *kv = smp_realloc(w->kv, (size_t)cap * sizeof *kv);
        if (!kv) goto nomem;
        w->kv = kv;
        w->cap_kv = cap;
    }
    wkv *e = &w->kv[w->n_kv];
    if (!(e->key = smp_strdup(key))) goto nomem;
    buf_init(&e->val, 0);
    w->n_kv++;
    return &e->val;
nomem:
    gw_fail(w, -SMP_E_NOMEM, "out of memory");
    return NULL;
}

static int put_u32(buf *b, uint32_t v) { return buf_append(b, &v, 4); }
static int put_u64(buf *b, uint64_t v) { return buf_append(b, &v, 8); }
static int put_str(buf *b, const char *s, uint64_t n) {
    return put_u64(b, n) || buf_append(b, s, (size_t)n) ? -1 : 0;
}

static int set_scalar(gguf_writer *w, const char *key, gguf_type t, const void *v, size_t n) {
    buf *b = kv_slot(w, key);
    if (!b) return w->err[0] && strstr(w->err, "memory") ? -SMP_E_NOMEM : -SMP_E_VALIDATION;
    if (put_u32(b, t) || buf_append(b, v, n)) return gw_fail(w, -SMP_E_NOMEM, "out of memory");
    return 0;
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) { return set_scalar(w, key, GGUF_TYPE_UINT32, &v, 4); }
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) { return set_scalar(w, key, GGUF_TYPE_INT32, &v, 4); }
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v) { return set_scalar(w, key, GGUF_TYPE_UINT64, &v, 8); }
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v) { return set_scalar(w, key, GGUF_TYPE_FLOAT32, &v, 4); }
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v) {
    uint8_t b = v;
    return set_scalar(w, key, GGUF_TYPE_BOOL, &b, 1);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s) {
    buf *b = kv_slot(w, key);
    if (!b) return -SMP_E_VALIDATION;
    if (put_u32(b, GGUF_TYPE_STRING) || put_str(b, s, strlen(s))) return gw_fail(w, -SMP_E_NOMEM, "out of memory");
    return 0;
}

static size_t elem_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem, const void *data, uint64_t n) {
    size_t es = elem_size(elem);
    if (!es) return gw_fail(w, -SMP_E_VALIDATION, "array '%s': element type %d is not fixed-size", key, (int)elem);
    buf *b = kv_slot(w, key);
    if (!b) return -SMP_E_VALIDATION;
    if (put_u32(b, GGUF_TYPE_ARRAY) || put_u32(b, elem) || put_u64(b, n) || buf_append(b, data, (size_t)(n * es)))
        return gw_fail(w, -SMP_E_NOMEM, "out of memory");
    return 0;
}

int gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *items, uint64_t n) {
    buf *b = kv_slot(w, key);
    if (!b) return -SMP_E_VALIDATION;
    if (put_u32(b, GGUF_TYPE_ARRAY) || put_u32(b, GGUF_TYPE_STRING) || put_u64(b, n))
        return gw_fail(w, -SMP_E_NOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++)
        if (put_str(b, items[i], strlen(items[i]))) return gw_fail(w, -SMP_E_NOMEM, "out of memory");
    return 0;
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf *src, int i) {
    const char *key = gguf_key(src, i);
    gguf_type t = gguf_kv_type(src, i);
    buf *b = kv_slot(w, key);
    if (!b) return -SMP_E_VALIDATION;
    int bad = put_u32(b, t);
    if (t == GGUF_TYPE_STRING) {
        gguf_str s;
        gguf_get_str(src, key, &s);
        bad |= put_str(b, s.ptr, s.len);
    } else if (t == GGUF_TYPE_ARRAY) {
        gguf_type et;
        uint64_t n;
        gguf_get_arr(src, key, &et, &n);
        bad |= put_u32(b, et) | put_u64(b, n);
        if (et == GGUF_TYPE_STRING) {
            for (uint64_t j = 0; j < n && !bad; j++) {
                gguf_str s;
                gguf_arr_str(src, key, j, &s);
                bad |= put_str(b, s.ptr, s.len);
            }
        } else if (n) {
            const void *d = gguf_arr_data(src, key);
            if (!d || !elem_size(et)) return gw_fail(w, -SMP_E_FORMAT, "cannot copy array '%s'", key);
            bad |= buf_append(b, d, (size_t)(n * elem_size(et)));
        }
    } else {
        /* Scalars: read back in their own type, so the bytes are unchanged. */
        union { uint64_t u; int64_t i; double f; uint8_t raw[8]; } v = {0};
        size_t es = elem_size(t);
        if (!es) return gw_fail(w, -SMP_E_FORMAT, "key '%s' has unknown type %d", key, (int)t);
        if (t == GGUF_TYPE_FLOAT32) {
            gguf_get_f64(src, key, &v.f);
            float f = (float)v.f;
            bad |= buf_append(b, &f, 4);
        } else if (t == GGUF_TYPE_FLOAT64) {
            gguf_get_f64(src, key, &v.f);
            bad |= buf_append(b, &v.f, 8);
        } else if (t == GGUF_TYPE_BOOL) {
            bool x = false;
            gguf_get_bool(src, key, &x);
            uint8_t u = x;
            bad |= buf_append(b, &u, 1);
        } else if (t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64) {
            gguf_get_i64(src, key, &v.i);
            bad |= buf_append(b, v.raw, es); /* little-endian: low bytes first */
        } else {
            gguf_get_u64(src, key, &v.u);
            bad |= buf_append(b, v.raw, es);
        }
    }
    return bad ? gw_fail(w, -SMP_E_NOMEM, "out of memory") : 0;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const uint64_t *ne) {
    if (w->f) return gw_fail(w, -SMP_E_VALIDATION, "tensor '%s' added after gguf_writer_begin", name);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return gw_fail(w, -SMP_E_VALIDATION, "tensor '%s': %d dims", name, n_dims);
    size_t be = tt_block_elems(type);
    if (!be || ne[0] % be)
        return gw_fail(w, -SMP_E_VALIDATION, "tensor '%s': %llu columns do not fit type %s", name,
                       (unsigned long long)ne[0], tt_name(type));
    for (int i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return gw_fail(w, -SMP_E_VALIDATION, "duplicate tensor '%s'", name);
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = smp_realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return gw_fail(w, -SMP_E_NOMEM, "out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = smp_strdup(name))) return gw_fail(w, -SMP_E_NOMEM, "out of memory");
    t->type = type;
    t->n_dims = n_dims;
    uint64_t rows = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < n_dims ? ne[d] : 1;
        if (d) rows *= t->ne[d];
    }
    t->nbytes = t->ne[0] / be * tt_block_bytes(type) * rows;
    w->n_t++;
    return 0;
}

/* general.alignment if set as a u32 power of two, else the default. */
static int find_alignment(gguf_writer *w) {
    w->alignment = GW_DEFAULT_ALIGNMENT;
    for (int i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment")) continue;
        uint32_t t, v;
        if (w->kv[i].val.len != 8) return gw_fail(w, -SMP_E_VALIDATION, "general.alignment must be a u32");
        memcpy(&t, w->kv[i].val.data, 4);
        memcpy(&v, w->kv[i].val.data + 4, 4);
        if (t != GGUF_TYPE_UINT32 || v == 0 || (v & (v - 1)))
            return gw_fail(w, -SMP_E_VALIDATION, "general.alignment must be a u32 power of two");
        w->alignment = v;
    }
    return 0;
}

static int write_zeros(FILE *f, size_t n) {
    static const char z[256];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        if (fwrite(z, 1, k, f) != k) return -1;
        n -= k;
    }
    return 0;
}

int gguf_writer_begin(gguf_writer *w, const char *path) {
    if (w->f) return gw_fail(w, -SMP_E_VALIDATION, "gguf_writer_begin called twice");
    int rc = find_alignment(w);
    if (rc) return rc;
    buf h;
    buf_init(&h, 0);
    int bad = buf_append(&h, "GGUF", 4) | put_u32(&h, 3) | put_u64(&h, (uint64_t)w->n_t) | put_u64(&h, (uint64_t)w->n_kv);
    for (int i = 0; i < w->n_kv && !bad; i++)
        bad |= put_str(&h, w->kv[i].key, strlen(w->kv[i].key)) | buf_append(&h, w->kv[i].val.data, w->kv[i].val.len);
    uint64_t off = 0;
    for (int i = 0; i < w->n_t && !bad; i++) {
        wtensor *t = &w->t[i];
        t->offset = off;
        bad |= put_str(&h, t->name, strlen(t->name)) | put_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) bad |= put_u64(&h, t->ne[d]);
        bad |= put_u32(&h, (uint32_t)t->type) | put_u64(&h, off);
        off += (t->nbytes + w->alignment - 1) / w->alignment * w->alignment;
    }
    size_t pad = (w->alignment - h.len % w->alignment) % w->alignment;
    if (bad) {
        buf_free(&h);
        return gw_fail(w, -SMP_E_NOMEM, "out of memory");
    }
    if (!(w->path = smp_strdup(path)) || !(w->f = fopen(path, "wb"))) {
        buf_free(&h);
        return gw_fail(w, -SMP_E_IO, "cannot create '%s': %s", path, strerror(errno));
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    bad = fwrite(h.data, 1, h.len, w->f) != h.len || write_zeros(w->f, pad);
    buf_free(&h);
    if (bad) return gw_fail(w, -SMP_E_IO, "write to '%s' failed: %s", path, strerror(errno));
    w->cur = 0;
    w->cur_done = 0;
    while (w->cur < w->n_t && w->t[w->cur].nbytes == 0) w->cur++;
    return 0;
}

int gguf_writer_data(gguf_writer *w, const void *data, size_t n) {
    if (!w->f || w->finished) return gw_fail(w, -SMP_E_VALIDATION, "tensor data outside begin/finish");
    if (w->cur >= w->n_t) return gw_fail(w, -SMP_E_VALIDATION, "more tensor data than declared");
    wtensor *t = &w->t[w->cur];
    if (n > t->nbytes - w->cur_done)
        return gw_fail(w, -SMP_E_VALIDATION, "tensor '%s': %zu bytes more than its size (%llu)", t->name,
                       n - (size_t)(t->nbytes - w->cur_done), (unsigned long long)t->nbytes);
    if (fwrite(data, 1, n, w->f) != n) return gw_fail(w, -SMP_E_IO, "write to '%s' failed: %s", w->path, strerror(errno));
    w->cur_done += n;
    if (w->cur_done == t->nbytes) {
        size_t pad = (size_t)((w->alignment - t->nbytes % w->alignment) % w->alignment);
        if (write_zeros(w->f, pad)) return gw_fail(w, -SMP_E_IO, "write to '%s' failed: %s", w->path, strerror(errno));
        w->cur++;
        w->cur_done = 0;
        while (w->cur < w->n_t && w->t[w->cur].nbytes == 0) w->cur++;
    }
    return 0;
}

int gguf_writer_finish(gguf_writer *w) {
    if (!w->f) return gw_fail(w, -SMP_E_VALIDATION, "gguf_writer_finish without begin");
    if (w->cur < w->n_t)
        return gw_fail(w, -SMP_E_VALIDATION, "tensor '%s' is missing %llu bytes", w->t[w->cur].name,
                       (unsigned long long)(w->t[w->cur].nbytes - w->cur_done));
    int bad = fflush(w->f) != 0;
    bad |= fclose(w->f) != 0;
    w->f = NULL;
    if (bad) {
        unlink(w->path);
        return gw_fail(w, -SMP_E_IO, "write to '%s' failed: %s", w->path, strerror(errno));
    }
    w->finished = true;
    return 0;
}
