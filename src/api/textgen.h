/* textgen.h - one generate/chat request from any dialect.
 *
 * A route handler parses and validates its dialect's body into a textjob
 * (textjob_from_request + filling job->req), then calls textjob_finish, which answers
 * from the cache when it can, or runs the job: on the connection's thread
 * when it does not stream, on a worker when it does.
 * The worker asks the registry (routing, fallback), streams frames in the
 * job's dialect as tokens arrive (the HTTP response starts with the first
 * token, so errors before it still get a proper status), then the final
 * frame or the whole JSON answer, which is cached when allowed. */
#ifndef SMP_TEXTGEN_H
#define SMP_TEXTGEN_H

#include <jansson.h>
#include <stdbool.h>

#include "backend/backend.h"
#include "cache/cache.h"
#include "http/server.h"

typedef enum {
    TG_SIMPLETON_GENERATE,
    TG_SIMPLETON_CHAT,
    TG_OPENAI_CHAT,
    TG_OPENAI_COMPLETION,
    TG_OLLAMA_GENERATE,
    TG_OLLAMA_CHAT,
} textjob_kind;

typedef struct textjob textjob;

/* The usual start of a text route: the request's JSON object body and a job
 * that owns it (*body points to it). NULL when the body was not a JSON
 * object or memory ran out: the error has been answered. */
textjob *textjob_from_request(http_req *r, textjob_kind kind, json_t **body);
/* A job with no request, for parsing alone (fuzzing, unit tests): it takes
 * body and can only be freed. */
textjob *textjob_detached(textjob_kind kind, json_t *body);
backend_gen_req *textjob_req(textjob *j);
/* Message array of n entries owned by the job (zeroed). */
backend_msg *textjob_messages(textjob *j, int n);
/* Request-lifetime memory, freed with the job, with no cap on how many
 * blocks a request holds (its body size and field limits bound them):
 * textjob_alloc gives zeroed memory (NULL when out of memory); textjob_adopt
 * takes an smp_malloc'd block (a decoded image) and returns it, or frees it
 * and returns NULL when out of memory. */
void *textjob_alloc(textjob *j, size_t count, size_t size);
void *textjob_adopt(textjob *j, void *p);
void textjob_set_include_usage(textjob *j, bool on);
/* Resolve the model name (default when empty) and go. Takes the job. */
void textjob_start(textjob *j, const char *requested_model);
void textjob_free(textjob *j);
/* The end of every text route's parsing: if v holds problems, answer them
 * (422, or 400 in the other dialects) and free the job; otherwise start it
 * with the given stream flag. Frees v's contents either way. */
struct valid;
void textjob_finish(textjob *j, struct valid *v, bool stream, const char *requested_model);

/* Where a request's job runs. fn(arg) answers r and calls http_release(r).
 * - textgen_run_here: on the connection's thread, now. For jobs that wait
 *   rather than compute (a remote backend) or that a bound of their own
 *   already limits (a local model's queue, MODEL_QUEUE_MAX): no thread
 *   hand-off on the way in or out.
 * - textgen_submit: on the shared worker pool (REQUEST_WORKERS threads, a
 *   bounded queue), for streams (their producer cannot be the thread that
 *   sends) and heavy in-process work with no other bound (OCR, audio, RAG
 *   search and ingestion). On a full queue answers 503 itself and returns
 *   non-zero (the caller frees arg). */
int textgen_init(int workers, int queue);
void textgen_free(void);
void textgen_run_here(http_req *r, void (*fn)(void *), void *arg);
int textgen_submit(http_req *r, void (*fn)(void *), void *arg);

/* Every member of backend_gen_req that shapes an answer, and so goes into
 * the cache key: X(member, kind). A member added to backend_gen_req that
 * changes what is generated belongs here (its companions n_context,
 * n_messages, has_seed, n_stop are read with it; cancelled and cancel_ud
 * shape nothing). Kinds: STR (may be NULL), BOOL, INT, NUM (double), SEED
 * (with has_seed), IDS (context), MSGS (roles, contents, image digests,
 * tool calls and results), TOOLS (name, description, parameters, strict),
 * STOP, JSON, BIAS (with n_logit_bias). tests/unit/test_textgen.c changes each member in turn and expects a
 * new key; tests/e2e/text_api.test.mjs sends a body change for every row. */
#define TEXTGEN_KEY_FIELDS(X) \
    X(model, STR)             \
    X(prompt, STR)            \
    X(system, STR)            \
    X(raw, BOOL)              \
    X(context, IDS)           \
    X(messages, MSGS)         \
    X(temperature, NUM)       \
    X(top_p, NUM)             \
    X(top_k, INT)             \
    X(min_p, NUM)             \
    X(repeat_penalty, NUM)    \
    X(presence_penalty, NUM)  \
    X(frequency_penalty, NUM) \
    X(seed, SEED)             \
    X(max_tokens, INT)        \
    X(num_ctx, INT)           \
    X(stop, STOP)             \
    X(json_object, BOOL)      \
    X(json_schema, JSON)      \
    X(grammar, STR)           \
    X(logprobs, BOOL)         \
    X(top_logprobs, INT)      \
    X(logit_bias, BIAS)       \
    X(tools, TOOLS)           \
    X(tool_choice, INT)       \
    X(tool_choice_name, STR)  \
    X(parallel_tool_calls, BOOL)

/* The cache key of a generate/chat request of this kind (cache type chat or
 * inference by kind); "" when memory ran out (see cache_key). */
void textgen_cache_key(textjob_kind kind, const backend_gen_req *q, char out[CACHE_KEY_MAX]);

/* Parse a "stop" value (string or list of strings) into req. Returns 1 ok,
 * 0 absent, -1 invalid (error recorded on v). */
struct valid;
int textgen_parse_stop(struct valid *v, json_t *obj, const char *field, backend_gen_req *req);
/* Structured output fields: OpenAI's response_format ({type: text |
 * json_object | json_schema {name, schema, strict}}) and Ollama's format
 * ("json" or a JSON Schema). A schema is compiled once here, so a keyword
 * the engine cannot enforce is refused up front, naming it. Returns 1 set,
 * 0 absent, -1 invalid (recorded on v). */
int textgen_parse_response_format(struct valid *v, json_t *obj, backend_gen_req *req);
int textgen_parse_ollama_format(struct valid *v, json_t *obj, backend_gen_req *req);
/* llama.cpp's `grammar` (GBNF text), parsed once here so a bad grammar is a
 * 400 with its line and column; not together with response_format. */
int textgen_parse_grammar(struct valid *v, json_t *obj, backend_gen_req *req);
/* Tool calling. textgen_parse_tools reads tools (and for OpenAI
 * tool_choice and parallel_tool_calls); every parameter schema is compiled
 * once, so one the engine cannot enforce is refused naming it.
 * textgen_parse_messages_tools, after the messages' roles and contents,
 * reads each message's tool_calls (assistant) and tool_call_id (OpenAI) or
 * tool_name (Ollama) (tool), and checks that every tool result answers a
 * call made before it. */
#define API_MAX_TOOLS 128
int textgen_parse_tools(struct valid *v, textjob *j, json_t *body, bool openai);
int textgen_parse_messages_tools(struct valid *v, textjob *j, json_t *body, bool openai);
/* Log probabilities. OpenAI chat and Ollama: logprobs (bool) and
 * top_logprobs (0..20, above 0 only with logprobs: true, else 400 naming
 * top_logprobs). OpenAI completions: logprobs is the number of alternatives
 * (0..5; null: off). Return 1 on, 0 off or absent, -1 invalid (recorded). */
int textgen_parse_logprobs(struct valid *v, json_t *obj, backend_gen_req *req);
int textgen_parse_completion_logprobs(struct valid *v, json_t *obj, backend_gen_req *req);
/* OpenAI's logit_bias: an object of token ids (decimal strings) to biases
 * in [-100, 100], at most TEXTGEN_MAX_LOGIT_BIAS of them (held by the job).
 * Ids are checked against the vocabulary by the backend. */
#define TEXTGEN_MAX_LOGIT_BIAS 300
int textgen_parse_logit_bias(struct valid *v, textjob *j, json_t *obj);
/* Parse "context"-style arrays of token ids (owned by the job). */
int textgen_parse_ids(struct valid *v, textjob *j, json_t *obj, const char *field);
/* Send an error for a backend code in r's dialect (404/422/502/503 + Retry-After). */
void textgen_send_backend_error(http_req *r, int rc, const char *msg);

#endif
