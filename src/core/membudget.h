/* membudget.h - a memory budget shared by heavy jobs.
 *
 * A job that is about to hold a large working set (a transcription's state
 * and windows, a decoded image) reserves its estimate first and releases it
 * when done. While the budget is spent, a reservation waits (bounded) for
 * others to release; then it fails, and the caller answers 503 instead of
 * allocating. The budget counts promises, not allocations: it is only as
 * good as the estimates callers reserve.
 *
 * Thread-safe. A NULL budget is unlimited: every reservation succeeds at
 * once (tools and tests that never set one up). */
#ifndef SMP_MEMBUDGET_H
#define SMP_MEMBUDGET_H

#include <stdbool.h>
#include <stddef.h>

typedef struct membudget membudget;

/* A budget of limit bytes; NULL when memory runs out. */
membudget *membudget_new(size_t limit);
void membudget_free(membudget *b); /* NULL ok; nobody may hold a reservation */

/* Reserve bytes. While they do not fit beside what others hold, wait up to
 * wait_ms (0: not at all) for releases, polling cancelled(ud) (may be NULL)
 * every 100 ms. Returns 0 (the bytes are held: membudget_release them);
 * -SMP_E_TOO_LARGE when bytes exceed the whole limit (they never fit);
 * -SMP_E_UNAVAILABLE when the wait ended without room; 1 when cancelled. */
int membudget_reserve(membudget *b, size_t bytes, int wait_ms, bool (*cancelled)(void *ud), void *ud);
void membudget_release(membudget *b, size_t bytes);

size_t membudget_limit(const membudget *b); /* SIZE_MAX for NULL */
size_t membudget_in_use(membudget *b);      /* 0 for NULL */

/* The process-wide budget of heavy jobs (HEAVY_JOB_MEMORY_MB), made once by
 * main before requests are served; NULL (unlimited) until then. */
int membudget_heavy_init(size_t limit);
membudget *membudget_heavy(void);

#endif
