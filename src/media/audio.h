/* audio.h - any common audio container (wav, mp3, m4a/aac, flac, ogg/opus,
 * webm, ...) from memory to 16 kHz mono float PCM, with FFmpeg's libraries
 * (libavformat reads from the buffer through a custom I/O context: no
 * temporary files), libswresample converts and resamples. */
#ifndef SMP_AUDIO_H
#define SMP_AUDIO_H

#include <stddef.h>

#define AUDIO_RATE 16000

/* max_seconds: longer audio is refused (-SMP_E_TOO_LARGE, err names the
 * limit) as soon as the container says so or the decoded samples pass it.
 * Returns 0 with *pcm (owned, smp_free) and *n samples; -SMP_E_FORMAT (not
 * audio, truncated beyond use, no audio stream: err says which);
 * -SMP_E_BAD_REQUEST (empty input); -SMP_E_NOMEM. */
int audio_decode(const void *data, size_t len, double max_seconds, float **pcm, size_t *n, char *err,
                 size_t errlen);

/* The container the bytes look like (magic bytes; else mime, e.g. a data:
 * URL's type, when it names one), for servers that go by the file name:
 * "wav", "mp3", "m4a", "flac", "ogg", "webm", or NULL when unknown.
 * *content_type (may be NULL) gets the matching MIME type or NULL. Static
 * strings. */
const char *audio_guess_container(const void *data, size_t len, const char *mime, const char **content_type);

#endif
