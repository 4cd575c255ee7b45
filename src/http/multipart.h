/* multipart.h - a strict multipart/form-data parser (RFC 7578 over RFC 2046
 * framing) for request bodies that are already in memory.
 *
 * Body layout:
 *   [preamble CRLF] "--" boundary [LWSP] CRLF
 *     header lines (CRLF each), CRLF, data,
 *   CRLF "--" boundary [LWSP] CRLF   (next part) ... or
 *   CRLF "--" boundary "--"          (end; anything after is ignored)
 * Each part needs Content-Disposition: form-data; name="..." [; filename="..."].
 * Line ends must be CRLF. Limits: MULTIPART_MAX_PARTS parts, 8 KiB of headers
 * per part, 70-character boundaries (RFC 2046).
 *
 * Ownership: a part's data points into the body (which must outlive the
 * multipart); names, file names and content types are copies owned by the
 * multipart (multipart_free). */
#ifndef SMP_MULTIPART_H
#define SMP_MULTIPART_H

#include <stddef.h>

#define MULTIPART_MAX_PARTS 256

typedef struct {
    char *name;         /* form field name */
    char *filename;     /* NULL when the part is not a file upload */
    char *content_type; /* NULL when absent */
    const char *data;   /* into the body */
    size_t len;
} multipart_part;

typedef struct multipart {
    multipart_part *parts;
    int n;
} multipart;

/* content_type: the request's Content-Type header (may be NULL). Returns 0,
 * -SMP_E_UNSUPPORTED_MEDIA (not multipart/form-data or no boundary),
 * -SMP_E_FORMAT (malformed body; err says where) or -SMP_E_NOMEM. On failure
 * *out is empty. */
int multipart_parse(const char *content_type, const char *body, size_t len, multipart *out, char *err,
                    size_t errlen);
/* The first part with this field name, or NULL. */
const multipart_part *multipart_find(const multipart *m, const char *name);
void multipart_free(multipart *m);

#endif
