/* test_whisper_stream.c - the transcription reads its audio a window at a
 * time (whisper_transcribe_source): a window's mel equals the same frames of
 * the whole-audio mel bit for bit; a source cut into odd pieces transcribes
 * exactly as the array does; an hour of audio is transcribed holding a few
 * MB (what whisper_transcribe_bytes promises), not the 230 MB of its
 * samples; a source's error comes back with its message; the state's size
 * estimate is exact. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/whisper.h"
#include "engine/whisper_int.h"

#define MODEL "../shared/models/whisper/whisper-rand-tiny64-f16.bin"
#define JFK "../shared/audio/jfk.wav"
#define CLIP0880 "../shared/audio/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"

static whisper_model *load(void) {
    whisper_model *m = NULL;
    char err[256];
    return whisper_load(MODEL, &m, err, sizeof err) == 0 ? m : NULL;
}

/* 0880, 32 s of silence, jfk: 46 s, two windows apart. */
static float *two_clips(size_t *n) {
    size_t n1, n2;
    float *jfk = test_read_wav(JFK, &n1), *clip = test_read_wav(CLIP0880, &n2), *pcm = NULL;
    size_t gap = 16000 * 32;
    if (jfk && clip && (pcm = smp_calloc(n2 + gap + n1, sizeof *pcm))) {
        memcpy(pcm, clip, n2 * sizeof *pcm);
        memcpy(pcm + n2 + gap, jfk, n1 * sizeof *pcm);
        *n = n2 + gap + n1;
    }
    smp_free(jfk);
    smp_free(clip);
    return pcm;
}

/* Windows at the start, one frame in (reflection), mid-audio, and ending in
 * the padding, each from a segment holding only the samples it reads: the
 * same floats as the whole mel. */
TEST(whisper_stream_mel_window_equals_whole) {
    whisper_model *m = load();
    REQUIRE(m);
    size_t n;
    float *pcm = two_clips(&n);
    REQUIRE(pcm);
    float *whole;
    int nf;
    REQUIRE(whisper_mel(m, pcm, n, &whole, &nf) == 0);
    /* The raw maximum over every frame, in windows. */
    float *win = smp_malloc((size_t)80 * 3000 * sizeof *win), mx = -INFINITY;
    REQUIRE(win);
    for (long t0 = 0; t0 < nf; t0 += 3000) {
        int count = nf - t0 < 3000 ? (int)(nf - t0) : 3000;
        REQUIRE(whisper_mel_frames(m, pcm, 0, n, n, t0, count, win, count) == 0);
        for (size_t i = 0; i < (size_t)80 * count; i++) mx = win[i] > mx ? win[i] : mx;
    }
    long offsets[] = {0, 1, 2, 1234, 3000, (long)(n / 160) - 5};
    for (size_t k = 0; k < sizeof offsets / sizeof *offsets; k++) {
        long t0 = offsets[k];
        size_t from = t0 * 160 > 200 ? (size_t)t0 * 160 - 200 : 0, to = (size_t)(t0 + 3000) * 160 + 40;
        if (to > n) to = n;
        REQUIRE(whisper_mel_frames(m, pcm + from, from, to - from, n, t0, 3000, win, 3000) == 0);
        whisper_mel_scale(win, (size_t)80 * 3000, mx);
        size_t differ = 0;
        for (int b = 0; b < 80; b++)
            differ += memcmp(win + (size_t)b * 3000, whole + (size_t)b * nf + t0, 3000 * sizeof *win) != 0;
        if (differ) fprintf(stderr, "  window at frame %ld: %zu bands differ\n", t0, differ);
        CHECK_INT(differ, 0);
    }
    smp_free(win);
    smp_free(whole);
    smp_free(pcm);
    whisper_free(m);
}

/* A source over an array that hands out at most `piece` samples a read,
 * fails with -SMP_E_FORMAT on read number fail_at (0: never), and records
 * the largest live heap seen at a read. */
typedef struct {
    const float *pcm;
    size_t n, pos, piece;
    int reads, fail_at, rewinds;
    size_t peak;
    /* generated audio instead of pcm: n samples of silence with a 10 s
     * burst of noise every `burst_every` samples */
    size_t burst_every;
} test_source;

static float sample_of(const test_source *s, size_t i) {
    if (s->pcm) return s->pcm[i];
    size_t k = i % s->burst_every;
    if (k >= 16000 * 10) return 0.0f;
    uint32_t x = (uint32_t)i * 2654435761u;
    x ^= x >> 13;
    x *= 1664525u;
    return ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.4f * sinf((float)k * 0.002f);
}

static int ts_read(void *ud, float *dst, size_t cap, size_t *got, char *err, size_t errlen) {
    test_source *s = ud;
    size_t live = smp_alloc_live_bytes();
    if (live > s->peak) s->peak = live;
    if (++s->reads == s->fail_at) {
        snprintf(err, errlen, "the test source broke at read %d", s->reads);
        return -SMP_E_FORMAT;
    }
    size_t k = s->n - s->pos;
    if (k > cap) k = cap;
    if (k > s->piece) k = s->piece;
    for (size_t i = 0; i < k; i++) dst[i] = sample_of(s, s->pos + i);
    s->pos += k;
    *got = k;
    return 0;
}

static int ts_rewind(void *ud, char *err, size_t errlen) {
    (void)err, (void)errlen;
    test_source *s = ud;
    s->pos = 0;
    s->rewinds++;
    return 0;
}

static void check_same_result(const whisper_result *a, const whisper_result *b) {
    CHECK_STR(a->text, b->text);
    CHECK_STR(a->language, b->language);
    CHECK(a->duration == b->duration);
    CHECK_INT(a->n_segments, b->n_segments);
    for (int i = 0; i < a->n_segments && i < b->n_segments; i++) {
        const whisper_segment *x = &a->segments[i], *y = &b->segments[i];
        CHECK(x->start == y->start && x->end == y->end && x->seek == y->seek);
        CHECK(x->avg_logprob == y->avg_logprob && x->no_speech_prob == y->no_speech_prob);
        CHECK(x->n_tokens == y->n_tokens && !memcmp(x->tokens, y->tokens, (size_t)x->n_tokens * sizeof *x->tokens));
    }
}

TEST(whisper_stream_pieces_equal_array) {
    whisper_model *m = load();
    REQUIRE(m);
    size_t n;
    float *pcm = two_clips(&n);
    REQUIRE(pcm);
    char err[256];
    whisper_params p;
    whisper_params_default(&p);
    p.max_tokens = 12;
    whisper_result whole, pieces;
    REQUIRE(whisper_transcribe(m, pcm, n, &p, &whole, err, sizeof err) == 0);
    CHECK(whole.n_segments >= 2);
    test_source s = {.pcm = pcm, .n = n, .piece = 777};
    whisper_source src = {ts_read, ts_rewind, &s};
    REQUIRE(whisper_transcribe_source(m, &src, &p, &pieces, err, sizeof err) == 0);
    CHECK_INT(s.rewinds, 2); /* count and gate, mel maximum, windows */
    check_same_result(&whole, &pieces);
    whisper_result_free(&whole);
    whisper_result_free(&pieces);
    smp_free(pcm);
    whisper_free(m);
}

/* An hour with a burst of sound every 20 minutes: three windows are
 * decoded, and the live heap stays within the estimate, far below the
 * 230 MB the samples alone would take. */
TEST(whisper_stream_hour_in_bounded_memory) {
    whisper_model *m = load();
    REQUIRE(m);
    char err[256];
    whisper_params p;
    whisper_params_default(&p);
    p.language = "en";
    p.max_tokens = 4;
    whisper_result r;
    size_t base = smp_alloc_live_bytes();
    test_source s = {.n = (size_t)16000 * 3600, .piece = 4096, .burst_every = (size_t)16000 * 1200};
    whisper_source src = {ts_read, ts_rewind, &s};
    REQUIRE(whisper_transcribe_source(m, &src, &p, &r, err, sizeof err) == 0);
    CHECK_NEAR(r.duration, 3600.0, 1e-9);
    CHECK(r.n_segments >= 3);
    for (int i = 0; i < r.n_segments; i++) { /* near a burst */
        double k = floor(r.segments[i].start / 1200.0 + 0.5);
        CHECK(fabs(r.segments[i].start - k * 1200.0) < 30.0);
    }
    size_t used = s.peak - base, promised = whisper_transcribe_bytes(m, 3600);
    fprintf(stderr, "  1 h of audio: %.1f MB live at most, %.1f MB estimated\n", used / 1048576.0,
            promised / 1048576.0);
    CHECK(used <= promised);
    CHECK(used < (size_t)40 << 20);
    whisper_result_free(&r);
    CHECK_INT(smp_alloc_live_bytes(), base);
    whisper_free(m);
}

/* The source's error, with its message, in each pass; nothing leaks. */
TEST(whisper_stream_source_error_comes_back) {
    whisper_model *m = load();
    REQUIRE(m);
    size_t n;
    float *pcm = two_clips(&n);
    REQUIRE(pcm);
    whisper_params p;
    whisper_params_default(&p);
    p.max_tokens = 4;
    size_t base = smp_alloc_live_bytes();
    int reads_per_pass = (int)((n + 9999) / 10000) + 1;
    for (int pass = 0; pass < 3; pass++) {
        char err[256] = "";
        whisper_result r;
        test_source s = {.pcm = pcm, .n = n, .piece = 10000, .fail_at = pass * reads_per_pass + 2};
        whisper_source src = {ts_read, ts_rewind, &s};
        CHECK_INT(whisper_transcribe_source(m, &src, &p, &r, err, sizeof err), -SMP_E_FORMAT);
        CHECK(strstr(err, "test source broke") != NULL);
        CHECK(r.text == NULL && r.segments == NULL);
        CHECK_INT(s.rewinds, pass);
        whisper_result_free(&r);
        CHECK_INT(smp_alloc_live_bytes(), base);
    }
    smp_free(pcm);
    whisper_free(m);
}

TEST(whisper_stream_state_bytes_exact) {
    whisper_model *m = load();
    REQUIRE(m);
    size_t base = smp_alloc_live_bytes();
    whisper_state *s = whisper_state_new(m);
    REQUIRE(s);
    CHECK_INT(smp_alloc_live_bytes() - base, whisper_state_bytes(m));
    whisper_state_free(s);
    whisper_free(m);
}
