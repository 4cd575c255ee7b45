/* ollama.c - the Ollama backend: forwards generate, chat, embeddings and the
 * model list to an Ollama server over HTTP (httpc).
 *
 * Data structure: the backend state is an httpc (base URL + pool of curl
 * handles, safe across threads) and the timeouts; a generation keeps its
 * parse state (gen_ctx) on the caller's stack.
 *
 * Requests (Ollama REST API):
 *   generate  POST /api/generate {model, prompt, system?, context?, raw?, stream:true, options,
 *             logprobs?, top_logprobs?}
 *   chat      POST /api/chat     {model, messages:[{role, content, images?:[base64]}], stream:true, options,
 *             tools?, logprobs?, top_logprobs?}
 *   options   temperature (always), top_p (0 < p < 1), top_k (> 0), min_p (> 0),
 *             repeat_penalty (> 0 and != 1), presence_penalty / frequency_penalty
 *             (!= 0), seed (has_seed; its low 63 bits), num_predict (max_tokens > 0), num_ctx (> 0), stop.
 *             Values that mean "off" are not sent, so the model's own defaults
 *             apply as they did with the service Simpleton replaces.
 *   embed     POST /api/embed {model, input:[...]} -> {embeddings:[[...]], prompt_eval_count}
 *   models    GET /api/tags -> {models:[{name, size, modified_at, digest, details:{family}}]}
 *   health    GET /api/version -> {version}
 *
 * Tools and log probabilities, and what cannot be forwarded (a refusal's
 * message starts "field: ", the field as the request has it):
 *   tools           [{type:"function", function:{name, description?, parameters}}]
 *                   (parameters {"type":"object","properties":{}} when the tool has
 *                   none). A tool with strict:true is refused (501 naming
 *                   tools.N.function.strict): Ollama does not hold a call's
 *                   arguments to the schema.
 *   tool_choice     Ollama has none. auto: the tools are sent; none: no tools are
 *                   sent (the model cannot call what it does not see); required
 *                   or a named function: refused (501 naming tool_choice).
 *   parallel_tool_calls  false with tools is refused (501): Ollama may answer
 *                   with several calls and has no switch for it; quietly keeping
 *                   only the first call would hide what the model did.
 *   history         an assistant message's calls become tool_calls:
 *                   [{function:{name, arguments: OBJECT}}] (the JSON text is
 *                   parsed: Ollama wants an object; text that is not an object is
 *                   refused with 400); a tool message becomes {role:"tool",
 *                   content, tool_name}.
 *   logprobs        logprobs:true and top_logprobs:N at the top level.
 *   logit_bias      Ollama has no such setting: refused (501 naming logit_bias).
 *
 * Generation is always streamed from upstream, even when the caller wants the
 * whole answer, so cancellation works mid-answer. The stream is NDJSON: one
 * object per line, the piece in "response" (generate) or "message.content"
 * (chat); the last line has done:true with context, counts, durations (ns)
 * and done_reason. A line {"error": "..."} is an upstream failure. Pieces are
 * JSON strings, which jansson only accepts as whole UTF-8, so a piece never
 * ends inside a character.
 *
 * Answers: a line's logprobs ([{token, logprob, bytes, top_logprobs}], the
 * result's own shape) go to on_logprobs before its piece goes to on_token,
 * and into the result. message.tool_calls [{id?, function:{index?, name,
 * arguments: object}}] come whole, each in one line: a call becomes a result
 * call (arguments as compact JSON text, an id made up when Ollama sends
 * none) and, while streaming, three on_tool events (id and name, the whole
 * arguments, done). A call without a name is skipped with a warning in the
 * log; arguments that are a string are taken as they are. With calls the
 * done_reason is "tool_calls". */
#include <stdio.h>
#include <string.h>

#include "backend/ollama.h"
#include "backend/remote.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "core/valid.h"

#define MAX_CONTEXT_IDS (1 << 24)

typedef struct {
    httpc *http;
    httpc_timeouts t;
} ollama;

/* ---- request bodies ---- */

static json_t *options_json(const backend_gen_req *r) {
    json_t *o = json_object();
    json_object_set_new(o, "temperature", json_real(r->temperature));
    if (r->top_p > 0 && r->top_p < 1) json_object_set_new(o, "top_p", json_real(r->top_p));
    if (r->top_k > 0) json_object_set_new(o, "top_k", json_integer(r->top_k));
    if (r->min_p > 0) json_object_set_new(o, "min_p", json_real(r->min_p));
    if (r->repeat_penalty > 0 && r->repeat_penalty != 1) json_object_set_new(o, "repeat_penalty", json_real(r->repeat_penalty));
    if (r->presence_penalty != 0) json_object_set_new(o, "presence_penalty", json_real(r->presence_penalty));
    if (r->frequency_penalty != 0) json_object_set_new(o, "frequency_penalty", json_real(r->frequency_penalty));
    if (r->has_seed) json_object_set_new(o, "seed", json_integer((json_int_t)(r->seed & INT64_MAX)));
    if (r->max_tokens > 0) json_object_set_new(o, "num_predict", json_integer(r->max_tokens));
    if (r->num_ctx > 0) json_object_set_new(o, "num_ctx", json_integer(r->num_ctx));
    if (r->n_stop > 0) {
        json_t *s = json_array();
        for (int i = 0; i < r->n_stop && i < BACKEND_MAX_STOP; i++)
            if (r->stop[i]) json_array_append_new(s, json_string(r->stop[i]));
        json_object_set_new(o, "stop", s);
    }
    return o;
}

static json_t *b64_json(const unsigned char *p, size_t n) {
    char *s = smp_malloc(4 * ((n + 2) / 3) + 1);
    if (!s) return NULL;
    size_t len = util_b64_encode(p, n, s);
    json_t *j = json_stringn_nocheck(s, len);
    smp_free(s);
    return j;
}

static json_t *message_json(const char *role, const char *content, const backend_msg *m) {
    json_t *o = json_object();
    json_object_set_new(o, "role", json_string(role ? role : "user"));
    json_object_set_new(o, "content", json_string(content ? content : ""));
    if (m && m->n_images > 0) {
        json_t *imgs = json_array();
        for (int i = 0; i < m->n_images; i++) {
            json_t *s = b64_json(m->images[i], m->image_lens[i]);
            if (!s) {
                json_decref(imgs);
                json_decref(o);
                return NULL;
            }
            json_array_append_new(imgs, s);
        }
        json_object_set_new(o, "images", imgs);
    }
    if (m && m->tool_name) json_object_set_new(o, "tool_name", json_string(m->tool_name));
    return o;
}

/* An assistant message's calls as Ollama takes them: arguments an object,
 * parsed from the JSON text. 0, -SMP_E_BAD_REQUEST (err names the message
 * and call) or -SMP_E_NOMEM. */
static int history_calls(json_t *msg, const backend_msg *m, int at, char *err, size_t errlen) {
    json_t *calls = json_array();
    json_object_set_new(msg, "tool_calls", calls);
    for (int k = 0; k < m->n_tool_calls; k++) {
        const backend_tool_call *c = &m->tool_calls[k];
        const char *text = c->arguments && *c->arguments ? c->arguments : "{}";
        json_t *args = json_loads(text, 0, NULL);
        if (!json_is_object(args)) {
            json_decref(args);
            snprintf(err, errlen, "messages.%d.tool_calls.%d.function.arguments: not a JSON object, which Ollama "
                     "needs (got %.60s)", at, k, text);
            return -SMP_E_BAD_REQUEST;
        }
        json_t *call = json_pack("{s:{s:s,s:o}}", "function", "name", c->name ? c->name : "", "arguments", args);
        if (!call || json_array_append_new(calls, call) != 0) return -SMP_E_NOMEM;
    }
    return 0;
}

/* What Ollama cannot do: 0, or the code with err naming the field. */
static int refused(const backend_gen_req *r, char *err, size_t errlen) {
    if (r->grammar) {
        snprintf(err, errlen, "grammar: Ollama takes no GBNF grammar (model '%s' is served by Ollama); send a JSON "
                 "schema as response_format instead", r->model);
        return -SMP_E_BAD_REQUEST;
    }
    if (r->n_logit_bias > 0) {
        snprintf(err, errlen, "logit_bias: cannot be forwarded, Ollama has no logit bias (model '%s' is served by "
                 "Ollama)", r->model);
        return -SMP_E_NOT_IMPLEMENTED;
    }
    if (r->tool_choice == BACKEND_TOOLS_REQUIRED || r->tool_choice == BACKEND_TOOLS_NAMED) {
        snprintf(err, errlen, "tool_choice: '%s' cannot be forwarded, Ollama has no tool_choice (model '%s' is "
                 "served by Ollama); use 'auto' or 'none'",
                 r->tool_choice == BACKEND_TOOLS_REQUIRED ? "required" : r->tool_choice_name ? r->tool_choice_name : "",
                 r->model);
        return -SMP_E_NOT_IMPLEMENTED;
    }
    if (r->n_tools == 0 || r->tool_choice == BACKEND_TOOLS_NONE) return 0;
    if (!r->parallel_tool_calls) {
        snprintf(err, errlen, "parallel_tool_calls: false cannot be forwarded, Ollama may answer with several "
                 "calls and has no setting to stop it (model '%s' is served by Ollama)", r->model);
        return -SMP_E_NOT_IMPLEMENTED;
    }
    for (int i = 0; i < r->n_tools; i++) {
        if (r->tools[i].strict) {
            snprintf(err, errlen, "tools.%d.function.strict: cannot be forwarded, Ollama does not hold a call's "
                     "arguments to its schema (model '%s' is served by Ollama)", i, r->model);
            return -SMP_E_NOT_IMPLEMENTED;
        }
    }
    return 0;
}

/* Ollama wants parameters on every tool: an empty object schema stands in
 * for a tool that takes any (or no) arguments. */
static json_t *tools_json(const backend_gen_req *r) {
    json_t *tools = remote_tools_json(r, false);
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        if (!json_object_get(fn, "parameters"))
            json_object_set_new(fn, "parameters", json_pack("{s:s,s:{}}", "type", "object", "properties"));
    }
    return tools;
}

/* The request body in *out. 0, or an error code with err set. */
static int gen_body(const backend_gen_req *r, bool chat, bool stream, json_t **out, char *err, size_t errlen) {
    json_t *o = json_object();
    *out = o;
    json_object_set_new(o, "model", json_string(r->model));
    if (chat) {
        json_t *msgs = json_array();
        json_object_set_new(o, "messages", msgs);
        if (r->system && r->system[0] && !(r->n_messages > 0 && r->messages[0].role &&
                                            !strcmp(r->messages[0].role, "system")))
            json_array_append_new(msgs, message_json("system", r->system, NULL));
        for (int i = 0; i < r->n_messages; i++) {
            const backend_msg *bm = &r->messages[i];
            json_t *m = message_json(bm->role, bm->content, bm);
            if (!m || json_array_append_new(msgs, m) != 0) return -SMP_E_NOMEM;
            if (bm->n_tool_calls > 0) {
                int rc = history_calls(m, bm, i, err, errlen);
                if (rc) return rc;
            }
        }
        if (r->n_tools > 0 && r->tool_choice != BACKEND_TOOLS_NONE) {
            json_t *tools = tools_json(r);
            if (!tools) return -SMP_E_NOMEM;
            json_object_set_new(o, "tools", tools);
        }
    } else {
        json_object_set_new(o, "prompt", json_string(r->prompt ? r->prompt : ""));
        if (r->system && r->system[0]) json_object_set_new(o, "system", json_string(r->system));
        if (r->n_context > 0) {
            json_t *c = json_array();
            for (int i = 0; i < r->n_context; i++) json_array_append_new(c, json_integer(r->context[i]));
            json_object_set_new(o, "context", c);
        }
        if (r->raw) json_object_set_new(o, "raw", json_true());
    }
    /* Without a token callback nobody needs the pieces: one JSON answer is
     * cheaper for both sides (cancellation still works by dropping the
     * connection, which the upstream notices). */
    json_object_set_new(o, "stream", json_boolean(stream));
    json_object_set_new(o, "options", options_json(r));
    if (r->json_schema) json_object_set(o, "format", (json_t *)r->json_schema);
    else if (r->json_object) json_object_set_new(o, "format", json_string("json"));
    if (r->logprobs) {
        json_object_set_new(o, "logprobs", json_true());
        if (r->top_logprobs > 0) json_object_set_new(o, "top_logprobs", json_integer(r->top_logprobs));
    }
    return 0;
}

/* ---- the stream ---- */

typedef struct {
    bool chat;
    const backend_gen_req *req;
    backend_token_fn on_token;
    remote_tool_fn on_tool;         /* req's, while streaming; else NULL */
    remote_logprobs_fn on_logprobs; /* the same */
    void *ud;
    buf text;
    int pieces;
    bool done, cancelled;
    int code;   /* set when a line was bad or carried an error */
    char *err;
    size_t errlen;
    backend_gen_result *out;
} gen_ctx;

static uint64_t num_u64(json_t *j) {
    if (json_is_integer(j)) return json_integer_value(j) > 0 ? (uint64_t)json_integer_value(j) : 0;
    if (json_is_real(j)) return json_real_value(j) > 0 ? (uint64_t)json_real_value(j) : 0;
    return 0;
}

static int invalid(gen_ctx *g, const char *what, const char *line, size_t len) {
    snprintf(g->err, g->errlen, "Backend error: ollama sent an invalid response: %s (in: %.*s)", what,
             (int)(len > 80 ? 80 : len), line);
    g->code = -SMP_E_BACKEND;
    return -1;
}

static int out_of_memory(gen_ctx *g) {
    snprintf(g->err, g->errlen, "ollama: out of memory");
    g->code = -SMP_E_NOMEM;
    return -1;
}

static int final_line(gen_ctx *g, json_t *j, const char *line, size_t len) {
    backend_gen_result *o = g->out;
    o->prompt_tokens = (int)num_u64(json_object_get(j, "prompt_eval_count"));
    o->completion_tokens = (int)num_u64(json_object_get(j, "eval_count"));
    o->total_ns = num_u64(json_object_get(j, "total_duration"));
    o->load_ns = num_u64(json_object_get(j, "load_duration"));
    o->prompt_ns = num_u64(json_object_get(j, "prompt_eval_duration"));
    o->eval_ns = num_u64(json_object_get(j, "eval_duration"));
    o->done_reason = remote_done_reason(o, json_string_value(json_object_get(j, "done_reason")));
    json_t *ctx = json_object_get(j, "context");
    size_t n = json_array_size(ctx);
    if (n > 0) {
        if (n > MAX_CONTEXT_IDS) return invalid(g, "context too long", line, len);
        o->context = smp_malloc(n * sizeof *o->context);
        if (!o->context) return out_of_memory(g);
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(ctx, i);
            if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
                return invalid(g, "context holds a non-integer", line, len);
            o->context[i] = (int32_t)json_integer_value(v);
        }
        o->n_context = (int)n;
    }
    g->done = true;
    return 0;
}

/* A line's message.tool_calls: each call is whole. 0, 1 (on_tool said
 * stop) or -1 (g->code set). */
static int line_calls(gen_ctx *g, json_t *calls, const char *line, size_t len) {
    if (!calls || json_is_null(calls)) return 0;
    if (!json_is_array(calls)) return invalid(g, "\"tool_calls\" is not a list", line, len);
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        json_t *fn = json_object_get(c, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name || !*name) {
            log_warn("ollama: model '%s' answered with a tool call that has no name; it is left out (in: %.80s)",
                     g->req->model, line);
            continue;
        }
        json_t *args = json_object_get(fn, "arguments");
        buf text;
        buf_init(&text, 0);
        int rc = 0;
        if (json_is_string(args)) rc = buf_append(&text, json_string_value(args), json_string_length(args));
        else if (args && !json_is_null(args)) rc = valid_dump(args, JSON_COMPACT, &text);
        if (rc == 0) rc = buf_append(&text, "", 0);
        if (rc == 0)
            rc = remote_whole_call(g->on_tool, g->ud, g->out, json_string_value(json_object_get(c, "id")), name,
                                   text.data);
        buf_free(&text);
        if (rc < 0) return out_of_memory(g);
        if (rc > 0) {
            g->cancelled = true;
            return 1;
        }
    }
    return 0;
}

static int gen_line(void *ud, const char *line, size_t len) {
    gen_ctx *g = ud;
    if (g->done) return 0;
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
    if (i == len) return 0;
    json_error_t je;
    json_t *j = json_loadb(line, len, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return invalid(g, j ? "not an object" : je.text, line, len);
    }
    int rc = 0;
    json_t *e = json_object_get(j, "error");
    if (e) {
        const char *m = json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "message"));
        snprintf(g->err, g->errlen, "Backend error: ollama returned an error: %s", m ? m : "(no message)");
        g->code = -SMP_E_BACKEND;
        rc = -1;
        goto out;
    }
    json_t *msg = json_object_get(j, "message");
    json_t *piece = g->chat ? json_object_get(msg, "content") : json_object_get(j, "response");
    if (piece && !json_is_string(piece)) {
        rc = invalid(g, "the text is not a string", line, len);
        goto out;
    }
    json_t *lp = json_object_get(j, "logprobs");
    if (g->req->logprobs && json_is_array(lp)) {
        rc = remote_take_logprobs(g->on_logprobs, g->ud, remote_logprob_entries(lp), g->out);
        if (rc < 0) {
            rc = out_of_memory(g);
            goto out;
        }
        if (rc > 0) {
            g->cancelled = true;
            goto out;
        }
    }
    size_t plen = json_string_length(piece);
    if (plen > 0) {
        if (buf_append(&g->text, json_string_value(piece), plen) != 0) {
            rc = out_of_memory(g);
            goto out;
        }
        g->pieces++;
        if (g->on_token && g->on_token(g->ud, json_string_value(piece), plen) != 0) {
            g->cancelled = true;
            rc = 1;
            goto out;
        }
    }
    if (g->chat && (rc = line_calls(g, json_object_get(msg, "tool_calls"), line, len)) != 0) goto out;
    if (json_is_true(json_object_get(j, "done"))) rc = final_line(g, j, line, len);
out:
    json_decref(j);
    return rc;
}

static int ollama_generate(backend *b, const backend_gen_req *req, backend_token_fn on_token, void *ud,
                           backend_gen_result *out, char *err, size_t errlen) {
    ollama *s = b->state;
    memset(out, 0, sizeof *out);
    int rc = refused(req, err, errlen);
    if (rc) return rc;
    bool chat = req->messages != NULL;
    gen_ctx g = {.chat = chat, .req = req, .on_token = on_token, .on_tool = on_token ? req->on_tool : NULL,
                 .on_logprobs = on_token ? req->on_logprobs : NULL, .ud = ud, .err = err, .errlen = errlen, .out = out};
    buf_init(&g.text, 0);
    buf body;
    buf_init(&body, 0);
    httpc_resp resp = {0};
    uint64_t t0 = util_now_ns();
    json_t *j;
    rc = gen_body(req, chat, on_token != NULL, &j, err, errlen);
    if (rc == 0 && valid_dump(j, JSON_COMPACT, &body) != 0) rc = -SMP_E_NOMEM;
    json_decref(j);
    if (rc == -SMP_E_NOMEM) snprintf(err, errlen, "ollama: out of memory");
    if (rc) goto fail;
    httpc_req hr = {.path = chat ? "/api/chat" : "/api/generate", .body = body.data, .body_len = body.len,
                    .timeout_ms = s->t.generate_ms, .on_line = gen_line, .ud = &g,
                    .cancelled = req->cancelled, .cancel_ud = req->cancel_ud};
    rc = httpc_request(s->http, &hr, &resp, err, errlen);
    if (g.code) {
        rc = g.code;
        goto fail;
    }
    if (rc == HTTPC_ABORTED) {
        /* on_token or the caller's cancel check: keep what came so far. */
        out->done_reason = "cancelled";
        out->completion_tokens = g.pieces;
        rc = BACKEND_CANCELLED;
    } else if (rc < 0) {
        goto fail;
    } else if (resp.status < 200 || resp.status >= 300) {
        rc = httpc_status_error(s->http, &resp, err, errlen);
        goto fail;
    } else if (!g.done) {
        snprintf(err, errlen, "Backend error: ollama stream ended before the answer was complete");
        rc = -SMP_E_BACKEND;
        goto fail;
    }
    if (!out->total_ns) out->total_ns = util_now_ns() - t0;
    /* The append makes sure even an empty text is allocated and terminated. */
    if (buf_append(&g.text, "", 0) == 0) out->text = buf_detach(&g.text, &out->text_len);
    if (!out->text) {
        snprintf(err, errlen, "ollama: out of memory");
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    buf_free(&body);
    httpc_resp_free(&resp);
    return rc;
fail:
    buf_free(&g.text);
    buf_free(&body);
    httpc_resp_free(&resp);
    backend_gen_result_free(out);
    memset(out, 0, sizeof *out);
    return rc;
}

/* ---- embeddings ---- */

static int ollama_embed(backend *b, const backend_embed_req *req, backend_embed_result *out, char *err,
                        size_t errlen) {
    ollama *s = b->state;
    const char *model = req->model;
    const char *const *texts = req->texts;
    int n = req->n;
    memset(out, 0, sizeof *out);
    out->bad_input = -1;
    if (n <= 0) return 0;
    buf body;
    httpc_resp resp = {0};
    json_t *parsed = NULL;
    float *v = NULL;
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(model));
    json_t *in = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(in, json_string(texts[i] ? texts[i] : ""));
    json_object_set_new(j, "input", in);
    buf_init(&body, 0);
    int rc = valid_dump(j, JSON_COMPACT, &body);
    json_decref(j);
    if (rc != 0) {
        snprintf(err, errlen, "ollama: out of memory");
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    httpc_req hr = {.path = "/api/embed", .body = body.data, .body_len = body.len, .timeout_ms = s->t.embed_ms,
                   .cancelled = req->cancelled, .cancel_ud = req->cancel_ud};
    rc = httpc_request(s->http, &hr, &resp, err, errlen);
    if (rc == HTTPC_ABORTED) {
        snprintf(err, errlen, "%s: embeddings cancelled", httpc_name(s->http));
        rc = BACKEND_CANCELLED;
        goto fail;
    }
    if (rc < 0) goto fail;
    if (resp.status < 200 || resp.status >= 300) {
        rc = httpc_status_error(s->http, &resp, err, errlen);
        goto fail;
    }
    json_error_t je;
    parsed = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &je);
    json_t *embs = json_object_get(parsed, "embeddings");
    rc = -SMP_E_BACKEND;
    if (!parsed) {
        snprintf(err, errlen, "Backend error: ollama sent an invalid response: %s", je.text);
        goto fail;
    }
    if (!json_is_array(embs) || json_array_size(embs) != (size_t)n) {
        snprintf(err, errlen, "Backend error: ollama sent an invalid response: expected %d embeddings", n);
        goto fail;
    }
    size_t d = json_array_size(json_array_get(embs, 0));
    if (d == 0 || d > (1u << 20)) {
        snprintf(err, errlen, "Backend error: ollama sent an invalid response: embedding of %zu dimensions", d);
        goto fail;
    }
    v = smp_malloc((size_t)n * d * sizeof *v);
    if (!v) {
        snprintf(err, errlen, "ollama: out of memory");
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(embs, (size_t)i);
        if (!json_is_array(e) || json_array_size(e) != d) {
            snprintf(err, errlen, "Backend error: ollama sent an invalid response: embeddings differ in size");
            goto fail;
        }
        for (size_t k = 0; k < d; k++) {
            json_t *x = json_array_get(e, k);
            if (!json_is_number(x)) {
                snprintf(err, errlen, "Backend error: ollama sent an invalid response: an embedding holds a non-number");
                goto fail;
            }
            v[(size_t)i * d + k] = (float)json_number_value(x);
        }
    }
    out->prompt_tokens = (int)num_u64(json_object_get(parsed, "prompt_eval_count"));
    out->vecs = v;
    out->dim = (int)d;
    json_decref(parsed);
    buf_free(&body);
    httpc_resp_free(&resp);
    return 0;
fail:
    smp_free(v);
    json_decref(parsed);
    buf_free(&body);
    httpc_resp_free(&resp);
    return rc;
}

/* ---- models and health ---- */

/* GET a JSON object. */
static int get_json(ollama *s, const char *path, long timeout_ms, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    httpc_resp resp;
    httpc_req hr = {.path = path, .timeout_ms = timeout_ms, .max_body = 64u << 20};
    int rc = httpc_request(s->http, &hr, &resp, err, errlen);
    if (rc == 0 && (resp.status < 200 || resp.status >= 300)) rc = httpc_status_error(s->http, &resp, err, errlen);
    if (rc == 0) {
        json_error_t je;
        *out = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &je);
        if (!json_is_object(*out)) {
            snprintf(err, errlen, "Backend error: ollama sent an invalid response: %s",
                     *out ? "not an object" : je.text);
            json_decref(*out);
            *out = NULL;
            rc = -SMP_E_BACKEND;
        }
    }
    httpc_resp_free(&resp);
    return rc;
}

static int ollama_list_models(backend *b, json_t **out, char *err, size_t errlen) {
    ollama *s = b->state;
    *out = NULL;
    json_t *tags;
    int rc = get_json(s, "/api/tags", s->t.list_ms, &tags, err, errlen);
    if (rc != 0) return rc;
    json_t *models = json_object_get(tags, "models");
    if (!json_is_array(models)) {
        snprintf(err, errlen, "Backend error: ollama sent an invalid response: no \"models\" list");
        json_decref(tags);
        return -SMP_E_BACKEND;
    }
    json_t *list = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (!name) name = json_string_value(json_object_get(m, "model"));
        if (!name) continue;
        json_t *details = json_object_get(m, "details");
        const char *family = json_string_value(json_object_get(details, "family"));
        json_t *e = json_object();
        json_object_set_new(e, "name", json_string(name));
        json_object_set_new(e, "size", json_integer((json_int_t)num_u64(json_object_get(m, "size"))));
        const char *mod = json_string_value(json_object_get(m, "modified_at"));
        json_object_set_new(e, "modified_at", json_string(mod ? mod : ""));
        const char *dig = json_string_value(json_object_get(m, "digest"));
        json_object_set_new(e, "digest", json_string(dig ? dig : ""));
        json_object_set_new(e, "kind", json_string(httpc_model_kind(name, family)));
        json_object_set_new(e, "backend", json_string("ollama"));
        if (json_is_object(details)) json_object_set(e, "details", details);
        json_array_append_new(list, e);
    }
    json_decref(tags);
    *out = list;
    return 0;
}

static int ollama_has_model(backend *b, const char *model) {
    json_t *list;
    char err[256];
    if (ollama_list_models(b, &list, err, sizeof err) != 0) return -1;
    size_t ml = strlen(model), i;
    json_t *m;
    int found = 0;
    json_array_foreach(list, i, m) {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (!strcmp(n, model) || (!strchr(model, ':') && !strncmp(n, model, ml) && !strcmp(n + ml, ":latest"))) {
            found = 1;
            break;
        }
    }
    json_decref(list);
    return found;
}

static bool ollama_health(backend *b, json_t **out) {
    ollama *s = b->state;
    char err[512] = "";
    json_t *v;
    int rc = get_json(s, "/api/version", s->t.health_ms, &v, err, sizeof err);
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string(rc == 0 ? "healthy" : "down"));
    json_object_set_new(o, "url", json_string(httpc_base_url(s->http)));
    if (rc == 0) {
        json_t *ver = json_object_get(v, "version");
        if (json_is_string(ver)) json_object_set(o, "version", ver);
        json_decref(v);
    } else {
        json_object_set_new(o, "detail", json_string(err));
    }
    *out = o;
    return rc == 0;
}

static void ollama_destroy(backend *b) {
    if (!b) return;
    ollama *s = b->state;
    if (s) httpc_free(s->http);
    smp_free(s);
    smp_free(b);
}

static const backend_ops ollama_ops = {
    .name = "ollama",
    .generate = ollama_generate,
    .embed = ollama_embed,
    .list_models = ollama_list_models,
    .has_model = ollama_has_model,
    .health = ollama_health,
    .destroy = ollama_destroy,
};

backend *ollama_backend_new(const char *base_url, const char *api_key, char *err, size_t errlen) {
    backend *b = smp_calloc(1, sizeof *b);
    ollama *s = smp_calloc(1, sizeof *s);
    if (!b || !s) {
        smp_free(b);
        smp_free(s);
        snprintf(err, errlen, "ollama: out of memory");
        return NULL;
    }
    b->ops = &ollama_ops;
    b->state = s;
    s->t = HTTPC_TIMEOUTS_DEFAULT;
    s->http = httpc_new("ollama", base_url, api_key && *api_key ? api_key : NULL, err, errlen);
    if (!s->http) {
        ollama_destroy(b);
        return NULL;
    }
    httpc_set_connect_timeout(s->http, s->t.connect_ms);
    return b;
}

void ollama_backend_set_timeouts(backend *b, const httpc_timeouts *t) {
    ollama *s = b->state;
    s->t = *t;
    httpc_set_connect_timeout(s->http, t->connect_ms);
}
