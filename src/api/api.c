/* api.c - registers every route family with the router; says which model
 * names exist for the metrics' labels. */
#include "api/api.h"

#include <limits.h>

#include "backend/registry.h"
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
