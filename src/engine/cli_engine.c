/* cli_engine.c - command-line tools over the engine: generate text, inspect a
 * GGUF file, tokenize, dump logits, re-quantize a model, and make random-weight
 * models of known shapes (for tests and benchmarks).
 *
 * Main data structures: `opts` (the parsed flags of one command) and, for
 * quantize / mkmodel, a `conv_job` that turns f32 rows (dequantized from a
 * source tensor or drawn at random) into rows of the target type on the
 * thread pool, a slab at a time, streamed into a gguf_writer. Nothing here
 * holds a whole tensor in memory. */
#include "engine/cli_engine.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "core/util.h"
#include "engine/cli_whisper.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tensor_types.h"
#include "engine/threadpool.h"
#include "engine/tokenizer.h"

#define EXIT_USAGE 2
#define EXIT_RUNTIME 1
#define MAX_EVAL_TOKENS 65536

/* ---- flags ---- */

typedef struct {
    const char *pos[4]; /* positional arguments in order */
    int n_pos;
    int n_predict, threads, top_k, seed_set;
    uint64_t seed;
    float temp, top_p;
    bool no_bos;
    const char *tokens, *logits, *shape, *type, *vocab;
} opts;

static int usage_err(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "simpleton %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see 'simpleton help')\n");
    return EXIT_USAGE;
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* Parse argv into o; flags not in `allowed` (a space-separated list) are
 * usage errors. Returns 0 or EXIT_USAGE (message printed). */
static int parse_opts(const char *cmd, int argc, char **argv, const char *allowed, int max_pos, opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->temp = -1;
    o->top_p = -1;
    o->top_k = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1] || (a[1] >= '0' && a[1] <= '9')) {
            if (o->n_pos >= max_pos) return usage_err(cmd, "unexpected argument '%s'", a);
            o->pos[o->n_pos++] = a;
            continue;
        }
        char want[40];
        snprintf(want, sizeof want, " %s ", a);
        char list[256];
        snprintf(list, sizeof list, " %s ", allowed);
        if (!strstr(list, want)) return usage_err(cmd, "unknown option '%s'", a);
        if (!strcmp(a, "--no-bos")) {
            o->no_bos = true;
            continue;
        }
        if (i + 1 >= argc) return usage_err(cmd, "option '%s' needs a value", a);
        const char *v = argv[++i];
        long n;
        if (!strcmp(a, "-n")) {
            if (!parse_long(v, 0, 1 << 24, &n)) return usage_err(cmd, "bad -n value '%s'", v);
            o->n_predict = (int)n;
        } else if (!strcmp(a, "--threads")) {
            if (!parse_long(v, 1, 256, &n)) return usage_err(cmd, "bad --threads value '%s' (1..256)", v);
            o->threads = (int)n;
        } else if (!strcmp(a, "--top-k")) {
            if (!parse_long(v, 0, 1 << 24, &n)) return usage_err(cmd, "bad --top-k value '%s'", v);
            o->top_k = (int)n;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') return usage_err(cmd, "bad --seed value '%s'", v);
            o->seed = s;
            o->seed_set = 1;
        } else if (!strcmp(a, "--temp")) {
            if (!parse_float(v, &o->temp) || o->temp < 0) return usage_err(cmd, "bad --temp value '%s'", v);
        } else if (!strcmp(a, "--top-p")) {
            if (!parse_float(v, &o->top_p) || o->top_p < 0 || o->top_p > 1)
                return usage_err(cmd, "bad --top-p value '%s' (0..1)", v);
        } else if (!strcmp(a, "--tokens")) {
            o->tokens = v;
        } else if (!strcmp(a, "--logits")) {
            o->logits = v;
        } else if (!strcmp(a, "--shape")) {
            o->shape = v;
        } else if (!strcmp(a, "--type")) {
            o->type = v;
        } else if (!strcmp(a, "--vocab")) {
            o->vocab = v;
        }
    }
    return 0;
}

/* ---- model files ---- */

/* A path as given if it names a file; else $MODELS_DIR/<name>.gguf. */
static int resolve_model(const char *name, char *out, size_t n) {
    if (util_is_file(name)) {
        snprintf(out, n, "%s", name);
        return 0;
    }
    const char *dir = getenv("MODELS_DIR");
    if (!dir || !*dir) dir = "models";
    if (strchr(name, '/')) {
        fprintf(stderr, "simpleton: model file '%s' not found\n", name);
        return -1;
    }
    snprintf(out, n, "%s/%s.gguf", dir, name);
    if (util_is_file(out)) return 0;
    fprintf(stderr, "simpleton: model '%s' not found (neither a file nor %s/%s.gguf)\n", name, dir, name);
    return -1;
}

/* Open the gguf, its tokenizer and the model. */
static int open_all(const char *name, int threads, int n_batch, gguf **g, tokenizer **tok, model **m) {
    char path[4096], err[512];
    *g = NULL;
    if (tok) *tok = NULL;
    *m = NULL;
    if (resolve_model(name, path, sizeof path)) return -1;
    if (gguf_open(path, g, err, sizeof err)) {
        fprintf(stderr, "simpleton: %s\n", err); /* names the file already */
        return -1;
    }
    if (tok && tok_load(*g, tok, err, sizeof err)) goto fail;
    model_opts mo = {.n_threads = threads, .n_batch = n_batch};
    int rc = model_load_gguf(*g, false, &mo, m, err, sizeof err);
    if (rc) goto fail;
    return 0;
fail:
    fprintf(stderr, "simpleton: %s: %s\n", path, err);
    if (tok) {
        tok_free(*tok);
        *tok = NULL;
    }
    gguf_close(*g);
    *g = NULL;
    return -1;
}

/* ---- run ---- */

static int cmd_run(int argc, char **argv) {
    opts o;
    int rc = parse_opts("run", argc, argv, "-n --temp --seed --threads --top-k --top-p", 2, &o);
    if (rc) return rc;
    if (o.n_pos != 2) return usage_err("run", "%s", "usage: simpleton run MODEL \"prompt\" [-n N] [--temp T] ...");
    gguf *g;
    tokenizer *tok;
    model *m;
    if (open_all(o.pos[0], o.threads, 0, &g, &tok, &m)) return EXIT_RUNTIME;
    int status = EXIT_RUNTIME;
    model_ctx *c = NULL;
    sampler *smp = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    buf out;
    buf_init(&out, 0);
    char err[256];

    size_t n_ids;
    const char *prompt = o.pos[1];
    if (tok_encode(tok, prompt, strlen(prompt), true, false, &ids, &n_ids)) {
        fprintf(stderr, "simpleton: cannot tokenize the prompt\n");
        goto done;
    }
    int n_train = model_n_ctx_train(m);
    if (n_ids == 0 || (long)n_ids >= n_train) {
        fprintf(stderr, "simpleton: the prompt has %zu tokens; the model's context is %d\n", n_ids, n_train);
        goto done;
    }
    long want_ctx = (long)n_ids + o.n_predict;
    int n_ctx = want_ctx < n_train ? (int)want_ctx : n_train;
    if (model_ctx_new(m, n_ctx, &c, err, sizeof err)) {
        fprintf(stderr, "simpleton: %s\n", err);
        goto done;
    }
    sampler_params sp = sampler_params_default();
    if (o.temp >= 0) sp.temperature = o.temp;
    if (o.top_k >= 0) sp.top_k = o.top_k;
    if (o.top_p >= 0) sp.top_p = o.top_p;
    sp.seed = o.seed_set ? o.seed : SAMPLER_SEED_RANDOM;
    int nv = model_n_vocab(m);
    smp = sampler_new(&sp, nv);
    logits = smp_malloc((size_t)nv * sizeof(float));
    if (!smp || !logits) {
        fprintf(stderr, "simpleton: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < n_ids; i++) sampler_accept(smp, ids[i]);

    uint64_t t0 = util_now_ns();
    if (model_ctx_eval(c, ids, (int)n_ids, logits, false)) {
        fprintf(stderr, "simpleton: %s\n", model_ctx_error(c));
        goto done;
    }
    double t_prompt = (util_now_ns() - t0) / 1e9;

    tok_stream ts;
    tok_stream_init(&ts, tok, 0);
    int n_gen = 0, n_decoded = 0;
    double t_decode = 0;
    while (n_gen < o.n_predict) {
        int32_t id = sampler_sample(smp, logits);
        if (tok_is_eog(tok, id)) break;
        n_gen++;
        sampler_accept(smp, id);
        buf_reset(&out);
        tok_stream_push(&ts, id, &out);
        if (out.len) {
            fwrite(out.data, 1, out.len, stdout);
            fflush(stdout);
        }
        if (n_gen == o.n_predict || model_ctx_n_past(c) >= model_ctx_n_ctx(c)) break;
        uint64_t t1 = util_now_ns();
        if (model_ctx_eval(c, &id, 1, logits, false)) {
            fprintf(stderr, "\nsimpleton: %s\n", model_ctx_error(c));
            goto done;
        }
        t_decode += (util_now_ns() - t1) / 1e9;
        n_decoded++;
    }
    buf_reset(&out);
    tok_stream_flush(&ts, &out);
    fwrite(out.data, 1, out.len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    fprintf(stderr, "prompt: %zu tokens in %.3f s (%.1f tok/s)\n", n_ids, t_prompt,
            t_prompt > 0 ? n_ids / t_prompt : 0.0);
    fprintf(stderr, "decode: %d tokens in %.3f s (%.1f tok/s), %d generated, %d threads, %s kernels\n", n_decoded,
            t_decode, t_decode > 0 ? n_decoded / t_decode : 0.0, n_gen, model_n_threads(m),
            kern_impl_name(kern_active()));
    status = 0;
done:
    buf_free(&out);
    smp_free(logits);
    smp_free(ids);
    sampler_free(smp);
    model_ctx_free(c);
    model_free(m);
    tok_free(tok);
    gguf_close(g);
    return status;
}

/* ---- info ---- */

static const char *gtype_name(gguf_type t) {
    static const char *n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};
    return (unsigned)t < sizeof n / sizeof *n ? n[t] : "?";
}

static void print_str(const gguf_str *s, size_t max) {
    putchar('"');
    for (uint64_t i = 0; i < s->len && i < max; i++) {
        unsigned char ch = (unsigned char)s->ptr[i];
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch == '\n') fputs("\\n", stdout);
        else if (ch < 0x20) printf("\\x%02x", ch);
        else putchar(ch);
    }
    putchar('"');
    if (s->len > max) printf("... (%" PRIu64 " bytes)", s->len);
}

static void print_scalar(const gguf *g, const char *key, gguf_type t) {
    int64_t i;
    uint64_t u;
    double f;
    bool b;
    gguf_str s;
    switch (t) {
    case GGUF_TYPE_STRING: gguf_get_str(g, key, &s); print_str(&s, 200); break;
    case GGUF_TYPE_BOOL: gguf_get_bool(g, key, &b); fputs(b ? "true" : "false", stdout); break;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: gguf_get_f64(g, key, &f); printf("%.9g", f); break;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT8:
        gguf_get_u64(g, key, &u);
        printf("%" PRIu64, u);
        break;
    default: gguf_get_i64(g, key, &i); printf("%" PRId64, i); break;
    }
}

static int cmd_info(int argc, char **argv) {
    opts o;
    int rc = parse_opts("info", argc, argv, "", 1, &o);
    if (rc) return rc;
    if (o.n_pos != 1) return usage_err("info", "%s", "usage: simpleton info MODEL");
    char path[4096], err[512];
    if (resolve_model(o.pos[0], path, sizeof path)) return EXIT_RUNTIME;
    gguf *g;
    if (gguf_open(path, &g, err, sizeof err)) {
        fprintf(stderr, "simpleton: %s\n", err);
        return EXIT_RUNTIME;
    }
    printf("file: %s\nformat: GGUF v%u, %zu bytes, alignment %zu\n", path, gguf_version(g), gguf_file_size(g),
           gguf_alignment(g));
    printf("\nmetadata (%d keys):\n", gguf_n_kv(g));
    for (int i = 0; i < gguf_n_kv(g); i++) {
        const char *key = gguf_key(g, i);
        gguf_type t = gguf_kv_type(g, i);
        printf("  %-44s ", key);
        if (t != GGUF_TYPE_ARRAY) {
            printf("%-4s ", gtype_name(t));
            print_scalar(g, key, t);
        } else {
            gguf_type et;
            uint64_t n;
            gguf_get_arr(g, key, &et, &n);
            printf("arr  [%s x %" PRIu64 "]", gtype_name(et), n);
            if (n <= 16) { /* small arrays in full; big ones (vocabularies) by type and length */
                fputs(" = [", stdout);
                for (uint64_t j = 0; j < n; j++) {
                    if (j) fputs(", ", stdout);
                    gguf_str s;
                    double f;
                    if (et == GGUF_TYPE_STRING && gguf_arr_str(g, key, j, &s)) print_str(&s, 60);
                    else if (gguf_arr_f64(g, key, j, &f)) printf("%.9g", f);
                }
                putchar(']');
            }
        }
        putchar('\n');
    }
    uint64_t params = 0, bytes = 0;
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        bytes += t->nbytes;
    }
    printf("\ntensors (%d, %" PRIu64 " parameters, %" PRIu64 " bytes):\n", gguf_n_tensors(g), params, bytes);
    printf("  %-36s %-6s %-24s %s\n", "name", "type", "shape", "bytes");
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        char shape[96];
        int off = snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < t->n_dims; d++)
            off += snprintf(shape + off, sizeof shape - off, d ? ", %" PRIu64 : "%" PRIu64, t->ne[d]);
        snprintf(shape + off, sizeof shape - off, "]");
        printf("  %-36s %-6s %-24s %zu\n", t->name, tt_name(t->type), shape, t->nbytes);
    }
    gguf_close(g);
    return 0;
}

/* ---- tokenize ---- */

static int cmd_tokenize(int argc, char **argv) {
    opts o;
    int rc = parse_opts("tokenize", argc, argv, "--no-bos", 2, &o);
    if (rc) return rc;
    if (o.n_pos != 2) return usage_err("tokenize", "%s", "usage: simpleton tokenize MODEL \"text\" [--no-bos]");
    char path[4096], err[512];
    if (resolve_model(o.pos[0], path, sizeof path)) return EXIT_RUNTIME;
    gguf *g;
    tokenizer *tok = NULL;
    if (gguf_open(path, &g, err, sizeof err)) {
        fprintf(stderr, "simpleton: %s\n", err);
        return EXIT_RUNTIME;
    }
    if (tok_load(g, &tok, err, sizeof err)) {
        fprintf(stderr, "simpleton: %s: %s\n", path, err);
        gguf_close(g);
        return EXIT_RUNTIME;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int status = 0;
    if (tok_encode(tok, o.pos[1], strlen(o.pos[1]), !o.no_bos, false, &ids, &n)) {
        fprintf(stderr, "simpleton: cannot tokenize the text\n");
        status = EXIT_RUNTIME;
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    smp_free(ids);
    tok_free(tok);
    gguf_close(g);
    return status;
}

/* ---- eval ---- */

static int cmd_eval(int argc, char **argv) {
    if (cli_whisper_is_eval(argc, argv)) return cli_whisper_eval(argc, argv);
    opts o;
    int rc = parse_opts("eval", argc, argv, "--tokens --logits --threads", 1, &o);
    if (rc) return rc;
    if (o.n_pos != 1 || !o.tokens || !o.logits)
        return usage_err("eval", "%s", "usage: simpleton eval MODEL --tokens 1,2,3 --logits OUT.f32");
    int32_t *ids = smp_malloc(MAX_EVAL_TOKENS * sizeof *ids);
    if (!ids) return EXIT_RUNTIME;
    int n = 0;
    for (const char *s = o.tokens; *s;) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > INT32_MAX || (*end && *end != ',') || n == MAX_EVAL_TOKENS) {
            smp_free(ids);
            return usage_err("eval", "bad --tokens list '%s' (comma-separated ids)", o.tokens);
        }
        ids[n++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    if (n == 0) {
        smp_free(ids);
        return usage_err("eval", "%s", "--tokens is empty");
    }
    gguf *g;
    model *m;
    int status = EXIT_RUNTIME;
    if (open_all(o.pos[0], o.threads, n, &g, NULL, &m)) {
        smp_free(ids);
        return EXIT_RUNTIME;
    }
    model_ctx *c = NULL;
    float *lg = NULL;
    FILE *f = NULL;
    char err[256];
    if (model_ctx_new(m, n, &c, err, sizeof err)) {
        fprintf(stderr, "simpleton: %s\n", err);
        goto done;
    }
    size_t count = (size_t)n * model_n_vocab(m);
    if (!(lg = smp_malloc(count * sizeof(float)))) {
        fprintf(stderr, "simpleton: out of memory\n");
        goto done;
    }
    if (model_ctx_eval(c, ids, n, lg, true)) {
        fprintf(stderr, "simpleton: %s\n", model_ctx_error(c));
        goto done;
    }
    if (!(f = fopen(o.logits, "wb")) || fwrite(lg, sizeof(float), count, f) != count) {
        fprintf(stderr, "simpleton: cannot write '%s': %s\n", o.logits, strerror(errno));
        goto done;
    }
    if (fclose(f)) {
        f = NULL;
        fprintf(stderr, "simpleton: cannot write '%s': %s\n", o.logits, strerror(errno));
        goto done;
    }
    f = NULL;
    fprintf(stderr, "wrote %d x %d logits to %s\n", n, model_n_vocab(m), o.logits);
    status = 0;
done:
    if (f) fclose(f);
    smp_free(lg);
    smp_free(ids);
    model_ctx_free(c);
    model_free(m);
    gguf_close(g);
    return status;
}

/* ---- converting rows: shared by quantize and mkmodel ---- */

/* Produce row r (cols floats) of the tensor being written. */
typedef void (*row_src_fn)(void *arg, int64_t r, float *out);

typedef struct {
    row_src_fn src;
    void *src_arg;
    int type, cols;
    size_t row_bytes;
    int64_t r0;      /* first row of the slab */
    int rows_per_task;
    int64_t n_rows;  /* rows in the slab */
    char *out;       /* slab output */
    float *scratch;  /* [threads][cols] */
} conv_job;

static void conv_task(void *arg, int task, int thread) {
    conv_job *j = arg;
    const kern_type_traits *tr = kern_traits(j->type);
    float *x = j->scratch + (size_t)thread * j->cols;
    int64_t a = (int64_t)task * j->rows_per_task, b = a + j->rows_per_task;
    if (b > j->n_rows) b = j->n_rows;
    for (int64_t r = a; r < b; r++) {
        j->src(j->src_arg, j->r0 + r, x);
        tr->quantize(x, j->out + (size_t)r * j->row_bytes, j->cols);
    }
}

/* Write a rows x cols tensor of `type`, rows produced by src, converted on the
 * pool in slabs of about 8 MB. */
static int write_rows(gguf_writer *w, tp_pool *pool, int type, int cols, int64_t rows, row_src_fn src, void *arg) {
    conv_job j = {.src = src, .src_arg = arg, .type = type, .cols = cols, .row_bytes = kern_row_bytes(type, cols)};
    int64_t slab = (int64_t)((8u << 20) / (j.row_bytes ? j.row_bytes : 1));
    if (slab < 1) slab = 1;
    if (slab > rows) slab = rows;
    j.out = smp_malloc((size_t)slab * j.row_bytes);
    j.scratch = smp_malloc((size_t)tp_n_threads(pool) * cols * sizeof(float));
    int rc = 0;
    if (!j.out || !j.scratch) {
        fprintf(stderr, "simpleton: out of memory\n");
        rc = -SMP_E_NOMEM;
    }
    for (int64_t r0 = 0; r0 < rows && !rc; r0 += slab) {
        j.r0 = r0;
        j.n_rows = rows - r0 < slab ? rows - r0 : slab;
        int tasks = tp_n_threads(pool) * 4;
        j.rows_per_task = (int)((j.n_rows + tasks - 1) / tasks);
        tp_run(pool, conv_task, &j, (int)((j.n_rows + j.rows_per_task - 1) / j.rows_per_task));
        if ((rc = gguf_writer_data(w, j.out, (size_t)j.n_rows * j.row_bytes)))
            fprintf(stderr, "simpleton: %s\n", gguf_writer_error(w));
    }
    smp_free(j.out);
    smp_free(j.scratch);
    return rc;
}

/* ---- quantization types and mixes ---- */

typedef struct {
    const char *name;
    int type;       /* type of the 2-D weights */
    int file_type;  /* general.file_type (llama_ftype numbering) */
    bool mix_m;     /* _M mix: Q6_K for output and for attn_v / ffn_down in some layers */
} qtype;

static const qtype qtypes[] = {
    {"F32", TT_F32, 0, false},     {"F16", TT_F16, 1, false},      {"BF16", TT_BF16, 32, false},
    {"Q8_0", TT_Q8_0, 7, false},   {"Q4_0", TT_Q4_0, 2, false},    {"Q4_1", TT_Q4_1, 3, false},
    {"Q5_0", TT_Q5_0, 8, false},   {"Q5_1", TT_Q5_1, 9, false},    {"Q2_K", TT_Q2_K, 10, false},
    {"Q3_K", TT_Q3_K, 11, false},  {"Q4_K", TT_Q4_K, 14, false},   {"Q5_K", TT_Q5_K, 16, false},
    {"Q6_K", TT_Q6_K, 18, false},  {"Q4_K_M", TT_Q4_K, 15, true},  {"Q5_K_M", TT_Q5_K, 17, true},
};

static const qtype *find_qtype(const char *name) {
    for (size_t i = 0; i < sizeof qtypes / sizeof *qtypes; i++)
        if (!strcasecmp(qtypes[i].name, name)) return &qtypes[i];
    return NULL;
}

/* The layers whose attn_v / ffn_down get more bits in an _M mix: the first
 * and last eighth, and every third one between. */
static bool use_more_bits(int layer, int n_layer) {
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

/* A row length the type's blocks cannot cover falls back as the GGUF
 * ecosystem does: K-quants to 32-element types, then to F16. */
static int fit_type(int type, int64_t cols) {
    if (cols % (int64_t)tt_block_elems(type) == 0) return type;
    switch (type) {
    case TT_Q2_K: case TT_Q3_K: type = TT_Q4_0; break;
    case TT_Q4_K: type = TT_Q5_0; break;
    case TT_Q5_K: type = TT_Q5_1; break;
    case TT_Q6_K: type = TT_Q8_0; break;
    default: type = TT_F16; break;
    }
    return cols % (int64_t)tt_block_elems(type) == 0 ? type : TT_F16;
}

/* Target type of a tensor. 1-D tensors (norms, biases) stay or become F32;
 * 2-D weights take the requested type, or the _M mix. */
static int target_type(const qtype *q, const char *name, int n_dims, int64_t cols, int n_layer) {
    if (n_dims != 2) return TT_F32;
    int t = q->type;
    if (q->mix_m) {
        int layer = -1;
        if (!strcmp(name, "output.weight")) t = TT_Q6_K;
        else if (sscanf(name, "blk.%d.", &layer) == 1 &&
                 (strstr(name, ".attn_v.weight") || strstr(name, ".ffn_down.weight")) &&
                 use_more_bits(layer, n_layer))
            t = TT_Q6_K;
    }
    return fit_type(t, cols);
}

/* ---- quantize ---- */

typedef struct {
    const gguf_tensor *t;
    size_t src_row_bytes;
} deq_src;

static void deq_row(void *arg, int64_t r, float *out) {
    deq_src *d = arg;
    kern_traits(d->t->type)->dequantize((const char *)d->t->data + (size_t)r * d->src_row_bytes, out,
                                        (int64_t)d->t->ne[0]);
}

static int cmd_quantize(int argc, char **argv) {
    opts o;
    int rc = parse_opts("quantize", argc, argv, "--threads", 3, &o);
    if (rc) return rc;
    if (o.n_pos != 3) return usage_err("quantize", "%s", "usage: simpleton quantize IN OUT TYPE");
    const qtype *q = find_qtype(o.pos[2]);
    if (!q) {
        fprintf(stderr, "simpleton quantize: unknown type '%s'; one of:", o.pos[2]);
        for (size_t i = 0; i < sizeof qtypes / sizeof *qtypes; i++) fprintf(stderr, " %s", qtypes[i].name);
        fputc('\n', stderr);
        return EXIT_USAGE;
    }
    char path[4096], err[512];
    if (resolve_model(o.pos[0], path, sizeof path)) return EXIT_RUNTIME;
    struct stat si, so;
    if (stat(path, &si) == 0 && stat(o.pos[1], &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
        fprintf(stderr, "simpleton quantize: IN and OUT are the same file\n");
        return EXIT_USAGE; /* writing would truncate the mapped input */
    }
    gguf *g;
    if (gguf_open(path, &g, err, sizeof err)) {
        fprintf(stderr, "simpleton: %s\n", err);
        return EXIT_RUNTIME;
    }
    int status = EXIT_RUNTIME;
    gguf_writer *w = NULL;
    tp_pool *pool = NULL;
    if (gguf_writer_new(&w) || tp_new(o.threads, &pool)) {
        fprintf(stderr, "simpleton: out of memory\n");
        goto done;
    }
    int64_t n_layer = 0;
    gguf_str arch;
    if (gguf_get_str(g, "general.architecture", &arch) && arch.len < 64) {
        char key[128];
        snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
        gguf_get_i64(g, key, &n_layer);
    }
    for (int i = 0; i < gguf_n_kv(g); i++)
        if ((rc = gguf_writer_copy_kv(w, g, i))) goto werr;
    if ((rc = gguf_writer_set_u32(w, "general.file_type", (uint32_t)q->file_type))) goto werr;
    if (q->type != TT_F32 && q->type != TT_F16 && q->type != TT_BF16 &&
        (rc = gguf_writer_set_u32(w, "general.quantization_version", 2)))
        goto werr;

    int nt = gguf_n_tensors(g);
    int *types = smp_malloc((size_t)(nt ? nt : 1) * sizeof *types);
    if (!types) goto done;
    for (int i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        bool is_2d = t->n_dims == 2 || (t->ne[2] == 1 && t->ne[3] == 1 && t->ne[1] > 1);
        types[i] = target_type(q, t->name, is_2d ? 2 : 1, (int64_t)t->ne[0], (int)n_layer);
        if (!kern_traits(t->type) || (types[i] != t->type && !kern_traits(types[i])->quantize)) {
            fprintf(stderr, "simpleton: tensor '%s': cannot convert %s to %s\n", t->name, tt_name(t->type),
                    tt_name(types[i]));
            smp_free(types);
            goto done;
        }
        if ((rc = gguf_writer_add_tensor(w, t->name, types[i], t->n_dims, t->ne))) {
            smp_free(types);
            goto werr;
        }
    }
    if ((rc = gguf_writer_begin(w, o.pos[1]))) {
        smp_free(types);
        goto werr;
    }
    uint64_t t0 = util_now_ns();
    for (int i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (types[i] == t->type) {
            rc = gguf_writer_data(w, t->data, t->nbytes);
            if (rc) break;
            continue;
        }
        deq_src d = {t, kern_row_bytes(t->type, (int64_t)t->ne[0])};
        int64_t rows = (int64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        if ((rc = write_rows(w, pool, types[i], (int)t->ne[0], rows, deq_row, &d))) break;
    }
    smp_free(types);
    if (rc || (rc = gguf_writer_finish(w))) goto werr;
    fprintf(stderr, "quantized %s -> %s (%s) in %.1f s\n", path, o.pos[1], q->name, (util_now_ns() - t0) / 1e9);
    status = 0;
    goto done;
werr:
    fprintf(stderr, "simpleton: %s\n", gguf_writer_error(w));
done:
    gguf_writer_free(w);
    tp_free(pool);
    gguf_close(g);
    return status;
}

/* ---- mkmodel ---- */

typedef struct {
    const char *name;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    const char *vocab_file; /* default tokenizer source (relative to the repo root) */
} shape;

static const shape shapes[] = {
    {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, 2048, "../shared/vocab/ggml-vocab-llama-spm.gguf"},
    {"stories260K", 64, 5, 8, 4, 172, 512, 512, "../shared/models/stories260K.gguf"},
    {"mini", 256, 2, 4, 2, 768, 512, 512, "../shared/models/stories260K.gguf"},
};

/* Deterministic uniform noise: every row has its own stream, so the result
 * does not depend on the thread count. */
typedef struct {
    uint64_t seed;
    float scale;
    int cols;
    bool ones; /* norm weights */
} rand_src;

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rand_row(void *arg, int64_t r, float *out) {
    rand_src *s = arg;
    if (s->ones) {
        for (int i = 0; i < s->cols; i++) out[i] = 1.0f;
        return;
    }
    uint64_t st = s->seed ^ ((uint64_t)r * 0xd1b54a32d192ed03ULL);
    for (int i = 0; i < s->cols; i++) {
        uint64_t u = splitmix64(&st);
        out[i] = s->scale * ((float)(u >> 40) * (2.0f / 16777216.0f) - 1.0f);
    }
}

/* A synthetic SentencePiece vocabulary when no vocab file is at hand:
 * <unk> <s> </s>, the 256 byte tokens, then pieces made of letters. */
static int synth_vocab(gguf_writer *w, int n_vocab) {
    char **tok = smp_calloc((size_t)n_vocab, sizeof *tok);
    float *scores = smp_malloc((size_t)n_vocab * sizeof *scores);
    int32_t *types = smp_malloc((size_t)n_vocab * sizeof *types);
    int rc = -SMP_E_NOMEM;
    if (!tok || !scores || !types) goto out;
    static const char letters[] = "etaoinshrdlucmfwypvbgkjqxz";
    for (int i = 0; i < n_vocab; i++) {
        char b[32];
        if (i < 3) snprintf(b, sizeof b, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259) snprintf(b, sizeof b, "<0x%02X>", i - 3);
        else {
            /* U+2581 then one to three letters, enumerated */
            int k = i - 259, o = 0;
            if (k % 2 == 0) o += snprintf(b, sizeof b, "\xe2\x96\x81");
            k /= 2;
            do {
                b[o++] = letters[k % 26];
                k /= 26;
            } while (k && o < 20);
            b[o] = 0;
        }
        if (!(tok[i] = smp_strdup(b))) goto out;
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        types[i] = i == 0 ? TOK_TYPE_UNKNOWN : i < 3 ? TOK_TYPE_CONTROL : i < 259 ? TOK_TYPE_BYTE : TOK_TYPE_NORMAL;
    }
    rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (!rc) rc = gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)tok, (uint64_t)n_vocab);
    if (!rc) rc = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)n_vocab);
    if (!rc) rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)n_vocab);
    if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
out:
    if (tok)
        for (int i = 0; i < n_vocab; i++) smp_free(tok[i]);
    smp_free(tok);
    smp_free(scores);
    smp_free(types);
    return rc;
}

/* tokenizer.* keys from a vocab file, if its vocabulary has n_vocab entries. */
static int copy_vocab(gguf_writer *w, const char *path, int n_vocab, bool *copied) {
    *copied = false;
    if (!util_is_file(path)) return 0;
    gguf *v;
    char err[256];
    if (gguf_open(path, &v, err, sizeof err)) {
        fprintf(stderr, "simpleton: vocab: %s\n", err);
        return -SMP_E_FORMAT;
    }
    gguf_type et;
    uint64_t n = 0;
    int rc = 0;
    if (!gguf_get_arr(v, "tokenizer.ggml.tokens", &et, &n) || n != (uint64_t)n_vocab) {
        fprintf(stderr, "simpleton: vocab %s has %" PRIu64 " tokens, the shape needs %d\n", path, n, n_vocab);
        rc = -SMP_E_FORMAT;
    }
    for (int i = 0; i < gguf_n_kv(v) && !rc; i++)
        if (!strncmp(gguf_key(v, i), "tokenizer.", 10)) rc = gguf_writer_copy_kv(w, v, i);
    gguf_close(v);
    *copied = rc == 0;
    return rc;
}

static int cmd_mkmodel(int argc, char **argv) {
    opts o;
    int rc = parse_opts("mkmodel", argc, argv, "--shape --type --seed --vocab --threads", 1, &o);
    if (rc) return rc;
    if (o.n_pos != 1 || !o.shape || !o.type)
        return usage_err("mkmodel", "%s", "usage: simpleton mkmodel --shape NAME --type TYPE OUT");
    const shape *sh = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        if (!strcmp(shapes[i].name, o.shape)) sh = &shapes[i];
    if (!sh) return usage_err("mkmodel", "unknown shape '%s' (tinyllama-1.1b, stories260K, mini)", o.shape);
    const qtype *q = find_qtype(o.type);
    if (!q) return usage_err("mkmodel", "unknown type '%s' (F32, F16, Q8_0, Q4_K_M, ...)", o.type);

    int status = EXIT_RUNTIME;
    gguf_writer *w = NULL;
    tp_pool *pool = NULL;
    if (gguf_writer_new(&w) || tp_new(o.threads, &pool)) goto done;
    int hd = sh->n_embd / sh->n_head;
    char name[96];
    snprintf(name, sizeof name, "%s-random-%s", sh->name, q->name);
    if ((rc = gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (rc = gguf_writer_set_str(w, "general.name", name)) ||
        (rc = gguf_writer_set_u32(w, "general.file_type", (uint32_t)q->file_type)) ||
        (rc = gguf_writer_set_u32(w, "llama.context_length", (uint32_t)sh->n_ctx)) ||
        (rc = gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)sh->n_embd)) ||
        (rc = gguf_writer_set_u32(w, "llama.block_count", (uint32_t)sh->n_layer)) ||
        (rc = gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)sh->n_ff)) ||
        (rc = gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)sh->n_head)) ||
        (rc = gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)sh->n_head_kv)) ||
        (rc = gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)hd)) ||
        (rc = gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f)) ||
        (rc = gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f)))
        goto werr;
    if (q->type != TT_F32 && q->type != TT_F16 && q->type != TT_BF16 &&
        (rc = gguf_writer_set_u32(w, "general.quantization_version", 2)))
        goto werr;
    bool copied = false;
    const char *vocab = o.vocab ? o.vocab : sh->vocab_file;
    if (o.vocab && !util_is_file(o.vocab)) {
        fprintf(stderr, "simpleton: vocab file '%s' not found\n", o.vocab);
        goto done;
    }
    if ((rc = copy_vocab(w, vocab, sh->n_vocab, &copied))) goto done;
    if (!copied && (rc = synth_vocab(w, sh->n_vocab))) goto werr;
    if ((rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true))) goto werr;

    /* Tensors in llama.cpp's order: embeddings, output, then each block. */
    typedef struct {
        char name[64];
        int64_t cols, rows;
        int n_dims;
    } spec;
    int n_specs = 3 + 9 * sh->n_layer;
    spec *sp = smp_calloc((size_t)n_specs, sizeof *sp);
    if (!sp) goto done;
    int k = 0;
#define SPEC(nd, c, r, ...) (snprintf(sp[k].name, sizeof sp[k].name, __VA_ARGS__), sp[k].n_dims = nd, sp[k].cols = c, sp[k].rows = r, k++)
    SPEC(2, sh->n_embd, sh->n_vocab, "token_embd.weight");
    SPEC(1, sh->n_embd, 1, "output_norm.weight");
    SPEC(2, sh->n_embd, sh->n_vocab, "output.weight");
    int qd = sh->n_head * hd, kvd = sh->n_head_kv * hd;
    for (int l = 0; l < sh->n_layer; l++) {
        SPEC(1, sh->n_embd, 1, "blk.%d.attn_norm.weight", l);
        SPEC(2, sh->n_embd, qd, "blk.%d.attn_q.weight", l);
        SPEC(2, sh->n_embd, kvd, "blk.%d.attn_k.weight", l);
        SPEC(2, sh->n_embd, kvd, "blk.%d.attn_v.weight", l);
        SPEC(2, qd, sh->n_embd, "blk.%d.attn_output.weight", l);
        SPEC(1, sh->n_embd, 1, "blk.%d.ffn_norm.weight", l);
        SPEC(2, sh->n_embd, sh->n_ff, "blk.%d.ffn_gate.weight", l);
        SPEC(2, sh->n_embd, sh->n_ff, "blk.%d.ffn_up.weight", l);
        SPEC(2, sh->n_ff, sh->n_embd, "blk.%d.ffn_down.weight", l);
    }
#undef SPEC
    int *types = smp_malloc((size_t)n_specs * sizeof *types);
    if (!types) {
        smp_free(sp);
        goto done;
    }
    for (int i = 0; i < n_specs && !rc; i++) {
        types[i] = target_type(q, sp[i].name, sp[i].n_dims, sp[i].cols, sh->n_layer);
        uint64_t ne[2] = {(uint64_t)sp[i].cols, (uint64_t)sp[i].rows};
        rc = gguf_writer_add_tensor(w, sp[i].name, types[i], sp[i].n_dims, ne);
    }
    if (!rc) rc = gguf_writer_begin(w, o.pos[0]);
    uint64_t seed = o.seed_set ? o.seed : 1234;
    uint64_t t0 = util_now_ns();
    for (int i = 0; i < n_specs && !rc; i++) {
        rand_src rs = {.seed = seed + 0x632be59bd9b4e019ULL * (uint64_t)(i + 1),
                       .scale = sp[i].n_dims == 1 ? 0 : !strcmp(sp[i].name, "token_embd.weight") ? 1.0f
                                                                                                  : 1.7320508f / sqrtf((float)sp[i].cols),
                       .cols = (int)sp[i].cols,
                       .ones = sp[i].n_dims == 1};
        rc = write_rows(w, pool, types[i], (int)sp[i].cols, sp[i].rows, rand_row, &rs);
    }
    smp_free(types);
    smp_free(sp);
    if (rc || (rc = gguf_writer_finish(w))) goto werr;
    fprintf(stderr, "wrote %s (%s, %s, %s vocabulary) in %.1f s\n", o.pos[0], sh->name, q->name,
            copied ? vocab : "synthetic", (util_now_ns() - t0) / 1e9);
    status = 0;
    goto done;
werr:
    if (gguf_writer_error(w)[0]) fprintf(stderr, "simpleton: %s\n", gguf_writer_error(w));
done:
    gguf_writer_free(w);
    tp_free(pool);
    return status;
}

/* ---- dispatch ---- */

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} cmds[] = {
    {"run", cmd_run, "run MODEL \"prompt\" [-n N] [--temp T] [--seed S] [--threads N] [--top-k K] [--top-p P]\n"
                     "                     generate text (to stdout; speed to stderr)"},
    {"info", cmd_info, "info MODEL         metadata and tensor table of a GGUF file"},
    {"tokenize", cmd_tokenize, "tokenize MODEL \"text\" [--no-bos]   token ids"},
    {"eval", cmd_eval, "eval MODEL --tokens 1,2,3 --logits OUT.f32   logits at every position (f32 LE)"},
    {"quantize", cmd_quantize, "quantize IN OUT TYPE   re-encode weights (F16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q4_K_M, ...)"},
    {"mkmodel", cmd_mkmodel, "mkmodel --shape tinyllama-1.1b|stories260K|mini --type TYPE OUT   random-weight model"},
};

bool cli_engine_has(const char *cmd) {
    if (cli_whisper_has(cmd)) return true;
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(cmds[i].name, cmd)) return true;
    return false;
}

int cli_engine_main(const char *cmd, int argc, char **argv) {
    if (cli_whisper_has(cmd)) return cli_whisper_main(cmd, argc, argv);
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(cmds[i].name, cmd)) return cmds[i].fn(argc, argv);
    return EXIT_USAGE;
}

void cli_engine_usage(FILE *f) {
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) fprintf(f, "  %s\n", cmds[i].help);
    cli_whisper_usage(f);
}
