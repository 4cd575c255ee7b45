/* remote.c - tool and log-probability translation shared by the remote
 * backends (see remote.h). */
#include "backend/remote.h"

#include <stdlib.h>
#include <string.h>

#include "core/errors.h"

json_t *remote_tools_json(const backend_gen_req *req, bool with_strict) {
    json_t *list = json_array();
    for (int i = 0; list && i < req->n_tools; i++) {
        const backend_tool *t = &req->tools[i];
        json_t *fn = json_object();
        json_object_set_new(fn, "name", json_string(t->name ? t->name : ""));
        if (t->description) json_object_set_new(fn, "description", json_string(t->description));
        if (t->parameters) json_object_set(fn, "parameters", (json_t *)t->parameters);
        if (with_strict && t->strict) json_object_set_new(fn, "strict", json_true());
        json_t *tool = json_pack("{s:s,s:o}", "type", "function", "function", fn);
        if (!tool || json_array_append_new(list, tool) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

/* bytes as sent, when it is a list of byte values; else NULL. */
static json_t *valid_bytes(json_t *bytes) {
    if (!json_is_array(bytes)) return NULL;
    size_t i;
    json_t *v;
    json_array_foreach(bytes, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 255) return NULL;
    }
    return bytes;
}

static json_t *token_bytes(const char *token) {
    json_t *list = json_array();
    for (const unsigned char *p = (const unsigned char *)token; list && *p; p++)
        json_array_append_new(list, json_integer(*p));
    return list;
}

static json_t *plain_entry(const char *token, double logprob, json_t *bytes) {
    json_t *b = valid_bytes(bytes);
    return json_pack("{s:s,s:f,s:o}", "token", token, "logprob", logprob, "bytes",
                     b ? json_incref(b) : token_bytes(token));
}

/* An item's logprob; null or a non-number (a server's way of saying "too
 * unlikely to tell") becomes -9999, OpenAI's own floor. */
static double item_logprob(json_t *item) {
    json_t *lp = json_object_get(item, "logprob");
    return json_is_number(lp) ? json_number_value(lp) : -9999.0;
}

json_t *remote_logprob_entry(const char *token, double logprob, json_t *bytes, json_t *top) {
    json_t *e = plain_entry(token, logprob, bytes);
    json_t *alts = json_array();
    if (!e || !alts || json_object_set_new(e, "top_logprobs", alts) != 0) {
        json_decref(e);
        return NULL;
    }
    size_t i;
    json_t *t;
    json_array_foreach(top, i, t) {
        const char *tok = json_string_value(json_object_get(t, "token"));
        if (!tok) continue;
        json_t *a = plain_entry(tok, item_logprob(t), json_object_get(t, "bytes"));
        if (!a || json_array_append_new(alts, a) != 0) {
            json_decref(e);
            return NULL;
        }
    }
    return e;
}

json_t *remote_logprob_entries(json_t *list) {
    json_t *out = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        const char *tok = json_string_value(json_object_get(item, "token"));
        if (!tok || !out) continue;
        json_t *e = remote_logprob_entry(tok, item_logprob(item), json_object_get(item, "bytes"),
                                         json_object_get(item, "top_logprobs"));
        if (!e || json_array_append_new(out, e) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    return out;
}

int remote_take_logprobs(remote_logprobs_fn on_logprobs, void *ud, json_t *entries, backend_gen_result *out) {
    if (!entries) return -SMP_E_NOMEM;
    int rc = 0;
    if (json_array_size(entries) > 0) {
        if (on_logprobs && on_logprobs(ud, entries) != 0) rc = 1;
        if (!out->logprobs) out->logprobs = json_array();
        if (!out->logprobs || json_array_extend(out->logprobs, entries) != 0) rc = -SMP_E_NOMEM;
    }
    json_decref(entries);
    return rc;
}

int remote_whole_call(remote_tool_fn on_tool, void *ud, backend_gen_result *out, const char *id,
                      const char *name, const char *arguments) {
    char made[40];
    if (!id || !*id) {
        backend_call_id(made, sizeof made);
        id = made;
    }
    int index = out->n_tool_calls;
    if (backend_result_add_call(out, id, name, arguments) != 0) return -SMP_E_NOMEM;
    if (!on_tool) return 0;
    const backend_tool_call *c = &out->tool_calls[index];
    backend_tool_event first = {.index = index, .id = c->id, .name = c->name, .args = ""};
    backend_tool_event args = {.index = index, .args = c->arguments, .args_len = strlen(c->arguments)};
    backend_tool_event done = {.index = index, .args = "", .done = true};
    if (on_tool(ud, &first) || on_tool(ud, &args) || on_tool(ud, &done)) return 1;
    return 0;
}

const char *remote_done_reason(const backend_gen_result *out, const char *upstream_reason) {
    bool length = upstream_reason && !strcmp(upstream_reason, "length");
    if (out->n_tool_calls > 0 && !length) return "tool_calls";
    return length ? "length" : "stop";
}
