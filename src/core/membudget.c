/* membudget.c - a memory budget shared by heavy jobs (see membudget.h).
 *
 * Main data structure: membudget, the limit and the bytes reserved under
 * one mutex; a condition variable (on CLOCK_MONOTONIC, so a clock change
 * cannot stretch a wait) wakes the waiters when bytes are released. Waiters
 * are not queued: whoever fits when woken takes the room, so a large job can
 * lose to a stream of small ones until its wait ends (the waits are short;
 * a queue would make the small ones wait behind it instead). */
#include "core/membudget.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "core/alloc.h"
#include "core/errors.h"

#define POLL_MS 100 /* how often a waiter looks at its cancel callback */

struct membudget {
    pthread_mutex_t mu;
    pthread_cond_t freed;
    size_t limit, used;
};

membudget *membudget_new(size_t limit) {
    membudget *b = smp_calloc(1, sizeof *b);
    if (!b) return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->freed, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&b->mu, NULL);
    b->limit = limit;
    return b;
}

void membudget_free(membudget *b) {
    if (!b) return;
    pthread_cond_destroy(&b->freed);
    pthread_mutex_destroy(&b->mu);
    smp_free(b);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int membudget_reserve(membudget *b, size_t bytes, int wait_ms, bool (*cancelled)(void *ud), void *ud) {
    if (!b) return 0;
    if (bytes > b->limit) return -SMP_E_TOO_LARGE;
    int64_t deadline = now_ms() + (wait_ms > 0 ? wait_ms : 0);
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    while (bytes > b->limit - b->used) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            rc = -SMP_E_UNAVAILABLE;
            break;
        }
        if (cancelled && cancelled(ud)) {
            rc = 1;
            break;
        }
        int64_t step = left < POLL_MS ? left : POLL_MS, until = now_ms() + step;
        struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000};
        pthread_cond_timedwait(&b->freed, &b->mu, &ts);
    }
    if (rc == 0) b->used += bytes;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void membudget_release(membudget *b, size_t bytes) {
    if (!b || !bytes) return;
    pthread_mutex_lock(&b->mu);
    SMP_ASSERT(bytes <= b->used);
    b->used -= bytes;
    pthread_cond_broadcast(&b->freed);
    pthread_mutex_unlock(&b->mu);
}

size_t membudget_limit(const membudget *b) { return b ? b->limit : SIZE_MAX; }

size_t membudget_in_use(membudget *b) {
    if (!b) return 0;
    pthread_mutex_lock(&b->mu);
    size_t u = b->used;
    pthread_mutex_unlock(&b->mu);
    return u;
}

static membudget *heavy;

int membudget_heavy_init(size_t limit) {
    SMP_ASSERT(!heavy);
    heavy = membudget_new(limit);
    return heavy ? 0 : -SMP_E_NOMEM;
}

membudget *membudget_heavy(void) { return heavy; }
