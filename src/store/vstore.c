/* vstore.c - the implementation-independent part of vstore.h: argument
 * checks, dispatch through the operation table, names and ids. */
#include "store/vstore.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/util.h"
#include "store/vstore_int.h"

bool vstore_name_ok(const char *name) {
    if (!name) return false;
    size_t n = strlen(name);
    if (n == 0 || n > VSTORE_NAME_MAX || !strcmp(name, ".") || !strcmp(name, "..")) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    }
    return true;
}

void vstore_new_id(char *out) {
    char hex[33];
    if (util_random_hex(16, hex) != 0) { /* libcrypto failed: still unique enough for one process */
        static unsigned long long counter;
        snprintf(hex, sizeof hex, "%016llx%016llx", (unsigned long long)util_now_ns(),
                 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
    }
    hex[12] = '4';                                            /* version 4 */
    hex[16] = "89ab"[(hex[16] >= 'a' ? hex[16] - 'a' + 10 : hex[16] - '0') & 3]; /* variant 10xx */
    snprintf(out, VSTORE_ID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static int check_name(const char *coll, char *err, size_t errlen) {
    if (vstore_name_ok(coll)) return 0;
    snprintf(err, errlen, "invalid collection name (1..%d characters of A-Z a-z 0-9 _ - ., not . or ..)",
             VSTORE_NAME_MAX);
    return -SMP_E_VALIDATION;
}

const char *vstore_kind(const vstore *s) { return s->ops->kind; }

void vstore_close(vstore *s) {
    if (s) s->ops->close(s);
}

int vstore_add(vstore *s, const char *coll, int dim, const vstore_point *pts, int n, char *err, size_t errlen) {
    int rc = check_name(coll, err, errlen);
    if (rc) return rc;
    if (dim <= 0 || dim > 65536 || n < 0) {
        snprintf(err, errlen, "invalid vector dimension %d", dim);
        return -SMP_E_VALIDATION;
    }
    for (int i = 0; i < n; i++) {
        for (int d = 0; d < dim; d++)
            if (!isfinite(pts[i].vector[d])) {
                snprintf(err, errlen, "vector %d holds a value that is not a finite number", i);
                return -SMP_E_VALIDATION;
            }
        if (!json_is_object(pts[i].payload)) {
            snprintf(err, errlen, "payload %d is not a JSON object", i);
            return -SMP_E_VALIDATION;
        }
    }
    return s->ops->add(s, coll, dim, pts, n, err, errlen);
}

int vstore_search(vstore *s, const char *coll, const float *q, int dim, int k, float min_score, vstore_hit **hits,
                  int *n, char *err, size_t errlen) {
    *hits = NULL;
    *n = 0;
    int rc = check_name(coll, err, errlen);
    if (rc) return rc;
    if (k <= 0 || dim <= 0) {
        snprintf(err, errlen, "invalid search arguments (k %d, dimension %d)", k, dim);
        return -SMP_E_VALIDATION;
    }
    return s->ops->search(s, coll, q, dim, k, min_score, hits, n, err, errlen);
}

void vstore_hits_free(vstore_hit *hits, int n) {
    for (int i = 0; hits && i < n; i++) json_decref(hits[i].payload);
    smp_free(hits);
}

int vstore_get_info(vstore *s, const char *coll, vstore_info *out, char *err, size_t errlen) {
    int rc = check_name(coll, err, errlen);
    return rc ? rc : s->ops->info(s, coll, out, err, errlen);
}

int vstore_list(vstore *s, vstore_info **out, int *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    return s->ops->list(s, out, n, err, errlen);
}

int vstore_delete(vstore *s, const char *coll, char *err, size_t errlen) {
    int rc = check_name(coll, err, errlen);
    return rc ? rc : s->ops->del(s, coll, err, errlen);
}

bool vstore_health(vstore *s, json_t **out) { return s->ops->health(s, out); }
