/* test_gguf.c - the GGUF reader against the real files in ../shared and
 * against small files built here (a static writer), then corrupted on purpose.
 *
 * The writer's "small" file (build_small) is the base of most corruption tests;
 * its layout struct records the file offset of every field a test patches:
 *   kv:      general.architecture = "llama", general.alignment = u32 32,
 *            general.name = "tiny", tokenizer.ggml.tokens = ["a","bb","ccc"],
 *            tokenizer.ggml.scores = f32[0.5,-1,2], llama.embedding_length = u32 8
 *   tensors: t0 F32 [8,2] @0 (64 B), t1 F32 [8] @64 (32 B), q0 Q8_0 [32] @96 (34 B)
 *   data:    byte i of the data section holds i & 0xff; q0 ends exactly at EOF.
 * With SMP_GGUF_CORPUS_DIR set, the gguf_seed_corpus test writes the fuzz seeds (.seed:
 * synthetic GGUF bytes, not model files)
 * (tests/fuzz/corpus/gguf was made that way). */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/gguf.h"
#include "engine/tensor_types.h"
#include "test.h"

/* ---- a minimal GGUF writer ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} wbuf;

static void w_bytes(wbuf *w, const void *d, size_t n) {
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n) cap *= 2;
        w->p = smp_realloc(w->p, cap);
        SMP_ASSERT(w->p);
        w->cap = cap;
    }
    memcpy(w->p + w->len, d, n);
    w->len += n;
}
static void w_u8(wbuf *w, uint8_t v) { w_bytes(w, &v, 1); }
static void w_u16(wbuf *w, uint16_t v) { w_bytes(w, &v, 2); }
static void w_u32(wbuf *w, uint32_t v) { w_bytes(w, &v, 4); }
static void w_u64(wbuf *w, uint64_t v) { w_bytes(w, &v, 8); }
static void w_f32(wbuf *w, float v) { w_bytes(w, &v, 4); }
static void w_f64(wbuf *w, double v) { w_bytes(w, &v, 8); }
static void w_str(wbuf *w, const char *s) {
    w_u64(w, strlen(s));
    w_bytes(w, s, strlen(s));
}
static void w_header(wbuf *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    w_bytes(w, "GGUF", 4);
    w_u32(w, version);
    w_u64(w, n_tensors);
    w_u64(w, n_kv);
}
static void w_key(wbuf *w, const char *key, gguf_type t) {
    w_str(w, key);
    w_u32(w, t);
}
static void w_arr(wbuf *w, const char *key, gguf_type et, uint64_t n) {
    w_key(w, key, GGUF_TYPE_ARRAY);
    w_u32(w, et);
    w_u64(w, n);
}
static void w_tensor(wbuf *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t offset) {
    w_str(w, name);
    w_u32(w, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) w_u64(w, ne[d]);
    w_u32(w, type);
    w_u64(w, offset);
}
/* Pad to align, then n data bytes (byte i = i & 0xff); returns the data start. */
static size_t w_data(wbuf *w, size_t align, size_t n) {
    while (w->len % align) w_u8(w, 0);
    size_t start = w->len;
    for (size_t i = 0; i < n; i++) w_u8(w, (uint8_t)i);
    return start;
}
static void w_free(wbuf *w) { smp_free(w->p); }

static void patch_u32(wbuf *w, size_t off, uint32_t v) { memcpy(w->p + off, &v, 4); }
static void patch_u64(wbuf *w, size_t off, uint64_t v) { memcpy(w->p + off, &v, 8); }

typedef struct {
    size_t arch_type, align_val, name_len, tok_elem_type, tok_n, tok_str1;
    size_t t_name[3], t_ndims[3], t_ne0[3], t_type[3], t_off[3];
    size_t data;
} layout;

static void build_small(wbuf *w, layout *L, uint32_t version) {
    memset(w, 0, sizeof *w);
    w_header(w, version, 3, 6);
    w_key(w, "general.architecture", GGUF_TYPE_STRING);
    L->arch_type = w->len - 4;
    w_str(w, "llama");
    w_key(w, "general.alignment", GGUF_TYPE_UINT32);
    L->align_val = w->len;
    w_u32(w, 32);
    w_key(w, "general.name", GGUF_TYPE_STRING);
    L->name_len = w->len;
    w_str(w, "tiny");
    w_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, 3);
    L->tok_elem_type = w->len - 12;
    L->tok_n = w->len - 8;
    w_str(w, "a");
    L->tok_str1 = w->len;
    w_str(w, "bb");
    w_str(w, "ccc");
    w_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, 3);
    w_f32(w, 0.5f), w_f32(w, -1.0f), w_f32(w, 2.0f);
    w_key(w, "llama.embedding_length", GGUF_TYPE_UINT32);
    w_u32(w, 8);

    static const char *names[3] = {"t0", "t1", "q0"};
    static const uint64_t ne[3][2] = {{8, 2}, {8, 1}, {32, 1}};
    static const uint32_t nd[3] = {2, 1, 1}, ty[3] = {TT_F32, TT_F32, TT_Q8_0};
    static const uint64_t off[3] = {0, 64, 96};
    for (int i = 0; i < 3; i++) {
        L->t_name[i] = w->len + 8;
        L->t_ndims[i] = L->t_name[i] + 2;
        L->t_ne0[i] = L->t_ndims[i] + 4;
        L->t_type[i] = L->t_ne0[i] + 8 * nd[i];
        L->t_off[i] = L->t_type[i] + 4;
        w_tensor(w, names[i], nd[i], ne[i], ty[i], off[i]);
    }
    L->data = w_data(w, 32, 96 + 34);
}

/* Open an exact-size heap copy of the first len bytes (so ASan sees overreads). */
static int open_copy(const void *data, size_t len, char *err, size_t errlen) {
    void *copy = malloc(len ? len : 1);
    SMP_ASSERT(copy);
    memcpy(copy, data, len);
    gguf *g = NULL;
    int rc = gguf_open_mem(copy, len, &g, err, errlen);
    gguf_close(g);
    free(copy);
    return rc;
}

/* Expect a refusal whose message contains word. */
#define CHECK_REFUSED(w, word)                                                              \
    do {                                                                                    \
        char err_[512] = "";                                                                \
        int rc_ = open_copy((w)->p, (w)->len, err_, sizeof err_);                           \
        CHECK_INT(rc_, -SMP_E_FORMAT);                                                      \
        if (!strstr(err_, (word))) {                                                        \
            fprintf(stderr, "  %s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__,   \
                    err_, (word));                                                          \
            test_failures++;                                                                \
        }                                                                                   \
    } while (0)

static bool str_is(gguf_str s, const char *want) {
    return s.len == strlen(want) && !memcmp(s.ptr, want, s.len);
}

/* ---- small files built here ---- */

static void check_small(uint32_t version) {
    wbuf w;
    layout L;
    build_small(&w, &L, version);
    gguf *g = NULL;
    char err[256] = "";
    int rc = gguf_open_mem(w.p, w.len, &g, err, sizeof err);
    if (rc) fprintf(stderr, "  open: %s\n", err);
    REQUIRE(rc == 0 && g);
    CHECK_INT(gguf_version(g), version);
    CHECK_INT(gguf_file_size(g), w.len);
    CHECK_INT(gguf_alignment(g), 32);
    CHECK_INT(gguf_n_kv(g), 6);
    CHECK_STR(gguf_key(g, 0), "general.architecture");
    CHECK_STR(gguf_key(g, 5), "llama.embedding_length");
    CHECK(gguf_key(g, 6) == NULL && gguf_key(g, -1) == NULL);
    CHECK_INT(gguf_kv_type(g, 3), GGUF_TYPE_ARRAY);
    CHECK_INT(gguf_kv_type(g, 99), GGUF_TYPE__COUNT);
    CHECK_INT(gguf_find_key(g, "general.name"), 2);
    CHECK_INT(gguf_find_key(g, "general.nam"), -1);

    gguf_str s;
    CHECK(gguf_get_str(g, "general.architecture", &s) && str_is(s, "llama"));
    CHECK(!gguf_get_str(g, "llama.embedding_length", &s));
    uint64_t u = 0;
    CHECK(gguf_get_u64(g, "llama.embedding_length", &u) && u == 8);
    CHECK(!gguf_get_u64(g, "general.name", &u));
    CHECK(!gguf_get_u64(g, "missing", &u));

    gguf_type et;
    uint64_t n = 0;
    CHECK(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) && et == GGUF_TYPE_STRING && n == 3);
    CHECK(gguf_arr_str(g, "tokenizer.ggml.tokens", 0, &s) && str_is(s, "a"));
    CHECK(gguf_arr_str(g, "tokenizer.ggml.tokens", 2, &s) && str_is(s, "ccc"));
    CHECK(!gguf_arr_str(g, "tokenizer.ggml.tokens", 3, &s));
    CHECK(gguf_arr_data(g, "tokenizer.ggml.tokens") == NULL);
    double d = 0;
    CHECK(gguf_arr_f64(g, "tokenizer.ggml.scores", 1, &d) && d == -1.0);
    CHECK(!gguf_arr_f64(g, "tokenizer.ggml.tokens", 0, &d));
    CHECK(!gguf_arr_str(g, "tokenizer.ggml.scores", 0, &s));
    float f3[3];
    const void *raw = gguf_arr_data(g, "tokenizer.ggml.scores");
    REQUIRE(raw);
    memcpy(f3, raw, sizeof f3);
    CHECK(f3[0] == 0.5f && f3[2] == 2.0f);

    CHECK_INT(gguf_n_tensors(g), 3);
    const gguf_tensor *t0 = gguf_find_tensor(g, "t0"), *q0 = gguf_find_tensor(g, "q0");
    REQUIRE(t0 && q0);
    CHECK(gguf_tensor_at(g, 0) == t0 && gguf_tensor_at(g, 2) == q0);
    CHECK(gguf_tensor_at(g, 3) == NULL && gguf_find_tensor(g, "t2") == NULL);
    CHECK_INT(t0->n_dims, 2);
    CHECK(t0->ne[0] == 8 && t0->ne[1] == 2 && t0->ne[2] == 1 && t0->ne[3] == 1);
    CHECK_INT(t0->type, TT_F32);
    CHECK_INT(t0->nbytes, 64);
    CHECK(t0->data == w.p + L.data);
    CHECK_INT(q0->type, TT_Q8_0);
    CHECK_INT(q0->nbytes, 34);
    CHECK_INT(q0->offset, 96);
    CHECK(q0->data == w.p + L.data + 96 && ((const uint8_t *)q0->data)[1] == 97);
    gguf_close(g);
    w_free(&w);
}

TEST(gguf_small_v3) { check_small(3); }
TEST(gguf_small_v2) { check_small(2); }

/* One key of every scalar type, arrays of every element type, edge values. */
static void build_all_types(wbuf *w, uint32_t version) {
    memset(w, 0, sizeof *w);
    w_header(w, version, 3, 30);
    w_key(w, "u8", GGUF_TYPE_UINT8), w_u8(w, 255);
    w_key(w, "i8", GGUF_TYPE_INT8), w_u8(w, (uint8_t)-5);
    w_key(w, "u16", GGUF_TYPE_UINT16), w_u16(w, 65535);
    w_key(w, "i16", GGUF_TYPE_INT16), w_u16(w, (uint16_t)-300);
    w_key(w, "u32", GGUF_TYPE_UINT32), w_u32(w, 4000000000u);
    w_key(w, "i32", GGUF_TYPE_INT32), w_u32(w, (uint32_t)-2000000000);
    w_key(w, "f32", GGUF_TYPE_FLOAT32), w_f32(w, 1.5f);
    w_key(w, "bool.t", GGUF_TYPE_BOOL), w_u8(w, 1);
    w_key(w, "bool.f", GGUF_TYPE_BOOL), w_u8(w, 0);
    w_key(w, "str", GGUF_TYPE_STRING), w_str(w, "h\xc3\xa9llo");
    w_key(w, "str.empty", GGUF_TYPE_STRING), w_str(w, "");
    w_key(w, "u64", GGUF_TYPE_UINT64), w_u64(w, UINT64_MAX);
    w_key(w, "i64", GGUF_TYPE_INT64), w_u64(w, (uint64_t)INT64_MIN);
    w_key(w, "f64", GGUF_TYPE_FLOAT64), w_f64(w, -2.25);
    w_key(w, "general.alignment", GGUF_TYPE_UINT32), w_u32(w, 64);
    w_arr(w, "a.u8", GGUF_TYPE_UINT8, 3), w_u8(w, 1), w_u8(w, 2), w_u8(w, 255);
    w_arr(w, "a.i8", GGUF_TYPE_INT8, 2), w_u8(w, (uint8_t)-1), w_u8(w, 7);
    w_arr(w, "a.u16", GGUF_TYPE_UINT16, 1), w_u16(w, 65535);
    w_arr(w, "a.i16", GGUF_TYPE_INT16, 1), w_u16(w, (uint16_t)-2);
    w_arr(w, "a.u32", GGUF_TYPE_UINT32, 2), w_u32(w, 0), w_u32(w, 4000000000u);
    w_arr(w, "a.i32", GGUF_TYPE_INT32, 1), w_u32(w, (uint32_t)-7);
    w_arr(w, "a.f32", GGUF_TYPE_FLOAT32, 3), w_f32(w, 0.5f), w_f32(w, -1.5f), w_f32(w, 1e30f);
    w_arr(w, "a.bool", GGUF_TYPE_BOOL, 2), w_u8(w, 1), w_u8(w, 0);
    w_arr(w, "a.u64", GGUF_TYPE_UINT64, 1), w_u64(w, UINT64_MAX);
    w_arr(w, "a.i64", GGUF_TYPE_INT64, 1), w_u64(w, (uint64_t)-9);
    w_arr(w, "a.f64", GGUF_TYPE_FLOAT64, 1), w_f64(w, 3.25);
    w_arr(w, "a.str", GGUF_TYPE_STRING, 3), w_str(w, ""), w_str(w, "x"), w_str(w, "yz");
    w_arr(w, "a.empty", GGUF_TYPE_UINT32, 0);
    w_arr(w, "a.empty_str", GGUF_TYPE_STRING, 0);
    w_key(w, "last", GGUF_TYPE_STRING), w_str(w, "end");
    /* F16 [4,3] (24 B), Q4_K [256] (144 B), BF16 [2,1,1,2] (8 B) at 64-byte offsets */
    w_tensor(w, "f16", 2, (const uint64_t[]){4, 3}, TT_F16, 0);
    w_tensor(w, "q4k", 1, (const uint64_t[]){256}, TT_Q4_K, 64);
    w_tensor(w, "bf16", 4, (const uint64_t[]){2, 1, 1, 2}, TT_BF16, 256);
    w_data(w, 64, 256 + 8);
}

static void check_all_types(uint32_t version) {
    wbuf w;
    build_all_types(&w, version);
    gguf *g = NULL;
    char err[256] = "";
    int rc = gguf_open_mem(w.p, w.len, &g, err, sizeof err);
    if (rc) fprintf(stderr, "  open: %s\n", err);
    REQUIRE(rc == 0);
    CHECK_INT(gguf_n_kv(g), 30);
    CHECK_INT(gguf_alignment(g), 64);
    uint64_t u = 0;
    int64_t i = 0;
    double d = 0;
    bool b = false;
    gguf_str s;
    CHECK(gguf_get_u64(g, "u8", &u) && u == 255);
    CHECK(gguf_get_i64(g, "u8", &i) && i == 255);
    CHECK(!gguf_get_u64(g, "i8", &u)); /* negative */
    CHECK(gguf_get_i64(g, "i8", &i) && i == -5);
    CHECK(gguf_get_f64(g, "i8", &d) && d == -5);
    CHECK(gguf_get_u64(g, "u16", &u) && u == 65535);
    CHECK(gguf_get_i64(g, "i16", &i) && i == -300);
    CHECK(gguf_get_u64(g, "u32", &u) && u == 4000000000u);
    CHECK(gguf_get_i64(g, "i32", &i) && i == -2000000000);
    CHECK(gguf_get_u64(g, "u64", &u) && u == UINT64_MAX);
    CHECK(!gguf_get_i64(g, "u64", &i)); /* above INT64_MAX */
    CHECK(gguf_get_i64(g, "i64", &i) && i == INT64_MIN);
    CHECK(gguf_get_f64(g, "f32", &d) && d == 1.5);
    CHECK(!gguf_get_u64(g, "f32", &u) && !gguf_get_i64(g, "f32", &i));
    CHECK(gguf_get_f64(g, "f64", &d) && d == -2.25);
    CHECK(gguf_get_f64(g, "u64", &d) && d == 18446744073709551615.0);
    CHECK(gguf_get_bool(g, "bool.t", &b) && b);
    CHECK(gguf_get_bool(g, "bool.f", &b) && !b);
    CHECK(!gguf_get_bool(g, "u8", &b) && !gguf_get_u64(g, "bool.t", &u) && !gguf_get_f64(g, "bool.t", &d));
    CHECK(gguf_get_str(g, "str", &s) && str_is(s, "h\xc3\xa9llo"));
    CHECK(gguf_get_str(g, "str.empty", &s) && s.len == 0);
    CHECK(gguf_get_str(g, "last", &s) && str_is(s, "end"));
    CHECK(!gguf_get_str(g, "a.str", &s) && !gguf_get_u64(g, "a.u8", &u));

    gguf_type et;
    uint64_t n;
    CHECK(gguf_get_arr(g, "a.u8", &et, &n) && et == GGUF_TYPE_UINT8 && n == 3);
    CHECK(gguf_arr_i64(g, "a.u8", 2, &i) && i == 255);
    CHECK(gguf_arr_i64(g, "a.i8", 0, &i) && i == -1);
    CHECK(gguf_arr_f64(g, "a.u16", 0, &d) && d == 65535);
    CHECK(gguf_arr_i64(g, "a.i16", 0, &i) && i == -2);
    CHECK(gguf_arr_i64(g, "a.u32", 1, &i) && i == 4000000000ll);
    CHECK(gguf_arr_i64(g, "a.i32", 0, &i) && i == -7);
    CHECK(gguf_arr_f64(g, "a.f32", 1, &d) && d == -1.5);
    CHECK(gguf_arr_i64(g, "a.f32", 1, &i) && i == -1); /* floats truncate toward zero */
    CHECK(!gguf_arr_i64(g, "a.f32", 2, &i));           /* 1e30 does not fit */
    CHECK(!gguf_arr_f64(g, "a.bool", 0, &d));
    const uint8_t *bools = gguf_arr_data(g, "a.bool");
    CHECK(bools && bools[0] == 1 && bools[1] == 0);
    CHECK(!gguf_arr_i64(g, "a.u64", 0, &i) && gguf_arr_f64(g, "a.u64", 0, &d));
    CHECK(gguf_arr_i64(g, "a.i64", 0, &i) && i == -9);
    CHECK(gguf_arr_f64(g, "a.f64", 0, &d) && d == 3.25);
    CHECK(!gguf_arr_f64(g, "a.f64", 1, &d));
    CHECK(gguf_arr_str(g, "a.str", 0, &s) && s.len == 0);
    CHECK(gguf_arr_str(g, "a.str", 2, &s) && str_is(s, "yz"));
    CHECK(gguf_get_arr(g, "a.empty", &et, &n) && et == GGUF_TYPE_UINT32 && n == 0);
    CHECK(!gguf_arr_i64(g, "a.empty", 0, &i));
    CHECK(gguf_get_arr(g, "a.empty_str", &et, &n) && et == GGUF_TYPE_STRING && n == 0);
    CHECK(!gguf_arr_str(g, "a.empty_str", 0, &s));
    CHECK(!gguf_get_arr(g, "u8", &et, &n));

    const gguf_tensor *t = gguf_find_tensor(g, "f16");
    REQUIRE(t);
    CHECK_INT(t->nbytes, 24);
    CHECK_INT(((uintptr_t)t->data - (uintptr_t)w.p) % 64, 0);
    t = gguf_find_tensor(g, "q4k");
    REQUIRE(t);
    CHECK_INT(t->nbytes, 144);
    t = gguf_find_tensor(g, "bf16");
    REQUIRE(t);
    CHECK_INT(t->n_dims, 4);
    CHECK(t->ne[3] == 2);
    CHECK_INT(t->nbytes, 8);
    CHECK((const uint8_t *)t->data + t->nbytes == w.p + w.len);
    gguf_close(g);
    w_free(&w);
}

TEST(gguf_every_value_type_v3) { check_all_types(3); }
TEST(gguf_every_value_type_v2) { check_all_types(2); }

TEST(gguf_type_names) {
    CHECK_STR(gguf_type_name(GGUF_TYPE_UINT8), "uint8");
    CHECK_STR(gguf_type_name(GGUF_TYPE_STRING), "string");
    CHECK_STR(gguf_type_name(GGUF_TYPE_FLOAT64), "float64");
    CHECK_STR(gguf_type_name((gguf_type)77), "unknown");
}

/* ---- real files ---- */

/* Every tensor: nbytes = elements / block * block bytes, data inside the file,
 * aligned, in order. Returns the number of tensors checked. */
static int check_tensors(const gguf *g, const char *path) {
    int bad = 0;
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        uint64_t n_el = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        size_t be = tt_block_elems(t->type), bb = tt_block_bytes(t->type);
        if (!be || t->nbytes != n_el / be * bb || t->offset % gguf_alignment(g) ||
            gguf_find_tensor(g, t->name) != t || t->n_dims < 1 || t->n_dims > 4) {
            fprintf(stderr, "  %s: tensor %s bad\n", path, t->name);
            bad++;
        }
        if (i > 0) {
            const gguf_tensor *p = gguf_tensor_at(g, i - 1);
            /* offsets relative to one data section: pointers differ by offsets */
            if ((const uint8_t *)t->data - (const uint8_t *)p->data != (ptrdiff_t)(t->offset - p->offset)) bad++;
        }
    }
    return bad;
}

TEST(gguf_real_stories260k) {
    const char *path = "../shared/models/stories260K.gguf";
    gguf *g = NULL;
    char err[512] = "";
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    CHECK_INT(gguf_version(g), 3);
    CHECK_INT(gguf_file_size(g), 1185376);
    CHECK_INT(gguf_alignment(g), 32);
    CHECK_INT(gguf_n_kv(g), 19);
    CHECK_INT(gguf_n_tensors(g), 48);
    gguf_str s;
    CHECK(gguf_get_str(g, "general.architecture", &s) && str_is(s, "llama"));
    CHECK(gguf_get_str(g, "tokenizer.ggml.model", &s) && str_is(s, "llama"));
    uint64_t u = 0;
    CHECK(gguf_get_u64(g, "llama.embedding_length", &u) && u == 64);
    CHECK(gguf_get_u64(g, "llama.block_count", &u) && u == 5);
    CHECK(gguf_get_u64(g, "llama.feed_forward_length", &u) && u == 172);
    CHECK(gguf_get_u64(g, "tokenizer.ggml.seperator_token_id", &u) && u == 4294967295u);
    double eps = 0;
    CHECK(gguf_get_f64(g, "llama.attention.layer_norm_rms_epsilon", &eps));
    CHECK_NEAR(eps, 1e-5, 1e-10);
    gguf_type et;
    uint64_t n = 0;
    CHECK(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) && et == GGUF_TYPE_STRING && n == 512);
    CHECK(gguf_arr_str(g, "tokenizer.ggml.tokens", 0, &s) && str_is(s, "<unk>"));
    CHECK(gguf_arr_str(g, "tokenizer.ggml.tokens", 1, &s) && str_is(s, "<s>"));
    CHECK(gguf_arr_str(g, "tokenizer.ggml.tokens", 2, &s) && str_is(s, "</s>"));
    CHECK(gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n) && et == GGUF_TYPE_FLOAT32 && n == 512);
    int64_t tt = 0;
    CHECK(gguf_arr_i64(g, "tokenizer.ggml.token_type", 0, &tt) && tt == 2);
    CHECK(gguf_arr_i64(g, "tokenizer.ggml.token_type", 1, &tt) && tt == 3);

    const gguf_tensor *t = gguf_find_tensor(g, "blk.0.attn_q.weight");
    REQUIRE(t);
    CHECK_INT(t->type, TT_F32);
    CHECK_INT(t->n_dims, 2);
    CHECK(t->ne[0] == 64 && t->ne[1] == 64);
    CHECK_INT(t->offset, 262400);
    CHECK_INT(t->nbytes, 64 * 64 * 4);
    t = gguf_find_tensor(g, "token_embd.weight");
    REQUIRE(t);
    CHECK(t->ne[0] == 64 && t->ne[1] == 512 && t->offset == 0);
    const gguf_tensor *last = gguf_tensor_at(g, 47);
    REQUIRE(last);
    CHECK_STR(last->name, "blk.4.ffn_norm.weight");
    /* the last tensor ends exactly at the end of the file */
    CHECK((const uint8_t *)last->data + last->nbytes == (const uint8_t *)t->data + (1185376 - 14176));
    CHECK_INT(check_tensors(g, path), 0);
    gguf_close(g);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

TEST(gguf_real_mini_models) {
    static const struct {
        const char *file;
        int type;
        int n_tensors;
        const char *arch;
    } cases[] = {
        {"mini-llama-f32.gguf", TT_F32, 21, "llama"},   {"mini-llama-F16.gguf", TT_F16, 21, "llama"},
        {"mini-llama-BF16.gguf", TT_BF16, 21, "llama"}, {"mini-llama-Q8_0.gguf", TT_Q8_0, 21, "llama"},
        {"mini-llama-Q4_0.gguf", TT_Q4_0, 21, "llama"}, {"mini-llama-Q4_1.gguf", TT_Q4_1, 21, "llama"},
        {"mini-llama-Q5_0.gguf", TT_Q5_0, 21, "llama"}, {"mini-llama-Q5_1.gguf", TT_Q5_1, 21, "llama"},
        {"mini-llama-Q2_K.gguf", TT_Q2_K, 21, "llama"}, {"mini-llama-Q3_K.gguf", TT_Q3_K, 21, "llama"},
        {"mini-llama-Q4_K.gguf", TT_Q4_K, 21, "llama"}, {"mini-llama-Q5_K.gguf", TT_Q5_K, 21, "llama"},
        {"mini-llama-Q6_K.gguf", TT_Q6_K, 21, "llama"}, {"mini-qwen2-f32.gguf", TT_F32, 27, "qwen2"},
        {"mini-qwen2-Q8_0.gguf", TT_Q8_0, 27, "qwen2"}, {"mini-qwen2-Q4_K_M.gguf", TT_Q4_K, 27, "qwen2"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char path[256], err[512] = "";
        snprintf(path, sizeof path, "../shared/models/mini/%s", cases[c].file);
        gguf *g = NULL;
        int rc = gguf_open(path, &g, err, sizeof err);
        if (rc) fprintf(stderr, "  %s\n", err);
        CHECK_INT(rc, 0);
        if (rc) continue;
        gguf_str s;
        CHECK(gguf_get_str(g, "general.architecture", &s) && str_is(s, cases[c].arch));
        CHECK_INT(gguf_n_tensors(g), cases[c].n_tensors);
        const gguf_tensor *t = gguf_find_tensor(g, "blk.0.attn_q.weight");
        CHECK(t && t->type == cases[c].type && t->ne[0] == 256 && t->ne[1] == 256);
        uint64_t n = 0;
        CHECK(gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &n) && n == 512);
        CHECK_INT(check_tensors(g, path), 0);
        gguf_close(g);
    }
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

TEST(gguf_real_vocab_files) {
    static const struct {
        const char *name, *first;
        uint64_t n_tokens, n_merges;
    } cases[] = {
        {"bert-bge", "[PAD]", 30522, 0},          {"deepseek-llm", "!", 102400, 99757},
        {"falcon", ">>TITLE<<", 65024, 64784},    {"gpt-2", "!", 50257, 50000},
        {"llama-spm", "<unk>", 32000, 0},         {"starcoder", "<|endoftext|>", 49152, 48872},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char path[256], err[512] = "";
        snprintf(path, sizeof path, "../shared/vocab/ggml-vocab-%s.gguf", cases[c].name);
        gguf *g = NULL;
        int rc = gguf_open(path, &g, err, sizeof err);
        if (rc) fprintf(stderr, "  %s\n", err);
        CHECK_INT(rc, 0);
        if (rc) continue;
        CHECK_INT(gguf_n_tensors(g), 0);
        uint64_t n = 0;
        gguf_type et;
        CHECK(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) && et == GGUF_TYPE_STRING);
        CHECK_INT(n, cases[c].n_tokens);
        gguf_str s, prev = {0};
        CHECK(gguf_arr_str(g, "tokenizer.ggml.tokens", 0, &s) && str_is(s, cases[c].first));
        /* every element sits right after the previous one (8-byte length between) */
        int bad = 0;
        for (uint64_t j = 0; j < n; j++) {
            if (!gguf_arr_str(g, "tokenizer.ggml.tokens", j, &s)) bad++;
            else if (j && s.ptr != prev.ptr + prev.len + 8) bad++;
            prev = s;
        }
        CHECK_INT(bad, 0);
        if (cases[c].n_merges) {
            CHECK(gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n) && et == GGUF_TYPE_STRING);
            CHECK_INT(n, cases[c].n_merges);
            CHECK(gguf_arr_str(g, "tokenizer.ggml.merges", n - 1, &s) && s.len > 0);
        }
        gguf_close(g);
    }
}

TEST(gguf_open_errors) {
    gguf *g = (gguf *)1;
    char err[512] = "";
    CHECK_INT(gguf_open("../shared/models/no-such.gguf", &g, err, sizeof err), -SMP_E_NOT_FOUND);
    CHECK(g == NULL);
    CHECK(strstr(err, "no-such.gguf") != NULL);
    CHECK(gguf_open("../shared/models", &g, err, sizeof err) < 0);
    CHECK(strstr(err, "not a regular file") != NULL);
    /* whisper.cpp's .bin files are the older ggml format */
    CHECK_INT(gguf_open("../shared/models/whisper/whisper-rand-tiny64-q8_0.bin", &g, err, sizeof err),
              -SMP_E_FORMAT);
    CHECK(strstr(err, "ggml") != NULL && strstr(err, "whisper-rand-tiny64-q8_0.bin") != NULL);
    char tmp[] = "/tmp/gguf_empty_XXXXXX";
    int fd = mkstemp(tmp);
    REQUIRE(fd >= 0);
    close(fd);
    CHECK_INT(gguf_open(tmp, &g, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "empty") != NULL);
    unlink(tmp);
    /* no error buffer at all */
    CHECK(gguf_open_mem("GGUF", 4, &g, NULL, 0) < 0);
    gguf_close(NULL);
}

/* ---- corrupt files ---- */

static bool truncation_message(const char *err) {
    return strstr(err, "past end of file") || strstr(err, "truncated") || strstr(err, "empty");
}

TEST(gguf_corrupt_truncated_small) {
    wbuf w;
    layout L;
    build_small(&w, &L, 3);
    for (size_t cut = 0; cut < w.len; cut++) {
        char err[512] = "";
        int rc = open_copy(w.p, cut, err, sizeof err);
        CHECK_INT(rc, -SMP_E_FORMAT);
        if (!truncation_message(err)) {
            fprintf(stderr, "  cut %zu: %s\n", cut, err);
            test_failures++;
        }
    }
    CHECK_INT(open_copy(w.p, w.len, NULL, 0), 0);
    w_free(&w);
}

TEST(gguf_corrupt_truncated_stories) {
    int fd = open("../shared/models/stories260K.gguf", O_RDONLY);
    REQUIRE(fd >= 0);
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0);
    size_t size = (size_t)st.st_size;
    uint8_t *all = malloc(size);
    REQUIRE(all && read(fd, all, size) == (ssize_t)size);
    close(fd);
    /* 50 even cuts across the file, then 100 inside the 14 KiB header */
    for (int k = 0; k < 150; k++) {
        size_t cut = k < 50 ? size / 50 * k : (size_t)(k - 50) * 14176 / 100 + 7;
        char err[512] = "";
        int rc = open_copy(all, cut, err, sizeof err);
        CHECK_INT(rc, -SMP_E_FORMAT);
        if (!truncation_message(err)) {
            fprintf(stderr, "  cut %zu: %s\n", cut, err);
            test_failures++;
        }
    }
    char err[512] = "";
    CHECK_INT(open_copy(all, size, err, sizeof err), 0);
    CHECK_INT(open_copy(all, size - 1, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "tensor 'blk.4.ffn_norm.weight'") != NULL);
    free(all);
}

TEST(gguf_corrupt_header) {
    wbuf w;
    layout L;
    build_small(&w, &L, 3);
    memcpy(w.p, "GGUG", 4);
    CHECK_REFUSED(&w, "bad magic");
    memcpy(w.p, "lmgg", 4);
    CHECK_REFUSED(&w, "legacy ggml");
    memcpy(w.p, "GGUF", 4);
    patch_u32(&w, 4, 1);
    CHECK_REFUSED(&w, "GGUF version 1 is not supported");
    patch_u32(&w, 4, 99);
    CHECK_REFUSED(&w, "version 99");
    patch_u32(&w, 4, 0x03000000);
    CHECK_REFUSED(&w, "big-endian");
    patch_u32(&w, 4, 3);
    patch_u64(&w, 8, 1ull << 60);
    CHECK_REFUSED(&w, "tensor count 1152921504606846976 is impossible");
    patch_u64(&w, 8, 30); /* fits the kv bound, not the tensor bound */
    CHECK_REFUSED(&w, "tensor count");
    patch_u64(&w, 8, 3);
    patch_u64(&w, 16, 1ull << 60);
    CHECK_REFUSED(&w, "kv count");
    patch_u64(&w, 16, UINT64_MAX);
    CHECK_REFUSED(&w, "kv count");
    patch_u64(&w, 16, 6);
    CHECK_INT(open_copy(w.p, w.len, NULL, 0), 0);
    w_free(&w);
}

TEST(gguf_corrupt_values) {
    wbuf w;
    layout L;
    build_small(&w, &L, 3);
    patch_u64(&w, L.name_len, 1ull << 40);
    CHECK_REFUSED(&w, "key 'general.name': string value length 1099511627776");
    patch_u64(&w, L.name_len, w.len - L.name_len - 8 + 1);
    CHECK_REFUSED(&w, "past end of file");
    patch_u64(&w, L.name_len, 4);

    patch_u32(&w, L.arch_type, 13);
    CHECK_REFUSED(&w, "key 'general.architecture': value type id 13 is unknown");
    patch_u32(&w, L.arch_type, GGUF_TYPE_STRING);

    patch_u32(&w, L.tok_elem_type, GGUF_TYPE_ARRAY);
    CHECK_REFUSED(&w, "arrays of arrays are not supported");
    patch_u32(&w, L.tok_elem_type, 42);
    CHECK_REFUSED(&w, "array element type id 42 is unknown");
    patch_u32(&w, L.tok_elem_type, GGUF_TYPE_STRING);

    patch_u64(&w, L.tok_n, 1ull << 61);
    CHECK_REFUSED(&w, "array of 2305843009213693952 strings runs past end of file");
    patch_u64(&w, L.tok_n, 3);
    patch_u64(&w, L.tok_str1, 1ull << 62);
    CHECK_REFUSED(&w, "key 'tokenizer.ggml.tokens' element 1: string length");

    patch_u64(&w, L.tok_str1, 2);
    patch_u32(&w, L.tok_elem_type, GGUF_TYPE_FLOAT64); /* 3 f64s = 24 bytes: reinterprets the rest */
    {
        char err[512] = "";
        CHECK(open_copy(w.p, w.len, err, sizeof err) < 0); /* whatever follows is garbage */
    }
    patch_u32(&w, L.tok_elem_type, GGUF_TYPE_STRING);

    patch_u32(&w, L.align_val, 48);
    CHECK_REFUSED(&w, "general.alignment = 48 is not a power of two");
    patch_u32(&w, L.align_val, 0);
    CHECK_REFUSED(&w, "power of two");
    patch_u32(&w, L.align_val, 16); /* offsets 0, 64, 96 stay aligned */
    CHECK_INT(open_copy(w.p, w.len, NULL, 0), 0);
    w_free(&w);

    /* duplicate key, NUL in a key, alignment of the wrong type */
    memset(&w, 0, sizeof w);
    w_header(&w, 3, 0, 2);
    w_key(&w, "a.b", GGUF_TYPE_UINT8), w_u8(&w, 1);
    w_key(&w, "a.b", GGUF_TYPE_UINT8), w_u8(&w, 2);
    CHECK_REFUSED(&w, "key 'a.b': duplicate key");
    w.p[24 + 8 + 1] = 0; /* first key "a\0b" */
    CHECK_REFUSED(&w, "NUL");
    w_free(&w);
    memset(&w, 0, sizeof w);
    w_header(&w, 3, 0, 1);
    w_key(&w, "general.alignment", GGUF_TYPE_STRING), w_str(&w, "32");
    CHECK_REFUSED(&w, "expected an integer");
    w_free(&w);
    memset(&w, 0, sizeof w);
    w_header(&w, 3, 0, 1);
    w_key(&w, "general.alignment", GGUF_TYPE_INT32), w_u32(&w, (uint32_t)-32);
    CHECK_REFUSED(&w, "general.alignment = -32");
    w_free(&w);
}

TEST(gguf_corrupt_tensors) {
    wbuf w;
    layout L;
    build_small(&w, &L, 3);
    patch_u64(&w, L.t_off[2], 1u << 20);
    CHECK_REFUSED(&w, "tensor 'q0': data (offset 1048576, size 34) runs past end of file");
    patch_u64(&w, L.t_off[2], 1ull << 63);
    CHECK_REFUSED(&w, "past end of file");
    patch_u64(&w, L.t_off[2], 128); /* aligned, but 34 bytes from 128 pass the end */
    CHECK_REFUSED(&w, "past end of file");
    patch_u64(&w, L.t_off[2], 96);

    patch_u64(&w, L.t_off[1], 68);
    CHECK_REFUSED(&w, "tensor 't1': data offset 68 is not a multiple of the alignment 32");
    patch_u64(&w, L.t_off[1], 64);

    patch_u32(&w, L.t_type[2], 99);
    CHECK_REFUSED(&w, "tensor 'q0': type id 99 is unknown");
    patch_u32(&w, L.t_type[2], 0x80000000u);
    CHECK_REFUSED(&w, "type id 2147483648 is unknown");
    patch_u32(&w, L.t_type[2], 4); /* a removed ggml type (Q4_2) */
    CHECK_REFUSED(&w, "type id 4 is unknown");
    patch_u32(&w, L.t_type[2], TT_Q4_K);
    CHECK_REFUSED(&w, "ne[0] = 32 is not a multiple of the Q4_K block size 256");
    patch_u32(&w, L.t_type[2], TT_Q8_0);

    patch_u32(&w, L.t_ndims[1], 0);
    CHECK_REFUSED(&w, "tensor 't1': n_dims 0 is out of range");
    patch_u32(&w, L.t_ndims[1], 5);
    CHECK_REFUSED(&w, "n_dims 5");
    patch_u32(&w, L.t_ndims[1], 1);

    patch_u64(&w, L.t_ne0[0], 0);
    CHECK_REFUSED(&w, "tensor 't0': ne[0] is 0");
    patch_u64(&w, L.t_ne0[0], 1ull << 62); /* times ne[1] = 2 passes INT64_MAX */
    CHECK_REFUSED(&w, "element count overflows");
    patch_u64(&w, L.t_ne0[0], 1ull << 61); /* 2^62 elements: size 2^64 overflows */
    CHECK_REFUSED(&w, "overflow");
    patch_u64(&w, L.t_ne0[0], 1ull << 40);
    CHECK_REFUSED(&w, "tensor 't0': data (offset 0");
    patch_u64(&w, L.t_ne0[0], 8);

    memcpy(w.p + L.t_name[1], "t0", 2);
    CHECK_REFUSED(&w, "tensor 't0': duplicate tensor name");
    memcpy(w.p + L.t_name[1], "t1", 2);
    CHECK_INT(open_copy(w.p, w.len, NULL, 0), 0);
    w_free(&w);
}

/* Random single-byte and 8-byte corruptions of the small file: never a crash,
 * and a refusal always comes with a message. */
TEST(gguf_corrupt_random_bytes) {
    wbuf w;
    layout L;
    build_small(&w, &L, 3);
    uint64_t seed = 12345;
    uint8_t *copy = malloc(w.len);
    REQUIRE(copy);
    int refused = 0;
    for (int k = 0; k < 20000; k++) {
        memcpy(copy, w.p, w.len);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t at = (size_t)(seed >> 33) % w.len;
        if (k & 1) copy[at] = (uint8_t)(seed >> 8);
        else if (at + 8 <= w.len) memcpy(copy + at, &seed, 8);
        char err[512] = "";
        gguf *g = NULL;
        int rc = gguf_open_mem(copy, w.len, &g, err, sizeof err);
        if (rc) {
            refused++;
            if (!err[0]) test_failures++;
        } else {
            for (int i = 0; i < gguf_n_tensors(g); i++) {
                const gguf_tensor *t = gguf_tensor_at(g, i);
                if ((const uint8_t *)t->data + t->nbytes > copy + w.len) test_failures++;
            }
        }
        gguf_close(g);
    }
    CHECK(refused > 1000);
    free(copy);
    w_free(&w);
}

/* Allocation failure at every step: -SMP_E_NOMEM or success, nothing leaks. */
TEST(gguf_alloc_failure) {
    wbuf w;
    build_all_types(&w, 3);
    size_t base = smp_alloc_live_bytes();
    int ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        char err[256] = "";
        gguf *g = NULL;
        smp_alloc_fail_after(n);
        int rc = gguf_open_mem(w.p, w.len, &g, err, sizeof err);
        smp_alloc_fail_after(-1);
        if (rc == 0) ok = 1;
        else {
            CHECK_INT(rc, -SMP_E_NOMEM);
            CHECK(strstr(err, "out of memory") != NULL);
        }
        gguf_close(g);
        CHECK_INT(smp_alloc_live_bytes(), base);
    }
    CHECK(ok);
    w_free(&w);
}

/* ---- fuzz seeds ---- */

static void write_seed(const char *dir, const char *name, const wbuf *w) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    SMP_ASSERT(f);
    SMP_ASSERT(fwrite(w->p, 1, w->len, f) == w->len);
    fclose(f);
}

TEST(gguf_seed_corpus) {
    const char *dir = getenv("SMP_GGUF_CORPUS_DIR");
    wbuf w;
    layout L;
    build_small(&w, &L, 3);
    CHECK_INT(open_copy(w.p, w.len, NULL, 0), 0);
    if (dir) write_seed(dir, "small-v3.seed", &w);
    w_free(&w);
    build_small(&w, &L, 2);
    CHECK_INT(open_copy(w.p, w.len, NULL, 0), 0);
    if (dir) write_seed(dir, "small-v2.seed", &w);
    w_free(&w);
    build_all_types(&w, 3);
    CHECK_INT(open_copy(w.p, w.len, NULL, 0), 0);
    if (dir) write_seed(dir, "all-types-v3.seed", &w);
    w_free(&w);

    /* header only, and a vocab-like file without tensors */
    memset(&w, 0, sizeof w);
    w_header(&w, 3, 0, 0);
    CHECK_INT(open_copy(w.p, w.len, NULL, 0), 0);
    if (dir) write_seed(dir, "empty-v3.seed", &w);
    w_free(&w);
    memset(&w, 0, sizeof w);
    w_header(&w, 3, 0, 3);
    w_key(&w, "general.architecture", GGUF_TYPE_STRING), w_str(&w, "bert");
    w_arr(&w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, 64);
    for (int i = 0; i < 64; i++) {
        char tok[16];
        snprintf(tok, sizeof tok, "tok%d", i);
        w_str(&w, tok);
    }
    w_arr(&w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, 64);
    for (int i = 0; i < 64; i++) w_u32(&w, 1);
    CHECK_INT(open_copy(w.p, w.len, NULL, 0), 0);
    if (dir) write_seed(dir, "vocab-v3.seed", &w);
    w_free(&w);

    /* one tensor of every known type, 256 elements each, alignment 64 */
    static const int types[] = {TT_F32, TT_F16, TT_Q4_0, TT_Q4_1, TT_Q5_0, TT_Q5_1, TT_Q8_0, TT_Q8_1,
                                TT_Q2_K, TT_Q3_K, TT_Q4_K, TT_Q5_K, TT_Q6_K, TT_Q8_K, TT_BF16};
    int nt = (int)(sizeof types / sizeof types[0]);
    memset(&w, 0, sizeof w);
    w_header(&w, 3, (uint64_t)nt, 1);
    w_key(&w, "general.alignment", GGUF_TYPE_UINT32), w_u32(&w, 64);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        char name[32];
        snprintf(name, sizeof name, "w.%s", tt_name(types[i]));
        w_tensor(&w, name, 1, (const uint64_t[]){256}, (uint32_t)types[i], off);
        off += (256 / tt_block_elems(types[i]) * tt_block_bytes(types[i]) + 63) / 64 * 64;
    }
    size_t last = 256 / tt_block_elems(TT_BF16) * tt_block_bytes(TT_BF16);
    w_data(&w, 64, (size_t)off - ((last + 63) / 64 * 64) + last);
    CHECK_INT(open_copy(w.p, w.len, NULL, 0), 0);
    if (dir) write_seed(dir, "every-tensor-type.seed", &w);
    w_free(&w);

    /* two refused ones, to start the fuzzer on error paths */
    build_small(&w, &L, 3);
    patch_u32(&w, L.t_type[2], 99);
    CHECK(open_copy(w.p, w.len, NULL, 0) < 0);
    if (dir) write_seed(dir, "bad-tensor-type.seed", &w);
    w.len = 60;
    CHECK(open_copy(w.p, w.len, NULL, 0) < 0);
    if (dir) write_seed(dir, "truncated.seed", &w);
    w_free(&w);
}
