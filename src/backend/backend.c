/* backend.c - what every backend shares. */
#include "backend/backend.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/util.h"

void backend_gen_result_free(backend_gen_result *r) {
    if (!r) return;
    smp_free(r->text);
    smp_free(r->context);
    for (int i = 0; i < r->n_tool_calls; i++) {
        smp_free((char *)r->tool_calls[i].id);
        smp_free((char *)r->tool_calls[i].name);
        smp_free((char *)r->tool_calls[i].arguments);
    }
    smp_free(r->tool_calls);
    json_decref(r->logprobs);
    r->text = NULL;
    r->context = NULL;
    r->tool_calls = NULL;
    r->n_tool_calls = 0;
    r->logprobs = NULL;
}

int backend_result_add_call(backend_gen_result *r, const char *id, const char *name, const char *arguments) {
    backend_tool_call *a = smp_realloc(r->tool_calls, (size_t)(r->n_tool_calls + 1) * sizeof *a);
    if (!a) return -SMP_E_NOMEM;
    r->tool_calls = a;
    char made[40];
    if (!id || !*id) backend_call_id(made, sizeof made);
    backend_tool_call *c = &a[r->n_tool_calls];
    c->id = smp_strdup(id && *id ? id : made);
    c->name = smp_strdup(name ? name : "");
    c->arguments = smp_strdup(arguments && *arguments ? arguments : "{}");
    if (!c->id || !c->name || !c->arguments) {
        smp_free((char *)c->id);
        smp_free((char *)c->name);
        smp_free((char *)c->arguments);
        return -SMP_E_NOMEM;
    }
    r->n_tool_calls++;
    return 0;
}

void backend_call_id(char *out, size_t len) {
    char hex[33];
    util_unique_hex(12, hex);
    snprintf(out, len, "call_%s", hex);
}
