/* threadpool.c - persistent workers, a shared task counter, spin-then-futex
 * hand-off.
 *
 * Data: one tp_pool. `work` packs the current run's task count (high 32 bits)
 * with the next task index (low 32 bits). A run stores (fn, arg), resets
 * `done`, publishes work = (n_tasks, 0) and bumps `wake`, the futex word
 * sleeping workers wait on. Workers and the caller claim task i by a
 * compare-and-swap of work from (n, i) to (n, i + 1), i < n. Everything a
 * claim depends on is in the word it swaps, so a successful claim is always
 * a task of the run that is current at that instant, and that run cannot end
 * (nor fn and arg change) before the claim's task has counted itself in
 * `done`: a worker that wakes late or was preempted holding an old word
 * either fails its swap or, if the word happens to match, claims a real task
 * of the current run. The caller returns when `done` reaches n_tasks, so it
 * waits only for tasks actually running, not for workers the OS has not
 * scheduled (on a busy 2-core machine it then just does the work itself).
 * `sleepers` and `caller_sleeps` say whether a futex wake is needed at all,
 * so runs among spinning threads cost no system call. */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/threadpool.h"

/* Polls before sleeping: about 100 us with the pause instruction. */
#define TP_SPIN 4096

typedef struct {
    struct tp_pool *pool;
    int id;
} tp_worker;

struct tp_pool {
    int n_threads;
    int n_started; /* workers running (n_threads - 1 once started) */
    pthread_t *threads;
    tp_worker *workers;
    pthread_mutex_t run_lock;

    tp_fn fn;                /* read only after claiming a task of the run */
    void *arg;

    _Atomic uint64_t work;   /* n_tasks << 32 | next task */
    _Atomic uint32_t wake;   /* futex: bumped for every run and at shutdown */
    _Atomic uint32_t done;   /* futex: tasks finished in this run */
    _Atomic int sleepers;
    _Atomic int caller_sleeps;
    _Atomic bool stop;
};

static void futex_wait(_Atomic uint32_t *addr, uint32_t expect) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr, int n) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
    __builtin_ia32_pause();
}

int tp_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* Claim and run tasks of the current run until none is left. */
static void take_tasks(tp_pool *p, int thread) {
    uint64_t w = atomic_load(&p->work);
    for (;;) {
        uint32_t n = (uint32_t)(w >> 32), i = (uint32_t)w;
        if (i >= n) return;
        if (!atomic_compare_exchange_weak(&p->work, &w, w + 1)) continue;
        p->fn(p->arg, (int)i, thread);
        if (atomic_fetch_add(&p->done, 1) + 1 == n && atomic_load(&p->caller_sleeps)) futex_wake(&p->done, 1);
        w = atomic_load(&p->work);
    }
}

static void *worker_main(void *v) {
    tp_worker *w = v;
    tp_pool *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        uint32_t k = atomic_load(&p->wake);
        for (int i = 0; i < TP_SPIN && k == seen; i++) {
            cpu_relax();
            k = atomic_load(&p->wake);
        }
        if (k == seen) {
            atomic_fetch_add(&p->sleepers, 1);
            while ((k = atomic_load(&p->wake)) == seen) futex_wait(&p->wake, seen);
            atomic_fetch_sub(&p->sleepers, 1);
        }
        seen = k;
        if (atomic_load(&p->stop)) break;
        take_tasks(p, w->id);
    }
    return NULL;
}

int tp_new(int n_threads, tp_pool **out) {
    *out = NULL;
    if (n_threads <= 0) n_threads = tp_cores();
    if (n_threads > 256) n_threads = 256;
    tp_pool *p = smp_calloc(1, sizeof *p);
    if (!p) return -SMP_E_NOMEM;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->run_lock, NULL);
    if (n_threads > 1) {
        p->threads = smp_calloc((size_t)n_threads, sizeof *p->threads);
        p->workers = smp_calloc((size_t)n_threads, sizeof *p->workers);
        if (!p->threads || !p->workers) {
            tp_free(p);
            return -SMP_E_NOMEM;
        }
        for (int i = 1; i < n_threads; i++) {
            p->workers[i] = (tp_worker){p, i};
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i]) != 0) {
                tp_free(p);
                return -SMP_E_INTERNAL;
            }
            p->n_started++;
        }
    }
    *out = p;
    return 0;
}

void tp_free(tp_pool *p) {
    if (!p) return;
    if (p->n_started) {
        atomic_store(&p->stop, true);
        atomic_fetch_add(&p->wake, 1);
        futex_wake(&p->wake, INT_MAX);
        for (int i = 1; i <= p->n_started; i++) pthread_join(p->threads[i], NULL);
    }
    pthread_mutex_destroy(&p->run_lock);
    smp_free(p->threads);
    smp_free(p->workers);
    smp_free(p);
}

int tp_n_threads(const tp_pool *p) {
    return p ? p->n_threads : 1;
}

void tp_run(tp_pool *p, tp_fn fn, void *arg, int n_tasks) {
    if (n_tasks <= 0) return;
    if (!p || p->n_started == 0 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    /* The previous run's word is exhausted (i == n), so nobody can claim
     * anything until the new word is published. */
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->done, 0);
    atomic_store(&p->work, (uint64_t)(uint32_t)n_tasks << 32); /* publishes fn, arg */
    atomic_fetch_add(&p->wake, 1);
    if (atomic_load(&p->sleepers) > 0) futex_wake(&p->wake, INT_MAX);

    take_tasks(p, 0);

    uint32_t d = atomic_load(&p->done);
    for (int i = 0; i < TP_SPIN && d != (uint32_t)n_tasks; i++) {
        cpu_relax();
        d = atomic_load(&p->done);
    }
    if (d != (uint32_t)n_tasks) {
        atomic_store(&p->caller_sleeps, 1);
        while ((d = atomic_load(&p->done)) != (uint32_t)n_tasks) futex_wait(&p->done, d);
        atomic_store(&p->caller_sleeps, 0);
    }
    pthread_mutex_unlock(&p->run_lock);
}
