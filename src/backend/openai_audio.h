/* openai_audio.h - forward a transcription or translation to an
 * OpenAI-compatible server (OPENAI_BASE_URL): the audio goes up as
 * multipart/form-data to <base>/audio/transcriptions (or /translations),
 * asking for verbose_json, and the parsed answer comes back.
 *
 * Routing (openai_audio_wanted): MODEL_BACKENDS maps the model to "openai"
 * (e.g. whisper-1=openai), or OPENAI_BASE_URL is set and the name is neither
 * a Whisper size, a Whisper file present locally, nor a ".gguf" file name. */
#ifndef SMP_OPENAI_AUDIO_H
#define SMP_OPENAI_AUDIO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *model;
    const void *audio; /* the bytes as the client sent them */
    size_t len;
    const char *filename;     /* may be NULL: "audio.<ext>" guessed from the bytes */
    const char *content_type; /* may be NULL (a data: URL's type when there was one) */
    const char *language;     /* NULL or "": not sent */
    const char *prompt;       /* NULL or "": not sent */
    double temperature;       /* < 0: not sent */
    bool translate;
    bool (*cancelled)(void *ud); /* polled during the transfer; may be NULL */
    void *cancel_ud;
} openai_audio_req;

/* True when requests for this model go to the OpenAI-compatible server. */
bool openai_audio_wanted(const char *model);

/* Returns 0 with *out (a JSON object holding at least "text"; the caller
 * owns it); 1 (positive) when cancelled; -SMP_E_UNAVAILABLE (not configured,
 * unreachable, timed out: 503); -SMP_E_BACKEND (the server answered an error
 * or something that is not a transcription: 502); -SMP_E_NOMEM. err names
 * the upstream. */
int openai_audio_transcribe(const openai_audio_req *q, json_t **out, char *err, size_t errlen);

#endif
