/* openai_audio.c - the transcription backend for OpenAI-compatible servers.
 *
 * One blocking libcurl request per call (a fresh easy handle: transcription
 * uploads are large and rare, connection reuse buys little). The body is a
 * curl_mime form: file (the client's bytes unchanged, with its file name and
 * type; OpenAI picks the decoder from the file name's extension, so bytes
 * without a named file, as from base64, go up as "audio.<ext>" with the
 * container guessed from their magic bytes or their data: URL type), model, response_format=verbose_json, and language / prompt /
 * temperature when given. The answer is collected into a capped buf and
 * parsed: a JSON object with "text" (verbose_json adds language, duration
 * and segments), or, from servers that answer plain text, the text itself. */
#include "backend/openai_audio.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "backend/httpc.h"
#include "backend/registry.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "media/audio.h"
#include "media/whisper_store.h"

#define OA_MAX_ANSWER (16u << 20)

bool openai_audio_wanted(const char *model) {
    const config *c = config_get();
    size_t bl = 0;
    const char *b = model ? registry_explicit_backend(model, &bl) : NULL;
    if (b) return bl == 6 && !strncmp(b, "openai", 6);
    if (!c->openai_base_url || !c->openai_base_url[0] || !model) return false;
    size_t ml = strlen(model);
    if (ml > 5 && !strcmp(model + ml - 5, ".gguf")) return false; /* a local file name: answered "not supported" */
    char path[4096];
    return !whisper_store_is_size(model) && !whisper_store_find(model, path, sizeof path);
}

static size_t collect(char *p, size_t size, size_t nmemb, void *ud) {
    return buf_append(ud, p, size * nmemb) ? 0 : size * nmemb;
}

typedef struct {
    bool (*cancelled)(void *ud);
    void *ud;
    bool stopped;
} cancel_check;

static int progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
    (void)a, (void)b, (void)c, (void)d;
    cancel_check *cc = ud;
    if (cc->cancelled && cc->cancelled(cc->ud)) return cc->stopped = true, 1;
    return 0;
}

static int add_field(curl_mime *m, const char *name, const char *value) {
    curl_mimepart *p = curl_mime_addpart(m);
    if (!p) return -1;
    return curl_mime_name(p, name) || curl_mime_data(p, value, CURL_ZERO_TERMINATED) ? -1 : 0;
}

/* The upstream's error text: {"error":{"message"}}, {"error":"..."}, {"detail"} or the body. */
static void upstream_message(const buf *b, char *out, size_t n) {
    json_t *j = json_loadb(b->data ? b->data : "", b->len, 0, NULL);
    const char *msg = NULL;
    if (json_is_object(j)) {
        json_t *e = json_object_get(j, "error");
        if (json_is_object(e)) msg = json_string_value(json_object_get(e, "message"));
        else if (json_is_string(e)) msg = json_string_value(e);
        if (!msg) msg = json_string_value(json_object_get(j, "detail"));
    }
    snprintf(out, n, "%.300s", msg ? msg : (b->data ? b->data : ""));
    json_decref(j);
}

static bool has_ext(const char *name) {
    const char *dot = strrchr(name, '.'), *slash = strrchr(name, '/');
    return dot && dot[1] && (!slash || dot > slash);
}

/* "audio.<ext>" from the bytes (or the given type) when the client named no
 * file with an extension, and the Content-Type to send (NULL: curl's
 * application/octet-stream). */
static void upload_name(const openai_audio_req *q, char *name, size_t n, const char **type) {
    const char *given = q->content_type && q->content_type[0] && strcasecmp(q->content_type, "application/octet-stream")
                            ? q->content_type
                            : NULL;
    const char *guessed_type = NULL;
    const char *ext = audio_guess_container(q->audio, q->len, given, &guessed_type);
    snprintf(name, n, "audio%s%s", ext ? "." : "", ext ? ext : "");
    *type = given ? given : guessed_type;
}

int openai_audio_transcribe(const openai_audio_req *q, json_t **out, char *err, size_t errlen) {
    const config *c = config_get();
    *out = NULL;
    if (!c->openai_base_url || !c->openai_base_url[0]) {
        snprintf(err, errlen, "Model '%s' is routed to openai, but OPENAI_BASE_URL is not set", q->model);
        return -SMP_E_UNAVAILABLE;
    }
    if (httpc_global_init()) {
        snprintf(err, errlen, "libcurl could not start");
        return -SMP_E_INTERNAL;
    }
    const char *base = c->openai_base_url;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') bl--;
    char url[2048], auth[1024], temp[32], upstream[400];
    snprintf(url, sizeof url, "%.*s/audio/%s", (int)bl, base, q->translate ? "translations" : "transcriptions");
    CURL *h = curl_easy_init();
    curl_mime *form = NULL;
    struct curl_slist *headers = NULL;
    buf body;
    buf_init(&body, OA_MAX_ANSWER);
    int rc = -SMP_E_NOMEM;
    if (!h || !(form = curl_mime_init(h))) goto fail;
    char fname[64];
    const char *ftype;
    upload_name(q, fname, sizeof fname, &ftype);
    curl_mimepart *file = curl_mime_addpart(form);
    if (!file || curl_mime_name(file, "file") || curl_mime_data(file, q->audio, q->len) ||
        curl_mime_filename(file, q->filename && has_ext(q->filename) ? q->filename : fname) ||
        (ftype && curl_mime_type(file, ftype)))
        goto fail;
    if (add_field(form, "model", q->model) || add_field(form, "response_format", "verbose_json")) goto fail;
    if (q->language && q->language[0] && add_field(form, "language", q->language)) goto fail;
    if (q->prompt && q->prompt[0] && add_field(form, "prompt", q->prompt)) goto fail;
    if (q->temperature >= 0) {
        snprintf(temp, sizeof temp, "%g", q->temperature);
        if (add_field(form, "temperature", temp)) goto fail;
    }
    if (c->openai_api_key && c->openai_api_key[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->openai_api_key);
        if (!(headers = curl_slist_append(headers, auth))) goto fail;
    }
    struct curl_slist *h2 = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
    if (!h2) goto fail;
    headers = h2;
    char cerr[CURL_ERROR_SIZE] = "";
    cancel_check cc = {q->cancelled, q->cancel_ud, false};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_MIMEPOST, form);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, c->upstream_timeout);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &cc);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    CURLcode cr = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (cc.stopped) {
        snprintf(err, errlen, "cancelled: %s", util_stop_reason());
        rc = 1;
        goto fail;
    }
    if (cr != CURLE_OK) {
        bool conn = cr == CURLE_COULDNT_CONNECT || cr == CURLE_COULDNT_RESOLVE_HOST ||
                    cr == CURLE_OPERATION_TIMEDOUT || status == 0;
        snprintf(err, errlen, "%s openai at %s: %s", conn ? "Could not connect to" : "Backend error: transfer with",
                 url, cerr[0] ? cerr : curl_easy_strerror(cr));
        rc = conn ? -SMP_E_UNAVAILABLE : -SMP_E_BACKEND;
        goto fail;
    }
    if (status < 200 || status > 299) {
        upstream_message(&body, upstream, sizeof upstream);
        snprintf(err, errlen, "Backend error: openai returned %ld: %s", status, upstream);
        rc = -SMP_E_BACKEND;
        goto fail;
    }
    json_t *j = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
    if (!j) { /* a plain-text answer */
        j = json_pack("{s:s%}", "text", body.data ? body.data : "", body.len);
        if (!j) {
            snprintf(err, errlen, "Backend error: openai answered something that is neither JSON nor text");
            rc = -SMP_E_BACKEND;
            goto fail;
        }
    }
    if (!json_is_object(j) || !json_is_string(json_object_get(j, "text"))) {
        json_decref(j);
        snprintf(err, errlen, "Backend error: openai's answer has no \"text\"");
        rc = -SMP_E_BACKEND;
        goto fail;
    }
    *out = j;
    rc = 0;
fail:
    if (rc == -SMP_E_NOMEM) snprintf(err, errlen, "out of memory");
    if (rc < 0) log_warn("audio: %s", err);
    curl_mime_free(form);
    curl_slist_free_all(headers);
    if (h) curl_easy_cleanup(h);
    buf_free(&body);
    return rc;
}
