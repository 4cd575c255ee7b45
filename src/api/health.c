/* health.c - service routes: /, /health, /metrics, /docs, /openapi.json.
 *
 * /health asks every registered probe (backends, models, the cache) and says
 * "healthy" (200) when everything can serve, "degraded" (200) when something
 * optional is down (the cache), "unhealthy" (503) when a backend is down.
 * It is public, so its answer goes through api_public_scrub (no paths). */
#include <pthread.h>
#include <string.h>

#include "api/api.h"
#include "api/fields.h"
#include "backend/registry.h"
#include "cache/cache.h"
#include "core/errors.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/version.h"
#include "http/router.h"
#include "http/server.h"
#include "obs/metrics.h"

#define MAX_PROBES 32

static struct {
    const char *kind, *name;
    health_probe fn;
    void *ud;
} probes[MAX_PROBES];
static int nprobes;

void api_health_add_probe(const char *kind, const char *name, health_probe fn, void *ud) {
    if (nprobes < MAX_PROBES) probes[nprobes++] = (typeof(probes[0])){kind, name, fn, ud};
}

/* Does an absolute path start at s[i]? A '/' at the start of the string or
 * after a separator, not followed by another '/' ("http://" is no path). */
static bool path_at(const char *s, size_t i) {
    return s[i] == '/' && s[i + 1] && s[i + 1] != '/' && !strchr(" \t\n", s[i + 1]) &&
           (i == 0 || strchr(" \t\n('\"=,:[", s[i - 1]));
}

static bool path_end(char c) { return !c || strchr(" \t\n'\"),;:]", c); }

/* s with each absolute path replaced by its last component; NULL when s has
 * none (or memory ran out: the caller then drops the string). */
static char *scrub_string(const char *s, bool *failed) {
    size_t n = strlen(s), i = 0;
    while (i < n && !path_at(s, i)) i++;
    if (i == n) return NULL;
    buf b;
    buf_init(&b, 0);
    int fail = buf_append(&b, s, i);
    while (i < n && !fail) {
        if (!path_at(s, i)) {
            fail = buf_append(&b, s + i++, 1);
            continue;
        }
        size_t e = i;
        while (!path_end(s[e])) e++;
        size_t last_end = e;
        while (last_end > i + 1 && s[last_end - 1] == '/') last_end--; /* "/a/dir/" -> "dir" */
        size_t last = last_end;
        while (last > i && s[last - 1] != '/') last--;
        fail = buf_append(&b, s + last, last_end - last);
        i = e;
    }
    if (fail) {
        buf_free(&b);
        *failed = true;
        return NULL;
    }
    return buf_detach(&b, NULL);
}

void api_public_scrub(json_t *o) {
    if (json_is_string(o)) {
        bool failed = false;
        char *clean = scrub_string(json_string_value(o), &failed);
        if (clean) json_string_set(o, clean);
        else if (failed) json_string_set(o, "");
        smp_free(clean);
    } else if (json_is_object(o)) {
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) api_public_scrub(v);
    } else if (json_is_array(o)) {
        size_t i;
        json_t *v;
        json_array_foreach(o, i, v) api_public_scrub(v);
    }
}

static void root(http_req *r) {
    http_send_json(r, 200,
                   json_pack("{s:s,s:s,s:s,s:s,s:s}", "service", "Simpleton", "version", SIMPLETON_VERSION,
                             "description",
                             "Self-hosted AI API: text generation, chat, embeddings, retrieval, vision and audio",
                             "docs", "/docs", "health", "/health"));
}

static void health(http_req *r) {
    json_t *kinds = json_object();
    bool any_backend = false;
    json_object_set_new(kinds, "backends", registry_health(&any_backend));
    json_t *models = json_object();
    json_t *all = registry_list_models();
    size_t i;
    json_t *m;
    json_array_foreach(all, i, m) {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n) json_object_set_new(models, n, json_pack("{s:O,s:O}", "backend", json_object_get(m, "backend"), "kind",
                                                        json_object_get(m, "kind")));
    }
    json_decref(all);
    json_object_set_new(kinds, "models", models);
    bool serving = any_backend;
    for (int p = 0; p < nprobes; p++) {
        json_t *o = NULL;
        bool ok = probes[p].fn(&o, probes[p].ud);
        if (!ok && strcmp(probes[p].kind, "components")) serving = false;
        json_t *k = json_object_get(kinds, probes[p].kind);
        if (!k) json_object_set_new(kinds, probes[p].kind, k = json_object());
        json_object_set_new(k, probes[p].name, o ? o : json_object());
    }
    bool cache_ok = !cache_degraded();
    json_t *comp = json_object_get(kinds, "components");
    if (!comp) json_object_set_new(kinds, "components", comp = json_object());
    json_object_set_new(comp, "cache", cache_health_json());
    const char *status = !serving ? "unhealthy" : cache_ok ? "healthy" : "degraded";
    json_t *body = json_pack("{s:s,s:s}", "status", status, "version", SIMPLETON_VERSION);
    json_object_update(body, kinds);
    json_decref(kinds);
    api_public_scrub(body);
    http_send_json(r, serving ? 200 : 503, body);
}

static void metrics(http_req *r) {
    buf b;
    buf_init(&b, 64u << 20);
    if (metrics_render(&b) != 0) {
        buf_free(&b);
        http_send_error(r, SMP_E_INTERNAL, "metrics exposition too large");
        return;
    }
    http_send(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
}

/* A minimal OpenAPI 3 document generated from the route table. */
static void openapi(http_req *r) {
    json_t *paths = json_object();
    for (int i = 0; i < router_count(); i++) {
        const route *rt = router_at(i);
        json_t *p = json_object_get(paths, rt->tmpl);
        if (!p) json_object_set_new(paths, rt->tmpl, p = json_object());
        char m[16];
        size_t n = strlen(rt->method);
        for (size_t j = 0; j <= n && j < sizeof m; j++) m[j] = (char)(rt->method[j] | (rt->method[j] ? 0x20 : 0));
        json_t *op = json_pack("{s:s}", "summary", rt->summary ? rt->summary : "");
        if (!(rt->flags & ROUTE_PUBLIC))
            json_object_set_new(op, "security", json_pack("[{s:[]}]", "ApiKey"));
        json_t *fields = strcmp(rt->method, "POST") ? NULL : fields_describe(rt->tmpl);
        if (fields) json_object_set_new(op, "x-simpleton-fields", fields);
        json_object_set_new(p, m, op);
    }
    json_t *doc = json_pack("{s:s,s:{s:s,s:s},s:o,s:{s:{s:{s:s,s:s,s:s}}}}", "openapi", "3.0.3", "info", "title",
                            "Simpleton", "version", SIMPLETON_VERSION, "paths", paths, "components",
                            "securitySchemes", "ApiKey", "type", "apiKey", "in", "header", "name", "X-API-Key");
    http_send_json(r, 200, doc);
}

static const char docs_html[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>Simpleton API</title>"
    "<style>body{font-family:sans-serif;margin:2em;max-width:60em}td{padding:.2em .8em}"
    "code{background:#eee;padding:0 .3em}</style></head><body><h1>Simpleton API</h1>"
    "<p>Send your key as <code>X-API-Key</code> or <code>Authorization: Bearer</code>. "
    "Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>.</p><table id=\"t\"></table>"
    "<script>fetch('/openapi.json').then(r=>r.json()).then(d=>{const t=document.getElementById('t');"
    "for(const[p,ops]of Object.entries(d.paths))for(const[m,o]of Object.entries(ops)){const tr=t.insertRow();"
    "tr.insertCell().textContent=m.toUpperCase();tr.insertCell().innerHTML='<code>'+p.replace(/</g,'&lt;')+'</code>';"
    "tr.insertCell().textContent=o.summary+(o.security?'':' (public)');}});</script></body></html>";

static void docs(http_req *r) { http_send(r, 200, "text/html; charset=utf-8", docs_html, sizeof docs_html - 1); }

void api_health_register(void) {
    router_add("GET", "/", root, ROUTE_PUBLIC, "Service description");
    router_add("GET", "/health", health, ROUTE_PUBLIC, "What can serve: backends, models, cache");
    router_add("GET", "/metrics", metrics, ROUTE_PUBLIC | ROUTE_NO_METRICS, "Prometheus metrics");
    router_add("GET", "/openapi.json", openapi, ROUTE_PUBLIC, "OpenAPI description of every route");
    router_add("GET", "/docs", docs, ROUTE_PUBLIC, "Human-readable route list");
}
