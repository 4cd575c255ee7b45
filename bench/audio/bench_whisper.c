/* bench_whisper.c - Whisper speed on one model and one clip, 2 threads by
 * default: the whole transcription (whisper_transcribe, default settings)
 * as a real-time factor (audio seconds per wall second) with the result's
 * own mel / encoder / decoder times; then one window timed in pieces:
 * the encoder alone; greedy decoding of 200 tokens (a step = decoder +
 * token selection); the decoder alone over the same positions. Random-weight
 * models never emit eot, so a window always decodes its maximum and the
 * per-token times are the fair figures.
 *
 *   bench_whisper MODEL CLIP.wav [THREADS] [RUNS]
 * CLIP: 16 kHz mono PCM16 WAV. Output: one "key value" line per figure;
 * with BENCH_DEBUG set, the decoding loop's per-window log on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/util.h"
#include "engine/whisper.h"
#include "engine/whisper_int.h"

#define DECODE_TOKENS 200

static float *read_wav(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char h[12], c[8];
    float *pcm = NULL;
    if (fread(h, 1, 12, f) != 12 || memcmp(h, "RIFF", 4) || memcmp(h + 8, "WAVE", 4)) goto done;
    while (fread(c, 1, 8, f) == 8) {
        unsigned sz = c[4] | c[5] << 8 | c[6] << 16 | (unsigned)c[7] << 24;
        if (memcmp(c, "data", 4)) {
            fseek(f, sz + (sz & 1), SEEK_CUR);
            continue;
        }
        *n = sz / 2;
        short *s = smp_malloc(sz + 2);
        pcm = smp_malloc(*n * sizeof *pcm + 4);
        if (s && pcm && fread(s, 2, *n, f) == *n)
            for (size_t i = 0; i < *n; i++) pcm[i] = (float)s[i] / 32768.0f;
        smp_free(s);
        break;
    }
done:
    fclose(f);
    return pcm;
}

static double ms_since(uint64_t t0) { return (double)(util_now_ns() - t0) / 1e6; }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL CLIP.wav [THREADS] [RUNS]\n", argv[0]);
        return 2;
    }
    if (getenv("BENCH_DEBUG")) log_set_level(LOG_DEBUG); /* one line per window on stderr */
    int threads = argc > 3 ? atoi(argv[3]) : 2, runs = argc > 4 ? atoi(argv[4]) : 1;
    char err[256];
    whisper_model *m = NULL;
    whisper_load_opts o = {.n_threads = threads};
    if (whisper_load_ex(argv[1], &o, &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t n = 0;
    float *pcm = read_wav(argv[2], &n);
    if (!pcm) {
        fprintf(stderr, "%s: not a PCM16 WAV file\n", argv[2]);
        return 1;
    }
    double audio = (double)n / WHISPER_SAMPLE_RATE;

    /* Whole transcription, best of RUNS. */
    whisper_params p;
    whisper_params_default(&p);
    p.language = "en";
    double best = 1e30, mel = 0, enc = 0, dec = 0;
    int segs = 0;
    for (int r = 0; r < runs; r++) {
        whisper_result res;
        uint64_t t0 = util_now_ns();
        if (whisper_transcribe(m, pcm, n, &p, &res, err, sizeof err)) {
            fprintf(stderr, "transcribe: %s\n", err);
            return 1;
        }
        double wall = ms_since(t0);
        if (wall < best) best = wall, mel = res.mel_ms, enc = res.encode_ms, dec = res.decode_ms, segs = res.n_segments;
        whisper_result_free(&res);
    }
    printf("model %s\naudio_s %.2f\nwall_ms %.1f\nrtf %.2f\nmel_ms %.1f\nencode_ms %.1f\ndecode_ms %.1f\nsegments %d\n",
           whisper_describe(m), audio, best, audio / (best / 1000.0), mel, enc, dec, segs);

    /* One window in pieces: encoder, then DECODE_TOKENS greedy tokens. */
    float *melbuf = NULL;
    int n_frames = 0;
    whisper_state *st = whisper_state_new(m);
    if (!st || whisper_mel(m, pcm, n, &melbuf, &n_frames)) return 1;
    double enc1 = 1e30, tok1 = 1e30, dec1 = 1e30;
    float *logits = smp_malloc((size_t)whisper_n_vocab(m) * sizeof *logits);
    if (!logits) return 1;
    int32_t prompt[4] = {m->tok.sot, m->tok.lang0, m->tok.transcribe, m->tok.notimestamps}, ids[DECODE_TOKENS];
    int np = m->tok.n_langs > 0 ? 4 : 2;
    if (np == 2) prompt[1] = m->tok.notimestamps;
    for (int r = 0; r < runs; r++) {
        uint64_t t0 = util_now_ns();
        if (whisper_encode(st, melbuf, n_frames, 0)) return 1;
        double e = ms_since(t0);
        int got = 0;
        t0 = util_now_ns();
        if (whisper_greedy_window(m, st, prompt, np, DECODE_TOKENS, ids, NULL, &got) || got < 1) return 1;
        double d = ms_since(t0) / got;
        /* The decoder alone: the same positions, one token a call. */
        t0 = util_now_ns();
        for (int i = 0; i < got; i++)
            if (whisper_decode(st, &ids[i], 1, np + i, logits, false)) return 1;
        double dd = ms_since(t0) / got;
        if (e < enc1) enc1 = e;
        if (d < tok1) tok1 = d;
        if (dd < dec1) dec1 = dd;
    }
    printf("window_encode_ms %.1f\ndecoder_ms_per_token %.3f\nstep_ms_per_token %.3f\n", enc1, dec1, tok1);
    smp_free(logits);
    whisper_state_free(st);
    smp_free(melbuf);
    smp_free(pcm);
    whisper_free(m);
    return 0;
}
