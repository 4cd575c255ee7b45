/* image.c - see image.h. Header layouts read here (all offsets from the
 * start of the file unless said otherwise; BE/LE = byte order):
 *
 * PNG   0  8  signature 89 50 4E 47 0D 0A 1A 0A
 *       8  4  first chunk length (BE, 13)      12 4 "IHDR"
 *      16  4  width (BE)                       20 4 height (BE)
 *      then chunks: length 4 (BE), type 4, data, CRC 4, up to "IEND";
 *       "eXIf" data is a TIFF header and IFD0 (as in a JPEG's APP1, without
 *       the "Exif\0\0" prefix)
 * GIF   0  6  "GIF87a" | "GIF89a"
 *       6  2  screen width (LE)                 8 2 screen height (LE)
 *      10  1  flags (bit 7: global colour table of 3 * 2^((flags&7)+1) bytes)
 *      13  .. blocks: 0x21 label {size data}* 0 (extension) | 0x2C image
 *             descriptor: left 2, top 2, width 2, height 2 (LE), flags 1 (bit 7:
 *             local colour table, sized as above), LZW code size 1,
 *             {size data}* 0  | 0x3B trailer
 * WebP  0  4  "RIFF"   4 4 size   8 4 "WEBP"   12 4 first chunk tag
 *       "VP8X": 24 3 canvas width-1 (LE)  27 3 canvas height-1 (LE)
 *       "VP8 ": 23 3 start code 9D 01 2A  26 2 width (LE, low 14 bits)  28 2 height
 *       "VP8L": 20 1 signature 2F  21 4 bits 0-13 width-1, bits 14-27 height-1 (LE)
 *       chunks: tag 4, size 4 (LE), data padded to an even size; an "EXIF"
 *       chunk (extended files, VP8X flag 0x08) holds a TIFF header and IFD0
 * BMP   0  2  "BM"    14 4 DIB header size (LE)
 *       size 12 (OS/2): 18 2 width  20 2 height;  otherwise 18 4 width  22 4 height
 *       (signed; a negative height is a top-down bitmap)
 * TIFF  0  4  "II*\0" (LE) | "MM\0*" (BE)   4 4 offset of the first IFD
 *       IFD: count 2, then count entries of 12 bytes: tag 2, type 2, count 4,
 *       value/offset 4 (SHORT=3 values sit in the first 2 bytes). Tags:
 *       256 ImageWidth, 257 ImageLength, 274 Orientation.
 * JPEG  FF D8, then segments FF <marker> [length 2 (BE, includes itself)]:
 *       SOFn (C0-C3, C5-C7, C9-CB, CD-CF): precision 1, height 2, width 2
 *       APP1 (E1) "Exif\0\0" + a TIFF header and IFD0 (Orientation 274)
 *       SOS (DA) ends the header; markers D0-D7, 01 and fill bytes FF carry
 *       no length.
 *
 * EXIF orientation, and what makes the stored image upright:
 *   1 none  2 flip left-right  3 rotate 180  4 flip top-bottom
 *   5 transpose (rotate 90 cw, flip left-right)  6 rotate 90 cw
 *   7 transverse (rotate 90 cw, flip top-bottom)  8 rotate 270 cw */
#include "media/image.h"

#include <leptonica/allheaders.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"

/* ---- small readers (callers check the bounds) ---------------------------------------- */

static uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t le16(const unsigned char *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t le32(const unsigned char *p) { return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le24(const unsigned char *p) { return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "Invalid image file: %s", why);
    return -SMP_E_FORMAT;
}

/* ---- detection ------------------------------------------------------------------------ */

image_format image_detect(const unsigned char *p, size_t n) {
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return IMAGE_PNG;
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return IMAGE_JPEG;
    if (n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6))) return IMAGE_GIF;
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return IMAGE_WEBP;
    if (n >= 2 && p[0] == 'B' && p[1] == 'M') return IMAGE_BMP;
    if (n >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4))) return IMAGE_TIFF;
    return IMAGE_UNKNOWN;
}

const char *image_format_name(image_format f) {
    static const char *const names[] = {"unknown", "png", "jpeg", "gif", "webp", "bmp", "tiff"};
    return (unsigned)f < sizeof names / sizeof names[0] ? names[f] : "unknown";
}

const char *image_mime(image_format f) {
    static const char *const mimes[] = {NULL, "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp",
                                        "image/tiff"};
    return (unsigned)f < sizeof mimes / sizeof mimes[0] ? mimes[f] : NULL;
}

/* ---- per-format headers ---------------------------------------------------------------- */

/* One IFD of a TIFF structure inside p[0..n): width, height, orientation (any
 * may be NULL). Returns 0 or -1 when the IFD lies outside the data. */
static int tiff_ifd(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h, int *orient) {
    if (n < 8) return -1;
    bool le = p[0] == 'I';
    uint32_t (*r16)(const unsigned char *) = le ? le16 : be16;
    uint32_t (*r32)(const unsigned char *) = le ? le32 : be32;
    uint32_t off = r32(p + 4);
    if (off > n || n - off < 2) return -1;
    uint32_t count = r16(p + off);
    if ((size_t)count * 12 > n - off - 2) return -1;
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *e = p + off + 2 + (size_t)i * 12;
        uint32_t tag = r16(e), type = r16(e + 2);
        uint32_t v = type == 3 ? r16(e + 8) : type == 4 ? r32(e + 8) : 0;
        if (type != 3 && type != 4) continue;
        if (tag == 256 && w) *w = v;
        if (tag == 257 && h) *h = v;
        if (tag == 274 && orient && v >= 1 && v <= 8) *orient = (int)v;
    }
    return 0;
}

/* The Orientation (1..8) of an EXIF block: a TIFF header and IFD0, after an
 * optional "Exif\0\0" (JPEG APP1 has it; PNG eXIf and WebP EXIF should not,
 * but some writers add it). 1 when absent or unreadable. */
static int exif_orientation(const unsigned char *t, size_t tl) {
    if (tl >= 6 && !memcmp(t, "Exif\0\0", 6)) t += 6, tl -= 6;
    int orient = 1;
    if (tl >= 8 && (!memcmp(t, "II*\0", 4) || !memcmp(t, "MM\0*", 4))) (void)tiff_ifd(t, tl, NULL, NULL, &orient);
    return orient;
}

static int probe_png(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    if (n < 33) return fail(err, el, "PNG file truncated inside its header (%zu bytes)", n);
    if (be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4)) return fail(err, el, "PNG file does not start with an IHDR chunk");
    o->width = be32(p + 16);
    o->height = be32(p + 20);
    if (o->width > 0x7FFFFFFF || o->height > 0x7FFFFFFF) return fail(err, el, "PNG dimensions out of range");
    /* Chunk headers only (lengths skip the data), for an eXIf; a cut or
     * bad chunk ends the walk and is left to the decoder. */
    for (size_t at = 33; at + 12 <= n;) {
        uint32_t len = be32(p + at);
        const unsigned char *type = p + at + 4;
        if (len > n - at - 12 || !memcmp(type, "IEND", 4)) break;
        if (!memcmp(type, "eXIf", 4)) {
            o->orientation = exif_orientation(p + at + 8, len);
            break;
        }
        at += 12 + (size_t)len;
    }
    return 0;
}

/* giflib (DGifSlurp, which leptonica calls) decodes every frame of an
 * animated GIF into its own raster, so the pixels a GIF costs are the sum
 * over its frames: a few kilobytes of LZW per frame can claim 40 megapixels
 * each. The first frame may also be larger than the logical screen. */
static int probe_gif(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    if (n < 13) return fail(err, el, "GIF file truncated inside its header (%zu bytes)", n);
    o->width = le16(p + 6);
    o->height = le16(p + 8);
    size_t at = 13;
    if (p[10] & 0x80) at += 3u * (1u << ((p[10] & 7) + 1));
    int frames = 0;
    while (at < n && p[at] != 0x3B) {
        if (p[at] == 0x2C) {
            if (at + 11 > n) break;
            uint32_t fw = le16(p + at + 5), fh = le16(p + at + 7);
            if (frames++ == 0) {
                uint32_t right = le16(p + at + 1) + fw, bottom = le16(p + at + 3) + fh;
                if (right > o->width) o->width = right;
                if (bottom > o->height) o->height = bottom;
            }
            o->pixels += (uint64_t)fw * fh;
            unsigned flags = p[at + 9];
            at += 10;
            if (flags & 0x80) at += 3u * (1u << ((flags & 7) + 1));
            at++; /* LZW minimum code size */
        } else if (p[at] == 0x21) {
            at += 2; /* introducer, label */
        } else {
            break; /* not a block: the decoder stops here too */
        }
        while (at < n && p[at]) at += 1u + p[at]; /* data sub-blocks */
        at++;                                      /* block terminator */
    }
    if (frames == 0) return fail(err, el, "GIF file has no complete image descriptor (truncated or corrupt)");
    o->frames = frames;
    return 0;
}

static int probe_webp(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    if (n < 30) return fail(err, el, "WebP file truncated inside its header (%zu bytes)", n);
    const unsigned char *c = p + 12;
    if (!memcmp(c, "VP8X", 4)) {
        o->width = le24(p + 24) + 1;
        o->height = le24(p + 27) + 1;
    } else if (!memcmp(c, "VP8 ", 4)) {
        if (p[23] != 0x9D || p[24] != 0x01 || p[25] != 0x2A) return fail(err, el, "WebP VP8 frame has no start code");
        o->width = le16(p + 26) & 0x3FFF;
        o->height = le16(p + 28) & 0x3FFF;
    } else if (!memcmp(c, "VP8L", 4)) {
        if (p[20] != 0x2F) return fail(err, el, "WebP lossless frame has a bad signature");
        uint32_t bits = le32(p + 21);
        o->width = (bits & 0x3FFF) + 1;
        o->height = ((bits >> 14) & 0x3FFF) + 1;
    } else {
        return fail(err, el, "WebP file has an unknown first chunk");
    }
    /* Only an extended file (VP8X) that says it has one carries an EXIF chunk. */
    if (memcmp(c, "VP8X", 4) || !(p[20] & 0x08)) return 0;
    for (size_t at = 12; at + 8 <= n;) {
        uint32_t len = le32(p + at + 4);
        if (len > n - at - 8) break;
        if (!memcmp(p + at, "EXIF", 4)) {
            o->orientation = exif_orientation(p + at + 8, len);
            break;
        }
        at += 8 + (size_t)len + (len & 1);
    }
    return 0;
}

static int probe_bmp(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    if (n < 26) return fail(err, el, "BMP file truncated inside its header (%zu bytes)", n);
    uint32_t hs = le32(p + 14);
    if (hs == 12) {
        o->width = le16(p + 18);
        o->height = le16(p + 20);
        return 0;
    }
    if (hs < 40 || n < 30) return fail(err, el, "BMP file has an unknown header size %u", hs);
    int32_t w = (int32_t)le32(p + 18), h = (int32_t)le32(p + 22);
    if (w <= 0 || h == 0 || h == INT32_MIN) return fail(err, el, "BMP dimensions %d x %d are invalid", w, h);
    o->width = (uint32_t)w;
    o->height = (uint32_t)(h < 0 ? -h : h);
    return 0;
}

static int probe_tiff(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    if (tiff_ifd(p, n, &o->width, &o->height, NULL) != 0)
        return fail(err, el, "TIFF file truncated or corrupt (its first directory lies outside the file)");
    return 0;
}

static bool jpeg_sof(unsigned m) {
    return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

static int probe_jpeg(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    size_t at = 2;
    bool have_sof = false;
    while (at < n) {
        if (p[at] != 0xFF) return fail(err, el, "JPEG segment marker expected at offset %zu", at);
        while (at < n && p[at] == 0xFF) at++; /* fill bytes */
        if (at >= n) break;
        unsigned m = p[at++];
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;
        if (m == 0xD9) break;
        if (at + 2 > n) break;
        uint32_t len = be16(p + at);
        if (len < 2) return fail(err, el, "JPEG segment with a bad length at offset %zu", at);
        if (m == 0xDA) {
            if (!have_sof) return fail(err, el, "JPEG scan before any frame header");
            return 0;
        }
        if (at + len > n) break;
        const unsigned char *s = p + at + 2;
        size_t sl = len - 2;
        if (jpeg_sof(m)) {
            if (sl < 5) return fail(err, el, "JPEG frame header too short");
            o->height = be16(s + 1);
            o->width = be16(s + 3);
            have_sof = true;
        } else if (m == 0xE1 && sl > 6 && !memcmp(s, "Exif\0\0", 6)) {
            o->orientation = exif_orientation(s, sl);
        }
        at += len;
    }
    return fail(err, el, "JPEG file truncated before its image data");
}

int image_probe(const unsigned char *p, size_t n, uint64_t max_pixels, image_info *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->orientation = 1;
    out->frames = 1;
    if (!p || n == 0) return fail(err, errlen, "the file is empty (0 bytes)");
    out->format = image_detect(p, n);
    int rc;
    switch (out->format) {
    case IMAGE_PNG: rc = probe_png(p, n, out, err, errlen); break;
    case IMAGE_JPEG: rc = probe_jpeg(p, n, out, err, errlen); break;
    case IMAGE_GIF: rc = probe_gif(p, n, out, err, errlen); break;
    case IMAGE_WEBP: rc = probe_webp(p, n, out, err, errlen); break;
    case IMAGE_BMP: rc = probe_bmp(p, n, out, err, errlen); break;
    case IMAGE_TIFF: rc = probe_tiff(p, n, out, err, errlen); break;
    default:
        return fail(err, errlen, "unrecognised format (expected PNG, JPEG, GIF, WebP, BMP or TIFF content)");
    }
    if (rc) return rc;
    if (out->width == 0 || out->height == 0)
        return fail(err, errlen, "%s header gives an empty size (%u x %u)", image_format_name(out->format), out->width,
                    out->height);
    uint64_t px = (uint64_t)out->width * out->height;
    if (out->pixels < px) out->pixels = px;
    if (max_pixels && px > max_pixels) {
        snprintf(err, errlen, "Image too large: %u x %u pixels (%.1f megapixels) exceeds the limit of %.1f megapixels (MAX_IMAGE_MP)",
                 out->width, out->height, (double)px / 1e6, (double)max_pixels / 1e6);
        return -SMP_E_TOO_LARGE;
    }
    if (max_pixels && out->pixels > max_pixels) {
        snprintf(err, errlen, "Image too large: its %d frames hold %.1f megapixels in all, over the limit of %.1f megapixels (MAX_IMAGE_MP)",
                 out->frames, (double)out->pixels / 1e6, (double)max_pixels / 1e6);
        return -SMP_E_TOO_LARGE;
    }
    return 0;
}

/* ---- decoding ------------------------------------------------------------------------- */

static void lept_to_log(const char *msg) { log_debug("leptonica: %.*s", (int)strcspn(msg, "\n"), msg); }

static void lib_init_once(void) {
    setMsgSeverity(L_SEVERITY_NONE);
    leptSetStderrHandler(lept_to_log);
}

void image_lib_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, lib_init_once);
}

/* Make the stored image upright (orientation as in the table on top). */
static PIX *apply_orientation(PIX *pix, int orient) {
    PIX *t = NULL, *u = NULL;
    switch (orient) {
    case 2: return pixFlipLR(NULL, pix);
    case 3: return pixRotate180(NULL, pix);
    case 4: return pixFlipTB(NULL, pix);
    case 6: return pixRotateOrth(pix, 1);
    case 8: return pixRotateOrth(pix, 3);
    case 5:
    case 7:
        t = pixRotateOrth(pix, 1);
        if (!t) return NULL;
        u = orient == 5 ? pixFlipLR(NULL, t) : pixFlipTB(NULL, t);
        pixDestroy(&t);
        return u;
    default: return pixClone(pix);
    }
}

int image_decode(const unsigned char *p, size_t n, uint64_t max_pixels, PIX **out, image_info *info, char *err,
                 size_t errlen) {
    image_info local;
    image_info *in = info ? info : &local;
    *out = NULL;
    int rc = image_probe(p, n, max_pixels, in, err, errlen);
    if (rc) return rc;
    image_lib_init();
    PIX *pix = NULL;
    if (in->format == IMAGE_JPEG) {
        /* libjpeg only warns on a corrupt or cut body (and fills in gray);
         * leptonica fails on any warning unless told to continue (hint 0),
         * and the warning count is checked as well. */
        l_int32 nwarn = 0;
        pix = pixReadMemJpeg(p, n, 0, 1, &nwarn, 0);
        if (pix && nwarn > 0) pixDestroy(&pix);
    } else {
        pix = pixReadMem(p, n);
    }
    if (!pix)
        return fail(err, errlen, "the %s data is truncated or corrupt (the decoder failed)", image_format_name(in->format));
    /* What the decoder made must be what the header promised (the limit was
     * checked against the header). */
    uint64_t px = (uint64_t)pixGetWidth(pix) * (uint64_t)pixGetHeight(pix);
    if (max_pixels && px > max_pixels) {
        pixDestroy(&pix);
        return fail(err, errlen, "the decoded %s image is larger than its header said", image_format_name(in->format));
    }
    if (in->orientation != 1) {
        PIX *r = apply_orientation(pix, in->orientation);
        pixDestroy(&pix);
        if (!r) return -SMP_E_NOMEM;
        pix = r;
    }
    *out = pix;
    return 0;
}

/* ---- base64 intake ------------------------------------------------------------------- */

int image_from_base64(const char *s, size_t len, unsigned char **out, size_t *outlen, char *err, size_t errlen) {
    *out = NULL;
    *outlen = 0;
    if (len >= 4 && !strncmp(s, "http", 4)) {
        snprintf(err, errlen, "Image URLs are not supported (no server-side fetching): send the image as base64");
        return -SMP_E_BAD_REQUEST;
    }
    if (len >= 5 && !strncmp(s, "data:", 5)) {
        const char *comma = memchr(s, ',', len);
        if (!comma) {
            snprintf(err, errlen, "Invalid data URL: no ',' before the image data");
            return -SMP_E_BAD_REQUEST;
        }
        size_t hl = (size_t)(comma - s);
        bool b64 = hl >= 7 && !memcmp(comma - 7, ";base64", 7);
        if (hl < 11 || strncmp(s, "data:image/", 11) || !b64) {
            snprintf(err, errlen, "Invalid data URL: expected 'data:image/<type>;base64,' before the image data");
            return -SMP_E_BAD_REQUEST;
        }
        len -= hl + 1;
        s = comma + 1;
    }
    if (len == 0) {
        snprintf(err, errlen, "Invalid image file: the image data is empty");
        return -SMP_E_BAD_REQUEST;
    }
    unsigned char *d = smp_malloc(util_b64_decoded_max(len) + 1);
    if (!d) {
        snprintf(err, errlen, "Out of memory decoding the image");
        return -SMP_E_NOMEM;
    }
    char why[160];
    long dl = util_b64_decode(s, len, d, why, sizeof why);
    if (dl <= 0) {
        smp_free(d);
        snprintf(err, errlen, "Invalid base64 image data: %s", dl == 0 ? "empty" : why);
        return -SMP_E_BAD_REQUEST;
    }
    *out = d;
    *outlen = (size_t)dl;
    return 0;
}

int image_from_base64_probed(const char *s, size_t len, uint64_t max_pixels, unsigned char **out, size_t *outlen,
                             image_info *info, char *err, size_t errlen) {
    image_info local;
    int rc = image_from_base64(s, len, out, outlen, err, errlen);
    if (rc) return rc;
    rc = image_probe(*out, *outlen, max_pixels, info ? info : &local, err, errlen);
    if (rc) {
        smp_free(*out);
        *out = NULL;
        *outlen = 0;
    }
    return rc;
}
