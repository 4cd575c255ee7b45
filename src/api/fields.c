/* fields.c - see fields.h. The tables below are the reference for what each
 * dialect's fields do; README.md "Request fields" summarises them. */
#include "api/fields.h"

#include <stdio.h>
#include <string.h>

#include "core/valid.h"
#include "http/multipart.h"

#define USED(n) {n, FIELD_USED, NULL, NULL}
#define USED_NOTE(n, note) {n, FIELD_USED, NULL, note}
#define NO_EFFECT(n) {n, FIELD_NO_EFFECT, NULL, NULL}
#define NO_EFFECT_BECAUSE(n, why) {n, FIELD_NO_EFFECT, NULL, why}
#define REFUSED(n, allow, why) {n, FIELD_REFUSED, allow, why}

/* Messages shared by several tables. */
#define NO_FUNCTIONS "the legacy functions API is not supported: use tools and tool_choice"
#define NO_FIM "fill-in-the-middle (suffix) is not supported yet"
#define NO_THINK "thinking (reasoning apart from the answer) is not supported yet"

/* Sampling fields every text route reads (OpenAI's top_k, min_p and
 * repeat_penalty are the extensions vLLM and llama.cpp accept too). */
#define SAMPLING                                                                                      \
    USED("model"), USED("stream"), USED("temperature"), USED("top_p"), USED("top_k"), USED("min_p"), \
        USED("repeat_penalty"), USED("presence_penalty"), USED("frequency_penalty"), USED("seed"), USED("stop")

/* ---- OpenAI ------------------------------------------------------------------- */

/* What chat and completions both read. */
#define OPENAI_TEXT                                                                                   \
    SAMPLING, USED("max_tokens"), USED("max_completion_tokens"), USED("stream_options"),             \
        USED("response_format"), USED("grammar") /* llama.cpp's server takes GBNF here too */,        \
        USED("logprobs") /* chat: a bool; completions: 0..5 alternatives */, USED("logit_bias"),      \
        NO_EFFECT("user"), REFUSED("n", "[1]", "only n=1 is supported (one choice per request)")

static const field_rule openai_chat[] = {
    OPENAI_TEXT,
    USED("messages"),
    NO_EFFECT("safety_identifier"),
    NO_EFFECT("prompt_cache_key"),
    NO_EFFECT("metadata"),
    REFUSED("store", "[false]", "stored completions are not supported (only store: false)"),
    REFUSED("service_tier", "[\"auto\",\"default\"]", "service tiers are not supported (only 'auto' or 'default')"),
    USED("tools"),
    USED("tool_choice"),
    USED("parallel_tool_calls"),
    REFUSED("functions", "[[]]", NO_FUNCTIONS),
    REFUSED("function_call", "[\"none\",\"auto\"]", NO_FUNCTIONS),
    USED("top_logprobs"),
    REFUSED("modalities", "[[\"text\"]]", "only [\"text\"] output is supported"),
    REFUSED("audio", NULL, "audio output is not supported"),
    REFUSED("prediction", NULL, "predicted outputs are not supported"),
    REFUSED("reasoning_effort", NULL, "reasoning controls are not supported yet"),
    REFUSED("verbosity", NULL, "verbosity control is not supported"),
    REFUSED("web_search_options", NULL, "web search is not supported"),
    {NULL, 0, NULL, NULL},
};

static const field_rule openai_message[] = {
    USED("role"),
    USED("content"),
    REFUSED("name", NULL, "participant names are not supported yet (the name would be dropped from the prompt)"),
    USED("tool_calls"),
    USED("tool_call_id"),
    REFUSED("function_call", NULL, NO_FUNCTIONS),
    REFUSED("refusal", NULL, "refusal messages are not supported yet"),
    REFUSED("audio", NULL, "audio messages are not supported"),
    {NULL, 0, NULL, NULL},
};

static const field_rule openai_completion[] = {
    OPENAI_TEXT,
    USED("prompt"),
    REFUSED("best_of", "[1]", "only best_of=1 is supported"),
    REFUSED("echo", "[false]", "echoing the prompt is not supported yet"),
    REFUSED("suffix", "[\"\"]", NO_FIM),
    {NULL, 0, NULL, NULL},
};

static const field_rule openai_embed[] = {
    USED("input"), USED("model"), USED("encoding_format"), USED("dimensions"), NO_EFFECT("user"), {NULL, 0, NULL, NULL},
};

/* ---- Ollama ------------------------------------------------------------------- */

#define OLLAMA_COMMON                                                                                           \
    USED("model"), USED("stream"), USED("options"), NO_EFFECT("keep_alive"), NO_EFFECT("truncate"),           \
        USED("format"), REFUSED("think", "[false]", NO_THINK),                        \
        REFUSED("shift", "[false]", "context shifting is not supported (generation stops at the context's end)"), \
        USED("logprobs"), USED("top_logprobs"),                                                                \
        REFUSED("debug_render_only", "[false]", "debug rendering is not supported")

static const field_rule ollama_generate[] = {
    OLLAMA_COMMON,
    USED("prompt"),
    USED("system"),
    USED("raw"),
    USED("context"),
    USED("images"),
    REFUSED("suffix", "[\"\"]", NO_FIM),
    REFUSED("template", "[\"\"]", "custom prompt templates are not supported yet"),
    REFUSED("width", NULL, "image generation is not supported"),
    REFUSED("height", NULL, "image generation is not supported"),
    REFUSED("steps", NULL, "image generation is not supported"),
    {NULL, 0, NULL, NULL},
};

static const field_rule ollama_chat[] = {
    OLLAMA_COMMON,
    USED("messages"),
    USED("tools"),
    {NULL, 0, NULL, NULL},
};

static const field_rule ollama_message[] = {
    USED("role"),
    USED("content"),
    USED("images"),
    REFUSED("thinking", "[\"\"]", NO_THINK),
    USED("tool_calls"),
    USED("tool_name"),
    {NULL, 0, NULL, NULL},
};

/* Ollama's options: the sampling ones are honoured; the runner's knobs
 * change speed and memory, never the answer; the rest are refused unless
 * they hold the value that turns them off (or the engine's own). */
static const field_rule ollama_options[] = {
    USED("temperature"),
    USED("top_p"),
    USED("top_k"),
    USED("min_p"),
    USED("repeat_penalty"),
    USED("presence_penalty"),
    USED("frequency_penalty"),
    USED("seed"),
    USED("num_predict"),
    USED("stop"),
    USED_NOTE("num_ctx", "caps prompt plus answer; a value above the model's context means the model's context"),
    NO_EFFECT("num_keep"), /* what a context shift keeps; Simpleton never shifts */
    NO_EFFECT("num_batch"),
    NO_EFFECT("num_gpu"),
    NO_EFFECT("main_gpu"),
    NO_EFFECT("low_vram"),
    NO_EFFECT("f16_kv"),
    NO_EFFECT("logits_all"),
    NO_EFFECT("use_mmap"),
    NO_EFFECT("use_mlock"),
    NO_EFFECT("num_thread"),
    NO_EFFECT("numa"),
    NO_EFFECT("penalize_newline"), /* Ollama itself no longer reads it */
    NO_EFFECT("mirostat_tau"),     /* only read with mirostat, refused below */
    NO_EFFECT("mirostat_eta"),
    REFUSED("mirostat", "[0]", "mirostat sampling is not supported (only 0)"),
    REFUSED("typical_p", "[1]", "typical sampling is not supported (only 1, off)"),
    REFUSED("tfs_z", "[1]", "tail-free sampling is not supported (only 1, off)"),
    REFUSED("repeat_last_n", "[64]", "the penalty window is fixed at 64 tokens (only 64)"),
    REFUSED("vocab_only", "[false]", "loading only the vocabulary is not supported"),
    {NULL, 0, NULL, NULL},
};

static const field_rule ollama_embed[] = {
    USED("model"), USED("input"), USED("dimensions"), NO_EFFECT("truncate"), NO_EFFECT("keep_alive"),
    NO_EFFECT("options"), {NULL, 0, NULL, NULL},
};

static const field_rule ollama_embeddings[] = {
    USED("model"), USED("prompt"), NO_EFFECT("keep_alive"), NO_EFFECT("options"), {NULL, 0, NULL, NULL},
};

/* ---- Simpleton ------------------------------------------------------------------- */

static const field_rule simpleton_generate[] = {
    SAMPLING, USED("prompt"), USED("system"), USED("raw"), USED("context"), USED("max_tokens"), {NULL, 0, NULL, NULL},
};

static const field_rule simpleton_chat[] = {SAMPLING, USED("messages"), USED("max_tokens"), {NULL, 0, NULL, NULL}};

static const field_rule simpleton_message[] = {USED("role"), USED("content"), USED("images"), {NULL, 0, NULL, NULL}};

static const field_rule simpleton_embed[] = {USED("input"), USED("model"), {NULL, 0, NULL, NULL}};

/* ---- audio ------------------------------------------------------------------------ */

/* OpenAI's transcription form. Array fields arrive as "name[]" parts (the
 * official SDKs) or as repeated "name" parts: both are listed. */
#define NO_WORDS "word timestamps are not supported (only 'segment': verbose_json's segments carry their times)"
#define NO_DIARIZE "speaker diarization is not supported"
#define OPENAI_AUDIO                                                                                              \
    USED("file"), USED_NOTE("model", "'whisper-1' means DEFAULT_AUDIO_MODEL unless a file or route has that name"), \
        USED("prompt"), USED("response_format"), USED("temperature"),                                             \
        REFUSED("stream", "[\"false\"]", "streamed transcription is not supported (only stream=false)"),          \
        REFUSED("chunking_strategy", "[\"auto\"]",                                                              \
                "only 'auto' is accepted (the engine cuts the audio into its own 30 s windows and skips silence)")

static const field_rule openai_transcription[] = {
    OPENAI_AUDIO,
    USED("language"),
    REFUSED("timestamp_granularities[]", "[\"segment\"]", NO_WORDS),
    REFUSED("timestamp_granularities", "[\"segment\"]", NO_WORDS),
    REFUSED("include[]", NULL, "log probabilities of the transcript are not supported"),
    REFUSED("include", NULL, "log probabilities of the transcript are not supported"),
    REFUSED("known_speaker_names[]", NULL, NO_DIARIZE),
    REFUSED("known_speaker_references[]", NULL, NO_DIARIZE),
    {NULL, 0, NULL, NULL},
};

/* OpenAI's translation form has no language; Simpleton reads one as a hint
 * for the source language. */
static const field_rule openai_translation[] = {
    OPENAI_AUDIO, USED_NOTE("language", "the source language (an extension; detected when absent)"), {NULL, 0, NULL, NULL},
};

#define AUDIO_COMMON USED("model"), USED("language"), USED("prompt"), USED("temperature")
#define ALWAYS_TRANSLATES "this route always translates to English (use the transcribe route for 'transcribe')"

static const field_rule simpleton_transcribe[] = {AUDIO_COMMON, USED("audio"), USED("task"), {NULL, 0, NULL, NULL}};
static const field_rule simpleton_translate[] = {
    AUDIO_COMMON, USED("audio"), REFUSED("task", "[\"translate\"]", ALWAYS_TRANSLATES), {NULL, 0, NULL, NULL},
};
static const field_rule simpleton_upload_transcribe[] = {AUDIO_COMMON, USED("file"), USED("task"), {NULL, 0, NULL, NULL}};
static const field_rule simpleton_upload_translate[] = {
    AUDIO_COMMON, USED("file"), REFUSED("task", "[\"translate\"]", ALWAYS_TRANSLATES), {NULL, 0, NULL, NULL},
};

/* ---- vision ------------------------------------------------------------------------ */

#define VISION_MODEL USED("image"), USED("model"), USED("temperature"), USED("max_tokens")

static const field_rule vision_analyze[] = {VISION_MODEL, USED("prompt"), {NULL, 0, NULL, NULL}};
static const field_rule vision_caption[] = {VISION_MODEL, USED("detail_level"), {NULL, 0, NULL, NULL}};
/* With no model (or "tesseract") Tesseract reads the image; with a vision
 * model's name the model does. Each reads its own fields, and the route
 * refuses the other's (422 naming it). */
static const field_rule vision_ocr[] = {
    USED("image"),
    USED_NOTE("model", "absent or 'tesseract': Tesseract in-process; any other name: that vision model"),
    USED_NOTE("language", "Tesseract only (refused with a vision model, which reads any language)"),
    USED_NOTE("temperature", "vision model only (refused with Tesseract)"),
    USED_NOTE("max_tokens", "vision model only (refused with Tesseract)"),
    {NULL, 0, NULL, NULL},
};
static const field_rule vision_upload[] = {USED("file"), USED("prompt"), USED("model"), {NULL, 0, NULL, NULL}};

/* ---- retrieval (RAG) ---------------------------------------------------------------- */

#define RAG_INGEST USED("collection"), USED("metadata"), USED("chunk_size"), USED("chunk_overlap")
#define RAG_SEARCH USED("query"), USED("collection"), USED("top_k"), USED("score_threshold")

static const field_rule rag_ingest[] = {RAG_INGEST, USED("content"), {NULL, 0, NULL, NULL}};
static const field_rule rag_ingest_file[] = {RAG_INGEST, USED("file"), {NULL, 0, NULL, NULL}};
static const field_rule rag_search[] = {RAG_SEARCH, {NULL, 0, NULL, NULL}};
static const field_rule rag_query[] = {
    RAG_SEARCH, USED("model"), USED("system_prompt"), USED("temperature"), USED("max_tokens"), {NULL, 0, NULL, NULL},
};

/* ---- Ollama model details ------------------------------------------------------------ */

static const field_rule ollama_show[] = {
    USED("model"),
    USED_NOTE("name", "the older name of 'model'"),
    REFUSED("verbose", "[false]", "verbose details (the tokenizer's full arrays) are not reported"),
    {NULL, 0, NULL, NULL},
};

const field_table fields_openai_chat = {"body", FIELDS_UNKNOWN_OPENAI, openai_chat};
const field_table fields_openai_message = {"message", FIELDS_UNKNOWN_OPENAI, openai_message};
const field_table fields_openai_completion = {"body", FIELDS_UNKNOWN_OPENAI, openai_completion};
const field_table fields_openai_embed = {"body", FIELDS_UNKNOWN_OPENAI, openai_embed};
const field_table fields_ollama_generate = {"body", FIELDS_UNKNOWN_IGNORE, ollama_generate};
const field_table fields_ollama_chat = {"body", FIELDS_UNKNOWN_IGNORE, ollama_chat};
const field_table fields_ollama_message = {"message", FIELDS_UNKNOWN_IGNORE, ollama_message};
const field_table fields_ollama_options = {"options", FIELDS_UNKNOWN_IGNORE, ollama_options};
const field_table fields_ollama_embed = {"body", FIELDS_UNKNOWN_IGNORE, ollama_embed};
const field_table fields_ollama_embeddings = {"body", FIELDS_UNKNOWN_IGNORE, ollama_embeddings};
const field_table fields_simpleton_generate = {"body", FIELDS_UNKNOWN_SIMPLETON, simpleton_generate};
const field_table fields_simpleton_chat = {"body", FIELDS_UNKNOWN_SIMPLETON, simpleton_chat};
const field_table fields_simpleton_message = {"message", FIELDS_UNKNOWN_SIMPLETON, simpleton_message};
const field_table fields_simpleton_embed = {"body", FIELDS_UNKNOWN_SIMPLETON, simpleton_embed};
const field_table fields_openai_transcription = {"form", FIELDS_UNKNOWN_OPENAI, openai_transcription};
const field_table fields_openai_translation = {"form", FIELDS_UNKNOWN_OPENAI, openai_translation};
const field_table fields_audio_transcribe = {"body", FIELDS_UNKNOWN_SIMPLETON, simpleton_transcribe};
const field_table fields_audio_translate = {"body", FIELDS_UNKNOWN_SIMPLETON, simpleton_translate};
const field_table fields_audio_upload_transcribe = {"form", FIELDS_UNKNOWN_SIMPLETON, simpleton_upload_transcribe};
const field_table fields_audio_upload_translate = {"form", FIELDS_UNKNOWN_SIMPLETON, simpleton_upload_translate};
const field_table fields_vision_analyze = {"body", FIELDS_UNKNOWN_SIMPLETON, vision_analyze};
const field_table fields_vision_caption = {"body", FIELDS_UNKNOWN_SIMPLETON, vision_caption};
const field_table fields_vision_ocr = {"body", FIELDS_UNKNOWN_SIMPLETON, vision_ocr};
const field_table fields_vision_upload = {"form", FIELDS_UNKNOWN_SIMPLETON, vision_upload};
const field_table fields_rag_ingest = {"body", FIELDS_UNKNOWN_SIMPLETON, rag_ingest};
const field_table fields_rag_ingest_file = {"form", FIELDS_UNKNOWN_SIMPLETON, rag_ingest_file};
const field_table fields_rag_search = {"body", FIELDS_UNKNOWN_SIMPLETON, rag_search};
const field_table fields_rag_query = {"body", FIELDS_UNKNOWN_SIMPLETON, rag_query};
const field_table fields_ollama_show = {"body", FIELDS_UNKNOWN_IGNORE, ollama_show};

/* ---- checking ------------------------------------------------------------------- */

static const field_rule *rule_of(const field_table *t, const char *name) {
    for (const field_rule *r = t->rules; r->name; r++)
        if (!strcmp(r->name, name)) return r;
    return NULL;
}

/* Is x one of the values of the JSON array text allow? Numbers compare by
 * value (1 and 1.0 are the same). */
static int allowed(const char *allow, json_t *x) {
    if (!allow) return 0;
    json_t *a = json_loads(allow, JSON_DECODE_ANY, NULL);
    int ok = 0;
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e) {
        if (json_is_number(e) && json_is_number(x) ? json_number_value(e) == json_number_value(x) : json_equal(e, x)) {
            ok = 1;
            break;
        }
    }
    json_decref(a);
    return ok;
}

/* One field named f (prefix included) of key's rule in t, holding x. */
static void check_one(valid *v, const field_table *t, const char *f, const char *key, json_t *x) {
    const field_rule *r = rule_of(t, key);
    if (!r) {
        if (t->unknown == FIELDS_UNKNOWN_OPENAI)
            valid_add(v, f, "extra_forbidden", "Unrecognized request argument supplied: %s", f);
        else if (t->unknown == FIELDS_UNKNOWN_SIMPLETON)
            valid_add(v, f, "extra_forbidden", "Extra inputs are not permitted");
        return;
    }
    if (r->use != FIELD_REFUSED || json_is_null(x) || allowed(r->allow, x)) return;
    if (r->allow)
        valid_add(v, f, "unsupported", "%s (accepted only: %s)", r->why, r->allow);
    else
        valid_add(v, f, "unsupported", "%s", r->why);
}

void fields_check(valid *v, json_t *obj, const field_table *t, const char *prefix) {
    if (!json_is_object(obj)) return;
    const char *key;
    json_t *x;
    json_object_foreach(obj, key, x) {
        char f[160];
        snprintf(f, sizeof f, "%s%.100s", prefix, key);
        check_one(v, t, f, key, x);
    }
}

void fields_check_list(valid *v, json_t *obj, const char *list_field, const field_table *t) {
    json_t *list = json_object_get(obj, list_field);
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s.%zu.", list_field, i);
        fields_check(v, m, t, prefix);
    }
}

void fields_check_form(valid *v, const multipart *m, const field_table *t) {
    for (int i = 0; i < m->n; i++) {
        const multipart_part *p = &m->parts[i];
        /* A form value is text: an empty one is "not given" (null), as the
         * routes read it; a file stands for itself. */
        json_t *x = p->filename ? json_true() : p->len ? json_stringn(p->data, p->len) : json_null();
        char f[104];
        snprintf(f, sizeof f, "%.100s", p->name);
        check_one(v, t, f, p->name, x ? x : json_null());
        json_decref(x);
    }
}

/* ---- documentation ------------------------------------------------------------- */

static const struct {
    const char *tmpl;
    const field_table *tables[3];
} routes[] = {
    {"/v1/chat/completions", {&fields_openai_chat, &fields_openai_message}},
    {"/v1/completions", {&fields_openai_completion}},
    {"/v1/embeddings", {&fields_openai_embed}},
    {"/v1/audio/transcriptions", {&fields_openai_transcription}},
    {"/v1/audio/translations", {&fields_openai_translation}},
    {"/api/generate", {&fields_ollama_generate, &fields_ollama_options}},
    {"/api/chat", {&fields_ollama_chat, &fields_ollama_message, &fields_ollama_options}},
    {"/api/embed", {&fields_ollama_embed}},
    {"/api/embeddings", {&fields_ollama_embeddings}},
    {"/api/show", {&fields_ollama_show}},
    {"/inference/generate", {&fields_simpleton_generate}},
    {"/inference/chat", {&fields_simpleton_chat, &fields_simpleton_message}},
    {"/embeddings/", {&fields_simpleton_embed}},
    {"/embeddings", {&fields_simpleton_embed}},
    {"/audio/transcribe", {&fields_audio_transcribe}},
    {"/audio/translate", {&fields_audio_translate}},
    {"/audio/upload/transcribe", {&fields_audio_upload_transcribe}},
    {"/audio/upload/translate", {&fields_audio_upload_translate}},
    {"/vision/analyze", {&fields_vision_analyze}},
    {"/vision/caption", {&fields_vision_caption}},
    {"/vision/ocr", {&fields_vision_ocr}},
    {"/vision/upload", {&fields_vision_upload}},
    {"/rag/ingest", {&fields_rag_ingest}},
    {"/rag/ingest/file", {&fields_rag_ingest_file}},
    {"/rag/search", {&fields_rag_search}},
    {"/rag/query", {&fields_rag_query}},
};

static const char *const treatment[] = {[FIELD_USED] = "honoured", [FIELD_NO_EFFECT] = "no-effect",
                                        [FIELD_REFUSED] = "refused"};

json_t *fields_describe(const char *tmpl) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(routes[i].tmpl, tmpl)) continue;
        json_t *fields = json_array(), *unknown = json_object();
        for (int k = 0; k < 3 && routes[i].tables[k]; k++) {
            const field_table *t = routes[i].tables[k];
            for (const field_rule *r = t->rules; r->name; r++) {
                json_t *e = json_pack("{s:s,s:s,s:s}", "name", r->name, "in", t->what, "treatment", treatment[r->use]);
                if (r->allow) json_object_set_new(e, "accepted_values", json_loads(r->allow, JSON_DECODE_ANY, NULL));
                const char *note = r->why                     ? r->why
                                   : r->use == FIELD_NO_EFFECT ? "accepted; ignoring it changes nothing in the answer"
                                                               : NULL;
                if (note) json_object_set_new(e, "note", json_string(note));
                json_array_append_new(fields, e);
            }
            json_object_set_new(unknown, t->what,
                                json_string(t->unknown == FIELDS_UNKNOWN_IGNORE ? "ignored, as the real API does"
                                                                                : "refused"));
        }
        return json_pack("{s:o,s:o}", "fields", fields, "unknown_fields", unknown);
    }
    return NULL;
}
