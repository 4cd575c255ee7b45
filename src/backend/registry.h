/* registry.h - which backend serves which model.
 *
 * Backends: local (always), ollama (OLLAMA_BASE_URL set), openai
 * (OPENAI_BASE_URL set). A model is routed by, in order:
 *   1. MODEL_BACKENDS, an explicit "model=backend" map;
 *   2. discovery: the first backend in BACKEND_ORDER that has the model
 *      (remote model lists are cached for a few seconds);
 * and when the chosen backend turns out to be unreachable before it has
 * produced anything, the next one in BACKEND_ORDER that has the model is
 * tried (ordered fallback).
 * A request that names no model gets the configured default; if no backend
 * has that and the binary has a built-in model, the built-in one serves (so a
 * server with nothing configured still answers). */
#ifndef SMP_REGISTRY_H
#define SMP_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>

#include "backend/backend.h"
#include "core/config.h"

#define REGISTRY_MAX 4

typedef enum { MODEL_KIND_INFERENCE, MODEL_KIND_EMBEDDING, MODEL_KIND_VISION } model_kind;

int registry_init(const config *c, char *err, size_t errlen);
void registry_free(void);
int registry_count(void);
backend *registry_at(int i);

/* The model a request means: its own (if non-empty) or the default of kind;
 * out gets a name (possibly the built-in model's). */
void registry_model_name(const char *requested, model_kind kind, char *out, size_t n);

/* Backends to try for a model, best first (at most REGISTRY_MAX). Returns the
 * count; 0 means no backend has it (err lists what exists). Negative: every
 * backend that might have it is unreachable (err says which). */
int registry_route(const char *model, backend **out, char *err, size_t errlen);

/* Is model served by some backend, as far as is known without asking anyone:
 * MODEL_BACKENDS names it, the local backend has it, or a remote backend's
 * cached list (see registry_route) holds it. Cheap; for metrics labels. */
bool registry_model_known(const char *model);

/* The backend MODEL_BACKENDS names for model ("ollama" in "llava=ollama"),
 * not NUL-terminated: *len gets its length. NULL when the map has none. */
const char *registry_explicit_backend(const char *model, size_t *len);

/* Generate / embed with routing and fallback. *served_by gets the backend's
 * name. Errors as backend.h. */
int registry_generate(const backend_gen_req *req, backend_token_fn on_token, void *ud, backend_gen_result *out,
                      const char **served_by, char *err, size_t errlen);
int registry_embed(const backend_embed_req *req, backend_embed_result *out, char *err, size_t errlen);

/* Every backend's models, tagged with the backend: [{name, ..., backend}]. */
json_t *registry_list_models(void);
/* {name: health object} for /health; *all_ok false if any is down. */
json_t *registry_health(bool *any_ok);

#endif
