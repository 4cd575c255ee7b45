/* embedded.c - see embedded.h. The bytes come from build/embedded_model.S
 * (an .incbin of ../shared/models/stories260K.gguf) when the Makefile found
 * the file; otherwise there is no built-in model. */
#include "engine/embedded.h"

#ifdef SMP_HAVE_EMBEDDED_MODEL
extern const unsigned char smp_embedded_start[], smp_embedded_end[];

const unsigned char *embedded_model(size_t *len) {
    *len = (size_t)(smp_embedded_end - smp_embedded_start);
    return smp_embedded_start;
}
const char *embedded_model_name(void) { return "stories260K"; }
#else
const unsigned char *embedded_model(size_t *len) {
    *len = 0;
    return NULL;
}
const char *embedded_model_name(void) { return NULL; }
#endif
