/* main.c - unit-test runner: forks once per registered test (see test.h). */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define MAX_TESTS 2048

static struct {
    const char *name, *file;
    test_fn fn;
} tests[MAX_TESTS];
static int ntests;
int test_failures;

void test_register(const char *name, const char *file, test_fn fn) {
    if (ntests < MAX_TESTS) tests[ntests++] = (typeof(tests[0])){name, file, fn};
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    for (int i = 0; i < ntests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            tests[i].fn();
            fflush(stderr);
            _exit(test_failures ? 1 : 0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (ok) {
            passed++;
        } else {
            failed++;
            printf("FAIL %s (%s)%s\n", tests[i].name, tests[i].file,
                   WIFSIGNALED(st) ? " [crashed]" : "");
        }
    }
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
