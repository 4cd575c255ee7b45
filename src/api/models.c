/* models.c - model listings: Simpleton's GET /models, OpenAI's GET /v1/models
 * (and /v1/models/{model}), Ollama's /api/tags, /api/ps, /api/show,
 * /api/version. Every list merges all backends, each entry naming its backend;
 * /models also lists the Whisper model files (kind 'audio'). */
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/fields.h"
#include "backend/registry.h"
#include "core/errors.h"
#include "core/valid.h"
#include "core/version.h"
#include "http/router.h"
#include "http/server.h"
#include "media/whisper_store.h"

/* Text models of every backend, then the Whisper model files (kind "audio"). */
static void list(http_req *r) {
    json_t *all = registry_list_models(), *audio = whisper_store_list();
    if (audio) json_array_extend(all, audio);
    json_decref(audio);
    http_send_json(r, 200, json_pack("{s:o}", "models", all));
}

static void openai_list(http_req *r) {
    json_t *all = registry_list_models(), *data = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(all, i, m) {
        json_array_append_new(data, json_pack("{s:O,s:s,s:i,s:O}", "id", json_object_get(m, "name"), "object",
                                              "model", "created", (int)time(NULL), "owned_by",
                                              json_object_get(m, "backend")));
    }
    json_decref(all);
    http_send_json(r, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

static json_t *find(const char *name) {
    json_t *all = registry_list_models();
    size_t i;
    json_t *m, *found = NULL;
    json_array_foreach(all, i, m) {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n && !strcmp(n, name)) {
            found = json_incref(m);
            break;
        }
    }
    json_decref(all);
    return found;
}

static void openai_one(http_req *r) {
    const char *name = http_param(r, "model");
    json_t *m = find(name);
    if (!m) return http_send_error(r, SMP_E_NOT_FOUND, "The model '%s' does not exist", name);
    http_send_json(r, 200, json_pack("{s:s,s:s,s:i,s:O}", "id", name, "object", "model", "created", (int)time(NULL),
                                     "owned_by", json_object_get(m, "backend")));
    json_decref(m);
}

static json_t *ollama_entry(json_t *m) {
    const char *fam = json_string_value(json_object_get(m, "family"));
    return json_pack("{s:O,s:O,s:O,s:O,s:O,s:{s:s,s:s,s:[s],s:s,s:s}}", "name", json_object_get(m, "name"), "model",
                     json_object_get(m, "name"), "modified_at", json_object_get(m, "modified_at"), "size",
                     json_object_get(m, "size"), "digest", json_object_get(m, "digest"), "details", "format", "gguf",
                     "family", fam ? fam : "", "families", fam ? fam : "", "parameter_size", "",
                     "quantization_level", "");
}

static void ollama_tags(http_req *r) {
    json_t *all = registry_list_models(), *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(all, i, m) json_array_append_new(out, ollama_entry(m));
    json_decref(all);
    http_send_json(r, 200, json_pack("{s:o}", "models", out));
}

static void ollama_ps(http_req *r) {
    /* Loaded local models, from the local backend's health report. */
    bool ok;
    json_t *h = registry_health(&ok), *out = json_array();
    json_t *loaded = json_object_get(json_object_get(h, "local"), "models_loaded");
    json_t *slots = json_object_get(json_object_get(h, "local"), "slots");
    size_t i;
    json_t *n;
    json_array_foreach(loaded, i, n) {
        json_t *m = find(json_string_value(n));
        if (m) {
            json_t *e = ollama_entry(m);
            json_object_set_new(e, "size_vram", json_integer(0));
            json_object_set_new(e, "expires_at", json_string("0001-01-01T00:00:00Z"));
            /* Simpleton's own: the model's slots (PARALLEL) and how many run an answer. */
            json_t *sl = json_object_get(slots, json_string_value(n));
            if (sl) json_object_set(e, "slots", sl);
            json_array_append_new(out, e);
            json_decref(m);
        }
    }
    json_decref(h);
    http_send_json(r, 200, json_pack("{s:o}", "models", out));
}

static void ollama_show(http_req *r) {
    json_t *b = http_json_object(r);
    if (!b) return;
    valid v;
    valid_init(&v);
    fields_check(&v, b, &fields_ollama_show, "");
    const char *name = NULL;
    if (valid_str(&v, b, "model", false, true, &name) != 1 && valid_str(&v, b, "name", false, true, &name) != 1 &&
        valid_ok(&v))
        valid_add(&v, "model", "missing", "Field required");
    if (!http_validation_done(r, &v)) {
        json_decref(b);
        return;
    }
    json_t *m = find(name);
    if (!m) {
        http_send_error(r, SMP_E_NOT_FOUND, "model '%s' not found", name);
    } else {
        json_t *e = ollama_entry(m);
        json_t *o = json_pack("{s:s,s:s,s:s,s:O,s:{s:O},s:O}", "license", "", "modelfile", "", "template", "",
                              "details", json_object_get(e, "details"), "model_info", "general.architecture",
                              json_object_get(json_object_get(e, "details"), "family"), "modified_at",
                              json_object_get(m, "modified_at"));
        json_decref(e);
        json_decref(m);
        http_send_json(r, 200, o);
    }
    json_decref(b);
}

static void ollama_version(http_req *r) { http_send_json(r, 200, json_pack("{s:s}", "version", SIMPLETON_VERSION)); }

void api_models_register(void) {
    router_add("GET", "/models", list, 0, "Every model of every backend");
    router_add("GET", "/v1/models", openai_list, 0, "OpenAI: list models");
    router_add("GET", "/v1/models/{model}", openai_one, 0, "OpenAI: one model");
    router_add("GET", "/api/tags", ollama_tags, 0, "Ollama: list models");
    router_add("GET", "/api/ps", ollama_ps, 0, "Ollama: loaded models");
    router_add("POST", "/api/show", ollama_show, 0, "Ollama: model details");
    router_add("GET", "/api/version", ollama_version, 0, "Ollama: version");
}
