/* textgen.c - see textgen.h. Frame formats:
 *   Simpleton  SSE  data: {"model","created_at","response"|"message","done":false}  ... final done:true + stats
 *   OpenAI     SSE  data: {chat.completion.chunk | text_completion} ... data: [DONE]
 *   Ollama     NDJSON {"model","created_at","response"|"message","done":false} ... final done:true + stats */
#include "api/textgen.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backend/registry.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/arena.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "core/valid.h"
#include "core/workq.h"
#include "engine/json_schema.h"
#include "engine/sampler.h"
#include "obs/metrics.h"

struct textjob {
    http_req *r;
    textjob_kind kind;
    json_t *body;
    backend_gen_req req;
    backend_msg *msgs;
    arena mem;          /* everything parsed out of the request (images, content) */
    int32_t *ids;
    char model[200];
    bool stream, include_usage, started, cacheable;
    bool uncached_miss; /* the cache is on for it, but a sampled answer is not kept: still "MISS" */
    cache_type ctype;
    char cache_key[CACHE_KEY_MAX];
    char id[48];
    long created;
    /* Ollama streams each tool call whole: the one being received. */
    buf call_args;
    char call_name[80];
    json_t *lp_pending; /* streamed log probabilities waiting for their text */
    size_t lp_offset;   /* completions' text_offset: answer bytes so far */
};

static workq *pool;

int textgen_init(int workers, int queue) { return workq_new(workers, (size_t)queue, &pool); }

void textgen_free(void) {
    workq_free(pool);
    pool = NULL;
}

/* body: the parsed request (ownership passes to the job; req's strings may
 * point into it). */
static textjob *textjob_new(http_req *r, textjob_kind kind, json_t *body) {
    textjob *j = smp_calloc(1, sizeof *j);
    if (!j) {
        json_decref(body);
        return NULL;
    }
    j->r = r;
    j->kind = kind;
    j->body = body;
    j->req.temperature = 0.7;
    j->req.top_p = 1.0;
    j->req.repeat_penalty = 1.0;
    j->created = (long)time(NULL);
    char hex[33];
    util_unique_hex(12, hex);
    snprintf(j->id, sizeof j->id, "%s%s", kind == TG_OPENAI_COMPLETION ? "cmpl-" : "chatcmpl-", hex);
    return j;
}

textjob *textjob_detached(textjob_kind kind, json_t *body) { return textjob_new(NULL, kind, body); }

textjob *textjob_from_request(http_req *r, textjob_kind kind, json_t **body) {
    json_t *b = http_json_object(r);
    if (!b) return NULL;
    textjob *j = textjob_new(r, kind, b);
    if (!j) {
        http_send_error(r, SMP_E_NOMEM, NULL);
        return NULL;
    }
    *body = b;
    return j;
}

backend_gen_req *textjob_req(textjob *j) { return &j->req; }

backend_msg *textjob_messages(textjob *j, int n) {
    smp_free(j->msgs);
    j->msgs = smp_calloc((size_t)(n ? n : 1), sizeof *j->msgs);
    j->req.messages = j->msgs;
    j->req.n_messages = n;
    return j->msgs;
}

void *textjob_alloc(textjob *j, size_t count, size_t size) { return arena_calloc(&j->mem, count, size); }

void *textjob_adopt(textjob *j, void *p) { return arena_adopt(&j->mem, p); }

void textjob_set_include_usage(textjob *j, bool on) { j->include_usage = on; }

void textjob_free(textjob *j) {
    if (!j) return;
    json_decref(j->body);
    json_decref(j->lp_pending);
    smp_free(j->msgs);
    smp_free(j->ids);
    buf_free(&j->call_args);
    arena_free(&j->mem);
    smp_free(j);
}

static bool kind_is_chat(textjob_kind k) {
    return k == TG_SIMPLETON_CHAT || k == TG_OPENAI_CHAT || k == TG_OLLAMA_CHAT;
}

static bool is_chat(const textjob *j) { return kind_is_chat(j->kind); }

/* ---- parsing helpers ------------------------------------------------------ */

/* One limit and one message in every dialect: BACKEND_MAX_STOP sequences of
 * at most BACKEND_MAX_STOP_LEN bytes, as a string or a list of strings. */
static bool stop_ok(valid *v, const char *field, json_t *s) {
    if (!json_is_string(s)) {
        valid_add(v, field, "string_type", "Every stop sequence should be a string");
        return false;
    }
    if (json_string_length(s) > BACKEND_MAX_STOP_LEN) {
        valid_add(v, field, "string_too_long", "A stop sequence may be at most %d bytes", BACKEND_MAX_STOP_LEN);
        return false;
    }
    return true;
}

int textgen_parse_stop(valid *v, json_t *obj, const char *field, backend_gen_req *req) {
    json_t *x = json_object_get(obj, field);
    if (!x || json_is_null(x)) return 0;
    if (json_is_string(x)) {
        if (!stop_ok(v, field, x)) return -1;
        if (json_string_length(x)) req->stop[req->n_stop++] = json_string_value(x);
        return 1;
    }
    if (!json_is_array(x) || json_array_size(x) > BACKEND_MAX_STOP) {
        valid_add(v, field, "list_type", "Input should be a string or a list of at most %d strings", BACKEND_MAX_STOP);
        return -1;
    }
    size_t i;
    json_t *s;
    json_array_foreach(x, i, s) {
        if (!stop_ok(v, field, s)) return -1;
        if (json_string_length(s)) req->stop[req->n_stop++] = json_string_value(s);
    }
    return 1;
}

/* Compile the schema to check it: the error names the keyword and where. */
static int check_schema(valid *v, const char *field, json_t *schema) {
    char err[300];
    grammar *g = NULL;
    int rc = json_schema_compile(schema, &g, err, sizeof err);
    grammar_free(g);
    if (rc == 0) return 1;
    valid_add(v, field, "schema_unsupported", "%s", rc == -SMP_E_NOMEM ? "out of memory compiling the schema" : err);
    return -1;
}

int textgen_parse_response_format(valid *v, json_t *obj, backend_gen_req *req) {
    json_t *rf = json_object_get(obj, "response_format");
    if (!rf || json_is_null(rf)) return 0;
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !type) {
        valid_add(v, "response_format", "model_type", "response_format should be an object with a type");
        return -1;
    }
    if (!strcmp(type, "text")) return 0;
    if (!strcmp(type, "json_object")) {
        req->json_object = true;
        return 1;
    }
    if (strcmp(type, "json_schema")) {
        valid_add(v, "response_format", "enum", "response_format.type '%.40s' is not one of 'text', 'json_object', "
                  "'json_schema'", type);
        return -1;
    }
    json_t *js = json_object_get(rf, "json_schema");
    json_t *schema = json_object_get(js, "schema");
    json_t *name = json_object_get(js, "name");
    if (!json_is_object(js) || !json_is_object(schema)) {
        valid_add(v, "response_format", "missing",
                  "response_format.json_schema should be an object with a 'schema' object (and a 'name')");
        return -1;
    }
    if (name && !json_is_string(name)) {
        valid_add(v, "response_format", "string_type", "response_format.json_schema.name should be a string");
        return -1;
    }
    if (check_schema(v, "response_format", schema) < 0) return -1;
    req->json_schema = schema;
    req->json_schema_name = json_string_value(name);
    req->json_schema_strict = json_is_true(json_object_get(js, "strict"));
    return 1;
}

int textgen_parse_grammar(valid *v, json_t *obj, backend_gen_req *req) {
    json_t *x = json_object_get(obj, "grammar");
    if (!x || json_is_null(x)) return 0;
    if (!json_is_string(x)) {
        valid_add(v, "grammar", "string_type", "grammar should be GBNF text (a string)");
        return -1;
    }
    if (!json_string_length(x)) return 0;
    if (req->json_object || req->json_schema) {
        valid_add(v, "grammar", "conflict", "grammar and a JSON response_format cannot be used together");
        return -1;
    }
    char err[300];
    grammar *g = NULL;
    int rc = grammar_parse(json_string_value(x), json_string_length(x), &g, err, sizeof err);
    grammar_free(g);
    if (rc) {
        valid_add(v, "grammar", "grammar_invalid", "%s", rc == -SMP_E_NOMEM ? "out of memory" : err);
        return -1;
    }
    req->grammar = json_string_value(x);
    return 1;
}

int textgen_parse_ollama_format(valid *v, json_t *obj, backend_gen_req *req) {
    json_t *f = json_object_get(obj, "format");
    if (!f || json_is_null(f)) return 0;
    if (json_is_string(f)) {
        if (!json_string_length(f)) return 0;
        if (!strcmp(json_string_value(f), "json")) {
            req->json_object = true;
            return 1;
        }
        valid_add(v, "format", "enum", "format should be \"json\" or a JSON schema object");
        return -1;
    }
    if (!json_is_object(f)) {
        valid_add(v, "format", "model_type", "format should be \"json\" or a JSON schema object");
        return -1;
    }
    if (check_schema(v, "format", f) < 0) return -1;
    req->json_schema = f;
    return 1;
}

/* ---- tools -------------------------------------------------------------------- */

static int parse_msg_tools(valid *v, textjob *j, json_t *m, int idx, backend_msg *out, bool openai);
static int check_tool_results(valid *v, textjob *j);

int textgen_parse_messages_tools(valid *v, textjob *j, json_t *b, bool openai) {
    json_t *msgs = json_object_get(b, "messages");
    if (!valid_ok(v) || !j->msgs || !json_is_array(msgs)) return 0;
    for (int i = 0; i < j->req.n_messages; i++)
        if (parse_msg_tools(v, j, json_array_get(msgs, (size_t)i), i, &j->msgs[i], openai) < 0) return -1;
    return check_tool_results(v, j);
}

/* name: a JSON string (it may hold NUL bytes: they are refused too). */
static bool tool_name_ok(json_t *name) {
    const char *s = json_string_value(name);
    size_t n = json_string_length(name);
    if (n == 0 || n > 64 || strlen(s) != n) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-'))
            return false;
    return true;
}

/* tools: [{type: "function", function: {name, description?, parameters?,
 * strict?}}] (Ollama's type may be left out). */
static int parse_tool_list(valid *v, textjob *j, json_t *tools, bool openai) {
    if (!json_is_array(tools)) {
        valid_add(v, "tools", "list_type", "tools should be a list of {type: 'function', function: {...}} objects");
        return -1;
    }
    size_t n = json_array_size(tools), i;
    if (n > API_MAX_TOOLS) {
        valid_add(v, "tools", "too_long", "List should have at most %d items", API_MAX_TOOLS);
        return -1;
    }
    if (n == 0) return 0;
    backend_tool *out = textjob_alloc(j, n, sizeof *out);
    if (!out) {
        valid_add(v, "tools", "memory", "Out of memory reading the tools");
        return -1;
    }
    json_t *t;
    json_array_foreach(tools, i, t) {
        char f[64];
        snprintf(f, sizeof f, "tools.%zu", i);
        json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
        if (!json_is_object(t) || (type && !json_is_string(type)) || (!type && openai)) {
            valid_add(v, f, "model_type", "Each tool should be an object {type: 'function', function: {...}}");
            return -1;
        }
        if (type && strcmp(json_string_value(type), "function")) {
            snprintf(f, sizeof f, "tools.%zu.type", i);
            valid_add(v, f, "enum", "Tool type '%.40s' is not supported: only 'function'", json_string_value(type));
            return -1;
        }
        snprintf(f, sizeof f, "tools.%zu.function", i);
        if (!json_is_object(fn)) {
            valid_add(v, f, fn ? "model_type" : "missing", "Each tool needs a function object {name, parameters}");
            return -1;
        }
        const char *name = json_string_value(json_object_get(fn, "name"));
        json_t *desc = json_object_get(fn, "description"), *params = json_object_get(fn, "parameters");
        snprintf(f, sizeof f, "tools.%zu.function.name", i);
        if (!name || !tool_name_ok(json_object_get(fn, "name"))) {
            valid_add(v, f, name ? "string_pattern_mismatch" : "missing",
                      "A function name is 1 to 64 of a-z, A-Z, 0-9, underscore and dash");
            return -1;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(out[k].name, name)) {
                valid_add(v, f, "duplicate", "Two tools are named '%s'", name);
                return -1;
            }
        snprintf(f, sizeof f, "tools.%zu.function.description", i);
        if (desc && !json_is_null(desc) && !json_is_string(desc)) {
            valid_add(v, f, "string_type", "Input should be a valid string");
            return -1;
        }
        snprintf(f, sizeof f, "tools.%zu.function.parameters", i);
        if (params && !json_is_null(params) && !json_is_object(params)) {
            valid_add(v, f, "model_type", "parameters should be a JSON Schema object");
            return -1;
        }
        if (json_is_object(params) && check_schema(v, f, params) < 0) return -1;
        out[i] = (backend_tool){name, json_string_value(desc), json_is_object(params) ? params : NULL,
                                json_is_true(json_object_get(fn, "strict"))};
    }
    j->req.tools = out;
    j->req.n_tools = (int)n;
    return 1;
}

/* tool_choice: "none" | "auto" | "required" | {type: "function", function: {name}}. */
static int parse_tool_choice(valid *v, textjob *j, json_t *tc) {
    backend_gen_req *q = &j->req;
    if (!tc || json_is_null(tc)) return 0;
    const char *s = json_string_value(tc);
    if (s && !strcmp(s, "none")) q->tool_choice = BACKEND_TOOLS_NONE;
    else if (s && !strcmp(s, "auto")) q->tool_choice = BACKEND_TOOLS_AUTO;
    else if (s && !strcmp(s, "required")) q->tool_choice = BACKEND_TOOLS_REQUIRED;
    else if (json_is_object(tc) && json_is_string(json_object_get(json_object_get(tc, "function"), "name")) &&
             !strcmp(json_string_value(json_object_get(tc, "type")) ? json_string_value(json_object_get(tc, "type")) : "",
                     "function")) {
        q->tool_choice = BACKEND_TOOLS_NAMED;
        q->tool_choice_name = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
    } else {
        valid_add(v, "tool_choice", "enum",
                  "tool_choice should be 'none', 'auto', 'required' or {type: 'function', function: {name}}");
        return -1;
    }
    if ((q->tool_choice == BACKEND_TOOLS_REQUIRED || q->tool_choice == BACKEND_TOOLS_NAMED) && q->n_tools == 0) {
        valid_add(v, "tool_choice", "missing_tools", "tool_choice '%s' needs tools",
                  q->tool_choice == BACKEND_TOOLS_REQUIRED ? "required" : "function");
        return -1;
    }
    if (q->tool_choice == BACKEND_TOOLS_NAMED) {
        for (int i = 0; i < q->n_tools; i++)
            if (!strcmp(q->tools[i].name, q->tool_choice_name)) return 1;
        valid_add(v, "tool_choice", "unknown_tool", "tool_choice names '%.64s', which is not one of the tools",
                  q->tool_choice_name);
        return -1;
    }
    return 1;
}

int textgen_parse_tools(valid *v, textjob *j, json_t *b, bool openai) {
    j->req.parallel_tool_calls = true;
    json_t *tools = json_object_get(b, "tools");
    if (tools && !json_is_null(tools) && parse_tool_list(v, j, tools, openai) < 0) return -1;
    if (!openai) return 1;
    bool par = true;
    if (valid_bool(v, b, "parallel_tool_calls", false, &par) < 0) return -1;
    j->req.parallel_tool_calls = par;
    return parse_tool_choice(v, j, json_object_get(b, "tool_choice"));
}

/* An assistant message's tool_calls: OpenAI [{id, type, function: {name,
 * arguments: string}}], Ollama [{function: {name, arguments: object}}]. */
static int parse_msg_tools(valid *v, textjob *j, json_t *m, int idx, backend_msg *out, bool openai) {
    char f[80];
    json_t *calls = json_object_get(m, "tool_calls");
    if (calls && !json_is_null(calls) && !(json_is_array(calls) && json_array_size(calls) == 0)) {
        snprintf(f, sizeof f, "messages.%d.tool_calls", idx);
        if (!json_is_array(calls) || json_array_size(calls) > API_MAX_TOOLS ||
            strcmp(out->role ? out->role : "", "assistant")) {
            valid_add(v, f, "list_type", "tool_calls should be a list (of at most %d calls) on an assistant message",
                      API_MAX_TOOLS);
            return -1;
        }
        size_t n = json_array_size(calls), i;
        backend_tool_call *tc = textjob_alloc(j, n ? n : 1, sizeof *tc);
        if (!tc) return -1;
        json_t *c;
        json_array_foreach(calls, i, c) {
            snprintf(f, sizeof f, "messages.%d.tool_calls.%zu", idx, i);
            json_t *fn = json_object_get(c, "function"), *args = json_object_get(fn, "arguments");
            const char *name = json_string_value(json_object_get(fn, "name"));
            const char *id = json_string_value(json_object_get(c, "id"));
            if (!json_is_object(c) || !name || (openai && !id)) {
                valid_add(v, f, "model_type", "Each call should be {%sfunction: {name, arguments}}",
                          openai ? "id, type: 'function', " : "");
                return -1;
            }
            const char *text;
            if (json_is_string(args) && openai) {
                text = json_string_value(args);
            } else if (!openai && (json_is_object(args) || !args)) {
                char *d = args ? json_dumps(args, JSON_COMPACT) : NULL;
                text = d ? textjob_adopt(j, d) : "{}";
                if (!text) return -1;
            } else {
                valid_add(v, f, "arguments_type", "function.arguments should be %s",
                          openai ? "a string of JSON" : "an object");
                return -1;
            }
            char made[40];
            if (!id) {
                /* Ollama's calls have no ids: one from the call's place, the
                 * same each time the conversation is sent (a random one
                 * would keep the answer from ever being a cache hit). */
                snprintf(made, sizeof made, "call_%d_%zu", idx, i);
                id = textjob_adopt(j, smp_strdup(made));
                if (!id) return -1;
            }
            tc[i] = (backend_tool_call){id, name, text};
        }
        out->tool_calls = tc;
        out->n_tool_calls = (int)n;
    }
    const char *key = openai ? "tool_call_id" : "tool_name";
    json_t *ref = json_object_get(m, key);
    if (ref && !json_is_null(ref)) {
        snprintf(f, sizeof f, "messages.%d.%s", idx, key);
        if (!json_is_string(ref) || strcmp(out->role, "tool")) {
            valid_add(v, f, "string_type", "%s is a string, on a tool message", key);
            return -1;
        }
        if (openai) out->tool_call_id = json_string_value(ref);
        else out->tool_name = json_string_value(ref);
    } else if (openai && out->role && !strcmp(out->role, "tool")) {
        snprintf(f, sizeof f, "messages.%d.tool_call_id", idx);
        valid_add(v, f, "missing", "A tool message needs the tool_call_id of the call it answers");
        return -1;
    }
    return 1;
}

/* A tool message answers the nearest call before it with its tool_call_id
 * (OpenAI) or of its tool_name (Ollama); the other of the two is filled in
 * from that call. One pass: the latest call of each id and each name so far
 * is kept by key (message * (API_MAX_TOOLS + 1) + call), so a history of
 * thousands of calls and results costs no more than reading it. */
static int check_tool_results(valid *v, textjob *j) {
    backend_gen_req *q = &j->req;
    json_t *by_id = json_object(), *by_name = json_object();
    int rc = 1;
    if (!by_id || !by_name) {
        valid_add(v, "messages", "memory", "Out of memory reading the tool calls");
        rc = -1;
    }
    for (int i = 0; rc > 0 && i < q->n_messages; i++) {
        backend_msg *m = &j->msgs[i];
        if (!strcmp(m->role, "tool") && (m->tool_call_id || m->tool_name)) {
            json_t *at = m->tool_call_id ? json_object_get(by_id, m->tool_call_id) : json_object_get(by_name, m->tool_name);
            if (!at) {
                char f[64];
                snprintf(f, sizeof f, "messages.%d.%s", i, m->tool_call_id ? "tool_call_id" : "tool_name");
                valid_add(v, f, "unknown_call", "No assistant message before it made a call %s '%.64s'",
                          m->tool_call_id ? "with id" : "of", m->tool_call_id ? m->tool_call_id : m->tool_name);
                rc = -1;
                break;
            }
            json_int_t k = json_integer_value(at);
            const backend_tool_call *call = &j->msgs[k / (API_MAX_TOOLS + 1)].tool_calls[k % (API_MAX_TOOLS + 1)];
            if (!m->tool_name) m->tool_name = call->name;
            if (!m->tool_call_id) m->tool_call_id = call->id;
        }
        for (int c = 0; c < m->n_tool_calls; c++) {
            json_int_t k = (json_int_t)i * (API_MAX_TOOLS + 1) + c;
            json_object_set_new(by_id, m->tool_calls[c].id, json_integer(k));
            json_object_set_new(by_name, m->tool_calls[c].name, json_integer(k));
        }
    }
    json_decref(by_id);
    json_decref(by_name);
    return rc;
}

int textgen_parse_logprobs(valid *v, json_t *obj, backend_gen_req *req) {
    bool on = false;
    long long top = 0;
    if (valid_bool(v, obj, "logprobs", false, &on) < 0) return -1;
    if (valid_int(v, obj, "top_logprobs", false, 0, SAMPLER_MAX_TOP_LOGPROBS, &top) < 0) return -1;
    if (top > 0 && !on) {
        valid_add(v, "top_logprobs", "invalid_value", "top_logprobs needs logprobs set to true");
        return -1;
    }
    req->logprobs = on;
    req->top_logprobs = (int)top;
    return on;
}

int textgen_parse_completion_logprobs(valid *v, json_t *obj, backend_gen_req *req) {
    long long top;
    int rc = valid_int(v, obj, "logprobs", false, 0, 5, &top);
    if (rc == 1) {
        req->logprobs = true;
        req->top_logprobs = (int)top;
    }
    return rc;
}

/* A token id as OpenAI writes it: decimal digits, no sign, fits int32. */
static bool parse_token_id(const char *s, int32_t *out) {
    long long n = 0;
    if (!*s || strlen(s) > 10) return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        n = n * 10 + (*s - '0');
    }
    if (n > INT32_MAX) return false;
    *out = (int32_t)n;
    return true;
}

int textgen_parse_logit_bias(valid *v, textjob *j, json_t *obj) {
    json_t *x = json_object_get(obj, "logit_bias");
    if (!x || json_is_null(x)) return 0;
    if (!json_is_object(x) || json_object_size(x) > TEXTGEN_MAX_LOGIT_BIAS) {
        valid_add(v, "logit_bias", "dict_type", "logit_bias should be an object of at most %d token ids to numbers",
                  TEXTGEN_MAX_LOGIT_BIAS);
        return -1;
    }
    size_t n = json_object_size(x);
    backend_logit_bias *b = textjob_alloc(j, n ? n : 1, sizeof *b);
    if (!b) {
        valid_add(v, "logit_bias", "memory", "Out of memory reading logit_bias");
        return -1;
    }
    const char *key;
    json_t *val;
    int k = 0;
    json_object_foreach(x, key, val) {
        if (!parse_token_id(key, &b[k].id)) {
            valid_add(v, "logit_bias", "invalid_key", "logit_bias keys should be token ids (non-negative integers), "
                      "not '%.40s'", key);
            return -1;
        }
        if (!json_is_number(val) || json_number_value(val) < -100 || json_number_value(val) > 100) {
            valid_add(v, "logit_bias", "invalid_value", "logit_bias values should be numbers from -100 to 100 "
                      "(token %.40s)", key);
            return -1;
        }
        b[k++].bias = (float)json_number_value(val);
    }
    j->req.logit_bias = b;
    j->req.n_logit_bias = k;
    return k > 0;
}

int textgen_parse_ids(valid *v, textjob *j, json_t *obj, const char *field) {
    json_t *x = json_object_get(obj, field);
    if (!x || json_is_null(x)) return 0;
    if (!json_is_array(x) || json_array_size(x) > 1000000) {
        valid_add(v, field, "list_type", "Input should be a list of token ids");
        return -1;
    }
    size_t n = json_array_size(x), i;
    j->ids = smp_malloc((n ? n : 1) * sizeof *j->ids);
    if (!j->ids) {
        valid_add(v, field, "too_long", "Too many token ids");
        return -1;
    }
    json_t *e;
    json_array_foreach(x, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > INT32_MAX) {
            valid_add(v, field, "int_type", "Every token id should be a non-negative integer");
            return -1;
        }
        j->ids[i] = (int32_t)json_integer_value(e);
    }
    j->req.context = j->ids;
    j->req.n_context = (int)n;
    return 1;
}

void textgen_send_backend_error(http_req *r, int rc, const char *msg) {
    if (rc == -SMP_E_TOO_MANY) {
        http_add_header(r, "Retry-After", "2");
        http_send_error(r, SMP_E_UNAVAILABLE, "%s", msg);
        return;
    }
    if (rc == -SMP_E_NOT_IMPLEMENTED) rc = -SMP_E_BAD_REQUEST;
    http_send_error(r, rc, "%s", msg);
}

/* ---- frames ----------------------------------------------------------------- */

static json_t *piece_json(textjob *j, const char *piece, size_t len) {
    json_t *text = json_stringn(piece, len);
    switch (j->kind) {
    case TG_OPENAI_CHAT: {
        json_t *delta = json_pack("{s:o}", "content", text);
        if (!j->started) json_object_set_new(delta, "role", json_string("assistant"));
        return json_pack("{s:s,s:s,s:i,s:s,s:[{s:i,s:o,s:n}]}", "id", j->id, "object", "chat.completion.chunk",
                         "created", (int)j->created, "model", j->model, "choices", "index", 0, "delta", delta,
                         "finish_reason");
    }
    case TG_OPENAI_COMPLETION:
        return json_pack("{s:s,s:s,s:i,s:s,s:[{s:i,s:o,s:n,s:n}]}", "id", j->id, "object", "text_completion",
                         "created", (int)j->created, "model", j->model, "choices", "index", 0, "text", text,
                         "logprobs", "finish_reason");
    default: {
        char ts[40];
        util_iso8601(util_wall_seconds(), ts, sizeof ts);
        if (is_chat(j))
            return json_pack("{s:s,s:s,s:{s:s,s:o},s:b}", "model", j->model, "created_at", ts, "message", "role",
                             "assistant", "content", text, "done", 0);
        return json_pack("{s:s,s:s,s:o,s:b}", "model", j->model, "created_at", ts, "response", text, "done", 0);
    }
    }
}

/* ---- log probabilities: the backend's entries ([{token, logprob, bytes,
 * top_logprobs}], OpenAI chat's own format) in each dialect ---------------- */

/* Completions' legacy format: {tokens, token_logprobs, top_logprobs:
 * [{token: logprob}], text_offset} (byte offsets, running on from frame to
 * frame while streaming). */
static json_t *legacy_logprobs(textjob *j, const json_t *entries) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offsets = json_array();
    size_t i, k;
    json_t *e, *t;
    json_array_foreach(entries, i, e) {
        json_t *top = json_object();
        json_array_foreach(json_object_get(e, "top_logprobs"), k, t)
            json_object_set(top, json_string_value(json_object_get(t, "token")), json_object_get(t, "logprob"));
        json_array_append(tokens, json_object_get(e, "token"));
        json_array_append(lps, json_object_get(e, "logprob"));
        json_array_append_new(tops, top);
        json_array_append_new(offsets, json_integer((json_int_t)j->lp_offset));
        j->lp_offset += json_array_size(json_object_get(e, "bytes"));
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offsets);
}

/* Put entries (NULL: none) into a frame or answer of j's dialect, when the
 * request asked for them: OpenAI choices[0].logprobs, Ollama logprobs. */
static void attach_logprobs(textjob *j, json_t *frame, const json_t *entries) {
    if (!j->req.logprobs || !frame) return;
    json_t *none = entries ? NULL : json_array();
    if (!entries) entries = none;
    json_t *choice = json_array_get(json_object_get(frame, "choices"), 0);
    if (j->kind == TG_OPENAI_CHAT)
        json_object_set_new(choice, "logprobs", json_pack("{s:O,s:n}", "content", entries, "refusal"));
    else if (j->kind == TG_OPENAI_COMPLETION)
        json_object_set_new(choice, "logprobs", legacy_logprobs(j, entries));
    else if (j->kind == TG_OLLAMA_GENERATE || j->kind == TG_OLLAMA_CHAT)
        json_object_set(frame, "logprobs", (json_t *)entries);
    json_decref(none);
}

/* Streaming: entries arrive just before the text they belong to. */
static int job_on_logprobs(void *ud, const json_t *entries) {
    textjob *j = ud;
    if (!j->lp_pending && !(j->lp_pending = json_array())) return 1;
    return json_array_extend(j->lp_pending, (json_t *)entries) != 0;
}

/* One frame: "data: {...}\n\n" (SSE) or "{...}\n" (NDJSON). */
static int frame_bytes(textjob *j, json_t *o, buf *b) {
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (!s) return -1;
    bool sse = j->kind != TG_OLLAMA_GENERATE && j->kind != TG_OLLAMA_CHAT;
    int rc = (sse ? buf_puts(b, "data: ") : 0) || buf_puts(b, s) || buf_puts(b, sse ? "\n\n" : "\n");
    smp_free(s);
    return rc;
}

static int write_frame(textjob *j, json_t *o) {
    buf b;
    buf_init(&b, 0);
    int rc = frame_bytes(j, o, &b);
    if (rc == 0) rc = http_stream_write(j->r, b.data, b.len);
    buf_free(&b);
    return rc;
}

static int open_stream(textjob *j, const char *ctype, json_t *first) {
    buf b;
    buf_init(&b, 0);
    int rc = first ? frame_bytes(j, first, &b) : 0;
    if (rc == 0) rc = http_stream_begin(j->r, 200, ctype, b.data, b.len);
    buf_free(&b);
    return rc;
}

static int on_token(void *ud, const char *piece, size_t len) {
    textjob *j = ud;
    json_t *f = piece_json(j, piece, len);
    attach_logprobs(j, f, j->lp_pending);
    json_decref(j->lp_pending);
    j->lp_pending = NULL;
    if (!j->started) {
        /* The first frame goes out with the headers (one wake-up, not two). */
        bool ndjson = j->kind == TG_OLLAMA_GENERATE || j->kind == TG_OLLAMA_CHAT;
        j->started = true;
        return open_stream(j, ndjson ? "application/x-ndjson" : "text/event-stream", f) != 0;
    }
    return write_frame(j, f) != 0;
}

/* Streamed tool calls. OpenAI: a chunk per event, as OpenAI sends them
 * (index, id, type and name with empty arguments first, then argument
 * pieces). Ollama: one chunk per call once it is complete. */
static json_t *call_json(const textjob *j, int index, const char *id, const char *name, const char *args);

static int on_tool(void *ud, const backend_tool_event *e) {
    textjob *j = ud;
    json_t *delta;
    if (j->kind == TG_OPENAI_CHAT) {
        json_t *call;
        if (e->name) {
            call = call_json(j, e->index, e->id, e->name, "");
            json_object_set_new(call, "index", json_integer(e->index));
        } else if (e->args_len) {
            call = json_pack("{s:i,s:{s:s%}}", "index", e->index, "function", "arguments", e->args, e->args_len);
        } else {
            return 0;
        }
        delta = json_pack("{s:[o]}", "tool_calls", call);
        if (!j->started) {
            json_object_set_new(delta, "role", json_string("assistant"));
            json_object_set_new(delta, "content", json_null());
        }
    } else {
        if (e->name) {
            snprintf(j->call_name, sizeof j->call_name, "%s", e->name);
            buf_reset(&j->call_args);
        }
        if (e->args_len && buf_append(&j->call_args, e->args, e->args_len)) return 1;
        if (!e->done) return 0;
        json_t *call = call_json(j, e->index, "", j->call_name, j->call_args.data ? j->call_args.data : "{}");
        delta = json_pack("{s:s,s:s,s:[o]}", "role", "assistant", "content", "", "tool_calls", call);
    }
    json_t *f;
    if (j->kind == TG_OPENAI_CHAT) {
        f = json_pack("{s:s,s:s,s:i,s:s,s:[{s:i,s:o,s:n}]}", "id", j->id, "object", "chat.completion.chunk", "created",
                      (int)j->created, "model", j->model, "choices", "index", 0, "delta", delta, "finish_reason");
    } else {
        char ts[40];
        util_iso8601(util_wall_seconds(), ts, sizeof ts);
        f = json_pack("{s:s,s:s,s:o,s:b}", "model", j->model, "created_at", ts, "message", delta, "done", 0);
    }
    if (!j->started) {
        j->started = true;
        bool ndjson = j->kind == TG_OLLAMA_CHAT;
        return open_stream(j, ndjson ? "application/x-ndjson" : "text/event-stream", f) != 0;
    }
    return write_frame(j, f) != 0;
}

static bool job_cancelled(void *ud) { return http_client_gone(((textjob *)ud)->r); }

static bool is_openai(const textjob *j) { return j->kind == TG_OPENAI_CHAT || j->kind == TG_OPENAI_COMPLETION; }

/* OpenAI says "tool_calls" when the answer calls tools; Ollama says "stop". */
static const char *finish_reason(const textjob *j, const backend_gen_result *res) {
    if (!strcmp(res->done_reason, "length")) return "length";
    return !strcmp(res->done_reason, "tool_calls") && is_openai(j) ? "tool_calls" : "stop";
}

/* One call in the client's dialect: OpenAI {id, type, function: {name,
 * arguments: string}}, Ollama {function: {index, name, arguments: object}}. */
static json_t *call_json(const textjob *j, int index, const char *id, const char *name, const char *args) {
    if (is_openai(j))
        return json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function", "name", name, "arguments",
                         args);
    json_t *a = json_loads(args, 0, NULL);
    return json_pack("{s:{s:i,s:s,s:o}}", "function", "index", index, "name", name, "arguments",
                     a ? a : json_object());
}

static json_t *calls_json(const textjob *j, const backend_gen_result *res) {
    json_t *a = json_array();
    for (int i = 0; i < res->n_tool_calls; i++)
        json_array_append_new(a, call_json(j, i, res->tool_calls[i].id, res->tool_calls[i].name,
                                           res->tool_calls[i].arguments));
    return a;
}

/* OpenAI's usage, with the prompt tokens a cached prefix spared. */
static json_t *usage_json(const backend_gen_result *res) {
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", res->prompt_tokens, "completion_tokens",
                     res->completion_tokens, "total_tokens", res->prompt_tokens + res->completion_tokens,
                     "prompt_tokens_details", "cached_tokens", res->cached_tokens);
}

/* The complete (non-streamed) answer, or the final stream frame's stats. */
static json_t *stats_json(textjob *j, const backend_gen_result *res, const char *text, bool final_frame) {
    json_t *o;
    switch (j->kind) {
    case TG_OPENAI_CHAT:
    case TG_OPENAI_COMPLETION: {
        json_t *usage = usage_json(res);
        json_t *choice;
        if (j->kind == TG_OPENAI_CHAT)
            choice = final_frame ? json_pack("{s:i,s:{},s:s}", "index", 0, "delta", "finish_reason", finish_reason(j, res))
                                 : json_pack("{s:i,s:{s:s,s:s},s:n,s:s}", "index", 0, "message", "role", "assistant",
                                             "content", text, "logprobs", "finish_reason", finish_reason(j, res));
        else
            choice = json_pack("{s:i,s:s,s:n,s:s}", "index", 0, "text", final_frame ? "" : text, "logprobs",
                               "finish_reason", finish_reason(j, res));
        if (j->kind == TG_OPENAI_CHAT && !final_frame && res->n_tool_calls > 0) {
            json_t *msg = json_object_get(choice, "message");
            json_object_set_new(msg, "tool_calls", calls_json(j, res));
            if (!*text) json_object_set_new(msg, "content", json_null());
        }
        const char *object = j->kind == TG_OPENAI_CHAT ? (final_frame ? "chat.completion.chunk" : "chat.completion")
                                                        : "text_completion";
        o = json_pack("{s:s,s:s,s:i,s:s,s:[o],s:s}", "id", j->id, "object", object, "created", (int)j->created,
                      "model", j->model, "choices", choice, "system_fingerprint", "simpleton");
        if (!final_frame) json_object_set_new(o, "usage", usage);
        else json_decref(usage);
        return o;
    }
    default:
        break;
    }
    char done_at[40]; /* when it finished: after every streamed frame's time */
    util_iso8601(util_wall_seconds(), done_at, sizeof done_at);
    o = json_pack("{s:s,s:s,s:b,s:s}", "model", j->model, "created_at", done_at, "done", 1, "done_reason",
                  finish_reason(j, res));
    if (is_chat(j)) {
        json_t *msg = json_pack("{s:s,s:s}", "role", "assistant", "content", final_frame ? "" : text);
        if (!final_frame && res->n_tool_calls > 0) json_object_set_new(msg, "tool_calls", calls_json(j, res));
        json_object_set_new(o, "message", msg);
    }
    else
        json_object_set_new(o, "response", json_string(final_frame ? "" : text));
    if (!is_chat(j)) {
        json_t *ctx = json_array();
        for (int i = 0; i < res->n_context; i++) json_array_append_new(ctx, json_integer(res->context[i]));
        json_object_set_new(o, "context", ctx);
    }
    json_object_set_new(o, "total_duration", json_integer((json_int_t)res->total_ns));
    json_object_set_new(o, "load_duration", json_integer((json_int_t)res->load_ns));
    /* Ollama counts the prompt tokens it evaluated: a reused prefix is not. */
    json_object_set_new(o, "prompt_eval_count", json_integer(res->prompt_tokens - res->cached_tokens));
    json_object_set_new(o, "prompt_eval_duration", json_integer((json_int_t)res->prompt_ns));
    json_object_set_new(o, "eval_count", json_integer(res->completion_tokens));
    json_object_set_new(o, "eval_duration", json_integer((json_int_t)res->eval_ns));
    return o;
}

static void stream_finish(textjob *j, const backend_gen_result *res) {
    if (j->lp_pending && on_token(j, "", 0) != 0) return; /* entries of tokens with no text left */
    if (!j->started) { /* nothing was generated: open the stream now */
        bool ndjson = j->kind == TG_OLLAMA_GENERATE || j->kind == TG_OLLAMA_CHAT;
        json_t *first = j->kind == TG_OPENAI_CHAT ? piece_json(j, "", 0) : NULL;
        j->started = true;
        if (open_stream(j, ndjson ? "application/x-ndjson" : "text/event-stream", first) != 0) return;
    }
    write_frame(j, stats_json(j, res, "", true));
    if (j->kind == TG_OPENAI_CHAT || j->kind == TG_OPENAI_COMPLETION) {
        if (j->include_usage)
            write_frame(j, json_pack("{s:s,s:s,s:i,s:s,s:[],s:o}", "id", j->id, "object",
                                     j->kind == TG_OPENAI_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                                     (int)j->created, "model", j->model, "choices", "usage", usage_json(res)));
        http_stream_write(j->r, "data: [DONE]\n\n", 14);
    }
    http_stream_end(j->r);
}

static void stream_error(textjob *j, int rc, const char *msg) {
    json_t *e;
    if (j->kind == TG_OPENAI_CHAT || j->kind == TG_OPENAI_COMPLETION)
        e = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", msg, "type", "server_error", "param", "code");
    else if (j->kind == TG_OLLAMA_GENERATE || j->kind == TG_OLLAMA_CHAT)
        e = json_pack("{s:s}", "error", msg);
    else
        e = json_pack("{s:s,s:i}", "error", msg, "status", smp_err_status(rc));
    write_frame(j, e);
    http_stream_end(j->r);
}

static const char *endpoint_label(textjob_kind k) {
    switch (k) {
    case TG_SIMPLETON_GENERATE: return "/inference/generate";
    case TG_SIMPLETON_CHAT: return "/inference/chat";
    case TG_OPENAI_CHAT: return "/v1/chat/completions";
    case TG_OPENAI_COMPLETION: return "/v1/completions";
    case TG_OLLAMA_GENERATE: return "/api/generate";
    default: return "/api/chat";
    }
}


/* A backend refuses a request field as "field: why", the field as the
 * request has it ("tool_choice", "tools.1.function.strict",
 * "options.num_ctx"): an OpenAI client also gets it in error.param, as for
 * the API layer's own refusals. Other messages go out as they are. */
static void send_backend_error(textjob *j, int rc, const char *msg) {
    size_t n = strspn(msg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.");
    size_t top = strcspn(msg, "."); /* the field's first part, a member of the body */
    char field[96] = "";
    bool named = n > 0 && n < sizeof field && !strncmp(msg + n, ": ", 2);
    if (named) snprintf(field, sizeof field, "%.*s", (int)(top < n ? top : n), msg);
    bool refusal = rc == -SMP_E_BAD_REQUEST || rc == -SMP_E_NOT_IMPLEMENTED;
    if (!is_openai(j) || !refusal || !named || !json_object_get(j->body, field)) {
        textgen_send_backend_error(j->r, rc, msg);
        return;
    }
    snprintf(field, sizeof field, "%.*s", (int)n, msg);
    valid v;
    valid_init(&v);
    valid_add(&v, field, "unsupported", "%s", msg + n + 2);
    http_validation_done(j->r, &v);
}

static void run_job(void *arg) {
    textjob *j = arg;
    http_req *r = j->r;
    j->req.cancelled = job_cancelled;
    j->req.cancel_ud = j;
    if (j->stream) j->req.on_tool = on_tool;
    j->req.on_logprobs = j->stream && j->req.logprobs ? job_on_logprobs : NULL;
    backend_gen_result res;
    memset(&res, 0, sizeof res);
    const char *served_by = "";
    char err[1024] = "";
    int rc = registry_generate(&j->req, j->stream ? on_token : NULL, j, &res, &served_by, err, sizeof err);
    metrics_llm_request(j->model, endpoint_label(j->kind));
    if (rc < 0) {
        if (j->started) stream_error(j, rc, err);
        else send_backend_error(j, rc, err);
        goto out;
    }
    metrics_llm_tokens(j->model, "prompt", res.prompt_tokens);
    metrics_llm_tokens(j->model, "completion", res.completion_tokens);
    if (j->stream) {
        if (rc == 0) stream_finish(j, &res);
        else if (j->started && util_aborting()) /* cut at the shutdown deadline: say so */
            stream_error(j, -SMP_E_UNAVAILABLE, "generation stopped: the server is shutting down");
        else if (j->started) http_stream_end(r); /* cancelled: the client is gone */
        else http_send_error(r, SMP_E_UNAVAILABLE, "generation cancelled: %s", util_stop_reason());
        goto out;
    }
    if (rc == BACKEND_CANCELLED) {
        http_send_error(r, SMP_E_UNAVAILABLE, "generation cancelled: %s", util_stop_reason());
        goto out;
    }
    json_t *o = stats_json(j, &res, res.text ? res.text : "", false);
    attach_logprobs(j, o, res.logprobs);
    buf b;
    buf_init(&b, 0);
    if (valid_dump(o, JSON_COMPACT | JSON_ENSURE_ASCII, &b) == 0) {
        if (j->cacheable) cache_put(j->ctype, j->cache_key, b.data, b.len, 0);
        if (j->cacheable || j->uncached_miss) http_add_header(r, "X-Cache", "MISS");
        http_add_header(r, "X-Served-By", served_by);
        http_send(r, 200, "application/json", b.data, b.len);
    } else {
        http_send_error(r, SMP_E_NOMEM, NULL);
    }
    json_decref(o);
    buf_free(&b);
out:
    backend_gen_result_free(&res);
    textjob_free(j);
    http_release(r);
}

void textgen_run_here(http_req *r, void (*fn)(void *), void *arg) {
    http_detach(r);
    fn(arg);
}

int textgen_submit(http_req *r, void (*fn)(void *), void *arg) {
    http_detach(r);
    int rc = workq_submit(pool, fn, arg);
    if (rc == -SMP_E_TOO_MANY) {
        http_add_header(r, "Retry-After", "2");
        http_send_error(r, SMP_E_UNAVAILABLE, "Server busy: too many requests queued; try again shortly");
    } else if (rc) {
        http_send_error(r, SMP_E_UNAVAILABLE, "Server is shutting down");
    }
    if (rc) http_release(r);
    return rc;
}

/* ---- cache key: one JSON object with a member per TEXTGEN_KEY_FIELDS row -- */

static json_t *key_str(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *key_ids(const backend_gen_req *q) {
    json_t *a = json_array();
    for (int i = 0; i < q->n_context; i++) json_array_append_new(a, json_integer(q->context[i]));
    return a;
}

static json_t *key_stop(const backend_gen_req *q) {
    json_t *a = json_array();
    for (int i = 0; i < q->n_stop; i++) json_array_append_new(a, json_string(q->stop[i]));
    return a;
}

/* {"id": bias}: the order the client wrote them in does not matter. */
static json_t *key_bias(const backend_gen_req *q) {
    json_t *o = json_object();
    for (int i = 0; i < q->n_logit_bias; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", (int)q->logit_bias[i].id);
        json_object_set_new(o, id, json_real(q->logit_bias[i].bias));
    }
    return o;
}

/* Images go in as SHA-256 digests of their decoded bytes. */
static json_t *key_messages(const backend_gen_req *q) {
    json_t *a = json_array();
    for (int i = 0; i < q->n_messages; i++) {
        const backend_msg *m = &q->messages[i];
        json_t *imgs = json_array();
        for (int k = 0; k < m->n_images; k++) {
            char hex[65];
            util_sha256_hex(m->images[k], m->image_lens[k], hex);
            json_array_append_new(imgs, json_string(hex));
        }
        json_t *calls = json_array();
        for (int k = 0; k < m->n_tool_calls; k++)
            json_array_append_new(calls, json_pack("[s,s,s]", m->tool_calls[k].id, m->tool_calls[k].name,
                                                   m->tool_calls[k].arguments));
        json_array_append_new(a, json_pack("{s:s,s:s,s:o,s:o,s:o,s:o}", "role", m->role, "content",
                                           m->content ? m->content : "", "images", imgs, "tool_calls", calls,
                                           "tool_call_id", key_str(m->tool_call_id), "tool_name",
                                           key_str(m->tool_name)));
    }
    return a;
}

/* Each tool as the model is shown it. */
static json_t *key_tools(const backend_gen_req *q) {
    json_t *a = json_array();
    for (int i = 0; i < q->n_tools; i++) {
        const backend_tool *t = &q->tools[i];
        json_array_append_new(a, json_pack("[s,o,o,b]", t->name, key_str(t->description),
                                           t->parameters ? json_incref((json_t *)t->parameters) : json_null(),
                                           t->strict));
    }
    return a;
}

#define KEY_STR(m) key_str(q->m)
#define KEY_BOOL(m) json_boolean(q->m)
#define KEY_INT(m) json_integer(q->m)
#define KEY_NUM(m) json_real(q->m)
#define KEY_SEED(m) (q->has_seed ? json_integer((json_int_t)q->m) : json_null())
#define KEY_IDS(m) key_ids(q)
#define KEY_MSGS(m) key_messages(q)
#define KEY_STOP(m) key_stop(q)
#define KEY_JSON(m) (q->m ? json_incref((json_t *)q->m) : json_null())
#define KEY_BIAS(m) key_bias(q)
#define KEY_TOOLS(m) key_tools(q)
#define KEY_FIELD(m, kind) json_object_set_new(k, #m, KEY_##kind(m));

void textgen_cache_key(textjob_kind kind, const backend_gen_req *q, char out[CACHE_KEY_MAX]) {
    json_t *k = json_pack("{s:s}", "kind", endpoint_label(kind));
    if (k) {
        TEXTGEN_KEY_FIELDS(KEY_FIELD)
    }
    cache_key(kind_is_chat(kind) ? CACHE_CHAT : CACHE_INFERENCE, k, out);
    json_decref(k);
}

void textjob_start(textjob *j, const char *requested_model) {
    http_req *r = j->r;
    registry_model_name(requested_model, MODEL_KIND_INFERENCE, j->model, sizeof j->model);
    j->req.model = j->model;
    j->ctype = is_chat(j) ? CACHE_CHAT : CACHE_INFERENCE;
    /* A sampled answer (temperature above 0, no seed) is one draw among
     * many: asking again ("regenerate") must give a new one, unless
     * CACHE_SAMPLED says otherwise. */
    const config *c = config_get();
    bool sampled = j->req.temperature > 0 && !j->req.has_seed;
    bool wanted = !j->stream && cache_wanted(http_header(r, "Cache-Control"));
    j->cacheable = wanted && (!sampled || (c && c->cache_sampled));
    j->uncached_miss = wanted && !j->cacheable;
    if (j->cacheable) {
        textgen_cache_key(j->kind, &j->req, j->cache_key);
        char *hit;
        size_t len;
        if (cache_get(j->ctype, j->cache_key, &hit, &len) == 1) {
            http_add_header(r, "X-Cache", "HIT");
            http_send(r, 200, "application/json", hit, len);
            smp_free(hit);
            textjob_free(j);
            return;
        }
    }
    if (!j->stream)
        textgen_run_here(r, run_job, j);
    else if (textgen_submit(r, run_job, j) != 0)
        textjob_free(j);
}

void textjob_finish(textjob *j, valid *v, bool stream, const char *requested_model) {
    if (!http_validation_done(j->r, v)) {
        textjob_free(j);
        return;
    }
    j->stream = stream;
    textjob_start(j, requested_model);
}
