/* test_whisper.c - the Whisper engine's loader, log-mel and forward passes
 * against the golden outputs in ../shared/reference/whisper (see its README
 * for what each file holds and the tolerances):
 *   - log-mel of both clips: max abs <= 1e-3;
 *   - first-step logits (full vocabulary) and teacher-forced logits (every
 *     16th column, 20 positions; argmax over the full vocabulary at every
 *     position) for the F16 (rel RMS <= 2e-3) and Q8_0 / Q5_0 (<= 2e-2) files;
 *   - one token at a time with the KV cache equals all at once;
 *   - the loader refuses a truncated file, a wrong magic, a wrong shape;
 *   - the FFT-based mel against a direct DFT on a short signal. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/whisper.h"
#include "engine/whisper_int.h"
#include "test.h"

#define WMODELS "../shared/models/whisper/"
#define WREF "../shared/reference/whisper/"
#define JFK "../shared/audio/jfk.wav"
#define AUSTEN "../shared/audio/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
#define AUSTEN_CLIP "sense_and_sensibility_01_austen_64kb-0880"

static float *read_f32(const char *path, size_t *count) {
    size_t len;
    char *p = test_slurp(path, &len);
    if (p) *count = len / 4;
    return (float *)p;
}

static double rel_rms(const float *a, const float *ref, size_t n, size_t stride_a) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i * stride_a] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / den);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static whisper_model *load(const char *name) {
    char path[256], err[256];
    snprintf(path, sizeof path, WMODELS "%s.bin", name);
    whisper_model *m = NULL;
    whisper_load_opts o = {.n_threads = 2};
    int rc = whisper_load_ex(path, &o, &m, err, sizeof err);
    if (rc) fprintf(stderr, "  load %s: %s\n", path, err);
    return m;
}

/* ---- mel ---- */

static void mel_golden(const char *wav, const char *clip) {
    whisper_model *m = load("whisper-rand-tiny64-f16");
    REQUIRE(m);
    size_t n;
    float *pcm = test_read_wav(wav, &n);
    REQUIRE(pcm);
    float *mel;
    int nf;
    REQUIRE(whisper_mel(m, pcm, n, &mel, &nf) == 0);
    CHECK_INT(nf, (int)((n + 480000) / 160));
    char path[256];
    snprintf(path, sizeof path, WREF "%s.mel.f32", clip);
    size_t cnt;
    float *ref = read_f32(path, &cnt);
    REQUIRE(ref && cnt == 80 * 3000);
    double mx = 0;
    for (int b = 0; b < 80; b++)
        for (int t = 0; t < 3000; t++) {
            double d = fabs((double)mel[(size_t)b * nf + t] - ref[b * 3000 + t]);
            if (d > mx) mx = d;
        }
    fprintf(stderr, "  mel %s: max abs %.3g\n", clip, mx);
    CHECK(mx <= 1e-3);
    smp_free(ref);
    smp_free(mel);
    smp_free(pcm);
    whisper_free(m);
}

TEST(whisper_mel_golden_jfk) { mel_golden(JFK, "jfk"); }
TEST(whisper_mel_golden_austen) { mel_golden(AUSTEN, AUSTEN_CLIP); }

/* The FFT path against a direct float64 DFT of one frame in the middle of a
 * short random signal. */
TEST(whisper_mel_fft_vs_dft) {
    whisper_model *m = load("whisper-rand-tiny64-f16");
    REQUIRE(m);
    size_t n = 4000;
    float *pcm = smp_malloc(n * sizeof(float));
    uint32_t st = 12345;
    for (size_t i = 0; i < n; i++) {
        st = st * 1664525u + 1013904223u;
        pcm[i] = ((st >> 8) / 16777216.0f - 0.5f) * 0.5f;
    }
    float *mel;
    int nf;
    REQUIRE(whisper_mel(m, pcm, n, &mel, &nf) == 0);
    /* Frame 10: samples 1400..1799 of the audio (no padding involved). */
    double pw[201], mx = -1e300, raw[80];
    for (int k = 0; k < 201; k++) {
        double re = 0, im = 0;
        for (int j = 0; j < 400; j++) {
            double x = pcm[1400 + j] * (0.5 - 0.5 * cos(2 * M_PI * j / 400));
            re += x * cos(2 * M_PI * j * k / 400);
            im -= x * sin(2 * M_PI * j * k / 400);
        }
        pw[k] = re * re + im * im;
    }
    for (int b = 0; b < 80; b++) {
        double s = 0;
        for (int k = 0; k < 201; k++) s += m->mel_filters[b * 201 + k] * pw[k];
        raw[b] = log10(s > 1e-10 ? s : 1e-10);
    }
    /* Undo the global clamp/scale: compare only bands above the floor. */
    for (size_t i = 0; i < (size_t)80 * nf; i++) mx = mel[i] > mx ? mel[i] : mx;
    int checked = 0;
    for (int b = 0; b < 80; b++) {
        double got = mel[(size_t)b * nf + 10] * 4.0 - 4.0;
        double floor_ = mx * 4.0 - 4.0 - 8.0;
        if (raw[b] <= floor_ + 1e-3) continue;
        CHECK_NEAR(got, raw[b], 1e-4);
        checked++;
    }
    CHECK(checked > 40);
    smp_free(mel);
    smp_free(pcm);
    whisper_free(m);
}

/* ---- logits ---- */

typedef struct {
    int32_t tokens[20];
    int argmax[20];
} forced_txt;

static bool read_forced(const char *path, forced_txt *f) {
    char *txt = test_slurp(path, NULL);
    if (!txt) return false;
    int got = 0, rows = 0;
    for (char *line = txt; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (*line == '#') continue;
        if (!strncmp(line, "tokens", 6)) {
            char *s = line + 6;
            while (got < 20) {
                while (*s == ' ' || *s == ',' || *s == '\t') s++;
                char *end;
                long v = strtol(s, &end, 10);
                if (end == s) break;
                f->tokens[got++] = (int32_t)v;
                s = end;
            }
            continue;
        }
        int pos, tok, am;
        if (rows < 20 && sscanf(line, "%d %d %d", &pos, &tok, &am) == 3 && pos == rows) f->argmax[rows++] = am;
    }
    smp_free(txt);
    return got == 20 && rows == 20;
}

/* Encode the clip's mel and check the first-step logits, the 20 forced rows,
 * and the same rows decoded one token at a time with the KV cache. */
static void logits_golden(const char *model, const char *wav, const char *clip, double tol) {
    whisper_model *m = load(model);
    REQUIRE(m);
    size_t n;
    float *pcm = test_read_wav(wav, &n);
    REQUIRE(pcm);
    float *mel;
    int nf;
    REQUIRE(whisper_mel(m, pcm, n, &mel, &nf) == 0);
    whisper_state *s = whisper_state_new(m);
    REQUIRE(s);
    REQUIRE(whisper_encode(s, mel, nf, 0) == 0);

    char path[256];
    snprintf(path, sizeof path, WREF "%s.%s.forced.txt", model, clip);
    forced_txt ft;
    REQUIRE(read_forced(path, &ft));
    int V = whisper_n_vocab(m), np = 20;
    float *lg = smp_malloc((size_t)20 * V * sizeof(float));
    REQUIRE(whisper_decode(s, ft.tokens, np, 0, lg, true) == 0);

    size_t cnt;
    snprintf(path, sizeof path, WREF "%s.%s.first-logits.f32", model, clip);
    float *first = read_f32(path, &cnt);
    REQUIRE(first && cnt == (size_t)V);
    double e1 = rel_rms(lg + (size_t)3 * V, first, (size_t)V, 1);
    snprintf(path, sizeof path, WREF "%s.%s.forced-logits-s16.f32", model, clip);
    float *forced = read_f32(path, &cnt);
    REQUIRE(forced && cnt == (size_t)20 * 3242);
    double worst = 0;
    for (int p = 0; p < np; p++) {
        double e = rel_rms(lg + (size_t)p * V, forced + (size_t)p * 3242, 3242, 16);
        if (e > worst) worst = e;
        CHECK_INT(argmax(lg + (size_t)p * V, V), ft.argmax[p]);
    }
    fprintf(stderr, "  %s %s: first-logits rel RMS %.3g, forced (20 rows) worst %.3g\n", model, clip, e1, worst);
    CHECK(e1 <= tol);
    CHECK(worst <= tol);

    {
        /* The same rows one token at a time with the KV cache (last row only). */
        float *one = smp_malloc((size_t)V * sizeof(float));
        double diff = 0;
        for (int p = 0; p < 20; p++) {
            REQUIRE(whisper_decode(s, ft.tokens + p, 1, p, one, false) == 0);
            for (int i = 0; i < V; i++) {
                double d = fabs((double)one[i] - lg[(size_t)p * V + i]);
                if (d > diff) diff = d;
            }
        }
        fprintf(stderr, "  one at a time vs all at once: max abs %.3g\n", diff);
        CHECK(diff <= 1e-4);
        smp_free(one);
        /* Re-encoding resets the cache: the prompt again gives the same row. */
        REQUIRE(whisper_encode(s, mel, nf, 0) == 0);
        REQUIRE(whisper_decode(s, ft.tokens, 4, 0, one = smp_malloc((size_t)V * sizeof(float)), false) == 0);
        CHECK(rel_rms(one, lg + (size_t)3 * V, (size_t)V, 1) < 1e-6);
        smp_free(one);
    }
    smp_free(forced);
    smp_free(first);
    smp_free(lg);
    whisper_state_free(s);
    smp_free(mel);
    smp_free(pcm);
    whisper_free(m);
}

TEST(whisper_logits_f16_jfk) { logits_golden("whisper-rand-tiny64-f16", JFK, "jfk", 2e-3); }
TEST(whisper_logits_f16_austen) { logits_golden("whisper-rand-tiny64-f16", AUSTEN, AUSTEN_CLIP, 2e-3); }
TEST(whisper_logits_q8_0_jfk) { logits_golden("whisper-rand-tiny64-q8_0", JFK, "jfk", 2e-2); }
TEST(whisper_logits_q8_0_austen) { logits_golden("whisper-rand-tiny64-q8_0", AUSTEN, AUSTEN_CLIP, 2e-2); }
TEST(whisper_logits_q5_0_jfk) { logits_golden("whisper-rand-tiny64-q5_0", JFK, "jfk", 2e-2); }
TEST(whisper_logits_q5_0_austen) { logits_golden("whisper-rand-tiny64-q5_0", AUSTEN, AUSTEN_CLIP, 2e-2); }

/* ---- loader ---- */

TEST(whisper_load_ok) {
    whisper_model *m = load("whisper-rand-tiny64-q8_0");
    REQUIRE(m);
    CHECK_INT(whisper_n_vocab(m), 51865);
    CHECK_INT(whisper_n_mels(m), 80);
    CHECK(whisper_is_multilingual(m));
    CHECK_INT(m->tok.eot, 50257);
    CHECK_INT(m->tok.sot, 50258);
    CHECK_INT(m->tok.lang0, 50259);
    CHECK_INT(m->tok.transcribe, 50359);
    CHECK_INT(m->tok.notimestamps, 50363);
    CHECK_INT(m->tok.ts0, 50364);
    CHECK_INT(m->n_text_tokens, 50257);
    CHECK(m->piece_len[5] == 1 && m->piece[5][0] == '&'); /* byte-level BPE: id 5 is "&" */
    CHECK(strstr(whisper_describe(m), "tiny64 q8_0") != NULL);
    fprintf(stderr, "  %s\n", whisper_describe(m));
    whisper_free(m);
}

/* Write bytes to a temp file, try to load it, return the error code. */
static int load_bytes(const char *bytes, size_t len, char *err, size_t errlen) {
    char path[] = "/tmp/whisper_bad_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 1;
    ssize_t w = write(fd, bytes, len);
    close(fd);
    whisper_model *m = NULL;
    int rc = w == (ssize_t)len ? whisper_load(path, &m, err, errlen) : 1;
    whisper_free(m);
    unlink(path);
    return rc;
}

TEST(whisper_load_rejects_broken_files) {
    size_t len;
    char *b = test_slurp(WMODELS "whisper-rand-tiny64-f16.bin", &len);
    REQUIRE(b);
    char err[256];
    /* Truncated in the middle of the tensors, in the vocabulary, in the header. */
    size_t cuts[] = {len - 1, len / 2, 70000, 100, 20, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        err[0] = 0;
        CHECK_INT(load_bytes(b, cuts[i], err, sizeof err), -SMP_E_FORMAT);
        CHECK(err[0] != 0);
        if (i < 2) CHECK(strstr(err, "truncated") != NULL);
    }
    fprintf(stderr, "  truncated: %s\n", err);
    /* Wrong magic. */
    char save = b[0];
    b[0] = 'X';
    CHECK_INT(load_bytes(b, len, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "magic") != NULL);
    b[0] = save;
    /* A bad hparam: n_audio_ctx = 1499. */
    int32_t v = 1499, old;
    memcpy(&old, b + 8, 4);
    memcpy(b + 8, &v, 4);
    CHECK_INT(load_bytes(b, len, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "n_audio_ctx") != NULL);
    memcpy(b + 8, &old, 4);
    /* A tensor with a wrong shape: change ne[0] of encoder.ln_post.weight to 63. */
    const char *name = "encoder.ln_post.weight";
    char *hit = NULL;
    for (size_t i = 0; i + strlen(name) < len && !hit; i++)
        if (!memcmp(b + i, name, strlen(name))) hit = b + i;
    REQUIRE(hit);
    /* record: n_dims, name_len, type, ne[0] then the name */
    v = 63;
    memcpy(hit - 4, &v, 4);
    CHECK_INT(load_bytes(b, len, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "encoder.ln_post.weight") != NULL && strstr(err, "shape") != NULL);
    fprintf(stderr, "  shape: %s\n", err);
    v = 64;
    memcpy(hit - 4, &v, 4);
    /* The intact bytes load. */
    CHECK_INT(load_bytes(b, len, err, sizeof err), 0);
    /* Not a file. */
    whisper_model *m;
    CHECK_INT(whisper_load("/nonexistent/whisper.bin", &m, err, sizeof err), -SMP_E_IO);
    smp_free(b);
}

/* The computed standard filter bank equals the one in the model files. */
TEST(whisper_mel_filters_std_match_file) {
    whisper_model *m = load("whisper-rand-tiny64-f16");
    REQUIRE(m);
    float *f = smp_malloc(80 * 201 * sizeof(float));
    whisper_mel_filters_std(80, f);
    double mx = 0, peak = 0;
    for (int i = 0; i < 80 * 201; i++) {
        double d = fabs((double)f[i] - m->mel_filters[i]);
        if (d > mx) mx = d;
        if (m->mel_filters[i] > peak) peak = m->mel_filters[i];
    }
    fprintf(stderr, "  std filters vs file: max abs %.3g (peak %.3g)\n", mx, peak);
    CHECK(mx <= 1e-6 * peak);
    smp_free(f);
    whisper_free(m);
}

/* The AVX2 attention scores and softmax (polynomial exp) against plain loops. */
TEST(whisper_attn_kernels_vs_reference) {
    double d = whisper_attn_kernels_check();
    fprintf(stderr, "  attention kernels: max rel diff %.3g\n", d);
    CHECK(d <= 1e-5);
}

/* ---- command line ---- */

#include "engine/cli_engine.h"

/* mkwhisper writes a model the loader accepts and the forward pass runs on;
 * eval on the real F16 file writes the golden first-step logits; mel writes
 * the golden log-mel; bad arguments are usage errors. */
TEST(whisper_cli_mkwhisper_eval_mel) {
    char dir[] = "/tmp/whisper_cli_XXXXXX";
    REQUIRE(mkdtemp(dir));
    char out[128], lg[128], mel[128];
    snprintf(out, sizeof out, "%s/t.bin", dir);
    snprintf(lg, sizeof lg, "%s/l.f32", dir);
    snprintf(mel, sizeof mel, "%s/m.f32", dir);
    char *mk[] = {"--shape", "tiny64", "--type", "q4_0", out};
    CHECK_INT(cli_engine_main("mkwhisper", 5, mk), 0);
    char err[256];
    whisper_model *m = NULL;
    CHECK_INT(whisper_load(out, &m, err, sizeof err), 0);
    if (m) {
        CHECK(strstr(whisper_describe(m), "q4_0") != NULL);
        whisper_state *s = whisper_state_new(m);
        float *mm = smp_calloc((size_t)80 * 3000, sizeof(float)), *l = smp_malloc(51865 * sizeof(float));
        int32_t prompt[4] = {50258, 50259, 50359, 50363};
        CHECK_INT(whisper_encode(s, mm, 3000, 0), 0);
        CHECK_INT(whisper_decode(s, prompt, 4, 0, l, false), 0);
        bool finite = true;
        for (int i = 0; i < 51865; i++) finite = finite && isfinite(l[i]);
        CHECK(finite);
        /* out of range: positions past the context, bad ids, a gap in the cache */
        CHECK_INT(whisper_decode(s, prompt, 4, 446, l, false), -SMP_E_VALIDATION);
        int32_t bad = 51865;
        CHECK_INT(whisper_decode(s, &bad, 1, 4, l, false), -SMP_E_VALIDATION);
        CHECK_INT(whisper_decode(s, prompt, 1, 9, l, false), -SMP_E_VALIDATION);
        smp_free(mm);
        smp_free(l);
        whisper_state_free(s);
        whisper_free(m);
    }
    char *ev[] = {WMODELS "whisper-rand-tiny64-f16.bin", "--audio", JFK, "--tokens", "50258,50259,50359,50363",
                  "--logits", lg};
    CHECK_INT(cli_engine_main("eval", 7, ev), 0);
    size_t n1, n2;
    float *got = read_f32(lg, &n1), *want = read_f32(WREF "whisper-rand-tiny64-f16.jfk.first-logits.f32", &n2);
    REQUIRE(got && want && n1 == 4 * n2);
    CHECK(rel_rms(got + 3 * n2, want, n2, 1) <= 2e-3);
    char *me[] = {JFK, "--out", mel};
    CHECK_INT(cli_engine_main("mel", 3, me), 0);
    float *gm = read_f32(mel, &n1), *wm = read_f32(WREF "jfk.mel.f32", &n2);
    REQUIRE(gm && wm && n1 == n2);
    double mx = 0;
    for (size_t i = 0; i < n1; i++) mx = fmax(mx, fabs((double)gm[i] - wm[i]));
    CHECK(mx <= 1e-3);
    char *bad1[] = {"--shape", "huge", "--type", "f16", out};
    CHECK_INT(cli_engine_main("mkwhisper", 5, bad1), 2);
    char *bad2[] = {WMODELS "whisper-rand-tiny64-f16.bin", "--tokens", "1"};
    CHECK_INT(cli_engine_main("eval", 3, bad2), 2);
    char *bad3[] = {"/nonexistent.wav", "--out", mel};
    CHECK_INT(cli_engine_main("mel", 3, bad3), 1);
    smp_free(got), smp_free(want), smp_free(gm), smp_free(wm);
    unlink(out), unlink(lg), unlink(mel), rmdir(dir);
}

/* Random byte changes in the header, filters, vocabulary and tensor records
 * of a real file: the loader either accepts the file or refuses it with
 * -SMP_E_FORMAT and a message; it never crashes (the sanitizer build checks). */
TEST(whisper_load_mutations) {
    size_t len;
    char *b = test_slurp(WMODELS "whisper-rand-tiny64-q5_0.bin", &len);
    REQUIRE(b);
    char *c = smp_malloc(len);
    uint64_t st = 42;
    int refused = 0;
    for (int it = 0; it < 40; it++) {
        memcpy(c, b, len);
        for (int k = 0; k < 4; k++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t r = st >> 33;
            /* half in the first 70 KB (header, filters, vocabulary), half anywhere */
            size_t off = (size_t)(k % 2 ? r % len : r % 70000);
            c[off] = (char)(r >> 8);
        }
        char err[256] = "";
        int rc = load_bytes(c, len, err, sizeof err);
        CHECK(rc == 0 || (rc == -SMP_E_FORMAT && err[0]));
        refused += rc != 0;
    }
    fprintf(stderr, "  %d of 40 mutated files refused\n", refused);
    smp_free(c);
    smp_free(b);
}

/* The English-only (51864) and large-v3 (51866) vocabulary layouts: the F16
 * file with its header's n_vocab changed and the token embedding one row
 * shorter / longer. */
static void vocab_variant(int n_vocab, const whisper_tokens *want) {
    size_t len;
    char *b = test_slurp(WMODELS "whisper-rand-tiny64-f16.bin", &len);
    REQUIRE(b);
    const char *name = "decoder.token_embedding.weight";
    size_t nl = strlen(name), at = 0;
    for (size_t i = 0; i + nl < len && !at; i++)
        if (!memcmp(b + i, name, nl)) at = i;
    REQUIRE(at);
    /* record: n_dims, name_len, type, ne0, ne1, name, data [ne1][64] f16 */
    int32_t ne1;
    memcpy(&ne1, b + at - 4, 4);
    REQUIRE(ne1 == 51865);
    size_t data = at + nl, row = 64 * 2, end = data + (size_t)ne1 * row;
    char *c = smp_calloc(len + row, 1);
    memcpy(c, b, end);
    size_t n = end;
    if (n_vocab < 51865) n -= row;
    else n += row; /* a zero row */
    memcpy(c + n, b + end, len - end);
    n += len - end;
    int32_t v = n_vocab;
    memcpy(c + 4, &v, 4);
    memcpy(c + at - 4, &v, 4);
    char path[] = "/tmp/whisper_vocab_XXXXXX", err[256];
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, c, n) == (ssize_t)n);
    close(fd);
    whisper_model *m = NULL;
    CHECK_INT(whisper_load(path, &m, err, sizeof err), 0);
    if (m) {
        CHECK_INT(whisper_n_vocab(m), n_vocab);
        CHECK(!memcmp(&m->tok, want, sizeof *want));
        CHECK_INT(whisper_is_multilingual(m), n_vocab != 51864);
        CHECK_INT(m->n_text_tokens, n_vocab == 51864 ? 50256 : 50257);
        CHECK_INT(m->tok.ts0 + 1500, n_vocab - 1); /* the last id is timestamp 30.00 */
    }
    whisper_free(m);
    unlink(path);
    smp_free(c);
    smp_free(b);
}

TEST(whisper_vocab_layouts) {
    /* eot, sot, lang0, n_langs, translate, transcribe, solm, prev, nosp, notimestamps, ts0 */
    whisper_tokens en = {50256, 50257, 50258, 0, 50357, 50358, 50359, 50360, 50361, 50362, 50363};
    whisper_tokens v3 = {50257, 50258, 50259, 100, 50359, 50360, 50361, 50362, 50363, 50364, 50365};
    vocab_variant(51864, &en);
    vocab_variant(51866, &v3);
}
