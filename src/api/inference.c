/* inference.c - Simpleton's text routes: POST /inference/generate and
 * POST /inference/chat. Validation follows API.md; the work is textgen's. */
#include <string.h>

#include "api/api.h"
#include "api/fields.h"
#include "api/textgen.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/valid.h"
#include "http/router.h"
#include "http/server.h"
#include "media/image.h"

/* Sampling fields both routes share. */
static void parse_sampling(valid *v, json_t *b, backend_gen_req *q) {
    double d;
    long long n;
    if (valid_num(v, b, "temperature", false, 0, 2, &d) == 1) q->temperature = d;
    if (valid_num(v, b, "top_p", false, 0, 1, &d) == 1) q->top_p = d;
    if (valid_int(v, b, "top_k", false, 1, 1000000, &n) == 1) q->top_k = (int)n;
    if (valid_num(v, b, "min_p", false, 0, 1, &d) == 1) q->min_p = d;
    if (valid_num(v, b, "repeat_penalty", false, 0, 10, &d) == 1) q->repeat_penalty = d;
    if (valid_num(v, b, "presence_penalty", false, -2, 2, &d) == 1) q->presence_penalty = d;
    if (valid_num(v, b, "frequency_penalty", false, -2, 2, &d) == 1) q->frequency_penalty = d;
    if (valid_int(v, b, "max_tokens", false, 1, 1 << 20, &n) == 1) q->max_tokens = (int)n;
    if (valid_int(v, b, "seed", false, 0, INT64_MAX, &n) == 1) q->has_seed = true, q->seed = (uint64_t)n;
    textgen_parse_stop(v, b, "stop", q);
}

static void generate(http_req *r) {
    json_t *b;
    textjob *j = textjob_from_request(r, TG_SIMPLETON_GENERATE, &b);
    if (!j) return;
    valid v;
    valid_init(&v);
    backend_gen_req *q = textjob_req(j);
    const char *model = NULL;
    bool stream = false;
    fields_check(&v, b, &fields_simpleton_generate, "");
    valid_str(&v, b, "prompt", true, true, &q->prompt);
    valid_str(&v, b, "model", false, false, &model);
    valid_str(&v, b, "system", false, false, &q->system);
    valid_bool(&v, b, "stream", false, &stream);
    valid_bool(&v, b, "raw", false, &q->raw);
    parse_sampling(&v, b, q);
    textgen_parse_ids(&v, j, b, "context");
    textjob_finish(j, &v, stream, model);
}

/* Decode a message's "images" (base64 strings, an optional data:image/...
 * prefix) into j-owned buffers, each checked like an image of the vision routes: strict
 * base64, then its header (format and dimensions, MAX_IMAGE_MP) without
 * decoding the pixels. The field named in an error is messages.<i>.images.<k>. */
static int parse_images(valid *v, textjob *j, json_t *m, backend_msg *out, int index) {
    json_t *imgs = json_object_get(m, "images");
    if (!imgs || json_is_null(imgs)) return 0;
    char field[64];
    snprintf(field, sizeof field, "messages.%d.images", index);
    if (!json_is_array(imgs) || json_array_size(imgs) > 8) {
        valid_add(v, field, "list_type", "Input should be a list of at most 8 base64 images");
        return -1;
    }
    size_t n = json_array_size(imgs);
    unsigned char **ptrs = textjob_alloc(j, n, sizeof *ptrs);
    size_t *lens = textjob_alloc(j, n, sizeof *lens);
    if (!ptrs || !lens) {
        valid_add(v, field, "memory", "Out of memory reading the images");
        return -1;
    }
    const config *c = config_get();
    uint64_t max_pixels = (uint64_t)(c ? c->max_image_mp : 40) * 1000000u;
    for (size_t i = 0; i < n; i++) {
        json_t *img = json_array_get(imgs, i);
        snprintf(field, sizeof field, "messages.%d.images.%zu", index, i);
        if (!json_is_string(img)) {
            valid_add(v, field, "string_type", "Each image should be a base64 string");
            return -1;
        }
        char err[512];
        unsigned char *d = NULL;
        int rc = image_from_base64_probed(json_string_value(img), json_string_length(img), max_pixels, &d, &lens[i],
                                          NULL, err, sizeof err);
        if (rc) {
            valid_add(v, field, "invalid_image", "%s", err);
            return -1;
        }
        ptrs[i] = textjob_adopt(j, d);
        if (!ptrs[i]) {
            valid_add(v, field, "memory", "Out of memory reading the image");
            return -1;
        }
    }
    out->images = (const unsigned char *const *)ptrs;
    out->image_lens = lens;
    out->n_images = (int)n;
    return 1;
}

static const char *const roles[] = {"system", "user", "assistant", "tool", NULL};

/* messages: [{role, content, images?}]; shared with the Ollama dialect. */
int api_parse_messages(valid *v, textjob *j, json_t *b) {
    json_t *msgs = json_object_get(b, "messages");
    if (!msgs || json_is_null(msgs)) {
        valid_add(v, "messages", "missing", "Field required");
        return -1;
    }
    if (!json_is_array(msgs)) {
        valid_add(v, "messages", "list_type", "Input should be a valid list");
        return -1;
    }
    size_t n = json_array_size(msgs);
    if (n == 0) {
        valid_add(v, "messages", "too_short", "List should have at least 1 item");
        return -1;
    }
    if (n > API_MAX_MESSAGES) {
        valid_add(v, "messages", "too_long", "List should have at most %d items", API_MAX_MESSAGES);
        return -1;
    }
    backend_msg *out = textjob_messages(j, (int)n);
    if (!out) return -1;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char field[48];
        snprintf(field, sizeof field, "messages.%zu", i);
        if (!json_is_object(m)) {
            valid_add(v, field, "model_type", "Each message should be an object with role and content");
            return -1;
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        char rf[64], cf[64];
        snprintf(rf, sizeof rf, "%s.role", field);
        snprintf(cf, sizeof cf, "%s.content", field);
        int ok = 1;
        if (!role) {
            valid_add(v, rf, json_object_get(m, "role") ? "string_type" : "missing",
                      json_object_get(m, "role") ? "Input should be a valid string" : "Field required");
            ok = 0;
        } else {
            int k = 0;
            while (roles[k] && strcmp(roles[k], role)) k++;
            if (!roles[k]) {
                valid_add(v, rf, "enum", "Unknown role '%.40s': expected 'system', 'user', 'assistant' or 'tool'", role);
                ok = 0;
            }
        }
        if (!content || (!json_is_string(content) && !json_is_null(content))) {
            valid_add(v, cf, content ? "string_type" : "missing",
                      content ? "Input should be a valid string" : "Field required");
            ok = 0;
        }
        if (!ok) return -1;
        out[i].role = role;
        out[i].content = json_is_string(content) ? json_string_value(content) : "";
        if (parse_images(v, j, m, &out[i], (int)i) < 0) return -1;
    }
    return 1;
}

static void chat(http_req *r) {
    json_t *b;
    textjob *j = textjob_from_request(r, TG_SIMPLETON_CHAT, &b);
    if (!j) return;
    valid v;
    valid_init(&v);
    backend_gen_req *q = textjob_req(j);
    const char *model = NULL;
    bool stream = false;
    fields_check(&v, b, &fields_simpleton_chat, "");
    fields_check_list(&v, b, "messages", &fields_simpleton_message);
    api_parse_messages(&v, j, b);
    valid_str(&v, b, "model", false, false, &model);
    valid_bool(&v, b, "stream", false, &stream);
    parse_sampling(&v, b, q);
    textjob_finish(j, &v, stream, model);
}

void api_inference_register(void) {
    router_add("POST", "/inference/generate", generate, 0, "Generate text from a prompt (stream: SSE)");
    router_add("POST", "/inference/chat", chat, 0, "Chat completion from messages (stream: SSE)");
}
