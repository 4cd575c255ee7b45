/* api.c - registers every route family with the router; the helpers the
 * families share; says which model names exist for the metrics' labels. */
#include "api/api.h"

#include <limits.h>

#include "backend/registry.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/membudget.h"
#include "http/server.h"
#include "media/whisper_store.h"

bool api_model_known(const char *model) {
    char path[PATH_MAX];
    return registry_model_known(model) || whisper_store_is_size(model) || whisper_store_find(model, path, sizeof path);
}

void api_register_all(void) {
    api_health_register();
    api_analytics_register();
    api_inference_register();
    api_embeddings_register();
    api_models_register();
    api_openai_register();
    api_ollama_register();
    api_rag_register();
    api_vision_register();
    api_audio_register();
}

int api_reserve_heavy(http_req *r, size_t bytes, const char *what) {
    const config *c = config_get();
    int rc = membudget_reserve(membudget_heavy(), bytes, (int)c->heavy_job_wait_s * 1000, http_client_gone_cb, r);
    size_t mb = (bytes >> 20) + 1;
    if (rc == -SMP_E_TOO_LARGE) {
        http_send_error(r, SMP_E_UNAVAILABLE,
                        "Too large for the memory budget: %s needs about %zu MB of working memory, more than the "
                        "whole budget for heavy jobs (HEAVY_JOB_MEMORY_MB = %ld); the server's operator can raise it",
                        what, mb, c->heavy_job_memory_mb);
        return -SMP_E_UNAVAILABLE;
    }
    if (rc == -SMP_E_UNAVAILABLE) {
        http_add_header(r, "Retry-After", "5");
        http_send_error(r, SMP_E_UNAVAILABLE,
                        "Server busy: other jobs hold the memory budget for heavy jobs (HEAVY_JOB_MEMORY_MB = %ld); "
                        "%s needs about %zu MB and waited %ld s (HEAVY_JOB_WAIT_S); try again shortly",
                        c->heavy_job_memory_mb, what, mb, c->heavy_job_wait_s);
    }
    return rc;
}
