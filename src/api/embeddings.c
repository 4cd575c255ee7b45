/* embeddings.c - every embeddings route: Simpleton's /embeddings/ (and
 * /embeddings, /embeddings/batch), OpenAI's /v1/embeddings, Ollama's
 * /api/embed and legacy /api/embeddings.
 *
 * Each text has its own cache entry (simpleton:embedding:<sha256 of model +
 * text>, the vector as little-endian float32). A request whose texts are all
 * cached is answered on the HTTP thread at once; otherwise only the missing
 * texts go to the backend, on a worker, and are cached afterwards.
 *
 * Bounds: at most MAX_TEXTS texts; a local model checks every text against
 * its context and all of them against EMBED_MAX_BATCH_TOKENS before it
 * embeds any (a text too long: 422 with its index, OpenAI 400 param "input";
 * too many tokens: 413). A client that leaves stops its batch; so does a
 * shutdown past SHUTDOWN_TIMEOUT (503). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/embed.h"
#include "api/fields.h"
#include "api/textgen.h"
#include "backend/registry.h"
#include "cache/cache.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/util.h"
#include "core/valid.h"
#include "http/router.h"
#include "http/server.h"
#include "obs/metrics.h"

#define MAX_TEXTS 2048

typedef enum { EMB_SIMPLETON, EMB_OPENAI, EMB_OLLAMA, EMB_OLLAMA_LEGACY } emb_kind;

typedef struct {
    http_req *r;
    emb_kind kind;
    const char *field;   /* where the texts are, for errors: "input", "prompt"; NULL: the body */
    json_t *body;
    char model[200];
    int n;
    const char **texts;
    float **vecs;        /* per text: from the cache or computed (owned) */
    int dim;
    bool use_cache;
    bool all_hit;
    bool base64;         /* OpenAI encoding_format */
    int dimensions;      /* OpenAI, Ollama: truncate to this many (0: all) */
    int prompt_tokens;
    uint64_t t0;
} embjob;

static void embjob_free(embjob *e) {
    if (!e) return;
    for (int i = 0; i < e->n; i++) smp_free(e->vecs ? e->vecs[i] : NULL);
    smp_free(e->vecs);
    smp_free(e->texts);
    json_decref(e->body);
    smp_free(e);
}

static void text_key(const char *model, const char *text, char *key) {
    json_t *k = json_pack("{s:s,s:s}", "model", model, "input", text);
    cache_key(CACHE_EMBEDDING, k, key);
    json_decref(k);
}

static void key_for(const embjob *e, int i, char *key) { text_key(e->model, e->texts[i], key); }

int embeddings_compute(const char *model, const char *const *texts, int n, bool use_cache, float **out, int *dim,
                       int *prompt_tokens, char *err, size_t errlen) {
    use_cache = use_cache && cache_enabled();
    float **got = smp_calloc((size_t)(n ? n : 1), sizeof *got);
    const char **miss = smp_malloc((size_t)(n ? n : 1) * sizeof *miss);
    int *idx = smp_malloc((size_t)(n ? n : 1) * sizeof *idx);
    float *computed = NULL, *all = NULL;
    int d = 0, nmiss = 0, ptoks = 0, rc = -SMP_E_NOMEM;
    if (!got || !miss || !idx) goto out;
    for (int i = 0; i < n; i++) {
        char key[CACHE_KEY_MAX], *val;
        size_t len;
        if (use_cache) {
            text_key(model, texts[i], key);
            if (cache_get(CACHE_EMBEDDING, key, &val, &len) == 1) {
                int vd = (int)(len / sizeof(float));
                if (len % sizeof(float) == 0 && vd > 0 && (!d || vd == d)) {
                    d = vd;
                    got[i] = (float *)val;
                    continue;
                }
                smp_free(val);
            }
        }
        idx[nmiss] = i;
        miss[nmiss++] = texts[i];
    }
    if (nmiss) {
        backend_embed_req rq = {.model = model, .texts = miss, .n = nmiss};
        backend_embed_result res;
        rc = registry_embed(&rq, &res, err, errlen);
        computed = res.vecs;
        int cd = res.dim;
        ptoks = res.prompt_tokens;
        metrics_llm_request(model, "embeddings");
        if (rc != 0) goto out;
        metrics_llm_tokens(model, "prompt", ptoks);
        if (d && cd != d) {
            snprintf(err, errlen, "Backend error: embedding size changed from %d to %d", d, cd);
            rc = -SMP_E_BACKEND;
            goto out;
        }
        d = cd;
    }
    rc = -SMP_E_NOMEM;
    all = smp_malloc((size_t)(n ? n : 1) * (size_t)(d ? d : 1) * sizeof *all);
    if (!all) goto out;
    for (int i = 0; i < n; i++)
        if (got[i]) memcpy(all + (size_t)i * (size_t)d, got[i], (size_t)d * sizeof *all);
    for (int k = 0; k < nmiss; k++) {
        float *v = computed + (size_t)k * (size_t)d;
        memcpy(all + (size_t)idx[k] * (size_t)d, v, (size_t)d * sizeof *all);
        if (use_cache) {
            char key[CACHE_KEY_MAX];
            text_key(model, texts[idx[k]], key);
            cache_put(CACHE_EMBEDDING, key, v, (size_t)d * sizeof *v, 0);
        }
    }
    *out = all;
    all = NULL;
    *dim = d;
    if (prompt_tokens) *prompt_tokens = ptoks;
    rc = 0;
out:
    for (int i = 0; got && i < n; i++) smp_free(got[i]);
    smp_free(got);
    smp_free(miss);
    smp_free(idx);
    smp_free(computed);
    smp_free(all);
    return rc;
}

/* Truncate (OpenAI "dimensions", never more than *dim: see respond) and
 * renormalise to unit length. */
static void shape_vector(const embjob *e, float *v, int *dim) {
    if (!e->dimensions || e->dimensions >= *dim) return;
    *dim = e->dimensions;
    double ss = 0;
    for (int i = 0; i < *dim; i++) ss += (double)v[i] * v[i];
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.f;
    for (int i = 0; i < *dim; i++) v[i] *= inv;
}

static json_t *vector_json(const float *v, int dim) {
    json_t *a = json_array();
    for (int i = 0; i < dim; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

/* "[x,y,...]" straight into b: vectors are most of every answer, and going
 * through jansson's reals and printf costs more than the rest of a cache hit. */
static int put_vector(buf *b, const float *v, int dim) {
    if (buf_reserve(b, (size_t)dim * 16 + 2) != 0) return -1;
    buf_putc(b, '[');
    char num[32];
    for (int i = 0; i < dim; i++) {
        int n = util_fmt_float(v[i], num);
        if ((i && buf_putc(b, ',')) || buf_append(b, num, (size_t)n)) return -1;
    }
    return buf_putc(b, ']');
}

static int put_json_string(buf *b, const char *s) {
    json_t *j = json_string(s);
    char *txt = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
    json_decref(j);
    int rc = txt ? buf_puts(b, txt) : -1;
    smp_free(txt);
    return rc;
}

/* Simpleton's and Ollama's {model, embeddings, total_duration, ...}. */
static int render_plain(const embjob *e, uint64_t total, buf *b) {
    int rc = buf_puts(b, "{\"model\":") || put_json_string(b, e->model) || buf_puts(b, ",\"embeddings\":[");
    for (int i = 0; i < e->n && !rc; i++) {
        int d = e->dim;
        shape_vector(e, e->vecs[i], &d); /* Ollama's "dimensions" (none on Simpleton's route) */
        rc = (i && buf_putc(b, ',')) || put_vector(b, e->vecs[i], d);
    }
    if (!rc) rc = buf_printf(b, "],\"total_duration\":%llu", (unsigned long long)total);
    if (!rc && e->kind == EMB_OLLAMA) rc = buf_printf(b, ",\"load_duration\":0,\"prompt_eval_count\":%d", e->prompt_tokens);
    return rc || buf_putc(b, '}');
}

static void respond(embjob *e) {
    http_req *r = e->r;
    uint64_t total = util_now_ns() - e->t0;
    if (e->dimensions > e->dim) {
        /* Shortening is all "dimensions" can do: more than the model makes
         * is refused (as OpenAI does), not answered with fewer. */
        valid v;
        valid_init(&v);
        valid_add(&v, "dimensions", "value_error", "dimensions is %d, but model '%s' makes vectors of %d", e->dimensions,
                  e->model, e->dim);
        http_validation_done(r, &v);
        return;
    }
    if (e->use_cache) http_add_header(r, "X-Cache", e->all_hit ? "HIT" : "MISS");
    if (e->kind == EMB_SIMPLETON || e->kind == EMB_OLLAMA) {
        buf b;
        buf_init(&b, 0);
        if (render_plain(e, total, &b) == 0)
            http_send(r, 200, "application/json", b.data, b.len);
        else
            http_send_error(r, SMP_E_NOMEM, NULL);
        buf_free(&b);
        return;
    }
    json_t *o;
    if (e->kind == EMB_OPENAI) {
        json_t *data = json_array();
        for (int i = 0; i < e->n; i++) {
            int d = e->dim;
            float *v = e->vecs[i];
            shape_vector(e, v, &d);
            json_t *emb;
            if (e->base64) {
                char *b64 = smp_malloc(((size_t)d * sizeof(float) + 2) / 3 * 4 + 1);
                if (!b64) {
                    json_decref(data);
                    http_send_error(r, SMP_E_NOMEM, NULL);
                    return;
                }
                util_b64_encode((const unsigned char *)v, (size_t)d * sizeof(float), b64);
                emb = json_string(b64);
                smp_free(b64);
            } else {
                emb = vector_json(v, d);
            }
            json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", i, "embedding", emb));
        }
        o = json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", data, "model", e->model, "usage",
                      "prompt_tokens", e->prompt_tokens, "total_tokens", e->prompt_tokens);
    } else {
        o = json_pack("{s:o}", "embedding", vector_json(e->vecs[0], e->dim));
    }
    http_send_json(r, 200, o);
}

/* A text the model cannot take: Simpleton's 422 locates it
 * (["body","input",3]); OpenAI answers 400 with param "input", Ollama 400. */
static void send_text_error(embjob *e, int i, const char *msg) {
    valid v;
    valid_init(&v);
    valid_add(&v, e->field, "too_long", "Text %d is too long: %s", i, msg);
    json_array_append_new(json_object_get(json_array_get(v.errors, 0), "loc"), json_integer(i));
    http_validation_done(e->r, &v);
}

/* Worker: compute the texts the cache did not have. */
static void run_embed(void *arg) {
    embjob *e = arg;
    http_req *r = e->r;
    int nmiss = 0;
    const char **miss = smp_malloc((size_t)e->n * sizeof *miss);
    int *idx = smp_malloc((size_t)e->n * sizeof *idx);
    float *vecs = NULL;
    char err[1024] = "";
    if (!miss || !idx) {
        http_send_error(r, SMP_E_NOMEM, NULL);
        goto out;
    }
    for (int i = 0; i < e->n; i++)
        if (!e->vecs[i]) idx[nmiss] = i, miss[nmiss++] = e->texts[i];
    backend_embed_req rq = {.model = e->model, .texts = miss, .n = nmiss, .cancelled = http_client_gone_cb,
                            .cancel_ud = r, .max_tokens = (size_t)config_get()->embed_max_batch_tokens};
    backend_embed_result res;
    int rc = registry_embed(&rq, &res, err, sizeof err);
    vecs = res.vecs;
    int dim = res.dim, ptoks = res.prompt_tokens;
    metrics_llm_request(e->model, "embeddings");
    if (rc == BACKEND_CANCELLED) {
        http_send_error(r, SMP_E_UNAVAILABLE, "embeddings cancelled: %s (%s)",
                        util_aborting() ? "the server is shutting down" : "the client left", err);
        goto out;
    }
    if (rc == -SMP_E_VALIDATION && res.bad_input >= 0 && res.bad_input < nmiss) {
        send_text_error(e, idx[res.bad_input], err);
        goto out;
    }
    if (rc != 0) {
        textgen_send_backend_error(r, rc, err);
        goto out;
    }
    metrics_llm_tokens(e->model, "prompt", ptoks);
    if (e->dim && e->dim != dim) {
        http_send_error(r, SMP_E_BACKEND, "Backend error: embedding size changed from %d to %d", e->dim, dim);
        goto out;
    }
    e->dim = dim;
    e->prompt_tokens += ptoks;
    for (int k = 0; k < nmiss; k++) {
        float *v = smp_malloc((size_t)dim * sizeof *v);
        if (!v) {
            http_send_error(r, SMP_E_NOMEM, NULL);
            goto out;
        }
        memcpy(v, vecs + (size_t)k * (size_t)dim, (size_t)dim * sizeof *v);
        e->vecs[idx[k]] = v;
        if (e->use_cache) {
            char key[CACHE_KEY_MAX];
            key_for(e, idx[k], key);
            cache_put(CACHE_EMBEDDING, key, v, (size_t)dim * sizeof *v, 0);
        }
    }
    respond(e);
out:
    smp_free(vecs);
    smp_free(miss);
    smp_free(idx);
    embjob_free(e);
    http_release(r);
}

/* Look every text up; answer at once when all hit, else queue the rest. */
static void start(embjob *e, const char *requested_model) {
    http_req *r = e->r;
    registry_model_name(requested_model, MODEL_KIND_EMBEDDING, e->model, sizeof e->model);
    e->vecs = smp_calloc((size_t)(e->n ? e->n : 1), sizeof *e->vecs);
    if (!e->vecs) {
        http_send_error(r, SMP_E_NOMEM, NULL);
        embjob_free(e);
        return;
    }
    e->use_cache = cache_wanted(http_header(r, "Cache-Control"));
    int hits = 0;
    for (int i = 0; e->use_cache && i < e->n; i++) {
        char key[CACHE_KEY_MAX], *val;
        size_t len;
        key_for(e, i, key);
        if (cache_get(CACHE_EMBEDDING, key, &val, &len) != 1) continue;
        int d = (int)(len / sizeof(float));
        if (len % sizeof(float) || d == 0 || (e->dim && d != e->dim)) {
            smp_free(val);
            continue;
        }
        e->dim = d;
        e->vecs[i] = (float *)val;
        hits++;
    }
    if (hits == e->n) {
        e->all_hit = true;
        respond(e);
        embjob_free(e);
        return;
    }
    textgen_run_here(r, run_embed, e);
}

static embjob *embjob_new(http_req *r, emb_kind kind, json_t *body) {
    embjob *e = smp_calloc(1, sizeof *e);
    if (!e) {
        json_decref(body);
        return NULL;
    }
    e->r = r;
    e->kind = kind;
    e->body = body;
    e->t0 = util_now_ns();
    return e;
}

/* input: a string or a list of strings. */
static int take_texts(valid *v, embjob *e, json_t *input, const char *field) {
    if (!input || json_is_null(input)) {
        valid_add(v, field, "missing", "Field required");
        return -1;
    }
    if (json_is_string(input)) {
        e->texts = smp_malloc(sizeof *e->texts);
        if (!e->texts) return -1;
        e->texts[0] = json_string_value(input);
        e->n = 1;
        return 1;
    }
    if (!json_is_array(input)) {
        valid_add(v, field, "string_type", "Input should be a string or a list of strings");
        return -1;
    }
    size_t n = json_array_size(input);
    if (n == 0 || n > MAX_TEXTS) {
        valid_add(v, field, n ? "too_long" : "too_short", "Input should have between 1 and %d texts", MAX_TEXTS);
        return -1;
    }
    e->texts = smp_malloc(n * sizeof *e->texts);
    if (!e->texts) return -1;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(input, i));
        if (!s) {
            char f[40];
            snprintf(f, sizeof f, "%s.%zu", field, i);
            valid_add(v, f, "string_type", "Input should be a valid string");
            return -1;
        }
        e->texts[i] = s;
    }
    e->n = (int)n;
    return 1;
}

static void no_empty(valid *v, embjob *e, const char *field) {
    for (int i = 0; i < e->n; i++)
        if (!e->texts[i][0]) {
            valid_add(v, field, "string_too_short", "Texts to embed must not be empty");
            return;
        }
}

static bool finish_validation(http_req *r, valid *v, embjob *e) {
    if (http_validation_done(r, v)) return true;
    embjob_free(e);
    return false;
}

static void simpleton_embed(http_req *r) {
    json_t *b = http_json_object(r);
    if (!b) return;
    embjob *e = embjob_new(r, EMB_SIMPLETON, b);
    if (!e) return http_send_error(r, SMP_E_NOMEM, NULL);
    e->field = "input";
    valid v;
    valid_init(&v);
    const char *model = NULL;
    fields_check(&v, b, &fields_simpleton_embed, "");
    if (take_texts(&v, e, json_object_get(b, "input"), "input") > 0) no_empty(&v, e, "input");
    valid_str(&v, b, "model", false, false, &model);
    if (finish_validation(r, &v, e)) start(e, model);
}

/* Body: a bare list of strings; model as a query parameter. */
static void simpleton_batch(http_req *r) {
    size_t len;
    const char *body = http_body(r, &len);
    valid v;
    valid_init(&v);
    json_t *b = valid_parse(&v, body, len);
    if (!b) {
        http_send_validation(r, valid_take(&v));
        valid_free(&v);
        return;
    }
    embjob *e = embjob_new(r, EMB_SIMPLETON, b);
    if (!e) {
        valid_free(&v);
        return http_send_error(r, SMP_E_NOMEM, NULL);
    }
    if (!json_is_array(b))
        valid_add(&v, NULL, "list_type", "Body should be a list of strings");
    else if (take_texts(&v, e, b, "body") > 0)
        no_empty(&v, e, "body");
    if (finish_validation(r, &v, e)) start(e, http_query(r, "model"));
}

static void openai_embed(http_req *r) {
    json_t *b = http_json_object(r);
    if (!b) return;
    embjob *e = embjob_new(r, EMB_OPENAI, b);
    if (!e) return http_send_error(r, SMP_E_NOMEM, NULL);
    e->field = "input";
    valid v;
    valid_init(&v);
    const char *model = NULL, *fmt = NULL;
    static const char *const fmts[] = {"float", "base64", NULL};
    long long dims;
    fields_check(&v, b, &fields_openai_embed, "");
    if (take_texts(&v, e, json_object_get(b, "input"), "input") > 0) no_empty(&v, e, "input");
    valid_str(&v, b, "model", false, false, &model);
    if (valid_enum(&v, b, "encoding_format", false, fmts, &fmt) == 1) e->base64 = !strcmp(fmt, "base64");
    if (valid_int(&v, b, "dimensions", false, 1, 65536, &dims) == 1) e->dimensions = (int)dims;
    if (finish_validation(r, &v, e)) start(e, model);
}

static void ollama_embed(http_req *r) {
    json_t *b = http_json_object(r);
    if (!b) return;
    embjob *e = embjob_new(r, EMB_OLLAMA, b);
    if (!e) return http_send_error(r, SMP_E_NOMEM, NULL);
    e->field = "input";
    valid v;
    valid_init(&v);
    const char *model = NULL;
    long long dims;
    fields_check(&v, b, &fields_ollama_embed, "");
    if (take_texts(&v, e, json_object_get(b, "input"), "input") > 0) no_empty(&v, e, "input");
    valid_str(&v, b, "model", true, true, &model);
    if (valid_int(&v, b, "dimensions", false, 1, 65536, &dims) == 1) e->dimensions = (int)dims;
    if (finish_validation(r, &v, e)) start(e, model);
}

static void ollama_embeddings_legacy(http_req *r) {
    json_t *b = http_json_object(r);
    if (!b) return;
    embjob *e = embjob_new(r, EMB_OLLAMA_LEGACY, b);
    if (!e) return http_send_error(r, SMP_E_NOMEM, NULL);
    e->field = "prompt";
    valid v;
    valid_init(&v);
    const char *model = NULL;
    fields_check(&v, b, &fields_ollama_embeddings, "");
    if (take_texts(&v, e, json_object_get(b, "prompt"), "prompt") > 0) no_empty(&v, e, "prompt");
    if (e->n > 1) valid_add(&v, "prompt", "string_type", "Input should be a single string");
    valid_str(&v, b, "model", true, true, &model);
    if (finish_validation(r, &v, e)) start(e, model);
}

void api_embeddings_register(void) {
    router_add("POST", "/embeddings/", simpleton_embed, 0, "Embed a text or a list of texts");
    router_add("POST", "/embeddings", simpleton_embed, 0, "Embed a text or a list of texts");
    router_add("POST", "/embeddings/batch", simpleton_batch, 0, "Embed a list of texts (model as query parameter)");
    router_add("POST", "/v1/embeddings", openai_embed, 0, "OpenAI: embeddings");
    router_add("POST", "/api/embed", ollama_embed, 0, "Ollama: embeddings");
    router_add("POST", "/api/embeddings", ollama_embeddings_legacy, 0, "Ollama: embedding of one prompt (legacy)");
}
