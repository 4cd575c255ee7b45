/* test_membudget.c - core/membudget.h: reserve and release, a job larger
 * than the whole budget, a wait that ends in 503, a wait that a release
 * ends, cancellation while waiting, the unlimited NULL budget, and threads
 * hammering one budget never holding more than its limit. */
#include "test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "core/errors.h"
#include "core/membudget.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(membudget_reserve_release) {
    membudget *b = membudget_new(100);
    REQUIRE(b);
    CHECK_INT(membudget_limit(b), 100);
    CHECK_INT(membudget_reserve(b, 60, 0, NULL, NULL), 0);
    CHECK_INT(membudget_reserve(b, 40, 0, NULL, NULL), 0);
    CHECK_INT(membudget_in_use(b), 100);
    CHECK_INT(membudget_reserve(b, 1, 0, NULL, NULL), -SMP_E_UNAVAILABLE); /* spent, no wait */
    membudget_release(b, 40);
    CHECK_INT(membudget_reserve(b, 40, 0, NULL, NULL), 0);
    CHECK_INT(membudget_reserve(b, 101, 1000, NULL, NULL), -SMP_E_TOO_LARGE); /* never fits: no wait */
    CHECK_INT(membudget_reserve(b, SIZE_MAX, 0, NULL, NULL), -SMP_E_TOO_LARGE);
    membudget_release(b, 40);
    membudget_release(b, 60);
    membudget_release(b, 0);
    CHECK_INT(membudget_in_use(b), 0);
    membudget_free(b);
    membudget_free(NULL);
    /* NULL: unlimited */
    CHECK_INT(membudget_reserve(NULL, SIZE_MAX, 0, NULL, NULL), 0);
    membudget_release(NULL, SIZE_MAX);
    CHECK_INT(membudget_in_use(NULL), 0);
    CHECK(membudget_limit(NULL) == SIZE_MAX);
}

TEST(membudget_wait_times_out) {
    membudget *b = membudget_new(10);
    REQUIRE(b);
    REQUIRE(membudget_reserve(b, 8, 0, NULL, NULL) == 0);
    double t0 = now_s();
    CHECK_INT(membudget_reserve(b, 5, 250, NULL, NULL), -SMP_E_UNAVAILABLE);
    double waited = now_s() - t0;
    CHECK(waited >= 0.24 && waited < 2.0);
    CHECK_INT(membudget_in_use(b), 8);
    membudget_release(b, 8);
    membudget_free(b);
}

typedef struct {
    membudget *b;
    int delay_ms;
    size_t bytes;
} releaser;

static void *release_later(void *arg) {
    releaser *r = arg;
    usleep((useconds_t)r->delay_ms * 1000);
    membudget_release(r->b, r->bytes);
    return NULL;
}

TEST(membudget_wait_ends_on_release) {
    membudget *b = membudget_new(10);
    REQUIRE(b);
    REQUIRE(membudget_reserve(b, 10, 0, NULL, NULL) == 0);
    releaser r = {b, 150, 10};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, release_later, &r) == 0);
    double t0 = now_s();
    CHECK_INT(membudget_reserve(b, 7, 5000, NULL, NULL), 0);
    double waited = now_s() - t0;
    CHECK(waited >= 0.1 && waited < 2.0); /* woken by the release, not the deadline */
    pthread_join(t, NULL);
    CHECK_INT(membudget_in_use(b), 7);
    membudget_release(b, 7);
    membudget_free(b);
}

static bool after_calls(void *ud) { return --*(int *)ud < 0; }

TEST(membudget_wait_cancelled) {
    membudget *b = membudget_new(10);
    REQUIRE(b);
    REQUIRE(membudget_reserve(b, 10, 0, NULL, NULL) == 0);
    int calls = 2;
    double t0 = now_s();
    CHECK_INT(membudget_reserve(b, 1, 10000, after_calls, &calls), 1);
    CHECK(now_s() - t0 < 2.0);
    CHECK_INT(membudget_in_use(b), 10);
    membudget_release(b, 10);
    membudget_free(b);
}

/* Eight threads reserve and release sizes of 1..40 out of 100, and count
 * what they hold: the count never passes the limit and every reservation
 * eventually succeeds (the waits are long enough). */
typedef struct {
    membudget *b;
    atomic_size_t held, peak;
    atomic_int failures;
} hammer;

static void *hammer_run(void *arg) {
    hammer *h = arg;
    uint32_t x = (uint32_t)(uintptr_t)pthread_self();
    for (int i = 0; i < 2000; i++) {
        x = x * 1664525u + 1013904223u;
        size_t n = 1 + (x >> 8) % 40;
        if (membudget_reserve(h->b, n, 10000, NULL, NULL) != 0) {
            atomic_fetch_add(&h->failures, 1);
            continue;
        }
        size_t now = atomic_fetch_add(&h->held, n) + n, p = atomic_load(&h->peak);
        while (now > p && !atomic_compare_exchange_weak(&h->peak, &p, now)) {
        }
        if (i % 16 == 0) sched_yield();
        atomic_fetch_sub(&h->held, n);
        membudget_release(h->b, n);
    }
    return NULL;
}

TEST(membudget_threads_never_exceed_limit) {
    hammer h = {.b = membudget_new(100)};
    REQUIRE(h.b);
    atomic_init(&h.held, 0);
    atomic_init(&h.peak, 0);
    atomic_init(&h.failures, 0);
    pthread_t t[8];
    for (int i = 0; i < 8; i++) REQUIRE(pthread_create(&t[i], NULL, hammer_run, &h) == 0);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&h.peak) <= 100);
    CHECK(atomic_load(&h.peak) > 40); /* they did overlap */
    CHECK_INT(atomic_load(&h.failures), 0);
    CHECK_INT(membudget_in_use(h.b), 0);
    membudget_free(h.b);
}
