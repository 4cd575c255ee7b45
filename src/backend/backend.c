/* backend.c - what every backend shares. */
#include "backend/backend.h"

#include "core/alloc.h"

void backend_gen_result_free(backend_gen_result *r) {
    if (!r) return;
    smp_free(r->text);
    smp_free(r->context);
    r->text = NULL;
    r->context = NULL;
}
