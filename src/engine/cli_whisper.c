/* cli_whisper.c - command-line tools over the Whisper engine: log-mel dump,
 * teacher-forced logits, transcription, and random-weight model files of
 * known shapes (for tests and the audio benchmark).
 *
 * Main data structures: `wopts` (the parsed flags of one command) and, for
 * mkwhisper, a `shape` row plus a splitmix64 / Box-Muller normal generator
 * whose draws are converted a row at a time to the tensor's type and written
 * straight to the file (see whisper_model.c for the layout). */
#include "engine/cli_whisper.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/buf.h"
#include "core/util.h"
#include "core/valid.h"
#include "engine/kernels/kernels.h"
#include "engine/tensor_types.h"
#include "engine/threadpool.h"
#include "engine/whisper.h"
#include "engine/whisper_int.h"
#include "media/audio.h"

#define EXIT_USAGE 2
#define EXIT_RUNTIME 1
#define WHISPER_MAGIC 0x67676d6cu
#define MAX_AUDIO_FILE (1u << 30)
#define DEFAULT_VOCAB_SRC "../shared/models/whisper/whisper-rand-tiny64-f16.bin"

#define WHISPER_MAX_TEXT_IDS 4096

static double now_sec(void) { return util_now_ns() / 1e9; }

/* ---- flags ---- */

typedef struct {
    const char *pos[3];
    int n_pos;
    int threads;
    bool json, seed_set;
    uint64_t seed;
    const char *out, *model, *audio, *tokens, *logits, *language, *task, *shape, *type, *vocab;
} wopts;

static int usage_err(const char *cmd, const char *fmt, const char *arg) {
    fprintf(stderr, "simpleton %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see 'simpleton help')\n");
    return EXIT_USAGE;
}

/* Parse argv; flags not in `allowed` (space-separated) are usage errors. */
static int parse(const char *cmd, int argc, char **argv, const char *allowed, int max_pos, wopts *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            if (o->n_pos >= max_pos) return usage_err(cmd, "unexpected argument '%s'", a);
            o->pos[o->n_pos++] = a;
            continue;
        }
        char want[40], list[256];
        snprintf(want, sizeof want, " %s ", a);
        snprintf(list, sizeof list, " %s ", allowed);
        if (!strstr(list, want)) return usage_err(cmd, "unknown option '%s'", a);
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (i + 1 >= argc) return usage_err(cmd, "option '%s' needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--threads")) {
            char *end;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (errno || end == v || *end || n < 1 || n > 256)
                return usage_err(cmd, "bad --threads value '%s' (1..256)", v);
            o->threads = (int)n;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') return usage_err(cmd, "bad --seed value '%s'", v);
            o->seed = s;
            o->seed_set = true;
        } else if (!strcmp(a, "--out")) o->out = v;
        else if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--audio")) o->audio = v;
        else if (!strcmp(a, "--tokens")) o->tokens = v;
        else if (!strcmp(a, "--logits")) o->logits = v;
        else if (!strcmp(a, "--language")) o->language = v;
        else if (!strcmp(a, "--task")) o->task = v;
        else if (!strcmp(a, "--shape")) o->shape = v;
        else if (!strcmp(a, "--type")) o->type = v;
        else if (!strcmp(a, "--vocab")) o->vocab = v;
    }
    return 0;
}

/* ---- files ---- */

/* A path as given, else $MODELS_DIR/ggml-<name>.bin or $MODELS_DIR/<name>.
 * Returns false (nothing printed) when neither exists. */
static bool resolve(const char *name, char *out, size_t n) {
    if (util_is_file(name)) {
        snprintf(out, n, "%s", name);
        return true;
    }
    if (strchr(name, '/')) return false;
    const char *dir = getenv("MODELS_DIR");
    if (!dir || !*dir) dir = "models";
    snprintf(out, n, "%s/ggml-%s.bin", dir, name);
    if (util_is_file(out)) return true;
    snprintf(out, n, "%s/%s", dir, name);
    return util_is_file(out);
}

static int load_model(const char *name, int threads, whisper_model **m) {
    char path[4096], err[512];
    if (!resolve(name, path, sizeof path)) {
        fprintf(stderr, "simpleton: Whisper model '%s' not found (neither a file nor $MODELS_DIR/ggml-%s.bin)\n",
                name, name);
        return -1;
    }
    whisper_load_opts o = {.n_threads = threads};
    if (whisper_load_ex(path, &o, m, err, sizeof err)) {
        fprintf(stderr, "simpleton: %s\n", err); /* names the file */
        return -1;
    }
    return 0;
}

/* A whole file (at most MAX_AUDIO_FILE bytes), or NULL with the error printed. */
static char *read_file(const char *path, size_t *len) {
    char *data;
    int rc = util_read_file(path, MAX_AUDIO_FILE, &data, len);
    if (rc == -SMP_E_TOO_LARGE)
        fprintf(stderr, "simpleton: '%s' is larger than %u bytes\n", path, MAX_AUDIO_FILE);
    else if (rc)
        fprintf(stderr, "simpleton: cannot open '%s': %s\n", path, rc == -SMP_E_IO ? strerror(errno) : "out of memory");
    return rc ? NULL : data;
}

/* Any audio file -> 16 kHz mono float. Prints the error. */
static int load_audio(const char *path, float **pcm, size_t *n) {
    size_t len;
    char *data = read_file(path, &len);
    if (!data) return -1;
    char err[512];
    int rc = audio_decode(data, len, 0, pcm, n, err, sizeof err);
    smp_free(data);
    if (rc) {
        fprintf(stderr, "simpleton: %s: %s\n", path, err[0] ? err : "cannot decode the audio");
        return -1;
    }
    return 0;
}

static int write_f32(const char *path, const float *x, size_t count) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(x, sizeof(float), count, f) != count) {
        fprintf(stderr, "simpleton: cannot write '%s': %s\n", path, strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    if (fclose(f)) {
        fprintf(stderr, "simpleton: cannot write '%s': %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- mel ---- */

static int cmd_mel(int argc, char **argv) {
    wopts o;
    int rc = parse("mel", argc, argv, "--out --model --threads", 1, &o);
    if (rc) return rc;
    if (o.n_pos != 1 || !o.out) return usage_err("mel", "%s", "usage: simpleton mel FILE --out OUT.f32 [--model M]");
    int status = EXIT_RUNTIME;
    whisper_model *m = NULL;
    tp_pool *pool = NULL;
    float *pcm = NULL, *mel = NULL, *filters = NULL, *out = NULL;
    size_t n;
    int n_mels = 80, nf;
    if (o.model && load_model(o.model, o.threads, &m)) return EXIT_RUNTIME;
    if (load_audio(o.pos[0], &pcm, &n)) goto done;
    if (m) {
        rc = whisper_mel(m, pcm, n, &mel, &nf);
        n_mels = whisper_n_mels(m);
    } else {
        if (!(filters = smp_malloc((size_t)n_mels * 201 * sizeof(float))) || tp_new(o.threads, &pool)) {
            fprintf(stderr, "simpleton: out of memory\n");
            goto done;
        }
        whisper_mel_filters_std(n_mels, filters);
        rc = whisper_mel_ex(filters, n_mels, pool, pcm, n, &mel, &nf);
    }
    if (rc) {
        fprintf(stderr, "simpleton: cannot compute the mel spectrogram (%s)\n", smp_err_message(rc));
        goto done;
    }
    /* First 3000 frames, band-major (nf >= 3000 always: 30 s of padding). */
    if (!(out = smp_malloc((size_t)n_mels * WHISPER_N_FRAMES * sizeof(float)))) goto done;
    for (int b = 0; b < n_mels; b++)
        memcpy(out + (size_t)b * WHISPER_N_FRAMES, mel + (size_t)b * nf, WHISPER_N_FRAMES * sizeof(float));
    if (write_f32(o.out, out, (size_t)n_mels * WHISPER_N_FRAMES)) goto done;
    fprintf(stderr, "wrote %d x %d log-mel to %s (%.2f s of audio)\n", n_mels, WHISPER_N_FRAMES, o.out,
            (double)n / WHISPER_SAMPLE_RATE);
    status = 0;
done:
    smp_free(out);
    smp_free(mel);
    smp_free(filters);
    smp_free(pcm);
    tp_free(pool);
    whisper_free(m);
    return status;
}

/* ---- eval ---- */

/* The first argument that is neither a flag nor a flag's value. */
static const char *first_positional(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1]) {
            if (strcmp(argv[i], "--json")) i++;
            continue;
        }
        return argv[i];
    }
    return NULL;
}

bool cli_whisper_is_eval(int argc, char **argv) {
    const char *name = first_positional(argc, argv);
    char path[4096];
    if (!name || !resolve(name, path, sizeof path)) return false;
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    uint32_t magic = 0;
    bool ok = fread(&magic, 4, 1, f) == 1 && magic == WHISPER_MAGIC;
    fclose(f);
    return ok;
}

int cli_whisper_eval(int argc, char **argv) {
    wopts o;
    int rc = parse("eval", argc, argv, "--audio --tokens --logits --threads", 1, &o);
    if (rc) return rc;
    const char *usage = "usage: simpleton eval WHISPER_MODEL --audio FILE --tokens 50258,50259 --logits OUT.f32";
    if (o.n_pos != 1 || !o.audio || !o.tokens || !o.logits) return usage_err("eval", "%s", usage);
    int32_t ids[WHISPER_MAX_TEXT_IDS];
    int n = 0;
    for (const char *s = o.tokens; *s;) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > INT32_MAX || (*end && *end != ',') || n == WHISPER_MAX_TEXT_IDS)
            return usage_err("eval", "bad --tokens list '%s' (comma-separated ids)", o.tokens);
        ids[n++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    if (n == 0) return usage_err("eval", "%s", "--tokens is empty");
    int status = EXIT_RUNTIME;
    whisper_model *m = NULL;
    whisper_state *s = NULL;
    float *pcm = NULL, *mel = NULL, *lg = NULL;
    size_t ns;
    int nf;
    if (load_model(o.pos[0], o.threads, &m)) return EXIT_RUNTIME;
    int V = whisper_n_vocab(m);
    if (n > m->hp.n_text_ctx) {
        fprintf(stderr, "simpleton: %d tokens exceed the decoder's context of %d\n", n, m->hp.n_text_ctx);
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] >= V) {
            fprintf(stderr, "simpleton: token id %d is outside the vocabulary (0..%d)\n", ids[i], V - 1);
            goto done;
        }
    if (load_audio(o.audio, &pcm, &ns)) goto done;
    if (whisper_mel(m, pcm, ns, &mel, &nf) || !(s = whisper_state_new(m)) ||
        !(lg = smp_malloc((size_t)n * V * sizeof(float)))) {
        fprintf(stderr, "simpleton: out of memory\n");
        goto done;
    }
    double t0 = now_sec();
    if (whisper_encode(s, mel, nf, 0) || whisper_decode(s, ids, n, 0, lg, true)) {
        fprintf(stderr, "simpleton: the forward pass failed\n");
        goto done;
    }
    double t1 = now_sec();
    if (write_f32(o.logits, lg, (size_t)n * V)) goto done;
    fprintf(stderr, "wrote %d x %d logits to %s (%.3f s)\n", n, V, o.logits, t1 - t0);
    status = 0;
done:
    smp_free(lg);
    smp_free(mel);
    smp_free(pcm);
    whisper_state_free(s);
    whisper_free(m);
    return status;
}

/* ---- transcribe ---- */

static int cmd_transcribe(int argc, char **argv) {
    wopts o;
    int rc = parse("transcribe", argc, argv, "--language --task --json --threads", 2, &o);
    if (rc) return rc;
    if (o.n_pos != 2)
        return usage_err("transcribe", "%s",
                         "usage: simpleton transcribe MODEL FILE [--language L] [--task translate] [--json]");
    if (o.task && strcmp(o.task, "translate") && strcmp(o.task, "transcribe"))
        return usage_err("transcribe", "bad --task '%s' (transcribe or translate)", o.task);
    int status = EXIT_RUNTIME;
    whisper_model *m = NULL;
    float *pcm = NULL;
    size_t n;
    whisper_result r = {0};
    if (load_model(o.pos[0], o.threads, &m)) return EXIT_RUNTIME;
    if (load_audio(o.pos[1], &pcm, &n)) goto done;
    whisper_params p;
    whisper_params_default(&p);
    p.language = o.language;
    p.translate = o.task && !strcmp(o.task, "translate");
    char err[512] = "";
    double t0 = now_sec();
    rc = whisper_transcribe(m, pcm, n, &p, &r, err, sizeof err);
    double dt = now_sec() - t0;
    if (rc) {
        fprintf(stderr, "simpleton: %s\n", err[0] ? err : smp_err_message(rc < 0 ? rc : -SMP_E_INTERNAL));
        goto done;
    }
    if (o.json) {
        json_t *j = json_object(), *segs = json_array();
        json_object_set_new(j, "text", json_string(r.text ? r.text : ""));
        json_object_set_new(j, "language", json_string(r.language));
        json_object_set_new(j, "duration", json_real(r.duration));
        for (int i = 0; i < r.n_segments; i++) {
            json_t *sg = json_object();
            json_object_set_new(sg, "start", json_real(r.segments[i].start));
            json_object_set_new(sg, "end", json_real(r.segments[i].end));
            json_object_set_new(sg, "text", json_string(r.segments[i].text ? r.segments[i].text : ""));
            json_array_append_new(segs, sg);
        }
        json_object_set_new(j, "segments", segs);
        buf txt;
        buf_init(&txt, 0);
        if (valid_dump(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER, &txt) == 0) printf("%.*s\n", (int)txt.len, txt.data);
        buf_free(&txt);
        json_decref(j);
    } else {
        printf("%s\n", r.text ? r.text : "");
    }
    fprintf(stderr, "%s: %.2f s of audio (%s) in %.2f s: mel %.0f ms, encode %.0f ms, decode %.0f ms\n",
            whisper_describe(m), r.duration, r.language, dt, r.mel_ms, r.encode_ms, r.decode_ms);
    status = 0;
done:
    whisper_result_free(&r);
    smp_free(pcm);
    whisper_free(m);
    return status;
}

/* ---- mkwhisper ---- */

typedef struct {
    const char *name;
    int state, heads, layers;
} shape;

static const shape shapes[] = {
    {"tiny64", 64, 2, 2}, {"tiny", 384, 6, 4}, {"base", 512, 8, 6}, {"small", 768, 12, 12},
};

typedef struct {
    const char *name;
    int type, ftype; /* tensor type of the matrices; header ftype */
} wtype;

static const wtype wtypes[] = {
    {"f16", TT_F16, 1}, {"q8_0", TT_Q8_0, 2007}, {"q5_0", TT_Q5_0, 2008}, {"q4_0", TT_Q4_0, 2002},
};

typedef struct {
    uint64_t s;
    bool have;
    double spare;
} rng;

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double normal(rng *r) {
    if (r->have) {
        r->have = false;
        return r->spare;
    }
    double u1 = ((splitmix64(&r->s) >> 11) + 1.0) / 9007199254740993.0, u2 = (splitmix64(&r->s) >> 11) / 9007199254740992.0;
    double rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(2 * M_PI * u2);
    r->have = true;
    return rad * cos(2 * M_PI * u2);
}

typedef struct {
    FILE *f;
    rng r;
    float *row;
    void *qrow;
    bool io_err;
} writer;

static void put(writer *w, const void *p, size_t n) {
    if (!w->io_err && fwrite(p, 1, n, w->f) != n) w->io_err = true;
}

static void put_i32(writer *w, int32_t v) { put(w, &v, 4); }

/* One tensor: ne[0] x ne[1] x ne[2] values offset + scale * N(0, 1), rows of
 * ne[0] converted to type. */
static void put_tensor(writer *w, const char *name, int n_dims, const int *ne, int type, double offset,
                       double scale) {
    put_i32(w, n_dims);
    put_i32(w, (int32_t)strlen(name));
    put_i32(w, type);
    for (int d = 0; d < n_dims; d++) put_i32(w, ne[d]);
    put(w, name, strlen(name));
    int64_t rows = 1;
    for (int d = 1; d < n_dims; d++) rows *= ne[d];
    size_t rb = kern_row_bytes(type, ne[0]);
    for (int64_t r = 0; r < rows && !w->io_err; r++) {
        for (int i = 0; i < ne[0]; i++) w->row[i] = (float)(offset + scale * normal(&w->r));
        if (type == TT_F32) put(w, w->row, rb);
        else {
            if (type == TT_F16) kern_f32_to_f16_row(w->row, w->qrow, ne[0]);
            else kern_traits(type)->quantize(w->row, w->qrow, ne[0]);
            put(w, w->qrow, rb);
        }
    }
}

static void put_vec(writer *w, const char *name, int n, double offset, double scale) {
    put_tensor(w, name, 1, (int[]){n}, TT_F32, offset, scale);
}

static void put_block(writer *w, const char *pre, int s, int mtype, bool decoder) {
    char nm[96];
    const char *attns[2] = {"attn", "cross_attn"};
    for (int a = 0; a < (decoder ? 2 : 1); a++) {
        static const char *proj[4] = {"query", "key", "value", "out"};
        for (int p = 0; p < 4; p++) {
            snprintf(nm, sizeof nm, "%s.%s.%s.weight", pre, attns[a], proj[p]);
            put_tensor(w, nm, 2, (int[]){s, s}, mtype, 0, 0.05);
            if (p != 1) {
                snprintf(nm, sizeof nm, "%s.%s.%s.bias", pre, attns[a], proj[p]);
                put_vec(w, nm, s, 0, 0.05);
            }
        }
        snprintf(nm, sizeof nm, "%s.%s_ln.weight", pre, attns[a]);
        put_vec(w, nm, s, 1, 0.1);
        snprintf(nm, sizeof nm, "%s.%s_ln.bias", pre, attns[a]);
        put_vec(w, nm, s, 0, 0.05);
    }
    snprintf(nm, sizeof nm, "%s.mlp_ln.weight", pre);
    put_vec(w, nm, s, 1, 0.1);
    snprintf(nm, sizeof nm, "%s.mlp_ln.bias", pre);
    put_vec(w, nm, s, 0, 0.05);
    snprintf(nm, sizeof nm, "%s.mlp.0.weight", pre);
    put_tensor(w, nm, 2, (int[]){s, 4 * s}, mtype, 0, 0.05);
    snprintf(nm, sizeof nm, "%s.mlp.0.bias", pre);
    put_vec(w, nm, 4 * s, 0, 0.05);
    snprintf(nm, sizeof nm, "%s.mlp.2.weight", pre);
    put_tensor(w, nm, 2, (int[]){4 * s, s}, mtype, 0, 0.05);
    snprintf(nm, sizeof nm, "%s.mlp.2.bias", pre);
    put_vec(w, nm, s, 0, 0.05);
}

/* Bytes of the mel filters and vocabulary sections of a model file (from the
 * n_mel field to the end of the vocabulary), read into *out. */
static int read_shared_sections(const char *path, char **out, size_t *len) {
    size_t n;
    char *b = read_file(path, &n);
    if (!b) return -1;
    size_t off = 48;
    uint32_t magic;
    int32_t n_mel, n_fft, count, l;
    if (n < 56 || (memcpy(&magic, b, 4), magic != WHISPER_MAGIC)) goto bad;
    memcpy(&n_mel, b + 48, 4);
    memcpy(&n_fft, b + 52, 4);
    if (n_mel != 80 || n_fft != 201) goto bad;
    off = 56 + (size_t)80 * 201 * 4;
    if (off + 4 > n) goto bad;
    memcpy(&count, b + off, 4);
    off += 4;
    if (count < 0 || count > 51865) goto bad;
    for (int i = 0; i < count; i++) {
        if (off + 4 > n) goto bad;
        memcpy(&l, b + off, 4);
        if (l < 0 || (size_t)l > n - off - 4) goto bad;
        off += 4 + (size_t)l;
    }
    memmove(b, b + 48, off - 48);
    *out = b;
    *len = off - 48;
    return 0;
bad:
    fprintf(stderr, "simpleton: '%s' is not an 80-band Whisper model to copy filters and vocabulary from\n", path);
    smp_free(b);
    return -1;
}

static int cmd_mkwhisper(int argc, char **argv) {
    wopts o;
    int rc = parse("mkwhisper", argc, argv, "--shape --type --seed --vocab", 1, &o);
    if (rc) return rc;
    if (o.n_pos != 1 || !o.shape || !o.type)
        return usage_err("mkwhisper", "%s",
                         "usage: simpleton mkwhisper --shape tiny64|tiny|base|small --type f16|q8_0|q5_0|q4_0 OUT.bin");
    const shape *sh = NULL;
    const wtype *wt = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        if (!strcmp(shapes[i].name, o.shape)) sh = &shapes[i];
    for (size_t i = 0; i < sizeof wtypes / sizeof *wtypes; i++)
        if (!strcmp(wtypes[i].name, o.type)) wt = &wtypes[i];
    if (!sh) return usage_err("mkwhisper", "unknown --shape '%s' (tiny64, tiny, base, small)", o.shape);
    if (!wt) return usage_err("mkwhisper", "unknown --type '%s' (f16, q8_0, q5_0, q4_0)", o.type);
    char *shared = NULL;
    size_t shared_len;
    const char *src = o.vocab ? o.vocab : DEFAULT_VOCAB_SRC;
    if (read_shared_sections(src, &shared, &shared_len)) return EXIT_RUNTIME;

    int s = sh->state, n_vocab = 51865, n_text_ctx = 448;
    writer w = {.r = {.s = o.seed_set ? o.seed : 20240611}};
    int status = EXIT_RUNTIME;
    w.row = smp_malloc((size_t)4 * s * sizeof(float));
    w.qrow = smp_malloc((size_t)4 * s * sizeof(float));
    if (!w.row || !w.qrow) {
        fprintf(stderr, "simpleton: out of memory\n");
        goto done;
    }
    if (!(w.f = fopen(o.pos[0], "wb"))) {
        fprintf(stderr, "simpleton: cannot create '%s': %s\n", o.pos[0], strerror(errno));
        goto done;
    }
    uint32_t magic = WHISPER_MAGIC;
    put(&w, &magic, 4);
    int32_t hp[11] = {n_vocab, 1500, s, sh->heads, sh->layers, n_text_ctx, s, sh->heads, sh->layers, 80, wt->ftype};
    put(&w, hp, sizeof hp);
    put(&w, shared, shared_len);
    put_tensor(&w, "encoder.positional_embedding", 2, (int[]){s, 1500}, TT_F32, 0, 0.1);
    put_tensor(&w, "encoder.conv1.weight", 3, (int[]){3, 80, s}, TT_F16, 0, 0.05);
    put_tensor(&w, "encoder.conv1.bias", 2, (int[]){1, s}, TT_F32, 0, 0.05);
    put_tensor(&w, "encoder.conv2.weight", 3, (int[]){3, s, s}, TT_F16, 0, 0.05);
    put_tensor(&w, "encoder.conv2.bias", 2, (int[]){1, s}, TT_F32, 0, 0.05);
    char pre[48];
    for (int l = 0; l < sh->layers; l++) {
        snprintf(pre, sizeof pre, "encoder.blocks.%d", l);
        put_block(&w, pre, s, wt->type, false);
    }
    put_vec(&w, "encoder.ln_post.weight", s, 1, 0.1);
    put_vec(&w, "encoder.ln_post.bias", s, 0, 0.05);
    put_tensor(&w, "decoder.positional_embedding", 2, (int[]){s, n_text_ctx}, TT_F32, 0, 0.1);
    put_tensor(&w, "decoder.token_embedding.weight", 2, (int[]){s, n_vocab}, wt->type, 0, 0.5);
    for (int l = 0; l < sh->layers; l++) {
        snprintf(pre, sizeof pre, "decoder.blocks.%d", l);
        put_block(&w, pre, s, wt->type, true);
    }
    put_vec(&w, "decoder.ln.weight", s, 1, 0.1);
    put_vec(&w, "decoder.ln.bias", s, 0, 0.05);
    if (fclose(w.f)) w.io_err = true;
    w.f = NULL;
    if (w.io_err) {
        fprintf(stderr, "simpleton: cannot write '%s': %s\n", o.pos[0], strerror(errno));
        unlink(o.pos[0]);
        goto done;
    }
    fprintf(stderr, "wrote a random %s %s Whisper model to %s\n", sh->name, wt->name, o.pos[0]);
    status = 0;
done:
    if (w.f) {
        fclose(w.f);
        unlink(o.pos[0]);
    }
    smp_free(w.row);
    smp_free(w.qrow);
    smp_free(shared);
    return status;
}

/* ---- dispatch ---- */

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} cmds[] = {
    {"mel", cmd_mel, "mel FILE --out OUT.f32 [--model M]   log-mel [80][3000] (f32 LE)"},
    {"transcribe", cmd_transcribe,
     "transcribe MODEL FILE [--language L] [--task translate] [--json] [--threads N]   speech to text"},
    {"mkwhisper", cmd_mkwhisper,
     "mkwhisper --shape tiny64|tiny|base|small --type f16|q8_0|q5_0|q4_0 OUT.bin   random-weight Whisper model"},
};

bool cli_whisper_has(const char *cmd) {
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(cmds[i].name, cmd)) return true;
    return false;
}

int cli_whisper_main(const char *cmd, int argc, char **argv) {
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(cmds[i].name, cmd)) return cmds[i].fn(argc, argv);
    return EXIT_USAGE;
}

void cli_whisper_usage(FILE *f) {
    fprintf(f, "  eval WHISPER_MODEL --audio FILE --tokens IDS --logits OUT.f32   teacher-forced Whisper logits\n");
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) fprintf(f, "  %s\n", cmds[i].help);
}
