/* audio.c - the audio routes: speech to text, in-process (Whisper) or
 * forwarded to an OpenAI-compatible server.
 *
 *   POST /audio/transcribe, /audio/translate            JSON, "audio" in base64
 *   POST /audio/upload/transcribe, /audio/upload/translate   multipart "file";
 *        fields as form fields or query parameters
 *   POST /v1/audio/transcriptions, /v1/audio/translations   OpenAI dialect,
 *        multipart; response_format json | text | srt | vtt | verbose_json
 *
 * A handler parses and checks the request into an audio_job (the audio bytes
 * point into the request body or into the job's decoded base64), then queues
 * it on the shared worker pool (textgen_submit): decoding, model loading and
 * transcription never run on an HTTP thread. The audio is decoded as the
 * engine reads it (media/audio.h's stream as a whisper_source), so a job
 * holds the request body and one window, never the whole audio as samples;
 * its working set is reserved from HEAVY_JOB_MEMORY_MB before it starts
 * (503 when other heavy jobs hold the budget past HEAVY_JOB_WAIT_S). The worker produces one
 * canonical result object {text, language (an ISO code, also for forwarded
 * answers), duration, model, task, segments, stats (per segment: the decoding
 * figures verbose_json reports)} (cached by the audio's SHA-256 and every
 * option that changes the output, when the temperature is 0), then renders
 * it in the route's shape. A client that leaves stops the transcription
 * between decoder steps, and a model download nobody else waits for.
 * Error statuses: "Invalid audio" (400) only for audio the decoder refuses;
 * a model file that does not load is the store's 503. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "api/fields.h"
#include "api/textgen.h"
#include "backend/openai_audio.h"
#include "cache/cache.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/membudget.h"
#include "core/util.h"
#include "core/valid.h"
#include "engine/whisper.h"
#include "http/multipart.h"
#include "http/router.h"
#include "http/server.h"
#include "media/audio.h"
#include "media/whisper_store.h"
#include "obs/metrics.h"

#define AUDIO_PROMPT_MAX 4096

typedef enum { RF_SIMPLETON, RF_JSON, RF_TEXT, RF_SRT, RF_VTT, RF_VERBOSE } resp_format;

typedef struct {
    http_req *r;
    const char *endpoint;   /* route template, for metrics */
    bool translate;
    bool translate_route;   /* /audio/translate, /audio/upload/translate: source_language */
    resp_format fmt;
    json_t *body;           /* JSON routes */
    multipart form;         /* upload routes: parts point into the request body */
    unsigned char *decoded; /* base64 routes: the audio bytes (owned) */
    const unsigned char *audio;
    size_t len;
    const char *filename, *content_type;
    char data_type[64];     /* a data: URL's MIME type ("" when none) */
    char model[160];
    char language[16];      /* "" = detect */
    char *prompt;           /* owned; NULL: none */
    double temperature;     /* < 0: not given */
    bool cache;
} audio_job;

static void job_free(audio_job *j) {
    if (!j) return;
    json_decref(j->body);
    multipart_free(&j->form);
    smp_free(j->decoded);
    smp_free(j->prompt);
    smp_free(j);
}

/* ---- rendering ------------------------------------------------------------------------ */

static void fmt_time(double t, char sep, char *out, size_t n) {
    if (t < 0) t = 0;
    long ms = lround(t * 1000);
    snprintf(out, n, "%02ld:%02ld:%02ld%c%03ld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, sep, ms % 1000);
}

/* Segments of the result, or one spanning the whole audio when there are
 * none but there is text. */
static json_t *segments_or_whole(json_t *res) {
    json_t *segs = json_object_get(res, "segments");
    if (json_array_size(segs)) return json_incref(segs);
    const char *text = json_string_value(json_object_get(res, "text"));
    json_t *a = json_array();
    if (text && *text)
        json_array_append_new(a, json_pack("{s:f,s:f,s:s}", "start", 0.0, "end",
                                           json_real_value(json_object_get(res, "duration")), "text", text));
    return a;
}

static void send_subtitles(http_req *r, json_t *res, bool vtt) {
    buf b;
    buf_init(&b, 0);
    json_t *segs = segments_or_whole(res);
    if (vtt) buf_puts(&b, "WEBVTT\n\n");
    size_t i;
    json_t *s;
    json_array_foreach(segs, i, s) {
        char t0[32], t1[32];
        fmt_time(json_number_value(json_object_get(s, "start")), vtt ? '.' : ',', t0, sizeof t0);
        fmt_time(json_number_value(json_object_get(s, "end")), vtt ? '.' : ',', t1, sizeof t1);
        const char *text = json_string_value(json_object_get(s, "text"));
        while (text && *text == ' ') text++;
        if (!vtt) buf_printf(&b, "%zu\n", i + 1);
        buf_printf(&b, "%s --> %s\n%s\n\n", t0, t1, text ? text : "");
    }
    json_decref(segs);
    http_send(r, 200, vtt ? "text/vtt; charset=utf-8" : "application/x-subrip; charset=utf-8", b.data ? b.data : "",
              b.len);
    buf_free(&b);
}

static void respond(audio_job *j, json_t *res) {
    http_req *r = j->r;
    const char *text = json_string_value(json_object_get(res, "text"));
    switch (j->fmt) {
    case RF_SIMPLETON: {
        /* The translate routes name the spoken language source_language;
         * the transcribe routes always answer language (and, for task
         * translate, source_language too). */
        json_t *lang = json_object_get(res, "language");
        json_t *o = json_pack("{s:s,s:O,s:O,s:O,s:O}", "text", text, j->translate_route ? "source_language" : "language",
                              lang, "duration", json_object_get(res, "duration"), "model",
                              json_object_get(res, "model"), "segments", json_object_get(res, "segments"));
        if (o && j->translate && !j->translate_route) json_object_set(o, "source_language", lang);
        http_send_json(r, 200, o);
        return;
    }
    case RF_JSON: http_send_json(r, 200, json_pack("{s:s}", "text", text)); return;
    case RF_TEXT: {
        buf b;
        buf_init(&b, 0);
        buf_printf(&b, "%s\n", text);
        http_send(r, 200, "text/plain; charset=utf-8", b.data, b.len);
        buf_free(&b);
        return;
    }
    case RF_SRT: send_subtitles(r, res, false); return;
    case RF_VTT: send_subtitles(r, res, true); return;
    case RF_VERBOSE: {
        json_t *segs = json_array(), *s;
        size_t i;
        json_array_foreach(json_object_get(res, "segments"), i, s) {
            json_t *st = json_array_get(json_object_get(res, "stats"), i); /* NULL: no figures */
            json_t *t = json_object_get(st, "temperature");
            json_array_append_new(
                segs, json_pack("{s:i,s:I,s:O,s:O,s:O,s:o,s:f,s:f,s:f,s:f}", "id", (int)i, "seek",
                                json_integer_value(json_object_get(st, "seek")), "start",
                                json_object_get(s, "start"), "end", json_object_get(s, "end"), "text",
                                json_object_get(s, "text"), "tokens",
                                json_is_array(json_object_get(st, "tokens")) ? json_deep_copy(json_object_get(st, "tokens"))
                                                                             : json_array(),
                                "temperature",
                                t ? json_number_value(t) : (j->temperature > 0 ? j->temperature : 0.0), "avg_logprob",
                                json_number_value(json_object_get(st, "avg_logprob")), "compression_ratio",
                                json_number_value(json_object_get(st, "compression_ratio")), "no_speech_prob",
                                json_number_value(json_object_get(st, "no_speech_prob"))));
        }
        /* OpenAI names the language here ("english"); a code we do not know passes through. */
        const char *code = json_string_value(json_object_get(res, "language"));
        const char *name = whisper_lang_name(whisper_lang_id(code ? code : ""));
        http_send_json(r, 200, json_pack("{s:s,s:s,s:O,s:s,s:o}", "task", j->translate ? "translate" : "transcribe",
                                         "language", name ? name : code ? code : "", "duration",
                                         json_object_get(res, "duration"), "text", text, "segments", segs));
        return;
    }
    }
}

/* ---- the work ---------------------------------------------------------------------------- */

static void cache_key_for(const audio_job *j, char key[CACHE_KEY_MAX]) {
    char sha[65];
    util_sha256_hex(j->audio, j->len, sha);
    json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:s}", "audio_sha256", sha, "model", j->model, "language", j->language,
                          "task", j->translate ? "translate" : "transcribe", "prompt", j->prompt ? j->prompt : "");
    cache_key(CACHE_AUDIO, f, key);
    json_decref(f);
}

/* One segment's decoding figures (verbose_json), kept beside the segments. */
static json_t *seg_stats(double avg_logprob, double compression_ratio, double no_speech_prob, double temperature,
                         json_int_t seek, json_t *tokens) {
    return json_pack("{s:f,s:f,s:f,s:f,s:I,s:o}", "avg_logprob", avg_logprob, "compression_ratio", compression_ratio,
                     "no_speech_prob", no_speech_prob, "temperature", temperature, "seek", seek, "tokens",
                     tokens ? tokens : json_array());
}

/* Canonical result from the engine's. */
static json_t *from_whisper(const audio_job *j, const whisper_result *w) {
    json_t *segs = json_array(), *stats = json_array();
    for (int i = 0; i < w->n_segments; i++) {
        const whisper_segment *g = &w->segments[i];
        json_array_append_new(segs, json_pack("{s:f,s:f,s:s}", "start", g->start, "end", g->end, "text",
                                              g->text ? g->text : ""));
        json_t *tok = json_array();
        for (int k = 0; k < g->n_tokens; k++) json_array_append_new(tok, json_integer(g->tokens[k]));
        json_array_append_new(
            stats, seg_stats(g->avg_logprob, g->compression_ratio, g->no_speech_prob, g->temperature, g->seek, tok));
    }
    return json_pack("{s:s,s:s,s:f,s:s,s:s,s:o,s:o}", "text", w->text ? w->text : "", "language", w->language,
                     "duration", w->duration, "model", j->model, "task", j->translate ? "translate" : "transcribe",
                     "segments", segs, "stats", stats);
}

/* OpenAI answers with the language's English name ("english"); we keep ISO
 * codes. A code, or a name we do not know, passes through. */
static const char *iso_language(const char *lang) {
    int id = whisper_lang_id_by_name(lang);
    return id >= 0 ? whisper_lang_code(id) : lang;
}

/* Canonical result from an OpenAI-compatible server's verbose_json (or json). */
static json_t *from_openai(const audio_job *j, json_t *up) {
    json_t *segs = json_array(), *stats = json_array(), *s;
    size_t i;
    json_array_foreach(json_object_get(up, "segments"), i, s) {
        const char *t = json_string_value(json_object_get(s, "text"));
        json_array_append_new(segs, json_pack("{s:f,s:f,s:s}", "start", json_number_value(json_object_get(s, "start")),
                                              "end", json_number_value(json_object_get(s, "end")), "text", t ? t : ""));
        json_array_append_new(stats, seg_stats(json_number_value(json_object_get(s, "avg_logprob")),
                                               json_number_value(json_object_get(s, "compression_ratio")),
                                               json_number_value(json_object_get(s, "no_speech_prob")),
                                               json_number_value(json_object_get(s, "temperature")),
                                               json_integer_value(json_object_get(s, "seek")),
                                               json_is_array(json_object_get(s, "tokens"))
                                                   ? json_deep_copy(json_object_get(s, "tokens"))
                                                   : NULL));
    }
    const char *lang = json_string_value(json_object_get(up, "language"));
    lang = lang && *lang ? iso_language(lang) : j->language;
    return json_pack("{s:s,s:s,s:f,s:s,s:s,s:o,s:o}", "text", json_string_value(json_object_get(up, "text")),
                     "language", lang, "duration", json_number_value(json_object_get(up, "duration")), "model",
                     j->model, "task", j->translate ? "translate" : "transcribe", "segments", segs, "stats", stats);
}

/* The request's audio as the engine's source: decoded a piece at a time.
 * failed: the last error was the audio's (not the engine's). */
typedef struct {
    audio_stream *s;
    bool failed;
} stream_source;

static int source_read(void *ud, float *dst, size_t cap, size_t *got, char *err, size_t errlen) {
    stream_source *ss = ud;
    int rc = audio_stream_read(ss->s, dst, cap, got, err, errlen);
    ss->failed = rc != 0;
    return rc;
}

static int source_rewind(void *ud, char *err, size_t errlen) {
    stream_source *ss = ud;
    int rc = audio_stream_rewind(ss->s, err, errlen);
    ss->failed = rc != 0;
    return rc;
}

/* What FFmpeg's side of a stream holds at most, besides the request body:
 * contexts, the I/O buffer, a container's index (a 3 h m4a's is about
 * 1 MB) and one decoded frame, with room to spare. */
#define AUDIO_DECODER_BYTES (16u << 20)

/* The audio is decoded as the engine reads it: the container is checked
 * (format, declared length) before the model is loaded, and no more than a
 * window of samples is held at once. *bad_audio: the failure is the audio's
 * (only then is it "Invalid audio"). *answered: an answer was sent. */
static int run_local(audio_job *j, json_t **res, bool *bad_audio, bool *answered, char *err, size_t errlen) {
    stream_source ss = {0};
    whisper_model *m = NULL;
    whisper_result w = {0};
    size_t reserved = 0;
    double max_seconds = (double)config_get()->max_audio_seconds;
    int rc = audio_stream_open(j->audio, j->len, max_seconds, &ss.s, err, errlen);
    if (rc) {
        *bad_audio = rc == -SMP_E_FORMAT;
        return rc;
    }
    uint64_t t0 = util_now_ns();
    rc = whisper_store_acquire(j->model, http_client_gone_cb, j->r, &m, err, errlen);
    if (rc) goto out;
    if (util_now_ns() - t0 > 1000000) metrics_model_load_seconds(j->model, (util_now_ns() - t0) / 1e9);
    /* A container that states its length bounds the voice gate's share;
     * without one, the longest audio accepted does. */
    double declared = audio_stream_declared_seconds(ss.s);
    size_t need = whisper_transcribe_bytes(m, declared > 0 ? declared : max_seconds) + AUDIO_DECODER_BYTES;
    if ((rc = api_reserve_heavy(j->r, need, "this transcription"))) {
        *answered = rc < 0;
        goto out;
    }
    reserved = need;
    whisper_params p;
    whisper_params_default(&p);
    p.language = j->language[0] ? j->language : NULL;
    p.translate = j->translate;
    p.temperature = j->temperature > 0 ? j->temperature : 0;
    p.prompt = j->prompt;
    p.cancelled = http_client_gone_cb;
    p.cancel_ud = j->r;
    whisper_source src = {source_read, source_rewind, &ss};
    rc = whisper_transcribe_source(m, &src, &p, &w, err, errlen);
    if (rc < 0 && ss.failed) *bad_audio = rc == -SMP_E_FORMAT;
    if (rc == 0) {
        log_info("audio: %s %.1f s of audio with %s (mel %.0f ms, encoder %.0f ms, decoder %.0f ms)",
                 j->translate ? "translated" : "transcribed", w.duration, j->model, w.mel_ms, w.encode_ms, w.decode_ms);
        if (!(*res = from_whisper(j, &w))) rc = -SMP_E_NOMEM;
    }
    whisper_result_free(&w);
out:
    membudget_release(membudget_heavy(), reserved);
    whisper_store_release(m);
    audio_stream_close(ss.s);
    return rc;
}

static int run_remote(audio_job *j, json_t **res, char *err, size_t errlen) {
    openai_audio_req q = {.model = j->model,
                          .audio = j->audio,
                          .len = j->len,
                          .filename = j->filename,
                          .content_type = j->content_type ? j->content_type : j->data_type,
                          .language = j->language,
                          .prompt = j->prompt,
                          .temperature = j->temperature,
                          .translate = j->translate,
                          .cancelled = http_client_gone_cb,
                          .cancel_ud = j->r};
    json_t *up = NULL;
    int rc = openai_audio_transcribe(&q, &up, err, errlen);
    if (rc) return rc;
    *res = from_openai(j, up);
    json_decref(up);
    return *res ? 0 : -SMP_E_NOMEM;
}

static void run_job(void *arg) {
    audio_job *j = arg;
    http_req *r = j->r;
    char err[1024] = "", key[CACHE_KEY_MAX];
    json_t *res = NULL;
    bool cacheable = j->cache && j->temperature <= 0;
    if (cacheable) {
        cache_key_for(j, key);
        char *val;
        size_t vlen;
        if (cache_get(CACHE_AUDIO, key, &val, &vlen) == 1) {
            res = json_loadb(val, vlen, 0, NULL);
            smp_free(val);
            if (res) {
                http_add_header(r, "X-Cache", "HIT");
                goto done;
            }
        }
    }
    bool remote = openai_audio_wanted(j->model), bad_audio = false, answered = false;
    metrics_llm_request(j->model, j->endpoint);
    int rc = remote ? run_remote(j, &res, err, sizeof err) : run_local(j, &res, &bad_audio, &answered, err, sizeof err);
    if (answered) goto out;
    if (rc == 1) {
        http_send_error(r, SMP_E_UNAVAILABLE, "transcription cancelled: %s", util_stop_reason());
        goto out;
    }
    if (rc) {
        if (bad_audio) http_send_error(r, SMP_E_FORMAT, "Invalid audio: %s", err);
        else if (rc == -SMP_E_TOO_MANY) textgen_send_backend_error(r, rc, err);
        else http_send_error(r, rc, "%s", err[0] ? err : smp_err_message(rc));
        goto out;
    }
    if (cacheable) {
        buf s;
        buf_init(&s, 0);
        if (valid_dump(res, JSON_COMPACT, &s) == 0) cache_put(CACHE_AUDIO, key, s.data, s.len, 0);
        buf_free(&s);
        http_add_header(r, "X-Cache", "MISS");
    }
done:
    respond(j, res);
out:
    json_decref(res);
    job_free(j);
    http_release(r);
}

static void start(audio_job *j) {
    if (textgen_submit(j->r, run_job, j) != 0) job_free(j);
}

/* ---- parsing ------------------------------------------------------------------------------- */

/* Language: "" / "auto" = detect; otherwise one of Whisper's language codes
 * (ISO 639-1, plus "haw" and "yue"), any case. */
static bool set_language(audio_job *j, const char *s) {
    if (!s || !*s || !strcasecmp(s, "auto")) return j->language[0] = '\0', true;
    int id = whisper_lang_id(s);
    if (id < 0) return false;
    snprintf(j->language, sizeof j->language, "%s", whisper_lang_code(id));
    return true;
}

/* The model a request means. OpenAI clients send "whisper-1": unless that
 * name is routed somewhere or exists as a file, it means the default. */
static void set_model(audio_job *j, const char *m) {
    const char *def = config_get()->default_audio_model;
    if (!m || !*m) m = def;
    char path[4096];
    if (!strcmp(m, "whisper-1") && !openai_audio_wanted(m) && !whisper_store_find(m, path, sizeof path)) m = def;
    snprintf(j->model, sizeof j->model, "%s", m);
}

static const char *lang_rule = "language should be a Whisper language code (ISO 639-1) such as 'en', 'de' or 'ja' (or "
                                "omitted / 'auto' to detect)";

static audio_job *job_new(http_req *r, bool translate, resp_format fmt) {
    audio_job *j = smp_calloc(1, sizeof *j);
    if (!j) {
        http_send_error(r, SMP_E_NOMEM, NULL);
        return NULL;
    }
    j->r = r;
    j->endpoint = http_route(r);
    j->translate = translate;
    j->translate_route = translate;
    j->fmt = fmt;
    j->temperature = -1;
    j->cache = cache_wanted(http_header(r, "Cache-Control"));
    return j;
}

/* "data:audio/wav;base64,XXXX" or "XXXX" -> bytes. Returns false with the
 * 400 already sent. */
static bool decode_audio_field(audio_job *j, const char *s, size_t len) {
    if (len >= 5 && !strncasecmp(s, "data:", 5)) {
        const char *comma = memchr(s, ',', len);
        if (!comma) {
            http_send_error(j->r, SMP_E_BAD_REQUEST, "Invalid data URL in 'audio': no ',' before the data");
            return false;
        }
        size_t hl = (size_t)(comma - s);
        if (hl < 7 || strncasecmp(comma - 7, ";base64", 7)) {
            http_send_error(j->r, SMP_E_BAD_REQUEST, "Invalid data URL in 'audio': only ';base64' data URLs are accepted");
            return false;
        }
        size_t tl = hl - 7 - 5; /* between "data:" and ";base64" (parameters included); hl >= 12 here */
        if (hl >= 12 && tl < sizeof j->data_type) {
            memcpy(j->data_type, s + 5, tl);
            j->data_type[tl] = '\0';
        }
        len -= hl + 1;
        s = comma + 1;
    }
    if (!(j->decoded = smp_malloc(util_b64_decoded_max(len) + 1))) {
        http_send_error(j->r, SMP_E_NOMEM, NULL);
        return false;
    }
    char err[256];
    long n = util_b64_decode(s, len, j->decoded, err, sizeof err);
    if (n < 0) {
        http_send_error(j->r, SMP_E_BAD_REQUEST, "Invalid base64 in 'audio': %s", err);
        return false;
    }
    if (n == 0) {
        http_send_error(j->r, SMP_E_BAD_REQUEST, "The audio is empty");
        return false;
    }
    j->audio = j->decoded;
    j->len = (size_t)n;
    return true;
}

/* POST /audio/transcribe and /audio/translate. */
static void json_route(http_req *r, bool translate_route) {
    json_t *b = http_json_object(r);
    if (!b) return;
    audio_job *j = job_new(r, translate_route, RF_SIMPLETON);
    if (!j) {
        json_decref(b);
        return;
    }
    j->body = b;
    valid v;
    valid_init(&v);
    fields_check(&v, b, translate_route ? &fields_audio_translate : &fields_audio_transcribe, "");
    const char *audio = NULL, *lang = NULL, *model = NULL, *task = NULL, *prompt = NULL;
    double temp = -1;
    static const char *const tasks[] = {"transcribe", "translate", NULL};
    valid_str(&v, b, "audio", true, true, &audio);
    if (valid_str(&v, b, "language", false, false, &lang) == 1 && !set_language(j, lang))
        valid_add(&v, "language", "value_error", "unknown language '%.20s': %s", lang, lang_rule);
    if (valid_str(&v, b, "model", false, false, &model) == 1 && strlen(model) >= sizeof j->model)
        valid_add(&v, "model", "string_too_long", "model should have at most %zu characters", sizeof j->model - 1);
    if (valid_enum(&v, b, "task", false, tasks, &task) == 1 && !translate_route) j->translate = !strcmp(task, "translate");
    if (valid_str(&v, b, "prompt", false, false, &prompt) == 1 && strlen(prompt) > AUDIO_PROMPT_MAX)
        valid_add(&v, "prompt", "string_too_long", "prompt should have at most %d characters", AUDIO_PROMPT_MAX);
    if (valid_num(&v, b, "temperature", false, 0, 1, &temp) == 1) j->temperature = temp;
    if (!http_validation_done(r, &v)) {
        job_free(j);
        return;
    }
    set_model(j, model);
    if (prompt && *prompt && !(j->prompt = smp_strdup(prompt))) {
        http_send_error(r, SMP_E_NOMEM, NULL);
        job_free(j);
        return;
    }
    if (!decode_audio_field(j, audio, json_string_length(json_object_get(b, "audio")))) {
        job_free(j);
        return;
    }
    start(j);
}

static void transcribe(http_req *r) { json_route(r, false); }
static void translate(http_req *r) { json_route(r, true); }

/* A form field, else the query parameter. A value too long for tmp or
 * holding a NUL comes back as "\x01", which every check refuses. */
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

/* Every multipart route: the /audio/upload and /v1/audio families. */
static void upload_route(http_req *r, bool translate_route, bool openai) {
    audio_job *j = job_new(r, translate_route, openai ? RF_JSON : RF_SIMPLETON);
    if (!j) return;
    if (http_multipart(r, "the audio in a field named 'file'", &j->form)) {
        job_free(j);
        return;
    }
    valid v;
    valid_init(&v);
    static const field_table *const forms[2][2] = {
        {&fields_audio_upload_transcribe, &fields_audio_upload_translate},
        {&fields_openai_transcription, &fields_openai_translation},
    };
    fields_check_form(&v, &j->form, forms[openai][translate_route]);
    const multipart_part *f = multipart_find(&j->form, "file");
    if (!f || !f->filename) valid_add(&v, "file", "missing", "Field required (an audio file upload named 'file')");
    char tmp[AUDIO_PROMPT_MAX + 1], model[sizeof j->model];
    const char *s = form_value(r, &j->form, "model", model, sizeof model);
    if (s && !strcmp(s, "\x01")) valid_add(&v, "model", "value_error", "model is too long");
    else set_model(j, s);
    s = form_value(r, &j->form, "language", tmp, sizeof tmp);
    if (s && !set_language(j, s))
        valid_add(&v, "language", "value_error", "unknown language '%.20s': %s", strcmp(s, "\x01") ? s : "(too long)",
                  lang_rule);
    if (!openai && !translate_route) {
        s = form_value(r, &j->form, "task", tmp, sizeof tmp);
        if (s && *s && strcmp(s, "transcribe") && strcmp(s, "translate"))
            valid_add(&v, "task", "enum", "task should be 'transcribe' or 'translate'");
        else if (s && !strcmp(s, "translate")) j->translate = true;
    }
    s = form_value(r, &j->form, "temperature", tmp, sizeof tmp);
    if (s && *s) {
        char *end;
        double t = strtod(s, &end);
        if (*end || !(t >= 0 && t <= 1)) valid_add(&v, "temperature", "float_type", "temperature should be a number in 0..1");
        else j->temperature = t;
    }
    if (openai) {
        s = form_value(r, &j->form, "response_format", tmp, sizeof tmp);
        static const struct {
            const char *name;
            resp_format f;
        } fmts[] = {{"json", RF_JSON}, {"text", RF_TEXT}, {"srt", RF_SRT}, {"vtt", RF_VTT}, {"verbose_json", RF_VERBOSE}};
        bool found = !s || !*s;
        for (size_t i = 0; s && *s && i < sizeof fmts / sizeof fmts[0]; i++)
            if (!strcmp(s, fmts[i].name)) j->fmt = fmts[i].f, found = true;
        if (!found)
            valid_add(&v, "response_format", "enum", "response_format should be json, text, srt, vtt or verbose_json");
    }
    s = form_value(r, &j->form, "prompt", tmp, sizeof tmp);
    if (s && !strcmp(s, "\x01")) valid_add(&v, "prompt", "string_too_long", "prompt should have at most %d characters", AUDIO_PROMPT_MAX);
    else if (s && *s && !(j->prompt = smp_strdup(s))) valid_add(&v, "prompt", "memory", "out of memory");
    if (!http_validation_done(r, &v)) {
        job_free(j);
        return;
    }
    if (f->len == 0) {
        http_send_error(r, SMP_E_BAD_REQUEST, "The uploaded file is empty");
        job_free(j);
        return;
    }
    j->audio = (const unsigned char *)f->data;
    j->len = f->len;
    j->filename = f->filename;
    j->content_type = f->content_type;
    start(j);
}

static void upload_transcribe(http_req *r) { upload_route(r, false, false); }
static void upload_translate(http_req *r) { upload_route(r, true, false); }
static void openai_transcriptions(http_req *r) { upload_route(r, false, true); }
static void openai_translations(http_req *r) { upload_route(r, true, true); }

void api_audio_register(void) {
    router_add("POST", "/audio/transcribe", transcribe, 0,
               "Speech to text: base64 'audio' (optionally a data: URL), language, model, task, prompt, temperature");
    router_add("POST", "/audio/translate", translate, 0, "Speech in any language to English text (base64 'audio')");
    router_add("POST", "/audio/upload/transcribe", upload_transcribe, ROUTE_UPLOAD,
               "Speech to text from an uploaded file (multipart 'file'; fields as form fields or query)");
    router_add("POST", "/audio/upload/translate", upload_translate, ROUTE_UPLOAD,
               "Speech to English text from an uploaded file (multipart 'file')");
    router_add("POST", "/v1/audio/transcriptions", openai_transcriptions, ROUTE_UPLOAD,
               "OpenAI-compatible transcription (multipart; response_format json, text, srt, vtt, verbose_json)");
    router_add("POST", "/v1/audio/translations", openai_translations, ROUTE_UPLOAD,
               "OpenAI-compatible translation to English (multipart)");
}
