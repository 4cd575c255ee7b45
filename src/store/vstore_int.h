/* vstore_int.h - what the vector store implementations share: the operation
 * table behind vstore.h, and test hooks. Not for callers of the store. */
#ifndef SMP_VSTORE_INT_H
#define SMP_VSTORE_INT_H

#include "store/vstore.h"

typedef struct {
    const char *kind;
    int (*add)(vstore *s, const char *coll, int dim, const vstore_point *pts, int n, char *err, size_t errlen);
    int (*search)(vstore *s, const char *coll, const float *q, int dim, int k, float min_score, vstore_hit **hits,
                  int *n, char *err, size_t errlen);
    int (*info)(vstore *s, const char *coll, vstore_info *out, char *err, size_t errlen);
    int (*list)(vstore *s, vstore_info **out, int *n, char *err, size_t errlen);
    int (*del)(vstore *s, const char *coll, char *err, size_t errlen);
    bool (*health)(vstore *s, json_t **out);
    void (*close)(vstore *s);
} vstore_ops;

struct vstore {
    const vstore_ops *ops;
};

/* Test hook of the embedded store: called after each point is written inside
 * the add transaction (index i of n). Lets a test crash mid-transaction. */
extern void (*vstore_local_insert_hook)(int i, int n);
/* Embedded store: rows scanned per thread before a search is split over the
 * compute threads (tests lower it to exercise the split). */
extern size_t vstore_local_split_rows;

/* Qdrant adapter: points per upsert request (tests lower it). */
extern int vstore_qdrant_batch;

#endif
