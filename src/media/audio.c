/* audio.c - placeholder until FFmpeg decoding lands. */
#include "media/audio.h"

#include <stdio.h>

#include "core/errors.h"

int audio_decode(const void *data, size_t len, double max_seconds, float **pcm, size_t *n, char *err,
                 size_t errlen) {
    *pcm = NULL;
    *n = 0;
    snprintf(err, errlen, "audio decoding is not built yet");
    return -SMP_E_NOT_IMPLEMENTED;
}
