/* openai.h - the backend that forwards to an OpenAI-compatible server
 * (OPENAI_BASE_URL, e.g. http://host:8080/v1, with OPENAI_API_KEY).
 *
 * chat -> POST /chat/completions, generate -> POST /completions (both always
 * streamed from upstream, SSE), embed -> POST /embeddings, list_models and
 * health -> GET /models. See openai.c for the field mapping. */
#ifndef SMP_OPENAI_H
#define SMP_OPENAI_H

#include <stddef.h>

#include "backend/backend.h"
#include "backend/httpc.h"

/* base_url includes the version prefix ("http://host:8080/v1"); api_key may be
 * NULL or "" (no Authorization header). Does not touch the network. Returns
 * NULL with a message in err. Destroy with b->ops->destroy(b). */
backend *openai_backend_new(const char *base_url, const char *api_key, char *err, size_t errlen);

/* Replace the timeouts (see ollama_backend_set_timeouts). Call before first use. */
void openai_backend_set_timeouts(backend *b, const httpc_timeouts *t);

#endif
