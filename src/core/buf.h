/* buf.h - growable byte buffer with a hard cap.
 *
 * A buf owns its bytes (smp_malloc). data is always NUL-terminated so text can
 * be used as a C string. Appends past cap fail with -1 and leave the buffer
 * unchanged; cap 0 means "no cap". buf_free(NULL) is fine. */
#ifndef SMP_BUF_H
#define SMP_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap;
} buf;

void buf_init(buf *b, size_t cap);
void buf_free(buf *b);
void buf_reset(buf *b);
int buf_reserve(buf *b, size_t extra);
int buf_append(buf *b, const void *p, size_t n);
int buf_puts(buf *b, const char *s);
int buf_putc(buf *b, char c);
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf *b, const char *fmt, va_list ap);
/* Hand the bytes to the caller (free with smp_free); the buf is left empty. */
char *buf_detach(buf *b, size_t *len);

#endif
