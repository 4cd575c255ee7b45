/* multipart.c - see multipart.h. One pass over the body: find each
 * delimiter with memmem, parse the part's header block, and point the part's
 * data at the bytes up to the next delimiter. */
#define _GNU_SOURCE
#include "http/multipart.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/errors.h"

#define MAX_BOUNDARY 70
#define MAX_HEADERS_BYTES 8192
#define MAX_NAME 256
#define MAX_FILENAME 1024
#define MAX_CTYPE 256

static bool is_ws(char c) { return c == ' ' || c == '\t'; }

/* Parameter `key` of a header value like `type; a=b; key="va\"lue"`. Returns
 * 1 (value unquoted into out), 0 (absent), -1 (malformed or longer than n-1).
 * The first `;`-separated item (the type) is skipped. */
static int header_param(const char *v, size_t len, const char *key, char *out, size_t n) {
    size_t i = 0;
    bool in_quotes = false;
    /* skip the type */
    while (i < len && v[i] != ';') i++;
    while (i < len) {
        i++; /* past ';' */
        while (i < len && is_ws(v[i])) i++;
        size_t k0 = i;
        while (i < len && v[i] != '=' && v[i] != ';' && !is_ws(v[i])) i++;
        size_t klen = i - k0;
        while (i < len && is_ws(v[i])) i++;
        if (i >= len || v[i] == ';') {
            if (klen == 0 && i >= len) return 0; /* trailing ';' */
            continue;                            /* a bare token: ignore */
        }
        i++; /* past '=' */
        while (i < len && is_ws(v[i])) i++;
        bool match = klen == strlen(key) && !strncasecmp(v + k0, key, klen);
        size_t o = 0;
        if (i < len && v[i] == '"') {
            in_quotes = true;
            for (i++; i < len; i++) {
                char c = v[i];
                if (c == '"') {
                    in_quotes = false;
                    i++;
                    break;
                }
                if (c == '\\' && i + 1 < len) c = v[++i];
                if (match) {
                    if (o + 1 >= n) return -1;
                    out[o++] = c;
                }
            }
            if (in_quotes) return -1; /* unterminated */
            while (i < len && is_ws(v[i])) i++;
            if (i < len && v[i] != ';') return -1;
        } else {
            for (; i < len && v[i] != ';' && !is_ws(v[i]); i++) {
                if (match) {
                    if (o + 1 >= n) return -1;
                    out[o++] = v[i];
                }
            }
            while (i < len && is_ws(v[i])) i++;
            if (i < len && v[i] != ';') return -1;
        }
        if (match) {
            out[o] = '\0';
            return 1;
        }
    }
    return 0;
}

/* The value's first item (before ';'), trimmed, equals type (any case). */
static bool value_type_is(const char *v, size_t len, const char *type) {
    size_t e = 0;
    while (e < len && v[e] != ';') e++;
    size_t s = 0;
    while (s < e && is_ws(v[s])) s++;
    while (e > s && is_ws(v[e - 1])) e--;
    return e - s == strlen(type) && !strncasecmp(v + s, type, e - s);
}

void multipart_free(multipart *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        smp_free(m->parts[i].name);
        smp_free(m->parts[i].filename);
        smp_free(m->parts[i].content_type);
    }
    smp_free(m->parts);
    m->parts = NULL;
    m->n = 0;
}

const multipart_part *multipart_find(const multipart *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->parts[i].name, name)) return &m->parts[i];
    return NULL;
}

/* Parse one part's header block h[0..hlen) (CRLF-separated lines) into p. */
static int parse_headers(const char *h, size_t hlen, multipart_part *p, int index, char *err, size_t errlen) {
    bool have_disp = false;
    size_t i = 0;
    while (i < hlen) {
        const char *eol = memmem(h + i, hlen - i, "\r\n", 2);
        size_t l = eol ? (size_t)(eol - (h + i)) : hlen - i;
        const char *line = h + i;
        i += l + 2;
        if (memchr(line, '\0', l) || (l && is_ws(line[0]))) {
            snprintf(err, errlen, "part %d: malformed header line", index);
            return -SMP_E_FORMAT;
        }
        const char *colon = memchr(line, ':', l);
        if (!colon || colon == line) {
            snprintf(err, errlen, "part %d: header line without a name", index);
            return -SMP_E_FORMAT;
        }
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vlen = l - nlen - 1;
        while (vlen && is_ws(*v)) v++, vlen--;
        while (vlen && is_ws(v[vlen - 1])) vlen--;
        if (nlen == 19 && !strncasecmp(line, "Content-Disposition", 19)) {
            if (have_disp || !value_type_is(v, vlen, "form-data")) {
                snprintf(err, errlen, "part %d: Content-Disposition must be form-data (once)", index);
                return -SMP_E_FORMAT;
            }
            have_disp = true;
            char name[MAX_NAME], fname[MAX_FILENAME];
            int rn = header_param(v, vlen, "name", name, sizeof name);
            int rf = header_param(v, vlen, "filename", fname, sizeof fname);
            if (rn != 1 || rf < 0) {
                snprintf(err, errlen, "part %d: Content-Disposition needs a name=\"...\" (and a well-formed filename)",
                         index);
                return -SMP_E_FORMAT;
            }
            if (!(p->name = smp_strdup(name)) || (rf == 1 && !(p->filename = smp_strdup(fname)))) {
                snprintf(err, errlen, "out of memory");
                return -SMP_E_NOMEM;
            }
        } else if (nlen == 12 && !strncasecmp(line, "Content-Type", 12)) {
            if (p->content_type || vlen == 0 || vlen >= MAX_CTYPE) {
                snprintf(err, errlen, "part %d: bad Content-Type", index);
                return -SMP_E_FORMAT;
            }
            if (!(p->content_type = smp_strndup(v, vlen))) {
                snprintf(err, errlen, "out of memory");
                return -SMP_E_NOMEM;
            }
        } /* other headers (Content-Transfer-Encoding, ...) are ignored */
    }
    if (!have_disp) {
        snprintf(err, errlen, "part %d has no Content-Disposition header", index);
        return -SMP_E_FORMAT;
    }
    return 0;
}

int multipart_parse(const char *content_type, const char *body, size_t len, multipart *out, char *err,
                    size_t errlen) {
    out->parts = NULL;
    out->n = 0;
    char boundary[MAX_BOUNDARY + 1];
    size_t ctlen = content_type ? strlen(content_type) : 0;
    if (!content_type || !value_type_is(content_type, ctlen, "multipart/form-data")) {
        snprintf(err, errlen, "expected a multipart/form-data body");
        return -SMP_E_UNSUPPORTED_MEDIA;
    }
    if (header_param(content_type, ctlen, "boundary", boundary, sizeof boundary) != 1 || !boundary[0]) {
        snprintf(err, errlen, "multipart/form-data Content-Type needs a boundary of 1..%d characters", MAX_BOUNDARY);
        return -SMP_E_UNSUPPORTED_MEDIA;
    }
    /* delim = CRLF "--" boundary; the first one may start the body without CRLF. */
    char delim[MAX_BOUNDARY + 5];
    size_t dlen = (size_t)snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    int cap = 0, rc = -SMP_E_FORMAT;
    size_t pos;
    if (len >= dlen - 2 && !memcmp(body, delim + 2, dlen - 2)) {
        pos = dlen - 2;
    } else {
        const char *d = memmem(body, len, delim, dlen);
        if (!d) {
            snprintf(err, errlen, "multipart body has no boundary line");
            goto fail;
        }
        pos = (size_t)(d - body) + dlen;
    }
    for (;;) {
        /* pos is just past a delimiter. */
        if (len - pos >= 2 && !memcmp(body + pos, "--", 2)) break; /* close delimiter */
        while (pos < len && is_ws(body[pos])) pos++;
        if (len - pos < 2 || memcmp(body + pos, "\r\n", 2)) {
            snprintf(err, errlen, "multipart body is truncated or malformed after a boundary (offset %zu)", pos);
            goto fail;
        }
        pos += 2;
        if (out->n == MULTIPART_MAX_PARTS) {
            snprintf(err, errlen, "more than %d parts", MULTIPART_MAX_PARTS);
            goto fail;
        }
        if (out->n == cap) {
            int ncap = cap ? cap * 2 : 4;
            multipart_part *np = smp_realloc(out->parts, (size_t)ncap * sizeof *np);
            if (!np) {
                rc = -SMP_E_NOMEM;
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            out->parts = np;
            cap = ncap;
        }
        multipart_part *p = &out->parts[out->n++];
        memset(p, 0, sizeof *p);
        /* Headers end at the first empty line (which may come at once). */
        size_t hend;
        if (len - pos >= 2 && !memcmp(body + pos, "\r\n", 2)) {
            hend = pos;
        } else {
            size_t lim = len - pos < MAX_HEADERS_BYTES + 4 ? len - pos : MAX_HEADERS_BYTES + 4;
            const char *e = memmem(body + pos, lim, "\r\n\r\n", 4);
            if (!e) {
                snprintf(err, errlen, "part %d: headers are truncated or longer than %d bytes", out->n - 1,
                         MAX_HEADERS_BYTES);
                goto fail;
            }
            hend = (size_t)(e - body) + 2; /* keep the last line's CRLF */
        }
        if ((rc = parse_headers(body + pos, hend - pos, p, out->n - 1, err, errlen)) != 0) goto fail;
        rc = -SMP_E_FORMAT;
        size_t dstart = hend + 2;
        const char *d = memmem(body + dstart, len - dstart, delim, dlen);
        if (!d) {
            snprintf(err, errlen, "multipart body is truncated: part %d has no closing boundary", out->n - 1);
            goto fail;
        }
        p->data = body + dstart;
        p->len = (size_t)(d - p->data);
        pos = (size_t)(d - body) + dlen;
    }
    return 0;
fail:
    multipart_free(out);
    return rc;
}
