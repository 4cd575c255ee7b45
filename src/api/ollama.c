/* ollama.c - the Ollama dialect's text routes: POST /api/generate and
 * POST /api/chat (NDJSON streaming, on by default as in Ollama). */
#include <string.h>

#include "api/api.h"
#include "api/fields.h"
#include "api/textgen.h"
#include "backend/registry.h"
#include "core/alloc.h"
#include "core/errors.h"
#include "core/util.h"
#include "core/valid.h"
#include "http/router.h"
#include "http/server.h"

/* options: {temperature, top_p, top_k, min_p, repeat_penalty, presence_penalty,
 * frequency_penalty, seed, num_predict, num_ctx, stop}. */
static void parse_options(valid *v, json_t *b, backend_gen_req *q) {
    q->temperature = 0.8; /* Ollama's default */
    json_t *o = json_object_get(b, "options");
    if (!o || json_is_null(o)) return;
    if (!json_is_object(o)) {
        valid_add(v, "options", "dict_type", "options should be an object");
        return;
    }
    fields_check(v, o, &fields_ollama_options, "options.");
    double d;
    long long n;
    if (valid_num(v, o, "temperature", false, 0, 2, &d) == 1) q->temperature = d;
    if (valid_num(v, o, "top_p", false, 0, 1, &d) == 1) q->top_p = d;
    if (valid_int(v, o, "top_k", false, 0, 1000000, &n) == 1) q->top_k = (int)n;
    if (valid_num(v, o, "min_p", false, 0, 1, &d) == 1) q->min_p = d;
    if (valid_num(v, o, "repeat_penalty", false, 0, 10, &d) == 1) q->repeat_penalty = d;
    if (valid_num(v, o, "presence_penalty", false, -2, 2, &d) == 1) q->presence_penalty = d;
    if (valid_num(v, o, "frequency_penalty", false, -2, 2, &d) == 1) q->frequency_penalty = d;
    if (valid_int(v, o, "seed", false, INT64_MIN, INT64_MAX, &n) == 1) q->has_seed = true, q->seed = (uint64_t)n;
    if (valid_int(v, o, "num_predict", false, -2, 1 << 20, &n) == 1) q->max_tokens = n > 0 ? (int)n : 0;
    if (valid_int(v, o, "num_ctx", false, 0, 1 << 24, &n) == 1) q->num_ctx = (int)n; /* 0: the model's */
    textgen_parse_stop(v, o, "stop", q);
}

/* Ollama answers a generate with an empty prompt, or a chat with no
 * messages, by loading the model: done_reason "load" when a backend has it,
 * 404 "model 'x' not found" when none does. Takes the job. */
static void answer_load(http_req *r, textjob *j, const char *model, bool chat) {
    backend *b[REGISTRY_MAX];
    char err[1024] = "";
    int n = registry_route(model, b, err, sizeof err);
    if (n <= 0) {
        textgen_send_backend_error(r, n == 0 ? -SMP_E_NOT_FOUND : n, err);
    } else {
        char ts[40];
        util_iso8601(util_wall_seconds(), ts, sizeof ts);
        json_t *o = json_pack("{s:s,s:s,s:b,s:s}", "model", model, "created_at", ts, "done", 1, "done_reason", "load");
        if (chat) json_object_set_new(o, "message", json_pack("{s:s,s:s}", "role", "assistant", "content", ""));
        else json_object_set_new(o, "response", json_string(""));
        http_send_json(r, 200, o);
    }
    textjob_free(j);
}

static void generate(http_req *r) {
    json_t *b;
    textjob *j = textjob_from_request(r, TG_OLLAMA_GENERATE, &b);
    if (!j) return;
    valid v;
    valid_init(&v);
    backend_gen_req *q = textjob_req(j);
    const char *model = NULL;
    bool stream = true;
    fields_check(&v, b, &fields_ollama_generate, "");
    valid_str(&v, b, "model", true, true, &model);
    valid_str(&v, b, "prompt", false, false, &q->prompt);
    valid_str(&v, b, "system", false, false, &q->system);
    valid_bool(&v, b, "stream", false, &stream);
    valid_bool(&v, b, "raw", false, &q->raw);
    parse_options(&v, b, q);
    textgen_parse_ollama_format(&v, b, q);
    textgen_parse_logprobs(&v, b, q);
    textgen_parse_ids(&v, j, b, "context");
    json_t *images = json_object_get(b, "images");
    if (images && !json_is_null(images) && !json_is_array(images)) {
        valid_add(&v, "images", "list_type", "Input should be a list of base64 images");
    } else if (json_array_size(images) > 0 && valid_ok(&v) && !json_object_get(b, "messages")) {
        /* A multimodal generate: asked as one user turn (with the system
         * prompt) so the images travel with it to a backend that reads
         * them, and the local engine refuses them instead of dropping them. */
        json_t *msgs = json_array();
        if (q->system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", q->system));
        json_array_append_new(msgs, json_pack("{s:s,s:s,s:O}", "role", "user", "content", q->prompt ? q->prompt : "",
                                              "images", images));
        json_object_set_new(b, "messages", msgs);
        if (api_parse_messages(&v, j, b) == 0) q->system = NULL;
    }
    if (valid_ok(&v) && (!q->prompt || !*q->prompt) && !q->messages) {
        valid_free(&v);
        answer_load(r, j, model, false);
        return;
    }
    textjob_finish(j, &v, stream, model);
}

static void chat(http_req *r) {
    json_t *b;
    textjob *j = textjob_from_request(r, TG_OLLAMA_CHAT, &b);
    if (!j) return;
    valid v;
    valid_init(&v);
    const char *model = NULL;
    bool stream = true;
    fields_check(&v, b, &fields_ollama_chat, "");
    fields_check_list(&v, b, "messages", &fields_ollama_message);
    valid_str(&v, b, "model", true, true, &model);
    valid_bool(&v, b, "stream", false, &stream);
    parse_options(&v, b, textjob_req(j));
    textgen_parse_ollama_format(&v, b, textjob_req(j));
    textgen_parse_logprobs(&v, b, textjob_req(j));
    json_t *msgs = json_object_get(b, "messages");
    if (valid_ok(&v) && (!msgs || json_is_null(msgs) || (json_is_array(msgs) && !json_array_size(msgs)))) {
        valid_free(&v);
        answer_load(r, j, model, true);
        return;
    }
    textgen_parse_tools(&v, j, b, false);
    if (api_parse_messages(&v, j, b) > 0) textgen_parse_messages_tools(&v, j, b, false);
    textjob_finish(j, &v, stream, model);
}

void api_ollama_register(void) {
    router_add("POST", "/api/generate", generate, 0, "Ollama: generate (stream: NDJSON, default on)");
    router_add("POST", "/api/chat", chat, 0, "Ollama: chat (stream: NDJSON, default on)");
}
