/* api.h - registration of every route family, the health registry, and
 * what route families share.
 *
 * Each route family lives in its own file (health.c, analytics.c, ...) and
 * exposes one api_<family>_register() called by api_register_all(). Modules
 * that serve requests (backends, stores) add a health probe so /health and
 * /analytics/health say what is down. */
#ifndef SMP_API_H
#define SMP_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

void api_register_all(void);

/* Does a model of this name exist: a backend serves it (registry_model_known)
 * or it is a Whisper model the audio routes can load (a size name, or a file
 * in the Whisper store)? No network. The filter of metrics' model labels. */
bool api_model_known(const char *model);

void api_health_register(void);
void api_analytics_register(void);
void api_inference_register(void);
void api_embeddings_register(void);
void api_models_register(void);
void api_openai_register(void);
void api_ollama_register(void);
void api_rag_register(void);
void api_vision_register(void);
void api_audio_register(void);

/* Shared parsers (inference.c). */
struct valid;
struct textjob;
/* Most messages one chat request may carry, in every dialect. */
#define API_MAX_MESSAGES 10000
int api_parse_messages(struct valid *v, struct textjob *j, json_t *body);
/* OpenAI's messages: content a string or a list of text and image_url
 * parts; "developer" is a system message. 1 ok, -1 invalid (recorded on v). */
int api_openai_parse_messages(struct valid *v, struct textjob *j, json_t *body);

/* Reserve bytes of the heavy-job memory budget (HEAVY_JOB_MEMORY_MB) before
 * a job allocates its working set, waiting up to HEAVY_JOB_WAIT_S while
 * other jobs hold it. `what` names the job in the answer ("this
 * transcription"). Returns 0 (give the bytes back with membudget_release on
 * membudget_heavy()), 1 when the client left while waiting (nothing sent),
 * or -SMP_E_UNAVAILABLE with the 503 sent: busy (Retry-After), or a job
 * larger than the whole budget. */
struct http_req;
int api_reserve_heavy(struct http_req *r, size_t bytes, const char *what);

/* A probe fills a new JSON object ({status:"healthy"|"degraded"|"down", ...})
 * and returns whether the component can serve. kind: "backends" or "models"
 * or "components". */
typedef bool (*health_probe)(json_t **out, void *ud);
void api_health_add_probe(const char *kind, const char *name, health_probe fn, void *ud);

/* Public routes (no key) disclose no filesystem paths, whatever the probes
 * report: every absolute path inside a string of o, at any depth, becomes its
 * last component ("/srv/models/llama.gguf" -> "llama.gguf"), in place. URLs
 * are left alone. */
void api_public_scrub(json_t *o);

#endif
