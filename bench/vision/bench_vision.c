/* bench_vision.c - in-process OCR latency per image size, and what intake
 * (header probe + decode + validation, media/image.h) costs next to it.
 *
 * usage: bench_vision IMAGE OUT_DIR RUNS SCALE...
 * For each scale factor, IMAGE is scaled with leptonica (pixScale), written
 * as PNG into OUT_DIR (so intake is timed on real file bytes), then decoded
 * and recognised RUNS times on this thread's Tesseract handle (the first,
 * untimed run creates it). Prints one line per size: pixels, file bytes,
 * intake p50, OCR p50, intake / OCR, and the words recognised. */
#include <leptonica/allheaders.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/util.h"
#include "media/image.h"
#include "media/ocr.h"

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double p50_ms(uint64_t *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    return (double)v[n / 2] / 1e6;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = sz > 0 ? smp_malloc((size_t)sz) : NULL;
    *n = d ? fread(d, 1, (size_t)sz, f) : 0;
    fclose(f);
    return d;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s IMAGE OUT_DIR RUNS SCALE...\n", argv[0]);
        return 2;
    }
    image_lib_init();
    int runs = atoi(argv[3]);
    if (runs < 1 || runs > 1000) runs = 5;
    size_t n;
    unsigned char *src = slurp(argv[1], &n);
    PIX *base = NULL;
    char err[512];
    if (!src || image_decode(src, n, 0, &base, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    uint64_t *ti = smp_calloc((size_t)runs, sizeof *ti), *to = smp_calloc((size_t)runs, sizeof *to);
    printf("%-12s %10s %10s %12s %10s %10s  %s\n", "size", "pixels", "png bytes", "intake p50", "OCR p50", "intake/OCR",
           "text");
    for (int a = 4; a < argc; a++) {
        float s = (float)atof(argv[a]);
        PIX *scaled = pixScale(base, s, s);
        char path[512];
        snprintf(path, sizeof path, "%s/scaled-%s.png", argv[2], argv[a]);
        if (!scaled || pixWrite(path, scaled, IFF_PNG) != 0) {
            fprintf(stderr, "cannot write %s\n", path);
            return 1;
        }
        int w = pixGetWidth(scaled), h = pixGetHeight(scaled);
        pixDestroy(&scaled);
        size_t fl;
        unsigned char *file = slurp(path, &fl);
        char *text = NULL;
        for (int i = -1; i < runs; i++) {
            uint64_t t0 = util_now_ns();
            PIX *pix = NULL;
            if (image_decode(file, fl, 4000ull * 1000 * 1000, &pix, NULL, err, sizeof err) != 0) {
                fprintf(stderr, "%s: %s\n", path, err);
                return 1;
            }
            uint64_t t1 = util_now_ns();
            smp_free(text);
            if (ocr_image(pix, "eng", &text, err, sizeof err) != 0) {
                fprintf(stderr, "%s: %s\n", path, err);
                return 1;
            }
            uint64_t t2 = util_now_ns();
            pixDestroy(&pix);
            if (i >= 0) ti[i] = t1 - t0, to[i] = t2 - t1;
        }
        for (char *c = text; *c; c++)
            if (*c == '\n') *c = ' ';
        char label[32];
        snprintf(label, sizeof label, "%dx%d", w, h);
        double di = p50_ms(ti, runs), docr = p50_ms(to, runs);
        printf("%-12s %10d %10zu %9.2f ms %7.1f ms %9.1f%%  %s\n", label, w * h, fl, di, docr, 100.0 * di / docr, text);
        smp_free(text);
        smp_free(file);
    }
    pixDestroy(&base);
    smp_free(src);
    smp_free(ti);
    smp_free(to);
    return 0;
}
