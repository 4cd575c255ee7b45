/* metrics.h - Prometheus registry and text exposition (format 0.0.4).
 *
 * Families (all declared at init, so /metrics always lists them):
 *   simpleton_requests_total{method,endpoint,status}            counter
 *   simpleton_request_duration_seconds{method,endpoint}          histogram, 5 ms .. 300 s
 *   simpleton_requests_in_progress                               gauge
 *   simpleton_errors_total{endpoint,error_type}                  counter
 *   simpleton_cache_hits_total{cache_type}                       counter
 *   simpleton_cache_misses_total{cache_type}                     counter
 *   simpleton_llm_requests_total{model,endpoint}                 counter
 *   simpleton_llm_tokens_total{model,token_type}                 counter (prompt|completion)
 *   simpleton_llm_time_to_first_token_seconds{model}             histogram
 *   simpleton_llm_tokens_per_second{model}                       gauge (last generation)
 *   simpleton_llm_queue_depth{model}                             gauge
 *   simpleton_model_load_seconds{model}                          gauge
 *   simpleton_build_info{version,compiler}                       gauge = 1
 *   simpleton_heap_bytes                                         gauge (smp_alloc live bytes)
 *   simpleton_metrics_dropped_total                              counter (samples for label sets
 *                                                                past the per-family cap of 10,000)
 *   process_resident_memory_bytes, process_virtual_memory_bytes, process_cpu_seconds_total,
 *   process_open_fds, process_max_fds, process_start_time_seconds
 * plus whatever registered collectors append (cache entries, evictions, ...).
 * `endpoint` is always a route template, never a raw path. `model` is always
 * a model that exists (see metrics_set_model_filter), never a client's
 * string. All calls are thread-safe and cheap (a hash lookup under a striped
 * lock). */
#ifndef SMP_METRICS_H
#define SMP_METRICS_H

#include <stdbool.h>

#include "core/buf.h"

int metrics_init(const char *version);
void metrics_free(void);

void metrics_request_done(const char *method, const char *endpoint, int status, double seconds);
void metrics_in_progress_add(int delta);
void metrics_error(const char *endpoint, const char *error_type);
void metrics_cache_event(const char *cache_type, bool hit);
void metrics_llm_request(const char *model, const char *endpoint);
void metrics_llm_tokens(const char *model, const char *token_type, long n);
void metrics_llm_ttft(const char *model, double seconds);
void metrics_llm_tokens_per_second(const char *model, double tps);
void metrics_llm_queue_depth(const char *model, long depth);
/* One forward pass of a local model's scheduler: how many sequences it
 * advanced together and how many tokens (rows) it ran. */
void metrics_llm_batch(const char *model, int sequences, int rows, double seconds);
/* Seconds a request waited for a slot of a local model. */
void metrics_llm_queue_wait(const char *model, double seconds);
void metrics_model_load_seconds(const char *model, double seconds);

/* metrics_llm_request and metrics_llm_tokens, which routes call with the
 * model a client named, record a sample only when known(model) says the model
 * exists (something serves it); samples for any other name are dropped, so
 * clients can neither add series nor choose label values. The other model
 * families are recorded by the backend serving a model it has found, under
 * its locks, and are not filtered: call those two only with no backend lock
 * held. known must be cheap (no network) and thread-safe. Set it once at
 * start, before requests; NULL (the default) records every name. */
void metrics_set_model_filter(bool (*known)(const char *model));

/* A collector appends complete families (HELP, TYPE, samples) at render time. */
typedef void (*metrics_collector)(buf *out, void *ud);
void metrics_add_collector(metrics_collector fn, void *ud);

/* Append the `# HELP` (backslash and newline escaped) and `# TYPE` lines of a
 * family; type is "counter", "gauge", "histogram", ... For collectors. */
void metrics_write_header(buf *out, const char *name, const char *type, const char *help);

/* Render every family into out. Returns 0, or -1 if out hit its cap. */
int metrics_render(buf *out);

/* Append `name{k="v",...} value\n` with label values escaped (\\, \", \n). */
void metrics_write_sample(buf *out, const char *name, const char *const *keys, const char *const *vals,
                          int nlabels, double value);

#endif
