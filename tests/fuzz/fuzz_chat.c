/* fuzz_chat.c - fuzz target over chat message parsing in every dialect:
 * Simpleton's and Ollama's messages (role, content, base64 images probed
 * like vision images), OpenAI's (content as a string or a list of text and
 * image_url parts), tools and tool calls (OpenAI and Ollama), stop lists
 * and context ids, then the prompt each chat template family would render
 * from what was accepted, with its tools, the call grammar of each tool
 * style, and the call scanner over every message's text. Every byte a
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
#include "engine/json_schema.h"
#include "engine/tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Tools as the engine takes them, then every family's prompt with them,
 * each style's grammar, and the scanner over each message's text. */
static void tools_all(const backend_gen_req *q) {
    int n = q->n_messages, nt = q->n_tools < 4 ? q->n_tools : 4;
    tool_msg *msgs = smp_calloc(n ? (size_t)n : 1, sizeof *msgs);
    tool_def *tools = smp_calloc(nt ? (size_t)nt : 1, sizeof *tools);
    int ncalls = 0;
    for (int i = 0; i < n; i++) ncalls += q->messages[i].n_tool_calls;
    tool_call *calls = smp_calloc(ncalls ? (size_t)ncalls : 1, sizeof *calls);
    if (!msgs || !tools || !calls) abort();
    tool_call *c = calls;
    for (int i = 0; i < n; i++) {
        const backend_msg *m = &q->messages[i];
        msgs[i] = (tool_msg){m->role, m->content, c, m->n_tool_calls, m->tool_call_id, m->tool_name};
        for (int k = 0; k < m->n_tool_calls; k++) {
            if (!m->tool_calls[k].id || !m->tool_calls[k].name || !m->tool_calls[k].arguments) abort();
            *c++ = (tool_call){m->tool_calls[k].id, m->tool_calls[k].name, m->tool_calls[k].arguments};
        }
        tools_scanned sc[TOOLS_MAX_CALLS];
        const char *t = m->content ? m->content : "";
        for (int st = 0; st < 3; st++) {
            int k = tools_scan((tool_style)st, t, strlen(t), sc, TOOLS_MAX_CALLS);
            for (int x = 0; x < k; x++) /* what it reports lies inside the text */
                if ((sc[x].has_name && sc[x].name_off + sc[x].name_len > strlen(t)) ||
                    (sc[x].args_started && sc[x].args_off + sc[x].args_len > strlen(t)))
                    abort();
        }
    }
    for (int i = 0; i < nt; i++) tools[i] = (tool_def){q->tools[i].name, q->tools[i].description, q->tools[i].parameters};
    for (int f = 0; f < CHAT_FAMILY__COUNT; f++) {
        buf out;
        buf_init(&out, 1 << 20);
        char err[256];
        tools_render((chat_family)f, tools, nt, msgs, n, f & 1, NULL, NULL, &out, err, sizeof err);
        buf_free(&out);
    }
    for (int st = 0; st < 3 && nt > 0; st++) {
        grammar *g = NULL;
        char err[256];
        tools_grammar((tool_style)st, tools, nt, st == 1 ? tools[0].name : NULL, st != 2, &g, err, sizeof err);
        grammar_free(g);
    }
    smp_free(msgs);
    smp_free(tools);
    smp_free(calls);
}

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
        if (dialect) textgen_parse_tools(&v, j, b, dialect == 2);
        int rc = dialect == 2 ? api_openai_parse_messages(&v, j, b) : api_parse_messages(&v, j, b);
        if (rc > 0 && dialect) textgen_parse_messages_tools(&v, j, b, dialect == 2);
        textgen_parse_stop(&v, b, "stop", q);
        textgen_parse_ids(&v, j, b, "context");
        if (rc > 0 && valid_ok(&v)) {
            render_all(q);
            tools_all(q);
        }
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
    json_schema_cache_clear(); /* compiled parameter schemas are kept on purpose */
    if (smp_alloc_live_bytes() != live0) abort(); /* the request's memory went with it */
    return 0;
}
