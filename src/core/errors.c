/* errors.c - lookups in the error table of errors.h. */
#include "errors.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static const struct {
    int status;
    const char *message;
    const char *name;
} table[] = {
#define SMP_ERR_ROW(name, status, msg) {status, msg, #name},
    SMP_ERRORS(SMP_ERR_ROW)
#undef SMP_ERR_ROW
};

static int idx(int code) {
    if (code < 0) code = -code;
    return code < SMP_E__COUNT ? code : SMP_E_INTERNAL;
}

int smp_err_status(int code) { return table[idx(code)].status; }
const char *smp_err_message(int code) { return table[idx(code)].message; }

static char lower_names[SMP_E__COUNT][32];
static pthread_once_t lower_once = PTHREAD_ONCE_INIT;

static void make_lower_names(void) {
    for (int i = 0; i < SMP_E__COUNT; i++) {
        const char *s = table[i].name;
        int j = 0;
        for (; s[j] && j < 31; j++) lower_names[i][j] = (char)tolower((unsigned char)s[j]);
        lower_names[i][j] = '\0';
    }
}

const char *smp_err_name(int code) {
    pthread_once(&lower_once, make_lower_names);
    return lower_names[idx(code)];
}

void smp_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
