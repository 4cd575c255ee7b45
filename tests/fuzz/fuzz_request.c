/* fuzz_request.c - fuzz target over what Simpleton does with request bytes
 * before a handler runs: route matching of the request line, JSON body
 * parsing with its depth cap and line/column errors, field validation, strict
 * base64 and UTF-8 checks.
 *
 * Input layout: "METHOD PATH\n" then the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/alloc.h"
#include "core/util.h"
#include "core/valid.h"
#include "http/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void validate_fields(json_t *obj) {
    valid v;
    valid_init(&v);
    const char *s;
    long long i;
    double d;
    bool b;
    static const char *const levels[] = {"brief", "normal", "detailed", NULL};
    valid_str(&v, obj, "prompt", true, true, &s);
    valid_str(&v, obj, "model", false, false, &s);
    valid_num(&v, obj, "temperature", false, 0, 2, &d);
    valid_num(&v, obj, "top_p", false, 0, 1, &d);
    valid_int(&v, obj, "max_tokens", false, 1, 1 << 20, &i);
    valid_int(&v, obj, "top_k", false, 1, 1 << 20, &i);
    valid_bool(&v, obj, "stream", false, &b);
    valid_enum(&v, obj, "detail_level", false, levels, &s);
    /* The detail list must always serialise. */
    json_t *detail = valid_take(&v);
    char *txt = json_dumps(detail, JSON_COMPACT);
    if (!txt) abort();
    smp_free(txt);
    json_decref(detail);
    valid_free(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        json_set_alloc_funcs(smp_malloc, smp_free);
        api_register_all();
        ready = 1;
    }
    const char *p = (const char *)data;
    const char *nl = memchr(p, '\n', size);
    size_t line = nl ? (size_t)(nl - p) : size;
    char method[16] = "GET", path[1024] = "/";
    const char *sp = memchr(p, ' ', line);
    if (sp && (size_t)(sp - p) < sizeof method && line - (size_t)(sp - p) - 1 < sizeof path) {
        memcpy(method, p, (size_t)(sp - p));
        method[sp - p] = '\0';
        memcpy(path, sp + 1, line - (size_t)(sp - p) - 1);
        path[line - (size_t)(sp - p) - 1] = '\0';
    }
    route_match m;
    router_match(method, path, &m);

    const char *body = nl ? nl + 1 : p + size;
    size_t blen = (size_t)(p + size - body);
    valid v;
    valid_init(&v);
    json_t *obj = valid_parse_object(&v, body, blen);
    if (obj) {
        validate_fields(obj);
        json_decref(obj);
    } else if (valid_ok(&v)) {
        abort(); /* a refused body must say why */
    }
    valid_free(&v);

    valid_utf8(body, blen);
    unsigned char *out = smp_malloc(util_b64_decoded_max(blen) + 1);
    char err[128];
    if (out) {
        long n = util_b64_decode(body, blen, out, err, sizeof err);
        if (n > (long)util_b64_decoded_max(blen)) abort();
        smp_free(out);
    }
    return 0;
}
