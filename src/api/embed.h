/* embed.h - embeddings for other modules (retrieval), through the same path
 * as the embeddings routes: each text is looked up in the cache, the misses
 * are computed by whichever backend serves the model, then cached and
 * counted in the LLM metrics. Blocking: call it from a worker thread. */
#ifndef SMP_EMBED_H
#define SMP_EMBED_H

#include <stdbool.h>
#include <stddef.h>

/* *out: n * (*dim) floats (caller frees with smp_free). Errors as backend.h
 * (err names the problem). */
int embeddings_compute(const char *model, const char *const *texts, int n, bool use_cache, float **out, int *dim,
                       int *prompt_tokens, char *err, size_t errlen);

#endif
