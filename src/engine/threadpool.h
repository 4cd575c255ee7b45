/* threadpool.h - a persistent compute pool with a parallel-for.
 *
 * tp_run(pool, fn, arg, n) calls fn(arg, task, thread) once for every task in
 * [0, n) and returns when all have finished. Tasks are handed out one at a
 * time from a shared counter, so uneven tasks (or a busy core) balance out.
 * The calling thread works too: a pool of N threads starts N-1 workers, and
 * `thread` is in [0, N) (0 is the caller), so fn can index per-thread scratch.
 *
 * Workers spin briefly on a generation counter after each run (back-to-back
 * runs, like the matmuls of one forward pass, then cost no system call), then
 * sleep on a futex. tp_run is serialised by a mutex, so several sessions may
 * share one pool: their runs interleave, each one whole.
 *
 * Ownership: the caller owns the pool (tp_free). fn must not call tp_run on the
 * same pool. */
#ifndef SMP_THREADPOOL_H
#define SMP_THREADPOOL_H

typedef struct tp_pool tp_pool;

typedef void (*tp_fn)(void *arg, int task, int thread);

/* n_threads <= 0: one per online core. Returns 0, -SMP_E_NOMEM or
 * -SMP_E_INTERNAL (a thread could not be started). */
int tp_new(int n_threads, tp_pool **out);
void tp_free(tp_pool *p);
int tp_n_threads(const tp_pool *p);
/* Number of online cores (at least 1). */
int tp_cores(void);

/* Run fn for tasks [0, n_tasks); returns when every task is done. A NULL pool
 * runs everything on the calling thread. */
void tp_run(tp_pool *p, tp_fn fn, void *arg, int n_tasks);

#endif
