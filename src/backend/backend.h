/* backend.h - what serves models: the local engine, Ollama, or an
 * OpenAI-compatible server, behind one interface.
 *
 * A backend is a table of operations plus its private state. Every call is
 * blocking and runs on a request worker thread (never on an HTTP thread);
 * calls may run concurrently. Streaming goes through a token callback that is
 * called with each new piece of text as soon as it is known (never half a
 * UTF-8 character); returning non-zero from it cancels the generation, which
 * then returns BACKEND_CANCELLED (positive) with what was produced so far.
 *
 * Error codes (negative smp_err) and their meaning for the routes:
 *   -SMP_E_NOT_FOUND    unknown model (404, the message lists what exists)
 *   -SMP_E_VALIDATION   request the model cannot take (prompt longer than the
 *                       context: 422 naming the limit)
 *   -SMP_E_TOO_LARGE    more work than one request may ask for (413 naming
 *                       the setting)
 *   -SMP_E_BACKEND      the backend answered with an error (502 "Backend error: ...")
 *   -SMP_E_UNAVAILABLE  backend unreachable or timed out (503 "Could not connect to ...")
 *   -SMP_E_TOO_MANY     the model's queue is full (503 with Retry-After)
 * err always names the backend. */
#ifndef SMP_BACKEND_H
#define SMP_BACKEND_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BACKEND_CANCELLED 1 /* positive: the callback asked to stop */
/* Stop sequences a request may carry, in every dialect and route (more, or a
 * longer one, is refused with 400/422 naming `stop`); every backend takes
 * them all (the local engine has room for these plus its template's own). */
#define BACKEND_MAX_STOP 16
#define BACKEND_MAX_STOP_LEN 256

/* One function call: in an assistant message of the history, or in an
 * answer. Dialects differ in how arguments travel (OpenAI: a string of JSON,
 * Ollama: an object); here they are always the JSON text of an object. */
typedef struct {
    const char *id;           /* "call_..." (OpenAI's id; made up for Ollama) */
    const char *name;
    const char *arguments;    /* JSON text of an object, e.g. {"city":"Oslo"} */
} backend_tool_call;

typedef struct {
    const char *role;    /* system | user | assistant | tool */
    const char *content;
    /* Images (raw bytes, already decoded from base64 and checked). */
    int n_images;
    const unsigned char *const *images;
    const size_t *image_lens;
    /* assistant: the calls it made (content may then be ""). */
    const backend_tool_call *tool_calls;
    int n_tool_calls;
    /* tool: the call this result answers (OpenAI's tool_call_id; NULL from
     * Ollama) and the function's name (Ollama's tool_name, or for OpenAI
     * the name of the call tool_call_id points to; the API layer checks the
     * call exists). */
    const char *tool_call_id;
    const char *tool_name;
} backend_msg;

/* A function the model may call (OpenAI's tools[].function; Ollama's is the
 * same shape). */
typedef struct {
    const char *name;         /* [A-Za-z0-9_-]{1,64} */
    const char *description;  /* may be NULL */
    const json_t *parameters; /* JSON Schema of the arguments (borrowed); NULL: any object */
    bool strict;
} backend_tool;

typedef enum {
    BACKEND_TOOLS_AUTO = 0,   /* the model decides (the default with tools) */
    BACKEND_TOOLS_NONE,       /* no call: tools are context only */
    BACKEND_TOOLS_REQUIRED,   /* at least one call, of any tool */
    BACKEND_TOOLS_NAMED,      /* a call of tool_choice_name */
} backend_tool_choice;

/* Streaming tool calls: a call's first event has id and name set (args
 * ""), later ones carry pieces of its arguments' JSON text in order, and
 * the last has done set (its args may be empty). Calls come one after
 * another, index 0, 1, ... Return non-zero to cancel. */
typedef struct {
    int index;
    const char *id;           /* first event only, else NULL */
    const char *name;         /* first event only, else NULL */
    const char *args;
    size_t args_len;
    bool done;
} backend_tool_event;

/* A token id's bias (OpenAI's logit_bias): added to its logit before
 * sampling; -100 bans it, 100 all but forces it. */
typedef struct {
    int32_t id;
    float bias;
} backend_logit_bias;

typedef struct {
    const char *model;        /* resolved name, never NULL */
    /* generate: prompt (+ optional system, context); chat: messages. */
    const char *prompt;
    const char *system;
    const int32_t *context;
    int n_context;
    const backend_msg *messages;
    int n_messages;
    bool raw;                 /* prompt is used as is (no template) */
    /* sampling */
    double temperature;       /* 0..2 */
    double top_p;             /* 1: off */
    int top_k;                /* 0: off */
    double min_p;
    double repeat_penalty;    /* 1: off */
    double presence_penalty, frequency_penalty;
    bool has_seed;
    uint64_t seed;
    int max_tokens;           /* <= 0: until EOS or the context is full */
    /* The context window of this request (Ollama's options.num_ctx): prompt
     * plus answer fit in it. 0: the model's context. The local engine caps
     * a larger value at the model's context and refuses a prompt that does
     * not fit the smaller window, naming num_ctx; Ollama upstreams get it
     * as options.num_ctx. */
    int num_ctx;
    const char *stop[BACKEND_MAX_STOP];
    int n_stop;
    /* Structured output: the answer is one JSON object (json_object) or a
     * value valid against json_schema (borrowed; checked by the API layer
     * with the engine's schema compiler). The local engine constrains its
     * sampling; upstreams get OpenAI's response_format / Ollama's format. */
    bool json_object;
    const json_t *json_schema;
    const char *json_schema_name; /* OpenAI's response_format.json_schema.name (may be NULL) */
    bool json_schema_strict;
    const char *grammar;      /* GBNF text (llama.cpp's `grammar` field), checked by the API layer */
    /* Tool calling (chat only). With tools and a choice other than NONE the
     * answer may hold tool_calls instead of (or after) text. */
    const backend_tool *tools;
    int n_tools;
    backend_tool_choice tool_choice;
    const char *tool_choice_name; /* BACKEND_TOOLS_NAMED */
    bool parallel_tool_calls;     /* more than one call per answer (the API default is true) */
    /* Called while streaming with tool-call events (ud is generate's ud);
     * NULL when not streaming: calls then arrive in the result only. */
    int (*on_tool)(void *ud, const backend_tool_event *e);
    /* Log probabilities: when logprobs is set the result holds, per
     * generated token, its log probability and the top_logprobs (0..20)
     * most likely alternatives. */
    bool logprobs;
    int top_logprobs;
    /* Called while streaming, just before the on_token call whose text
     * ends with these tokens, with their entries (a JSON array in the
     * result's logprobs format, borrowed); may be NULL. */
    int (*on_logprobs)(void *ud, const json_t *entries);
    const backend_logit_bias *logit_bias;
    int n_logit_bias;
    /* Polled while generating (e.g. the client went away); may be NULL. */
    bool (*cancelled)(void *ud);
    void *cancel_ud;
} backend_gen_req;

typedef struct {
    char *text;               /* whole answer (owned, smp_free) */
    size_t text_len;
    int32_t *context;         /* generate: prompt + answer token ids, if known (owned) */
    int n_context;
    int prompt_tokens, completion_tokens;
    /* Of prompt_tokens, how many came from a cached prefix and were not
     * computed again (the local engine's session reuse; an OpenAI-compatible
     * upstream's usage.prompt_tokens_details.cached_tokens). */
    int cached_tokens;
    uint64_t total_ns, load_ns, prompt_ns, eval_ns;
    const char *done_reason;  /* "stop" | "length" | "cancelled" | "tool_calls" (static) */
    /* The calls the answer makes (owned with their strings: see
     * backend_gen_result_free); text then holds what came before them. */
    backend_tool_call *tool_calls;
    int n_tool_calls;
    /* With req->logprobs: [{token, logprob, bytes: [..], top_logprobs:
     * [{token, logprob, bytes}]}] for each generated token (owned). */
    json_t *logprobs;
} backend_gen_result;

void backend_gen_result_free(backend_gen_result *r);
/* Append a call to r (copies the strings; id NULL or "": one is made up,
 * arguments NULL or "": "{}"). 0 or -SMP_E_NOMEM. */
int backend_result_add_call(backend_gen_result *r, const char *id, const char *name, const char *arguments);
/* A fresh call id, "call_" and 24 hex digits. */
void backend_call_id(char *out, size_t len);

typedef struct {
    const char *model;        /* resolved name, never NULL */
    const char *const *texts; /* n non-empty texts */
    int n;
    /* Most tokens the texts may take together (EMBED_MAX_BATCH_TOKENS; more:
     * -SMP_E_TOO_LARGE before any is embedded); 0: no bound. Local models
     * only (an upstream has limits of its own). */
    size_t max_tokens;
    /* Polled between pieces of work (the client went away, the server is
     * shutting down); may be NULL. Saying yes makes embed return
     * BACKEND_CANCELLED with no vectors. */
    bool (*cancelled)(void *ud);
    void *cancel_ud;
} backend_embed_req;

typedef struct {
    float *vecs;              /* n * dim floats (owned by the caller, smp_free) */
    int dim;
    int prompt_tokens;
    /* -SMP_E_VALIDATION: the index of the text refused (err then says what
     * is wrong with it: "at least 5000 tokens; model ..."), or -1. */
    int bad_input;
} backend_embed_result;

/* Streaming: piece of text (UTF-8 complete). Return non-zero to cancel. */
typedef int (*backend_token_fn)(void *ud, const char *piece, size_t len);

typedef struct backend backend;

typedef struct {
    const char *name;         /* "local", "ollama", "openai" */
    /* chat when req->messages is set, generate otherwise. */
    int (*generate)(backend *b, const backend_gen_req *req, backend_token_fn on_token, void *ud,
                    backend_gen_result *out, char *err, size_t errlen);
    int (*embed)(backend *b, const backend_embed_req *req, backend_embed_result *out, char *err, size_t errlen);
    /* [{name, size, modified_at, digest, kind, ...}] new reference. */
    int (*list_models)(backend *b, json_t **out, char *err, size_t errlen);
    /* Does this backend serve this model? (1 yes, 0 no, <0 cannot tell: unreachable) */
    int (*has_model)(backend *b, const char *model);
    /* {status:"healthy"|"down", detail...}; returns true when it can serve. */
    bool (*health)(backend *b, json_t **out);
    void (*destroy)(backend *b);
} backend_ops;

struct backend {
    const backend_ops *ops;
    void *state;
};

#endif
