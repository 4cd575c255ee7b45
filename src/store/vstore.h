/* vstore.h - the vector store behind retrieval: named collections of points
 * (id, vector, JSON payload) searched by cosine similarity.
 *
 * Two implementations behind one interface:
 *   embedded (vstore_local.c)  SQLite file in the data directory, searched in
 *                              memory (the default)
 *   qdrant   (vstore_qdrant.c) a Qdrant server over its REST API (QDRANT_URL)
 * A collection is created by the first vstore_add with the vectors' dimension;
 * later adds and searches must use that dimension (-SMP_E_CONFLICT naming
 * both otherwise). Scores are cosine similarities in [-1, 1].
 *
 * Every call may block (disk, network): call from worker threads. Calls may
 * run concurrently: searches in parallel, writes one at a time. err always
 * says what went wrong; codes:
 *   -SMP_E_NOT_FOUND    no such collection
 *   -SMP_E_CONFLICT     dimension mismatch
 *   -SMP_E_VALIDATION   bad name or arguments
 *   -SMP_E_UNAVAILABLE  the store cannot be reached (Qdrant down)
 *   -SMP_E_BACKEND      the store answered with an error
 *   -SMP_E_IO / -SMP_E_NOMEM / -SMP_E_INTERNAL */
#ifndef SMP_VSTORE_H
#define SMP_VSTORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define VSTORE_NAME_MAX 64
#define VSTORE_ID_LEN 36 /* UUID text "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" */

typedef struct vstore vstore;

typedef struct {
    char id[VSTORE_ID_LEN + 1];
    const float *vector; /* dim floats (need not be normalised); borrowed */
    json_t *payload;     /* a JSON object; borrowed */
} vstore_point;

typedef struct {
    char id[VSTORE_ID_LEN + 1];
    float score;
    json_t *payload; /* owned by the hit array (vstore_hits_free) */
} vstore_hit;

typedef struct {
    char name[VSTORE_NAME_MAX + 1];
    int dim;
    long long points;
} vstore_info;

/* Open the embedded store in dir (created if missing); file dir/vectors.sqlite3. */
int vstore_open_local(const char *dir, vstore **out, char *err, size_t errlen);
/* Connect to Qdrant at url (http[s]://host:port); api_key may be NULL or "".
 * Does not contact the server (health/first use does). */
int vstore_open_qdrant(const char *url, const char *api_key, vstore **out, char *err, size_t errlen);
void vstore_close(vstore *s); /* NULL is fine; no call may be running */
const char *vstore_kind(const vstore *s); /* "embedded" | "qdrant" */

/* 1..64 characters of [A-Za-z0-9_.-], not "." or "..". */
bool vstore_name_ok(const char *name);
/* A random (version 4) UUID as text; out needs VSTORE_ID_LEN + 1 bytes. */
void vstore_new_id(char *out);

/* Add n points (fresh ids) to coll, creating it with dimension dim if new.
 * All or nothing: after a failure or a crash no point of this call is
 * visible (Qdrant: best effort, the added batches are deleted again). */
int vstore_add(vstore *s, const char *coll, int dim, const vstore_point *pts, int n, char *err, size_t errlen);
/* The k best points for query q (dim floats) with score >= min_score (pass
 * -INFINITY for none), best first. *hits gets *n entries (free with
 * vstore_hits_free). */
int vstore_search(vstore *s, const char *coll, const float *q, int dim, int k, float min_score, vstore_hit **hits,
                  int *n, char *err, size_t errlen);
void vstore_hits_free(vstore_hit *hits, int n);
int vstore_get_info(vstore *s, const char *coll, vstore_info *out, char *err, size_t errlen);
/* Every collection, sorted by name (free *out with smp_free). */
int vstore_list(vstore *s, vstore_info **out, int *n, char *err, size_t errlen);
int vstore_delete(vstore *s, const char *coll, char *err, size_t errlen);
/* {status:"healthy"|"down", kind, ...}; true when the store can serve. */
bool vstore_health(vstore *s, json_t **out);

#endif
