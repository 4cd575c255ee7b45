/* rag.c - retrieval routes: POST /rag/ingest, POST /rag/ingest/file,
 * POST /rag/search, POST /rag/query, GET /rag/collections and
 * DELETE /rag/collections/{name}.
 *
 * Handlers validate on the HTTP thread and hand a job to the shared worker
 * pool (textgen_submit) for everything that embeds, generates or touches the
 * store. Ingest: chunk (rag/chunk.h), embed the chunks through the
 * embeddings path (cached and counted: api/embed.h), add them to the store
 * in one all-or-nothing call (store/vstore.h). Search: embed the query, ask
 * the store. Query: search, then ask the inference backend (registry) with a
 * prompt holding the hits as numbered context, and return the hits used.
 *
 * Chunk payload stored with every point:
 *   {"content": text, "metadata": {user's fields..., "chunk_index", "char_start",
 *    "char_end", "chunk_length", "document_id", "ingested_at" [, "filename",
 *    "content_type"]}}
 * (the fields Simpleton adds win over the user's of the same name). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "api/fields.h"
#include "api/embed.h"
#include "api/textgen.h"
#include "backend/registry.h"
#include "cache/cache.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "core/valid.h"
#include "http/multipart.h"
#include "http/router.h"
#include "http/server.h"
#include "media/doctext.h"
#include "obs/metrics.h"
#include "rag/chunk.h"
#include "store/vstore.h"

#define EMBED_BATCH 16
#define EMBED_MAX_BYTES 32768  /* longest text sent to the embedding model */
#define METADATA_MAX_BYTES 65536
#define PDF_TIMEOUT_MS 120000L
#define QUERY_ATTEMPTS 32  /* bound on context halvings (a 1 GB context needs 24) */
#define QUERY_MIN_PIECE 64 /* shortest leading part of a hit worth giving the model */

static const char DEFAULT_SYSTEM[] =
    "You are a helpful assistant. Answer the question using only the information in the context below. If the "
    "context does not contain the answer, say that you do not know.";
static const char NO_CONTEXT_ANSWER[] =
    "I could not find any relevant information in the collection to answer this question.";

static vstore *store;
static char store_error[512];

/* ---- shared helpers -------------------------------------------------------------- */

static bool have_store(http_req *r) {
    if (store) return true;
    http_send_error(r, SMP_E_UNAVAILABLE, "Vector store unavailable: %s",
                    store_error[0] ? store_error : "not initialised");
    return false;
}

static const char *name_rule(void) {
    return "Collection names are 1..64 characters of A-Z, a-z, 0-9, '_', '-' and '.' (not '.' or '..')";
}

/* collection: optional string, default DEFAULT_COLLECTION. */
static void parse_collection(valid *v, json_t *b, const char **out) {
    *out = config_get()->default_collection;
    if (valid_str(v, b, "collection", false, false, out) < 0) return;
    if (!vstore_name_ok(*out)) valid_add(v, "collection", "value_error", "%s", name_rule());
}

/* Reply with the validation errors, if any. Frees v either way. */

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n\f\v", s[i])) return false;
    return true;
}

/* Longest prefix of s[0..n) of at most max bytes that ends on a character boundary. */
static size_t utf8_prefix(const char *s, size_t n, size_t max) {
    if (n <= max) return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    return k;
}

/* Embed one text (NUL-terminated, shortened in place): while the model says
 * it is too long (-SMP_E_VALIDATION), halve it. */
static int embed_shortening(const char *model, char *text, bool cache, float **v, int *dim, char *err,
                            size_t errlen) {
    size_t l = strlen(text);
    for (;;) {
        int rc = embeddings_compute(model, (const char *const *)&text, 1, cache, v, dim, NULL, err, errlen);
        if (rc != -SMP_E_VALIDATION || l < 32) return rc;
        l = utf8_prefix(text, l, l / 2);
        text[l] = '\0';
    }
}

/* Embed n texts (slices of any length) in batches. Texts longer than the
 * model takes are embedded by their leading part (like Ollama's truncate):
 * first cut to EMBED_MAX_BYTES, then halved until the model accepts them.
 * Stops early when the client has gone (returns BACKEND_CANCELLED). *out
 * gets n * (*dim) floats (caller frees). */
static int embed_texts(http_req *r, const char *model, const char *const *texts, const size_t *lens, size_t n,
                       bool cache, float **out, int *dim, char *err, size_t errlen) {
    float *all = NULL, *v = NULL, *one = NULL;
    int d = 0, rc = 0;
    char *copies[EMBED_BATCH] = {0};
    *out = NULL;
    for (size_t start = 0; start < n; start += EMBED_BATCH) {
        if (r && http_client_gone(r)) {
            rc = BACKEND_CANCELLED;
            snprintf(err, errlen, "cancelled: %s", util_stop_reason());
            goto done;
        }
        size_t cnt = n - start < EMBED_BATCH ? n - start : EMBED_BATCH;
        for (size_t i = 0; i < cnt; i++) {
            size_t l = utf8_prefix(texts[start + i], lens[start + i], EMBED_MAX_BYTES);
            if (!(copies[i] = smp_strndup(texts[start + i], l))) {
                rc = -SMP_E_NOMEM;
                snprintf(err, errlen, "out of memory");
                goto done;
            }
        }
        int vd = 0;
        rc = embeddings_compute(model, (const char *const *)copies, (int)cnt, cache, &v, &vd, NULL, err, errlen);
        if (rc == -SMP_E_VALIDATION) { /* some text is too long for the model: one by one */
            for (size_t i = 0; i < cnt; i++) {
                int od = 0;
                if ((rc = embed_shortening(model, copies[i], cache, &one, &od, err, errlen)) != 0) goto done;
                if (!v) {
                    vd = od;
                    if (!(v = smp_malloc(cnt * (size_t)vd * sizeof *v))) {
                        rc = -SMP_E_NOMEM;
                        snprintf(err, errlen, "out of memory");
                        goto done;
                    }
                }
                if (od != vd) {
                    rc = -SMP_E_BACKEND;
                    snprintf(err, errlen, "Backend error: embedding size changed from %d to %d", vd, od);
                    goto done;
                }
                memcpy(v + i * (size_t)vd, one, (size_t)vd * sizeof *v);
                smp_free(one);
                one = NULL;
            }
        }
        if (rc) goto done;
        if (!all) {
            d = vd;
            if (!(all = smp_malloc(n * (size_t)d * sizeof *all))) {
                rc = -SMP_E_NOMEM;
                snprintf(err, errlen, "out of memory");
                goto done;
            }
        } else if (vd != d) {
            rc = -SMP_E_BACKEND;
            snprintf(err, errlen, "Backend error: embedding size changed from %d to %d", d, vd);
            goto done;
        }
        memcpy(all + start * (size_t)d, v, cnt * (size_t)d * sizeof *all);
        smp_free(v);
        v = NULL;
        for (size_t i = 0; i < cnt; i++) smp_free(copies[i]), copies[i] = NULL;
    }
    *out = all;
    all = NULL;
    *dim = d;
done:
    for (size_t i = 0; i < EMBED_BATCH; i++) smp_free(copies[i]);
    smp_free(all);
    smp_free(v);
    smp_free(one);
    return rc;
}

/* Answer a failed store call. */
static void send_store_error(http_req *r, int rc, const char *err, const char *model) {
    if (rc == -SMP_E_CONFLICT && model)
        http_send_error(r, rc, "%s (embedding model '%s')", err, model);
    else
        http_send_error(r, rc, "%s", err);
}

static void send_embed_error(http_req *r, int rc, const char *err) {
    if (rc == BACKEND_CANCELLED) http_send_error(r, SMP_E_UNAVAILABLE, "%s", err);
    else textgen_send_backend_error(r, rc, err);
}

/* ---- ingest ------------------------------------------------------------------------ */

typedef enum { DOC_TEXT, DOC_MARKDOWN, DOC_HTML, DOC_PDF } doc_kind;

static const char *const doc_mime[] = {"text/plain", "text/markdown", "text/html", "application/pdf"};

typedef struct {
    http_req *r;
    json_t *body;         /* JSON ingest: owns content and collection */
    multipart form;       /* file ingest: points into the request body */
    const char *content;  /* text to chunk */
    size_t len;
    char *owned;          /* extracted text (file ingest) */
    const multipart_part *file;
    doc_kind kind;
    json_t *metadata;     /* user's, owned reference */
    char collection[VSTORE_NAME_MAX + 1];
    long chunk_size, chunk_overlap;
    bool cache;
} ingest_job;

static void ingest_free(ingest_job *j) {
    if (!j) return;
    json_decref(j->body);
    multipart_free(&j->form);
    smp_free(j->owned);
    json_decref(j->metadata);
    smp_free(j);
}

/* chunk_size / chunk_overlap already parsed (0 / -1 when absent). */
static void settle_sizes(valid *v, ingest_job *j, long size, long overlap) {
    const config *c = config_get();
    j->chunk_size = size > 0 ? size : c->chunk_size;
    if (overlap >= 0) {
        j->chunk_overlap = overlap;
        if (overlap >= j->chunk_size)
            valid_add(v, "chunk_overlap", "value_error", "chunk_overlap (%ld) must be smaller than chunk_size (%ld)",
                      overlap, j->chunk_size);
    } else {
        /* The default overlap shrinks to a fifth of a smaller chunk size. */
        j->chunk_overlap = c->chunk_overlap < j->chunk_size ? c->chunk_overlap : j->chunk_size / 5;
    }
}

static void set_metadata(valid *v, ingest_job *j, json_t *m) {
    if (!m || json_is_null(m)) {
        j->metadata = json_object();
        return;
    }
    if (!json_is_object(m)) {
        valid_add(v, "metadata", "dict_type", "Input should be a valid dictionary");
        return;
    }
    char *s = json_dumps(m, JSON_COMPACT);
    size_t n = s ? strlen(s) : 0;
    smp_free(s);
    if (n > METADATA_MAX_BYTES) {
        valid_add(v, "metadata", "too_long", "metadata may be at most %d bytes of JSON", METADATA_MAX_BYTES);
        return;
    }
    j->metadata = json_deep_copy(m);
}

static json_t *chunk_payload(const ingest_job *j, const chunk_span *c, size_t index, const char *doc_id,
                             const char *when) {
    json_t *meta = json_deep_copy(j->metadata);
    if (!meta) return NULL;
    json_object_set_new(meta, "chunk_index", json_integer((json_int_t)index));
    json_object_set_new(meta, "char_start", json_integer((json_int_t)c->char_start));
    json_object_set_new(meta, "char_end", json_integer((json_int_t)c->char_end));
    json_object_set_new(meta, "chunk_length", json_integer((json_int_t)(c->char_end - c->char_start)));
    json_object_set_new(meta, "document_id", json_string(doc_id));
    json_object_set_new(meta, "ingested_at", json_string(when));
    if (j->file) {
        if (j->file->filename) json_object_set_new(meta, "filename", json_string(j->file->filename));
        json_object_set_new(meta, "content_type", json_string(doc_mime[j->kind]));
    }
    json_t *text = json_stringn(j->content + c->byte_start, c->byte_end - c->byte_start);
    if (!text) { /* not UTF-8: cannot happen, inputs are checked */
        json_decref(meta);
        return NULL;
    }
    return json_pack("{s:o,s:o}", "content", text, "metadata", meta);
}

/* Text out of an uploaded file (worker). 0 or an error already sent. */
static int extract(ingest_job *j) {
    http_req *r = j->r;
    const char *data = j->file->data;
    size_t len = j->file->len;
    char err[512];
    if (j->kind == DOC_PDF) {
        size_t cap = (size_t)config_get()->max_upload_mb << 20;
        int rc = doctext_pdf(data, len, PDF_TIMEOUT_MS, cap, &j->owned, &j->len, err, sizeof err);
        if (rc) {
            http_send_error(r, rc == -SMP_E_FORMAT ? SMP_E_BAD_REQUEST : rc, "%s", err);
            return -1;
        }
    } else if (j->kind == DOC_HTML) {
        if (doctext_html(data, len, &j->owned, &j->len) != 0) {
            http_send_error(r, SMP_E_NOMEM, NULL);
            return -1;
        }
    } else {
        if (len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3)) data += 3, len -= 3; /* BOM */
        j->content = data;
        j->len = len;
    }
    if (j->owned) j->content = j->owned;
    if (!valid_utf8(j->content, j->len) || memchr(j->content, '\0', j->len)) {
        http_send_error(r, SMP_E_BAD_REQUEST, "File is not valid UTF-8 text");
        return -1;
    }
    return 0;
}

static void run_ingest(void *arg) {
    ingest_job *j = arg;
    http_req *r = j->r;
    chunk_span *spans = NULL;
    size_t nspans = 0;
    float *vecs = NULL;
    vstore_point *pts = NULL;
    const char **texts = NULL;
    size_t *lens = NULL;
    char err[1024] = "";
    char model[200];
    if (j->file && extract(j) != 0) goto out;
    if (blank(j->content, j->len)) {
        http_send_error(r, SMP_E_BAD_REQUEST, j->file ? "No text could be extracted from the file" : "Content cannot be empty");
        goto out;
    }
    const config *c = config_get();
    int rc = chunk_text(j->content, j->len, j->chunk_size, j->chunk_overlap, (size_t)c->rag_max_chunks, &spans,
                        &nspans);
    if (rc == -SMP_E_TOO_LARGE) {
        http_send_error(r, SMP_E_TOO_LARGE,
                        "The document would make more than %ld chunks (RAG_MAX_CHUNKS); use a larger chunk_size or "
                        "split the document",
                        c->rag_max_chunks);
        goto out;
    }
    if (rc) {
        http_send_error(r, rc, NULL);
        goto out;
    }
    registry_model_name(NULL, MODEL_KIND_EMBEDDING, model, sizeof model);
    texts = smp_malloc(nspans * sizeof *texts);
    lens = smp_malloc(nspans * sizeof *lens);
    pts = smp_calloc(nspans, sizeof *pts);
    if (!texts || !lens || !pts) {
        http_send_error(r, SMP_E_NOMEM, NULL);
        goto out;
    }
    for (size_t i = 0; i < nspans; i++) {
        texts[i] = j->content + spans[i].byte_start;
        lens[i] = spans[i].byte_end - spans[i].byte_start;
    }
    int dim = 0;
    rc = embed_texts(r, model, texts, lens, nspans, j->cache, &vecs, &dim, err, sizeof err);
    if (rc) {
        send_embed_error(r, rc, err);
        goto out;
    }
    char doc_id[VSTORE_ID_LEN + 1], when[40];
    vstore_new_id(doc_id);
    util_iso8601(util_wall_seconds(), when, sizeof when);
    for (size_t i = 0; i < nspans; i++) {
        vstore_new_id(pts[i].id);
        pts[i].vector = vecs + i * (size_t)dim;
        if (!(pts[i].payload = chunk_payload(j, &spans[i], i, doc_id, when))) {
            http_send_error(r, SMP_E_NOMEM, NULL);
            goto out;
        }
    }
    rc = vstore_add(store, j->collection, dim, pts, (int)nspans, err, sizeof err);
    if (rc) {
        send_store_error(r, rc, err, model);
        goto out;
    }
    json_t *ids = json_array();
    for (size_t i = 0; i < nspans; i++) json_array_append_new(ids, json_string(pts[i].id));
    log_info("rag: ingested %zu chunks into '%s' (document %s)", nspans, j->collection, doc_id);
    http_send_json(r, 200, json_pack("{s:s,s:i,s:o,s:s}", "collection", j->collection, "chunks_created", (int)nspans,
                                     "chunk_ids", ids, "embedding_model", model));
out:
    for (size_t i = 0; pts && i < nspans; i++) json_decref(pts[i].payload);
    smp_free(pts);
    smp_free(texts);
    smp_free(lens);
    smp_free(vecs);
    smp_free(spans);
    ingest_free(j);
    http_release(r);
}

static void start_ingest(ingest_job *j) {
    if (textgen_submit(j->r, run_ingest, j) != 0) ingest_free(j);
}

static void ingest(http_req *r) {
    if (!have_store(r)) return;
    json_t *b = http_json_object(r);
    if (!b) return;
    ingest_job *j = smp_calloc(1, sizeof *j);
    if (!j) {
        json_decref(b);
        http_send_error(r, SMP_E_NOMEM, NULL);
        return;
    }
    j->r = r;
    j->body = b;
    valid v;
    valid_init(&v);
    fields_check(&v, b, &fields_rag_ingest, "");
    const char *content = NULL, *coll;
    long long size = 0, overlap = -1;
    if (valid_str(&v, b, "content", true, false, &content) == 1) {
        j->content = content;
        j->len = json_string_length(json_object_get(b, "content"));
    }
    set_metadata(&v, j, json_object_get(b, "metadata"));
    parse_collection(&v, b, &coll);
    valid_int(&v, b, "chunk_size", false, 1, 1000000, &size);
    valid_int(&v, b, "chunk_overlap", false, 0, 1000000, &overlap);
    settle_sizes(&v, j, (long)size, (long)overlap);
    if (!http_validation_done(r, &v)) {
        ingest_free(j);
        return;
    }
    if (blank(j->content, j->len)) {
        http_send_error(r, SMP_E_BAD_REQUEST, "Content cannot be empty");
        ingest_free(j);
        return;
    }
    snprintf(j->collection, sizeof j->collection, "%s", coll);
    j->cache = cache_wanted(http_header(r, "Cache-Control"));
    start_ingest(j);
}

/* A form field, else the query parameter of the same name. A field too long
 * for tmp or holding a NUL comes back as "\x01", which every caller refuses
 * (not a name, not JSON, not a number). */
static const char *form_value(http_req *r, const multipart *m, const char *name, char *tmp, size_t n) {
    const multipart_part *p = multipart_find(m, name);
    if (p && !p->filename) {
        if (p->len >= n || memchr(p->data, '\0', p->len)) return "\x01";
        memcpy(tmp, p->data, p->len);
        tmp[p->len] = '\0';
        return tmp;
    }
    return http_query(r, name);
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    if (!s || !*s) return false;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static int kind_of(const multipart_part *f, doc_kind *kind) {
    static const struct {
        const char *ext;
        doc_kind kind;
    } exts[] = {{".txt", DOC_TEXT}, {".text", DOC_TEXT}, {".md", DOC_MARKDOWN}, {".markdown", DOC_MARKDOWN},
                {".html", DOC_HTML}, {".htm", DOC_HTML}, {".pdf", DOC_PDF}};
    const char *dot = f->filename ? strrchr(f->filename, '.') : NULL;
    for (size_t i = 0; dot && i < sizeof exts / sizeof exts[0]; i++)
        if (!strcasecmp(dot, exts[i].ext)) return *kind = exts[i].kind, 0;
    if (f->content_type && !dot) { /* no extension: trust the declared type */
        for (int k = DOC_TEXT; k <= DOC_PDF; k++)
            if (!strncasecmp(f->content_type, doc_mime[k], strlen(doc_mime[k]))) return *kind = (doc_kind)k, 0;
    }
    return -1;
}

static void ingest_file(http_req *r) {
    if (!have_store(r)) return;
    ingest_job *j = smp_calloc(1, sizeof *j);
    if (!j) {
        http_send_error(r, SMP_E_NOMEM, NULL);
        return;
    }
    j->r = r;
    if (http_multipart(r, "the document in a field named 'file'", &j->form)) {
        ingest_free(j);
        return;
    }
    valid v;
    valid_init(&v);
    fields_check_form(&v, &j->form, &fields_rag_ingest_file);
    j->file = multipart_find(&j->form, "file");
    if (!j->file || !j->file->filename) valid_add(&v, "file", "missing", "Field required (a file upload named 'file')");
    char tmp[METADATA_MAX_BYTES + 1], num[32];
    const char *coll = form_value(r, &j->form, "collection", tmp, sizeof tmp);
    if (!coll || !*coll) coll = config_get()->default_collection;
    if (!vstore_name_ok(coll)) valid_add(&v, "collection", "value_error", "%s", name_rule());
    else snprintf(j->collection, sizeof j->collection, "%s", coll);
    long size = 0, overlap = -1;
    const char *s = form_value(r, &j->form, "chunk_size", num, sizeof num);
    if (s && *s && !parse_long(s, 1, 1000000, &size))
        valid_add(&v, "chunk_size", "int_type", "chunk_size should be an integer in 1..1000000");
    s = form_value(r, &j->form, "chunk_overlap", num, sizeof num);
    if (s && *s && !parse_long(s, 0, 1000000, &overlap))
        valid_add(&v, "chunk_overlap", "int_type", "chunk_overlap should be an integer in 0..1000000");
    settle_sizes(&v, j, size, overlap);
    s = form_value(r, &j->form, "metadata", tmp, sizeof tmp);
    if (s && *s) {
        json_t *m = json_loads(s, 0, NULL);
        if (!json_is_object(m)) valid_add(&v, "metadata", "dict_type", "metadata should be a JSON object");
        else set_metadata(&v, j, m);
        json_decref(m);
    } else {
        set_metadata(&v, j, NULL);
    }
    if (!http_validation_done(r, &v)) {
        ingest_free(j);
        return;
    }
    if (kind_of(j->file, &j->kind) != 0) {
        http_send_error(r, SMP_E_UNSUPPORTED_MEDIA,
                        "Unsupported file type '%s': upload a .txt, .md, .html or .pdf file", j->file->filename);
        ingest_free(j);
        return;
    }
    if (j->file->len == 0) {
        http_send_error(r, SMP_E_BAD_REQUEST, "The uploaded file is empty");
        ingest_free(j);
        return;
    }
    j->cache = cache_wanted(http_header(r, "Cache-Control"));
    start_ingest(j);
}

/* ---- search and query ------------------------------------------------------------------ */

typedef struct {
    http_req *r;
    json_t *body;
    bool is_query;
    const char *query;
    char collection[VSTORE_NAME_MAX + 1];
    int top_k;
    float min_score;
    bool cache;
    /* query only */
    const char *model, *system;
    double temperature;
    int max_tokens;
} search_job;

static void search_free(search_job *j) {
    if (!j) return;
    json_decref(j->body);
    smp_free(j);
}

static json_t *hit_json(const vstore_hit *h) {
    json_t *content = json_object_get(h->payload, "content");
    json_t *meta = json_object_get(h->payload, "metadata");
    double score = h->score > 1.f ? 1.0 : h->score < -1.f ? -1.0 : (double)h->score;
    return json_pack("{s:s,s:o,s:f,s:o}", "chunk_id", h->id, "content",
                     json_is_string(content) ? json_incref(content) : json_string(""), "score", score, "metadata",
                     json_is_object(meta) ? json_incref(meta) : json_object());
}

/* Search for j->query; on failure the answer is sent and -1 returned. */
static int do_search(search_job *j, vstore_hit **hits, int *n) {
    char err[1024] = "", model[200];
    vstore_info info;
    int rc = vstore_get_info(store, j->collection, &info, err, sizeof err);
    if (rc) {
        send_store_error(j->r, rc, err, NULL);
        return -1;
    }
    registry_model_name(NULL, MODEL_KIND_EMBEDDING, model, sizeof model);
    float *q = NULL;
    int dim = 0;
    size_t len = strlen(j->query);
    rc = embed_texts(j->r, model, &j->query, &len, 1, j->cache, &q, &dim, err, sizeof err);
    if (rc) {
        send_embed_error(j->r, rc, err);
        return -1;
    }
    rc = vstore_search(store, j->collection, q, dim, j->top_k, j->min_score, hits, n, err, sizeof err);
    smp_free(q);
    if (rc) {
        send_store_error(j->r, rc, err, model);
        return -1;
    }
    return 0;
}

static void run_search(void *arg) {
    search_job *j = arg;
    vstore_hit *hits = NULL;
    int n = 0;
    if (do_search(j, &hits, &n) == 0) {
        json_t *results = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(results, hit_json(&hits[i]));
        http_send_json(j->r, 200, json_pack("{s:s,s:o,s:s,s:i}", "query", j->query, "results", results, "collection",
                                            j->collection, "total_results", n));
    }
    vstore_hits_free(hits, n);
    http_release(j->r);
    search_free(j);
}

/* "Context:\n[1] text\n\n[2] text\n\nQuestion: q\n\nAnswer:" with the hits in
 * rank order, their texts within `budget` bytes in all: whole texts while they
 * fit, then the leading part of the next one if at least QUERY_MIN_PIECE bytes
 * of it fit. *used gets the number of hits in it, *ctx_bytes their bytes. */
static char *build_prompt(const search_job *j, const vstore_hit *hits, int n, size_t budget, int *used,
                          size_t *ctx_bytes) {
    buf b;
    buf_init(&b, 0);
    int fail = buf_puts(&b, "Context:\n");
    size_t spent = 0;
    int k = 0;
    for (; k < n && !fail; k++) {
        const char *t = json_string_value(json_object_get(hits[k].payload, "content"));
        size_t l = t ? strlen(t) : 0;
        if (l > budget - spent) {
            if (budget - spent < QUERY_MIN_PIECE) break;
            l = utf8_prefix(t, l, budget - spent);
        }
        spent += l;
        fail = buf_printf(&b, "[%d] ", k + 1) || buf_append(&b, t ? t : "", l) || buf_puts(&b, "\n\n");
    }
    if (!fail) fail = buf_printf(&b, "Question: %s\n\nAnswer:", j->query);
    if (fail) {
        buf_free(&b);
        return NULL;
    }
    *used = k;
    *ctx_bytes = spent;
    return buf_detach(&b, NULL);
}

static void run_query(void *arg) {
    search_job *j = arg;
    http_req *r = j->r;
    vstore_hit *hits = NULL;
    int n = 0;
    char model[200], err[1024] = "";
    backend_gen_result res;
    memset(&res, 0, sizeof res);
    char *prompt = NULL;
    if (do_search(j, &hits, &n) != 0) goto out;
    registry_model_name(j->model, MODEL_KIND_INFERENCE, model, sizeof model);
    int used = 0;
    const char *answer = NO_CONTEXT_ANSWER;
    if (n > 0) {
        /* A prompt longer than the model's context (which only the backend
         * knows): halve the context's bytes until it fits, dropping the
         * lowest-ranked hits first. Only the hits used are returned. */
        size_t budget = SIZE_MAX, ctx_bytes = 0;
        int rc = 0;
        for (int attempt = 0; attempt < QUERY_ATTEMPTS; attempt++) {
            smp_free(prompt);
            if (!(prompt = build_prompt(j, hits, n, budget, &used, &ctx_bytes))) {
                http_send_error(r, SMP_E_NOMEM, NULL);
                goto out;
            }
            backend_gen_req q = {.model = model, .prompt = prompt, .system = j->system ? j->system : DEFAULT_SYSTEM,
                                 .temperature = j->temperature, .top_p = 1.0, .repeat_penalty = 1.0,
                                 .max_tokens = j->max_tokens, .cancelled = http_client_gone_cb, .cancel_ud = r};
            const char *served_by = "";
            backend_gen_result_free(&res);
            memset(&res, 0, sizeof res);
            rc = registry_generate(&q, NULL, NULL, &res, &served_by, err, sizeof err);
            metrics_llm_request(model, "/rag/query");
            if (rc != -SMP_E_VALIDATION || ctx_bytes < 2 * QUERY_MIN_PIECE) break;
            budget = ctx_bytes / 2;
        }
        if (rc < 0) {
            textgen_send_backend_error(r, rc, err);
            goto out;
        }
        if (rc == BACKEND_CANCELLED) {
            http_send_error(r, SMP_E_UNAVAILABLE, "generation cancelled: %s", util_stop_reason());
            goto out;
        }
        metrics_llm_tokens(model, "prompt", res.prompt_tokens);
        metrics_llm_tokens(model, "completion", res.completion_tokens);
        answer = res.text ? res.text : "";
    }
    json_t *sources = json_array();
    for (int i = 0; i < used; i++) json_array_append_new(sources, hit_json(&hits[i]));
    http_send_json(r, 200, json_pack("{s:s,s:s,s:o,s:s,s:s}", "query", j->query, "answer", answer, "sources", sources,
                                     "model", model, "collection", j->collection));
out:
    backend_gen_result_free(&res);
    smp_free(prompt);
    vstore_hits_free(hits, n);
    http_release(r);
    search_free(j);
}

static void search_common(http_req *r, bool is_query) {
    if (!have_store(r)) return;
    json_t *b = http_json_object(r);
    if (!b) return;
    search_job *j = smp_calloc(1, sizeof *j);
    if (!j) {
        json_decref(b);
        http_send_error(r, SMP_E_NOMEM, NULL);
        return;
    }
    j->r = r;
    j->body = b;
    j->is_query = is_query;
    j->top_k = (int)config_get()->top_k_results;
    j->min_score = -INFINITY;
    j->temperature = 0.7;
    valid v;
    valid_init(&v);
    fields_check(&v, b, is_query ? &fields_rag_query : &fields_rag_search, "");
    const char *coll;
    long long k;
    double d;
    valid_str(&v, b, "query", true, true, &j->query);
    parse_collection(&v, b, &coll);
    if (valid_int(&v, b, "top_k", false, 1, 1000, &k) == 1) j->top_k = (int)k;
    if (valid_num(&v, b, "score_threshold", false, 0, 1, &d) == 1) j->min_score = (float)d;
    if (is_query) {
        valid_str(&v, b, "model", false, false, &j->model);
        valid_str(&v, b, "system_prompt", false, false, &j->system);
        if (valid_num(&v, b, "temperature", false, 0, 2, &d) == 1) j->temperature = d;
        if (valid_int(&v, b, "max_tokens", false, 1, 1 << 20, &k) == 1) j->max_tokens = (int)k;
    }
    if (!http_validation_done(r, &v)) {
        search_free(j);
        return;
    }
    if (j->system && !*j->system) j->system = NULL;
    snprintf(j->collection, sizeof j->collection, "%s", coll);
    j->cache = cache_wanted(http_header(r, "Cache-Control"));
    if (textgen_submit(r, is_query ? run_query : run_search, j) != 0) search_free(j);
}

static void search(http_req *r) { search_common(r, false); }
static void query(http_req *r) { search_common(r, true); }

/* ---- collections --------------------------------------------------------------------- */

typedef struct {
    http_req *r;
    char name[VSTORE_NAME_MAX + 1]; /* delete only */
} coll_job;

static void run_list(void *arg) {
    coll_job *j = arg;
    vstore_info *list;
    int n;
    char err[1024] = "";
    int rc = vstore_list(store, &list, &n, err, sizeof err);
    if (rc) {
        send_store_error(j->r, rc, err, NULL);
    } else {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, json_pack("{s:s,s:I,s:I}", "name", list[i].name, "vectors_count",
                                                 (json_int_t)list[i].points, "points_count", (json_int_t)list[i].points));
        smp_free(list);
        http_send_json(j->r, 200, json_pack("{s:o}", "collections", arr));
    }
    http_release(j->r);
    smp_free(j);
}

static void run_delete(void *arg) {
    coll_job *j = arg;
    char err[1024] = "";
    int rc = vstore_delete(store, j->name, err, sizeof err);
    if (rc) send_store_error(j->r, rc, err, NULL);
    else {
        log_info("rag: deleted collection '%s'", j->name);
        http_send_json(j->r, 200, json_pack("{s:s,s:b}", "collection", j->name, "success", 1));
    }
    http_release(j->r);
    smp_free(j);
}

static void list_collections(http_req *r) {
    if (!have_store(r)) return;
    coll_job *j = smp_calloc(1, sizeof *j);
    if (!j) return http_send_error(r, SMP_E_NOMEM, NULL);
    j->r = r;
    if (textgen_submit(r, run_list, j) != 0) smp_free(j);
}

static void delete_collection(http_req *r) {
    const char *name = http_param(r, "name");
    if (!vstore_name_ok(name)) {
        json_t *detail = json_pack("[{s:[s,s],s:s,s:s}]", "loc", "path", "name", "msg", name_rule(), "type", "value_error");
        http_send_validation(r, detail);
        return;
    }
    if (!have_store(r)) return;
    coll_job *j = smp_calloc(1, sizeof *j);
    if (!j) return http_send_error(r, SMP_E_NOMEM, NULL);
    j->r = r;
    snprintf(j->name, sizeof j->name, "%s", name);
    if (textgen_submit(r, run_delete, j) != 0) smp_free(j);
}

/* ---- registration -------------------------------------------------------------------- */

static bool store_probe(json_t **out, void *ud) {
    (void)ud;
    if (!store) {
        *out = json_pack("{s:s,s:s}", "status", "down", "error", store_error[0] ? store_error : "not initialised");
        return false;
    }
    return vstore_health(store, out);
}

void api_rag_register(void) {
    router_add("POST", "/rag/ingest", ingest, 0, "Chunk, embed and store a document");
    router_add("POST", "/rag/ingest/file", ingest_file, ROUTE_UPLOAD,
               "Ingest an uploaded .txt, .md, .html or .pdf file (multipart field 'file')");
    router_add("POST", "/rag/search", search, 0, "Chunks most similar to a query");
    router_add("POST", "/rag/query", query, 0, "Answer a question from the retrieved chunks");
    router_add("GET", "/rag/collections", list_collections, 0, "Collections and their sizes");
    router_add("DELETE", "/rag/collections/{name}", delete_collection, 0, "Delete a collection");
    const config *c = config_get();
    if (!c || store) return; /* route table only (fuzzers, tests) */
    int rc = c->qdrant_url && *c->qdrant_url
                 ? vstore_open_qdrant(c->qdrant_url, c->qdrant_api_key, &store, store_error, sizeof store_error)
                 : vstore_open_local(c->data_dir, &store, store_error, sizeof store_error);
    if (rc) log_error("retrieval disabled: %s", store_error);
    else if (c->qdrant_url && *c->qdrant_url) log_info("vector store: qdrant at %s", c->qdrant_url);
    api_health_add_probe("components", "vector_store", store_probe, NULL);
}
