/* local.h - the in-process engine as a backend.
 *
 * Models are found in three places, in this order of precedence:
 *   1. MODELS_DIR/<name>.gguf (named by file name; general.name also matches)
 *   2. an Ollama model store (OLLAMA_MODELS, or ~/.ollama/models): the
 *      manifest of "name:tag" names the GGUF blob, served in place
 *   3. the model built into the binary (stories260K), when there is one
 * Models load on first use (mmapped, shared), at most MAX_LOADED_MODELS stay
 * resident (least recently used is unloaded once idle). Each loaded model
 * serves one request at a time, in the order they came; at most
 * MODEL_QUEUE_MAX wait, more get -SMP_E_TOO_MANY. An embeddings batch is
 * checked whole first (every text within the context, all within
 * req->max_tokens), then runs a few hundred tokens per turn, so requests that
 * queue behind it are served in between; it stops when cancelled() says so or
 * the server is aborting (BACKEND_CANCELLED). */
#ifndef SMP_LOCAL_H
#define SMP_LOCAL_H

#include <stdbool.h>

#include "backend/backend.h"
#include "core/config.h"

backend *local_backend_new(const config *c, char *err, size_t errlen);
/* Name of the built-in model, or NULL when the binary has none. */
const char *local_builtin_model(void);

#endif
