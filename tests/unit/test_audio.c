/* test_audio.c - media/audio.h: FFmpeg decoding from memory to 16 kHz mono
 * float, and the answers for empty, random, truncated and over-long input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "media/audio.h"
#include "test.h"

/* Offset of the first sample of a RIFF/WAVE file (after the "data" chunk header). */
static size_t wav_data_offset(const unsigned char *w, size_t len) {
    for (size_t i = 12; i + 8 <= len; i++)
        if (!memcmp(w + i, "data", 4)) return i + 8;
    return 0;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* A 16-bit PCM wav of n samples at rate, mono, with the given sample values. */
static unsigned char *make_wav(int rate, size_t nsamp, int16_t value, size_t *len) {
    size_t data = nsamp * 2;
    unsigned char *w = calloc(1, 44 + data);
    uint32_t v32;
    uint16_t v16;
    memcpy(w, "RIFF", 4);
    v32 = (uint32_t)(36 + data), memcpy(w + 4, &v32, 4);
    memcpy(w + 8, "WAVEfmt ", 8);
    v32 = 16, memcpy(w + 16, &v32, 4);
    v16 = 1, memcpy(w + 20, &v16, 2);       /* PCM */
    v16 = 1, memcpy(w + 22, &v16, 2);       /* channels */
    v32 = (uint32_t)rate, memcpy(w + 24, &v32, 4);
    v32 = (uint32_t)rate * 2, memcpy(w + 28, &v32, 4);
    v16 = 2, memcpy(w + 32, &v16, 2);
    v16 = 16, memcpy(w + 34, &v16, 2);
    memcpy(w + 36, "data", 4);
    v32 = (uint32_t)data, memcpy(w + 40, &v32, 4);
    for (size_t i = 0; i < nsamp; i++) memcpy(w + 44 + 2 * i, &value, 2);
    *len = 44 + data;
    return w;
}

TEST(audio_jfk_wav_matches_pcm) {
    size_t len;
    unsigned char *wav = read_all("../shared/audio/jfk.wav", &len);
    REQUIRE(wav);
    float *pcm;
    size_t n;
    char err[256];
    REQUIRE(audio_decode(wav, len, 3600, &pcm, &n, err, sizeof err) == 0);
    CHECK(n >= 175990 && n <= 176010);
    /* The file is 16 kHz mono PCM16: samples are the int16 values / 32768,
     * unchanged by the (identity) conversion. */
    size_t off = wav_data_offset(wav, len), cnt = (len - off) / 2, bad = 0;
    CHECK_INT(cnt, 176000);
    for (size_t i = 0; i < cnt && i < n; i++) {
        int16_t s;
        memcpy(&s, wav + off + 2 * i, 2);
        if (fabsf(pcm[i] - s / 32768.0f) > 1e-6f) bad++;
    }
    CHECK_INT(bad, 0);
    smp_free(pcm);
    free(wav);
}

TEST(audio_resamples_to_16k) {
    size_t len;
    unsigned char *w = make_wav(44100, 44100, 8192, &len); /* 1 s of a constant 0.25 */
    float *pcm;
    size_t n;
    char err[256];
    REQUIRE(audio_decode(w, len, 60, &pcm, &n, err, sizeof err) == 0);
    CHECK(n >= 15900 && n <= 16100);
    CHECK_NEAR(pcm[n / 2], 0.25, 1e-3);
    smp_free(pcm);
    free(w);
}

TEST(audio_empty_and_garbage) {
    float *pcm = (float *)1;
    size_t n = 1;
    char err[256];
    CHECK_INT(audio_decode("", 0, 60, &pcm, &n, err, sizeof err), -SMP_E_BAD_REQUEST);
    CHECK(pcm == NULL && n == 0);
    CHECK(strstr(err, "empty") != NULL);

    unsigned char rnd[8192];
    uint32_t x = 12345;
    for (int t = 0; t < 8; t++) {
        for (size_t i = 0; i < sizeof rnd; i++) {
            x = x * 1103515245u + 12345u + (uint32_t)t;
            rnd[i] = (unsigned char)(x >> 24);
        }
        int rc = audio_decode(rnd, sizeof rnd, 60, &pcm, &n, err, sizeof err);
        CHECK_INT(rc, -SMP_E_FORMAT);
        if (rc == 0) smp_free(pcm);
    }
    const char *text = "RIFF? no. This is a plain text file that someone named speech.wav.\n";
    CHECK_INT(audio_decode(text, strlen(text), 60, &pcm, &n, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "not") != NULL);
}

TEST(audio_truncated) {
    size_t len;
    unsigned char *wav = read_all("../shared/audio/jfk.wav", &len);
    REQUIRE(wav);
    float *pcm;
    size_t n;
    char err[256];
    size_t off = wav_data_offset(wav, len);
    REQUIRE(off > 0);
    /* Cut inside the header: nothing to decode. */
    CHECK_INT(audio_decode(wav, 30, 60, &pcm, &n, err, sizeof err), -SMP_E_FORMAT);
    /* Header only, no samples. */
    CHECK_INT(audio_decode(wav, off, 60, &pcm, &n, err, sizeof err), -SMP_E_FORMAT);
    /* Cut in the middle: what is there decodes. */
    REQUIRE(audio_decode(wav, off + 2 * 16000, 60, &pcm, &n, err, sizeof err) == 0);
    CHECK(n >= 15990 && n <= 16010);
    smp_free(pcm);
    free(wav);
}

TEST(audio_over_limit) {
    size_t len;
    unsigned char *wav = read_all("../shared/audio/jfk.wav", &len);
    REQUIRE(wav);
    float *pcm;
    size_t n;
    char err[256];
    CHECK_INT(audio_decode(wav, len, 5, &pcm, &n, err, sizeof err), -SMP_E_TOO_LARGE);
    CHECK(strstr(err, "5 seconds") != NULL);
    /* A header that lies about its length (claims ~0 data, unknown duration)
     * still stops at the limit while counting samples. */
    uint32_t big = 0xFFFFFFFFu;
    memcpy(wav + wav_data_offset(wav, len) - 4, &big, 4);
    memcpy(wav + 4, &big, 4);
    CHECK_INT(audio_decode(wav, len, 5, &pcm, &n, err, sizeof err), -SMP_E_TOO_LARGE);
    free(wav);
}

TEST(audio_absurd_shapes) {
    /* A sample rate of ~1 GHz (the resampler would allocate GBs) or 1 Hz
     * (16000-fold expansion) is refused, not decoded. */
    size_t len;
    float *pcm;
    size_t n;
    char err[256];
    unsigned char *w = make_wav(989863744, 2000, 100, &len);
    CHECK_INT(audio_decode(w, len, 60, &pcm, &n, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "unsupported") != NULL);
    free(w);
    w = make_wav(1, 2000, 100, &len);
    CHECK_INT(audio_decode(w, len, 60, &pcm, &n, err, sizeof err), -SMP_E_FORMAT);
    free(w);
    /* NaN and huge values in a float wav come out as 0 and clamped to [-1, 1]. */
    float vals[4] = {NAN, 5.0f, -INFINITY, 0.5f};
    w = make_wav(16000, 8, 0, &len); /* 16 bytes of data: reuse as 4 floats */
    uint16_t fmt = 3, bits = 32, align = 4;
    uint32_t rate = 16000, brate = 64000;
    memcpy(w + 20, &fmt, 2);
    memcpy(w + 24, &rate, 4);
    memcpy(w + 28, &brate, 4);
    memcpy(w + 32, &align, 2);
    memcpy(w + 34, &bits, 2);
    memcpy(w + 44, vals, sizeof vals);
    REQUIRE(audio_decode(w, len, 60, &pcm, &n, err, sizeof err) == 0);
    REQUIRE(n == 4);
    CHECK(pcm[0] == 0.0f && pcm[1] == 1.0f && pcm[2] == 0.0f && pcm[3] == 0.5f);
    smp_free(pcm);
    free(w);
}

TEST(audio_result_is_shrunk_to_its_samples) {
    /* 10 s decoded: the returned array holds exactly n samples (the growth
     * by doubling, 4 -> 8 -> 16 s, is given back), with and without a
     * container length to reserve from. */
    size_t len;
    unsigned char *w = make_wav(16000, 160000, 100, &len);
    float *pcm;
    size_t n;
    char err[256];
    for (int lie = 0; lie < 2; lie++) {
        if (lie) { /* claims no length: grown by doubling */
            uint32_t big = 0xFFFFFFFFu;
            memcpy(w + 40, &big, 4);
            memcpy(w + 4, &big, 4);
        }
        size_t before = smp_alloc_live_bytes();
        REQUIRE(audio_decode(w, len, 60, &pcm, &n, err, sizeof err) == 0);
        CHECK_INT(n, 160000);
        CHECK_INT(smp_alloc_live_bytes() - before, n * sizeof(float));
        smp_free(pcm);
    }
    free(w);
}

TEST(audio_guess_container_from_magic_and_mime) {
    static const struct {
        const char *bytes;
        size_t len;
        const char *ext, *type;
    } cases[] = {
        {"RIFF\x24\0\0\0WAVEfmt ", 16, "wav", "audio/wav"},
        {"ID3\x04\0\0\0\0\0\0", 10, "mp3", "audio/mpeg"},
        {"\xFF\xFB\x90\x64", 4, "mp3", "audio/mpeg"},
        {"\0\0\0\x20" "ftypM4A \0\0\0\0", 16, "m4a", "audio/mp4"},
        {"fLaC\0\0\0\x22", 8, "flac", "audio/flac"},
        {"OggS\0\x02\0\0", 8, "ogg", "audio/ogg"},
        {"\x1A\x45\xDF\xA3\x9F", 5, "webm", "audio/webm"},
    };
    const char *type;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *ext = audio_guess_container(cases[i].bytes, cases[i].len, "audio/ogg", &type);
        CHECK_STR(ext ? ext : "(null)", cases[i].ext); /* the bytes win over the given type */
        CHECK_STR(type ? type : "(null)", cases[i].type);
    }
    /* ADTS AAC (not layer III) and unknown bytes: the MIME type decides, else nothing. */
    CHECK(audio_guess_container("\xFF\xF1\x50\x80", 4, NULL, &type) == NULL && type == NULL);
    CHECK_STR(audio_guess_container("????", 4, "audio/x-wav;codecs=1", &type), "wav");
    CHECK_STR(type, "audio/wav");
    CHECK_STR(audio_guess_container("????", 4, "video/webm", NULL), "webm");
    CHECK(audio_guess_container("", 0, "text/plain", &type) == NULL);
}

/* The stream hands out what audio_decode returns, in any piece size, and
 * again after a rewind. */
TEST(audio_stream_pieces_equal_decode) {
    size_t len;
    unsigned char *wav = read_all("../shared/audio/jfk.wav", &len);
    REQUIRE(wav);
    float *pcm, piece[333];
    size_t n;
    char err[256];
    REQUIRE(audio_decode(wav, len, 60, &pcm, &n, err, sizeof err) == 0);
    audio_stream *s;
    REQUIRE(audio_stream_open(wav, len, 60, &s, err, sizeof err) == 0);
    CHECK_NEAR(audio_stream_declared_seconds(s), 11.0, 0.01);
    for (int round = 0; round < 2; round++) {
        size_t at = 0, got, differ = 0;
        int rc;
        while ((rc = audio_stream_read(s, piece, sizeof piece / sizeof *piece, &got, err, sizeof err)) == 0 && got) {
            for (size_t i = 0; i < got; i++) differ += at + i >= n || piece[i] != pcm[at + i];
            at += got;
        }
        CHECK_INT(rc, 0);
        CHECK_INT(at, n);
        CHECK_INT(differ, 0);
        CHECK(audio_stream_rewind(s, err, sizeof err) == 0);
    }
    audio_stream_close(s);
    smp_free(pcm);
    free(wav);
}

/* Ten minutes read through a stream: the heap never holds more than a
 * frame's worth (audio_decode's array would be 38 MB). */
TEST(audio_stream_holds_little) {
    size_t len;
    unsigned char *w = make_wav(16000, (size_t)16000 * 600, 1000, &len);
    REQUIRE(w);
    char err[256];
    size_t base = smp_alloc_live_bytes(), peak = 0, total = 0, got;
    audio_stream *s;
    REQUIRE(audio_stream_open(w, len, 3600, &s, err, sizeof err) == 0);
    float piece[4096];
    while (audio_stream_read(s, piece, 4096, &got, err, sizeof err) == 0 && got) {
        total += got;
        size_t live = smp_alloc_live_bytes() - base;
        if (live > peak) peak = live;
    }
    CHECK_INT(total, (size_t)16000 * 600);
    CHECK(peak < (size_t)1 << 20);
    audio_stream_close(s);
    CHECK_INT(smp_alloc_live_bytes(), base);
    free(w);
}

/* Over the limit: refused at open when the header says so; a header that
 * lies about its length (FFmpeg then goes by the file size, so the refusal
 * may come at open too) stops within the limit while reading. An empty
 * input and a non-audio one are refused at open. */
TEST(audio_stream_limits_and_errors) {
    size_t len;
    unsigned char *w = make_wav(16000, 16000 * 10, 1000, &len);
    REQUIRE(w);
    char err[256];
    audio_stream *s;
    CHECK_INT(audio_stream_open(w, len, 5, &s, err, sizeof err), -SMP_E_TOO_LARGE);
    CHECK(s == NULL && strstr(err, "MAX_AUDIO_SECONDS") != NULL);
    uint32_t big = 0xFFFFFFFFu;
    memcpy(w + 40, &big, 4);
    memcpy(w + 4, &big, 4);
    int rc = audio_stream_open(w, len, 5, &s, err, sizeof err);
    if (rc == 0) {
        float piece[4096];
        size_t got, total = 0;
        while ((rc = audio_stream_read(s, piece, 4096, &got, err, sizeof err)) == 0 && got) total += got;
        CHECK(total <= (size_t)16000 * 5 + 1);
        audio_stream_close(s);
    }
    CHECK_INT(rc, -SMP_E_TOO_LARGE);
    CHECK_INT(audio_stream_open("", 0, 5, &s, err, sizeof err), -SMP_E_BAD_REQUEST);
    CHECK_INT(audio_stream_open("hello, world, this is text", 26, 5, &s, err, sizeof err), -SMP_E_FORMAT);
    audio_stream_close(NULL);
    free(w);
}
