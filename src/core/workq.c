/* workq.c - see workq.h. One mutex guards a ring of waiting (fn, arg) jobs
 * and a stack of idle workers. A job submitted while a worker is idle goes
 * straight to the worker that went idle last (LIFO), woken on its own
 * condition variable; only when every worker is busy does it wait in the
 * ring. LIFO matters more than it looks: with a FIFO wake-up a stream of
 * sequential requests visits all REQUEST_WORKERS threads in turn, each with a
 * cold stack, cold allocator cache and cold upstream connection; measured on
 * the gateway hop this way (bench/RESULTS.md). Jobs are coarse (tens of
 * microseconds to minutes), so one lock is never the bottleneck. */
#include "workq.h"

#include <pthread.h>
#include <stdbool.h>

#include "alloc.h"
#include "errors.h"

typedef struct {
    workq_fn fn;
    void *arg;
} job;

typedef struct {
    struct workq *q;
    pthread_t thread;
    pthread_cond_t cv; /* signalled when `given` is set or at shutdown */
    job given;         /* handed over directly by workq_submit */
    bool has_given;
} slot;

struct workq {
    pthread_mutex_t mu;
    job *ring;
    size_t cap, head, len;
    bool stopping;
    int nthreads;
    slot *slots;
    int *idle; /* indices into slots; idle[nidle - 1] went idle last */
    int nidle;
};

static void *worker(void *p) {
    slot *s = p;
    workq *q = s->q;
    int self = (int)(s - q->slots);
    pthread_mutex_lock(&q->mu);
    for (;;) {
        job j;
        if (s->has_given) {
            j = s->given;
            s->has_given = false;
        } else if (q->len) {
            j = q->ring[q->head];
            q->head = (q->head + 1) % q->cap;
            q->len--;
        } else if (q->stopping) {
            break;
        } else {
            q->idle[q->nidle++] = self;
            /* Leaves the stack only through workq_submit (which sets
             * has_given) or shutdown (which empties the stack). */
            while (!s->has_given && !q->stopping) pthread_cond_wait(&s->cv, &q->mu);
            continue;
        }
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
    if (threads < 1) threads = 1;
    q->cap = max_queued ? max_queued : 1;
    q->ring = smp_calloc(q->cap, sizeof *q->ring);
    q->slots = smp_calloc((size_t)threads, sizeof *q->slots);
    q->idle = smp_calloc((size_t)threads, sizeof *q->idle);
    if (!q->ring || !q->slots || !q->idle) goto fail;
    pthread_mutex_init(&q->mu, NULL);
    for (int i = 0; i < threads; i++) {
        slot *s = &q->slots[i];
        s->q = q;
        pthread_cond_init(&s->cv, NULL);
        if (pthread_create(&s->thread, NULL, worker, s) != 0) {
            pthread_cond_destroy(&s->cv);
            break;
        }
        q->nthreads++;
    }
    if (q->nthreads == 0) {
        pthread_mutex_destroy(&q->mu);
        goto fail;
    }
    *out = q;
    return 0;
fail:
    smp_free(q->ring);
    smp_free(q->slots);
    smp_free(q->idle);
    smp_free(q);
    return -SMP_E_NOMEM;
}

int workq_submit(workq *q, workq_fn fn, void *arg) {
    pthread_mutex_lock(&q->mu);
    int rc = 0;
    if (q->stopping) {
        rc = -SMP_E_UNAVAILABLE;
    } else if (q->nidle) {
        slot *s = &q->slots[q->idle[--q->nidle]];
        s->given = (job){fn, arg};
        s->has_given = true;
        pthread_cond_signal(&s->cv);
    } else if (q->len == q->cap) {
        rc = -SMP_E_TOO_MANY;
    } else {
        q->ring[(q->head + q->len) % q->cap] = (job){fn, arg};
        q->len++;
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
    for (int i = 0; i < q->nidle; i++) pthread_cond_signal(&q->slots[q->idle[i]].cv);
    q->nidle = 0;
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->nthreads; i++) {
        pthread_join(q->slots[i].thread, NULL);
        pthread_cond_destroy(&q->slots[i].cv);
    }
    pthread_mutex_destroy(&q->mu);
    smp_free(q->ring);
    smp_free(q->slots);
    smp_free(q->idle);
    smp_free(q);
}
