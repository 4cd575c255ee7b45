/* workq.h - a fixed pool of worker threads fed from a bounded FIFO.
 *
 * Streams and heavy in-process request work run here (textgen_submit says
 * which). workq_submit refuses with -SMP_E_TOO_MANY when the queue is full,
 * so callers can answer 503 instead of piling up work. */
#ifndef SMP_WORKQ_H
#define SMP_WORKQ_H

#include <stddef.h>

typedef struct workq workq;
typedef void (*workq_fn)(void *arg);

int workq_new(int threads, size_t max_queued, workq **out);
/* Returns 0, or -SMP_E_TOO_MANY (queue full) / -SMP_E_UNAVAILABLE (stopping). */
int workq_submit(workq *q, workq_fn fn, void *arg);
/* Jobs waiting (not running). */
size_t workq_pending(workq *q);
/* Finish queued and running jobs, then join the threads and free. NULL ok. */
void workq_free(workq *q);

#endif
