/* openai.c - the OpenAI dialect's text routes: POST /v1/chat/completions and
 * POST /v1/completions (streamed as SSE ending with "data: [DONE]"). */
#include <string.h>

#include "api/api.h"
#include "api/fields.h"
#include "api/textgen.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/valid.h"
#include "http/router.h"
#include "http/server.h"
#include "media/image.h"

static void parse_common(valid *v, json_t *b, textjob *j, const char **model, bool *stream) {
    backend_gen_req *q = textjob_req(j);
    double d;
    long long n;
    q->temperature = 1.0; /* OpenAI's default */
    valid_str(v, b, "model", false, false, model);
    valid_bool(v, b, "stream", false, stream);
    if (valid_num(v, b, "temperature", false, 0, 2, &d) == 1) q->temperature = d;
    if (valid_num(v, b, "top_p", false, 0, 1, &d) == 1) q->top_p = d;
    if (valid_num(v, b, "presence_penalty", false, -2, 2, &d) == 1) q->presence_penalty = d;
    if (valid_num(v, b, "frequency_penalty", false, -2, 2, &d) == 1) q->frequency_penalty = d;
    if (valid_int(v, b, "max_tokens", false, 1, 1 << 20, &n) == 1) q->max_tokens = (int)n;
    if (valid_int(v, b, "max_completion_tokens", false, 1, 1 << 20, &n) == 1) q->max_tokens = (int)n;
    if (valid_int(v, b, "seed", false, INT64_MIN, INT64_MAX, &n) == 1) q->has_seed = true, q->seed = (uint64_t)n;
    /* Extensions vLLM and llama.cpp's server read too. */
    if (valid_int(v, b, "top_k", false, 0, 1000000, &n) == 1) q->top_k = (int)n;
    if (valid_num(v, b, "min_p", false, 0, 1, &d) == 1) q->min_p = d;
    if (valid_num(v, b, "repeat_penalty", false, 0, 10, &d) == 1) q->repeat_penalty = d;
    textgen_parse_stop(v, b, "stop", q);
    textgen_parse_response_format(v, b, q);
    textgen_parse_grammar(v, b, q);
    textgen_parse_logit_bias(v, j, b);
    json_t *so = json_object_get(b, "stream_options");
    if (json_is_object(so) && json_is_true(json_object_get(so, "include_usage"))) textjob_set_include_usage(j, true);
}

/* One image_url part: {url: "data:image/...;base64,..."} (or the URL as a
 * plain string), checked like an image of the vision routes: strict base64,
 * then the header (format, dimensions, MAX_IMAGE_MP; no pixel decoding).
 * field names the part. Returns 0 with *out (smp_free) and *len, or -1 with
 * the problem recorded. */
static int parse_image_part(valid *v, json_t *iu, const char *field, unsigned char **out, size_t *len) {
    *out = NULL;
    json_t *url = json_is_object(iu) ? json_object_get(iu, "url") : iu;
    if (!json_is_string(url)) {
        if (json_is_object(iu))
            valid_add(v, field, url ? "string_type" : "missing", "image_url.url should be a string (a data: URL)");
        else
            valid_add(v, field, iu ? "model_type" : "missing",
                      "image_url should be an object {\"url\": \"data:image/...;base64,...\"} or such a string");
        return -1;
    }
    const char *s = json_string_value(url);
    size_t sl = json_string_length(url);
    if (sl < 5 || strncmp(s, "data:", 5)) {
        valid_add(v, field, "url", "Only data: URLs with base64 images are accepted (no server-side fetching)");
        return -1;
    }
    const config *c = config_get();
    uint64_t max_pixels = (uint64_t)(c ? c->max_image_mp : 40) * 1000000u;
    char err[512];
    if (image_from_base64_probed(s, sl, max_pixels, out, len, NULL, err, sizeof err) != 0) {
        valid_add(v, field, "invalid_image", "%s", err);
        return -1;
    }
    return 0;
}

/* content: a string, or a list of parts {type:"text",text} and
 * {type:"image_url",image_url:{url:"data:image/...;base64,..."}}. */
static int parse_content(valid *v, textjob *j, json_t *content, backend_msg *m, int idx) {
    char field[48];
    snprintf(field, sizeof field, "messages.%d.content", idx);
    if (json_is_string(content) || json_is_null(content) || !content) {
        m->content = content && json_is_string(content) ? json_string_value(content) : "";
        return 1;
    }
    if (!json_is_array(content)) {
        valid_add(v, field, "string_type", "Input should be a string or a list of content parts");
        return -1;
    }
    buf text;
    buf_init(&text, 0);
    size_t n = json_array_size(content), i;
    unsigned char **imgs = textjob_alloc(j, n, sizeof *imgs);
    size_t *lens = textjob_alloc(j, n, sizeof *lens);
    if (!imgs || !lens) {
        valid_add(v, field, "memory", "Out of memory reading the content parts");
        buf_free(&text);
        return -1;
    }
    int nimg = 0;
    json_t *p;
    json_array_foreach(content, i, p) {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (type && !strcmp(type, "text") && json_is_string(json_object_get(p, "text"))) {
            if (text.len) buf_putc(&text, '\n');
            buf_puts(&text, json_string_value(json_object_get(p, "text")));
        } else if (type && !strcmp(type, "image_url")) {
            char pf[96];
            snprintf(pf, sizeof pf, "%s.%zu.image_url", field, i);
            unsigned char *d;
            if (parse_image_part(v, json_object_get(p, "image_url"), pf, &d, &lens[nimg]) < 0) {
                buf_free(&text);
                return -1;
            }
            if (!(imgs[nimg++] = textjob_adopt(j, d))) {
                valid_add(v, pf, "memory", "Out of memory reading the image");
                buf_free(&text);
                return -1;
            }
        } else {
            valid_add(v, field, "content_part", "Unknown content part: expected type 'text' or 'image_url'");
            buf_free(&text);
            return -1;
        }
    }
    char *s = textjob_adopt(j, buf_detach(&text, NULL));
    m->content = s ? s : "";
    m->images = (const unsigned char *const *)imgs;
    m->image_lens = lens;
    m->n_images = nimg;
    return 1;
}

static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", NULL};

static void chat_completions(http_req *r) {
    json_t *b;
    textjob *j = textjob_from_request(r, TG_OPENAI_CHAT, &b);
    if (!j) return;
    valid v;
    valid_init(&v);
    const char *model = NULL;
    bool stream = false;
    fields_check(&v, b, &fields_openai_chat, "");
    fields_check_list(&v, b, "messages", &fields_openai_message);
    parse_common(&v, b, j, &model, &stream);
    textgen_parse_logprobs(&v, b, textjob_req(j));
    textgen_parse_tools(&v, j, b, true);
    if (api_openai_parse_messages(&v, j, b) > 0) textgen_parse_messages_tools(&v, j, b, true);
    textjob_finish(j, &v, stream, model);
}

int api_openai_parse_messages(valid *v, textjob *j, json_t *b) {
    json_t *msgs = json_object_get(b, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        valid_add(v, "messages", msgs ? "list_type" : "missing", "messages must be a non-empty list");
        return -1;
    }
    if (json_array_size(msgs) > API_MAX_MESSAGES) {
        valid_add(v, "messages", "too_long", "List should have at most %d items", API_MAX_MESSAGES);
        return -1;
    }
    size_t n = json_array_size(msgs), i;
    backend_msg *out = textjob_messages(j, (int)n);
    if (!out) {
        valid_add(v, "messages", "memory", "Out of memory reading the messages");
        return -1;
    }
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        int k = 0;
        while (role && roles[k] && strcmp(roles[k], role)) k++;
        if (!role || !roles[k]) {
            char f[40];
            snprintf(f, sizeof f, "messages.%zu.role", i);
            valid_add(v, f, "enum", "Unknown role '%.40s'", role ? role : "(none)");
            return -1;
        }
        out[i].role = !strcmp(role, "developer") ? "system" : role;
        if (parse_content(v, j, json_object_get(m, "content"), &out[i], (int)i) < 0) return -1;
    }
    return 1;
}

static void completions(http_req *r) {
    json_t *b;
    textjob *j = textjob_from_request(r, TG_OPENAI_COMPLETION, &b);
    if (!j) return;
    valid v;
    valid_init(&v);
    const char *model = NULL;
    bool stream = false;
    backend_gen_req *q = textjob_req(j);
    q->max_tokens = 16; /* OpenAI's default for completions */
    fields_check(&v, b, &fields_openai_completion, "");
    parse_common(&v, b, j, &model, &stream);
    textgen_parse_completion_logprobs(&v, b, q);
    q->raw = true;
    json_t *p = json_object_get(b, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1) p = json_array_get(p, 0);
    if (!json_is_string(p))
        valid_add(&v, "prompt", p ? "string_type" : "missing",
                  p ? "prompt must be a string (or a list holding one string)" : "Field required");
    else if (!json_string_length(p))
        valid_add(&v, "prompt", "string_too_short", "prompt must not be empty");
    else
        q->prompt = json_string_value(p);
    textjob_finish(j, &v, stream, model);
}

void api_openai_register(void) {
    router_add("POST", "/v1/chat/completions", chat_completions, 0, "OpenAI: chat completions (stream: SSE)");
    router_add("POST", "/v1/completions", completions, 0, "OpenAI: text completions (stream: SSE)");
}
