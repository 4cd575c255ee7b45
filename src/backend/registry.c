/* registry.c - see registry.h. Model lists of remote backends are cached for
 * LIST_TTL_NS so routing a request costs no extra round trip. */
#include "backend/registry.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "backend/local.h"
#include "backend/ollama.h"
#include "backend/openai.h"
#include "core/alloc.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"

#define LIST_TTL_NS 5000000000ull

static const config *cfg;
static backend *bks[REGISTRY_MAX];
static int nbk;
static struct {
    pthread_mutex_t mu;
    json_t *models;  /* cached list (remote backends) */
    uint64_t at;
    bool reachable;
    char error[256];
} lists[REGISTRY_MAX];

int registry_count(void) { return nbk; }
backend *registry_at(int i) { return i >= 0 && i < nbk ? bks[i] : NULL; }

static backend *by_name(const char *name, size_t n) {
    for (int i = 0; i < nbk; i++)
        if (strlen(bks[i]->ops->name) == n && !strncmp(bks[i]->ops->name, name, n)) return bks[i];
    return NULL;
}

static int index_of(const backend *b) {
    for (int i = 0; i < nbk; i++)
        if (bks[i] == b) return i;
    return -1;
}

int registry_init(const config *c, char *err, size_t errlen) {
    cfg = c;
    backend *made[3] = {0};
    made[0] = local_backend_new(c, err, errlen);
    if (!made[0]) return -1;
    httpc_timeouts t = HTTPC_TIMEOUTS_DEFAULT;
    t.generate_ms = c->upstream_timeout * 1000;
    t.embed_ms = c->upstream_embed_timeout * 1000;
    if (c->ollama_base_url && *c->ollama_base_url) {
        made[1] = ollama_backend_new(c->ollama_base_url, c->ollama_api_key, err, errlen);
        if (!made[1]) goto fail;
        ollama_backend_set_timeouts(made[1], &t);
    }
    if (c->openai_base_url && *c->openai_base_url) {
        made[2] = openai_backend_new(c->openai_base_url, c->openai_api_key, err, errlen);
        if (!made[2]) goto fail;
        openai_backend_set_timeouts(made[2], &t);
    }
    /* Order by BACKEND_ORDER; configured backends it leaves out go last. */
    const char *s = c->backend_order;
    while (*s) {
        while (*s == ' ' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *te = e;
        while (te > s && te[-1] == ' ') te--;
        if (te > s) {
            int found = 0;
            for (int i = 0; i < 3; i++) {
                if (!made[i] || strlen(made[i]->ops->name) != (size_t)(te - s) ||
                    strncmp(made[i]->ops->name, s, (size_t)(te - s)))
                    continue;
                bks[nbk++] = made[i];
                made[i] = NULL;
                found = 1;
            }
            if (!found && strncmp(s, "local", 5) && strncmp(s, "ollama", 6) && strncmp(s, "openai", 6)) {
                snprintf(err, errlen, "BACKEND_ORDER: unknown backend '%.*s' (expected local, ollama, openai)",
                         (int)(te - s), s);
                goto fail;
            }
        }
        s = e;
    }
    for (int i = 0; i < 3; i++)
        if (made[i]) bks[nbk++] = made[i], made[i] = NULL;
    for (int i = 0; i < nbk; i++) pthread_mutex_init(&lists[i].mu, NULL);
    /* MODEL_BACKENDS must name backends that exist. */
    s = c->model_backends;
    while (*s) {
        while (*s == ' ' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (e > s && (!eq || eq == s || !by_name(eq + 1, (size_t)(e - eq - 1)))) {
            snprintf(err, errlen, "MODEL_BACKENDS: '%.*s' is not model=backend with a configured backend", (int)(e - s),
                     s);
            registry_free();
            return -1;
        }
        s = e;
    }
    return 0;
fail:
    for (int i = 0; i < 3; i++)
        if (made[i]) made[i]->ops->destroy(made[i]);
    registry_free();
    return -1;
}

void registry_free(void) {
    for (int i = 0; i < nbk; i++) {
        bks[i]->ops->destroy(bks[i]);
        json_decref(lists[i].models);
        lists[i].models = NULL;
        pthread_mutex_destroy(&lists[i].mu);
    }
    nbk = 0;
}

/* The backend's model list, from cache when fresh. New reference or NULL
 * (unreachable; the reason is kept in lists[i].error). */
static json_t *models_of(int i) {
    pthread_mutex_lock(&lists[i].mu);
    bool local = !strcmp(bks[i]->ops->name, "local");
    if (!local && lists[i].at && util_now_ns() - lists[i].at < LIST_TTL_NS) {
        json_t *m = json_incref(lists[i].models);
        pthread_mutex_unlock(&lists[i].mu);
        return m;
    }
    pthread_mutex_unlock(&lists[i].mu);
    json_t *m = NULL;
    char err[256] = "";
    int rc = bks[i]->ops->list_models(bks[i], &m, err, sizeof err);
    pthread_mutex_lock(&lists[i].mu);
    json_decref(lists[i].models);
    lists[i].models = rc == 0 ? json_incref(m) : NULL;
    lists[i].reachable = rc == 0;
    snprintf(lists[i].error, sizeof lists[i].error, "%s", err);
    lists[i].at = util_now_ns();
    pthread_mutex_unlock(&lists[i].mu);
    return rc == 0 ? m : NULL;
}

/* Does list m name model? Ollama names carry ":latest" implicitly. */
static bool list_has(json_t *m, const char *model) {
    size_t k, ml = strlen(model);
    json_t *x;
    json_array_foreach(m, k, x) {
        const char *n = json_string_value(json_object_get(x, "name"));
        if (n && (!strcmp(n, model) || (!strchr(model, ':') && !strncmp(n, model, ml) && !strcmp(n + ml, ":latest"))))
            return true;
    }
    return false;
}

/* 1 has it, 0 not, -1 unreachable. */
static int has(int i, const char *model) {
    if (!strcmp(bks[i]->ops->name, "local")) return bks[i]->ops->has_model(bks[i], model);
    json_t *m = models_of(i);
    if (!m) return -1;
    int found = list_has(m, model);
    json_decref(m);
    return found;
}

bool registry_model_known(const char *model) {
    size_t bl;
    if (registry_explicit_backend(model, &bl)) return true;
    for (int i = 0; i < nbk; i++) {
        if (!strcmp(bks[i]->ops->name, "local")) {
            if (bks[i]->ops->has_model(bks[i], model) > 0) return true;
            continue;
        }
        pthread_mutex_lock(&lists[i].mu);
        bool found = lists[i].models && list_has(lists[i].models, model);
        pthread_mutex_unlock(&lists[i].mu);
        if (found) return true;
    }
    return false;
}

const char *registry_explicit_backend(const char *model, size_t *len) {
    const config *c = cfg ? cfg : config_get();
    const char *s = c ? c->model_backends : NULL;
    size_t ml = strlen(model);
    while (s && *s) {
        while (*s == ' ' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (eq && (size_t)(eq - s) == ml && !strncmp(s, model, ml)) {
            *len = (size_t)(e - eq - 1);
            return eq + 1;
        }
        s = e;
    }
    return NULL;
}

int registry_route(const char *model, backend **out, char *err, size_t errlen) {
    int n = 0;
    size_t bl;
    const char *bn = registry_explicit_backend(model, &bl);
    if (bn) out[n++] = by_name(bn, bl);
    char down[256] = "";
    for (int i = 0; i < nbk && n < REGISTRY_MAX; i++) {
        if (n && out[0] == bks[i]) continue;
        int h = has(i, model);
        if (h > 0) out[n++] = bks[i];
        if (h < 0 && !down[0]) {
            pthread_mutex_lock(&lists[i].mu);
            snprintf(down, sizeof down, "%s", lists[i].error);
            pthread_mutex_unlock(&lists[i].mu);
        }
    }
    if (n) return n;
    if (down[0]) {
        snprintf(err, errlen, "%s", down);
        return -SMP_E_UNAVAILABLE;
    }
    /* Not found anywhere: say what exists. */
    json_t *all = registry_list_models();
    size_t o = (size_t)snprintf(err, errlen, "model '%s' not found. Available models: ", model);
    size_t k;
    json_t *x;
    json_array_foreach(all, k, x) {
        if (o + 2 >= errlen) break;
        o += (size_t)snprintf(err + o, errlen - o, "%s%s", k ? ", " : "", json_string_value(json_object_get(x, "name")));
    }
    if (!json_array_size(all) && o < errlen) snprintf(err + o, errlen - o, "(none)");
    json_decref(all);
    return 0;
}

void registry_model_name(const char *requested, model_kind kind, char *out, size_t n) {
    if (requested && *requested) {
        snprintf(out, n, "%s", requested);
        return;
    }
    const char *def = kind == MODEL_KIND_EMBEDDING ? cfg->default_embedding_model
                      : kind == MODEL_KIND_VISION  ? cfg->default_vision_model
                                                   : cfg->default_inference_model;
    snprintf(out, n, "%s", def);
    if (kind == MODEL_KIND_VISION || !local_builtin_model()) return;
    backend *b[REGISTRY_MAX];
    char err[64];
    if (registry_route(def, b, err, sizeof err) > 0) return;
    /* Nothing serves the configured default: the built-in model does. */
    static bool said;
    if (!said) {
        said = true;
        log_warn("no backend has the default model '%s': serving the built-in model '%s' instead", def,
                 local_builtin_model());
    }
    snprintf(out, n, "%s", local_builtin_model());
}

/* What a backend streams goes through here, so the registry knows whether
 * anything reached the client; the request's own callbacks get their ud. */
typedef struct {
    backend_token_fn fn;
    void *ud;
    const backend_gen_req *req;
    bool produced;
} relay;

static int relay_token(void *ud, const char *piece, size_t len) {
    relay *r = ud;
    r->produced = true;
    return r->fn ? r->fn(r->ud, piece, len) : 0;
}

static int relay_logprobs(void *ud, const json_t *entries) {
    relay *r = ud;
    r->produced = true;
    return r->req->on_logprobs(r->ud, entries);
}

static int relay_tool(void *ud, const backend_tool_event *e) {
    relay *r = ud;
    r->produced = true;
    return r->req->on_tool(r->ud, e);
}

int registry_generate(const backend_gen_req *req, backend_token_fn on_token, void *ud, backend_gen_result *out,
                      const char **served_by, char *err, size_t errlen) {
    backend *cands[REGISTRY_MAX];
    int n = registry_route(req->model, cands, err, errlen);
    if (n == 0) return -SMP_E_NOT_FOUND;
    if (n < 0) return n;
    int rc = -SMP_E_UNAVAILABLE;
    backend_gen_req q = *req;
    if (req->on_logprobs) q.on_logprobs = relay_logprobs;
    if (req->on_tool) q.on_tool = relay_tool;
    for (int i = 0; i < n; i++) {
        relay r = {on_token, ud, req, false};
        *served_by = cands[i]->ops->name;
        /* No callback means nobody streams: the backend may then ask for one
         * whole answer, and nothing reached the client if it fails. */
        rc = cands[i]->ops->generate(cands[i], &q, on_token ? relay_token : NULL, &r, out, err, errlen);
        if (rc != -SMP_E_UNAVAILABLE || r.produced) return rc;
        if (i + 1 < n) log_warn("%s unreachable for '%s' (%s): falling back to %s", cands[i]->ops->name, req->model, err,
                                cands[i + 1]->ops->name);
        int li = index_of(cands[i]);
        if (li >= 0) {
            pthread_mutex_lock(&lists[li].mu);
            lists[li].at = 0; /* refresh its list next time */
            pthread_mutex_unlock(&lists[li].mu);
        }
    }
    return rc;
}

int registry_embed(const backend_embed_req *req, backend_embed_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->bad_input = -1;
    backend *cands[REGISTRY_MAX];
    int nc = registry_route(req->model, cands, err, errlen);
    if (nc == 0) return -SMP_E_NOT_FOUND;
    if (nc < 0) return nc;
    int rc = -SMP_E_UNAVAILABLE;
    for (int i = 0; i < nc; i++) {
        rc = cands[i]->ops->embed(cands[i], req, out, err, errlen);
        if (rc != -SMP_E_UNAVAILABLE) return rc;
    }
    return rc;
}

json_t *registry_list_models(void) {
    json_t *all = json_array();
    for (int i = 0; i < nbk; i++) {
        json_t *m = models_of(i);
        size_t k;
        json_t *x;
        json_array_foreach(m, k, x) {
            json_t *c = json_deep_copy(x);
            json_object_set_new(c, "backend", json_string(bks[i]->ops->name));
            json_array_append_new(all, c);
        }
        json_decref(m);
    }
    return all;
}

json_t *registry_health(bool *any_ok) {
    json_t *o = json_object();
    *any_ok = false;
    for (int i = 0; i < nbk; i++) {
        json_t *h = NULL;
        bool ok = bks[i]->ops->health(bks[i], &h);
        *any_ok |= ok;
        json_object_set_new(o, bks[i]->ops->name, h ? h : json_object());
    }
    return o;
}
