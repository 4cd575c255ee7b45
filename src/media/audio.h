/* audio.h - any common audio container (wav, mp3, m4a/aac, flac, ogg/opus,
 * webm, ...) from memory to 16 kHz mono float PCM, with FFmpeg's libraries
 * (libavformat reads from the buffer through a custom I/O context: no
 * temporary files), libswresample converts and resamples. */
#ifndef SMP_AUDIO_H
#define SMP_AUDIO_H

#include <stddef.h>

#define AUDIO_RATE 16000

/* A decoder that hands out the samples a piece at a time, so a caller holds
 * what it works on, not the whole audio (3 h are 691 MB of float). */
typedef struct audio_stream audio_stream;

/* Reads the container (probe, best audio stream, its shape) and opens the
 * decoder; data (len bytes, not copied) must outlive the stream. max_seconds
 * (0: none): a container that declares a longer duration is refused here
 * (-SMP_E_TOO_LARGE, err names the limit), and audio_stream_read refuses the
 * samples past it. Returns 0 with *out (audio_stream_close it);
 * -SMP_E_BAD_REQUEST (empty input); -SMP_E_FORMAT (not audio, no audio
 * stream, unsupported shape: err says which); -SMP_E_NOMEM. */
int audio_stream_open(const void *data, size_t len, double max_seconds, audio_stream **out, char *err,
                      size_t errlen);
/* Up to cap samples (16 kHz mono float in [-1, 1]) into dst; *got = 0 at the
 * end. Returns 0; -SMP_E_TOO_LARGE past max_seconds; -SMP_E_FORMAT (nothing
 * decodable at all, or a stream that changes to an unsupported shape);
 * -SMP_E_NOMEM; err says which. Memory held: one decoded frame and
 * FFmpeg's contexts, whatever the length of the audio. */
int audio_stream_read(audio_stream *s, float *dst, size_t cap, size_t *got, char *err, size_t errlen);
/* Back to the first sample: the same samples come again. Errors as open. */
int audio_stream_rewind(audio_stream *s, char *err, size_t errlen);
/* The duration the container declares, seconds; -1 when it does not say. */
double audio_stream_declared_seconds(const audio_stream *s);
void audio_stream_close(audio_stream *s); /* NULL ok */

/* The whole audio at once (the CLI, tests): audio_stream_open + read to the
 * end. Returns 0 with *pcm (owned, smp_free) and *n samples, or the errors
 * of open and read. */
int audio_decode(const void *data, size_t len, double max_seconds, float **pcm, size_t *n, char *err,
                 size_t errlen);

/* The container the bytes look like (magic bytes; else mime, e.g. a data:
 * URL's type, when it names one), for servers that go by the file name:
 * "wav", "mp3", "m4a", "flac", "ogg", "webm", or NULL when unknown.
 * *content_type (may be NULL) gets the matching MIME type or NULL. Static
 * strings. */
const char *audio_guess_container(const void *data, size_t len, const char *mime, const char **content_type);

#endif
