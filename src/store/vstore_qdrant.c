/* vstore_qdrant.c - the vector store on a Qdrant server, over its REST API.
 *
 * Requests (JSON bodies; header "api-key" when QDRANT_API_KEY is set):
 *   GET    /                                    health (version)
 *   GET    /collections                         names
 *   GET    /collections/{c}                     size, distance, points_count
 *   PUT    /collections/{c}                     create: {"vectors":{"size":d,"distance":"Cosine"}}
 *   DELETE /collections/{c}                     drop
 *   PUT    /collections/{c}/points?wait=true    upsert {"points":[{id,vector,payload}]} in batches
 *   POST   /collections/{c}/points/delete?wait=true  {"points":[ids]} (undo a failed add)
 *   POST   /collections/{c}/points/search       {"vector","limit","with_payload":true[,"score_threshold"]}
 * Every answer is an envelope {"result": ..., "status": "ok", "time": s}, or
 * on errors {"status": {"error": "..."}, "time": s} with a 4xx/5xx status.
 *
 * An add is made all-or-nothing on a best-effort basis: when a batch fails,
 * the batches already written are deleted again (and the collection too, if
 * this add created it). Vectors are sent L2-normalised (Qdrant normalises
 * for Cosine anyway), so scores match the embedded store's.
 *
 * Data: a qdrant_store holds the base URL, the key, and a small pool of idle
 * curl handles (each keeps its connection alive between requests). */
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/httpc.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "store/vsearch.h"
#include "store/vstore_int.h"

#define POOL_MAX 8
#define MAX_RESPONSE (256u << 20)
#define CONNECT_MS 5000L
#define REQUEST_MS 120000L
#define HEALTH_MS 3000L

int vstore_qdrant_batch = 256;

typedef struct {
    vstore base;
    char *url; /* no trailing '/' */
    struct curl_slist *headers;
    pthread_mutex_t mu;
    CURL *idle[POOL_MAX];
    int nidle;
} qdrant_store;

/* ---- HTTP --------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    buf *b = ud;
    return buf_append(b, p, size * n) == 0 ? size * n : 0;
}

static CURL *handle_take(qdrant_store *q) {
    pthread_mutex_lock(&q->mu);
    CURL *h = q->nidle ? q->idle[--q->nidle] : NULL;
    pthread_mutex_unlock(&q->mu);
    return h ? h : curl_easy_init();
}

static void handle_give(qdrant_store *q, CURL *h) {
    pthread_mutex_lock(&q->mu);
    if (q->nidle < POOL_MAX) {
        q->idle[q->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    if (h) curl_easy_cleanup(h);
}

/* The error text of an error envelope, shortened to one line. */
static void error_text(json_t *env, const buf *body, char *out, size_t n) {
    json_t *st = json_object_get(env, "status");
    const char *msg = json_string_value(json_object_get(st, "error"));
    if (!msg) msg = json_string_value(st);
    if (!msg) msg = body->len ? body->data : "(empty body)";
    snprintf(out, n, "%.300s", msg);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
}

/* One request. On 2xx *result gets the envelope's "result" (a new reference,
 * may be NULL if absent) and 0 is returned; other statuses map to codes:
 * 404 -> NOT_FOUND, 409 -> CONFLICT, else BACKEND. *status gets the HTTP
 * status (0 when nothing arrived). */
/* Called by libcurl about once a second while a transfer waits: a server
 * past its shutdown deadline stops waiting on Qdrant. */
static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
    (void)ud, (void)a, (void)b, (void)c, (void)d;
    return util_aborting() ? 1 : 0;
}

static int request(qdrant_store *q, const char *method, const char *path, json_t *body, long timeout_ms,
                   long *status, json_t **result, char *err, size_t errlen) {
    char url[1024];
    char *text = NULL;
    buf resp;
    buf_init(&resp, MAX_RESPONSE);
    *status = 0;
    if (result) *result = NULL;
    if ((size_t)snprintf(url, sizeof url, "%s%s", q->url, path) >= sizeof url) {
        snprintf(err, errlen, "qdrant: request path too long");
        return -SMP_E_INTERNAL;
    }
    if (body && !(text = json_dumps(body, JSON_COMPACT))) {
        snprintf(err, errlen, "qdrant: out of memory");
        return -SMP_E_NOMEM;
    }
    CURL *h = handle_take(q);
    if (!h) {
        smp_free(text);
        snprintf(err, errlen, "qdrant: out of memory");
        return -SMP_E_NOMEM;
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_MS < timeout_ms ? CONNECT_MS : timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, q->headers);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    if (text) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
    } else if (!strcmp(method, "GET")) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    handle_give(q, h);
    smp_free(text);
    int ret = 0;
    json_t *env = NULL;
    if (rc != CURLE_OK) {
        const char *why = curl_err[0] ? curl_err : curl_easy_strerror(rc);
        if (rc == CURLE_WRITE_ERROR) {
            snprintf(err, errlen, "Backend error: qdrant sent more than %u bytes", MAX_RESPONSE);
            ret = -SMP_E_BACKEND;
        } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
            snprintf(err, errlen, "qdrant request stopped: the server is shutting down");
            ret = -SMP_E_UNAVAILABLE;
        } else if (*status == 0) {
            snprintf(err, errlen, "Could not connect to qdrant at %s: %s", q->url, why);
            ret = -SMP_E_UNAVAILABLE;
        } else {
            snprintf(err, errlen, "Backend error: qdrant answer was cut short (%s)", why);
            ret = -SMP_E_BACKEND;
        }
        goto out;
    }
    env = json_loadb(resp.data ? resp.data : "", resp.len, 0, NULL);
    if (*status < 200 || *status > 299) {
        char msg[320];
        error_text(env, &resp, msg, sizeof msg);
        ret = *status == 404 ? -SMP_E_NOT_FOUND : *status == 409 ? -SMP_E_CONFLICT : -SMP_E_BACKEND;
        snprintf(err, errlen, "%sqdrant returned %ld: %s", ret == -SMP_E_BACKEND ? "Backend error: " : "", *status,
                 msg);
        goto out;
    }
    if (!json_is_object(env)) {
        snprintf(err, errlen, "Backend error: qdrant answered %s %s with something that is not a JSON object",
                 method, path);
        ret = -SMP_E_BACKEND;
        goto out;
    }
    if (result) *result = json_incref(json_object_get(env, "result"));
out:
    json_decref(env);
    buf_free(&resp);
    return ret;
}

/* ---- collections ------------------------------------------------------------------ */

static int get_info(qdrant_store *q, const char *coll, vstore_info *out, char *err, size_t errlen) {
    char path[160];
    long status;
    json_t *res;
    snprintf(path, sizeof path, "/collections/%s", coll);
    int rc = request(q, "GET", path, NULL, REQUEST_MS, &status, &res, err, errlen);
    if (rc == -SMP_E_NOT_FOUND) snprintf(err, errlen, "Collection '%s' not found", coll);
    if (rc) return rc;
    json_t *vectors = json_object_get(json_object_get(json_object_get(res, "config"), "params"), "vectors");
    json_t *size = json_object_get(vectors, "size");
    json_t *count = json_object_get(res, "points_count");
    if (!json_is_integer(size)) {
        json_decref(res);
        snprintf(err, errlen,
                 "Backend error: qdrant collection '%s' has no single unnamed vector (named vectors are not used "
                 "by Simpleton)",
                 coll);
        return -SMP_E_BACKEND;
    }
    snprintf(out->name, sizeof out->name, "%s", coll);
    out->dim = (int)json_integer_value(size);
    out->points = json_is_integer(count) ? (long long)json_integer_value(count) : 0;
    json_decref(res);
    return 0;
}

static int q_info(vstore *s, const char *coll, vstore_info *out, char *err, size_t errlen) {
    return get_info((qdrant_store *)s, coll, out, err, errlen);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const vstore_info *)a)->name, ((const vstore_info *)b)->name);
}

static int q_list(vstore *s, vstore_info **out, int *n, char *err, size_t errlen) {
    qdrant_store *q = (qdrant_store *)s;
    long status;
    json_t *res;
    int rc = request(q, "GET", "/collections", NULL, REQUEST_MS, &status, &res, err, errlen);
    if (rc) return rc;
    json_t *arr = json_object_get(res, "collections");
    size_t total = json_array_size(arr);
    vstore_info *v = smp_calloc(total ? total : 1, sizeof *v);
    int cnt = 0;
    if (!v) {
        json_decref(res);
        snprintf(err, errlen, "out of memory");
        return -SMP_E_NOMEM;
    }
    for (size_t i = 0; i < total; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(arr, i), "name"));
        if (!name || !vstore_name_ok(name)) continue; /* not one Simpleton could have made */
        int r = get_info(q, name, &v[cnt], err, errlen);
        if (r == 0) cnt++;
        else if (r == -SMP_E_NOT_FOUND || r == -SMP_E_BACKEND) continue; /* dropped meanwhile, or not ours */
        else {
            rc = r;
            break;
        }
    }
    json_decref(res);
    if (rc) {
        smp_free(v);
        return rc;
    }
    qsort(v, (size_t)cnt, sizeof *v, by_name);
    *out = v;
    *n = cnt;
    return 0;
}

static int drop(qdrant_store *q, const char *coll, char *err, size_t errlen) {
    char path[160];
    long status;
    snprintf(path, sizeof path, "/collections/%s", coll);
    return request(q, "DELETE", path, NULL, REQUEST_MS, &status, NULL, err, errlen);
}

static int q_delete(vstore *s, const char *coll, char *err, size_t errlen) {
    qdrant_store *q = (qdrant_store *)s;
    vstore_info info;
    int rc = get_info(q, coll, &info, err, errlen);
    return rc ? rc : drop(q, coll, err, errlen);
}

/* ---- add ------------------------------------------------------------------------ */

static json_t *vector_json(const float *v, int dim) {
    json_t *a = json_array();
    float *tmp = smp_malloc((size_t)dim * sizeof *tmp);
    if (!a || !tmp) {
        json_decref(a);
        smp_free(tmp);
        return NULL;
    }
    memcpy(tmp, v, (size_t)dim * sizeof *tmp);
    vsearch_normalize(tmp, dim);
    for (int i = 0; i < dim; i++) json_array_append_new(a, json_real(tmp[i]));
    smp_free(tmp);
    return a;
}

/* Best-effort undo of the first n points of a failed add. */
static void undo(qdrant_store *q, const char *coll, const vstore_point *pts, int n, bool created) {
    char err[256], path[200];
    long status;
    if (created) {
        if (drop(q, coll, err, sizeof err) != 0) log_warn("qdrant: could not drop '%s' after a failed add: %s", coll, err);
        return;
    }
    if (n == 0) return;
    json_t *ids = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(ids, json_string(pts[i].id));
    json_t *body = json_pack("{s:o}", "points", ids);
    snprintf(path, sizeof path, "/collections/%s/points/delete?wait=true", coll);
    if (request(q, "POST", path, body, REQUEST_MS, &status, NULL, err, sizeof err) != 0)
        log_warn("qdrant: could not remove %d points of a failed add from '%s': %s", n, coll, err);
    json_decref(body);
}

static int q_add(vstore *s, const char *coll, int dim, const vstore_point *pts, int n, char *err, size_t errlen) {
    qdrant_store *q = (qdrant_store *)s;
    vstore_info info;
    bool created = false;
    char path[200];
    long status;
    int rc = get_info(q, coll, &info, err, errlen);
    if (rc == -SMP_E_NOT_FOUND) {
        snprintf(path, sizeof path, "/collections/%s", coll);
        json_t *body = json_pack("{s:{s:i,s:s}}", "vectors", "size", dim, "distance", "Cosine");
        rc = request(q, "PUT", path, body, REQUEST_MS, &status, NULL, err, errlen);
        json_decref(body);
        if (rc == 0) {
            created = true;
            info.dim = dim;
        } else if (rc == -SMP_E_CONFLICT) { /* created meanwhile by someone else */
            rc = get_info(q, coll, &info, err, errlen);
        }
    }
    if (rc) return rc;
    if (info.dim != dim) {
        snprintf(err, errlen, "collection '%s' holds %d-dimensional vectors, these have %d dimensions", coll,
                 info.dim, dim);
        return -SMP_E_CONFLICT;
    }
    snprintf(path, sizeof path, "/collections/%s/points?wait=true", coll);
    int batch = vstore_qdrant_batch > 0 ? vstore_qdrant_batch : 256;
    for (int start = 0; start < n; start += batch) {
        int end = start + batch < n ? start + batch : n;
        json_t *arr = json_array();
        for (int i = start; i < end && arr; i++) {
            json_t *vec = vector_json(pts[i].vector, dim);
            json_t *p = vec ? json_pack("{s:s,s:o,s:O}", "id", pts[i].id, "vector", vec, "payload", pts[i].payload)
                            : NULL;
            if (!p || json_array_append_new(arr, p) != 0) {
                json_decref(arr);
                arr = NULL;
            }
        }
        json_t *body = arr ? json_pack("{s:o}", "points", arr) : NULL;
        if (!body) {
            snprintf(err, errlen, "qdrant: out of memory");
            rc = -SMP_E_NOMEM;
        } else {
            rc = request(q, "PUT", path, body, REQUEST_MS, &status, NULL, err, errlen);
            json_decref(body);
        }
        if (rc) {
            if (rc == -SMP_E_NOT_FOUND || rc == -SMP_E_CONFLICT) { /* dropped under us: an upstream error */
                char inner[512];
                snprintf(inner, sizeof inner, "%s", err);
                snprintf(err, errlen, "Backend error: %s", inner);
                rc = -SMP_E_BACKEND;
            }
            undo(q, coll, pts, start, created);
            return rc;
        }
    }
    return 0;
}

/* ---- search ------------------------------------------------------------------- */

static int q_search(vstore *s, const char *coll, const float *qv, int dim, int k, float min_score, vstore_hit **hits,
                    int *n, char *err, size_t errlen) {
    qdrant_store *q = (qdrant_store *)s;
    char path[200];
    long status;
    json_t *vec = vector_json(qv, dim);
    json_t *body = vec ? json_pack("{s:o,s:i,s:b}", "vector", vec, "limit", k, "with_payload", 1) : NULL;
    if (!body) {
        snprintf(err, errlen, "qdrant: out of memory");
        return -SMP_E_NOMEM;
    }
    if (isfinite(min_score)) json_object_set_new(body, "score_threshold", json_real(min_score));
    snprintf(path, sizeof path, "/collections/%s/points/search", coll);
    json_t *res;
    int rc = request(q, "POST", path, body, REQUEST_MS, &status, &res, err, errlen);
    json_decref(body);
    if (rc == -SMP_E_NOT_FOUND) snprintf(err, errlen, "Collection '%s' not found", coll);
    if (rc == -SMP_E_BACKEND && status == 400) {
        /* Most likely a dimension mismatch: say so the way the embedded store does. */
        vstore_info info;
        char e2[256];
        if (get_info(q, coll, &info, e2, sizeof e2) == 0 && info.dim != dim) {
            snprintf(err, errlen, "collection '%s' holds %d-dimensional vectors, the query has %d dimensions", coll,
                     info.dim, dim);
            rc = -SMP_E_CONFLICT;
        }
    }
    if (rc) return rc;
    size_t total = json_array_size(res);
    vstore_hit *out = smp_calloc(total ? total : 1, sizeof *out);
    if (!out) {
        json_decref(res);
        snprintf(err, errlen, "out of memory");
        return -SMP_E_NOMEM;
    }
    int got = 0;
    for (size_t i = 0; i < total && got < k; i++) {
        json_t *p = json_array_get(res, i);
        json_t *id = json_object_get(p, "id");
        json_t *score = json_object_get(p, "score");
        if (!json_is_number(score)) continue;
        vstore_hit *h = &out[got];
        if (json_is_string(id)) snprintf(h->id, sizeof h->id, "%s", json_string_value(id));
        else if (json_is_integer(id)) snprintf(h->id, sizeof h->id, "%lld", (long long)json_integer_value(id));
        else continue;
        h->score = (float)json_number_value(score);
        json_t *payload = json_object_get(p, "payload");
        h->payload = json_is_object(payload) ? json_incref(payload) : json_object();
        got++;
    }
    json_decref(res);
    *hits = out;
    *n = got;
    return 0;
}

/* ---- health, open, close ---------------------------------------------------------------- */

static bool q_health(vstore *s, json_t **out) {
    qdrant_store *q = (qdrant_store *)s;
    char err[512];
    long status;
    json_t *res = NULL;
    /* GET / has no envelope: {"title","version","commit"}; fetch it raw. */
    int rc = request(q, "GET", "/", NULL, HEALTH_MS, &status, &res, err, sizeof err);
    json_decref(res);
    if (rc == 0) {
        *out = json_pack("{s:s,s:s,s:s}", "status", "healthy", "kind", "qdrant", "url", q->url);
        return true;
    }
    *out = json_pack("{s:s,s:s,s:s,s:s}", "status", "down", "kind", "qdrant", "url", q->url, "error", err);
    return false;
}

static void q_close(vstore *s) {
    qdrant_store *q = (qdrant_store *)s;
    for (int i = 0; i < q->nidle; i++) curl_easy_cleanup(q->idle[i]);
    curl_slist_free_all(q->headers);
    pthread_mutex_destroy(&q->mu);
    smp_free(q->url);
    smp_free(q);
}

static const vstore_ops qdrant_ops = {
    .kind = "qdrant",
    .add = q_add,
    .search = q_search,
    .info = q_info,
    .list = q_list,
    .del = q_delete,
    .health = q_health,
    .close = q_close,
};

int vstore_open_qdrant(const char *url, const char *api_key, vstore **out, char *err, size_t errlen) {
    *out = NULL;
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) || strlen(url) > 512) {
        snprintf(err, errlen, "QDRANT_URL must be an http:// or https:// URL");
        return -SMP_E_VALIDATION;
    }
    if (api_key && strpbrk(api_key, "\r\n")) {
        snprintf(err, errlen, "QDRANT_API_KEY must not contain line breaks");
        return -SMP_E_VALIDATION;
    }
    int rc = httpc_global_init();
    if (rc) {
        snprintf(err, errlen, "qdrant: cannot initialise libcurl");
        return rc;
    }
    qdrant_store *q = smp_calloc(1, sizeof *q);
    if (!q) goto nomem;
    q->base.ops = &qdrant_ops;
    pthread_mutex_init(&q->mu, NULL);
    q->url = smp_strdup(url);
    if (!q->url) goto nomem;
    size_t l = strlen(q->url);
    while (l > 0 && q->url[l - 1] == '/') q->url[--l] = '\0';
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    if (hl) q->headers = hl, hl = curl_slist_append(hl, "Accept: application/json");
    if (!hl) goto nomem;
    if (api_key && *api_key) {
        char kh[1024];
        snprintf(kh, sizeof kh, "api-key: %s", api_key);
        if (!curl_slist_append(q->headers, kh)) goto nomem;
    }
    *out = &q->base;
    return 0;
nomem:
    if (q) q_close(&q->base);
    snprintf(err, errlen, "out of memory");
    return -SMP_E_NOMEM;
}
