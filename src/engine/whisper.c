/* whisper.c - placeholder until the engine lands: every entry point reports
 * that Whisper is not built yet. Replaced by the real engine. */
#include "engine/whisper.h"

#include <stdio.h>
#include <string.h>

#include "core/errors.h"

void whisper_params_default(whisper_params *p) {
    memset(p, 0, sizeof *p);
    p->timestamps = true;
}
int whisper_transcribe(whisper_model *m, const float *pcm, size_t n_samples, const whisper_params *p,
                       whisper_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    snprintf(err, errlen, "the Whisper engine is not built yet");
    return -SMP_E_NOT_IMPLEMENTED;
}
void whisper_result_free(whisper_result *r) { (void)r; }
int whisper_lang_id(const char *code) { return -1; }
const char *whisper_lang_code(int id) { return NULL; }
