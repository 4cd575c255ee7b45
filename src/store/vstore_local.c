/* vstore_local.c - the embedded vector store: SQLite for durability, an
 * in-memory copy of every vector for search.
 *
 * On disk (DATA_DIR/vectors.sqlite3, WAL journal, synchronous=FULL):
 *   collections(id INTEGER PRIMARY KEY, name TEXT UNIQUE, dim INTEGER, created_at REAL)
 *   points(rowid INTEGER PRIMARY KEY, coll INTEGER, id TEXT, vector BLOB, payload TEXT)
 *     vector: dim little-endian float32, L2-normalised; payload: JSON object text
 *   PRAGMA user_version = 1 (schema version)
 * One vstore_add is one transaction, so a crash (kill -9) leaves every add
 * either complete or absent.
 *
 * In memory: per collection, blocks of up to BLOCK_ROWS normalised vectors
 * with their SQLite rowids. Every block but the last is full, so a hit's
 * position p is block p / BLOCK_ROWS, row p % BLOCK_ROWS. Payloads stay on
 * disk: a search reads the k winners' rows through a pooled read-only
 * connection.
 *
 * Locking: `lock` (rwlock) guards the in-memory collections: searches hold it
 * shared for the scan and the payload reads; writers hold it exclusively only
 * to grow buffers and to append vectors after their commit (so a search never
 * sees a point whose transaction is not committed). `wmu` makes writers take
 * turns and guards the writer connection. Deleting a collection holds `lock`
 * exclusively across its transaction, so no search reads a half-deleted one.
 *
 * Search: the query is normalised, every vector scored (vsearch.h), the best k
 * kept in a heap; big collections are split over the compute threads by block
 * ranges, one heap each, merged at the end.
 *
 * Test hook: SIMPLETON_TEST_CRASH_AFTER_POINTS=N (environment) makes the
 * process SIGKILL itself inside an add's transaction (crash tests). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "engine/threadpool.h"
#include "store/vsearch.h"
#include "store/vstore_int.h"

#define BLOCK_ROWS 1024
#define READERS_MAX 8
#define SCHEMA_VERSION 1

void (*vstore_local_insert_hook)(int i, int n);
size_t vstore_local_split_rows = 16384;

/* Crash test of the real server: SIMPLETON_TEST_CRASH_AFTER_POINTS=N makes
 * the process kill itself (SIGKILL, as kill -9 would) once an add has
 * written N points inside its transaction. */
static long crash_after;
static void crash_hook(int i, int n) {
    (void)n;
    if (i + 1 == crash_after) raise(SIGKILL);
}

typedef struct {
    float *v;       /* cap * dim floats */
    int64_t *rowid; /* cap entries */
    size_t n, cap;
} block;

typedef struct {
    char name[VSTORE_NAME_MAX + 1];
    int64_t id; /* collections.id */
    int dim;
    size_t n;   /* points */
    size_t cap_rows; /* rows the blocks can hold (room = cap_rows - n) */
    block *blocks;
    size_t nblocks, cap_blocks;
} coll;

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *get; /* SELECT id, payload FROM points WHERE rowid = ? */
} reader;

typedef struct {
    vstore base;
    char *path;
    sqlite3 *wdb;
    pthread_mutex_t wmu;
    pthread_rwlock_t lock;
    coll **colls; /* unsorted; few enough to scan */
    int ncolls, cap_colls;
    pthread_mutex_t pool_mu;
    reader *idle[READERS_MAX];
    int nidle;
    tp_pool *tp;
} local_store;

/* ---- in-memory collections ------------------------------------------------- */

static coll *find(local_store *st, const char *name) {
    for (int i = 0; i < st->ncolls; i++)
        if (!strcmp(st->colls[i]->name, name)) return st->colls[i];
    return NULL;
}

static void coll_free(coll *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nblocks; i++) {
        smp_free(c->blocks[i].v);
        smp_free(c->blocks[i].rowid);
    }
    smp_free(c->blocks);
    smp_free(c);
}

static coll *coll_new(const char *name, int64_t id, int dim) {
    coll *c = smp_calloc(1, sizeof *c);
    if (!c) return NULL;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->id = id;
    c->dim = dim;
    return c;
}

static int block_grow(block *b, size_t cap, int dim) {
    float *v = smp_realloc(b->v, cap * (size_t)dim * sizeof *v);
    if (!v) return -SMP_E_NOMEM;
    b->v = v;
    int64_t *r = smp_realloc(b->rowid, cap * sizeof *r);
    if (!r) return -SMP_E_NOMEM;
    b->rowid = r;
    b->cap = cap;
    return 0;
}

/* Make room for `extra` more rows, so that appending them cannot fail. Must
 * hold `lock` exclusively when c is visible to searches (buffers move). */
static int coll_reserve(coll *c, size_t extra) {
    size_t room = c->cap_rows - c->n;
    if (room >= extra) return 0;
    size_t need = extra - room;
    /* Grow the last block first (doubling, up to a full block). */
    if (c->nblocks && c->blocks[c->nblocks - 1].cap < BLOCK_ROWS) {
        block *b = &c->blocks[c->nblocks - 1];
        size_t cap = b->cap * 2 > b->cap + need ? b->cap * 2 : b->cap + need;
        if (cap > BLOCK_ROWS) cap = BLOCK_ROWS;
        size_t added = cap - b->cap;
        int rc = block_grow(b, cap, c->dim);
        if (rc) return rc;
        c->cap_rows += added;
        need = added >= need ? 0 : need - added;
    }
    while (need > 0) {
        if (c->nblocks == c->cap_blocks) {
            size_t cap = c->cap_blocks ? c->cap_blocks * 2 : 4;
            block *nb = smp_realloc(c->blocks, cap * sizeof *nb);
            if (!nb) return -SMP_E_NOMEM;
            c->blocks = nb;
            c->cap_blocks = cap;
        }
        block *b = &c->blocks[c->nblocks];
        memset(b, 0, sizeof *b);
        size_t cap = need < BLOCK_ROWS ? need : BLOCK_ROWS;
        if (cap < 16) cap = 16;
        int rc = block_grow(b, cap, c->dim);
        if (rc) {
            smp_free(b->v);
            smp_free(b->rowid);
            return rc;
        }
        c->nblocks++;
        c->cap_rows += cap;
        need = cap >= need ? 0 : need - cap;
    }
    return 0;
}

/* Append one row; room was reserved. */
static void coll_append(coll *c, const float *v, int64_t rowid) {
    size_t i = c->n / BLOCK_ROWS; /* every earlier block is full */
    block *b = &c->blocks[i];
    SMP_ASSERT(b->n < b->cap);
    memcpy(b->v + b->n * (size_t)c->dim, v, (size_t)c->dim * sizeof *v);
    b->rowid[b->n++] = rowid;
    c->n++;
}

static int64_t coll_rowid(const coll *c, uint64_t pos) {
    return c->blocks[pos / BLOCK_ROWS].rowid[pos % BLOCK_ROWS];
}

static int colls_reserve(local_store *st) {
    if (st->ncolls < st->cap_colls) return 0;
    int cap = st->cap_colls ? st->cap_colls * 2 : 8;
    coll **nc = smp_realloc(st->colls, (size_t)cap * sizeof *nc);
    if (!nc) return -SMP_E_NOMEM;
    st->colls = nc;
    st->cap_colls = cap;
    return 0;
}

/* ---- SQLite helpers --------------------------------------------------------- */

static int db_err(sqlite3 *db, const char *what, char *err, size_t errlen) {
    int code = db ? sqlite3_errcode(db) : SQLITE_ERROR;
    snprintf(err, errlen, "vector store: %s: %s", what, db ? sqlite3_errmsg(db) : "no database");
    return code == SQLITE_NOMEM ? -SMP_E_NOMEM : -SMP_E_IO;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen) {
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK) return 0;
    return db_err(db, sql, err, errlen);
}

/* mkdir -p */
static int make_dirs(const char *dir, char *err, size_t errlen) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) {
        snprintf(err, errlen, "vector store: data directory path too long");
        return -SMP_E_IO;
    }
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "vector store: cannot create %s: %s", tmp, strerror(errno));
            return -SMP_E_IO;
        }
        *p = c;
        if (!c) return 0;
    }
}

static void reader_free(reader *r) {
    if (!r) return;
    sqlite3_finalize(r->get);
    sqlite3_close(r->db);
    smp_free(r);
}

static reader *reader_get(local_store *st, char *err, size_t errlen) {
    pthread_mutex_lock(&st->pool_mu);
    reader *r = st->nidle ? st->idle[--st->nidle] : NULL;
    pthread_mutex_unlock(&st->pool_mu);
    if (r) return r;
    r = smp_calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (sqlite3_open_v2(st->path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(r->db, 5000) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db, "SELECT id, payload FROM points WHERE rowid = ?1", -1, &r->get, NULL) !=
            SQLITE_OK) {
        db_err(r->db, "open reader", err, errlen);
        reader_free(r);
        return NULL;
    }
    return r;
}

static void reader_put(local_store *st, reader *r) {
    sqlite3_reset(r->get);
    pthread_mutex_lock(&st->pool_mu);
    if (st->nidle < READERS_MAX) {
        st->idle[st->nidle++] = r;
        r = NULL;
    }
    pthread_mutex_unlock(&st->pool_mu);
    reader_free(r);
}

/* ---- add ------------------------------------------------------------------------ */

/* Write the points in one transaction; rowids[i] gets each point's rowid.
 * *coll_id is the collection's id, or 0 to create it. Caller holds wmu. */
static int write_points(local_store *st, const char *name, int dim, int64_t *coll_id, const vstore_point *pts,
                        const float *vecs, int n, int64_t *rowids, char *err, size_t errlen) {
    sqlite3 *db = st->wdb;
    sqlite3_stmt *ins = NULL;
    int rc = exec(db, "BEGIN IMMEDIATE", err, errlen);
    if (rc) return rc;
    if (*coll_id == 0) {
        sqlite3_stmt *cs = NULL;
        if (sqlite3_prepare_v2(db, "INSERT INTO collections(name, dim, created_at) VALUES (?1, ?2, ?3)", -1, &cs,
                               NULL) != SQLITE_OK) {
            rc = db_err(db, "create collection", err, errlen);
            goto fail;
        }
        sqlite3_bind_text(cs, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int(cs, 2, dim);
        sqlite3_bind_double(cs, 3, util_wall_seconds());
        int step = sqlite3_step(cs);
        sqlite3_finalize(cs);
        if (step != SQLITE_DONE) {
            rc = db_err(db, "create collection", err, errlen);
            goto fail;
        }
        *coll_id = sqlite3_last_insert_rowid(db);
    }
    if (sqlite3_prepare_v2(db, "INSERT INTO points(coll, id, vector, payload) VALUES (?1, ?2, ?3, ?4)", -1, &ins,
                           NULL) != SQLITE_OK) {
        rc = db_err(db, "insert points", err, errlen);
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        char *payload = json_dumps(pts[i].payload, JSON_COMPACT);
        if (!payload) {
            snprintf(err, errlen, "vector store: cannot serialise payload %d", i);
            rc = -SMP_E_NOMEM;
            goto fail;
        }
        sqlite3_bind_int64(ins, 1, *coll_id);
        sqlite3_bind_text(ins, 2, pts[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 3, vecs + (size_t)i * (size_t)dim, dim * (int)sizeof(float), SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, payload, -1, SQLITE_STATIC);
        int step = sqlite3_step(ins);
        sqlite3_reset(ins);
        smp_free(payload);
        if (step != SQLITE_DONE) {
            rc = db_err(db, "insert point", err, errlen);
            goto fail;
        }
        rowids[i] = sqlite3_last_insert_rowid(db);
        if (vstore_local_insert_hook) vstore_local_insert_hook(i, n);
    }
    sqlite3_finalize(ins);
    ins = NULL;
    if ((rc = exec(db, "COMMIT", err, errlen)) != 0) goto fail;
    return 0;
fail:
    sqlite3_finalize(ins);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int local_add(vstore *s, const char *name, int dim, const vstore_point *pts, int n, char *err,
                     size_t errlen) {
    local_store *st = (local_store *)s;
    float *vecs = smp_malloc((size_t)(n ? n : 1) * (size_t)dim * sizeof *vecs);
    int64_t *rowids = smp_malloc((size_t)(n ? n : 1) * sizeof *rowids);
    coll *fresh = NULL;
    int rc = -SMP_E_NOMEM;
    if (!vecs || !rowids) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        float *v = vecs + (size_t)i * (size_t)dim;
        memcpy(v, pts[i].vector, (size_t)dim * sizeof *v);
        vsearch_normalize(v, dim);
    }
    pthread_mutex_lock(&st->wmu);
    /* Writers hold wmu, so the collection list cannot change under us. */
    coll *c = find(st, name);
    if (c && c->dim != dim) {
        snprintf(err, errlen, "collection '%s' holds %d-dimensional vectors, these have %d dimensions", name, c->dim,
                 dim);
        rc = -SMP_E_CONFLICT;
        goto unlock;
    }
    if (!c) {
        fresh = coll_new(name, 0, dim);
        rc = fresh ? coll_reserve(fresh, (size_t)n) : -SMP_E_NOMEM;
        pthread_rwlock_wrlock(&st->lock);
        if (rc == 0) rc = colls_reserve(st);
        pthread_rwlock_unlock(&st->lock);
    } else {
        pthread_rwlock_wrlock(&st->lock);
        rc = coll_reserve(c, (size_t)n);
        pthread_rwlock_unlock(&st->lock);
    }
    if (rc) {
        snprintf(err, errlen, "out of memory for %d more vectors", n);
        goto unlock;
    }
    int64_t coll_id = c ? c->id : 0;
    rc = write_points(st, name, dim, &coll_id, pts, vecs, n, rowids, err, errlen);
    if (rc) goto unlock;
    /* Committed: make the points visible to searches. */
    pthread_rwlock_wrlock(&st->lock);
    if (!c) {
        c = fresh;
        fresh = NULL;
        c->id = coll_id;
        st->colls[st->ncolls++] = c;
    }
    for (int i = 0; i < n; i++) coll_append(c, vecs + (size_t)i * (size_t)dim, rowids[i]);
    pthread_rwlock_unlock(&st->lock);
unlock:
    pthread_mutex_unlock(&st->wmu);
out:
    coll_free(fresh);
    smp_free(vecs);
    smp_free(rowids);
    return rc;
}

/* ---- search ------------------------------------------------------------------- */

typedef struct {
    const coll *c;
    const float *q;
    float min_score;
    int k, ntasks;
    vsearch_hit *slots; /* ntasks * k */
    int *counts;        /* hits kept per task */
    vsearch_scores_fn scores;
} scan_job;

/* Task t scans blocks [t*nb/T, (t+1)*nb/T) into its own heap. */
static void scan_task(void *arg, int t, int thread) {
    (void)thread;
    scan_job *j = arg;
    const coll *c = j->c;
    size_t b0 = c->nblocks * (size_t)t / (size_t)j->ntasks, b1 = c->nblocks * (size_t)(t + 1) / (size_t)j->ntasks;
    vsearch_heap hp;
    vsearch_heap_init(&hp, j->slots + (size_t)t * (size_t)j->k, j->k);
    float sc[BLOCK_ROWS];
    for (size_t b = b0; b < b1; b++) {
        const block *bl = &c->blocks[b];
        j->scores(j->q, bl->v, bl->n, c->dim, sc);
        uint64_t base = (uint64_t)b * BLOCK_ROWS;
        for (size_t r = 0; r < bl->n; r++)
            if (sc[r] >= j->min_score) vsearch_heap_push(&hp, sc[r], base + r);
    }
    j->counts[t] = hp.n;
}

/* Read the winners' ids and payloads. Caller holds `lock` shared. */
static int fetch_hits(local_store *st, const coll *c, const vsearch_hit *best, int nbest, vstore_hit *out, int *n,
                      char *err, size_t errlen) {
    reader *r = reader_get(st, err, errlen);
    if (!r) return -SMP_E_IO;
    int rc = 0, got = 0;
    for (int i = 0; i < nbest; i++) {
        sqlite3_reset(r->get);
        sqlite3_bind_int64(r->get, 1, coll_rowid(c, best[i].index));
        int step = sqlite3_step(r->get);
        if (step == SQLITE_DONE) continue; /* cannot happen while we hold the lock */
        if (step != SQLITE_ROW) {
            rc = db_err(r->db, "read payload", err, errlen);
            break;
        }
        const char *id = (const char *)sqlite3_column_text(r->get, 0);
        const char *payload = (const char *)sqlite3_column_text(r->get, 1);
        json_t *pj = payload ? json_loads(payload, 0, NULL) : NULL;
        if (!id || !pj) {
            json_decref(pj);
            log_warn("vector store: point %lld of '%s' has an unreadable payload; skipped",
                     (long long)coll_rowid(c, best[i].index), c->name);
            continue;
        }
        vstore_hit *h = &out[got++];
        snprintf(h->id, sizeof h->id, "%s", id);
        h->score = best[i].score;
        h->payload = pj;
    }
    reader_put(st, r);
    *n = got;
    return rc;
}

static int local_search(vstore *s, const char *name, const float *q, int dim, int k, float min_score,
                        vstore_hit **hits, int *n, char *err, size_t errlen) {
    local_store *st = (local_store *)s;
    float *qn = smp_malloc((size_t)dim * sizeof *qn);
    vsearch_hit *slots = NULL, *best = NULL;
    int *counts = NULL;
    vstore_hit *out = NULL;
    int rc = -SMP_E_NOMEM;
    if (!qn) return -SMP_E_NOMEM;
    memcpy(qn, q, (size_t)dim * sizeof *qn);
    vsearch_normalize(qn, dim);
    pthread_rwlock_rdlock(&st->lock);
    const coll *c = find(st, name);
    if (!c) {
        snprintf(err, errlen, "Collection '%s' not found", name);
        rc = -SMP_E_NOT_FOUND;
        goto unlock;
    }
    if (c->dim != dim) {
        snprintf(err, errlen, "collection '%s' holds %d-dimensional vectors, the query has %d dimensions", name,
                 c->dim, dim);
        rc = -SMP_E_CONFLICT;
        goto unlock;
    }
    if ((size_t)k > c->n) k = c->n ? (int)c->n : 1;
    int threads = st->tp ? tp_n_threads(st->tp) : 1;
    int ntasks = c->n >= vstore_local_split_rows * 2 && threads > 1 ? threads : 1;
    if ((size_t)ntasks > c->nblocks) ntasks = c->nblocks ? (int)c->nblocks : 1;
    slots = smp_malloc((size_t)ntasks * (size_t)k * sizeof *slots);
    counts = smp_calloc((size_t)ntasks, sizeof *counts);
    best = smp_malloc((size_t)k * sizeof *best);
    if (!slots || !counts || !best) goto unlock;
    scan_job job = {c, qn, min_score, k, ntasks, slots, counts, vsearch_scores()};
    if (ntasks > 1) tp_run(st->tp, scan_task, &job, ntasks);
    else scan_task(&job, 0, 0);
    /* Merge the per-task heaps. */
    vsearch_heap all;
    vsearch_heap_init(&all, best, k);
    for (int t = 0; t < ntasks; t++)
        for (int i = 0; i < counts[t]; i++) {
            vsearch_hit h = slots[(size_t)t * (size_t)k + (size_t)i];
            vsearch_heap_push(&all, h.score, h.index);
        }
    vsearch_heap_sort(&all);
    out = smp_calloc((size_t)(all.n ? all.n : 1), sizeof *out);
    if (!out) goto unlock;
    rc = fetch_hits(st, c, best, all.n, out, n, err, errlen);
    if (rc == 0) {
        *hits = out;
        out = NULL;
    }
unlock:
    pthread_rwlock_unlock(&st->lock);
    if (rc == -SMP_E_NOMEM) snprintf(err, errlen, "out of memory");
    if (out) vstore_hits_free(out, *n), *n = 0;
    smp_free(qn);
    smp_free(slots);
    smp_free(counts);
    smp_free(best);
    return rc;
}

/* ---- collections ------------------------------------------------------------- */

static int local_info(vstore *s, const char *name, vstore_info *out, char *err, size_t errlen) {
    local_store *st = (local_store *)s;
    pthread_rwlock_rdlock(&st->lock);
    const coll *c = find(st, name);
    if (c) {
        snprintf(out->name, sizeof out->name, "%s", c->name);
        out->dim = c->dim;
        out->points = (long long)c->n;
    }
    pthread_rwlock_unlock(&st->lock);
    if (c) return 0;
    snprintf(err, errlen, "Collection '%s' not found", name);
    return -SMP_E_NOT_FOUND;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const vstore_info *)a)->name, ((const vstore_info *)b)->name);
}

static int local_list(vstore *s, vstore_info **out, int *n, char *err, size_t errlen) {
    local_store *st = (local_store *)s;
    pthread_rwlock_rdlock(&st->lock);
    vstore_info *v = smp_calloc((size_t)(st->ncolls ? st->ncolls : 1), sizeof *v);
    int cnt = v ? st->ncolls : 0;
    for (int i = 0; i < cnt; i++) {
        snprintf(v[i].name, sizeof v[i].name, "%s", st->colls[i]->name);
        v[i].dim = st->colls[i]->dim;
        v[i].points = (long long)st->colls[i]->n;
    }
    pthread_rwlock_unlock(&st->lock);
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return -SMP_E_NOMEM;
    }
    qsort(v, (size_t)cnt, sizeof *v, by_name);
    *out = v;
    *n = cnt;
    return 0;
}

static int local_delete(vstore *s, const char *name, char *err, size_t errlen) {
    local_store *st = (local_store *)s;
    pthread_mutex_lock(&st->wmu);
    pthread_rwlock_wrlock(&st->lock);
    int rc = 0, idx = -1;
    for (int i = 0; i < st->ncolls; i++)
        if (!strcmp(st->colls[i]->name, name)) idx = i;
    if (idx < 0) {
        snprintf(err, errlen, "Collection '%s' not found", name);
        rc = -SMP_E_NOT_FOUND;
        goto out;
    }
    coll *c = st->colls[idx];
    sqlite3_stmt *d1 = NULL, *d2 = NULL;
    if ((rc = exec(st->wdb, "BEGIN IMMEDIATE", err, errlen)) != 0) goto out;
    if (sqlite3_prepare_v2(st->wdb, "DELETE FROM points WHERE coll = ?1", -1, &d1, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->wdb, "DELETE FROM collections WHERE id = ?1", -1, &d2, NULL) != SQLITE_OK) {
        rc = db_err(st->wdb, "delete collection", err, errlen);
    } else {
        sqlite3_bind_int64(d1, 1, c->id);
        sqlite3_bind_int64(d2, 1, c->id);
        if (sqlite3_step(d1) != SQLITE_DONE || sqlite3_step(d2) != SQLITE_DONE)
            rc = db_err(st->wdb, "delete collection", err, errlen);
    }
    sqlite3_finalize(d1);
    sqlite3_finalize(d2);
    if (rc == 0) rc = exec(st->wdb, "COMMIT", err, errlen);
    if (rc) {
        sqlite3_exec(st->wdb, "ROLLBACK", NULL, NULL, NULL);
        goto out;
    }
    st->colls[idx] = st->colls[--st->ncolls];
    coll_free(c);
out:
    pthread_rwlock_unlock(&st->lock);
    pthread_mutex_unlock(&st->wmu);
    return rc;
}

static bool local_health(vstore *s, json_t **out) {
    local_store *st = (local_store *)s;
    long long points = 0;
    pthread_rwlock_rdlock(&st->lock);
    int ncolls = st->ncolls;
    for (int i = 0; i < ncolls; i++) points += (long long)st->colls[i]->n;
    pthread_rwlock_unlock(&st->lock);
    *out = json_pack("{s:s,s:s,s:s,s:i,s:I,s:s}", "status", "healthy", "kind", "embedded", "path", st->path,
                     "collections", ncolls, "points", (json_int_t)points, "search", vsearch_impl_name());
    return true;
}

static void local_close(vstore *s) {
    local_store *st = (local_store *)s;
    for (int i = 0; i < st->ncolls; i++) coll_free(st->colls[i]);
    smp_free(st->colls);
    for (int i = 0; i < st->nidle; i++) reader_free(st->idle[i]);
    if (st->wdb) sqlite3_close(st->wdb);
    tp_free(st->tp);
    pthread_mutex_destroy(&st->wmu);
    pthread_mutex_destroy(&st->pool_mu);
    pthread_rwlock_destroy(&st->lock);
    smp_free(st->path);
    smp_free(st);
}

static const vstore_ops local_ops = {
    .kind = "embedded",
    .add = local_add,
    .search = local_search,
    .info = local_info,
    .list = local_list,
    .del = local_delete,
    .health = local_health,
    .close = local_close,
};

/* ---- open and load ------------------------------------------------------------- */

static int create_schema(sqlite3 *db, char *err, size_t errlen) {
    int rc = exec(db, "PRAGMA journal_mode=WAL", err, errlen);
    if (!rc) rc = exec(db, "PRAGMA synchronous=FULL", err, errlen);
    if (rc) return rc;
    sqlite3_stmt *st;
    int version = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_err(db, "read schema version", err, errlen);
    if (sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > SCHEMA_VERSION) {
        snprintf(err, errlen, "vector store: schema version %d was written by a newer Simpleton (this one reads %d)",
                 version, SCHEMA_VERSION);
        return -SMP_E_IO;
    }
    return exec(db,
                "BEGIN;"
                "CREATE TABLE IF NOT EXISTS collections(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
                " dim INTEGER NOT NULL, created_at REAL NOT NULL);"
                "CREATE TABLE IF NOT EXISTS points(rowid INTEGER PRIMARY KEY, coll INTEGER NOT NULL,"
                " id TEXT NOT NULL, vector BLOB NOT NULL, payload TEXT NOT NULL);"
                "CREATE INDEX IF NOT EXISTS points_by_coll ON points(coll);"
                "PRAGMA user_version=1;"
                "COMMIT;",
                err, errlen);
}

/* Read every collection and vector into memory. */
static int load(local_store *st, char *err, size_t errlen) {
    sqlite3_stmt *q = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(st->wdb, "SELECT id, name, dim FROM collections", -1, &q, NULL) != SQLITE_OK)
        return db_err(st->wdb, "load collections", err, errlen);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 1);
        int dim = sqlite3_column_int(q, 2);
        if (!name || !vstore_name_ok(name) || dim <= 0 || dim > 65536) {
            log_warn("vector store: skipping collection row %lld with a bad name or dimension",
                     (long long)sqlite3_column_int64(q, 0));
            continue;
        }
        coll *c = coll_new(name, sqlite3_column_int64(q, 0), dim);
        if (!c || colls_reserve(st) != 0) {
            coll_free(c);
            rc = -SMP_E_NOMEM;
            break;
        }
        st->colls[st->ncolls++] = c;
    }
    sqlite3_finalize(q);
    if (rc) goto nomem;
    /* Count first so every collection gets its blocks in one reservation. */
    for (int i = 0; i < st->ncolls; i++) {
        coll *c = st->colls[i];
        long long count = 0;
        if (sqlite3_prepare_v2(st->wdb, "SELECT count(*) FROM points WHERE coll = ?1", -1, &q, NULL) != SQLITE_OK)
            return db_err(st->wdb, "count points", err, errlen);
        sqlite3_bind_int64(q, 1, c->id);
        if (sqlite3_step(q) == SQLITE_ROW) count = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        if (count > 0 && coll_reserve(c, (size_t)count) != 0) goto nomem;
    }
    if (sqlite3_prepare_v2(st->wdb, "SELECT coll, rowid, vector FROM points ORDER BY rowid", -1, &q, NULL) !=
        SQLITE_OK)
        return db_err(st->wdb, "load points", err, errlen);
    long long skipped = 0;
    coll *last = NULL;
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t cid = sqlite3_column_int64(q, 0);
        if (!last || last->id != cid) {
            last = NULL;
            for (int i = 0; i < st->ncolls; i++)
                if (st->colls[i]->id == cid) last = st->colls[i];
        }
        const void *blob = sqlite3_column_blob(q, 2);
        int bytes = sqlite3_column_bytes(q, 2);
        if (!last || !blob || bytes != last->dim * (int)sizeof(float)) {
            skipped++;
            continue;
        }
        if (coll_reserve(last, 1) != 0) {
            sqlite3_finalize(q);
            goto nomem;
        }
        coll_append(last, blob, sqlite3_column_int64(q, 1));
    }
    sqlite3_finalize(q);
    if (step != SQLITE_DONE) return db_err(st->wdb, "load points", err, errlen);
    if (skipped) log_warn("vector store: skipped %lld points with no collection or a wrong vector size", skipped);
    return 0;
nomem:
    snprintf(err, errlen, "vector store: out of memory loading %s", st->path);
    return -SMP_E_NOMEM;
}

int vstore_open_local(const char *dir, vstore **out, char *err, size_t errlen) {
    *out = NULL;
    local_store *st = smp_calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -SMP_E_NOMEM;
    }
    st->base.ops = &local_ops;
    pthread_mutex_init(&st->wmu, NULL);
    pthread_mutex_init(&st->pool_mu, NULL);
    /* Writers first: a steady stream of searches must not starve an ingest. */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&st->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    int rc = make_dirs(dir, err, errlen);
    if (rc) goto fail;
    size_t plen = strlen(dir) + sizeof "/vectors.sqlite3";
    st->path = smp_malloc(plen);
    if (!st->path) {
        rc = -SMP_E_NOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(st->path, plen, "%s/vectors.sqlite3", dir);
    if (sqlite3_open_v2(st->path, &st->wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = db_err(st->wdb, "open", err, errlen);
        goto fail;
    }
    sqlite3_busy_timeout(st->wdb, 5000);
    if ((rc = create_schema(st->wdb, err, errlen)) != 0) goto fail;
    uint64_t t0 = util_now_ns();
    if ((rc = load(st, err, errlen)) != 0) goto fail;
    if (tp_cores() > 1 && tp_new(0, &st->tp) != 0) st->tp = NULL; /* searches then run on one thread */
    const char *crash = getenv("SIMPLETON_TEST_CRASH_AFTER_POINTS");
    if (crash && (crash_after = atol(crash)) > 0) {
        vstore_local_insert_hook = crash_hook;
        log_warn("vector store: SIMPLETON_TEST_CRASH_AFTER_POINTS=%ld: the process will kill itself mid-ingest",
                 crash_after);
    }
    long long points = 0;
    for (int i = 0; i < st->ncolls; i++) points += (long long)st->colls[i]->n;
    log_info("vector store: %s: %d collections, %lld points loaded in %.0f ms (%s search)", st->path, st->ncolls,
             points, (double)(util_now_ns() - t0) / 1e6, vsearch_impl_name());
    *out = &st->base;
    return 0;
fail:
    local_close(&st->base);
    return rc;
}
