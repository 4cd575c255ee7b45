/* openai.c - the OpenAI-compatible backend: forwards chat, completions,
 * embeddings and the model list to any server that speaks OpenAI's API
 * (OpenAI, vLLM, llama.cpp server, LM Studio, Ollama's /v1, ...).
 *
 * Data structure: the backend state is an httpc (base URL with its /v1
 * prefix, bearer key, pool of curl handles) and the timeouts; a generation
 * keeps its parse state (gen_ctx) on the caller's stack.
 *
 * Requests:
 *   chat      POST /chat/completions {model, messages, stream:true,
 *             stream_options:{include_usage:true}, temperature, top_p?,
 *             max_tokens?, stop?, seed?, presence_penalty?, frequency_penalty?,
 *             top_k? min_p? repeat_penalty? (extensions that llama.cpp and
 *             vLLM read, sent only when set)}. A message with images becomes
 *             content parts: [{"type":"text","text":...},
 *             {"type":"image_url","image_url":{"url":"data:<mime>;base64,..."}}].
 *             req->system becomes a leading system message unless the
 *             messages already start with one.
 *             Tools (chat): tools:[{type:"function", function:{name,
 *             description?, parameters?, strict? (only when true)}}], and with
 *             them tool_choice ("none" | "auto" | "required" |
 *             {type:"function", function:{name}}) and parallel_tool_calls.
 *             History: an assistant message's calls become tool_calls:[{id,
 *             type:"function", function:{name, arguments: the JSON text as a
 *             string}}] (content null when it has no text); a call without an
 *             id (from a dialect that has none) gets "call_<message>_<call>",
 *             the same each time the conversation is sent. A tool message
 *             becomes {role:"tool", tool_call_id, content}; one without an id
 *             answers the first call of its tool_name (any, in order, when it
 *             names none) in the nearest assistant message before it not
 *             answered yet, and with no such call it is refused (400).
 *             logprobs:true, top_logprobs:N (when N > 0).
 *   generate  POST /completions {model, prompt, ...same options}; req->system
 *             is put before the prompt, separated by a blank line; context
 *             token ids have no OpenAI equivalent: a request with them is
 *             refused (400 naming `context`), not answered without them.
 *             logprobs:N (the legacy route's one number: N alternatives).
 *             Both: logit_bias:{"<token id>": bias}.
 *   embed     POST /embeddings {model, input:[...], encoding_format:"float"}
 *             -> data[i].embedding placed by data[i].index
 *   models    GET /models -> data[].id (kind guessed from the id)
 *   health    GET /models
 *
 * The stream is SSE: "data: {json}" lines, blank lines between events,
 * "data: [DONE]" at the end; other fields (event:, id:, comments) are
 * ignored. Pieces come from choices[0].delta.content (chat) or
 * choices[0].text (completions); finish_reason "length" maps to "length";
 * usage (prompt_tokens, completion_tokens) comes from the chunk that carries
 * it. The answer is complete at [DONE] or after a finish_reason. A server
 * that ignores stream:true and sends one JSON answer is understood too
 * (choices[0].message.content / choices[0].text, delivered as one piece). Durations
 * are measured here: prompt_ns is the time to the first piece, eval_ns the
 * rest.
 *
 * Tool calls in the answer: choices[0].delta.tool_calls pieces [{index, id,
 * function:{name, arguments}}] (the first piece of a call has its id and
 * name, later ones pieces of the arguments text) or, whole,
 * choices[0].message.tool_calls. A call becomes on_tool events as it comes
 * (the first once its name is known, with the arguments seen so far; then
 * each piece) and is done when the next index starts, a finish_reason
 * arrives or the stream ends; then it joins the result's tool_calls. The
 * arguments are kept as the upstream wrote them, valid JSON or not (the
 * client sees what the model produced); a call that never got a name is left
 * out, with a warning in the log. With calls the done_reason is "tool_calls"
 * (finish_reason "length" stays "length").
 *
 * Log probabilities (when asked for): choices[0].logprobs, chat {content:
 * [{token, logprob, bytes, top_logprobs}]} or completions' legacy {tokens,
 * token_logprobs, top_logprobs:[{token: logprob}], text_offset}, both turned
 * into the result's entries (remote.h); while streaming a chunk's entries
 * go to on_logprobs before its text goes to on_token. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backend/openai.h"
#include "backend/remote.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "core/valid.h"
#include "media/image.h"

typedef struct {
    httpc *http;
    httpc_timeouts t;
} openai;

/* ---- request bodies ---- */

static json_t *image_part(const unsigned char *p, size_t n) {
    const char *mime = image_mime(image_detect(p, n));
    if (!mime) mime = "application/octet-stream"; /* the routes probe images, so not expected */
    size_t pre = strlen("data:") + strlen(mime) + strlen(";base64,");
    char *url = smp_malloc(pre + 4 * ((n + 2) / 3) + 1);
    if (!url) return NULL;
    snprintf(url, pre + 1, "data:%s;base64,", mime);
    size_t len = pre + util_b64_encode(p, n, url + pre);
    json_t *part = json_object();
    json_t *iu = json_object();
    json_object_set_new(iu, "url", json_stringn_nocheck(url, len));
    json_object_set_new(part, "type", json_string("image_url"));
    json_object_set_new(part, "image_url", iu);
    smp_free(url);
    return part;
}

static json_t *message_json(const char *role, const char *content, const backend_msg *m) {
    json_t *o = json_object();
    json_object_set_new(o, "role", json_string(role ? role : "user"));
    if (!m || m->n_images <= 0) {
        bool calls_only = m && m->n_tool_calls > 0 && !(content && content[0]);
        json_object_set_new(o, "content", calls_only ? json_null() : json_string(content ? content : ""));
        return o;
    }
    json_t *parts = json_array();
    json_object_set_new(o, "content", parts);
    if (content && content[0]) {
        json_t *t = json_object();
        json_object_set_new(t, "type", json_string("text"));
        json_object_set_new(t, "text", json_string(content));
        json_array_append_new(parts, t);
    }
    for (int i = 0; i < m->n_images; i++) {
        json_t *p = image_part(m->images[i], m->image_lens[i]);
        if (!p) {
            json_decref(o);
            return NULL;
        }
        json_array_append_new(parts, p);
    }
    return o;
}

/* The id a history call travels under: its own, or (a call from a dialect
 * without ids) one made from its place, the same every time the
 * conversation is sent. */
static const char *history_call_id(const backend_gen_req *r, int msg, int call, char *tmp, size_t len) {
    const char *id = r->messages[msg].tool_calls[call].id;
    if (id && *id) return id;
    snprintf(tmp, len, "call_%d_%d", msg, call);
    return tmp;
}

static json_t *history_calls(const backend_gen_req *r, int msg) {
    const backend_msg *m = &r->messages[msg];
    json_t *calls = json_array();
    for (int k = 0; calls && k < m->n_tool_calls; k++) {
        char tmp[40];
        const backend_tool_call *c = &m->tool_calls[k];
        json_t *call = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", history_call_id(r, msg, k, tmp, sizeof tmp), "type",
                                 "function", "function", "name", c->name ? c->name : "", "arguments",
                                 c->arguments && *c->arguments ? c->arguments : "{}");
        if (!call || json_array_append_new(calls, call) != 0) {
            json_decref(calls);
            return NULL;
        }
    }
    return calls;
}

/* tool_call_id for the tool message at msg. A message from a dialect
 * without ids (Ollama's carries tool_name) answers a call of the nearest
 * assistant message before it: the first call of that name not answered by
 * an earlier tool message (any call, in order, when it names none). NULL
 * when there is no such call. */
static const char *tool_result_id(const backend_gen_req *r, int msg, char *tmp, size_t len) {
    const backend_msg *m = &r->messages[msg];
    if (m->tool_call_id && *m->tool_call_id) return m->tool_call_id;
    int a = msg - 1;
    while (a >= 0 && r->messages[a].n_tool_calls == 0) a--;
    if (a < 0) return NULL;
    int skip = 0; /* earlier answers to the same name */
    for (int i = a + 1; i < msg; i++) {
        const backend_msg *t = &r->messages[i];
        if (!(t->tool_call_id && *t->tool_call_id) &&
            (!m->tool_name || (t->tool_name && !strcmp(t->tool_name, m->tool_name))))
            skip++;
    }
    const backend_msg *asst = &r->messages[a];
    for (int k = 0; k < asst->n_tool_calls; k++) {
        const char *name = asst->tool_calls[k].name;
        if (m->tool_name && !(name && !strcmp(name, m->tool_name))) continue;
        if (skip-- == 0) return history_call_id(r, a, k, tmp, len);
    }
    return NULL;
}

/* One history message. 0, -SMP_E_BAD_REQUEST (err set) or -SMP_E_NOMEM. */
static int history_message(const backend_gen_req *r, int i, json_t *msgs, char *err, size_t errlen) {
    const backend_msg *bm = &r->messages[i];
    json_t *m = message_json(bm->role, bm->content, bm);
    if (!m || json_array_append_new(msgs, m) != 0) return -SMP_E_NOMEM;
    if (bm->n_tool_calls > 0) {
        json_t *calls = history_calls(r, i);
        if (!calls) return -SMP_E_NOMEM;
        json_object_set_new(m, "tool_calls", calls);
    }
    if (bm->role && !strcmp(bm->role, "tool")) {
        char tmp[40];
        const char *id = tool_result_id(r, i, tmp, sizeof tmp);
        if (!id) {
            snprintf(err, errlen, "messages[%d]: a tool result that answers no earlier tool call (tool_call_id "
                     "missing; the OpenAI-compatible backend needs one)", i);
            return -SMP_E_BAD_REQUEST;
        }
        json_object_set_new(m, "tool_call_id", json_string(id));
    }
    return 0;
}

static json_t *tool_choice_json(const backend_gen_req *r) {
    switch (r->tool_choice) {
    case BACKEND_TOOLS_NONE: return json_string("none");
    case BACKEND_TOOLS_REQUIRED: return json_string("required");
    case BACKEND_TOOLS_NAMED:
        return json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name",
                         r->tool_choice_name ? r->tool_choice_name : "");
    default: return json_string("auto");
    }
}

/* The request body in *out (owned by the caller even on failure). 0, or an
 * error code with err set. */
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
            int rc = history_message(r, i, msgs, err, errlen);
            if (rc) return rc;
        }
        if (r->n_tools > 0) {
            json_t *tools = remote_tools_json(r, true);
            if (!tools) return -SMP_E_NOMEM;
            json_object_set_new(o, "tools", tools);
            json_object_set_new(o, "tool_choice", tool_choice_json(r));
            json_object_set_new(o, "parallel_tool_calls", json_boolean(r->parallel_tool_calls));
        }
        if (r->logprobs) {
            json_object_set_new(o, "logprobs", json_true());
            if (r->top_logprobs > 0) json_object_set_new(o, "top_logprobs", json_integer(r->top_logprobs));
        }
    } else {
        const char *p = r->prompt ? r->prompt : "";
        if (r->system && r->system[0]) {
            buf b;
            buf_init(&b, 0);
            if (buf_printf(&b, "%s\n\n%s", r->system, p) != 0) {
                buf_free(&b);
                return -SMP_E_NOMEM;
            }
            json_object_set_new(o, "prompt", json_string(b.data));
            buf_free(&b);
        } else {
            json_object_set_new(o, "prompt", json_string(p));
        }
        /* The legacy route takes one number: how many alternatives per token. */
        if (r->logprobs) json_object_set_new(o, "logprobs", json_integer(r->top_logprobs));
    }
    if (r->n_logit_bias > 0) {
        json_t *lb = json_object();
        for (int i = 0; i < r->n_logit_bias; i++) {
            char key[16];
            snprintf(key, sizeof key, "%d", (int)r->logit_bias[i].id);
            json_object_set_new(lb, key, json_real(r->logit_bias[i].bias));
        }
        json_object_set_new(o, "logit_bias", lb);
    }
    /* Without a token callback one whole answer is cheaper for both sides. */
    json_object_set_new(o, "stream", json_boolean(stream));
    if (stream) {
        json_t *so = json_object();
        json_object_set_new(so, "include_usage", json_true());
        json_object_set_new(o, "stream_options", so);
    }
    json_object_set_new(o, "temperature", json_real(r->temperature));
    if (r->top_p > 0 && r->top_p < 1) json_object_set_new(o, "top_p", json_real(r->top_p));
    if (r->max_tokens > 0) json_object_set_new(o, "max_tokens", json_integer(r->max_tokens));
    if (r->has_seed) json_object_set_new(o, "seed", json_integer((json_int_t)(r->seed & INT64_MAX)));
    if (r->presence_penalty != 0) json_object_set_new(o, "presence_penalty", json_real(r->presence_penalty));
    if (r->frequency_penalty != 0) json_object_set_new(o, "frequency_penalty", json_real(r->frequency_penalty));
    if (r->top_k > 0) json_object_set_new(o, "top_k", json_integer(r->top_k));
    if (r->min_p > 0) json_object_set_new(o, "min_p", json_real(r->min_p));
    if (r->repeat_penalty > 0 && r->repeat_penalty != 1) json_object_set_new(o, "repeat_penalty", json_real(r->repeat_penalty));
    if (r->n_stop > 0) {
        json_t *s = json_array();
        for (int i = 0; i < r->n_stop && i < BACKEND_MAX_STOP; i++)
            if (r->stop[i]) json_array_append_new(s, json_string(r->stop[i]));
        json_object_set_new(o, "stop", s);
    }
    if (r->json_schema) {
        json_t *js = json_pack("{s:s,s:O,s:b}", "name", r->json_schema_name ? r->json_schema_name : "response", "schema",
                               (json_t *)r->json_schema, "strict", r->json_schema_strict);
        json_object_set_new(o, "response_format", json_pack("{s:s,s:o}", "type", "json_schema", "json_schema", js));
    } else if (r->json_object) {
        json_object_set_new(o, "response_format", json_pack("{s:s}", "type", "json_object"));
    }
    if (r->grammar) json_object_set_new(o, "grammar", json_string(r->grammar)); /* llama.cpp's server, vLLM-compatible ones */
    return 0;
}

/* ---- the stream ---- */

/* The tool call being put together from the stream's delta.tool_calls
 * pieces (or from a whole answer's message.tool_calls, one entry at a time). */
typedef struct {
    int index;     /* the upstream's index of the call; -1: none open */
    buf id, name, args;
    bool started;  /* its first on_tool event went out */
} call_asm;

typedef struct {
    bool chat;
    const backend_gen_req *req;
    backend_token_fn on_token;
    remote_tool_fn on_tool;         /* req's, while streaming; else NULL */
    remote_logprobs_fn on_logprobs; /* the same */
    void *ud;
    buf text;
    int pieces;
    bool finished; /* a finish_reason arrived */
    bool done;     /* [DONE] arrived */
    bool cancelled;
    int events;    /* "data:" lines seen */
    buf plain;     /* other lines while no event came: a server that ignored stream:true */
    call_asm call;
    const char *reason; /* the upstream's finish_reason, mapped (static) */
    int code;
    char *err;
    size_t errlen;
    uint64_t t0, first_ns;
    backend_gen_result *out;
} gen_ctx;

static void call_asm_free(call_asm *c) {
    buf_free(&c->id);
    buf_free(&c->name);
    buf_free(&c->args);
}

static int invalid(gen_ctx *g, const char *what, const char *line, size_t len) {
    snprintf(g->err, g->errlen, "Backend error: openai sent an invalid response: %s (in: %.*s)", what,
             (int)(len > 80 ? 80 : len), line);
    g->code = -SMP_E_BACKEND;
    return -1;
}

static int out_of_memory(gen_ctx *g) {
    snprintf(g->err, g->errlen, "openai: out of memory");
    g->code = -SMP_E_NOMEM;
    return -1;
}

static int json_int(json_t *j) {
    if (json_is_integer(j) && json_integer_value(j) > 0 && json_integer_value(j) < INT32_MAX)
        return (int)json_integer_value(j);
    return 0;
}

/* ---- tool calls ---- */

static int tool_event(gen_ctx *g, const backend_tool_event *e) {
    if (!g->on_tool || g->on_tool(g->ud, e) == 0) return 0;
    g->cancelled = true;
    return 1;
}

/* Send the open call's first event (and the arguments that came before its
 * name) once its name is known. */
static int call_start(gen_ctx *g) {
    call_asm *c = &g->call;
    if (c->started || c->name.len == 0 || !g->on_tool) return 0;
    if (c->id.len == 0) {
        char made[40];
        backend_call_id(made, sizeof made);
        if (buf_puts(&c->id, made) != 0) return out_of_memory(g);
    }
    c->started = true;
    int index = g->out->n_tool_calls;
    backend_tool_event first = {.index = index, .id = c->id.data, .name = c->name.data, .args = ""};
    if (tool_event(g, &first)) return 1;
    backend_tool_event args = {.index = index, .args = c->args.data ? c->args.data : "", .args_len = c->args.len};
    return c->args.len > 0 ? tool_event(g, &args) : 0;
}

/* The open call is complete: its done event, then into the result. A call
 * that never got a name cannot be answered and is left out (with a log
 * line); its arguments are kept as sent, valid JSON or not. */
static int call_finish(gen_ctx *g) {
    call_asm *c = &g->call;
    if (c->index < 0) return 0;
    int rc = 0;
    if (c->name.len == 0) {
        log_warn("openai: model '%s' answered with a tool call that has no name; it is left out", g->req->model);
    } else {
        if (c->started) {
            backend_tool_event done = {.index = g->out->n_tool_calls, .args = "", .done = true};
            rc = tool_event(g, &done);
        }
        if (buf_append(&c->id, "", 0) != 0 || buf_append(&c->args, "", 0) != 0 ||
            backend_result_add_call(g->out, c->id.data, c->name.data, c->args.data) != 0)
            rc = out_of_memory(g);
    }
    buf_reset(&c->id);
    buf_reset(&c->name);
    buf_reset(&c->args);
    c->started = false;
    c->index = -1;
    return rc;
}

/* One entry of delta.tool_calls (or of a whole message's tool_calls, with
 * whole_index its place). 0, 1 (stop) or -1. */
static int call_piece(gen_ctx *g, json_t *t, int whole_index, const char *line, size_t len) {
    call_asm *c = &g->call;
    if (!json_is_object(t)) return invalid(g, "a tool call is not an object", line, len);
    const char *id = json_string_value(json_object_get(t, "id"));
    json_t *ix = json_object_get(t, "index");
    int index = whole_index;
    if (index < 0) {
        /* Streamed: the index says which call a piece belongs to; a server
         * that sends none starts a new call with each new id. */
        if (json_is_integer(ix)) index = (int)json_integer_value(ix);
        else if (c->index < 0) index = 0;
        else index = id && c->id.len && strcmp(id, c->id.data) ? c->index + 1 : c->index;
    }
    if (index < c->index) return invalid(g, "a tool call's index went back", line, len);
    int rc;
    if (index != c->index) {
        if ((rc = call_finish(g)) != 0) return rc;
        c->index = index;
    }
    json_t *fn = json_object_get(t, "function");
    const char *name = json_string_value(json_object_get(fn, "name"));
    if (id && *id && !c->started) {
        buf_reset(&c->id);
        if (buf_puts(&c->id, id) != 0) return out_of_memory(g);
    }
    if (name && *name && !c->started) {
        buf_reset(&c->name);
        if (buf_puts(&c->name, name) != 0) return out_of_memory(g);
    }
    json_t *args = json_object_get(fn, "arguments");
    size_t from = c->args.len;
    if (json_is_string(args)) rc = buf_append(&c->args, json_string_value(args), json_string_length(args));
    else if (args && !json_is_null(args)) rc = valid_dump(args, JSON_COMPACT, &c->args); /* an object: some servers */
    else rc = 0;
    if (rc != 0) return out_of_memory(g);
    if (!c->started) return call_start(g);
    backend_tool_event piece = {.index = g->out->n_tool_calls, .args = c->args.data + from,
                                .args_len = c->args.len - from};
    return piece.args_len > 0 ? tool_event(g, &piece) : 0;
}

static int take_calls(gen_ctx *g, json_t *calls, bool whole, const char *line, size_t len) {
    if (!calls || json_is_null(calls)) return 0;
    if (!json_is_array(calls)) return invalid(g, "\"tool_calls\" is not a list", line, len);
    size_t i;
    json_t *t;
    json_array_foreach(calls, i, t) {
        int rc = call_piece(g, t, whole ? (int)i : -1, line, len);
        if (rc) return rc;
    }
    return 0;
}

/* ---- log probabilities ---- */

/* The legacy completions format {tokens, token_logprobs, top_logprobs:
 * [{token: logprob}], text_offset} as entries; the alternatives most likely
 * first. A new reference, NULL when out of memory. */
static int by_logprob(const void *a, const void *b) {
    double x = json_number_value(json_object_get(*(json_t *const *)a, "logprob"));
    double y = json_number_value(json_object_get(*(json_t *const *)b, "logprob"));
    return x < y ? 1 : x > y ? -1 : 0;
}

static json_t *legacy_entries(json_t *lp) {
    json_t *tokens = json_object_get(lp, "tokens");
    json_t *lps = json_object_get(lp, "token_logprobs");
    json_t *tops = json_object_get(lp, "top_logprobs");
    json_t *out = json_array();
    for (size_t i = 0; out && i < json_array_size(tokens); i++) {
        const char *tok = json_string_value(json_array_get(tokens, i));
        if (!tok) continue;
        json_t *lpv = json_array_get(lps, i);
        json_t *top = json_array(); /* [{token, logprob}] from the object, sorted */
        const char *k;
        json_t *v;
        json_object_foreach(json_array_get(tops, i), k, v) {
            json_array_append_new(top, json_pack("{s:s,s:O}", "token", k, "logprob", v));
        }
        size_t n = json_array_size(top);
        json_t **items = n ? smp_malloc(n * sizeof *items) : NULL;
        if (n && !items) {
            json_decref(top);
            json_decref(out);
            return NULL;
        }
        for (size_t j = 0; j < n; j++) items[j] = json_incref(json_array_get(top, j));
        if (n) qsort(items, n, sizeof *items, by_logprob);
        json_array_clear(top);
        for (size_t j = 0; j < n; j++) json_array_append_new(top, items[j]);
        smp_free(items);
        json_t *e = remote_logprob_entry(tok, json_is_number(lpv) ? json_number_value(lpv) : -9999.0, NULL, top);
        json_decref(top);
        if (!e || json_array_append_new(out, e) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* A choice's logprobs, when they were asked for: chat {content: [entries]}
 * or the completions legacy format. 0, 1 (stop) or -1. */
static int take_logprobs(gen_ctx *g, json_t *lp) {
    if (!g->req->logprobs || !json_is_object(lp)) return 0;
    json_t *entries = g->chat ? remote_logprob_entries(json_object_get(lp, "content")) : legacy_entries(lp);
    int rc = remote_take_logprobs(g->on_logprobs, g->ud, entries, g->out);
    if (rc < 0) return out_of_memory(g);
    if (rc > 0) g->cancelled = true;
    return rc;
}

/* One chunk of the stream (whole = false) or a whole non-streamed answer. */
static int handle_json(gen_ctx *g, json_t *j, bool whole, const char *line, size_t len) {
    json_t *e = json_object_get(j, "error");
    if (e) {
        const char *m = json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "message"));
        snprintf(g->err, g->errlen, "Backend error: openai returned an error: %s", m ? m : "(no message)");
        g->code = -SMP_E_BACKEND;
        return -1;
    }
    json_t *usage = json_object_get(j, "usage");
    if (json_is_object(usage)) {
        g->out->prompt_tokens = json_int(json_object_get(usage, "prompt_tokens"));
        g->out->completion_tokens = json_int(json_object_get(usage, "completion_tokens"));
        g->out->cached_tokens = json_int(json_object_get(json_object_get(usage, "prompt_tokens_details"), "cached_tokens"));
        if (g->out->cached_tokens > g->out->prompt_tokens) g->out->cached_tokens = g->out->prompt_tokens;
    }
    json_t *choices = json_object_get(j, "choices");
    if (choices && !json_is_array(choices)) return invalid(g, "\"choices\" is not a list", line, len);
    json_t *c0 = json_array_get(choices, 0);
    if (!c0) return whole ? invalid(g, "no choices", line, len) : 0; /* the usage chunk has no choices */
    json_t *msg = g->chat ? json_object_get(c0, whole ? "message" : "delta") : NULL;
    json_t *piece = !g->chat ? json_object_get(c0, "text") : json_object_get(msg, "content");
    if (piece && !json_is_null(piece) && !json_is_string(piece)) return invalid(g, "the text is not a string", line, len);
    int rc = take_logprobs(g, json_object_get(c0, "logprobs"));
    if (rc) return rc;
    size_t plen = json_string_length(piece);
    if (plen > 0) {
        if (!g->first_ns) g->first_ns = util_now_ns();
        if (buf_append(&g->text, json_string_value(piece), plen) != 0) return out_of_memory(g);
        g->pieces++;
        if (g->on_token && g->on_token(g->ud, json_string_value(piece), plen) != 0) {
            g->cancelled = true;
            return 1;
        }
    }
    if (g->chat && (rc = take_calls(g, json_object_get(msg, "tool_calls"), whole, line, len)) != 0) return rc;
    const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
    if (fr || whole) {
        g->finished = true;
        g->reason = fr && !strcmp(fr, "length") ? "length" : "stop";
        return call_finish(g);
    }
    return 0;
}

static int sse_line(void *ud, const char *line, size_t len) {
    gen_ctx *g = ud;
    if (g->done) return 0;
    if (strncmp(line, "data:", 5)) {
        /* blank, event:, id:, retry:, ": comment"; anything else may be a
         * plain JSON answer from a server that does not stream. */
        bool sse = len == 0 || line[0] == ':' || !strncmp(line, "event:", 6) || !strncmp(line, "id:", 3) ||
                   !strncmp(line, "retry:", 6);
        if (!sse && g->events == 0 && (buf_append(&g->plain, line, len) != 0 || buf_putc(&g->plain, '\n') != 0))
            return invalid(g, "answer too long", line, len);
        return 0;
    }
    g->events++;
    const char *d = line + 5;
    size_t dl = len - 5;
    while (dl > 0 && (*d == ' ' || *d == '\t')) d++, dl--;
    if (dl == 6 && !memcmp(d, "[DONE]", 6)) {
        g->done = true;
        return call_finish(g);
    }
    json_error_t je;
    json_t *j = json_loadb(d, dl, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return invalid(g, j ? "not an object" : je.text, line, len);
    }
    int rc = handle_json(g, j, false, line, len);
    json_decref(j);
    return rc;
}

/* The body had no SSE events: take it as one non-streamed answer. */
static int plain_answer(gen_ctx *g) {
    if (g->plain.len == 0) {
        snprintf(g->err, g->errlen, "Backend error: openai sent an invalid response: an empty body");
        g->code = -SMP_E_BACKEND;
        return -1;
    }
    json_error_t je;
    json_t *j = json_loadb(g->plain.data, g->plain.len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return invalid(g, j ? "not an object" : je.text, g->plain.data, g->plain.len);
    }
    int rc = handle_json(g, j, true, g->plain.data, g->plain.len);
    json_decref(j);
    return rc;
}

static int openai_generate(backend *b, const backend_gen_req *req, backend_token_fn on_token, void *ud,
                           backend_gen_result *out, char *err, size_t errlen) {
    openai *s = b->state;
    memset(out, 0, sizeof *out);
    if (req->n_context > 0) {
        /* Dropping them would answer as if the conversation started anew. */
        snprintf(err, errlen,
                 "context: token ids cannot be forwarded to the OpenAI-compatible backend (its API has no "
                 "equivalent); send the conversation as messages instead");
        return -SMP_E_BAD_REQUEST;
    }
    if (req->num_ctx > 0) {
        /* A smaller window cannot be set there, so the cap would be lost. */
        snprintf(err, errlen,
                 "options.num_ctx: a context window per request cannot be forwarded to the OpenAI-compatible backend "
                 "(its API has no equivalent); leave num_ctx out to use the upstream model's own context");
        return -SMP_E_BAD_REQUEST;
    }
    bool chat = req->messages != NULL;
    gen_ctx g = {.chat = chat, .req = req, .on_token = on_token, .on_tool = on_token ? req->on_tool : NULL,
                 .on_logprobs = on_token ? req->on_logprobs : NULL, .ud = ud, .err = err, .errlen = errlen,
                 .out = out, .t0 = util_now_ns(), .call = {.index = -1}};
    buf_init(&g.text, 0);
    buf_init(&g.plain, 16u << 20);
    buf_init(&g.call.id, 0);
    buf_init(&g.call.name, 0);
    buf_init(&g.call.args, 0);
    buf body;
    buf_init(&body, 0);
    httpc_resp resp = {0};
    json_t *j;
    int rc = gen_body(req, chat, on_token != NULL, &j, err, errlen);
    if (rc == 0 && valid_dump(j, JSON_COMPACT, &body) != 0) rc = -SMP_E_NOMEM;
    json_decref(j);
    if (rc == -SMP_E_NOMEM) snprintf(err, errlen, "openai: out of memory");
    if (rc) goto fail;
    httpc_req hr = {.path = chat ? "/chat/completions" : "/completions", .body = body.data, .body_len = body.len,
                    .timeout_ms = s->t.generate_ms, .on_line = sse_line, .ud = &g,
                    .cancelled = req->cancelled, .cancel_ud = req->cancel_ud};
    rc = httpc_request(s->http, &hr, &resp, err, errlen);
    if (rc == 0 && resp.status >= 200 && resp.status < 300 && g.events == 0 && !g.code) {
        int pr = plain_answer(&g);
        if (pr > 0) rc = HTTPC_ABORTED; /* on_token said stop */
    }
    if (g.code) {
        rc = g.code;
        goto fail;
    }
    if (rc == HTTPC_ABORTED) {
        out->done_reason = "cancelled";
        out->completion_tokens = g.pieces;
        rc = BACKEND_CANCELLED;
    } else if (rc < 0) {
        goto fail;
    } else if (resp.status < 200 || resp.status >= 300) {
        rc = httpc_status_error(s->http, &resp, err, errlen);
        goto fail;
    } else if (!g.done && !g.finished) {
        snprintf(err, errlen, "Backend error: openai stream ended before the answer was complete");
        rc = -SMP_E_BACKEND;
        goto fail;
    }
    uint64_t end = util_now_ns();
    out->total_ns = end - g.t0;
    out->prompt_ns = (g.first_ns ? g.first_ns : end) - g.t0;
    out->eval_ns = g.first_ns ? end - g.first_ns : 0;
    if (!out->done_reason) out->done_reason = remote_done_reason(out, g.reason);
    if (!out->completion_tokens && rc == 0) out->completion_tokens = g.pieces;
    /* The append makes sure even an empty text is allocated and terminated. */
    if (buf_append(&g.text, "", 0) == 0) out->text = buf_detach(&g.text, &out->text_len);
    if (!out->text) {
        snprintf(err, errlen, "openai: out of memory");
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    call_asm_free(&g.call);
    buf_free(&g.plain);
    buf_free(&body);
    httpc_resp_free(&resp);
    return rc;
fail:
    call_asm_free(&g.call);
    buf_free(&g.text);
    buf_free(&g.plain);
    buf_free(&body);
    httpc_resp_free(&resp);
    backend_gen_result_free(out);
    memset(out, 0, sizeof *out);
    return rc;
}

/* ---- embeddings ---- */

static int openai_embed(backend *b, const backend_embed_req *req, backend_embed_result *out, char *err,
                        size_t errlen) {
    openai *s = b->state;
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
    unsigned char *seen = NULL;
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(model));
    json_t *in = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(in, json_string(texts[i] ? texts[i] : ""));
    json_object_set_new(j, "input", in);
    json_object_set_new(j, "encoding_format", json_string("float"));
    buf_init(&body, 0);
    int rc = valid_dump(j, JSON_COMPACT, &body);
    json_decref(j);
    if (rc != 0) {
        snprintf(err, errlen, "openai: out of memory");
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    httpc_req hr = {.path = "/embeddings", .body = body.data, .body_len = body.len, .timeout_ms = s->t.embed_ms,
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
    json_t *data = json_object_get(parsed, "data");
    rc = -SMP_E_BACKEND;
    if (!parsed) {
        snprintf(err, errlen, "Backend error: openai sent an invalid response: %s", je.text);
        goto fail;
    }
    if (!json_is_array(data) || json_array_size(data) != (size_t)n) {
        snprintf(err, errlen, "Backend error: openai sent an invalid response: expected %d embeddings", n);
        goto fail;
    }
    size_t d = json_array_size(json_object_get(json_array_get(data, 0), "embedding"));
    if (d == 0 || d > (1u << 20)) {
        snprintf(err, errlen, "Backend error: openai sent an invalid response: embedding of %zu dimensions", d);
        goto fail;
    }
    v = smp_malloc((size_t)n * d * sizeof *v);
    seen = smp_calloc((size_t)n, 1);
    if (!v || !seen) {
        snprintf(err, errlen, "openai: out of memory");
        rc = -SMP_E_NOMEM;
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        json_t *item = json_array_get(data, (size_t)i);
        json_t *idx = json_object_get(item, "index");
        json_int_t at = json_is_integer(idx) ? json_integer_value(idx) : i;
        json_t *e = json_object_get(item, "embedding");
        if (at < 0 || at >= n || seen[at]) {
            snprintf(err, errlen, "Backend error: openai sent an invalid response: bad embedding index");
            goto fail;
        }
        if (!json_is_array(e) || json_array_size(e) != d) {
            snprintf(err, errlen, "Backend error: openai sent an invalid response: embeddings differ in size");
            goto fail;
        }
        seen[at] = 1;
        for (size_t k = 0; k < d; k++) {
            json_t *x = json_array_get(e, k);
            if (!json_is_number(x)) {
                snprintf(err, errlen, "Backend error: openai sent an invalid response: an embedding holds a non-number");
                goto fail;
            }
            v[(size_t)at * d + k] = (float)json_number_value(x);
        }
    }
    out->prompt_tokens = json_int(json_object_get(json_object_get(parsed, "usage"), "prompt_tokens"));
    out->vecs = v;
    out->dim = (int)d;
    smp_free(seen);
    json_decref(parsed);
    buf_free(&body);
    httpc_resp_free(&resp);
    return 0;
fail:
    smp_free(v);
    smp_free(seen);
    json_decref(parsed);
    buf_free(&body);
    httpc_resp_free(&resp);
    return rc;
}

/* ---- models and health ---- */

static int get_models(openai *s, long timeout_ms, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    httpc_resp resp;
    httpc_req hr = {.path = "/models", .timeout_ms = timeout_ms, .max_body = 64u << 20};
    int rc = httpc_request(s->http, &hr, &resp, err, errlen);
    if (rc == 0 && (resp.status < 200 || resp.status >= 300)) rc = httpc_status_error(s->http, &resp, err, errlen);
    if (rc == 0) {
        json_error_t je;
        json_t *j = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &je);
        if (!json_is_array(json_object_get(j, "data"))) {
            snprintf(err, errlen, "Backend error: openai sent an invalid response: %s",
                     j ? "no \"data\" list" : je.text);
            json_decref(j);
            rc = -SMP_E_BACKEND;
        } else {
            *out = j;
        }
    }
    httpc_resp_free(&resp);
    return rc;
}

static int openai_list_models(backend *b, json_t **out, char *err, size_t errlen) {
    openai *s = b->state;
    *out = NULL;
    json_t *j;
    int rc = get_models(s, s->t.list_ms, &j, err, errlen);
    if (rc != 0) return rc;
    json_t *list = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(j, "data"), i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (!id) continue;
        json_t *e = json_object();
        json_object_set_new(e, "name", json_string(id));
        json_object_set_new(e, "size", json_integer(0));
        char when[40] = "";
        json_t *created = json_object_get(m, "created");
        if (json_is_integer(created) && json_integer_value(created) > 0)
            util_iso8601((double)json_integer_value(created), when, sizeof when);
        json_object_set_new(e, "modified_at", json_string(when));
        json_object_set_new(e, "digest", json_string(""));
        json_object_set_new(e, "kind", json_string(httpc_model_kind(id, NULL)));
        json_object_set_new(e, "backend", json_string("openai"));
        const char *owner = json_string_value(json_object_get(m, "owned_by"));
        if (owner) json_object_set_new(e, "owned_by", json_string(owner));
        json_array_append_new(list, e);
    }
    json_decref(j);
    *out = list;
    return 0;
}

static int openai_has_model(backend *b, const char *model) {
    json_t *list;
    char err[256];
    if (openai_list_models(b, &list, err, sizeof err) != 0) return -1;
    size_t i;
    json_t *m;
    int found = 0;
    json_array_foreach(list, i, m) {
        if (!strcmp(json_string_value(json_object_get(m, "name")), model)) {
            found = 1;
            break;
        }
    }
    json_decref(list);
    return found;
}

static bool openai_health(backend *b, json_t **out) {
    openai *s = b->state;
    char err[512] = "";
    json_t *j;
    int rc = get_models(s, s->t.health_ms, &j, err, sizeof err);
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string(rc == 0 ? "healthy" : "down"));
    json_object_set_new(o, "url", json_string(httpc_base_url(s->http)));
    if (rc == 0) {
        json_object_set_new(o, "models", json_integer((json_int_t)json_array_size(json_object_get(j, "data"))));
        json_decref(j);
    } else {
        json_object_set_new(o, "detail", json_string(err));
    }
    *out = o;
    return rc == 0;
}

static void openai_destroy(backend *b) {
    if (!b) return;
    openai *s = b->state;
    if (s) httpc_free(s->http);
    smp_free(s);
    smp_free(b);
}

static const backend_ops openai_ops = {
    .name = "openai",
    .generate = openai_generate,
    .embed = openai_embed,
    .list_models = openai_list_models,
    .has_model = openai_has_model,
    .health = openai_health,
    .destroy = openai_destroy,
};

backend *openai_backend_new(const char *base_url, const char *api_key, char *err, size_t errlen) {
    backend *b = smp_calloc(1, sizeof *b);
    openai *s = smp_calloc(1, sizeof *s);
    if (!b || !s) {
        smp_free(b);
        smp_free(s);
        snprintf(err, errlen, "openai: out of memory");
        return NULL;
    }
    b->ops = &openai_ops;
    b->state = s;
    s->t = HTTPC_TIMEOUTS_DEFAULT;
    s->http = httpc_new("openai", base_url, api_key, err, errlen);
    if (!s->http) {
        openai_destroy(b);
        return NULL;
    }
    httpc_set_connect_timeout(s->http, s->t.connect_ms);
    return b;
}

void openai_backend_set_timeouts(backend *b, const httpc_timeouts *t) {
    openai *s = b->state;
    s->t = *t;
    httpc_set_connect_timeout(s->http, t->connect_ms);
}
