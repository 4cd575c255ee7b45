/* whisper_mel.c - Whisper's log-mel spectrogram, computed in float64.
 *
 * Signal: 200 reflected samples in front (x[200], ..., x[1]), the audio, then
 * zeros (30 s + 400 samples). Frame t covers padded samples [160 t, 160 t + 400)
 * times the periodic Hann window w[n] = 0.5 - 0.5 cos(2 pi n / 400); a 400-point
 * FFT gives 201 bins; power = re^2 + im^2; mel = filters (n_mels x 201, from
 * the model file) x power; log10(max(mel, 1e-10)); then over all frames the
 * floor (max - 8) and (x + 4) / 4. n_frames = (n_samples + 480000) / 160, as
 * whisper.cpp makes them, so every 3000-frame window starting inside the
 * audio is complete. For audio under 30 s, frames 0..2999 equal the reference
 * definition (zero-pad to 30 s, reflect both ends, drop the last frame).
 *
 * The FFT: the 400 real samples as a 200-point complex FFT (mixed radix 4,
 * 2, 5, 5, decimation in time over a 400-entry twiddle table) plus the
 * real-input split. Frames are split
 * across the model's thread pool in chunks. Output: mel[band * n_frames + t].
 *
 * The transcription does not hold the whole mel: it computes the raw values
 * (log10, before the floor) of any run of frames from the samples they read
 * (whisper_mel_frames), takes the maximum over the whole audio a window at a
 * time, then computes each window it encodes again and scales it with that
 * maximum (whisper_mel_scale). Every frame goes through the same arithmetic
 * whichever way it is cut, so a window equals the same frames of the whole
 * mel bit for bit. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/threadpool.h"
#include "engine/whisper_int.h"
#include "engine/whisper_weights.h"

#define MEL_N_FFT 400
#define MEL_HOP 160
#define MEL_BINS (MEL_N_FFT / 2 + 1)
#define MEL_PAD_SAMPLES (30 * WHISPER_SAMPLE_RATE)
#define MEL_CHUNK 64 /* frames per pool task */

typedef struct {
    const float *seg;     /* samples [base, base + seg_len) of the audio */
    size_t base, seg_len;
    size_t n;             /* samples in the whole audio (0 past it) */
    long t0;              /* first frame computed */
    int count, stride;    /* frames computed; out row length */
    int n_mels;
    const float *filters;
    int *lo, *hi; /* non-zero bin range of each band */
    double cs[MEL_N_FFT], sn[MEL_N_FFT], win[MEL_N_FFT];
    float *mel;           /* mel[band * stride + t - t0] */
} mel_job;

/* out[k] = sum_j x[j * stride] e^(-2 pi i j k / n), n a divisor of 400, x
 * complex (xr, xi). Sub-transforms land in out + j*m and are combined in
 * place: X[k + q m] = sum_j W_n^(j k) W_p^(j q) S_j[k], radix 4 with its
 * multiplication-free butterfly, other radices (5 here) as a small DFT. */
static void fft(const double *xr, const double *xi, int stride, int n, double *or_, double *oi, const mel_job *J) {
    if (n == 1) {
        or_[0] = xr[0];
        oi[0] = xi[0];
        return;
    }
    int p = n % 4 == 0 ? 4 : n % 2 == 0 ? 2 : n % 5 == 0 ? 5 : n;
    int m = n / p, tw = MEL_N_FFT / n, tp = MEL_N_FFT / p;
    for (int j = 0; j < p; j++) fft(xr + j * stride, xi + j * stride, stride * p, m, or_ + j * m, oi + j * m, J);
    double ar[5], ai[5];
    for (int k = 0; k < m; k++) {
        for (int j = 0; j < p; j++) {
            double r = or_[j * m + k], i = oi[j * m + k];
            int e = j * k * tw; /* < p m tw = 400 */
            double c = J->cs[e], s = J->sn[e]; /* W = c - i s */
            ar[j] = r * c + i * s;
            ai[j] = i * c - r * s;
        }
        if (p == 4) {
            double s0r = ar[0] + ar[2], s0i = ai[0] + ai[2], d0r = ar[0] - ar[2], d0i = ai[0] - ai[2];
            double s1r = ar[1] + ar[3], s1i = ai[1] + ai[3], d1r = ar[1] - ar[3], d1i = ai[1] - ai[3];
            or_[k] = s0r + s1r, oi[k] = s0i + s1i;
            or_[k + m] = d0r + d1i, oi[k + m] = d0i - d1r;         /* d0 - i d1 */
            or_[k + 2 * m] = s0r - s1r, oi[k + 2 * m] = s0i - s1i;
            or_[k + 3 * m] = d0r - d1i, oi[k + 3 * m] = d0i + d1r; /* d0 + i d1 */
            continue;
        }
        for (int q = 0; q < p; q++) {
            double sr = 0, si = 0;
            for (int j = 0; j < p; j++) {
                int e = (j * q % p) * tp;
                double c = J->cs[e], s = J->sn[e];
                sr += ar[j] * c + ai[j] * s;
                si += ai[j] * c - ar[j] * s;
            }
            or_[k + q * m] = sr;
            oi[k + q * m] = si;
        }
    }
}

/* Power spectrum of one real 400-sample frame: a 200-point complex FFT of
 * z[n] = x[2n] + i x[2n+1], then X[k] = E[k] + W_400^k O[k] with
 * E = (Z[k] + conj Z[200-k]) / 2 and O = (Z[k] - conj Z[200-k]) / 2i. */
static void power_spectrum(const double *x, double *pw, const mel_job *J) {
    enum { H = MEL_N_FFT / 2 };
    double zr[H], zi[H];
    fft(x, x + 1, 2, H, zr, zi, J);
    for (int k = 0; k <= H; k++) {
        int a = k % H, b = (H - k) % H;
        double er = 0.5 * (zr[a] + zr[b]), ei = 0.5 * (zi[a] - zi[b]);
        double dr = zr[a] - zr[b], di = zi[a] + zi[b]; /* Z[a] - conj Z[b] */
        double or_ = 0.5 * di, oi = -0.5 * dr;       /* divided by 2i */
        double c = J->cs[k], s = J->sn[k];
        double xr = er + or_ * c + oi * s, xi = ei + oi * c - or_ * s;
        pw[k] = xr * xr + xi * xi;
    }
}

/* Padded sample i (0 = first of the 200 reflected ones). A sample inside the
 * audio but outside seg (a caller's mistake) reads as 0, never out of
 * bounds. */
static double sample_at(const mel_job *J, long i) {
    long s = i - MEL_N_FFT / 2;
    if (s < 0) s = -s;
    if ((size_t)s >= J->n || (size_t)s < J->base || (size_t)s - J->base >= J->seg_len) return 0.0;
    return J->seg[(size_t)s - J->base];
}

static void mel_task(void *arg, int task, int thread) {
    (void)thread;
    mel_job *J = arg;
    double x[MEL_N_FFT], pw[MEL_BINS];
    int r0 = task * MEL_CHUNK, r1 = r0 + MEL_CHUNK < J->count ? r0 + MEL_CHUNK : J->count;
    for (int r = r0; r < r1; r++) {
        long base = (J->t0 + r) * MEL_HOP;
        for (int i = 0; i < MEL_N_FFT; i++) x[i] = sample_at(J, base + i) * J->win[i];
        power_spectrum(x, pw, J);
        for (int b = 0; b < J->n_mels; b++) {
            const float *f = J->filters + (size_t)b * MEL_BINS;
            double s = 0;
            for (int k = J->lo[b]; k < J->hi[b]; k++) s += f[k] * pw[k];
            J->mel[(size_t)b * J->stride + r] = (float)log10(s > 1e-10 ? s : 1e-10);
        }
    }
}

/* Raw log-mel of frames [t0, t0 + count) into out (row stride `stride`). */
static int mel_frames(const float *filters, int n_mels, struct tp_pool *pool, const float *seg, size_t base,
                      size_t seg_len, size_t n_total, long t0, int count, float *out, int stride) {
    mel_job *J = smp_calloc(1, sizeof *J);
    int *lo = smp_malloc((size_t)n_mels * 2 * sizeof(int));
    if (!J || !lo) {
        smp_free(J);
        smp_free(lo);
        return -SMP_E_NOMEM;
    }
    *J = (mel_job){.seg = seg, .base = base, .seg_len = seg_len, .n = n_total, .t0 = t0, .count = count,
                   .stride = stride, .n_mels = n_mels, .filters = filters, .lo = lo, .hi = lo + n_mels, .mel = out};
    for (int i = 0; i < MEL_N_FFT; i++) {
        double a = 2.0 * M_PI * i / MEL_N_FFT;
        J->cs[i] = cos(a);
        J->sn[i] = sin(a);
        J->win[i] = 0.5 - 0.5 * cos(a);
    }
    for (int b = 0; b < n_mels; b++) {
        const float *f = filters + (size_t)b * MEL_BINS;
        int l = 0, h = MEL_BINS;
        while (l < h && f[l] == 0.0f) l++;
        while (h > l && f[h - 1] == 0.0f) h--;
        J->lo[b] = l;
        J->hi[b] = h;
    }
    tp_run(pool, mel_task, J, (count + MEL_CHUNK - 1) / MEL_CHUNK);
    smp_free(lo);
    smp_free(J);
    return 0;
}

int whisper_mel_frames(const whisper_model *m, const float *seg, size_t base, size_t seg_len, size_t n_total, long t0,
                       int count, float *out, int stride) {
    const whisper_weights *w = m->weights;
    return mel_frames(m->mel_filters, m->hp.n_mels, w->pool, seg, base, seg_len, n_total, t0, count, out, stride);
}

void whisper_mel_scale(float *x, size_t n, float mx) {
    float floor_ = mx - 8.0f;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] > floor_ ? x[i] : floor_;
        x[i] = (v + 4.0f) / 4.0f;
    }
}

int whisper_mel_ex(const float *filters, int n_mels, struct tp_pool *pool, const float *pcm, size_t n_samples,
                   float **mel, int *n_frames) {
    *mel = NULL;
    *n_frames = 0;
    if (n_samples > (size_t)INT32_MAX * MEL_HOP / 2) return -SMP_E_VALIDATION;
    int nf = (int)((n_samples + MEL_PAD_SAMPLES) / MEL_HOP);
    size_t total = (size_t)n_mels * nf;
    float *out = smp_malloc(total * sizeof(float));
    if (!out) return -SMP_E_NOMEM;
    if (mel_frames(filters, n_mels, pool, pcm, 0, n_samples, n_samples, 0, nf, out, nf)) {
        smp_free(out);
        return -SMP_E_NOMEM;
    }
    float mx = -INFINITY;
    for (size_t i = 0; i < total; i++)
        if (out[i] > mx) mx = out[i];
    whisper_mel_scale(out, total, mx);
    *mel = out;
    *n_frames = nf;
    return 0;
}

int whisper_mel(const whisper_model *m, const float *pcm, size_t n_samples, float **mel, int *n_frames) {
    const whisper_weights *w = m->weights;
    return whisper_mel_ex(m->mel_filters, m->hp.n_mels, w->pool, pcm, n_samples, mel, n_frames);
}

/* Slaney mel scale (librosa's default): linear below 1 kHz (200/3 Hz per
 * mel), logarithmic above (27 mels per factor 6.4). */
static double hz_to_mel(double f) {
    const double fsp = 200.0 / 3, min_log_mel = 1000.0 / fsp, logstep = log(6.4) / 27.0;
    return f < 1000.0 ? f / fsp : min_log_mel + log(f / 1000.0) / logstep;
}

static double mel_to_hz(double m) {
    const double fsp = 200.0 / 3, min_log_mel = 1000.0 / fsp, logstep = log(6.4) / 27.0;
    return m < min_log_mel ? fsp * m : 1000.0 * exp(logstep * (m - min_log_mel));
}

/* librosa.filters.mel(sr=16000, n_fft=400, n_mels) with Slaney norm: n_mels + 2
 * points evenly spaced in mel from 0 to 8 kHz, triangles between neighbours,
 * each scaled by 2 / (its width in Hz). */
void whisper_mel_filters_std(int n_mels, float *out) {
    double pts[WHISPER_N_MEL_MAX + 2], top = hz_to_mel(WHISPER_SAMPLE_RATE / 2.0);
    for (int i = 0; i < n_mels + 2; i++) pts[i] = mel_to_hz(top * i / (n_mels + 1));
    for (int b = 0; b < n_mels; b++) {
        double enorm = 2.0 / (pts[b + 2] - pts[b]);
        for (int k = 0; k < MEL_BINS; k++) {
            double f = (double)k * WHISPER_SAMPLE_RATE / MEL_N_FFT;
            double lo = (f - pts[b]) / (pts[b + 1] - pts[b]), hi = (pts[b + 2] - f) / (pts[b + 2] - pts[b + 1]);
            double v = lo < hi ? lo : hi;
            out[(size_t)b * MEL_BINS + k] = (float)(v > 0 ? v * enorm : 0.0);
        }
    }
}
