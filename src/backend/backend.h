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

typedef struct {
    const char *role;    /* system | user | assistant | tool */
    const char *content;
    /* Images (raw bytes, already decoded from base64 and checked). */
    int n_images;
    const unsigned char *const *images;
    const size_t *image_lens;
} backend_msg;

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
    uint64_t total_ns, load_ns, prompt_ns, eval_ns;
    const char *done_reason;  /* "stop" | "length" | "cancelled" (static) */
} backend_gen_result;

void backend_gen_result_free(backend_gen_result *r);

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
