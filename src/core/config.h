/* config.h - Simpleton's settings, from the environment and a .env file.
 *
 * CONFIG_VARS is the single list of every variable: kind, field, name, default,
 * bounds and help. config_load() reads ./.env (or ENV_FILE), then the real
 * environment (which wins), validates every value and fails with a message
 * naming the variable. After load the struct is read-only and shared. */
#ifndef SMP_CONFIG_H
#define SMP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* kind: STR (any text), URL (empty or a URL of the named schemes), INT and NUM
 * (bounded), BOOL (true/false/1/0/yes/no/on/off), LEVEL (log level). */
#define CONFIG_VARS(X)                                                                                     \
    X(STR, api_keys, "API_KEYS", "", 0, 0, "Comma-separated API keys. Unset: a key is generated on first start and kept in DATA_DIR/api_key (mode 0600)") \
    X(STR, host, "HOST", "0.0.0.0", 0, 0, "Address to listen on")                                     \
    X(INT, port, "PORT", "8000", 0, 65535, "TCP port to listen on (0: pick a free port and log it)") \
    X(LEVEL, log_level, "LOG_LEVEL", "INFO", 0, 0, "DEBUG, INFO, WARNING or ERROR")                     \
    X(BOOL, access_log, "ACCESS_LOG", "true", 0, 0, "One log line per request")                       \
    X(STR, cors_origins, "CORS_ORIGINS", "*", 0, 0, "Comma-separated allowed CORS origins, or * for any") \
    X(URL, ollama_base_url, "OLLAMA_BASE_URL", "", 0, 0, "Ollama server to forward to (e.g. http://localhost:11434); empty: none") \
    X(STR, ollama_api_key, "OLLAMA_API_KEY", "", 0, 0, "Bearer key sent to OLLAMA_BASE_URL (for an Ollama behind an authenticating proxy, or another Simpleton)") \
    X(INT, upstream_timeout, "UPSTREAM_TIMEOUT", "300", 1, 86400, "Seconds a forwarded generation may stay silent before it fails (503)") \
    X(INT, upstream_embed_timeout, "UPSTREAM_EMBED_TIMEOUT", "120", 1, 86400, "Seconds a forwarded embeddings request may take") \
    X(URL, openai_base_url, "OPENAI_BASE_URL", "", 0, 0, "OpenAI-compatible server to forward to (e.g. http://localhost:8080/v1); empty: none") \
    X(STR, openai_api_key, "OPENAI_API_KEY", "", 0, 0, "Key sent to OPENAI_BASE_URL")                  \
    X(STR, default_inference_model, "DEFAULT_INFERENCE_MODEL", "qwen2.5:7b", 0, 0, "Model for generate/chat when a request names none") \
    X(STR, default_embedding_model, "DEFAULT_EMBEDDING_MODEL", "nomic-embed-text", 0, 0, "Model for embeddings when a request names none") \
    X(STR, default_vision_model, "DEFAULT_VISION_MODEL", "llava", 0, 0, "Model for /vision/* when a request names none") \
    X(STR, default_audio_model, "DEFAULT_AUDIO_MODEL", "base", 0, 0, "Whisper model for /audio/*: tiny, base, small, medium, large or a file name") \
    X(STR, models_dir, "MODELS_DIR", "models", 0, 0, "Folder of GGUF and Whisper model files")       \
    X(STR, ollama_models, "OLLAMA_MODELS", "", 0, 0, "Ollama model store to serve models from in place (empty: ~/.ollama/models when it exists)") \
    X(INT, context_size, "CONTEXT_SIZE", "4096", 64, 1048576, "Context (prompt + answer tokens) of a loaded model, capped by what it was trained for") \
    X(INT, model_queue_max, "MODEL_QUEUE_MAX", "16", 1, 100000, "Requests waiting for one local model before new ones get 503") \
    X(INT, parallel, "PARALLEL", "8", 1, 64, "Answers one local model generates at once, in shared forward passes (each a slot with its own KV cache of CONTEXT_SIZE tokens)") \
    X(INT, kv_cache_mb, "KV_CACHE_MB", "0", 0, 1048576, "KV cache memory for one local model's slots, MiB (fewer slots than PARALLEL when they do not fit); 0: up to a quarter of the memory available at load") \
    X(INT, embed_max_batch_tokens, "EMBED_MAX_BATCH_TOKENS", "300000", 1, 100000000, "Most tokens one embeddings request may give a local model, all its texts together (more: 413)") \
    X(INT, request_workers, "REQUEST_WORKERS", "32", 1, 4096, "Worker threads for streamed answers and heavy in-process jobs (OCR, audio, RAG)") \
    X(STR, model_backends, "MODEL_BACKENDS", "", 0, 0, "Explicit routing, comma-separated model=backend pairs (e.g. llava=ollama,gpt-4o=openai)") \
    X(STR, backend_order, "BACKEND_ORDER", "local,ollama,openai", 0, 0, "Order in which backends are asked for a model, and fall back when one is unreachable") \
    X(STR, data_dir, "DATA_DIR", "data", 0, 0, "Folder for the generated API key, vector store and downloads") \
    X(INT, threads, "THREADS", "0", 0, 1024, "Compute threads for the engine (0: number of cores)")  \
    X(INT, max_connections, "MAX_CONNECTIONS", "1024", 1, 1000000, "Concurrent connections accepted") \
    X(INT, connection_timeout, "CONNECTION_TIMEOUT", "30", 1, 86400, "Seconds a connection may stay silent before it is dropped") \
    X(INT, header_timeout, "HEADER_TIMEOUT", "10", 1, 86400, "Seconds a client has to send a request line and its headers") \
    X(INT, body_timeout, "BODY_TIMEOUT", "20", 1, 86400, "Seconds a client has to send a request body, plus one for every BODY_MIN_RATE bytes received") \
    X(INT, body_min_rate, "BODY_MIN_RATE", "1024", 1, 1073741824, "Bytes per second a slow body must keep up to earn more time (see BODY_TIMEOUT)") \
    X(INT, max_connections_per_ip, "MAX_CONNECTIONS_PER_IP", "256", 0, 1000000, "Connections one client address may hold (0: no limit; behind a proxy all clients share its address)") \
    X(INT, shutdown_timeout, "SHUTDOWN_TIMEOUT", "30", 0, 86400, "Seconds to let in-flight requests finish on SIGINT/SIGTERM") \
    X(INT, max_body_mb, "MAX_BODY_MB", "32", 1, 65536, "Largest JSON request body, MiB")            \
    X(INT, max_upload_mb, "MAX_UPLOAD_MB", "100", 1, 65536, "Largest multipart upload, MiB")       \
    X(INT, max_image_mp, "MAX_IMAGE_MP", "40", 1, 10000, "Largest decoded image, megapixels")       \
    X(INT, ocr_timeout_s, "OCR_TIMEOUT_S", "60", 1, 86400, "Seconds one in-process OCR may run before it is stopped (408)") \
    X(INT, max_audio_seconds, "MAX_AUDIO_SECONDS", "10800", 1, 864000, "Longest audio accepted, seconds") \
    X(INT, heavy_job_memory_mb, "HEAVY_JOB_MEMORY_MB", "1024", 1, 1048576, "Working memory that heavy in-process jobs (transcriptions, decoded images) may reserve at once, MiB; a job that does not fit waits HEAVY_JOB_WAIT_S, then gets 503") \
    X(INT, heavy_job_wait_s, "HEAVY_JOB_WAIT_S", "10", 0, 3600, "Seconds a heavy job waits for room in HEAVY_JOB_MEMORY_MB before it gets 503") \
    X(URL, whisper_download_url, "WHISPER_DOWNLOAD_URL", "https://huggingface.co/ggerganov/whisper.cpp/resolve/main", 0, 0, "Where missing Whisper models (ggml-<size>.bin) are fetched from into DATA_DIR/models; empty: no downloads") \
    X(INT, max_loaded_models, "MAX_LOADED_MODELS", "2", 1, 64, "Models kept loaded at once (least recently used is unloaded)") \
    X(URL, redis_url, "REDIS_URL", "", 0, 0, "Redis for the response cache (redis://[:password@]host:port[/db]); empty: in-memory cache") \
    X(INT, redis_timeout_ms, "REDIS_TIMEOUT_MS", "250", 1, 60000, "Timeout of one Redis connect or command, ms") \
    X(BOOL, cache_enabled, "CACHE_ENABLED", "true", 0, 0, "Cache responses")                          \
    X(INT, cache_ttl, "CACHE_TTL", "3600", 1, 31536000, "Default cache TTL, seconds")                 \
    X(INT, cache_embedding_ttl, "CACHE_EMBEDDING_TTL", "86400", 1, 31536000, "Embedding cache TTL, seconds") \
    X(INT, cache_inference_ttl, "CACHE_INFERENCE_TTL", "3600", 1, 31536000, "Generate/chat cache TTL, seconds") \
    X(BOOL, cache_sampled, "CACHE_SAMPLED", "false", 0, 0, "Serve sampled generations (temperature > 0 and no seed) from the cache too; off: asking again gives a new answer") \
    X(INT, cache_max_mb, "CACHE_MAX_MB", "256", 1, 1048576, "Size bound of the in-memory cache, MiB") \
    X(BOOL, monitoring_enabled, "MONITORING_ENABLED", "true", 0, 0, "Record requests for /analytics and /metrics") \
    X(INT, metrics_retention_hours, "METRICS_RETENTION_HOURS", "168", 1, 87600, "Hours of request history kept for /analytics") \
    X(NUM, alert_error_rate_threshold, "ALERT_ERROR_RATE_THRESHOLD", "0.1", 0, 1, "Error-rate alert threshold, a fraction (0..1)") \
    X(NUM, alert_response_time_threshold, "ALERT_RESPONSE_TIME_THRESHOLD", "5.0", 0, 86400, "Average response time alert threshold, seconds") \
    X(URL, qdrant_url, "QDRANT_URL", "", 0, 0, "Qdrant server for retrieval; empty: the embedded vector store") \
    X(STR, qdrant_api_key, "QDRANT_API_KEY", "", 0, 0, "Key sent to QDRANT_URL")                      \
    X(STR, default_collection, "DEFAULT_COLLECTION", "documents", 0, 0, "Collection used when a request names none") \
    X(INT, chunk_size, "CHUNK_SIZE", "1000", 1, 1000000, "Characters per chunk when ingesting")        \
    X(INT, chunk_overlap, "CHUNK_OVERLAP", "200", 0, 1000000, "Characters shared by neighbouring chunks") \
    X(INT, top_k_results, "TOP_K_RESULTS", "5", 1, 1000, "Search results returned when a request names no top_k") \
    X(INT, rag_max_chunks, "RAG_MAX_CHUNKS", "100000", 1, 100000000, "Most chunks one ingested document may make (more: 413)")

typedef struct config {
#define CONFIG_FIELD_STR char *
#define CONFIG_FIELD_URL char *
#define CONFIG_FIELD_INT long
#define CONFIG_FIELD_NUM double
#define CONFIG_FIELD_BOOL bool
#define CONFIG_FIELD_LEVEL int
#define CONFIG_FIELD(kind, field, name, def, lo, hi, help) CONFIG_FIELD_##kind field;
    CONFIG_VARS(CONFIG_FIELD)
#undef CONFIG_FIELD
    char *api_key_file; /* set when the key was generated or loaded from DATA_DIR */
} config;

/* Fill *c from defaults, .env and the environment. On a bad value returns -1
 * and writes a message naming the variable into err. */
int config_load(config *c, const char *env_file, char *err, size_t errlen);
void config_free(config *c);

/* The process-wide configuration (set once by main before threads start). */
const config *config_get(void);
void config_set(const config *c);

/* Write the --help table: every variable, its default and meaning. */
void config_print_help(void *file);

#endif
