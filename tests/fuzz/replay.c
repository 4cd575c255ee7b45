/* replay.c - run a fuzz target over a saved corpus without libFuzzer.
 *
 * Linked with any tests/fuzz/fuzz_*.c into build/fuzz_<name>_replay: calls
 * LLVMFuzzerTestOneInput once per regular file in the directory given, each
 * file in an exact-size heap buffer (so ASan sees overreads), in name order.
 * Prints "fuzz replay <dir>: N inputs"; exits non-zero on a bad directory or
 * one with no files (a missing corpus must not pass silently). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read path into an exact-size buffer (*data NULL for an empty file). */
static int slurp(const char *path, uint8_t **data, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    struct stat st;
    int rc = -1;
    *data = NULL;
    if (fstat(fileno(f), &st) || st.st_size < 0) goto done;
    *size = (size_t)st.st_size;
    if (*size && !(*data = smp_malloc(*size))) goto done;
    if (*size && fread(*data, 1, *size, f) != *size) goto done;
    rc = 0;
done:
    if (rc) smp_free(*data), *data = NULL;
    fclose(f);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fuzz replay %s: cannot open directory\n", dir);
        return 1;
    }
    char **paths = NULL;
    size_t n = 0, cap = 0;
    int rc = 1;
    for (struct dirent *e; (e = readdir(d));) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) || !S_ISREG(st.st_mode)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = smp_realloc(paths, cap * sizeof *paths);
            if (!grown) goto done;
            paths = grown;
        }
        if (!(paths[n] = smp_strdup(path))) goto done;
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "fuzz replay %s: no input files\n", dir);
        goto done;
    }
    qsort(paths, n, sizeof *paths, by_name);
    for (size_t i = 0; i < n; i++) {
        uint8_t *data;
        size_t size;
        if (slurp(paths[i], &data, &size)) {
            fprintf(stderr, "fuzz replay: cannot read %s\n", paths[i]);
            goto done;
        }
        static const uint8_t empty[1];
        LLVMFuzzerTestOneInput(data ? data : empty, data ? size : 0);
        smp_free(data);
    }
    printf("fuzz replay %s: %zu inputs\n", dir, n);
    rc = 0;
done:
    for (size_t i = 0; i < n; i++) smp_free(paths[i]);
    smp_free(paths);
    closedir(d);
    return rc;
}
