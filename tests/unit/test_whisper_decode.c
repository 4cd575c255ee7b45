/* test_whisper_decode.c - the Whisper decoding loop (src/engine/whisper.c):
 * greedy ids and text against whisper.cpp's golden .greedy.txt files for
 * every model x clip; the logit filters and the tokens -> segments step on
 * hand-made inputs; then the transcription's contract on the random tiny64
 * model: language codes, prompt tokens per task, silence and near-silence
 * give no text, segments are ordered and inside the audio, cancellation,
 * allocation failures, two threads on one model; the AVX2 softmax sums.
 *
 * The random-weight models decode gibberish ("Bridge Bridge ..."), so the
 * transcription tests check structure, not words. Audio: 16 kHz mono PCM16
 * WAV files read by the small RIFF reader below. */
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/whisper.h"
#include "engine/whisper_int.h"

#define REF "../shared/reference/whisper/"
#define MODELS "../shared/models/whisper/"
#define JFK "../shared/audio/jfk.wav"
#define CLIP0880 "../shared/audio/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

typedef struct {
    int32_t prompt[8], ids[64];
    float logp[64];
    int n_prompt, n_ids;
    unsigned char text[1024];
    size_t text_len;
} golden;

static int read_golden(const char *path, golden *g) {
    size_t len;
    char *s = (char *)test_slurp(path, &len);
    if (!s) return -1;
    memset(g, 0, sizeof *g);
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        char *p;
        if (!strncmp(line, "prompt ", 7)) {
            p = line + 7;
            while (*p && g->n_prompt < 8) g->prompt[g->n_prompt++] = (int32_t)strtol(p, &p, 10), p += *p == ' ';
        } else if (!strncmp(line, "ids ", 4)) {
            p = line + 4;
            while (*p && g->n_ids < 64) g->ids[g->n_ids++] = (int32_t)strtol(p, &p, 10), p += *p == ' ';
        } else if (!strncmp(line, "text_hex ", 9)) {
            for (p = line + 9; p[0] && p[1] && g->text_len < sizeof g->text; p += 2)
                g->text[g->text_len++] = (unsigned char)(hexval(p[0]) << 4 | hexval(p[1]));
        } else if (!strncmp(line, "tok ", 4)) {
            int i, id, special;
            double prob, lp;
            if (sscanf(line + 4, "%d %d %d %lf %lf", &i, &id, &special, &prob, &lp) == 5 && i >= 0 && i < 64)
                g->logp[i] = (float)lp;
        }
    }
    smp_free(s);
    return 0;
}

/* One golden file: mel of the clip, encode, greedy ids under whisper.cpp's
 * settings (max_tokens 32 there = 33 tokens here), text bytes. */
static void check_greedy(const char *model, const char *clip_name, const char *wav, double logp_tol) {
    char path[512], err[256];
    golden g;
    snprintf(path, sizeof path, REF "%s.%s.greedy.txt", model, clip_name);
    REQUIRE(read_golden(path, &g) == 0);
    REQUIRE(g.n_prompt == 4 && g.n_ids == 33);
    snprintf(path, sizeof path, MODELS "%s.bin", model);
    whisper_model *m = NULL;
    REQUIRE(whisper_load(path, &m, err, sizeof err) == 0);
    size_t n;
    float *pcm = test_read_wav(wav, &n), *mel = NULL;
    int n_frames = 0, n_ids = 0;
    REQUIRE(pcm);
    REQUIRE(whisper_mel(m, pcm, n, &mel, &n_frames) == 0);
    whisper_state *st = whisper_state_new(m);
    REQUIRE(st);
    REQUIRE(whisper_encode(st, mel, n_frames, 0) == 0);
    int32_t ids[64];
    float logp[64];
    REQUIRE(whisper_greedy_window(m, st, g.prompt, g.n_prompt, 33, ids, logp, &n_ids) == 0);
    CHECK_INT(n_ids, g.n_ids);
    int diff = 0;
    for (int i = 0; i < n_ids && i < g.n_ids; i++) diff += ids[i] != g.ids[i];
    if (diff) fprintf(stderr, "  %s %s: first id %d, golden %d\n", model, clip_name, ids[0], g.ids[0]);
    CHECK_INT(diff, 0);
    CHECK_NEAR(logp[0], g.logp[0], logp_tol); /* the decision that matters: margins 0.47..0.92 */
    size_t tlen = 0;
    char *text = whisper_detokenize(m, ids, n_ids, &tlen);
    REQUIRE(text);
    CHECK_INT(tlen, g.text_len);
    CHECK(tlen == g.text_len && !memcmp(text, g.text, tlen));
    smp_free(text);
    whisper_state_free(st);
    smp_free(mel);
    smp_free(pcm);
    whisper_free(m);
}

TEST(whisper_decode_golden_greedy_f16) {
    check_greedy("whisper-rand-tiny64-f16", "jfk", JFK, 0.02);
    check_greedy("whisper-rand-tiny64-f16", "sense_and_sensibility_01_austen_64kb-0880", CLIP0880, 0.02);
}

TEST(whisper_decode_golden_greedy_q8_0) {
    check_greedy("whisper-rand-tiny64-q8_0", "jfk", JFK, 0.1);
    check_greedy("whisper-rand-tiny64-q8_0", "sense_and_sensibility_01_austen_64kb-0880", CLIP0880, 0.1);
}

TEST(whisper_decode_golden_greedy_q5_0) {
    check_greedy("whisper-rand-tiny64-q5_0", "jfk", JFK, 0.1);
    check_greedy("whisper-rand-tiny64-q5_0", "sense_and_sensibility_01_austen_64kb-0880", CLIP0880, 0.1);
}

TEST(whisper_decode_lang_codes) {
    CHECK_INT(whisper_lang_id("en"), 0);
    CHECK_INT(whisper_lang_id("zh"), 1);
    CHECK_INT(whisper_lang_id("de"), 2);
    CHECK_INT(whisper_lang_id("DE"), 2);
    CHECK_INT(whisper_lang_id("su"), 98);
    CHECK_INT(whisper_lang_id("yue"), 99);
    CHECK_INT(whisper_lang_id("xx"), -1);
    CHECK_INT(whisper_lang_id(""), -1);
    CHECK_INT(whisper_lang_id(NULL), -1);
    CHECK(whisper_lang_code(-1) == NULL && whisper_lang_code(100) == NULL);
    for (int i = 0; i < 100; i++) {
        const char *c = whisper_lang_code(i);
        REQUIRE(c);
        CHECK_INT(whisper_lang_id(c), i);
    }
}

static whisper_model *load_f16(void) {
    char err[256];
    whisper_model *m = NULL;
    if (whisper_load(MODELS "whisper-rand-tiny64-f16.bin", &m, err, sizeof err)) {
        fprintf(stderr, "  load: %s\n", err);
        return NULL;
    }
    return m;
}

TEST(whisper_decode_prompt_tokens) {
    whisper_model *m = load_f16();
    REQUIRE(m);
    int32_t out[240], ctx[300];
    int n_head;
    int n = whisper_prompt_tokens(m, 0, false, false, NULL, 0, out, &n_head);
    CHECK_INT(n, 4);
    CHECK_INT(n_head, 1);
    CHECK(out[0] == 50258 && out[1] == 50259 && out[2] == 50359 && out[3] == 50363); /* the golden prompt */
    n = whisper_prompt_tokens(m, whisper_lang_id("de"), true, true, NULL, 0, out, &n_head);
    CHECK_INT(n, 3);
    CHECK(out[1] == 50261 && out[2] == 50358); /* de, translate; timestamps on: no notimestamps */
    for (int i = 0; i < 300; i++) ctx[i] = 1000 + i;
    n = whisper_prompt_tokens(m, 0, false, true, ctx, 300, out, &n_head);
    CHECK_INT(n, 1 + 223 + 3);
    CHECK_INT(n_head, 1 + 223 + 1);
    CHECK(out[0] == 50361 && out[1] == 1000 + 300 - 223 && out[223] == 1299 && out[224] == 50258);
    whisper_free(m);
}

TEST(whisper_decode_text_and_prompt_pieces) {
    whisper_model *m = load_f16();
    REQUIRE(m);
    const char *s = " And so my fellow Americans, ask not";
    int32_t ids[64];
    int n = whisper_tokenize_prompt(m, s, ids, 64);
    REQUIRE(n > 0 && n < 20);
    size_t len;
    char *back = whisper_detokenize(m, ids, n, &len);
    REQUIRE(back);
    CHECK_STR(back, s);
    smp_free(back);
    CHECK_INT(whisper_tokenize_prompt(m, " Bridge", ids, 64), 1);
    CHECK_INT(ids[0], 18917);
    int32_t mixed[] = {50258, 18917, 50364, 18917, 50257};
    back = whisper_detokenize(m, mixed, 5, &len);
    CHECK_STR(back, " Bridge Bridge"); /* specials and timestamps carry no text */
    smp_free(back);
    const char *rep = " Bridge Bridge Bridge Bridge Bridge Bridge Bridge Bridge Bridge Bridge";
    const char *sent = "And so my fellow Americans, ask not what your country can do for you.";
    CHECK(whisper_compression_ratio(rep, strlen(rep)) > 2.4);
    CHECK(whisper_compression_ratio(sent, strlen(sent)) < 2.0);
    whisper_free(m);
}

static void check_segments(const whisper_result *r, double duration) {
    for (int i = 0; i < r->n_segments; i++) {
        const whisper_segment *s = &r->segments[i];
        CHECK(s->start >= 0 && s->start < s->end && s->end <= duration + 1e-9);
        CHECK(s->text && *s->text);
        if (i) CHECK(s->start >= r->segments[i - 1].start);
    }
}

TEST(whisper_decode_silence_gives_no_text) {
    whisper_model *m = load_f16();
    REQUIRE(m);
    size_t n = 16000 * 40;
    float *pcm = smp_calloc(n, sizeof *pcm);
    REQUIRE(pcm);
    whisper_params p;
    whisper_params_default(&p);
    whisper_result r;
    char err[256];
    REQUIRE(whisper_transcribe(m, pcm, n, &p, &r, err, sizeof err) == 0);
    CHECK_INT(r.n_segments, 0);
    CHECK_STR(r.text, "");
    CHECK_NEAR(r.duration, 40.0, 1e-9);
    CHECK(r.encode_ms == 0.0); /* the gate skipped every window */
    whisper_result_free(&r);
    /* very low noise (about -66 dBFS) and a faint hum: still silence */
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        pcm[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.002f + 0.0005f * sinf((float)i * 0.0196f);
    }
    REQUIRE(whisper_transcribe(m, pcm, n, &p, &r, err, sizeof err) == 0);
    CHECK_INT(r.n_segments, 0);
    CHECK_STR(r.text, "");
    whisper_result_free(&r);
    /* an empty input is an empty transcript */
    REQUIRE(whisper_transcribe(m, pcm, 0, &p, &r, err, sizeof err) == 0);
    CHECK_INT(r.n_segments, 0);
    whisper_result_free(&r);
    smp_free(pcm);
    whisper_free(m);
}

/* jfk (11 s) with the language detected; 0880 + 32 s of silence + jfk
 * (46 s: the first window holds 0880, the second starts just before jfk,
 * not 30 s in) without timestamps; jfk translated with a prompt. */
TEST(whisper_decode_segments_in_order) {
    whisper_model *m = load_f16();
    REQUIRE(m);
    size_t n1, n2;
    float *jfk = test_read_wav(JFK, &n1), *clip = test_read_wav(CLIP0880, &n2);
    REQUIRE(jfk && clip);
    size_t gap = 16000 * 32, n = n2 + gap + n1;
    float *pcm = smp_calloc(n, sizeof *pcm);
    REQUIRE(pcm);
    memcpy(pcm, clip, n2 * sizeof *pcm);
    memcpy(pcm + n2 + gap, jfk, n1 * sizeof *pcm);
    char err[256];
    whisper_params p;
    whisper_params_default(&p);
    p.max_tokens = 12; /* random weights decode to the limit: keep it short */
    whisper_result r;
    REQUIRE(whisper_transcribe(m, jfk, n1, &p, &r, err, sizeof err) == 0);
    CHECK(r.language[0] && whisper_lang_id(r.language) >= 0);
    CHECK(r.language_prob > 0 && r.language_prob <= 1);
    CHECK(r.n_segments >= 1);
    check_segments(&r, r.duration);
    CHECK(r.mel_ms > 0 && r.encode_ms > 0 && r.decode_ms > 0);
    whisper_result_free(&r);

    p.language = "en";
    p.timestamps = false;
    REQUIRE(whisper_transcribe(m, pcm, n, &p, &r, err, sizeof err) == 0);
    CHECK_STR(r.language, "en");
    CHECK_NEAR(r.language_prob, 1.0, 0);
    CHECK(r.n_segments >= 2);
    check_segments(&r, r.duration);
    if (r.n_segments >= 2) {
        CHECK(r.segments[0].start < 0.5);
        double jfk_at = (double)(n2 + gap) / 16000; /* the gate moved the window to 0.2 s before */
        CHECK(r.segments[r.n_segments - 1].start > jfk_at - 0.5 && r.segments[r.n_segments - 1].start < jfk_at);
    }
    CHECK(strlen(r.text) > 0);
    whisper_result_free(&r);

    p.timestamps = true;
    p.translate = true;
    p.prompt = "Sense and Sensibility, a novel.";
    REQUIRE(whisper_transcribe(m, jfk, n1, &p, &r, err, sizeof err) == 0);
    CHECK(r.n_segments >= 1);
    check_segments(&r, r.duration);
    whisper_result_free(&r);
    smp_free(pcm);
    smp_free(jfk);
    smp_free(clip);
    whisper_free(m);
}

static bool cancel_after_polls(void *ud) { return --*(int *)ud < 0; }

TEST(whisper_decode_cancel_and_errors) {
    whisper_model *m = load_f16();
    REQUIRE(m);
    size_t n;
    float *pcm = test_read_wav(JFK, &n);
    REQUIRE(pcm);
    char err[256];
    whisper_params p;
    whisper_params_default(&p);
    p.language = "en";
    whisper_result r;
    for (int polls = 0; polls < 12; polls += 5) {
        int budget = polls;
        p.cancelled = cancel_after_polls;
        p.cancel_ud = &budget;
        CHECK_INT(whisper_transcribe(m, pcm, n, &p, &r, err, sizeof err), 1);
        CHECK(r.n_segments == 0 && r.segments == NULL && r.text == NULL);
        whisper_result_free(&r);
    }
    whisper_params_default(&p);
    p.language = "klingon";
    CHECK_INT(whisper_transcribe(m, pcm, n, &p, &r, err, sizeof err), -SMP_E_VALIDATION);
    CHECK(strstr(err, "klingon") != NULL);
    whisper_result_free(&r);
    /* an English-only model (no language tokens) cannot translate */
    whisper_model en_only = *m;
    en_only.tok.n_langs = 0;
    whisper_params_default(&p);
    p.translate = true;
    CHECK_INT(whisper_transcribe(&en_only, pcm, n, &p, &r, err, sizeof err), -SMP_E_VALIDATION);
    CHECK(strstr(err, "English-only") != NULL);
    whisper_result_free(&r);
    smp_free(pcm);
    whisper_free(m);
}

/* Every allocation of a transcription may fail: the call then returns
 * -SMP_E_NOMEM (or succeeds, when the failure hit a retry-free path) and
 * leaves no live bytes behind. */
TEST(whisper_decode_out_of_memory) {
    whisper_model *m = load_f16();
    REQUIRE(m);
    size_t n;
    float *pcm = test_read_wav(JFK, &n);
    REQUIRE(pcm && n > 16000 * 3);
    n = 16000 * 3;
    char err[256];
    whisper_params p;
    whisper_params_default(&p);
    p.language = "en";
    p.max_tokens = 3;
    p.prompt = "Ask not.";
    size_t base = smp_alloc_live_bytes();
    int failed = 0;
    static const long at[] = {0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 17, 22, 28, 35, 45, 60, 80};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
        whisper_result r;
        smp_alloc_fail_after(at[i]);
        int rc = whisper_transcribe(m, pcm, n, &p, &r, err, sizeof err);
        smp_alloc_fail_after(-1);
        CHECK(rc == 0 || rc == -SMP_E_NOMEM);
        failed += rc == -SMP_E_NOMEM;
        if (rc) CHECK(r.text == NULL && r.segments == NULL);
        whisper_result_free(&r);
        CHECK_INT(smp_alloc_live_bytes(), base);
    }
    CHECK(failed > 5);
    smp_free(pcm);
    whisper_free(m);
}

/* Two threads transcribe with one model at once (each call has its own
 * state): both get what a call alone gets. */
typedef struct {
    whisper_model *m;
    const float *pcm;
    size_t n;
    whisper_result r;
    int rc;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    whisper_params p;
    whisper_params_default(&p);
    p.max_tokens = 8;
    char err[256];
    j->rc = whisper_transcribe(j->m, j->pcm, j->n, &p, &j->r, err, sizeof err);
    return NULL;
}

TEST(whisper_decode_concurrent_calls) {
    whisper_model *m = load_f16();
    REQUIRE(m);
    size_t n1, n2;
    float *a = test_read_wav(JFK, &n1), *b = test_read_wav(CLIP0880, &n2);
    REQUIRE(a && b);
    job solo[2] = {{m, a, n1, {0}, 0}, {m, b, n2, {0}, 0}}, both[2] = {{m, a, n1, {0}, 0}, {m, b, n2, {0}, 0}};
    run_job(&solo[0]);
    run_job(&solo[1]);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) REQUIRE(pthread_create(&t[i], NULL, run_job, &both[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(solo[i].rc == 0 && both[i].rc == 0);
        CHECK_STR(both[i].r.text, solo[i].r.text);
        CHECK_STR(both[i].r.language, solo[i].r.language);
        CHECK_INT(both[i].r.n_segments, solo[i].r.n_segments);
        whisper_result_free(&solo[i].r);
        whisper_result_free(&both[i].r);
    }
    smp_free(a);
    smp_free(b);
    whisper_free(m);
}

/* The AVX2 softmax sums against the plain loop: every term to 1e-6
 * relative, the sums too; -inf and far-below terms are 0; odd lengths. */
TEST(whisper_decode_sum_exp_avx2_vs_ref) {
    enum { N = 51865 };
    float *l = smp_malloc(N * sizeof *l), *a = smp_malloc(N * sizeof *a), *b = smp_malloc(N * sizeof *b);
    REQUIRE(l && a && b);
    uint32_t x = 7;
    float mx = -INFINITY;
    for (int i = 0; i < N; i++) {
        x = x * 1664525u + 1013904223u;
        l[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 80.0f; /* spans the e^-30 cut */
        if (i % 97 == 0) l[i] = -INFINITY;
        if (l[i] > mx) mx = l[i];
    }
    const float scales[] = {1.0f, 5.0f, 1.0f / 0.2f, 0.5f};
    const int lens[] = {N, 7, 8, 9, 1001};
    for (size_t si = 0; si < sizeof scales / sizeof *scales; si++)
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            int n = lens[li];
            double sa = whisper_sum_exp(l, n, mx, scales[si], a), sb = whisper_sum_exp_ref(l, n, mx, scales[si], b);
            CHECK(fabs(sa - sb) <= 1e-6 * sb + 1e-30);
            int bad = 0;
            for (int i = 0; i < n; i++) bad += !(fabsf(a[i] - b[i]) <= 1e-6f * b[i]);
            CHECK_INT(bad, 0);
        }
    CHECK(whisper_sum_exp(l, N, mx, 1.0f, NULL) > 1.0); /* the max itself adds 1 */
    smp_free(l);
    smp_free(a);
    smp_free(b);
}

/* The timestamp rules, step by step, on flat logits (every token equal). */
static int n_allowed(const float *l, int from, int to) {
    int c = 0;
    for (int i = from; i < to; i++) c += l[i] != -INFINITY;
    return c;
}

TEST(whisper_decode_logit_filters) {
    whisper_model *m = load_f16();
    REQUIRE(m);
    int nv = whisper_n_vocab(m), TS = 50364, EOT = 50257;
    float *l = smp_malloc((size_t)nv * sizeof *l);
    REQUIRE(l);
#define FLAT() for (int i_ = 0; i_ < nv; i_++) l[i_] = 0.0f
    /* no timestamps: text and eot only; not eot or " " at the first step */
    FLAT();
    whisper_filter_logits(m, l, NULL, 0, false);
    CHECK_INT(n_allowed(l, EOT, nv), 0);
    CHECK(l[220] == -INFINITY && l[221] == 0.0f);
    int32_t seq[8] = {18917};
    FLAT();
    whisper_filter_logits(m, l, seq, 1, false);
    CHECK(l[EOT] == 0.0f && l[220] == 0.0f && n_allowed(l, EOT + 1, nv) == 0);
    /* timestamps, first step: only <|0.00|> .. <|1.00|> */
    FLAT();
    whisper_filter_logits(m, l, NULL, 0, true);
    CHECK_INT(n_allowed(l, 0, nv), 51);
    CHECK(l[TS] == 0.0f && l[TS + 50] == 0.0f && l[TS + 51] == -INFINITY);
    /* after <|0.40|>: text (or a jump to later timestamps) */
    seq[0] = TS + 20;
    FLAT();
    whisper_filter_logits(m, l, seq, 1, true);
    CHECK_INT(n_allowed(l, TS, nv), 0); /* a lone opening timestamp is followed by text */
    CHECK(l[18917] == 0.0f);
    /* after <|0.40|> text: a closing timestamp must be later than 0.40 s */
    seq[1] = 18917;
    FLAT();
    whisper_filter_logits(m, l, seq, 2, true);
    CHECK(l[TS + 20] == -INFINITY && l[TS + 21] != -INFINITY);
    /* after <|0.40|> text <|1.00|>: no text; <|1.00|> again (the next start) or eot */
    seq[2] = TS + 50;
    FLAT();
    for (int i = TS; i < nv; i++) l[i] = -10.0f; /* their sum below eot's: no forcing */
    whisper_filter_logits(m, l, seq, 3, true);
    CHECK_INT(n_allowed(l, 0, EOT), 0);
    CHECK(l[TS + 49] == -INFINITY && l[TS + 50] != -INFINITY && l[EOT] != -INFINITY);
    /* after the pair <|1.00|><|1.00|>: text, not another timestamp */
    seq[3] = TS + 50;
    FLAT();
    for (int i = TS; i < nv; i++) l[i] = -5.0f; /* timestamps unlikely: no forcing */
    whisper_filter_logits(m, l, seq, 4, true);
    CHECK_INT(n_allowed(l, TS, nv), 0);
    CHECK(l[18917] != -INFINITY);
    /* the summed timestamp probability beats the best text token: text off */
    seq[0] = TS, seq[1] = 18917;
    FLAT();
    whisper_filter_logits(m, l, seq, 2, true);
    CHECK_INT(n_allowed(l, 0, EOT), 0);
    CHECK(n_allowed(l, TS + 1, nv) == nv - TS - 1);
#undef FLAT
    smp_free(l);
    whisper_free(m);
}

/* Tokens -> segments, as OpenAI's transcribe() cuts them. */
TEST(whisper_decode_window_segments) {
    whisper_model *m = load_f16();
    REQUIRE(m);
    int TS = 50364;
    whisper_segment *sg;
    int n, used;
    /* two closed segments, then an unfinished one: seek to the last end */
    int32_t a[] = {TS + 0, 18917, TS + 50, TS + 50, 18917, 18917, TS + 100, TS + 100, 18917};
    long adv = whisper_window_segments(m, a, 9, 1000, 3000, 100.0, true, &sg, &n, &used);
    CHECK_INT(adv, 200);
    CHECK_INT(n, 2);
    CHECK_INT(used, 7);
    if (n == 2) {
        CHECK_NEAR(sg[0].start, 10.0, 1e-9);
        CHECK_NEAR(sg[0].end, 11.0, 1e-9);
        CHECK_STR(sg[0].text, "Bridge");
        CHECK_NEAR(sg[1].start, 11.0, 1e-9);
        CHECK_NEAR(sg[1].end, 12.0, 1e-9);
        CHECK_STR(sg[1].text, "Bridge Bridge");
        /* A segment's tokens run from its opening timestamp to its closing one. */
        CHECK_INT(sg[1].n_tokens, 4);
        if (sg[1].n_tokens == 4) CHECK(sg[1].tokens[0] >= TS && sg[1].tokens[1] < TS && sg[1].tokens[3] >= TS);
    }
    whisper_segments_free(sg, n);
    /* ending on a single timestamp: the window is done */
    int32_t b[] = {TS + 0, 18917, TS + 50, TS + 50, 18917, TS + 150};
    adv = whisper_window_segments(m, b, 6, 0, 3000, 100.0, true, &sg, &n, &used);
    CHECK_INT(adv, 3000);
    CHECK_INT(n, 2);
    if (n == 2) CHECK_NEAR(sg[1].end, 3.0, 1e-9);
    whisper_segments_free(sg, n);
    /* no pair: one segment to the last timestamp; clamped to the audio */
    int32_t c[] = {TS + 10, 18917, 18917, TS + 400};
    adv = whisper_window_segments(m, c, 4, 0, 500, 5.0, true, &sg, &n, &used);
    CHECK_INT(adv, 500);
    CHECK_INT(n, 1);
    if (n == 1) {
        CHECK_NEAR(sg[0].start, 0.2, 1e-9);
        CHECK_NEAR(sg[0].end, 5.0, 1e-9);
    }
    whisper_segments_free(sg, n);
    /* no timestamps: the whole window; nothing said: no segment */
    int32_t d[] = {18917};
    adv = whisper_window_segments(m, d, 1, 3000, 2000, 50.0, false, &sg, &n, &used);
    CHECK(adv == 2000 && n == 1);
    if (n == 1) CHECK(fabs(sg[0].start - 30.0) < 1e-9 && fabs(sg[0].end - 50.0) < 1e-9);
    whisper_segments_free(sg, n);
    adv = whisper_window_segments(m, d, 0, 0, 2000, 50.0, false, &sg, &n, &used);
    CHECK(adv == 2000 && n == 0);
    smp_free(sg);
    whisper_free(m);
}
