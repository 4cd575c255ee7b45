/* vision.c - the vision routes: POST /vision/analyze, /vision/caption,
 * /vision/ocr (JSON, image as base64) and /vision/upload (multipart).
 *
 * On the HTTP thread a handler validates the fields (422), takes the image
 * bytes (base64: strict, 400; upload: the 'file' part) and reads the image
 * header (400 for a non-image, 413 past MAX_IMAGE_MP, both before any pixel
 * is allocated). Everything slow runs on the shared worker pool
 * (textgen_submit): the full decode (a truncated or corrupt body is a 400;
 * the pixels are first reserved from HEAVY_JOB_MEMORY_MB, 503 when other
 * heavy jobs hold it past HEAVY_JOB_WAIT_S),
 * then either Tesseract in-process (/vision/ocr without a model; stopped
 * after OCR_TIMEOUT_S, 408, or as soon as the client leaves) or a chat
 * with the image sent to the backend serving the vision model. When no
 * backend can serve it, the answer is a 503 naming the model and how to
 * configure one. Main data structure: vision_job, one request's parsed
 * fields and image bytes, owned by the worker once submitted.
 *
 * Answers are cached (type vision, CACHE_TTL) under every field that shapes
 * them plus the image's SHA-256, looked up before the image is decoded; a
 * hit says X-Cache: HIT, a stored answer X-Cache: MISS. Errors never are.
 *
 * Answers (API.md):
 *   analyze, upload  {model, response, done, total_duration, eval_count} (upload adds filename)
 *   caption          {caption, model}
 *   ocr              {text, model}   (model "tesseract" for the in-process engine) */
#include <leptonica/allheaders.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/fields.h"
#include "api/textgen.h"
#include "backend/registry.h"
#include "cache/cache.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/membudget.h"
#include "core/util.h"
#include "core/valid.h"
#include "http/multipart.h"
#include "http/router.h"
#include "http/server.h"
#include "media/image.h"
#include "media/ocr.h"
#include "obs/metrics.h"

#define PROMPT_MAX 65536
/* Working memory per decoded pixel reserved from HEAVY_JOB_MEMORY_MB: the
 * 32-bit PIX and its copy when EXIF turns it; OCR adds the 8-bit grey copy
 * and Tesseract's own thresholded and scaled copies. */
#define DECODE_BYTES_PER_PIXEL 8
#define OCR_BYTES_PER_PIXEL 16
#define TESSERACT_MODEL "tesseract"

typedef enum { VJ_ANALYZE, VJ_CAPTION, VJ_OCR, VJ_UPLOAD } vision_kind;

typedef struct {
    http_req *r;
    vision_kind kind;
    json_t *body;               /* JSON routes: the request (prompt may point into it) */
    multipart form;             /* upload: the parts (the file points into the request body) */
    unsigned char *decoded;     /* base64 routes: the image bytes (owned) */
    const unsigned char *image; /* the image: decoded, or the upload's part */
    size_t image_len;
    const char *prompt;
    char *prompt_copy;          /* upload: the form field or query value (owned) */
    char filename[256];         /* upload: valid UTF-8 (see clean_filename) */
    const char *model_given;    /* JSON routes: the 'model' field, NULL when absent */
    char model[200];
    bool tesseract;
    char lang[OCR_LANG_MAX + 1];
    double temperature;
    int max_tokens;
    bool cache;                 /* look up and store the answer */
    char cache_key[CACHE_KEY_MAX];
} vision_job;

static const char *const detail_levels[] = {"brief", "normal", "detailed", NULL};
static const char *const caption_prompts[] = {
    "Describe this image in one short sentence.",
    "Describe this image in two or three sentences.",
    "Describe this image in detail: the main subjects and what they are doing, the setting, colours, any text "
    "that appears, and the overall mood.",
};
static const char OCR_PROMPT[] =
    "Read all the text in this image and write it out exactly as it appears, line by line. Reply with the text only.";
static const char UPLOAD_PROMPT[] = "Describe this image";

static void job_free(vision_job *j) {
    if (!j) return;
    json_decref(j->body);
    multipart_free(&j->form);
    smp_free(j->decoded);
    smp_free(j->prompt_copy);
    smp_free(j);
}

static const char *endpoint_of(vision_kind k) {
    static const char *const e[] = {"/vision/analyze", "/vision/caption", "/vision/ocr", "/vision/upload"};
    return e[k];
}

static uint64_t max_pixels(void) {
    const config *c = config_get();
    return (uint64_t)(c ? c->max_image_mp : 40) * 1000000u;
}

static int ocr_timeout_ms(void) {
    const config *c = config_get();
    return (int)(c ? c->ocr_timeout_s : 60) * 1000;
}

/* Header check on the HTTP thread: cheap, allocates nothing. */
static bool header_ok(http_req *r, const vision_job *j) {
    image_info info;
    char err[512];
    int rc = image_probe(j->image, j->image_len, max_pixels(), &info, err, sizeof err);
    if (rc == 0) return true;
    http_send_error(r, rc, "%s", err);
    return false;
}

/* in as well-formed UTF-8 of at most cap - 1 bytes, for the JSON answer
 * (json_string refuses anything else): a byte that starts no well-formed
 * character becomes U+FFFD, and a cut falls between characters. */
static void clean_filename(char *out, size_t cap, const char *in) {
    static const char REPLACEMENT[] = "\xEF\xBF\xBD";
    size_t o = 0;
    for (size_t i = 0; in[i];) {
        size_t len = 1;
        while (len <= 4 && in[i + len - 1] && !valid_utf8(in + i, len)) len++;
        const char *ch = in + i;
        size_t cl = len;
        if (len > 4 || !in[i + len - 1]) {
            ch = REPLACEMENT;
            cl = sizeof REPLACEMENT - 1;
            len = 1;
        }
        if (o + cl >= cap) break;
        memcpy(out + o, ch, cl);
        o += cl;
        i += len;
    }
    out[o] = '\0';
}

/* ---- the worker ---------------------------------------------------------------------- */

static void send_no_vision_backend(http_req *r, const char *model, const char *why) {
    http_send_error(r, SMP_E_UNAVAILABLE,
                    "No backend can serve the vision model '%s' (%s). Configure one: set OLLAMA_BASE_URL to an "
                    "Ollama server that has it (e.g. 'ollama pull %s'), or OPENAI_BASE_URL to an OpenAI-compatible "
                    "server with a vision model; name the model with 'model' or DEFAULT_VISION_MODEL, and route it "
                    "with MODEL_BACKENDS=%s=ollama (or =openai) if needed. Text recognition needs no model: POST "
                    "/vision/ocr without 'model'.",
                    model, why, model, model);
}

static void make_cache_key(vision_job *j) {
    char sha[65];
    util_sha256_hex(j->image, j->image_len, sha);
    json_t *f = json_pack("{s:s,s:s,s:b,s:s,s:s,s:f,s:i,s:s,s:s}", "route", endpoint_of(j->kind), "model", j->model,
                          "tesseract", j->tesseract, "prompt", j->prompt ? j->prompt : "", "language", j->lang,
                          "temperature", j->temperature, "max_tokens", j->max_tokens, "filename", j->filename,
                          "image_sha256", sha);
    cache_key(CACHE_VISION, f, j->cache_key);
    json_decref(f);
}

/* The 200 answer: stored in the cache when the request uses it. Takes o. */
static void answer(vision_job *j, json_t *o) {
    if (!j->cache) {
        http_send_json(j->r, 200, o);
        return;
    }
    buf b;
    buf_init(&b, 0);
    int rc = valid_dump(o, JSON_COMPACT | JSON_ENSURE_ASCII, &b);
    json_decref(o);
    if (rc) {
        http_send_error(j->r, rc, NULL);
    } else {
        cache_put(CACHE_VISION, j->cache_key, b.data, b.len, 0);
        http_add_header(j->r, "X-Cache", "MISS");
        http_send(j->r, 200, "application/json", b.data, b.len);
    }
    buf_free(&b);
}

static void run_ocr(vision_job *j, PIX *pix) {
    char *text = NULL;
    char err[1024];
    ocr_limits lim = {.timeout_ms = ocr_timeout_ms(), .cancelled = http_client_gone_cb, .ud = j->r};
    int rc = ocr_image_limited(pix, j->lang, &lim, &text, err, sizeof err);
    if (rc == OCR_CANCELLED) {
        http_send_error(j->r, SMP_E_UNAVAILABLE, "OCR cancelled: %s", util_stop_reason());
        return;
    }
    if (rc == -SMP_E_TIMEOUT) {
        http_send_error(j->r, rc, "OCR took longer than its limit of %d s (OCR_TIMEOUT_S) and was stopped",
                        lim.timeout_ms / 1000);
        return;
    }
    if (rc) {
        http_send_error(j->r, rc, "%s", err);
        return;
    }
    answer(j, json_pack("{s:s,s:s}", "text", text, "model", TESSERACT_MODEL));
    smp_free(text);
}

static void run_model(vision_job *j) {
    http_req *r = j->r;
    const unsigned char *imgs[1] = {j->image};
    size_t lens[1] = {j->image_len};
    backend_msg msg = {.role = "user", .content = j->prompt, .n_images = 1, .images = imgs, .image_lens = lens};
    backend_gen_req q = {.model = j->model, .messages = &msg, .n_messages = 1, .temperature = j->temperature,
                         .top_p = 1.0, .repeat_penalty = 1.0, .max_tokens = j->max_tokens,
                         .cancelled = http_client_gone_cb, .cancel_ud = r};
    backend_gen_result res;
    memset(&res, 0, sizeof res);
    const char *served_by = "";
    char err[1024] = "";
    int rc = registry_generate(&q, NULL, NULL, &res, &served_by, err, sizeof err);
    metrics_llm_request(j->model, endpoint_of(j->kind));
    if (rc == -SMP_E_NOT_FOUND) {
        send_no_vision_backend(r, j->model, err[0] ? err : "no backend has it");
        goto out;
    }
    if (rc < 0) {
        textgen_send_backend_error(r, rc, err);
        goto out;
    }
    if (rc == BACKEND_CANCELLED) {
        http_send_error(r, SMP_E_UNAVAILABLE, "generation cancelled: %s", util_stop_reason());
        goto out;
    }
    metrics_llm_tokens(j->model, "prompt", res.prompt_tokens);
    metrics_llm_tokens(j->model, "completion", res.completion_tokens);
    const char *text = res.text ? res.text : "";
    json_t *o;
    switch (j->kind) {
    case VJ_CAPTION: o = json_pack("{s:s,s:s}", "caption", text, "model", j->model); break;
    case VJ_OCR: o = json_pack("{s:s,s:s}", "text", text, "model", j->model); break;
    default:
        o = json_pack("{s:s,s:s,s:b,s:I,s:i}", "model", j->model, "response", text, "done", 1, "total_duration",
                      (json_int_t)res.total_ns, "eval_count", res.completion_tokens);
        if (j->kind == VJ_UPLOAD) json_object_set_new(o, "filename", json_string(j->filename));
        break;
    }
    http_add_header(r, "X-Served-By", served_by);
    answer(j, o);
out:
    backend_gen_result_free(&res);
}

static void run_job(void *arg) {
    vision_job *j = arg;
    http_req *r = j->r;
    PIX *pix = NULL;
    size_t reserved = 0;
    char err[512];
    if (http_client_gone(r)) { /* left while the job waited for a worker */
        http_send_error(r, SMP_E_UNAVAILABLE, "cancelled: %s", util_stop_reason());
        goto out;
    }
    if (j->cache) {
        char *hit;
        size_t len;
        make_cache_key(j);
        if (cache_get(CACHE_VISION, j->cache_key, &hit, &len) == 1) {
            http_add_header(r, "X-Cache", "HIT");
            http_send(r, 200, "application/json", hit, len);
            smp_free(hit);
            goto out;
        }
    }
    /* The pixels count against the heavy-job budget while they live. */
    image_info info;
    if (image_probe(j->image, j->image_len, max_pixels(), &info, err, sizeof err) == 0) {
        size_t need = (size_t)info.pixels * (j->tesseract ? OCR_BYTES_PER_PIXEL : DECODE_BYTES_PER_PIXEL);
        int h = api_reserve_heavy(r, need, "decoding this image");
        if (h == 1) http_send_error(r, SMP_E_UNAVAILABLE, "cancelled: %s", util_stop_reason());
        if (h) goto out;
        reserved = need;
    }
    /* The whole file is decoded on every path, so a truncated or corrupt
     * image is a 400 here rather than an upstream's guess. */
    int rc = image_decode(j->image, j->image_len, max_pixels(), &pix, NULL, err, sizeof err);
    if (rc) {
        http_send_error(r, rc, "%s", err);
        goto out;
    }
    if (j->tesseract) {
        run_ocr(j, pix);
    } else {
        pixDestroy(&pix);
        membudget_release(membudget_heavy(), reserved); /* the backend gets the file's bytes, not pixels */
        reserved = 0;
        run_model(j);
    }
out:
    membudget_release(membudget_heavy(), reserved);
    pixDestroy(&pix);
    job_free(j);
    http_release(r);
}

static void start(vision_job *j) {
    j->cache = cache_wanted(http_header(j->r, "Cache-Control"));
    if (textgen_submit(j->r, run_job, j) != 0) job_free(j);
}

/* ---- JSON routes --------------------------------------------------------------------- */

/* Common fields: image (req), model. Returns the job, or NULL when an answer
 * was sent. The caller adds its own fields to v before finish_json. */
static vision_job *begin_json(http_req *r, vision_kind kind, const field_table *fields, valid *v) {
    json_t *b = http_json_object(r);
    if (!b) return NULL;
    vision_job *j = smp_calloc(1, sizeof *j);
    if (!j) {
        json_decref(b);
        http_send_error(r, SMP_E_NOMEM, NULL);
        return NULL;
    }
    j->r = r;
    j->kind = kind;
    j->body = b;
    j->temperature = 0.7;
    valid_init(v);
    fields_check(v, b, fields, "");
    const char *model = NULL;
    if (valid_str(v, b, "model", false, false, &model) == 1 && strlen(model) >= sizeof j->model)
        valid_add(v, "model", "string_too_long", "model should have at most %zu bytes", sizeof j->model - 1);
    j->model_given = model;
    registry_model_name(model, MODEL_KIND_VISION, j->model, sizeof j->model);
    return j;
}

/* Validation answer, then the image: base64 (400) and header (400/413). */
static void finish_json(http_req *r, vision_job *j, valid *v, const char *image) {
    if (!http_validation_done(r, v)) {
        job_free(j);
        return;
    }
    char err[512];
    size_t n = 0;
    int rc = image_from_base64_probed(image, strlen(image), max_pixels(), &j->decoded, &n, NULL, err, sizeof err);
    if (rc) {
        http_send_error(r, rc, "%s", err);
        job_free(j);
        return;
    }
    j->image = j->decoded;
    j->image_len = n;
    start(j);
}

static void sampling(valid *v, vision_job *j) {
    double d;
    long long n;
    if (valid_num(v, j->body, "temperature", false, 0, 2, &d) == 1) j->temperature = d;
    if (valid_int(v, j->body, "max_tokens", false, 1, 1 << 20, &n) == 1) j->max_tokens = (int)n;
}

static void analyze(http_req *r) {
    valid v;
    vision_job *j = begin_json(r, VJ_ANALYZE, &fields_vision_analyze, &v);
    if (!j) return;
    const char *image = NULL;
    valid_str(&v, j->body, "image", true, true, &image);
    valid_str(&v, j->body, "prompt", true, true, &j->prompt);
    sampling(&v, j);
    finish_json(r, j, &v, image);
}

static void caption(http_req *r) {
    valid v;
    vision_job *j = begin_json(r, VJ_CAPTION, &fields_vision_caption, &v);
    if (!j) return;
    const char *image = NULL, *level = "normal";
    valid_str(&v, j->body, "image", true, true, &image);
    valid_enum(&v, j->body, "detail_level", false, detail_levels, &level);
    for (int i = 0; detail_levels[i]; i++)
        if (!strcmp(level, detail_levels[i])) j->prompt = caption_prompts[i];
    sampling(&v, j);
    finish_json(r, j, &v, image);
}

static void ocr(http_req *r) {
    valid v;
    vision_job *j = begin_json(r, VJ_OCR, &fields_vision_ocr, &v);
    if (!j) return;
    const char *image = NULL, *model = j->model_given, *lang;
    valid_str(&v, j->body, "image", true, true, &image);
    /* No model (or "tesseract"): the in-process engine; any other name is a
     * vision model. */
    j->tesseract = !model || !*model || !strcmp(model, TESSERACT_MODEL);
    /* Each engine's own fields: the other's would be dropped, so they are refused. */
    static const char *const model_only[] = {"temperature", "max_tokens"};
    for (int i = 0; i < 2 && j->tesseract; i++) {
        json_t *x = json_object_get(j->body, model_only[i]);
        if (x && !json_is_null(x))
            valid_add(&v, model_only[i], "unsupported",
                      "only a vision model reads %s; Tesseract (no 'model', or 'tesseract') reads the whole image as is",
                      model_only[i]);
    }
    lang = json_string_value(json_object_get(j->body, "language"));
    if (!j->tesseract && lang && *lang)
        valid_add(&v, "language", "unsupported",
                  "language selects Tesseract's language data; the vision model '%.100s' reads any language (omit "
                  "language, or 'model' to use Tesseract)",
                  model);
    else if (valid_str(&v, j->body, "language", false, false, &lang) >= 0 && lang && *lang) {
        if (!ocr_language_ok(lang)) {
            char list[512];
            int n = ocr_languages(list, sizeof list);
            valid_add(&v, "language", "value_error", "OCR language '%.64s' is not installed; installed: %s", lang,
                      n ? list : "none");
        } else {
            snprintf(j->lang, sizeof j->lang, "%s", lang);
        }
    }
    if (!j->lang[0]) snprintf(j->lang, sizeof j->lang, "eng");
    j->prompt = OCR_PROMPT;
    j->temperature = 0;
    sampling(&v, j);
    finish_json(r, j, &v, image);
}

/* ---- upload -------------------------------------------------------------------------- */

/* A form field (not a file), else the query parameter of the same name.
 * Returns 1 found (*out a new string), 0 absent, -1 unusable (a NUL or not
 * UTF-8), -2 longer than max bytes. */
static int form_or_query(http_req *r, const multipart *m, const char *name, size_t max, char **out) {
    *out = NULL;
    const multipart_part *p = multipart_find(m, name);
    const char *s;
    size_t len;
    if (p && !p->filename) {
        s = p->data;
        len = p->len;
    } else if ((s = http_query(r, name))) {
        len = strlen(s);
    } else {
        return 0;
    }
    if (memchr(s, '\0', len) || !valid_utf8(s, len)) return -1;
    if (len > max) return -2;
    *out = smp_strndup(s, len);
    return *out ? 1 : -1;
}

static void form_problem(valid *v, const char *name, int rc, size_t max) {
    if (rc == -2) valid_add(v, name, "string_too_long", "%s should have at most %zu bytes", name, max);
    else if (rc < 0) valid_add(v, name, "string_type", "%s should be UTF-8 text", name);
}

static void upload(http_req *r) {
    vision_job *j = smp_calloc(1, sizeof *j);
    if (!j) {
        http_send_error(r, SMP_E_NOMEM, NULL);
        return;
    }
    j->r = r;
    j->kind = VJ_UPLOAD;
    j->temperature = 0.7;
    if (http_multipart(r, "the image in a field named 'file'", &j->form)) {
        job_free(j);
        return;
    }
    valid v;
    valid_init(&v);
    fields_check_form(&v, &j->form, &fields_vision_upload);
    const multipart_part *file = multipart_find(&j->form, "file");
    if (!file || !file->filename) valid_add(&v, "file", "missing", "Field required (an image upload named 'file')");
    char *model = NULL;
    form_problem(&v, "prompt", form_or_query(r, &j->form, "prompt", PROMPT_MAX, &j->prompt_copy), PROMPT_MAX);
    form_problem(&v, "model", form_or_query(r, &j->form, "model", sizeof j->model - 1, &model), sizeof j->model - 1);
    if (!http_validation_done(r, &v)) {
        smp_free(model);
        job_free(j);
        return;
    }
    j->prompt = j->prompt_copy && *j->prompt_copy ? j->prompt_copy : UPLOAD_PROMPT;
    registry_model_name(model, MODEL_KIND_VISION, j->model, sizeof j->model);
    smp_free(model);
    clean_filename(j->filename, sizeof j->filename, file->filename);
    j->image = (const unsigned char *)file->data;
    j->image_len = file->len;
    if (!header_ok(r, j)) {
        job_free(j);
        return;
    }
    start(j);
}

void api_vision_register(void) {
    router_add("POST", "/vision/analyze", analyze, 0, "Answer a prompt about a base64 image with a vision model");
    router_add("POST", "/vision/caption", caption, 0, "Caption a base64 image (detail_level brief, normal or detailed)");
    router_add("POST", "/vision/ocr", ocr, 0,
               "Text in a base64 image: Tesseract in-process, or a vision model when 'model' names one");
    router_add("POST", "/vision/upload", upload, ROUTE_UPLOAD,
               "Answer a prompt about an uploaded image (multipart 'file'; 'prompt' and 'model' as fields or query)");
    image_lib_init();
}
