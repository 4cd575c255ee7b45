/* ocr.c - see ocr.h. Main data structure: ocr_handle, a thread's Tesseract
 * API object and the language it was initialised with.
 *
 * Images go to Tesseract as 8-bit gray (colour maps removed, 16-bit and
 * low-depth images converted) with a nominal 300 ppi so it does not guess.
 * Recognition runs under a Tesseract monitor (ETEXT_DESC) that carries the
 * deadline and the cancel callback of ocr_limits. */
#include "media/ocr.h"

#include <dirent.h>
#include <leptonica/allheaders.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tesseract/capi.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "media/image.h"

#define DEFAULT_TESSDATA "/usr/share/tesseract-ocr/5/tessdata"
#define SUFFIX ".traineddata"

typedef struct {
    TessBaseAPI *api;
    char lang[OCR_LANG_MAX + 1];
} ocr_handle;

static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/* Debian's libtesseract is built with OpenMP and asks for teams of up to 10
 * threads inside each recognition. On a server that runs several requests
 * at once they only fight over the cores: measured on 2 cores, a 700x160
 * line took 100 ms with OpenMP and 21 ms without (bench/vision). So each
 * thread that gets a handle makes its own OpenMP regions serial (max active
 * levels 0: an ICV of the calling thread in libgomp since OpenMP 5.0, so it
 * is set per thread, not once), the run-time equivalent of
 * OMP_THREAD_LIMIT=1. Weak, so a Tesseract built without OpenMP links too. */
extern void omp_set_max_active_levels(int n) __attribute__((weak));

static void handle_free(void *p) {
    ocr_handle *h = p;
    if (!h) return;
    if (h->api) {
        TessBaseAPIEnd(h->api);
        TessBaseAPIDelete(h->api);
    }
    smp_free(h);
}

static void make_key(void) { pthread_key_create(&key, handle_free); }

const char *ocr_datapath(void) {
    const char *e = getenv("TESSDATA_PREFIX");
    return e && *e ? e : DEFAULT_TESSDATA;
}

int ocr_languages(char *out, size_t n) {
    int count = 0;
    size_t used = 0;
    if (n) out[0] = '\0';
    DIR *d = opendir(ocr_datapath());
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), sl = strlen(SUFFIX);
        if (l <= sl || strcmp(e->d_name + l - sl, SUFFIX)) continue;
        int w = snprintf(out + used, used < n ? n - used : 0, "%s%.*s", count ? ", " : "", (int)(l - sl), e->d_name);
        if (w > 0 && used + (size_t)w < n) used += (size_t)w;
        count++;
    }
    closedir(d);
    return count;
}

static bool installed(const char *name, size_t len) {
    if (len == 0 || len > OCR_LANG_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%.*s%s", ocr_datapath(), (int)len, name, SUFFIX);
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

bool ocr_language_ok(const char *lang) {
    if (!lang || !*lang || strlen(lang) > OCR_LANG_MAX) return false;
    for (const char *p = lang;;) {
        const char *plus = strchr(p, '+');
        size_t len = plus ? (size_t)(plus - p) : strlen(p);
        if (!installed(p, len)) return false;
        if (!plus) return true;
        p = plus + 1;
    }
}

/* This thread's handle, initialised for lang. */
static int get_handle(const char *lang, ocr_handle **out, char *err, size_t errlen) {
    pthread_once(&key_once, make_key);
    ocr_handle *h = pthread_getspecific(key);
    if (!h) {
        h = smp_calloc(1, sizeof *h);
        if (!h) return -SMP_E_NOMEM;
        if (pthread_setspecific(key, h) != 0) {
            smp_free(h);
            return -SMP_E_INTERNAL;
        }
        if (omp_set_max_active_levels) omp_set_max_active_levels(0);
    }
    if (h->api && !strcmp(h->lang, lang)) {
        *out = h;
        return 0;
    }
    if (!h->api && !(h->api = TessBaseAPICreate())) return -SMP_E_NOMEM;
    uint64_t t0 = util_now_ns();
    if (TessBaseAPIInit3(h->api, ocr_datapath(), lang) != 0) {
        h->lang[0] = '\0';
        snprintf(err, errlen, "Tesseract could not load language '%s' from %s", lang, ocr_datapath());
        return -SMP_E_UNAVAILABLE;
    }
    /* Quiet: Tesseract's diagnostics would go to stderr. */
    TessBaseAPISetVariable(h->api, "debug_file", "/dev/null");
    snprintf(h->lang, sizeof h->lang, "%s", lang);
    log_debug("ocr: Tesseract '%s' ready on this thread in %.1f ms", lang, (double)(util_now_ns() - t0) / 1e6);
    *out = h;
    return 0;
}

/* 8-bit gray for Tesseract (a new PIX). */
static PIX *to_gray8(PIX *pix) {
    PIX *nocmap = pixGetColormap(pix) ? pixRemoveColormap(pix, REMOVE_CMAP_BASED_ON_SRC) : pixClone(pix);
    if (!nocmap) return NULL;
    PIX *g = NULL;
    int d = pixGetDepth(nocmap);
    if (d == 8) g = pixClone(nocmap);
    else if (d == 16) g = pixConvert16To8(nocmap, L_MS_BYTE);
    else if (d == 32) g = pixConvertRGBToLuminance(nocmap);
    else g = pixConvertTo8(nocmap, 0);
    pixDestroy(&nocmap);
    return g;
}

/* What Tesseract's monitor asks between words: has the client left? Polled
 * at most every OCR_POLL_MS (it runs for every word). */
typedef struct {
    const ocr_limits *lim;
    uint64_t next_poll_ns;
    bool gone;
} ocr_watch;

static bool watch_cancel(void *ud, int words) {
    (void)words;
    ocr_watch *w = ud;
    if (w->gone) return true;
    uint64_t now = util_now_ns();
    if (now < w->next_poll_ns) return false;
    w->next_poll_ns = now + (uint64_t)OCR_POLL_MS * 1000000u;
    w->gone = w->lim->cancelled(w->lim->ud);
    return w->gone;
}

int ocr_image(PIX *pix, const char *lang, char **text, char *err, size_t errlen) {
    return ocr_image_limited(pix, lang, NULL, text, err, errlen);
}

int ocr_image_limited(PIX *pix, const char *lang, const ocr_limits *lim, char **text, char *err, size_t errlen) {
    *text = NULL;
    if (!lang || !*lang) lang = "eng";
    if (!ocr_language_ok(lang)) {
        char list[512];
        int n = ocr_languages(list, sizeof list);
        snprintf(err, errlen, "OCR language '%.64s' is not installed; installed: %s (in %s)", lang, n ? list : "none",
                 ocr_datapath());
        return -SMP_E_VALIDATION;
    }
    ocr_handle *h;
    int rc = get_handle(lang, &h, err, errlen);
    if (rc) return rc;
    PIX *g = to_gray8(pix);
    if (!g) {
        snprintf(err, errlen, "OCR: could not convert the image to gray");
        return -SMP_E_NOMEM;
    }
    ETEXT_DESC *mon = TessMonitorCreate();
    if (!mon) {
        pixDestroy(&g);
        return -SMP_E_NOMEM;
    }
    ocr_watch watch = {.lim = lim};
    if (lim && lim->cancelled) {
        TessMonitorSetCancelFunc(mon, watch_cancel);
        TessMonitorSetCancelThis(mon, &watch);
    }
    uint64_t t0 = util_now_ns(); /* the deadline counts from here */
    if (lim && lim->timeout_ms > 0) TessMonitorSetDeadlineMSecs(mon, lim->timeout_ms);
    TessBaseAPISetImage2(h->api, g);
    TessBaseAPISetSourceResolution(h->api, 300);
    int rec = TessBaseAPIRecognize(h->api, mon);
    double ms = (double)(util_now_ns() - t0) / 1e6;
    /* A stopped recognition leaves partial results: they are not the answer. */
    char *t = rec == 0 ? TessBaseAPIGetUTF8Text(h->api) : NULL;
    TessBaseAPIClear(h->api);
    TessMonitorDelete(mon);
    pixDestroy(&g);
    if (rec != 0) {
        if (watch.gone) {
            log_info("ocr: stopped after %.0f ms: %s", ms, util_stop_reason());
            return OCR_CANCELLED;
        }
        if (lim && lim->timeout_ms > 0 && ms >= lim->timeout_ms) {
            log_info("ocr: stopped after %.0f ms: over the %d ms limit", ms, lim->timeout_ms);
            snprintf(err, errlen, "OCR took longer than its limit of %g s and was stopped", lim->timeout_ms / 1000.0);
            return -SMP_E_TIMEOUT;
        }
        snprintf(err, errlen, "Tesseract failed to recognise the image");
        return -SMP_E_INTERNAL;
    }
    if (!t) {
        snprintf(err, errlen, "Tesseract failed to recognise the image");
        return -SMP_E_INTERNAL;
    }
    size_t len = strlen(t);
    while (len && strchr(" \t\r\n\f", t[len - 1])) len--;
    *text = smp_strndup(t, len);
    TessDeleteText(t);
    return *text ? 0 : -SMP_E_NOMEM;
}
