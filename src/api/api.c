/* api.c - registers every route family with the router. */
#include "api/api.h"

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
