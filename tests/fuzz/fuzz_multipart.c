/* fuzz_multipart.c - fuzz target for the multipart/form-data parser.
 *
 * Input layout: the Content-Type header value, "\n", then the body. Every
 * part found is read end to end (so ASan sees any out-of-bounds pointer) and
 * must lie inside the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "http/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data;
    const char *nl = memchr(p, '\n', size);
    size_t hl = nl ? (size_t)(nl - p) : size;
    char *ctype = smp_strndup(p, hl);
    if (!ctype) return 0;
    const char *body = nl ? nl + 1 : p + size;
    size_t blen = (size_t)(p + size - body);
    multipart m;
    char err[256];
    if (multipart_parse(ctype, body, blen, &m, err, sizeof err) == 0) {
        unsigned sum = 0;
        for (int i = 0; i < m.n; i++) {
            const multipart_part *pt = &m.parts[i];
            if (pt->data < body || pt->data + pt->len > body + blen) abort();
            for (size_t k = 0; k < pt->len; k++) sum += (unsigned char)pt->data[k];
            sum += (unsigned)strlen(pt->name);
            if (pt->filename) sum += (unsigned)strlen(pt->filename);
            if (pt->content_type) sum += (unsigned)strlen(pt->content_type);
        }
        if (m.n && multipart_find(&m, m.parts[0].name) != &m.parts[0]) abort();
        (void)sum;
        multipart_free(&m);
    } else if (m.n != 0 || m.parts != NULL) {
        abort();
    }
    smp_free(ctype);
    return 0;
}
