/* workq.c - see workq.h. A ring of (fn, arg) under one mutex; workers sleep
 * on a condition variable. Jobs are coarse (milliseconds to minutes), so one
 * lock is never the bottleneck. */
#include "workq.h"

#include <pthread.h>
#include <stdbool.h>

#include "alloc.h"
#include "errors.h"

typedef struct {
    workq_fn fn;
    void *arg;
} job;

struct workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *ring;
    size_t cap, head, len;
    bool stopping;
    int nthreads;
    pthread_t *threads;
};

static void *worker(void *p) {
    workq *q = p;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->len && !q->stopping) pthread_cond_wait(&q->cv, &q->mu);
        if (!q->len && q->stopping) break;
        job j = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
        pthread_mutex_unlock(&q->mu);
        j.fn(j.arg);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

int workq_new(int threads, size_t max_queued, workq **out) {
    workq *q = smp_calloc(1, sizeof *q);
    if (!q) return -SMP_E_NOMEM;
    q->cap = max_queued ? max_queued : 1;
    q->ring = smp_calloc(q->cap, sizeof *q->ring);
    q->threads = smp_calloc((size_t)threads, sizeof *q->threads);
    if (!q->ring || !q->threads) goto fail;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&q->threads[i], NULL, worker, q) != 0) break;
        q->nthreads++;
    }
    if (q->nthreads == 0) {
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
        goto fail;
    }
    *out = q;
    return 0;
fail:
    smp_free(q->ring);
    smp_free(q->threads);
    smp_free(q);
    return -SMP_E_NOMEM;
}

int workq_submit(workq *q, workq_fn fn, void *arg) {
    pthread_mutex_lock(&q->mu);
    int rc = 0;
    if (q->stopping)
        rc = -SMP_E_UNAVAILABLE;
    else if (q->len == q->cap)
        rc = -SMP_E_TOO_MANY;
    else {
        q->ring[(q->head + q->len) % q->cap] = (job){fn, arg};
        q->len++;
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

size_t workq_pending(workq *q) {
    pthread_mutex_lock(&q->mu);
    size_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void workq_free(workq *q) {
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->nthreads; i++) pthread_join(q->threads[i], NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    smp_free(q->ring);
    smp_free(q->threads);
    smp_free(q);
}
