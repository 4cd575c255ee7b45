/* ollama.h - the backend that forwards to an Ollama server (OLLAMA_BASE_URL).
 *
 * generate -> POST /api/generate, chat -> POST /api/chat (both always streamed
 * from upstream, NDJSON), embed -> POST /api/embed, list_models -> GET
 * /api/tags, health -> GET /api/version. See ollama.c for the field mapping. */
#ifndef SMP_OLLAMA_H
#define SMP_OLLAMA_H

#include <stddef.h>

#include "backend/backend.h"
#include "backend/httpc.h"

/* base_url: "http://host:11434". Does not touch the network. Returns NULL with
 * a message in err. Destroy with b->ops->destroy(b). */
backend *ollama_backend_new(const char *base_url, const char *api_key, char *err, size_t errlen);

/* Replace the timeouts (HTTPC_TIMEOUTS_DEFAULT: 5 s connect, 300 s of silence
 * while generating, 120 s per embeddings request). Call before first use. */
void ollama_backend_set_timeouts(backend *b, const httpc_timeouts *t);

#endif
