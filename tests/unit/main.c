/* main.c - unit-test runner: forks once per registered test (see test.h). */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/util.h"
#include "test.h"

#define MAX_TESTS 2048
/* A child's exit status for "skipped" (the one automake uses). */
#define SKIP_STATUS 77

static struct {
    const char *name, *file;
    test_fn fn;
} tests[MAX_TESTS];
static int ntests;
int test_failures;
static const char *current; /* the running test's name, in its child */

void test_skip(const char *why) {
    if (test_failures) _exit(1);
    printf("SKIP %s: %s\n", current, why);
    fflush(stdout);
    fflush(stderr);
    _exit(SKIP_STATUS);
}

void *test_slurp(const char *path, size_t *len) {
    char *p;
    size_t n;
    if (util_read_file(path, (size_t)1 << 31, &p, &n) != 0) return NULL;
    if (len) *len = n;
    return p;
}

static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

float *test_read_wav(const char *path, size_t *n) {
    size_t len;
    unsigned char *b = test_slurp(path, &len);
    float *pcm = NULL;
    if (!b || len < 12 || memcmp(b, "RIFF", 4) || memcmp(b + 8, "WAVE", 4)) goto done;
    for (size_t off = 12; off + 8 <= len;) {
        uint32_t sz = le32(b + off + 4);
        if (!memcmp(b + off, "fmt ", 4) && off + 8 + 16 <= len) {
            const unsigned char *f = b + off + 8;
            if ((f[0] | f[1] << 8) != 1 || (f[2] | f[3] << 8) != 1 || le32(f + 4) != 16000 || (f[14] | f[15] << 8) != 16)
                goto done;
        } else if (!memcmp(b + off, "data", 4)) {
            size_t bytes = sz <= len - off - 8 ? sz : len - off - 8;
            *n = bytes / 2;
            pcm = smp_malloc(*n * sizeof *pcm + 1);
            for (size_t i = 0; pcm && i < *n; i++)
                pcm[i] = (float)(int16_t)(b[off + 8 + 2 * i] | b[off + 9 + 2 * i] << 8) / 32768.0f;
            break;
        }
        off += 8 + sz + (sz & 1);
    }
done:
    smp_free(b);
    return pcm;
}

void test_register(const char *name, const char *file, test_fn fn) {
    if (ntests < MAX_TESTS) tests[ntests++] = (typeof(tests[0])){name, file, fn};
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < ntests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            current = tests[i].name;
            tests[i].fn();
            fflush(stderr);
            _exit(test_failures ? 1 : 0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP_STATUS) {
            skipped++;
        } else if (ok) {
            passed++;
        } else {
            failed++;
            printf("FAIL %s (%s)%s\n", tests[i].name, tests[i].file,
                   WIFSIGNALED(st) ? " [crashed]" : "");
        }
    }
    printf("unit: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
