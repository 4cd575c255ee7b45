/* doctext.h - plain text out of uploaded documents, for retrieval.
 *
 *   HTML  tags stripped in-process: script/style/noscript/template content
 *         dropped, comments skipped, entities decoded, white space collapsed
 *         as a browser would (except inside <pre>), block elements (p, div,
 *         h1..h6, li, tr, br, ...) turned into line or paragraph breaks.
 *   PDF   the `pdftotext` program (Debian package poppler-utils) run as a
 *         child process on pipes: the PDF goes to its stdin, the text comes
 *         back on its stdout. A separate process keeps a hostile PDF's parser
 *         bugs out of the server; a time limit and an output cap bound it.
 *
 * Results are owned by the caller (smp_free) and NUL-terminated. They are
 * valid UTF-8 when the input was (HTML) / always (PDF, the text pdftotext
 * prints is checked by the caller like any upload). */
#ifndef SMP_DOCTEXT_H
#define SMP_DOCTEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Returns 0 or -SMP_E_NOMEM. */
int doctext_html(const char *html, size_t len, char **out, size_t *outlen);

/* Returns 0; -SMP_E_FORMAT (not a PDF, damaged, encrypted, or no text in it:
 * err says which); -SMP_E_TOO_LARGE (text longer than max_out bytes);
 * -SMP_E_TIMEOUT (took longer than timeout_ms); -SMP_E_NOT_IMPLEMENTED
 * (pdftotext is not installed); -SMP_E_INTERNAL / -SMP_E_NOMEM. */
int doctext_pdf(const void *pdf, size_t len, long timeout_ms, size_t max_out, char **out, size_t *outlen, char *err,
                size_t errlen);

/* Whether pdftotext can be run (checked once, cached). */
bool doctext_pdf_available(void);

#endif
