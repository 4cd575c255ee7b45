/* embedded.h - a GGUF model built into the binary (stories260K), so a server
 * with no model files still answers. Absent when the build could not find it. */
#ifndef SMP_EMBEDDED_H
#define SMP_EMBEDDED_H

#include <stddef.h>

/* The file's bytes (64-byte aligned, read-only) or NULL; *len its size. */
const unsigned char *embedded_model(size_t *len);
const char *embedded_model_name(void);

#endif
