/* whisper_model.c - placeholder until the loader lands. */
#include "engine/whisper.h"

#include <stdio.h>

#include "core/errors.h"

int whisper_load(const char *path, whisper_model **out, char *err, size_t errlen) {
    *out = NULL;
    snprintf(err, errlen, "%s: the Whisper engine is not built yet", path);
    return -SMP_E_NOT_IMPLEMENTED;
}
void whisper_free(whisper_model *m) { (void)m; }
const char *whisper_describe(const whisper_model *m) { return "none"; }
bool whisper_is_multilingual(const whisper_model *m) { return false; }
int whisper_n_mels(const whisper_model *m) { return 80; }
int whisper_n_vocab(const whisper_model *m) { return 0; }
