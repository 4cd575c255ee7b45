/* whisper_model.c - load a Whisper model from whisper.cpp's legacy ggml .bin
 * file (ggml-tiny.bin, ggml-base.bin, ...): header, mel filters, vocabulary,
 * then the tensors, every one checked against what the hyper-parameters imply.
 *
 * File layout (little-endian, nothing padded or aligned):
 *   offset  size          field
 *   0       4             magic 0x67676d6c ("ggml" as a uint32)
 *   4       11 x 4        int32 n_vocab, n_audio_ctx, n_audio_state, n_audio_head,
 *                         n_audio_layer, n_text_ctx, n_text_state, n_text_head,
 *                         n_text_layer, n_mels, ftype (weight type + 1000 x quant version)
 *   48      8             int32 n_mel, int32 n_fft (= n_mels, 201)
 *   56      n_mel*n_fft*4 float32 mel filters, one row per band
 *   ...     4             int32 count of vocabulary pieces (<= n_vocab)
 *           per piece     uint32 length + bytes (byte-level BPE, no terminator)
 *   ...     per tensor    int32 n_dims, int32 name length, int32 ggml type,
 *                         n_dims x int32 ne (ne[0] contiguous), name bytes, data
 *                         until the end of the file.
 * Special token ids are not in the file: they follow from n_vocab (51864
 * English-only, 51865 multilingual, 51866 large-v3; see whisper_int.h).
 *
 * Data: the file is mmapped read-only; weight matrices point into it when
 * their address suits their type (2-byte alignment for F16 and the block
 * types, 4 for F32), else into an aligned copy; vectors become f32 copies.
 * The expected tensor table (name, shape, kind) is built from the hparams
 * first; each record in the file must match one entry, exactly once. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/kernels/kernels.h"
#include "engine/tensor_types.h"
#include "engine/whisper_int.h"
#include "engine/whisper_weights.h"

#define WHISPER_MAGIC 0x67676d6cu
#define WHISPER_MAX_LAYERS 128
#define WHISPER_MAX_STATE 8192
#define WHISPER_MAX_TEXT_CTX 4096
#define WHISPER_N_FFT_BINS 201
#define WHISPER_MAX_PIECE 1024
#define WHISPER_MAX_NAME 256

/* What a tensor is used as, which decides the types it may have. */
typedef enum {
    KIND_MAT,   /* weight matrix: any type the kernels multiply */
    KIND_CONV,  /* conv kernel: F16 or F32 */
    KIND_VEC,   /* vector / embedding table: F32 or F16, converted to f32 */
    KIND_CONVB, /* conv bias: as VEC, stored [1, n] by whisper.cpp ([n] accepted) */
} tensor_kind;

typedef struct {
    char name[64];
    int n_dims;
    int64_t ne[3];
    tensor_kind kind;
    void *dst;   /* whisper_mat * or float ** */
    bool seen;
} expect;

typedef struct {
    const unsigned char *p;
    size_t len, off;
    char *err;
    size_t errlen;
    const char *path;
} reader;

static int fail(reader *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(reader *r, int code, const char *fmt, ...) {
    if (r->err && r->errlen) {
        int n = snprintf(r->err, r->errlen, "%s: ", r->path);
        if (n < 0 || (size_t)n >= r->errlen) n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err + n, r->errlen - n, fmt, ap);
        va_end(ap);
    }
    return code;
}

static bool rd_i32(reader *r, int32_t *v) {
    if (r->len - r->off < 4) return false;
    memcpy(v, r->p + r->off, 4);
    r->off += 4;
    return true;
}

/* ---- expected tensors ---- */

typedef struct {
    expect *e;
    int n, cap;
} expect_list;

static int add_expect(expect_list *L, tensor_kind kind, void *dst, int n_dims, int64_t ne0, int64_t ne1, int64_t ne2,
                      const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static int add_expect(expect_list *L, tensor_kind kind, void *dst, int n_dims, int64_t ne0, int64_t ne1, int64_t ne2,
                      const char *fmt, ...) {
    if (L->n == L->cap) {
        int cap = L->cap ? L->cap * 2 : 128;
        expect *e = smp_realloc(L->e, (size_t)cap * sizeof *e);
        if (!e) return -SMP_E_NOMEM;
        L->e = e;
        L->cap = cap;
    }
    expect *x = &L->e[L->n++];
    memset(x, 0, sizeof *x);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name, sizeof x->name, fmt, ap);
    va_end(ap);
    x->kind = kind;
    x->dst = dst;
    x->n_dims = n_dims;
    x->ne[0] = ne0;
    x->ne[1] = ne1;
    x->ne[2] = ne2;
    return 0;
}

static int expect_attn(expect_list *L, whisper_attn_w *a, const char *pre, int s) {
    int rc;
    if ((rc = add_expect(L, KIND_MAT, &a->q, 2, s, s, 1, "%s.query.weight", pre)) ||
        (rc = add_expect(L, KIND_VEC, &a->bq, 1, s, 1, 1, "%s.query.bias", pre)) ||
        (rc = add_expect(L, KIND_MAT, &a->k, 2, s, s, 1, "%s.key.weight", pre)) ||
        (rc = add_expect(L, KIND_MAT, &a->v, 2, s, s, 1, "%s.value.weight", pre)) ||
        (rc = add_expect(L, KIND_VEC, &a->bv, 1, s, 1, 1, "%s.value.bias", pre)) ||
        (rc = add_expect(L, KIND_MAT, &a->o, 2, s, s, 1, "%s.out.weight", pre)) ||
        (rc = add_expect(L, KIND_VEC, &a->bo, 1, s, 1, 1, "%s.out.bias", pre)))
        return rc;
    return 0;
}

static int expect_norm(expect_list *L, whisper_norm *n, const char *pre, int s) {
    int rc = add_expect(L, KIND_VEC, &n->w, 1, s, 1, 1, "%s.weight", pre);
    return rc ? rc : add_expect(L, KIND_VEC, &n->b, 1, s, 1, 1, "%s.bias", pre);
}

static int expect_layer(expect_list *L, whisper_layer_w *ly, const char *pre, int s, bool decoder) {
    char nm[64];
    int rc;
    snprintf(nm, sizeof nm, "%s.attn", pre);
    if ((rc = expect_attn(L, &ly->attn, nm, s))) return rc;
    snprintf(nm, sizeof nm, "%s.attn_ln", pre);
    if ((rc = expect_norm(L, &ly->attn.ln, nm, s))) return rc;
    if (decoder) {
        snprintf(nm, sizeof nm, "%s.cross_attn", pre);
        if ((rc = expect_attn(L, &ly->cross, nm, s))) return rc;
        snprintf(nm, sizeof nm, "%s.cross_attn_ln", pre);
        if ((rc = expect_norm(L, &ly->cross.ln, nm, s))) return rc;
    }
    snprintf(nm, sizeof nm, "%s.mlp_ln", pre);
    if ((rc = expect_norm(L, &ly->mlp_ln, nm, s))) return rc;
    if ((rc = add_expect(L, KIND_MAT, &ly->fc1, 2, s, 4 * s, 1, "%s.mlp.0.weight", pre)) ||
        (rc = add_expect(L, KIND_VEC, &ly->b1, 1, 4 * s, 1, 1, "%s.mlp.0.bias", pre)) ||
        (rc = add_expect(L, KIND_MAT, &ly->fc2, 2, 4 * s, s, 1, "%s.mlp.2.weight", pre)) ||
        (rc = add_expect(L, KIND_VEC, &ly->b2, 1, s, 1, 1, "%s.mlp.2.bias", pre)))
        return rc;
    return 0;
}

static int build_expect(const whisper_hparams *hp, whisper_weights *w, expect_list *L) {
    int s = hp->n_audio_state, st = hp->n_text_state, rc;
    if ((rc = add_expect(L, KIND_VEC, &w->enc_pos, 2, s, hp->n_audio_ctx, 1, "encoder.positional_embedding")) ||
        (rc = add_expect(L, KIND_CONV, &w->conv1, 3, 3, hp->n_mels, s, "encoder.conv1.weight")) ||
        (rc = add_expect(L, KIND_CONVB, &w->conv1_b, 2, 1, s, 1, "encoder.conv1.bias")) ||
        (rc = add_expect(L, KIND_CONV, &w->conv2, 3, 3, s, s, "encoder.conv2.weight")) ||
        (rc = add_expect(L, KIND_CONVB, &w->conv2_b, 2, 1, s, 1, "encoder.conv2.bias")))
        return rc;
    char pre[48];
    for (int i = 0; i < hp->n_audio_layer; i++) {
        snprintf(pre, sizeof pre, "encoder.blocks.%d", i);
        if ((rc = expect_layer(L, &w->enc[i], pre, s, false))) return rc;
    }
    if ((rc = expect_norm(L, &w->ln_post, "encoder.ln_post", s)) ||
        (rc = add_expect(L, KIND_VEC, &w->dec_pos, 2, st, hp->n_text_ctx, 1, "decoder.positional_embedding")) ||
        (rc = add_expect(L, KIND_MAT, &w->tok_emb, 2, st, hp->n_vocab, 1, "decoder.token_embedding.weight")))
        return rc;
    for (int i = 0; i < hp->n_text_layer; i++) {
        snprintf(pre, sizeof pre, "decoder.blocks.%d", i);
        if ((rc = expect_layer(L, &w->dec[i], pre, st, true))) return rc;
    }
    return expect_norm(L, &w->dec_ln, "decoder.ln", st);
}

/* ---- hparams and tokens ---- */

static int check_hparams(reader *r, const whisper_hparams *hp) {
    const char *bad = NULL;
    int v = 0;
#define RANGE(field, lo, hi)                                                                                         \
    if (!bad && (hp->field < (lo) || hp->field > (hi))) bad = #field, v = hp->field;
    RANGE(n_vocab, 51864, 51866)
    RANGE(n_audio_ctx, 1500, 1500)
    RANGE(n_audio_state, 1, WHISPER_MAX_STATE)
    RANGE(n_audio_head, 1, 256)
    RANGE(n_audio_layer, 1, WHISPER_MAX_LAYERS)
    RANGE(n_text_ctx, 1, WHISPER_MAX_TEXT_CTX)
    RANGE(n_text_state, 1, WHISPER_MAX_STATE)
    RANGE(n_text_head, 1, 256)
    RANGE(n_text_layer, 1, WHISPER_MAX_LAYERS)
    RANGE(n_mels, 1, WHISPER_N_MEL_MAX)
    RANGE(ftype, 0, 1000000)
#undef RANGE
    if (bad)
        return fail(r, -SMP_E_FORMAT,
                    "hparam %s = %d is out of range (n_vocab 51864..51866, n_audio_ctx 1500, states <= %d, "
                    "layers <= %d, n_text_ctx <= %d, n_mels <= %d)",
                    bad, v, WHISPER_MAX_STATE, WHISPER_MAX_LAYERS, WHISPER_MAX_TEXT_CTX, WHISPER_N_MEL_MAX);
    if (hp->n_audio_state % hp->n_audio_head || hp->n_text_state % hp->n_text_head)
        return fail(r, -SMP_E_FORMAT, "state sizes %d / %d are not multiples of the head counts %d / %d",
                    hp->n_audio_state, hp->n_text_state, hp->n_audio_head, hp->n_text_head);
    if (hp->n_audio_state != hp->n_text_state || hp->n_audio_head != hp->n_text_head)
        return fail(r, -SMP_E_FORMAT, "audio and text sizes differ (state %d / %d, heads %d / %d): not supported",
                    hp->n_audio_state, hp->n_text_state, hp->n_audio_head, hp->n_text_head);
    return 0;
}

/* Special ids for the three vocabulary layouts (whisper_int.h). */
static void fill_tokens(whisper_tokens *t, int n_vocab) {
    bool english = n_vocab == 51864;
    int n_langs = english ? 0 : n_vocab == 51866 ? 100 : 99;
    t->eot = english ? 50256 : 50257;
    t->sot = t->eot + 1;
    t->lang0 = t->sot + 1;
    t->n_langs = n_langs;
    /* The English-only vocabulary keeps the 99 language slots (unused). */
    t->translate = t->lang0 + (english ? 99 : n_langs);
    t->transcribe = t->translate + 1;
    t->solm = t->transcribe + 1;
    t->prev = t->solm + 1;
    t->nosp = t->prev + 1;
    t->notimestamps = t->nosp + 1;
    t->ts0 = t->notimestamps + 1;
}

static const char *size_name(int state) {
    switch (state) {
    case 64: return "tiny64";
    case 384: return "tiny";
    case 512: return "base";
    case 768: return "small";
    case 1024: return "medium";
    case 1280: return "large";
    default: return "whisper";
    }
}

/* ---- tensors ---- */

static void *own(whisper_weights *w, size_t bytes) {
    if (w->n_owned == w->cap_owned) {
        int cap = w->cap_owned ? w->cap_owned * 2 : 64;
        void **o = smp_realloc(w->owned, (size_t)cap * sizeof *o);
        if (!o) return NULL;
        w->owned = o;
        w->cap_owned = cap;
    }
    void *p = smp_malloc(bytes ? bytes : 1);
    if (p) w->owned[w->n_owned++] = p;
    return p;
}

static bool type_ok(tensor_kind k, int type, int64_t ne0) {
    if (k == KIND_VEC || k == KIND_CONVB) return type == TT_F32 || type == TT_F16;
    if (k == KIND_CONV) return type == TT_F32 || type == TT_F16;
    const kern_type_traits *tr = kern_traits(type);
    return tr && tr->vec_dot && ne0 % tr->blck_elems == 0;
}

/* Bind one record's data to its destination. */
static int bind(reader *r, whisper_weights *w, const expect *e, int type, const int64_t *ne, const void *data,
                size_t bytes) {
    int64_t n = ne[0] * ne[1] * ne[2];
    if (e->kind == KIND_VEC || e->kind == KIND_CONVB) {
        float *f = own(w, (size_t)n * sizeof(float));
        if (!f) return fail(r, -SMP_E_NOMEM, "out of memory loading '%s'", e->name);
        if (type == TT_F32) memcpy(f, data, (size_t)n * sizeof(float));
        else {
            uint16_t tmp[512];
            for (int64_t i = 0; i < n; i += 512) {
                int64_t k = n - i < 512 ? n - i : 512;
                memcpy(tmp, (const uint16_t *)data + i, (size_t)k * 2);
                kern_f16_to_f32_row(tmp, f + i, k);
            }
        }
        *(float **)e->dst = f;
        return 0;
    }
    size_t align = type == TT_F32 ? 4 : 2;
    const void *p = data;
    if ((uintptr_t)p % align) {
        void *c = own(w, bytes);
        if (!c) return fail(r, -SMP_E_NOMEM, "out of memory loading '%s'", e->name);
        memcpy(c, data, bytes);
        p = c;
    }
    whisper_mat *m = e->dst;
    m->data = p;
    m->type = type;
    m->cols = (int)(e->kind == KIND_CONV ? ne[0] * ne[1] : ne[0]);
    m->rows = (int)(e->kind == KIND_CONV ? ne[2] : ne[1]);
    return 0;
}

static int read_tensors(reader *r, whisper_weights *w, expect_list *L) {
    int count = 0;
    while (r->off < r->len) {
        int32_t n_dims, name_len, type;
        size_t rec = r->off;
        if (!rd_i32(r, &n_dims) || !rd_i32(r, &name_len) || !rd_i32(r, &type))
            return fail(r, -SMP_E_FORMAT, "truncated tensor header at offset %zu", rec);
        if (n_dims < 1 || n_dims > 3)
            return fail(r, -SMP_E_FORMAT, "tensor record at offset %zu has %d dimensions (1..3)", rec, n_dims);
        if (name_len < 1 || name_len > WHISPER_MAX_NAME)
            return fail(r, -SMP_E_FORMAT, "tensor record at offset %zu has a name of %d bytes", rec, name_len);
        int64_t ne[3] = {1, 1, 1};
        for (int d = 0; d < n_dims; d++) {
            int32_t v;
            if (!rd_i32(r, &v)) return fail(r, -SMP_E_FORMAT, "truncated tensor header at offset %zu", rec);
            if (v < 1 || v > (1 << 24))
                return fail(r, -SMP_E_FORMAT, "tensor record at offset %zu: dimension %d is %d", rec, d, v);
            ne[d] = v;
        }
        if (r->len - r->off < (size_t)name_len)
            return fail(r, -SMP_E_FORMAT, "truncated tensor name at offset %zu", r->off);
        char name[WHISPER_MAX_NAME + 1];
        memcpy(name, r->p + r->off, (size_t)name_len);
        name[name_len] = 0;
        r->off += (size_t)name_len;
        if (strlen(name) != (size_t)name_len)
            return fail(r, -SMP_E_FORMAT, "tensor record at offset %zu has a NUL in its name", rec);
        expect *e = NULL;
        for (int i = 0; i < L->n && !e; i++)
            if (!strcmp(L->e[i].name, name)) e = &L->e[i];
        if (!e) return fail(r, -SMP_E_FORMAT, "unexpected tensor '%s' (not part of this model shape)", name);
        if (e->seen) return fail(r, -SMP_E_FORMAT, "tensor '%s' appears twice", name);
        e->seen = true;
        /* Shape: conv biases may be [n] or [1, n]. */
        bool shape_ok = n_dims == e->n_dims && ne[0] == e->ne[0] && ne[1] == e->ne[1] && ne[2] == e->ne[2];
        if (e->kind == KIND_CONVB && n_dims == 1 && ne[0] == e->ne[1]) {
            shape_ok = true;
            ne[1] = ne[0];
            ne[0] = 1;
        }
        if (!shape_ok) {
            char have[64], want[64];
            if (n_dims == 1) snprintf(have, sizeof have, "[%lld]", (long long)ne[0]);
            else if (n_dims == 2) snprintf(have, sizeof have, "[%lld, %lld]", (long long)ne[0], (long long)ne[1]);
            else snprintf(have, sizeof have, "[%lld, %lld, %lld]", (long long)ne[0], (long long)ne[1], (long long)ne[2]);
            if (e->n_dims == 1) snprintf(want, sizeof want, "[%lld]", (long long)e->ne[0]);
            else if (e->n_dims == 2) snprintf(want, sizeof want, "[%lld, %lld]", (long long)e->ne[0], (long long)e->ne[1]);
            else
                snprintf(want, sizeof want, "[%lld, %lld, %lld]", (long long)e->ne[0], (long long)e->ne[1],
                         (long long)e->ne[2]);
            return fail(r, -SMP_E_FORMAT, "tensor '%s' has shape %s, expected %s", name, have, want);
        }
        if (type < 0 || type >= TT__MAX || !type_ok(e->kind, type, ne[0]))
            return fail(r, -SMP_E_FORMAT, "tensor '%s' has type %s (%d), which is not usable here", name,
                        tt_name(type), type);
        size_t row = kern_row_bytes(type, ne[0]);
        size_t bytes = row * (size_t)ne[1] * (size_t)ne[2];
        if (!row || r->len - r->off < bytes)
            return fail(r, -SMP_E_FORMAT, "tensor '%s' is truncated: %zu bytes of data needed at offset %zu, %zu left",
                        name, bytes, r->off, r->len - r->off);
        int rc = bind(r, w, e, type, ne, r->p + r->off, bytes);
        if (rc) return rc;
        r->off += bytes;
        count++;
    }
    for (int i = 0; i < L->n; i++)
        if (!L->e[i].seen)
            return fail(r, -SMP_E_FORMAT, "missing tensor '%s' (file truncated? %d of %d tensors read)", L->e[i].name,
                        count, L->n);
    return 0;
}

/* ---- load / free ---- */

static int read_vocab(reader *r, whisper_model *m) {
    int32_t count;
    if (!rd_i32(r, &count)) return fail(r, -SMP_E_FORMAT, "truncated before the vocabulary");
    if (count < 0 || count > m->hp.n_vocab)
        return fail(r, -SMP_E_FORMAT, "vocabulary count %d is out of range (0..%d)", count, m->hp.n_vocab);
    m->piece = smp_calloc((size_t)m->hp.n_vocab, sizeof *m->piece);
    m->piece_len = smp_calloc((size_t)m->hp.n_vocab, sizeof *m->piece_len);
    if (!m->piece || !m->piece_len) return fail(r, -SMP_E_NOMEM, "out of memory for the vocabulary");
    for (int i = 0; i < count; i++) {
        int32_t len;
        if (!rd_i32(r, &len) || len < 0 || len > WHISPER_MAX_PIECE || r->len - r->off < (size_t)len)
            return fail(r, -SMP_E_FORMAT, "vocabulary piece %d is truncated or too long", i);
        /* Pieces stay in the read-only mapping; nobody writes through them. */
        m->piece[i] = (char *)(uintptr_t)(r->p + r->off);
        m->piece_len[i] = len;
        r->off += (size_t)len;
    }
    m->n_text_tokens = count < m->tok.eot ? count : m->tok.eot;
    return 0;
}

int whisper_load_ex(const char *path, const whisper_load_opts *opts, whisper_model **out, char *err,
                    size_t errlen) {
    *out = NULL;
    if (err && errlen) err[0] = 0;
    kern_init();
    reader r = {.err = err, .errlen = errlen, .path = path};
    expect_list L = {0};
    int rc;
    whisper_model *m = smp_calloc(1, sizeof *m);
    whisper_weights *w = smp_calloc(1, sizeof *w);
    if (!m || !w) {
        smp_free(m);
        smp_free(w);
        return fail(&r, -SMP_E_NOMEM, "out of memory");
    }
    m->weights = w;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = fail(&r, -SMP_E_IO, "cannot open: %s", strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        rc = fail(&r, -SMP_E_IO, "not a regular file");
        goto fail;
    }
    if (st.st_size < 48) {
        close(fd);
        rc = fail(&r, -SMP_E_FORMAT, "too short for a Whisper model (%lld bytes)", (long long)st.st_size);
        goto fail;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        rc = fail(&r, -SMP_E_IO, "cannot map: %s", strerror(errno));
        goto fail;
    }
    w->map = map;
    w->map_len = (size_t)st.st_size;
    r.p = map;
    r.len = w->map_len;

    uint32_t magic;
    memcpy(&magic, r.p, 4);
    r.off = 4;
    if (magic != WHISPER_MAGIC) {
        rc = fail(&r, -SMP_E_FORMAT, "not a Whisper ggml model (magic 0x%08x, expected 0x%08x)", magic, WHISPER_MAGIC);
        goto fail;
    }
    int32_t hv[11];
    for (int i = 0; i < 11; i++) rd_i32(&r, &hv[i]); /* 48 bytes checked above */
    whisper_hparams *hp = &m->hp;
    *hp = (whisper_hparams){hv[0], hv[1], hv[2], hv[3], hv[4], hv[5], hv[6], hv[7], hv[8], hv[9], hv[10]};
    if ((rc = check_hparams(&r, hp))) goto fail;
    fill_tokens(&m->tok, hp->n_vocab);

    int32_t n_mel, n_fft;
    if (!rd_i32(&r, &n_mel) || !rd_i32(&r, &n_fft)) {
        rc = fail(&r, -SMP_E_FORMAT, "truncated before the mel filters");
        goto fail;
    }
    if (n_mel != hp->n_mels || n_fft != WHISPER_N_FFT_BINS) {
        rc = fail(&r, -SMP_E_FORMAT, "mel filters are %d x %d, expected %d x %d", n_mel, n_fft, hp->n_mels,
                  WHISPER_N_FFT_BINS);
        goto fail;
    }
    size_t fb = (size_t)n_mel * n_fft * sizeof(float);
    if (r.len - r.off < fb) {
        rc = fail(&r, -SMP_E_FORMAT, "truncated in the mel filters");
        goto fail;
    }
    m->n_fft = n_fft;
    if (!(m->mel_filters = smp_malloc(fb))) {
        rc = fail(&r, -SMP_E_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(m->mel_filters, r.p + r.off, fb);
    r.off += fb;
    for (int i = 0; i < n_mel * n_fft; i++)
        if (!(m->mel_filters[i] >= 0.0f && m->mel_filters[i] < 1e30f)) {
            rc = fail(&r, -SMP_E_FORMAT, "mel filter %d, bin %d is %g (must be finite and >= 0)", i / n_fft,
                      i % n_fft, m->mel_filters[i]);
            goto fail;
        }
    if ((rc = read_vocab(&r, m))) goto fail;

    w->enc = smp_calloc((size_t)hp->n_audio_layer, sizeof *w->enc);
    w->dec = smp_calloc((size_t)hp->n_text_layer, sizeof *w->dec);
    if (!w->enc || !w->dec || build_expect(hp, w, &L)) {
        rc = fail(&r, -SMP_E_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = read_tensors(&r, w, &L))) goto fail;

    whisper_load_opts o = opts ? *opts : (whisper_load_opts){0};
    if (o.pool) {
        w->pool = o.pool;
    } else {
        if ((rc = tp_new(o.n_threads, &w->pool))) {
            fail(&r, rc, "cannot start the thread pool");
            goto fail;
        }
        w->own_pool = true;
    }
    snprintf(m->desc, sizeof m->desc, "%s %s (%d layers, %.1f MB)", size_name(hp->n_audio_state),
             tt_name(w->enc[0].fc1.type), hp->n_audio_layer, (double)w->map_len / 1e6);
    /* lower-case the type name ("F16" -> "f16") */
    char *sp = strchr(m->desc, ' ');
    for (char *c = sp ? sp + 1 : m->desc; *c && *c != ' '; c++)
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    smp_free(L.e);
    *out = m;
    return 0;
fail:
    smp_free(L.e);
    whisper_free(m);
    return rc;
}

int whisper_load(const char *path, whisper_model **out, char *err, size_t errlen) {
    return whisper_load_ex(path, NULL, out, err, errlen);
}

void whisper_free(whisper_model *m) {
    if (!m) return;
    whisper_weights *w = m->weights;
    if (w) {
        for (int i = 0; i < w->n_owned; i++) smp_free(w->owned[i]);
        smp_free(w->owned);
        smp_free(w->enc);
        smp_free(w->dec);
        if (w->own_pool) tp_free(w->pool);
        if (w->map) munmap(w->map, w->map_len);
        smp_free(w);
    }
    smp_free(m->mel_filters);
    smp_free(m->piece);
    smp_free(m->piece_len);
    smp_free(m);
}

const char *whisper_describe(const whisper_model *m) { return m->desc; }
bool whisper_is_multilingual(const whisper_model *m) { return m->tok.n_langs > 0; }
int whisper_n_mels(const whisper_model *m) { return m->hp.n_mels; }
int whisper_n_vocab(const whisper_model *m) { return m->hp.n_vocab; }
