/* fuzz_doctext.c - fuzz target for what retrieval does with uploaded text:
 * the HTML stripper (media/doctext.h) and the chunker (rag/chunk.h).
 *
 * Input layout: byte 0 picks the chunk size (1..256), byte 1 the overlap
 * (below the size), the rest is the document. The document is chunked as is
 * and after HTML stripping; every chunk must be a non-empty slice of its
 * input on character boundaries, at most `size` characters long. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "media/doctext.h"
#include "rag/chunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_chunks(const char *text, size_t len, long csize, long overlap) {
    chunk_span *c;
    size_t n;
    if (chunk_text(text, len, csize, overlap, 100000, &c, &n) != 0) return;
    for (size_t i = 0; i < n; i++) {
        if (c[i].byte_start >= c[i].byte_end || c[i].byte_end > len) abort();
        if (c[i].char_end - c[i].char_start > (size_t)csize || c[i].char_end <= c[i].char_start) abort();
        if (i && c[i].char_start <= c[i - 1].char_start) abort();
    }
    smp_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    long csize = 1 + data[0];
    long overlap = data[1] % csize;
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    check_chunks(text, len, csize, overlap);
    char *plain;
    size_t plen;
    if (doctext_html(text, len, &plain, &plen) == 0) {
        if (strlen(plain) > plen) abort();
        check_chunks(plain, plen, csize, overlap);
        smp_free(plain);
    }
    return 0;
}
