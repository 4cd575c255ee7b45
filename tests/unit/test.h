/* test.h - a small unit-test registry.
 *
 * TEST(name) { ... } registers a test at load time. The runner (main.c) runs
 * each test in its own forked process, so a crash or leak in one cannot touch
 * another, and ends with "N passed, N failed, N skipped". CHECK() records a
 * failure and goes on; REQUIRE() stops the test; SKIP(why) ends a test that
 * cannot run on this machine (no AVX2, no pdftotext) so that it is counted as
 * skipped, not passed. Run some tests: unit_tests NAME-substring. */
#ifndef SMP_TEST_H
#define SMP_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
extern int test_failures;

#define TEST(name)                                                                   \
    static void test_##name(void);                                                   \
    __attribute__((constructor)) static void test_reg_##name(void) {                 \
        test_register(#name, __FILE__, test_##name);                                 \
    }                                                                                \
    static void test_##name(void)

/* Ends the test as skipped, saying why (a test that has already failed a
 * CHECK still counts as failed). */
__attribute__((noreturn)) void test_skip(const char *why);
#define SKIP(why) test_skip(why)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            test_failures++;                                                         \
        }                                                                            \
    } while (0)

#define REQUIRE(cond)                                                                \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  %s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond); \
            test_failures++;                                                         \
            return;                                                                  \
        }                                                                            \
    } while (0)

#define CHECK_STR(a, b)                                                              \
    do {                                                                             \
        const char *a_ = (a), *b_ = (b);                                             \
        if (!a_ || !b_ || strcmp(a_, b_)) {                                          \
            fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,       \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                         \
            test_failures++;                                                         \
        }                                                                            \
    } while (0)

#define CHECK_INT(a, b)                                                              \
    do {                                                                             \
        long long a_ = (long long)(a), b_ = (long long)(b);                          \
        if (a_ != b_) {                                                              \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_); \
            test_failures++;                                                         \
        }                                                                            \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                        \
    do {                                                                             \
        double a_ = (double)(a), b_ = (double)(b);                                   \
        if (!(fabs(a_ - b_) <= (tol))) {                                             \
            fprintf(stderr, "  %s:%d: %s == %g, expected %g (tol %g)\n", __FILE__, __LINE__, #a, a_, b_, (double)(tol)); \
            test_failures++;                                                         \
        }                                                                            \
    } while (0)

/* Shared helpers (main.c). test_slurp: a whole file, NUL-terminated (owned,
 * smp_free; len may be NULL), or NULL. test_read_wav: a 16 kHz mono 16-bit
 * PCM WAV as floats (int16 / 32768; owned), or NULL. */
#include <stddef.h>
void *test_slurp(const char *path, size_t *len);
float *test_read_wav(const char *path, size_t *n);

#endif
