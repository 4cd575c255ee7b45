/* test_image.c - image intake (media/image.h): detection by content, header
 * dimensions, the pixel limit enforced before any pixel memory exists
 * (leptonica's pix allocator is counted), EXIF orientation, truncated and
 * corrupt files, empty input and the base64 intake. Uses ../shared/images. */
#include <leptonica/allheaders.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "media/image.h"
#include "test.h"

#define IMG_DIR "../shared/images/"
#define MAX_PX (40ull * 1000 * 1000)

static unsigned char *slurp(const char *name, size_t *n) {
    char path[256];
    snprintf(path, sizeof path, IMG_DIR "%s", name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *d = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(d, 1, (size_t)sz, f);
    fclose(f);
    return d;
}

/* Leptonica's pixel-data allocator, counted: a refused image must not reach
 * it, and the biggest PIX asked for is kept (one over 64 MiB is refused, so
 * a test of the old code never really allocates a bomb). Installed after
 * image_lib_init(), which puts image.c's own allocator there first. */
static long pix_allocs;
static size_t pix_biggest;
static void *count_alloc(size_t n) {
    pix_allocs++;
    if (n > pix_biggest) pix_biggest = n;
    return n > ((size_t)64 << 20) ? NULL : malloc(n);
}
static void count_free(void *p) { free(p); }
static void count_pix_allocs(void) {
    image_lib_init();
    setPixMemoryManager(count_alloc, count_free);
    pix_allocs = 0;
    pix_biggest = 0;
}

TEST(image_detect_and_dims_of_every_format) {
    static const struct {
        const char *file;
        image_format f;
        unsigned w, h;
    } cases[] = {
        {"invoice.png", IMAGE_PNG, 900, 220}, {"invoice.jpg", IMAGE_JPEG, 900, 220}, {"sign.png", IMAGE_PNG, 700, 160},
        {"sign.webp", IMAGE_WEBP, 700, 160},  {"sign.gif", IMAGE_GIF, 700, 160},     {"sign.bmp", IMAGE_BMP, 700, 160},
        {"sign.tiff", IMAGE_TIFF, 700, 160},  {"tiny-gradient.png", IMAGE_PNG, 64, 64},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        unsigned char *d = slurp(cases[i].file, &n);
        REQUIRE(d);
        CHECK_INT(image_detect(d, n), cases[i].f);
        image_info info;
        char err[256] = "";
        CHECK_INT(image_probe(d, n, MAX_PX, &info, err, sizeof err), 0);
        CHECK_INT(info.width, cases[i].w);
        CHECK_INT(info.height, cases[i].h);
        PIX *pix = NULL;
        int rc = image_decode(d, n, MAX_PX, &pix, NULL, err, sizeof err);
        if (rc) fprintf(stderr, "  %s: %s\n", cases[i].file, err);
        CHECK_INT(rc, 0);
        if (pix) {
            CHECK_INT(pixGetWidth(pix), cases[i].w);
            CHECK_INT(pixGetHeight(pix), cases[i].h);
        }
        pixDestroy(&pix);
        free(d);
    }
    CHECK_STR(image_mime(IMAGE_WEBP), "image/webp");
    CHECK_STR(image_format_name(IMAGE_TIFF), "tiff");
}

TEST(image_refuses_non_images_and_empty_input) {
    size_t n;
    unsigned char *d = slurp("not-an-image.png", &n);
    REQUIRE(d && n == 5000);
    CHECK_INT(image_detect(d, n), IMAGE_UNKNOWN);
    image_info info;
    char err[256];
    CHECK_INT(image_probe(d, n, MAX_PX, &info, err, sizeof err), -SMP_E_FORMAT);
    CHECK(!strncmp(err, "Invalid image file: ", 20));
    free(d);
    PIX *pix = (PIX *)1;
    CHECK_INT(image_decode((const unsigned char *)"", 0, MAX_PX, &pix, NULL, err, sizeof err), -SMP_E_FORMAT);
    CHECK(pix == NULL);
    CHECK(strstr(err, "empty") != NULL);
    CHECK_INT(image_probe(NULL, 0, MAX_PX, &info, err, sizeof err), -SMP_E_FORMAT);
    /* A signature and nothing after it. */
    CHECK_INT(image_probe((const unsigned char *)"\x89PNG\r\n\x1a\n", 8, MAX_PX, &info, err, sizeof err), -SMP_E_FORMAT);
    CHECK_INT(image_probe((const unsigned char *)"GIF89a", 6, MAX_PX, &info, err, sizeof err), -SMP_E_FORMAT);
    CHECK_INT(image_probe((const unsigned char *)"\xFF\xD8\xFF", 3, MAX_PX, &info, err, sizeof err), -SMP_E_FORMAT);
    CHECK_INT(image_probe((const unsigned char *)"BM", 2, MAX_PX, &info, err, sizeof err), -SMP_E_FORMAT);
    CHECK_INT(image_probe((const unsigned char *)"II*\0\xff\xff\0\0", 8, MAX_PX, &info, err, sizeof err), -SMP_E_FORMAT);
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* Tiny files whose headers claim 50,000 x 50,000 pixels (2.5 gigapixels). */
TEST(image_bombs_refused_before_allocating) {
    count_pix_allocs();
    unsigned char png[8 + 25 + 12];
    memset(png, 0, sizeof png);
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    put_be32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put_be32(png + 16, 50000);
    put_be32(png + 20, 50000);
    png[24] = 8; /* bit depth; colour type 0 */
    unsigned char jpg[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0xC3, 0x50, 0xC3, 0x50, 0x01, 0x01, 0x11, 0x00,
                           0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x00, 0xFF, 0xD9};
    unsigned char bmp[54] = {'B', 'M'};
    bmp[14] = 40;
    bmp[18] = 0x50, bmp[19] = 0xC3; /* 50000 */
    bmp[22] = 0x50, bmp[23] = 0xC3;
    bmp[26] = 1, bmp[28] = 24;
    /* GIF: a 1x1 screen, but a frame of 50000 x 50000. */
    unsigned char gif[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0,
                           0x2C, 0, 0, 0, 0, 0x50, 0xC3, 0x50, 0xC3, 0, 2, 2, 0x4C, 1, 0, 0x3B};
    unsigned char webp[30] = {'R', 'I', 'F', 'F', 22, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'X', 10, 0, 0, 0};
    webp[24] = 0x4F, webp[25] = 0xC3; /* 49999 + 1 */
    webp[27] = 0x4F, webp[28] = 0xC3;
    const struct {
        const unsigned char *d;
        size_t n;
    } bombs[] = {{png, sizeof png}, {jpg, sizeof jpg}, {bmp, sizeof bmp}, {gif, sizeof gif}, {webp, sizeof webp}};
    for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) {
        PIX *pix = NULL;
        image_info info;
        char err[256] = "";
        int rc = image_decode(bombs[i].d, bombs[i].n, MAX_PX, &pix, &info, err, sizeof err);
        if (rc != -SMP_E_TOO_LARGE) fprintf(stderr, "  bomb %zu: rc %d %s\n", i, rc, err);
        CHECK_INT(rc, -SMP_E_TOO_LARGE);
        CHECK_INT(info.width, 50000);
        CHECK_INT(info.height, 50000);
        CHECK(strstr(err, "MAX_IMAGE_MP") != NULL);
        CHECK(pix == NULL);
    }
    /* An animated GIF: 1x1 screen, 100 frames of 1000 x 1000 (100 megapixels
     * in all, each frame alone under the limit), a few bytes each. */
    unsigned char agif[13 + 100 * 14 + 1] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0};
    for (int f = 0; f < 100; f++) {
        unsigned char fr[14] = {0x2C, 0, 0, 0, 0, 0xE8, 0x03, 0xE8, 0x03, 0, 2, 1, 0x4C, 0};
        memcpy(agif + 13 + f * 14, fr, sizeof fr);
    }
    agif[sizeof agif - 1] = 0x3B;
    PIX *apix = NULL;
    image_info ainfo;
    char aerr[256];
    CHECK_INT(image_decode(agif, sizeof agif, MAX_PX, &apix, &ainfo, aerr, sizeof aerr), -SMP_E_TOO_LARGE);
    CHECK_INT(ainfo.frames, 100);
    CHECK(strstr(aerr, "100 frames") != NULL);
    CHECK(apix == NULL);
    CHECK_INT(pix_allocs, 0);
    /* The counter works: a real decode goes through it. */
    size_t n;
    unsigned char *d = slurp("tiny-gradient.png", &n);
    REQUIRE(d);
    PIX *pix = NULL;
    char err[256];
    CHECK_INT(image_decode(d, n, MAX_PX, &pix, NULL, err, sizeof err), 0);
    CHECK(pix_allocs > 0);
    pixDestroy(&pix);
    free(d);
}

/* A 16x8 image, left half black, right half white, written by leptonica
 * in format iff. Caller lept_free()s *d. */
static int halves(int iff, l_uint8 **d, size_t *n) {
    PIX *pix = pixCreate(16, 8, 8);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 16; x++) pixSetPixel(pix, x, y, x < 8 ? 0 : 255);
    int rc = pixWriteMem(d, n, pix, iff);
    pixDestroy(&pix);
    return rc;
}

/* An EXIF block: "MM\0*", IFD offset 8, 1 entry: tag 0x0112 SHORT count 1
 * value orient, next IFD 0 (26 bytes). */
static void exif_block(unsigned char *t, int orient) {
    static const unsigned char tiff[26] = {'M', 'M', 0, 0x2A, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3,
                                           0,   0,   0, 1,    0, 0, 0, 0, 0, 0, 0,    0};
    memcpy(t, tiff, sizeof tiff);
    t[19] = (unsigned char)orient;
}

/* The JPEG, with an APP1 "Exif\0\0" segment after SOI. Caller frees. */
static unsigned char *jpeg_with_orientation(int orient, size_t *n) {
    l_uint8 *jd = NULL;
    size_t jn = 0;
    if (halves(IFF_JFIF_JPEG, &jd, &jn) != 0) return NULL;
    unsigned char app1[4 + 6 + 26] = {0xFF, 0xE1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0};
    exif_block(app1 + 10, orient);
    *n = jn + sizeof app1;
    unsigned char *out = malloc(*n);
    memcpy(out, jd, 2);
    memcpy(out + 2, app1, sizeof app1);
    memcpy(out + 2 + sizeof app1, jd + 2, jn - 2);
    lept_free(jd);
    return out;
}

static uint32_t crc32_png(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

/* The PNG, with an eXIf chunk after IHDR (prefixed with "Exif\0\0" when
 * prefixed, as some writers do). Caller frees. */
static unsigned char *png_with_orientation(int orient, bool prefixed, size_t *n) {
    l_uint8 *pd = NULL;
    size_t pn = 0;
    if (halves(IFF_PNG, &pd, &pn) != 0) return NULL;
    size_t dl = (prefixed ? 6 : 0) + 26;
    unsigned char chunk[12 + 32];
    put_be32(chunk, (uint32_t)dl);
    memcpy(chunk + 4, "eXIf", 4);
    if (prefixed) memcpy(chunk + 8, "Exif\0\0", 6);
    exif_block(chunk + 8 + dl - 26, orient);
    put_be32(chunk + 8 + dl, crc32_png(chunk + 4, 4 + dl));
    size_t cl = 12 + dl;
    *n = pn + cl;
    unsigned char *out = malloc(*n);
    memcpy(out, pd, 33); /* signature + IHDR */
    memcpy(out + 33, chunk, cl);
    memcpy(out + 33 + cl, pd + 33, pn - 33);
    lept_free(pd);
    return out;
}

static void put_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8), p[2] = (unsigned char)(v >> 16), p[3] = (unsigned char)(v >> 24);
}

/* The WebP made extended: RIFF, VP8X (flags: EXIF when flagged), the simple
 * file's image chunk, then an EXIF chunk. Caller frees. */
static unsigned char *webp_with_orientation(int orient, bool flagged, size_t *n) {
    l_uint8 *wd = NULL;
    size_t wn = 0;
    if (halves(IFF_WEBP, &wd, &wn) != 0) return NULL;
    size_t img = wn - 12; /* the VP8/VP8L chunk(s) after "RIFF" size "WEBP" */
    *n = 12 + 18 + img + 8 + 26;
    unsigned char *out = calloc(1, *n);
    memcpy(out, "RIFF", 4);
    put_le32(out + 4, (uint32_t)(*n - 8));
    memcpy(out + 8, "WEBPVP8X", 8);
    put_le32(out + 16, 10);
    out[20] = flagged ? 0x08 : 0;
    out[24] = 15; /* canvas width - 1 (LE 24-bit) */
    out[27] = 7;  /* canvas height - 1 */
    memcpy(out + 30, wd + 12, img);
    memcpy(out + 30 + img, "EXIF", 4);
    put_le32(out + 34 + img, 26);
    exif_block(out + 38 + img, orient);
    lept_free(wd);
    return out;
}

static int gray_at(PIX *p, int x, int y) {
    PIX *g = pixGetDepth(p) == 8 ? pixClone(p) : pixConvertTo8(p, 0); /* WebP decodes to RGB */
    l_uint32 v = 0;
    pixGetPixel(g, x, y, &v);
    pixDestroy(&g);
    return (int)v;
}

enum { EXIF_JPEG, EXIF_PNG, EXIF_PNG_PREFIXED, EXIF_WEBP };

TEST(image_exif_orientation_is_applied) {
    /* orientation -> upright size, and where the black half ends up */
    static const struct {
        int orient, w, h;
        int bx, by; /* a pixel that must be black */
        int wx, wy; /* a pixel that must be white */
    } cases[] = {
        {1, 16, 8, 2, 4, 13, 4}, {3, 16, 8, 13, 4, 2, 4}, {6, 8, 16, 4, 2, 4, 13},
        {8, 8, 16, 4, 13, 4, 2}, {5, 8, 16, 4, 2, 4, 13}, {2, 16, 8, 13, 4, 2, 4},
    };
    static const char *const kinds[] = {"jpeg", "png", "png (Exif prefix)", "webp"};
    for (int kind = EXIF_JPEG; kind <= EXIF_WEBP; kind++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            size_t n = 0;
            int o = cases[i].orient;
            unsigned char *d = kind == EXIF_JPEG     ? jpeg_with_orientation(o, &n)
                               : kind == EXIF_WEBP   ? webp_with_orientation(o, true, &n)
                                                     : png_with_orientation(o, kind == EXIF_PNG_PREFIXED, &n);
            REQUIRE(d);
            image_info info;
            PIX *pix = NULL;
            char err[256] = "";
            int rc = image_decode(d, n, MAX_PX, &pix, &info, err, sizeof err);
            if (rc) fprintf(stderr, "  %s orientation %d: %s\n", kinds[kind], o, err);
            REQUIRE(rc == 0);
            if (info.orientation != o) fprintf(stderr, "  %s orientation %d read as %d\n", kinds[kind], o, info.orientation);
            CHECK_INT(info.orientation, o);
            CHECK_INT(info.width, 16); /* the header's (stored) size */
            CHECK_INT(pixGetWidth(pix), cases[i].w);
            CHECK_INT(pixGetHeight(pix), cases[i].h);
            CHECK(gray_at(pix, cases[i].bx, cases[i].by) < 64);
            CHECK(gray_at(pix, cases[i].wx, cases[i].wy) > 192);
            pixDestroy(&pix);
            free(d);
        }
    }
}

TEST(image_exif_orientation_ignored_when_absent_or_cut) {
    image_info info;
    char err[256];
    size_t n;
    /* A WebP whose VP8X does not announce EXIF: the chunk is not looked at. */
    unsigned char *d = webp_with_orientation(6, false, &n);
    REQUIRE(d);
    CHECK_INT(image_probe(d, n, MAX_PX, &info, err, sizeof err), 0);
    CHECK_INT(info.orientation, 1);
    /* The EXIF chunk cut off by the end of the file. */
    free(d);
    d = webp_with_orientation(6, true, &n);
    CHECK_INT(image_probe(d, n - 10, MAX_PX, &info, err, sizeof err), 0);
    CHECK_INT(info.orientation, 1);
    free(d);
    /* A PNG eXIf chunk whose length runs past the end; an IFD offset past
     * the chunk: both read as no orientation, and nothing is read out of
     * bounds (the sanitizer build checks that). */
    d = png_with_orientation(6, false, &n);
    REQUIRE(d);
    CHECK_INT(image_probe(d, 33 + 8 + 20, MAX_PX, &info, err, sizeof err), 0);
    CHECK_INT(info.orientation, 1);
    d[33 + 8 + 7] = 200; /* IFD offset */
    CHECK_INT(image_probe(d, n, MAX_PX, &info, err, sizeof err), 0);
    CHECK_INT(info.orientation, 1);
    free(d);
    /* The files without EXIF read as 1. */
    d = slurp("sign.webp", &n);
    REQUIRE(d);
    CHECK_INT(image_probe(d, n, MAX_PX, &info, err, sizeof err), 0);
    CHECK_INT(info.orientation, 1);
    free(d);
}

TEST(image_truncated_png_and_corrupt_jpeg_refused) {
    size_t n;
    unsigned char *d = slurp("sign.png", &n);
    REQUIRE(d && n > 1000);
    char err[256];
    PIX *pix = NULL;
    /* Cut inside the pixel data, and inside the header. */
    CHECK_INT(image_decode(d, n / 2, MAX_PX, &pix, NULL, err, sizeof err), -SMP_E_FORMAT);
    CHECK(pix == NULL);
    CHECK(strstr(err, "truncated or corrupt") != NULL);
    CHECK_INT(image_decode(d, 20, MAX_PX, &pix, NULL, err, sizeof err), -SMP_E_FORMAT);
    free(d);

    d = slurp("invoice.jpg", &n);
    REQUIRE(d && n > 4000);
    /* Header intact, entropy-coded body overwritten from the middle on. */
    unsigned char *bad = malloc(n);
    memcpy(bad, d, n);
    uint32_t x = 12345;
    for (size_t i = n / 2; i < n - 2; i++) {
        x = x * 1103515245u + 12345u;
        bad[i] = (unsigned char)(x >> 16);
    }
    image_info info;
    CHECK_INT(image_probe(bad, n, MAX_PX, &info, err, sizeof err), 0); /* the header is fine */
    CHECK_INT(image_decode(bad, n, MAX_PX, &pix, NULL, err, sizeof err), -SMP_E_FORMAT);
    CHECK(pix == NULL);
    /* Cut short. */
    CHECK_INT(image_decode(d, n * 2 / 3, MAX_PX, &pix, NULL, err, sizeof err), -SMP_E_FORMAT);
    CHECK(pix == NULL);
    free(bad);
    free(d);
}

TEST(image_base64_intake) {
    unsigned char *d;
    size_t n;
    char err[256];
    CHECK_INT(image_from_base64("aGVsbG8=", 8, &d, &n, err, sizeof err), 0);
    CHECK_INT(n, 5);
    CHECK(!memcmp(d, "hello", 5));
    smp_free(d);
    const char *url = "data:image/png;base64,aGVsbG8=";
    CHECK_INT(image_from_base64(url, strlen(url), &d, &n, err, sizeof err), 0);
    CHECK_INT(n, 5);
    smp_free(d);
    const char *h = "https://example.com/cat.png";
    CHECK_INT(image_from_base64(h, strlen(h), &d, &n, err, sizeof err), -SMP_E_BAD_REQUEST);
    CHECK(strstr(err, "no server-side fetching") != NULL);
    CHECK_INT(image_from_base64("aGVsbG8", 7, &d, &n, err, sizeof err), -SMP_E_BAD_REQUEST); /* padding */
    CHECK(strstr(err, "base64") != NULL);
    CHECK_INT(image_from_base64("aGV*bG8=", 8, &d, &n, err, sizeof err), -SMP_E_BAD_REQUEST); /* character */
    CHECK_INT(image_from_base64("", 0, &d, &n, err, sizeof err), -SMP_E_BAD_REQUEST);
    const char *txt = "data:text/plain;base64,aGVsbG8=";
    CHECK_INT(image_from_base64(txt, strlen(txt), &d, &n, err, sizeof err), -SMP_E_BAD_REQUEST);
    CHECK(d == NULL);
}

/* ---- headers the decoders would read differently from a naive probe ---- */

/* TIFF fields in the byte order of t ("II" or "MM"; libtiff writes the host's). */
static uint32_t tif16(const unsigned char *t, size_t at) {
    return t[0] == 'I' ? (uint32_t)t[at] | (uint32_t)t[at + 1] << 8 : (uint32_t)t[at] << 8 | t[at + 1];
}
static uint32_t tif32(const unsigned char *t, size_t at) {
    return t[0] == 'I' ? tif16(t, at) | tif16(t, at + 2) << 16 : tif16(t, at) << 16 | tif16(t, at + 2);
}
static void tif_put16(unsigned char *t, size_t at, uint32_t v) {
    t[at + (t[0] == 'I' ? 0 : 1)] = (unsigned char)v;
    t[at + (t[0] == 'I' ? 1 : 0)] = (unsigned char)(v >> 8);
}
static void tif_put32(unsigned char *t, size_t at, uint32_t v) {
    tif_put16(t, at + (t[0] == 'I' ? 0 : 2), v & 0xFFFF);
    tif_put16(t, at + (t[0] == 'I' ? 2 : 0), v >> 16);
}

typedef struct {
    uint16_t tag, type; /* type 3 SHORT or 4 LONG, count 1 */
    uint32_t value;
} tif_entry;

static void tif_put_entry(unsigned char *t, size_t at, tif_entry e) {
    tif_put16(t, at, e.tag);
    tif_put16(t, at + 2, e.type);
    tif_put32(t, at + 4, 1);
    tif_put32(t, at + 8, 0);
    if (e.type == 3) tif_put16(t, at + 8, e.value);
    else tif_put32(t, at + 8, e.value);
}

/* The TIFF t with a new directory appended: the entries `before`, IFD0's
 * own (ImageWidth and ImageLength made w x h when w > 0), then `after`.
 * second_page: IFD0 links to it as the next page; otherwise the header
 * points at it instead of IFD0. Caller frees. */
static unsigned char *tiff_rewrite(const unsigned char *t, size_t n, const tif_entry *before, int nb,
                                   const tif_entry *after, int na, uint32_t w, uint32_t h, bool second_page,
                                   size_t *outn) {
    uint32_t ifd0 = tif32(t, 4), count = tif16(t, ifd0);
    size_t at = (n + 1) & ~(size_t)1, total = count + (size_t)nb + (size_t)na;
    *outn = at + 2 + total * 12 + 4;
    unsigned char *o = calloc(1, *outn);
    memcpy(o, t, n);
    tif_put16(o, at, (uint32_t)total);
    size_t e = at + 2;
    for (int i = 0; i < nb; i++, e += 12) tif_put_entry(o, e, before[i]);
    for (uint32_t i = 0; i < count; i++, e += 12) {
        memcpy(o + e, t + ifd0 + 2 + i * 12, 12);
        uint32_t tag = tif16(o, e);
        if (w && (tag == 256 || tag == 257)) tif_put_entry(o, e, (tif_entry){(uint16_t)tag, 4, tag == 256 ? w : h});
    }
    for (int i = 0; i < na; i++, e += 12) tif_put_entry(o, e, after[i]);
    tif_put32(o, e, 0);
    if (second_page) tif_put32(o, ifd0 + 2 + count * 12, (uint32_t)at);
    else tif_put32(o, 4, (uint32_t)at);
    return o;
}

/* The file d (n bytes) with `ins` (k bytes) inserted at offset at. Caller frees. */
static unsigned char *spliced(const unsigned char *d, size_t n, size_t at, const unsigned char *ins, size_t k) {
    unsigned char *o = malloc(n + k);
    memcpy(o, d, at);
    memcpy(o + at, ins, k);
    memcpy(o + at + k, d + at, n - at);
    return o;
}

/* Offset of the first segment with marker m in a JPEG (its FF), or 0. */
static size_t jpeg_find(const unsigned char *d, size_t n, unsigned m) {
    for (size_t at = 2; at + 4 <= n;) {
        if (d[at] != 0xFF) return 0;
        if (d[at + 1] == m) return at;
        at += 2 + ((size_t)d[at + 2] << 8 | d[at + 3]);
    }
    return 0;
}

/* libtiff reads the FIRST ImageWidth/ImageLength of a directory and ignores
 * repeats. The probe used to keep the last: a TIFF saying 20000 x 20000
 * first and 16 x 8 after passed the limit as 16 x 8 and leptonica then
 * allocated a 400 MB PIX. Either order is now refused as ambiguous, before
 * any pixel memory exists. */
TEST(image_tiff_repeated_size_tags_refused) {
    l_uint8 *td = NULL;
    size_t tn = 0;
    REQUIRE(halves(IFF_TIFF, &td, &tn) == 0);
    const tif_entry huge[] = {{256, 4, 20000}, {257, 4, 20000}};
    const tif_entry small[] = {{256, 3, 16}, {257, 3, 8}};
    size_t n1, n2, n3;
    unsigned char *big_first = tiff_rewrite(td, tn, huge, 2, NULL, 0, 0, 0, false, &n1);
    unsigned char *big_last = tiff_rewrite(td, tn, NULL, 0, huge, 2, 0, 0, false, &n2);
    unsigned char *same_twice = tiff_rewrite(td, tn, NULL, 0, small, 2, 0, 0, false, &n3);
    lept_free(td);
    count_pix_allocs();
    const struct {
        const unsigned char *d;
        size_t n;
    } files[] = {{big_first, n1}, {big_last, n2}};
    for (size_t i = 0; i < 2; i++) {
        image_info info;
        PIX *pix = NULL;
        char err[256] = "";
        int rc = image_decode(files[i].d, files[i].n, MAX_PX, &pix, &info, err, sizeof err);
        if (rc != -SMP_E_FORMAT) fprintf(stderr, "  file %zu: rc %d %s\n", i, rc, err);
        CHECK_INT(rc, -SMP_E_FORMAT);
        CHECK(strstr(err, "TIFF file gives ImageWidth twice with different values") != NULL);
        CHECK(strstr(err, "ambiguous") != NULL);
        CHECK(pix == NULL);
    }
    if (pix_biggest) fprintf(stderr, "  biggest PIX asked for: %zu bytes\n", pix_biggest);
    CHECK_INT(pix_allocs, 0);
    /* The same size given twice is not ambiguous: it decodes. */
    PIX *pix = NULL;
    image_info info;
    char err[256] = "";
    CHECK_INT(image_decode(same_twice, n3, MAX_PX, &pix, &info, err, sizeof err), 0);
    CHECK(pix && pixGetWidth(pix) == 16 && pixGetHeight(pix) == 8);
    CHECK(pix_biggest < 4096);
    pixDestroy(&pix);
    free(big_first);
    free(big_last);
    free(same_twice);
}

/* Leptonica reads page 0 only: a second page claiming 50000 x 50000 is
 * never decoded (nor counted); a size tag that is not one integer, or a
 * directory of more entries than libtiff reads, is refused. */
TEST(image_tiff_later_pages_and_odd_entries) {
    l_uint8 *td = NULL;
    size_t tn = 0;
    REQUIRE(halves(IFF_TIFF, &td, &tn) == 0);
    size_t n;
    unsigned char *two_pages = tiff_rewrite(td, tn, NULL, 0, NULL, 0, 50000, 50000, true, &n);
    count_pix_allocs();
    image_info info;
    PIX *pix = NULL;
    char err[256] = "";
    CHECK_INT(image_decode(two_pages, n, MAX_PX, &pix, &info, err, sizeof err), 0);
    CHECK_INT(info.width, 16);
    CHECK(pix && pixGetWidth(pix) == 16 && pixGetHeight(pix) == 8);
    CHECK(pix_biggest < 4096);
    pixDestroy(&pix);
    free(two_pages);
    /* ImageWidth as a RATIONAL (type 5): libtiff fails the directory. */
    unsigned char *d = malloc(tn);
    memcpy(d, td, tn);
    uint32_t ifd0 = tif32(d, 4), count = tif16(d, ifd0);
    for (uint32_t i = 0; i < count; i++)
        if (tif16(d, ifd0 + 2 + i * 12) == 256) tif_put16(d, ifd0 + 2 + i * 12 + 2, 5);
    CHECK_INT(image_probe(d, tn, MAX_PX, &info, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "ImageWidth tag is not a single unsigned integer") != NULL);
    /* 5000 entries claimed: libtiff stops at 4096. */
    memcpy(d, td, tn);
    tif_put16(d, ifd0, 5000);
    CHECK_INT(image_probe(d, tn, MAX_PX, &info, err, sizeof err), -SMP_E_FORMAT);
    free(d);
    lept_free(td);
}

/* Leptonica turns a TIFF upright by its Orientation tag: the PIX of a 16 x 8
 * file tagged 6 is 8 x 16, and that is the size decoding is held to. */
TEST(image_tiff_orientation_turns_the_decoded_size) {
    l_uint8 *td = NULL;
    size_t tn = 0;
    REQUIRE(halves(IFF_TIFF, &td, &tn) == 0);
    const tif_entry orient6[] = {{274, 3, 6}};
    size_t n;
    unsigned char *d = tiff_rewrite(td, tn, orient6, 1, NULL, 0, 0, 0, false, &n); /* before leptonica's own Orientation 1 */
    lept_free(td);
    image_info info;
    PIX *pix = NULL;
    char err[256] = "";
    int rc = image_decode(d, n, MAX_PX, &pix, &info, err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_INT(rc, 0);
    CHECK_INT(info.width, 16);
    CHECK_INT(info.decoded_width, 8);
    CHECK_INT(info.decoded_height, 16);
    CHECK(pix && pixGetWidth(pix) == 8 && pixGetHeight(pix) == 16);
    pixDestroy(&pix);
    free(d);
}

/* libjpeg fails on a second SOF wherever it sits; the probe used to keep the
 * last one (a huge first SOF passed as the small one; a huge second one was
 * a 413 for a file the decoder would refuse anyway). Now both are a 400
 * naming the second frame header, before any allocation. */
TEST(image_jpeg_two_frame_headers_refused) {
    l_uint8 *jd = NULL;
    size_t jn = 0;
    REQUIRE(halves(IFF_JFIF_JPEG, &jd, &jn) == 0);
    size_t sof = jpeg_find(jd, jn, 0xC0);
    REQUIRE(sof > 0);
    size_t sl = 2 + ((size_t)jd[sof + 2] << 8 | jd[sof + 3]);
    unsigned char *big = malloc(sl);
    memcpy(big, jd + sof, sl);
    big[5] = 0xC3, big[6] = 0x50, big[7] = 0xC3, big[8] = 0x50; /* 50000 x 50000 */
    unsigned char *big_first = spliced(jd, jn, sof, big, sl);
    unsigned char *big_second = spliced(jd, jn, sof + sl, big, sl);
    count_pix_allocs();
    const unsigned char *files[] = {big_first, big_second};
    for (int i = 0; i < 2; i++) {
        image_info info;
        PIX *pix = NULL;
        char err[256] = "";
        int rc = image_decode(files[i], jn + sl, MAX_PX, &pix, &info, err, sizeof err);
        if (rc != -SMP_E_FORMAT) fprintf(stderr, "  file %d: rc %d %s\n", i, rc, err);
        CHECK_INT(rc, -SMP_E_FORMAT);
        CHECK(strstr(err, "second frame header") != NULL);
        CHECK(pix == NULL);
    }
    CHECK_INT(pix_allocs, 0);
    free(big);
    free(big_first);
    free(big_second);
    lept_free(jd);
}

/* A progressive decode passes over the whole image once per scan: a JPEG
 * of a few bytes a scan could hold tens of thousands. Past JPEG_MAX_SCANS
 * the probe refuses it; the markers inside a scan's data (stuffed FF 00,
 * restarts) do not count. */
TEST(image_jpeg_scan_count_capped) {
    static const unsigned char sof[] = {0xFF, 0xD8, 0xFF, 0xC2, 0x00, 0x0B, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00};
    static const unsigned char sos[] = {0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00,
                                        0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56}; /* data: FF 00 and RST0 inside */
    size_t cap = sizeof sof + (JPEG_MAX_SCANS + 1) * sizeof sos + 2;
    unsigned char *d = malloc(cap);
    for (int scans = JPEG_MAX_SCANS; scans <= JPEG_MAX_SCANS + 1; scans++) {
        size_t n = 0;
        memcpy(d, sof, sizeof sof), n += sizeof sof;
        for (int i = 0; i < scans; i++) memcpy(d + n, sos, sizeof sos), n += sizeof sos;
        d[n++] = 0xFF, d[n++] = 0xD9;
        image_info info;
        char err[256] = "";
        int rc = image_probe(d, n, MAX_PX, &info, err, sizeof err);
        if (scans <= JPEG_MAX_SCANS) {
            if (rc) fprintf(stderr, "  %d scans: %s\n", scans, err);
            CHECK_INT(rc, 0);
        } else {
            CHECK_INT(rc, -SMP_E_FORMAT);
            CHECK(strstr(err, "more than 100 scans") != NULL);
        }
    }
    free(d);
}

/* libpng fails on a second IHDR; the probe says so itself. */
TEST(image_png_second_ihdr_refused) {
    l_uint8 *pd = NULL;
    size_t pn = 0;
    REQUIRE(halves(IFF_PNG, &pd, &pn) == 0);
    unsigned char ihdr[25];
    memcpy(ihdr, pd + 8, 25);
    put_be32(ihdr + 8, 50000);
    put_be32(ihdr + 12, 50000);
    put_be32(ihdr + 21, crc32_png(ihdr + 4, 17));
    unsigned char *d = spliced(pd, pn, 33, ihdr, sizeof ihdr);
    count_pix_allocs();
    image_info info;
    PIX *pix = NULL;
    char err[256] = "";
    CHECK_INT(image_decode(d, pn + sizeof ihdr, MAX_PX, &pix, &info, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "second IHDR") != NULL);
    CHECK(pix == NULL);
    CHECK_INT(pix_allocs, 0);
    free(d);
    lept_free(pd);
}

/* Leptonica's PIX of a GIF is its first frame, which may be smaller than
 * the logical screen: the screen is what the limit sees, the frame is what
 * decoding is held to. */
TEST(image_gif_decodes_to_its_first_frame) {
    l_uint8 *gd = NULL;
    size_t gn = 0;
    REQUIRE(halves(IFF_GIF, &gd, &gn) == 0);
    gd[6] = 40, gd[7] = 0, gd[8] = 20, gd[9] = 0; /* screen 40 x 20 */
    image_info info;
    PIX *pix = NULL;
    char err[256] = "";
    int rc = image_decode(gd, gn, MAX_PX, &pix, &info, err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_INT(rc, 0);
    CHECK_INT(info.width, 40);
    CHECK_INT(info.height, 20);
    CHECK_INT(info.decoded_width, 16);
    CHECK_INT(info.decoded_height, 8);
    CHECK(pix && pixGetWidth(pix) == 16 && pixGetHeight(pix) == 8);
    pixDestroy(&pix);
    lept_free(gd);
}

/* giflib keeps every extension sub-block in memory (about 56 bytes each),
 * so 2-byte sub-blocks multiplied a file 28 times (a 100 MB upload: 2.8 GB).
 * Past GIF_MAX_BLOCKS frames and sub-blocks the probe refuses the file. */
TEST(image_gif_block_count_capped) {
    static const unsigned char head[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255};
    static const unsigned char frame[] = {0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0}; /* 1x1, LZW clear 0 end */
    const long counts[] = {1000, 200001};
    for (int k = 0; k < 2; k++) {
        size_t n = 0, cap = sizeof head + 3 + 2 * (size_t)counts[k] + sizeof frame + 1;
        unsigned char *d = malloc(cap);
        memcpy(d, head, sizeof head), n += sizeof head;
        d[n++] = 0x21, d[n++] = 0xFE; /* a comment */
        for (long i = 0; i < counts[k]; i++) d[n++] = 1, d[n++] = 'x';
        d[n++] = 0;
        memcpy(d + n, frame, sizeof frame), n += sizeof frame;
        d[n++] = 0x3B;
        PIX *pix = NULL;
        image_info info;
        char err[256] = "";
        int rc = image_decode(d, n, MAX_PX, &pix, &info, err, sizeof err);
        if (k == 0) {
            if (rc) fprintf(stderr, "  %ld sub-blocks: %s\n", counts[k], err);
            CHECK_INT(rc, 0);
            CHECK(pix && pixGetWidth(pix) == 1);
        } else {
            CHECK_INT(rc, -SMP_E_FORMAT);
            CHECK(strstr(err, "more than 200000 frames and extension blocks") != NULL);
        }
        pixDestroy(&pix);
        free(d);
    }
}
