/* fuzz_chat.c - fuzz target over chat message parsing in every dialect:
 * Simpleton's and Ollama's messages (role, content, base64 images probed
 * like vision images), OpenAI's (content as a string or a list of text and
 * image_url parts), stop lists and context ids, then the prompt each chat
 * template family would render from what was accepted. Every byte a
 * request held must be freed with its job: a leak aborts.
 *
 * Input layout: one selector byte (dialect), then the JSON body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/textgen.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/valid.h"
#include "engine/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void render_all(const backend_gen_req *q) {
    int n = q->n_messages;
    chat_msg *msgs = smp_calloc(n ? (size_t)n : 1, sizeof *msgs);
    if (!msgs) return;
    for (int i = 0; i < n; i++) {
        msgs[i].role = q->messages[i].role;
        msgs[i].content = q->messages[i].content;
        /* What parsing accepted must be whole: each image has its bytes. */
        for (int k = 0; k < q->messages[i].n_images; k++)
            if (!q->messages[i].images[k] || !q->messages[i].image_lens[k]) abort();
    }
    for (int f = 0; f < CHAT_FAMILY__COUNT; f++) {
        buf out;
        buf_init(&out, 1 << 20);
        char err[256];
        chat_render((chat_family)f, msgs, n, true, NULL, NULL, &out, err, sizeof err);
        buf_free(&out);
    }
    smp_free(msgs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        json_set_alloc_funcs(smp_malloc, smp_free);
        ready = 1;
    }
    if (size < 1) return 0;
    size_t live0 = smp_alloc_live_bytes();
    int dialect = data[0] % 3;
    valid v;
    valid_init(&v);
    json_t *b = valid_parse_object(&v, (const char *)data + 1, size - 1);
    if (b) {
        static const textjob_kind kinds[] = {TG_SIMPLETON_CHAT, TG_OLLAMA_CHAT, TG_OPENAI_CHAT};
        textjob *j = textjob_detached(kinds[dialect], b);
        if (!j) abort();
        backend_gen_req *q = textjob_req(j);
        int rc = dialect == 2 ? api_openai_parse_messages(&v, j, b) : api_parse_messages(&v, j, b);
        textgen_parse_stop(&v, b, "stop", q);
        textgen_parse_ids(&v, j, b, "context");
        if (rc > 0 && valid_ok(&v)) render_all(q);
        textjob_free(j);
    }
    /* The error list must always serialise. */
    json_t *detail = valid_take(&v);
    buf txt;
    buf_init(&txt, 0);
    if (valid_dump(detail, JSON_COMPACT | JSON_ENSURE_ASCII, &txt) != 0) abort();
    buf_free(&txt);
    json_decref(detail);
    valid_free(&v);
    if (smp_alloc_live_bytes() != live0) abort(); /* the request's memory went with it */
    return 0;
}
