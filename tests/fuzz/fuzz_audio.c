/* fuzz_audio.c - fuzz target for audio intake: media/audio.h's decoder
 * (FFmpeg probing, demuxing, decoding and resampling from memory) on
 * untrusted bytes.
 *
 * Input: the whole buffer is the uploaded file. The limit is 2 s so no input
 * can make a run decode for long. On success the samples must be finite, at
 * most the limit (+ one sample), and in [-1, 1]. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "media/audio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    float *pcm;
    size_t n;
    char err[256];
    int rc = audio_decode(data, size, 2.0, &pcm, &n, err, sizeof err);
    if (rc == 0) {
        if (n == 0 || n > 2 * AUDIO_RATE + 1) abort();
        for (size_t i = 0; i < n; i++)
            if (!isfinite(pcm[i]) || fabsf(pcm[i]) > 1.0f) abort();
        smp_free(pcm);
    } else {
        if (pcm || n) abort();
        if (rc != -SMP_E_FORMAT && rc != -SMP_E_BAD_REQUEST && rc != -SMP_E_TOO_LARGE && rc != -SMP_E_NOMEM) abort();
        if (!err[0]) abort();
    }
    return 0;
}
